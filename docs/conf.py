"""Sphinx configuration for the fastct documentation.

Build with ``make docs`` (or ``sphinx-build -b html docs docs/_build/html``). The build
needs no network: intersphinx has no remote inventories configured.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document the checkout being built, installed or not; local extensions live in _ext.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))

import fastct  # noqa: E402

# -- project ---------------------------------------------------------------------------
project = "fastct"
author = "the fastct developers"
copyright = "the fastct developers"  # noqa: A001
version = fastct.__version__
release = fastct.__version__

# -- extensions ------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "fastct_docs",  # docs/_ext: CLI help, optional modules, benchmark tables
]
# MyST renders the Markdown benchmark tables (docs/benchmarks/*.md) when installed;
# without it they are shown as literal Markdown.
if importlib.util.find_spec("myst_parser") is not None:
    extensions.append("myst_parser")

source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "_ext",
    "Thumbs.db",
    ".DS_Store",
    # Included by performance.rst, not pages of their own.
    "benchmarks/*.md",
]
templates_path: list[str] = []

# No network during builds: no remote inventories. Add entries here only together with
# a local inventory file, e.g. {"numpy": ("https://numpy.org/doc/stable/", "numpy.inv")}.
intersphinx_mapping: dict[str, tuple] = {}

# -- autodoc / autosummary / numpydoc --------------------------------------------------
autodoc_typehints = "none"  # types are in the numpydoc "Parameters" sections
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": False}
autosummary_generate = False  # summary tables only; the entries are on the same page
numpydoc_show_class_members = False  # members are documented with :members:
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- HTML ------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"fastct {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Compiled-kernel engine for 3-D medical volumes",
    "fixed_sidebar": True,
}

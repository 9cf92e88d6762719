"""Small Sphinx directives for the fastct documentation (no third-party dependencies).

``.. fastct-cli-help:: [COMMAND]``
    The real ``fastct [COMMAND] --help`` text, generated from
    :func:`fastct.cli.build_parser` at build time (fixed width, so the output does not
    depend on the terminal), so the CLI page can never drift from the code.

``.. fastct-if-module:: MODULE``
    Parses its content only when ``MODULE`` has been written (a real module or package
    with an ``__init__.py``). Otherwise it shows a short note and marks the page to be
    re-read on the next build, so the section fills in by itself once the module
    exists. A module that exists but fails to import is reported as a warning.

``.. fastct-benchmark-tables::``
    Every ``docs/benchmarks/*.md`` file, in name order: rendered through MyST when
    ``myst_parser`` is installed, else shown as a literal Markdown block. New tables
    appear without editing any page.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

HELP_WIDTH = 100


@contextlib.contextmanager
def _columns(width: int):
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


class CliHelp(SphinxDirective):
    optional_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        from fastct import cli

        # The parser is assembled from every module of the fastct.cli package.
        for source in sorted(Path(cli.__file__).parent.glob("*.py")):
            self.env.note_dependency(os.path.abspath(source))
        with _columns(HELP_WIDTH):
            parser = cli.build_parser()
            if self.arguments:
                name = self.arguments[0]
                subparsers = [
                    a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                ]
                choices = subparsers[0].choices if subparsers else {}
                if name not in choices:
                    raise self.error(f"fastct has no command {name!r} (known: {sorted(choices)})")
                parser = choices[name]
            text = parser.format_help().rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


class IfModule(SphinxDirective):
    required_arguments = 1
    has_content = True

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        try:
            spec = importlib.util.find_spec(name)
        except ImportError:
            spec = None
        written = spec is not None and spec.origin not in (None, "namespace")
        if written:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - reported as a build warning
                logger.warning(
                    "%s exists but cannot be imported: %s", name, exc, location=self.get_location()
                )
                written = False
        if not written:
            self.env.note_reread()
            note = nodes.note()
            para = nodes.paragraph()
            para += nodes.literal(name, name)
            para += nodes.Text(
                " is not available in this build yet; this section fills in from its "
                "docstrings once the module is written."
            )
            note += para
            return [note]
        container = nodes.container()
        self.state.nested_parse(self.content, self.content_offset, container)
        return container.children


class BenchmarkTables(SphinxDirective):
    has_content = False
    option_spec = {"folder": str}

    def run(self) -> list[nodes.Node]:
        folder = self.options.get("folder", "benchmarks")
        src_folder = Path(self.env.srcdir) / folder
        # New tables must show up without touching this page.
        self.env.note_reread()
        files = sorted(src_folder.glob("*.md")) if src_folder.is_dir() else []
        if not files:
            para = nodes.paragraph(
                text="No benchmark tables yet: run `make bench` to write docs/benchmarks/*.md."
            )
            return [para]
        use_myst = "myst_parser" in self.env.app.extensions
        # Paths relative to the current document, as include/literalinclude expect.
        doc_dir = Path(self.env.doc2path(self.env.docname)).parent
        lines: list[str] = []
        for path in files:
            rel = os.path.relpath(path, doc_dir).replace(os.sep, "/")
            if use_myst:
                lines += [f".. include:: {rel}", "   :parser: myst_parser.sphinx_", ""]
            else:
                lines += [
                    f"``{folder}/{path.name}``:",
                    "",
                    f".. literalinclude:: {rel}",
                    "   :language: markdown",
                    "",
                ]
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]), 0, container)
        return container.children


def setup(app):
    app.add_directive("fastct-cli-help", CliHelp)
    app.add_directive("fastct-if-module", IfModule)
    app.add_directive("fastct-benchmark-tables", BenchmarkTables)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

"""Distribution metadata: the licence file, a distribution name that is not someone else's,
and extras that match what the code imports."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

import fastct

PACKAGE = Path(fastct.__file__).parent
ROOT = PACKAGE.parent
PYPROJECT = ROOT / "pyproject.toml"

pytestmark = pytest.mark.skipif(not PYPROJECT.is_file(), reason="no pyproject.toml (installed)")

# Import name -> distribution name, for every third-party module fastct imports.
DISTRIBUTIONS = {
    "numpy": "numpy",
    "numba": "numba",
    "scipy": "scipy",
    "sklearn": "scikit-learn",
    "skops": "skops",
    "h5py": "h5py",
    "tqdm": "tqdm",
    "pydicom": "pydicom",
    "nibabel": "nibabel",
    "matplotlib": "matplotlib",
    "PIL": "pillow",
    "zarr": "zarr",
    "dask": "dask",
    # dask.distributed is installed by the extra "dask[distributed]".
    "distributed": "dask",
}


@pytest.fixture(scope="module")
def project() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads(PYPROJECT.read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_license_file_is_bsd3_and_declared(project):
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, the fastct developers" in text
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]


def test_distribution_name_is_not_the_taken_fastct(project):
    # "fastct" on PyPI is another project; the import name stays fastct.
    assert project["name"] == "fastct-engine"
    assert project["scripts"] == {"fastct": "fastct.cli:run"}
    readme = (ROOT / "README.md").read_text()
    assert "fastct-engine" in readme and "someone else's code" in readme


def test_classifiers_match_requires_python(project):
    classifiers = project["classifiers"]
    assert "Typing :: Typed" in classifiers
    assert "License :: OSI Approved :: BSD License" not in classifiers  # PEP 639: the SPDX field
    lowest = re.fullmatch(r">=3\.(\d+)", project["requires-python"]).group(1)
    versions = sorted(
        int(c.rsplit(".", 1)[1])
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert versions[0] == int(lowest)
    assert versions == list(range(versions[0], versions[-1] + 1))


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party module -> the fastct files importing it."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if top != "fastct" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    # Optional packages fastct.io imports by name through _require("...").
    for path in PACKAGE.rglob("*.py"):
        for name in re.findall(r"_require\(\"(\w+)\"", path.read_text()):
            found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_a_dependency_or_in_an_extra(project):
    declared = _names(project["dependencies"])
    extras = project["optional-dependencies"]
    for requirements in extras.values():
        declared |= _names(requirements)
    for module, files in _third_party_imports().items():
        assert module in DISTRIBUTIONS, f"{module} (imported by {sorted(files)}) is unmapped"
        assert DISTRIBUTIONS[module] in declared, f"{module} is imported but not declared"


def test_extras_hold_only_what_the_code_imports(project):
    extras = project["optional-dependencies"]
    imported = {DISTRIBUTIONS[m] for m in _third_party_imports() if m in DISTRIBUTIONS}
    # Runtime extras (not test/bench/docs tooling) install only packages fastct imports,
    # plus the pixel-data decoders pydicom loads as plugins for compressed DICOM.
    decoders = {"pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle"}
    assert set(extras) == {"io", "report", "scale", "test", "bench", "docs"}
    for name in ("io", "report"):
        assert _names(extras[name]) - decoders <= imported, name
    # scale: zarr (Zarr archives) and dask[distributed] (fastct.dask and fastct batch,
    # issue 17); both also in test so that `make test` runs their tests.
    assert _names(extras["scale"]) == {"zarr", "dask"} and "zarr" in imported
    assert _names(extras["scale"]) <= _names(extras["test"])
    assert decoders <= _names(extras["io"])
    assert decoders <= _names(extras["test"])  # the compressed-DICOM tests run in CI

"""The package's own contracts: typed public names, one version source, compile profiles."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastct
from fastct import _config

PACKAGE = Path(fastct.__file__).parent
STUB = PACKAGE / "__init__.pyi"
PYPROJECT = PACKAGE.parent / "pyproject.toml"  # present in a source checkout only


def _stub() -> tuple[dict[str, tuple[str, str]], set[str], list[str]]:
    """The stub's imports (name -> (module, original name)), annotated names, __all__."""
    imports: dict[str, tuple[str, str]] = {}
    annotated: set[str] = set()
    all_: list[str] = []
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            assert node.level == 1, "the stub imports from fastct's own modules only"
            for alias in node.names:
                # `import x as x` is the stub's re-export form; anything else is private.
                assert alias.asname == alias.name, f"{alias.name} is not re-exported"
                imports[alias.asname] = (node.module or "", alias.name)
        elif isinstance(node, ast.AnnAssign):
            annotated.add(node.target.id)
        elif isinstance(node, ast.Assign) and node.targets[0].id == "__all__":
            all_ = list(ast.literal_eval(node.value))
    return imports, annotated, all_


def test_stub_lists_exactly_the_public_names():
    imports, annotated, all_ = _stub()
    public = {name for name in dir(fastct) if not name.startswith("_")} | {"__version__"}
    assert set(imports) | annotated == public
    assert public == set(fastct.__all__) | fastct._SUBMODULES
    assert all_ == fastct.__all__
    assert annotated == {"__version__"}


def test_stub_names_are_what_the_lazy_loader_returns():
    imports, _, _ = _stub()
    for name, (module, original) in imports.items():
        if module == "":  # `from . import x as x`: a submodule
            assert getattr(fastct, name) is importlib.import_module(f"fastct.{name}")
        else:
            source = importlib.import_module(f"fastct.{module}")
            assert getattr(fastct, name) is getattr(source, original), name


def test_package_is_marked_typed():
    assert (PACKAGE / "py.typed").is_file()
    assert STUB.is_file()


def test_dir_shows_the_public_api_only():
    names = dir(fastct)
    assert names == sorted(names)
    assert {"importlib", "Any", "annotations"}.isdisjoint(names)
    assert {"gaussian", "median", "unsharp_mask", "datasets", "__version__"} <= set(names)


def test_version_matches_the_installed_metadata():
    try:
        # The distribution is "fastct-engine" (the import name stays fastct; see README).
        installed = importlib.metadata.version("fastct-engine")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fastct-engine is not installed (plain source checkout)")
    assert fastct.__version__ == installed


def test_version_has_one_source():
    if not PYPROJECT.is_file():
        pytest.skip("no pyproject.toml (installed package)")
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads(PYPROJECT.read_text())
    assert "version" not in meta["project"]
    assert "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastct.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", fastct.__version__)


# -- compile profiles ----------------------------------------------------------------------
def _kernel_modules():
    import fastct._kernels as kernels

    return [
        importlib.import_module(f"fastct._kernels.{info.name}")
        for info in pkgutil.iter_modules(kernels.__path__)
    ]


def test_kernels_take_their_options_from_a_profile_only():
    for module in _kernel_modules():
        source = Path(module.__file__).read_text()
        for line_no, line in enumerate(source.splitlines(), 1):
            code = line.split("#", 1)[0]
            where = f"{module.__name__}:{line_no}: {line.strip()}"
            assert not re.search(r"\b(njit|jit|vectorize|guvectorize|cfunc)\b", code), where
            assert not re.search(r"\b(cache|fastmath|nogil|error_model)\s*=", code), where
            if code.lstrip().startswith("@") and "kernel" in code:
                assert re.fullmatch(
                    r'\s*@kernel\("(\w+)"(, parallel=True)?(, inline=True)?\)\s*', code
                ), where
                assert re.search(r'"(\w+)"', code).group(1) in _config.PROFILES, where


def test_every_compiled_kernel_has_its_profile_options():
    from numba.core.registry import CPUDispatcher

    profiles = [dict(p) for p in _config.PROFILES.values()]
    seen = 0
    for module in _kernel_modules():
        for name, obj in vars(module).items():
            if not isinstance(obj, CPUDispatcher) or obj.py_func.__module__ != module.__name__:
                continue
            seen += 1
            options = {k: obj.targetoptions.get(k) for k in ("nogil", "fastmath")}
            options["cache"] = type(obj._cache).__name__ != "NullCache"
            assert options in profiles, f"{module.__name__}.{name}: {options}"
    assert seen > 50


def test_profiles_keep_fastmath_off():
    # Exact kernels match scipy / scikit-image bit for bit and NaN/inf must propagate.
    assert all(profile["fastmath"] is False for profile in _config.PROFILES.values())
    assert _config.compile_options("exact", parallel=True, inline=True) == {
        "nogil": True,
        "cache": True,
        "fastmath": False,
        "parallel": True,
        "inline": "always",
    }
    with pytest.raises(ValueError, match="profile must be one of"):
        _config.compile_options("fastmath")


def test_import_fastct_does_not_import_numba():
    code = "import sys, fastct; assert 'numba' not in sys.modules, 'numba imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- static typing ------------------------------------------------------------------------
def test_mypy_passes():
    """The CI type check: mypy with the project's configuration (pyproject.toml)."""
    pytest.importorskip("mypy")
    if not PYPROJECT.is_file():
        pytest.skip("no pyproject.toml (installed package)")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(PYPROJECT), "fastct"],
        cwd=PYPROJECT.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr

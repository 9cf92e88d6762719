"""fastct: compiled-kernel engine for 3-D medical volumes.

Public functions live at the top level; submodules are imported on first use so
``import fastct`` stays fast and compiles nothing.

>>> import fastct
>>> fastct.set_num_threads(2)
"""

from __future__ import annotations

import importlib as _importlib
from typing import Any as _Any

from ._config import (
    get_memory_budget,
    get_num_threads,
    set_memory_budget,
    set_num_threads,
    set_progress,
)

# The one version source: pyproject.toml reads it (setuptools dynamic version).
__version__ = "0.1.0"

# name -> submodule that defines it (loaded lazily). Keep __init__.pyi, the typed view of
# this module for IDEs and type checkers, in step (tests/test_package.py checks it).
_LAZY = {
    "open": "volume",
    "Archive": "volume",
    "Volume": "volume",
    "map_overlap": "streaming",
    "gaussian": "filters",
    "median": "filters",
    "unsharp_mask": "filters",
    "slic": "segmentation",
    "region_features": "features",
    "region_adjacency": "features",
    "FeatureTable": "features",
    "RegionAdjacency": "features",
    "register": "registration",
    "resample": "registration",
    "Registration": "registration",
    "RigidTransform": "transforms",
    "SimilarityTransform": "transforms",
    "load_transform": "transforms",
    "warmup": "_warmup",
}
_SUBMODULES = {
    "volume",
    "streaming",
    "datasets",
    "io",
    "cli",
    "features",
    "filters",
    "segmentation",
    "metrics",
    "registration",
    "transforms",
    "classify",
    "evaluation",
    "lungs",
    "pipeline",
    "report",
}

__all__ = [
    "__version__",
    "get_memory_budget",
    "get_num_threads",
    "set_memory_budget",
    "set_num_threads",
    "set_progress",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> _Any:
    if name in _LAZY:
        module = _importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fastct' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The public names and the module's dunders; not the helpers imported above.
    dunders = {name for name in globals() if name.startswith("__")}
    return sorted(dunders | set(__all__) | _SUBMODULES)

"""fastct: compiled-kernel engine for 3-D medical volumes.

Public functions live at the top level; submodules are imported on first use so
``import fastct`` stays fast and compiles nothing.

>>> import fastct
>>> fastct.set_num_threads(2)
"""

from __future__ import annotations

import importlib
from typing import Any

from ._config import (
    get_memory_budget,
    get_num_threads,
    set_memory_budget,
    set_num_threads,
    set_progress,
)

__version__ = "0.1.0"

# name -> submodule that defines it (loaded lazily).
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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fastct' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)

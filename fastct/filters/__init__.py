"""Smoothing and enhancement filters (in memory and streamed on archive volumes).

Each filter lives in its own private module; adding one is one import line here
(``__all__`` lists every public name imported below).
"""
# ruff: noqa: F401  (re-exports; __all__ is built from the imports)

from ._blob import hessian_blob
from ._gaussian import gaussian, unsharp_mask
from ._median import median

__all__ = sorted(name for name in dir() if not name.startswith("_"))

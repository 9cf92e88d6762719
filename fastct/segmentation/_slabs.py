"""Slab size and thread policy of the SLIC steps (shared by every other part).

``_SLAB_SHARE`` of the memory budget is one slab; kernel calls on fewer than
``_PARALLEL_MIN_VOXELS`` voxels run on one thread. Tests patch both here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from .. import _config

# Share of the memory budget (fastct.set_memory_budget) for one slab: input, mask,
# labels and features of a streamed slab, the features of an in-memory one. 0.75 of the
# 64 MiB default is 48 MiB, the slab size fastct used before the one budget; tests
# lower it to force small slabs.
_SLAB_SHARE = 0.75
# Kernel calls on fewer voxels run on one thread: a parallel region costs little on an
# idle machine but can stall for milliseconds when another process holds a core, and
# small slabs have too little work to gain from it (the labels never depend on it).
_PARALLEL_MIN_VOXELS = 1 << 17


def _slab_bytes() -> int:
    """Target bytes of one slab: ``_SLAB_SHARE`` of the memory budget."""
    return max(1, int(_config.get_memory_budget() * _SLAB_SHARE))


@contextlib.contextmanager
def _threads_for(n_voxels: int) -> Iterator[None]:
    """One thread for small kernel calls (inside ``kernel_threads``, which restores the
    caller's Numba setting at the end)."""
    if n_voxels >= _PARALLEL_MIN_VOXELS:
        yield
        return
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _offsets(counts: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets

"""Label -> value lookup painted onto a label volume."""

from __future__ import annotations

import numba
import numpy as np

from .._config import kernel


@kernel("exact", parallel=True)
def paint_lut(labels, lut, out):  # pragma: no cover - compiled
    """``out = lut[labels]`` with 0 for labels outside ``[0, len(lut))``, in place of
    NumPy's ``np.where(inside, lut[np.clip(labels, ...)], 0)`` (which holds an index
    array, a mask and a gathered copy of the volume at once)."""
    n = lut.shape[0]
    lab = labels.reshape(-1)
    res = out.reshape(-1)
    for i in numba.prange(lab.shape[0]):
        v = np.int64(lab[i])
        res[i] = lut[v] if 0 <= v < n else 0


def painted(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """A new float32 array ``lut[labels]`` (0 outside the table)."""
    out = np.empty(labels.shape, dtype=np.float32)
    paint_lut(np.ascontiguousarray(labels), np.ascontiguousarray(lut, dtype=np.float32), out)
    return out

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


@kernel("exact", parallel=True)
def max_lookup_by_label(labels, keys, lut_a, lut_b, n_labels, nparts):  # pragma: no cover
    """Per label value ``l > 0``: the maxima of ``lut_a[keys[v]]`` and ``lut_b[keys[v]]``
    over the voxels ``v`` with ``labels[v] == l`` (-inf for an absent label).

    What ``region_features(labels, lut_a[keys], properties=['max'])`` gives (the maximum
    of a set, in any order), without the two painted images; z thirds per thread, then
    the per-thread maxima combined.
    """
    nz, ny, nx = labels.shape
    part_a = np.full((nparts, n_labels), -np.inf, np.float32)
    part_b = np.full((nparts, n_labels), -np.inf, np.float32)
    for p in numba.prange(nparts):
        for z in range(p * nz // nparts, (p + 1) * nz // nparts):
            for y in range(ny):
                for x in range(nx):
                    lab = np.int64(labels[z, y, x])
                    if lab > 0:
                        k = keys[z, y, x]
                        a = lut_a[k]
                        b = lut_b[k]
                        if a > part_a[p, lab]:
                            part_a[p, lab] = a
                        if b > part_b[p, lab]:
                            part_b[p, lab] = b
    out_a = part_a[0].copy()
    out_b = part_b[0].copy()
    for p in range(1, nparts):
        for i in range(n_labels):
            out_a[i] = max(out_a[i], part_a[p, i])
            out_b[i] = max(out_b[i], part_b[p, i])
    return out_a, out_b

"""Box-sum kernel: the reference halo-needing kernel of the streaming engine.

Computes, for every core voxel, the sum of the ``(2r+1)``-wide window around it
(per-axis radius ``r``) from a halo-extended block, in float64 so that integer
input is summed exactly and the result cannot depend on the summation order.
"""

from __future__ import annotations

import numba
import numpy as np

from .._config import kernel


@kernel("exact", parallel=True)
def box_sum_3d(data, rz, ry, rx, out):  # pragma: no cover - compiled
    nz, ny, nx = out.shape
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                acc = 0.0
                for dz in range(2 * rz + 1):
                    for dy in range(2 * ry + 1):
                        for dx in range(2 * rx + 1):
                            acc += data[z + dz, y + dy, x + dx]
                out[z, y, x] = acc
    return out


def box_sum(data: np.ndarray, radius: tuple[int, ...]) -> np.ndarray:
    """Valid-mode box sum of a halo-extended block (2-D or 3-D)."""
    squeeze = data.ndim == 2
    if squeeze:
        data = data[None]
        radius = (0, *radius)
    core = tuple(n - 2 * r for n, r in zip(data.shape, radius))
    out = np.empty(core, dtype=np.float64)
    box_sum_3d(np.ascontiguousarray(data), radius[0], radius[1], radius[2], out)
    return out[0] if squeeze else out

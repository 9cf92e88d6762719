"""Hessian blob measure at selected voxels (see :mod:`fastct.filters._blob`).

The float32 arithmetic is NumPy's, operation by operation (no fastmath, constants
passed as float32, the same evaluation order), so the values equal those of the
vectorised block kernel bit for bit; only the cube root is left to NumPy.
"""

from __future__ import annotations

import numba
import numpy as np

from .._config import kernel


@kernel("exact", parallel=True)
def blob_neg_det(g, off, where, c, out):  # pragma: no cover - compiled
    """``out[v] = -det H`` where ``where[v]`` and ``trace H < 0 and det H < 0``, else 0.

    ``g``: the smoothed image (float32) holding the box ``where`` at offset ``off``
    with at least one voxel around it; ``c``: float32 ``(dz*dz, dy*dy, dx*dx,
    4*dz*dy, 4*dz*dx, 4*dy*dx)``.
    """
    nz, ny, nx = where.shape
    two = np.float32(2.0)
    zero = np.float32(0.0)
    for z in numba.prange(nz):
        gz = z + off[0]
        for y in range(ny):
            gy = y + off[1]
            for x in range(nx):
                out[z, y, x] = zero
                if not where[z, y, x]:
                    continue
                gx = x + off[2]
                g0 = g[gz, gy, gx]
                hzz = (g[gz + 1, gy, gx] - two * g0 + g[gz - 1, gy, gx]) / c[0]
                hyy = (g[gz, gy + 1, gx] - two * g0 + g[gz, gy - 1, gx]) / c[1]
                hxx = (g[gz, gy, gx + 1] - two * g0 + g[gz, gy, gx - 1]) / c[2]
                hzy = (
                    g[gz + 1, gy + 1, gx] - g[gz + 1, gy - 1, gx] - g[gz - 1, gy + 1, gx]
                    + g[gz - 1, gy - 1, gx]
                ) / c[3]  # fmt: skip
                hzx = (
                    g[gz + 1, gy, gx + 1] - g[gz + 1, gy, gx - 1] - g[gz - 1, gy, gx + 1]
                    + g[gz - 1, gy, gx - 1]
                ) / c[4]  # fmt: skip
                hyx = (
                    g[gz, gy + 1, gx + 1] - g[gz, gy + 1, gx - 1] - g[gz, gy - 1, gx + 1]
                    + g[gz, gy - 1, gx - 1]
                ) / c[5]  # fmt: skip
                det = (
                    hzz * (hyy * hxx - hyx * hyx)
                    - hzy * (hzy * hxx - hyx * hzx)
                    + hzx * (hzy * hyx - hyy * hzx)
                )
                trace = hzz + hyy + hxx
                if trace < zero and det < zero:
                    out[z, y, x] = -det
    return out

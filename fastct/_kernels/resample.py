"""Resampling kernel: a moving image evaluated on an output grid through an affine map.

Private: :func:`fastct.registration.resample` validates, builds the index-space affine
map and (order 3) the B-spline coefficients in NumPy, and hands C-contiguous arrays
here. Every output voxel is computed by one thread from its global index with a fixed
operation order, so results are the same bits at any thread count and for any split
of the output into blocks or of the input into regions.

Semantics are scipy.ndimage's ``mode='constant'``: a point whose continuous index lies
outside ``[0, n - 1]`` on any axis gets ``cval``; inside, neighbours past the edge are
mirrored (order 3, as scipy's spline prefilter assumes; orders 0 and 1 never need
them except with weight 0).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._config import kernel


@kernel("exact", inline=True)
def _mirror(i, n):  # pragma: no cover - compiled
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = abs(i) % period
    return period - i if i >= n else i


@kernel("exact", inline=True)
def _bspline3(t, w):  # pragma: no cover - compiled
    """Cubic B-spline weights of the 4 neighbours floor(u) - 1 .. floor(u) + 2, t = frac."""
    s = 1.0 - t
    t2 = t * t
    t3 = t2 * t
    w[0] = s * s * s / 6.0
    w[1] = (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0
    w[2] = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0
    w[3] = t3 / 6.0


@kernel("exact", parallel=True)
def resample_affine(
    src, out, mat, vec, out_start, src_start, full_shape, order, cval, is_int, lo, hi
):  # pragma: no cover - compiled
    """``out[k] = interp(src, mat @ (out_start + k) + vec)`` (indices of the full moving grid).

    Parameters
    ----------
    src : 3-D array
        The moving image (orders 0, 1) or its B-spline coefficients (order 3), or a
        region of it starting at global index ``src_start``.
    out : 3-D array
        Output block; its voxel ``k`` has global output index ``out_start + k``.
    mat, vec : float64 (3, 3), (3,)
        Output index -> moving continuous index.
    full_shape : int64 (3,)
        Shape of the whole moving image (bounds and mirroring are global).
    order : 0, 1 or 3
    cval : float64
    is_int, lo, hi : bool, float64, float64
        Integer output: round half away from zero and clip to ``[lo, hi]``.
    """
    nz, ny, nx = out.shape
    n0, n1, n2 = full_shape[0], full_shape[1], full_shape[2]
    s0, s1, s2 = src_start[0], src_start[1], src_start[2]
    for row in prange(nz * ny):
        kz = row // ny
        ky = row - kz * ny
        wz = np.empty(4)
        wy = np.empty(4)
        wx = np.empty(4)
        iz = np.empty(4, np.int64)
        iy = np.empty(4, np.int64)
        ix = np.empty(4, np.int64)
        gz = float(out_start[0] + kz)
        gy = float(out_start[1] + ky)
        for kx in range(nx):
            gx = float(out_start[2] + kx)
            u0 = mat[0, 0] * gz + mat[0, 1] * gy + mat[0, 2] * gx + vec[0]
            u1 = mat[1, 0] * gz + mat[1, 1] * gy + mat[1, 2] * gx + vec[1]
            u2 = mat[2, 0] * gz + mat[2, 1] * gy + mat[2, 2] * gx + vec[2]
            if not (
                u0 >= 0.0
                and u0 <= n0 - 1.0
                and u1 >= 0.0
                and u1 <= n1 - 1.0
                and u2 >= 0.0
                and u2 <= n2 - 1.0
            ):
                v = cval
            elif order == 0:
                a = min(int(math.floor(u0 + 0.5)), n0 - 1) - s0
                b = min(int(math.floor(u1 + 0.5)), n1 - 1) - s1
                c = min(int(math.floor(u2 + 0.5)), n2 - 1) - s2
                v = float(src[a, b, c])
            elif order == 1:
                f0 = math.floor(u0)
                f1 = math.floor(u1)
                f2 = math.floor(u2)
                t0 = u0 - f0
                t1 = u1 - f1
                t2 = u2 - f2
                a0 = int(f0)
                b0 = int(f1)
                c0 = int(f2)
                a1 = min(a0 + 1, n0 - 1) - s0
                b1 = min(b0 + 1, n1 - 1) - s1
                c1 = min(c0 + 1, n2 - 1) - s2
                a0 -= s0
                b0 -= s1
                c0 -= s2
                v00 = src[a0, b0, c0] * (1.0 - t2) + src[a0, b0, c1] * t2
                v01 = src[a0, b1, c0] * (1.0 - t2) + src[a0, b1, c1] * t2
                v10 = src[a1, b0, c0] * (1.0 - t2) + src[a1, b0, c1] * t2
                v11 = src[a1, b1, c0] * (1.0 - t2) + src[a1, b1, c1] * t2
                v0 = v00 * (1.0 - t1) + v01 * t1
                v1 = v10 * (1.0 - t1) + v11 * t1
                v = v0 * (1.0 - t0) + v1 * t0
            else:
                f0 = math.floor(u0)
                f1 = math.floor(u1)
                f2 = math.floor(u2)
                _bspline3(u0 - f0, wz)
                _bspline3(u1 - f1, wy)
                _bspline3(u2 - f2, wx)
                for j in range(4):
                    iz[j] = _mirror(int(f0) - 1 + j, n0) - s0
                    iy[j] = _mirror(int(f1) - 1 + j, n1) - s1
                    ix[j] = _mirror(int(f2) - 1 + j, n2) - s2
                v = 0.0
                for a in range(4):
                    if wz[a] == 0.0:
                        continue
                    va = 0.0
                    for b in range(4):
                        vb = 0.0
                        for c in range(4):
                            vb += wx[c] * src[iz[a], iy[b], ix[c]]
                        va += wy[b] * vb
                    v += wz[a] * va
            if is_int:
                r = math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)
                out[kz, ky, kx] = min(max(r, lo), hi)
            else:
                out[kz, ky, kx] = v

"""Registration metric kernels: value and analytic gradient in one parallel pass.

Private: :mod:`fastct.registration` builds the pyramid, the fixed samples and the
transform in NumPy and hands C-contiguous arrays here.

Each fixed sample ``i`` (a voxel of the fixed pyramid level, given by its flat index)
sits at physical point ``p_i = forig + idx * fsp``; the current transform maps it to
``q_i = A @ p_i + off`` in the moving image, whose trilinear interpolant gives the
value ``m_i`` and its analytic gradient ``g_i`` (per mm). Samples mapping outside the
moving grid extended by half a voxel are skipped (ITK's buffer test); within that half
voxel the nearest edge value is used. For a metric whose derivative with respect to
``m_i`` is ``w_i``, the derivative with respect to any transform parameter ``k`` with
``dq/dtheta_k = J_k @ (p - c) + e_k`` is ``sum_ab J_k[a, b] G[a, b] + e_k . h`` where
``G = sum_i w_i g_i (p_i - c)^T`` and ``h = sum_i w_i g_i``, so the kernels only
accumulate those 12 numbers per weight family, whatever the parametrisation.

Determinism: the samples are split into fixed blocks of ``block`` samples; each block
accumulates into its own row of partial sums with a fixed order, and the caller adds
the rows in block order. Results are the same bits at any thread count.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .._config import NJIT_OPTIONS

# Accumulator layout of :func:`stats_pass`.
N_STATS = 7  # count, sf, sm, sff, smm, sfm, sum (m - f)^2
N_GRAD = 12  # G (3 x 3, row major) then h (3)


@numba.njit(inline="always", **NJIT_OPTIONS)
def _axis(u, n):  # pragma: no cover - compiled
    """Lower neighbour and fraction along one axis (u inside [0, n - 1])."""
    if n == 1:
        return 0, 0, 0.0
    f = math.floor(u)
    i0 = int(f)
    if i0 >= n - 1:
        i0 = n - 2
    return i0, i0 + 1, u - i0


@numba.njit(inline="always", **NJIT_OPTIONS)
def _trilinear_grad(img, u0, u1, u2):  # pragma: no cover - compiled
    """Value and derivatives (per index unit) of the trilinear interpolant; inside only."""
    n0, n1, n2 = img.shape
    k0 = u0 >= 0.0 and u0 <= n0 - 1.0
    k1 = u1 >= 0.0 and u1 <= n1 - 1.0
    k2 = u2 >= 0.0 and u2 <= n2 - 1.0
    u0 = min(max(u0, 0.0), n0 - 1.0)
    u1 = min(max(u1, 0.0), n1 - 1.0)
    u2 = min(max(u2, 0.0), n2 - 1.0)
    a0, a1, t0 = _axis(u0, n0)
    b0, b1, t1 = _axis(u1, n1)
    c0, c1, t2 = _axis(u2, n2)
    v000 = np.float64(img[a0, b0, c0])
    v001 = np.float64(img[a0, b0, c1])
    v010 = np.float64(img[a0, b1, c0])
    v011 = np.float64(img[a0, b1, c1])
    v100 = np.float64(img[a1, b0, c0])
    v101 = np.float64(img[a1, b0, c1])
    v110 = np.float64(img[a1, b1, c0])
    v111 = np.float64(img[a1, b1, c1])
    s2 = 1.0 - t2
    e00 = v000 * s2 + v001 * t2
    e01 = v010 * s2 + v011 * t2
    e10 = v100 * s2 + v101 * t2
    e11 = v110 * s2 + v111 * t2
    s1 = 1.0 - t1
    f0 = e00 * s1 + e01 * t1
    f1 = e10 * s1 + e11 * t1
    s0 = 1.0 - t0
    v = f0 * s0 + f1 * t0
    d0 = f1 - f0
    d1 = s0 * (e01 - e00) + t0 * (e11 - e10)
    d2 = s0 * (s1 * (v001 - v000) + t1 * (v011 - v010)) + t0 * (
        s1 * (v101 - v100) + t1 * (v111 - v110)
    )
    # Clamped (within half a voxel outside the grid): constant along that axis.
    if not k0:
        d0 = 0.0
    if not k1:
        d1 = 0.0
    if not k2:
        d2 = 0.0
    return v, d0, d1, d2


@numba.njit(inline="always", **NJIT_OPTIONS)
def _sample(i, sidx, use_all, fshape, fsp, forig):  # pragma: no cover - compiled
    idx = i if use_all else sidx[i]
    plane = fshape[1] * fshape[2]
    z = idx // plane
    r = idx - z * plane
    y = r // fshape[2]
    x = r - y * fshape[2]
    return idx, forig[0] + z * fsp[0], forig[1] + y * fsp[1], forig[2] + x * fsp[2]


@numba.njit(inline="always", **NJIT_OPTIONS)
def _map(p0, p1, p2, a, off, moving, msp, morig):  # pragma: no cover - compiled
    """Moving continuous index of a fixed point; inside flag."""
    q0 = a[0, 0] * p0 + a[0, 1] * p1 + a[0, 2] * p2 + off[0]
    q1 = a[1, 0] * p0 + a[1, 1] * p1 + a[1, 2] * p2 + off[1]
    q2 = a[2, 0] * p0 + a[2, 1] * p1 + a[2, 2] * p2 + off[2]
    u0 = (q0 - morig[0]) / msp[0]
    u1 = (q1 - morig[1]) / msp[1]
    u2 = (q2 - morig[2]) / msp[2]
    n0, n1, n2 = moving.shape
    # ITK's buffer test: the grid extended by half a voxel (values clamped there).
    inside = (
        u0 >= -0.5
        and u0 <= n0 - 0.5
        and u1 >= -0.5
        and u1 <= n1 - 0.5
        and u2 >= -0.5
        and u2 <= n2 - 0.5
    )
    return inside, u0, u1, u2


@numba.njit(inline="always", **NJIT_OPTIONS)
def _accumulate(acc, k, w, g0, g1, g2, d0, d1, d2):  # pragma: no cover - compiled
    wg0 = w * g0
    wg1 = w * g1
    wg2 = w * g2
    acc[k + 0] += wg0 * d0
    acc[k + 1] += wg0 * d1
    acc[k + 2] += wg0 * d2
    acc[k + 3] += wg1 * d0
    acc[k + 4] += wg1 * d1
    acc[k + 5] += wg1 * d2
    acc[k + 6] += wg2 * d0
    acc[k + 7] += wg2 * d1
    acc[k + 8] += wg2 * d2
    acc[k + 9] += wg0
    acc[k + 10] += wg1
    acc[k + 11] += wg2


@numba.njit(parallel=True, **NJIT_OPTIONS)
def stats_pass(
    fixed, sidx, n, use_all, fshape, fsp, forig, a, off, center, moving, msp, morig, block, acc
):  # pragma: no cover - compiled
    """Sums for MSE and NCC and their gradients, one row of ``acc`` per block.

    ``acc[b]`` holds ``N_STATS`` sums then three gradient families of ``N_GRAD``
    numbers, weighted by ``f_i``, ``m_i`` and 1.
    """
    nblocks = (n + block - 1) // block
    for b in prange(nblocks):
        row = acc[b]
        row[:] = 0.0
        for i in range(b * block, min(n, (b + 1) * block)):
            idx, p0, p1, p2 = _sample(i, sidx, use_all, fshape, fsp, forig)
            inside, u0, u1, u2 = _map(p0, p1, p2, a, off, moving, msp, morig)
            if not inside:
                continue
            m, d0, d1, d2 = _trilinear_grad(moving, u0, u1, u2)
            f = np.float64(fixed[idx])
            g0 = d0 / msp[0]
            g1 = d1 / msp[1]
            g2 = d2 / msp[2]
            r0 = p0 - center[0]
            r1 = p1 - center[1]
            r2 = p2 - center[2]
            diff = m - f
            row[0] += 1.0
            row[1] += f
            row[2] += m
            row[3] += f * f
            row[4] += m * m
            row[5] += f * m
            row[6] += diff * diff
            _accumulate(row, N_STATS, f, g0, g1, g2, r0, r1, r2)
            _accumulate(row, N_STATS + N_GRAD, m, g0, g1, g2, r0, r1, r2)
            _accumulate(row, N_STATS + 2 * N_GRAD, 1.0, g0, g1, g2, r0, r1, r2)


@numba.njit(inline="always", **NJIT_OPTIONS)
def _bspline3(x):  # pragma: no cover - compiled
    x = abs(x)
    if x < 1.0:
        return (4.0 - 6.0 * x * x + 3.0 * x * x * x) / 6.0
    if x < 2.0:
        t = 2.0 - x
        return t * t * t / 6.0
    return 0.0


@numba.njit(inline="always", **NJIT_OPTIONS)
def _bspline3_deriv(x):  # pragma: no cover - compiled
    ax = abs(x)
    if ax < 1.0:
        d = -2.0 * ax + 1.5 * ax * ax
    elif ax < 2.0:
        t = 2.0 - ax
        d = -0.5 * t * t
    else:
        return 0.0
    return d if x >= 0 else -d


@numba.njit(inline="always", **NJIT_OPTIONS)
def _bin(value, bin_size, norm_min, nbins):  # pragma: no cover - compiled
    term = value / bin_size - norm_min
    k = int(math.floor(term))
    if k < 2:
        k = 2
    elif k > nbins - 3:
        k = nbins - 3
    return k, term


@numba.njit(parallel=True, **NJIT_OPTIONS)
def mi_pass1(
    fixed, sidx, n, use_all, fshape, fsp, forig, a, off, moving, msp, morig,
    fbs, fmin, mbs, mmin, nbins, block, hist, fbin, mterm, grad,
):  # pragma: no cover - compiled  # fmt: skip
    """Mattes joint histogram (zero-order on fixed, cubic B-spline on moving), per block.

    Also stores per sample its fixed bin (-1 when it maps outside the moving image),
    the moving Parzen term and the moving gradient (per mm) for :func:`mi_pass2`.
    """
    nblocks = (n + block - 1) // block
    for b in prange(nblocks):
        h = hist[b]
        h[:, :] = 0.0
        for i in range(b * block, min(n, (b + 1) * block)):
            idx, p0, p1, p2 = _sample(i, sidx, use_all, fshape, fsp, forig)
            inside, u0, u1, u2 = _map(p0, p1, p2, a, off, moving, msp, morig)
            if not inside:
                fbin[i] = -1
                continue
            m, d0, d1, d2 = _trilinear_grad(moving, u0, u1, u2)
            lf, _ = _bin(np.float64(fixed[idx]), fbs, fmin, nbins)
            km, term = _bin(m, mbs, mmin, nbins)
            fbin[i] = lf
            mterm[i] = term
            grad[i, 0] = d0 / msp[0]
            grad[i, 1] = d1 / msp[1]
            grad[i, 2] = d2 / msp[2]
            for k in range(km - 1, km + 3):
                h[lf, k] += _bspline3(k - term)


@numba.njit(parallel=True, **NJIT_OPTIONS)
def mi_pass2(
    sidx, n, use_all, fshape, fsp, forig, center, fbin, mterm, grad, logratio, block, acc
):  # pragma: no cover - compiled
    """Gradient sums of Mattes MI: weight ``sum_k B3'(k - term) log(p(l, k) / p_m(k))``."""
    nbins = logratio.shape[1]
    nblocks = (n + block - 1) // block
    for b in prange(nblocks):
        row = acc[b]
        row[:] = 0.0
        for i in range(b * block, min(n, (b + 1) * block)):
            lf = fbin[i]
            if lf < 0:
                continue
            term = mterm[i]
            km = int(math.floor(term))
            if km < 2:
                km = 2
            elif km > nbins - 3:
                km = nbins - 3
            w = 0.0
            for k in range(km - 1, km + 3):
                w += _bspline3_deriv(k - term) * logratio[lf, k]
            _, p0, p1, p2 = _sample(i, sidx, use_all, fshape, fsp, forig)
            _accumulate(
                row, 0, w, grad[i, 0], grad[i, 1], grad[i, 2],
                p0 - center[0], p1 - center[1], p2 - center[2],
            )  # fmt: skip

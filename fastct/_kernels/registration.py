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
def _start(i, use_all, fshape):  # pragma: no cover - compiled
    """Grid position (z, y, x) of flat index ``i`` (full sampling), else zeros."""
    if not use_all:
        return 0, 0, 0
    plane = fshape[1] * fshape[2]
    z = i // plane
    r = i - z * plane
    y = r // fshape[2]
    return z, y, r - y * fshape[2]


@numba.njit(inline="always", **NJIT_OPTIONS)
def _point(i, i0, z, y, x, use_all, fshape, fsp, forig, pts):  # pragma: no cover - compiled
    """Physical point of sample ``i`` and the advanced grid position (full sampling)."""
    if use_all:
        if i > i0:
            x += 1
            if x == fshape[2]:
                x = 0
                y += 1
                if y == fshape[1]:
                    y = 0
                    z += 1
        return z, y, x, forig[0] + z * fsp[0], forig[1] + y * fsp[1], forig[2] + x * fsp[2]
    return z, y, x, pts[i, 0], pts[i, 1], pts[i, 2]


@numba.njit(inline="always", **NJIT_OPTIONS)
def _map(p0, p1, p2, ia, ioff, shape):  # pragma: no cover - compiled
    """Moving continuous index ``ia @ p + ioff`` of a fixed point, and the inside flag."""
    u0 = ia[0, 0] * p0 + ia[0, 1] * p1 + ia[0, 2] * p2 + ioff[0]
    u1 = ia[1, 0] * p0 + ia[1, 1] * p1 + ia[1, 2] * p2 + ioff[1]
    u2 = ia[2, 0] * p0 + ia[2, 1] * p1 + ia[2, 2] * p2 + ioff[2]
    n0, n1, n2 = shape
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


@numba.njit(parallel=True, **NJIT_OPTIONS)
def stats_pass(
    fixed, pts, n, use_all, fshape, fsp, forig, ia, ioff, rsp, center, moving, block, acc
):  # pragma: no cover - compiled
    """Sums for MSE and NCC and their gradients, one row of ``acc`` per block.

    ``fixed[i]`` is sample ``i``'s fixed value; its point is ``pts[i]`` or, with
    ``use_all``, the ``i``-th voxel of the ``fshape`` grid. The moving continuous index
    is ``ia @ p + ioff``; ``rsp`` is 1 / moving spacing. ``acc[b]`` holds ``N_STATS``
    sums then three gradient families of ``N_GRAD`` numbers, weighted by ``f_i``,
    ``m_i`` and 1. Local scalar accumulators, stored once per block.
    """
    nblocks = (n + block - 1) // block
    shape = moving.shape
    for b in prange(nblocks):
        i0 = b * block
        z, y, x = _start(i0, use_all, fshape)
        cnt = 0.0
        sf = 0.0
        sm = 0.0
        sff = 0.0
        smm = 0.0
        sfm = 0.0
        sdd = 0.0
        a_fg0r0 = 0.0
        a_fg0r1 = 0.0
        a_fg0r2 = 0.0
        a_fg1r0 = 0.0
        a_fg1r1 = 0.0
        a_fg1r2 = 0.0
        a_fg2r0 = 0.0
        a_fg2r1 = 0.0
        a_fg2r2 = 0.0
        a_fg0 = 0.0
        a_fg1 = 0.0
        a_fg2 = 0.0
        a_mg0r0 = 0.0
        a_mg0r1 = 0.0
        a_mg0r2 = 0.0
        a_mg1r0 = 0.0
        a_mg1r1 = 0.0
        a_mg1r2 = 0.0
        a_mg2r0 = 0.0
        a_mg2r1 = 0.0
        a_mg2r2 = 0.0
        a_mg0 = 0.0
        a_mg1 = 0.0
        a_mg2 = 0.0
        a_1g0r0 = 0.0
        a_1g0r1 = 0.0
        a_1g0r2 = 0.0
        a_1g1r0 = 0.0
        a_1g1r1 = 0.0
        a_1g1r2 = 0.0
        a_1g2r0 = 0.0
        a_1g2r1 = 0.0
        a_1g2r2 = 0.0
        a_1g0 = 0.0
        a_1g1 = 0.0
        a_1g2 = 0.0
        for i in range(i0, min(n, i0 + block)):
            z, y, x, p0, p1, p2 = _point(i, i0, z, y, x, use_all, fshape, fsp, forig, pts)
            inside, u0, u1, u2 = _map(p0, p1, p2, ia, ioff, shape)
            if not inside:
                continue
            m, d0, d1, d2 = _trilinear_grad(moving, u0, u1, u2)
            f = np.float64(fixed[i])
            g0 = d0 * rsp[0]
            g1 = d1 * rsp[1]
            g2 = d2 * rsp[2]
            r0 = p0 - center[0]
            r1 = p1 - center[1]
            r2 = p2 - center[2]
            diff = m - f
            cnt += 1.0
            sf += f
            sm += m
            sff += f * f
            smm += m * m
            sfm += f * m
            sdd += diff * diff
            fg0 = f * g0
            fg1 = f * g1
            fg2 = f * g2
            a_fg0r0 += fg0 * r0
            a_fg0r1 += fg0 * r1
            a_fg0r2 += fg0 * r2
            a_fg1r0 += fg1 * r0
            a_fg1r1 += fg1 * r1
            a_fg1r2 += fg1 * r2
            a_fg2r0 += fg2 * r0
            a_fg2r1 += fg2 * r1
            a_fg2r2 += fg2 * r2
            a_fg0 += fg0
            a_fg1 += fg1
            a_fg2 += fg2
            mg0 = m * g0
            mg1 = m * g1
            mg2 = m * g2
            a_mg0r0 += mg0 * r0
            a_mg0r1 += mg0 * r1
            a_mg0r2 += mg0 * r2
            a_mg1r0 += mg1 * r0
            a_mg1r1 += mg1 * r1
            a_mg1r2 += mg1 * r2
            a_mg2r0 += mg2 * r0
            a_mg2r1 += mg2 * r1
            a_mg2r2 += mg2 * r2
            a_mg0 += mg0
            a_mg1 += mg1
            a_mg2 += mg2
            a_1g0r0 += g0 * r0
            a_1g0r1 += g0 * r1
            a_1g0r2 += g0 * r2
            a_1g1r0 += g1 * r0
            a_1g1r1 += g1 * r1
            a_1g1r2 += g1 * r2
            a_1g2r0 += g2 * r0
            a_1g2r1 += g2 * r1
            a_1g2r2 += g2 * r2
            a_1g0 += g0
            a_1g1 += g1
            a_1g2 += g2
        row = acc[b]
        row[0] = cnt
        row[1] = sf
        row[2] = sm
        row[3] = sff
        row[4] = smm
        row[5] = sfm
        row[6] = sdd
        row[7] = a_fg0r0
        row[8] = a_fg0r1
        row[9] = a_fg0r2
        row[10] = a_fg1r0
        row[11] = a_fg1r1
        row[12] = a_fg1r2
        row[13] = a_fg2r0
        row[14] = a_fg2r1
        row[15] = a_fg2r2
        row[16] = a_fg0
        row[17] = a_fg1
        row[18] = a_fg2
        row[19] = a_mg0r0
        row[20] = a_mg0r1
        row[21] = a_mg0r2
        row[22] = a_mg1r0
        row[23] = a_mg1r1
        row[24] = a_mg1r2
        row[25] = a_mg2r0
        row[26] = a_mg2r1
        row[27] = a_mg2r2
        row[28] = a_mg0
        row[29] = a_mg1
        row[30] = a_mg2
        row[31] = a_1g0r0
        row[32] = a_1g0r1
        row[33] = a_1g0r2
        row[34] = a_1g1r0
        row[35] = a_1g1r1
        row[36] = a_1g1r2
        row[37] = a_1g2r0
        row[38] = a_1g2r1
        row[39] = a_1g2r2
        row[40] = a_1g0
        row[41] = a_1g1
        row[42] = a_1g2


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
    fixbin, pts, n, use_all, fshape, fsp, forig, ia, ioff, rsp, moving,
    mbs, mmin, nbins, block, hist, fbin, mterm, grad,
):  # pragma: no cover - compiled  # fmt: skip
    """Mattes joint histogram (zero-order on fixed, cubic B-spline on moving), per block.

    ``fixbin[i]`` is sample ``i``'s fixed bin (constant per level). Also stores per
    sample its bin again, or -1 when it maps outside the moving image (``fbin``), the
    moving Parzen term and the moving gradient (per mm) for :func:`mi_pass2`.
    """
    nblocks = (n + block - 1) // block
    shape = moving.shape
    for b in prange(nblocks):
        h = hist[b]
        h[:, :] = 0.0
        i0 = b * block
        z, y, x = _start(i0, use_all, fshape)
        for i in range(i0, min(n, i0 + block)):
            z, y, x, p0, p1, p2 = _point(i, i0, z, y, x, use_all, fshape, fsp, forig, pts)
            inside, u0, u1, u2 = _map(p0, p1, p2, ia, ioff, shape)
            if not inside:
                fbin[i] = -1
                continue
            m, d0, d1, d2 = _trilinear_grad(moving, u0, u1, u2)
            lf = fixbin[i]
            km, term = _bin(m, mbs, mmin, nbins)
            fbin[i] = lf
            mterm[i] = term
            grad[i, 0] = d0 * rsp[0]
            grad[i, 1] = d1 * rsp[1]
            grad[i, 2] = d2 * rsp[2]
            for k in range(km - 1, km + 3):
                h[lf, k] += _bspline3(k - term)


@numba.njit(parallel=True, **NJIT_OPTIONS)
def mi_pass2(
    pts, n, use_all, fshape, fsp, forig, center, fbin, mterm, grad, logratio, block, acc
):  # pragma: no cover - compiled
    """Gradient sums of Mattes MI: weight ``sum_k B3'(k - term) log(p(l, k) / p_m(k))``."""
    nbins = logratio.shape[1]
    nblocks = (n + block - 1) // block
    for b in prange(nblocks):
        i0 = b * block
        z, y, x = _start(i0, use_all, fshape)
        a_g0r0 = 0.0
        a_g0r1 = 0.0
        a_g0r2 = 0.0
        a_g1r0 = 0.0
        a_g1r1 = 0.0
        a_g1r2 = 0.0
        a_g2r0 = 0.0
        a_g2r1 = 0.0
        a_g2r2 = 0.0
        a_g0 = 0.0
        a_g1 = 0.0
        a_g2 = 0.0
        for i in range(i0, min(n, i0 + block)):
            z, y, x, p0, p1, p2 = _point(i, i0, z, y, x, use_all, fshape, fsp, forig, pts)
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
            r0 = p0 - center[0]
            r1 = p1 - center[1]
            r2 = p2 - center[2]
            wg0 = w * grad[i, 0]
            wg1 = w * grad[i, 1]
            wg2 = w * grad[i, 2]
            a_g0r0 += wg0 * r0
            a_g0r1 += wg0 * r1
            a_g0r2 += wg0 * r2
            a_g1r0 += wg1 * r0
            a_g1r1 += wg1 * r1
            a_g1r2 += wg1 * r2
            a_g2r0 += wg2 * r0
            a_g2r1 += wg2 * r1
            a_g2r2 += wg2 * r2
            a_g0 += wg0
            a_g1 += wg1
            a_g2 += wg2
        row = acc[b]
        row[0] = a_g0r0
        row[1] = a_g0r1
        row[2] = a_g0r2
        row[3] = a_g1r0
        row[4] = a_g1r1
        row[5] = a_g1r2
        row[6] = a_g2r0
        row[7] = a_g2r1
        row[8] = a_g2r2
        row[9] = a_g0
        row[10] = a_g1
        row[11] = a_g2

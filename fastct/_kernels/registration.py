"""Registration metric kernels: value and analytic gradient in one parallel pass.

Private: :mod:`fastct.registration` builds the pyramid, the fixed samples and the
transform in NumPy and hands C-contiguous arrays here.

Each fixed sample ``i`` (a voxel of the fixed pyramid level, given by its flat index)
sits at physical point ``p_i = forig + idx * fsp``; the current transform maps it to
``q_i = A @ p_i + off`` in the moving image, whose trilinear interpolant gives the
value ``m_i`` and its analytic gradient ``g_i`` (per mm). Samples mapping outside the
moving grid extended by half a voxel are skipped (ITK's buffer test); within that half
voxel the nearest edge value is used.

Image directions: the kernels work on axis-aligned "local" grids. ``p_i`` is the fixed
sample's local point; the caller (``fastct.registration._levels._Level``) composes the
fixed and moving direction cosines into ``ia``/``ioff`` (local fixed point -> moving
continuous index) and ``wo`` (the centred point ``w`` expressed in the moving image's
local frame), so ``g`` and ``w`` below are local-frame vectors; the caller rotates the
accumulated numbers back to physical space (``w x g`` picks up ``det`` of the moving
direction).

Gradient bookkeeping: for a rigid or similarity transform every parameter ``k`` moves
the mapped point by ``dq/dtheta_k = a_k x w + s_k w + e_k`` with ``w = A (p - c)`` (the
centred point after rotation and scale; ``w = q - (off + A c)``, three multiply-adds
from the moving index): ``a_k`` is the rotation axis of ``dA/dtheta_k A^-1``, ``s_k``
its isotropic scale part and ``e_k`` the translation. For a metric whose derivative
with respect to ``m_i`` is ``W_i``, the derivative with respect to ``theta_k`` is
``a_k . sum_i W_i (w_i x g_i) + e_k . sum_i W_i g_i + s_k sum_i W_i (g_i . w_i)``: the
kernels only accumulate those 7 numbers (``N_V``) per weight family, whatever the
parametrisation, and the caller projects them (``fastct.registration._model._Model``).

Determinism: the samples are split into fixed blocks (their size depends on the
number of samples only); each block accumulates into its own slab of partial sums in
sample order, and the caller adds the slabs in block order. Results are the same bits
at any thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._config import kernel

# Accumulator layout of :func:`stats_pass`.
N_STATS = 7  # count, sf, sm, sff, smm, sfm, sum (m - f)^2
N_V = 7  # w x g (3), g (3), g . w (1): see the module notes
N_VPAD = 8  # N_V padded (one cache-friendly group of 8 doubles per Mattes bin)


@kernel("exact", inline=True)
def _axis(u, n):  # pragma: no cover - compiled
    """Lower neighbour and fraction along one axis (u inside [0, n - 1])."""
    if n == 1:
        return 0, 0, 0.0
    f = math.floor(u)
    i0 = int(f)
    if i0 >= n - 1:
        i0 = n - 2
    return i0, i0 + 1, u - i0


@kernel("exact", inline=True)
def _trilinear_grad(img, u0, u1, u2):  # pragma: no cover - compiled
    """Value and derivatives (per index unit) of the trilinear interpolant; inside only."""
    n0, n1, n2 = img.shape
    if (
        u0 >= 0.0 and u0 < n0 - 1.0 and u1 >= 0.0 and u1 < n1 - 1.0 and u2 >= 0.0 and u2 < n2 - 1.0
    ):  # interior (almost every sample): no clamping, same numbers as below
        a0 = int(u0)
        b0 = int(u1)
        c0 = int(u2)
        return _cell(img, a0, a0 + 1, b0, b0 + 1, c0, c0 + 1, u0 - a0, u1 - b0, u2 - c0)
    k0 = u0 >= 0.0 and u0 <= n0 - 1.0
    k1 = u1 >= 0.0 and u1 <= n1 - 1.0
    k2 = u2 >= 0.0 and u2 <= n2 - 1.0
    u0 = min(max(u0, 0.0), n0 - 1.0)
    u1 = min(max(u1, 0.0), n1 - 1.0)
    u2 = min(max(u2, 0.0), n2 - 1.0)
    a0, a1, t0 = _axis(u0, n0)
    b0, b1, t1 = _axis(u1, n1)
    c0, c1, t2 = _axis(u2, n2)
    v, d0, d1, d2 = _cell(img, a0, a1, b0, b1, c0, c1, t0, t1, t2)
    # Clamped (within half a voxel outside the grid): constant along that axis.
    if not k0:
        d0 = 0.0
    if not k1:
        d1 = 0.0
    if not k2:
        d2 = 0.0
    return v, d0, d1, d2


@kernel("exact", inline=True)
def _cell(img, a0, a1, b0, b1, c0, c1, t0, t1, t2):  # pragma: no cover - compiled
    """Trilinear value and derivatives (per index unit) inside one grid cell."""
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
    return v, d0, d1, d2


@kernel("exact", inline=True)
def _start(i, use_all, fshape):  # pragma: no cover - compiled
    """Grid position (z, y, x) of flat index ``i`` (full sampling), else zeros."""
    if not use_all:
        return 0, 0, 0
    plane = fshape[1] * fshape[2]
    z = i // plane
    r = i - z * plane
    y = r // fshape[2]
    return z, y, r - y * fshape[2]


@kernel("exact", inline=True)
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


@kernel("exact", inline=True)
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


@kernel("exact", inline=True)
def _vecs(u0, u1, u2, e0, e1, e2, rsp, msp, wo):  # pragma: no cover - compiled
    """Gradient per mm ``g`` and the 7 numbers ``w x g, g, g . w`` of one sample."""
    g0 = e0 * rsp[0]
    g1 = e1 * rsp[1]
    g2 = e2 * rsp[2]
    w0 = u0 * msp[0] + wo[0]
    w1 = u1 * msp[1] + wo[1]
    w2 = u2 * msp[2] + wo[2]
    x0 = w1 * g2 - w2 * g1
    x1 = w2 * g0 - w0 * g2
    x2 = w0 * g1 - w1 * g0
    return x0, x1, x2, g0, g1, g2, g0 * w0 + g1 * w1 + g2 * w2


@kernel("exact", parallel=True)
def stats_pass(
    fixed, pts, n, use_all, fshape, fsp, forig, ia, ioff, rsp, msp, wo, moving, block, acc
):  # pragma: no cover - compiled
    """Sums for MSE and NCC and their gradients, one row of ``acc`` per block.

    ``fixed[i]`` is sample ``i``'s fixed value; its point is ``pts[i]`` or, with
    ``use_all``, the ``i``-th voxel of the ``fshape`` grid. The moving continuous index
    is ``ia @ p + ioff``; ``rsp`` is 1 / moving spacing, ``msp`` the moving spacing and
    ``wo`` the offset with ``w = u * msp + wo`` (module notes). ``acc[b]`` holds
    ``N_STATS`` sums then three families of ``N_V`` numbers weighted by ``f_i``,
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
        f0 = 0.0
        f1 = 0.0
        f2 = 0.0
        f3 = 0.0
        f4 = 0.0
        f5 = 0.0
        f6 = 0.0
        m0 = 0.0
        m1 = 0.0
        m2 = 0.0
        m3 = 0.0
        m4 = 0.0
        m5 = 0.0
        m6 = 0.0
        o0 = 0.0
        o1 = 0.0
        o2 = 0.0
        o3 = 0.0
        o4 = 0.0
        o5 = 0.0
        o6 = 0.0
        for i in range(i0, min(n, i0 + block)):
            z, y, x, p0, p1, p2 = _point(i, i0, z, y, x, use_all, fshape, fsp, forig, pts)
            inside, u0, u1, u2 = _map(p0, p1, p2, ia, ioff, shape)
            if not inside:
                continue
            m, e0, e1, e2 = _trilinear_grad(moving, u0, u1, u2)
            v0, v1, v2, v3, v4, v5, v6 = _vecs(u0, u1, u2, e0, e1, e2, rsp, msp, wo)
            f = np.float64(fixed[i])
            diff = m - f
            cnt += 1.0
            sf += f
            sm += m
            sff += f * f
            smm += m * m
            sfm += f * m
            sdd += diff * diff
            f0 += f * v0
            f1 += f * v1
            f2 += f * v2
            f3 += f * v3
            f4 += f * v4
            f5 += f * v5
            f6 += f * v6
            m0 += m * v0
            m1 += m * v1
            m2 += m * v2
            m3 += m * v3
            m4 += m * v4
            m5 += m * v5
            m6 += m * v6
            o0 += v0
            o1 += v1
            o2 += v2
            o3 += v3
            o4 += v4
            o5 += v5
            o6 += v6
        row = acc[b]
        row[0] = cnt
        row[1] = sf
        row[2] = sm
        row[3] = sff
        row[4] = smm
        row[5] = sfm
        row[6] = sdd
        row[7] = f0
        row[8] = f1
        row[9] = f2
        row[10] = f3
        row[11] = f4
        row[12] = f5
        row[13] = f6
        row[14] = m0
        row[15] = m1
        row[16] = m2
        row[17] = m3
        row[18] = m4
        row[19] = m5
        row[20] = m6
        row[21] = o0
        row[22] = o1
        row[23] = o2
        row[24] = o3
        row[25] = o4
        row[26] = o5
        row[27] = o6


# Cubic B-spline Parzen window of a moving term ``term = km + t`` (``km`` the clamped
# floor, ``t`` in [0, 1]): the weights ``B3(k - term)`` of bins ``k = km - 1 .. km + 2``
# are the cubics ``PARZEN_W @ (1, t, t^2, t^3)`` and their derivatives ``B3'(k - term)``
# the quadratics ``PARZEN_D @ (1, t, t^2)``. :func:`mi_pass` accumulates the powers of
# ``t`` per (fixed bin, km) and the caller expands them into bins (fewer writes).
PARZEN_W = (
    np.array(
        [[1.0, -3.0, 3.0, -1.0], [4.0, 0.0, -6.0, 3.0], [1.0, 3.0, 3.0, -3.0], [0.0, 0.0, 0.0, 1.0]]
    )
    / 6.0
)
PARZEN_D = np.array([[0.5, -1.0, 0.5], [0.0, 2.0, -1.5], [-0.5, -1.0, 1.5], [0.0, 0.0, -0.5]])
N_POW = 4  # powers of t accumulated for the histogram (1, t, t^2, t^3)
N_DPOW = 3  # powers of t accumulated for the derivative (1, t, t^2)


@kernel("exact", inline=True)
def _acc_bin(dd, o, c, v0, v1, v2, v3, v4, v5, v6):  # pragma: no cover - compiled
    dd[o] += c * v0
    dd[o + 1] += c * v1
    dd[o + 2] += c * v2
    dd[o + 3] += c * v3
    dd[o + 4] += c * v4
    dd[o + 5] += c * v5
    dd[o + 6] += c * v6


@kernel("exact", parallel=True)
def mi_pass(
    fixbin, pts, n, use_all, fshape, fsp, forig, ia, ioff, rsp, msp, wo, moving,
    mbs, mmin, nbins, block, hist, dhist,
):  # pragma: no cover - compiled  # fmt: skip
    """Mattes joint histogram and its derivative in one pass, one slab per block.

    Every valid sample ``i`` of block ``b`` has a fixed bin ``l = fixbin[i]``
    (zero-order window) and a moving term ``term_i = m_i / mbs - mmin = km + t``
    (``km`` clamped to ``[2, nbins - 3]``). ``hist[b]`` (``nbins * nbins * N_POW``)
    accumulates ``t^p`` at ``(l, km, p)`` and ``dhist[b]`` (``nbins * nbins * N_DPOW *
    N_VPAD``) accumulates ``t^p`` times the sample's ``N_V`` gradient numbers (module
    notes) at ``(l, km, p)``; the caller expands them with ``PARZEN_W`` / ``PARZEN_D``
    into the joint histogram ``sum_i B3(k - term_i)`` and its derivative ``sum_i
    B3'(k - term_i) v_i``. The metric gradient is ``sum_lk log(p(l, k) / p_m(k)) *
    derivative[l, k]``, projected on the parameters: one pass over the samples per
    evaluation, as ITK's Mattes metric for low-dimensional transforms.
    """
    nblocks = (n + block - 1) // block
    shape = moving.shape
    for b in prange(nblocks):
        h = hist[b]
        dd = dhist[b]
        h[:] = 0.0
        dd[:] = 0.0
        i0 = b * block
        z, y, x = _start(i0, use_all, fshape)
        for i in range(i0, min(n, i0 + block)):
            z, y, x, p0, p1, p2 = _point(i, i0, z, y, x, use_all, fshape, fsp, forig, pts)
            inside, u0, u1, u2 = _map(p0, p1, p2, ia, ioff, shape)
            if not inside:
                continue
            m, e0, e1, e2 = _trilinear_grad(moving, u0, u1, u2)
            term = m / mbs - mmin
            km = int(math.floor(term))
            if km < 2:
                km = 2
            elif km > nbins - 3:
                km = nbins - 3
            t = term - km
            t2 = t * t
            hb = fixbin[i] * nbins + km
            o = hb * N_POW
            h[o] += 1.0
            h[o + 1] += t
            h[o + 2] += t2
            h[o + 3] += t2 * t
            v0, v1, v2, v3, v4, v5, v6 = _vecs(u0, u1, u2, e0, e1, e2, rsp, msp, wo)
            o = hb * (N_DPOW * N_VPAD)
            _acc_bin(dd, o, 1.0, v0, v1, v2, v3, v4, v5, v6)
            _acc_bin(dd, o + N_VPAD, t, v0, v1, v2, v3, v4, v5, v6)
            _acc_bin(dd, o + 2 * N_VPAD, t2, v0, v1, v2, v3, v4, v5, v6)


@kernel("exact")
def jitter_samples(img, zyx, off, pos, vals):  # pragma: no cover - compiled
    """Off-grid fixed samples: ``pos[i] = clip(zyx[i] + off[i], 0, shape - 1)`` per axis
    and ``vals[i]`` the trilinear interpolant of ``img`` there (serial: the caller draws
    the offsets, so the result does not depend on threads)."""
    n0, n1, n2 = img.shape
    for i in range(zyx.shape[0]):
        p0 = min(max(zyx[i, 0] + off[i, 0], 0.0), n0 - 1.0)
        p1 = min(max(zyx[i, 1] + off[i, 1], 0.0), n1 - 1.0)
        p2 = min(max(zyx[i, 2] + off[i, 2], 0.0), n2 - 1.0)
        pos[i, 0] = p0
        pos[i, 1] = p1
        pos[i, 2] = p2
        v, _, _, _ = _trilinear_grad(img, p0, p1, p2)
        vals[i] = v

"""Separable Gaussian kernels: exact (FIR, scipy.ndimage taps) and recursive (IIR).

Private: the public wrappers in :mod:`fastct.filters._gaussian` validate, build the
weights and index maps in NumPy and hand C-contiguous float32/float64 arrays here.

Index maps
----------
Every kernel reads its source through per-axis *index maps* from "extended"
coordinates (core plus a halo of ``r`` voxels on each side) to source indices,
``-1`` meaning ``cval``. The same kernel therefore serves two callers with the same
arithmetic per output voxel:

* a halo-extended block from the streaming engine (maps are the identity, or ``-1``
  outside the block's valid region for ``mode='constant'``), and
* a whole in-memory array (maps are scipy.ndimage's boundary rules), which needs no
  padded copy at all.

For ``mode='constant'`` the ``-1`` entries are read as ``cval`` at *every* separable
pass, which is scipy's behaviour (it extends each intermediate result with ``cval``).

Determinism
-----------
Each output voxel is computed by one thread with a fixed operation order (no
reductions across threads, no fastmath reassociation), and the work split depends on
the shape only, so results are the same bits at any thread count and any block
shape.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._config import kernel


# -- helpers (inlined into the parallel kernels) ------------------------------------
@kernel("exact", inline=True)
def _init(dst, mid, c0, n):  # pragma: no cover - compiled
    for x in range(n):
        dst[x] = c0 * mid[x]


@kernel("exact", inline=True)
def _pair(dst, a, b, wk, n):  # pragma: no cover - compiled
    for x in range(n):
        dst[x] += wk * (a[x] + b[x])


@kernel("exact", inline=True)
def _pair2(dst, a1, b1, w1, a2, b2, w2, n):  # pragma: no cover - compiled
    # Same left-to-right order as two _pair calls (identical bits), one pass over dst.
    for x in range(n):
        dst[x] = dst[x] + w1 * (a1[x] + b1[x]) + w2 * (a2[x] + b2[x])


@kernel("exact", inline=True)
def _row(plane, m, xa, xb, cvalrow):  # pragma: no cover - compiled
    return plane[m, xa:xb] if m >= 0 else cvalrow


@kernel("exact", inline=True)
def _fir_shift(dst, row, w, r, n):  # pragma: no cover - compiled
    """``dst[x] = sum_k w[r+k] * row[x + r + k]`` along a contiguous row (x pass)."""
    _init(dst, row[r:], w[r], n)
    k = r
    while k >= 2:
        _pair2(
            dst,
            row[r - k :], row[r + k :], w[r + k],
            row[r - k + 1 :], row[r + k - 1 :], w[r + k - 1],
            n,
        )  # fmt: skip
        k -= 2
    while k >= 1:
        _pair(dst, row[r - k :], row[r + k :], w[r + k], n)
        k -= 1


@kernel("exact", parallel=True)
def gaussian_exact(
    src,
    out,
    zmap,
    ymap,
    xa,
    xb,
    xoff,
    xfix_dst,
    xfix_src,
    wz,
    wy,
    wx,
    cval,
    amount,
    unsharp,
    ychunk,
    zsplit,
):  # pragma: no cover - compiled
    """Exact separable Gaussian (y pass, then z, then x), fused per row block.

    Parameters
    ----------
    src : (Sz, Sy, Sx) float32/float64, C-contiguous
        Source (a whole image or a halo-extended block).
    out : (Nz, Ny, Nx) same dtype
        Result for the core.
    zmap, ymap : int64 arrays of length ``N + 2r``
        Extended index -> source plane / row, ``-1`` = ``cval``.
    xa, xb : int
        Source columns ``[xa, xb)`` that the y and z passes run over.
    xoff : int
        Position of source column ``xa`` in the extended row (length ``Nx + 2rx``).
    xfix_dst, xfix_src : int64 arrays
        Extended-row fix-ups after the z pass: ``ext[dst] = ext[src]``, or ``cval``
        where ``src < 0`` (x halo outside the source range, constant mode).
    wz, wy, wx : symmetric weights (length ``2r + 1``), compute dtype
    cval : compute dtype
    amount, unsharp : float, bool
        With ``unsharp`` the result is ``o + (o - blur) * amount`` (unsharp mask),
        ``o`` the source voxel, fused into the x pass.
    ychunk, zsplit : int
        Work split: rows per work item and number of z ranges (shape-only choices).

    Work items are (z range, row block) pairs run in parallel. Inside one, the y pass
    of every needed plane goes into a ring of ``2rz + 1`` planes, the z pass combines
    the ring, and the x pass writes the output rows, so the source is read about once
    and every intermediate stays in cache.
    """
    rz = (wz.shape[0] - 1) // 2
    ry = (wy.shape[0] - 1) // 2
    rx = (wx.shape[0] - 1) // 2
    nz, ny, nx = out.shape
    width = xb - xa
    ext_x = nx + 2 * rx
    nring = 2 * rz + 1
    nyc = (ny + ychunk - 1) // ychunk
    zlen = (nz + zsplit - 1) // zsplit
    nfix = xfix_dst.shape[0]
    dt = src.dtype
    ooff = xa + rx - xoff
    for item in prange(zsplit * nyc):
        zi = item // nyc
        ci = item - zi * nyc
        z0 = zi * zlen
        z1 = min(z0 + zlen, nz)
        y0 = ci * ychunk
        y1 = min(y0 + ychunk, ny)
        if z0 >= z1:
            continue
        nrow = y1 - y0
        ring = np.empty((nring, nrow, width), dtype=dt)
        cvalrow = np.full(width, cval, dtype=dt)
        ext = np.empty(ext_x, dtype=dt)
        exto = ext[xoff:]
        for p in range(z0, z1 + 2 * rz):
            slot = ring[p % nring]
            sp = zmap[p]
            if sp < 0:
                for j in range(nrow):
                    _init(slot[j], cvalrow, 1.0, width)
            else:
                plane = src[sp]
                for j in range(nrow):
                    # y pass: w[r]*centre + sum over pairs, outer pairs first (scipy)
                    yc = y0 + j + ry
                    m = ymap[yc]
                    _init(slot[j], _row(plane, m, xa, xb, cvalrow), wy[ry], width)
                    k = ry
                    while k >= 2:
                        _pair2(
                            slot[j],
                            _row(plane, ymap[yc - k], xa, xb, cvalrow),
                            _row(plane, ymap[yc + k], xa, xb, cvalrow),
                            wy[ry + k],
                            _row(plane, ymap[yc - k + 1], xa, xb, cvalrow),
                            _row(plane, ymap[yc + k - 1], xa, xb, cvalrow),
                            wy[ry + k - 1],
                            width,
                        )
                        k -= 2
                    while k >= 1:
                        _pair(
                            slot[j],
                            _row(plane, ymap[yc - k], xa, xb, cvalrow),
                            _row(plane, ymap[yc + k], xa, xb, cvalrow),
                            wy[ry + k],
                            width,
                        )
                        k -= 1
            if p < z0 + 2 * rz:
                continue
            z = p - 2 * rz
            for j in range(nrow):
                # z pass over the ring, then x fix-ups and the x pass
                _init(exto, ring[(z + rz) % nring, j], wz[rz], width)
                zc = z + rz
                k = rz
                while k >= 2:
                    _pair2(
                        exto,
                        ring[(zc - k) % nring, j],
                        ring[(zc + k) % nring, j],
                        wz[rz + k],
                        ring[(zc - k + 1) % nring, j],
                        ring[(zc + k - 1) % nring, j],
                        wz[rz + k - 1],
                        width,
                    )
                    k -= 2
                while k >= 1:
                    _pair(
                        exto,
                        ring[(zc - k) % nring, j],
                        ring[(zc + k) % nring, j],
                        wz[rz + k],
                        width,
                    )
                    k -= 1
                for f in range(nfix):
                    s = xfix_src[f]
                    ext[xfix_dst[f]] = cval if s < 0 else ext[s]
                orow = out[z, y0 + j]
                _fir_shift(orow, ext, wx, rx, nx)
                if unsharp:
                    orig = src[zmap[z + rz], ymap[y0 + j + ry], ooff:]
                    for x in range(nx):
                        o = orig[x]
                        orow[x] = o + (o - orow[x]) * amount
    return out


# -- recursive (IIR) Gaussian: Young–van Vliet, 4th order ------------------------------
@kernel("exact")
def _iir_window(lines, amap, e0, wlen, halo, buf, coef, tsm, cval):  # pragma: no cover
    """Young–van Vliet causal + anti-causal passes (order 4) over one window.

    ``lines`` (Ls, w) float64 holds the source lines (one column per line); the
    window's samples are ``lines[amap[e0 + l]]`` for ``l < wlen`` (``-1`` = cval).
    ``buf`` (wlen + 8, w) receives, in rows ``4 + l`` for ``l >= halo``, the filtered
    window (the anti-causal pass stops at the tile start ``l = halo``). Causal start:
    the signal before the window is taken constant (steady state); anti-causal
    start: Triggs–Sdika initial values for a signal constant after the window
    (matrix ``tsm``). Vectorised across the ``w`` lines.
    """
    alpha = coef[0]
    a1 = coef[1]
    a2 = coef[2]
    a3 = coef[3]
    a4 = coef[4]
    w = buf.shape[1]
    m0 = amap[e0]
    for c in range(w):
        v = lines[m0, c] if m0 >= 0 else cval
        buf[0, c] = v
        buf[1, c] = v
        buf[2, c] = v
        buf[3, c] = v
    for j in range(wlen):
        m = amap[e0 + j]
        cur = buf[4 + j]
        p1 = buf[3 + j]
        p2 = buf[2 + j]
        p3 = buf[1 + j]
        p4 = buf[j]
        if m >= 0:
            src = lines[m]
            for c in range(w):
                cur[c] = alpha * src[c] + a1 * p1[c] + a2 * p2[c] + a3 * p3[c] + a4 * p4[c]
        else:
            for c in range(w):
                cur[c] = alpha * cval + a1 * p1[c] + a2 * p2[c] + a3 * p3[c] + a4 * p4[c]
    # Triggs–Sdika: v[N + j] = u+ + sum_i tsm[j, i] * (w[N - i] - u+), j, i = 0..3
    last = 4 + wlen - 1
    ml = amap[e0 + wlen - 1]
    for c in range(w):
        up = lines[ml, c] if ml >= 0 else cval
        d0 = buf[last, c] - up
        d1 = buf[last - 1, c] - up
        d2 = buf[last - 2, c] - up
        d3 = buf[last - 3, c] - up
        v0 = up + tsm[0, 0] * d0 + tsm[0, 1] * d1 + tsm[0, 2] * d2 + tsm[0, 3] * d3
        v1 = up + tsm[1, 0] * d0 + tsm[1, 1] * d1 + tsm[1, 2] * d2 + tsm[1, 3] * d3
        v2 = up + tsm[2, 0] * d0 + tsm[2, 1] * d1 + tsm[2, 2] * d2 + tsm[2, 3] * d3
        v3 = up + tsm[3, 0] * d0 + tsm[3, 1] * d1 + tsm[3, 2] * d2 + tsm[3, 3] * d3
        buf[last, c] = v0
        buf[last + 1, c] = v1
        buf[last + 2, c] = v2
        buf[last + 3, c] = v3
    for r in range(last - 1, 3 + halo, -1):
        cur = buf[r]
        n1 = buf[r + 1]
        n2 = buf[r + 2]
        n3 = buf[r + 3]
        n4 = buf[r + 4]
        for c in range(w):
            cur[c] = alpha * cur[c] + a1 * n1[c] + a2 * n2[c] + a3 * n3[c] + a4 * n4[c]


@kernel("exact", parallel=True)
def iir_axis1(src, dst, amap, tile, halo, coef, tsm, cval, cchunk):  # pragma: no cover
    """Recursive Gaussian along axis 1 of ``src`` (P, Ls, C) into ``dst`` (P, N, C).

    Output index ``i`` lies in tile ``i // tile``; its value is the recursive filter
    run over the window ``[tile start - halo, tile end + halo)`` only (extended
    coordinates ``i + halo`` index ``amap``). Tiles sit at fixed positions, so the
    result does not depend on how the caller cut the volume into blocks. ``src`` and
    ``dst`` may be the same array (each work item copies its lines first).
    """
    npl, ls, ncol = src.shape
    n = dst.shape[1]
    ncc = (ncol + cchunk - 1) // cchunk
    ntile = (n + tile - 1) // tile
    for item in prange(npl * ncc):
        p = item // ncc
        c0 = (item - p * ncc) * cchunk
        c1 = min(c0 + cchunk, ncol)
        w = c1 - c0
        lines = np.empty((ls, w), dtype=np.float64)
        for s in range(ls):
            row = src[p, s, c0:c1]
            lrow = lines[s]
            for c in range(w):
                lrow[c] = row[c]
        buf = np.empty((min(tile, n) + 2 * halo + 8, w), dtype=np.float64)
        for t in range(ntile):
            t0 = t * tile
            t1 = min(t0 + tile, n)
            _iir_window(lines, amap, t0, t1 - t0 + 2 * halo, halo, buf, coef, tsm, cval)
            for i in range(t1 - t0):
                orow = dst[p, t0 + i, c0:c1]
                brow = buf[4 + halo + i]
                for c in range(w):
                    orow[c] = brow[c]
    return dst


@kernel("exact", parallel=True)
def iir_axis2(src, dst, amap, tile, halo, coef, tsm, cval, rchunk):  # pragma: no cover
    """Recursive Gaussian along the contiguous axis: ``src`` (R, Ls) -> ``dst`` (R, N).

    Blocks of ``rchunk`` rows are transposed into a (Ls, rchunk) buffer so the
    recursion runs vectorised across rows (the transposes stay in cache); tiles and
    windows as in
    :func:`iir_axis1`. ``src`` and ``dst`` may be the same array.
    """
    nrow, ls = src.shape
    n = dst.shape[1]
    nrc = (nrow + rchunk - 1) // rchunk
    ntile = (n + tile - 1) // tile
    for item in prange(nrc):
        r0 = item * rchunk
        r1 = min(r0 + rchunk, nrow)
        w = r1 - r0
        # Transpose through cache-resident scratch: contiguous row copies to and from
        # memory, strided accesses only inside the small buffers.
        rows = np.empty((w, ls), dtype=np.float64)
        for r in range(w):
            srow = src[r0 + r]
            trow = rows[r]
            for s in range(ls):
                trow[s] = srow[s]
        lines = np.empty((ls, w), dtype=np.float64)
        for s in range(ls):
            lrow = lines[s]
            for r in range(w):
                lrow[r] = rows[r, s]
        buf = np.empty((min(tile, n) + 2 * halo + 8, w), dtype=np.float64)
        outt = np.empty((w, min(tile, n)), dtype=dst.dtype)
        for t in range(ntile):
            t0 = t * tile
            t1 = min(t0 + tile, n)
            _iir_window(lines, amap, t0, t1 - t0 + 2 * halo, halo, buf, coef, tsm, cval)
            for i in range(t1 - t0):
                brow = buf[4 + halo + i]
                for r in range(w):
                    outt[r, i] = brow[r]
            for r in range(w):
                orow = dst[r0 + r, t0:t1]
                trow = outt[r]
                for i in range(t1 - t0):
                    orow[i] = trow[i]
    return dst

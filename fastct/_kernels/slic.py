"""Compiled kernels for SLIC supervoxels (see :func:`fastct.slic`).

Everything works on a canonical 3-D layout: features ``F`` of shape ``(Z, Y, X, C)``
(float32 or float64, already rescaled and multiplied by ``1 / compactness``), labels
``L`` of shape ``(Z, Y, X)`` int32 and a mask ``M`` (uint8; a dummy when unused). A 2-D
image is handed over as ``(H, 1, W)``. Kernels see one *slab* of whole tiles along
``z`` at a time: the in-memory path is the one-slab case of the streamed path.

Assignment is tiled: the volume is cut into fixed tiles (a global grid, so the tiling
never depends on how the volume is streamed), each tile gets the list of cluster
centres whose 2S search window touches it, and every voxel takes the nearest centre
among those whose window contains it, ties to the lowest index. That is exactly what
scikit-image's centre-by-centre sweep with a strict ``>`` produces, and the distances
are computed with the same float operations in the same order, so the labels agree
bit for bit. Each row of a tile visits its candidates in increasing order of a lower
bound of their distance (a counting sort) and stops once the bound exceeds the row's
largest current distance; a candidate is skipped on a row its spatial distance alone
cannot bring under that maximum. Both are true lower bounds, so the result is
unchanged, and a voxel meets ~5 candidates instead of ~64 (3-D) or ~16 (2-D). The
candidate-against-row evaluation is branch-free and vectorises.

A 2-D grayscale image without mask in memory is assigned differently
(``assign_2d``): centre by centre as scikit-image does, in bands of rows, each window
row a vectorised loop over whole lane blocks, with the centres near the band first and
the rows of the others skipped by a spatial lower bound. Its float64 work (integer and
float64 input) runs as a float32 filter with a rigorous error bound; pixels where the
float32 winner is not certain are recomputed exactly in float64.

The update reproduces scikit-image's running sums (in the features' float type, voxels
in C order). On a whole volume, z parts at least a window high own the labels whose
window starts in them, and add their voxels in C order in two parallel sweeps
(``update_parts``); streamed, the same per slab (the windows cut to the slab; one C-order
pass, ``update_serial``, on one thread), the sums continuing unchanged from one slab to
the next. Both are independent of the thread count.

Parallel kernels are thin ``prange`` wrappers around plain per-tile functions, with
their parameters packed into two small vectors: Numba's compile time grows quickly
with the size and the argument list of a parallel loop. The kernels are cached on
disk, unlike fastct's default: profile ``cached`` in ``fastct._config``, which also
says why fastmath stays off (matching scikit-image's labels needs its exact float
operations: no reassociation, no fused multiply-add contraction).
"""

from __future__ import annotations

import time

import numba
import numpy as np
from numba import prange

from .._config import kernel

# ip: integer parameters of a slab call
IP_ZOFF, IP_TZ0, IP_TZ1, IP_T0, IP_T1, IP_T2, IP_N0, IP_N1, IP_N2 = range(9)
IP_USE_MASK, IP_FRESH, IP_SLICO, IP_NOCOLOR, IP_START, IP_MASKLAB, IP_Z, IP_Y = range(9, 17)
IP_UNIFORM, IP_COUNT = 17, 18
# IP_FILL: the labels buffer holds no labels (a streamed slab not read back): voxels
# that no window reaches and masked-out ones are written with the unassigned label,
# as when fresh, and still reported as kept (``out[:, 2]``) unless fresh
IP_FILL = 19
IP_SIZE = 20
# fp: float parameters, in the features' float type
FP_W, FP_INIT, FP_ZERO, FP_NEG = range(4)
FP_SIZE = 4


# --------------------------------------------------------------------------------------
# candidate lists per tile
# --------------------------------------------------------------------------------------
@kernel("exact")
def _window_tiles(windows, k, inv_tile):
    """The tiles centre ``k``'s window reaches along each axis, inclusive. ``a // t`` as
    ``int((a + 0.5) * (1 / t))``: exact for ``0 <= a < 2**31`` (the quotient is at least
    ``0.5 / t`` from a whole number, far beyond the rounding error), and without the
    ~40-cycle integer divisions, which made this most of the lists' cost in 2-D."""
    return (
        np.int64((windows[k, 0] + 0.5) * inv_tile[0]),
        np.int64((windows[k, 1] - 0.5) * inv_tile[0]),
        np.int64((windows[k, 2] + 0.5) * inv_tile[1]),
        np.int64((windows[k, 3] - 0.5) * inv_tile[1]),
        np.int64((windows[k, 4] + 0.5) * inv_tile[2]),
        np.int64((windows[k, 5] - 0.5) * inv_tile[2]),
    )


@kernel("exact")
def _tile_counts(tr, ntiles, tz, ks, counts):
    """Number of centres whose window touches each tile of z tile row ``tz``
    (``tr[k]``: centre ``k``'s tile ranges, inclusive; ``ks``: the centres whose z
    range holds ``tz``)."""
    for k in ks:
        for ty in range(tr[k, 2], tr[k, 3] + 1):
            base = (tz * ntiles[1] + ty) * ntiles[2]
            for tx in range(tr[k, 4], tr[k, 5] + 1):
                counts[base + tx + 1] += 1


@kernel("exact")
def _tile_fill(tr, ntiles, tz, ks, fill, indices):
    for k in ks:
        for ty in range(tr[k, 2], tr[k, 3] + 1):
            base = (tz * ntiles[1] + ty) * ntiles[2]
            for tx in range(tr[k, 4], tr[k, 5] + 1):
                t = base + tx
                indices[fill[t]] = k
                fill[t] += 1


@kernel("exact")
def _centres_by_z_row(tr, nz):
    """CSR lists of the centres whose window reaches each z row of tiles, ascending (a
    counting sort: the per-row loops then skip the centres that miss the row)."""
    K = tr.shape[0]
    starts = np.zeros(nz + 1, np.int64)
    for k in range(K):
        for tz in range(tr[k, 0], tr[k, 1] + 1):
            starts[tz + 1] += 1
    for tz in range(nz):
        starts[tz + 1] += starts[tz]
    fill = starts[:-1].copy()
    ks = np.empty(starts[nz], np.int64)
    for k in range(K):
        for tz in range(tr[k, 0], tr[k, 1] + 1):
            ks[fill[tz]] = k
            fill[tz] += 1
    return starts, ks


@kernel("exact")
def tile_ranges(windows, tile, tr):
    """Into ``tr[k]``: the tiles centre ``k``'s window reaches along z, y and x
    (inclusive ranges; an empty z range for a dead centre). The candidate lists depend
    on nothing else."""
    inv_tile = 1.0 / tile
    for k in range(windows.shape[0]):
        dead = windows[k, 1] <= windows[k, 0] or windows[k, 3] <= windows[k, 2]
        dead = dead or windows[k, 5] <= windows[k, 4]
        z0, z1, y0, y1, x0, x1 = _window_tiles(windows, k, inv_tile)
        tr[k, 0] = z0 if not dead else 1
        tr[k, 1] = z1 if not dead else 0
        tr[k, 2] = y0
        tr[k, 3] = y1
        tr[k, 4] = x0
        tr[k, 5] = x1


@kernel("exact")
def build_candidates(windows, tile, ntiles):
    """CSR lists of the centres whose window touches each tile, in ascending order.

    Dead centres have an empty window and appear nowhere."""
    tr = np.empty((windows.shape[0], 6), np.int64)
    tile_ranges(windows, tile, tr)
    return candidates_from_ranges(tr, ntiles)


@kernel("exact", parallel=True)
def candidates_from_ranges(tr, ntiles):
    """``build_candidates`` from the centres' tile ranges (``tile_ranges``). Each z row of
    tiles is a contiguous range of the lists, built by one thread from the centres that
    reach it (counts, then a serial prefix sum, then the lists)."""
    zs, zk = _centres_by_z_row(tr, ntiles[0])
    n_tiles = ntiles[0] * ntiles[1] * ntiles[2]
    counts = np.zeros(n_tiles + 1, np.int64)
    for tz in prange(ntiles[0]):
        _tile_counts(tr, ntiles, np.int64(tz), zk[zs[tz] : zs[tz + 1]], counts)
    for t in range(n_tiles):
        counts[t + 1] += counts[t]
    fill = counts[:-1].copy()
    indices = np.empty(counts[n_tiles], np.int32)
    for tz in prange(ntiles[0]):
        _tile_fill(tr, ntiles, np.int64(tz), zk[zs[tz] : zs[tz + 1]], fill, indices)
    return counts, indices


@kernel("exact")
def colours_uniform(centers, alive, maxdc, slic_zero):
    """Whether every live centre has the same colour (and with SLICO the same colour
    scale), so that the colour term is shared; False without colour channels."""
    first = -1
    for k in range(centers.shape[0]):
        if not alive[k]:
            continue
        if first < 0:
            first = k
            continue
        for f in range(3, centers.shape[1]):
            if centers[k, f] != centers[first, f]:
                return False
        if slic_zero and maxdc[k] != maxdc[first]:
            return False
    return first >= 0 and centers.shape[1] > 3


@kernel("exact")
def finalize_centres(count, sums, centers, alive):
    """New centres = running sums / counts in the centres' float type; empty clusters
    die (scikit-image's 0/0 gives NaN centres that never win again)."""
    ft = centers.dtype.type
    for k in range(centers.shape[0]):
        if count[k] == 0:
            for f in range(centers.shape[1]):
                centers[k, f] = np.nan
            alive[k] = False
        else:
            n = ft(count[k])
            for f in range(centers.shape[1]):
                centers[k, f] = sums[k, f] / n


@kernel("exact")
def update_parts_plan(windows, alive, Z, n_threads):
    """Parts of the parallel update (``update_parts``), one per thread: part ``p`` holds
    slices ``[bounds[p], bounds[p + 1])``, each at least every window's z extent ``e``. A
    part also scans ``e`` slices of the next one, so the parts before the last are ``e``
    lower, which balances the work. Also the ``owner`` part of every label (where its
    window starts; -1 for dead centres) and ``zend``, how far each part's labels reach.
    The sums are the same for any partition."""
    K = windows.shape[0]
    e = 1
    for k in range(K):
        if alive[k]:
            e = max(e, windows[k, 1] - windows[k, 0])
    n = max(1, min(n_threads, Z // e - 1))
    share = (Z + (n - 1) * e) / n  # slices scanned per part
    bounds = np.empty(n + 1, np.int64)
    bounds[0] = 0
    bounds[n] = Z
    for p in range(n - 1):
        bounds[p + 1] = np.int64(np.round((share - e) * (p + 1)))
    for p in range(n):
        if bounds[p + 1] - bounds[p] < e:  # (rounding) parts lower than a window: one
            bounds = np.array([0, Z], np.int64)
            n = 1
            break
    owner = np.full(K, -1, np.int64)
    zend = np.zeros(n, np.int64)
    for k in range(K):
        if not alive[k]:
            continue
        p = n - 1
        while bounds[p] > windows[k, 0]:  # the part where the window starts
            p -= 1
        owner[k] = p
        zend[p] = max(zend[p], windows[k, 1])
    return owner, bounds, zend


@kernel("exact")
def windows_into(centers, alive, two, shape_f, out):
    """scikit-image's search windows ``int(max(c - 2s, 0))``, ``int(min(c + 2s + 1, n))``
    with the arithmetic in the centres' float type; empty (zeros) for dead centres."""
    zero = centers.dtype.type(0)
    one = centers.dtype.type(1)
    for k in range(centers.shape[0]):
        for a in range(3):
            if alive[k]:
                c = centers[k, a]
                lo = c - two[a]
                hi = (c + two[a]) + one
                out[k, 2 * a] = np.int64(lo if lo > zero else zero)
                out[k, 2 * a + 1] = np.int64(hi if hi < shape_f[a] else shape_f[a])
            else:
                out[k, 2 * a] = 0
                out[k, 2 * a + 1] = 0


# --------------------------------------------------------------------------------------
# tiles
# --------------------------------------------------------------------------------------
@kernel("exact")
def _tile_box(lt, ip, nzs, ny, nx):
    """Local z range, y range, x range and global tile id of local tile ``lt``."""
    per_z = ip[IP_N1] * ip[IP_N2]
    itz = ip[IP_TZ0] + lt // per_z
    rem = lt % per_z
    ity = rem // ip[IP_N2]
    itx = rem % ip[IP_N2]
    lz0 = itz * ip[IP_T0] - ip[IP_ZOFF]
    lz1 = min(lz0 + ip[IP_T0], nzs)
    y0 = ity * ip[IP_T1]
    y1 = min(y0 + ip[IP_T1], ny)
    x0 = itx * ip[IP_T2]
    x1 = min(x0 + ip[IP_T2], nx)
    return lz0, lz1, y0, y1, x0, x1, itz * per_z + rem


@kernel("exact")
def _n_local(ip):
    return (ip[IP_TZ1] - ip[IP_TZ0]) * ip[IP_N1] * ip[IP_N2]


# --------------------------------------------------------------------------------------
# assignment
# --------------------------------------------------------------------------------------
# The row loops index 0-based views: with an index that provably starts at 0, LLVM
# drops Numba's negative-index wrap-around and vectorises (10x here).
@kernel("exact")
def _row_gray(best, bk, featg, coords, v0, ox, xa, xb, dzy, w, spx, ckx, ck3, k):
    """One centre against a row of grayscale voxels: scikit-image's distance, keeping
    the smaller one with ties to the lower centre index; branch-free so that it
    vectorises. Returns the number of voxels that changed."""
    n = xb - xa
    bb = best[v0 + xa : v0 + xb]
    kb = bk[v0 + xa : v0 + xb]
    fb = featg[v0 + xa : v0 + xb]
    cb = coords[ox + xa : ox + xb]
    ch = 0
    for i in range(n):
        dx = spx * (ckx - cb[i])
        dx *= dx
        d = (dzy + dx) * w
        t = fb[i] - ck3
        d += t * t  # dist_color = 0 + t * t is exactly t * t
        b = bb[i]
        kk = kb[i]
        c = (d < b) | ((d == b) & (k < kk))
        bb[i] = d if c else b
        kb[i] = k if c else kk
        ch += np.int32(c)
    return ch


@kernel("exact")
def _row_general(best, bk, feat, coords, v0, ox, xa, xb, dzy, w, spx, ckx, ccol, mdc, k,
                 slic_zero, ignore_color, fzero, dbuf, cbuf):  # fmt: skip
    """One centre against a row: any number of channels, SLICO, or spatial only."""
    n = xb - xa
    cb = coords[ox + xa : ox + xb]
    for i in range(n):
        dx = spx * (ckx - cb[i])
        dx *= dx
        dbuf[i] = (dzy + dx) * w
    if not ignore_color:
        for i in range(n):
            cbuf[i] = fzero
        for c in range(feat.shape[0]):
            ck = ccol[c]
            fb = feat[c, v0 + xa : v0 + xb]
            for i in range(n):
                t = fb[i] - ck
                cbuf[i] += t * t
        if slic_zero:
            for i in range(n):
                cbuf[i] /= mdc
        for i in range(n):
            dbuf[i] += cbuf[i]
    bb = best[v0 + xa : v0 + xb]
    kb = bk[v0 + xa : v0 + xb]
    ch = 0
    for i in range(n):
        d = dbuf[i]
        b = bb[i]
        kk = kb[i]
        c = (d < b) | ((d == b) & (k < kk))
        bb[i] = d if c else b
        kb[i] = k if c else kk
        ch += np.int32(c)
    return ch


@kernel("exact")
def _row_max(best, dcs, v0, n, shifted):
    """The row's largest current distance (minus the shared colour term when all
    centres have the same colour), as a float64 bound. Branch-free selects: the
    comparisons are unpredictable."""
    bb = best[v0 : v0 + n]
    if shifted:
        db = dcs[v0 : v0 + n]
        m = -np.inf
        for i in range(n):
            b = np.float64(bb[i])
            # b + 2 ulp: a distance above this rounds above b, strictly
            t = b * (1.0 + 2.5e-7) - db[i]
            t = t if b >= 0 else -np.inf
            m = t if t > m else m
        return m
    m = bb[0]
    for i in range(1, n):
        b = bb[i]
        m = b if b > m else m
    return np.float64(m)


# Full rows (the tile width: a multiple of this) are evaluated in fixed-length blocks of
# this many voxels.
_TX = 32


@kernel("exact")
def _max_bits(bb, n, one_i, one_f):
    """Largest of ``n`` distances from their bit patterns (as signed integers they
    order like the floats as long as one is >= 0); ``n`` is a run-time value so that
    LLVM vectorises the integer maximum instead of unrolling it into a scalar chain."""
    m = bb[0]
    for i in range(n):
        v = bb[i]
        m = v if v > m else m
    one_i[0] = m
    return np.float64(one_f[0])


@kernel("exact")
def _max_shifted(bb, db, tf, ti, n):
    """``_row_max``'s shifted bound of a full row (``n`` voxels, a multiple of ``_TX``):
    the shifted distances go to ``tf`` (``n + 1`` float64; ``ti`` its int64 view, the
    last element the conversion cell), their maximum is an integer reduction as in
    ``_max_bits``. The shifted distance of an unmasked voxel is >= 0 (its distance
    includes the shared colour term); it is clamped at 0 all the same, so that the bit
    patterns order like the floats (raising a value keeps the bound an upper bound)."""
    for o in range(0, n, _TX):
        bo = bb[o : o + _TX]
        do = db[o : o + _TX]
        to = tf[o : o + _TX]
        for i in range(_TX):
            b = np.float64(bo[i])
            t = b * (1.0 + 2.5e-7) - do[i]  # b + 2 ulp, as in _row_max
            t = t if t > 0.0 else 0.0
            to[i] = t if b >= 0 else -np.inf
    return _max_bits(ti, n, ti[n:], tf[n:])


@kernel("exact", inline=True)
def _eval_row(bb, kb, fb, cx, n, dzy, w, spx, ckx, ck3, k, la, lb):
    """One centre against a full row: scikit-image's distance, the smaller one kept with
    ties to the lower centre index, voxels outside the window ``la <= x < lb`` (x
    coordinates ``cx``, in the float type) untouched. Inlined by Numba with a constant
    ``n``, so LLVM sees a fixed trip count. (The window test on the float coordinates
    compiles to two 8-lane compares; on the int64 lane index it took four, and 11% of
    a 2-D assignment.)"""
    for i in range(n):
        dx = spx * (ckx - cx[i])
        dx *= dx
        d = (dzy + dx) * w
        t = fb[i] - ck3
        d += t * t
        b = bb[i]
        kk = kb[i]
        xi = cx[i]
        c = ((d < b) | ((d == b) & (k < kk))) & (xi >= la) & (xi < lb)
        bb[i] = d if c else b
        kb[i] = k if c else kk


@kernel("exact")
def _candidate_x(cand, candi, jj):
    """What a row evaluation needs of sorted candidate ``jj``: its x window (floats),
    x coordinate, grey value and index."""
    return (
        cand[jj, _C_WX0],
        cand[jj, _C_WX1],
        cand[jj, 2],
        cand[jj, _C_COLOR],
        np.int32(candi[jj, 0]),
    )


def _make_row_pair(n):
    """``row_pair`` for full rows of ``n`` voxels (a compile-time constant: each
    function has one fixed-length evaluation loop; one function for both lengths, with
    two loops, compiled 40% slower). Rows of ``2 * _TX`` voxels are 2-D rows, which
    differ in z only."""
    flat = n == 2 * _TX

    @kernel("exact")
    def row_pair(r, nn, edge, cand, candi, gz0, y0, gz1, y1, oy, coords, spz, spy, spx, w, best,
                 bk, featg, cx, bits, one_i, one_f):  # fmt: skip
        """Rows ``r`` and ``r + 1`` of a tile (at ``(gz0, y0)`` and ``(gz1, y1)``)
        against the candidates in one loop: the bound is the larger of the two row
        maxima (one integer reduction over both rows) against each row's own spatial
        distance, and a candidate is evaluated on each row it can improve. Half the
        candidate checks and maximum refreshes of two single rows: assignment -13% in
        2-D, -9% in 3-D."""
        zf0 = coords[gz0]
        zf1 = coords[gz1]
        yf0 = coords[oy + y0]
        yf1 = coords[oy + y1]
        v0 = r * n
        bb = best[v0 : v0 + 2 * n]
        kb = bk[v0 : v0 + 2 * n]
        fb = featg[v0 : v0 + 2 * n]
        ib = bits[v0 : v0 + 2 * n]
        bb1 = bb[n:]
        kb1 = kb[n:]
        fb1 = fb[n:]
        rmax = _max_bits(ib, 2 * n, one_i, one_f)
        dirty = False
        for jj in range(nn):
            # no remaining centre can come closer than the worst voxel of the two rows
            if edge[jj] > rmax:
                break
            za = candi[jj, 1]
            zb = candi[jj, 2]
            ya = candi[jj, 3]
            yb = candi[jj, 4]
            if flat:  # (2-D: the rows differ in z only)
                in_y = y0 >= ya and y0 < yb
                in0 = in_y and gz0 >= za and gz0 < zb
                in1 = in_y and gz1 >= za and gz1 < zb
            else:
                in0 = gz0 >= za and gz0 < zb and y0 >= ya and y0 < yb
                in1 = gz1 >= za and gz1 < zb and y1 >= ya and y1 < yb
            if not (in0 or in1):
                continue
            dy0 = spy * (cand[jj, 1] - yf0)
            dy0 *= dy0
            if flat:
                dy1 = dy0
            else:
                dy1 = spy * (cand[jj, 1] - yf1)
                dy1 *= dy1
            dz0 = spz * (cand[jj, 0] - zf0)
            dz0 *= dz0
            dzy0 = dz0 + dy0
            dz1 = spz * (cand[jj, 0] - zf1)
            dz1 *= dz1
            dzy1 = dz1 + dy1
            # each row's exact bound fl((dz + dy) * w), or none outside the window
            b0 = np.float64(dzy0 * w) if in0 else np.inf
            b1 = np.float64(dzy1 * w) if in1 else np.inf
            if min(b0, b1) > rmax:
                continue
            if dirty:  # a stale maximum is an upper bound: refresh only when it matters
                rmax = _max_bits(ib, 2 * n, one_i, one_f)
                dirty = False
                if edge[jj] > rmax:
                    break
                if min(b0, b1) > rmax:
                    continue
            la, lb, ckx, ck3, k = _candidate_x(cand, candi, jj)
            if b0 <= rmax:
                _eval_row(bb, kb, fb, cx, n, dzy0, w, spx, ckx, ck3, k, la, lb)
            if b1 <= rmax:
                _eval_row(bb1, kb1, fb1, cx, n, dzy1, w, spx, ckx, ck3, k, la, lb)
            dirty = True

    return row_pair


_row_pair_tx = _make_row_pair(_TX)
_row_pair_2tx = _make_row_pair(2 * _TX)


@kernel("exact")
def _rows_full(nn, edge, cand, candi, lz0, y0, sy_, nrows, x0, z_off, oy, coords, spz, spy, spx,
               w, row_ok, best, bk, featg, cx, bits, one_i, one_f, ntx, shifted, dcs, tf,
               ti):  # fmt: skip
    """The rows of a tile of full grayscale rows (``ntx`` = ``_TX`` or ``2 * _TX``
    voxels): candidates in order of their lower bound, the evaluation a fixed-length,
    branch-free loop (it vectorises without a remainder) and the row maximum as an
    integer reduction.

    With ``shifted`` (every centre has the same colour, e.g. scikit-image's first
    iteration) the evaluation is the same exact distance; only the bound changes: the
    row maximum is ``_row_max``'s, less the shared colour term ``dcs`` (``tf``, ``ti``:
    ``_max_shifted``'s scratch)."""
    # outside the first iteration: rows in pairs (see _make_row_pair)
    pairs = not shifted
    second = False
    for r in range(nrows):
        if second:  # the second row of a pair, done
            second = False
            continue
        if not row_ok[r]:
            continue
        gz = lz0 + r // sy_ + z_off
        y = y0 + r % sy_
        if pairs and r + 1 < nrows and row_ok[r + 1]:
            gz1 = lz0 + (r + 1) // sy_ + z_off
            y1 = y0 + (r + 1) % sy_
            if ntx == _TX:
                _row_pair_tx(r, nn, edge, cand, candi, gz, y, gz1, y1, oy, coords, spz, spy, spx,
                             w, best, bk, featg, cx, bits, one_i, one_f)  # fmt: skip
            else:
                _row_pair_2tx(r, nn, edge, cand, candi, gz, y, gz1, y1, oy, coords, spz, spy, spx,
                              w, best, bk, featg, cx, bits, one_i, one_f)  # fmt: skip
            second = True
            continue
        zf = coords[gz]
        yf = coords[oy + y]
        v0 = r * ntx
        bb = best[v0 : v0 + ntx]
        kb = bk[v0 : v0 + ntx]
        fb = featg[v0 : v0 + ntx]
        ib = bits[v0 : v0 + ntx]
        if shifted:
            rmax = _max_shifted(bb, dcs[v0 : v0 + ntx], tf, ti, ntx)
        else:
            rmax = _max_bits(ib, ntx, one_i, one_f)
        dirty = False
        for jj in range(nn):
            # no remaining centre can come closer than the row's worst voxel
            if edge[jj] > rmax:
                break
            if gz < candi[jj, 1] or gz >= candi[jj, 2]:
                continue
            if y < candi[jj, 3] or y >= candi[jj, 4]:
                continue
            dz = spz * (cand[jj, 0] - zf)
            dz *= dz
            dy = spy * (cand[jj, 1] - yf)
            dy *= dy
            dzy = dz + dy
            # exact row bound: fl((dz + dy) * w) <= every voxel's rounded distance
            if np.float64(dzy * w) > rmax:
                continue
            if dirty:  # a stale maximum is an upper bound: refresh only when it matters
                if shifted:
                    rmax = _max_shifted(bb, dcs[v0 : v0 + ntx], tf, ti, ntx)
                else:
                    rmax = _max_bits(ib, ntx, one_i, one_f)
                dirty = False
                if edge[jj] > rmax:
                    break
                if np.float64(dzy * w) > rmax:
                    continue
            la, lb, ckx, ck3, k = _candidate_x(cand, candi, jj)
            # fixed trip counts (one loop each after inlining): vectorised, no remainder
            if ntx == _TX:
                _eval_row(bb, kb, fb, cx, _TX, dzy, w, spx, ckx, ck3, k, la, lb)
            else:
                _eval_row(bb, kb, fb, cx, 2 * _TX, dzy, w, spx, ckx, ck3, k, la, lb)
            dirty = True


# Columns of the sorted candidates' float table: centre z, y, x, the x window [wx0, wx1)
# as floats (exact below 2**24), then the colours.
_C_WX0, _C_WX1, _C_COLOR = 3, 4, 5

# Lower bounds are sorted by a counting sort on LB * _LBQ buckets (exact enough: a row
# stops once a bucket's lower edge exceeds its largest distance).
_LBQ = 16.0
_NBUCKET = 64


@kernel("exact")
def _assign_tile(lt, X, M, L, centers, windows, maxdc, sp, coords, indptr, indices, ip, fp, out,
                 sc_feat, sc_best, sc_bk, sc_row, sc_dcs, sc_edge, sc_cand, sc_candi, sc_key,
                 sc_cnt, sc_buf, bits, one_i, one_f, sc_tf, sc_ti):  # fmt: skip
    """Nearest admissible centre of every voxel of one tile (see ``assign_slab``)."""
    nzs, ny, nx = L.shape
    nc = X.shape[3]
    z_off = ip[IP_ZOFF]
    use_mask = ip[IP_USE_MASK] != 0
    fresh = ip[IP_FRESH] != 0
    write_unassigned = fresh or ip[IP_FILL] != 0
    slic_zero = ip[IP_SLICO] != 0
    ignore_color = ip[IP_NOCOLOR] != 0
    uniform = ip[IP_UNIFORM] != 0 and not ignore_color
    gray = nc == 1 and not slic_zero and not ignore_color
    start_label = ip[IP_START]
    mask_label = ip[IP_MASKLAB]
    oy = ip[IP_Z]  # coords = [z..., y..., x...]
    ox = oy + ip[IP_Y]
    w = fp[FP_W]
    dist_init = fp[FP_INIT]
    fzero = fp[FP_ZERO]
    neg = fp[FP_NEG]
    lz0, lz1, y0, y1, x0, x1, tid = _tile_box(lt, ip, nzs, ny, nx)
    gz0 = lz0 + z_off
    gz1 = lz1 + z_off
    sy_ = y1 - y0
    sx_ = x1 - x0
    nrows = (lz1 - lz0) * sy_
    out[lt, 0] = 0
    out[lt, 1] = 0
    out[lt, 2] = 0
    c0 = indptr[tid]
    c1 = indptr[tid + 1]
    feat = sc_feat
    best = sc_best
    bk = sc_bk
    row_ok = sc_row
    dcs = sc_dcs
    # -- features (channel-major rows); masked voxels get a negative best: never beaten
    any_valid = False
    for r in range(nrows):
        lz = lz0 + r // sy_
        y = y0 + r % sy_
        vb = r * sx_
        bb = best[vb : vb + sx_]
        kb = bk[vb : vb + sx_]
        for i in range(sx_):
            kb[i] = -1
            bb[i] = dist_init
        for c in range(nc):
            fr = feat[c, vb : vb + sx_]
            xr = X[lz, y, x0:x1, c]
            for i in range(sx_):
                fr[i] = xr[i]
        n_ok = sx_
        if use_mask:
            mr = M[lz, y, x0:x1]
            for i in range(sx_):
                if mr[i] == 0:
                    bb[i] = neg
                    n_ok -= 1
                    if write_unassigned:
                        L[lz, y, x0 + i] = mask_label
        row_ok[r] = n_ok > 0
        if n_ok > 0 and uniform and c1 > c0:
            # every centre has the same colour: the colour term is common to all
            k0 = indices[c0]
            db = dcs[vb : vb + sx_]
            if nc == 1:
                ck = centers[k0, 3]
                fr = feat[0, vb : vb + sx_]
                for i in range(sx_):
                    t = fr[i] - ck
                    db[i] = np.float64(t * t)
            else:
                for i in range(sx_):
                    acc = fzero
                    for c in range(nc):
                        t = feat[c, vb + i] - centers[k0, 3 + c]
                        acc += t * t
                    db[i] = np.float64(acc)
            if slic_zero:  # the float64 quotient is within the bound's 2-ulp margin
                m0 = np.float64(maxdc[k0])
                for i in range(sx_):
                    db[i] = db[i] / m0
        any_valid = any_valid or row_ok[r]
    if not any_valid:
        return
    shifted = uniform and c1 > c0
    if c1 > c0:
        # -- candidates by a lower bound of their distance to the tile (counting sort)
        nk = c1 - c0
        cnt = sc_cnt
        for q in range(_NBUCKET + 1):
            cnt[q] = 0
        keys = sc_key
        nn = 0
        for j in range(nk):
            k = indices[c0 + j]
            za = max(windows[k, 0], gz0)
            zb = min(windows[k, 1], gz1)
            ya = max(windows[k, 2], y0)
            yb = min(windows[k, 3], y1)
            xa = max(windows[k, 4], x0)
            xb = min(windows[k, 5], x1)
            if za >= zb or ya >= yb or xa >= xb:
                keys[j] = -1  # reaches no voxel of this tile
                continue
            ckz = np.float64(centers[k, 0])
            cky = np.float64(centers[k, 1])
            ckx = np.float64(centers[k, 2])
            a = (ckz - min(max(ckz, np.float64(za)), np.float64(zb - 1))) * sp[0]
            b = (cky - min(max(cky, np.float64(ya)), np.float64(yb - 1))) * sp[1]
            c = (ckx - min(max(ckx, np.float64(xa)), np.float64(xb - 1))) * sp[2]
            lb = (a * a + b * b + c * c) * w * (1.0 - 1e-5)
            q = _NBUCKET - 1
            if lb < (_NBUCKET - 1) / _LBQ:
                q = int(lb * _LBQ)
            elif not lb >= 0:  # NaN (a zero step: infinite weight): visit first
                q = 0
            keys[j] = q
            cnt[q + 1] += 1
            nn += 1
        for q in range(_NBUCKET):
            cnt[q + 1] += cnt[q]
        edge = sc_edge  # sorted lower edges of the buckets
        cand = sc_cand  # sorted: [cz, cy, cx, wx0, wx1, colours...] in the float type
        candi = sc_candi  # sorted: [k, wz0, wz1, wy0, wy1, wx0, wx1]
        for j in range(nk):
            q = keys[j]
            if q < 0:
                continue
            pos = cnt[q]
            cnt[q] += 1
            k = indices[c0 + j]
            edge[pos] = q / _LBQ if q > 0 else -np.inf
            cand[pos, 0] = centers[k, 0]
            cand[pos, 1] = centers[k, 1]
            cand[pos, 2] = centers[k, 2]
            cand[pos, _C_WX0] = windows[k, 4]
            cand[pos, _C_WX1] = windows[k, 5]
            for c in range(nc):
                cand[pos, _C_COLOR + c] = centers[k, 3 + c]
            candi[pos, 0] = k
            for f in range(6):
                candi[pos, 1 + f] = windows[k, f]
        spz = sp[0]
        spy = sp[1]
        spx = sp[2]
        featg = feat[0]
        dbuf = sc_buf[0]
        # full-width grayscale rows: fixed-length, fully vectorised evaluations
        # (the window test on float x coordinates: exact while they are whole numbers)
        full = gray and sx_ == ip[IP_T2] and (sx_ == _TX or sx_ == 2 * _TX)
        full = full and (nx <= 1 << 24 or best.itemsize == 8)
        cxt = coords[ox + x0 : ox + x1]
        if full:
            # (an int64, not the literal 0 the count starts from: one compilation)
            _rows_full(np.int64(nn), edge, cand, candi, lz0, y0, sy_, nrows, x0, z_off, oy,
                       coords, spz, spy, spx, w, row_ok, best, bk, featg, cxt, bits, one_i,
                       one_f, ip[IP_T2], shifted, dcs, sc_tf, sc_ti)  # fmt: skip
        for r in range(0 if full else nrows):
            if not row_ok[r]:
                continue
            lz = lz0 + r // sy_
            y = y0 + r % sy_
            gz = lz + z_off
            zf = coords[gz]
            yf = coords[oy + y]
            vr = r * sx_ - x0
            rmax = _row_max(best, dcs, vr + x0, sx_, shifted)
            for jj in range(nn):
                # no remaining centre can come closer than the row's worst voxel
                if edge[jj] > rmax:
                    break
                if gz < candi[jj, 1] or gz >= candi[jj, 2]:
                    continue
                if y < candi[jj, 3] or y >= candi[jj, 4]:
                    continue
                xa = max(candi[jj, 5], x0)
                xb = min(candi[jj, 6], x1)
                dz = spz * (cand[jj, 0] - zf)
                dz *= dz
                dy = spy * (cand[jj, 1] - yf)
                dy *= dy
                dzy = dz + dy
                # exact row bound: fl((dz + dy) * w) <= every voxel's rounded distance
                if np.float64(dzy * w) > rmax:
                    continue
                k = np.int32(candi[jj, 0])
                if gray:
                    ch = _row_gray(best, bk, featg, coords, vr, ox, xa, xb, dzy, w, spx,
                                   cand[jj, 2], cand[jj, _C_COLOR], k)  # fmt: skip
                else:
                    ch = _row_general(best, bk, feat, coords, vr, ox, xa, xb, dzy, w, spx,
                                      cand[jj, 2], cand[jj, _C_COLOR:], maxdc[k], k, slic_zero,
                                      ignore_color, fzero, dbuf, sc_buf[1])  # fmt: skip
                if ch > 0:
                    rmax = _row_max(best, dcs, vr + x0, sx_, shifted)
    # -- write labels; count the tile's distinct labels (entries of the update step)
    n_assigned = 0
    n_kept = 0
    sl = np.int32(start_label)
    ml = np.int32(mask_label)
    for r in range(nrows):
        if not row_ok[r]:
            continue
        lz = lz0 + r // sy_
        y = y0 + r % sy_
        v0 = r * sx_
        bb = best[v0 : v0 + sx_]
        kb = bk[v0 : v0 + sx_]
        lr = L[lz, y, x0:x1]
        # branch-free: assigned voxels take their label; voxels (not masked out) that no
        # window reached take the unassigned label when fresh (or the buffer holds no
        # labels), else keep theirs
        for i in range(sx_):
            kw = kb[i]
            a = kw >= 0
            u = (kw < 0) & (bb[i] >= fzero)
            lr[i] = kw + sl if a else (ml if u & write_unassigned else lr[i])
            n_assigned += np.int32(a)
            n_kept += np.int32(u)
    out[lt, 1] = n_assigned > 0
    out[lt, 2] = n_kept > 0 and not fresh
    if ip[IP_COUNT] == 0:
        return
    nd = 0
    last = mask_label
    seen = sc_key
    for r in range(nrows):
        if not row_ok[r]:
            continue
        lz = lz0 + r // sy_
        y = y0 + r % sy_
        v0 = r * sx_
        bb = best[v0 : v0 + sx_]
        lr = L[lz, y, x0:x1]
        for i in range(sx_):
            if bb[i] < fzero:  # masked out
                continue
            lab = lr[i]
            if lab != mask_label and lab != last:
                found = False
                for q in range(nd):
                    if seen[q] == lab:
                        found = True
                        break
                if not found:
                    seen[nd] = lab
                    nd += 1
                last = lab
    out[lt, 0] = nd


@kernel("exact", parallel=True)
def assign_slab(X, M, L, centers, windows, maxdc, sp, coords, indptr, indices, ip, fp, out,
                max_cand, ibits):  # fmt: skip
    """Assignment step on the tiles ``ip[IP_TZ0] <= tz < ip[IP_TZ1]`` held by this slab.

    ``X`` (input values; the features are computed on the fly), ``M`` (mask) and ``L``
    (labels, updated in place) hold global z ``z_off .. z_off + nz``. Every voxel takes
    the nearest centre among those whose window contains it, ties to the lowest index:
    scikit-image's sweep. Voxels that no window reaches keep their label (with
    ``fresh``: the unassigned label). The rows of a tile visit the candidate centres in
    increasing order of a lower bound of their distance and stop when it exceeds the
    row's largest current distance; the evaluation itself is a branch-free,
    vectorised row loop. ``out[t] = (distinct labels in tile t (with ``ip[IP_COUNT]``),
    any voxel assigned, any voxel that no window reached kept its old label)``.
    """
    n_rows_of_tiles = (ip[IP_TZ1] - ip[IP_TZ0]) * ip[IP_N1]
    nc = X.shape[3]
    nv = ip[IP_T0] * ip[IP_T1] * ip[IP_T2]
    ntx = ip[IP_N2]
    ft = centers.dtype
    for tr in prange(n_rows_of_tiles):
        # one set of scratch buffers per row of tiles
        sc_feat = np.empty((nc, nv), ft)
        sc_best = np.empty(nv, ft)
        sc_bk = np.empty(nv, np.int32)
        sc_row = np.empty(ip[IP_T0] * ip[IP_T1], np.bool_)
        sc_dcs = np.empty(nv)
        sc_edge = np.empty(max_cand)
        sc_cand = np.empty((max_cand, _C_COLOR + nc), ft)
        sc_candi = np.empty((max_cand, 7), np.int64)
        sc_key = np.empty(max(max_cand, nv), np.int64)
        sc_cnt = np.empty(_NBUCKET + 1, np.int64)
        sc_buf = np.empty((2, ip[IP_T2]), ft)
        bits = sc_best.view(ibits.dtype)  # ``ibits``: the signed integer of the float's size
        one_i = np.empty(1, ibits.dtype)
        one_f = one_i.view(ft)
        sc_tf = np.empty(ip[IP_T2] + 1)  # _max_shifted's shifted distances + conversion cell
        sc_ti = sc_tf.view(np.int64)
        for tx in range(ntx):
            _assign_tile(tr * ntx + tx, X, M, L, centers, windows, maxdc, sp, coords, indptr,
                         indices, ip, fp, out, sc_feat, sc_best, sc_bk, sc_row, sc_dcs, sc_edge,
                         sc_cand, sc_candi, sc_key, sc_cnt, sc_buf, bits, one_i, one_f,
                         sc_tf, sc_ti)  # fmt: skip


# --------------------------------------------------------------------------------------
# update
# --------------------------------------------------------------------------------------
@kernel("exact")
def _find_entry(ent_label, base, n, lab):
    for i in range(base, base + n):
        if ent_label[i] == lab:
            return i
    return -1


@kernel("exact")
def _update_region(p, za, zb, ya, yb, X, M, L, owner, coords, ip, sums, counts):
    """scikit-image's running sums over slices ``[za, zb)``, rows ``[ya, yb)``, in C
    order, for the voxels whose label is owned by part ``p`` (``owner[k] == p``;
    ``p < 0``: every label)."""
    nx = L.shape[2]
    nc = X.shape[3]
    use_mask = ip[IP_USE_MASK] != 0
    start = ip[IP_START]
    oy = ip[IP_Z]
    ox = oy + ip[IP_Y]
    z_off = ip[IP_ZOFF]  # slices of a slab: z + z_off is the volume's slice
    n_k = owner.shape[0]
    # integer-valued sums up to this are exact in the float type (coordinates are whole)
    lim = np.float64(1 << 24) if sums.itemsize == 4 else np.float64(1 << 53)
    for z in range(za, zb):
        zf = coords[z + z_off]
        for y in range(ya, yb):
            yf = coords[oy + y]
            lr = L[z, y, :]
            x = 0
            while x < nx:
                lab = lr[x]
                e = x + 1  # the run of equal labels from x
                while e < nx and lr[e] == lab:
                    e += 1
                k = lab - start
                if k < 0 or k >= n_k or (p >= 0 and owner[k] != p):
                    x = e  # the unassigned / masked-out label, or another part's
                    continue
                # the same additions in the same order, the running sums in registers
                n = counts[k]
                s0 = sums[k, 0]
                s1 = sums[k, 1]
                s2 = sums[k, 2]
                s3 = sums[k, 3] if nc == 1 else sums[k, 0]
                if nc == 1 and not use_mask:
                    # coordinate sums in closed form: while they stay below ``lim``
                    # every partial sum is an exact integer, whatever the order
                    m = e - x
                    t0 = np.float64(s0) + m * np.float64(zf)
                    t1 = np.float64(s1) + m * np.float64(yf)
                    t2 = np.float64(s2) + (x + e - 1) * m * 0.5
                    if t0 <= lim and t1 <= lim and t2 <= lim:
                        counts[k] = n + m
                        sums[k, 0] = t0
                        sums[k, 1] = t1
                        sums[k, 2] = t2
                        xr = X[z, y, x:e, 0]
                        for i in range(m):
                            s3 += xr[i]
                        sums[k, 3] = s3
                        x = e
                        continue
                for i in range(x, e):
                    if use_mask and M[z, y, i] == 0:
                        continue
                    n += 1
                    s0 += zf
                    s1 += yf
                    s2 += coords[ox + i]
                    if nc == 1:
                        s3 += X[z, y, i, 0]
                counts[k] = n
                sums[k, 0] = s0
                sums[k, 1] = s1
                sums[k, 2] = s2
                if nc == 1:
                    sums[k, 3] = s3
                else:
                    for c in range(nc):  # each channel's sum in voxel order
                        sc = sums[k, 3 + c]
                        for i in range(x, e):
                            if use_mask and M[z, y, i] == 0:
                                continue
                            sc += X[z, y, i, c]
                        sums[k, 3 + c] = sc
                x = e


@kernel("exact", parallel=True)
def update_parts(X, M, L, owner, bounds, zend, coords, ip, sums, counts):
    """The update step of a whole volume in parallel, with scikit-image's sums.

    Slices are cut into parts ``[bounds[p], bounds[p + 1])``; label ``k`` is owned by
    the part where its search window starts (``owner[k]``), and every part is at least
    as high as every window, so its voxels lie in its part and the next one, never
    beyond (true when every voxel got a centre of its window: see ``assign_slab``).
    Each part first adds its own labels' voxels in its slices, then those in the next
    part's slices up to ``zend[p]`` (the end of its labels' windows): every label's
    voxels are added in C order, as scikit-image does, and two parts never touch the
    same label (the labels are only read, so a part's second range needs no barrier).
    The sums do not depend on the partition.
    """
    Z = L.shape[0]
    ny = L.shape[1]
    n_parts = zend.shape[0]
    for p in prange(n_parts):
        _update_region(np.int64(p), bounds[p], bounds[p + 1], 0, ny, X, M, L, owner, coords,
                       ip, sums, counts)  # fmt: skip
        if p < n_parts - 1:
            _update_region(np.int64(p), bounds[p + 1], min(zend[p], Z), 0, ny, X, M, L, owner,
                           coords, ip, sums, counts)  # fmt: skip


@kernel("exact")
def update_serial(X, M, L, coords, ip, sums, counts):
    """scikit-image's update loop as it is: one C-order pass over the volume, or over a
    slab of it (slice ``z`` is the volume's ``z + ip[IP_ZOFF]``): streamed slabs come
    in z order and ``sums``/``counts`` carry over, so the additions are the same."""
    owner = np.empty(sums.shape[0], np.int64)
    _update_region(np.int64(-1), np.int64(0), L.shape[0], np.int64(0), L.shape[1], X, M, L, owner,
                   coords, ip, sums, counts)  # fmt: skip


@kernel("exact", parallel=True)
def update_parts_y(X, M, L, owner, bounds, yend, coords, ip, sums, counts):
    """The update step of a slab in parallel parts along y, with scikit-image's sums:
    ``update_parts`` with the roles of z and y exchanged, for slabs lower than two
    windows (streamed). Label ``k`` is owned by the part where its window's y range
    starts (``owner[k]``); part ``p`` scans every slice, rows ``[bounds[p], yend[p])``
    (its labels' rows: at most into the next part), and adds its own labels' voxels:
    each label's voxels in C order (slice by slice, row by row), as in one serial pass.
    """
    nz = L.shape[0]
    for p in prange(yend.shape[0]):
        _update_region(np.int64(p), np.int64(0), nz, bounds[p], max(bounds[p], yend[p]), X, M, L,
                       owner, coords, ip, sums, counts)  # fmt: skip


@kernel("exact")
def _slico_tile(lt, X, M, L, centers, ip, fp, offsets, ent_label, ent_max):
    nzs, ny, nx = L.shape
    use_mask = ip[IP_USE_MASK] != 0
    mask_label = ip[IP_MASKLAB]
    start_label = ip[IP_START]
    fzero = fp[FP_ZERO]
    lz0, lz1, y0, y1, x0, x1, _ = _tile_box(lt, ip, nzs, ny, nx)
    base = offsets[lt]
    n = np.int64(0)
    last = mask_label
    e = -1
    for lz in range(lz0, lz1):
        for y in range(y0, y1):
            for x in range(x0, x1):
                if use_mask and M[lz, y, x] == 0:
                    continue
                lab = L[lz, y, x]
                if lab == mask_label:
                    continue
                if lab != last:
                    e = _find_entry(ent_label, base, n, lab)
                    if e < 0:
                        e = base + n
                        n += 1
                        ent_label[e] = lab
                        ent_max[e] = fp[FP_NEG]
                    last = lab
                k = lab - start_label
                dc = fzero
                for c in range(X.shape[3]):
                    t = X[lz, y, x, c] - centers[k, 3 + c]
                    dc += t * t
                if ent_max[e] < dc:
                    ent_max[e] = dc


@kernel("exact", parallel=True)
def slico_slab(X, M, L, centers, ip, fp, offsets, ent_label, ent_max):
    """Per-tile maxima of each voxel's colour distance to its (new) centre (SLICO)."""
    for lt in prange(_n_local(ip)):
        _slico_tile(np.int64(lt), X, M, L, centers, ip, fp, offsets, ent_label, ent_max)


@kernel("exact")
def reduce_max(ent_label, ent_max, start_label, maxdc):
    for e in range(ent_label.shape[0]):
        k = ent_label[e] - start_label
        if maxdc[k] < ent_max[e]:
            maxdc[k] = ent_max[e]


# --------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------
_FEAT_BLOCK = 1 << 16


@kernel("exact", parallel=True)
def features_into(F, X, imin, scale, ratio, use_scale):
    """``F = ((X - imin) / scale) * ratio`` element by element in the float type of
    ``X`` (= ``F``'s): NumPy's in-place steps of the rescaling, fused, on all cores."""
    f = F.reshape(F.size)
    x = X.reshape(X.size)
    n = f.shape[0]
    for b in prange((n + _FEAT_BLOCK - 1) // _FEAT_BLOCK):
        lo = b * _FEAT_BLOCK
        hi = min(lo + _FEAT_BLOCK, n)
        fb = f[lo:hi]
        xb = x[lo:hi]
        if use_scale:
            for i in range(hi - lo):
                fb[i] = ((xb[i] - imin) / scale) * ratio
        else:
            for i in range(hi - lo):
                fb[i] = (xb[i] - imin) * ratio


@kernel("exact", parallel=True)
def features_int_into(F, X, mul, signed, imin, scale, ratio, use_scale):
    """Features of integer input in one parallel pass with scikit-image's float64
    steps, element by element: ``img_as_float`` (``x * mul``, clamped at -1 for signed
    types), then ``((v - imin) / scale) * ratio`` (NumPy's in-place steps, fused)."""
    f = F.reshape(F.size)
    x = X.reshape(X.size)
    n = f.shape[0]
    for b in prange((n + _FEAT_BLOCK - 1) // _FEAT_BLOCK):
        lo = b * _FEAT_BLOCK
        hi = min(lo + _FEAT_BLOCK, n)
        fb = f[lo:hi]
        xb = x[lo:hi]
        for i in range(hi - lo):
            v = np.float64(xb[i]) * mul
            if signed:
                v = max(v, -1.0)
            v = v - imin
            if use_scale:
                v = v / scale
            fb[i] = v * ratio


@kernel("exact", parallel=True)
def padded_f32(F, out, pad):
    """``F`` (``(H, W)`` float64) rounded to float32 into ``out`` (flat, rows of
    ``W + pad``; the padding zero). Returns the largest ``|F|``."""
    H, W = F.shape
    Wp = W + pad
    nb = (H + 15) // 16
    mx = np.zeros(nb)
    for b in prange(nb):
        m = 0.0
        for z in range(b * 16, min(b * 16 + 16, H)):
            fr = F[z]
            orow = out[z * Wp : z * Wp + Wp]
            for i in range(W):
                v = fr[i]
                orow[i] = np.float32(v)
                a = abs(v)
                m = a if a > m else m
            for i in range(W, Wp):
                orow[i] = 0
        mx[b] = m
    return mx.max()


# --------------------------------------------------------------------------------------
# connectivity (scikit-image's _enforce_label_connectivity_cython, slab-capable)
# --------------------------------------------------------------------------------------
@kernel("exact")
def enforce_connectivity(seg, out, z_begin, z_end, min_size, max_size, mask_label, state, coord):
    """Scan components starting in ``z_begin <= z < z_end`` of the slab, in raster order.

    ``seg`` holds the SLIC labels and ``out`` the relabelled result (``mask_label``
    where not yet visited); both cover the same z range, which must contain every voxel
    of the components that start in the scanned range plus one slice on each side.
    ``state[0]`` carries scikit-image's ``current_new_label`` from slab to slab. The
    breadth-first search visits the neighbours in scikit-image's order (x+1, x-1, y+1,
    y-1, z+1, z-1), written out on flat indices.
    """
    depth, height, width = seg.shape
    plane = height * width
    sf = seg.reshape(seg.size)
    of = out.reshape(out.size)
    cur = state[0]
    for z in range(z_begin, z_end):
        for y in range(height):
            row = (z * height + y) * width
            for x in range(width):
                label = sf[row + x]
                if label == mask_label or of[row + x] > mask_label:
                    continue
                adjacent = cur
                of[row + x] = cur
                size = 1
                visited = 0
                coord[0, 0] = z
                coord[0, 1] = y
                coord[0, 2] = x
                while visited < size and size < max_size:
                    bz = coord[visited, 0]
                    by = coord[visited, 1]
                    bx = coord[visited, 2]
                    base = (bz * height + by) * width + bx
                    if bx + 1 < width:
                        q = base + 1
                        o = of[q]
                        if o == mask_label and sf[q] == label:
                            of[q] = cur
                            coord[size, 0] = bz
                            coord[size, 1] = by
                            coord[size, 2] = bx + 1
                            size += 1
                        elif o > mask_label and o != cur:
                            adjacent = o
                    if size < max_size and bx >= 1:
                        q = base - 1
                        o = of[q]
                        if o == mask_label and sf[q] == label:
                            of[q] = cur
                            coord[size, 0] = bz
                            coord[size, 1] = by
                            coord[size, 2] = bx - 1
                            size += 1
                        elif o > mask_label and o != cur:
                            adjacent = o
                    if size < max_size and by + 1 < height:
                        q = base + width
                        o = of[q]
                        if o == mask_label and sf[q] == label:
                            of[q] = cur
                            coord[size, 0] = bz
                            coord[size, 1] = by + 1
                            coord[size, 2] = bx
                            size += 1
                        elif o > mask_label and o != cur:
                            adjacent = o
                    if size < max_size and by >= 1:
                        q = base - width
                        o = of[q]
                        if o == mask_label and sf[q] == label:
                            of[q] = cur
                            coord[size, 0] = bz
                            coord[size, 1] = by - 1
                            coord[size, 2] = bx
                            size += 1
                        elif o > mask_label and o != cur:
                            adjacent = o
                    if size < max_size and bz + 1 < depth:
                        q = base + plane
                        o = of[q]
                        if o == mask_label and sf[q] == label:
                            of[q] = cur
                            coord[size, 0] = bz + 1
                            coord[size, 1] = by
                            coord[size, 2] = bx
                            size += 1
                        elif o > mask_label and o != cur:
                            adjacent = o
                    if size < max_size and bz >= 1:
                        q = base - plane
                        o = of[q]
                        if o == mask_label and sf[q] == label:
                            of[q] = cur
                            coord[size, 0] = bz - 1
                            coord[size, 1] = by
                            coord[size, 2] = bx
                            size += 1
                        elif o > mask_label and o != cur:
                            adjacent = o
                    visited += 1
                if size < min_size:
                    for i in range(size):
                        of[(coord[i, 0] * height + coord[i, 1]) * width + coord[i, 2]] = adjacent
                else:
                    cur += 1
    state[0] = cur


@kernel("exact")
def label_z_extent(L, z_off, mask_label, start_label, zmin, zmax):
    """Running per-label min/max of the z index (for the streamed connectivity window)."""
    nz, ny, nx = L.shape
    for z in range(nz):
        gz = z + z_off
        for y in range(ny):
            for x in range(nx):
                lab = L[z, y, x]
                if lab == mask_label:
                    continue
                k = lab - start_label
                if gz < zmin[k]:
                    zmin[k] = gz
                if gz > zmax[k]:
                    zmax[k] = gz


# --------------------------------------------------------------------------------------
# input checks and masked seeding helpers
# --------------------------------------------------------------------------------------
@kernel("exact")
def ranks_to_coords(M, z_off, ranks, state, out):
    """Coordinates of the mask voxels whose rank (C order among mask voxels) is listed.

    ``ranks`` is sorted; ``state = [voxels seen so far, next rank position]`` carries
    across slabs.
    """
    nz, ny, nx = M.shape
    seen = state[0]
    pos = state[1]
    n = ranks.shape[0]
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                if M[z, y, x] == 0:
                    continue
                while pos < n and ranks[pos] == seen:
                    out[pos, 0] = z + z_off
                    out[pos, 1] = y
                    out[pos, 2] = x
                    pos += 1
                seen += 1
    state[0] = seen
    state[1] = pos


@kernel("exact")
def _vq_one(i, data, codes, cell, origin, gshape, cell_start, cell_items, labels):
    gz, gy, gx = gshape[0], gshape[1], gshape[2]
    rmax = max(gz, max(gy, gx))
    p0 = np.float64(data[i, 0])
    p1 = np.float64(data[i, 1])
    p2 = np.float64(data[i, 2])
    c0 = min(max(int((p0 - origin[0]) // cell[0]), 0), gz - 1)
    c1 = min(max(int((p1 - origin[1]) // cell[1]), 0), gy - 1)
    c2 = min(max(int((p2 - origin[2]) // cell[2]), 0), gx - 1)
    best = np.inf
    bj = -1
    hmin = min(cell[0], min(cell[1], cell[2]))
    for r in range(rmax + 1):
        if r >= 1 and bj >= 0:
            # every cell of shell r is at least (r - 1) cells away on some axis
            lb = (r - 1) * hmin
            if lb * lb * (1.0 - 1e-9) > best:
                break
        for a in range(c0 - r, c0 + r + 1):
            if a < 0 or a >= gz:
                continue
            for b in range(c1 - r, c1 + r + 1):
                if b < 0 or b >= gy:
                    continue
                edge_ab = abs(a - c0) == r or abs(b - c1) == r
                for c in range(c2 - r, c2 + r + 1):
                    if c < 0 or c >= gx:
                        continue
                    if not edge_ab and abs(c - c2) != r:
                        continue
                    cid = (a * gy + b) * gx + c
                    for q in range(cell_start[cid], cell_start[cid + 1]):
                        j = cell_items[q]
                        dist = 0.0
                        t = codes[j, 0] - p0
                        dist += t * t
                        t = codes[j, 1] - p1
                        dist += t * t
                        t = codes[j, 2] - p2
                        dist += t * t
                        if dist < best or (dist == best and j < bj):
                            best = dist
                            bj = j
    labels[i] = bj


@kernel("exact", parallel=True)
def vq_grid(data, codes, cell, origin, gshape, cell_start, cell_items, labels):
    """Nearest code of every observation, exactly as scipy.cluster.vq.vq (nfeat < 5).

    The squared distance is accumulated feature by feature in float64 starting from 0,
    and the first (lowest-index) code wins ties. Codes are bucketed in a uniform grid
    and cells are visited in growing shells until no farther cell can win.
    """
    for i in prange(data.shape[0]):
        _vq_one(np.int64(i), data, codes, cell, origin, gshape, cell_start, cell_items, labels)


# --------------------------------------------------------------------------------------
# maskSLIC seeding: nearest codes by blocks of the lattice (exact, as scipy.cluster.vq)
# --------------------------------------------------------------------------------------
# At most this many candidate codes are kept per block; a block with more searches the
# whole code grid for each of its points (``_vq_one``).
_VQ_CAP = 24
# Relative margin of the dominance test (float64 rounding is ~1e-16 relative).
_VQ_TOL = 1e-9


@kernel("exact")
def vq_block_plan(data, bs, dlo, nb):
    """Blocks of the observations (integer coordinates) for ``vq_blocks``: block
    ``((z - dlo0) // bs0, (y - dlo1) // bs1, (x - dlo2) // bs2)`` in a grid of ``nb``
    blocks. Returns the occupied block of every observation (an index into the
    occupied blocks, in order of first appearance) and the occupied blocks' bounding
    boxes ``[z0, y0, x0, z1, y1, x1]`` (inclusive) of their observations. The blocks
    depend only on the observations, so one plan serves every Lloyd iteration."""
    n = data.shape[0]
    nbt = nb[0] * nb[1] * nb[2]
    slot = np.full(nbt, -1, np.int64)
    pblk = np.empty(n, np.int32)
    cap = 1024
    box = np.empty((cap, 6), np.int64)
    n_occ = 0
    for i in range(n):
        z = np.int64(data[i, 0])
        y = np.int64(data[i, 1])
        x = np.int64(data[i, 2])
        bz = (z - dlo[0]) // bs[0]
        b = (bz * nb[1] + (y - dlo[1]) // bs[1]) * nb[2] + (x - dlo[2]) // bs[2]
        o = slot[b]
        if o < 0:
            o = n_occ
            n_occ += 1
            slot[b] = o
            if o >= cap:
                grown = np.empty((2 * cap, 6), np.int64)
                grown[:cap] = box
                box = grown
                cap *= 2
            box[o, 0] = z
            box[o, 1] = y
            box[o, 2] = x
            box[o, 3] = z
            box[o, 4] = y
            box[o, 5] = x
        else:
            box[o, 0] = min(box[o, 0], z)
            box[o, 1] = min(box[o, 1], y)
            box[o, 2] = min(box[o, 2], x)
            box[o, 3] = max(box[o, 3], z)
            box[o, 4] = max(box[o, 4], y)
            box[o, 5] = max(box[o, 5], x)
        pblk[i] = o
    return pblk, box[:n_occ].copy()


@kernel("exact")
def _vq_dominated(codes, i, j, c0, c1, c2, e0, e1, e2):
    """Whether code ``i`` is strictly nearer than code ``j`` to every point of the box
    with centre ``c`` and half extents ``e``, with a margin far beyond float64
    rounding: then ``j`` wins no point of the box, even under scipy's arithmetic and
    tie rule. ``|p - i|^2 - |p - j|^2`` is affine in ``p``: its maximum over the box
    is ``|c - i|^2 - |c - j|^2 + 2 sum_a e_a |j_a - i_a|``."""
    a0 = c0 - codes[i, 0]
    a1 = c1 - codes[i, 1]
    a2 = c2 - codes[i, 2]
    b0 = c0 - codes[j, 0]
    b1 = c1 - codes[j, 1]
    b2 = c2 - codes[j, 2]
    di = a0 * a0 + a1 * a1 + a2 * a2
    dj = b0 * b0 + b1 * b1 + b2 * b2
    s = 2.0 * (
        e0 * abs(codes[j, 0] - codes[i, 0])
        + e1 * abs(codes[j, 1] - codes[i, 1])
        + e2 * abs(codes[j, 2] - codes[i, 2])
    )
    fmax = di - dj + s
    tol = _VQ_TOL * (di + dj + s + e0 * e0 + e1 * e1 + e2 * e2 + 1.0)
    return fmax < -tol


@kernel("exact")
def _vq_block(o, box, codes, lo, cell, g, cstart, citems, scratch, cands, ncand):
    """Candidate codes of block ``o``: every code that can be nearest to one of its
    points. A code near the box centre (``j0``) bounds the distance of every point of
    the box to its nearest code by ``j0``'s farthest distance ``D`` over the box; the
    codes within ``sqrt(D)`` of the box that ``j0`` does not dominate there are kept,
    then those dominated by another kept code are dropped."""
    gz, gy, gx = g[0], g[1], g[2]
    c0 = 0.5 * (box[o, 0] + box[o, 3])
    c1 = 0.5 * (box[o, 1] + box[o, 4])
    c2 = 0.5 * (box[o, 2] + box[o, 5])
    e0 = 0.5 * (box[o, 3] - box[o, 0])
    e1 = 0.5 * (box[o, 4] - box[o, 1])
    e2 = 0.5 * (box[o, 5] - box[o, 2])
    # -- j0: the code nearest to the centre (shells of grid cells)
    q0 = min(max(int(np.floor((c0 - lo[0]) / cell[0])), 0), gz - 1)
    q1 = min(max(int(np.floor((c1 - lo[1]) / cell[1])), 0), gy - 1)
    q2 = min(max(int(np.floor((c2 - lo[2]) / cell[2])), 0), gx - 1)
    hmin = min(cell[0], min(cell[1], cell[2]))
    rmax = max(gz, max(gy, gx))
    best = np.inf
    j0 = -1
    for r in range(rmax + 1):
        if j0 >= 0:
            lb = (r - 1) * hmin
            if lb > 0 and lb * lb > best:
                break
        for a in range(max(q0 - r, 0), min(q0 + r, gz - 1) + 1):
            for b in range(max(q1 - r, 0), min(q1 + r, gy - 1) + 1):
                edge_ab = abs(a - q0) == r or abs(b - q1) == r
                for c in range(max(q2 - r, 0), min(q2 + r, gx - 1) + 1):
                    if not edge_ab and abs(c - q2) != r:
                        continue
                    cid = (a * gy + b) * gx + c
                    for q in range(cstart[cid], cstart[cid + 1]):
                        j = citems[q]
                        t0 = codes[j, 0] - c0
                        t1 = codes[j, 1] - c1
                        t2 = codes[j, 2] - c2
                        d = t0 * t0 + t1 * t1 + t2 * t2
                        if d < best:
                            best = d
                            j0 = j
    # -- D: j0's largest squared distance over the box; the codes within sqrt(D)
    t0 = abs(codes[j0, 0] - c0) + e0
    t1 = abs(codes[j0, 1] - c1) + e1
    t2 = abs(codes[j0, 2] - c2) + e2
    rad = np.sqrt(t0 * t0 + t1 * t1 + t2 * t2) * (1.0 + 1e-6) + 1e-6
    a0 = min(max(int(np.floor((c0 - e0 - rad - lo[0]) / cell[0])), 0), gz - 1)
    a1 = min(max(int(np.floor((c0 + e0 + rad - lo[0]) / cell[0])), 0), gz - 1)
    b0 = min(max(int(np.floor((c1 - e1 - rad - lo[1]) / cell[1])), 0), gy - 1)
    b1 = min(max(int(np.floor((c1 + e1 + rad - lo[1]) / cell[1])), 0), gy - 1)
    d0 = min(max(int(np.floor((c2 - e2 - rad - lo[2]) / cell[2])), 0), gx - 1)
    d1 = min(max(int(np.floor((c2 + e2 + rad - lo[2]) / cell[2])), 0), gx - 1)
    n = 0
    cap = scratch.shape[0]
    for a in range(a0, a1 + 1):
        for b in range(b0, b1 + 1):
            for c in range(d0, d1 + 1):
                cid = (a * gy + b) * gx + c
                for q in range(cstart[cid], cstart[cid + 1]):
                    j = citems[q]
                    if j != j0 and _vq_dominated(codes, j0, j, c0, c1, c2, e0, e1, e2):
                        continue
                    if n < cap:
                        scratch[n] = j
                    n += 1
    if n > cap:
        ncand[o] = -1  # too many: full search for each point
        return
    # -- drop the candidates that another candidate dominates over the box (dominance
    # is transitive, so all of them at once)
    m = 0
    for u in range(n):
        j = scratch[u]
        keep = True
        for v in range(n):
            if v != u and _vq_dominated(codes, scratch[v], j, c0, c1, c2, e0, e1, e2):
                keep = False
                break
        if keep:
            if m < cands.shape[1]:
                cands[o, m] = j
            m += 1
    ncand[o] = m if m <= cands.shape[1] else -1


@kernel("exact")
def vq_blocks(data, codes, pblk, box, lo, cell, g, cstart, citems, grid_cell, grid_lo, grid_g,
              grid_start, grid_items, labels):  # fmt: skip
    """Nearest code of every observation, exactly as scipy.cluster.vq.vq (nfeat < 5),
    by blocks of observations (``vq_block_plan``).

    Each block first gets the codes that can be nearest to one of its points (those
    that no other code beats everywhere in the block's bounding box, with a margin
    far beyond rounding: see ``_vq_dominated``), usually a few; each observation then
    compares itself with those only, with scipy's arithmetic (the squared distance
    accumulated feature by feature in float64 from 0) and its tie rule (the lowest
    index wins). Codes are bucketed in a grid (``lo``, ``cell``, ``g``; cells
    ``floor((code - lo) / cell)``, CSR ``cstart``/``citems``). A block with too many
    candidates falls back to ``vq_grid``'s search (its grid: the ``grid_*``
    arguments).
    """
    cands, ncand = vq_candidates(codes, box, lo, cell, g, cstart, citems)
    vq_assign(data, codes, pblk, cands, ncand, grid_cell, grid_lo, grid_g, grid_start, grid_items,
              labels)  # fmt: skip


@kernel("exact", parallel=True)
def vq_candidates(codes, box, lo, cell, g, cstart, citems):
    """Candidate codes of every block (``_vq_block``), in chunks of 256 blocks."""
    n_occ = box.shape[0]
    cands = np.empty((n_occ, _VQ_CAP), np.int32)
    ncand = np.empty(n_occ, np.int64)
    n_chunks = (n_occ + 255) // 256
    for ch in prange(n_chunks):
        scratch = np.empty(8 * _VQ_CAP, np.int64)
        for o in range(ch * 256, min((ch + 1) * 256, n_occ)):
            _vq_block(o, box, codes, lo, cell, g, cstart, citems, scratch, cands, ncand)
    return cands, ncand


@kernel("exact", parallel=True)
def vq_assign(data, codes, pblk, cands, ncand, grid_cell, grid_lo, grid_g, grid_start, grid_items,
              labels):  # fmt: skip
    """Each observation against its block's candidates (scipy's arithmetic and tie
    rule); blocks without a list (``ncand < 0``) search the whole grid (``_vq_one``)."""
    n = data.shape[0]
    n_chunks = (n + 16383) // 16384
    for ch in prange(n_chunks):
        for i in range(ch * 16384, min((ch + 1) * 16384, n)):
            o = pblk[i]
            m = ncand[o]
            if m < 0:
                _vq_one(np.int64(i), data, codes, grid_cell, grid_lo, grid_g, grid_start,
                        grid_items, labels)  # fmt: skip
                continue
            p0 = np.float64(data[i, 0])
            p1 = np.float64(data[i, 1])
            p2 = np.float64(data[i, 2])
            best = np.inf
            bj = -1
            for u in range(m):
                j = np.int64(cands[o, u])
                dist = 0.0
                t = codes[j, 0] - p0
                dist += t * t
                t = codes[j, 1] - p1
                dist += t * t
                t = codes[j, 2] - p2
                dist += t * t
                if dist < best or (dist == best and j < bj):
                    best = dist
                    bj = j
            labels[i] = bj


@kernel("exact")
def cluster_means(data, labels, nc, old):
    """scipy's update_cluster_means for integer observations (sums are exact)."""
    sums = np.zeros((nc, 3))
    counts = np.zeros(nc, np.int64)
    for i in range(data.shape[0]):
        j = labels[i]
        counts[j] += 1
        for c in range(3):
            sums[j, c] += data[i, c]
    out = np.empty((nc, 3))
    empty = False
    for j in range(nc):
        if counts[j] > 0:
            for c in range(3):
                out[j, c] = sums[j, c] / counts[j]
        else:
            empty = True
            for c in range(3):
                out[j, c] = old[j, c]
    return out, empty


# --------------------------------------------------------------------------------------
# the k-means iterations of a volume held in one slab, between the assignments
# --------------------------------------------------------------------------------------
@kernel("objmode")  # holds the GIL: object mode inside
def _cpu_clock():
    """The process's CPU seconds (for the optional phase timing of the k-means steps)."""
    with numba.objmode(t="float64"):
        t = time.process_time()
    return t


@kernel("exact")
def kmeans_update(X, M, L, centers, alive, coords, ip, windows, res, count, sums, done,
                  max_num_iter, final, parallel_update, n_threads, timing):  # fmt: skip
    """After the assignment of iteration ``done`` of a volume held in one slab (its
    ``res``, see ``assign_slab``): the update and the new centres, in one call. Returns
    whether the iterations go on (scikit-image stops when no label changed, or before
    the last update of its final pass).

    The kernels of the iterations are called from Python, two or three per iteration:
    a kernel called from here is linked into this function and optimised again by
    LLVM (the assignment would add ~10 s of compilation, SLICO's kernels ~1.5 s to
    every first call). With a non-empty ``timing``, the CPU seconds are added to
    ``timing[2]``."""
    t0 = _cpu_clock() if timing.size > 0 else 0.0
    need_update = not (final and done == max_num_iter - 1)
    any_change = False
    kept = False  # a voxel that no window reached kept its label
    for t in range(res.shape[0]):
        any_change = any_change or res[t, 1] != 0
        kept = kept or res[t, 2] != 0
    if need_update:
        count[:] = 0
        sums[:] = 0
        if kept or not parallel_update:
            # (such a voxel may lie outside its label's parts)
            update_serial(X, M, L, coords, ip, sums, count)
        else:
            owner, bounds, zend = update_parts_plan(windows, alive, L.shape[0], n_threads)
            update_parts(X, M, L, owner, bounds, zend, coords, ip, sums, count)
    go_on = any_change and need_update
    if go_on:
        finalize_centres(count, sums, centers, alive)
    if timing.size > 0:
        timing[2] += _cpu_clock() - t0
    return go_on and done + 1 < max_num_iter


@kernel("exact")
def kmeans_prepare(centers, alive, maxdc, ip, two, shape_f, tile, it, windows, tr, tr_lists,
                   timing):  # fmt: skip
    """Before the assignment of iteration ``it`` (one slab): the search windows, their
    tile ranges ``tr`` and the flags in ``ip``. Returns whether the candidate lists
    must be rebuilt from ``tr`` (they only change when a window reaches other tiles:
    in 2-D rarely after the first iteration). With a non-empty ``timing``, the CPU
    seconds are added to ``timing[0]``."""
    t0 = _cpu_clock() if timing.size > 0 else 0.0
    windows_into(centers, alive, two, shape_f, windows)
    tile_ranges(windows, tile, tr)
    rebuild = it == 0 or not np.array_equal(tr, tr_lists)
    ip[IP_FRESH] = it == 0
    ip[IP_UNIFORM] = colours_uniform(centers, alive, maxdc, ip[IP_SLICO] != 0)
    if timing.size > 0:
        timing[0] += _cpu_clock() - t0
    return rebuild


# --------------------------------------------------------------------------------------
# 2-D assignment, centre by centre (scikit-image's own loop order)
# --------------------------------------------------------------------------------------
# Flag bit of a label in the band's label buffer: the float32 distance of the winner
# came within the error bound of another centre's (see assign_2d); labels < 2**30.
_NEAR = np.int32(1 << 30)
# Lanes per block of a window row, and the padding of the rows of assign_2d's buffers.
_LANES = 8
PAD_2D = _LANES
# Columns per block of the rows' largest distances (assign_2d's second sweep).
_UBLOCK = 32
# fpd: float64 parameters of the exact (float64) recomputation
FPD_W, FPD_INIT, FPD_SPZ, FPD_SPY, FPD_SPX = range(5)
FPD_SIZE = 5


@kernel("exact")
def _exact_2d(z, x, W, xd, cd, windows, fpd, lst, nl):
    """scikit-image's float64 sweep for one pixel ``(z, x)`` of a 2-D image over the
    centres ``lst[:nl]`` (ascending): the nearest whose window contains it, ties to the
    lowest index (strict ``<``); -1 when no window does."""
    w = fpd[FPD_W]
    bd = fpd[FPD_INIT]
    bk = -1
    zf = np.float64(z)
    xf = np.float64(x)
    f = xd[z * W + x]
    for q in range(nl):
        k = lst[q]
        if z < windows[k, 0] or z >= windows[k, 1] or x < windows[k, 4] or x >= windows[k, 5]:
            continue
        dz = fpd[FPD_SPZ] * (cd[k, 0] - zf)
        dz *= dz
        dy = fpd[FPD_SPY] * (cd[k, 1] - 0.0)
        dy *= dy
        dzy = dz + dy
        dx = fpd[FPD_SPX] * (cd[k, 2] - xf)
        dx *= dx
        d = (dzy + dx) * w
        t = f - cd[k, 3]
        d += t * t
        if d < bd:
            bd = d
            bk = k
    return bk


@kernel("exact", inline=True)
def _eval_2d(bb, kb, fb, dd, m, dzy, w, col, kk, refine, ties, e2):
    """One centre against ``m`` lanes (a multiple of ``_LANES``) of a window row:
    scikit-image's distance, kept when smaller (``ties``: or equal with a lower centre
    index; ``refine``: float32 near-ties flagged with ``_NEAR``)."""
    if refine:
        for i in range(m):
            d = (dzy + dd[i]) * w
            t = fb[i] - col
            d += t * t
            o = bb[i]
            c = d < o
            near = abs(d - o) <= e2
            bb[i] = d if c else o
            kb[i] = (kk if c else kb[i]) | (_NEAR if near else np.int32(0))
    elif ties:
        for i in range(m):
            d = (dzy + dd[i]) * w
            t = fb[i] - col
            d += t * t
            o = bb[i]
            ko = kb[i]
            c = (d < o) | ((d == o) & (kk < ko))
            bb[i] = d if c else o
            kb[i] = kk if c else ko
    else:
        for i in range(m):
            d = (dzy + dd[i]) * w
            t = fb[i] - col
            d += t * t
            o = bb[i]
            c = d < o
            bb[i] = d if c else o
            kb[i] = kk if c else kb[i]


@kernel("exact")
def _band_2d(b, rows, featg, L2, centers, windows, sp, coords, ip, fp, out, best, bk, bits, dxx, lst,
             near_z, umax, one_i, one_f, e2, xd, cd, fpd):  # fmt: skip
    """Rows ``[b * rows, (b + 1) * rows)`` of a 2-D grayscale image (``assign_2d``).

    Two sweeps over the centres whose window reaches the band, each in index order:
    first the centres within ``near_z`` rows of the band (every pixel meets its nearest
    centres first), with a strict ``<``; then the others, each window row skipped where
    its spatial lower bound ``fl((dz^2 + dy^2) w)`` (plus the x offset's, per block of
    ``_UBLOCK`` columns) exceeds the largest distance ``umax`` of the row's blocks after
    the first sweep (an upper bound ever after: distances only decrease), and kept with
    scikit-image's tie rule (smaller, or equal with a lower index): the labels of one
    sweep over all centres in index order.

    With ``e2 > 0`` the distances are a float32 filter of scikit-image's float64 ones: a
    pixel whose winner came within ``e2`` of another centre's distance is recomputed
    exactly (``_exact_2d``); a row is skipped only if its bound exceeds the maximum by
    ``e2`` too, so a skipped centre could not have been near either.

    A window row is evaluated in whole blocks of ``_LANES`` (a multiple of the vector
    width: no scalar remainder loop); the lanes past the window get an infinite x
    offset, so their distance is infinite and never wins (they lie in the row's own
    padding or at pixels of the same row, which keep their values)."""
    H, W = L2.shape
    Wp = featg.shape[0] // H
    za = b * rows
    zb = min(za + rows, H)
    refine = e2 > 0
    oy = ip[IP_Z]
    ox = oy + ip[IP_Y]
    w = fp[FP_W]
    init = fp[FP_INIT]
    spz = sp[0]
    spy = sp[1]
    spx = sp[2]
    bb0 = best[za * Wp : zb * Wp]
    kb0 = bk[za * Wp : zb * Wp]
    for i in range(bb0.shape[0]):
        bb0[i] = init
        kb0[i] = -1
    cxs = coords[ox : ox + W]
    y0f = coords[oy]
    inf = best.dtype.type(np.inf)
    nl = 0
    for k in range(centers.shape[0]):
        if windows[k, 0] >= zb or windows[k, 1] <= za:
            continue
        if windows[k, 5] <= windows[k, 4] or windows[k, 3] <= windows[k, 2]:
            continue
        lst[nl] = k
        nl += 1
    nu = (W + _UBLOCK - 1) // _UBLOCK
    e2d = np.float64(e2)
    for sweep in range(2):
        if sweep == 1:  # the blocks' largest distances after the first sweep
            for z in range(za, zb):
                for q in range(nu):
                    lo = z * Wp + q * _UBLOCK
                    n = min(_UBLOCK, W - q * _UBLOCK)
                    umax[z - za, q] = _max_bits(bits[lo : lo + n], n, one_i, one_f) + e2d
        for q in range(nl):
            k = lst[q]
            ckz = centers[k, 0]
            near = ckz >= za - near_z and ckz < zb + near_z
            if near != (sweep == 0):
                continue
            z0 = max(windows[k, 0], za)
            z1 = min(windows[k, 1], zb)
            x0 = windows[k, 4]
            x1 = windows[k, 5]
            n = x1 - x0
            cky = centers[k, 1]
            ckx = centers[k, 2]
            col = centers[k, 3]
            cx = cxs[x0:x1]
            dd = dxx[: n + _LANES]
            for i in range(n):
                dx = spx * (ckx - cx[i])
                dd[i] = dx * dx
            for i in range(n, n + _LANES):
                dd[i] = inf
            dy = spy * (cky - y0f)
            dy *= dy
            kk = np.int32(k)
            q0 = x0 // _UBLOCK
            q1 = (x1 - 1) // _UBLOCK
            for z in range(z0, z1):
                dz = spz * (ckz - coords[z])
                dz *= dz
                dzy = dz + dy
                xa = 0
                xb = n
                if sweep == 1:
                    # the blocks this row can improve (x offset 0 inside the centre's
                    # column's block, else the block edge nearest to it)
                    lb0 = np.float64(dzy * w)
                    ur = umax[z - za]
                    xa = n
                    xb = 0
                    for u in range(q0, q1 + 1):
                        bx0 = max(u * _UBLOCK, x0) - x0
                        bx1 = min(u * _UBLOCK + _UBLOCK, x1) - x0
                        lb = lb0
                        if cx[bx0] > ckx:
                            lb = np.float64((dzy + dd[bx0]) * w)
                        elif cx[bx1 - 1] < ckx:
                            lb = np.float64((dzy + dd[bx1 - 1]) * w)
                        if lb <= ur[u]:
                            xa = min(xa, bx0)
                            xb = max(xb, bx1)
                    if xa >= xb:
                        continue
                m = (xb - xa + _LANES - 1) // _LANES * _LANES
                v = z * Wp + x0 + xa
                _eval_2d(best[v : v + m], bk[v : v + m], featg[v : v + m], dd[xa : xa + m], m,
                         dzy, w, col, kk, refine, sweep == 1 and not refine, e2)  # fmt: skip
    sl = np.int32(ip[IP_START])
    ml = np.int32(ip[IP_MASKLAB])
    n_assigned = 0
    n_kept = 0
    n_near = 0
    n_refined = 0
    for z in range(za, zb):
        lr = L2[z]
        kr = bk[z * Wp : z * Wp + W]
        for i in range(W):
            kw = kr[i]
            n_near += np.int32(kw >= _NEAR)
        if n_near > 0:  # float32 near-ties: scikit-image's float64 sweep for these pixels
            for i in range(W):
                if kr[i] >= _NEAR:
                    kr[i] = _exact_2d(z, i, W, xd, cd, windows, fpd, lst, nl)
            n_refined += n_near
            n_near = 0
        for i in range(W):
            kw = kr[i]
            a = kw >= 0
            lr[i] = kw + sl if a else (ml if ip[IP_FRESH] != 0 else lr[i])
            n_assigned += np.int32(a)
            n_kept += np.int32(not a)
    out[b, 0] = n_refined
    out[b, 1] = n_assigned > 0
    out[b, 2] = n_kept > 0 and not ip[IP_FRESH]


@kernel("exact", parallel=True)
def assign_2d(featg, L2, centers, windows, sp, coords, ip, fp, out, best, bk, bits, near_z, e2, xd,
              cd, fpd):  # fmt: skip
    """Assignment of a 2-D grayscale image without mask (``featg``, ``best``, ``bk``:
    ``H`` rows of ``Wp >= W + PAD_2D`` values, flat; ``bits``: ``best`` viewed as the
    signed integer of its size; ``L2``: ``(H, W)``), in ``len(out)`` bands of rows:
    every pixel takes the nearest centre whose window contains it, ties to the lowest
    index - scikit-image's centre-by-centre sweep, with its operations (the x offsets
    squared once per centre and band), the centres near the band first and the rows of
    the others skipped where they cannot come closer (see ``_band_2d``; ``near_z``:
    half a grid step). ``out[b]`` as ``assign_slab``'s per tile, per band (``out[b, 0]``:
    pixels recomputed in float64).

    With ``e2 > 0`` (float64 work: integer or float64 input) the sweep runs on float32
    copies of the features and centres, ``e2`` bounding twice the difference between a
    float32 distance and scikit-image's float64 one (computed by the caller from the
    value range and the window sizes): a pixel keeps its float32 winner when every
    other centre was more than ``e2`` farther, which makes it the float64 winner too;
    the others (float32 near-ties) are recomputed in float64 from ``xd`` and ``cd``
    (the float64 features and centres) with ``fpd``'s weights."""
    H, W = L2.shape
    nb = out.shape[0]
    rows = (H + nb - 1) // nb  # (any partition gives the same labels)
    for b in prange(nb):
        dxx = np.empty(W + 2 * _LANES, best.dtype)
        lst = np.empty(centers.shape[0], np.int64)
        umax = np.empty((rows, (W + _UBLOCK - 1) // _UBLOCK))
        one_i = np.empty(1, bits.dtype)  # _max_bits's conversion cell
        one_f = one_i.view(best.dtype)
        _band_2d(b, rows, featg, L2, centers, windows, sp, coords, ip, fp, out, best, bk, bits, dxx, lst,
                 near_z, umax, one_i, one_f, e2, xd, cd, fpd)  # fmt: skip

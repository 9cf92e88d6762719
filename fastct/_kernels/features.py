"""Per-region feature kernels (see :mod:`fastct.features` for the definitions).

Every array handed to these kernels is C-contiguous and 3-D ``(planes, rows, cols)``;
2-D images arrive as ``(y, 1, x)`` with ``skip_axis = 1`` marking the dummy axis.

Pass 1 reads a slab of int32 *keys*: the label values themselves (or, for label
values too large to index a table, rank + 1), 0 = background, and ``lut`` maps a key
to its dense region id (-1 for background). Region ids are only looked up once per
run; face and adjacency tests compare keys.

Determinism. Per-region sums are accumulated by *label ownership*: the dense region
ids are split into ``nparts`` classes (``(id >> 6) & (nparts - 1)``), ``prange`` runs over
the classes, and each class's thread walks the block in raster order, touching only
its own regions' accumulators. So every region's voxels are visited in global raster
(C) order by exactly one thread, whatever the number of threads, the number of
classes or the block (slab) decomposition: the float sums are bit-identical in every
configuration, in memory or streamed. Coordinate moments are exact int64 sums.
(:func:`one_pass`, the basic columns, cuts a slab along z instead and continues the
chains of the labels that span a cut afterwards: the same raster order per region.)

Accumulator layout (rows = dense region ids):

``acc_i`` (int64): 0 count; 1-3 reference voxel (first in raster order) z, y, x;
4-6 sum of (index - reference) per axis; 7-9 sum of squares per axis; 10-12 sums of
products zy, zx, yx; 13-15 bbox min; 16-18 bbox max (inclusive); 19-21 exposed faces
normal to z, y, x.

``acc_f`` (float64): 0 sum of values; 1 min; 2 max; 3 sum of gradient magnitude.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .._config import kernel

N_ACC_I = 22
N_ACC_F = 4
# Ownership classes take groups of 2**_OWNER_SHIFT consecutive ids, so threads do not
# write to the same cache lines of the accumulators (false sharing).
_OWNER_SHIFT = 6
# Adjacency: log2 of the hash-table size of a parallel work item.
_ADJ_TABLE_BITS = 15


# -- runs ----------------------------------------------------------------------------------
# Every kernel that accumulates per region walks *runs*: maximal stretches of one
# label along x. A run is (pos, len, id) with ``pos = y * nx + x`` inside core plane
# ``k``; plane ``k``'s runs occupy ``[k * ny * nx, k * ny * nx + nruns[k])`` in raster
# order. Background (label 0 / id -1) makes no run.


@kernel("exact", parallel=True)
def label_runs(lab, rpos, rlen, rval, nruns, mins, maxs):  # pragma: no cover - compiled
    """Runs of labels > 0 of every plane of ``lab``, and each plane's min and max."""
    nb, ny, nx = lab.shape
    for k in numba.prange(nb):
        base = k * ny * nx
        r = 0
        mn = np.int64(lab[k, 0, 0])
        mx = mn
        for y in range(ny):
            x = 0
            while x < nx:
                v = np.int64(lab[k, y, x])
                x1 = x + 1
                while x1 < nx and lab[k, y, x1] == v:
                    x1 += 1
                if v < mn:
                    mn = v
                if v > mx:
                    mx = v
                if v > 0:
                    rpos[base + r] = y * nx + x
                    rlen[base + r] = x1 - x
                    rval[base + r] = v
                    r += 1
                x = x1
        nruns[k] = r
        mins[k] = mn
        maxs[k] = mx


@kernel("exact", parallel=True)
def run_histogram(rlen, rval, nruns, plane, nparts, counts):  # pragma: no cover - compiled
    """``counts[v] += len`` over the runs (ownership by label value)."""
    mask = nparts - 1
    for p in numba.prange(nparts):
        for k in range(nruns.shape[0]):
            base = k * plane
            for r in range(base, base + nruns[k]):
                v = rval[r]
                if ((v >> _OWNER_SHIFT) & mask) == p:
                    counts[v] += rlen[r]


@kernel("exact", parallel=True)
def key_runs(keys, lut, zc0, ncore, rpos, rlen, rid, nruns):  # pragma: no cover - compiled
    """Runs of the core planes ``keys[zc0 : zc0 + ncore]``, with ``rid = lut[key]``."""
    _, ny, nx = keys.shape
    for c in numba.prange(ncore):
        k = zc0 + c
        base = c * ny * nx
        r = 0
        for y in range(ny):
            x = 0
            while x < nx:
                v = keys[k, y, x]
                x1 = x + 1
                while x1 < nx and keys[k, y, x1] == v:
                    x1 += 1
                if v != 0:
                    rpos[base + r] = y * nx + x
                    rlen[base + r] = x1 - x
                    rid[base + r] = lut[v]
                    r += 1
                x = x1
        nruns[c] = r


# -- pass 1: counts, intensity sums, coordinates, faces, gradient ----------------------
@kernel("exact")
def _grad_axis(lo, mid, hi, g, n, inv_h, inv_2h):  # pragma: no cover - compiled
    """np.gradient (edge_order=1) along one axis at global index ``g`` of ``n``.

    Multiplies by the reciprocal spacing, so it can differ from numpy's division by
    one unit in the last place.
    """
    if n < 2:
        return 0.0
    if g == 0:
        return (hi - mid) * inv_h
    if g == n - 1:
        return (mid - lo) * inv_h
    return (hi - lo) * inv_2h


@kernel("exact", parallel=True)
def accumulate(
    keys, img, zc0, z0, nz, rpos, rlen, rid, nruns, skip_axis, spacing, nparts,
    need_grad, need_faces, acc_i, acc_f, need_vals, fill, vals,
):  # pragma: no cover - compiled  # fmt: skip
    """One slab's contribution, from its runs.

    Core plane ``k`` is ``keys[zc0 + k]`` / ``img[zc0 + k]`` at global index ``z0 + k``;
    the neighbouring planes must be present where the global neighbour exists.
    Integer moments of a run are added in closed form; float sums voxel by voxel in
    raster order. With ``need_vals``, every value is also appended to its region's
    segment of ``vals`` (CSR, write position ``fill[id]``), so segments are in raster
    order too.
    """
    _, ny, nx = keys.shape
    plane = ny * nx
    mask = nparts - 1
    ihz, ihy, ihx = 1.0 / spacing[0], 1.0 / spacing[1], 1.0 / spacing[2]
    i2hz, i2hy, i2hx = 0.5 / spacing[0], 0.5 / spacing[1], 0.5 / spacing[2]
    for p in numba.prange(nparts):
        for k in range(nruns.shape[0]):
            zc = zc0 + k
            zg = z0 + k
            base = k * plane
            for r in range(base, base + nruns[k]):
                a = rid[r]
                if ((a >> _OWNER_SHIFT) & mask) != p:
                    continue
                run = np.int64(rlen[r])
                y = np.int64(rpos[r]) // nx
                x = np.int64(rpos[r]) - y * nx
                x1 = x + run
                c = acc_i[a, 0]
                if c == 0:
                    acc_i[a, 1] = zg
                    acc_i[a, 2] = y
                    acc_i[a, 3] = x
                    acc_i[a, 13] = zg
                    acc_i[a, 14] = y
                    acc_i[a, 15] = x
                    acc_i[a, 17] = y
                    acc_i[a, 18] = x1 - 1
                    acc_f[a, 1] = img[zc, y, x]
                    acc_f[a, 2] = img[zc, y, x]
                else:
                    if y < acc_i[a, 14]:
                        acc_i[a, 14] = y
                    if x < acc_i[a, 15]:
                        acc_i[a, 15] = x
                    if y > acc_i[a, 17]:
                        acc_i[a, 17] = y
                    if x1 - 1 > acc_i[a, 18]:
                        acc_i[a, 18] = x1 - 1
                acc_i[a, 16] = zg  # raster order: z never decreases
                acc_i[a, 0] = c + run
                dz = zg - acc_i[a, 1]
                dy = y - acc_i[a, 2]
                d0 = x - acc_i[a, 3]
                tri = run * (run - 1) // 2
                sdx = run * d0 + tri
                sdx2 = run * d0 * d0 + 2 * d0 * tri + (run - 1) * run * (2 * run - 1) // 6
                acc_i[a, 4] += run * dz
                acc_i[a, 5] += run * dy
                acc_i[a, 6] += sdx
                acc_i[a, 7] += run * dz * dz
                acc_i[a, 8] += run * dy * dy
                acc_i[a, 9] += sdx2
                acc_i[a, 10] += run * dz * dy
                acc_i[a, 11] += dz * sdx
                acc_i[a, 12] += dy * sdx
                key = keys[zc, y, x]
                s = acc_f[a, 0]
                mn = acc_f[a, 1]
                mx = acc_f[a, 2]
                g = acc_f[a, 3]
                fz = 0
                fy = 0
                j = fill[a] if need_vals else 0
                for xx in range(x, x1):
                    v = img[zc, y, xx]
                    if need_vals:
                        vals[j] = v
                        j += 1
                    s += v
                    if mn == mn and (v != v or v < mn):
                        mn = v
                    if mx == mx and (v != v or v > mx):
                        mx = v
                    if need_grad:
                        gz = 0.0
                        if nz > 1:
                            lo = img[zc - 1, y, xx] if zg > 0 else 0.0
                            hi = img[zc + 1, y, xx] if zg < nz - 1 else 0.0
                            gz = _grad_axis(lo, v, hi, zg, nz, ihz, i2hz)
                        gy = 0.0
                        if ny > 1:
                            lo = img[zc, y - 1, xx] if y > 0 else 0.0
                            hi = img[zc, y + 1, xx] if y < ny - 1 else 0.0
                            gy = _grad_axis(lo, v, hi, y, ny, ihy, i2hy)
                        gx = 0.0
                        if nx > 1:
                            lo = img[zc, y, xx - 1] if xx > 0 else 0.0
                            hi = img[zc, y, xx + 1] if xx < nx - 1 else 0.0
                            gx = _grad_axis(lo, v, hi, xx, nx, ihx, i2hx)
                        g += math.sqrt(gz * gz + gy * gy + gx * gx)
                    if need_faces:
                        if zg == 0 or keys[zc - 1, y, xx] != key:
                            fz += 1
                        if zg == nz - 1 or keys[zc + 1, y, xx] != key:
                            fz += 1
                        if skip_axis != 1:
                            if y == 0 or keys[zc, y - 1, xx] != key:
                                fy += 1
                            if y == ny - 1 or keys[zc, y + 1, xx] != key:
                                fy += 1
                if need_vals:
                    fill[a] = j
                acc_f[a, 0] = s
                acc_f[a, 1] = mn
                acc_f[a, 2] = mx
                acc_f[a, 3] = g
                if need_faces:
                    acc_i[a, 19] += fz
                    acc_i[a, 20] += fy
                    acc_i[a, 21] += 2  # a maximal run has one exposed x face at each end


# -- the one-pass path: basic columns, rows = label values ------------------------------
# Row layout of the one-pass accumulators: one row of int64 slots per label value, the
# float slots read through a float64 view of the same buffer, 16 slots (two cache lines)
# without second-order sums, 24 with them.
ROW_COUNT, ROW_REF, ROW_SUM_D, ROW_LO, ROW_HI, ROW_ZMAX = 0, 1, 4, 7, 9, 11
ROW_SUM, ROW_MIN, ROW_MAX, ROW_COV = 12, 13, 14, 16
ROW_SLOTS, ROW_SLOTS_COV = 16, 24


@kernel("exact")
def _run_values(irow, x, x1, accf, a):  # pragma: no cover - compiled
    """Sum, min and max of ``irow[x:x1]`` into row ``a``, with the NaN rule of
    :func:`accumulate` (the first NaN makes min and max NaN for good) and the test on
    min and max taken out of the loop."""
    s = accf[a, 12]
    mn = accf[a, 13]
    mx = accf[a, 14]
    nan = False
    first = 0.0
    for xx in range(x, x1):
        v = np.float64(irow[xx])
        s += v
        if v < mn:
            mn = v
        if v > mx:
            mx = v
        if v != v and not nan:
            nan = True
            first = v  # the first NaN in raster order, as accumulate keeps
    accf[a, 12] = s
    if nan:
        if mn == mn:
            mn = first
        if mx == mx:
            mx = first
    accf[a, 13] = mn
    accf[a, 14] = mx


@kernel("exact")
def _run_values_int(irow, x, x1, accf, a):  # pragma: no cover - compiled
    """:func:`_run_values` for integer values of at most 16 bits: summed in int64, then
    added to the float64 sum at once. Every partial sum of the float64 chain is an
    integer below 2**53 in magnitude (a region has fewer than 2**37 voxels), so each
    float64 addition is exact and the result is the same bits as the chain."""
    si = np.int64(0)
    lo = np.int64(irow[x])
    hi = lo
    for xx in range(x, x1):
        w = np.int64(irow[xx])
        si += w
        lo = min(lo, w)
        hi = max(hi, w)
    accf[a, 12] += np.float64(si)
    accf[a, 13] = min(accf[a, 13], np.float64(lo))
    accf[a, 14] = max(accf[a, 14], np.float64(hi))


@kernel("exact")
def _one_pass_planes(
    lab, img, k0, k1, z0, lo_row, need_cov, int_sum, acc, accf, p, mask, sel, seen, nseen, lim
):  # pragma: no cover - compiled  # fmt: skip
    """Planes ``[k0, k1)`` of :func:`one_pass`'s slab into ``acc`` / ``accf``: the runs
    of label ``w`` with ``lo_row <= w < len(acc)``, ``((w >> _OWNER_SHIFT) & mask) ==
    p`` and, when ``sel`` is not empty, ``sel[w] != 0``, in raster order. A label met
    for the first time (count 0) is appended to ``seen`` (when not empty; ``nseen[0]``
    its length); ``lim`` gets the smallest and largest label of the planes."""
    nb, ny, nx = lab.shape
    rows = acc.shape[0]
    select = sel.shape[0] > 0
    record = seen.shape[0] > 0
    bounds = np.empty(nx + 1, np.int64)
    own = np.empty(nx, np.int64)  # this row's runs of accumulated labels (start index)
    lmin = lim[0]
    lmax = lim[1]
    for k in range(k0, k1):
        zg = np.int64(z0 + k)
        for y in range(ny):
            lrow = lab[k, y]
            irow = img[k, y]
            nbd = 1
            bounds[0] = 0
            for x in range(1, nx):
                bounds[nbd] = x
                nbd += lrow[x] != lrow[x - 1]
            bounds[nbd] = nx
            nown = 0
            for i in range(nbd):
                x = bounds[i]
                w = np.int64(lrow[x])
                lmin = min(lmin, w)
                lmax = max(lmax, w)
                if (
                    w < lo_row
                    or w >= rows
                    or ((w >> _OWNER_SHIFT) & mask) != p
                    or (select and sel[w] == 0)
                ):
                    continue
                own[nown] = i
                nown += 1
                a = w
                x1 = bounds[i + 1]
                run = x1 - x
                c = acc[a, 0]
                if c == 0:
                    if record:
                        seen[nseen[0]] = w
                        nseen[0] += 1
                    acc[a, 1] = zg
                    acc[a, 2] = y
                    acc[a, 3] = x
                    acc[a, 7] = y
                    acc[a, 8] = x
                    acc[a, 9] = y
                    acc[a, 10] = x1 - 1
                    accf[a, 13] = np.float64(irow[x])
                    accf[a, 14] = np.float64(irow[x])
                else:  # without branches: x < xmin is not predictable
                    acc[a, 7] = min(acc[a, 7], y)
                    acc[a, 8] = min(acc[a, 8], x)
                    acc[a, 9] = max(acc[a, 9], y)
                    acc[a, 10] = max(acc[a, 10], x1 - 1)
                acc[a, 11] = zg
                acc[a, 0] = c + run
                dz = zg - acc[a, 1]
                dy = y - acc[a, 2]
                d0 = x - acc[a, 3]
                tri = run * (run - 1) // 2
                sdx = run * d0 + tri
                acc[a, 4] += run * dz
                acc[a, 5] += run * dy
                acc[a, 6] += sdx
                if need_cov:
                    sdx2 = run * d0 * d0 + 2 * d0 * tri + (run - 1) * run * (2 * run - 1) // 6
                    acc[a, 16] += run * dz * dz
                    acc[a, 17] += run * dy * dy
                    acc[a, 18] += sdx2
                    acc[a, 19] += run * dz * dy
                    acc[a, 20] += dz * sdx
                    acc[a, 21] += dy * sdx
            for j in range(nown):
                x = bounds[own[j]]
                if int_sum:
                    _run_values_int(irow, x, bounds[own[j] + 1], accf, np.int64(lrow[x]))
                else:
                    _run_values(irow, x, bounds[own[j] + 1], accf, np.int64(lrow[x]))
    lim[0] = lmin
    lim[1] = lmax


@kernel("exact", parallel=True)
def one_pass(
    lab, img, z0, nz, nparts, lo_row, need_cov, int_sum, acc, accf, tmp, tmpf, sel, stats
):  # pragma: no cover - compiled  # fmt: skip
    """One slab's count, coordinate sums, bbox, sum / min / max per label value.

    Plane ``k`` of ``lab`` / ``img`` is at global index ``z0 + k``. ``acc`` (int64) and
    ``accf`` (float64) are two views of one buffer with one row per label value (the
    ``ROW_*`` slots): count; reference voxel (the first in raster order, so also the
    bbox minimum along z); sums of (index - reference); bbox y/x minimum and maximum;
    last z; sum, min, max of the values; with ``need_cov`` the second-order coordinate
    sums zz, yy, xx, zy, zx, yx. Rows are found with the runs of a row (maximal
    stretches of one label along x; the run starts first, without branches): the run
    bookkeeping first, then the values of the row's runs, with the arithmetic of
    :func:`accumulate`.

    Every region's values are summed in raster order in one chain, so every number is
    bit-identical to the general path at any thread count, and the slab is cut into
    ``nz`` parts along z (one per thread): part 0 accumulates into ``acc``, part ``t``
    into the zeroed ``tmp[t - 1]`` (same rows; ``tmpf`` its float64 view). Then, part
    by part in order, a label that had no voxel before the part takes its row from
    ``tmp`` as it is (its chain started in this part); a label that had (it spans the
    cut) is summed again over the part's planes up to its last one, continuing its
    chain in ``acc`` (``nparts`` threads, by ownership class ``(label >>
    _OWNER_SHIFT) & (nparts - 1)``; ``sel``: one zeroed byte per row, the labels of
    that pass). ``tmp`` is zeroed again for the next call. Only labels in ``[lo_row,
    len(acc))`` are accumulated (``lo_row >= 1``); ``stats`` gets the smallest and
    largest label of the slab, so the caller can grow ``acc`` (and ``tmp``) and run the
    slab again for the new labels alone (they had no voxel before). ``img`` may be any
    real dtype whose values float64 holds exactly; ``int_sum`` (integers of at most 16
    bits only) sums the values of a run in int64 (:func:`_run_values_int`), the same
    bits faster.
    """
    nb = lab.shape[0]
    rows = acc.shape[0]
    width = acc.shape[1]
    seen = np.empty((max(nz - 1, 1), rows), np.int64)
    nseen = np.zeros(nz, np.int64)
    lims = np.empty((nz, 2), np.int64)
    no_sel = sel[:0]
    for t in numba.prange(nz):
        k0 = t * nb // nz
        k1 = (t + 1) * nb // nz
        lims[t, 0] = np.int64(lab[k0, 0, 0])
        lims[t, 1] = lims[t, 0]
        if t == 0:
            _one_pass_planes(lab, img, k0, k1, z0, lo_row, need_cov, int_sum, acc, accf, 0,
                             0, no_sel, seen[0, :0], nseen[0:1], lims[0])  # fmt: skip
        else:
            _one_pass_planes(lab, img, k0, k1, z0, lo_row, need_cov, int_sum, tmp[t - 1],
                             tmpf[t - 1], 0, 0, no_sel, seen[t - 1], nseen[t : t + 1],
                             lims[t])  # fmt: skip
    for t in range(1, nz):
        part = tmp[t - 1]
        last = np.int64(-1)
        for j in range(nseen[t]):
            a = seen[t - 1, j]
            if acc[a, 0] == 0:
                for q in range(width):
                    acc[a, q] = part[a, q]
            else:
                sel[a] = 1
                last = max(last, part[a, ROW_ZMAX])
            for q in range(width):
                part[a, q] = 0
        if last >= 0:  # the labels that span the cut, continued in raster order
            k0 = t * nb // nz
            k1 = last - z0 + 1
            for p in numba.prange(nparts):
                lim = np.zeros(2, np.int64)
                _one_pass_planes(lab, img, k0, k1, z0, lo_row, need_cov, int_sum, acc, accf, p,
                                 nparts - 1, sel, seen[0, :0], nseen[0:1], lim)  # fmt: skip
            for j in range(nseen[t]):
                sel[seen[t - 1, j]] = 0
    stats[0] = lims[0, 0]
    stats[1] = lims[0, 1]
    for t in range(1, nz):
        stats[0] = min(stats[0], lims[t, 0])
        stats[1] = max(stats[1], lims[t, 1])


@kernel("exact", parallel=True)
def central_sums(img, zc0, rpos, rlen, rid, nruns, nparts, mean, acc_c):  # pragma: no cover
    """Second pass without stored values: sums of (v - mean)^2, ^3, ^4 per region."""
    _, ny, nx = img.shape
    plane = ny * nx
    mask = nparts - 1
    for p in numba.prange(nparts):
        for k in range(nruns.shape[0]):
            zc = zc0 + k
            base = k * plane
            for r in range(base, base + nruns[k]):
                a = rid[r]
                if ((a >> _OWNER_SHIFT) & mask) != p:
                    continue
                y = rpos[r] // nx
                x = rpos[r] - y * nx
                mu = mean[a]
                c2 = acc_c[a, 0]
                c3 = acc_c[a, 1]
                c4 = acc_c[a, 2]
                for xx in range(x, x + rlen[r]):
                    d = img[zc, y, xx] - mu
                    d2 = d * d
                    c2 += d2
                    c3 += d2 * d
                    c4 += d2 * d2
                acc_c[a, 0] = c2
                acc_c[a, 1] = c3
                acc_c[a, 2] = c4


# -- adjacency --------------------------------------------------------------------------
@kernel("exact")
def _hash(key, bits):  # pragma: no cover - compiled
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    return np.int64(h >> np.uint64(64 - bits))


@kernel("exact")
def _table_add(tk, tc, bits, key, count):  # pragma: no cover - compiled
    """Add ``count`` to ``key`` in an open-addressing table; returns 1 if the key is new."""
    mask = (np.int64(1) << bits) - 1
    h = _hash(key, bits)
    while True:
        if tk[h] == key:
            tc[h] += count
            return 0
        if tk[h] < 0:
            tk[h] = key
            tc[h] = count
            return 1
        h = (h + 1) & mask


@kernel("exact", parallel=True)
def adjacency_scan(
    keys, lut, zc0, ncore, z0, nz, skip_axis, n_ids, include_bg, item_planes, cap, n_out,
    out_keys, out_faces,
):  # pragma: no cover - compiled  # fmt: skip
    """Face-adjacent pairs of different regions, each face counted once (from its - side).

    Entry key = ``(lo * (n_ids + 1) + hi) * 3 + axis`` with ``lo < hi`` the region
    ids + 1 (0 = background), ids from ``lut`` applied to the label keys. Work item
    ``c`` (``item_planes`` planes from ``c * item_planes``) merges its faces in a hash table and writes
    the (key, faces) entries to ``out_keys/out_faces[c * cap :]``, their number to
    ``n_out[c]``; ``cap`` must be at least the item's number of faces, which bounds
    the entries. Keys may repeat (a full table is flushed and reused).
    """
    _, ny, nx = keys.shape
    stride = np.int64(n_ids) + 1
    bits = _ADJ_TABLE_BITS
    size = np.int64(1) << bits
    nitems = (ncore + item_planes - 1) // item_planes
    for c in numba.prange(nitems):
        tk = np.full(size, -1, np.int64)
        tc = np.zeros(size, np.int64)
        used = 0
        base = c * cap
        ne = 0
        for k in range(c * item_planes, min(ncore, (c + 1) * item_planes)):
            zc = zc0 + k
            zg = z0 + k
            for y in range(ny):
                for x in range(nx):
                    ka = keys[zc, y, x]
                    for axis in range(3):
                        if axis == 0:
                            if zg + 1 >= nz:
                                continue
                            kb = keys[zc + 1, y, x]
                        elif axis == 1:
                            if skip_axis == 1 or y + 1 >= ny:
                                continue
                            kb = keys[zc, y + 1, x]
                        else:
                            if x + 1 >= nx:
                                continue
                            kb = keys[zc, y, x + 1]
                        if ka == kb:
                            continue
                        if (ka == 0 or kb == 0) and not include_bg:
                            continue
                        a = lut[ka]
                        b = lut[kb]
                        lo = min(a, b) + 1
                        hi = max(a, b) + 1
                        used += _table_add(tk, tc, bits, (lo * stride + hi) * 3 + axis, 1)
                        if 2 * used > size:
                            for h in range(size):
                                if tk[h] >= 0:
                                    out_keys[base + ne] = tk[h]
                                    out_faces[base + ne] = tc[h]
                                    ne += 1
                                    tk[h] = -1
                            used = 0
        for h in range(size):
            if tk[h] >= 0:
                out_keys[base + ne] = tk[h]
                out_faces[base + ne] = tc[h]
                ne += 1
        n_out[c] = ne


@kernel("exact")
def merge_pairs(tk, tc, bits, keys, faces):  # pragma: no cover - compiled
    """Add (key, faces) entries into the global table; returns the number of new keys."""
    new = 0
    for i in range(keys.shape[0]):
        new += _table_add(tk, tc, bits, keys[i], faces[i])
    return new


# -- finalisation -------------------------------------------------------------------------
@kernel("exact")
def _lerp(a, b, t):  # pragma: no cover - compiled
    """numpy's _lerp, operation for operation."""
    d = b - a
    r = a + d * t
    if t >= 0.5:
        r = b - d * (1.0 - t)
    return r


@kernel("exact")
def _n_buckets(n):  # pragma: no cover - compiled
    return min(n // 2 + 1, 65536)


@kernel("exact")
def _bucket(v, lo, scale, nb):  # pragma: no cover - compiled
    """Monotone in ``v``: rounding of ``v - lo`` and of the product never reverses order."""
    return min(np.int64((v - lo) * scale), nb - 1)


@kernel("exact")
def _select(seg, bidx, nb, hist, ranks, slot, buf, out):  # pragma: no cover - compiled
    """Values of ``sorted(seg)[ranks]`` (``ranks`` ascending) without sorting ``seg``.

    ``bidx[j]`` is the bucket of ``seg[j]`` and ``hist[b]`` the number of values in
    buckets ``< b`` (cumulative, length ``nb + 1``). Buckets are monotone in the
    value, so each rank's bucket is known exactly; only those buckets are gathered
    (into ``buf``) and sorted. ``slot`` (length >= ``nb``, all -1) is scratch and is
    left all -1.
    """
    nr = ranks.shape[0]
    rb = np.empty(nr, np.int64)
    starts = np.empty(nr + 1, np.int64)
    pos = np.empty(nr, np.int64)
    nsel = 0
    total = 0
    b = 0
    for i in range(nr):
        r = ranks[i]
        while hist[b + 1] <= r:
            b += 1
        rb[i] = b
        if slot[b] < 0:
            slot[b] = nsel
            starts[nsel] = total
            pos[nsel] = total
            total += hist[b + 1] - hist[b]
            nsel += 1
    starts[nsel] = total
    for j in range(seg.shape[0]):
        t = slot[bidx[j]]
        if t >= 0:
            buf[pos[t]] = seg[j]
            pos[t] += 1
    for t in range(nsel):
        buf[starts[t] : starts[t + 1]].sort()
    for i in range(nr):
        b = rb[i]
        out[i] = buf[starts[slot[b]] + ranks[i] - hist[b]]
    for i in range(nr):
        slot[rb[i]] = -1


# Regions per parallel work item of finalize_values (scratch is allocated per item).
_FINALIZE_CHUNK = 256


@kernel("exact", parallel=True)
def finalize_values(vals, offsets, mean, vmin, vmax, q, acc_c, pct):  # pragma: no cover
    """Per region: central sums (raster order) and exact percentiles (numpy 'linear').

    The percentile ranks are found by :func:`_select` from a value-range histogram
    built in the same pass as the central sums.
    """
    n = offsets.shape[0] - 1
    nq = q.shape[0]
    nchunks = (n + _FINALIZE_CHUNK - 1) // _FINALIZE_CHUNK
    for ch in numba.prange(nchunks):
        i0 = ch * _FINALIZE_CHUNK
        i1 = min(n, i0 + _FINALIZE_CHUNK)
        big = 1
        for i in range(i0, i1):
            big = max(big, offsets[i + 1] - offsets[i])
        nbmax = _n_buckets(big) if nq > 0 else 0
        hist = np.zeros(nbmax + 1, np.int64)
        slot = np.full(nbmax, -1, np.int64)
        buf = np.empty(big if nq > 0 else 0, np.float64)
        bidx = np.empty(big if nq > 0 else 0, np.uint16)
        ranks = np.empty(2 * nq, np.int64)
        gam = np.empty(nq, np.float64)
        got = np.empty(2 * nq, np.float64)
        val = np.empty(2 * nq, np.float64)
        for i in range(i0, i1):
            s = offsets[i]
            e = offsets[i + 1]
            m = e - s
            mu = mean[i]
            lo = vmin[i]
            hi = vmax[i]
            # value histogram only when percentiles are wanted and the values are finite
            nb = _n_buckets(m)
            scale = nb / (hi - lo) if hi > lo else 0.0
            use_hist = nq > 0 and scale > 0.0 and scale < math.inf
            if use_hist:
                hist[: nb + 1] = 0
            c2 = 0.0
            c3 = 0.0
            c4 = 0.0
            for j in range(s, e):
                v = np.float64(vals[j])
                d = v - mu
                d2 = d * d
                c2 += d2
                c3 += d2 * d
                c4 += d2 * d2
                if use_hist:
                    b = _bucket(v, lo, scale, nb)
                    bidx[j - s] = b
                    hist[b + 1] += 1
            acc_c[i, 0] = c2
            acc_c[i, 1] = c3
            acc_c[i, 2] = c4
            if nq == 0:
                continue
            if lo != lo or hi != hi:  # NaN in the region: numpy returns NaN
                for t in range(nq):
                    pct[i, t] = np.nan
                continue
            # ranks needed by numpy's linear rule
            for t in range(nq):
                vi = (m - 1) * q[t]
                if vi >= m - 1:
                    ranks[2 * t] = m - 1
                    ranks[2 * t + 1] = m - 1
                    gam[t] = vi + 1.0  # numpy's gamma once the index is clamped to -1
                else:
                    prev = math.floor(vi)
                    ranks[2 * t] = np.int64(prev)
                    ranks[2 * t + 1] = np.int64(prev) + 1
                    gam[t] = vi - prev
            order = np.argsort(ranks)
            sr = ranks[order]
            if hi == lo:
                got[:] = lo
            elif use_hist:
                for b in range(nb):
                    hist[b + 1] += hist[b]
                _select(vals[s:e], bidx, nb, hist, sr, slot, buf, got)
            else:  # infinite values or range: plain sort
                tmp = np.sort(vals[s:e].astype(np.float64))
                for t in range(2 * nq):
                    got[t] = tmp[sr[t]]
            for t in range(2 * nq):
                val[order[t]] = got[t]
            for t in range(nq):
                pct[i, t] = _lerp(val[2 * t], val[2 * t + 1], gam[t])


@kernel("exact")
def _jacobi_eigvals(a):  # pragma: no cover - compiled
    """Eigenvalues (on the diagonal, in place) of a symmetric 3x3 matrix by cyclic
    Jacobi rotations: accurate to rounding also for (near-)degenerate matrices."""
    for _ in range(64):
        off = a[0, 1] * a[0, 1] + a[0, 2] * a[0, 2] + a[1, 2] * a[1, 2]
        if off == 0.0:
            break
        for p in range(2):
            for r in range(p + 1, 3):
                apr = a[p, r]
                if apr == 0.0:
                    continue
                theta = (a[r, r] - a[p, p]) / (2.0 * apr)
                t = 1.0 / (abs(theta) + math.sqrt(theta * theta + 1.0))
                if theta < 0.0:
                    t = -t
                c = 1.0 / math.sqrt(t * t + 1.0)
                sn = t * c
                for j in range(3):
                    ajp = a[j, p]
                    ajr = a[j, r]
                    a[j, p] = c * ajp - sn * ajr
                    a[j, r] = sn * ajp + c * ajr
                for j in range(3):
                    apj = a[p, j]
                    arj = a[r, j]
                    a[p, j] = c * apj - sn * arj
                    a[r, j] = sn * apj + c * arj
                a[p, r] = 0.0
                a[r, p] = 0.0


@kernel("exact")
def _cov(acc_i, i, a, b, col):  # pragma: no cover - compiled
    """Covariance (in index units) of axes ``a``, ``b`` of region ``i``.

    ``n^2 cov = n * sum(da db) - sum(da) sum(db)`` is exact in int64 unless it could
    overflow; then it is evaluated in float64.
    """
    n = acc_i[i, 0]
    sab = acc_i[i, col]
    sa = acc_i[i, 4 + a]
    sb = acc_i[i, 4 + b]
    fn = np.float64(n)
    limit = 4.0e18
    if fn * abs(np.float64(sab)) < limit and abs(np.float64(sa)) * abs(np.float64(sb)) < limit:
        return np.float64(n * sab - sa * sb) / (fn * fn)
    return sab / fn - (sa / fn) * (sb / fn)


@kernel("exact", parallel=True)
def covariance_eigvals(acc_i, spacing, ndim, out):  # pragma: no cover - compiled
    """Descending eigenvalues of each region's covariance of physical voxel positions.

    For ``ndim == 2`` only axes 0 and 2 are used (axis 1 is the dummy axis).
    """
    n = acc_i.shape[0]
    nchunks = (n + _FINALIZE_CHUNK - 1) // _FINALIZE_CHUNK
    s0, s1, s2 = spacing[0], spacing[1], spacing[2]
    for ch in numba.prange(nchunks):
        a = np.empty((3, 3))
        for i in range(ch * _FINALIZE_CHUNK, min(n, (ch + 1) * _FINALIZE_CHUNK)):
            c00 = _cov(acc_i, i, 0, 0, 7) * (s0 * s0)
            c22 = _cov(acc_i, i, 2, 2, 9) * (s2 * s2)
            c02 = _cov(acc_i, i, 0, 2, 11) * (s0 * s2)
            if ndim == 3:
                a[0, 0] = c00
                a[1, 1] = _cov(acc_i, i, 1, 1, 8) * (s1 * s1)
                a[2, 2] = c22
                a[0, 1] = a[1, 0] = _cov(acc_i, i, 0, 1, 10) * (s0 * s1)
                a[0, 2] = a[2, 0] = c02
                a[1, 2] = a[2, 1] = _cov(acc_i, i, 1, 2, 12) * (s1 * s2)
                _jacobi_eigvals(a)
                e0, e1, e2 = a[0, 0], a[1, 1], a[2, 2]
                if e0 < e1:
                    e0, e1 = e1, e0
                if e1 < e2:
                    e1, e2 = e2, e1
                if e0 < e1:
                    e0, e1 = e1, e0
                out[i, 0] = max(e0, 0.0)
                out[i, 1] = max(e1, 0.0)
                out[i, 2] = max(e2, 0.0)
            else:
                mid = 0.5 * (c00 + c22)
                rad = math.hypot(0.5 * (c00 - c22), c02)
                out[i, 0] = max(mid + rad, 0.0)
                out[i, 1] = max(mid - rad, 0.0)

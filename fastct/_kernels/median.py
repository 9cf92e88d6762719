"""Median (rank) filter kernels: selection networks, sliding histogram, quickselect.

Every kernel works on a halo-extended block ``data`` and writes the rank-``rank``
value of each core voxel's window, where the window of core voxel ``(z, y, x)`` is
``data[z + dz, y + dy, x + dx]`` for the footprint offsets ``(dz, dy, dx)`` (all
non-negative: the footprint is already placed in the ``2 * depth + 1`` box). The
arrays are C-contiguous 3-D (2-D images come in with a leading axis of 1). Values
are integers; the wrapper in :mod:`fastct.filters._median` maps floats to order-
preserving integer keys first, so every comparison here is a total order and the
result never depends on the algorithm, the block shape or the thread count.

* :func:`network_select` runs a min/max selection network (built in NumPy by the
  wrapper) on whole rows at a time: each network register is a row segment of up
  to ``tile`` voxels and every compare-exchange is a vectorised loop over it.
* :func:`histogram_select` is Huang's sliding histogram on ``uint16`` bin indices:
  moving the window one voxel along x removes and adds the footprint's leaving and
  entering voxels, and the rank is tracked incrementally, so the per-voxel cost is
  proportional to the footprint's cross-section, not its volume.
* :func:`quickselect_select` gathers each window into per-work-item scratch and
  runs Hoare's quickselect (the general fallback for wide types and big windows).

Work is split into a fixed number of row ranges (``prange``); each work item
allocates its own scratch.
"""

from __future__ import annotations

import numba
import numpy as np

from .._config import kernel

# Work items per call: enough for load balance on many cores, few enough that the
# per-item scratch (a histogram) is cheap to allocate.
_MAX_WORK_ITEMS = 256


@kernel("exact", parallel=True)
def network_select(data, offsets, program, out_reg, nreg, tile, out):  # pragma: no cover
    """Apply a selection network row by row.

    Parameters
    ----------
    data : (NZ, NY, NX) integer array, halo-extended block.
    offsets : (n, 3) int64, window offsets; register ``i`` is loaded with
        ``data[z + oz, y + oy, x + ox]``.
    program : (m, 3) int64 rows ``(a, b, kind)``: kind 3 = compare-exchange
        (min to ``a``, max to ``b``), 1 = ``a = min(a, b)``, 2 = ``b = max(a, b)``.
    out_reg : register holding the result; nreg : number of registers.
    out : (nz, ny, nx) array of data's dtype, the core result.
    """
    nz, ny, nx = out.shape
    nrows = nz * ny
    nitems = min(nrows, _MAX_WORK_ITEMS)
    n = offsets.shape[0]
    nops = program.shape[0]
    for item in numba.prange(nitems):
        regs = np.empty((nreg, tile), dtype=data.dtype)
        r0 = item * nrows // nitems
        r1 = (item + 1) * nrows // nitems
        for row in range(r0, r1):
            z = row // ny
            y = row - z * ny
            for x0 in range(0, nx, tile):
                w = min(tile, nx - x0)
                for i in range(n):
                    s0 = x0 + offsets[i, 2]
                    src = data[z + offsets[i, 0], y + offsets[i, 1], s0 : s0 + w]
                    dst = regs[i]
                    for x in range(w):
                        dst[x] = src[x]
                for p in range(nops):
                    ra = regs[program[p, 0]]
                    rb = regs[program[p, 1]]
                    kind = program[p, 2]
                    if kind == 3:
                        for x in range(w):
                            a = ra[x]
                            b = rb[x]
                            ra[x] = min(a, b)
                            rb[x] = max(a, b)
                    elif kind == 1:
                        for x in range(w):
                            ra[x] = min(ra[x], rb[x])
                    else:
                        for x in range(w):
                            rb[x] = max(ra[x], rb[x])
                res = regs[out_reg]
                dst = out[z, y, x0 : x0 + w]
                for x in range(w):
                    dst[x] = res[x]
    return out


@kernel("exact")
def _histogram_rows(
    flat, NY, NX, ny, nx, r0, r1, lin_all, lin_enter, lin_leave, rank, shift, hist, coarse, out
):  # pragma: no cover
    """Huang's sliding histogram over rows ``r0 .. r1`` (see histogram_select)."""
    npair = lin_enter.shape[0]
    nall = lin_all.shape[0]
    B = 1 << shift
    mask = B - 1
    for row in range(r0, r1):
        z = row // ny
        y = row - z * ny
        base = (z * NY + y) * NX
        # First window of the row: fill the histogram and a coarse one, find the rank
        # by a coarse then a fine scan.
        for i in range(nall):
            v = np.int64(flat[np.uint64(base + lin_all[i])])
            hist[v] += 1
            coarse[v >> shift] += 1
        lt = 0
        c = 0
        while lt + coarse[c] <= rank:
            lt += coarse[c]
            c += 1
        m = c << shift
        while lt + hist[m] <= rank:
            lt += hist[m]
            m += 1
        for i in range(nall):
            coarse[np.int64(flat[np.uint64(base + lin_all[i])]) >> shift] = 0
        out[z, y, 0] = m
        for x in range(1, nx):
            b = base + x
            n_in = 0
            n_out = 0
            mm = np.uint16(m)
            for i in range(npair):
                vi = flat[np.uint64(b + lin_enter[i])]
                vo = flat[np.uint64(b + lin_leave[i])]
                hist[np.int64(vi)] += 1
                hist[np.int64(vo)] -= 1
                n_in += vi < mm
                n_out += vo < mm
            lt += n_in - n_out
            # Invariant: lt = number of window values below m; restore
            # lt <= rank < lt + hist[m], skipping empty stretches B bins at a time.
            while lt > rank:
                if (m & mask) == 0:
                    s = 0
                    for j in range(m - B, m):
                        s += hist[j]
                    if lt - s > rank:
                        lt -= s
                        m -= B
                        continue
                m -= 1
                lt -= hist[m]
            while lt + hist[m] <= rank:
                lt += hist[m]
                m += 1
                if (m & mask) == 0:
                    while True:
                        s = 0
                        for j in range(m, m + B):
                            s += hist[j]
                        if lt + s > rank:
                            break
                        lt += s
                        m += B
            out[z, y, x] = m
        # Empty the histogram again by removing the last window.
        b = base + nx - 1
        for i in range(nall):
            hist[np.int64(flat[np.uint64(b + lin_all[i])])] -= 1


@kernel("exact", parallel=True)
def histogram_select(
    idx, lin_all, lin_enter, lin_leave, rank, nbins, shift, out
):  # pragma: no cover
    """Rank filter of ``uint16`` bin indices by a sliding histogram along x.

    Parameters
    ----------
    idx : (NZ, NY, NX) uint16, halo-extended block of bin indices ``< nbins``.
    lin_all : int64 linear offsets (in ``idx``) of the footprint.
    lin_enter, lin_leave : int64 linear offsets, relative to the new window
        position, of the voxels entering and leaving when the window moves one
        voxel along x (one of each per run of the footprint along x).
    rank : the rank to select (0-based). nbins : number of bins.
    shift : log2 of the bin-group size used to skip empty stretches.
    out : (nz, ny, nx) uint16 core result (bin indices).
    """
    nz, ny, nx = out.shape
    NY = idx.shape[1]
    NX = idx.shape[2]
    flat = idx.ravel()
    nrows = nz * ny
    nitems = min(nrows, _MAX_WORK_ITEMS // 4)
    B = 1 << shift
    nb = ((nbins + B - 1) >> shift) << shift
    for item in numba.prange(nitems):
        hist = np.zeros(nb + B, np.int32)
        coarse = np.zeros((nb >> shift) + 1, np.int32)
        r0 = item * nrows // nitems
        r1 = (item + 1) * nrows // nitems
        _histogram_rows(
            flat,
            NY,
            NX,
            ny,
            nx,
            r0,
            r1,
            lin_all,
            lin_enter,
            lin_leave,
            rank,
            shift,
            hist,
            coarse,
            out,
        )
    return out


@kernel("exact")
def _quickselect(buf, n, k):  # pragma: no cover
    """Rank ``k`` of ``buf[:n]`` (partially reorders ``buf``)."""
    lo = 0
    hi = n - 1
    while hi > lo:
        mid = (lo + hi) >> 1
        # median of three as pivot, sorted into lo, mid, hi
        if buf[mid] < buf[lo]:
            buf[mid], buf[lo] = buf[lo], buf[mid]
        if buf[hi] < buf[lo]:
            buf[hi], buf[lo] = buf[lo], buf[hi]
        if buf[hi] < buf[mid]:
            buf[hi], buf[mid] = buf[mid], buf[hi]
        if hi - lo <= 2:
            break
        pivot = buf[mid]
        i = lo
        j = hi
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return buf[k]


@kernel("exact")
def _quickselect_rows(flat, NY, NX, ny, nx, r0, r1, lin_all, rank, buf, out):  # pragma: no cover
    n = lin_all.shape[0]
    for row in range(r0, r1):
        z = row // ny
        y = row - z * ny
        base = (z * NY + y) * NX
        dst = out[z, y]
        for x in range(nx):
            b = base + x
            for i in range(n):
                buf[i] = flat[np.uint64(b + lin_all[i])]
            dst[x] = _quickselect(buf, n, rank)


@kernel("exact", parallel=True)
def quickselect_select(data, lin_all, rank, out):  # pragma: no cover
    """Rank filter by gathering each window and running quickselect.

    ``data`` is the halo-extended block, ``lin_all`` the footprint's linear offsets
    in it, ``out`` the core result of data's dtype.
    """
    nz, ny, nx = out.shape
    NY = data.shape[1]
    NX = data.shape[2]
    flat = data.ravel()
    nrows = nz * ny
    nitems = min(nrows, _MAX_WORK_ITEMS)
    for item in numba.prange(nitems):
        buf = np.empty(lin_all.shape[0], data.dtype)
        r0 = item * nrows // nitems
        r1 = (item + 1) * nrows // nitems
        _quickselect_rows(flat, NY, NX, ny, nx, r0, r1, lin_all, rank, buf, out)
    return out

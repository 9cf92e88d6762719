"""scikit-image's connectivity enforcement for SLIC, computed from connected components.

scikit-image's ``_enforce_label_connectivity_cython`` scans the voxels in raster order
and, at the first voxel of every component not yet visited, runs a breadth-first search
(neighbours x+1, x-1, y+1, y-1, z+1, z-1) over the voxels of the same label. A component
of at least ``min_size`` voxels takes the next new label; a smaller one takes
``adjacent``, the result label of the last already-visited neighbour the search met. The
search stops at ``max_size`` voxels, leaving the rest of a larger component for later.

The serial search costs ~40 cycles per voxel. Here the components are found first with a
union-find pass over the runs of equal labels along x (a run is one set from the start,
joined to the runs above and behind it), in parallel z parts, joined across the part
faces afterwards, and numbered in raster order of their first voxel - the order
scikit-image discovers them in. Then they are decided one by one: a component of
``min_size .. max_size`` voxels simply takes the next label; only the small ones (~1% of
the voxels of a SLIC result) replay scikit-image's search, which sees the same
neighbours in the same order, to find ``adjacent``. The searches only read, so those of
the components of at most ``_SMALL`` voxels run in parallel beforehand. The first
component larger than ``max_size`` hands over to the original scan
(``enforce_connectivity`` in ``slic.py``) from its first voxel on, with the visited
state as scikit-image would have it.

Work array: the output itself. It first holds the union-find parents (flat indices, -1
for masked voxels), then every voxel's mark ``-(id + 2)``, ``id`` its component's number
within the parts (``remap`` gives the final number; a serial replay shifts the marks of
the voxels it visits by the number of part components), until the final pass writes the
labels.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._config import kernel


@kernel("exact")
def _find(par, v):
    """Root of ``v`` with path halving (a root is the smallest index of its set)."""
    while par[v] != v:
        p = par[v]
        par[v] = par[p]
        v = par[v]
    return v


@kernel("exact")
def _union(par, a, b):
    """Join the sets of ``a`` and ``b`` under the smaller root; 1 if they were apart."""
    ra = _find(par, a)
    rb = _find(par, b)
    if ra < rb:
        par[rb] = ra
        return 1
    if rb < ra:
        par[ra] = rb
        return 1
    return 0


@kernel("exact")
def _join_row(sf, par, lab, v0, x0, x1, off):
    """Union of the run ``[x0, x1)`` from flat index ``v0`` (label ``lab``; every voxel's
    parent is the run's first voxel) with the runs of the same label in the row
    ``off`` voxels before it: one union per stretch of matching neighbours. Returns the
    number of sets joined."""
    joined = 0
    prev = False
    for i in range(x1 - x0):
        match = sf[v0 + i - off] == lab
        if match and not prev:
            joined += _union(par, v0, v0 + i - off)
        prev = match
    return joined


@kernel("exact")
def _components_part(seg, work, mask_label, z0, z1):
    """Union-find over 6-neighbours of equal label within slices ``z0 <= z < z1``;
    masked voxels -1. A voxel's parent has a smaller flat index and every root is the
    first voxel of its component (of the part). Returns the number of components.

    Run by run: a run of equal labels is one set from the start (its voxels' parent is
    its first voxel), joined to the runs above and behind it where they share the
    label."""
    depth, height, width = seg.shape
    plane = height * width
    sf = seg.reshape(seg.size)
    par = work.reshape(work.size)
    n = 0  # roots made minus roots joined to another
    for z in range(z0, z1):
        for y in range(height):
            row = (z * height + y) * width
            x = np.int64(0)  # (never the literal: one compilation of _join_row)
            while x < width:
                v = row + x
                lab = sf[v]
                e = x + 1
                while e < width and sf[row + e] == lab:
                    e += 1
                if lab == mask_label:
                    par[v : row + e] = -1
                    x = e
                    continue
                par[v : row + e] = v
                n += 1
                if y > 0:
                    n -= _join_row(sf, par, lab, v, x, e, width)
                if z > z0:
                    n -= _join_row(sf, par, lab, v, x, e, plane)
                x = e
    return n


@kernel("exact")
def _number_part(work, v0, v1, base, size, first):
    """Number the part's components in raster order of their first voxel, from
    ``base``, and mark every voxel with ``-(id + 2)``. A voxel's parent lies before it
    in the same part, so it is already marked. Returns the count."""
    par = work.reshape(work.size)
    n = base
    last = -1  # sizes counted per run of one component (no read-modify-write per voxel)
    run = 0
    for v in range(v0, v1):
        p = par[v]
        if p < 0:  # masked
            continue
        m = -(n + 2) if p == v else par[p]
        if p == v:
            size[n] = 0
            first[n] = v
            n += 1
        par[v] = m
        if m != last:
            if last != -1:
                size[-last - 2] += run
            last = m
            run = 0
        run += 1
    if last != -1:
        size[-last - 2] += run
    return n - base


@kernel("exact", parallel=True)
def components(seg, work, mask_label, zb, counts):
    """Components of each z part ``[zb[p], zb[p + 1])`` in parallel; ``counts[p]``."""
    for p in prange(zb.size - 1):
        counts[p] = _components_part(seg, work, mask_label, zb[p], zb[p + 1])


@kernel("exact", parallel=True)
def number_components(work, zb, plane, offsets, size, first):
    """Marks ``-(id + 2)`` with ids in raster order across the parts (``offsets``)."""
    for p in prange(zb.size - 1):
        _number_part(work, zb[p] * plane, zb[p + 1] * plane, offsets[p], size, first)


@kernel("exact")
def merge_parts(seg, work, zb, mask_label, n_parts_comp, size, first, remap):
    """Join the parts' components across the part boundaries and number the results in
    raster order of their first voxel (scikit-image's discovery order): ``remap[id]``
    is the final number of part component ``id``; ``size`` and ``first`` are rewritten
    for the final components (in place). Returns their count."""
    depth, height, width = seg.shape
    plane = height * width
    sf = seg.reshape(seg.size)
    par = work.reshape(work.size)
    link = np.arange(n_parts_comp)
    for p in range(1, zb.size - 1):
        base = zb[p] * plane
        for v in range(base, base + plane):
            lab = sf[v]
            if lab != mask_label and sf[v - plane] == lab:
                a = _find(link, -par[v] - 2)
                b = _find(link, -par[v - plane] - 2)
                if a < b:
                    link[b] = a
                elif b < a:
                    link[a] = b
    n = 0
    for c in range(n_parts_comp):
        r = _find(link, c)
        if r == c:  # first part component of a final one (ids follow raster order)
            remap[c] = n
            size[n] = size[c]
            first[n] = first[c]
            n += 1
        else:
            remap[c] = remap[r]
            size[remap[r]] += size[c]
    return n


@kernel("exact")
def _neighbour(i, b, bz, by, bx, depth, height, width):
    """Neighbour ``i`` of voxel ``b`` in scikit-image's order (x+1, x-1, y+1, y-1, z+1,
    z-1): flat index and coordinates, index -1 outside the volume."""
    plane = height * width
    if i == 0:
        return (b + 1, bz, by, bx + 1) if bx + 1 < width else (-1, 0, 0, 0)
    if i == 1:
        return (b - 1, bz, by, bx - 1) if bx >= 1 else (-1, 0, 0, 0)
    if i == 2:
        return (b + width, bz, by + 1, bx) if by + 1 < height else (-1, 0, 0, 0)
    if i == 3:
        return (b - width, bz, by - 1, bx) if by >= 1 else (-1, 0, 0, 0)
    if i == 4:
        return (b + plane, bz + 1, by, bx) if bz + 1 < depth else (-1, 0, 0, 0)
    return (b - plane, bz - 1, by, bx) if bz >= 1 else (-1, 0, 0, 0)


@kernel("exact")
def _replay(seg, par, c, r, n_parts_comp, remap, max_size, mask_label, queue, mark, ring):
    """scikit-image's search over component ``c`` from its first voxel ``r``: its voxels
    in the same order, the neighbours of other labels in the same order. Visited voxels
    are marked in ``par`` (``mark``) or else looked up in the queue (no writes: safe in
    parallel; for components of at most ``len(queue)`` voxels). The earlier components
    it meets go to ``ring`` (the ``len(ring)`` most recent, the i-th met at
    ``i % len(ring)``); returns how many it met."""
    depth, height, width = seg.shape
    sf = seg.reshape(seg.size)
    lab = sf[r]
    if mark:
        par[r] -= n_parts_comp
    queue[0, 0] = r  # flat index and coordinates (no divisions per voxel)
    queue[0, 1] = r // (height * width)
    queue[0, 2] = (r // width) % height
    queue[0, 3] = r % width
    n_ring = ring.shape[0]
    met = 0
    sz = 1
    visited = 0
    while visited < sz and sz < max_size:
        b = queue[visited, 0]
        bz = queue[visited, 1]
        by = queue[visited, 2]
        bx = queue[visited, 3]
        for i in range(6):
            if sz >= max_size:
                break
            q, qz, qy, qx = _neighbour(i, b, bz, by, bx, depth, height, width)
            if q < 0:
                continue
            lq = sf[q]
            if lq == mask_label:
                continue
            m = par[q]
            if lq == lab:  # same component (6-adjacent, same label)
                if mark:
                    new = m > -(n_parts_comp + 2)
                    if new:
                        par[q] = m - n_parts_comp
                else:
                    new = True
                    for j in range(sz):
                        if queue[j, 0] == q:
                            new = False
                            break
                if new:
                    queue[sz, 0] = q
                    queue[sz, 1] = qz
                    queue[sz, 2] = qy
                    queue[sz, 3] = qx
                    sz += 1
                continue
            pid = -m - 2
            cq = remap[pid - n_parts_comp if pid >= n_parts_comp else pid]
            if cq < c:  # visited before: holds its result label
                ring[met % n_ring] = cq
                met += 1
        visited += 1
    return met


# Components of at most this many voxels are searched in parallel before the serial
# decisions (their searches only read), keeping the most recent earlier neighbours met.
_SMALL = 64
_RING = 4


@kernel("exact", parallel=True)
def replay_small(seg, work, first, size, n_comp, n_parts_comp, remap, min_size, max_size,
                 mask_label, rings, met):  # fmt: skip
    """The searches of the components smaller than ``min_size`` with at most ``_SMALL``
    voxels, in parallel blocks of components (``met[c] = -1``: not searched)."""
    par = work.reshape(work.size)
    n_blocks = (n_comp + 255) // 256
    for blk in prange(n_blocks):
        queue = np.empty((_SMALL, 4), np.int64)
        for c in range(blk * 256, min(n_comp, (blk + 1) * 256)):
            n = size[c]
            if n < min_size and n <= max_size and n <= _SMALL:
                met[c] = _replay(seg, par, c, first[c], n_parts_comp, remap, max_size,
                                 mask_label, queue, False, rings[c])  # fmt: skip
            else:
                met[c] = -1


@kernel("exact")
def decide(seg, work, first, size, n_comp, n_parts_comp, remap, min_size, max_size, mask_label,
           start_label, value, queue, rings, met):  # fmt: skip
    """Result label of every component in discovery order; returns ``(n_done, cur)``:
    components ``< n_done`` are decided, ``cur`` is scikit-image's next new label.
    ``n_done < n_comp`` when component ``n_done`` is larger than ``max_size``. A small
    component takes ``adjacent``: the result label of the last earlier component its
    search met whose label is not ``cur`` (from ``replay_small``'s ring when it holds
    one, else searched here)."""
    par = work.reshape(work.size)
    ring = np.empty(queue.shape[0] * 6 + 1, np.int64)  # every neighbour of the search
    cur = start_label
    for c in range(n_comp):
        n = size[c]
        if n > max_size:
            return c, cur
        if n >= min_size:
            value[c] = cur
            cur += 1
            continue
        adjacent = cur
        found = False
        m = met[c]
        if m >= 0:  # searched in parallel: the most recent ones
            for t in range(m - 1, max(m - _RING, 0) - 1, -1):
                o = value[rings[c, t % _RING]]
                if o != cur:
                    adjacent = o
                    found = True
                    break
        if not found and (m < 0 or m > _RING):  # not searched, or beyond the ring
            m = _replay(seg, par, c, first[c], n_parts_comp, remap, max_size, mask_label,
                        queue, True, ring)  # fmt: skip
            for t in range(m - 1, -1, -1):
                o = value[ring[t]]
                if o != cur:
                    adjacent = o
                    break
        value[c] = adjacent
    return n_comp, cur


@kernel("exact", parallel=True)
def write_labels(work, dest, value, remap, n_parts_comp, n_done, mask_label, n_rows, row_len):
    """Result labels from the marks into ``dest`` (may be the work array or the input):
    components ``< n_done`` take their value, the rest (and masked voxels)
    ``mask_label`` - unvisited, as scikit-image's array is when the original scan takes
    over."""
    par = work.reshape(work.size)
    out = dest.reshape(dest.size)
    for i in prange(n_rows):
        last = np.int32(0)  # never a mark: marks are -1 or below
        lab = mask_label
        for v in range(i * row_len, (i + 1) * row_len):
            p = par[v]
            if p != last:  # runs of one component share the lookup
                last = p
                pid = -p - 2
                pid = pid - n_parts_comp if pid >= n_parts_comp else pid
                c = remap[pid] if p != -1 else n_done
                lab = value[c] if c < n_done else mask_label
            out[v] = lab

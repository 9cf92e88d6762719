"""SLIC's connectivity enforcement (scikit-image's raster-order rule): on a whole label
volume in memory, or on a sliding z window of a streamed one.
"""

from __future__ import annotations

import math

import numpy as np

from ..streaming import stream
from ._engine import _Engine
from ._slabs import _offsets


# --------------------------------------------------------------------------------------
# connectivity enforcement
# --------------------------------------------------------------------------------------
def _connectivity_memory(
    seg: np.ndarray,
    min_size: int,
    max_size: int,
    start_label: int,
    n_parts: int | None = None,
    in_place: bool = False,
) -> np.ndarray:
    """scikit-image's connectivity enforcement on a whole label volume: components first
    (``_kernels.slic_connectivity``, in ``n_parts`` z parts, default one per thread: the
    result does not depend on it), scikit-image's raster scan only from the first
    component larger than ``max_size`` on (none in a typical SLIC result). With
    ``in_place`` the result may be written into ``seg`` (returned then)."""
    from .._kernels import slic as K
    from .._kernels import slic_connectivity as C

    mask_label = start_label - 1
    Z, Y, X = seg.shape
    if seg.size >= 2**30:  # flat indices and the two marks per component fit in int32
        out = np.full(seg.shape, mask_label, np.int32)
        z_begin, cur = 0, start_label
    else:
        import numba

        out = np.empty(seg.shape, np.int32)
        n_parts = max(1, min(n_parts or numba.get_num_threads(), Z))
        zb = np.linspace(0, Z, n_parts + 1).round().astype(np.int64)
        counts = np.zeros(n_parts, np.int64)
        C.components(seg, out, mask_label, zb, counts)
        offsets = _offsets(counts)
        n_parts_comp = int(offsets[-1])
        size = np.empty(n_parts_comp, np.int64)
        first = np.empty(n_parts_comp, np.int64)
        C.number_components(out, zb, Y * X, offsets, size, first)
        remap = np.empty(n_parts_comp, np.int64)
        n_comp = int(C.merge_parts(seg, out, zb, mask_label, n_parts_comp, size, first, remap))
        value = np.empty(n_comp, np.int64)
        queue = np.empty((max(1, min(min_size, max_size + 1)), 4), np.int64)
        met = np.full(n_comp, -1, np.int64)
        # rings up to 1/8 of the labels' bytes (or 1 MiB): else every search is serial
        if n_comp * C._RING * 8 <= max(seg.size // 2, 1 << 20):
            rings = np.empty((n_comp, C._RING), np.int64)
            C.replay_small(seg, out, first, size, n_comp, n_parts_comp, remap, min_size,
                           max_size, mask_label, rings, met)  # fmt: skip
        else:
            rings = np.empty((1, C._RING), np.int64)
        n_done, cur = C.decide(seg, out, first, size, n_comp, n_parts_comp, remap, min_size,
                               max_size, mask_label, start_label, value, queue, rings,
                               met)  # fmt: skip
        # the raster scan (only after a component larger than max_size) reads seg
        dest = seg if in_place and n_done == n_comp else out
        C.write_labels(out, dest, value, remap, n_parts_comp, n_done, mask_label, Z * Y, X)
        if n_done == n_comp:
            return dest
        z_begin = int(first[n_done]) // (Y * X)
    coord = np.empty((max(max_size, 1), 3), np.int64)
    state = np.array([cur], np.int64)
    K.enforce_connectivity(seg, out, z_begin, Z, min_size, max_size, mask_label, state, coord)
    return out


def _connectivity_stream(eng: _Engine, nK: int, min_size: int, max_size: int, start_label: int):
    """scikit-image's raster scan on a sliding z window.

    A component lies within its label's z range, so the components that start in
    slices ``[zs, ze)`` only involve slices ``zs - 1 .. ze + H`` (``H`` the largest z
    extent of any label). The window holds those slices of the SLIC labels and of the
    relabelled result, and the scan is the in-memory kernel, so the result is the same.
    The window's new slices are read one step ahead on the engine's I/O thread: they
    lie past every slice written so far (each step writes ``[zs, ze)``, below the
    window's end), so the result is written in place of the SLIC labels safely.
    """
    from .._kernels import slic as K

    mask_label = start_label - 1
    Z = eng.shape[0]
    if eng.z_extent is not None:  # taken by the last k-means iteration
        zmin, zmax = eng.z_extent
    else:
        zmin = np.full(nK, np.iinfo(np.int64).max, np.int64)
        zmax = np.full(nK, -1, np.int64)
        for slab, L in eng.stream(lambda slab: eng.read_labels(slab.start, slab.stop, False)):
            K.label_z_extent(L, slab.start, mask_label, start_label, zmin, zmax)
    present = zmax >= 0
    H = int((zmax[present] - zmin[present]).max()) if present.any() else 0
    # the scan's steps: slices [zs, ze) scanned after reading the window's new [r0, r1)
    steps, hi = [], 0
    for slab in eng.slabs():
        new_hi = max(hi, min(slab.stop + H + 1, Z))
        steps.append((slab.start, slab.stop, hi, new_hi))
        hi = new_hi

    def read(step: tuple[int, int, int, int]) -> np.ndarray | None:
        r0, r1 = step[2:]
        return eng.read_labels(r0, r1, False) if r1 > r0 else None

    coord = np.empty((max(max_size, 1), 3), np.int64)
    state = np.array([start_label], np.int64)
    # the window's SLIC labels and result in two buffers of its largest height: each
    # step moves the slices it keeps to the front and appends the new ones
    cap = max([hi - max(zs - 1, 0) for zs, _, _, hi in steps] or [1])
    seg_buf = np.empty((cap, *eng.shape[1:]), np.int32)
    out_buf = np.empty((cap, *eng.shape[1:]), np.int32)
    lo = 0
    n = 0  # the window holds slices [lo, lo + n)
    nbytes = math.prod(eng.shape) * 4
    window = stream(steps, read, prefetch=eng.stored, desc="slic connectivity", nbytes=nbytes)
    for (zs, ze, _, _), add in window:
        new_lo = max(zs - 1, 0)
        keep = n - (new_lo - lo)
        if new_lo > lo and keep > 0:  # (NumPy copies overlapping slices correctly)
            seg_buf[:keep] = seg_buf[new_lo - lo : n]
            out_buf[:keep] = out_buf[new_lo - lo : n]
        n = keep
        if add is not None:
            seg_buf[n : n + add.shape[0]] = add
            out_buf[n : n + add.shape[0]] = mask_label
            n += add.shape[0]
        lo = new_lo
        seg, out = seg_buf[:n], out_buf[:n]
        K.enforce_connectivity(seg, out, zs - lo, ze - lo, min_size, max_size, mask_label, state,
                               coord)  # fmt: skip
        eng.write_labels(zs, ze, out[zs - lo : ze - lo])

"""SLIC's k-means pass (scikit-image's ``_slic_cython``): search windows, assignment
tiles and the iterations, over the whole volume in memory or slab by slab.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..volume import Volume
from ._engine import _Engine
from ._slabs import _offsets, _threads_for

# In memory, the update step runs over the whole volume in parallel parts (see
# _kernels.slic.update_parts), else in one serial pass; tests switch it off to check
# the serial pass.
_PARALLEL_UPDATE = True
# 2-D grayscale images without mask are assigned centre by centre (see
# _kernels.slic.assign_2d); tests switch it off to compare with the tiled assignment.
_CENTRE_MAJOR = True
# Factor on the float32 filter's error bound (float64 work in assign_2d): tests set 0
# to show that without the exact recomputation of near-ties the labels can differ.
_FILTER_MARGIN = 1.0
# assign_2d's first sweep: the centres within this many grid steps of a band (rows)
_NEAR_STEPS = 0.5
# assign_2d's bands: rows of the image per band, the unit of its parallel loop (any
# height gives the same labels: every pixel still meets its centres in index order)
_BAND_ROWS = 16
# CPU seconds of in-memory k-means phases are added here when it is non-empty (windows
# and tile ranges, -, update with the new centres; see _kernels.slic.kmeans_update and
# benchmarks/bench_slic.py's profile).
_PHASE_TIMES = np.zeros(0)


def _tile_shape(win_steps: np.ndarray, shape) -> np.ndarray:
    """Assignment tiles: a grid step along z and y, 32 voxels along x in 3-D and 64 in
    2-D (a 2-D image is ``(H, 1, W)`` here), the evaluation loops run along x and
    vectorise. Measured on 256^3 / 16,000 segments: a grid step is 8% faster than half a
    step (fewer tiles sort their candidates), slower at 1.4 or 2 steps; 64-voxel rows
    are 8% slower there, but 20% faster on 512^2 / 1,000 segments (fewer rows, each
    candidate evaluated on the 32-voxel blocks its window reaches)."""
    width = 64 if shape[1] == 1 else 32
    t = [max(1, int(win_steps[0])), max(1, int(win_steps[1])), width]
    return np.array([min(a, n) for a, n in zip(t, shape)], np.int64)


def _run_pass(
    eng: _Engine,
    centers: np.ndarray,
    alive: np.ndarray,
    win_steps: np.ndarray,
    tile: np.ndarray,
    sp: np.ndarray,
    w,
    max_num_iter: int,
    slic_zero: bool,
    ignore_color: bool,
    start_label: int,
    final: bool,
) -> None:
    """One call of scikit-image's ``_slic_cython``: k-means iterations, centres in place."""
    import numba

    from .._kernels import slic as K

    ft = centers.dtype
    Z, Y, X = eng.shape
    ntiles = np.array([-(-Z // tile[0]), -(-Y // tile[1]), -(-X // tile[2])], np.int64)
    per_z = int(ntiles[1] * ntiles[2])
    nK, nf = centers.shape
    mask_label = start_label - 1
    maxdc = np.ones(nK, ft)
    fp = np.zeros(K.FP_SIZE, ft)
    fp[K.FP_W] = w
    fp[K.FP_INIT] = np.inf if ft == np.float32 else np.finfo(np.float64).max
    fp[K.FP_NEG] = -fp[K.FP_INIT]
    ibits = np.empty(0, np.int32 if ft == np.float32 else np.int64)
    coords = np.concatenate([np.arange(n, dtype=ft) for n in (Z, Y, X)])
    two = (2 * win_steps).astype(ft)
    shape_f = np.array([Z, Y, X], dtype=ft)
    ip = np.zeros(K.IP_SIZE, np.int64)
    ip[K.IP_T0 : K.IP_T2 + 1] = tile
    ip[K.IP_N0 : K.IP_N2 + 1] = ntiles
    ip[K.IP_SLICO] = slic_zero
    ip[K.IP_NOCOLOR] = ignore_color
    ip[K.IP_START] = start_label
    ip[K.IP_MASKLAB] = mask_label
    ip[K.IP_Z] = Z
    ip[K.IP_Y] = Y
    # one slab (in memory, or a small streamed volume): the update runs over the whole
    # volume in parallel parts; streamed, the update is one C-order pass per slab. Only
    # SLICO's maxima need the per-tile label lists.
    whole = eng.slab_z >= Z
    ip[K.IP_COUNT] = slic_zero

    def slab_params(z0: int, z1: int, use_mask: bool) -> np.ndarray:
        p = ip.copy()
        p[K.IP_ZOFF] = z0
        p[K.IP_TZ0] = z0 // int(tile[0])
        p[K.IP_TZ1] = -(-z1 // int(tile[0]))
        p[K.IP_USE_MASK] = use_mask
        return p

    if max_num_iter == 0:
        return
    if whole:  # few calls per iteration (see K.kmeans_update)
        Xs = eng.features(0, Z)
        M, use_mask = eng.mask(0, Z)
        L = eng.read_labels(0, Z, True)
        p = slab_params(0, Z, use_mask)
        windows = np.empty((nK, 6), np.int64)
        res = np.empty((int(ntiles[0]) * per_z, 3), np.int64)
        count = np.empty(nK, np.int64)
        sums = np.empty((nK, nf), ft)
        tr = np.empty((nK, 6), np.int64)
        tr_lists = np.empty((nK, 6), np.int64)  # the tile ranges of the candidate lists
        timing = _PHASE_TIMES
        # 2-D grayscale without mask: scikit-image's centre-by-centre sweep, in bands
        by_centre = (_CENTRE_MAJOR and Y == 1 and nf == 4 and not slic_zero and not ignore_color
                     and not use_mask)  # fmt: skip
        if by_centre:
            L2 = L.reshape(Z, X)
            bk = np.empty(Z * (X + K.PAD_2D), np.int32)
            res = np.empty((-(-Z // _BAND_ROWS), 3), np.int64)  # bands: assign_2d's unit
            cm = _centre_major_args(Xs, centers, sp, w, win_steps, shape_f, coords)
            best64 = feat64 = None
            near_z = _NEAR_STEPS * float(win_steps[0])
        with _threads_for(L.size):
            n_threads = numba.get_num_threads()
            for it in range(max_num_iter):
                if K.kmeans_prepare(centers, alive, maxdc, p, two, shape_f, tile, it, windows, tr,
                                    tr_lists, timing) and not by_centre:  # fmt: skip
                    indptr, indices = K.candidates_from_ranges(tr, ntiles)
                    tr_lists[...] = tr
                    max_cand = max(1, int(np.diff(indptr).max()))
                if by_centre:
                    featg, c32, sp32, coords32, fp32, best, e2, xd, cd, fpd = cm[:10]
                    if c32 is centers:  # float32 work
                        K.assign_2d(featg, L2, centers, windows, sp, coords, p, fp32, res, best,
                                    bk, best.view(np.int32), near_z, e2, xd, cd, fpd)  # fmt: skip
                    elif (
                        p[K.IP_UNIFORM]
                        and (zero32 := _spatial_only(cm, centers, sp, w, win_steps)) is not None
                    ):
                        # every centre has the same colour and the spatial terms are whole
                        # multiples of w that the colour term cannot merge (see
                        # _spatial_only): the float32 sweep of the spatial terms alone
                        # gives scikit-image's float64 labels
                        c32[...] = centers
                        c32[:, 3:] = 0
                        K.assign_2d(zero32, L2, c32, windows, sp32, coords32, p, fp32, res, best,
                                    bk, best.view(np.int32), near_z, np.float32(0), xd[:1],
                                    cd[:1], fpd)  # fmt: skip
                    elif p[K.IP_UNIFORM]:
                        # every centre has the same colour (scikit-image's first iteration):
                        # float32 near-ties are everywhere (the spatial terms alone decide),
                        # so this iteration runs in float64 directly
                        if best64 is None:
                            best64 = np.empty(best.size)
                            feat64 = _padded(xd.reshape(Z, X), np.float64)
                        K.assign_2d(feat64, L2, centers, windows, sp, coords, p, fp, res, best64,
                                    bk, best64.view(np.int64), near_z, 0.0, xd[:1], cd[:1],
                                    fpd)  # fmt: skip
                    else:
                        c32[...] = centers
                        K.assign_2d(featg, L2, c32, windows, sp32, coords32, p, fp32, res, best,
                                    bk, best.view(np.int32), near_z, e2, xd, cd, fpd)  # fmt: skip
                else:
                    K.assign_slab(Xs, M, L, centers, windows, maxdc, sp, coords, indptr, indices,
                                  p, fp, res, max_cand, ibits)  # fmt: skip
                if not K.kmeans_update(Xs, M, L, centers, alive, coords, p, windows, res, count,
                                       sums, it, max_num_iter, final, _PARALLEL_UPDATE, n_threads,
                                       timing):  # fmt: skip
                    break
                if slic_zero:
                    offsets = _offsets(res[:, 0])
                    ent_label = np.empty(int(offsets[-1]), np.int32)
                    ent_max = np.empty(int(offsets[-1]), ft)
                    K.slico_slab(Xs, M, L, centers, p, fp, offsets, ent_label, ent_max)
                    K.reduce_max(ent_label, ent_max, start_label, maxdc)
        eng.write_labels(0, Z, L)
        return

    # streamed: per slab, the assignment and scikit-image's update pass continued from
    # the previous slab; the next slab's values and mask are read while this one is
    # computed. The previous labels are only needed for voxels that no window reaches
    # (they keep theirs; rare): the assignment starts from the unassigned label and
    # the stored labels are read only for a slab where such a voxel was met.
    lazy_labels = isinstance(eng.labels, Volume)
    for it in range(max_num_iter):
        fresh = it == 0
        fill = mask_label if lazy_labels and not fresh else None
        windows = _windows(centers, alive, two, shape_f)
        indptr, indices = K.build_candidates(windows, tile, ntiles)
        max_cand = max(1, int(np.diff(indptr).max()))
        need_update = not (final and it == max_num_iter - 1)
        ip[K.IP_FRESH] = fresh
        ip[K.IP_FILL] = fill is not None
        ip[K.IP_UNIFORM] = K.colours_uniform(centers, alive, maxdc, slic_zero)
        count = np.zeros(nK, np.int64)
        sums = np.zeros((nK, nf), ft)
        any_change = False
        # the labels of the last iteration are the result: their z extent per label
        # (what the streamed connectivity needs) is taken here, not in another pass
        extent = None
        if final and not need_update:
            extent = (np.full(nK, np.iinfo(np.int64).max, np.int64), np.full(nK, -1, np.int64))
        distinct = []
        for slab, (V, M, use_mask, L) in eng.stream(
            lambda slab, fresh=fresh, fill=fill: eng.read_slab(slab, fresh, fill),
            desc=f"slic {it + 1}",
        ):
            z0, z1 = slab.start, slab.stop
            Xs = eng.features(z0, z1, V)
            del V
            p = slab_params(z0, z1, use_mask)
            res = np.empty((int(p[K.IP_TZ1] - p[K.IP_TZ0]) * per_z, 3), np.int64)
            with _threads_for(L.size):
                K.assign_slab(Xs, M, L, centers, windows, maxdc, sp, coords, indptr, indices, p, fp,
                              res, max_cand, ibits)  # fmt: skip
                if fill is not None and res[:, 2].any():
                    # voxels no window reached (left at ``fill``) keep the stored label;
                    # assigned voxels have other labels, masked-out ones had ``fill``
                    old = eng.read_labels(z0, z1, False)
                    np.copyto(L, old, where=L == fill)
                eng.write_labels(z0, z1, L)
                if extent is not None:
                    K.label_z_extent(L, z0, mask_label, start_label, *extent)
                if slic_zero:
                    distinct.append(res[:, 0].copy())
                any_change = any_change or bool(res[:, 1].any())
                if need_update:  # scikit-image's C-order pass, continued slab by slab
                    _update_slab(Xs, M, L, windows, alive, coords, p, sums, count,
                                 bool(res[:, 2].any()))  # fmt: skip
        eng.z_extent = extent
        if not any_change or not need_update:
            break
        K.finalize_centres(count, sums, centers, alive)
        if slic_zero:
            for slab, (V, M, use_mask, L) in eng.stream(lambda slab: eng.read_slab(slab, False)):
                z0, z1 = slab.start, slab.stop
                Xs = eng.features(z0, z1, V)
                del V
                p = slab_params(z0, z1, use_mask)
                offsets = _offsets(distinct[slab.index])
                ent_label = np.empty(int(offsets[-1]), np.int32)
                ent_max = np.empty(int(offsets[-1]), ft)
                with _threads_for(L.size):
                    K.slico_slab(Xs, M, L, centers, p, fp, offsets, ent_label, ent_max)
                K.reduce_max(ent_label, ent_max, start_label, maxdc)


def _centre_major_args(Xs, centers, sp, w, win_steps, shape_f, coords) -> list:
    """Arguments of ``assign_2d``: float32 features, centres (a buffer refreshed every
    iteration), spacing, coordinates and parameters, a distance buffer, the error bound
    ``e2`` and the float64 data of the exact recomputation (float64 work only); then
    a slot for ``_spatial_only``'s zero features and the largest ``|feature|`` (float64
    work only, else None).

    float32 work runs as it is (``e2 = 0``). float64 work (integer and float64 input)
    is filtered in float32 with ``e2`` = 4 x a bound on ``|d32 - d64|`` for any pixel
    and centre whose window contains it, ``d32`` the distance computed in float32 from
    the float32-rounded features, centres, spacing and weight, ``d64`` scikit-image's
    float64 one. With ``u = 2**-24``, per axis ``R`` the largest offset in a window
    (``(2 s + 1) * spacing``) and ``C`` the largest coordinate (``n * spacing``), and
    ``F`` the largest feature: the offset's error is at most ``u (C + 3 R)``, its
    square's ``u (2 R C + 7 R^2)``; with the two additions and the weight the spatial
    term is within ``w u sum(2 R C + 12 R^2)``; the colour difference is within
    ``3 u F``, its square within ``7 u F^2``, and the last addition adds ``u F^2`` more:
    ``E = w u sum(2 R C + 12 R^2) + 8 u F^2`` (second-order terms and float64's own
    rounding are far inside the factor 2 of ``e2 = 2 * (2 E)``)."""
    from .._kernels import slic as K

    Z, _, X = Xs.shape[:3]
    ft = centers.dtype
    if ft == np.float32:
        f32 = np.zeros(K.FP_SIZE, np.float32)
        f32[K.FP_W] = w
        f32[K.FP_INIT] = np.inf
        return [_padded(Xs.reshape(Z, X), np.float32), centers, sp, coords, f32,
                np.empty(Z * (X + K.PAD_2D), np.float32),
                np.float32(0), np.zeros(1), np.zeros((1, centers.shape[1])),
                np.zeros(K.FPD_SIZE), None, None]  # fmt: skip
    xd = Xs.reshape(-1)
    featg = np.empty(Z * (X + K.PAD_2D), np.float32)
    fmax = float(K.padded_f32(Xs.reshape(Z, X), featg, K.PAD_2D))
    u = 2.0**-24
    R = (2.0 * np.asarray(win_steps, np.float64) + 1.0) * np.asarray(sp, np.float64)
    C = np.asarray(shape_f, np.float64) * np.asarray(sp, np.float64)
    E = float(w) * u * float(np.sum(2.0 * R * C + 12.0 * R * R)) + 8.0 * u * fmax * fmax
    e2 = np.float32(4.0 * E * _FILTER_MARGIN)
    if float(e2) < 4.0 * E * _FILTER_MARGIN:
        e2 = np.nextafter(e2, np.float32(np.inf))
    f32 = np.zeros(K.FP_SIZE, np.float32)
    f32[K.FP_W] = np.float32(w)
    f32[K.FP_INIT] = np.inf
    fpd = np.zeros(K.FPD_SIZE)
    fpd[K.FPD_W] = w
    fpd[K.FPD_INIT] = np.finfo(np.float64).max
    fpd[K.FPD_SPZ : K.FPD_SPX + 1] = sp
    return [featg, np.empty(centers.shape, np.float32), sp.astype(np.float32),
            coords.astype(np.float32), f32, np.empty(Z * (X + K.PAD_2D), np.float32), e2, xd,
            centers, fpd, None, fmax]  # fmt: skip


# Tests switch the spatial-only sweep of _spatial_only off to compare with float64.
_SPATIAL_ONLY = True


def _spatial_only(cm: list, centers: np.ndarray, sp: np.ndarray, w, win_steps) -> Any:
    """Zero float32 features (``assign_2d``'s padded layout) when one iteration of
    float64 work whose centres all have the same colour ``col`` (scikit-image's first
    iteration: every colour 0) can be swept in float32 on the spatial terms alone; else
    None.

    With unit spacing and whole centre coordinates every spatial term is ``fl(n w)`` with
    ``n`` a whole squared distance below ``N``, the largest over the search windows.
    scikit-image's distance is ``fl(fl(n w) + c)``, ``c`` the pixel's colour term,
    common to all centres. Two different ``n`` give spatial terms at least ``w (1 - u)``
    apart; when ``w`` exceeds 4 ulps of the largest sum ``N w + (|F| + |col|)^2`` the
    rounded sums differ too and are ordered as ``n``: every pixel's float64 winner is the
    lowest-index centre of smallest ``n``. The float32 sweep with zero features and
    colours computes ``fl32(n w32)``, which orders the ``n`` the same way (and keeps
    equal ``n`` equal) when ``w32`` exceeds 4 ulps of ``N w32``: the same winner."""
    featg, fmax = cm[0], cm[-1]
    if not _SPATIAL_ONLY or fmax is None or not np.all(sp == 1.0):
        return None
    pos = centers[:, :3]
    if not np.array_equal(pos, np.round(pos)):
        return None
    n_max = float(np.sum((2.0 * np.asarray(win_steps, np.float64) + 1.0) ** 2))
    col = float(np.max(np.abs(centers[:, 3:]))) if centers.shape[1] > 3 else 0.0
    total = n_max * float(w) + (float(fmax) + col) ** 2
    w32 = np.float32(w)
    if not (float(w) > 4.0 * float(np.spacing(total))
            and w32 > 4 * np.spacing(np.float32(n_max) * w32)):  # fmt: skip
        return None
    if cm[-2] is None:  # zero features, allocated at the first use
        cm[-2] = np.zeros_like(featg)
    return cm[-2]


def _padded(F: np.ndarray, dtype) -> np.ndarray:
    """``F`` (2-D) in ``dtype`` with ``PAD_2D`` zero columns after every row, flat."""
    from .._kernels import slic as K

    out = np.zeros((F.shape[0], F.shape[1] + K.PAD_2D), dtype)
    out[:, : F.shape[1]] = F
    return out.reshape(-1)


def _windows(centers, alive, two, shape_f) -> np.ndarray:
    """scikit-image's search windows ``int(max(c - 2s, 0))``, ``int(min(c + 2s + 1, n))``
    with the arithmetic in the centres' float type; empty for dead centres."""
    from .._kernels import slic as K

    out = np.empty((centers.shape[0], 6), np.int64)
    K.windows_into(centers, alive.astype(np.bool_, copy=False), two, shape_f, out)
    return out


def _update_slab(Xs, M, L, windows, alive, coords, p, sums, count, kept: bool) -> None:
    """scikit-image's update over one streamed slab, continuing the running sums of the
    slabs before it: in parallel z parts (``update_parts``) with the windows cut to the
    slab (a label is owned by the part where its window enters the slab), or in y parts
    (``update_parts_y``) when the slab is too low for as many z parts; serial when a
    voxel that no window reached kept its label (it may lie outside its window)."""
    import numba

    from .._kernels import slic as K

    nz = L.shape[0]
    n_threads = numba.get_num_threads()
    if kept or n_threads == 1 or not _PARALLEL_UPDATE:
        K.update_serial(Xs, M, L, coords, p, sums, count)
        return
    z0 = int(p[K.IP_ZOFF])
    local = windows.copy()
    np.clip(local[:, :2] - z0, 0, nz, out=local[:, :2])
    inside = alive & (local[:, 1] > local[:, 0])
    owner, bounds, zend = K.update_parts_plan(local, inside, nz, n_threads)
    if len(bounds) - 1 < n_threads:  # a slab lower than a few windows: parts along y
        ny = L.shape[1]
        owner_y, bounds_y, yend = K.update_parts_plan(
            np.ascontiguousarray(local[:, 2:4]), inside, ny, n_threads
        )
        if len(bounds_y) > len(bounds):
            K.update_parts_y(Xs, M, L, owner_y, bounds_y, yend, coords, p, sums, count)
            return
    K.update_parts(Xs, M, L, owner, bounds, zend, coords, p, sums, count)

"""SLIC supervoxels with scikit-image's semantics, parallel, exact and streamable.

:func:`slic` follows ``skimage.segmentation.slic`` (scikit-image 0.26) argument for
argument and step for step: grid seeding (or maskSLIC's k-means seeding inside a mask),
rescaling of the intensities to ``[0, 1]``, optional Gaussian pre-smoothing, k-means in
(space, intensity) within the 2S search window, SLICO, and the raster-order
connectivity enforcement with its minimum/maximum size rules. Labels are identical to
scikit-image's whenever the floating-point inputs are (same float operations in the
same order, including the running sums of the update step).

It is fast because the assignment step does not sweep every centre's whole window:
each row of voxels visits its candidate centres nearest-first and stops as soon as no
remaining centre can come closer (an exact bound), and the remaining distance
evaluations run as vectorised row loops on all cores. The update adds a run's
coordinates in closed form while the sums are exact integers, and the connectivity
enforcement finds connected components in parallel and replays scikit-image's search
only for the small components it merges (``_kernels.slic_connectivity``).

Archive volumes stream through slab by slab (z slabs of whole tiles): every iteration
reads the input once, the update continues scikit-image's running sums from slab to
slab, and connectivity runs the same raster scan on a sliding window, so the streamed
labels equal the in-memory ones bit for bit whatever the chunk shape.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import _config
from ._validate import as_real_array, check_ndim
from .streaming import Scratch, Slab, read_planes, slabs, stream, write_region
from .volume import Volume

__all__ = ["slic", "regular_grid"]

# Share of the memory budget (fastct.set_memory_budget) for one slab: input, mask,
# labels and features of a streamed slab, the features of an in-memory one. 0.75 of the
# 64 MiB default is 48 MiB, the slab size fastct used before the one budget; tests
# lower it to force small slabs.
_SLAB_SHARE = 0.75
# Kernel calls on fewer voxels run on one thread: a parallel region costs little on an
# idle machine but can stall for milliseconds when another process holds a core, and
# small slabs have too little work to gain from it (the labels never depend on it).
_PARALLEL_MIN_VOXELS = 1 << 17
# In memory, the update step runs over the whole volume in parallel parts (see
# _kernels.slic.update_parts), else in one serial pass; tests switch it off to check
# the serial pass.
_PARALLEL_UPDATE = True
# CPU seconds of in-memory k-means phases are added here when it is non-empty (windows
# and tile ranges, -, update with the new centres; see _kernels.slic.kmeans_update and
# benchmarks/bench_slic.py's profile).
_PHASE_TIMES = np.zeros(0)
# Up to this many centroids the maskSLIC spacing estimate uses the full distance matrix
# as scikit-image does; above, a k-d tree finds the same nearest neighbours.
_PDIST_MAX = 2000


def _slab_bytes() -> int:
    """Target bytes of one slab: ``_SLAB_SHARE`` of the memory budget."""
    return max(1, int(_config.get_memory_budget() * _SLAB_SHARE))


# --------------------------------------------------------------------------------------
# scikit-image's seeding helpers (same arithmetic, re-implemented)
# --------------------------------------------------------------------------------------
def regular_grid(ar_shape: Sequence[int], n_points: int) -> tuple[slice, ...]:
    """About ``n_points`` regularly spaced points in ``ar_shape`` (as slices).

    Same result as ``skimage.util.regular_grid``: the step is the ``ndim``-th root of
    the volume per point; axes too short for a full step are dropped from the root.
    """
    ar_shape = np.asanyarray(ar_shape)
    ndim = len(ar_shape)
    unsort_dim_idxs = np.argsort(np.argsort(ar_shape))
    sorted_dims = np.sort(ar_shape)
    space_size = float(np.prod(ar_shape))
    if space_size <= n_points:
        return (slice(None),) * ndim
    stepsizes = np.full(ndim, (space_size / n_points) ** (1.0 / ndim), dtype="float64")
    if (sorted_dims < stepsizes).any():
        for dim in range(ndim):
            stepsizes[dim] = sorted_dims[dim]
            space_size = float(np.prod(sorted_dims[dim + 1 :]))
            stepsizes[dim + 1 :] = (space_size / n_points) ** (1.0 / (ndim - dim - 1))
            if (sorted_dims >= stepsizes).all():
                break
    starts = (stepsizes // 2).astype(int)
    stepsizes = np.round(stepsizes).astype(int)
    slices = [slice(start, None, step) for start, step in zip(starts, stepsizes)]
    return tuple(slices[i] for i in unsort_dim_idxs)


def _grid_steps(shape3: tuple[int, ...], n: int) -> np.ndarray:
    return np.array([int(s.step if s.step is not None else 1) for s in regular_grid(shape3, n)])


def _grid_centroids(shape3: tuple[int, ...], n_segments: int):
    slices = regular_grid(shape3, n_segments)
    az, ay, ax = [np.arange(n)[s] for n, s in zip(shape3, slices)]
    # the grid points in C order (broadcast assignments: meshgrid + stack cost ~30 us)
    grid = np.empty((len(az), len(ay), len(ax), 3), np.int64)
    grid[..., 0] = az[:, None, None]
    grid[..., 1] = ay[None, :, None]
    grid[..., 2] = ax
    centroids = grid.reshape(-1, 3)
    steps = np.asarray([float(s.step) if s.step is not None else 1.0 for s in slices])
    return centroids, steps


# --------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------
def _check_number(value: Any, name: str, *, integer: bool = False) -> Any:
    kinds = (numbers.Integral, np.integer) if integer else (numbers.Real, np.number)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kinds):
        what = "an integer" if integer else "a real number"
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if not integer and not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return int(value) if integer else float(value)


def _per_axis_floats(value: Any, nd: int, name: str, *, positive: bool) -> np.ndarray:
    if isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_)):
        arr = np.full(nd, float(value))
    else:
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
            raise TypeError(f"{name} must be a number or a sequence of {nd} numbers, got {value!r}")
        try:
            arr = np.asarray(value, dtype=float).ravel()
        except (TypeError, ValueError):
            raise TypeError(f"{name} must contain real numbers, got {value!r}") from None
        if arr.size != nd:
            raise ValueError(
                f"{name} must have {nd} values (one per spatial axis), got {arr.size}: {value!r}"
            )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if positive and np.any(arr <= 0):
        raise ValueError(f"{name} must be > 0 on every axis, got {value!r}")
    if not positive and np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0 on every axis, got {value!r}")
    return arr


class _Source:
    """The image (in memory or a Volume) in the canonical ``(Z, Y, X, C)`` layout.

    2-D images ``(H, W[, C])`` are seen as ``(H, 1, W, C)``: streaming slabs then run
    along the image rows and every kernel stays 3-D.
    """

    def __init__(self, image: Any, channel_axis: Any, mask: Any):
        self.volume = isinstance(image, Volume)
        if self.volume:
            if channel_axis is not None:
                raise ValueError(
                    "channel_axis must be None for an archive Volume (volumes hold one "
                    f"channel), got {channel_axis!r}"
                )
            check_ndim(image.ndim, "image")
            if image.dtype.kind not in "biuf":
                raise TypeError(f"image must have a real numeric dtype, got {image.dtype}")
            self.arr = image
            spatial = tuple(image.shape)
            self.nc = 1
        else:
            image = as_real_array(image, "image", accepted="an array or a Volume")
            if not image.dtype.isnative:
                image = image.astype(image.dtype.newbyteorder("="))
            if channel_axis is None:
                check_ndim(image.ndim, "image")
                arr = image[..., None]  # a view
            else:
                if isinstance(channel_axis, bool) or not isinstance(
                    channel_axis, (numbers.Integral, np.integer)
                ):
                    raise TypeError(
                        f"channel_axis must be an integer or None, got {channel_axis!r}"
                    )
                if image.ndim not in (3, 4):
                    raise ValueError(
                        f"channel_axis={channel_axis} needs a 2-D or 3-D image with a channel "
                        f"axis (3-D or 4-D array), got a {image.ndim}-D array"
                    )
                if not -image.ndim <= int(channel_axis) < image.ndim:
                    raise ValueError(
                        f"channel_axis must be in [{-image.ndim}, {image.ndim - 1}] for a "
                        f"{image.ndim}-D image, got {channel_axis}"
                    )
                arr = np.moveaxis(image, int(channel_axis), -1)
            if not arr.flags.c_contiguous:  # kernels take one fixed (C) layout
                arr = np.ascontiguousarray(arr)
            if 0 in arr.shape:
                raise ValueError(f"image must not have an empty axis, got shape {image.shape}")
            self.arr = arr
            spatial = tuple(arr.shape[:-1])
            self.nc = arr.shape[-1]
        self.spatial = spatial
        self.is_2d = len(spatial) == 2
        # scikit-image's orientation (1, H, W) for 2-D, and fastct's canonical one.
        self.shape_sk = (1, *spatial) if self.is_2d else spatial
        self.shape = (spatial[0], 1, spatial[1]) if self.is_2d else spatial
        self.dtype = np.dtype(self.arr.dtype)
        # scikit-image's float type: float32 stays, float16 -> float32, everything else
        # (float64, integers and bools through img_as_float) is float64
        self.ftype = (
            np.dtype(np.float32)
            if self.dtype.kind == "f" and self.dtype.itemsize <= 4
            else np.dtype(np.float64)
        )
        # -- mask
        self.mask = None
        self.mask_is_volume = False
        if mask is not None:
            if isinstance(mask, Volume):
                self.mask_is_volume = True
                mshape = tuple(mask.shape)
            else:
                mask = np.asarray(mask)
                if mask.dtype.kind not in "biuf":
                    raise TypeError(f"mask must be boolean (or 0/1 numbers), got {mask.dtype}")
                mshape = mask.shape
            if mshape != spatial:
                raise ValueError(
                    f"mask must have the image's spatial shape {spatial}, got {mshape}"
                )
            if not self.mask_is_volume:
                mask = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
            self.mask = mask

    # -- slabs in canonical z ----------------------------------------------------------
    def read(self, z0: int, z1: int) -> np.ndarray:
        """Canonical ``(z1-z0, Y, X, C)`` array of the raw input (a view in memory)."""
        data = read_planes(self.arr, z0, z1)  # in memory: C-contiguous already, a view
        if self.volume:
            data = data[..., None]
        return data[:, None] if self.is_2d else data

    def read_mask(self, z0: int, z1: int) -> np.ndarray | None:
        """Canonical ``(z1-z0, Y, X)`` uint8 (0/1) mask, or None (a view in memory)."""
        if self.mask is None:
            return None
        if self.mask_is_volume:
            m = read_planes(self.mask, z0, z1, dtype=bool).view(np.uint8)
        else:
            m = read_planes(self.mask, z0, z1)
        return m[:, None] if self.is_2d else m


_DUMMY_MASK = np.zeros((1, 1, 1), np.uint8)


class _Engine:
    """Input values, mask, labels and features per z slab: in memory the slabs are views
    (usually one slab for the whole volume); streamed, slabs are read through the
    streaming engine (the next slab on its I/O thread, see :meth:`stream`) and the
    labels written back. Only the features (float type) live in a scratch buffer."""

    def __init__(self, src: _Source, labels: Any, slab_z: int, scratch: Scratch):
        self.src = src
        self.shape = src.shape
        self.labels = labels  # canonical ndarray, or a Volume with the spatial shape
        self.slab_z = slab_z
        self.scratch = scratch
        self.smoothed: Any = None  # canonical (Z, Y, X, C) ndarray or a Volume
        self.ftype = src.ftype
        self._fsteps: Any = None
        self._fbuf: np.ndarray | None = None
        self._cached = False

    def slabs(self) -> list[Slab]:
        return slabs(self.shape[0], self.slab_z)

    @property
    def stored(self) -> bool:
        """Whether any slab data lives in an archive (else all reads are views)."""
        return any(
            isinstance(a, Volume) for a in (self.src.arr, self.src.mask, self.labels, self.smoothed)
        )

    def stream(self, read: Any, desc: str | None = None) -> Iterator[tuple[Slab, Any]]:
        """``(slab, read(slab))`` over the slabs; from an archive the next slab is read
        on the engine's I/O thread while this one is computed (in memory the reads are
        views and run in line)."""
        nbytes = math.prod(self.shape) * self.src.nc * self.src.dtype.itemsize
        return stream(self.slabs(), read, prefetch=self.stored, desc=desc, nbytes=nbytes)

    def read_slab(self, slab: Slab, fresh: bool) -> tuple[np.ndarray, np.ndarray, bool, Any]:
        """Raw values, mask (and whether there is one) and labels of a slab: what the
        k-means steps read (on the I/O thread when streamed)."""
        z0, z1 = slab.start, slab.stop
        M, use_mask = self.mask(z0, z1)
        return self.values(z0, z1), M, use_mask, self.read_labels(z0, z1, fresh)

    def features(self, z0: int, z1: int, X: np.ndarray | None = None) -> np.ndarray:
        """Features of slices ``[z0, z1)`` (from their values ``X`` when already read):
        rescaled values times 1/compactness in the float type, in a reused slab buffer,
        with scikit-image's own operations: for float input one parallel kernel, else
        NumPy (no compiled kernel has to be specialised per integer input dtype). When
        one slab holds the whole volume they are computed once."""
        if self._cached and self._fbuf is not None:
            return self._fbuf
        if X is None:
            X = self.values(z0, z1)
        nz = z1 - z0
        if self._fbuf is None or self._fbuf.shape[0] < nz:
            self._fbuf = np.empty((min(self.slab_z, self.shape[0]), *X.shape[1:]), self.ftype)
        F = self._fbuf[:nz]
        pre, imin, scale, ratio, rescaled = self._fsteps
        if rescaled:  # the smoothed image is already in [0, 1]
            np.multiply(X, ratio, out=F)
        elif pre[0] == PRE_NONE and X.dtype == F.dtype and X.flags.c_contiguous:
            # float input: the same steps fused in one parallel pass
            from ._kernels import slic as K

            one = self.ftype.type(1)
            with _threads_for(F.size):
                K.features_into(F, X, imin, one if scale is None else scale, ratio,
                                scale is not None)  # fmt: skip
        else:
            _rescale_into(F, X, pre, imin, scale)
            F *= ratio
        self._cached = self.slab_z >= self.shape[0]
        return F

    def values(self, z0: int, z1: int) -> np.ndarray:
        """Canonical ``(nz, Y, X, C)`` input values (or smoothed, rescaled values)."""
        if self.smoothed is None:
            return self.src.read(z0, z1)
        data = read_planes(self.smoothed, z0, z1)  # in memory: canonical already, a view
        if isinstance(self.smoothed, Volume):  # stored with the spatial shape
            data = data.reshape((z1 - z0, *self.shape[1:], 1))
        return data

    def mask(self, z0: int, z1: int) -> tuple[np.ndarray, bool]:
        m = self.src.read_mask(z0, z1)
        return (m, True) if m is not None else (_DUMMY_MASK, False)

    def read_labels(self, z0: int, z1: int, fresh: bool) -> np.ndarray:
        """Canonical ``(z1-z0, Y, X)`` int32 labels: a view in memory; from a Volume
        read, or (``fresh``) a new buffer the assignment fills completely."""
        if isinstance(self.labels, np.ndarray):
            return self.labels[z0:z1]
        if fresh:
            return np.empty((z1 - z0, *self.shape[1:]), np.int32)
        data = read_planes(self.labels, z0, z1, dtype=np.int32)
        return data.reshape((z1 - z0, *self.shape[1:]))

    def write_labels(self, z0: int, z1: int, data: np.ndarray) -> None:
        """Store a slab of labels (in memory they were computed in place)."""
        if isinstance(self.labels, np.ndarray):
            return
        write_region(self.labels, (slice(z0, z1),),
                     data.reshape((z1 - z0, *self.labels.shape[1:])))  # fmt: skip

    def release(self) -> None:
        self.smoothed = None
        self._fbuf = None

    def set_features(self, pre, imin, scale, ratio, rescaled: bool) -> None:
        """scikit-image's feature steps; ``rescaled``: the values are already in [0, 1]
        (the smoothed image), only the compactness weight remains."""
        self._fsteps = (pre, imin, scale, ratio, rescaled)
        self._cached = False


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

    from ._kernels import slic as K

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
    # volume in parallel parts and needs no per-tile label lists (SLICO's maxima do)
    whole = eng.slab_z >= Z
    ip[K.IP_COUNT] = not (whole and not slic_zero)

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
        with _threads_for(L.size):
            n_threads = numba.get_num_threads()
            for it in range(max_num_iter):
                if K.kmeans_prepare(centers, alive, maxdc, p, two, shape_f, tile, it, windows, tr,
                                    tr_lists, timing):  # fmt: skip
                    indptr, indices = K.candidates_from_ranges(tr, ntiles)
                    tr_lists[...] = tr
                    max_cand = max(1, int(np.diff(indptr).max()))
                K.assign_slab(Xs, M, L, centers, windows, maxdc, sp, coords, indptr, indices, p,
                              fp, res, max_cand, ibits)  # fmt: skip
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

    # streamed: per slab, the update from each label's bounding box; the next slab's
    # values, mask and labels are read while this one is computed
    for it in range(max_num_iter):
        fresh = it == 0
        windows = _windows(centers, alive, two, shape_f)
        indptr, indices = K.build_candidates(windows, tile, ntiles)
        max_cand = max(1, int(np.diff(indptr).max()))
        need_update = not (final and it == max_num_iter - 1)
        ip[K.IP_FRESH] = fresh
        ip[K.IP_UNIFORM] = K.colours_uniform(centers, alive, maxdc, slic_zero)
        count = np.zeros(nK, np.int64)
        sums = np.zeros((nK, nf), ft)
        any_change = False
        distinct = []
        for slab, (V, M, use_mask, L) in eng.stream(
            lambda slab, fresh=fresh: eng.read_slab(slab, fresh), desc=f"slic {it + 1}"
        ):
            z0, z1 = slab.start, slab.stop
            Xs = eng.features(z0, z1, V)
            del V
            p = slab_params(z0, z1, use_mask)
            res = np.empty((int(p[K.IP_TZ1] - p[K.IP_TZ0]) * per_z, 3), np.int64)
            with _threads_for(L.size):
                K.assign_slab(Xs, M, L, centers, windows, maxdc, sp, coords, indptr, indices, p, fp,
                              res, max_cand, ibits)  # fmt: skip
                eng.write_labels(z0, z1, L)
                distinct.append(res[:, 0].copy())
                any_change = any_change or bool(res[:, 1].any())
                if need_update:
                    offsets = _offsets(res[:, 0])
                    ent_label = np.empty(int(offsets[-1]), np.int32)
                    ent_box = np.empty((int(offsets[-1]), 6), np.int64)
                    K.bbox_slab(M, L, p, offsets, ent_label, ent_box)
                    box = np.empty((nK, 6), np.int64)
                    box[:, 0::2] = np.iinfo(np.int64).max
                    box[:, 1::2] = -1
                    K.reduce_bbox(ent_label, ent_box, start_label, box)
                    K.update_slab(Xs, M, L, box, coords, p, sums, count)
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


@contextlib.contextmanager
def _threads_for(n_voxels: int) -> Iterator[None]:
    """One thread for small kernel calls (inside ``kernel_threads``, which restores the
    caller's Numba setting at the end)."""
    if n_voxels >= _PARALLEL_MIN_VOXELS:
        yield
        return
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _offsets(counts: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _windows(centers, alive, two, shape_f) -> np.ndarray:
    """scikit-image's search windows ``int(max(c - 2s, 0))``, ``int(min(c + 2s + 1, n))``
    with the arithmetic in the centres' float type; empty for dead centres."""
    from ._kernels import slic as K

    out = np.empty((centers.shape[0], 6), np.int64)
    K.windows_into(centers, alive.astype(np.bool_, copy=False), two, shape_f, out)
    return out


# --------------------------------------------------------------------------------------
# maskSLIC seeding (scikit-image's _get_mask_centroids, exact and without its
# N x N distance matrix)
# --------------------------------------------------------------------------------------
def _mask_centroids(src: _Source, n_segments: int, n_mask: int, multichannel: bool):
    from ._kernels import slic as K

    rng = np.random.RandomState(123)
    m = min(n_segments, n_mask)
    idx = np.sort(rng.permutation(n_mask)[:m])
    ndim_spatial = 2 if multichannel else 3  # scikit-image's mask is 3-D here
    n_dense = int((10**ndim_spatial) * m)
    dense = n_mask > n_dense
    if dense:
        idx_dense = np.sort(rng.permutation(n_mask)[:n_dense])
    coords_seed = _rank_coords(src, idx)
    data = _rank_coords(src, idx_dense) if dense else _rank_coords(src, None, n_mask)
    codes = coords_seed.astype(np.float64)
    for _ in range(5):
        labels = _vq(data, codes)
        codes, empty = K.cluster_means(data, labels, codes.shape[0], codes)
        if empty:
            warnings.warn(
                "One of the clusters is empty. Re-run kmeans with a different initialization.",
                UserWarning,
                stacklevel=3,
            )
    centroids = codes
    closest = _closest_other(centroids)
    steps = abs(centroids - centroids[closest, :]).mean(0)
    return centroids, steps


def _rank_coords(src: _Source, ranks: np.ndarray | None, n_all: int = 0) -> np.ndarray:
    """Coordinates (scikit-image orientation) of the mask voxels with the given ranks."""
    from ._kernels import slic as K

    if ranks is None:
        ranks = np.arange(n_all, dtype=np.int64)
    out = np.empty((len(ranks), 3), np.int32)
    state = np.zeros(2, np.int64)
    planes = max(1, _slab_bytes() // max(1, math.prod(src.shape[1:])))
    for slab, m in stream(slabs(src.shape[0], planes),
                          lambda slab: src.read_mask(slab.start, slab.stop),
                          prefetch=src.mask_is_volume, progress=False):  # fmt: skip
        K.ranks_to_coords(np.ascontiguousarray(m), slab.start, ranks, state, out)
    if src.is_2d:  # canonical (y, 0, x) -> scikit-image's (0, y, x)
        out = out[:, [1, 0, 2]].copy()
    return out


def _vq(data: np.ndarray, codes: np.ndarray) -> np.ndarray:
    from ._kernels import slic as K

    lo = np.minimum(data.min(0).astype(np.float64), codes.min(0))
    hi = np.maximum(data.max(0).astype(np.float64), codes.max(0))
    ext = np.maximum(hi - lo, 1.0)
    nontrivial = ext > 1.0
    nd = max(1, int(nontrivial.sum()))
    h = (
        (float(np.prod(ext[nontrivial])) / codes.shape[0]) ** (1.0 / nd)
        if nontrivial.any()
        else 1.0
    )
    h = max(h, 1.0)
    g = np.clip(np.ceil(ext / h), 1, 512).astype(np.int64)
    cell = ext / g
    cidx = np.clip(((codes - lo) // cell).astype(np.int64), 0, g - 1)
    cid = (cidx[:, 0] * g[1] + cidx[:, 1]) * g[2] + cidx[:, 2]
    order = np.argsort(cid, kind="stable")
    start = np.zeros(int(np.prod(g)) + 1, np.int64)
    np.add.at(start, cid + 1, 1)
    np.cumsum(start, out=start)
    labels = np.empty(data.shape[0], np.int64)
    with _threads_for(data.shape[0] * 8):
        K.vq_grid(data, codes, cell, lo, g, start, order.astype(np.int64), labels)
    return labels


def _closest_other(c: np.ndarray) -> np.ndarray:
    """``argmin`` of each row of ``squareform(pdist(c))`` with an infinite diagonal."""
    from scipy.spatial.distance import pdist, squareform

    n = c.shape[0]
    if n <= _PDIST_MAX:
        dist = squareform(pdist(c))
        np.fill_diagonal(dist, np.inf)
        return dist.argmin(-1)
    from scipy.spatial import cKDTree

    tree = cKDTree(c)
    kq = min(n, 9)
    d, j = tree.query(c, k=kq)
    out = np.empty(n, np.int64)
    for i in range(n):
        di, ji = d[i], j[i]
        keep = ji != i
        di, ji = di[keep], ji[keep]
        dmin = di.min()
        tol = dmin * (1 + 1e-9) + 1e-300
        if di.max() <= tol:  # more ties may lie beyond the queried neighbours
            ji = np.array(sorted(set(tree.query_ball_point(c[i], tol)) - {i}))
        else:
            ji = np.sort(ji[di <= tol])
        if len(ji) == 1:
            out[i] = ji[0]
        else:  # resolve near-ties with scipy's own distance arithmetic
            sub = pdist(c[np.concatenate([[i], ji])])[: len(ji)]
            out[i] = ji[int(np.argmin(sub))]
    return out


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
    from ._kernels import slic as K
    from ._kernels import slic_connectivity as C

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
    from ._kernels import slic as K

    mask_label = start_label - 1
    Z = eng.shape[0]
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
    lo = 0
    seg = np.empty((0, *eng.shape[1:]), np.int32)
    out = np.empty((0, *eng.shape[1:]), np.int32)
    nbytes = math.prod(eng.shape) * 4
    window = stream(steps, read, prefetch=eng.stored, desc="slic connectivity", nbytes=nbytes)
    for (zs, ze, _, _), add in window:
        new_lo = max(zs - 1, 0)
        if add is None:
            add = seg[:0]
        seg = np.concatenate([seg[new_lo - lo :], add])
        out = np.concatenate([out[new_lo - lo :], np.full(add.shape, mask_label, np.int32)])
        lo = new_lo
        K.enforce_connectivity(seg, out, zs - lo, ze - lo, min_size, max_size, mask_label, state,
                               coord)  # fmt: skip
        eng.write_labels(zs, ze, np.ascontiguousarray(out[zs - lo : ze - lo]))


# --------------------------------------------------------------------------------------
# the public function
# --------------------------------------------------------------------------------------
def slic(
    image: Any,
    n_segments: int = 100,
    compactness: float = 10.0,
    *,
    max_num_iter: int = 10,
    sigma: Any = 0,
    spacing: Any = None,
    mask: Any = None,
    enforce_connectivity: bool = True,
    min_size_factor: float = 0.5,
    max_size_factor: float = 3.0,
    slic_zero: bool = False,
    start_label: int = 1,
    channel_axis: int | None = None,
    out: Any = None,
) -> np.ndarray | Volume:
    """SLIC superpixels / supervoxels, with scikit-image's semantics.

    k-means clustering in (space, intensity): seeds on a regular grid (or spread over
    ``mask`` by maskSLIC), each voxel joins the nearest centre among those within twice
    the grid step, centres move to the mean of their voxels, ``max_num_iter`` times;
    then small disconnected fragments are merged into a neighbour. The algorithm and
    the arguments are those of ``skimage.segmentation.slic``; fastct runs it in
    parallel, deterministic at any thread count, and streams archive volumes.

    Parameters
    ----------
    image : ndarray or Volume
        2-D ``(y, x)`` or 3-D ``(z, y, x)`` image, optionally with a channel axis (see
        ``channel_axis``), or a single-channel archive Volume. NaN and inf are refused
        unless masked out.
    n_segments : int
        Approximate number of segments (>= 1).
    compactness : float
        Balance of intensity proximity (low) and space proximity (high), > 0. The
        intensities are rescaled to [0, 1] first (over the mask, all channels
        together), as in scikit-image. With ``slic_zero`` the initial compactness.
    max_num_iter : int
        Number of k-means iterations (>= 0).
    sigma : float or sequence of float
        Gaussian pre-smoothing of the rescaled image per spatial axis, in voxels
        (scipy.ndimage.gaussian_filter, ``mode='reflect'``); a scalar is divided by
        ``spacing`` per axis. 0 = none.
    spacing : sequence of float, optional
        Voxel size per spatial axis, weighting the spatial distances (default 1). Not
        taken from a Volume's metadata: pass ``spacing=vol.spacing`` for that.
    mask : ndarray or Volume of bool, optional
        Supervoxels only where True, seeded by maskSLIC's k-means exactly as
        scikit-image does; voxels outside get ``start_label - 1``.
    enforce_connectivity : bool
        Merge disconnected fragments smaller than ``min_size_factor`` times the mean
        segment size into an adjacent segment (scikit-image's raster-order rule,
        including its search cap at ``max_size_factor`` times the mean size, which
        splits larger components).
    min_size_factor, max_size_factor : float
        See ``enforce_connectivity``.
    slic_zero : bool
        SLICO: intensity distances normalised per cluster by the largest seen so far.
    start_label : {0, 1}
        First label.
    channel_axis : int, optional
        Channel axis of multichannel in-memory input (multi-sequence MRI, CT + PET,
        RGB); ``None`` (default) means grayscale. Channels share one [0, 1] rescaling,
        as in scikit-image, and are never converted to CIELAB (scikit-image's default
        for 3 channels; compare with its ``convert2lab=False``).
    out : ndarray or Volume, optional
        int32 destination with the spatial shape. With an archive Volume the iterations
        stream through it slab by slab (memory: a slab plus small tables), and the
        labels equal the in-memory result bit for bit.

    Returns
    -------
    ndarray or Volume
        int32 labels (``out`` when given).

    Notes
    -----
    The steps and their floating-point operations are scikit-image 0.26's (float32
    input in float32; float64, integer and boolean input in float64 through
    ``img_as_float``), so the labels are identical to scikit-image's. Differences: no
    CIELAB conversion; a ``sigma`` or ``spacing`` of the wrong length is an error (a
    warning in scikit-image); a ``max_size_factor`` giving a zero search cap (memory
    corruption in scikit-image) is treated as a cap of one voxel.

    Memory, in memory: the input, the int32 labels and one slab of features in the
    float type (at most the size of one float32 map of the volume; features are
    computed from the input, never a full float64 copy), plus the smoothed image when
    ``sigma > 0`` (float64 for integer input, as in scikit-image). Streamed: a slab of
    input, mask, labels and features, and the connectivity window (the slab plus the
    largest z extent of a segment).

    Examples
    --------
    >>> import numpy as np, fastct
    >>> img = np.zeros((40, 40), np.float32)
    >>> img[:, 20:] = 1
    >>> labels = fastct.slic(img, n_segments=4, compactness=1)
    >>> labels.dtype.name, sorted(np.unique(labels).tolist())
    ('int32', [1, 2, 3, 4])
    """

    # ---- arguments -------------------------------------------------------------------
    n_segments = _check_number(n_segments, "n_segments", integer=True)
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    compactness = _check_number(compactness, "compactness")
    if compactness <= 0:
        raise ValueError(f"compactness must be > 0, got {compactness}")
    max_num_iter = _check_number(max_num_iter, "max_num_iter", integer=True)
    if max_num_iter < 0:
        raise ValueError(f"max_num_iter must be >= 0, got {max_num_iter}")
    min_size_factor = _check_number(min_size_factor, "min_size_factor")
    if min_size_factor < 0:
        raise ValueError(f"min_size_factor must be >= 0, got {min_size_factor}")
    max_size_factor = _check_number(max_size_factor, "max_size_factor")
    if max_size_factor <= 0:
        raise ValueError(f"max_size_factor must be > 0, got {max_size_factor}")
    start_label = _check_number(start_label, "start_label", integer=True)
    if start_label not in (0, 1):
        raise ValueError(f"start_label must be 0 or 1, got {start_label}")
    for name, flag in (("enforce_connectivity", enforce_connectivity), ("slic_zero", slic_zero)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    slic_zero = bool(slic_zero)
    src = _Source(image, channel_axis, mask)
    nd = len(src.spatial)
    ft = src.ftype
    sp_user = (
        np.ones(nd) if spacing is None else _per_axis_floats(spacing, nd, "spacing", positive=True)
    )
    if isinstance(sigma, (numbers.Real, np.number)) and not isinstance(sigma, (bool, np.bool_)):
        if not math.isfinite(float(sigma)) or float(sigma) < 0:
            raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
        sigma_v: Any = float(sigma)
    else:
        sigma_v = _per_axis_floats(sigma, nd, "sigma", positive=False)
    if out is not None:
        if not isinstance(out, (np.ndarray, Volume)):
            raise TypeError(f"out must be an ndarray or a Volume, got {type(out).__name__}")
        if tuple(out.shape) != src.spatial:
            raise ValueError(f"out must have shape {src.spatial}, got {tuple(out.shape)}")
        if np.dtype(out.dtype) != np.int32:
            raise TypeError(f"out must have dtype int32, got {out.dtype}")
        if isinstance(out, Volume):
            out.check_writable()
        elif not out.flags.writeable or not out.flags.c_contiguous:
            raise ValueError("out must be a writeable C-contiguous array")
    streaming = src.volume or src.mask_is_volume or isinstance(out, Volume)

    # scikit-image works in (z, y, x) with 2-D as (1, y, x); spacing and sigma follow.
    # (np.concatenate: np.insert costs ~30 us, 0.3% of a 2-D call)
    spacing_sk = (np.concatenate(([1.0], sp_user)) if src.is_2d else sp_user).astype(ft)
    if isinstance(sigma_v, float):
        sigma_sk = np.array([sigma_v] * 3, dtype=ft) / spacing_sk
    else:
        sigma_sk = (np.concatenate(([0.0], sigma_v)) if src.is_2d else sigma_v).astype(ft)

    mask_label = start_label - 1
    Z, Y, X = src.shape
    with _config.kernel_threads():
        # ---- range of the unmasked values (NaN / inf refused, as scikit-image) -------
        lo_v, hi_v, n_mask = _value_range(src)
        if src.mask is not None and n_mask == 0:
            raise ValueError("mask must select at least one voxel, got an empty mask")
        if np.isinf(lo_v) or np.isinf(hi_v):
            raise ValueError(
                "image contains infinite values where it is not masked out; inf is only "
                "allowed outside the mask"
            )
        pre = _img_as_float_params(src.dtype)
        imin = _img_as_float_scalar(lo_v, pre, ft)
        imax = _img_as_float_scalar(hi_v, pre, ft)
        scale = None if imax == imin else ft.type(imax - imin)
        ratio = ft.type(1.0 / compactness)

        # ---- seeds ---------------------------------------------------------------------
        if src.mask is not None:
            centroids, steps = _mask_centroids(src, n_segments, n_mask, channel_axis is not None)
        else:
            centroids, steps = _grid_centroids(src.shape_sk, n_segments)
        nK = centroids.shape[0]
        step = max(steps)
        win_steps = _grid_steps(src.shape_sk, nK)
        centers = np.zeros((nK, 3 + src.nc), ft)
        centers[:, :3] = centroids
        sp = spacing_sk.copy()
        if src.is_2d:  # to the canonical (y, 1, x) orientation
            perm = [1, 0, 2]
            centers[:, :3] = centers[:, perm]
            win_steps = win_steps[perm]
            sp = sp[perm]
        s32 = np.float32(step)  # scikit-image passes the step as a C float
        with np.errstate(divide="ignore"):
            w = ft.type(1.0 / np.float64(s32 * s32))
        alive = np.ones(nK, np.bool_)
        tile = _tile_shape(win_steps, src.shape)

        # ---- slabs ---------------------------------------------------------------------
        # one slab of features in the float type (in memory: the only large scratch);
        # streamed, a slab also holds its input values, mask and labels (and the engine
        # reads the next slab's values, mask and labels ahead: up to 1.7x the slab
        # budget for float32 input, about 1.3x the memory budget)
        per_slice = Y * X * src.nc * ft.itemsize
        budget = _slab_bytes()
        if streaming:
            per_slice += Y * X * (src.nc * src.dtype.itemsize + 4 + 1)
        else:  # in memory the budget is one float32 map ("the distance map" skimage has)
            budget = max(budget, Z * Y * X * 4)
        slab_z = max(1, budget // max(1, per_slice))
        if slab_z < Z:  # slabs of whole tiles; else one slab (features computed once)
            slab_z = max(int(tile[0]), (slab_z // int(tile[0])) * int(tile[0]))
        slab_z = min(slab_z, Z)
        scratch = Scratch(out)
        try:
            if isinstance(out, Volume):
                labels_store: Any = out
                result: Any = out
            else:
                result = out if out is not None else np.empty(src.spatial, np.int32)
                labels_store = result.reshape(src.shape)
            eng = _Engine(src, labels_store, slab_z, scratch)
            smooth = bool(np.any(sigma_sk > 0))
            if smooth:
                eng.smoothed = _smooth(src, pre, imin, scale, sigma_sk, streaming, scratch)
            eng.set_features(pre, imin, scale, ratio, rescaled=smooth)
            # ---- k-means ------------------------------------------------------------------
            if src.mask is not None:  # maskSLIC: first move the seeds without colour
                _run_pass(eng, centers, alive, win_steps, tile, sp, w, max_num_iter, slic_zero,
                          True, start_label, final=False)  # fmt: skip
            _run_pass(eng, centers, alive, win_steps, tile, sp, w, max_num_iter, slic_zero,
                      False, start_label, final=True)  # fmt: skip
            if max_num_iter == 0:
                for slab in eng.slabs():
                    L = eng.read_labels(slab.start, slab.stop, True)
                    L[...] = mask_label
                    eng.write_labels(slab.start, slab.stop, L)
            eng.release()
            # ---- connectivity ----------------------------------------------------------------
            if enforce_connectivity:
                segment_size = (n_mask if src.mask is not None else Z * Y * X) / nK
                min_size = int(min_size_factor * segment_size)
                max_size = int(max_size_factor * segment_size)
                if isinstance(labels_store, np.ndarray):
                    with _threads_for(labels_store.size):
                        connected = _connectivity_memory(
                            labels_store, min_size, max_size, start_label, in_place=True
                        )
                    if connected is not labels_store:
                        labels_store[...] = connected
                else:
                    _connectivity_stream(eng, nK, min_size, max_size, start_label)
        finally:
            scratch.close()
    return result


def _value_range(src: _Source) -> tuple[float, float, int]:
    """Minimum and maximum of the unmasked values and the number of mask voxels, in
    slabs (an archive's read one ahead); NaN where not masked out is refused."""
    Z, Y, X = src.shape
    rows = max(1, _slab_bytes() // max(1, Y * X * (src.nc * src.dtype.itemsize + 1)))
    lo_v, hi_v, n_mask = np.inf, -np.inf, 0

    def read(slab: Slab) -> tuple[np.ndarray, np.ndarray | None]:
        return src.read(slab.start, slab.stop), src.read_mask(slab.start, slab.stop)

    reads = stream(slabs(Z, rows), read, prefetch=src.volume or src.mask_is_volume,
                   progress=False)  # fmt: skip
    with contextlib.closing(reads):
        for _, (data, m) in reads:
            if m is not None:
                data = data[m.view(bool)]
                n_mask += data.shape[0]
            if data.size == 0:
                continue
            lo, hi = data.min(), data.max()
            if np.isnan(lo) or np.isnan(hi):
                raise ValueError(
                    "image contains NaN values where it is not masked out; NaN is only "
                    "allowed outside the mask"
                )
            lo_v, hi_v = min(lo_v, float(lo)), max(hi_v, float(hi))
    return lo_v, hi_v, n_mask


def _smooth(src: _Source, pre, imin, scale, sigma_sk, streaming: bool, scratch: Scratch):
    """The rescaled image smoothed by scipy.ndimage.gaussian_filter (mode 'reflect').

    In memory: one array in the float type, filtered in place. Streamed: rescaling and
    filter run per block with a halo of the filter radius (bit-identical to the
    whole-array filter) into the scratch file.
    """
    from scipy import ndimage as ndi

    ft = src.ftype
    sig_sk = [float(s) for s in sigma_sk]
    if not streaming or not src.volume:
        f = rescale(src.read(0, src.shape[0]), pre, imin, scale, ft)  # canonical (Z, Y, X, C)
        view = f.reshape((1, src.shape[0], src.shape[2], src.nc)) if src.is_2d else f
        ndi.gaussian_filter(view, sig_sk + [0.0], output=view, mode="reflect", truncate=4.0)
        return f
    from .streaming import map_overlap

    sig_spatial = sig_sk[1:] if src.is_2d else sig_sk
    radius = tuple(int(4.0 * s + 0.5) if s > 1e-15 else 0 for s in sig_spatial)

    def kernel(block: np.ndarray, info) -> np.ndarray:
        f = rescale(block, pre, imin, scale, ft)
        view = f[None] if src.is_2d else f
        ndi.gaussian_filter(view, sig_sk, output=view, mode="reflect", truncate=4.0)
        return f[info.core]

    vol = scratch.volume("smoothed", src.spatial, ft)
    map_overlap(kernel, src.arr, depth=radius, mode="reflect", dtype=src.dtype, out=vol,
                progress=False)  # fmt: skip
    return vol


PRE_NONE, PRE_UNSIGNED, PRE_SIGNED = 0, 1, 2


def _img_as_float_params(dtype: np.dtype) -> tuple[int, float]:
    """scikit-image's ``img_as_float`` of integers: ``x * (1 / max)`` in float64, clamped
    at -1 for signed types (booleans and floats are only cast)."""
    if dtype.kind == "u":
        return PRE_UNSIGNED, 1.0 / np.iinfo(dtype).max
    if dtype.kind == "i":
        return PRE_SIGNED, 1.0 / np.iinfo(dtype).max
    return PRE_NONE, 1.0


def _img_as_float_scalar(value: float, pre: tuple[int, float], ft: np.dtype):
    v = ft.type(value)
    if pre[0] != PRE_NONE:
        v = np.multiply(v, pre[1], dtype=np.float64)
        if pre[0] == PRE_SIGNED:
            v = np.maximum(v, -1.0)
    return ft.type(v)


def _rescale_into(f: np.ndarray, data: np.ndarray, pre, imin, scale) -> np.ndarray:
    """``f = (img_as_float(data) - min) / (max - min)``: scikit-image's operations."""
    f[...] = data
    if pre[0] != PRE_NONE:
        f *= pre[1]
        if pre[0] == PRE_SIGNED:
            np.maximum(f, -1.0, out=f)
    f -= imin
    if scale is not None:
        f /= scale
    return f


def rescale(data: np.ndarray, pre, imin, scale, ftype) -> np.ndarray:
    """A new array ``(img_as_float(data) - min) / (max - min)`` in ``ftype``."""
    return _rescale_into(np.empty(data.shape, ftype), data, pre, imin, scale)

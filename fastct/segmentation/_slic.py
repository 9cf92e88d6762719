"""The :func:`slic` driver: arguments, seeds, slabs, k-means passes, connectivity."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import _config
from .._validate import check_flag, check_int, check_real
from ..streaming import Scratch
from ..volume import Volume
from ._connectivity import _connectivity_memory, _connectivity_stream
from ._engine import _Engine
from ._inputs import _per_axis_floats, _Source
from ._kmeans import _run_pass, _tile_shape
from ._rescale import _img_as_float_params, _img_as_float_scalar, _smooth, _value_range
from ._seeds import _grid_centroids, _grid_steps, _mask_centroids
from ._slabs import _slab_bytes, _threads_for


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
    n_segments = check_int(n_segments, "n_segments", lo=1)
    compactness = check_real(compactness, "compactness", lo=0, lo_open=True)
    max_num_iter = check_int(max_num_iter, "max_num_iter", lo=0)
    min_size_factor = check_real(min_size_factor, "min_size_factor", lo=0)
    max_size_factor = check_real(max_size_factor, "max_size_factor", lo=0, lo_open=True)
    start_label = check_int(start_label, "start_label", lo=0, hi=1)
    check_flag(enforce_connectivity, "enforce_connectivity")
    check_flag(slic_zero, "slic_zero")
    slic_zero = bool(slic_zero)
    src = _Source(image, channel_axis, mask)
    nd = len(src.spatial)
    ft = src.ftype
    sp_user = (
        np.ones(nd) if spacing is None else _per_axis_floats(spacing, nd, "spacing", positive=True)
    )
    if isinstance(sigma, (numbers.Real, np.number)) and not isinstance(sigma, (bool, np.bool_)):
        sigma_v: Any = check_real(sigma, "sigma", lo=0)
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

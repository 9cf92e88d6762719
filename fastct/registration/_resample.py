""":func:`resample`: warp an image onto another grid, in memory or streamed."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import _config
from .._geometry import Geometry
from .._validate import check_out, check_shape, smoothing_dtype
from ..transforms import RigidTransform
from ._inputs import _image_meta, _is_volume


def _as_transform(transform: Any, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """(linear, offset) of a transform object or homogeneous matrix."""
    if isinstance(transform, RigidTransform):
        if transform.ndim != ndim:
            raise ValueError(f"transform must be {ndim}-D like moving, got {transform.ndim}-D")
        return transform.linear, transform.offset
    if hasattr(transform, "matrix") and not isinstance(transform, np.ndarray):
        transform = transform.matrix
    try:
        m = np.asarray(transform, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            "transform must be a RigidTransform/SimilarityTransform or a homogeneous matrix, "
            f"got {type(transform).__name__}"
        ) from None
    if m.shape != (ndim + 1, ndim + 1):
        raise ValueError(
            f"transform matrix must be {ndim + 1}x{ndim + 1} for a {ndim}-D image, got {m.shape}"
        )
    if not np.all(np.isfinite(m)):
        raise ValueError("transform matrix must be finite")
    return m[:ndim, :ndim], m[:ndim, ndim]


def resample(
    moving: Any,
    transform: Any,
    *,
    shape: Any,
    spacing: Any = None,
    origin: Any = None,
    direction: Any = None,
    moving_spacing: Any = None,
    moving_origin: Any = None,
    moving_direction: Any = None,
    order: int = 1,
    cval: float = 0.0,
    out: Any = None,
) -> Any:
    """Warp ``moving`` onto a grid: ``output[i] = moving at transform.apply(p_i)`` with
    ``p_i = origin + direction @ (i * spacing)``.

    With the transform from :func:`register` and the fixed image's grid this gives the
    moving image aligned with the fixed one. The moving image is sampled at the
    continuous index ``moving_direction^T (q - moving_origin) / moving_spacing`` of each
    mapped point ``q`` (ITK's convention, as ``SimpleITK.Resample``).

    Parameters
    ----------
    moving : ndarray or Volume
        2-D or 3-D image; a Volume is read block by block (orders 0 and 1 read only the
        region each output block needs; order 3 reads it whole to compute the spline
        coefficients, float64).
    transform : RigidTransform, SimilarityTransform or (ndim + 1, ndim + 1) matrix
        Output (fixed) physical points -> moving physical points.
    shape : sequence of int
        Output shape.
    spacing, origin : sequence of float, optional
        Output grid; default the ``out`` Volume's, else 1 mm and 0.
    direction : (ndim, ndim) array_like, optional
        Output grid's direction cosines (one column per array axis); default the ``out``
        Volume's ``direction``, else the identity.
    moving_spacing, moving_origin : sequence of float, optional
        Moving grid; default the Volume's, else 1 mm and 0.
    moving_direction : (ndim, ndim) array_like, optional
        Moving grid's direction cosines; default the Volume's, else the identity.
    order : {0, 1, 3}
        Nearest, linear or cubic B-spline interpolation (scipy.ndimage's).
    cval : float
        Value outside the moving image (scipy's ``mode='constant'``: points outside
        ``[0, n - 1]`` in index space).
    out : ndarray or Volume, optional
        Output of ``shape``; a Volume is written block by block, bit-identical to the
        in-memory result. Integer outputs are rounded and clipped.

    Returns
    -------
    ndarray or Volume
        ``out`` if given; else a new array, dtype of ``moving`` for ``order=0``,
        float32 (float64 for float64 input) otherwise.

    Examples
    --------
    >>> import numpy as np, fastct
    >>> from fastct.transforms import RigidTransform
    >>> img = np.arange(24, dtype=np.float32).reshape(4, 6)
    >>> shift = RigidTransform(2, translation=(1.0, 0.0))
    >>> fastct.resample(img, shift, shape=(4, 6), cval=-1)[:, 0]
    array([ 6., 12., 18., -1.], dtype=float32)
    """
    from scipy import ndimage

    from .._kernels.resample import resample_affine

    if isinstance(order, bool) or order not in (0, 1, 3):
        raise ValueError(f"order must be 0, 1 or 3, got {order!r}")
    if isinstance(cval, bool) or not isinstance(cval, (numbers.Real, np.number)):
        raise TypeError(f"cval must be a real number, got {type(cval).__name__}")
    marr, mgeo = _image_meta(moving, "moving", moving_spacing, moving_origin, moving_direction)
    msp, morig = mgeo.spacing, mgeo.origin
    ndim = marr.ndim
    shape = check_shape(shape, "shape")
    if len(shape) != ndim:
        raise ValueError(f"shape must have {ndim} values like moving, got {shape}")
    out_is_vol = _is_volume(out)
    if out is not None:
        check_out(out, shape)
        if out.dtype.kind not in "biuf":
            raise TypeError(f"out must have a real numeric dtype, got {out.dtype}")
        if out_is_vol:
            spacing = out.spacing if spacing is None else spacing
            origin = out.origin if origin is None else origin
            direction = out.direction if direction is None else direction
    ogeo = Geometry.of(ndim, spacing, origin, direction)
    sp = np.asarray(ogeo.spacing, dtype=float)
    org = np.asarray(ogeo.origin, dtype=float)
    lin, off = _as_transform(transform, ndim)

    # output index -> physical (output direction) -> moving physical (transform) ->
    # moving continuous index (moving direction), embedded in 3-D
    lin_d = lin
    if not ogeo.is_identity:
        lin_d = lin @ ogeo.direction
    rel = lin @ org + off - np.asarray(morig)
    if not mgeo.is_identity:
        lin_d = mgeo.direction.T @ lin_d
        rel = mgeo.direction.T @ rel
    mat = (lin_d * sp[None, :]) / np.asarray(msp)[:, None]
    vec = rel / np.asarray(msp)
    mat3, vec3 = np.zeros((3, 3)), np.zeros(3)
    mat3[3 - ndim :, 3 - ndim :] = mat
    vec3[3 - ndim :] = vec
    # Values within round-off of an integer (grids that coincide up to flips and
    # permutations: origins moved by (n - 1) * spacing) are made exact, so that such
    # a grid gives the moving voxels exactly, edge voxels included.
    mat3, vec3 = _snap(mat3), _snap(vec3)
    mshape3 = np.asarray((1,) * (3 - ndim) + tuple(marr.shape), dtype=np.int64)

    in_dtype = np.dtype(marr.dtype)
    if in_dtype.kind not in "biuf":
        raise TypeError(f"moving must have a real numeric dtype, got {in_dtype}")
    res_dtype = in_dtype if order == 0 else smoothing_dtype(in_dtype)
    if res_dtype.kind == "b":
        res_dtype = np.dtype(np.uint8) if order == 0 else res_dtype
    dst_dtype = np.dtype(out.dtype) if out is not None else res_dtype
    is_int = dst_dtype.kind in "biu"
    if dst_dtype.kind == "b":
        lo, hi = 0.0, 1.0
    elif is_int:
        info = np.iinfo(dst_dtype)
        lo, hi = float(info.min), float(info.max)
    else:
        lo = hi = 0.0

    from ..streaming import map_blocks, read_all

    def src_full() -> np.ndarray:
        data = read_all(marr)
        if order == 3:
            if data.dtype.kind == "f" and data.dtype != np.float64:
                data = data.astype(np.float64)
            data = ndimage.spline_filter(data, order=3, output=np.float64, mode="mirror")
        elif data.dtype.kind == "b":
            data = data.view(np.uint8)
        return np.ascontiguousarray(data).reshape(tuple(mshape3))

    kernel_args = (mat3, vec3)
    full_start = np.zeros(3, np.int64)

    if not out_is_vol and not _is_volume(marr):
        src = src_full()
        result = out if out is not None else np.empty(shape, dtype=res_dtype)
        target = result if result.flags.c_contiguous else np.empty(shape, dtype=result.dtype)
        t3 = target.reshape((1,) * (3 - ndim) + shape)
        with _config.kernel_threads():
            resample_affine(src, t3, *kernel_args, full_start, full_start, mshape3, order,
                            float(cval), is_int, lo, hi)  # fmt: skip
        if target is not result:
            result[...] = target
        return result

    # streamed by output blocks: the engine reads the moving box of the next block on its
    # I/O thread (orders 0 and 1; order 3 samples the whole coefficient array) while this
    # one is interpolated, and writes the blocks to ``out`` (aligned to its chunks)
    src_cache = src_full() if order == 3 else None

    def as3(start: tuple[int, ...], stop: tuple[int, ...]) -> tuple[np.ndarray, tuple]:
        start3 = np.asarray((0,) * (3 - ndim) + tuple(start), dtype=np.int64)
        return start3, (1,) * (3 - ndim) + tuple(b - a for a, b in zip(start, stop))

    def read(start: tuple[int, ...], stop: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        if order == 3:
            return src_cache, full_start
        return _source_region(marr, mat3, vec3, *as3(start, stop), mshape3, ndim)

    def kernel(data: tuple[np.ndarray, np.ndarray], info) -> np.ndarray:
        src, sstart = data
        start3, bshape3 = as3(info.start, info.stop)
        block = np.empty(bshape3, dtype=dst_dtype)
        resample_affine(src, block, mat3, vec3, start3, sstart, mshape3, order, float(cval),
                        is_int, lo, hi)  # fmt: skip
        return block.reshape(info.core_shape)

    # blocks of about half the memory budget at 8 bytes per output voxel
    return map_blocks(kernel, shape, read, out=out, out_dtype=res_dtype, itemsize=8,
                      desc="resample")  # fmt: skip


_SNAP = 1e-9  # index units


def _snap(a: np.ndarray) -> np.ndarray:
    r = np.rint(a)
    return np.where(np.abs(a - r) <= _SNAP * np.maximum(1.0, np.abs(a)), r, a)


def _source_region(marr, mat3, vec3, start3, bshape3, mshape3, ndim):
    """The moving region (and its start) that output block needs for orders 0 and 1."""
    from ..streaming import read_region

    corners = np.array(
        np.meshgrid(*[[s, s + n - 1] for s, n in zip(start3, bshape3)], indexing="ij")
    ).reshape(3, -1)
    u = mat3 @ corners + vec3[:, None]
    lo = np.maximum(np.floor(u.min(axis=1)) - 1, 0).astype(np.int64)
    hi = np.minimum(np.ceil(u.max(axis=1)) + 1, mshape3 - 1).astype(np.int64)
    if np.any(hi < lo):  # the block sees nothing of the moving image
        return np.zeros((1, 1, 1), dtype=marr.dtype if marr.dtype.kind != "b" else np.uint8), lo * 0
    region3 = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi))
    buf = read_region(marr, region3[3 - ndim :])
    if buf.dtype.kind == "b":
        buf = buf.view(np.uint8)
    return buf.reshape(tuple(r.stop - r.start for r in region3)), lo

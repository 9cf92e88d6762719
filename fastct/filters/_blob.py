"""Hessian blob filter: a scale-normalised response of bright, ball-like structures.

At scale ``s`` the image is smoothed with the exact Gaussian of :func:`gaussian`
(sigma ``s``, per axis ``s / spacing``), its Hessian ``H`` is taken by central
differences (per mm^2 with ``spacing``), and each voxel gets

    ``B = s^2 * cbrt(-det H)``  where ``trace H < 0`` and ``det H < 0``, else 0.

A bright ball has three negative eigenvalues and scores high; a tube (vessel) or a
wall (pleura) has an eigenvalue near 0 and scores near 0; dark structures score 0.
The ``s^2`` factor makes responses comparable across scales (a ball of radius about
``s * sqrt(3)`` peaks at scale ``s``). The nodule detector of
:mod:`fastct.classify` summarises it per supervoxel at several scales.

The block kernel needs the Gaussian's reach plus one voxel of halo; every call
streams through :func:`fastct.filters._common.run_filter`, so in memory, streamed,
any block shape and any thread count give the same bits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._docs import docfiller
from .._validate import as_input, check_mode, check_real, check_spacing, smoothing_dtype
from ..streaming import BlockInfo, map_overlap
from ..volume import Volume
from ._common import run_filter


def _blob_kernel(
    sigma_vox: tuple[float, ...],
    spacing: tuple[float, ...],
    scale: float,
    truncate: float,
    dtype: np.dtype,
):
    """Block kernel: ``B`` (see the module docstring) on the block's core, in ``dtype``."""
    from ._gaussian import gaussian

    dz, dy, dx = spacing
    norm = scale * scale

    def kernel(data: np.ndarray, info: BlockInfo) -> np.ndarray:
        g = gaussian(data, sigma_vox, truncate=truncate)
        c = info.core

        def sh(oz: int, oy: int, ox: int) -> np.ndarray:
            return g[
                c[0].start + oz : c[0].stop + oz,
                c[1].start + oy : c[1].stop + oy,
                c[2].start + ox : c[2].stop + ox,
            ]

        g0 = sh(0, 0, 0)
        hzz = (sh(1, 0, 0) - 2 * g0 + sh(-1, 0, 0)) / (dz * dz)
        hyy = (sh(0, 1, 0) - 2 * g0 + sh(0, -1, 0)) / (dy * dy)
        hxx = (sh(0, 0, 1) - 2 * g0 + sh(0, 0, -1)) / (dx * dx)
        hzy = (sh(1, 1, 0) - sh(1, -1, 0) - sh(-1, 1, 0) + sh(-1, -1, 0)) / (4 * dz * dy)
        hzx = (sh(1, 0, 1) - sh(1, 0, -1) - sh(-1, 0, 1) + sh(-1, 0, -1)) / (4 * dz * dx)
        hyx = (sh(0, 1, 1) - sh(0, 1, -1) - sh(0, -1, 1) + sh(0, -1, -1)) / (4 * dy * dx)
        det = (
            hzz * (hyy * hxx - hyx * hyx)
            - hzy * (hzy * hxx - hyx * hzx)
            + hzx * (hzy * hyx - hyy * hzx)
        )
        trace = hzz + hyy + hxx
        out = np.where((trace < 0) & (det < 0), np.cbrt(np.maximum(-det, 0)), 0)
        return (out * norm).astype(dtype)

    return kernel


def _plan(scale: float, spacing: tuple[float, ...], truncate: float, dtype: Any):
    """``(kernel, depth)``: the block kernel and its halo (Gaussian reach + 1 voxel)."""
    sigma_vox = tuple(scale / d for d in spacing)
    depth = tuple(int(math.ceil(truncate * sv + 0.5)) + 1 for sv in sigma_vox)
    return _blob_kernel(sigma_vox, spacing, scale, truncate, np.dtype(dtype)), depth


def _hessian_blob(
    image: np.ndarray | Volume,
    scale: float,
    spacing: tuple[float, ...],
    *,
    mode: str = "nearest",
    cval: float = 0.0,
    truncate: float = 4.0,
    dtype: Any = np.float32,
    out: np.ndarray | Volume | None = None,
) -> np.ndarray | Volume:
    """:func:`hessian_blob` on checked arguments, computed and returned in ``dtype``."""
    kernel, depth = _plan(scale, spacing, truncate, dtype)
    return run_filter(
        kernel,
        image,
        depth=depth,
        mode=mode,
        cval=cval,
        compute_dtype=np.dtype(dtype),
        out_dtype=np.dtype(dtype),
        out=out,
        desc="hessian_blob",
    )


def _hessian_blob_in_box(
    image: np.ndarray,
    box: tuple[slice, ...],
    scale: float,
    spacing: tuple[float, ...],
    *,
    truncate: float = 4.0,
    dtype: Any = np.float32,
    where: np.ndarray | None = None,
) -> np.ndarray:
    """``hessian_blob(image, mode='nearest')`` inside ``box``, 0 elsewhere (in memory).

    Only the box and its halo (real data where the volume has it, as the engine
    would read it) are filtered: the values inside the box are the same bits as
    those of the whole-volume filter. With ``where`` (a bool array of the box's
    shape), float32 only: the measure is evaluated only at those voxels (0 at the
    others), by one compiled pass instead of the vectorised kernel's temporaries
    (:class:`BoxBlob`).
    """
    resp = np.zeros(image.shape, np.dtype(dtype))
    if where is not None and np.dtype(dtype) == np.float32:
        resp[box] = BoxBlob(image, box, (scale,), spacing, truncate).response(scale, where)
        return resp
    kernel, depth = _plan(scale, spacing, truncate, dtype)
    lo = [max(0, b.start - d) for b, d in zip(box, depth)]
    hi = [min(n, b.stop + d) for b, d, n in zip(box, depth, image.shape)]
    sub = image[tuple(slice(a, b) for a, b in zip(lo, hi))]
    inner = tuple(slice(b.start - a, b.stop - a) for b, a in zip(box, lo))
    r = map_overlap(kernel, sub, depth=depth, mode="nearest", dtype=np.dtype(dtype))
    resp[box] = r[inner] if where is None else np.where(where, r[inner], 0)
    return resp


def _plane(axis: int, index: int) -> tuple[int | slice, ...]:
    """The index of plane ``index`` along ``axis`` of a 3-D array."""
    return tuple(index if a == axis else slice(None) for a in range(3))


def _pad_edge_float32(a: np.ndarray) -> np.ndarray:
    """``np.pad(a.astype(np.float32), 1, mode='edge')`` for a 3-D array, written in
    place (NumPy's generic pad takes several times longer on a clinical box)."""
    out = np.empty(tuple(n + 2 for n in a.shape), np.float32)
    out[1:-1, 1:-1, 1:-1] = a
    for axis in range(3):  # each face copies its neighbour plane, edges and corners included
        out[_plane(axis, 0)] = out[_plane(axis, 1)]
        out[_plane(axis, -1)] = out[_plane(axis, -2)]
    return out


class BoxBlob:
    """The float32 blob measure of :func:`hessian_blob` (``mode='nearest'``) at chosen
    voxels of one box of an in-memory image, at several scales.

    The box and the halo of the largest scale are converted to float32 and padded
    once; each scale filters the part of that copy it reaches. A scale's values in
    the box depend only on data within its own halo, so they are the same bits as
    those of the whole-volume filter (tests/test_blob.py).
    """

    def __init__(
        self,
        image: np.ndarray,
        box: tuple[slice, ...],
        scales: Sequence[float],
        spacing: tuple[float, ...],
        truncate: float = 4.0,
    ):
        self.box, self.spacing, self.truncate, self.shape = box, spacing, truncate, image.shape
        reach = [max(d) for d in zip(*(self._depth(s) for s in scales))]
        self.lo = [max(0, b.start - d) for b, d in zip(box, reach)]
        hi = [min(n, b.stop + d) for b, d, n in zip(box, reach, image.shape)]
        sub = image[tuple(slice(a, b) for a, b in zip(self.lo, hi))]
        # one voxel of 'nearest' extension: the Hessian of a voxel on the volume's edge
        # reads the smoothed value just outside, as the engine's padded block has it
        self.padded = _pad_edge_float32(sub)

    def _depth(self, scale: float) -> tuple[int, ...]:
        return _plan(scale, self.spacing, self.truncate, np.float32)[1]

    def response(self, scale: float, where: np.ndarray) -> np.ndarray:
        """The measure at ``where`` (bool, the box's shape), 0 elsewhere, float32."""
        from .._kernels.blob import blob_neg_det
        from ._gaussian import gaussian

        depth = self._depth(scale)
        lo = [max(0, b.start - d) for b, d in zip(self.box, depth)]
        hi = [min(n, b.stop + d) for b, d, n in zip(self.box, depth, self.shape)]
        # this scale's halo and one voxel more: the edge padding at the volume's edge,
        # real data elsewhere (which no value in the box reaches)
        view = self.padded[tuple(slice(a - o, b - o + 2) for a, b, o in zip(lo, hi, self.lo))]
        sigma_vox = tuple(scale / d for d in self.spacing)
        g = np.ascontiguousarray(gaussian(view, sigma_vox, mode="nearest", truncate=self.truncate))
        dz, dy, dx = self.spacing
        c = np.array(
            [dz * dz, dy * dy, dx * dx, 4 * dz * dy, 4 * dz * dx, 4 * dy * dx], np.float64
        ).astype(np.float32)
        off = np.array([b.start - a + 1 for b, a in zip(self.box, lo)], np.int64)
        where = np.ascontiguousarray(where, np.bool_)
        out = blob_neg_det(g, off, where, c, np.empty(where.shape, np.float32))
        # the block kernel's ``cbrt(-det) * norm``, taken where the measure is not 0
        # (a few per cent of the voxels; cbrt(0) * norm is 0)
        flat = out.reshape(-1)
        nonzero = np.flatnonzero(flat)
        flat[nonzero] = np.cbrt(flat[nonzero]) * (scale * scale)
        return out


@docfiller
def hessian_blob(
    image: np.ndarray | Volume,
    scale: float,
    *,
    spacing: float | Sequence[float] | None = None,
    mode: str = "reflect",
    cval: float = 0.0,
    truncate: float = 4.0,
    out: np.ndarray | Volume | None = None,
) -> np.ndarray | Volume:
    """Scale-normalised Hessian response of bright blobs (3-D).

    ``scale**2 * cbrt(-det H)`` where the Hessian ``H`` of the Gaussian-smoothed
    image (sigma ``scale``) has a negative trace and a negative determinant, else 0:
    high on bright balls of radius about ``scale * sqrt(3)``, near 0 on tubes and
    walls, 0 on dark structures.

    Parameters
    ----------
    image : ndarray or Volume
        3-D ``(z, y, x)`` input, in memory or in an archive.
    scale : float
        Gaussian sigma (voxels, or mm with ``spacing``), the same on every axis in
        physical units.
    {spacing}
    {mode}
    {cval}
    truncate : float
        The Gaussian taps stop at ``int(truncate * sigma + 0.5)`` voxels, as in
        scipy.
    {out}

    Returns
    -------
    ndarray or Volume
        float32 for float32, integer and bool input; float64 for float64 input.
        With ``spacing`` the Hessian is per mm^2 and the response in image units;
        without, per voxel^2.

    Notes
    -----
    Equals, up to rounding, this NumPy / scipy recipe: extend the image past its
    edges with ``mode`` (``numpy.pad`` by the Gaussian's radius plus one voxel),
    smooth it with ``scipy.ndimage.gaussian_filter(..., scale / spacing,
    truncate=truncate)``, take the second derivatives by central differences
    (``(g[i+1] - 2 g[i] + g[i-1]) / d^2`` and ``(g[i+1, j+1] - g[i+1, j-1] -
    g[i-1, j+1] + g[i-1, j-1]) / (4 d_i d_j)``), and evaluate the formula above on
    the original grid. With ``mode='constant'`` the halo is filled with ``cval``
    before smoothing.

    Examples
    --------
    >>> import numpy as np
    >>> from fastct.filters import hessian_blob
    >>> z, y, x = np.mgrid[:21, :21, :21] - 10
    >>> ball = (z**2 + y**2 + x**2 <= 16).astype(np.float32)
    >>> tube = (y**2 + x**2 <= 16).astype(np.float32)
    >>> b, t = hessian_blob(ball, 2.0), hessian_blob(tube, 2.0)
    >>> bool(b[10, 10, 10] > 0.1), bool(t[10, 10, 10] < 0.01 * b[10, 10, 10])
    (True, True)
    """
    image = as_input(image)
    if image.ndim != 3:
        raise ValueError(
            f"image must be 3-D (z, y, x), got {image.ndim}-D with shape {tuple(image.shape)}"
        )
    if 0 in tuple(image.shape):
        raise ValueError(f"image must not have an empty axis, got shape {tuple(image.shape)}")
    scale = check_real(scale, "scale", lo=0, lo_open=True)
    sp = check_spacing(spacing, 3)
    mode = check_mode(mode)
    cval = check_real(cval, "cval", finite=False)
    truncate = check_real(truncate, "truncate", lo=0, lo_open=True)
    cdt = smoothing_dtype(image.dtype)
    return _hessian_blob(
        image, scale, sp, mode=mode, cval=cval, truncate=truncate, dtype=cdt, out=out
    )

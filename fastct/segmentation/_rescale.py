"""SLIC's intensity rescaling to ``[0, 1]`` with scikit-image's operations: the value
range of the unmasked input, ``img_as_float``'s integer scaling, and the optional
Gaussian pre-smoothing (in memory or streamed with a halo).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..streaming import Scratch, Slab, slabs, stream
from ._inputs import _Source
from ._slabs import _slab_bytes


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
    from ..streaming import map_overlap

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

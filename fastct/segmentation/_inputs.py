"""SLIC's argument checks and input adapter: the image (array or Volume, channels,
mask) in the canonical ``(Z, Y, X, C)`` layout, read slab by slab.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validate import as_real_array, check_ndim
from ..streaming import read_planes
from ..volume import Volume


# --------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------
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

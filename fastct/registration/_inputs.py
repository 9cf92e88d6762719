"""Argument checks and input loading shared by :func:`~fastct.registration.register`
and :func:`~fastct.registration.resample`."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .._geometry import Geometry
from .._validate import as_image


def _is_volume(x: Any) -> bool:
    from ..volume import Volume

    return isinstance(x, Volume)


def _choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {options}, got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def _image_meta(image: Any, name: str, spacing: Any, origin: Any, direction: Any = None):
    """(array, Geometry) of an ndarray or Volume; a Volume's ``spacing``, ``origin`` and
    ``direction`` attributes are the defaults. Errors name ``{name}_spacing`` etc."""
    if _is_volume(image):
        ndim = image.ndim
        if spacing is None:
            spacing = image.spacing
        if origin is None:
            origin = image.origin
        if direction is None:
            direction = image.direction
        array = image
    else:
        array = as_image(image, name)
        ndim = array.ndim
    return array, Geometry.of(ndim, spacing, origin, direction, name=name)


def _direction3(d: np.ndarray) -> np.ndarray:
    """A direction matrix embedded in 3-D (2-D: identity on the dummy axis 0)."""
    if d.shape == (3, 3):
        return np.ascontiguousarray(d, dtype=np.float64)
    out = np.eye(3)
    out[1:, 1:] = d
    return out


def _load_float32(array: Any, name: str) -> np.ndarray:
    """The image as a C-contiguous float32 array, checked for NaN/inf."""
    if _is_volume(array):
        from ..streaming import read_all

        data = read_all(array)
        if data.dtype.kind not in "biuf":
            raise TypeError(f"{name} must have a real numeric dtype, got {data.dtype}")
    else:
        data = array
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ValueError(f"{name} contains NaN or inf; registration needs finite intensities")
    data = np.ascontiguousarray(data, dtype=np.float32)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ValueError(f"{name} has values outside the float32 range")
    return data


def _as3(a: np.ndarray) -> np.ndarray:
    return a if a.ndim == 3 else a[None]


def _pad3(values: tuple, fill: float) -> np.ndarray:
    return np.array(values if len(values) == 3 else (fill, *values), dtype=np.float64)


def _check_sampling(sampling: Any) -> Any:
    if isinstance(sampling, str):
        return _choice(sampling, "sampling", ("auto", "full"))
    if isinstance(sampling, bool) or not isinstance(sampling, (numbers.Real, np.number)):
        raise TypeError(
            f"sampling must be 'auto', 'full', a fraction in (0, 1] or a sample count, "
            f"got {type(sampling).__name__}"
        )
    if isinstance(sampling, (numbers.Integral, np.integer)):
        if sampling < 1:
            raise ValueError(f"sampling count must be >= 1, got {sampling}")
        return int(sampling)
    sampling = float(sampling)
    if not 0.0 < sampling <= 1.0:
        raise ValueError(f"sampling fraction must be in (0, 1], got {sampling}")
    return sampling


def _positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (>= 0 with ``allow_zero``). Its messages ("must be
    finite and >= 0") differ from ``_validate.per_axis``'s and are kept as they are."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(float(value)) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return float(value)

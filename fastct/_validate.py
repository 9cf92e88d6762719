"""The input layer: argument checks and the dtype policy, in one place.

Public functions call these helpers before handing C-contiguous arrays of a fixed
layout to the private kernels: images (array or archive Volume), ``out=``
destinations, scalars, flags and choices, per-axis values, geometry. Every error
names the parameter, what was expected and what was received, so the CLI can print
it as its one line. Shared docstring fragments live in :mod:`fastct._docs`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

MODES = ("reflect", "mirror", "nearest", "constant", "wrap")
# scipy.ndimage aliases accepted for convenience.
_MODE_ALIASES = {"grid-mirror": "reflect", "grid-wrap": "wrap"}


def check_mode(mode: object, name: str = "mode") -> str:
    """Return the canonical boundary-mode name (scipy.ndimage semantics)."""
    if not isinstance(mode, str):
        raise TypeError(f"{name} must be a string, one of {MODES}, got {type(mode).__name__}")
    canonical = _MODE_ALIASES.get(mode, mode)
    if canonical not in MODES:
        raise ValueError(f"{name} must be one of {MODES}, got {mode!r}")
    return canonical


def check_ndim(ndim: int, name: str = "image") -> None:
    if ndim not in (2, 3):
        raise ValueError(f"{name} must be 2-D (y, x) or 3-D (z, y, x), got {ndim}-D")


def as_array(value: object, name: str, accepted: str = "an array") -> np.ndarray:
    """``np.asarray(value)``; a TypeError "``name`` must be ``accepted``" when it fails."""
    try:
        return np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - report what we were given
        raise TypeError(f"{name} must be {accepted}, got {type(value).__name__}") from exc


def as_real_array(
    image: object, name: str = "image", *, accepted: str = "an array", allow_bool: bool = True
) -> np.ndarray:
    """Coerce ``image`` to an ndarray with a real numeric dtype (no shape checks).

    ``accepted`` completes the message "``name`` must be ..." when it cannot be coerced.
    """
    if not isinstance(image, np.ndarray):
        image = as_array(image, name, accepted)
    kind = image.dtype.kind
    if kind not in "biuf" or (kind == "b" and not allow_bool):
        raise TypeError(f"{name} must have a real numeric dtype, got {image.dtype}")
    return image


def as_image(image: object, name: str = "image", *, allow_bool: bool = True) -> np.ndarray:
    """Validate an in-memory image: 2-D or 3-D, real numeric, no empty axes.

    Returns a native-endian array (a view when possible).
    """
    image = as_real_array(image, name, allow_bool=allow_bool)
    check_ndim(image.ndim, name)
    if 0 in image.shape:
        raise ValueError(f"{name} must not have an empty axis, got shape {image.shape}")
    if not image.dtype.isnative:
        image = image.astype(image.dtype.newbyteorder("="))
    return image


def smoothing_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype policy: float32 and float64 stay, integers and bools compute in float32."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return np.dtype(np.float64)
    if dtype.kind in "biuf":
        return np.dtype(np.float32)
    raise TypeError(f"unsupported dtype {dtype}")


def per_axis(
    value: object, ndim: int, name: str, *, kind: type = float, allow_zero: bool = True
) -> tuple:
    """Normalise a scalar or per-axis sequence to a tuple of ``ndim`` finite values >= 0."""
    if isinstance(value, (numbers.Number, np.number)) and not isinstance(value, bool):
        values = (value,) * ndim
    elif isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        values = tuple(np.asarray(value).ravel().tolist())
        if len(values) != ndim:
            raise ValueError(f"{name} must have {ndim} values (one per axis), got {len(values)}")
    else:
        raise TypeError(f"{name} must be a number or a sequence of {ndim} numbers, got {value!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (numbers.Real, np.number)):
            raise TypeError(f"{name} must contain real numbers, got {v!r}")
        if not math.isfinite(v):
            raise ValueError(f"{name} must be finite, got {value!r}")
        if kind is int:
            if int(v) != v:
                raise ValueError(f"{name} must contain integers, got {value!r}")
            v = int(v)
        else:
            v = float(v)
        if v < 0 or (v == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{name} must be {bound} on every axis, got {value!r}")
        out.append(v)
    return tuple(out)


def check_spacing(spacing: object, ndim: int, name: str = "spacing") -> tuple[float, ...]:
    """Per-axis voxel spacing in mm, positive and finite; ``None`` means 1 mm."""
    if spacing is None:
        return (1.0,) * ndim
    return per_axis(spacing, ndim, name, allow_zero=False)


def check_origin(origin: object, ndim: int, name: str = "origin") -> tuple[float, ...]:
    if origin is None:
        return (0.0,) * ndim
    arr = np.asarray(origin, dtype=float).ravel() if not isinstance(origin, str) else None
    if arr is None or arr.size != ndim:
        raise ValueError(f"{name} must have {ndim} values, got {origin!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {origin!r}")
    return tuple(float(v) for v in arr)


def check_direction(direction: object, ndim: int, name: str = "direction") -> np.ndarray | None:
    """An ``ndim x ndim`` direction-cosine matrix with orthonormal columns, or None."""
    if direction is None:
        return None
    arr = np.asarray(direction, dtype=float)
    if arr.shape != (ndim, ndim):
        raise ValueError(f"{name} must be a {ndim}x{ndim} matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    if not np.allclose(arr.T @ arr, np.eye(ndim), atol=1e-4):
        raise ValueError(f"{name} must have orthonormal columns, got {arr.tolist()}")
    return arr


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_shape(shape: object, name: str = "shape") -> tuple[int, ...]:
    try:
        dims = tuple(int(s) for s in shape)  # type: ignore[union-attr]
    except TypeError:
        raise TypeError(f"{name} must be a sequence of integers, got {shape!r}") from None
    check_ndim(len(dims), name)
    if any(d < 1 for d in dims):
        raise ValueError(f"{name} must be positive on every axis, got {dims}")
    return dims


# -- scalars, flags, choices ---------------------------------------------------------
def _bounds_text(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi:g}"
    return ""


def check_real(
    value: object,
    name: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    finite: bool = True,
) -> float:
    """A real number (not a bool) within the optional bounds, as a float; finite
    unless ``finite=False`` (fill values may be NaN or infinite, as in scipy).

    >>> check_real(2, "sigma", lo=0, lo_open=True)
    2.0
    >>> check_real(-1, "sigma", lo=0, lo_open=True)
    Traceback (most recent call last):
    ...
    ValueError: sigma must be a finite number > 0, got -1
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if (
        (finite and not math.isfinite(v))
        or (lo is not None and (v < lo or (lo_open and v == lo)))
        or (hi is not None and (v > hi or (hi_open and v == hi)))
    ):
        bounds = _bounds_text(lo, hi, lo_open, hi_open)
        raise ValueError(f"{name} must be a finite number{bounds}, got {value!r}")
    return v


def check_int(value: object, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (not a bool) within the optional bounds.

    >>> check_int(3, "size", lo=1)
    3
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be an integer{_bounds_text(lo, hi, False, False)}, got {v}")
    return v


def check_flag(value: object, name: str) -> bool:
    """``True`` or ``False`` (NumPy booleans too).

    >>> check_flag(np.True_, "overwrite")
    True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(value: object, name: str, options: Sequence[str]) -> str:
    """One of the strings ``options``.

    >>> check_choice("mi", "metric", ("mse", "ncc", "mi"))
    'mi'
    """
    options = tuple(options)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {options}, got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


# -- images and destinations: ndarray or archive Volume ----------------------------------
def _volume_type() -> type:
    from .volume import Volume  # the storage layer imports this module: import late

    return Volume


def as_input(
    image: Any, name: str = "image", *, allow_bool: bool = True, integer: bool = False
) -> Any:
    """An archive Volume as it is (checked: 2-D or 3-D, real numeric), else a validated
    in-memory image (:func:`as_image`). ``integer``: labels, an integer (or bool) dtype.

    >>> as_input(np.zeros((2, 3), np.float32), "labels", integer=True)
    Traceback (most recent call last):
    ...
    TypeError: labels must have an integer (or bool) dtype, got float32
    """
    if isinstance(image, _volume_type()):
        check_ndim(image.ndim, name)
        kind = image.dtype.kind
        if kind not in "biuf" or (kind == "b" and not allow_bool):
            raise TypeError(f"{name} must have a real numeric dtype, got {image.dtype}")
    else:
        image = as_image(image, name, allow_bool=allow_bool)
    if integer and image.dtype.kind not in "biu":
        raise TypeError(f"{name} must have an integer (or bool) dtype, got {image.dtype}")
    return image


def check_out(
    out: Any,
    shape: tuple[int, ...],
    dtype: Any = None,
    *,
    dtypes: Sequence[Any] | None = None,
    what: str = "shape",
) -> Any:
    """Check an ``out=`` destination for a result of ``shape``.

    ``out`` must be an ndarray or an archive Volume of that shape, writeable (a Volume
    in an archive opened for writing). With ``dtype``, its dtype must hold that result
    dtype without changing kind (``same_kind`` casting); with ``dtypes``, it must be
    one of them. ``None`` passes through. ``what`` names the shape in the message
    (e.g. "the image's shape").
    """
    if out is None:
        return None
    volume_type = _volume_type()
    if not isinstance(out, (np.ndarray, volume_type)):
        raise TypeError(f"out must be an ndarray or a Volume, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out must have {what} {tuple(shape)}, got {tuple(out.shape)}")
    if isinstance(out, volume_type):
        out.check_writable()
    elif not out.flags.writeable:
        raise ValueError("out must be writeable")
    got = np.dtype(out.dtype)
    if dtypes is not None:
        allowed = [np.dtype(d) for d in dtypes]
        if got not in allowed:
            names = " or ".join(str(d) for d in allowed)
            raise TypeError(f"out must have dtype {names}, got {got}")
    elif dtype is not None:
        want = np.dtype(dtype)
        if got != want and not np.can_cast(want, got, "same_kind"):
            raise TypeError(f"out dtype {got} cannot hold the {want} result")
    return out

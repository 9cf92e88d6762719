"""Argument checks of the phantom generators and the grid they render onto."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from fastct._validate import check_origin, check_shape, check_spacing

from ._constants import FOV_MM, PRESETS, SCENE_CENTER_MM


def _check_seed(seed: object, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed}")
    return int(seed)


def _check_real(
    value: object, name: str, *, minimum: float | None = None, strict: bool = False
) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        op = ">" if strict else ">="
        raise ValueError(f"{name} must be {op} {minimum}, got {value}")
    return value


def _check_range(value: object, name: str, lo: float, hi: float) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a (low, high) pair, got {value!r}")
    if len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {len(value)} values")
    a = _check_real(value[0], name)
    b = _check_real(value[1], name)
    if not (lo <= a <= b <= hi):
        raise ValueError(f"{name} must satisfy {lo} <= low <= high <= {hi}, got {tuple(value)}")
    return a, b


def _check_nodule_ids(nodules: Iterable[Any]) -> tuple[Any, ...]:
    """The nodule specs as a tuple; their ``id`` values must be unique and positive."""
    nodules = tuple(nodules)
    ids = [n.id for n in nodules]
    if len(set(ids)) != len(ids) or any(i < 1 for i in ids):
        raise ValueError(f"nodules must have unique positive ids, got {ids}")
    return nodules


def _check_3d_shape(shape: object) -> tuple[int, int, int]:
    dims = check_shape(shape, "shape")
    if len(dims) != 3:
        raise ValueError(f"shape must be 3-D (z, y, x), got {len(dims)}-D shape {dims}")
    return dims


def _resolve_grid(size: object, shape: object, spacing: object, origin: object):
    """Shape, spacing and origin from a preset plus optional overrides."""
    if not isinstance(size, str):
        raise TypeError(f"size must be a preset name {sorted(PRESETS)}, got {type(size).__name__}")
    if size not in PRESETS:
        raise ValueError(f"size must be one of {sorted(PRESETS)}, got {size!r}")
    preset = PRESETS[size]
    if shape is None and spacing is None:
        shp, spc = preset["shape"], preset["spacing"]
    elif spacing is None:
        shp = _check_3d_shape(shape)
        spc = tuple(f / n for f, n in zip(FOV_MM, shp))
    elif shape is None:
        spc = check_spacing(spacing, 3, "spacing")
        shp = tuple(max(1, int(round(f / s))) for f, s in zip(FOV_MM, spc))
    else:
        shp = _check_3d_shape(shape)
        spc = check_spacing(spacing, 3, "spacing")
    return tuple(shp), tuple(float(s) for s in spc), _resolve_origin(origin, shp, spc)


def _resolve_origin(origin: object, shape, spacing) -> tuple[float, float, float]:
    if isinstance(origin, str):
        if origin != "center":
            raise ValueError(f"origin must be None, 'center' or 3 numbers, got {origin!r}")
        return tuple(
            float(c - (n - 1) / 2.0 * s) for c, n, s in zip(SCENE_CENTER_MM, shape, spacing)
        )
    return check_origin(origin, 3, "origin")


def _check_affine(matrix: object, name: str) -> np.ndarray:
    m = np.asarray(matrix, dtype=float)
    if m.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 homogeneous matrix, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name} must be finite")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"{name} must have last row [0, 0, 0, 1], got {m[3].tolist()}")
    if abs(np.linalg.det(m[:3, :3])) < 1e-9:
        raise ValueError(f"{name} must be invertible")
    return m


def _check_entropy(seed: object) -> int | tuple[int, ...]:
    if isinstance(seed, (Sequence, np.ndarray)) and not isinstance(seed, (str, bytes)):
        return tuple(_check_seed(s, "noise_seed") for s in seed)
    return _check_seed(seed, "noise_seed")


def _check_z_range(z_range: object, nz: int) -> tuple[int, int]:
    if z_range is None:
        return 0, nz
    try:
        z0, z1 = (int(v) for v in z_range)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError(
            f"z_range must be a (start, stop) pair of integers, got {z_range!r}"
        ) from None
    if not 0 <= z0 < z1 <= nz:
        raise ValueError(f"z_range must satisfy 0 <= start < stop <= {nz}, got {(z0, z1)}")
    return z0, z1

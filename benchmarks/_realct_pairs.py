"""Seeded rigid test pairs cut from a real chest CT (shared by the real-CT registration
benchmark and the slow real-CT registration test).

How a pair is made (no fastct code is involved, so fastct's own resampler cannot make the
problem trivially consistent):

* The scan ``V`` (int16 HU, e.g. LIDC-IDRI-0001, 0.70 x 0.70 x 2.5 mm) is put in a
  "world" frame ``x = index * spacing`` (z, y, x; its origin and direction are not needed
  for a synthetic motion) and prefiltered once for cubic B-spline interpolation
  (``scipy.ndimage.spline_filter``, order 3).
* The fixed image is the scan resampled with cubic B-splines onto an isotropic ``voxel``
  mm grid of ``shape`` voxels centred in the scan: ``fixed[i] = V(o + i * voxel)``.
* A seeded rigid motion ``M`` (fixed physical -> moving physical; rotation up to
  ``max_rotation`` degrees about a random axis through the grid centre, translation up to
  ``max_translation`` mm, :func:`fastct.datasets.random_transform`) gives the moving image
  on the same grid: ``moving[j] = V(M^-1 (o + j * voxel))``, again cubic B-splines from
  the original scan. The grid is a crop of a much larger field (at least 60 mm of real
  anatomy beyond every face for the default sizes), so the moving image has real anatomy
  where the fixed image's field of view ends: no fill value or border artefact reveals the
  motion.
* Independent Gaussian noise (``noise`` HU, default 15: the order of a clinical scan's
  noise at 1 mm) is added to each image, so the two are never interpolation-consistent.

Both images carry the geometry ``spacing = (voxel,) * 3``, ``origin = o`` (mm, world).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

DEFAULT_SCAN = "LIDC-IDRI-0001_ct.nii.gz"


def realct_folder() -> Path:
    """``$FASTCT_REALCT`` or ``<repo>/../shared/realct``."""
    env = os.environ.get("FASTCT_REALCT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "realct"


@dataclass
class Pair:
    fixed: np.ndarray  # float32 (z, y, x)
    moving: np.ndarray
    spacing: tuple  # mm, same for both
    origin: tuple  # mm, same for both (world frame of the scan)
    truth: np.ndarray  # (4, 4) fixed physical -> moving physical
    seed: int


@cache
def _scan(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(B-spline coefficients of the scan as float64, its spacing)."""
    from scipy import ndimage

    from fastct.io import read_nifti

    v = read_nifti(path)
    arr = np.asarray(v.array, dtype=np.float64)
    return ndimage.spline_filter(arr, order=3, mode="nearest"), np.asarray(v.spacing, float)


def _sample(coef: np.ndarray, sp: np.ndarray, world: np.ndarray) -> np.ndarray:
    """Cubic B-spline values of the scan at world points ``(..., 3)``."""
    from scipy import ndimage

    idx = (world / sp).reshape(-1, 3).T
    out = ndimage.map_coordinates(coef, idx, order=3, mode="nearest", prefilter=False)
    return out.reshape(world.shape[:-1])


def make_pair(seed: int, *, scan: str | Path | None = None, shape=(96, 128, 128),
              voxel: float = 1.0, max_rotation: float = 10.0, max_translation: float = 10.0,
              noise: float = 15.0, fill: float | None = None) -> Pair:  # fmt: skip
    """One seeded pair (see the module notes); raises FileNotFoundError without the scan.

    ``fill`` (HU) makes the *dishonest* template-like variant used to investigate issue 19:
    the moving image is the (noise-free) fixed crop itself warped by cubic B-splines,
    with ``fill`` wherever the warp leaves the crop, so its field of view ends in a fill
    border that biases every metric (docs/benchmarks/registration.md).
    """
    from fastct.datasets import random_transform

    path = Path(scan) if scan is not None else realct_folder() / DEFAULT_SCAN
    if not path.exists():
        raise FileNotFoundError(f"real CT scan not found: {path}")
    coef, sp = _scan(str(path))
    extent = (np.asarray(coef.shape) - 1) * sp
    shape = tuple(int(n) for n in shape)
    size = (np.asarray(shape) - 1) * voxel
    origin = np.round((extent - size) / 2, 3)
    if (origin < 0).any():
        raise ValueError(f"grid {shape} x {voxel} mm does not fit in the scan ({extent} mm)")
    grid = np.stack(np.meshgrid(*[np.arange(n) * voxel for n in shape], indexing="ij"), -1)
    grid = grid + origin
    center = origin + size / 2
    rng = np.random.default_rng([seed, 19])
    m = random_transform(rng, center, max_rotation_deg=max_rotation,
                         max_translation_mm=max_translation)  # fmt: skip
    inv = np.linalg.inv(m)
    fixed = _sample(coef, sp, grid)
    src = grid @ inv[:3, :3].T + inv[:3, 3]
    if fill is None:
        moving = _sample(coef, sp, src)
    else:
        from scipy import ndimage

        idx = (src - origin) / voxel
        moving = ndimage.map_coordinates(fixed, idx.reshape(-1, 3).T, order=3,
                                         mode="nearest").reshape(shape)  # fmt: skip
        outside = ((idx < -0.5) | (idx > np.asarray(shape) - 0.5)).any(axis=-1)
        moving[outside] = fill
    fixed += rng.normal(0.0, noise, size=fixed.shape)
    moving += rng.normal(0.0, noise, size=moving.shape)
    return Pair(fixed.astype(np.float32), moving.astype(np.float32), (voxel,) * 3,
                tuple(float(v) for v in origin), m, seed)  # fmt: skip


def corner_error_mm(apply, pair: Pair) -> float:
    """Largest distance (mm) over the fixed image's 8 corners between ``apply`` (fixed
    physical points (8, 3) -> moving physical points) and the true transform."""
    idx = np.array(np.meshgrid(*[[0, n - 1] for n in pair.fixed.shape], indexing="ij"))
    pts = np.asarray(pair.origin) + idx.reshape(3, -1).T * np.asarray(pair.spacing)
    true = pts @ pair.truth[:3, :3].T + pair.truth[:3, 3]
    return float(np.linalg.norm(np.asarray(apply(pts)) - true, axis=1).max())

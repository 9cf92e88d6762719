"""Image geometry in ITK's convention, in one place.

A voxel at (continuous) index ``i`` of an image with ``spacing`` ``s``, ``origin`` ``o``
and ``direction`` ``D`` lies at the physical point (mm, LPS frame, components in fastct's
``(z, y, x)`` order)::

    p = o + D @ (i * s)

``D`` has one orthonormal column per array axis: column ``a`` is the physical direction
in which index ``a`` increases. ``None`` means the identity. Every operation that works
in millimetres (registration, resampling, detection centres, centroids, ITK ``.tfm``
files, the report) goes through these helpers so that flips, permutations and oblique
scans give the same physical answer as SimpleITK.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validate import check_direction, check_origin, check_spacing

__all__ = [
    "Geometry",
    "index_to_physical",
    "orientation_code",
    "physical_to_index",
]

#: Largest deviation of a direction column from a signed unit axis for which the image
#: still counts as axis-aligned (flips and permutations only).
AXIS_ALIGNED_TOL = 1e-6

# Letter for each (physical component, sign) in LPS, components in (z, y, x) order:
# component 0 is z (+ superior), 1 is y (+ posterior), 2 is x (+ left).
_LETTERS = {(0, 1): "S", (0, -1): "I", (1, 1): "P", (1, -1): "A", (2, 1): "L", (2, -1): "R"}


@dataclass(frozen=True)
class Geometry:
    """Validated grid of one image: ``spacing``, ``origin`` (tuples) and ``direction``
    (``ndim x ndim`` float64 array, identity when none was given)."""

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray

    @classmethod
    def of(
        cls,
        ndim: int,
        spacing: Any = None,
        origin: Any = None,
        direction: Any = None,
        *,
        name: str = "",
    ) -> Geometry:
        """Check and normalise one image's grid; ``name`` prefixes the parameter names
        in error messages (``"fixed"`` gives ``fixed_spacing`` ...)."""
        prefix = f"{name}_" if name else ""
        sp = check_spacing(spacing, ndim, f"{prefix}spacing")
        org = check_origin(origin, ndim, f"{prefix}origin")
        d = check_direction(direction, ndim, f"{prefix}direction")
        d = np.eye(ndim) if d is None else _orthonormalised(d)
        return cls(sp, org, d)

    @property
    def ndim(self) -> int:
        return len(self.spacing)

    @property
    def is_identity(self) -> bool:
        return bool(np.array_equal(self.direction, np.eye(self.ndim)))

    @property
    def is_axis_aligned(self) -> bool:
        """True when the direction is a signed permutation (flips, axis swaps)."""
        return _signed_permutation(self.direction) is not None

    def index_to_physical(self, index: Any) -> np.ndarray:
        return index_to_physical(index, self.spacing, self.origin, self.direction)

    def physical_to_index(self, points: Any) -> np.ndarray:
        return physical_to_index(points, self.spacing, self.origin, self.direction)

    def index_affine(self) -> np.ndarray:
        """``(ndim + 1)^2`` homogeneous matrix mapping a voxel index to its physical point."""
        n = self.ndim
        m = np.eye(n + 1)
        m[:n, :n] = self.direction * np.asarray(self.spacing)[None, :]
        m[:n, n] = self.origin
        return m

    def orientation_code(self) -> str:
        return orientation_code(self.direction)


def _orthonormalised(d: np.ndarray) -> np.ndarray:
    """The nearest orthonormal matrix (polar decomposition), so that round-off in a file
    header never makes the inverse differ from the transpose."""
    u, _, vt = np.linalg.svd(d)
    return u @ vt


def _signed_permutation(d: np.ndarray) -> np.ndarray | None:
    """Integer matrix of ``d`` rounded to a signed permutation, or None when oblique."""
    r = np.round(d)
    if np.abs(d - r).max() > AXIS_ALIGNED_TOL:
        return None
    if not (np.abs(r).sum(axis=0) == 1).all() or not (np.abs(r).sum(axis=1) == 1).all():
        return None
    return r.astype(int)


def index_to_physical(index: Any, spacing: Any, origin: Any = None, direction: Any = None):
    """Physical points (mm) of ``(N, ndim)`` (or ``(ndim,)``) continuous indices."""
    idx = np.asarray(index, dtype=float)
    ndim = idx.shape[-1]
    s = np.asarray(spacing, dtype=float)
    o = np.zeros(ndim) if origin is None else np.asarray(origin, dtype=float)
    scaled = idx * s
    if direction is not None:
        scaled = scaled @ np.asarray(direction, dtype=float).T
    return o + scaled


def physical_to_index(points: Any, spacing: Any, origin: Any = None, direction: Any = None):
    """Continuous indices of ``(N, ndim)`` (or ``(ndim,)``) physical points (mm)."""
    p = np.asarray(points, dtype=float)
    ndim = p.shape[-1]
    o = np.zeros(ndim) if origin is None else np.asarray(origin, dtype=float)
    rel = p - o
    if direction is not None:
        rel = rel @ np.asarray(direction, dtype=float)  # D^T @ rel for orthonormal D
    return rel / np.asarray(spacing, dtype=float)


def orientation_code(direction: Any) -> str:
    """Orientation code of an image, e.g. ``'LPS'``, ``'RAS'``, ``'PIR'``.

    One letter per array axis in ``(x, y, z)`` order (the last array axis first, as
    ITK, nibabel and radiology viewers list them), naming the anatomical direction in
    which that axis's index increases: L/R, P/A, S/I. The identity direction is
    ``'LPS'``. An oblique direction gives ``'oblique (closest XYZ)'``; 2-D images give
    two letters from the in-plane components.

    Examples
    --------
    >>> orientation_code(None)
    'LPS'
    >>> import numpy as np
    >>> orientation_code(np.diag([1.0, -1.0, -1.0]))
    'RAS'
    """
    if direction is None:
        return "LPS"
    d = np.asarray(direction, dtype=float)
    ndim = d.shape[0]
    # In 2-D the components are (y, x): physical component c is LPS component c + 1.
    shift = 3 - ndim
    letters = []
    used: set[int] = set()
    for axis in reversed(range(ndim)):
        col = d[:, axis]
        order = np.argsort(-np.abs(col), kind="stable")
        comp = next(int(c) for c in order if int(c) not in used)
        used.add(comp)
        letters.append(_LETTERS[(comp + shift, 1 if col[comp] >= 0 else -1)])
    code = "".join(letters)
    if _signed_permutation(d) is None:
        return f"oblique (closest {code})"
    return code

"""Exact reorientation of axis-aligned images to and from the LPS index order.

An image whose direction is a signed permutation (flips and axis swaps, e.g. RAS, LAS,
PIR) holds the same voxels as an image with the identity direction (LPS: array axis 0
runs inferior -> superior, 1 anterior -> posterior, 2 right -> left); the two differ
only by ``np.transpose`` and ``np.flip`` of the array and by the origin. Code that
relies on anatomy (lung masks: axial slices are planes of axis 0) or that must give
the same answer for every storage order (the nodule detector) runs on the LPS view and
maps its voxel results back with :func:`from_lps`. Physical positions are untouched:
every voxel keeps its physical point (see :mod:`fastct._geometry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import _signed_permutation

__all__ = [
    "LpsView",
    "closest_signed_permutation",
    "direction_from_code",
    "from_lps_geometry",
    "lps_view",
]


def closest_signed_permutation(direction: Any) -> np.ndarray:
    """The signed permutation matrix nearest ``direction`` (greedy on the largest
    components, as :func:`fastct._geometry.orientation_code` picks its letters)."""
    d = np.asarray(direction, dtype=float)
    exact = _signed_permutation(d)
    if exact is not None:
        return exact
    n = d.shape[0]
    out = np.zeros((n, n), dtype=int)
    used: set[int] = set()
    for axis in reversed(range(n)):
        col = d[:, axis]
        comp = next(int(c) for c in np.argsort(-np.abs(col), kind="stable") if int(c) not in used)
        used.add(comp)
        out[comp, axis] = 1 if col[comp] >= 0 else -1
    return out


@dataclass(frozen=True)
class LpsView:
    """How an axis-aligned image maps onto its LPS-ordered twin.

    ``perm[c]`` is the array axis that becomes LPS axis ``c``; ``flip[c]`` says whether
    that axis runs backwards (its index decreases along +LPS). ``spacing`` and
    ``origin`` are the LPS twin's (its direction is the identity).
    """

    perm: tuple[int, ...]
    flip: tuple[bool, ...]
    shape: tuple[int, ...]  # of the original array
    spacing: tuple[float, ...]
    origin: tuple[float, ...]

    @property
    def is_identity(self) -> bool:
        return self.perm == tuple(range(len(self.perm))) and not any(self.flip)

    @property
    def is_permuted(self) -> bool:
        return self.perm != tuple(range(len(self.perm)))

    def to_lps(self, array: np.ndarray) -> np.ndarray:
        """The LPS-ordered view of ``array`` (no copy; may be non-contiguous)."""
        out = np.transpose(array, self.perm)
        flips = tuple(c for c, f in enumerate(self.flip) if f)
        return np.flip(out, flips) if flips else out

    def from_lps(self, array: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_lps`: an LPS-ordered array back in the original order."""
        flips = tuple(c for c, f in enumerate(self.flip) if f)
        out = np.flip(array, flips) if flips else array
        return np.transpose(out, np.argsort(self.perm))


def lps_view(
    shape: Any, spacing: Any, origin: Any = None, direction: Any = None, *, exact: bool = True
) -> LpsView | None:
    """The LPS view of an image of ``shape``, or None when ``direction`` is oblique
    (with ``exact=False``, an oblique direction uses its closest signed permutation
    and the returned ``origin``/``spacing`` are only approximately the twin's).

    Examples
    --------
    >>> import numpy as np
    >>> v = lps_view((2, 3, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.diag([1.0, -1.0, -1.0]))
    >>> v.perm, v.flip, v.origin
    ((0, 1, 2), (False, True, True), (0.0, -2.0, -3.0))
    """
    shape = tuple(int(n) for n in shape)
    ndim = len(shape)
    sp = np.asarray(spacing, dtype=float)
    org = np.zeros(ndim) if origin is None else np.asarray(origin, dtype=float)
    if direction is None:
        d = np.eye(ndim, dtype=int)
    else:
        found = _signed_permutation(np.asarray(direction, dtype=float))
        if found is None and exact:
            return None
        d = closest_signed_permutation(direction) if found is None else found
    perm = [0] * ndim
    flip = [False] * ndim
    for a in range(ndim):
        c = int(np.flatnonzero(d[:, a])[0])
        perm[c] = a
        flip[c] = bool(d[c, a] < 0)
    new_sp = tuple(float(sp[perm[c]]) for c in range(ndim))
    # LPS index 0 on axis c is the original index 0 (or n - 1 when flipped) of axis perm[c];
    # its physical point is the twin's origin.
    corner = np.array([shape[a] - 1 if flip[c] else 0 for c, a in enumerate(perm)], dtype=float)
    idx = np.zeros(ndim)
    for c, a in enumerate(perm):
        idx[a] = corner[c]
    real_d = np.eye(ndim) if direction is None else np.asarray(direction, dtype=float)
    new_org = tuple(float(v) for v in org + real_d @ (idx * sp))
    return LpsView(tuple(perm), tuple(flip), shape, new_sp, new_org)


def from_lps_geometry(
    lps_shape: Any, lps_spacing: Any, lps_origin: Any, direction: Any
) -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...], LpsView]:
    """Store an LPS image with the signed-permutation ``direction`` instead.

    Returns the new ``shape``, ``spacing``, ``origin`` and the :class:`LpsView` whose
    :meth:`~LpsView.from_lps` turns the LPS array into the new array (every voxel keeps
    its physical point). Used by tests and the phantom tooling to make RAS/LAS/PIR
    copies of a scan.
    """
    d = _signed_permutation(np.asarray(direction, dtype=float))
    if d is None:
        raise ValueError("direction must be a signed permutation (flips and axis swaps)")
    ndim = d.shape[0]
    lps_shape = tuple(int(n) for n in lps_shape)
    lsp = np.asarray(lps_spacing, dtype=float)
    lorg = np.zeros(ndim) if lps_origin is None else np.asarray(lps_origin, dtype=float)
    comp = [int(np.flatnonzero(d[:, a])[0]) for a in range(ndim)]  # array axis a -> LPS comp
    shape = tuple(lps_shape[comp[a]] for a in range(ndim))
    spacing = tuple(float(lsp[comp[a]]) for a in range(ndim))
    # the new index 0 is, on LPS axis comp[a], index 0 (or n - 1 when axis a runs backwards)
    lidx = np.zeros(ndim)
    for a in range(ndim):
        if d[comp[a], a] < 0:
            lidx[comp[a]] = lps_shape[comp[a]] - 1
    origin = tuple(float(v) for v in lorg + lidx * lsp)
    view = lps_view(shape, spacing, origin, d.astype(float))
    assert view is not None
    return shape, spacing, origin, view


_CODE_AXES = {"S": (0, 1), "I": (0, -1), "P": (1, 1), "A": (1, -1), "L": (2, 1), "R": (2, -1)}


def direction_from_code(code: str) -> np.ndarray:
    """The 3 x 3 direction of an orientation code such as ``'RAS'`` or ``'PIR'`` (the
    inverse of :func:`fastct._geometry.orientation_code` for axis-aligned images).

    Examples
    --------
    >>> direction_from_code("LPS").tolist() == np.eye(3).tolist()
    True
    """
    if not isinstance(code, str) or len(code) != 3:
        raise ValueError(f"code must be three letters such as 'RAS', got {code!r}")
    d = np.zeros((3, 3))
    for k, letter in enumerate(code.upper()):
        if letter not in _CODE_AXES:
            raise ValueError(f"code letters must be among L, R, P, A, S, I, got {code!r}")
        comp, sign = _CODE_AXES[letter]
        d[comp, 2 - k] = sign  # the code lists the array axes x, y, z
    if not (np.abs(d).sum(axis=1) == 1).all():
        raise ValueError(f"code must name each of the three anatomical axes once, got {code!r}")
    return d

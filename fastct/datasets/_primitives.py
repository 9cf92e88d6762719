"""Analytic primitives of a scene (ellipsoid, tapered tube, capped elliptic cylinder), the
small geometry helpers that place them, and their packing into the flat arrays the kernels take."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ._constants import _CONE, _CYLINDER, _ELLIPSOID, _KIND_CONST, _NPARAM


class _Prim(NamedTuple):
    type: int
    params: np.ndarray  # (_NPARAM,)
    aabb: np.ndarray  # (6,) zmin, zmax, ymin, ymax, xmin, xmax (no edge padding)
    lip: float  # Lipschitz bound of the distance (used for tubes)


class _Obj(NamedTuple):
    name: str
    prims: tuple
    value: float
    kind: int = _KIND_CONST
    lung: int = 0  # +1 sets the lung mask, -1 clears it, 0 leaves it
    label: int = 0  # nodule label painted where inside
    edge: float = 1.0  # edge width in mm, about a CT point-spread (never below one voxel)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _ellipsoid(center, semi, rot=None) -> _Prim:
    c = np.asarray(center, dtype=float)
    s = np.asarray(semi, dtype=float)
    rmat = np.eye(3) if rot is None else np.asarray(rot, dtype=float)
    q = np.zeros(_NPARAM)
    q[0:3] = c
    q[3:12] = rmat.ravel()
    q[12:15] = s
    ext = np.sqrt(((rmat * s[:, None]) ** 2).sum(axis=0))
    aabb = np.column_stack([c - ext, c + ext]).ravel()
    return _Prim(_ELLIPSOID, q, aabb, 1.0)


def _cone(a, b, r0: float, r1: float | None = None) -> _Prim:
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    r1 = r0 if r1 is None else r1
    ba = b - a
    length2 = float(ba @ ba)
    q = np.zeros(_NPARAM)
    q[0:3] = a
    q[3:6] = b
    q[6] = r0
    q[7] = r1
    q[8:11] = ba
    q[11] = 1.0 / length2
    lo = np.minimum(a - r0, b - r1)
    hi = np.maximum(a + r0, b + r1)
    lip = 1.0 + abs(r1 - r0) / math.sqrt(length2)
    return _Prim(_CONE, q, np.column_stack([lo, hi]).ravel(), lip)


def _cylinder(center, axis, ref, semi_ref: float, semi_other: float, half_height: float) -> _Prim:
    """Capped elliptic cylinder; ``semi_ref`` lies along ``ref`` projected off the axis."""
    c = np.asarray(center, dtype=float)
    ax = _unit(axis)
    ref = np.asarray(ref, dtype=float)
    u = _unit(ref - (ref @ ax) * ax)
    v = np.cross(ax, u)
    rmat = np.stack([ax, u, v])
    q = np.zeros(_NPARAM)
    q[0:3] = c
    q[3:12] = rmat.ravel()
    q[12] = semi_ref
    q[13] = semi_other
    q[14] = half_height
    ext = np.abs(ax) * half_height + np.sqrt((u * semi_ref) ** 2 + (v * semi_other) ** 2)
    return _Prim(_CYLINDER, q, np.column_stack([c - ext, c + ext]).ravel(), 1.0)


def _rotation(axis, angle: float) -> np.ndarray:
    """Rodrigues rotation matrix acting on (z, y, x) vectors."""
    k = _unit(axis)
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * kx + (1.0 - math.cos(angle)) * (kx @ kx)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    w, a, b, c = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (b * b + c * c), 2 * (a * b - c * w), 2 * (a * c + b * w)],
            [2 * (a * b + c * w), 1 - 2 * (a * a + c * c), 2 * (b * c - a * w)],
            [2 * (a * c - b * w), 2 * (b * c + a * w), 1 - 2 * (a * a + b * b)],
        ]
    )


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    zc = 1.0 - 2.0 * i / n
    r = np.sqrt(1.0 - zc * zc)
    phi = math.pi * (3.0 - math.sqrt(5.0)) * i
    return np.column_stack([zc, r * np.cos(phi), r * np.sin(phi)])


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from point ``p`` (3,) to segments ``a``-``b`` (N, 3)."""
    ba = b - a
    t = np.clip(((p - a) * ba).sum(axis=1) / (ba * ba).sum(axis=1), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ba), axis=1)


class _Packed(NamedTuple):
    ptype: np.ndarray
    pparam: np.ndarray
    paabb: np.ndarray
    plip: np.ndarray
    pobj: np.ndarray
    ovalue: np.ndarray
    okind: np.ndarray
    olung: np.ndarray
    olabel: np.ndarray
    oedge: np.ndarray


def _pack(objects: Sequence[_Obj]) -> _Packed:
    prims = [(k, p) for k, o in enumerate(objects) for p in o.prims]
    return _Packed(
        ptype=np.array([p.type for _, p in prims], dtype=np.int64),
        pparam=np.array([p.params for _, p in prims], dtype=np.float64).reshape(-1, _NPARAM),
        paabb=np.array([p.aabb for _, p in prims], dtype=np.float64).reshape(-1, 6),
        plip=np.array([p.lip for _, p in prims], dtype=np.float64),
        pobj=np.array([k for k, _ in prims], dtype=np.int64),
        ovalue=np.array([o.value for o in objects], dtype=np.float64),
        okind=np.array([o.kind for o in objects], dtype=np.int64),
        olung=np.array([o.lung for o in objects], dtype=np.int64),
        olabel=np.array([o.label for o in objects], dtype=np.int64),
        oedge=np.array([o.edge for o in objects], dtype=np.float64),
    )

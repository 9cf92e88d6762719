"""Synthetic chest CT phantoms with exact ground truth.

A phantom is an analytic *scene* in physical millimetres (ellipsoids, tapered tubes and
elliptic cylinders, painted in order) that is *rendered* onto a voxel grid in Hounsfield
units. Because the scene is analytic:

- every size preset shows the same anatomy (same seed, same nodules in mm), only the
  sampling changes;
- any z-slab can be rendered on its own, so a clinical 400 x 512 x 512 volume streams
  into an archive with memory bounded by the slab, and the slabs concatenate to exactly
  the bits of a whole-volume render;
- a follow-up scan under a known rigid or similarity transform is rendered by evaluating
  the scene at the transformed grid points (no resampling blur), which gives the
  registration module an exact ground truth.

Coordinates follow the library convention: arrays are ``(z, y, x)``, physical position of
voxel index ``i`` is ``origin + i * spacing`` (mm). In scene coordinates the patient's
feet are towards ``z = 0``, anterior towards ``y = 0`` and the patient's right towards
``x = 0``; the standard field of view is :data:`FOV_MM` = 300 x 360 x 360 mm with the
chest centred at :data:`SCENE_CENTER_MM`.

Ground-truth transform contract (shared with :func:`fastct.register`): ``M`` is the
4 x 4 homogeneous matrix mapping baseline (FIXED) physical points ``p`` (z, y, x mm) to
follow-up (MOVING) physical points ``q = M @ [p, 1]``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

from fastct._config import kernel_threads
from fastct._kernels.phantom import _lung_at_points, _render_grid
from fastct._validate import check_origin, check_positive_int, check_shape, check_spacing

__all__ = [
    "FOV_MM",
    "HU",
    "PRESETS",
    "SCENE_CENTER_MM",
    "ChestScene",
    "Nodule",
    "NoduleSpec",
    "Phantom",
    "PhantomPair",
    "chest_phantom",
    "iter_phantom_slabs",
    "phantom_pair",
    "random_transform",
]

# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------

#: Standard field of view (z, y, x) in mm that every preset covers.
FOV_MM: tuple[float, float, float] = (300.0, 360.0, 360.0)
#: Centre of the chest in scene (= baseline physical) coordinates, mm.
SCENE_CENTER_MM: tuple[float, float, float] = (150.0, 180.0, 180.0)

#: Size presets (read-only): all cover :data:`FOV_MM`; spacings are exact binary fractions.
PRESETS: Mapping[str, Mapping[str, tuple]] = {
    "tiny": {"shape": (32, 48, 48), "spacing": (9.375, 7.5, 7.5)},
    "small": {"shape": (64, 128, 128), "spacing": (4.6875, 2.8125, 2.8125)},
    "medium": {"shape": (128, 256, 256), "spacing": (2.34375, 1.40625, 1.40625)},
    "large": {"shape": (256, 384, 384), "spacing": (1.171875, 0.9375, 0.9375)},
    "clinical": {"shape": (400, 512, 512), "spacing": (0.75, 0.703125, 0.703125)},
}
# Read-only: scenes are cached and shared, so their inputs must not change under them.
PRESETS = types.MappingProxyType({k: types.MappingProxyType(v) for k, v in PRESETS.items()})

#: Nominal tissue values in Hounsfield units (read-only).
HU: Mapping[str, float] = {
    "air": -1000.0,
    "fat": -100.0,
    "soft_tissue": 40.0,
    "lung": -850.0,
    "liver": 55.0,
    "spleen": 45.0,
    "disc": 80.0,
    "spinal_cord": 30.0,
    "vertebra": 400.0,
    "vertebra_cortex": 800.0,
    "rib": 700.0,
    "sternum": 450.0,
    "solid_nodule": 30.0,
    "ground_glass": -500.0,
}
HU = types.MappingProxyType(HU)

_HU_MIN, _HU_MAX = -1024.0, 3071.0
_BLOCK_SLICES = 16  # slices rendered per kernel call (bounds the float32 scratch)
_DEFAULT_N_NODULES = 6
_DIAMETER_LIMITS = (3.0, 30.0)
_MAX_GROWTH_DIAMETER = 2.5 ** (1.0 / 3.0)  # placement leaves room for a 2.5x volume growth
_CLEARANCE_MARGIN_MM = 1.5
_BIG_VESSEL_MM = 1.5  # nodules never overlap vessel segments at least this thick

# Primitive and object kinds shared by the Python scene builder and the kernels.
_ELLIPSOID, _CONE, _CYLINDER = 0, 1, 2
_NPARAM = 16
_KIND_CONST, _KIND_LUNG = 0, 1

# Independent random streams derived from one seed (SeedSequence spawn keys).
_STREAM_ANATOMY, _STREAM_VESSELS, _STREAM_NODULES, _STREAM_TEXTURE = 0, 1, 2, 3
_STREAM_PAIR, _STREAM_NOISE = 4, 5

# In-plane noise correlation: Gaussian of this many voxels, taps normalised to sum 1.
_NOISE_SIGMA_VOX = 0.8
_NOISE_TAPS = np.exp(-0.5 * (np.arange(-3, 4) / _NOISE_SIGMA_VOX) ** 2)
_NOISE_TAPS /= _NOISE_TAPS.sum()
# Smoothing white noise by k (x) k scales its std by sum(k^2); undo that exactly.
_NOISE_GAIN = 1.0 / float(np.sum(_NOISE_TAPS**2))
_NOISE_TAPS = _NOISE_TAPS.astype(np.float32)

# --------------------------------------------------------------------------------------
# Scene primitives (Python side)
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Public records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoduleSpec:
    """An analytic nodule of a :class:`ChestScene` (scene millimetres).

    The nodule is an ellipsoid with semi-axes ``semi_axes_mm`` along the rows of
    ``rotation``. A part-solid nodule is a ground-glass ellipsoid with a solid core of
    the same shape scaled by ``core_fraction`` and shifted by ``core_offset_mm``.
    ``clearance_mm`` is the largest bounding radius the nodule may grow to while staying
    inside the lung and clear of big vessels, airways and the other nodules.
    """

    id: int
    center_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...]
    kind: str
    core_fraction: float = 1.0
    core_offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    clearance_mm: float = 0.0

    @property
    def diameter_mm(self) -> float:
        """Volume-equivalent sphere diameter, ``2 (a b c)^(1/3)``."""
        return 2.0 * float(np.prod(self.semi_axes_mm)) ** (1.0 / 3.0)

    @property
    def volume_mm3(self) -> float:
        """Analytic volume ``4/3 pi a b c``."""
        return 4.0 / 3.0 * math.pi * float(np.prod(self.semi_axes_mm))

    @property
    def bounding_radius_mm(self) -> float:
        return float(max(self.semi_axes_mm))

    def scaled(self, factor: float) -> NoduleSpec:
        """The same nodule with every length multiplied by ``factor`` (about its centre)."""
        return NoduleSpec(
            id=self.id,
            center_mm=self.center_mm,
            semi_axes_mm=tuple(float(s * factor) for s in self.semi_axes_mm),
            rotation=self.rotation,
            kind=self.kind,
            core_fraction=self.core_fraction,
            core_offset_mm=tuple(float(o * factor) for o in self.core_offset_mm),
            clearance_mm=self.clearance_mm,
        )

    def _objects(self) -> list[_Obj]:
        rot = np.asarray(self.rotation)
        halo = _ellipsoid(self.center_mm, self.semi_axes_mm, rot)
        if self.kind == "solid":
            return [_Obj(f"nodule{self.id}", (halo,), HU["solid_nodule"], label=self.id, edge=1.0)]
        core = _ellipsoid(
            np.add(self.center_mm, self.core_offset_mm),
            np.multiply(self.semi_axes_mm, self.core_fraction),
            rot,
        )
        return [
            _Obj(f"nodule{self.id}-ggo", (halo,), HU["ground_glass"], label=self.id, edge=2.0),
            _Obj(f"nodule{self.id}-core", (core,), HU["solid_nodule"], label=self.id, edge=1.0),
        ]


@dataclass(frozen=True)
class Nodule:
    """Ground-truth record of a nodule as it appears in one rendered scan.

    Attributes
    ----------
    id : int
        Label of the nodule in ``Phantom.nodule_labels`` (stable across follow-ups).
    center_mm : tuple of float
        Centre (z, y, x) in this scan's physical coordinates.
    diameter_mm : float
        Volume-equivalent sphere diameter of the analytic shape, in this scan's mm.
    kind : str
        ``'solid'`` or ``'part-solid'``.
    volume_mm3 : float
        Volume measured from the label mask: voxel count times voxel volume (over the
        whole grid, also for slabs). Zero when the nodule lies outside the grid.
    analytic_volume_mm3 : float
        ``pi / 6 * diameter_mm**3``.
    solid_diameter_mm : float
        Diameter of the solid component (equals ``diameter_mm`` for solid nodules).
    n_voxels : int
        Number of voxels labelled ``id``.
    """

    id: int
    center_mm: tuple[float, float, float]
    diameter_mm: float
    kind: str
    volume_mm3: float
    analytic_volume_mm3: float | None = None
    solid_diameter_mm: float | None = None
    n_voxels: int = 0


@dataclass(repr=False, eq=False)
class Phantom:
    """A rendered scan (or a z-slab of one) with its ground truth.

    Attributes
    ----------
    image : ndarray of int16, shape (z, y, x)
        CT values in HU, clipped to [-1024, 3071].
    spacing : tuple of float
        Voxel size (z, y, x) in mm.
    origin : tuple of float
        Physical position of ``image[0, 0, 0]``; for a slab, of its first slice.
    lung_mask : ndarray of bool
        Lung field (parenchyma with the vessels, bronchi and nodules inside it).
    nodule_labels : ndarray of int32
        0 for background, ``k`` inside nodule ``k``.
    nodules : list of Nodule
        One record per nodule of the scene, measured over the whole grid.
    z_range : tuple of int
        Global slice range ``[z0, z1)`` this phantom covers.
    scene_transform : ndarray, shape (4, 4)
        Affine map from this scan's physical points to scene points (identity for a
        baseline scan).
    """

    image: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    lung_mask: np.ndarray
    nodule_labels: np.ndarray
    nodules: list[Nodule]
    z_range: tuple[int, int] = (0, 0)
    scene_transform: np.ndarray = field(default_factory=lambda: np.eye(4))

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.image.shape

    def index_of(self, point_mm: Sequence[float]) -> tuple[int, int, int]:
        """Nearest voxel index of a physical point (z, y, x mm), not clipped to the grid."""
        idx = np.rint((np.asarray(point_mm, float) - self.origin) / self.spacing)
        return tuple(int(i) for i in idx)

    def __repr__(self) -> str:
        return (
            f"Phantom(shape={self.image.shape}, spacing={self.spacing}, origin={self.origin}, "
            f"z_range={self.z_range}, nodules={len(self.nodules)})"
        )


@dataclass(repr=False, eq=False)
class PhantomPair:
    """A baseline scan, its follow-up and the ground truth that relates them.

    Attributes
    ----------
    baseline, followup : Phantom
        The two scans, on the same grid.
    transform : ndarray, shape (4, 4)
        ``M`` mapping baseline (FIXED) physical points ``p`` to follow-up (MOVING)
        physical points ``q = M @ [p, 1]``.
    scale : float
        Isotropic scale of ``M`` (1 for rigid).
    changes : list of dict
        One entry per nodule: ``id``, ``kind``, ``change`` ('grow' | 'shrink' | 'stable' |
        'new'), ``growth_ratio`` (intrinsic volume ratio follow-up / baseline, i.e. with
        the global scale of ``M`` taken out; None for new nodules),
        ``center_baseline_mm``, ``center_followup_mm`` (= M @ baseline centre, in
        follow-up physical mm), ``diameter_baseline_mm``, ``diameter_followup_mm``,
        ``volume_baseline_mm3``, ``volume_followup_mm3`` (measured from the label masks,
        each in its own scan's mm), ``analytic_volume_baseline_mm3``,
        ``analytic_volume_followup_mm3``. Baseline fields are None for new nodules.
    baseline_scene, followup_scene : ChestScene
        The analytic scenes (the follow-up one has the changed nodules); render the
        follow-up with ``transform=np.linalg.inv(M)``.
    """

    baseline: Phantom
    followup: Phantom
    transform: np.ndarray
    scale: float
    changes: list[dict[str, Any]]
    baseline_scene: ChestScene
    followup_scene: ChestScene

    def __repr__(self) -> str:
        return (
            f"PhantomPair(shape={self.baseline.image.shape}, scale={self.scale:.4f}, "
            f"nodules={len(self.changes)})"
        )


# --------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Scene construction
# --------------------------------------------------------------------------------------


def _norm_radius(p, center, semi, rot=None) -> float:
    d = np.asarray(p, float) - center
    if rot is not None:
        d = rot @ d
    return float(np.sqrt(np.sum((d / semi) ** 2)))


def _build_anatomy(rng: np.random.Generator) -> dict[str, Any]:
    """Body, lungs, mediastinum, airways and skeleton (everything but vessels and nodules)."""
    cz, cy, cx = SCENE_CENTER_MM[0], SCENE_CENTER_MM[1] + 5.0, SCENE_CENTER_MM[2]
    by = 125.0 * rng.uniform(0.95, 1.03)  # body semi-axis (antero-posterior)
    bx = 165.0 * rng.uniform(0.96, 1.03)  # body semi-axis (left-right); width <= 340 mm
    fat = rng.uniform(8.0, 16.0)  # subcutaneous fat thickness
    bz_c, bz = 120.0, 700.0  # long ellipsoid: the trunk narrows slightly towards the neck
    rib_y, rib_x = by - fat - 9.0, bx - fat - 9.0  # rib centre-line ellipse, inside the muscle
    lz = 120.0 * rng.uniform(0.96, 1.04)

    objs: list[_Obj] = []
    objs.append(_Obj("fat", (_ellipsoid((bz_c, cy, cx), (bz, by, bx)),), HU["fat"]))
    objs.append(
        _Obj(
            "soft_tissue",
            (_ellipsoid((bz_c, cy, cx), (bz - fat, by - fat, bx - fat)),),
            HU["soft_tissue"],
        )
    )

    lungs = {
        "right": (
            np.array([cz + 5.0, cy, cx - 0.545 * rib_x]),
            np.array([lz, 0.75 * rib_y, 0.375 * rib_x]),
        ),
        "left": (
            np.array([cz, cy, cx + 0.545 * rib_x]),
            np.array([0.97 * lz, 0.75 * rib_y, 0.36 * rib_x]),
        ),
    }
    for side, (c, s) in lungs.items():
        objs.append(_Obj(f"{side}_lung", (_ellipsoid(c, s),), HU["lung"], kind=_KIND_LUNG, lung=1))

    domes = [
        (np.array([25.0, cy + 5.0, cx - 0.5 * rib_x]), np.array([60.0, 0.95 * rib_y, 0.6 * rib_x])),
        (
            np.array([15.0, cy + 5.0, cx + 0.5 * rib_x]),
            np.array([58.0, 0.95 * rib_y, 0.58 * rib_x]),
        ),
    ]
    objs.append(_Obj("liver", (_ellipsoid(*domes[0]),), HU["liver"], lung=-1))
    objs.append(_Obj("spleen", (_ellipsoid(*domes[1]),), HU["spleen"], lung=-1))

    heart_c = np.array([100.0, cy - 35.0, cx + 16.0])
    heart_s = np.array([52.0, 58.0, 62.0])
    heart_r = _rotation((1.0, 0.0, 0.0), math.radians(25.0))
    objs.append(_Obj("heart", (_ellipsoid(heart_c, heart_s, heart_r),), HU["soft_tissue"], lung=-1))

    spine_y = cy + by - fat - 45.0
    aorta_pts = [
        (150.0, cy - 35.0, cx + 8.0),
        (195.0, cy - 25.0, cx + 20.0),
        (210.0, cy + 10.0, cx + 30.0),
        (200.0, spine_y - 15.0, cx + 32.0),
        (-60.0, spine_y - 13.0, cx + 32.0),
    ]
    objs.append(
        _Obj(
            "aorta",
            tuple(
                _cone(a, b, 13.0 if k < 2 else 12.0)
                for k, (a, b) in enumerate(zip(aorta_pts[:-1], aorta_pts[1:]))
            ),
            HU["soft_tissue"],
            lung=-1,
        )
    )

    # Airways: trachea, main and lobar bronchi as (start, end, lumen radius) tubes.
    carina = np.array([195.0, cy - 5.0, cx])
    rmain = np.array([178.0, cy + 1.0, cx - 0.36 * rib_x])
    lmain = np.array([172.0, cy + 3.0, cx + 0.38 * rib_x])
    rint = np.array([150.0, cy + 7.0, cx - 0.38 * rib_x])
    airways = [
        ((320.0, cy - 17.0, cx), carina, 8.0),
        (carina, rmain, 6.0),
        (carina, lmain, 5.5),
        (rmain, (210.0, cy - 5.0, cx - 0.49 * rib_x), 3.8),
        (rmain, rint, 4.5),
        (rint, (138.0, cy - 25.0, cx - 0.47 * rib_x), 3.0),
        (rint, (115.0, cy + 20.0, cx - 0.43 * rib_x), 3.8),
        (lmain, (205.0, cy - 7.0, cx + 0.49 * rib_x), 4.0),
        (lmain, (120.0, cy + 20.0, cx + 0.45 * rib_x), 3.8),
    ]
    walls = [max(1.2, 0.25 * r) for _, _, r in airways]
    objs.append(
        _Obj(
            "airway_wall",
            tuple(_cone(a, b, r + w) for (a, b, r), w in zip(airways, walls)),
            HU["soft_tissue"],
        )
    )
    objs.append(_Obj("airway_lumen", tuple(_cone(a, b, r) for a, b, r in airways), HU["air"]))
    airway_segs = np.array([[*a, *b, r + w] for (a, b, r), w in zip(airways, walls)], float)

    # Sternum: a flat bone tilted forwards at the bottom.
    st_y = cy - by + fat + 12.0
    objs.append(
        _Obj(
            "sternum",
            (_cylinder((180.0, st_y, cx), (1.0, 0.06, 0.0), (0.0, 1.0, 0.0), 6.0, 15.0, 70.0),),
            HU["sternum"],
            lung=-1,
        )
    )

    # Spine: disc column, vertebral bodies (cortex + cancellous), neural arches, canal.
    zs = [150.0 + 28.0 * m for m in range(-6, 7)]
    zaxis, yref = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    objs.append(
        _Obj(
            "discs",
            (_cylinder((150.0, spine_y, cx), zaxis, yref, 14.0, 18.0, 1000.0),),
            HU["disc"],
            lung=-1,
        )
    )
    objs.append(
        _Obj(
            "vertebral_cortex",
            tuple(_cylinder((z, spine_y, cx), zaxis, yref, 15.0, 19.0, 11.0) for z in zs),
            HU["vertebra_cortex"],
            lung=-1,
        )
    )
    objs.append(
        _Obj(
            "vertebral_body",
            tuple(_cylinder((z, spine_y, cx), zaxis, yref, 13.0, 17.0, 9.0) for z in zs),
            HU["vertebra"],
            lung=-1,
        )
    )
    canal_y = spine_y + 27.0
    arch = [_cylinder((z, canal_y, cx), zaxis, yref, 12.5, 12.5, 8.0) for z in zs]
    arch += [_cone((z - 4.0, canal_y + 8.0, cx), (z - 12.0, canal_y + 15.0, cx), 3.5) for z in zs]
    objs.append(_Obj("neural_arch", tuple(arch), HU["rib"], lung=-1))
    objs.append(
        _Obj(
            "spinal_canal",
            (_cylinder((150.0, canal_y, cx), zaxis, yref, 7.5, 7.5, 1000.0),),
            HU["spinal_cord"],
            lung=-1,
        )
    )

    # Ribs: 12 pairs of bony tubes following the rib-cage ellipse, sloping down anteriorly.
    ribs = []
    for i in range(12):
        z_head = 282.0 - 19.5 * i
        fx = min(1.0, 0.78 + 0.07 * i)
        fy = min(1.0, 0.8 + 0.06 * i)
        th0, th1 = 0.35, (2.55 if i < 7 else 2.55 - 0.22 * (i - 6))
        radius = 4.0 if i < 2 else 4.5
        thetas = np.linspace(th0, th1, 12)
        for sign in (-1.0, 1.0):
            pts = [np.array([z_head, spine_y + 4.0, cx + sign * 21.0])]
            for th in thetas:
                frac = (th - th0) / (th1 - th0)
                pts.append(
                    np.array(
                        [
                            z_head - 6.0 - 38.0 * frac**1.2,
                            cy + rib_y * fy * math.cos(th),
                            cx + sign * rib_x * fx * math.sin(th),
                        ]
                    )
                )
            ribs += [_cone(a, b, radius) for a, b in zip(pts[:-1], pts[1:])]
    objs.append(_Obj("ribs", tuple(ribs), HU["rib"], lung=-1))

    t_trachea = (320.0 - 250.0) / (320.0 - 195.0)
    landmarks = {
        "air": (150.0, 15.0, 15.0),
        "fat": (150.0, cy - by * math.sqrt(1 - ((150 - bz_c) / bz) ** 2) + fat / 2.0, cx),
        "heart": tuple(heart_c),
        "liver": (40.0, cy + 5.0, cx - 0.5 * rib_x),
        "trachea": (250.0, (cy - 17.0) + t_trachea * 12.0, cx),
        "aorta": (100.0, spine_y - 13.5, cx + 32.0),
        "vertebral_body": (150.0, spine_y, cx),
        "spinal_canal": (150.0, canal_y, cx),
    }
    return {
        "objects": objs,
        "landmarks": landmarks,
        "lungs": lungs,
        "domes": domes,
        "heart": (heart_c, heart_s, heart_r),
        "aorta": np.array([[*a, *b] for a, b in zip(aorta_pts[:-1], aorta_pts[1:])]),
        "airways": airway_segs,
        "hila": {
            "right": np.array([168.0, cy + 11.0, cx - 0.36 * rib_x]),
            "left": np.array([168.0, cy + 11.0, cx + 0.37 * rib_x]),
        },
    }


def _in_lung_field(p: np.ndarray, side: str, anat: dict, limit: float = 0.9) -> bool:
    """Analytic 'well inside this lung' test used to steer the vessel trees."""
    c, s = anat["lungs"][side]
    if _norm_radius(p, c, s) > limit:
        return False
    for dc, ds in anat["domes"]:
        if _norm_radius(p, dc, ds) < 1.08:
            return False
    hc, hs, hr = anat["heart"]
    if _norm_radius(p, hc, hs, hr) < 1.08:
        return False
    seg = anat["aorta"]
    return bool(np.all(_segment_distance(p, seg[:, :3], seg[:, 3:]) > 16.0))


def _build_vessels(rng: np.random.Generator, anat: dict) -> tuple[list[_Obj], np.ndarray]:
    """One pulmonary vessel tree per lung: tapering tubes with a Murray-like radius split.

    Branches grow breadth-first from the hilum into seven lobar directions; a branch
    whose end would leave the lung field is bent or shortened, else dropped.
    """
    objs, all_segs = [], []
    for side, sgn in (("right", -1.0), ("left", 1.0)):
        hilum = anat["hila"][side]
        lung_c = anat["lungs"][side][0]
        first = hilum + np.array([-3.0, 2.0, sgn * 14.0])
        segs = [(hilum, first, 5.0, 4.6)]
        lobar = [
            ((1.0, -0.1, 0.3 * sgn), 3.6),
            ((0.7, -0.8, 0.4 * sgn), 3.2),
            ((0.7, 0.8, 0.4 * sgn), 3.2),
            ((0.1, -0.5, sgn), 3.4),
            ((-0.6, -0.7, 0.5 * sgn), 3.4),
            ((-1.0, 0.2, 0.3 * sgn), 4.0),
            ((-0.6, 0.9, 0.4 * sgn), 3.8),
        ]
        queue = [(first, _unit(d), r) for d, r in lobar]
        head = 0
        while head < len(queue) and len(segs) < 900:
            start, direction, radius = queue[head]
            head += 1
            length = radius * rng.uniform(6.0, 9.0) + 4.0
            end = None
            for attempt in range(8):
                d = direction
                if attempt:
                    d = _unit(direction + rng.normal(scale=0.25 * attempt, size=3))
                cand = start + length * d
                if _in_lung_field(cand, side, anat, limit=0.94) and _in_lung_field(
                    0.5 * (start + cand), side, anat, limit=0.96
                ):
                    end, direction = cand, d
                    break
                length *= 0.8
            if end is None:
                continue
            r_end = max(0.7, 0.92 * radius)
            segs.append((start, end, radius, r_end))
            f1 = rng.uniform(0.75, 0.88)
            f2 = (1.0 - f1**3) ** (1.0 / 3.0)
            normal = _unit(np.cross(direction, rng.normal(size=3)))
            outward = _unit(end - lung_c + 0.3 * (end - hilum))
            for f, ang, n in (
                (f1, rng.uniform(10, 25), normal),
                (f2, rng.uniform(35, 60), -normal),
            ):
                r_child = r_end * f
                if r_child < 0.7:
                    continue
                d_child = _unit(_rotation(n, math.radians(ang)) @ direction + 0.2 * outward)
                queue.append((end, d_child, r_child))
        prims = tuple(_cone(a, b, r0, r1) for a, b, r0, r1 in segs)
        objs.append(_Obj(f"{side}_vessels", prims, HU["soft_tissue"]))
        all_segs += [[*a, *b, r0, r1] for a, b, r0, r1 in segs]
    return objs, np.array(all_segs, dtype=float)


def _build_texture(rng: np.random.Generator) -> tuple:
    n = 8
    wavelength = rng.uniform(6.0, 24.0, n)
    directions = np.array([_unit(v) for v in rng.normal(size=(n, 3))])
    k = directions * (2.0 * math.pi / wavelength)[:, None]
    phase = rng.uniform(0.0, 2.0 * math.pi, n)
    amp = np.full(n, 12.0 / math.sqrt(n / 2.0))  # ~12 HU std in total
    return (np.ascontiguousarray(k), phase, amp, 0.25, SCENE_CENTER_MM[1] + 5.0)


@dataclass(frozen=True, eq=False)
class ChestScene:
    """An analytic chest in scene millimetres, rendered onto grids by :meth:`render`.

    Build one with :meth:`generate`; the same seed always gives the same scene. The
    scene is independent of any grid, so every size preset samples the same anatomy.

    Attributes
    ----------
    seed : int
        Seed the scene was generated from.
    nodules : tuple of NoduleSpec
        The nodules, in label order.
    landmarks : dict
        Named scene points (z, y, x mm) with a known tissue: ``air``, ``fat``, ``heart``,
        ``liver``, ``trachea`` (lumen), ``aorta``, ``vertebral_body``, ``spinal_canal``,
        ``right_lung``, ``left_lung`` (parenchyma away from vessels and nodules).

    Examples
    --------
    >>> from fastct.datasets import ChestScene, PRESETS
    >>> scene = ChestScene.generate(seed=1, n_nodules=2)
    >>> ph = scene.render(**PRESETS["tiny"])
    >>> ph.image.shape, ph.image.dtype.name
    ((32, 48, 48), 'int16')
    """

    seed: int
    anatomy: tuple
    nodules: tuple
    landmarks: Mapping[str, tuple[float, float, float]]
    texture: tuple
    vessel_segments: np.ndarray
    airway_segments: np.ndarray
    lung_boxes: tuple

    # -- construction ------------------------------------------------------------------

    @classmethod
    def generate(
        cls,
        seed: int = 0,
        *,
        n_nodules: int | None = None,
        diameter_range: tuple[float, float] = _DIAMETER_LIMITS,
    ) -> ChestScene:
        """Generate the scene for ``seed``.

        Parameters
        ----------
        seed : int
            Non-negative seed; anatomy variations, vessel trees, lung texture and nodules
            are drawn from independent streams of it, so ``n_nodules`` does not change
            the vessels.
        n_nodules : int, optional
            Number of nodules (default 6).
        diameter_range : (float, float)
            Range of nodule diameters in mm, within [3, 30]; drawn log-uniformly.

        Returns
        -------
        ChestScene
        """
        seed = _check_seed(seed)
        n = (
            _DEFAULT_N_NODULES
            if n_nodules is None
            else check_positive_int(n_nodules, "n_nodules", minimum=0)
        )
        dr = _check_range(diameter_range, "diameter_range", *_DIAMETER_LIMITS)
        return _generate_scene(seed, n, dr)

    def with_nodules(self, nodules: Sequence[NoduleSpec]) -> ChestScene:
        """The same anatomy with a different set of nodules (ids must be unique, > 0)."""
        nodules = tuple(nodules)
        ids = [n.id for n in nodules]
        if len(set(ids)) != len(ids) or any(i < 1 for i in ids):
            raise ValueError(f"nodules must have unique positive ids, got {ids}")
        return dataclasses.replace(self, nodules=nodules)

    @functools.cached_property
    def _objects(self) -> list[_Obj]:
        objs = list(self.anatomy)
        for nod in self.nodules:
            objs += nod._objects()
        return objs

    @functools.cached_property
    def _packed(self) -> _Packed:
        return _pack(self._objects)

    @functools.cached_property
    def _lung_packed(self) -> _Packed:
        pk = _pack([o for o in self.anatomy if o.lung != 0])
        return pk._replace(okind=np.zeros_like(pk.okind), oedge=np.ones_like(pk.oedge))

    # -- rendering ---------------------------------------------------------------------

    def render(
        self,
        shape: Sequence[int],
        spacing: Sequence[float] | float,
        origin: Sequence[float] | str | None = None,
        *,
        z_range: tuple[int, int] | None = None,
        transform: np.ndarray | None = None,
        noise_hu: float = 20.0,
        noise_seed: int | Sequence[int] | None = None,
    ) -> Phantom:
        """Render the scene (or a z-slab of it) onto a grid.

        Parameters
        ----------
        shape : sequence of 3 int
            Full grid shape (z, y, x).
        spacing : float or sequence of 3 float
            Voxel size in mm.
        origin : sequence of 3 float or 'center', optional
            Physical position of voxel (0, 0, 0); default 0. ``'center'`` centres the
            grid on the chest.
        z_range : (int, int), optional
            Render only slices ``z0 <= k < z1`` of the grid; the result is bit-identical
            to the same slices of a whole render.
        transform : ndarray (4, 4), optional
            Affine map from the grid's physical points to scene points (default identity).
            A follow-up scan under ``q = M p`` is rendered with ``inv(M)``.
        noise_hu : float
            Standard deviation of the CT noise (in-plane correlated Gaussian), 0 for none.
        noise_seed : int or sequence of int, optional
            Seed of the noise (default: the scene seed). Noise is generated per slice
            from ``(noise_seed, slice index)``, so it does not depend on ``z_range``.

        Returns
        -------
        Phantom
            ``nodules`` are measured over the whole grid even for a slab.
        """
        shape = _check_3d_shape(shape)
        spacing = check_spacing(spacing, 3, "spacing")
        origin = _resolve_origin(origin, shape, spacing)
        aff = np.eye(4) if transform is None else _check_affine(transform, "transform")
        noise_hu = _check_real(noise_hu, "noise_hu", minimum=0.0)
        entropy = self.seed if noise_seed is None else _check_entropy(noise_seed)
        z0, z1 = _check_z_range(z_range, shape[0])
        nodules = self._measure_nodules(shape, spacing, origin, aff)
        return self._render_slab(shape, spacing, origin, aff, z0, z1, noise_hu, entropy, nodules)

    def iter_slabs(
        self,
        shape: Sequence[int],
        spacing: Sequence[float] | float,
        origin: Sequence[float] | str | None = None,
        *,
        slab: int = 32,
        transform: np.ndarray | None = None,
        noise_hu: float = 20.0,
        noise_seed: int | Sequence[int] | None = None,
    ) -> Iterator[tuple[int, int, Phantom]]:
        """Yield ``(z0, z1, Phantom)`` for consecutive slabs of ``slab`` slices.

        Memory is bounded by one slab; concatenating the slabs along z gives exactly the
        arrays of :meth:`render`. Parameters are those of :meth:`render`.
        """
        shape = _check_3d_shape(shape)
        spacing = check_spacing(spacing, 3, "spacing")
        origin = _resolve_origin(origin, shape, spacing)
        aff = np.eye(4) if transform is None else _check_affine(transform, "transform")
        noise_hu = _check_real(noise_hu, "noise_hu", minimum=0.0)
        entropy = self.seed if noise_seed is None else _check_entropy(noise_seed)
        slab = check_positive_int(slab, "slab")
        nodules = self._measure_nodules(shape, spacing, origin, aff)
        # Arguments are checked above, eagerly; the generator below only renders.
        return self._slabs(shape, spacing, origin, aff, slab, noise_hu, entropy, nodules)

    def _slabs(self, shape, spacing, origin, aff, slab, noise_hu, entropy, nodules):
        for z0 in range(0, shape[0], slab):
            z1 = min(shape[0], z0 + slab)
            yield (
                z0,
                z1,
                self._render_slab(shape, spacing, origin, aff, z0, z1, noise_hu, entropy, nodules),
            )

    def _render_slab(self, shape, spacing, origin, aff, z0, z1, noise_hu, entropy, nodules):
        ny, nx = shape[1], shape[2]
        image = np.empty((z1 - z0, ny, nx), dtype=np.int16)
        lung = np.empty((z1 - z0, ny, nx), dtype=np.bool_)
        lab = np.empty((z1 - z0, ny, nx), dtype=np.int32)
        # Work in blocks so the float32 intermediate never exceeds one block.
        clean = np.empty((min(_BLOCK_SLICES, z1 - z0), ny, nx), dtype=np.float32)
        for a in range(z0, z1, _BLOCK_SLICES):
            b = min(z1, a + _BLOCK_SLICES)
            out = (clean[: b - a], lung[a - z0 : b - z0], lab[a - z0 : b - z0])
            _render_region(self, self._packed, spacing, origin, aff, (a, b, 0, ny, 0, nx), out)
            for k in range(a, b):
                sl = clean[k - a]
                if noise_hu > 0:
                    sl = sl + _noise_slice(entropy, k, ny, nx, noise_hu)
                image[k - z0] = np.clip(np.rint(sl), _HU_MIN, _HU_MAX)
        slab_origin = (origin[0] + z0 * spacing[0], origin[1], origin[2])
        return Phantom(
            image, tuple(spacing), slab_origin, lung, lab, list(nodules), (z0, z1), aff.copy()
        )

    def _measure_nodules(self, shape, spacing, origin, aff) -> list[Nodule]:
        """Nodule records on this grid; volumes from the label mask inside each nodule's box."""
        spc = np.asarray(spacing)
        org = np.asarray(origin)
        inv = np.linalg.inv(aff)
        scale = abs(np.linalg.det(inv[:3, :3])) ** (1.0 / 3.0)
        records = []
        for nod in self.nodules:
            box = _ellipsoid(nod.center_mm, nod.semi_axes_mm, np.asarray(nod.rotation)).aabb
            corners = np.array(
                [[box[a], box[2 + b], box[4 + c]] for a in (0, 1) for b in (0, 1) for c in (0, 1)]
            )
            phys = corners @ inv[:3, :3].T + inv[:3, 3]
            idx = (phys - org) / spc
            lo = np.maximum(np.floor(idx.min(axis=0)).astype(int) - 1, 0)
            hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 2, shape)
            count = 0
            if np.all(hi > lo):
                region = (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])
                _, _, lab = _render_region(self, self._packed, spc, org, aff, region)
                count = int(np.count_nonzero(lab == nod.id))
            center = inv[:3, :3] @ np.asarray(nod.center_mm) + inv[:3, 3]
            diameter = nod.diameter_mm * scale
            solid = diameter * (nod.core_fraction if nod.kind == "part-solid" else 1.0)
            records.append(
                Nodule(
                    id=nod.id,
                    center_mm=tuple(float(v) for v in center),
                    diameter_mm=float(diameter),
                    kind=nod.kind,
                    volume_mm3=float(count * np.prod(spc)),
                    analytic_volume_mm3=float(math.pi / 6.0 * diameter**3),
                    solid_diameter_mm=float(solid),
                    n_voxels=count,
                )
            )
        return records

    # -- nodule placement --------------------------------------------------------------

    def _lung_ok(self, points: np.ndarray) -> bool:
        pk = self._lung_packed
        tex = self.texture
        with kernel_threads():
            flags = _lung_at_points(
                np.ascontiguousarray(points, dtype=np.float64),
                pk.ptype,
                pk.pparam,
                pk.paabb,
                pk.pobj,
                pk.ovalue,
                pk.okind,
                pk.olung,
                pk.olabel,
                pk.oedge,
                *tex,
                HU["air"],
            )
        return bool(flags.all())

    def _fits(
        self, center: np.ndarray, radius: float, others: Sequence[NoduleSpec], exclude: int = 0
    ) -> bool:
        """True if a ball of ``radius`` at ``center`` is inside the lung and clear of big
        vessels, airways, lung landmarks and other nodules (their clearance balls)."""
        vs = self.vessel_segments
        big = vs[:, 6] >= _BIG_VESSEL_MM
        if np.any(_segment_distance(center, vs[big, :3], vs[big, 3:6]) <= radius + vs[big, 6]):
            return False
        aw = self.airway_segments
        if np.any(_segment_distance(center, aw[:, :3], aw[:, 3:6]) <= radius + aw[:, 6]):
            return False
        for name in ("right_lung", "left_lung"):
            if (
                name in self.landmarks
                and np.linalg.norm(center - self.landmarks[name]) <= radius + 4.0
            ):
                return False
        for o in others:
            if o.id == exclude:
                continue
            reach = max(o.clearance_mm, o.bounding_radius_mm)
            if np.linalg.norm(center - o.center_mm) <= radius + reach + 1.0:
                return False
        n_surface = max(64, int(4.0 * math.pi * radius**2 / 6.0))
        pts = np.concatenate(
            [
                center[None, :],
                center + radius * _fibonacci_sphere(n_surface),
                center + 0.6 * radius * _fibonacci_sphere(max(16, n_surface // 4)),
            ]
        )
        return self._lung_ok(pts)

    def _place_nodules(
        self,
        rng: np.random.Generator,
        count: int,
        drange,
        existing,
        first_id: int,
        *,
        accept=None,
        kinds=None,
    ) -> list[NoduleSpec]:
        lo, hi = drange
        diam = np.exp(rng.uniform(math.log(lo), math.log(hi), count))
        if kinds is None:
            kinds = ["part-solid" if (d >= 8.0 and rng.random() < 0.3) else "solid" for d in diam]
            big = np.flatnonzero(diam >= 8.0)
            if count >= 2 and "part-solid" not in kinds and big.size:
                kinds[int(big[np.argmax(diam[big])])] = "part-solid"
        specs: dict[int, NoduleSpec] = {}
        placed = list(existing)
        # Place the largest first: they are the hardest to fit.
        for k in sorted(range(count), key=lambda k: -diam[k]):
            d = float(diam[k])
            ratios = np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.7, 1.0)])
            semi = ratios * (d / 2.0) / float(np.prod(ratios)) ** (1.0 / 3.0)
            rot = _random_rotation(rng)
            frac, offset = 1.0, np.zeros(3)
            if kinds[k] == "part-solid":
                frac = rng.uniform(0.3, 0.6)
                u = _unit(rng.normal(size=3)) * rng.uniform(0.0, 0.5 * (1.0 - frac))
                offset = rot.T @ (u * semi)
            headroom = min(_MAX_GROWTH_DIAMETER, max(1.0, _DIAMETER_LIMITS[1] / d))
            clearance = float(semi.max() * headroom)
            radius = clearance + _CLEARANCE_MARGIN_MM
            spec = None
            for _attempt in range(600):
                side = int(rng.integers(2))
                box_lo, box_hi = self.lung_boxes[side]
                center = rng.uniform(box_lo, box_hi)
                if not self._fits(center, radius, placed):
                    continue
                if accept is not None and not accept(center, radius):
                    continue
                spec = NoduleSpec(
                    id=first_id + k,
                    center_mm=tuple(float(v) for v in center),
                    semi_axes_mm=tuple(float(v) for v in semi),
                    rotation=tuple(tuple(float(v) for v in row) for row in rot),
                    kind=kinds[k],
                    core_fraction=float(frac),
                    core_offset_mm=tuple(float(v) for v in offset),
                    clearance_mm=clearance,
                )
                break
            if spec is None:
                raise ValueError(
                    f"could not place {count} nodules of diameters {lo}-{hi} mm in the lungs; "
                    f"reduce n_nodules or diameter_range (failed on a {d:.1f} mm nodule)"
                )
            specs[k] = spec
            placed.append(spec)
        return [specs[k] for k in range(count)]


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


@functools.lru_cache(maxsize=16)
def _generate_scene(seed: int, n_nodules: int, drange: tuple[float, float]) -> ChestScene:
    def stream(key: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(key,))))

    anat = _build_anatomy(stream(_STREAM_ANATOMY))
    vessel_objs, vessel_segs = _build_vessels(stream(_STREAM_VESSELS), anat)
    objs = anat["objects"]
    # Vessels sit on the parenchyma, under the airways and bones (paint order).
    first_airway = next(i for i, o in enumerate(objs) if o.name == "airway_wall")
    anatomy = tuple(objs[:first_airway] + vessel_objs + objs[first_airway:])

    boxes = []
    for side in ("right", "left"):
        c, s = anat["lungs"][side]
        lo, hi = c - s, c + s
        lo[0], hi[0] = max(lo[0], 70.0), min(hi[0], 230.0)  # keep nodules mid-chest in z
        boxes.append((lo, hi))

    landmarks = {k: tuple(float(v) for v in p) for k, p in anat["landmarks"].items()}
    scene = ChestScene(
        seed,
        anatomy,
        (),
        landmarks,
        _build_texture(stream(_STREAM_TEXTURE)),
        vessel_segs,
        anat["airways"],
        tuple(boxes),
    )
    # Lung landmarks: the first candidate away from vessels and airways.
    for side, cands in (
        (
            "right",
            [
                (150.0, 150.0, 80.0),
                (120.0, 200.0, 75.0),
                (180.0, 160.0, 95.0),
                (140.0, 230.0, 90.0),
                (200.0, 170.0, 80.0),
            ],
        ),
        (
            "left",
            [
                (150.0, 150.0, 280.0),
                (120.0, 200.0, 285.0),
                (180.0, 160.0, 265.0),
                (140.0, 230.0, 270.0),
                (200.0, 170.0, 280.0),
            ],
        ),
    ):
        best, best_d = None, -1.0
        for cand in cands:
            p = np.array(cand)
            dv = float(
                np.min(
                    _segment_distance(p, vessel_segs[:, :3], vessel_segs[:, 3:6])
                    - vessel_segs[:, 6]
                )
            )
            if scene._lung_ok(p[None] + 4.0 * _fibonacci_sphere(32)) and dv > best_d:
                best, best_d = cand, dv
        if best is not None:
            landmarks[f"{side}_lung"] = best
    nodules = scene._place_nodules(stream(_STREAM_NODULES), n_nodules, drange, [], 1)
    # The scene is cached and shared: hand out read-only views of its tables.
    for arr in (vessel_segs, scene.airway_segments):
        arr.flags.writeable = False
    return dataclasses.replace(
        scene.with_nodules(nodules), landmarks=types.MappingProxyType(landmarks)
    )


# --------------------------------------------------------------------------------------
# Rendering helpers
# --------------------------------------------------------------------------------------


def _render_region(scene: ChestScene, pk: _Packed, spacing, origin, aff, region, out=None):
    """Clean HU (float32), lung mask and labels for a box of the grid (global indices).

    ``out`` optionally gives the three C-contiguous arrays to fill.
    """
    z0, z1, y0, y1, x0, x1 = (int(v) for v in region)
    spc = np.ascontiguousarray(spacing, dtype=np.float64)
    org = np.ascontiguousarray(origin, dtype=np.float64)
    amat = np.ascontiguousarray(aff[:3, :4], dtype=np.float64)
    lin = amat[:, :3]
    scale = abs(np.linalg.det(lin)) ** (1.0 / 3.0)
    # Partial-volume edge: at least one voxel wide (in scene mm), wider where asked.
    width = np.maximum(pk.oedge, float(np.mean(spc)) * scale)
    pad = width[pk.pobj] + 0.5
    aabb = pk.paabb.copy()
    aabb[:, 0::2] -= pad[:, None]
    aabb[:, 1::2] += pad[:, None]
    # Drop primitives that cannot touch the region (its scene-space box).
    idx = np.array(
        [[a, b, c] for a in (z0, z1 - 1) for b in (y0, y1 - 1) for c in (x0, x1 - 1)], dtype=float
    )
    pts = (org + idx * spc) @ lin.T + amat[:, 3]
    lo, hi = pts.min(axis=0) - 1e-3, pts.max(axis=0) + 1e-3
    keep = ~(
        (aabb[:, 1] < lo[0])
        | (aabb[:, 0] > hi[0])
        | (aabb[:, 3] < lo[1])
        | (aabb[:, 2] > hi[1])
        | (aabb[:, 5] < lo[2])
        | (aabb[:, 4] > hi[2])
    )
    sel = np.flatnonzero(keep)
    # Tiles of about 8 mm: small enough to cull well, big enough to amortise the culling.
    tile = np.array([int(np.clip(round(8.0 / (s * scale)), 1, 16)) for s in spc], dtype=np.int64)
    shape = (z1 - z0, y1 - y0, x1 - x0)
    if out is None:
        out = (np.empty(shape, np.float32), np.empty(shape, np.bool_), np.empty(shape, np.int32))
    img, lung, lab = out
    tex = scene.texture
    with kernel_threads():
        _render_grid(
            img,
            lung,
            lab,
            np.array([z0, y0, x0], dtype=np.int64),
            org,
            spc,
            amat,
            tile,
            np.ascontiguousarray(pk.ptype[sel]),
            np.ascontiguousarray(pk.pparam[sel]),
            np.ascontiguousarray(aabb[sel]),
            np.ascontiguousarray(pk.plip[sel]),
            np.ascontiguousarray(pk.pobj[sel]),
            pk.ovalue,
            pk.okind,
            pk.olung,
            pk.olabel,
            width,
            tex[0],
            tex[1],
            tex[2],
            tex[3],
            tex[4],
            HU["air"],
        )
    return img, lung, lab


def _noise_slice(entropy, k: int, ny: int, nx: int, noise_hu: float) -> np.ndarray:
    """Correlated Gaussian noise of one slice, keyed by (seed, global slice index)."""
    ss = np.random.SeedSequence(entropy, spawn_key=(_STREAM_NOISE, k))
    white = np.random.Generator(np.random.PCG64(ss)).standard_normal((ny, nx), dtype=np.float32)
    sm = ndimage.correlate1d(white, _NOISE_TAPS, axis=0, mode="wrap")
    sm = ndimage.correlate1d(sm, _NOISE_TAPS, axis=1, mode="wrap")
    sm *= np.float32(noise_hu * _NOISE_GAIN)
    return sm


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------


def chest_phantom(
    size: str = "small",
    *,
    seed: int = 0,
    n_nodules: int | None = None,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | float | None = None,
    origin: Sequence[float] | str | None = None,
    noise_hu: float = 20.0,
    diameter_range: tuple[float, float] = _DIAMETER_LIMITS,
) -> Phantom:
    """Synthetic chest CT in HU with lung mask, nodule labels and nodule records.

    Parameters
    ----------
    size : str
        Preset name, one of :data:`PRESETS` (``'tiny'``, ``'small'``, ``'medium'``,
        ``'large'``, ``'clinical'``). All presets cover the same 300 x 360 x 360 mm chest.
    seed : int
        Seed of the scene and the noise; the same seed gives identical bytes.
    n_nodules : int, optional
        Number of nodules (default 6), diameters in ``diameter_range``.
    shape, spacing : optional
        Override the preset grid. If only one is given the other is derived so that the
        grid covers the standard field of view :data:`FOV_MM`.
    origin : sequence of 3 float or 'center', optional
        Physical position of voxel (0, 0, 0), default 0 (the chest is centred at
        :data:`SCENE_CENTER_MM`); ``'center'`` centres the grid on the chest.
    noise_hu : float
        Standard deviation of the in-plane correlated Gaussian noise (0 for none).
    diameter_range : (float, float)
        Nodule diameters in mm, within [3, 30].

    Returns
    -------
    Phantom

    Examples
    --------
    >>> from fastct.datasets import chest_phantom
    >>> ph = chest_phantom("tiny", seed=0)
    >>> ph.image.dtype.name, ph.image.shape, ph.spacing
    ('int16', (32, 48, 48), (9.375, 7.5, 7.5))
    >>> len(ph.nodules), ph.nodules[0].kind in ("solid", "part-solid")
    (6, True)
    """
    shp, spc, org = _resolve_grid(size, shape, spacing, origin)
    scene = ChestScene.generate(seed, n_nodules=n_nodules, diameter_range=diameter_range)
    return scene.render(shp, spc, org, noise_hu=noise_hu)


def iter_phantom_slabs(
    size: str = "clinical",
    *,
    seed: int = 0,
    n_nodules: int | None = None,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | float | None = None,
    origin: Sequence[float] | str | None = None,
    noise_hu: float = 20.0,
    diameter_range: tuple[float, float] = _DIAMETER_LIMITS,
    slab: int = 32,
) -> Iterator[tuple[int, int, Phantom]]:
    """Stream :func:`chest_phantom` slab by slab: yields ``(z0, z1, Phantom)``.

    Each slab holds slices ``z0 <= k < z1`` (its ``origin`` is that of slice ``z0``);
    concatenating them along z gives exactly ``chest_phantom(...)`` with the same
    arguments, while memory stays bounded by one slab. ``nodules`` of every slab are the
    records of the whole volume. Other parameters are those of :func:`chest_phantom`.

    Examples
    --------
    >>> from fastct.datasets import iter_phantom_slabs
    >>> [(z0, z1) for z0, z1, _ in iter_phantom_slabs("tiny", slab=12)]
    [(0, 12), (12, 24), (24, 32)]
    """
    shp, spc, org = _resolve_grid(size, shape, spacing, origin)
    slab = check_positive_int(slab, "slab")
    scene = ChestScene.generate(seed, n_nodules=n_nodules, diameter_range=diameter_range)
    noise_hu = _check_real(noise_hu, "noise_hu", minimum=0.0)
    return scene.iter_slabs(shp, spc, org, slab=slab, noise_hu=noise_hu)


def random_transform(
    rng: np.random.Generator | int,
    center_mm: Sequence[float],
    *,
    kind: str = "rigid",
    max_rotation_deg: float = 10.0,
    max_translation_mm: float = 10.0,
    scale_range: tuple[float, float] = (0.95, 1.05),
) -> np.ndarray:
    """A random 4 x 4 rigid or similarity transform about ``center_mm``.

    ``q = s R (p - c) + c + t`` with a uniformly random rotation axis, angle uniform in
    ``[0, max_rotation_deg]``, translation of uniform direction and length uniform in
    ``[0, max_translation_mm]``, and for ``kind='similarity'`` a scale ``s`` uniform in
    ``scale_range``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastct.datasets import random_transform
    >>> m = random_transform(0, (150, 180, 180), max_rotation_deg=5)
    >>> m.shape, bool(np.isclose(np.linalg.det(m[:3, :3]), 1.0))
    ((4, 4), True)
    """
    if kind not in ("rigid", "similarity"):
        raise ValueError(f"kind must be 'rigid' or 'similarity', got {kind!r}")
    rot_max = _check_real(max_rotation_deg, "max_rotation_deg", minimum=0.0)
    trans_max = _check_real(max_translation_mm, "max_translation_mm", minimum=0.0)
    s_lo, s_hi = _check_range(scale_range, "scale_range", 1e-3, 1e3)
    if not isinstance(rng, np.random.Generator):
        rng = np.random.default_rng(_check_seed(rng, "rng"))
    c = np.asarray(center_mm, dtype=float)
    if c.shape != (3,):
        raise ValueError(f"center_mm must have 3 values (z, y, x), got {center_mm!r}")
    axis = _unit(rng.normal(size=3))
    angle = math.radians(rng.uniform(0.0, rot_max))
    t = _unit(rng.normal(size=3)) * rng.uniform(0.0, trans_max)
    s = rng.uniform(s_lo, s_hi) if kind == "similarity" else 1.0
    m = np.eye(4)
    m[:3, :3] = s * _rotation(axis, angle)
    m[:3, 3] = c + t - m[:3, :3] @ c
    return m


def _resolve_growth(growth: object, n: int) -> list[float] | None:
    """Per-nodule volume ratios, or None for 'random'."""
    if isinstance(growth, str):
        if growth != "random":
            raise ValueError(
                f"growth must be 'random', a positive number or a sequence of "
                f"{n} positive numbers, got {growth!r}"
            )
        return None
    if growth is None:
        return [1.0] * n
    if isinstance(growth, (numbers.Real, np.number)) and not isinstance(growth, bool):
        return [_check_real(growth, "growth", minimum=0.0, strict=True)] * n
    if isinstance(growth, (Sequence, np.ndarray)):
        vals = list(growth)
        if len(vals) != n:
            raise ValueError(f"growth must have one volume ratio per nodule ({n}), got {len(vals)}")
        return [_check_real(v, "growth", minimum=0.0, strict=True) for v in vals]
    raise TypeError(f"growth must be 'random', a number or a sequence, got {type(growth).__name__}")


def phantom_pair(
    size: str = "small",
    *,
    seed: int = 0,
    n_nodules: int | None = None,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | float | None = None,
    origin: Sequence[float] | str | None = None,
    noise_hu: float = 20.0,
    diameter_range: tuple[float, float] = _DIAMETER_LIMITS,
    transform: str | np.ndarray = "rigid",
    max_rotation_deg: float = 10.0,
    max_translation_mm: float = 10.0,
    scale_range: tuple[float, float] = (0.95, 1.05),
    growth: str | float | Sequence[float] | None = "random",
    new_nodules: int = 0,
    followup_noise_seed: int | None = None,
) -> PhantomPair:
    """Baseline scan and follow-up scan with a known transform and nodule changes.

    The baseline is exactly ``chest_phantom(size, seed=seed, ...)``. The follow-up shows
    the same anatomy moved by ``M`` (rendered analytically at ``inv(M)`` of its grid
    points, no resampling blur) with nodules grown, shrunk or stable.

    Parameters
    ----------
    size, seed, n_nodules, shape, spacing, origin, noise_hu, diameter_range
        As in :func:`chest_phantom`; both scans share the grid.
    transform : {'rigid', 'similarity', 'identity'} or ndarray (4, 4)
        Kind of random transform drawn from ``seed``, or an explicit matrix ``M``
        (baseline physical -> follow-up physical).
    max_rotation_deg, max_translation_mm, scale_range
        Limits of the random transform; rotation is about the grid centre. Draws that
        would push a nodule out of the grid are rejected.
    growth : 'random', float, sequence of float or None
        Intrinsic volume ratio follow-up / baseline per nodule. ``'random'`` mixes
        growing (x1.4-2.5), shrinking (x0.35-0.7) and stable nodules, keeping
        diameters in [3, 30] mm; a number applies to all; None means no change.
    new_nodules : int
        Number of new nodules (4-10 mm) appearing in the follow-up.
    followup_noise_seed : int, optional
        Noise seed of the follow-up; default is a stream independent of the baseline.
        Pass ``seed`` to get the baseline's noise.

    Returns
    -------
    PhantomPair

    Examples
    --------
    >>> import numpy as np
    >>> from fastct.datasets import phantom_pair
    >>> pair = phantom_pair("tiny", seed=0, n_nodules=2)
    >>> pair.transform.shape, len(pair.changes)
    ((4, 4), 2)
    >>> c = pair.changes[0]
    >>> bool(np.allclose(pair.transform @ [*c["center_baseline_mm"], 1],
    ...                  [*c["center_followup_mm"], 1]))
    True
    """
    shp, spc, org = _resolve_grid(size, shape, spacing, origin)
    scene = ChestScene.generate(seed, n_nodules=n_nodules, diameter_range=diameter_range)
    noise_hu = _check_real(noise_hu, "noise_hu", minimum=0.0)
    n_new = check_positive_int(new_nodules, "new_nodules", minimum=0)
    fu_entropy = (
        (seed, 1)
        if followup_noise_seed is None
        else _check_seed(followup_noise_seed, "followup_noise_seed")
    )
    ratios = _resolve_growth(growth, len(scene.nodules))
    rng = np.random.Generator(
        np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(_STREAM_PAIR,)))
    )
    spc_a, org_a = np.asarray(spc), np.asarray(org)
    center = org_a + (np.asarray(shp) - 1) / 2.0 * spc_a
    grid_lo, grid_hi = org_a, org_a + (np.asarray(shp) - 1) * spc_a

    # -- nodule changes (intrinsic, scene units) -------------------------------------
    base = list(scene.nodules)
    if ratios is None:
        ratios = []
        roles = list(rng.permutation(["grow", "shrink", "stable"]))
        for k, nod in enumerate(base):
            role = (
                roles[k]
                if k < 3
                else str(rng.choice(["grow", "shrink", "stable"], p=[0.4, 0.3, 0.3]))
            )
            d = nod.diameter_mm
            lo_r = (_DIAMETER_LIMITS[0] / d) ** 3
            hi_r = min(
                (_DIAMETER_LIMITS[1] / d) ** 3, (nod.clearance_mm / nod.bounding_radius_mm) ** 3
            )
            r = {"grow": rng.uniform(1.4, 2.5), "shrink": rng.uniform(0.35, 0.7), "stable": 1.0}[
                role
            ]
            ratios.append(float(np.clip(r, lo_r, max(lo_r, hi_r))))
    followed = []
    for nod, r in zip(base, ratios):
        f = r ** (1.0 / 3.0)
        grown = nod.scaled(f)
        if grown.bounding_radius_mm > nod.clearance_mm + 1e-9:
            others = [o for o in base if o.id != nod.id]
            if not scene._fits(np.asarray(nod.center_mm), grown.bounding_radius_mm + 0.5, others):
                raise ValueError(
                    f"growth {r:g} makes nodule {nod.id} ({nod.diameter_mm:.1f} mm) leave the "
                    f"lung or touch a vessel, airway or nodule; use a smaller growth"
                )
        followed.append(grown)

    # -- transform ------------------------------------------------------------------
    def inside(m: np.ndarray, nods) -> bool:
        s = abs(np.linalg.det(m[:3, :3])) ** (1.0 / 3.0)
        margin = 1.5 * spc_a.max()
        for nb, nf in zip(base, nods):
            rb = nb.bounding_radius_mm + margin
            cb = np.asarray(nb.center_mm)
            if np.any(cb - rb < grid_lo) or np.any(cb + rb > grid_hi):
                continue  # not fully in the baseline grid either: nothing to keep
            cf = m[:3, :3] @ cb + m[:3, 3]
            rf = s * nf.bounding_radius_mm + margin
            if np.any(cf - rf < grid_lo) or np.any(cf + rf > grid_hi):
                return False
        return True

    if isinstance(transform, str):
        if transform not in ("rigid", "similarity", "identity"):
            raise ValueError(
                f"transform must be 'rigid', 'similarity', 'identity' or a 4x4 "
                f"matrix, got {transform!r}"
            )
        if transform == "identity":
            m = np.eye(4)
        else:
            for _ in range(100):
                m = random_transform(
                    rng,
                    center,
                    kind=transform,
                    max_rotation_deg=max_rotation_deg,
                    max_translation_mm=max_translation_mm,
                    scale_range=scale_range,
                )
                if inside(m, followed):
                    break
            else:
                raise ValueError(
                    "could not draw a transform keeping every nodule inside the grid; reduce "
                    f"max_rotation_deg ({max_rotation_deg}) or max_translation_mm "
                    f"({max_translation_mm})"
                )
    else:
        m = _check_affine(transform, "transform")
    scale = abs(np.linalg.det(m[:3, :3])) ** (1.0 / 3.0)
    m_inv = np.linalg.inv(m)

    # -- new nodules ----------------------------------------------------------------
    if n_new:

        def accept(c: np.ndarray, radius: float) -> bool:
            cf = m[:3, :3] @ c + m[:3, 3]
            rf = scale * radius + 1.5 * spc_a.max()
            return bool(np.all(cf - rf >= grid_lo) and np.all(cf + rf <= grid_hi))

        new_specs = scene._place_nodules(
            rng,
            n_new,
            (4.0, 10.0),
            followed,
            max((n.id for n in base), default=0) + 1,
            accept=accept,
            kinds=["solid"] * n_new,
        )
        followed += new_specs
    fu_scene = scene.with_nodules(followed)

    baseline = scene.render(shp, spc, org, noise_hu=noise_hu, noise_seed=seed)
    followup = fu_scene.render(
        shp, spc, org, transform=m_inv, noise_hu=noise_hu, noise_seed=fu_entropy
    )

    changes = []
    b_rec = {r.id: r for r in baseline.nodules}
    for spec, rec in zip(followed, followup.nodules):
        b = b_rec.get(spec.id)
        if b is None:
            change, ratio = "new", None
        else:
            ratio = spec.volume_mm3 / scene.nodules[[n.id for n in base].index(spec.id)].volume_mm3
            change = "grow" if ratio > 1.05 else "shrink" if ratio < 0.95 else "stable"
        changes.append(
            {
                "id": spec.id,
                "kind": spec.kind,
                "change": change,
                "growth_ratio": ratio,
                "center_baseline_mm": None if b is None else b.center_mm,
                "center_followup_mm": rec.center_mm,
                "diameter_baseline_mm": None if b is None else b.diameter_mm,
                "diameter_followup_mm": rec.diameter_mm,
                "volume_baseline_mm3": None if b is None else b.volume_mm3,
                "volume_followup_mm3": rec.volume_mm3,
                "analytic_volume_baseline_mm3": None if b is None else b.analytic_volume_mm3,
                "analytic_volume_followup_mm3": rec.analytic_volume_mm3,
            }
        )
    return PhantomPair(baseline, followup, m, float(scale), changes, scene, fu_scene)

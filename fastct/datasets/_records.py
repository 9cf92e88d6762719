"""Public records: nodule specifications of a scene and what a rendered scan carries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._constants import HU
from ._primitives import _ellipsoid, _Obj

if TYPE_CHECKING:
    from ._scene import ChestScene


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

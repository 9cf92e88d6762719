"""Records of the hard (realistic) phantom: nodule specifications, truth records, scans, pairs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ._primitives import _cone, _ellipsoid, _Obj, _Prim
from ._records import Nodule, Phantom, PhantomPair

#: Nodule types of the hard phantom.
NODULE_TYPES: tuple[str, ...] = ("solid", "ground-glass", "part-solid", "calcified")
#: Nodule shapes of the hard phantom.
NODULE_SHAPES: tuple[str, ...] = ("round", "lobulated", "spiculated")
#: Nodule positions of the hard phantom.
NODULE_POSITIONS: tuple[str, ...] = ("free", "juxtapleural", "juxtavascular", "perifissural")
#: Reconstruction kernels (noise textures) of the hard phantom.
RECON_KERNELS: tuple[str, ...] = ("soft", "sharp")
#: Slice thickness presets in mm (any value in [1, 5] is accepted).
SLICE_THICKNESS_PRESETS: tuple[float, ...] = (1.0, 1.25, 2.0, 2.5, 3.0, 5.0)
#: Follow-up statuses of :func:`hard_phantom_pair`.
FOLLOWUP_STATUSES: tuple[str, ...] = ("stable", "growing", "shrinking", "new", "resolved")


@dataclass(frozen=True)
class HardNoduleSpec:
    """An analytic nodule of the hard phantom (scene millimetres).

    The body is the union of ``lobes`` (ellipsoids ``(centre, semi-axes)`` sharing
    ``rotation``); spicules are tapered tubes ``(start, end, r0, r1)`` of the solid value,
    drawn but not labelled; a part-solid nodule has a solid ``core`` ellipsoid inside a
    ground-glass body. ``hu`` is the value of the body, ``core_hu`` that of the core.
    """

    id: int
    center_mm: tuple[float, float, float]
    type: str
    shape: str
    position: str
    hu: float
    rotation: tuple[tuple[float, float, float], ...]
    lobes: tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...]
    spicules: tuple[tuple[tuple[float, ...], tuple[float, ...], float, float], ...] = ()
    core: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    core_hu: float = 30.0
    bounding_radius_mm: float = 0.0

    def scaled(self, factor: float) -> HardNoduleSpec:
        """The same nodule with every length multiplied by ``factor`` about its centre."""
        c = np.asarray(self.center_mm)

        def pt(p) -> tuple[float, ...]:
            return tuple(float(v) for v in c + factor * (np.asarray(p) - c))

        def sz(s) -> tuple[float, ...]:
            return tuple(float(v * factor) for v in s)

        return replace(
            self,
            lobes=tuple((pt(p), sz(s)) for p, s in self.lobes),
            spicules=tuple(
                (pt(a), pt(b), float(r0 * factor), float(r1 * factor))
                for a, b, r0, r1 in self.spicules
            ),
            core=None if self.core is None else (pt(self.core[0]), sz(self.core[1])),
            bounding_radius_mm=float(self.bounding_radius_mm * factor),
        )

    def body_prims(self) -> tuple[_Prim, ...]:
        rot = np.asarray(self.rotation)
        return tuple(_ellipsoid(p, s, rot) for p, s in self.lobes)

    def core_prims(self) -> tuple[_Prim, ...]:
        if self.core is None:
            return ()
        return (_ellipsoid(self.core[0], self.core[1], np.asarray(self.rotation)),)

    def _halo_objects(self) -> list[_Obj]:
        """Objects painted under the vessels (ground glass lets vessels show through)."""
        if self.type not in ("ground-glass", "part-solid"):
            return []
        return [_Obj(f"nodule{self.id}-ggo", self.body_prims(), self.hu, label=self.id, edge=2.0)]

    def _solid_objects(self) -> list[_Obj]:
        """Objects painted over the vessels: solid bodies, cores and spicules."""
        objs = []
        if self.type in ("solid", "calcified"):
            objs.append(_Obj(f"nodule{self.id}", self.body_prims(), self.hu, label=self.id))
        if self.core is not None:
            objs.append(
                _Obj(f"nodule{self.id}-core", self.core_prims(), self.core_hu, label=self.id)
            )
        if self.spicules:
            value = self.hu if self.type != "part-solid" else self.core_hu
            prims = tuple(_cone(a, b, r0, r1) for a, b, r0, r1 in self.spicules)
            objs.append(_Obj(f"nodule{self.id}-spicules", prims, value, edge=1.0))
        return objs


@dataclass(frozen=True)
class HardNodule(Nodule):
    """Truth record of a hard-phantom nodule in one rendered scan.

    The fields of :class:`~fastct.datasets.Nodule` (``kind`` is the type,
    ``diameter_mm`` the volume-equivalent diameter, ``volume_mm3`` the volume of the
    analytic body sampled on a fine grid, about 48 steps across and at most 0.5 mm;
    ``n_voxels`` the voxels labelled on this grid)
    plus:

    Attributes
    ----------
    type : str
        One of :data:`NODULE_TYPES`.
    shape : str
        One of :data:`NODULE_SHAPES`.
    position : str
        One of :data:`NODULE_POSITIONS`.
    hu : float
        HU of the body (ground glass for a part-solid nodule).
    mean_axial_diameter_mm : float
        ``(long + short) / 2`` on the axial plane where the long axis is largest.
    long_axis_mm, short_axis_mm : float
        Longest in-plane extent and the extent perpendicular to it, on that plane.
    solid_core_diameter_mm : float
        Mean axial diameter of the solid part: the whole nodule for solid and
        calcified nodules, the core for part-solid ones, 0 for pure ground glass.
    status : str or None
        Follow-up status (:data:`FOLLOWUP_STATUSES`), None for a single scan.
    """

    type: str = "solid"
    shape: str = "round"
    position: str = "free"
    hu: float = 30.0
    mean_axial_diameter_mm: float = 0.0
    long_axis_mm: float = 0.0
    short_axis_mm: float = 0.0
    solid_core_diameter_mm: float = 0.0
    status: str | None = None


@dataclass(repr=False, eq=False)
class HardPhantom(Phantom):
    """A hard-phantom scan: a :class:`~fastct.datasets.Phantom` with more truth.

    ``nodules`` holds :class:`HardNodule` records; ``nodule_labels`` is the truth mask
    (each nodule's body, clipped to the lung field; a voxel is labelled when the body
    crosses its slab, the slice thickness at its in-plane centre).

    Attributes
    ----------
    mimics : list of dict
        Non-nodule structures that look like nodules: ``type`` ('scar', 'atelectasis',
        'bifurcation'), ``center_mm`` (this scan's physical mm) and ``size_mm``.
    settings : dict
        What the scan was rendered with: ``slice_thickness``, ``recon_kernel``,
        ``noise_hu``, ``padding_hu``, ``fov_diameter_mm``, ``table`` (top y in mm or
        None), ``fissures``, ``lung_hu``.
    fov_mask : ndarray of bool, shape (y, x)
        Inside the circular reconstruction field of view.
    """

    mimics: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    fov_mask: np.ndarray | None = None


@dataclass(repr=False, eq=False)
class HardPhantomPair(PhantomPair):
    """Baseline and follow-up hard phantoms; ``changes`` has one entry per nodule id.

    Each entry: ``id``, ``status`` (:data:`FOLLOWUP_STATUSES`), ``change`` (the
    :class:`~fastct.datasets.PhantomPair` vocabulary: 'grow', 'shrink', 'stable', 'new',
    'resolved'), ``type``, ``shape``, ``position``, ``growth_ratio`` (intrinsic volume
    ratio, None for new or resolved nodules), ``baseline`` and ``followup``
    (:class:`HardNodule` or None where absent), and the centres, diameters and volumes of
    :class:`~fastct.datasets.PhantomPair` (None where absent). ``baseline_scene`` and
    ``followup_scene`` are :class:`HardScene` objects.
    """

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

The *hard* phantom (:func:`hard_chest_phantom`, :func:`hard_phantom_pair`, or
``realism="hard"``) is an opt-in variant that is hard the way real CT is hard: ground-glass,
part-solid and calcified nodules, lobulated and spiculated shapes, juxtapleural,
juxtavascular and perifissural positions, dense vessel trees, fissures, scars,
atelectasis, thick slices, soft or sharp kernel noise, field-of-view padding and a table
(see the "Hard phantom" page of the user guide). The default phantom is unchanged.

Ground-truth transform contract (shared with :func:`fastct.register`): ``M`` is the
4 x 4 homogeneous matrix mapping baseline (FIXED) physical points ``p`` (z, y, x mm) to
follow-up (MOVING) physical points ``q = M @ [p, 1]``.
"""

from __future__ import annotations

from . import _constants, _hard_records
from ._hard import HardScene, hard_chest_phantom, hard_phantom_pair, hard_scene
from ._hard_records import (
    HardNodule,
    HardNoduleSpec,
    HardPhantom,
    HardPhantomPair,
)
from ._pairs import phantom_pair, random_transform
from ._phantoms import chest_phantom, iter_phantom_slabs
from ._records import Nodule, NoduleSpec, Phantom, PhantomPair
from ._scene import ChestScene

__all__ = [
    "FOLLOWUP_STATUSES",
    "FOV_MM",
    "HU",
    "NODULE_POSITIONS",
    "NODULE_SHAPES",
    "NODULE_TYPES",
    "RECON_KERNELS",
    "SLICE_THICKNESS_PRESETS",
    "PRESETS",
    "SCENE_CENTER_MM",
    "ChestScene",
    "HardNodule",
    "HardNoduleSpec",
    "HardPhantom",
    "HardPhantomPair",
    "HardScene",
    "Nodule",
    "NoduleSpec",
    "Phantom",
    "PhantomPair",
    "chest_phantom",
    "hard_chest_phantom",
    "hard_phantom_pair",
    "hard_scene",
    "iter_phantom_slabs",
    "phantom_pair",
    "random_transform",
]

# The constants are re-bound here so that their documentation comments belong to this
# module (autodoc reads ``#:`` comments from the documented module's own source).

#: Standard field of view (z, y, x) in mm that every preset covers.
FOV_MM = _constants.FOV_MM
#: Centre of the chest in scene (= baseline physical) coordinates, mm.
SCENE_CENTER_MM = _constants.SCENE_CENTER_MM
#: Size presets (read-only): all cover :data:`FOV_MM`; spacings are exact binary fractions.
PRESETS = _constants.PRESETS
#: Nominal tissue values in Hounsfield units (read-only).
HU = _constants.HU

#: Nodule types of the hard phantom (:func:`hard_chest_phantom`).
NODULE_TYPES = _hard_records.NODULE_TYPES
#: Nodule shapes of the hard phantom.
NODULE_SHAPES = _hard_records.NODULE_SHAPES
#: Nodule positions of the hard phantom.
NODULE_POSITIONS = _hard_records.NODULE_POSITIONS
#: Reconstruction kernels (noise textures) of the hard phantom.
RECON_KERNELS = _hard_records.RECON_KERNELS
#: Slice thickness presets of the hard phantom, mm (any value in [1, 5] is accepted).
SLICE_THICKNESS_PRESETS = _hard_records.SLICE_THICKNESS_PRESETS
#: Follow-up statuses of :func:`hard_phantom_pair`.
FOLLOWUP_STATUSES = _hard_records.FOLLOWUP_STATUSES

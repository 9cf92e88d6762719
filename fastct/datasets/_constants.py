"""Phantom constants: field of view, size presets, tissue HU, and the private tables that the
scene builder, the renderer and the kernels share (primitive kinds, random streams, noise taps)."""

from __future__ import annotations

import types
from collections.abc import Mapping

import numpy as np

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

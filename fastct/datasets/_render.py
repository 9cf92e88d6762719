"""Rendering helpers: one box of the grid through the compiled kernel, and per-slice CT noise."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from fastct._config import kernel_threads
from fastct._kernels.phantom import _render_grid

from ._constants import _NOISE_GAIN, _NOISE_TAPS, _STREAM_NOISE, HU
from ._primitives import _Packed

if TYPE_CHECKING:
    from ._scene import ChestScene


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

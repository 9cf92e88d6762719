"""Compiled steps of :func:`fastct.lungs.lung_mask`.

Each kernel computes exactly what the SciPy/NumPy expression named in its docstring
computes (same values, same bits), in parallel over z: the lung mask's steps hold the
GIL in SciPy and run on one core, and this stage sat between parallel ones.
"""

from __future__ import annotations

import numba
import numpy as np

from .._config import kernel


@kernel("exact", parallel=True)
def block_mean_floor(img, fz, fy, fx, floor, out):  # pragma: no cover - compiled
    """Block mean of ``max(float32(img), floor)`` by ``(fz, fy, fx)``, edge blocks
    averaging the voxels they hold, into float32 ``out``.

    Equals ``_downsample``'s NumPy path (``np.maximum`` in float32, the block sum in
    float64, divided by the voxel count, cast to float32) for integer images of at
    most 32 bits: every value is an integer (or, above 2**24, a float32 rounding of
    one) whose block sum float64 holds exactly, so the order of the additions does
    not change the sum.
    """
    nz, ny, nx = img.shape
    wz, wy, wx = out.shape
    for bz in numba.prange(wz):
        z0 = bz * fz
        z1 = min(nz, z0 + fz)
        for by in range(wy):
            y0 = by * fy
            y1 = min(ny, y0 + fy)
            for bx in range(wx):
                x0 = bx * fx
                x1 = min(nx, x0 + fx)
                s = 0.0
                for z in range(z0, z1):
                    for y in range(y0, y1):
                        for x in range(x0, x1):
                            v = np.float32(img[z, y, x])
                            s += np.float64(max(v, floor))
                n = np.float64(z1 - z0) * np.float64(y1 - y0) * np.float64(x1 - x0)
                out[bz, by, bx] = np.float32(s / n)


@kernel("exact", parallel=True)
def erode_in_plane(mask, offsets, out):  # pragma: no cover - compiled
    """``ndi.binary_erosion(mask, structure)`` for a structure of one plane
    (``offsets``: its (dy, dx) pairs, centred): a voxel stays True if every offset
    lands on True inside the plane (outside it counts as False, SciPy's
    ``border_value=0``)."""
    nz, ny, nx = mask.shape
    k = offsets.shape[0]
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                keep = mask[z, y, x]
                i = 0
                while keep and i < k:
                    yy = y + offsets[i, 0]
                    xx = x + offsets[i, 1]
                    if yy < 0 or yy >= ny or xx < 0 or xx >= nx or not mask[z, yy, xx]:
                        keep = False
                    i += 1
                out[z, y, x] = keep


@kernel("exact", parallel=True)
def dilate_in_plane(mask, offsets, out):  # pragma: no cover - compiled
    """``ndi.binary_dilation(mask, structure)`` for a point-symmetric structure of one
    plane (``offsets``: its (dy, dx) pairs, centred): True where some offset lands on
    a True voxel inside the plane."""
    nz, ny, nx = mask.shape
    k = offsets.shape[0]
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                hit = False
                i = 0
                while not hit and i < k:
                    yy = y + offsets[i, 0]
                    xx = x + offsets[i, 1]
                    if 0 <= yy < ny and 0 <= xx < nx and mask[z, yy, xx]:
                        hit = True
                    i += 1
                out[z, y, x] = hit

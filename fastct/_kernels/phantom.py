"""Compiled kernels that render the synthetic chest phantom (see fastct.datasets).

Every voxel is computed from its global index, so rendering a slab equals the same
slab of the whole volume bit for bit, at any thread count. No fastmath, on purpose.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._config import kernel


@kernel("exact")
def _prim_dist(t, q, z, y, x):  # pragma: no cover - compiled
    """Approximate signed distance (mm, < 0 inside) from a scene point to a primitive.

    The sign is exact (the masks use only the sign); the magnitude only shapes the
    partial-volume edge.
    """
    pz = z - q[0]
    py = y - q[1]
    px = x - q[2]
    if t == 1:  # round cone: a=q[0:3], b=q[3:6], r0, r1, ba=q[8:11], 1/|ba|^2
        h = (pz * q[8] + py * q[9] + px * q[10]) * q[11]
        if h < 0.0:
            h = 0.0
        elif h > 1.0:
            h = 1.0
        dz = pz - h * q[8]
        dy = py - h * q[9]
        dx = px - h * q[10]
        return math.sqrt(dz * dz + dy * dy + dx * dx) - (q[6] + h * (q[7] - q[6]))
    # Rotated local frame; rows of the 3x3 at q[3:12] are the primitive's axes.
    u0 = q[3] * pz + q[4] * py + q[5] * px
    u1 = q[6] * pz + q[7] * py + q[8] * px
    u2 = q[9] * pz + q[10] * py + q[11] * px
    if t == 0:  # ellipsoid, semi-axes q[12:15]; d ~ k0 (k0 - 1) / k1 (exact sign)
        e0 = u0 / q[12]
        e1 = u1 / q[13]
        e2 = u2 / q[14]
        k0 = math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
        f0 = e0 / q[12]
        f1 = e1 / q[13]
        f2 = e2 / q[14]
        k1 = math.sqrt(f0 * f0 + f1 * f1 + f2 * f2)
        if k1 == 0.0:
            return -min(q[12], min(q[13], q[14]))
        return k0 * (k0 - 1.0) / k1
    # capped elliptic cylinder: axis u0 with half-height q[14], section semi-axes q[12:14]
    e1 = u1 / q[12]
    e2 = u2 / q[13]
    k0 = math.sqrt(e1 * e1 + e2 * e2)
    f1 = e1 / q[12]
    f2 = e2 / q[13]
    k1 = math.sqrt(f1 * f1 + f2 * f2)
    if k1 == 0.0:
        dr = -min(q[12], q[13])
    else:
        dr = k0 * (k0 - 1.0) / k1
    da = abs(u0) - q[14]
    return max(dr, da)


@kernel("exact")
def _shade(
    z,
    y,
    x,
    cand,
    nc,
    ptype,
    pparam,
    paabb,
    pobj,
    ovalue,
    okind,
    olung,
    olabel,
    owidth,
    tk,
    tphase,
    tamp,
    tgrad,
    tcy,
    background,
):  # pragma: no cover - compiled
    """Composite the candidate primitives (grouped by object, in paint order) at a point.

    Returns (HU before noise, lung flag, nodule label). Each object is the union of its
    primitives; its occupancy is a linear ramp of width ``owidth`` around the surface and
    is blended over what is below; masks use only the sign of the distance.
    """
    v = background
    lung = False
    lab = 0
    i = 0
    while i < nc:
        o = pobj[cand[i]]
        dmin = 1e300
        while i < nc:
            p = cand[i]
            if pobj[p] != o:
                break
            i += 1
            if (
                z < paabb[p, 0]
                or z > paabb[p, 1]
                or y < paabb[p, 2]
                or y > paabb[p, 3]
                or x < paabb[p, 4]
                or x > paabb[p, 5]
            ):
                continue  # outside the primitive's bounding box: never evaluated
            d = _prim_dist(ptype[p], pparam[p], z, y, x)
            if d < dmin:
                dmin = d
        w = owidth[o]
        if dmin < 0.5 * w:
            a = 0.5 - dmin / w
            if a > 1.0:
                a = 1.0
            val = ovalue[o]
            if okind[o] == 1:  # lung parenchyma: gravity gradient + plane-wave texture
                tex = tgrad * (y - tcy)
                for m in range(tk.shape[0]):
                    tex += tamp[m] * math.cos(
                        tk[m, 0] * z + tk[m, 1] * y + tk[m, 2] * x + tphase[m]
                    )
                val += tex
            v = v * (1.0 - a) + val * a
            if dmin <= 0.0:
                if olung[o] == 1:
                    lung = True
                elif olung[o] == -1:
                    lung = False
                if olabel[o] != 0:
                    lab = olabel[o]
    return v, lung, lab


@kernel("exact", parallel=True)
def _render_grid(
    img,
    lung,
    lab,
    start,
    origin,
    spacing,
    aff,
    tile,
    ptype,
    pparam,
    paabb,
    plip,
    pobj,
    ovalue,
    okind,
    olung,
    olabel,
    owidth,
    tk,
    tphase,
    tamp,
    tgrad,
    tcy,
    background,
):  # pragma: no cover - compiled
    """Render a box of the grid whose first voxel has global index ``start``.

    Work is split into tiles; each tile keeps only the primitives that can touch it
    (bounding-box overlap, plus a Lipschitz sphere test for tubes). Culling never drops a
    primitive with non-zero occupancy, and every voxel is computed from its global index
    alone, so the result does not depend on how the grid is split into slabs or tiles.
    """
    nz, ny, nx = img.shape
    tz, ty, tx = tile[0], tile[1], tile[2]
    ntz = (nz + tz - 1) // tz
    nty = (ny + ty - 1) // ty
    ntx = (nx + tx - 1) // tx
    npr = ptype.shape[0]
    for tid in prange(ntz * nty * ntx):
        a = tid // (nty * ntx)
        r = tid - a * (nty * ntx)
        b = r // ntx
        c = r - b * ntx
        k0 = a * tz
        k1 = min(nz, k0 + tz)
        j0 = b * ty
        j1 = min(ny, j0 + ty)
        i0 = c * tx
        i1 = min(nx, i0 + tx)
        # Scene-space corners of the tile (an affine image of a box).
        corners = np.empty((8, 3))
        for m in range(8):
            kk = (k0 if (m & 1) == 0 else k1 - 1) + start[0]
            jj = (j0 if (m & 2) == 0 else j1 - 1) + start[1]
            ii = (i0 if (m & 4) == 0 else i1 - 1) + start[2]
            pz = origin[0] + kk * spacing[0]
            py = origin[1] + jj * spacing[1]
            px = origin[2] + ii * spacing[2]
            for d in range(3):
                corners[m, d] = aff[d, 0] * pz + aff[d, 1] * py + aff[d, 2] * px + aff[d, 3]
        lo0 = lo1 = lo2 = 1e300
        hi0 = hi1 = hi2 = -1e300
        cz = cy = cx = 0.0
        for m in range(8):
            lo0 = min(lo0, corners[m, 0])
            hi0 = max(hi0, corners[m, 0])
            lo1 = min(lo1, corners[m, 1])
            hi1 = max(hi1, corners[m, 1])
            lo2 = min(lo2, corners[m, 2])
            hi2 = max(hi2, corners[m, 2])
            cz += corners[m, 0] / 8.0
            cy += corners[m, 1] / 8.0
            cx += corners[m, 2] / 8.0
        hd = 0.0
        for m in range(8):
            dz = corners[m, 0] - cz
            dy = corners[m, 1] - cy
            dx = corners[m, 2] - cx
            hd = max(hd, math.sqrt(dz * dz + dy * dy + dx * dx))
        eps = 1e-6
        cand = np.empty(npr, np.int64)
        nc = 0
        for p in range(npr):
            if (
                paabb[p, 1] < lo0 - eps
                or paabb[p, 0] > hi0 + eps
                or paabb[p, 3] < lo1 - eps
                or paabb[p, 2] > hi1 + eps
                or paabb[p, 5] < lo2 - eps
                or paabb[p, 4] > hi2 + eps
            ):
                continue
            if ptype[p] == 1:
                # Tube distance is Lipschitz(plip): far from the tile centre -> zero everywhere.
                dcen = _prim_dist(1, pparam[p], cz, cy, cx)
                if dcen - plip[p] * hd > 0.5 * owidth[pobj[p]] + 1e-3:
                    continue
            cand[nc] = p
            nc += 1
        for k in range(k0, k1):
            pz = origin[0] + (k + start[0]) * spacing[0]
            for j in range(j0, j1):
                py = origin[1] + (j + start[1]) * spacing[1]
                for i in range(i0, i1):
                    px = origin[2] + (i + start[2]) * spacing[2]
                    sz = aff[0, 0] * pz + aff[0, 1] * py + aff[0, 2] * px + aff[0, 3]
                    sy = aff[1, 0] * pz + aff[1, 1] * py + aff[1, 2] * px + aff[1, 3]
                    sx = aff[2, 0] * pz + aff[2, 1] * py + aff[2, 2] * px + aff[2, 3]
                    v, fl, lb = _shade(
                        sz,
                        sy,
                        sx,
                        cand,
                        nc,
                        ptype,
                        pparam,
                        paabb,
                        pobj,
                        ovalue,
                        okind,
                        olung,
                        olabel,
                        owidth,
                        tk,
                        tphase,
                        tamp,
                        tgrad,
                        tcy,
                        background,
                    )
                    img[k, j, i] = v
                    lung[k, j, i] = fl
                    lab[k, j, i] = lb


@kernel("exact")
def _lung_at_points(
    pts,
    ptype,
    pparam,
    paabb,
    pobj,
    ovalue,
    okind,
    olung,
    olabel,
    owidth,
    tk,
    tphase,
    tamp,
    tgrad,
    tcy,
    background,
):  # pragma: no cover - compiled
    """Lung-mask flag at arbitrary scene points (same compositing as the renderer)."""
    n = pts.shape[0]
    npr = ptype.shape[0]
    cand = np.arange(npr)
    out = np.empty(n, np.bool_)
    for q in range(n):
        _, fl, _ = _shade(
            pts[q, 0],
            pts[q, 1],
            pts[q, 2],
            cand,
            npr,
            ptype,
            pparam,
            paabb,
            pobj,
            ovalue,
            okind,
            olung,
            olabel,
            owidth,
            tk,
            tphase,
            tamp,
            tgrad,
            tcy,
            background,
        )
        out[q] = fl
    return out

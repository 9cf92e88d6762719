"""The hard chest phantom: the analytic chest of :class:`ChestScene` made hard the way real
CT is hard (nodule types, shapes and positions, dense vessel trees, fissures, scars,
atelectasis, slice thickness, reconstruction-kernel noise, field-of-view padding, a table).

The standard phantom is untouched: the hard scene reuses the same seeded anatomy and adds
its own objects, drawn from random streams of its own.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastct._validate import check_positive_int

from ._anatomy import _build_anatomy, _in_lung_field
from ._checks import (
    _check_affine,
    _check_nodule_ids,
    _check_range,
    _check_real,
    _check_seed,
    _resolve_grid,
)
from ._constants import _HU_MAX, _HU_MIN, _KIND_LUNG, _STREAM_ANATOMY, HU, SCENE_CENTER_MM
from ._hard_records import (
    NODULE_POSITIONS,
    NODULE_SHAPES,
    NODULE_TYPES,
    RECON_KERNELS,
    HardNodule,
    HardNoduleSpec,
    HardPhantom,
    HardPhantomPair,
)
from ._primitives import (
    _cone,
    _ellipsoid,
    _fibonacci_sphere,
    _Obj,
    _pack,
    _Packed,
    _random_rotation,
    _rotation,
    _segment_distance,
    _unit,
)
from ._render import _render_region
from ._scene import ChestScene

# Random streams of the hard scene (spawn keys of the seed, disjoint from the standard ones).
_H_VESSELS, _H_NODULES, _H_MIMICS, _H_LOOK, _H_NOISE, _H_PAIR = 101, 102, 103, 104, 105, 106

_BLOCK = 8  # output slices rendered per block (bounds the float scratch)

# Ranges calibrated on real chest CT (see docs/phantom_realism.rst and
# benchmarks/phantom_calibration.py): drawn per scan from the seed, never one scan's value.
_LUNG_HU_RANGE = (-885.0, -835.0)  # parenchyma base value (texture and vessels add to it)
_TEXTURE_GAIN_RANGE = (1.0, 2.0)  # x the standard plane-wave texture (about 12 HU)
# Noise std (HU) in soft tissue at 2.5 mm slices; scaled by sqrt(2.5 / thickness).
_NOISE_RANGE = {"soft": (8.0, 18.0), "sharp": (35.0, 70.0)}
# Noise power spectrum shape NPS(f) ~ f^a exp(-(f / fc)^2), f in cycles/mm.
_NPS_SHAPE = {"soft": (1.0, 0.25), "sharp": (1.5, 0.6)}
_TABLE_RADIUS_MM = 600.0


def _stream(seed: int, key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(key,))))


# -- vessels ------------------------------------------------------------------------------


def _grow_fine_vessels(
    rng: np.random.Generator, anat: dict, base_segs: np.ndarray, min_radius: float
) -> tuple[list[_Obj], np.ndarray]:
    """Continue the standard vessel trees from their thin ends down to ``min_radius`` mm."""
    objs, segs_all = [], []
    lungs = anat["lungs"]
    for side in ("right", "left"):
        c = lungs[side][0]
        sgn = -1.0 if side == "right" else 1.0
        mine = base_segs[np.sign(base_segs[:, 5] - SCENE_CENTER_MM[2]) == sgn]
        # Leaves: segment ends that start no other segment.
        starts = {tuple(np.round(s, 6)) for s in mine[:, 0:3]}
        queue = []
        for s in mine:
            if tuple(np.round(s[3:6], 6)) in starts:
                continue
            d = _unit(s[3:6] - s[0:3])
            queue.append((s[3:6].copy(), d, float(s[7])))
        segs: list[tuple[np.ndarray, np.ndarray, float, float]] = []
        head = 0
        while head < len(queue) and len(segs) < 2400:
            start, direction, radius = queue[head]
            head += 1
            for f, ang in (
                (rng.uniform(0.72, 0.86), rng.uniform(15, 35)),
                (0.75, rng.uniform(35, 65)),
            ):
                r0 = radius * f
                if r0 < min_radius:
                    continue
                n = _unit(np.cross(direction, rng.normal(size=3)))
                d = _unit(_rotation(n, math.radians(ang)) @ direction + 0.15 * _unit(start - c))
                length = r0 * rng.uniform(7.0, 11.0) + 3.0
                end = start + length * d
                if not _in_lung_field(end, side, anat, limit=0.97):
                    end = start + 0.5 * length * d
                    if not _in_lung_field(end, side, anat, limit=0.97):
                        continue
                r1 = max(min_radius, 0.9 * r0)
                segs.append((start, end, r0, r1))
                queue.append((end, d, r1))
        objs.append(
            _Obj(
                f"{side}_fine_vessels",
                tuple(_cone(a, b, r0, r1) for a, b, r0, r1 in segs),
                HU["soft_tissue"],
            )
        )
        segs_all += [[*a, *b, r0, r1] for a, b, r0, r1 in segs]
    return objs, np.asarray(segs_all, dtype=float).reshape(-1, 8)


# -- fissures -----------------------------------------------------------------------------


def _fissures(rng: np.random.Generator, anat: dict) -> tuple[tuple[str, tuple, tuple], ...]:
    """Fissure planes ``(side, point, unit normal)``: both oblique fissures and the right
    horizontal fissure (which exists only anterior to the right oblique one)."""
    out = []
    for side in ("right", "left"):
        c, s = anat["lungs"][side]
        tilt = math.radians(rng.uniform(45.0, 60.0))
        # The oblique fissure runs from posterior-superior to anterior-inferior.
        sgn = -1.0 if side == "right" else 1.0
        normal = _unit((math.cos(tilt), -math.sin(tilt), sgn * rng.uniform(0.15, 0.35)))
        point = c + np.array([rng.uniform(-0.1, 0.1) * s[0], 0.1 * s[1], 0.0])
        out.append((side, tuple(point), tuple(normal)))
    c, s = anat["lungs"]["right"]
    normal = _unit((1.0, rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)))
    out.append(("right-horizontal", tuple(c + np.array([0.2 * s[0], 0.0, 0.0])), tuple(normal)))
    return tuple(out)


def _fissure_distance(fissures, z, y, x):
    """Unsigned distance (mm) to the nearest fissure sheet at scene points."""
    best = np.full(np.shape(z), np.inf)
    oblique_right = None
    for side, p, n in fissures:
        d = (z - p[0]) * n[0] + (y - p[1]) * n[1] + (x - p[2]) * n[2]
        if side == "right":
            oblique_right = d
            sel = x < SCENE_CENTER_MM[2]
        elif side == "left":
            sel = x >= SCENE_CENTER_MM[2]
        else:
            # Horizontal fissure: right lung, anterior (above) the oblique fissure only.
            sel = (x < SCENE_CENTER_MM[2]) & (oblique_right > 0)
        best = np.where(sel, np.minimum(best, np.abs(d)), best)
    return best


# -- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Look:
    """Per-scan acquisition settings (drawn or given)."""

    slice_thickness: float
    recon_kernel: str
    noise_hu: float
    padding_hu: float | None
    fov_diameter_mm: float | None
    table: bool


# Random mixes (None): solid nodules, round shapes and free positions are the commonest.
_MIX = {
    "nodule_types": (0.4, 0.2, 0.2, 0.2),
    "nodule_shapes": (0.45, 0.3, 0.25),
    "nodule_positions": (0.35, 0.25, 0.25, 0.15),
}


def _choose(value, options, name: str, rng: np.random.Generator, n: int) -> list[str]:
    if value is None:
        p = np.asarray(_MIX.get(name, np.full(len(options), 1.0 / len(options))))
        return [str(options[int(rng.choice(len(options), p=p))]) for _ in range(n)]
    vals = [value] if isinstance(value, str) else list(value)
    if not vals:
        raise ValueError(f"{name} must not be empty")
    for v in vals:
        if v not in options:
            raise ValueError(f"{name} values must be in {options}, got {v!r}")
    return [vals[k % len(vals)] for k in range(n)]


# -- the scene ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HardScene:
    """The hard chest: :class:`ChestScene` anatomy plus the hard-mode objects.

    :func:`hard_scene` builds one (cached per arguments); :func:`hard_chest_phantom` and
    :func:`hard_phantom_pair` render it. Its geometry is public for tests and training
    code: ``nodules`` (:class:`HardNoduleSpec`), ``fissures`` (``(name, point, unit
    normal)`` planes, scene mm), ``base`` (the :class:`ChestScene` with the standard
    anatomy and vessel segments), ``fine_segments`` (the added vessels, rows ``z0 y0 x0
    z1 y1 x1 r0 r1``), ``mimics``, ``table_top_mm`` and ``lung_hu``.
    """

    seed: int
    base: ChestScene
    pre: tuple  # anatomy painted under everything hard (body, lungs, heart, aorta)
    vessels: tuple
    mimic_objs: tuple
    post: tuple  # airways and bones, painted last
    nodules: tuple
    mimics: tuple
    fissures: tuple
    fine_segments: np.ndarray
    table_top_mm: float
    lung_hu: float

    def with_nodules(self, nodules: Sequence[HardNoduleSpec]) -> HardScene:
        """The same chest with other nodules (unique positive ids)."""
        return dataclasses.replace(self, nodules=_check_nodule_ids(nodules))

    @functools.cached_property
    def _packed(self) -> _Packed:
        halo = [o for n in self.nodules for o in n._halo_objects()]
        solid = [o for n in self.nodules for o in n._solid_objects()]
        objs = list(self.pre) + halo + list(self.vessels) + list(self.mimic_objs) + solid
        return _pack(objs + list(self.post))

    @property
    def texture(self) -> tuple:
        return self.base.texture

    def _lung_ok(self, pts: np.ndarray) -> bool:
        return self.base._lung_ok(pts)

    # -- rendering ---------------------------------------------------------------------

    def _render(
        self,
        shape: Sequence[int],
        spacing: Sequence[float],
        origin: Sequence[float],
        look: _Look,
        *,
        transform: np.ndarray | None = None,
        noise_seed: Any = None,
        status: dict[int, str] | None = None,
    ) -> HardPhantom:
        shape = tuple(int(v) for v in shape)
        spc = np.asarray(spacing, dtype=float)
        org = np.asarray(origin, dtype=float)
        aff = np.eye(4) if transform is None else np.asarray(transform, dtype=float)
        nz, ny, nx = shape
        thick = look.slice_thickness
        # Sub-slices averaged per slice: 1 up to 1.5 mm, 2 up to 3 mm, else 3 (<= 1.7 mm apart).
        nsub = 1 if thick <= 1.5 else 2 if thick <= 3.0 else 3
        offsets = (np.arange(nsub) - (nsub - 1) / 2.0) * (thick / nsub)
        image = np.empty(shape, np.int16)
        lung = np.empty(shape, np.bool_)
        lab = np.empty(shape, np.int32)
        table = _table_layer(self, ny, nx, spc, org) if look.table else None
        fov = _fov_mask(ny, nx, spc, org, look.fov_diameter_mm)
        entropy = (self.seed, _H_NOISE) if noise_seed is None else noise_seed
        pk = self._packed
        for a in range(0, nz, _BLOCK):
            b = min(nz, a + _BLOCK)
            acc = np.zeros((b - a, ny, nx), np.float64)
            acc_lab = np.zeros((b - a, ny, nx), np.int32)
            for off in offsets:
                o = org + np.array([off, 0.0, 0.0])
                img, lm, lb = _render_region(self, pk, spc, o, aff, (a, b, 0, ny, 0, nx))
                img = img.astype(np.float64)
                if self.fissures:
                    # Only parenchyma voxels can show a fissure: evaluate those alone.
                    sel = np.flatnonzero(lm & (lb == 0) & (img < -600.0))
                    kk, jj, ii = np.unravel_index(sel, img.shape)
                    pz = o[0] + (kk + a) * spc[0]
                    py = org[1] + jj * spc[1]
                    px = org[2] + ii * spc[2]
                    sz = aff[0, 0] * pz + aff[0, 1] * py + aff[0, 2] * px + aff[0, 3]
                    sy = aff[1, 0] * pz + aff[1, 1] * py + aff[1, 2] * px + aff[1, 3]
                    sx = aff[2, 0] * pz + aff[2, 1] * py + aff[2, 2] * px + aff[2, 3]
                    dist = _fissure_distance(self.fissures, sz, sy, sx)
                    # A 0.5 mm pleural sheet at -100 HU, spread over one voxel.
                    w = float(np.mean(spc[1:]))
                    occ = min(1.0, 0.5 / w) * np.clip(1.0 - dist / w, 0.0, 1.0)
                    flat = img.reshape(-1)
                    flat[sel] += occ * (-100.0 - flat[sel])
                acc += img
                if off == offsets[(nsub - 1) // 2]:  # the sub-slice nearest the centre
                    lung[a:b] = lm
                # A nodule labels every voxel whose slab it crosses (at the voxel's in-plane
                # centre), so a small nodule between slice centres keeps its truth mask.
                hit = (lb > 0) & (acc_lab == 0)
                acc_lab[hit] = lb[hit]
            lab[a:b] = np.where(lung[a:b], acc_lab, 0)
            acc /= nsub
            if table is not None:
                occ, val = table
                air = np.clip((-900.0 - acc) / 50.0, 0.0, 1.0)
                acc += occ[None] * air * (val[None] - acc)
            for k in range(a, b):
                sl = acc[k - a]
                if look.noise_hu > 0:
                    sl = sl + _nps_noise(entropy, k, ny, nx, spc, look)
                sl = np.clip(np.rint(sl), _HU_MIN, _HU_MAX)
                if look.padding_hu is not None:
                    sl = np.where(fov, sl, look.padding_hu)
                image[k] = sl
        if look.padding_hu is not None:
            lung &= fov[None]
            lab[:, ~fov] = 0
        nodules = [self._measure(n, lab, spc, aff, status) for n in self.nodules]
        inv = np.linalg.inv(aff)
        mimics = [
            {**m, "center_mm": tuple(float(v) for v in inv[:3, :3] @ m["center_mm"] + inv[:3, 3])}
            for m in self.mimics
        ]
        settings = {
            "slice_thickness": float(thick),
            "recon_kernel": look.recon_kernel,
            "noise_hu": float(look.noise_hu),
            "padding_hu": look.padding_hu,
            "fov_diameter_mm": _fov_diameter(ny, nx, spc, look.fov_diameter_mm),
            "table": float(self.table_top_mm) if look.table else None,
            "fissures": len(self.fissures),
            "lung_hu": float(self.lung_hu),
        }
        return HardPhantom(
            image,
            tuple(float(v) for v in spc),
            tuple(float(v) for v in org),
            lung,
            lab,
            nodules,
            (0, nz),
            aff.copy(),
            mimics=mimics,
            settings=settings,
            fov_mask=fov,
        )

    def _measure(self, nod: HardNoduleSpec, lab, spc, aff, status) -> HardNodule:
        inv = np.linalg.inv(aff)
        scale = abs(np.linalg.det(inv[:3, :3])) ** (1.0 / 3.0)
        m, core = _spec_measure(nod)
        solid = core if nod.type == "part-solid" else None if nod.type == "ground-glass" else m
        center = inv[:3, :3] @ np.asarray(nod.center_mm) + inv[:3, 3]
        vol = m["volume"] * scale**3
        count = int(np.count_nonzero(lab == nod.id))
        return HardNodule(
            id=nod.id,
            center_mm=tuple(float(v) for v in center),
            diameter_mm=float((6.0 * vol / math.pi) ** (1.0 / 3.0)),
            kind=nod.type,
            volume_mm3=float(vol),
            analytic_volume_mm3=float(vol),
            solid_diameter_mm=0.0 if solid is None else float(solid["mean_axial"] * scale),
            n_voxels=count,
            type=nod.type,
            shape=nod.shape,
            position=nod.position,
            hu=float(nod.hu),
            mean_axial_diameter_mm=float(m["mean_axial"] * scale),
            long_axis_mm=float(m["long"] * scale),
            short_axis_mm=float(m["short"] * scale),
            solid_core_diameter_mm=0.0 if solid is None else float(solid["mean_axial"] * scale),
            status=None if status is None else status.get(nod.id),
        )


# Texture tables for renders that need none (the measuring grids): same dtypes as a scene's.
_NO_TEXTURE = types.SimpleNamespace(
    texture=(np.zeros((0, 3)), np.zeros(0), np.zeros(0), 0.0, SCENE_CENTER_MM[1])
)


@functools.lru_cache(maxsize=1024)
def _spec_measure(spec: HardNoduleSpec) -> tuple[dict[str, float], dict[str, float] | None]:
    """Fine-grid measurements of a nodule's body and of its core (cached per spec)."""
    body = _shape_measure(spec.body_prims())
    core = _shape_measure(spec.core_prims()) if spec.core is not None else None
    return body, core


def _shape_measure(prims) -> dict[str, float]:
    """Volume and axial diameters of a union of primitives, sampled on a fine grid."""
    from scipy.spatial import ConvexHull

    pk = _pack([_Obj("m", tuple(prims), 1.0, label=1, edge=0.0)])
    lo = pk.paabb[:, 0::2].min(axis=0)
    hi = pk.paabb[:, 1::2].max(axis=0)
    h = float(np.clip((hi - lo).max() / 48.0, 0.05, 0.5))
    n = np.ceil((hi - lo) / h).astype(int) + 3
    org = lo - h
    region = (0, n[0], 0, n[1], 0, n[2])
    _, _, lab = _render_region(_NO_TEXTURE, pk, np.full(3, h), org, np.eye(4), region)
    mask = lab > 0
    vol = float(np.count_nonzero(mask)) * h**3
    best = (0.0, 0.0)
    for k in range(mask.shape[0]):
        pts = np.argwhere(mask[k])
        if len(pts) < 3:
            continue
        if len(pts) >= 4 and np.linalg.matrix_rank(pts - pts[0]) == 2:
            pts = pts[ConvexHull(pts).vertices]
        dif = pts[:, None, :] - pts[None, :, :]
        d2 = (dif**2).sum(axis=-1)
        i, j = np.unravel_index(np.argmax(d2), d2.shape)
        long_ = math.sqrt(d2[i, j]) + 1.0
        if long_ <= best[0]:
            continue
        u = (pts[j] - pts[i]) / max(1e-12, math.sqrt(d2[i, j]))
        proj = pts @ np.array([-u[1], u[0]])
        best = (long_, float(proj.max() - proj.min()) + 1.0)
    long_mm, short_mm = best[0] * h, best[1] * h
    return {
        "volume": vol,
        "long": long_mm,
        "short": short_mm,
        "mean_axial": 0.5 * (long_mm + short_mm),
    }


def _fov_diameter(ny, nx, spc, fov) -> float:
    return float(min(ny * spc[1], nx * spc[2]) if fov is None else fov)


def _fov_mask(ny, nx, spc, org, fov) -> np.ndarray:
    """Circular reconstruction field of view centred on the grid (in-plane, grid frame)."""
    r = 0.5 * _fov_diameter(ny, nx, spc, fov)
    y = (np.arange(ny) - (ny - 1) / 2.0) * spc[1]
    x = (np.arange(nx) - (nx - 1) / 2.0) * spc[2]
    return (y[:, None] ** 2 + x[None, :] ** 2) <= r * r


def _table_layer(scene: HardScene, ny, nx, spc, org) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy and HU of a curved carbon-fibre table (grid frame, the same every slice):
    two 1.5 mm skins of +250 HU around a -900 HU foam core, 40 mm thick."""
    y = org[1] + np.arange(ny) * spc[1]
    x = org[2] + np.arange(nx) * spc[2]
    cy = scene.table_top_mm - _TABLE_RADIUS_MM
    rho = np.sqrt((y[:, None] - cy) ** 2 + (x[None, :] - SCENE_CENTER_MM[2]) ** 2)
    w = float(np.mean(spc[1:]))

    def band(r0: float, r1: float) -> np.ndarray:
        return np.clip((rho - r0) / w + 0.5, 0.0, 1.0) - np.clip((rho - r1) / w + 0.5, 0.0, 1.0)

    r = _TABLE_RADIUS_MM
    skins = band(r, r + 1.5) + band(r + 38.5, r + 40.0)
    foam = band(r + 1.5, r + 38.5)
    side = np.clip((210.0 - np.abs(x[None, :] - SCENE_CENTER_MM[2])) / w + 0.5, 0.0, 1.0)
    occ = (skins + foam) * side
    val = np.where(occ > 0, (250.0 * skins - 900.0 * foam) / np.maximum(skins + foam, 1e-9), 0.0)
    return occ, val


def _nps_noise(entropy, k: int, ny: int, nx: int, spc, look: _Look) -> np.ndarray:
    """Correlated noise of one slice: white noise filtered to the kernel's NPS shape."""
    key = entropy if isinstance(entropy, tuple) else (entropy,)
    ss = np.random.SeedSequence([int(v) for v in key], spawn_key=(k,))
    white = np.random.Generator(np.random.PCG64(ss)).standard_normal((ny, nx))
    fy = np.fft.fftfreq(ny, d=spc[1])
    fx = np.fft.fftfreq(nx, d=spc[2])
    f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    a, fc = _NPS_SHAPE[look.recon_kernel]
    filt = np.sqrt(f**a * np.exp(-((f / fc) ** 2)))
    filt /= math.sqrt(float(np.mean(filt**2)))
    return np.fft.ifft2(np.fft.fft2(white) * filt).real * look.noise_hu


# -- scene generation --------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _hard_base(seed: int) -> HardScene:
    """The nodule-free hard chest for ``seed`` (cached)."""
    base = ChestScene.generate(seed, n_nodules=0)
    anat = _build_anatomy(_stream(seed, _STREAM_ANATOMY))
    look = _stream(seed, _H_LOOK)
    lung_hu = float(look.uniform(*_LUNG_HU_RANGE))
    gain = float(look.uniform(*_TEXTURE_GAIN_RANGE))
    tex = base.texture
    base = dataclasses.replace(base, texture=(tex[0], tex[1], tex[2] * gain, tex[3], tex[4]))
    objs = list(base.anatomy)
    names = [o.name for o in objs]
    first_vessel = names.index("right_vessels")
    first_post = names.index("airway_wall")
    pre = [o._replace(value=lung_hu) if o.kind == _KIND_LUNG else o for o in objs[:first_vessel]]
    vessels = objs[first_vessel:first_post]
    fine, fine_segs = _grow_fine_vessels(
        _stream(seed, _H_VESSELS), anat, base.vessel_segments, 0.35
    )
    rng = _stream(seed, _H_MIMICS)
    fissures = _fissures(rng, anat)
    # The patient lies on the table: its top touches the back of the body, give or take.
    body_back = SCENE_CENTER_MM[1] + 5.0 + 125.0 * 1.03
    table_top = body_back + float(rng.uniform(0.0, 6.0))
    scene = HardScene(
        seed,
        base,
        tuple(pre),
        tuple(vessels) + tuple(fine),
        (),
        tuple(objs[first_post:]),
        (),
        (),
        fissures,
        fine_segs,
        table_top,
        lung_hu,
    )
    mimic_objs, mimics = _build_mimics(scene, rng, anat)
    segs = np.concatenate([base.vessel_segments[:, :7], fine_segs[:, :7]])
    bif = _bifurcations(segs)
    mimics += bif
    return dataclasses.replace(scene, mimic_objs=tuple(mimic_objs), mimics=tuple(mimics))


def _bifurcations(segs: np.ndarray) -> list[dict]:
    """Branch points of vessels at least 1.5 mm in radius (nodule-like on axial slices)."""
    out = []
    seen: dict[tuple, int] = {}
    for s in segs:
        key = tuple(np.round(s[0:3], 4))
        seen[key] = seen.get(key, 0) + 1
    rad = {tuple(np.round(s[3:6], 4)): s[6] for s in segs}
    for key, count in seen.items():
        if count >= 2 and rad.get(key, 0.0) >= 1.5:
            out.append(
                {"type": "bifurcation", "center_mm": np.asarray(key), "size_mm": 2.0 * rad[key]}
            )
    return out


def _build_mimics(scene: HardScene, rng: np.random.Generator, anat: dict):
    objs, recs = [], []
    n_scar = int(rng.integers(1, 4))
    n_atel = int(rng.integers(1, 3))
    for kind, count in (("scar", n_scar), ("atelectasis", n_atel)):
        made = 0
        for _ in range(200):
            if made == count:
                break
            side = ("right", "left")[int(rng.integers(2))]
            c, s = anat["lungs"][side]
            if kind == "atelectasis":
                # Lower lobes, towards the back: plate-like dense bands.
                p = c + s * np.array(
                    [rng.uniform(-0.7, -0.2), rng.uniform(0.0, 0.6), rng.uniform(-0.5, 0.5)]
                )
            else:
                p = c + s * rng.uniform(-0.6, 0.6, 3)
            if not scene._lung_ok(p[None] + 6.0 * _fibonacci_sphere(24)):
                continue
            if kind == "scar":
                value = float(rng.uniform(-250.0, 20.0))
                arms = []
                for _k in range(int(rng.integers(3, 6))):
                    d = _unit(rng.normal(size=3))
                    arms.append(
                        _cone(p, p + rng.uniform(6.0, 16.0) * d, rng.uniform(0.8, 1.6), 0.4)
                    )
                objs.append(_Obj(f"scar{made}", tuple(arms), value))
                size = 20.0
            else:
                value = float(rng.uniform(-350.0, 0.0))
                semi = np.array(
                    [rng.uniform(1.0, 2.5), rng.uniform(12.0, 25.0), rng.uniform(6.0, 15.0)]
                )
                rot = _rotation(_unit(rng.normal(size=3)), rng.uniform(0.0, 0.5))
                objs.append(
                    _Obj(f"atelectasis{made}", (_ellipsoid(p, semi, rot),), value, edge=1.5)
                )
                size = float(2.0 * semi.max())
            recs.append({"type": kind, "center_mm": p, "size_mm": size, "hu": value})
            made += 1
    return objs, recs


def _place_hard_nodules(
    scene: HardScene,
    rng: np.random.Generator,
    types: list[str],
    shapes: list[str],
    positions: list[str],
    drange: tuple[float, float],
    existing: Sequence[HardNoduleSpec],
    first_id: int,
    accept=None,
) -> list[HardNoduleSpec]:
    n = len(types)
    lo, hi = drange
    diam = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    out: dict[int, HardNoduleSpec] = {}
    placed = list(existing)
    vs = np.concatenate([scene.base.vessel_segments[:, :7], scene.fine_segments[:, :7]])
    big = vs[vs[:, 6] >= 1.0]
    carriers = scene.base.vessel_segments
    carriers = carriers[(carriers[:, 6] >= 1.0) & (carriers[:, 6] <= 3.0)]
    aw = scene.base.airway_segments
    for k in sorted(range(n), key=lambda k: -diam[k]):
        t, shp, pos = types[k], shapes[k], positions[k]
        d = float(diam[k]) if t != "calcified" else float(min(diam[k], 12.0))
        r = d / 2.0
        spec = None
        for attempt in range(600):
            # A nodule that does not fit after 150 tries is made 20 % smaller, and so on.
            r = 0.5 * max(3.0, d * 0.8 ** (attempt // 150))
            rot = _random_rotation(rng)
            semi = r * np.array([1.0, rng.uniform(0.8, 1.0), rng.uniform(0.75, 1.0)])
            side = int(rng.integers(2))
            box_lo, box_hi = scene.base.lung_boxes[side]
            if pos == "free" or pos == "juxtavascular" and len(carriers) == 0:
                center = rng.uniform(box_lo, box_hi)
            elif pos == "juxtapleural":
                # March outwards from the lung centre to the pleura, then step back in.
                lc = 0.5 * (box_lo + box_hi)
                phi = rng.uniform(-0.9, 0.9) * math.pi
                sgn = -1.0 if side == 0 else 1.0
                d3 = _unit(
                    (rng.uniform(-0.3, 0.3), math.cos(phi), sgn * abs(math.sin(phi)) + 0.3 * sgn)
                )
                start = lc + np.array(
                    [rng.uniform(-0.6, 0.6) * (box_hi[0] - box_lo[0]) / 2.0, 0.0, 0.0]
                )
                steps = start[None] + np.arange(0.0, 200.0, 1.0)[:, None] * d3[None]
                inside = _lung_flags(scene, steps)
                if not inside[0]:
                    continue
                edge = int(np.argmin(inside)) if not inside.all() else len(steps) - 1
                center = steps[edge] - d3 * r * rng.uniform(0.4, 0.7)
            elif pos == "juxtavascular":
                s = carriers[int(rng.integers(len(carriers)))]
                a, b = s[0:3], s[3:6]
                tt = rng.uniform(0.2, 0.8)
                axis = _unit(b - a)
                perp = _unit(np.cross(axis, rng.normal(size=3)))
                rv = s[6] + tt * (s[7] - s[6])
                center = a + tt * (b - a) + perp * (rv + r * rng.uniform(0.5, 0.85))
            else:  # perifissural: on a fissure sheet, flattened along its normal
                fis = scene.fissures[int(rng.integers(len(scene.fissures)))]
                fside = 0 if fis[0].startswith("right") else 1
                box_lo, box_hi = scene.base.lung_boxes[fside]
                p = rng.uniform(box_lo, box_hi)
                nrm = np.asarray(fis[2])
                center = p - ((p - fis[1]) @ nrm) * nrm
                if _fissure_distance(scene.fissures, *center[:, None])[0] > 1e-6:
                    continue  # the horizontal fissure's half-plane was missed
                semi = r * np.array([rng.uniform(0.5, 0.7), 1.0, rng.uniform(0.8, 1.0)])
                other = _unit(np.cross(nrm, rng.normal(size=3)))
                rot = np.stack([nrm, other, np.cross(nrm, other)])
                center = center + nrm * rng.uniform(-0.2, 0.2) * semi[0]
            spec = _make_spec(rng, first_id + k, center, t, shp, pos, semi, rot)
            if not _fits_hard(scene, spec, placed, big, aw, pos):
                spec = None
                continue
            if accept is not None and not accept(
                np.asarray(spec.center_mm), spec.bounding_radius_mm
            ):
                spec = None
                continue
            break
        if spec is None:
            raise ValueError(
                f"could not place a {d:.1f} mm {t} {shp} {pos} nodule; reduce n_nodules or "
                f"diameter_range"
            )
        out[k] = spec
        placed.append(spec)
    return [out[k] for k in range(n)]


def _lung_flags(scene: HardScene, pts: np.ndarray) -> np.ndarray:
    return scene.base._lung_flags(pts, -1000.0)


def _make_spec(rng, nid, center, t, shp, pos, semi, rot) -> HardNoduleSpec:
    c = np.asarray(center, dtype=float)
    lobes = [(c, semi)]
    if shp == "lobulated":
        for _ in range(int(rng.integers(3, 6))):
            u = _unit(rng.normal(size=3))
            lobes.append(
                (c + rot.T @ (u * semi * rng.uniform(0.6, 0.8)), semi * rng.uniform(0.4, 0.6))
            )
    spicules = []
    if shp == "spiculated":
        for _ in range(int(rng.integers(6, 14))):
            u = _unit(rng.normal(size=3))
            surf = c + rot.T @ (u * semi * 0.85)
            dirn = _unit(surf - c)
            length = float(semi.max() * rng.uniform(0.6, 1.4) + 2.0)
            spicules.append((surf, surf + length * dirn, float(rng.uniform(0.7, 1.3)), 0.3))
    hu = {
        "solid": rng.uniform(0.0, 60.0),
        "ground-glass": rng.uniform(-750.0, -300.0),
        "part-solid": rng.uniform(-700.0, -350.0),
        "calcified": rng.uniform(250.0, 900.0),
    }[t]
    core = None
    if t == "part-solid":
        frac = rng.uniform(0.3, 0.6)
        u = _unit(rng.normal(size=3)) * rng.uniform(0.0, 0.4 * (1.0 - frac))
        core = (
            tuple(float(v) for v in c + rot.T @ (u * semi)),
            tuple(float(v) for v in semi * frac),
        )
    reach = max(
        [float(np.linalg.norm(p - c) + np.max(s)) for p, s in lobes]
        + [float(np.linalg.norm(np.asarray(b) - c)) for _, b, _, _ in spicules]
    )
    return HardNoduleSpec(
        id=nid,
        center_mm=tuple(float(v) for v in c),
        type=t,
        shape=shp,
        position=pos,
        hu=float(hu),
        rotation=tuple(tuple(float(v) for v in row) for row in rot),
        lobes=tuple((tuple(float(v) for v in p), tuple(float(v) for v in s)) for p, s in lobes),
        spicules=tuple(
            (tuple(map(float, a)), tuple(map(float, b)), r0, r1) for a, b, r0, r1 in spicules
        ),
        core=core,
        core_hu=float(rng.uniform(0.0, 50.0)),
        bounding_radius_mm=reach,
    )


def _body_radius(spec: HardNoduleSpec) -> float:
    """Reach of the nodule's body (lobes, not spicules) from its centre."""
    c = np.asarray(spec.center_mm)
    return max(float(np.linalg.norm(np.asarray(p) - c) + max(s)) for p, s in spec.lobes)


def _fits_hard(scene, spec: HardNoduleSpec, placed, big_vessels, airways, pos: str) -> bool:
    """Placement test: clear of other nodules (with room to grow) and airways; free nodules
    clear of vessels; the body inside the lung, except a juxtapleural one, which crosses
    the pleura (spicules may leave the lung)."""
    c = np.asarray(spec.center_mm)
    r = float(max(max(s) for _, s in spec.lobes))
    rb = _body_radius(spec)
    growth = 1.36  # room for a 2.5x volume growth
    for o in placed:
        if np.linalg.norm(c - o.center_mm) <= growth * (rb + _body_radius(o)) + 2.0:
            return False
    if np.any(_segment_distance(c, airways[:, :3], airways[:, 3:6]) <= rb + airways[:, 6] + 1.0):
        return False
    if pos == "free" and np.any(
        _segment_distance(c, big_vessels[:, :3], big_vessels[:, 3:6]) <= r + big_vessels[:, 6] + 0.5
    ):
        return False
    if pos == "juxtapleural":
        # The centre and the inner part in the lung, but the body crosses the pleura.
        inner = c[None] + 0.35 * r * _fibonacci_sphere(32)
        outer = _lung_flags(scene, c[None] + 1.05 * r * _fibonacci_sphere(96))
        return scene._lung_ok(np.concatenate([c[None], inner])) and not outer.all()
    pts = np.concatenate([c[None], c + (rb + 0.5) * _fibonacci_sphere(96)])
    return scene._lung_ok(pts)


# -- public generators -------------------------------------------------------------------


def _resolve_look(
    seed: int,
    slice_thickness,
    recon_kernel,
    noise_hu,
    padding_hu,
    fov_diameter_mm,
    table,
) -> _Look:
    rng = _stream(seed, _H_LOOK + 1000)
    if slice_thickness is None:
        from ._hard_records import SLICE_THICKNESS_PRESETS

        thick = float(SLICE_THICKNESS_PRESETS[int(rng.integers(len(SLICE_THICKNESS_PRESETS)))])
    else:
        thick = _check_real(slice_thickness, "slice_thickness")
        if not 1.0 <= thick <= 5.0:
            raise ValueError(f"slice_thickness must be in [1, 5] mm, got {thick}")
    if recon_kernel is None:
        recon = RECON_KERNELS[int(rng.integers(2))]
    elif recon_kernel not in RECON_KERNELS:
        raise ValueError(
            f"recon_kernel must be one of {RECON_KERNELS} or None, got {recon_kernel!r}"
        )
    else:
        recon = recon_kernel
    draw = float(rng.uniform(*_NOISE_RANGE[recon]))
    if noise_hu is None:
        noise = draw * math.sqrt(2.5 / thick)
    else:
        noise = _check_real(noise_hu, "noise_hu", minimum=0.0)
    if padding_hu is not None:
        padding_hu = _check_real(padding_hu, "padding_hu")
        if padding_hu not in (-2048.0, -3024.0, -1024.0, -1000.0):
            raise ValueError(
                f"padding_hu must be -2048, -3024, -1024, -1000 or None, got {padding_hu}"
            )
    if fov_diameter_mm is not None:
        fov_diameter_mm = _check_real(fov_diameter_mm, "fov_diameter_mm", minimum=0.0, strict=True)
    if not isinstance(table, bool):
        raise TypeError(f"table must be True or False, got {type(table).__name__}")
    return _Look(thick, recon, noise, padding_hu, fov_diameter_mm, table)


def _hard_grid(size, shape, spacing, origin, thick):
    shp, spc, org = _resolve_grid(size, shape, spacing, origin)
    if spacing is None:
        # z spacing follows the slice thickness over the same 300 mm.
        nz = shp[0] if shape is not None else max(1, int(round(300.0 / thick)))
        spc = (300.0 / nz if shape is not None else thick, spc[1], spc[2])
        shp = (nz, shp[1], shp[2])
        if shape is None:
            org = _resolve_grid(size, shp, spc, origin)[2]
    return shp, spc, org


def hard_scene(
    seed: int = 0,
    *,
    n_nodules: int | None = None,
    nodule_types: str | Sequence[str] | None = None,
    nodule_shapes: str | Sequence[str] | None = None,
    nodule_positions: str | Sequence[str] | None = None,
    diameter_range: tuple[float, float] = (4.0, 25.0),
) -> HardScene:
    """The analytic hard chest of ``seed`` with its nodules, not rendered.

    Parameters are those of :func:`hard_chest_phantom`; the same arguments give the scene
    that function renders (cached).

    Returns
    -------
    HardScene

    Examples
    --------
    >>> from fastct.datasets import hard_scene
    >>> scene = hard_scene(0, n_nodules=2, nodule_types="ground-glass")
    >>> [n.type for n in scene.nodules], len(scene.fissures)
    (['ground-glass', 'ground-glass'], 3)
    """
    seed = _check_seed(seed)
    n = 6 if n_nodules is None else check_positive_int(n_nodules, "n_nodules", minimum=0)
    dr = _check_range(diameter_range, "diameter_range", 3.0, 30.0)
    rng = _stream(seed, _H_NODULES)
    types = _choose(nodule_types, NODULE_TYPES, "nodule_types", rng, n)
    shapes = _choose(nodule_shapes, NODULE_SHAPES, "nodule_shapes", rng, n)
    positions = _choose(nodule_positions, NODULE_POSITIONS, "nodule_positions", rng, n)
    return _hard_scene(seed, tuple(types), tuple(shapes), tuple(positions), dr)


@functools.lru_cache(maxsize=16)
def _hard_scene(seed, types, shapes, positions, dr) -> HardScene:
    scene = _hard_base(seed)
    rng = _stream(seed, _H_NODULES + 1000)
    nods = _place_hard_nodules(scene, rng, list(types), list(shapes), list(positions), dr, [], 1)
    return scene.with_nodules(nods)


def hard_chest_phantom(
    size: str = "small",
    *,
    seed: int = 0,
    n_nodules: int | None = None,
    nodule_types: str | Sequence[str] | None = None,
    nodule_shapes: str | Sequence[str] | None = None,
    nodule_positions: str | Sequence[str] | None = None,
    diameter_range: tuple[float, float] = (4.0, 25.0),
    slice_thickness: float | None = 2.5,
    recon_kernel: str | None = "soft",
    noise_hu: float | None = None,
    padding_hu: float | None = -2048.0,
    fov_diameter_mm: float | None = None,
    table: bool = True,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | float | None = None,
    origin: Sequence[float] | str | None = None,
) -> HardPhantom:
    """A chest CT phantom that is hard the way real CT is hard.

    The anatomy of :func:`chest_phantom` (same seed, same chest) with: nodules of four
    types, three shapes and four positions; dense vessel trees down to 0.35 mm radius
    (bifurcations mimic nodules on axial slices); lung fissures; scars and atelectasis
    bands; parenchyma HU and texture drawn per seed from ranges measured on real scans;
    partial-volume slices of a chosen thickness; noise with the power spectrum of a soft
    or sharp reconstruction kernel; padding outside a circular field of view; a CT table.

    Parameters
    ----------
    size : str
        Preset of the in-plane grid (see :data:`PRESETS`); the z spacing is
        ``slice_thickness`` over the standard 300 mm unless ``shape``/``spacing`` say
        otherwise.
    seed : int
        Seed of everything (anatomy, nodules, mimics, noise).
    n_nodules : int, optional
        Number of nodules (default 6).
    nodule_types, nodule_shapes, nodule_positions : str, sequence of str or None
        One value for all nodules, a sequence cycled over the nodules, or None for a
        random choice per nodule (types 40 % solid, 20 % each other; shapes 45 % round,
        30 % lobulated, 25 % spiculated; positions 35 % free, 25 % juxtapleural, 25 %
        juxtavascular, 15 % perifissural). Types :data:`NODULE_TYPES` (``'solid'``,
        ``'ground-glass'`` -750 to -300 HU, ``'part-solid'`` ground glass with a solid
        core, ``'calcified'`` 250-900 HU, at most 12 mm); shapes :data:`NODULE_SHAPES`;
        positions :data:`NODULE_POSITIONS` (``'juxtapleural'`` crosses the pleura,
        ``'juxtavascular'`` touches a 1-3 mm vessel, ``'perifissural'`` sits flattened on a
        fissure).
    diameter_range : (float, float)
        Nodule body diameters in mm, within [3, 30], drawn log-uniformly.
    slice_thickness : float or None
        Slice thickness in mm, in [1, 5] (presets :data:`SLICE_THICKNESS_PRESETS`);
        each slice averages the scene over its thickness. None draws a preset.
    recon_kernel : {'soft', 'sharp'} or None
        Noise texture; None draws one.
    noise_hu : float, optional
        Noise std in HU; default drawn from the kernel's calibrated range at 2.5 mm and
        scaled by ``sqrt(2.5 / slice_thickness)``.
    padding_hu : {-2048, -3024, -1024, -1000} or None
        Value outside the circular field of view; None for no padding.
    fov_diameter_mm : float, optional
        Diameter of the field of view (default: the inscribed circle of the grid).
    table : bool
        Draw the patient table below the back.
    shape, spacing, origin
        Grid overrides, as in :func:`chest_phantom`.

    Returns
    -------
    HardPhantom
        ``nodules`` are :class:`HardNodule` truth records, ``mimics`` the non-nodules,
        ``settings`` the acquisition settings.

    Examples
    --------
    >>> from fastct.datasets import hard_chest_phantom
    >>> ph = hard_chest_phantom("tiny", seed=0, n_nodules=2, slice_thickness=5.0)
    >>> ph.image.shape, ph.spacing[0]
    ((60, 48, 48), 5.0)
    >>> int(ph.image[0, 0, 0]), ph.settings["recon_kernel"]
    (-2048, 'soft')
    >>> sorted(ph.nodules[0].__dict__)[:3]
    ['analytic_volume_mm3', 'center_mm', 'diameter_mm']
    """
    look = _resolve_look(
        seed, slice_thickness, recon_kernel, noise_hu, padding_hu, fov_diameter_mm, table
    )
    shp, spc, org = _hard_grid(size, shape, spacing, origin, look.slice_thickness)
    scene = hard_scene(
        seed,
        n_nodules=n_nodules,
        nodule_types=nodule_types,
        nodule_shapes=nodule_shapes,
        nodule_positions=nodule_positions,
        diameter_range=diameter_range,
    )
    return scene._render(shp, spc, org, look)


_GROW, _SHRINK = (1.4, 2.5), (0.35, 0.7)


def hard_phantom_pair(
    size: str = "small",
    *,
    seed: int = 0,
    n_nodules: int | None = None,
    statuses: str | Sequence[str] | None = None,
    new_nodules: int = 1,
    nodule_types: str | Sequence[str] | None = None,
    nodule_shapes: str | Sequence[str] | None = None,
    nodule_positions: str | Sequence[str] | None = None,
    diameter_range: tuple[float, float] = (4.0, 25.0),
    slice_thickness: float | None = 2.5,
    recon_kernel: str | None = "soft",
    followup_recon_kernel: str | None = None,
    noise_hu: float | None = None,
    padding_hu: float | None = -2048.0,
    fov_diameter_mm: float | None = None,
    table: bool = True,
    transform: str | np.ndarray = "rigid",
    max_rotation_deg: float = 5.0,
    max_translation_mm: float = 10.0,
    shape: Sequence[int] | None = None,
    spacing: Sequence[float] | float | None = None,
    origin: Sequence[float] | str | None = None,
) -> HardPhantomPair:
    """Baseline and follow-up hard phantoms with growing, shrinking, new and resolved nodules.

    The baseline is ``hard_chest_phantom(...)`` with the same arguments. In the follow-up
    the patient has moved by ``M`` (rigid by default; table and field of view stay where
    the scanner has them), the noise is new, and every baseline nodule is
    ``'stable'``, ``'growing'`` (volume x1.4-2.5), ``'shrinking'`` (x0.35-0.7) or
    ``'resolved'`` (gone); ``new_nodules`` nodules appear (``'new'``, 4-10 mm).

    Parameters
    ----------
    statuses : str, sequence of str or None
        Status of each baseline nodule (cycled), from ``'stable'``, ``'growing'``,
        ``'shrinking'``, ``'resolved'``; None draws them.
    new_nodules : int
        Number of new nodules in the follow-up.
    followup_recon_kernel : {'soft', 'sharp'} or None
        Kernel of the follow-up (default: the baseline's).
    transform : {'rigid', 'similarity', 'identity'} or ndarray (4, 4)
        Patient motion ``M`` (baseline physical -> follow-up physical); 'similarity'
        adds a scale in [0.95, 1.05].
    max_rotation_deg, max_translation_mm : float
        Limits of the random rigid motion.
    Others
        As in :func:`hard_chest_phantom`.

    Returns
    -------
    HardPhantomPair
        ``changes`` lists every nodule id of either scan with its status.

    Examples
    --------
    >>> from fastct.datasets import hard_phantom_pair
    >>> pair = hard_phantom_pair("tiny", seed=0, n_nodules=2, statuses=["growing", "resolved"],
    ...                          slice_thickness=5.0)
    >>> [(c["id"], c["status"]) for c in pair.changes]
    [(1, 'growing'), (2, 'resolved'), (3, 'new')]
    """
    from ._pairs import random_transform

    look = _resolve_look(
        seed, slice_thickness, recon_kernel, noise_hu, padding_hu, fov_diameter_mm, table
    )
    fu_kernel = look.recon_kernel if followup_recon_kernel is None else followup_recon_kernel
    fu_look = _resolve_look(
        seed, look.slice_thickness, fu_kernel, noise_hu, padding_hu, fov_diameter_mm, table
    )
    shp, spc, org = _hard_grid(size, shape, spacing, origin, look.slice_thickness)
    scene = hard_scene(
        seed,
        n_nodules=n_nodules,
        nodule_types=nodule_types,
        nodule_shapes=nodule_shapes,
        nodule_positions=nodule_positions,
        diameter_range=diameter_range,
    )
    n_new = check_positive_int(new_nodules, "new_nodules", minimum=0)
    rng = _stream(seed, _H_PAIR)
    base = list(scene.nodules)
    opts = ("stable", "growing", "shrinking", "resolved")
    if statuses is None:
        stat = [str(rng.choice(opts, p=[0.3, 0.3, 0.25, 0.15])) for _ in base]
    else:
        stat = _choose(statuses, opts, "statuses", rng, len(base))
    followed, ratios = [], {}
    for nod, st in zip(base, stat):
        if st == "resolved":
            continue
        r = {"stable": 1.0, "growing": rng.uniform(*_GROW), "shrinking": rng.uniform(*_SHRINK)}[st]
        ratios[nod.id] = float(r)
        followed.append(nod.scaled(float(r) ** (1.0 / 3.0)))
    spc_a, org_a = np.asarray(spc), np.asarray(org)
    center = org_a + (np.asarray(shp) - 1) / 2.0 * spc_a
    if isinstance(transform, str):
        if transform not in ("rigid", "similarity", "identity"):
            raise ValueError(
                "transform must be 'rigid', 'similarity', 'identity' or a 4x4 matrix, "
                f"got {transform!r}"
            )
        m = np.eye(4)
        if transform != "identity":
            m = random_transform(
                rng,
                center,
                kind=transform,
                max_rotation_deg=max_rotation_deg,
                max_translation_mm=max_translation_mm,
            )
    else:
        m = _check_affine(transform, "transform")
    new_ids = []
    if n_new:
        types = _choose(nodule_types, NODULE_TYPES, "nodule_types", rng, n_new)
        new_specs = _place_hard_nodules(
            scene,
            rng,
            types,
            _choose(nodule_shapes, NODULE_SHAPES, "nodule_shapes", rng, n_new),
            _choose(nodule_positions, NODULE_POSITIONS, "nodule_positions", rng, n_new),
            (4.0, 10.0),
            base,
            max((n.id for n in base), default=0) + 1,
        )
        followed += new_specs
        new_ids = [s.id for s in new_specs]
    status = {n.id: st for n, st in zip(base, stat)}
    status.update({i: "new" for i in new_ids})
    fu_scene = scene.with_nodules(followed)
    noise_b = (seed, _H_NOISE)
    baseline = scene._render(shp, spc, org, look, noise_seed=noise_b, status=status)
    followup = fu_scene._render(
        shp,
        spc,
        org,
        fu_look,
        transform=np.linalg.inv(m),
        noise_seed=(seed, _H_NOISE, 1),
        status=status,
    )
    scale = abs(np.linalg.det(m[:3, :3])) ** (1.0 / 3.0)
    b_rec = {r.id: r for r in baseline.nodules if isinstance(r, HardNodule)}
    f_rec = {r.id: r for r in followup.nodules if isinstance(r, HardNodule)}
    vocab = {
        "growing": "grow",
        "shrinking": "shrink",
        "stable": "stable",
        "new": "new",
        "resolved": "resolved",
    }
    changes = []
    for nid in sorted(set(b_rec) | set(f_rec)):
        b, f = b_rec.get(nid), f_rec.get(nid)
        rec = b if b is not None else f
        assert rec is not None
        changes.append(
            {
                "id": nid,
                "status": status[nid],
                "change": vocab[status[nid]],
                "type": rec.type,
                "shape": rec.shape,
                "position": rec.position,
                "growth_ratio": ratios.get(nid) if b is not None and f is not None else None,
                "baseline": b,
                "followup": f,
                "center_baseline_mm": None if b is None else b.center_mm,
                "center_followup_mm": None if f is None else f.center_mm,
                "diameter_baseline_mm": None if b is None else b.mean_axial_diameter_mm,
                "diameter_followup_mm": None if f is None else f.mean_axial_diameter_mm,
                "volume_baseline_mm3": None if b is None else b.volume_mm3,
                "volume_followup_mm3": None if f is None else f.volume_mm3,
            }
        )
    return HardPhantomPair(baseline, followup, m, float(scale), changes, scene, fu_scene)  # type: ignore[arg-type]

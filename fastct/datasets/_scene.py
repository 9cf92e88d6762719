"""The analytic chest scene: generation from a seed, nodule placement, and rendering onto a
grid (whole, by z-range or slab by slab) with nodule measurements."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fastct._config import kernel_threads
from fastct._kernels.phantom import _lung_at_points
from fastct._validate import check_positive_int, check_spacing

from ._anatomy import _build_anatomy, _build_texture, _build_vessels
from ._checks import (
    _check_3d_shape,
    _check_affine,
    _check_entropy,
    _check_nodule_ids,
    _check_range,
    _check_real,
    _check_seed,
    _check_z_range,
    _resolve_origin,
)
from ._constants import (
    _BIG_VESSEL_MM,
    _BLOCK_SLICES,
    _CLEARANCE_MARGIN_MM,
    _DEFAULT_N_NODULES,
    _DIAMETER_LIMITS,
    _HU_MAX,
    _HU_MIN,
    _MAX_GROWTH_DIAMETER,
    _STREAM_ANATOMY,
    _STREAM_NODULES,
    _STREAM_TEXTURE,
    _STREAM_VESSELS,
    HU,
    SCENE_CENTER_MM,
)
from ._primitives import (
    _ellipsoid,
    _fibonacci_sphere,
    _Obj,
    _pack,
    _Packed,
    _random_rotation,
    _segment_distance,
    _unit,
)
from ._records import Nodule, NoduleSpec, Phantom
from ._render import _noise_slice, _render_region


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
        return dataclasses.replace(self, nodules=_check_nodule_ids(nodules))

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
        shape, spacing, origin, aff, noise_hu, entropy = self._check_render_args(
            shape, spacing, origin, transform, noise_hu, noise_seed
        )
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
        shape, spacing, origin, aff, noise_hu, entropy = self._check_render_args(
            shape, spacing, origin, transform, noise_hu, noise_seed
        )
        slab = check_positive_int(slab, "slab")
        nodules = self._measure_nodules(shape, spacing, origin, aff)
        # Arguments are checked above, eagerly; the generator below only renders.
        return self._slabs(shape, spacing, origin, aff, slab, noise_hu, entropy, nodules)

    def _check_render_args(self, shape, spacing, origin, transform, noise_hu, noise_seed):
        """The grid, transform and noise arguments of :meth:`render` and :meth:`iter_slabs`,
        checked: ``(shape, spacing, origin, affine, noise_hu, noise entropy)``."""
        shape = _check_3d_shape(shape)
        spacing = check_spacing(spacing, 3, "spacing")
        origin = _resolve_origin(origin, shape, spacing)
        aff = np.eye(4) if transform is None else _check_affine(transform, "transform")
        noise_hu = _check_real(noise_hu, "noise_hu", minimum=0.0)
        entropy = self.seed if noise_seed is None else _check_entropy(noise_seed)
        return shape, spacing, origin, aff, noise_hu, entropy

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

    def _lung_flags(self, points: np.ndarray, outside_hu: float = HU["air"]) -> np.ndarray:
        """Per point (mm, z y x): whether it lies in the lung parenchyma."""
        pk = self._lung_packed
        with kernel_threads():
            return _lung_at_points(
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
                *self.texture,
                outside_hu,
            )

    def _lung_ok(self, points: np.ndarray) -> bool:
        return bool(self._lung_flags(points).all())

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
    # Lung landmarks: the first candidate away from vessels and airways. The left lung's
    # candidates mirror the right lung's about the chest's midline x = SCENE_CENTER_MM[2].
    right = [
        (150.0, 150.0, 80.0),
        (120.0, 200.0, 75.0),
        (180.0, 160.0, 95.0),
        (140.0, 230.0, 90.0),
        (200.0, 170.0, 80.0),
    ]
    left = [(z, y, 2.0 * SCENE_CENTER_MM[2] - x) for z, y, x in right]
    for side, cands in (("right", right), ("left", left)):
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

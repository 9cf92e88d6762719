"""Follow-up pairs: random rigid/similarity transforms and baseline/follow-up scans with
nodule growth, shrinkage and new nodules."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from fastct._validate import check_positive_int

from ._checks import _check_affine, _check_range, _check_real, _check_seed, _resolve_grid
from ._constants import _DIAMETER_LIMITS, _STREAM_PAIR
from ._primitives import _rotation, _unit
from ._records import PhantomPair
from ._scene import ChestScene


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
    realism: str = "standard",
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
    realism : {'standard', 'hard'}
        ``'standard'`` (default) is the ideal pair described here, unchanged bit for bit.
        ``'hard'`` returns :func:`hard_phantom_pair` with the same seed, grid, nodule
        count, number of new nodules, transform and motion limits, its own defaults otherwise (statuses stable / growing / shrinking /
        resolved / new are drawn); call :func:`hard_phantom_pair` for its settings.

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
    if realism == "hard":
        from ._hard import hard_phantom_pair

        return hard_phantom_pair(
            size,
            seed=seed,
            n_nodules=n_nodules,
            new_nodules=new_nodules,
            transform=transform,
            max_rotation_deg=max_rotation_deg,
            max_translation_mm=max_translation_mm,
            shape=shape,
            spacing=spacing,
            origin=origin,
        )
    if realism != "standard":
        raise ValueError(f"realism must be 'standard' or 'hard', got {realism!r}")
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

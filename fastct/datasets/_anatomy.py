"""The anatomy of the scene: body, lungs, mediastinum, airways, skeleton, the pulmonary vessel
trees and the lung texture, drawn from seeded random streams."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._constants import _KIND_LUNG, HU, SCENE_CENTER_MM
from ._primitives import (
    _cone,
    _cylinder,
    _ellipsoid,
    _Obj,
    _Prim,
    _rotation,
    _segment_distance,
    _unit,
)


def _norm_radius(p, center, semi, rot=None) -> float:
    d = np.asarray(p, float) - center
    if rot is not None:
        d = rot @ d
    return float(np.sqrt(np.sum((d / semi) ** 2)))


def _build_anatomy(rng: np.random.Generator) -> dict[str, Any]:
    """Body, lungs, mediastinum, airways and skeleton (everything but vessels and nodules)."""
    cz, cy, cx = SCENE_CENTER_MM[0], SCENE_CENTER_MM[1] + 5.0, SCENE_CENTER_MM[2]
    by = 125.0 * rng.uniform(0.95, 1.03)  # body semi-axis (antero-posterior)
    bx = 165.0 * rng.uniform(0.96, 1.03)  # body semi-axis (left-right); width <= 340 mm
    fat = rng.uniform(8.0, 16.0)  # subcutaneous fat thickness
    bz_c, bz = 120.0, 700.0  # long ellipsoid: the trunk narrows slightly towards the neck
    rib_y, rib_x = by - fat - 9.0, bx - fat - 9.0  # rib centre-line ellipse, inside the muscle
    lz = 120.0 * rng.uniform(0.96, 1.04)

    objs: list[_Obj] = []

    def outside_lungs(name: str, prims: Iterable[_Prim], tissue: str) -> None:
        """A structure the lungs never overlap: it clears the lung mask where it lies."""
        objs.append(_Obj(name, tuple(prims), HU[tissue], lung=-1))

    objs.append(_Obj("fat", (_ellipsoid((bz_c, cy, cx), (bz, by, bx)),), HU["fat"]))
    objs.append(
        _Obj(
            "soft_tissue",
            (_ellipsoid((bz_c, cy, cx), (bz - fat, by - fat, bx - fat)),),
            HU["soft_tissue"],
        )
    )

    lungs = {
        "right": (
            np.array([cz + 5.0, cy, cx - 0.545 * rib_x]),
            np.array([lz, 0.75 * rib_y, 0.375 * rib_x]),
        ),
        "left": (
            np.array([cz, cy, cx + 0.545 * rib_x]),
            np.array([0.97 * lz, 0.75 * rib_y, 0.36 * rib_x]),
        ),
    }
    for side, (c, s) in lungs.items():
        objs.append(_Obj(f"{side}_lung", (_ellipsoid(c, s),), HU["lung"], kind=_KIND_LUNG, lung=1))

    domes = [
        (np.array([25.0, cy + 5.0, cx - 0.5 * rib_x]), np.array([60.0, 0.95 * rib_y, 0.6 * rib_x])),
        (
            np.array([15.0, cy + 5.0, cx + 0.5 * rib_x]),
            np.array([58.0, 0.95 * rib_y, 0.58 * rib_x]),
        ),
    ]
    outside_lungs("liver", [_ellipsoid(*domes[0])], "liver")
    outside_lungs("spleen", [_ellipsoid(*domes[1])], "spleen")

    heart_c = np.array([100.0, cy - 35.0, cx + 16.0])
    heart_s = np.array([52.0, 58.0, 62.0])
    heart_r = _rotation((1.0, 0.0, 0.0), math.radians(25.0))
    outside_lungs("heart", [_ellipsoid(heart_c, heart_s, heart_r)], "soft_tissue")

    spine_y = cy + by - fat - 45.0
    aorta_pts = [
        (150.0, cy - 35.0, cx + 8.0),
        (195.0, cy - 25.0, cx + 20.0),
        (210.0, cy + 10.0, cx + 30.0),
        (200.0, spine_y - 15.0, cx + 32.0),
        (-60.0, spine_y - 13.0, cx + 32.0),
    ]
    outside_lungs(
        "aorta",
        (
            _cone(a, b, 13.0 if k < 2 else 12.0)
            for k, (a, b) in enumerate(zip(aorta_pts[:-1], aorta_pts[1:]))
        ),
        "soft_tissue",
    )

    # Airways: trachea, main and lobar bronchi as (start, end, lumen radius) tubes.
    carina = np.array([195.0, cy - 5.0, cx])
    rmain = np.array([178.0, cy + 1.0, cx - 0.36 * rib_x])
    lmain = np.array([172.0, cy + 3.0, cx + 0.38 * rib_x])
    rint = np.array([150.0, cy + 7.0, cx - 0.38 * rib_x])
    airways = [
        ((320.0, cy - 17.0, cx), carina, 8.0),
        (carina, rmain, 6.0),
        (carina, lmain, 5.5),
        (rmain, (210.0, cy - 5.0, cx - 0.49 * rib_x), 3.8),
        (rmain, rint, 4.5),
        (rint, (138.0, cy - 25.0, cx - 0.47 * rib_x), 3.0),
        (rint, (115.0, cy + 20.0, cx - 0.43 * rib_x), 3.8),
        (lmain, (205.0, cy - 7.0, cx + 0.49 * rib_x), 4.0),
        (lmain, (120.0, cy + 20.0, cx + 0.45 * rib_x), 3.8),
    ]
    walls = [max(1.2, 0.25 * r) for _, _, r in airways]
    objs.append(
        _Obj(
            "airway_wall",
            tuple(_cone(a, b, r + w) for (a, b, r), w in zip(airways, walls)),
            HU["soft_tissue"],
        )
    )
    objs.append(_Obj("airway_lumen", tuple(_cone(a, b, r) for a, b, r in airways), HU["air"]))
    airway_segs = np.array([[*a, *b, r + w] for (a, b, r), w in zip(airways, walls)], float)

    # Sternum: a flat bone tilted forwards at the bottom.
    st_y = cy - by + fat + 12.0
    sternum = _cylinder((180.0, st_y, cx), (1.0, 0.06, 0.0), (0.0, 1.0, 0.0), 6.0, 15.0, 70.0)
    outside_lungs("sternum", [sternum], "sternum")

    # Spine: disc column, vertebral bodies (cortex + cancellous), neural arches, canal.
    zs = [150.0 + 28.0 * m for m in range(-6, 7)]
    zaxis, yref = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    discs = _cylinder((150.0, spine_y, cx), zaxis, yref, 14.0, 18.0, 1000.0)
    outside_lungs("discs", [discs], "disc")
    # One cylinder per level: the cortex shell, then the cancellous body inside it.
    for name, (r0, r1, h), tissue in (
        ("vertebral_cortex", (15.0, 19.0, 11.0), "vertebra_cortex"),
        ("vertebral_body", (13.0, 17.0, 9.0), "vertebra"),
    ):
        outside_lungs(
            name, (_cylinder((z, spine_y, cx), zaxis, yref, r0, r1, h) for z in zs), tissue
        )
    canal_y = spine_y + 27.0
    arch = [_cylinder((z, canal_y, cx), zaxis, yref, 12.5, 12.5, 8.0) for z in zs]
    arch += [_cone((z - 4.0, canal_y + 8.0, cx), (z - 12.0, canal_y + 15.0, cx), 3.5) for z in zs]
    outside_lungs("neural_arch", arch, "rib")
    canal = _cylinder((150.0, canal_y, cx), zaxis, yref, 7.5, 7.5, 1000.0)
    outside_lungs("spinal_canal", [canal], "spinal_cord")

    # Ribs: 12 pairs of bony tubes following the rib-cage ellipse, sloping down anteriorly.
    ribs = []
    for i in range(12):
        z_head = 282.0 - 19.5 * i
        fx = min(1.0, 0.78 + 0.07 * i)
        fy = min(1.0, 0.8 + 0.06 * i)
        th0, th1 = 0.35, (2.55 if i < 7 else 2.55 - 0.22 * (i - 6))
        radius = 4.0 if i < 2 else 4.5
        thetas = np.linspace(th0, th1, 12)
        for sign in (-1.0, 1.0):
            pts = [np.array([z_head, spine_y + 4.0, cx + sign * 21.0])]
            for th in thetas:
                frac = (th - th0) / (th1 - th0)
                pts.append(
                    np.array(
                        [
                            z_head - 6.0 - 38.0 * frac**1.2,
                            cy + rib_y * fy * math.cos(th),
                            cx + sign * rib_x * fx * math.sin(th),
                        ]
                    )
                )
            ribs += [_cone(a, b, radius) for a, b in zip(pts[:-1], pts[1:])]
    outside_lungs("ribs", ribs, "rib")

    t_trachea = (320.0 - 250.0) / (320.0 - 195.0)
    landmarks = {
        "air": (150.0, 15.0, 15.0),
        "fat": (150.0, cy - by * math.sqrt(1 - ((150 - bz_c) / bz) ** 2) + fat / 2.0, cx),
        "heart": tuple(heart_c),
        "liver": (40.0, cy + 5.0, cx - 0.5 * rib_x),
        "trachea": (250.0, (cy - 17.0) + t_trachea * 12.0, cx),
        "aorta": (100.0, spine_y - 13.5, cx + 32.0),
        "vertebral_body": (150.0, spine_y, cx),
        "spinal_canal": (150.0, canal_y, cx),
    }
    return {
        "objects": objs,
        "landmarks": landmarks,
        "lungs": lungs,
        "domes": domes,
        "heart": (heart_c, heart_s, heart_r),
        "aorta": np.array([[*a, *b] for a, b in zip(aorta_pts[:-1], aorta_pts[1:])]),
        "airways": airway_segs,
        "hila": {
            "right": np.array([168.0, cy + 11.0, cx - 0.36 * rib_x]),
            "left": np.array([168.0, cy + 11.0, cx + 0.37 * rib_x]),
        },
    }


def _in_lung_field(p: np.ndarray, side: str, anat: dict, limit: float = 0.9) -> bool:
    """Analytic 'well inside this lung' test used to steer the vessel trees."""
    c, s = anat["lungs"][side]
    if _norm_radius(p, c, s) > limit:
        return False
    for dc, ds in anat["domes"]:
        if _norm_radius(p, dc, ds) < 1.08:
            return False
    hc, hs, hr = anat["heart"]
    if _norm_radius(p, hc, hs, hr) < 1.08:
        return False
    seg = anat["aorta"]
    return bool(np.all(_segment_distance(p, seg[:, :3], seg[:, 3:]) > 16.0))


def _build_vessels(rng: np.random.Generator, anat: dict) -> tuple[list[_Obj], np.ndarray]:
    """One pulmonary vessel tree per lung: tapering tubes with a Murray-like radius split.

    Branches grow breadth-first from the hilum into seven lobar directions; a branch
    whose end would leave the lung field is bent or shortened, else dropped.
    """
    objs, all_segs = [], []
    for side, sgn in (("right", -1.0), ("left", 1.0)):
        hilum = anat["hila"][side]
        lung_c = anat["lungs"][side][0]
        first = hilum + np.array([-3.0, 2.0, sgn * 14.0])
        segs = [(hilum, first, 5.0, 4.6)]
        lobar = [
            ((1.0, -0.1, 0.3 * sgn), 3.6),
            ((0.7, -0.8, 0.4 * sgn), 3.2),
            ((0.7, 0.8, 0.4 * sgn), 3.2),
            ((0.1, -0.5, sgn), 3.4),
            ((-0.6, -0.7, 0.5 * sgn), 3.4),
            ((-1.0, 0.2, 0.3 * sgn), 4.0),
            ((-0.6, 0.9, 0.4 * sgn), 3.8),
        ]
        queue = [(first, _unit(d), r) for d, r in lobar]
        head = 0
        while head < len(queue) and len(segs) < 900:
            start, direction, radius = queue[head]
            head += 1
            length = radius * rng.uniform(6.0, 9.0) + 4.0
            end = None
            for attempt in range(8):
                d = direction
                if attempt:
                    d = _unit(direction + rng.normal(scale=0.25 * attempt, size=3))
                cand = start + length * d
                if _in_lung_field(cand, side, anat, limit=0.94) and _in_lung_field(
                    0.5 * (start + cand), side, anat, limit=0.96
                ):
                    end, direction = cand, d
                    break
                length *= 0.8
            if end is None:
                continue
            r_end = max(0.7, 0.92 * radius)
            segs.append((start, end, radius, r_end))
            f1 = rng.uniform(0.75, 0.88)
            f2 = (1.0 - f1**3) ** (1.0 / 3.0)
            normal = _unit(np.cross(direction, rng.normal(size=3)))
            outward = _unit(end - lung_c + 0.3 * (end - hilum))
            for f, ang, n in (
                (f1, rng.uniform(10, 25), normal),
                (f2, rng.uniform(35, 60), -normal),
            ):
                r_child = r_end * f
                if r_child < 0.7:
                    continue
                d_child = _unit(_rotation(n, math.radians(ang)) @ direction + 0.2 * outward)
                queue.append((end, d_child, r_child))
        prims = tuple(_cone(a, b, r0, r1) for a, b, r0, r1 in segs)
        objs.append(_Obj(f"{side}_vessels", prims, HU["soft_tissue"]))
        all_segs += [[*a, *b, r0, r1] for a, b, r0, r1 in segs]
    return objs, np.array(all_segs, dtype=float)


def _build_texture(rng: np.random.Generator) -> tuple:
    n = 8
    wavelength = rng.uniform(6.0, 24.0, n)
    directions = np.array([_unit(v) for v in rng.normal(size=(n, 3))])
    k = directions * (2.0 * math.pi / wavelength)[:, None]
    phase = rng.uniform(0.0, 2.0 * math.pi, n)
    amp = np.full(n, 12.0 / math.sqrt(n / 2.0))  # ~12 HU std in total
    return (np.ascontiguousarray(k), phase, amp, 0.25, SCENE_CENTER_MM[1] + 5.0)

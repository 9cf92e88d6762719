"""Nodule matching across two time points and the growth table.

Baseline detections are mapped into follow-up physical space with the registration
transform and matched to follow-up detections one-to-one by minimum total distance
(Hungarian algorithm, :func:`match_nodules`), pairs further apart than a tolerance
being left unmatched. :func:`growth_table` gives each matched pair its diameter and
volume at both time points, the volume change in percent and the volume doubling time
``VDT = interval_days * ln 2 / ln(V2 / V1)`` (days, :func:`volume_doubling_time`), given
in the table only for a growing nodule (never negative or infinite). With a similarity
registration the follow-up volume is divided by ``scale**3`` before the ratio, so a
global scale difference between scans is not read as growth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["growth_table", "match_nodules", "truth_verdicts", "volume_doubling_time"]


def volume_doubling_time(
    volume_1: float, volume_2: float, interval_days: float | None
) -> float | None:
    """Volume doubling time in days, ``interval_days * ln 2 / ln(V2 / V1)``.

    Negative for a shrinking nodule (then its magnitude is the halving time),
    ``inf`` when the volume is unchanged, None without an interval or a volume.

    Examples
    --------
    >>> volume_doubling_time(100.0, 200.0, 90.0)
    90.0
    >>> round(volume_doubling_time(100.0, 50.0, 90.0), 6)
    -90.0
    >>> volume_doubling_time(100.0, 200.0, None) is None
    True
    """
    if interval_days is None or volume_1 is None or volume_2 is None:
        return None
    if not (volume_1 > 0 and volume_2 > 0):
        return None
    ratio = math.log(volume_2 / volume_1)
    if ratio == 0:
        return math.inf
    return float(interval_days * math.log(2.0) / ratio)


def match_nodules(
    baseline_mm: Any,
    followup_mm: Any,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    tolerance_mm: float | Sequence[float] = 10.0,
) -> list[tuple[int, int, float]]:
    """Match baseline nodules to follow-up nodules one to one by distance.

    Parameters
    ----------
    baseline_mm, followup_mm : (N, 3) and (M, 3) array_like
        Centres in each scan's physical mm.
    transform : callable, optional
        Maps (N, 3) baseline physical points to follow-up physical points (e.g.
        ``Registration.transform.apply``); identity if None.
    tolerance_mm : float or (N,) sequence
        Largest distance of a match (per baseline nodule if a sequence).

    Returns
    -------
    list of (i, j, distance_mm)
        Pairs minimising the total distance (Hungarian algorithm), sorted by ``i``.

    Examples
    --------
    >>> match_nodules([[0, 0, 0], [50, 0, 0]], [[51, 1, 0], [100, 0, 0], [0, 0, 2]])
    [(0, 2, 2.0), (1, 0, 1.4142135623730951)]
    """
    from scipy.optimize import linear_sum_assignment

    a = np.asarray(baseline_mm, dtype=float).reshape(-1, 3)
    b = np.asarray(followup_mm, dtype=float).reshape(-1, 3)
    if len(a) == 0 or len(b) == 0:
        return []
    if transform is not None:
        a = np.asarray(transform(a), dtype=float).reshape(-1, 3)
    tol = np.broadcast_to(np.asarray(tolerance_mm, dtype=float), (len(a),))
    dist = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    big = 1e9
    cost = np.where(dist <= tol[:, None], dist, big)
    rows, cols = linear_sum_assignment(cost)
    pairs = [(int(i), int(j), float(dist[i, j])) for i, j in zip(rows, cols) if cost[i, j] < big]
    return sorted(pairs)


def _size(d: dict[str, Any]) -> float:
    """Mean axial diameter when measured, else the detector's equivalent diameter."""
    v = d.get("mean_diameter_mm")
    return float(d["diameter_mm"] if v is None else v)


def _volume(d: dict[str, Any]) -> float:
    """Measured volume when there is one, else the detector's region volume."""
    v = d.get("volume_measured_mm3")
    return float(d["volume_mm3"] if v is None else v)


def growth_table(
    baseline: Sequence[dict[str, Any]],
    followup: Sequence[dict[str, Any]],
    pairs: Sequence[tuple[int, int, float]],
    *,
    interval_days: float | None = None,
    scale: float = 1.0,
    stable_pct: float = 25.0,
    threshold: float | None = None,
    followup_candidates: dict[int, dict[str, Any]] | None = None,
    baseline_candidates: dict[int, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """One row per nodule (matched pairs, baseline-only: 'not found at follow-up',
    follow-up-only: 'new'), most suspicious first (highest Lung-RADS-style category at
    either scan, then the largest mean diameter), with IDs ``N1``, ``N2`` ... in that
    order.

    Only detections whose probability is at least ``threshold`` (the detector's
    operating threshold; all when None) take part: a pair with a member below it is
    not a pair, and such detections get no row (list them as candidates).

    Columns: ``id`` ('N1' ...), ``nodule`` (1-based), ``status`` ('matched' | 'new' |
    'not found at follow-up'), ``change`` ('grow' | 'shrink' | 'stable' | 'new' |
    'not found'; a matched nodule is stable when its volume changed by less than
    ``stable_pct`` percent, about the reproducibility of CT volumetry), ``note`` (a
    below-threshold candidate at the other scan's position, from
    ``followup_candidates`` / ``baseline_candidates``: maps of a baseline / follow-up
    detection index to that candidate), ``baseline_index`` / ``followup_index`` (in
    the detection lists), ``type`` (the latest), ``type_baseline`` / ``type_followup``,
    ``slice_baseline`` / ``slice_followup``, ``side``,
    ``zone`` (from the detections when measured), ``center_baseline_mm``,
    ``center_followup_mm``, ``mean_diameter_baseline_mm`` /
    ``mean_diameter_followup_mm`` (measured mean axial diameter, else the detector's
    equivalent diameter), ``solid_diameter_baseline_mm`` / ``..._followup_mm``,
    ``diameter_baseline_mm`` / ``diameter_followup_mm`` (the detector's
    equivalent-sphere diameters), ``volume_baseline_mm3``, ``volume_followup_mm3``
    (measured when available), ``volume_change_pct`` (after dividing the follow-up
    volume by ``scale**3``), ``diameter_change_mm``, ``growing`` (mean diameter up by
    more than 1.5 mm, :func:`fastct.pipeline.lungrads.is_growing`),
    ``doubling_time_days`` (only for a growing volume, ``change == 'grow'``, and a
    known interval: never negative or infinite), ``category_baseline`` /
    ``category_followup`` (Lung-RADS v2022-style, :mod:`fastct.pipeline.lungrads`),
    ``probability_baseline``, ``probability_followup``, ``distance_mm``
    (registered baseline centre to follow-up centre).

    Examples
    --------
    >>> b = [{"center_mm": [0, 0, 0], "diameter_mm": 6, "volume_mm3": 100, "probability": 0.9}]
    >>> f = [dict(b[0], volume_mm3=200)]
    >>> row = growth_table(b, f, [(0, 0, 1.0)], interval_days=90)[0]
    >>> row["id"], row["status"], row["change"], row["volume_change_pct"], row["doubling_time_days"]
    ('N1', 'matched', 'grow', 100.0, 90.0)
    """
    from .lungrads import is_growing, nodule_category

    def ok(d: dict[str, Any]) -> bool:
        return threshold is None or float(d["probability"]) >= threshold

    rows: list[dict[str, Any]] = []
    f_cands = followup_candidates or {}
    b_cands = baseline_candidates or {}

    def category(d: dict[str, Any], **kw: Any) -> str | None:
        kind = d.get("type")
        if kind is None:
            return None
        return nodule_category(
            kind, _size(d), solid_diameter_mm=d.get("solid_mean_diameter_mm"), **kw
        )

    def row(i: int | None, j: int | None, dist: float | None, note: str = "") -> dict[str, Any]:
        b = None if i is None else baseline[i]
        f = None if j is None else followup[j]
        vb = None if b is None else _volume(b)
        vf = None if f is None else _volume(f)
        change_pct = vdt = None
        growing = False
        if b is None:
            status, change = "new", "new"
        elif f is None:
            status, change = "not found at follow-up", "not found"
        else:
            status = "matched"
            growing = is_growing(_size(b), _size(f))
            if vb and vf is not None:
                change_pct = 100.0 * (vf / scale**3 / vb - 1.0)
            if change_pct is None or abs(change_pct) < stable_pct:
                change = "stable"
            else:
                change = "grow" if change_pct > 0 else "shrink"
            if change == "grow" and vb and vf:
                vdt = volume_doubling_time(vb, vf / scale**3, interval_days)
        ref = b if b is not None else f
        assert ref is not None
        return {
            "id": f"N{len(rows) + 1}",
            "nodule": len(rows) + 1,
            "status": status,
            "change": change,
            "note": note,
            "baseline_index": i,
            "followup_index": j,
            "type": (f or ref).get("type"),
            "type_baseline": None if b is None else b.get("type"),
            "type_followup": None if f is None else f.get("type"),
            "slice_baseline": None if b is None else b.get("slice"),
            "slice_followup": None if f is None else f.get("slice"),
            "side": ref.get("side"),
            "zone": ref.get("zone"),
            "center_baseline_mm": None if b is None else list(map(float, b["center_mm"])),
            "center_followup_mm": None if f is None else list(map(float, f["center_mm"])),
            "mean_diameter_baseline_mm": None if b is None else _size(b),
            "mean_diameter_followup_mm": None if f is None else _size(f),
            "solid_diameter_baseline_mm": None if b is None else b.get("solid_mean_diameter_mm"),
            "solid_diameter_followup_mm": None if f is None else f.get("solid_mean_diameter_mm"),
            "diameter_baseline_mm": None if b is None else float(b["diameter_mm"]),
            "diameter_followup_mm": None if f is None else float(f["diameter_mm"]),
            "volume_baseline_mm3": vb,
            "volume_followup_mm3": vf,
            "volume_change_pct": change_pct,
            "diameter_change_mm": None if b is None or f is None else _size(f) - _size(b),
            "growing": growing,
            "doubling_time_days": vdt,
            "category_baseline": None if b is None else category(b),
            "category_followup": None
            if f is None
            else category(
                f,
                followup=True,
                new=b is None,
                growing=growing,
                interval_days=interval_days,
            ),
            "probability_baseline": None if b is None else float(b["probability"]),
            "probability_followup": None if f is None else float(f["probability"]),
            "distance_mm": dist,
        }

    pairs = [(i, j, d) for i, j, d in pairs if ok(baseline[i]) and ok(followup[j])]
    used_b = {i for i, _, _ in pairs}
    used_f = {j for _, j, _ in pairs}
    for i, j, d in pairs:
        rows.append(row(i, j, d))

    def note(cand: dict | None, what: str) -> str:
        """A candidate below the threshold where the unmatched nodule's partner would be."""
        if cand is None:
            return ""
        return f"{what} (p={float(cand['probability']):.2f})"

    for i, b in enumerate(baseline):
        if i not in used_b and ok(b):
            text = "follow-up candidate below the threshold at the mapped position"
            rows.append(row(i, None, None, note(f_cands.get(i), text)))
    for j, f in enumerate(followup):
        if j not in used_f and ok(f):
            text = "baseline candidate below the threshold at this position"
            rows.append(row(None, j, None, note(b_cands.get(j), text)))
    # Most suspicious first: highest Lung-RADS-style category, then the largest size;
    # the IDs follow this order.
    from .lungrads import CATEGORIES

    def rank(r: dict[str, Any]) -> tuple[float, float]:
        cats = [r["category_baseline"], r["category_followup"]]
        top = max((CATEGORIES.index(c) for c in cats if c is not None), default=-1)
        sizes = [r["mean_diameter_baseline_mm"], r["mean_diameter_followup_mm"]]
        return (-top, -max(v for v in sizes if v is not None))

    rows = sorted(rows, key=rank)
    for k, r in enumerate(rows, start=1):
        r["id"], r["nodule"] = f"N{k}", k
    return rows


def _truth_of(det: dict[str, Any], truths: Sequence[dict[str, Any]], min_radius_mm: float):
    """The truth nodule a detection hits (nearest centre within ``max(r, min_radius)``)."""
    best, best_d = None, math.inf
    c = np.asarray(det["center_mm"], dtype=float)
    for t in truths:
        d = float(np.linalg.norm(c - np.asarray(t["center_mm"], dtype=float)))
        if d <= max(0.5 * float(t["diameter_mm"]), min_radius_mm) and d < best_d:
            best, best_d = t, d
    return best


def truth_verdicts(
    rows: Sequence[dict[str, Any]],
    detections: dict[str, Sequence[dict[str, Any]]],
    truths: dict[str, Sequence[dict[str, Any]]],
    *,
    min_diameter_mm: float = 5.0,
    min_radius_mm: float = 3.0,
) -> dict[str, Any]:
    """Mark each growth-table row true or false against a phantom's truth.

    A detection is a true positive of the truth nodule whose centre is nearest among
    those within ``max(radius, min_radius_mm)`` of the detection's centre (the hit
    rule of :func:`fastct.evaluation.truth_hits`); a detection hitting only a truth
    nodule smaller than ``min_diameter_mm`` is neither true nor false ('small').
    Each row gets ``truth_baseline`` / ``truth_followup`` ('T<id> (<true diameter> mm)',
    'T<id> (small)', 'FP' or None) and ``verdict``: for a pair 'true pair' (both members hit the same
    truth nodule), 'false-positive pair' (neither hits one) or 'wrong match'
    (anything else); for a single detection 'false positive', 'small nodule', 'true
    nodule, missed at follow-up' / '... at baseline' (the truth nodule is in the other
    scan too), 'true nodule, gone at follow-up' or 'true new nodule'.

    Returns
    -------
    dict
        ``per_scan``: per scan ``true_positives`` (truth nodules >= ``min_diameter_mm``
        found), ``total``, ``false_positives`` (detections), ``missed`` (truth ids);
        ``pairs``: ``true``, ``wrong``, ``false_positive``; ``tracked`` /
        ``trackable``: truth nodules (>= ``min_diameter_mm`` in both scans) given a
        true pair, and how many there are.

    Examples
    --------
    >>> t = {"baseline": [{"id": 1, "center_mm": [0, 0, 0], "diameter_mm": 8}],
    ...      "followup": [{"id": 1, "center_mm": [0, 0, 0], "diameter_mm": 9}]}
    >>> d = {"baseline": [{"center_mm": [1, 0, 0]}], "followup": [{"center_mm": [0, 1, 0]}]}
    >>> rows = [{"baseline_index": 0, "followup_index": 0}]
    >>> s = truth_verdicts(rows, d, t)
    >>> rows[0]["verdict"], s["pairs"], s["tracked"], s["trackable"]
    ('true pair', {'true': 1, 'wrong': 0, 'false_positive': 0}, 1, 1)
    """
    label: dict[str, list[tuple[str, int | None]]] = {}
    per_scan: dict[str, dict[str, Any]] = {}
    for tp in ("baseline", "followup"):
        tr = list(truths.get(tp, []))
        marks: list[tuple[str, int | None]] = []
        found: set[int] = set()
        fps = 0
        for det in detections.get(tp, []):
            t = _truth_of(det, tr, min_radius_mm)
            if t is None:
                marks.append(("FP", None))
                fps += 1
            elif float(t["diameter_mm"]) < min_diameter_mm:
                marks.append((f"T{int(t['id'])} (small)", None))
            else:
                marks.append((f"T{int(t['id'])} ({float(t['diameter_mm']):.1f} mm)", int(t["id"])))
                found.add(int(t["id"]))
        big = [int(t["id"]) for t in tr if float(t["diameter_mm"]) >= min_diameter_mm]
        per_scan[tp] = {
            "true_positives": len(found),
            "total": len(big),
            "false_positives": fps,
            "missed": [i for i in big if i not in found],
        }
        label[tp] = marks
    ids = {tp: {int(t["id"]) for t in truths.get(tp, [])} for tp in ("baseline", "followup")}
    pairs = {"true": 0, "wrong": 0, "false_positive": 0}
    tracked: set[int] = set()
    for r in rows:
        i, j = r.get("baseline_index"), r.get("followup_index")
        mb = None if i is None else label["baseline"][i]
        mf = None if j is None else label["followup"][j]
        r["truth_baseline"] = None if mb is None else mb[0]
        r["truth_followup"] = None if mf is None else mf[0]
        if mb is not None and mf is not None:
            if mb[0] == "FP" and mf[0] == "FP":
                r["verdict"] = "false-positive pair"
                pairs["false_positive"] += 1
            elif mb[1] is not None and mb[1] == mf[1] or mb[1] is None and mb[0] == mf[0]:
                r["verdict"] = "true pair"
                pairs["true"] += 1
                if mb[1] is not None:
                    tracked.add(mb[1])
            else:
                r["verdict"] = "wrong match"
                pairs["wrong"] += 1
        else:
            m = mb if mb is not None else mf
            assert m is not None
            other = "followup" if mb is not None else "baseline"
            if m[0] == "FP":
                r["verdict"] = "false positive"
            elif m[1] is None:
                r["verdict"] = "small nodule"
            elif m[1] in ids[other]:
                where = "follow-up" if other == "followup" else "baseline"
                r["verdict"] = f"true nodule, missed at {where}"
            else:
                r["verdict"] = (
                    "true nodule, gone at follow-up" if other == "followup" else "true new nodule"
                )
    big_b = {
        int(t["id"])
        for t in truths.get("baseline", [])
        if float(t["diameter_mm"]) >= min_diameter_mm
    }
    big_f = {
        int(t["id"])
        for t in truths.get("followup", [])
        if float(t["diameter_mm"]) >= min_diameter_mm
    }
    return {
        "per_scan": per_scan,
        "pairs": pairs,
        "tracked": len(tracked & big_b & big_f),
        "trackable": len(big_b & big_f),
        "min_diameter_mm": float(min_diameter_mm),
        "hit_rule": f"centre within max(radius, {min_radius_mm:g} mm) of the truth centre",
    }

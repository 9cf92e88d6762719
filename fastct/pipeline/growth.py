"""Nodule matching across two time points and the growth table.

Baseline detections are mapped into follow-up physical space with the registration
transform and matched to follow-up detections one-to-one by minimum total distance
(Hungarian algorithm, :func:`match_nodules`), pairs further apart than a tolerance
being left unmatched. :func:`growth_table` gives each matched pair its diameter and
volume at both time points, the volume change in percent and the volume doubling time
``VDT = interval_days * ln 2 / ln(V2 / V1)`` (days; negative for a shrinking nodule,
infinite for an unchanged volume, :func:`volume_doubling_time`). With a similarity
registration the follow-up volume is divided by ``scale**3`` before the ratio, so a
global scale difference between scans is not read as growth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["growth_table", "match_nodules", "volume_doubling_time"]


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


def growth_table(
    baseline: Sequence[dict[str, Any]],
    followup: Sequence[dict[str, Any]],
    pairs: Sequence[tuple[int, int, float]],
    *,
    interval_days: float | None = None,
    scale: float = 1.0,
    stable_pct: float = 25.0,
) -> list[dict[str, Any]]:
    """One row per nodule: matched pairs, then baseline-only ('resolved') and
    follow-up-only ('new') detections.

    Columns: ``nodule`` (1-based), ``status`` ('matched' | 'new' | 'resolved'),
    ``change`` ('grow' | 'shrink' | 'stable' | 'new' | 'resolved'; a matched nodule is
    stable when its volume changed by less than ``stable_pct`` percent, about the
    reproducibility of CT volumetry), ``center_baseline_mm``, ``center_followup_mm``,
    ``diameter_baseline_mm``, ``diameter_followup_mm``, ``volume_baseline_mm3``,
    ``volume_followup_mm3``, ``volume_change_pct`` (after dividing the follow-up
    volume by ``scale**3``), ``doubling_time_days``, ``probability_baseline``,
    ``probability_followup``, ``distance_mm`` (registered baseline centre to
    follow-up centre).

    Examples
    --------
    >>> b = [{"center_mm": [0, 0, 0], "diameter_mm": 6, "volume_mm3": 100, "probability": 0.9}]
    >>> f = [dict(b[0], volume_mm3=200)]
    >>> row = growth_table(b, f, [(0, 0, 1.0)], interval_days=90)[0]
    >>> row["status"], row["change"], row["volume_change_pct"], row["doubling_time_days"]
    ('matched', 'grow', 100.0, 90.0)
    """
    rows: list[dict[str, Any]] = []

    def row(b: dict | None, f: dict | None, dist: float | None) -> dict[str, Any]:
        vb = None if b is None else float(b["volume_mm3"])
        vf = None if f is None else float(f["volume_mm3"])
        change_pct = vdt = None
        if vb and vf is not None:
            corrected = vf / scale**3
            change_pct = 100.0 * (corrected / vb - 1.0)
            vdt = volume_doubling_time(vb, corrected, interval_days)
        if b is None:
            status = change = "new"
        elif f is None:
            status = change = "resolved"
        else:
            status = "matched"
            if change_pct is None or abs(change_pct) < stable_pct:
                change = "stable"
            else:
                change = "grow" if change_pct > 0 else "shrink"
        return {
            "nodule": len(rows) + 1,
            "status": status,
            "change": change,
            "center_baseline_mm": None if b is None else list(map(float, b["center_mm"])),
            "center_followup_mm": None if f is None else list(map(float, f["center_mm"])),
            "diameter_baseline_mm": None if b is None else float(b["diameter_mm"]),
            "diameter_followup_mm": None if f is None else float(f["diameter_mm"]),
            "volume_baseline_mm3": vb,
            "volume_followup_mm3": vf,
            "volume_change_pct": change_pct,
            "doubling_time_days": vdt,
            "probability_baseline": None if b is None else float(b["probability"]),
            "probability_followup": None if f is None else float(f["probability"]),
            "distance_mm": dist,
        }

    used_b = {i for i, _, _ in pairs}
    used_f = {j for _, j, _ in pairs}
    for i, j, d in pairs:
        rows.append(row(baseline[i], followup[j], d))
    for i, b in enumerate(baseline):
        if i not in used_b:
            rows.append(row(b, None, None))
    for j, f in enumerate(followup):
        if j not in used_f:
            rows.append(row(None, f, None))
    return rows

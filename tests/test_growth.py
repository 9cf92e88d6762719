"""The growth table of a follow-up read (fastct.pipeline.growth): only pairs above the
operating threshold, no negative doubling times, candidates, truth verdicts."""

from __future__ import annotations

import pytest

from fastct.pipeline.growth import growth_table, truth_verdicts


def _det(center, volume, p, *, d=None, kind="solid", core=None):
    rec = {
        "center_mm": list(center),
        "diameter_mm": 6.0,
        "volume_mm3": float(volume),
        "probability": float(p),
        "type": kind,
        "mean_diameter_mm": d,
        "solid_mean_diameter_mm": core,
        "volume_measured_mm3": float(volume),
    }
    return rec


def _by_status(rows):
    return {r["status"]: r for r in rows}


def test_doubling_time_only_for_growth_never_negative():
    base = [_det((0, 0, 0), 100, 0.9, d=6.0), _det((50, 0, 0), 100, 0.9, d=6.0)]
    follow = [_det((0, 0, 0), 40, 0.9, d=4.5), _det((50, 0, 0), 105, 0.9, d=6.1)]
    rows = growth_table(base, follow, [(0, 0, 0.0), (1, 1, 0.0)], interval_days=90)
    shrink = next(r for r in rows if r["change"] == "shrink")
    stable = next(r for r in rows if r["change"] == "stable")
    assert shrink["volume_change_pct"] == pytest.approx(-60.0)
    assert shrink["doubling_time_days"] is None and stable["doubling_time_days"] is None
    grow = growth_table(
        [base[0]], [_det((0, 0, 0), 400, 0.9, d=9.0)], [(0, 0, 0.0)], interval_days=90
    )
    assert grow[0]["doubling_time_days"] == pytest.approx(45.0)
    # without an interval there is no doubling time, with growth or not
    assert (
        growth_table([base[0]], [_det((0, 0, 0), 400, 0.9)], [(0, 0, 0.0)])[0]["doubling_time_days"]
        is None
    )


def test_pairs_need_both_members_above_the_threshold():
    base = [_det((0, 0, 0), 100, 0.9, d=6.0)]
    follow = [_det((0, 0, 0), 300, 0.3, d=8.0)]  # below the threshold
    rows = growth_table(base, follow, [(0, 0, 0.0)], interval_days=90, threshold=0.5)
    assert len(rows) == 1  # the sub-threshold detection gets no row
    r = rows[0]
    assert r["status"] == "not found at follow-up" and r["doubling_time_days"] is None
    assert r["volume_change_pct"] is None and r["note"] == ""
    rows = growth_table(base, [], [], threshold=0.5, followup_candidates={0: {"probability": 0.31}})
    assert "below the threshold" in rows[0]["note"] and "0.31" in rows[0]["note"]
    # a follow-up nodule with a baseline candidate below the threshold at its place
    rows = growth_table(
        [], follow, [], threshold=0.2, baseline_candidates={0: {"probability": 0.15}}
    )
    assert rows[0]["status"] == "new" and "0.15" in rows[0]["note"]


def test_categories_growth_and_order():
    base = [_det((0, 0, 0), 100, 0.9, d=5.0), _det((40, 0, 0), 100, 0.9, d=9.0)]
    follow = [_det((0, 0, 0), 300, 0.9, d=6.6), _det((40, 0, 0), 100, 0.9, d=9.0)]
    follow.append(_det((80, 0, 0), 200, 0.9, d=7.0))  # new solid 7 mm: 4A
    rows = growth_table(base, follow, [(0, 0, 0.0), (1, 1, 0.0)], interval_days=120)
    by_center = {tuple(r["center_followup_mm"] or r["center_baseline_mm"]): r for r in rows}
    grown = by_center[(0.0, 0.0, 0.0)]
    assert grown["growing"] and grown["diameter_change_mm"] == pytest.approx(1.6)
    assert (grown["category_baseline"], grown["category_followup"]) == ("2", "4A")
    same = by_center[(40.0, 0.0, 0.0)]
    assert not same["growing"] and (same["category_baseline"], same["category_followup"]) == (
        "4A",
        "2",  # unchanged after >= 90 days steps down
    )
    new = by_center[(80.0, 0.0, 0.0)]
    assert new["status"] == "new" and new["category_followup"] == "4A"
    # most suspicious first; IDs follow the order
    assert [r["id"] for r in rows] == ["N1", "N2", "N3"]
    # all three reach 4A at one scan: then the largest first (9.0, 7.0, 6.6 mm)
    assert [r["id"] for r in (same, new, grown)] == ["N1", "N2", "N3"]
    # the least suspicious (category 2, 3 mm) comes last
    more = growth_table([_det((0, 0, 0), 10, 0.9, d=3.0), *base], follow, [(1, 0, 0.0)])
    assert more[-1]["category_baseline"] == "2" and more[-1]["mean_diameter_baseline_mm"] == 3.0


def test_truth_verdicts_mark_every_row():
    truths = {
        "baseline": [
            {"id": 1, "center_mm": [0, 0, 0], "diameter_mm": 8.0},
            {"id": 2, "center_mm": [50, 0, 0], "diameter_mm": 8.0},
            {"id": 3, "center_mm": [100, 0, 0], "diameter_mm": 3.0},
        ],
        "followup": [
            {"id": 1, "center_mm": [0, 0, 0], "diameter_mm": 9.0},
            {"id": 2, "center_mm": [50, 0, 0], "diameter_mm": 9.0},
        ],
    }
    base = [
        _det((1, 0, 0), 100, 0.9),  # T1
        _det((50, 0, 3.5), 100, 0.9),  # T2 (within its 4 mm radius)
        _det((200, 0, 0), 100, 0.9),  # FP
        _det((100, 1, 0), 10, 0.9),  # small T3
        _det((300, 0, 0), 100, 0.9),  # FP, unpaired
    ]
    follow = [
        _det((0, 1, 0), 120, 0.9),  # T1
        _det((206, 0, 0), 150, 0.9),  # FP (paired with a baseline FP)
        _det((57, 0, 0), 100, 0.9),  # FP 7 mm from T2 (outside 4.5 mm): wrong match with T2
    ]
    pairs = [(0, 0, 1.0), (2, 1, 6.0), (1, 2, 7.0)]
    rows = growth_table(base, follow, pairs)
    s = truth_verdicts(rows, {"baseline": base, "followup": follow}, truths)
    verdict = {(r["baseline_index"], r["followup_index"]): r["verdict"] for r in rows}
    assert verdict == {
        (0, 0): "true pair",
        (2, 1): "false-positive pair",
        (1, 2): "wrong match",
        (3, None): "small nodule",
        (4, None): "false positive",
    }
    # a true nodule without a partner: missed in the other scan, or really gone / new
    lone = growth_table(base[:1], follow[:1], [])
    truth_verdicts(lone, {"baseline": base[:1], "followup": follow[:1]}, truths)
    assert sorted(r["verdict"] for r in lone) == [
        "true nodule, missed at baseline",
        "true nodule, missed at follow-up",
    ]
    gone = growth_table(base[:2], [], [])
    truth_verdicts(gone, {"baseline": base[:2], "followup": []}, {"baseline": truths["baseline"]})
    assert [r["verdict"] for r in gone] == ["true nodule, gone at follow-up"] * 2
    new = growth_table([], follow[:1], [])
    truth_verdicts(new, {"baseline": [], "followup": follow[:1]}, {"followup": truths["followup"]})
    assert new[0]["verdict"] == "true new nodule"
    row = next(r for r in rows if r["baseline_index"] == 0)
    assert row["truth_baseline"] == "T1 (8.0 mm)" and row["truth_followup"] == "T1 (9.0 mm)"
    assert s["pairs"] == {"true": 1, "wrong": 1, "false_positive": 1}
    assert s["per_scan"]["baseline"] == {
        "true_positives": 2, "total": 2, "false_positives": 2, "missed": []
    }  # fmt: skip
    assert s["per_scan"]["followup"] == {
        "true_positives": 1, "total": 2, "false_positives": 2, "missed": [2]
    }  # fmt: skip
    assert (s["tracked"], s["trackable"]) == (1, 2)

"""FROC, ROC AUC and sensitivity by size against brute-force references."""

import math

import numpy as np
import pytest
from naive import froc_brute_force as brute_force
from sklearn.metrics import roc_auc_score

from fastct.evaluation import (
    froc,
    match_detections,
    roc_auc,
    sensitivity_by_size,
    truth_hits,
    truth_summary,
)


def random_scans(rng, n_scans=6):
    dets, truths = [], []
    for _ in range(n_scans):
        nods = [
            {"center_mm": tuple(rng.uniform(0, 200, 3)), "diameter_mm": float(rng.uniform(3, 25))}
            for _ in range(rng.integers(0, 5))
        ]
        d = []
        for n in nods:  # some hits, some duplicates
            for _ in range(rng.integers(0, 3)):
                off = rng.normal(size=3)
                off *= rng.uniform(0, 0.8) * n["diameter_mm"] / 2 / np.linalg.norm(off)
                d.append({"center_mm": tuple(np.add(n["center_mm"], off)),
                          "probability": float(rng.random())})  # fmt: skip
        for _ in range(rng.integers(0, 6)):  # false positives far away
            d.append({"center_mm": tuple(rng.uniform(300, 500, 3)),
                      "probability": float(rng.random())})  # fmt: skip
        dets.append(d)
        truths.append(nods)
    return dets, truths


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("lo", [0.0, 8.0])
def test_froc_matches_brute_force(seed, lo):
    rng = np.random.default_rng(seed)
    dets, truths = random_scans(rng)
    rates = (0.125, 0.25, 0.5, 1, 2, 4, 8)
    r = froc(dets, truths, min_diameter_mm=lo)
    if r.n_nodules == 0:
        pytest.skip("no relevant nodule drawn")
    np.testing.assert_allclose(r.sensitivity, brute_force(dets, truths, rates, lo))
    assert r.cpm == pytest.approx(np.mean(r.sensitivity))
    assert [row["fps_per_scan"] for row in r.rows()] == list(rates)
    md = r.to_markdown()
    assert "| 1/8 FP/scan |" in md and "CPM" in md
    # the curve is monotone: fewer FPs never gives more sensitivity
    assert np.all(np.diff(r.curve_fps) >= 0) and np.all(np.diff(r.curve_sensitivity) >= 0)


def test_hit_rule_and_duplicates():
    truth = [
        {"center_mm": (0, 0, 0), "diameter_mm": 10},
        {"center_mm": (0, 0, 30), "diameter_mm": 4},
    ]
    dets = [
        {"center_mm": (0, 0, 4.9), "probability": 0.5},  # inside radius 5
        {"center_mm": (0, 0, -5.1), "probability": 0.9},  # just outside: FP
        {"center_mm": (0, 0, 1), "probability": 0.4},  # duplicate: neither TP nor FP
        {"center_mm": (0, 0, 31), "probability": 0.8},  # hits the small nodule
    ]
    m = match_detections(dets, truth)
    assert m.detection_nodule.tolist() == [0, -1, 0, 1]
    assert m.nodule_score.tolist() == [0.5, 0.8]
    # with the small nodule irrelevant, its hit is not a false positive
    r = froc([dets], [truth], min_diameter_mm=5, fps_per_scan=(1, 2))
    assert r.n_nodules == 1 and r.sensitivity.tolist() == [1.0, 1.0]
    r = froc([dets], [truth], min_diameter_mm=5, fps_per_scan=(0.5,))
    assert r.sensitivity.tolist() == [0.0]  # the FP at 0.9 comes before the hit at 0.5
    assert match_detections(dets, truth, min_radius_mm=6).detection_nodule[1] == 0


def test_roc_auc_matches_sklearn(rng):
    y = rng.integers(0, 2, 200)
    s = rng.random(200) + 0.3 * y
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert roc_auc(y.astype(bool), s) == pytest.approx(roc_auc_score(y, s))


def test_sensitivity_by_size():
    truths = [[{"center_mm": (0, 0, 0), "diameter_mm": 4},
               {"center_mm": (0, 0, 50), "diameter_mm": 12},
               {"center_mm": (0, 0, 100), "diameter_mm": 22}]]  # fmt: skip
    dets = [[{"center_mm": (0, 0, 50), "probability": 0.6},
             {"center_mm": (0, 0, 100), "probability": 0.3},
             {"center_mm": (0, 0, 200), "probability": 0.4}]]  # fmt: skip
    rows = sensitivity_by_size(dets, truths, bins_mm=(0, 5, 20, 30), fps_per_scan=0)
    assert [r["n_nodules"] for r in rows] == [1, 1, 1]
    assert [r["n_found"] for r in rows] == [0, 1, 0]  # threshold 0.6: no FP allowed
    assert rows[0]["threshold"] == 0.6 and rows[0]["fps_per_scan"] == 0
    rows = sensitivity_by_size(dets, truths, bins_mm=(0, 5, 20, 30), threshold=0.3)
    assert [r["n_found"] for r in rows] == [0, 1, 1] and rows[0]["fps_per_scan"] == 1
    assert math.isnan(sensitivity_by_size(dets, truths, bins_mm=(40, 50))[0]["sensitivity"])


def test_bad_input():
    d = [{"center_mm": (0, 0, 0), "probability": 0.5}]
    t = [{"center_mm": (0, 0, 0), "diameter_mm": 5}]
    with pytest.raises(ValueError, match="one entry per scan"):
        froc([d], [t, t])
    with pytest.raises(ValueError, match="at least one scan"):
        froc([], [])
    with pytest.raises(TypeError, match="list"):
        froc(None, [t])
    with pytest.raises(ValueError, match="fps_per_scan must be positive"):
        froc([d], [t], fps_per_scan=(0,))
    with pytest.raises(ValueError, match="max_diameter_mm must be > min_diameter_mm"):
        froc([d], [t], min_diameter_mm=5, max_diameter_mm=5)
    with pytest.raises(ValueError, match="lacks 'probability'"):
        froc([[{"center_mm": (0, 0, 0)}]], [t])
    with pytest.raises(ValueError, match="center_mm must be"):
        match_detections(
            [{"center_mm": (0, 0), "probability": 1}], [{"center_mm": (1,), "diameter_mm": 1}]
        )
    with pytest.raises(ValueError, match="diameter_mm must be finite"):
        match_detections(d, [{"center_mm": (0, 0, 0), "diameter_mm": -1}])
    with pytest.raises(ValueError, match="same length"):
        roc_auc([0, 1], [0.5])
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="bins_mm"):
        sensitivity_by_size([d], [t], bins_mm=(5, 1))


def test_truth_summary_of_a_scan_pair():
    truths = {
        "baseline": [{"id": 1, "center_mm": (0, 0, 0), "diameter_mm": 8},
                     {"id": 2, "center_mm": (0, 0, 60), "diameter_mm": 4}],
        "followup": [{"id": 1, "center_mm": (2, 0, 0), "diameter_mm": 10}],
    }  # fmt: skip
    dets = {
        "baseline": [{"center_mm": (0, 1, 0), "probability": 0.9},
                     {"center_mm": (0, 0, 61), "probability": 0.5}],
        "followup": [{"center_mm": (90, 0, 0), "probability": 0.7}],
    }  # fmt: skip
    m = np.eye(4)
    m[:3, 3] = (0.0, 0.0, 0.5)
    info = truth_summary(
        dets, truths, apply=lambda p: p, true_matrix=m, shape=(4, 5, 6), spacing=(1, 1, 1)
    )
    assert list(info) == ["registration_error_mm", "baseline", "followup", "froc"]
    assert info["registration_error_mm"] == pytest.approx(0.5)
    for tp in ("baseline", "followup"):
        assert info[tp] == truth_hits(dets[tp], truths[tp])
    # the 4 mm nodule is an irrelevant finding: neither counted nor a false positive
    assert (info["baseline"]["found"], info["baseline"]["total"]) == (1, 1)
    assert info["baseline"]["false_positives"] == 0
    assert info["followup"]["missed"] == [1] and info["followup"]["false_positives"] == 1
    ref = froc(
        [dets["baseline"], dets["followup"]],
        [truths["baseline"], truths["followup"]],
        min_diameter_mm=5.0,
        min_radius_mm=3.0,
    )
    assert info["froc"] == ref.to_dict()
    assert info["froc"]["n_nodules"] == 2 and info["froc"]["n_found"] == 1
    # to_dict is plain JSON: non-finite values become None
    assert all(v is None or math.isfinite(v) for v in info["froc"]["curve_sensitivity"])
    # a FROC that cannot be computed is reported, not raised
    bad = truth_summary(
        {"a": [{"center_mm": (0, 0, 0)}]}, {}, apply=lambda p: p, true_matrix=np.eye(4),
        shape=(2, 2, 2), spacing=(1, 1, 1),
    )  # fmt: skip
    assert bad["froc"] is None and "probability" in bad["froc_error"]

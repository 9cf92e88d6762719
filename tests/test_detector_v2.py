"""The candidate v2 detector (fastct/models/nodule_detector_v2.fastct-model) and its
training recipe (benchmarks/train_detector_v2.py, docs/detector_training.rst)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from fastct.classify import (
    Case,
    NoduleDetector,
    default_detector,
    detector_feature_names,
    load_detector,
)
from fastct.classify._modelfile import DEFAULT_MODEL_PATH, read_meta
from fastct.datasets import hard_chest_phantom

ROOT = Path(__file__).resolve().parents[1]
V2_PATH = ROOT / "fastct" / "models" / "nodule_detector_v2.fastct-model"
needs_v2 = pytest.mark.skipif(not V2_PATH.is_file(), reason=f"{V2_PATH.name} not built")


def _script():
    spec = importlib.util.spec_from_file_location(
        "train_detector_v2", ROOT / "benchmarks" / "train_detector_v2.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("train_detector_v2", mod)
    spec.loader.exec_module(mod)
    return mod


@needs_v2
def test_v2_file_loads_and_schema_matches_params():
    det = load_detector(V2_PATH)
    meta = read_meta(V2_PATH)
    assert det.clip_below_hu == -1024.0
    expected = detector_feature_names(tuple(det.blob_scales_mm), extra=tuple(det.extra_features))
    assert det.feature_names_ == expected
    assert det.feature_names() == expected
    assert meta["params"]["clip_below_hu"] == -1024.0
    assert list(meta["params"].get("extra_features", [])) == list(det.extra_features)
    assert V2_PATH.stat().st_size < 5_000_000
    # the shipped default is still v1
    assert DEFAULT_MODEL_PATH.name == "nodule_detector_v1.fastct-model"
    assert default_detector().clip_below_hu is None


@needs_v2
def test_v2_finds_a_large_solid_nodule_on_a_tiny_hard_phantom():
    # a small grid (the "tiny" preset's 7.5 mm pixels are too coarse for any detector)
    ph = hard_chest_phantom(seed=3, shape=(60, 120, 120), spacing=(5.0, 3.0, 3.0),
                            n_nodules=1, nodule_types="solid", nodule_shapes="round",
                            nodule_positions="free", diameter_range=(16.0, 18.0))  # fmt: skip
    det = load_detector(V2_PATH)
    res = det.predict(ph.image, spacing=ph.spacing, origin=ph.origin)
    assert res.proba.shape == (len(res.table["label"]),)
    assert np.all((res.proba >= 0) & (res.proba <= 1))
    (nod,) = ph.nodules
    centres = np.array([d.center_mm for d in res.detections]).reshape(-1, 3)
    dist = np.linalg.norm(centres - np.asarray(nod.center_mm), axis=1)
    assert dist.size and dist.min() <= 0.5 * nod.diameter_mm, (dist, nod)


def test_hit_rule_against_a_loop():
    mod = _script()

    class D:
        def __init__(self, c):
            self.center_mm = c

    dets = [D((0.0, 0.0, 0.0)), D((0.0, 0.0, 4.0)), D((10.0, 10.0, 10.0))]
    truths = [{"center_mm": (0.0, 0.0, 1.0), "diameter_mm": 4.0},
              {"center_mm": (10.0, 10.0, 16.0), "diameter_mm": 14.0}]  # fmt: skip
    got = mod._hits(dets, truths)
    for i, d in enumerate(dets):
        for j, t in enumerate(truths):
            r = max(t["diameter_mm"] / 2, 3.0)
            dist = sum((a - b) ** 2 for a, b in zip(d.center_mm, t["center_mm"])) ** 0.5
            assert got[i, j] == (dist <= r)


@pytest.mark.slow
def test_recipe_equals_a_plain_fit_on_a_tiny_configuration():
    from threadpoolctl import threadpool_limits

    mod = _script()
    shape, spacing = (60, 120, 120), (5.0, 3.0, 3.0)
    # one OpenMP thread for the classifier: on a loaded machine its spinning threads
    # made this test ten times slower
    with threadpool_limits(limits=1, user_api="openmp"):
        det = mod.recipe_detector([11], shape=shape, spacing=spacing, log=lambda *a: None)
        cases = [Case(image=ph.image, spacing=ph.spacing, nodule_mask=ph.nodule_labels,
                      origin=ph.origin) for _, ph in mod.phantom_scans(11, shape, spacing)]  # fmt: skip
        ref = NoduleDetector(clip_below_hu=-1024.0, extra_features=mod.CHOSEN_EXTRA,
                             threshold=mod.CHOSEN_THRESHOLD).fit(cases)  # fmt: skip
    assert det.clip_below_hu == -1024.0 and det.extra_features == mod.CHOSEN_EXTRA
    # reference (above): the public fit on the same two scans
    table, _ = ref.case_table(cases[0])
    assert det.threshold == ref.threshold
    np.testing.assert_array_equal(det.predict_regions(table), ref.predict_regions(table))
    assert det.n_regions_ == ref.n_regions_ and det.n_positive_ == ref.n_positive_


# -- opt-in lung_mask_method -------------------------------------------------------------
def test_lung_mask_method_validated_and_default_unchanged():
    with pytest.raises(ValueError, match="lung_mask_method"):
        NoduleDetector(lung_mask_method="otsu")._check_params()
    assert "lung_mask_method" not in NoduleDetector()._feature_params()
    assert NoduleDetector(lung_mask_method="anatomical")._feature_params()["lung_mask_method"] == (
        "anatomical"
    )


def test_lung_mask_method_anatomical_equals_an_explicit_mask():
    from fastct.lungs import lung_mask

    ph = hard_chest_phantom(seed=5, shape=(40, 80, 80), spacing=(7.5, 4.5, 4.5), n_nodules=2)
    det = NoduleDetector(lung_mask_method="anatomical")
    ref_mask = lung_mask(ph.image, spacing=ph.spacing)  # the anatomical default
    got = det.segment(ph.image, spacing=ph.spacing)
    ref = NoduleDetector().segment(ph.image, spacing=ph.spacing, lung_mask=ref_mask)
    np.testing.assert_array_equal(got, ref)
    # the default (None) is the threshold mask, as before
    thr = NoduleDetector().segment(ph.image, spacing=ph.spacing)
    ref_thr = NoduleDetector().segment(
        ph.image, spacing=ph.spacing, lung_mask=lung_mask(ph.image, spacing=ph.spacing,
                                                          method="threshold")
    )  # fmt: skip
    np.testing.assert_array_equal(thr, ref_thr)


@needs_v2
def test_lung_mask_method_travels_in_the_model_file(tmp_path):
    det = load_detector(V2_PATH)
    assert det.lung_mask_method is None
    det.lung_mask_method = "anatomical"
    path = det.save(tmp_path / "m.fastct-model")
    back = load_detector(path)
    assert back.lung_mask_method == "anatomical"
    assert read_meta(path)["params"]["lung_mask_method"] == "anatomical"

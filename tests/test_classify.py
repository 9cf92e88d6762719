"""fastct.classify: scikit-learn estimator rules, the breast-cancer sanity case, and the
nodule detector's stages against plain NumPy / scipy references."""

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
from naive import hessian_central
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastct
from fastct.classify import (
    Case,
    Detection,
    FeatureClassifier,
    NoduleDetector,
    RegionFeatureTransformer,
    detector_feature_names,
    load_model,
    save_model,
    threshold_lung_mask,
)
from fastct.datasets import chest_phantom
from fastct.features import FeatureTable


# -- scikit-learn's estimator checks -----------------------------------------------------
@parametrize_with_checks(
    [
        RegionFeatureTransformer(),
        RegionFeatureTransformer(columns=[0]),
        FeatureClassifier(DecisionTreeClassifier(random_state=0)),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_detector_follows_param_rules():
    from sklearn.base import clone

    det = NoduleDetector(threshold=0.4, blob_scales_mm=(1.0, 2.0))
    c = clone(det)
    assert c.get_params() == det.get_params()
    c.set_params(compactness=0.2)
    assert c.compactness == 0.2 and det.compactness == 0.05


# -- transformer -------------------------------------------------------------------------------
def test_transformer_selects_columns(rng):
    cols = {
        "label": np.arange(1, 6),
        "count": np.arange(5) + 3,
        "mean": rng.normal(size=5),
        "centroid_z_mm": rng.normal(size=5),
        "std": rng.random(5),
        "name": np.array(list("abcde")),
    }
    t = RegionFeatureTransformer().fit(cols)
    assert list(t.get_feature_names_out()) == ["mean", "std"]
    np.testing.assert_array_equal(t.transform(cols), np.column_stack([cols["mean"], cols["std"]]))
    t2 = RegionFeatureTransformer(columns=["std", "count"]).fit(FeatureTable(cols))
    np.testing.assert_array_equal(
        t2.transform(cols), np.column_stack([cols["std"], cols["count"].astype(float)])
    )


def test_transformer_bad_input(rng):
    X = rng.normal(size=(4, 3))
    with pytest.raises(TypeError, match="named columns need a table"):
        RegionFeatureTransformer(columns=["a"]).fit(X)
    with pytest.raises(TypeError, match="needs column names"):
        RegionFeatureTransformer(columns=[0]).fit({"a": X[:, 0]})
    with pytest.raises(ValueError, match="lacks the feature columns"):
        RegionFeatureTransformer(columns=["a", "b"]).fit({"a": X[:, 0]})
    with pytest.raises(TypeError, match="must be numeric"):
        RegionFeatureTransformer(columns=["a"]).fit({"a": np.array(["x", "y"])})
    with pytest.raises(ValueError, match="must not be empty"):
        RegionFeatureTransformer(columns=[]).fit(X)
    with pytest.raises(TypeError, match="sequence of names"):
        RegionFeatureTransformer(columns="mean").fit(X)
    t = RegionFeatureTransformer(columns=["a"]).fit({"a": X[:, 0]})
    with pytest.raises(ValueError, match="lacks the feature columns"):
        t.transform({"b": X[:, 0]})


# -- the breast-cancer sanity case ------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: make_pipeline(StandardScaler(), SVC()),
        lambda: RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=-1),
    ],
    ids=["svm", "random-forest"],
)
def test_breast_cancer_cross_validated_accuracy(make, tmp_path):
    data = load_breast_cancer()
    table = FeatureTable({name: data.data[:, j] for j, name in enumerate(data.feature_names)})
    y = data.target
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    # cross-validation splits rows, so it gets the matrix (a dict of columns is not
    # row-indexable); the table goes through the same transformer below
    ours = cross_val_score(FeatureClassifier(make()), data.data, y, cv=cv)
    # the plumbing changes nothing: the bare estimator on the bare matrix scores the same
    ref = cross_val_score(make(), data.data, y, cv=cv)
    np.testing.assert_allclose(ours, ref)
    assert ours.mean() >= 0.95, ours
    # and the model file round trip keeps the predictions
    clf = FeatureClassifier(make()).fit(table, y)
    back = load_model(save_model(clf, tmp_path / "bc.fastct-model"))
    np.testing.assert_array_equal(back.predict(table), clf.predict(table))
    assert back.feature_names_ == [str(n) for n in data.feature_names]


def test_feature_classifier_bad_input(rng):
    X = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match="requires y"):
        FeatureClassifier().fit(X, None)
    with pytest.raises(ValueError, match="one target per row"):
        FeatureClassifier().fit(X, np.zeros(3))
    with pytest.raises(ValueError, match="Unknown label type"):
        FeatureClassifier().fit(X, rng.normal(size=10))
    with pytest.raises(TypeError, match="scikit-learn classifier"):
        FeatureClassifier(classifier=3).fit(X, np.arange(10) % 2)
    with pytest.raises(NotFittedError):
        FeatureClassifier().predict(X)


# -- detector stages on synthetic data ----------------------------------------------------------
def blobs_volume(rng, shape=(24, 40, 40), spacing=(2.0, 1.0, 1.0)):
    """Lung-like background with a few bright balls and one tube."""
    img = np.full(shape, -850.0, np.float32) + rng.normal(0, 15, shape).astype(np.float32)
    z, y, x = np.indices(shape) * np.asarray(spacing)[:, None, None, None]
    truth = np.zeros(shape, np.int32)
    for k, (c, r) in enumerate((((20, 12, 12), 5.0), ((26, 28, 26), 4.0)), start=1):
        ball = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r * r
        img[ball] = 30.0
        truth[ball] = k
    tube = ((y - 30) ** 2 + (x - 8) ** 2) <= 4
    img[tube] = 20.0
    lung = np.ones(shape, bool)
    lung[:, :, :2] = False
    return img, truth, lung, spacing


def test_blob_feature_matches_reference(rng):
    img, _, lung, sp = blobs_volume(rng)
    det = NoduleDetector(blob_scales_mm=(2.0,), n_segments_per_litre=2e5)
    labels = det.segment(img, spacing=sp, lung_mask=lung)
    table = det.region_table(labels, img, spacing=sp)
    # reference: scipy Gaussian, the same finite differences, scipy per-label mean / max
    g = ndi.gaussian_filter(img.astype(np.float64), [2.0 / s for s in sp], mode="nearest")
    H = hessian_central(np.pad(g, 1, mode="edge"), (1, 1, 1), sp)
    ev = np.linalg.eigvalsh(H)
    blob = np.where(np.all(ev < 0, axis=-1) | ((ev.sum(-1) < 0) & (np.prod(ev, -1) < 0)),
                    np.cbrt(np.maximum(-np.prod(ev, -1), 0)) * 4.0, 0.0)  # fmt: skip
    ids = table["label"]
    ref_mean = np.asarray(ndi.mean(blob, labels, ids))
    ref_max = np.asarray(ndi.maximum(blob, labels, ids))
    # the interior matches closely; the Gaussian edge treatment differs at the volume border
    inner = (table["bbox_min_z"] >= 5) & (table["bbox_max_z"] <= img.shape[0] - 5)
    inner &= (table["bbox_min_y"] >= 9) & (table["bbox_max_y"] <= img.shape[1] - 9)
    inner &= (table["bbox_min_x"] >= 9) & (table["bbox_max_x"] <= img.shape[2] - 9)
    assert inner.sum() > 10
    np.testing.assert_allclose(table["blob_2mm_mean"][inner], ref_mean[inner], rtol=2e-3, atol=2e-2)
    np.testing.assert_allclose(table["blob_2mm_max"][inner], ref_max[inner], rtol=2e-3, atol=2e-2)
    # and it separates the balls from the tube and the background
    ball = ndi.maximum(img > 0, labels, ids) & (ref_max > 0)
    assert table["blob_2mm_max"][ball].max() > 5 * np.median(table["blob_2mm_max"])


def test_context_features_match_loop(rng):
    img, _, lung, sp = blobs_volume(rng)
    det = NoduleDetector(blob_scales_mm=(), n_segments_per_litre=1e5)
    labels = det.segment(img, spacing=sp, lung_mask=lung)
    t = det.region_table(labels, img, spacing=sp)
    assert t.columns[: len(det.feature_names())] != []
    assert set(det.feature_names()) <= set(t.columns)
    ids = list(t["label"])
    mean = dict(zip(ids, t["mean"]))
    # neighbours and shared face areas by a plain loop over voxel faces
    area = {}
    face = {0: sp[1] * sp[2], 1: sp[0] * sp[2], 2: sp[0] * sp[1]}
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)
        for u, v in zip(a[:-1].ravel(), a[1:].ravel()):
            if u != v:
                for p, q in ((u, v), (v, u)):
                    area[(p, q)] = area.get((p, q), 0.0) + face[axis]
    for i, lab in enumerate(ids[:40]):
        nbs = {q: ar for (p, q), ar in area.items() if p == lab and q != 0}
        bg = area.get((lab, 0), 0.0)
        assert math.isclose(t["boundary_fraction"][i], bg / t["surface_mm2"][i], rel_tol=1e-9)
        # neighbourhood maxima: over the region itself and its adjacent regions
        for col in ("p90", "max"):
            val = dict(zip(ids, t[col]))
            assert t[f"nbhd_{col}"][i] == max(val[q] for q in [lab, *nbs])
        if nbs:
            ms = np.array([mean[q] for q in nbs])
            ws = np.array(list(nbs.values()))
            assert math.isclose(t["nb_mean_max"][i], ms.max())
            assert math.isclose(t["nb_mean_min"][i], ms.min())
            assert math.isclose(t["nb_mean_area"][i], (ms * ws).sum() / ws.sum(), rel_tol=1e-9)
            bright = ws[ms > -400].sum() / ws.sum()
            assert math.isclose(t["bright_nb_fraction"][i], bright, rel_tol=1e-9, abs_tol=1e-12)


def test_detect_groups_adjacent_regions():
    det = NoduleDetector(threshold=0.5)
    table = FeatureTable(
        {
            "label": np.array([1, 2, 3, 4]),
            "volume_mm3": np.array([10.0, 30.0, 5.0, 8.0]),
            "centroid_z_mm": np.array([0.0, 4.0, 50.0, 80.0]),
            "centroid_y_mm": np.zeros(4),
            "centroid_x_mm": np.zeros(4),
        },
        {"adjacency": np.array([[1, 2], [2, 3], [3, 4]]), "origin": (0.0, 0.0, 0.0)},
    )
    proba = np.array([0.9, 0.6, 0.1, 0.7])
    dets = det.detect(table, proba)
    assert [d.labels for d in dets] == [(1, 2), (4,)]
    w = np.array([0.9 * 10, 0.6 * 30])
    assert dets[0].center_mm[0] == pytest.approx((w * [0, 4]).sum() / w.sum())
    assert dets[0].volume_mm3 == 40.0
    assert dets[0].diameter_mm == pytest.approx((6 * 40 / math.pi) ** (1 / 3))
    assert dets[0].probability == 0.9
    # a lower threshold joins everything; a shifted origin moves the centres
    assert len(det.detect(table, proba, threshold=0.05)) == 1
    moved = det.detect(table, proba, origin=(10, 0, 0))
    assert moved[1].center_mm[0] == pytest.approx(90.0)
    with pytest.raises(ValueError, match="one value per table row"):
        det.detect(table, proba[:2])
    with pytest.raises(ValueError, match=r"threshold must be a finite number in \[0, 1\]"):
        det.detect(table, proba, threshold=2)


# -- bad input -----------------------------------------------------------------------------------
def test_detector_bad_input(rng):
    img, truth, lung, sp = blobs_volume(rng, shape=(8, 12, 12))
    det = NoduleDetector()
    with pytest.raises(NotFittedError):
        det.predict(img, spacing=sp)
    with pytest.raises(NotFittedError):
        det.predict_regions({})
    with pytest.raises(TypeError, match="labels must have an integer"):
        det.region_table(truth.astype(float), img, spacing=sp)
    with pytest.raises(ValueError, match="same shape"):
        det.region_table(truth[:-1], img, spacing=sp)
    with pytest.raises(ValueError, match="lung_mask must select at least one voxel"):
        det.segment(img, spacing=sp, lung_mask=np.zeros(img.shape, bool))
    with pytest.raises(ValueError, match="no region"):
        det.region_table(np.zeros(img.shape, np.int32), img, spacing=sp)
    neg = np.ones(img.shape, np.int32)
    neg[0, 0, 0] = -1
    with pytest.raises(ValueError, match="labels must be >= 0"):
        det.region_table(neg, img, spacing=sp)
    with pytest.raises(ValueError, match="nodule_mask must be >= 0"):
        det.fit([Case(img, sp, neg, lung)])
    with pytest.raises(TypeError, match="nodule_mask must have an integer"):
        det.fit([{"image": img, "spacing": sp, "nodule_mask": truth * 0.5}])
    with pytest.raises(ValueError, match="same shape"):
        det.fit([{"image": img, "spacing": sp, "nodule_mask": truth[1:]}])
    with pytest.raises(ValueError, match="nodule_mask is required"):
        det.fit([{"image": img, "spacing": sp}])
    with pytest.raises(ValueError, match="unknown keys"):
        det.fit([{"image": img, "spacing": sp, "labels": truth}])
    with pytest.raises(TypeError, match="iterable of Case"):
        det.fit(Case(img, sp, truth))
    with pytest.raises(ValueError, match="at least one case"):
        det.fit([])
    with pytest.raises(ValueError, match="3-D"):
        det.preprocess(img[0], spacing=sp[1:])
    with pytest.raises(ValueError, match="spacing is required"):
        det.segment(img, lung_mask=lung)
    with pytest.raises(ValueError, match="compactness must be a finite number > 0"):
        NoduleDetector(compactness=0).segment(img, spacing=sp, lung_mask=lung)
    with pytest.raises(TypeError, match="median_size must be an integer"):
        NoduleDetector(median_size=2.5).preprocess(img, spacing=sp)
    with pytest.raises(ValueError, match="negative_fraction"):
        NoduleDetector(negative_fraction=0).fit_tables([], [])
    with pytest.raises(TypeError, match="blob_scales_mm"):
        NoduleDetector(blob_scales_mm=2.0).feature_names()


def test_schema_mismatch_is_a_clear_error(rng):
    det = NoduleDetector(blob_scales_mm=(2.0,))
    names = det.feature_names()
    cols = {n: rng.normal(size=50) for n in names}
    det.fit_tables([FeatureTable(cols)], [(cols["mean"] > 0).astype(float)])
    other = {n: v for n, v in cols.items() if n != "blob_2mm_max"}
    other["blob_3mm_max"] = cols["blob_2mm_max"]
    with pytest.raises(ValueError, match=r"lacks the feature columns \['blob_2mm_max'\]"):
        det.predict_regions(other)
    with pytest.raises(ValueError, match="both nodule and non-nodule"):
        det.fit_tables([FeatureTable(cols)], [np.zeros(50)])


# -- end to end on small phantoms ------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    det = NoduleDetector(
        classifier=HistGradientBoostingClassifier(max_iter=30, random_state=0),
        negative_fraction=0.5,
    )
    cases = []
    for seed in (11, 12):
        ph = chest_phantom("small", seed=seed, n_nodules=10, diameter_range=(8, 25))
        cases.append(Case(ph.image, ph.spacing, ph.nodule_labels, ph.lung_mask, name=str(seed)))
    return det.fit(cases)


@pytest.mark.slow  # trains a detector: minutes on a loaded 2-core box
def test_detector_end_to_end_small(trained):
    ph = chest_phantom("small", seed=21, n_nodules=4, diameter_range=(12, 25))
    res = trained.predict(ph.image, spacing=ph.spacing, lung_mask=ph.lung_mask, origin=ph.origin)
    assert trained.n_cases_ == 2 and trained.n_positive_ > 0
    assert res.labels.shape == ph.image.shape and res.labels.dtype == np.int32
    assert np.all(res.labels[~ph.lung_mask] == 0)
    assert res.table.columns[0] == "label" and res.proba.shape == (res.table.n_rows,)
    # probability map = proba painted on the labels, 0 outside
    lut = np.zeros(res.labels.max() + 1, np.float32)
    lut[res.table["label"]] = res.proba
    np.testing.assert_array_equal(res.probability_map, lut[res.labels])
    assert res.probability_map.dtype == np.float32
    assert all(isinstance(d, Detection) for d in res.detections)
    probs = [d.probability for d in res.detections]
    assert probs == sorted(probs, reverse=True)
    # the big nodules are found: a detection centre within each radius
    from fastct.evaluation import match_detections

    m = match_detections(res.detections, ph.nodules)
    assert np.isfinite(m.nodule_score).all(), (m.nodule_score, ph.nodules)
    # the stage-by-stage calls give the same result
    pre = trained.preprocess(ph.image, spacing=ph.spacing)
    labels = trained.segment(pre, spacing=ph.spacing, lung_mask=ph.lung_mask)
    np.testing.assert_array_equal(labels, res.labels)
    table = trained.region_table(labels, pre, spacing=ph.spacing, origin=ph.origin)
    np.testing.assert_array_equal(trained.predict_regions(table), res.proba)


@pytest.mark.slow  # trains a detector: minutes on a loaded 2-core box
def test_stages_stream_on_volumes(trained, tmp_path):
    ph = chest_phantom("small", seed=22, n_nodules=3, diameter_range=(10, 20))
    det = trained
    pre = det.preprocess(ph.image, spacing=ph.spacing)
    labels = det.segment(pre, spacing=ph.spacing, lung_mask=ph.lung_mask)
    table = det.region_table(labels, pre, spacing=ph.spacing, origin=ph.origin)
    proba = det.predict_regions(table)
    with fastct.open(tmp_path / "a.h5", "a") as ar:
        img = ar.create_volume("scans/a/image", data=ph.image, chunks=(16, 32, 32))
        img.spacing, img.origin = ph.spacing, ph.origin
        lung = ar.create_volume("scans/a/labels/lungs", data=ph.lung_mask, chunks=(16, 32, 32))
        vpre = ar.create_volume("r/pre", shape=ph.image.shape, dtype=pre.dtype, chunks=(16, 32, 32))
        det.preprocess(img, spacing=ph.spacing, out=vpre)
        vlab = ar.create_volume(
            "r/labels", shape=ph.image.shape, dtype=np.int32, chunks=(16, 32, 32)
        )
        det.segment(vpre, spacing=ph.spacing, lung_mask=lung, out=vlab)
        np.testing.assert_array_equal(vlab.read(), labels)
        vtable = det.region_table(vlab, vpre, spacing=ph.spacing, origin=ph.origin)
        for c in table.columns:
            np.testing.assert_allclose(vtable[c], table[c], rtol=1e-12, err_msg=c)
        vmap = ar.create_volume(
            "r/proba", shape=ph.image.shape, dtype=np.float32, chunks=(16, 32, 32)
        )
        det.probability_map(vlab, vtable, proba, out=vmap)
        np.testing.assert_array_equal(vmap.read(), det.probability_map(labels, table, proba))


def test_threshold_lung_mask_against_truth():
    from fastct.lungs import lung_mask

    ph = chest_phantom("small", seed=3)
    m = threshold_lung_mask(ph.image, spacing=ph.spacing)
    inter = (m & ph.lung_mask).sum()
    dice = 2 * inter / (m.sum() + ph.lung_mask.sum())
    assert dice > 0.9, dice
    # the one lung-mask API: the alias is lung_mask(method="threshold")
    np.testing.assert_array_equal(m, lung_mask(ph.image, spacing=ph.spacing, method="threshold"))
    with pytest.raises(ValueError, match="spacing is required"):
        threshold_lung_mask(ph.image)


def test_feature_names_schema():
    names = detector_feature_names((1.5, 3.0))
    assert len(names) == len(set(names))
    assert names[-8:-4] == ["blob_1.5mm_mean", "blob_1.5mm_max", "blob_3mm_mean", "blob_3mm_max"]
    assert names[-4:] == ["nbhd_blob_1.5mm_max", "nbhd_blob_3mm_max", "nbhd_p90", "nbhd_max"]
    assert NoduleDetector(blob_scales_mm=(1.5, 3.0)).feature_names() == names


# -- command line -------------------------------------------------------------------------------
@pytest.mark.slow  # trains a detector: minutes on a loaded 2-core box
def test_cli_detect_and_train_from_archive(trained, tmp_path, capsys):
    import csv

    from fastct.cli import main

    model = trained.save(tmp_path / "m.fastct-model")
    ph = chest_phantom("small", seed=23, n_nodules=3, diameter_range=(10, 20))
    arch = tmp_path / "a.h5"
    with fastct.open(arch, "a") as ar:
        v = ar.create_volume("scans/a/image", data=ph.image)
        v.spacing, v.origin = ph.spacing, ph.origin
        ar.create_volume("scans/a/labels/lungs", data=ph.lung_mask)
        ar.create_volume("scans/a/labels/nodules", data=ph.nodule_labels)
    out = tmp_path / "d.csv"
    rc = main(["detect", f"{arch}:/scans/a/image", "--model", str(model), "--out", str(out),
               "--lung-mask", f"{arch}:/scans/a/labels/lungs",
               "--probability-map", f"{arch}:/results/r/proba", "-q"])  # fmt: skip
    assert rc == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    res = trained.predict(ph.image, spacing=ph.spacing, lung_mask=ph.lung_mask, origin=ph.origin)
    assert len(rows) == len(res.detections)
    assert float(rows[0]["probability"]) == res.detections[0].probability
    with fastct.open(arch) as ar:
        np.testing.assert_array_equal(ar["results/r/proba"].read(), res.probability_map)
    # bad input: one line on stderr, exit status 2, nothing written
    assert main(["detect", f"{arch}:/scans/a/image", "--model", str(arch), "--out",
                 str(tmp_path / "x.csv")]) == 2  # fmt: skip
    assert "not a fastct model file" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
    assert main(["detect", f"{arch}:/scans/a/image", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    # train on the archive's scan (one scan with ground truth)
    m2 = tmp_path / "m2.fastct-model"
    assert main(["train", "--archive", str(arch), "--out", str(m2), "-q"]) == 0
    assert fastct.classify.load_detector(m2).n_cases_ == 1
    assert main(["train", "--archive", str(arch), "--scans", "b", "--out",
                 str(tmp_path / "m3.fm")]) == 2  # fmt: skip
    assert "/scans/b/image does not exist" in capsys.readouterr().err

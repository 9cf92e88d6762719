"""Safe model files: round trips, malicious payloads refused without running, version and
schema checks."""

import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.preprocessing import FunctionTransformer
from sklearn.tree import DecisionTreeClassifier

from fastct.classify import (
    FeatureClassifier,
    NoduleDetector,
    detector_feature_names,
    load_detector,
    load_model,
    save_model,
)
from fastct.classify import _modelfile as MF
from fastct.features import FeatureTable


@pytest.fixture
def data(rng):
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)
    return X, y


def fitted_detector(rng, classifier=None):
    det = NoduleDetector(blob_scales_mm=(2.0,), classifier=classifier)
    names = det.feature_names()
    n = 200
    cols = {name: rng.normal(size=n) for name in names}
    overlap = (cols["mean"] > 0.5).astype(float)
    return det.fit_tables([FeatureTable(cols)], [overlap]), FeatureTable(cols)


def rewrite(path, *, meta=None, payload=None, extra=None):
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    if meta is not None:
        m = json.loads(members["meta.json"])
        m.update(meta)
        members["meta.json"] = json.dumps(m).encode()
    if payload is not None:
        members["model.skops"] = payload
    if extra:
        members.update(extra)
    path.write_bytes(MF._zip_bytes(members))


# -- round trips ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomForestClassifier(10, random_state=0),
        lambda: HistGradientBoostingClassifier(max_iter=10, random_state=0),
    ],
)
def test_feature_classifier_round_trip(tmp_path, data, make):
    X, y = data
    clf = FeatureClassifier(make()).fit(X, y)
    path = save_model(clf, tmp_path / "m.fastct-model")
    back = load_model(path)
    assert isinstance(back, FeatureClassifier)
    np.testing.assert_array_equal(back.predict(X), clf.predict(X))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    meta = MF.read_meta(path)
    assert meta["kind"] == "feature-classifier"
    assert meta["schema"]["feature_names"] == ["x0", "x1", "x2", "x3"]


def test_table_classifier_round_trip_keeps_columns(tmp_path, data):
    X, y = data
    table = FeatureTable({"a": X[:, 0], "b": X[:, 1], "label": np.arange(len(y))})
    clf = FeatureClassifier(DecisionTreeClassifier(random_state=0)).fit(table, y)
    back = load_model(clf.save(tmp_path / "t.fastct-model"))
    assert back.feature_names_ == ["a", "b"]  # label is an identifier, not a feature
    np.testing.assert_array_equal(back.predict(table), clf.predict(table))
    with pytest.raises(ValueError, match="lacks the feature columns"):
        back.predict({"a": X[:, 0], "c": X[:, 1]})


def test_detector_round_trip(tmp_path, rng):
    det, table = fitted_detector(rng)
    path = det.save(tmp_path / "d.fastct-model")
    back = load_detector(path)
    assert back.get_params()["blob_scales_mm"] == (2.0,)
    assert back.feature_names_ == detector_feature_names((2.0,))
    np.testing.assert_array_equal(back.predict_regions(table), det.predict_regions(table))
    assert isinstance(load_model(path), NoduleDetector)
    meta = MF.read_meta(path)
    assert meta["fastct_version"] == __import__("fastct").__version__
    assert meta["schema"]["feature_names"] == det.feature_names_
    assert meta["types"] == ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def test_write_is_atomic_and_refuses_overwrite(tmp_path, data):
    X, y = data
    clf = FeatureClassifier(DecisionTreeClassifier()).fit(X, y)
    path = save_model(clf, tmp_path / "m.fastct-model")
    with pytest.raises(FileExistsError):
        save_model(clf, path, overwrite=False)
    assert sorted(os.listdir(tmp_path)) == ["m.fastct-model"]


# -- malicious files -----------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.fastct-model"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    # the payload is real: unpickling it would create the marker
    with pytest.raises(MF.ModelFileError, match="never unpickles"):
        load_model(evil)
    with pytest.raises(MF.ModelFileError, match="never unpickles"):
        load_detector(evil)
    assert not marker.exists()
    pickle.loads(evil.read_bytes())  # control: the payload does run when unpickled
    assert marker.exists()


def test_pickle_inside_the_zip_is_refused(tmp_path, data):
    marker = tmp_path / "pwned"
    X, y = data
    path = save_model(FeatureClassifier(DecisionTreeClassifier()).fit(X, y), tmp_path / "m.fm")
    rewrite(path, payload=pickle.dumps(_Payload(marker)))
    with pytest.raises(MF.ModelFileError, match="not a valid skops file"):
        load_model(path)
    assert not marker.exists()


def test_skops_payload_with_dangerous_type_is_refused(tmp_path, data):
    X, y = data
    path = save_model(FeatureClassifier(DecisionTreeClassifier()).fit(X, y), tmp_path / "m.fm")
    # a skops file whose loading would import and hand out os.system
    payload = sio.dumps(FunctionTransformer(func=os.system))
    assert any("system" in t for t in sio.get_untrusted_types(data=payload))
    rewrite(path, payload=payload)
    with pytest.raises(MF.UntrustedModelError, match="untrusted types"):
        load_model(path)


def test_untrusted_type_cannot_be_written(tmp_path, data):
    X, y = data
    clf = FeatureClassifier(FunctionTransformer(func=os.system))
    clf.classifier_ = FunctionTransformer(func=os.system)  # as if fitted
    clf.transformer_ = FeatureClassifier(DecisionTreeClassifier()).fit(X, y).transformer_
    clf.n_features_in_ = 4
    with pytest.raises(MF.UntrustedModelError, match="trusted list"):
        save_model(clf, tmp_path / "x.fm")
    assert not (tmp_path / "x.fm").exists()


# -- foreign files ---------------------------------------------------------------------------
def test_other_version_is_refused(tmp_path, rng):
    det, _ = fitted_detector(rng)
    path = det.save(tmp_path / "d.fm")
    rewrite(path, meta={"fastct_version": "0.0.1"})
    with pytest.raises(ValueError, match=r"written by fastct 0\.0\.1.*retrain"):
        load_detector(path)


def test_other_schema_is_refused(tmp_path, rng):
    det, _ = fitted_detector(rng)
    path = det.save(tmp_path / "d.fm")
    meta = MF.read_meta(path)
    names = meta["schema"]["feature_names"]
    rewrite(path, meta={"schema": {**meta["schema"], "feature_names": names[::-1]}})
    with pytest.raises(ValueError, match="another feature schema"):
        load_detector(path)
    rewrite(path, meta={"schema": {**meta["schema"], "schema_version": 99}})
    with pytest.raises(ValueError, match="another feature schema"):
        load_model(path)


def test_other_format_version_and_kind(tmp_path, rng, data):
    det, _ = fitted_detector(rng)
    path = det.save(tmp_path / "d.fm")
    rewrite(path, meta={"format_version": 2})
    with pytest.raises(MF.ModelFileError, match="format version 2"):
        load_model(path)
    X, y = data
    cpath = save_model(FeatureClassifier(DecisionTreeClassifier()).fit(X, y), tmp_path / "c.fm")
    with pytest.raises(MF.ModelFileError, match="expected 'nodule-detector'"):
        load_detector(cpath)


@pytest.mark.parametrize(
    "members, match",
    [
        ({"meta.json": b"{not json", "model.skops": b""}, "not JSON"),
        ({"meta.json": b'{"format": "other"}', "model.skops": b""}, "not a fastct model"),
        ({"meta.json": b"{}"}, "must hold exactly"),
        ({"meta.json": b"{}", "model.skops": b"", "run.py": b"print(1)"}, "must hold exactly"),
    ],
)
def test_malformed_containers(tmp_path, members, match):
    path = tmp_path / "bad.fm"
    path.write_bytes(MF._zip_bytes(members))
    with pytest.raises(MF.ModelFileError, match=match):
        load_model(path)


def test_missing_file_and_bad_path_type(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.fm")
    with pytest.raises(TypeError, match="path must be"):
        load_model(3)
    (tmp_path / "text.fm").write_text("hello")
    with pytest.raises(MF.ModelFileError, match="not a zip"):
        load_model(tmp_path / "text.fm")


def test_save_unfitted_or_foreign_model():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        save_model(NoduleDetector(), "x.fm")
    with pytest.raises(TypeError, match="NoduleDetector or FeatureClassifier"):
        save_model(DecisionTreeClassifier(), "x.fm")

"""Model files that are safe to share: a zip of JSON metadata and a skops file.

This module holds the whole of fastct's model files: the container format and its
safety checks (:func:`write_model_file`, :func:`read_model_file`), and the mapping of
the fastct estimators onto it (:func:`save_model`, :func:`load_model`,
:func:`load_detector`, :func:`default_detector` for the model that ships with fastct).

A fastct model file (suffix ``.fastct-model`` by convention) is a zip archive with
exactly two members:

``meta.json``
    ``{"format": "fastct-model", "format_version": 1, "fastct_version": ...,
    "kind": ..., "created": ISO-8601 UTC, "schema": {...}, "params": {...},
    "types": [...]}``. ``schema`` describes the features the model expects
    (``feature_names`` in order, plus whatever the producer needs to recompute them);
    ``params`` are the plain-JSON constructor parameters of the fastct object;
    ``types`` the non-default types of the skops payload (informative).
``model.skops``
    The fitted scikit-learn estimator, written by ``skops.io.dumps``.

Reading never unpickles anything. The metadata is read and checked first (format,
format version, fastct version, kind, schema); then the skops payload's type list is
read with ``skops.io.get_untrusted_types`` (JSON only, nothing is imported or run)
and every type that skops does not trust by default must be in the explicit
:data:`TRUSTED_TYPES` list, else the file is refused with a :class:`UntrustedModelError`
naming the offending types. Only then is ``skops.io.loads`` called, with exactly
those trusted types. A pickle file, a zip with unexpected members, oversized members
or malformed JSON are refused before anything is loaded.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from .._atomic import atomic_path
from ._detector import NoduleDetector
from ._estimators import FeatureClassifier, RegionFeatureTransformer
from ._regions import SCHEMA_VERSION

__all__ = [
    "DEFAULT_MODEL_PATH",
    "FORMAT",
    "FORMAT_VERSION",
    "TRUSTED_TYPES",
    "ModelFileError",
    "UntrustedModelError",
    "default_detector",
    "load_detector",
    "load_model",
    "read_model_file",
    "save_model",
    "write_model_file",
]

#: The model that ships with fastct (built by ``fastct train``, see the docs).
DEFAULT_MODEL_PATH = (
    Path(__file__).resolve().parent.parent / "models" / "nodule_detector_v1.fastct-model"
)

FORMAT = "fastct-model"
FORMAT_VERSION = 1
META_NAME = "meta.json"
MODEL_NAME = "model.skops"
# Refuse members larger than this (a zip bomb would otherwise be inflated in memory).
MAX_MEMBER_BYTES = 256 * 1024**2

#: Types a model file may contain beyond the ones skops trusts by default (plain
#: scikit-learn estimators, NumPy arrays and dtypes, builtin containers). These are the
#: fitted internals of the tree ensembles fastct's detector and classifiers use.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)


class ModelFileError(ValueError):
    """A model file that cannot be used: not a fastct model, wrong version or schema."""


class UntrustedModelError(ModelFileError):
    """A model file whose payload references types outside the trusted list."""


def _version() -> str:
    from .. import __version__

    return __version__


def write_model_file(
    path: str | Path,
    estimator: Any,
    *,
    kind: str,
    schema: Mapping[str, Any],
    params: Mapping[str, Any],
    overwrite: bool = True,
) -> Path:
    """Write ``estimator`` (skops) and its metadata (JSON) atomically to ``path``.

    The payload is checked before writing: a file this function writes can always be
    read back by :func:`read_model_file` (no type outside :data:`TRUSTED_TYPES`).
    """
    import skops.io as sio

    path = Path(path)
    payload = sio.dumps(estimator)
    extra = sorted(sio.get_untrusted_types(data=payload))
    bad = [t for t in extra if t not in TRUSTED_TYPES]
    if bad:
        raise UntrustedModelError(
            f"estimator: cannot write a model with types outside fastct's trusted list "
            f"({', '.join(bad)}); use a scikit-learn estimator built from trusted parts"
        )
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastct_version": _version(),
        "kind": str(kind),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "schema": dict(schema),
        "params": dict(params),
        "types": extra,
    }
    text = json.dumps(meta, indent=2, sort_keys=True, allow_nan=False)
    with atomic_path(path, overwrite=overwrite) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(META_NAME, text)
            zf.writestr(MODEL_NAME, payload)
    return path


def _read_member(zf: zipfile.ZipFile, name: str, path: Path) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > MAX_MEMBER_BYTES:
        raise ModelFileError(
            f"model file {str(path)!r}: member {name!r} is {info.file_size} bytes, "
            f"more than the {MAX_MEMBER_BYTES} allowed"
        )
    with zf.open(info) as f:
        data = f.read(MAX_MEMBER_BYTES + 1)
    if len(data) > MAX_MEMBER_BYTES:
        raise ModelFileError(f"model file {str(path)!r}: member {name!r} is too large")
    return data


def read_meta(path: str | Path) -> dict[str, Any]:
    """The checked ``meta.json`` of a model file (nothing else is read)."""
    meta, _ = _open(path, payload=False)
    return meta


def _open(path: str | Path, *, payload: bool) -> tuple[dict[str, Any], bytes | None]:
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        what = "a pickle" if head[:1] == b"\x80" else "not a zip container"
        raise ModelFileError(
            f"model file {str(path)!r} is not a fastct model file ({what}); fastct never "
            f"unpickles model files"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted(zf.namelist())
            if names != sorted([META_NAME, MODEL_NAME]):
                raise ModelFileError(
                    f"model file {str(path)!r} must hold exactly {META_NAME!r} and "
                    f"{MODEL_NAME!r}, got {names}"
                )
            raw_meta = _read_member(zf, META_NAME, path)
            data = _read_member(zf, MODEL_NAME, path) if payload else None
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        # A damaged member: bad CRC, truncated or undecodable deflate stream, unknown method.
        raise ModelFileError(f"model file {str(path)!r} is a damaged zip: {exc}") from None
    try:
        meta = json.loads(raw_meta.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"model file {str(path)!r}: {META_NAME} is not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"model file {str(path)!r} is not a fastct model file")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"model file {str(path)!r} has format version {meta.get('format_version')!r}; "
            f"this fastct reads version {FORMAT_VERSION}"
        )
    for key, typ in (("schema", dict), ("params", dict), ("kind", str), ("fastct_version", str)):
        if not isinstance(meta.get(key), typ):
            raise ModelFileError(f"model file {str(path)!r}: {META_NAME} lacks a valid {key!r}")
    return meta, data


def read_model_file(
    path: str | Path,
    *,
    kind: str | None = None,
    check_version: bool = True,
) -> tuple[dict[str, Any], Any]:
    """Read a model file: ``(meta, estimator)``, refusing anything unsafe or foreign.

    Raises
    ------
    FileNotFoundError
        No such file.
    ModelFileError (a ValueError)
        Not a fastct model file (a pickle, another zip, bad JSON), another format
        version, another fastct version (unless ``check_version=False``), another kind.
    UntrustedModelError (a ModelFileError)
        The payload references a type outside :data:`TRUSTED_TYPES` and skops' defaults.
    """
    import skops.io as sio

    meta, data = _open(path, payload=True)
    path = Path(path)
    if check_version and meta["fastct_version"] != _version():
        raise ModelFileError(
            f"model file {str(path)!r} was written by fastct {meta['fastct_version']}, "
            f"this is fastct {_version()}; retrain it (fastct train) with this version"
        )
    if kind is not None and meta["kind"] != kind:
        raise ModelFileError(
            f"model file {str(path)!r} holds a {meta['kind']!r} model, expected {kind!r}"
        )
    try:
        extra = sio.get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not ours"
        raise ModelFileError(
            f"model file {str(path)!r}: {MODEL_NAME} is not a valid skops file ({exc})"
        ) from None
    bad = sorted(t for t in extra if t not in TRUSTED_TYPES)
    if bad:
        raise UntrustedModelError(
            f"model file {str(path)!r} references untrusted types {bad}; refusing to load it "
            f"(trusted beyond skops' defaults: {list(TRUSTED_TYPES)})"
        )
    try:
        estimator = sio.loads(data, trusted=sorted(extra))
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(
            f"model file {str(path)!r}: cannot load {MODEL_NAME} ({type(exc).__name__}: {exc})"
        ) from None
    from sklearn.base import BaseEstimator

    if not isinstance(estimator, BaseEstimator):
        raise ModelFileError(
            f"model file {str(path)!r}: {MODEL_NAME} holds a {type(estimator).__name__}, "
            f"not a scikit-learn estimator"
        )
    return meta, estimator


def payload_bytes(estimator: Any) -> bytes:
    """``skops.io.dumps(estimator)`` (for tests and size reports)."""
    import skops.io as sio

    return sio.dumps(estimator)


def _zip_bytes(members: Mapping[str, bytes]) -> bytes:  # for tests crafting files
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# fastct estimators <-> model files
# --------------------------------------------------------------------------------------
_KIND_DETECTOR = "nodule-detector"
_KIND_CLASSIFIER = "feature-classifier"


def save_model(model: Any, path: str | Path, *, overwrite: bool = True) -> Path:
    """Save a fitted :class:`NoduleDetector` or :class:`FeatureClassifier` safely.

    The file is a zip of ``meta.json`` (fastct version, feature schema, parameters)
    and ``model.skops`` (the scikit-learn classifier); see :mod:`fastct.classify._modelfile`.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from fastct.classify import FeatureClassifier, load_model, save_model
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> clf = FeatureClassifier(RandomForestClassifier(5, random_state=0)).fit(X, y)
    >>> path = save_model(clf, os.path.join(tempfile.mkdtemp(), "bc.fastct-model"))
    >>> bool((load_model(path).predict(X) == clf.predict(X)).all())
    True
    """
    if isinstance(model, NoduleDetector):
        check_is_fitted(model, "classifier_")
        schema = {
            "schema_version": SCHEMA_VERSION,
            "feature_names": list(model.feature_names_),
            "training": {
                "n_cases": int(getattr(model, "n_cases_", 0)),
                "n_regions": int(getattr(model, "n_regions_", 0)),
                "n_positive": int(getattr(model, "n_positive_", 0)),
            },
        }
        return write_model_file(
            path, model.classifier_, kind=_KIND_DETECTOR, schema=schema,
            params=model._feature_params(), overwrite=overwrite,
        )  # fmt: skip
    if isinstance(model, FeatureClassifier):
        check_is_fitted(model, "classifier_")
        cols = model.columns
        schema = {
            "feature_names": model.feature_names_,
            "table_input": bool(model.transformer_._table_input),
            "n_features": int(model.n_features_in_),
        }
        if not model.transformer_._table_input:
            schema["index"] = [int(i) for i in model.transformer_._index]
        params = {"columns": None if cols is None else [c if isinstance(c, str) else int(c)
                                                        for c in cols]}  # fmt: skip
        return write_model_file(
            path, model.classifier_, kind=_KIND_CLASSIFIER, schema=schema, params=params,
            overwrite=overwrite,
        )  # fmt: skip
    raise TypeError(
        f"model must be a fitted NoduleDetector or FeatureClassifier, got {type(model).__name__}"
    )


def load_model(path: str | Path) -> NoduleDetector | FeatureClassifier:
    """Load a model file written by :func:`save_model` (never unpickles).

    Raises
    ------
    ValueError (:class:`ModelFileError`)
        Not a fastct model file (e.g. a pickle), written by another fastct version,
        a feature schema this version does not compute, or untrusted types inside.
    """
    meta, est = read_model_file(path)
    kind = meta["kind"]
    if kind == _KIND_DETECTOR:
        return _detector_from(meta, est, path)
    if kind == _KIND_CLASSIFIER:
        return _classifier_from(meta, est, path)
    raise ModelFileError(f"model file {str(path)!r}: unknown model kind {kind!r}")


def _detector_from(meta: dict, est: Any, path: Any) -> NoduleDetector:
    params = dict(meta["params"])
    schema = meta["schema"]
    known = set(NoduleDetector().get_params()) - {"classifier"}
    if set(params) - known:
        raise ModelFileError(
            f"model file {str(path)!r}: unknown detector parameters {sorted(set(params) - known)}"
        )
    if "blob_scales_mm" in params:
        params["blob_scales_mm"] = tuple(params["blob_scales_mm"])
    det = NoduleDetector(**params)
    try:
        det._check_params()
        expected = det.feature_names()
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"model file {str(path)!r}: bad detector parameters ({exc})") from None
    if schema.get("schema_version") != SCHEMA_VERSION or schema.get("feature_names") != expected:
        raise ModelFileError(
            f"model file {str(path)!r} was trained with another feature schema "
            f"(version {schema.get('schema_version')!r}, {len(schema.get('feature_names') or [])} "
            f"features); this fastct computes schema version {SCHEMA_VERSION} with "
            f"{len(expected)} features; retrain the model"
        )
    if not hasattr(est, "predict_proba") or getattr(est, "n_features_in_", None) != len(expected):
        raise ModelFileError(
            f"model file {str(path)!r}: the classifier does not take the {len(expected)} "
            f"schema features"
        )
    det.classifier_ = est
    det.feature_names_ = expected
    training = schema.get("training") or {}
    det.n_cases_ = int(training.get("n_cases", 0))
    det.n_regions_ = int(training.get("n_regions", 0))
    det.n_positive_ = int(training.get("n_positive", 0))
    return det


def _classifier_from(meta: dict, est: Any, path: Any) -> FeatureClassifier:
    schema = meta["schema"]
    names = schema.get("feature_names")
    if not isinstance(names, list) or getattr(est, "n_features_in_", None) != len(names):
        raise ModelFileError(f"model file {str(path)!r}: feature schema does not fit the model")
    clf = FeatureClassifier(classifier=None, columns=meta["params"].get("columns"))
    tr = RegionFeatureTransformer(columns=clf.columns)
    tr.feature_names_out_ = np.asarray(names, dtype=object)
    tr.n_features_in_ = int(schema.get("n_features", len(names)))
    tr._table_input = bool(schema.get("table_input", True))
    if not tr._table_input:
        tr._index = np.asarray(schema.get("index", range(len(names))), dtype=np.intp)
    clf.transformer_ = tr
    clf.classifier_ = est
    clf.classes_ = est.classes_
    clf.n_features_in_ = tr.n_features_in_
    return clf


def load_detector(path: str | Path) -> NoduleDetector:
    """Load a :class:`NoduleDetector` model file (see :func:`load_model`)."""
    meta, est = read_model_file(path, kind=_KIND_DETECTOR)
    return _detector_from(meta, est, path)


_DEFAULT: NoduleDetector | None = None


def default_detector() -> NoduleDetector:
    """The detector that ships with fastct (a fresh copy each call).

    Trained on synthetic chest phantoms (``fastct train``, recipe in
    ``docs/classification.rst``); works at any resolution (features in mm and HU).
    """
    global _DEFAULT
    if _DEFAULT is None:
        if not DEFAULT_MODEL_PATH.is_file():
            raise FileNotFoundError(
                f"the shipped model {str(DEFAULT_MODEL_PATH)!r} is missing; build it with "
                f"'fastct train --out {DEFAULT_MODEL_PATH}'"
            )
        _DEFAULT = load_detector(DEFAULT_MODEL_PATH)
    det = clone(_DEFAULT)
    for attr in ("classifier_", "feature_names_", "n_cases_", "n_regions_", "n_positive_"):
        setattr(det, attr, getattr(_DEFAULT, attr))
    return det

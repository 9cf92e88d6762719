"""Model files that are safe to share: a zip of JSON metadata and a skops file.

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._atomic import atomic_path

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "TRUSTED_TYPES",
    "ModelFileError",
    "UntrustedModelError",
    "read_model_file",
    "write_model_file",
]

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
    from . import __version__

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
    except zipfile.BadZipFile as exc:
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

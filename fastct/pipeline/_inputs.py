"""What a pipeline run reads and checks before any work starts: the two scans, the
detector, the run name, and from the archive the scan interval and a phantom's
ground truth."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..volume import Archive, Volume

#: Plausible voxel spacing of a CT scan in mm (outside it the input is refused).
SPACING_LIMITS_MM = (0.05, 20.0)
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def scan_volume(ar: Archive, name: Any, param: str) -> Volume:
    """The scan ``name`` of ``ar`` (a volume, or a group holding an ``image``
    volume), checked to be a 3-D CT scan in HU of plausible spacing. Any orientation
    is accepted (LPS, RAS, LAS, permuted, oblique): every stage works in physical
    points, ``origin + direction @ (index * spacing)``."""
    if not isinstance(name, str) or not name.strip("/"):
        raise ValueError(f"{param} must name a scan in the archive like '/scans/a', got {name!r}")
    path = "/" + name.strip("/")
    if path not in ar:
        scans = [v for v in ar.volumes() if not v.startswith("/results/")]
        raise ValueError(
            f"{param} {path!r} not found in archive {str(ar.path)!r}; it holds "
            f"{', '.join(scans) if scans else 'no volumes'}"
        )
    node = ar[path]
    if not isinstance(node, Volume):
        if "image" not in node:
            raise ValueError(
                f"{param} {path!r} in {str(ar.path)!r} is a group without an 'image' volume"
            )
        node = ar[path + "/image"]
        if not isinstance(node, Volume):
            raise ValueError(f"{param} {path}/image in {str(ar.path)!r} is not a volume")
    if node.ndim != 3:
        raise ValueError(f"{param} {node.name!r} must be a 3-D scan, got {node.ndim}-D")
    if node.dtype.kind not in "iuf":
        raise ValueError(f"{param} {node.name!r} must hold CT numbers, got dtype {node.dtype}")
    lo, hi = SPACING_LIMITS_MM
    if any(not lo <= s <= hi for s in node.spacing):
        raise ValueError(
            f"{param} {node.name!r} has spacing {tuple(node.spacing)} mm; a CT scan's voxel "
            f"size must be within [{lo}, {hi}] mm on every axis"
        )
    if node.modality is not None and node.modality.upper() != "CT":
        raise ValueError(f"{param} {node.name!r} must be a CT scan, got modality {node.modality!r}")
    if node.units is not None and node.units.upper() != "HU":
        raise ValueError(f"{param} {node.name!r} must be in HU, got units {node.units!r}")
    return node


def check_pair(base: Volume, follow: Volume) -> None:
    """Refuse two scans that cannot be of one chest protocol (modality, spacing)."""
    if (base.modality or "CT").upper() != (follow.modality or "CT").upper():
        raise ValueError(
            f"baseline and followup must have the same modality, got {base.modality!r} and "
            f"{follow.modality!r}"
        )
    ratio = np.asarray(base.spacing) / np.asarray(follow.spacing)
    if np.any(ratio > 10) or np.any(ratio < 0.1):
        raise ValueError(
            f"baseline spacing {base.spacing} and followup spacing {follow.spacing} differ by "
            "more than 10x on an axis; these are not two scans of one chest protocol"
        )


def resolve_detector(model: Any) -> Any:
    """The nodule detector a run uses, loaded before any work.

    Parameters
    ----------
    model : None, path or detector
        None: the detector shipped with fastct (:func:`fastct.classify.default_detector`);
        a path: a model file saved by fastct (:func:`fastct.classify.load_detector`); or
        a detector object (anything with ``predict`` and ``segment``), returned as is.

    Raises
    ------
    FileNotFoundError
        The model file does not exist.
    ValueError
        The model file is not a fastct detector of this schema.
    TypeError
        ``model`` is none of the above.
    """
    from .. import classify

    if model is None:
        from ..classify._modelfile import DEFAULT_MODEL_PATH

        det = classify.default_detector()
        _remember_path(det, Path(DEFAULT_MODEL_PATH))
        return det
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model file {str(path)!r} does not exist")
        det = classify.load_detector(path)
        _remember_path(det, path)
        return det
    if hasattr(model, "predict") and hasattr(model, "segment"):
        return model
    raise TypeError(
        f"model must be None (the shipped detector), a model file path or a detector, "
        f"got {type(model).__name__}"
    )


#: Attribute :func:`resolve_detector` sets on a detector it loaded from a file.
_PATH_ATTR = "_fastct_model_path"


def _remember_path(det: Any, path: Path) -> None:
    try:
        setattr(det, _PATH_ATTR, str(path.resolve()))
    except AttributeError:  # a detector refusing new attributes: no path in the footer
        pass


def model_info(model: Any) -> dict[str, Any]:
    """Where the detector came from, for the report's footer: ``path`` (None for a
    detector object not loaded by :func:`resolve_detector`) and the file's ``sha256``
    (of the file as it is now)."""
    import hashlib

    if model is None:
        from ..classify._modelfile import DEFAULT_MODEL_PATH

        path = Path(DEFAULT_MODEL_PATH)
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
    elif getattr(model, _PATH_ATTR, None):
        path = Path(getattr(model, _PATH_ATTR))
    else:
        return {"path": None, "sha256": None, "kind": type(model).__name__}
    if not path.is_file():
        return {"path": str(path), "sha256": None, "kind": "file (missing now)"}
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.resolve()), "sha256": digest.hexdigest(), "kind": "file"}


def check_run_name(run_name: Any, out_dir: Path) -> str:
    """The results group name: ``run_name``, or by default the output folder's name made
    safe; 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit."""
    if run_name is None:
        run_name = re.sub(r"[^A-Za-z0-9._-]", "-", out_dir.resolve().name).strip("-.") or "run"
        run_name = run_name[:64]
    if not isinstance(run_name, str) or not _RUN_NAME.match(run_name):
        raise ValueError(
            "run_name must be 1-64 characters of letters, digits, '.', '_' or '-' "
            f"starting with a letter or digit, got {run_name!r}"
        )
    return run_name


def _parse_date(value: Any) -> _dt.date | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    text = str(value).strip()
    for fmt in ("%Y%m%d", "%Y-%m-%d"):
        try:
            return _dt.datetime.strptime(text[:10] if "-" in text else text[:8], fmt).date()
        except ValueError:
            continue
    return None


def read_interval_days(ar: Archive, base: Volume, follow: Volume) -> float | None:
    """Days between the scans from the archive: an ``interval_days`` attribute on the
    follow-up volume or its group, else the difference of the ``study_date``
    attributes (``YYYYMMDD`` or ``YYYY-MM-DD``); None without either."""

    def attr(vol: Volume, key: str) -> Any:
        if key in vol.attrs:
            return vol.attrs[key]
        parent = vol.name.rsplit("/", 1)[0] or "/"
        return ar.get_attrs(parent).get(key)

    value = attr(follow, "interval_days")
    if value is not None:
        return float(value)
    d1, d2 = _parse_date(attr(base, "study_date")), _parse_date(attr(follow, "study_date"))
    if d1 is not None and d2 is not None:
        return float((d2 - d1).days)
    return None


def read_truth(ar: Archive, base: Volume, follow: Volume) -> dict[str, Any] | None:
    """Phantom ground truth written by ``fastct phantom`` beside the two scans: the
    ``truth`` group in their common parent, as ``{'transform': 4 x 4 matrix,
    'nodules': {scan: [records]}}``; None when there is none."""
    b_parts, f_parts = base.name.strip("/").split("/"), follow.name.strip("/").split("/")
    common = []
    for x, y in zip(b_parts, f_parts):
        if x != y:
            break
        common.append(x)
    if not common:
        return None
    name = "/" + "/".join(common) + "/truth"
    if name not in ar:
        return None
    attrs = ar.get_attrs(name)
    if "transform" not in attrs or "nodules_json" not in attrs:
        return None
    try:
        matrix = np.asarray(attrs["transform"], dtype=float)
        nodules = json.loads(attrs["nodules_json"])
    except (TypeError, ValueError):
        return None  # not fastct phantom truth: run without the comparison
    if matrix.shape != (4, 4) or not isinstance(nodules, dict):
        return None
    return {"transform": matrix, "nodules": nodules}

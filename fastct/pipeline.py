"""The longitudinal lung-CT pipeline: a baseline and a follow-up scan in, nodules and
how each changed out.

:func:`run` takes two scans of one archive and runs, for each time point,

    denoise (the detector's preprocessing: median and/or Gaussian)
    -> enhance (unsharp mask) -> lung mask (:func:`fastct.lungs.lung_mask`)
    -> supervoxels inside the lungs -> per-region features -> detector
    (probability per region, probability map, detections),

then registers the follow-up to the baseline (rigid by default, similarity on
request), resamples the follow-up onto the baseline grid, computes the difference
map, matches the nodules across time points and builds the growth table (diameter,
volume, change, volume doubling time). It writes every intermediate volume into the
archive under ``/results/<run>/`` and a folder with ``report.html`` (figures next to
it, no remote resources), CSV tables and the transform.

Streaming and memory
--------------------
Every volume stage reads and writes archive ``Volume`` objects block by block
(filters, probability map, resampling, difference map); the lung mask works on a
~1.5 mm working grid and keeps one bool mask of the scan in memory (100 MiB for a
512 x 512 x 400 scan); the detector's supervoxels and features stream as its module
documents. No stage holds several float copies of a full scan at once.

Nothing half-written
--------------------
All inputs are checked (scans exist, same modality, plausible spacing, CT numbers in
HU, the model loads, the output folder is free) before any work starts. The archive
is opened as a transaction (:func:`fastct.open` mode ``'a'``) that is committed only
when every stage succeeded, and the output folder is written under a temporary name
and renamed into place at the end. A failure at any stage leaves the archive and the
folder as they were.

Matching and growth
-------------------
Baseline detections are mapped into follow-up physical space with the registration
transform and matched to follow-up detections one-to-one by minimum total distance
(Hungarian algorithm), pairs further apart than ``match_tolerance_mm`` (default
``max(10 mm, the larger diameter)``) being left unmatched. Each matched pair gets
diameter and volume at both time points, the volume change in percent and the volume
doubling time ``VDT = interval_days * ln 2 / ln(V2 / V1)`` (days; negative for a
shrinking nodule, infinite for an unchanged volume). With a similarity registration
the follow-up volume is divided by ``scale**3`` before the ratio, so a global scale
difference between scans is not read as growth. ``interval_days`` is a parameter;
when it is not given it is read from the archive: an ``interval_days`` attribute on
the follow-up volume or its group, or the difference between ``study_date``
attributes (``YYYYMMDD`` or ISO ``YYYY-MM-DD``) of the two scans. Without either the
VDT column is empty.

Ground truth
------------
When the scans come from ``fastct phantom`` (a ``truth`` group beside them holding
the true transform and the nodule records), the result also holds the nodules found
versus the truth (a truth nodule is found when a detection's centre lies within
``max(radius, 3 mm)`` of its centre), the FROC of both scans, and the registration
error: the largest distance over the 8 corners of the baseline grid between
``transform.apply(p)`` and the true ``M p``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _atomic
from .streaming import map_blocks, map_overlap, read_region, write_all
from .volume import Archive, Volume

__all__ = [
    "PipelineResult",
    "match_nodules",
    "registration_error_mm",
    "run",
    "volume_doubling_time",
]

#: Plausible voxel spacing of a CT scan in mm (outside it the input is refused).
SPACING_LIMITS_MM = (0.05, 20.0)
#: Names of the stages, in order, as they appear in the timings.
STAGES = (
    "load",
    "denoise",
    "enhance",
    "lungs",
    "supervoxels",
    "features",
    "detect",
    "register",
    "resample",
    "difference",
    "match",
    "evaluate",
    "report",
)
#: Truth nodules this large count in "found vs truth" and the FROC (smaller ones are
#: neither counted nor false positives when hit).
MIN_TRUTH_DIAMETER_MM = 5.0
#: Smallest hit radius around a truth nodule's centre.
MIN_HIT_RADIUS_MM = 3.0
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TIMEPOINTS = ("baseline", "followup")


# -- results -----------------------------------------------------------------------------
@dataclass
class PipelineResult:
    """What :func:`run` produced.

    Attributes
    ----------
    run_name : str
        Name of the run; its volumes are under ``/results/<run_name>/`` in the archive.
    archive : Path
        The archive.
    out_dir : Path
        The output folder (``report.html``, figures, CSV tables, ``transform.json``).
    report_path : Path
        ``out_dir / 'report.html'``.
    timings : dict of str to float
        Seconds per stage (stages of both time points summed), in :data:`STAGES` order.
    detections : dict of str to list of dict
        ``'baseline'`` and ``'followup'``: one dict per detection with ``center_mm``
        (z, y, x in that scan's physical mm), ``diameter_mm``, ``volume_mm3`` and
        ``probability``.
    nodules : list of dict
        The growth table, one row per nodule seen at either time point (see
        :func:`growth_table`).
    registration : dict
        ``transform`` kind, ``matrix`` (4 x 4, baseline physical -> follow-up
        physical), ``scale``, ``metric_value``, ``iterations``, ``elapsed_s``.
    interval_days : float or None
        Time between the scans used for the doubling times.
    truth : dict or None
        Only for phantom archives: ``registration_error_mm``, per time point the
        nodules found versus the truth (``found``, ``total`` over nodules of at least
        5 mm, ``missed`` ids), and ``froc``.
    """

    run_name: str
    archive: Path
    out_dir: Path
    report_path: Path
    timings: dict[str, float]
    detections: dict[str, list[dict[str, Any]]]
    nodules: list[dict[str, Any]]
    registration: dict[str, Any]
    interval_days: float | None = None
    truth: dict[str, Any] | None = None
    shape: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()

    @property
    def total_seconds(self) -> float:
        """Sum of the stage timings."""
        return float(sum(self.timings.values()))

    def summary(self) -> str:
        """A few lines for a terminal: nodules, registration, truth, timings."""
        lines = [
            f"run {self.run_name!r}: {len(self.detections['baseline'])} nodules in the "
            f"baseline, {len(self.detections['followup'])} in the follow-up, "
            f"{sum(1 for r in self.nodules if r['status'] == 'matched')} matched",
        ]
        for row in self.nodules:
            d1 = _fmt(row["diameter_baseline_mm"], ".1f")
            d2 = _fmt(row["diameter_followup_mm"], ".1f")
            change = _fmt(row["volume_change_pct"], "+.0f", "%")
            vdt = _fmt(row["doubling_time_days"], ".0f", " d")
            lines.append(
                f"  nodule {row['nodule']}: {row['status']:<9} diameter {d1} -> {d2} mm, "
                f"volume change {change}, doubling time {vdt}"
            )
        reg = self.registration
        lines.append(
            f"registration ({reg['transform']}): scale {reg['scale']:.4f}, "
            f"{reg.get('iterations', '?')} iterations"
        )
        if self.truth is not None:
            lines.append(
                f"registration error vs truth: {self.truth['registration_error_mm']:.3f} mm "
                "(max over the baseline grid corners)"
            )
            for tp in _TIMEPOINTS:
                t = self.truth[tp]
                missed = f" (missed ids {t['missed']})" if t["missed"] else ""
                lines.append(
                    f"{tp}: found {t['found']} of {t['total']} true nodules >= "
                    f"{t['min_diameter_mm']:g} mm{missed}; {t['false_positives']} false positives"
                )
        lines.append(
            "stage timings: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
            + f" (total {self.total_seconds:.1f} s)"
        )
        lines.append(f"report: {self.report_path}")
        return "\n".join(lines)


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:{spec}}{suffix}"


# -- small pure helpers ----------------------------------------------------------------
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


def registration_error_mm(
    apply: Callable[[np.ndarray], np.ndarray],
    true_matrix: Any,
    shape: Sequence[int],
    spacing: Sequence[float],
    origin: Sequence[float] | None = None,
) -> float:
    """Largest distance over the grid's corners between ``apply(p)`` and ``M p``.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.eye(4); m[:3, 3] = [1.0, 0.0, 0.0]
    >>> registration_error_mm(lambda p: p, m, (10, 10, 10), (1.0, 1.0, 1.0))
    1.0
    """
    shape = tuple(int(s) for s in shape)
    spacing_a = np.asarray(spacing, dtype=float)
    origin_a = np.zeros(len(shape)) if origin is None else np.asarray(origin, dtype=float)
    corners = np.array(
        [[0 if not bit else n - 1 for bit, n in zip(bits, shape)] for bits in np.ndindex(2, 2, 2)],
        dtype=float,
    )
    points = origin_a + corners * spacing_a
    m = np.asarray(true_matrix, dtype=float)
    truth = points @ m[:3, :3].T + m[:3, 3]
    got = np.asarray(apply(points), dtype=float)
    return float(np.max(np.linalg.norm(got - truth, axis=1)))


def truth_hits(
    detections: Sequence[dict[str, Any]],
    truths: Sequence[dict[str, Any]],
    *,
    min_diameter_mm: float = MIN_TRUTH_DIAMETER_MM,
    min_radius_mm: float = MIN_HIT_RADIUS_MM,
) -> dict[str, Any]:
    """Nodules found versus the truth in one scan.

    A truth nodule (``center_mm``, ``diameter_mm``, ``id``) is found when a detection's
    centre lies within ``max(diameter / 2, min_radius_mm)`` of its centre; only truth
    nodules of at least ``min_diameter_mm`` count in ``found``/``total``. A detection
    near no truth nodule (of any size) is a false positive.
    """
    det = np.asarray([d["center_mm"] for d in detections], dtype=float).reshape(-1, 3)
    hit_det = np.zeros(len(det), dtype=bool)
    found, missed, total = 0, [], 0
    for t in truths:
        c = np.asarray(t["center_mm"], dtype=float)
        radius = max(0.5 * float(t["diameter_mm"]), min_radius_mm)
        near = np.linalg.norm(det - c, axis=1) <= radius if len(det) else np.zeros(0, bool)
        hit_det |= near
        if float(t["diameter_mm"]) >= min_diameter_mm:
            total += 1
            if near.any():
                found += 1
            else:
                missed.append(int(t["id"]))
    return {
        "found": found,
        "total": total,
        "missed": missed,
        "false_positives": int(np.sum(~hit_det)),
        "min_diameter_mm": float(min_diameter_mm),
    }


# -- block-wise stages -------------------------------------------------------------------
def probability_map(labels: np.ndarray | Volume, lut: np.ndarray, out: Any) -> Any:
    """``out = lut[labels]`` streamed block by block (labels outside the LUT give 0).

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.array([[[0, 1], [2, 5]]], dtype=np.int32)
    >>> probability_map(lab, np.array([0, 0.5, 0.25], np.float32), None)[0].tolist()
    [[0.0, 0.5], [0.25, 0.0]]
    """
    lut = np.ascontiguousarray(lut, dtype=np.float32)
    n = len(lut)

    def kernel(block: np.ndarray, info: Any) -> np.ndarray:
        lab = block[info.core]
        inside = (lab >= 0) & (lab < n)
        return np.where(inside, lut[np.clip(lab, 0, n - 1)], np.float32(0.0))

    return map_overlap(
        kernel, labels, depth=0, out=out, out_dtype=np.float32, desc="probability map"
    )


def difference_map(a: np.ndarray | Volume, b: np.ndarray | Volume, out: Any) -> Any:
    """``out = a - b`` in float32, streamed block by block over both volumes.

    Examples
    --------
    >>> import numpy as np
    >>> float(difference_map(np.ones((1, 2, 2)), np.zeros((1, 2, 2)), None).sum())
    4.0
    """
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"difference of volumes of shapes {a.shape} and {b.shape}")

    def read(start: tuple[int, ...], stop: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        box = tuple(slice(s, e) for s, e in zip(start, stop))
        return read_region(a, box, dtype=np.float32), read_region(b, box, dtype=np.float32)

    def kernel(pair: tuple[np.ndarray, np.ndarray], info: Any) -> np.ndarray:
        return pair[0] - pair[1]

    align = next((v.chunks for v in (out, a, b) if isinstance(v, Volume) and v.chunks), None)
    return map_blocks(
        kernel, a.shape, read, out=out, out_dtype=np.float32, align=align, desc="difference"
    )


# -- inputs ------------------------------------------------------------------------------
def _scan_volume(ar: Archive, name: Any, param: str) -> Volume:
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
    if node.direction is not None and not np.allclose(node.direction, np.eye(3), atol=1e-6):
        raise ValueError(
            f"{param} {node.name!r} has an oblique direction matrix; resample it to an "
            "axis-aligned grid first"
        )
    return node


def _check_pair(base: Volume, follow: Volume) -> None:
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


def _interval_from_archive(ar: Archive, base: Volume, follow: Volume) -> float | None:
    def attr(vol: Volume, key: str) -> Any:
        if key in vol.attrs:
            return vol.attrs[key]
        parent = vol.name.rsplit("/", 1)[0] or "/"
        node = ar._file[parent]
        return node.attrs.get(key)

    value = attr(follow, "interval_days")
    if value is not None:
        return float(value)
    d1, d2 = _parse_date(attr(base, "study_date")), _parse_date(attr(follow, "study_date"))
    if d1 is not None and d2 is not None:
        return float((d2 - d1).days)
    return None


def _read_truth(ar: Archive, base: Volume, follow: Volume) -> dict[str, Any] | None:
    """Phantom ground truth written by ``fastct phantom`` beside the two scans."""
    b_parts, f_parts = base.name.strip("/").split("/"), follow.name.strip("/").split("/")
    common = []
    for x, y in zip(b_parts, f_parts):
        if x != y:
            break
        common.append(x)
    if not common:
        return None
    name = "/" + "/".join(common) + "/truth"
    if name not in ar._file:
        return None
    attrs = ar._file[name].attrs
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


def _load_detector(model: Any) -> Any:
    from . import classify

    if model is None:
        return classify.default_detector()
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model file {str(path)!r} does not exist")
        return classify.load_detector(path)
    if hasattr(model, "predict") and hasattr(model, "segment"):
        return model
    raise TypeError(
        f"model must be None (the shipped detector), a model file path or a detector, "
        f"got {type(model).__name__}"
    )


def _check_run_name(run_name: Any, out_dir: Path) -> str:
    if run_name is None:
        run_name = re.sub(r"[^A-Za-z0-9._-]", "-", out_dir.resolve().name).strip("-.") or "run"
        run_name = run_name[:64]
    if not isinstance(run_name, str) or not _RUN_NAME.match(run_name):
        raise ValueError(
            "run_name must be 1-64 characters of letters, digits, '.', '_' or '-' "
            f"starting with a letter or digit, got {run_name!r}"
        )
    return run_name


# -- output folder -----------------------------------------------------------------------
def _remove_stale_folders(parent: Path) -> None:
    """Delete temporary files and folders left by fastct processes that were killed."""
    _atomic.remove_stale_temps(parent)
    for entry in parent.glob(_atomic.TMP_PREFIX + "*"):
        try:
            pid = int(entry.name[len(_atomic.TMP_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        if entry.is_dir() and pid != os.getpid() and not _atomic._pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def _atomic_folder(path: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary sibling folder renamed onto ``path`` when the block succeeds."""
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"output folder {str(path)!r} already exists; pass overwrite=True (--overwrite) "
            "to replace it"
        )
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"output {str(path)!r} exists and is not a folder")
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"folder {str(parent)!r} for the output does not exist")
    _remove_stale_folders(parent)
    tmp = _atomic.temp_name(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            trash = _atomic.temp_name(path)
            os.replace(path, trash)
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _atomic.fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- progress / timings ------------------------------------------------------------------
class _Clock:
    """Per-stage wall-clock timings, with an optional bar over the stages."""

    def __init__(self, progress: Any, n_steps: int):
        self.timings: dict[str, float] = {}
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is None:
            from ._config import get_progress

            progress = get_progress()
            if progress is None:
                progress = sys.stderr.isatty()
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=n_steps, desc="pipeline", unit="stage", file=sys.stderr)

    @contextlib.contextmanager
    def stage(self, name: str, label: str | None = None) -> Iterator[None]:
        label = label or name
        if self.bar is not None:
            self.bar.set_postfix_str(label)
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.timings[name] = self.timings.get(name, 0.0) + dt
        if self.bar is not None:
            self.bar.update(1)
        if self.callback is not None:
            self.callback(label, dt)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- the run -----------------------------------------------------------------------------
def _detection_dict(d: Any) -> dict[str, Any]:
    get = d.get if isinstance(d, dict) else lambda k: getattr(d, k)
    return {
        "center_mm": [float(v) for v in get("center_mm")],
        "diameter_mm": float(get("diameter_mm")),
        "volume_mm3": float(get("volume_mm3")),
        "probability": float(get("probability")),
    }


def _table_lut(table: Any, proba: np.ndarray) -> np.ndarray:
    labels = np.asarray(table["label"], dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float32).ravel()
    if len(labels) != len(proba):
        raise ValueError(f"detector gave {len(proba)} probabilities for {len(labels)} regions")
    lut = np.zeros(int(labels.max()) + 1 if len(labels) else 1, dtype=np.float32)
    lut[labels] = proba
    return lut


def _derived(ar: Archive, name: str, like: Volume, dtype: Any) -> Volume:
    """A volume on ``like``'s grid holding a label/mask/probability (no modality, units)."""
    return ar.create_volume(
        name,
        shape=like.shape,
        dtype=dtype,
        spacing=like.spacing,
        origin=like.origin,
        chunks=like.chunks,
    )


def _enhance(src: Volume, out: Volume, radius_mm: float, amount: float) -> None:
    from .filters import unsharp_mask

    unsharp_mask(src, radius_mm, amount, spacing=src.spacing, out=out)


def run(
    archive: str | os.PathLike,
    baseline: str = "/scans/a",
    followup: str = "/scans/b",
    *,
    out_dir: str | os.PathLike,
    model: Any = None,
    transform: str = "rigid",
    run_name: str | None = None,
    overwrite: bool = False,
    interval_days: float | None = None,
    enhance_radius_mm: float = 2.0,
    enhance_amount: float = 1.0,
    match_tolerance_mm: float | None = None,
    report: bool = True,
    progress: bool | Callable[[str, float], None] | None = None,
) -> PipelineResult:
    """Run the longitudinal pipeline on two scans of an archive.

    Parameters
    ----------
    archive : path
        The HDF5 archive holding both scans; results are added under
        ``/results/<run_name>/`` (committed only if the whole run succeeds).
    baseline, followup : str
        The scans: a volume path (``'/scans/a/image'``) or a group holding an ``image``
        volume (``'/scans/a'``).
    out_dir : path
        Output folder for ``report.html``, its figures, CSV tables and
        ``transform.json``; it must not exist unless ``overwrite``.
    model : None, path or detector
        None: the detector shipped with fastct (``fastct.classify.default_detector()``);
        a path: a model file saved by fastct (``fastct.classify.load_detector``); or a
        detector object.
    transform : {'rigid', 'similarity'}
        Registration model of the follow-up onto the baseline.
    run_name : str, optional
        Name of the results group; default the output folder's name.
    overwrite : bool
        Replace an existing output folder and results group of the same name.
    interval_days : float, optional
        Days between the scans for the doubling times (default: from the archive's
        attributes, see the module docstring).
    enhance_radius_mm, enhance_amount : float
        Unsharp mask of the enhanced images (Gaussian sigma in mm, strength).
    match_tolerance_mm : float, optional
        Largest distance of a nodule match; default ``max(10 mm, larger diameter)``.
    report : bool
        Write ``report.html`` with its figures.
    progress : bool or callable, optional
        True: a progress bar over the stages on stderr; a callable is called with
        ``(stage, seconds)`` after each stage; None follows ``fastct.set_progress``.

    Returns
    -------
    PipelineResult

    Raises
    ------
    ValueError
        A scan is missing, not a 3-D CT scan in HU, of absurd spacing, the two scans
        differ in modality, the transform or run name is bad, or the model file is of
        another schema.
    FileExistsError
        ``out_dir`` or the results group exists and ``overwrite`` is False.
    TypeError
        A parameter has the wrong type.

    Examples
    --------
    See ``docs/tutorial.rst`` and ``fastct demo``; a run on the small phantom takes
    about half a minute, too long for a doctest.
    """
    from . import registration

    archive = Path(archive)
    out_dir = Path(out_dir)
    if transform not in ("rigid", "similarity"):
        raise ValueError(f"transform must be 'rigid' or 'similarity', got {transform!r}")
    if not isinstance(overwrite, (bool, np.bool_)):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
    if interval_days is not None:
        if isinstance(interval_days, bool) or not isinstance(interval_days, (int, float)):
            raise TypeError(f"interval_days must be a number of days, got {interval_days!r}")
        if not (math.isfinite(interval_days) and interval_days > 0):
            raise ValueError(f"interval_days must be > 0, got {interval_days!r}")
    run_name = _check_run_name(run_name, out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(
            f"output folder {str(out_dir)!r} already exists; pass overwrite=True "
            "(--overwrite) to replace it"
        )
    if not archive.is_file():
        raise FileNotFoundError(f"archive {str(archive)!r} does not exist")
    # Read-only checks first: nothing is opened for writing before the inputs are good.
    import fastct

    with fastct.open(archive) as ar:
        base_vol = _scan_volume(ar, baseline, "baseline")
        follow_vol = _scan_volume(ar, followup, "followup")
        _check_pair(base_vol, follow_vol)
        if f"/results/{run_name}" in ar and not overwrite:
            raise FileExistsError(
                f"/results/{run_name} already exists in {str(archive)!r}; pass overwrite=True "
                "or choose another run_name"
            )
        base_name, follow_name = base_vol.name, follow_vol.name
        has_truth = _read_truth(ar, base_vol, follow_vol) is not None
    if report:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ImportError(
                "the report needs matplotlib: pip install 'fastct[report]' (or report=False)"
            ) from None
    det = _load_detector(model)

    # 6 stages per scan; register, resample, difference, match; evaluate; report.
    clock = _Clock(progress, n_steps=16 + int(has_truth) + int(bool(report)))
    try:
        with _atomic_folder(out_dir, overwrite) as tmp_dir, fastct.open(archive, "a") as ar:
            result = _run(
                ar,
                det,
                registration,
                base_name,
                follow_name,
                tmp_dir,
                out_dir,
                run_name,
                transform,
                interval_days,
                enhance_radius_mm,
                enhance_amount,
                match_tolerance_mm,
                report,
                clock,
            )
    finally:
        clock.close()
    return result


def _run(
    ar: Archive,
    det: Any,
    registration: Any,
    base_name: str,
    follow_name: str,
    tmp_dir: Path,
    out_dir: Path,
    run_name: str,
    transform: str,
    interval_days: float | None,
    enhance_radius_mm: float,
    enhance_amount: float,
    match_tolerance_mm: float | None,
    write_report: bool,
    clock: _Clock,
) -> PipelineResult:
    from .lungs import lung_mask

    root = f"/results/{run_name}"
    if root in ar:
        ar.delete(root)
    scans = {"baseline": ar[base_name], "followup": ar[follow_name]}
    vols: dict[str, dict[str, Volume]] = {}
    tables: dict[str, Any] = {}
    detections: dict[str, list[dict[str, Any]]] = {}

    for tp, image in scans.items():
        g = f"{root}/{tp}"
        v: dict[str, Volume] = {"image": image}
        spacing, origin = image.spacing, image.origin
        with clock.stage("denoise", f"{tp}: denoise"):
            v["denoised"] = ar.create_volume_like(f"{g}/denoised", image)
            det.preprocess(image, spacing=spacing, out=v["denoised"])
        with clock.stage("enhance", f"{tp}: enhance"):
            v["enhanced"] = ar.create_volume_like(f"{g}/enhanced", image, dtype=np.float32)
            _enhance(v["denoised"], v["enhanced"], enhance_radius_mm, enhance_amount)
        with clock.stage("lungs", f"{tp}: lung mask"):
            v["lungs"] = _derived(ar, f"{g}/lungs", image, np.uint8)
            mask = lung_mask(image, spacing=spacing)
            write_all(v["lungs"], mask)
        with clock.stage("supervoxels", f"{tp}: supervoxels"):
            v["supervoxels"] = _derived(ar, f"{g}/supervoxels", image, np.int32)
            det.segment(v["denoised"], spacing=spacing, lung_mask=mask, out=v["supervoxels"])
        del mask
        with clock.stage("features", f"{tp}: features"):
            table = det.region_table(
                v["supervoxels"], v["denoised"], spacing=spacing, origin=origin
            )
        with clock.stage("detect", f"{tp}: detect"):
            proba = det.predict_regions(table)
            v["probability"] = _derived(ar, f"{g}/probability", image, np.float32)
            probability_map(v["supervoxels"], _table_lut(table, proba), v["probability"])
            found = det.detect(
                table, proba, labels=v["supervoxels"], spacing=spacing, origin=origin
            )
            detections[tp] = [_detection_dict(d) for d in found]
        ar.set_attrs(g, detections_json=json.dumps(detections[tp]), source=image.name)
        vols[tp] = v
        tables[tp] = table

    base, follow = vols["baseline"], vols["followup"]
    b_img, f_img = base["image"], follow["image"]
    with clock.stage("register", "register"):
        reg = registration.register(
            base["denoised"],
            follow["denoised"],
            transform=transform,
            fixed_spacing=b_img.spacing,
            moving_spacing=f_img.spacing,
            fixed_origin=b_img.origin,
            moving_origin=f_img.origin,
        )
        matrix = np.asarray(reg.transform.matrix, dtype=float)
        scale = float(abs(np.linalg.det(matrix[:3, :3])) ** (1.0 / 3.0))
        reg_info = {
            "transform": transform,
            "matrix": matrix.tolist(),
            "scale": scale,
            "metric_value": _plain(getattr(reg, "metric_value", None)),
            "iterations": _plain(getattr(reg, "iterations", None)),
            "elapsed_s": _plain(getattr(reg, "elapsed_s", None)),
        }
        reg.transform.save(tmp_dir / "transform.json")
    with clock.stage("resample", "resample"):
        registered = ar.create_volume_like(f"{root}/followup_registered", b_img, dtype=np.float32)
        registration.resample(
            follow["denoised"],
            reg.transform,
            shape=b_img.shape,
            spacing=b_img.spacing,
            origin=b_img.origin,
            moving_spacing=f_img.spacing,
            moving_origin=f_img.origin,
            order=1,
            cval=-1000.0,
            out=registered,
        )
    with clock.stage("difference", "difference map"):
        diff = ar.create_volume_like(f"{root}/difference", b_img, dtype=np.float32)
        difference_map(registered, base["denoised"], diff)

    with clock.stage("match", "match nodules"):
        if interval_days is None:
            interval_days = _interval_from_archive(ar, b_img, f_img)
        b_det, f_det = detections["baseline"], detections["followup"]
        if match_tolerance_mm is None:
            tol = [max(10.0, d["diameter_mm"]) for d in b_det]
        else:
            tol = match_tolerance_mm
        pairs = match_nodules(
            [d["center_mm"] for d in b_det],
            [d["center_mm"] for d in f_det],
            reg.transform.apply,
            tolerance_mm=tol,
        )
        nodules = growth_table(b_det, f_det, pairs, interval_days=interval_days, scale=scale)

    truth_info = None
    truth = _read_truth(ar, b_img, f_img)
    if truth is not None:
        with clock.stage("evaluate", "compare with ground truth"):
            truth_info = _evaluate(truth, detections, reg, b_img)

    timings = {k: clock.timings[k] for k in STAGES if k in clock.timings}
    result = PipelineResult(
        run_name=run_name,
        archive=Path(ar.path),
        out_dir=out_dir,
        report_path=out_dir / "report.html",
        timings=timings,
        detections=detections,
        nodules=nodules,
        registration=reg_info,
        interval_days=interval_days,
        truth=truth_info,
        shape=tuple(b_img.shape),
        spacing=tuple(b_img.spacing),
    )
    _write_tables(tmp_dir, result)
    if write_report:
        from . import report as report_mod

        with clock.stage("report", "report"):
            report_mod.pipeline_report(tmp_dir, result, ar, root, reg.transform)
        result.timings = {k: clock.timings[k] for k in STAGES if k in clock.timings}
    (tmp_dir / "summary.json").write_text(json.dumps(_result_json(result), indent=2))
    ar.set_attrs(
        root,
        transform=np.asarray(reg_info["matrix"]),
        transform_kind=transform,
        transform_convention="maps baseline (fixed) physical points to follow-up (moving) points",
        registration_json=json.dumps(reg_info),
        nodules_json=json.dumps(nodules),
        timings_json=json.dumps(result.timings),
        baseline=base_name,
        followup=follow_name,
        interval_days=np.nan if interval_days is None else float(interval_days),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    return result


def _evaluate(truth: dict, detections: dict, reg: Any, b_img: Volume) -> dict[str, Any]:
    err = registration_error_mm(
        reg.transform.apply, truth["transform"], b_img.shape, b_img.spacing, b_img.origin
    )
    info: dict[str, Any] = {"registration_error_mm": err}
    truths = {tp: truth["nodules"].get(tp, []) for tp in _TIMEPOINTS}
    for tp in _TIMEPOINTS:
        info[tp] = truth_hits(detections[tp], truths[tp])
    try:
        from . import evaluation

        froc = evaluation.froc(
            [detections[tp] for tp in _TIMEPOINTS],
            [truths[tp] for tp in _TIMEPOINTS],
            min_diameter_mm=MIN_TRUTH_DIAMETER_MM,
            min_radius_mm=MIN_HIT_RADIUS_MM,
        )
        info["froc"] = _froc_plain(froc)
    except Exception as exc:  # noqa: BLE001 - the FROC is optional in the summary
        info["froc"] = None
        info["froc_error"] = f"{type(exc).__name__}: {exc}"
    return info


def _froc_plain(froc: Any) -> dict[str, Any]:
    """The FROC result as plain lists: the curve and the standard operating points."""

    def floats(x: Any) -> list[float | None]:
        return [None if not np.isfinite(v) else float(v) for v in np.asarray(x, dtype=float)]

    return {
        "curve_fps": floats(froc.curve_fps),
        "curve_sensitivity": floats(froc.curve_sensitivity),
        "fps_per_scan": floats(froc.fps_per_scan),
        "sensitivity": floats(froc.sensitivity),
        "n_nodules": int(froc.n_nodules),
        "n_found": int(froc.n_found),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def _result_json(result: PipelineResult) -> dict[str, Any]:
    out = dataclasses.asdict(result)
    for key in ("archive", "out_dir", "report_path"):
        out[key] = str(out[key])
    return json.loads(json.dumps(out, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _write_tables(folder: Path, result: PipelineResult) -> None:
    import csv

    for tp in _TIMEPOINTS:
        with open(folder / f"detections_{tp}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["z_mm", "y_mm", "x_mm", "diameter_mm", "volume_mm3", "probability"])
            for d in result.detections[tp]:
                w.writerow([*d["center_mm"], d["diameter_mm"], d["volume_mm3"], d["probability"]])
    cols = [
        "nodule",
        "status",
        "change",
        "diameter_baseline_mm",
        "diameter_followup_mm",
        "volume_baseline_mm3",
        "volume_followup_mm3",
        "volume_change_pct",
        "doubling_time_days",
        "probability_baseline",
        "probability_followup",
        "distance_mm",
        "center_baseline_mm",
        "center_followup_mm",
    ]
    with open(folder / "nodules.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for row in result.nodules:
            w.writerow(
                [
                    " ".join(f"{v:.2f}" for v in row[c])
                    if isinstance(row[c], list)
                    else ("" if row[c] is None else row[c])
                    for c in cols
                ]
            )
    (folder / "timings.json").write_text(json.dumps(result.timings, indent=2))

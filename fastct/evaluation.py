"""Evaluation against ground truth: detections (FROC, ROC AUC, sensitivity by nodule
size, nodules found per scan) and registration (error at the grid corners).

Hit rule
--------
A detection *hits* a nodule when its centre lies within the nodule's radius
(``diameter_mm / 2``, at least ``min_radius_mm``) of the nodule centre, in mm. A
nodule counts as found at threshold ``t`` when some detection of score ``>= t`` hits
it, so each nodule is counted once however many detections hit it (further hits are
neither true nor false positives). A detection that hits no nodule is a false
positive. Nodules outside the evaluated size range (``min_diameter_mm`` /
``max_diameter_mm``) are *irrelevant findings*, as in LUNA16: they are not counted in
the sensitivity, and detections that hit them are not false positives either.

FROC
----
For every threshold ``t`` (every distinct detection score): sensitivity = found
relevant nodules / relevant nodules, false positives per scan = false-positive
detections with score ``>= t`` / number of scans. The sensitivity reported at a rate
``r`` is the highest sensitivity of an operating point with at most ``r`` false
positives per scan (0 if none); the competition performance metric (CPM) is their mean
over the requested rates (by default 1/8, 1/4, 1/2, 1, 2, 4, 8).

Pipeline runs on phantoms
-------------------------
:func:`truth_summary` is what :func:`fastct.pipeline.run` reports for a phantom pair
(``PipelineResult.truth``): the registration error (:func:`registration_error_mm`),
per scan the nodules of at least :data:`MIN_TRUTH_DIAMETER_MM` found and the false
positives (:func:`truth_hits`, hit radius at least :data:`MIN_HIT_RADIUS_MM`), and the
FROC of both scans.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._geometry import index_to_physical

__all__ = [
    "FROCResult",
    "MatchResult",
    "froc",
    "match_detections",
    "registration_error_mm",
    "roc_auc",
    "sensitivity_by_size",
    "truth_hits",
    "truth_summary",
]

DEFAULT_FPS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
#: Truth nodules this large count in :func:`truth_hits` and :func:`truth_summary`'s
#: FROC (smaller ones are neither counted nor false positives when hit).
MIN_TRUTH_DIAMETER_MM = 5.0
#: Smallest hit radius around a truth nodule's centre in :func:`truth_summary`.
MIN_HIT_RADIUS_MM = 3.0


# -- records ---------------------------------------------------------------------------
def _get(obj: Any, name: str, what: str) -> Any:
    if isinstance(obj, Mapping):
        if name not in obj:
            raise ValueError(f"{what} lacks {name!r}: {obj!r}")
        return obj[name]
    if not hasattr(obj, name):
        raise TypeError(f"{what} must have a {name!r} (a record or a dict), got {obj!r}")
    return getattr(obj, name)


def _center(obj: Any, what: str) -> np.ndarray:
    c = np.asarray(_get(obj, "center_mm", what), dtype=np.float64).ravel()
    if c.size not in (2, 3) or not np.all(np.isfinite(c)):
        raise ValueError(f"{what}: center_mm must be 2 or 3 finite values, got {c.tolist()}")
    return c


def _record_list(records: Any, what: str, kind: str) -> tuple[list, list[np.ndarray]]:
    """``records`` as a list, with the centre of each; a TypeError unless it is a list of
    ``kind`` (records or dicts)."""
    if records is None or isinstance(records, (str, bytes, Mapping)):
        raise TypeError(f"{what} must be a list of {kind}, got {type(records).__name__}")
    records = list(records)
    return records, [_center(r, what) for r in records]


def _detections(dets: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    dets, centers = _record_list(dets, what, "detections")
    if not dets:
        return np.zeros((0, 3)), np.zeros(0)
    if len({c.size for c in centers}) > 1:
        raise ValueError(f"{what}: detections mix 2-D and 3-D centres")
    p = np.array([float(_get(d, "probability", what)) for d in dets], dtype=np.float64)
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{what}: probabilities must be finite")
    return np.vstack(centers), p


def _truths(truths: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    truths, centers = _record_list(truths, what, "nodules")
    if not truths:
        return np.zeros((0, 3)), np.zeros(0)
    d = np.array([float(_get(t, "diameter_mm", what)) for t in truths], dtype=np.float64)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError(f"{what}: diameter_mm must be finite and >= 0, got {d.tolist()}")
    return np.vstack(centers), d


def _check_nonneg(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or v < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


@dataclass
class MatchResult:
    """Detections of one scan matched to its nodules.

    Attributes
    ----------
    hits : ndarray of bool, shape (n_detections, n_nodules)
        ``hits[i, j]``: detection ``i`` lies within nodule ``j``'s radius.
    nodule_score : ndarray, shape (n_nodules,)
        Best score among the detections hitting each nodule (``-inf`` if none).
    detection_nodule : ndarray of int, shape (n_detections,)
        The nodule each detection hits (the nearest if several), -1 for a false positive.
    false_positive : ndarray of bool, shape (n_detections,)
    """

    hits: np.ndarray
    nodule_score: np.ndarray
    detection_nodule: np.ndarray
    false_positive: np.ndarray


def match_detections(
    detections: Sequence[Any], truths: Sequence[Any], *, min_radius_mm: float = 0.0
) -> MatchResult:
    """Match one scan's detections to its nodules by the hit rule (module docs).

    Parameters
    ----------
    detections : sequence
        Records or dicts with ``center_mm`` and ``probability``
        (e.g. :class:`fastct.classify.Detection`).
    truths : sequence
        Records or dicts with ``center_mm`` and ``diameter_mm``
        (e.g. :class:`fastct.datasets.Nodule`).
    min_radius_mm : float
        Smallest hit radius (for tiny nodules); default 0.

    Examples
    --------
    >>> from fastct.evaluation import match_detections
    >>> dets = [{"center_mm": (0, 0, 1), "probability": 0.9},
    ...         {"center_mm": (0, 0, 9), "probability": 0.8}]
    >>> m = match_detections(dets, [{"center_mm": (0, 0, 0), "diameter_mm": 6}])
    >>> m.detection_nodule.tolist(), m.false_positive.tolist(), m.nodule_score.tolist()
    ([0, -1], [False, True], [0.9])
    """
    rmin = _check_nonneg(min_radius_mm, "min_radius_mm")
    dc, dp = _detections(detections, "detections")
    tc, td = _truths(truths, "truths")
    if dc.shape[0] and tc.shape[0] and dc.shape[1] != tc.shape[1]:
        raise ValueError(
            f"detections and truths must have the same dimension, got {dc.shape[1]} and "
            f"{tc.shape[1]}"
        )
    dist = np.sqrt(((dc[:, None, :] - tc[None, :, :]) ** 2).sum(axis=-1)) if tc.size else None
    if dist is None or dc.shape[0] == 0:
        hits = np.zeros((dc.shape[0], tc.shape[0]), bool)
    else:
        hits = dist <= np.maximum(td / 2.0, rmin)[None, :]
    score = np.full(tc.shape[0], -np.inf)
    for j in range(tc.shape[0]):
        if hits[:, j].any():
            score[j] = dp[hits[:, j]].max()
    which = np.full(dc.shape[0], -1, np.int64)
    for i in range(dc.shape[0]):
        if hits[i].any():
            cand = np.flatnonzero(hits[i])
            which[i] = cand[np.argmin(dist[i, cand])]
    return MatchResult(hits, score, which, which < 0)


# -- FROC ----------------------------------------------------------------------------------
@dataclass
class FROCResult:
    """FROC analysis of a set of scans.

    Attributes
    ----------
    fps_per_scan : tuple of float
        The requested false-positive rates.
    sensitivity : ndarray
        Sensitivity at each requested rate (highest with at most that many FP/scan).
    thresholds : ndarray
        Operating points (distinct detection scores, descending) of the curve.
    curve_fps, curve_sensitivity : ndarray
        False positives per scan and sensitivity at each threshold.
    n_scans, n_nodules, n_found : int
        Scans, relevant nodules, and relevant nodules hit by any detection.
    min_diameter_mm, max_diameter_mm : float
        Size range of the relevant nodules.
    """

    fps_per_scan: tuple[float, ...]
    sensitivity: np.ndarray
    thresholds: np.ndarray
    curve_fps: np.ndarray
    curve_sensitivity: np.ndarray
    n_scans: int
    n_nodules: int
    n_found: int
    min_diameter_mm: float = 0.0
    max_diameter_mm: float = math.inf
    threshold_at: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def cpm(self) -> float:
        """Mean sensitivity over the requested rates (LUNA16's CPM)."""
        return float(np.mean(self.sensitivity)) if self.sensitivity.size else float("nan")

    def sensitivity_at(self, fps: float) -> float:
        """Highest sensitivity with at most ``fps`` false positives per scan."""
        fps = _check_nonneg(fps, "fps")
        ok = self.curve_fps <= fps
        return float(self.curve_sensitivity[ok].max()) if ok.any() else 0.0

    def rows(self) -> list[dict[str, float]]:
        """One dict per requested rate: ``fps_per_scan``, ``sensitivity``, ``threshold``."""
        return [
            {"fps_per_scan": float(r), "sensitivity": float(s), "threshold": float(t)}
            for r, s, t in zip(self.fps_per_scan, self.sensitivity, self.threshold_at)
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain lists for JSON (non-finite values as None): the curve
        (``curve_fps``, ``curve_sensitivity``), the requested rates and their
        sensitivities (``fps_per_scan``, ``sensitivity``), ``n_nodules``, ``n_found``."""

        def floats(x: Any) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(x, dtype=float)]

        return {
            "curve_fps": floats(self.curve_fps),
            "curve_sensitivity": floats(self.curve_sensitivity),
            "fps_per_scan": floats(self.fps_per_scan),
            "sensitivity": floats(self.sensitivity),
            "n_nodules": int(self.n_nodules),
            "n_found": int(self.n_found),
        }

    def to_markdown(self, *, title: str | None = None) -> str:
        """A Markdown table: one column per FP rate, plus the CPM."""
        head = "| " + " | ".join(f"{_rate(r)} FP/scan" for r in self.fps_per_scan) + " | CPM |"
        sep = "|" + "---:|" * (len(self.fps_per_scan) + 1)
        vals = "| " + " | ".join(f"{s:.3f}" for s in self.sensitivity) + f" | {self.cpm:.3f} |"
        lines = [head, sep, vals]
        if title:
            lines.insert(0, f"{title}\n")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"FROCResult(scans={self.n_scans}, nodules={self.n_nodules}, "
            f"sensitivity={dict(zip(self.fps_per_scan, np.round(self.sensitivity, 3)))})"
        )


def _rate(r: float) -> str:
    if r < 1 and abs(1 / r - round(1 / r)) < 1e-9:
        return f"1/{round(1 / r)}"
    return f"{r:g}"


def _check_scans(detections_per_scan: Any, truths_per_scan: Any) -> tuple[list, list]:
    for name, v in (("detections_per_scan", detections_per_scan),
                    ("truths_per_scan", truths_per_scan)):  # fmt: skip
        if v is None or isinstance(v, (str, bytes, Mapping)) or not hasattr(v, "__iter__"):
            raise TypeError(f"{name} must be a list (one entry per scan), got {type(v).__name__}")
    d, t = list(detections_per_scan), list(truths_per_scan)
    if len(d) != len(t):
        raise ValueError(
            f"detections_per_scan and truths_per_scan must have one entry per scan, got "
            f"{len(d)} and {len(t)}"
        )
    if not d:
        raise ValueError("detections_per_scan must hold at least one scan, got none")
    return d, t


def _scores(dets_scans, truth_scans, lo, hi, rmin):
    """Best score per relevant nodule, and false-positive scores, over all scans."""
    nodule_scores, fp_scores, diam = [], [], []
    for k, (dets, truths) in enumerate(zip(dets_scans, truth_scans)):
        m = match_detections(dets, truths, min_radius_mm=rmin)
        _, td = _truths(truths, f"truths_per_scan[{k}]")
        _, dp = _detections(dets, f"detections_per_scan[{k}]")
        relevant = (td >= lo) & (td < hi)
        nodule_scores.append(m.nodule_score[relevant])
        diam.append(td[relevant])
        fp_scores.append(dp[~m.hits.any(axis=1)] if m.hits.size else dp)
    return np.concatenate(nodule_scores), np.concatenate(fp_scores), np.concatenate(diam)


def froc(
    detections_per_scan: Sequence[Sequence[Any]],
    truths_per_scan: Sequence[Sequence[Any]],
    *,
    fps_per_scan: Sequence[float] = DEFAULT_FPS,
    min_diameter_mm: float = 0.0,
    max_diameter_mm: float = math.inf,
    min_radius_mm: float = 0.0,
) -> FROCResult:
    """Free-response ROC over scans (hit rule and definitions in the module docs).

    Parameters
    ----------
    detections_per_scan : sequence of sequences
        Per scan, the detections (``center_mm``, ``probability``).
    truths_per_scan : sequence of sequences
        Per scan, the nodules (``center_mm``, ``diameter_mm``).
    fps_per_scan : sequence of float
        False-positive rates to report (default 1/8 .. 8).
    min_diameter_mm, max_diameter_mm : float
        Relevant nodules have ``min <= diameter < max``; the others are irrelevant
        findings (neither counted nor false positives when hit).
    min_radius_mm : float
        Smallest hit radius.

    Examples
    --------
    >>> from fastct.evaluation import froc
    >>> truth = [{"center_mm": (10, 10, 10), "diameter_mm": 8}]
    >>> dets = [{"center_mm": (10, 11, 10), "probability": 0.6},
    ...         {"center_mm": (50, 50, 50), "probability": 0.9}]
    >>> r = froc([dets, []], [truth, []], fps_per_scan=(0.25, 0.5))
    >>> r.sensitivity.tolist(), r.n_nodules
    ([0.0, 1.0], 1)
    """
    dets_scans, truth_scans = _check_scans(detections_per_scan, truths_per_scan)
    rates = _check_rates(fps_per_scan)
    lo = _check_nonneg(min_diameter_mm, "min_diameter_mm")
    hi = _check_nonneg(max_diameter_mm, "max_diameter_mm")
    if hi <= lo:
        raise ValueError(f"max_diameter_mm must be > min_diameter_mm, got {hi} <= {lo}")
    rmin = _check_nonneg(min_radius_mm, "min_radius_mm")
    nod, fp, _ = _scores(dets_scans, truth_scans, lo, hi, rmin)
    n_scans = len(dets_scans)
    thr = np.unique(np.concatenate([nod[np.isfinite(nod)], fp]))[::-1]
    if nod.size:
        sens = np.array([(nod >= t).mean() for t in thr]) if thr.size else np.zeros(0)
    else:
        sens = np.full(thr.size, np.nan)
    fps = np.array([(fp >= t).sum() / n_scans for t in thr])
    # the empty operating point (threshold above every score)
    thr = np.concatenate([[np.inf], thr])
    sens = np.concatenate([[0.0 if nod.size else np.nan], sens])
    fps = np.concatenate([[0.0], fps])
    at = np.zeros(len(rates))
    t_at = np.full(len(rates), np.inf)
    for i, r in enumerate(rates):
        ok = np.flatnonzero(fps <= r)
        best = ok[np.argmax(sens[ok])] if nod.size else ok[0]
        at[i] = sens[best] if nod.size else np.nan
        # the lowest threshold reaching that sensitivity within the FP budget
        same = ok[sens[ok] == sens[best]] if nod.size else ok
        t_at[i] = thr[same].min()
    return FROCResult(
        fps_per_scan=rates, sensitivity=at, thresholds=thr, curve_fps=fps,
        curve_sensitivity=sens, n_scans=n_scans, n_nodules=int(nod.size),
        n_found=int(np.isfinite(nod).sum()), min_diameter_mm=lo, max_diameter_mm=hi,
        threshold_at=t_at,
    )  # fmt: skip


def _check_rates(fps_per_scan: Any) -> tuple[float, ...]:
    if isinstance(fps_per_scan, (numbers.Real, np.number)):
        fps_per_scan = (fps_per_scan,)
    try:
        rates = tuple(float(r) for r in fps_per_scan)
    except (TypeError, ValueError):
        raise TypeError(
            f"fps_per_scan must be a sequence of positive numbers, got {fps_per_scan!r}"
        ) from None
    if not rates or any(not (math.isfinite(r) and r > 0) for r in rates):
        raise ValueError(f"fps_per_scan must be positive finite numbers, got {fps_per_scan!r}")
    return rates


def roc_auc(y_true: Any, score: Any) -> float:
    """Area under the ROC curve of binary targets ``y_true`` (0/1 or bool) and scores.

    Equals ``sklearn.metrics.roc_auc_score``.

    Examples
    --------
    >>> from fastct.evaluation import roc_auc
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true)
    s = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(
            f"y_true and score must be 1-D of the same length, got {y.shape} and {s.shape}"
        )
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0/1 (or bool) values")
    if np.unique(y).size < 2:
        raise ValueError("y_true must contain both classes to define a ROC AUC")
    if not np.all(np.isfinite(s)):
        raise ValueError("score must be finite")
    return float(roc_auc_score(y.astype(np.int64), s))


def sensitivity_by_size(
    detections_per_scan: Sequence[Sequence[Any]],
    truths_per_scan: Sequence[Sequence[Any]],
    *,
    bins_mm: Sequence[float] = (0.0, 5.0, 10.0, 20.0, math.inf),
    fps_per_scan: float = 1.0,
    threshold: float | None = None,
    min_radius_mm: float = 0.0,
) -> list[dict[str, float]]:
    """Sensitivity per nodule-size class at one operating point.

    The operating point is ``threshold`` if given, else the lowest detection score
    at which all scans together have at most ``fps_per_scan`` false positives per scan
    (all nodules relevant). Returns one row per bin ``[lo, hi)``: ``min_mm``,
    ``max_mm``, ``n_nodules``, ``n_found``, ``sensitivity`` (NaN for an empty bin),
    ``threshold``, ``fps_per_scan`` (the actual rate at that threshold).

    Examples
    --------
    >>> from fastct.evaluation import sensitivity_by_size
    >>> truth = [{"center_mm": (0, 0, 0), "diameter_mm": 4},
    ...          {"center_mm": (0, 0, 40), "diameter_mm": 12}]
    >>> dets = [{"center_mm": (0, 0, 41), "probability": 0.7}]
    >>> [r["sensitivity"] for r in sensitivity_by_size([dets], [truth], bins_mm=(0, 5, 30))]
    [0.0, 1.0]
    """
    dets_scans, truth_scans = _check_scans(detections_per_scan, truths_per_scan)
    try:
        edges = [float(b) for b in bins_mm]
    except (TypeError, ValueError):
        raise TypeError(f"bins_mm must be a sequence of numbers, got {bins_mm!r}") from None
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 0:
        raise ValueError(f"bins_mm must be >= 2 increasing non-negative edges, got {bins_mm!r}")
    rmin = _check_nonneg(min_radius_mm, "min_radius_mm")
    nod, fp, diam = _scores(dets_scans, truth_scans, 0.0, math.inf, rmin)
    n_scans = len(dets_scans)
    if threshold is None:
        rate = _check_nonneg(fps_per_scan, "fps_per_scan")
        cands = np.unique(np.concatenate([nod[np.isfinite(nod)], fp, [np.inf]]))
        ok = [t for t in cands if (fp >= t).sum() / n_scans <= rate]
        thr = float(min(ok))
    else:
        thr = _check_nonneg(threshold, "threshold")
    actual = float((fp >= thr).sum() / n_scans)
    rows = []
    for lo, hi in zip(edges, edges[1:]):
        sel = (diam >= lo) & (diam < hi)
        n = int(sel.sum())
        found = int((nod[sel] >= thr).sum())
        rows.append({
            "min_mm": lo, "max_mm": hi, "n_nodules": n, "n_found": found,
            "sensitivity": found / n if n else float("nan"), "threshold": thr,
            "fps_per_scan": actual,
        })  # fmt: skip
    return rows


# -- pipeline runs on phantoms -------------------------------------------------------------
def truth_hits(
    detections: Sequence[Mapping[str, Any]],
    truths: Sequence[Mapping[str, Any]],
    *,
    min_diameter_mm: float = MIN_TRUTH_DIAMETER_MM,
    min_radius_mm: float = MIN_HIT_RADIUS_MM,
) -> dict[str, Any]:
    """Nodules found versus the truth in one scan.

    A truth nodule (``center_mm``, ``diameter_mm``, ``id``) is found when a detection's
    centre lies within ``max(diameter / 2, min_radius_mm)`` of its centre; only truth
    nodules of at least ``min_diameter_mm`` count in ``found``/``total``. A detection
    near no truth nodule (of any size) is a false positive.

    Returns
    -------
    dict
        ``found``, ``total``, ``missed`` (ids of the counted nodules not found),
        ``false_positives``, ``min_diameter_mm``.

    Examples
    --------
    >>> truths = [{"id": 1, "center_mm": (0, 0, 0), "diameter_mm": 8},
    ...           {"id": 2, "center_mm": (0, 0, 50), "diameter_mm": 6}]
    >>> truth_hits([{"center_mm": (0, 1, 1)}, {"center_mm": (90, 0, 0)}], truths)
    {'found': 1, 'total': 2, 'missed': [2], 'false_positives': 1, 'min_diameter_mm': 5.0}
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


def registration_error_mm(
    apply: Callable[[np.ndarray], np.ndarray],
    true_matrix: Any,
    shape: Sequence[int],
    spacing: Sequence[float],
    origin: Sequence[float] | None = None,
    direction: Any = None,
) -> float:
    """Largest distance over the grid's corners between ``apply(p)`` and ``M p``.

    ``apply`` maps (N, 3) physical points (e.g. ``Registration.transform.apply``),
    ``true_matrix`` is the true 4 x 4 homogeneous transform, and the grid is given by
    its ``shape``, ``spacing`` (mm), ``origin`` (mm, default 0) and ``direction``
    (default the identity): its corners are the physical points ``origin + direction
    @ (index * spacing)``.

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
    points = index_to_physical(corners, spacing_a, origin_a, direction)
    m = np.asarray(true_matrix, dtype=float)
    truth = points @ m[:3, :3].T + m[:3, 3]
    got = np.asarray(apply(points), dtype=float)
    return float(np.max(np.linalg.norm(got - truth, axis=1)))


def truth_summary(
    detections: Mapping[str, Sequence[Mapping[str, Any]]],
    truths: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    apply: Callable[[np.ndarray], np.ndarray],
    true_matrix: Any,
    shape: Sequence[int],
    spacing: Sequence[float],
    origin: Sequence[float] | None = None,
    direction: Any = None,
) -> dict[str, Any]:
    """A registered scan pair against its ground truth (``PipelineResult.truth``).

    Parameters
    ----------
    detections : mapping of str to list of dict
        Per scan name (``'baseline'``, ``'followup'``), the detections
        (``center_mm``, ``probability``).
    truths : mapping of str to list of dict
        Per scan name, the truth nodules (``id``, ``center_mm``, ``diameter_mm``); a
        scan missing here has none.
    apply, true_matrix, shape, spacing, origin, direction
        The registration's point mapping, the true transform and the fixed grid, as
        in :func:`registration_error_mm`.

    Returns
    -------
    dict
        ``registration_error_mm``; per scan :func:`truth_hits`; ``froc``: the FROC of
        all scans (:meth:`FROCResult.to_dict`, nodules of at least
        :data:`MIN_TRUTH_DIAMETER_MM`), or None with ``froc_error`` saying why it could
        not be computed.
    """
    err = registration_error_mm(apply, true_matrix, shape, spacing, origin, direction)
    info: dict[str, Any] = {"registration_error_mm": err}
    scans = list(detections)
    per_scan = {name: truths.get(name, []) for name in scans}
    for name in scans:
        info[name] = truth_hits(detections[name], per_scan[name])
    try:
        result = froc(
            [detections[name] for name in scans],
            [per_scan[name] for name in scans],
            min_diameter_mm=MIN_TRUTH_DIAMETER_MM,
            min_radius_mm=MIN_HIT_RADIUS_MM,
        )
        info["froc"] = result.to_dict()
    except Exception as exc:  # noqa: BLE001 - the FROC is optional in the summary
        info["froc"] = None
        info["froc_error"] = f"{type(exc).__name__}: {exc}"
    return info

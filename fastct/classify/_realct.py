"""Evaluating a detector on real CT: lesions from annotation masks, the hit rule,
per-scan scores, and the real-CT folder's cases.

Hit rule (:func:`score_scan`)
-----------------------------
A lesion of an annotation mask is one connected component (26-connected) of the mask,
or one label of an integer label mask. Its centre is the physical centroid of its
voxels, its diameter the equivalent-sphere diameter ``(6 V / pi)^(1/3)``. A detection
*finds* a lesion when its centre

* lies inside the lesion's voxels (the centre rounded to the nearest voxel of the
  annotation grid), or
* lies within ``diameter / 2 + margin_mm`` (default 5 mm) of the lesion centroid.

The first clause takes irregular and elongated lesions (a tumour abutting the
mediastinum) whose centroid may lie outside the lesion; the second takes detections of
a lesion whose annotation is tighter than the detector's supervoxels. Lesions smaller
than ``min_diameter_mm`` (default 10 mm) are *irrelevant*: they are not counted, and a
detection that finds one is not a false positive either (nor is one within
``diameter / 2 + margin_mm`` of an extra *ignore* point, e.g. the LIDC readers' marks of
nodules under 3 mm that have no outline). Every other detection at the detector's
threshold is a false positive.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._geometry import index_to_physical, physical_to_index
from .._validate import check_direction, check_origin, check_real, check_spacing

__all__ = [
    "Lesion",
    "RealCTCase",
    "ScanScore",
    "lesions_from_mask",
    "realct_cases",
    "realct_folder",
    "score_scan",
]

#: Lesions at least this large (equivalent-sphere diameter, mm) count by default.
MIN_LESION_DIAMETER_MM = 10.0
#: Default margin (mm) added to a lesion's radius in the hit rule.
HIT_MARGIN_MM = 5.0


@dataclass(frozen=True)
class Lesion:
    """One annotated lesion.

    Attributes
    ----------
    label : int
        Its value in the lesion label image (components numbered from 1).
    center_mm : tuple of float
        Physical centroid ``(z, y, x)`` (LPS, ``origin + direction @ (index * spacing)``).
    diameter_mm : float
        Equivalent-sphere diameter of ``volume_mm3``.
    volume_mm3 : float
        Voxel count times the voxel volume.
    n_voxels : int
        Voxels in the lesion.
    """

    label: int
    center_mm: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float
    n_voxels: int

    def as_dict(self) -> dict[str, Any]:
        """Flat JSON-able record."""
        return {
            "label": self.label, "center_mm": list(self.center_mm),
            "diameter_mm": self.diameter_mm, "volume_mm3": self.volume_mm3,
            "n_voxels": self.n_voxels,
        }  # fmt: skip


def _geometry(spacing: Any, origin: Any, direction: Any) -> tuple[Any, Any, Any]:
    sp = check_spacing(spacing, 3, "spacing")
    return sp, check_origin(origin, 3, "origin"), check_direction(direction, 3, "direction")


def _label_mask(mask: Any, name: str) -> tuple[np.ndarray, int]:
    """Integer label image of ``mask``: bool -> 26-connected components; integer ->
    as given (0 background)."""
    from scipy import ndimage as ndi

    m = np.asarray(mask)
    if m.ndim != 3:
        raise ValueError(f"{name} must be a 3-D (z, y, x) mask, got shape {m.shape}")
    if m.dtype.kind not in "biu":
        raise TypeError(f"{name} must have an integer or bool dtype, got {m.dtype}")
    if m.dtype == np.bool_:
        lab, n = ndi.label(m, structure=np.ones((3, 3, 3), bool))
        return lab.astype(np.int32), int(n)
    if m.size and m.min() < 0:
        raise ValueError(f"{name} must be >= 0 (0 = background), got minimum {int(m.min())}")
    return m.astype(np.int32, copy=False), int(m.max()) if m.size else 0


def lesions_from_mask(
    mask: Any,
    *,
    spacing: Any,
    origin: Any = None,
    direction: Any = None,
    min_diameter_mm: float = 0.0,
) -> list[Lesion]:
    """The lesions of an annotation mask, largest first.

    Parameters
    ----------
    mask : (z, y, x) array of bool or int
        Bool: every 26-connected component is one lesion, numbered from 1 in scan
        order. Integer: every positive label is one lesion.
    spacing, origin, direction
        Geometry of the mask (origin default 0, direction the identity).
    min_diameter_mm : float
        Leave out lesions with a smaller equivalent-sphere diameter.

    Examples
    --------
    >>> import numpy as np
    >>> from fastct.classify import lesions_from_mask
    >>> m = np.zeros((20, 20, 20), bool); m[2:12, 2:12, 2:12] = True; m[15, 15, 15] = True
    >>> [(les.label, round(les.diameter_mm, 1)) for les in lesions_from_mask(m, spacing=(1, 1, 1))]
    [(1, 12.4), (2, 1.2)]
    >>> lesions_from_mask(m, spacing=(1, 1, 1), min_diameter_mm=5)[0].center_mm
    (6.5, 6.5, 6.5)
    """
    sp, org, d = _geometry(spacing, origin, direction)
    dmin = check_real(min_diameter_mm, "min_diameter_mm", lo=0)
    lab, n = _label_mask(mask, "mask")
    if n == 0:
        return []
    from scipy import ndimage as ndi

    counts = np.bincount(lab.ravel(), minlength=n + 1)
    present = np.flatnonzero(counts[1:]) + 1
    means = np.zeros((n + 1, 3))
    if present.size:
        com = ndi.center_of_mass(np.ones(lab.shape, np.float32), lab, present)
        means[present] = np.asarray(com, dtype=float).reshape(-1, 3)
    out = []
    vox = math.prod(sp)
    for k in range(1, n + 1):
        if counts[k] == 0:
            continue
        vol = float(counts[k] * vox)
        diam = (6.0 * vol / math.pi) ** (1.0 / 3.0)
        if diam < dmin:
            continue
        c = index_to_physical(means[k], sp, org, d)
        out.append(Lesion(k, tuple(float(v) for v in c), diam, vol, int(counts[k])))
    out.sort(key=lambda les: (-les.n_voxels, les.label))
    return out


@dataclass
class ScanScore:
    """One scan's detections against its lesions (:func:`score_scan`).

    Attributes
    ----------
    lesions : list of Lesion
        The counted lesions (at least ``min_diameter_mm``).
    found : list of bool
        Per counted lesion: found by a detection.
    best_probability : list of float
        Per counted lesion: highest probability of a detection that finds it (NaN if
        none).
    n_detections, false_positives : int
        Detections scored, and those that find no lesion (of any size) nor an ignore
        point.
    fp_probabilities : list of float
        Probability of every false positive, highest first.
    """

    lesions: list[Lesion]
    found: list[bool]
    best_probability: list[float]
    n_detections: int
    false_positives: int
    fp_probabilities: list[float] = field(default_factory=list)

    @property
    def sensitivity(self) -> float:
        """Found / counted lesions (NaN without lesions)."""
        return float(np.mean(self.found)) if self.found else float("nan")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able record."""
        return {
            "lesions": [les.as_dict() for les in self.lesions],
            "found": [bool(f) for f in self.found],
            "best_probability": [None if math.isnan(p) else float(p)
                                 for p in self.best_probability],
            "n_detections": self.n_detections,
            "false_positives": self.false_positives,
            "fp_probabilities": [float(p) for p in self.fp_probabilities],
        }  # fmt: skip


def _centres(detections: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    cs, ps = [], []
    for det in detections:
        get = det.get if isinstance(det, dict) else lambda k, _d=det: getattr(_d, k)
        cs.append(np.asarray(get("center_mm"), dtype=float))
        ps.append(float(get("probability")))
    return np.asarray(cs, float).reshape(-1, 3), np.asarray(ps, float)


def score_scan(
    detections: Sequence[Any],
    lesion_mask: Any,
    *,
    spacing: Any,
    origin: Any = None,
    direction: Any = None,
    min_diameter_mm: float = MIN_LESION_DIAMETER_MM,
    margin_mm: float = HIT_MARGIN_MM,
    threshold: float = 0.0,
    ignore: Sequence[tuple[Sequence[float], float]] = (),
    lesions: Sequence[Lesion] | None = None,
) -> ScanScore:
    """Score one scan's detections against its lesion mask (hit rule: module docs).

    Parameters
    ----------
    detections : sequence
        :class:`Detection` records or dicts with ``center_mm`` and ``probability``.
    lesion_mask : (z, y, x) array of bool or int
        The annotation on the scan's grid (see :func:`lesions_from_mask`).
    spacing, origin, direction
        Geometry of ``lesion_mask`` (the scan's).
    min_diameter_mm : float
        Smaller lesions are not counted (and not false positives when found).
    margin_mm : float
        Added to a lesion's radius around its centroid.
    threshold : float
        Only detections with ``probability >= threshold`` are scored.
    ignore : sequence of (center_mm, radius_mm)
        Extra points (e.g. marks of nodules without an outline): a detection within
        ``radius_mm + margin_mm`` of one is not a false positive.
    lesions : sequence of Lesion, optional
        ``lesions_from_mask(lesion_mask, ...)`` of every size, precomputed (to score
        many sets of detections against one mask).

    Examples
    --------
    >>> import numpy as np
    >>> from fastct.classify import score_scan
    >>> m = np.zeros((30, 30, 30), bool); m[5:17, 5:17, 5:17] = True
    >>> dets = [{"center_mm": (11, 11, 11), "probability": 0.9},
    ...         {"center_mm": (25, 25, 25), "probability": 0.5}]
    >>> s = score_scan(dets, m, spacing=(1, 1, 1))
    >>> s.found, s.false_positives, s.fp_probabilities
    ([True], 1, [0.5])
    """
    sp, org, d = _geometry(spacing, origin, direction)
    dmin = check_real(min_diameter_mm, "min_diameter_mm", lo=0)
    margin = check_real(margin_mm, "margin_mm", lo=0)
    thr = check_real(threshold, "threshold", lo=0, hi=1)
    lab, _ = _label_mask(lesion_mask, "lesion_mask")
    if lesions is None:
        all_lesions = lesions_from_mask(lab, spacing=sp, origin=org, direction=d)
    else:
        all_lesions = list(lesions)
    cent, prob = _centres(detections)
    keep = prob >= thr
    cent, prob = cent[keep], prob[keep]
    n = cent.shape[0]
    # the label under each detection centre (0 outside the grid)
    under = np.zeros(n, np.int64)
    if n:
        idx = np.rint(physical_to_index(cent, sp, org, d)).astype(np.int64)
        inside = np.all((idx >= 0) & (idx < np.asarray(lab.shape)), axis=1)
        under[inside] = lab[tuple(idx[inside].T)]
    claimed = np.zeros(n, bool)
    found, best, counted = [], [], []
    for les in all_lesions:
        near = (np.linalg.norm(cent - np.asarray(les.center_mm), axis=1)
                <= 0.5 * les.diameter_mm + margin) if n else np.zeros(0, bool)  # fmt: skip
        hit = near | (under == les.label)
        claimed |= hit
        if les.diameter_mm >= dmin:
            counted.append(les)
            found.append(bool(hit.any()))
            best.append(float(prob[hit].max()) if hit.any() else float("nan"))
    for c, r in ignore:
        if n:
            claimed |= np.linalg.norm(cent - np.asarray(c, float), axis=1) <= float(r) + margin
    fp = ~claimed
    return ScanScore(
        counted, found, best, int(n), int(fp.sum()), sorted(prob[fp].tolist(), reverse=True)
    )


# --------------------------------------------------------------------------------------
# The real-CT development folder
# --------------------------------------------------------------------------------------
@dataclass
class RealCTCase:
    """One scan of the real-CT folder with its lesion annotation.

    Attributes
    ----------
    name : str
        Scan name (the file stem without ``_ct``).
    image : ndarray of int16
        HU, ``(z, y, x)``.
    spacing, origin : tuple of float
    direction : ndarray or None
    lesion_mask : ndarray of bool
        The lesion annotation on the scan's grid.
    ignore : list of (center_mm, radius_mm)
        Reader marks without an outline (not false positives when detected).
    note : str
        What the annotation is.
    """

    name: str
    image: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: Any
    lesion_mask: np.ndarray
    ignore: list[tuple[tuple[float, float, float], float]] = field(default_factory=list)
    note: str = ""


#: Scan files of the real-CT folder and their annotation files.
REALCT_SCANS: dict[str, tuple[str, str, str]] = {
    "LIDC-IDRI-0001": (
        "LIDC-IDRI-0001_ct.nii.gz", "LIDC-IDRI-0001_nodules_consensus50.nii.gz",
        "consensus (>= 2 of 4 readers) outline",
    ),
    "lung1": ("lung1_ct.nii.gz", "lung1_tumour.nii.gz", "tumour outline"),
    "Lung_Dx-A0001_lungkernelL": (
        "Lung_Dx-A0001_lungkernelL_ct.nii.gz", "Lung_Dx-A0001_lungkernelL_tumour_bbox.nii.gz",
        "per-slice bounding boxes of the tumour (over-covers it)",
    ),
    "Lung_Dx-A0001_softkernelB": (
        "Lung_Dx-A0001_softkernelB_ct.nii.gz", "Lung_Dx-A0001_softkernelB_tumour_bbox.nii.gz",
        "per-slice bounding boxes of the tumour (over-covers it)",
    ),
}  # fmt: skip


def realct_folder(start: str | os.PathLike | None = None) -> Path | None:
    """The real-CT development folder, or None when it is absent.

    ``$FASTCT_REALCT`` when set, else ``shared/realct`` next to the repository holding
    ``start`` (default: this package's checkout).
    """
    env = os.environ.get("FASTCT_REALCT")
    if env:
        p = Path(env)
        return p if p.is_dir() else None
    base = Path(start) if start is not None else Path(__file__).resolve().parents[2]
    p = base.parent / "shared" / "realct"
    return p if p.is_dir() else None


def _ignore_points(folder: Path, name: str) -> list[tuple[tuple[float, float, float], float]]:
    """LIDC reader marks without an outline (json ``centroid_world_lps_mm`` is x-y-z)."""
    path = folder / f"{name}_nodules.json"
    if not path.is_file():
        return []
    out = []
    for nod in json.loads(path.read_text()).get("nodules", []):
        if nod.get("contoured"):
            continue
        x, y, z = nod["centroid_world_lps_mm"]
        r = 0.5 * float(nod.get("equiv_diameter_mm") or 3.0)
        out.append(((float(z), float(y), float(x)), r))
    return out


def realct_cases(
    folder: str | os.PathLike | None = None, names: Sequence[str] | None = None
) -> list[RealCTCase]:
    """Read the scans of the real-CT folder (default :func:`realct_folder`).

    Raises FileNotFoundError when the folder or a scan is absent.
    """
    from ..io import read_nifti

    root = Path(folder) if folder is not None else realct_folder()
    if root is None or not root.is_dir():
        raise FileNotFoundError(
            "the real-CT folder is absent (set FASTCT_REALCT or create ../shared/realct)"
        )
    out = []
    for name in names if names is not None else list(REALCT_SCANS):
        if name not in REALCT_SCANS:
            raise ValueError(f"names: unknown scan {name!r}; known: {sorted(REALCT_SCANS)}")
        ct_file, mask_file, note = REALCT_SCANS[name]
        ct = read_nifti(root / ct_file)
        mask = read_nifti(root / mask_file)
        if mask.shape != ct.shape:
            raise ValueError(f"{name}: mask shape {mask.shape} != scan shape {ct.shape}")
        out.append(
            RealCTCase(
                name, np.ascontiguousarray(ct.array), tuple(ct.spacing), tuple(ct.origin),
                ct.direction, np.asarray(mask.array) > 0, _ignore_points(root, name.split("_")[0]),
                note,
            )
        )  # fmt: skip
    return out


def timed_predict(detector: Any, case: RealCTCase, **kw: Any) -> tuple[Any, float]:
    """``detector.predict`` on a case: (DetectionResult, seconds)."""
    t = time.perf_counter()
    res = detector.predict(
        case.image, spacing=case.spacing, origin=case.origin, direction=case.direction, **kw
    )
    return res, time.perf_counter() - t

"""The supervoxel lung-nodule detector: :class:`NoduleDetector` (stage orchestration,
training, grouping detections) and its records :class:`Case`, :class:`Detection` and
:class:`DetectionResult`.

The stages (``preprocess`` -> ``segment`` -> ``region_table`` -> ``predict_regions`` ->
``detect``), how each streams, and the training labels are described once, in the
docstring of the package :mod:`fastct.classify` (the public API); the per-supervoxel
features come from :mod:`fastct.classify._regions`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from .._geometry import index_to_physical, physical_to_index
from .._orient import lps_view
from .._validate import (
    as_input,
    check_direction,
    check_int,
    check_origin,
    check_out,
    check_real,
    check_spacing,
)
from ..features import FeatureTable
from ..lungs import lung_mask as _lung_mask
from ..streaming import read_planes
from ..volume import Volume
from . import _regions
from ._estimators import _default_classifier, _table_matrix, _table_names
from ._regions import detector_feature_names


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------
@dataclass
class Case:
    """One training / evaluation scan.

    Attributes
    ----------
    image : ndarray or Volume
        CT in HU, 3-D ``(z, y, x)``.
    spacing : tuple of float
        Voxel size in mm.
    nodule_mask : ndarray or Volume, optional
        Nodule ground truth: integer labels (> 0 inside a nodule) or bool; required
        for training.
    lung_mask : ndarray or Volume of bool, optional
        Lung field; ``None``: :func:`fastct.lungs.lung_mask` with ``method="threshold"``
        (or the detector's ``lung_mask_method``).
    origin : tuple of float, optional
        Physical position of voxel 0 (default the Volume's, else 0).
    name : str
        For messages.
    direction : (3, 3) array_like, optional
        Direction cosines (default the Volume's, else the identity); see
        :meth:`NoduleDetector.predict` for how orientation is handled.
    """

    image: Any
    spacing: Any
    nodule_mask: Any = None
    lung_mask: Any = None
    origin: Any = None
    name: str = ""
    direction: Any = None


@dataclass(frozen=True)
class Detection:
    """A candidate nodule.

    Attributes
    ----------
    center_mm : tuple of float
        ``(z, y, x)`` physical centre (probability x volume weighted): a point in the
        LPS frame, ``origin + direction @ (index * spacing)``, the same whatever the
        storage order of the scan.
    diameter_mm : float
        Equivalent-sphere diameter of ``volume_mm3``.
    volume_mm3 : float
        Total volume of the member supervoxels.
    probability : float
        Largest member probability (the detection's score).
    labels : tuple of int
        Member supervoxel labels.
    """

    center_mm: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float
    probability: float
    labels: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """Flat record (CSV / JSON friendly)."""
        z, y, x = self.center_mm
        return {
            "center_z_mm": z, "center_y_mm": y, "center_x_mm": x,
            "diameter_mm": self.diameter_mm, "volume_mm3": self.volume_mm3,
            "probability": self.probability, "n_regions": len(self.labels),
        }  # fmt: skip


@dataclass
class DetectionResult:
    """Everything :meth:`NoduleDetector.predict` computed.

    Attributes
    ----------
    labels : ndarray of int32
        Supervoxels (0 outside the lung mask).
    table : FeatureTable
        Features per supervoxel (row order = ``proba`` order).
    proba : ndarray of float64
        Nodule probability per row of ``table``.
    probability_map : ndarray of float32
        ``proba`` painted on the supervoxels, 0 outside.
    detections : list of Detection
        Highest probability first.
    lung_mask : ndarray of bool
        The lung mask used.
    timings : dict
        Seconds per stage.
    """

    labels: np.ndarray
    table: FeatureTable
    proba: np.ndarray
    probability_map: np.ndarray
    detections: list[Detection]
    lung_mask: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Helpers for images and masks
# --------------------------------------------------------------------------------------
def _check_image(image: Any) -> np.ndarray | Volume:
    """A real-valued 3-D array or Volume without empty axes (bool passes)."""
    image = as_input(image, "image")
    shape = tuple(image.shape)
    if len(shape) != 3:
        raise ValueError(f"image must be a 3-D (z, y, x) volume, got shape {shape}")
    if 0 in shape:
        raise ValueError(f"image must not have an empty axis, got shape {shape}")
    return image


def _check_labels(labels: Any, shape: tuple[int, ...], name: str) -> np.ndarray | Volume:
    if not isinstance(labels, Volume):
        labels = np.asarray(labels)
    kind = np.dtype(labels.dtype).kind
    if kind not in "biu":
        raise TypeError(f"{name} must have an integer (or bool) dtype, got {labels.dtype}")
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(
            f"{name} and image must have the same shape, got {name} {tuple(labels.shape)} "
            f"and image {tuple(shape)}"
        )
    if isinstance(labels, np.ndarray) and kind == "i" and labels.size and labels.min() < 0:
        raise ValueError(f"{name} must be >= 0 (0 = background), got minimum {int(labels.min())}")
    return labels


def _in_memory(x: Any) -> np.ndarray:
    from ..streaming import read_all

    return read_all(x) if isinstance(x, Volume) else np.asarray(x)


def _spacing3(spacing: Any, image: Any) -> tuple[float, float, float]:
    if spacing is None and isinstance(image, Volume):
        spacing = image.spacing
    if spacing is None:
        raise ValueError("spacing is required (voxel size in mm per axis, z-y-x)")
    return check_spacing(spacing, 3, "spacing")


def _origin_direction(origin: Any, direction: Any, *images: Any) -> tuple[Any, Any]:
    """``origin`` / ``direction``: given, else the first Volume's among ``images``."""
    for img in images:
        if isinstance(img, Volume):
            if origin is None:
                origin = img.origin
            if direction is None:
                direction = img.direction
            break
    return check_origin(origin, 3, "origin"), check_direction(direction, 3, "direction")


def _lps(image_shape: Any, sp: Any, org: Any, direction: Any):
    """The LPS view of an axis-aligned, non-LPS scan (else None: run as stored)."""
    if direction is None:
        return None
    view = lps_view(image_shape, sp, org, direction)
    if view is None or view.is_identity:
        return None
    return view


def _mask_count(mask: Any) -> int:
    if isinstance(mask, Volume):
        total = 0
        step = max(1, (1 << 24) // max(1, mask.shape[1] * mask.shape[2]))
        for z0 in range(0, mask.shape[0], step):
            total += int(np.count_nonzero(read_planes(mask, z0, min(mask.shape[0], z0 + step))))
        return total
    return int(np.count_nonzero(mask))


def threshold_lung_mask(
    image: Any, *, spacing: Any = None, threshold: float = -400.0, direction: Any = None
) -> np.ndarray:
    """The lung mask the detector makes when it is given none (air components).

    ``fastct.lungs.lung_mask(image, spacing=spacing, threshold=threshold,
    method="threshold")``, with ``spacing`` required for an array (a Volume's own by
    default): voxels below ``threshold`` HU form air regions; the regions touching the
    in-plane (y or x) border of the volume (air around the body) are dropped and, of
    the rest, the components larger than 1% of the largest one (above 50 mL) are kept
    (lungs and main airways); holes of every axial slice are then filled so that
    vessels and nodules inside the lungs are included. Nodules attached to the chest
    wall may be cut off: pass a proper lung mask (e.g. :func:`fastct.lungs.lung_mask`'s
    default ``method="anatomical"``) when you have one. ``direction`` (default the
    Volume's) tells which array axis is the superior-inferior one.

    Examples
    --------
    >>> from fastct.datasets import chest_phantom
    >>> from fastct.classify import threshold_lung_mask
    >>> ph = chest_phantom("tiny", seed=0)
    >>> m = threshold_lung_mask(ph.image, spacing=ph.spacing)
    >>> bool((m & ph.lung_mask).sum() > 0.8 * ph.lung_mask.sum())
    True
    """
    image = _check_image(image)
    sp = _spacing3(spacing, image)
    return _lung_mask(
        image, spacing=sp, threshold=threshold, method="threshold", direction=direction
    )


class NoduleDetector(BaseEstimator):
    """Supervoxel lung-nodule detector: SLIC + region features + a classifier.

    Parameters
    ----------
    n_segments_per_litre : float
        SLIC supervoxels per litre of lung mask (default 12000: about 85 mm^3, a
        5.5 mm ball, per supervoxel at every resolution).
    compactness : float
        SLIC compactness (intensities are rescaled to [0, 1] over the mask).
    median_size : int
        Size of the median filter of :meth:`preprocess` (1: none).
    blob_scales_mm : sequence of float
        Gaussian scales (mm) of the Hessian blob features.
    target_overlap : float
        Training: a supervoxel is a nodule when at least this fraction of its voxels
        lies in the nodule mask (in (0, 1]); partial overlaps below it are left out.
    negative_fraction : float
        Training: fraction of the (very many) non-nodule supervoxels used, drawn at
        random with ``random_state`` (in (0, 1]; 1 = all). Speeds up training; the
        probabilities are then higher than calibrated ones, which only moves the
        operating thresholds.
    classifier : scikit-learn classifier, optional
        Any classifier with ``predict_proba``; default a
        ``HistGradientBoostingClassifier`` (multi-core, NaN-aware).
    threshold : float
        Supervoxels with probability >= ``threshold`` form candidate detections.
    random_state : int
        Seed of the default classifier.
    clip_below_hu : float, optional
        Real-scanner input handling (opt-in; ``None``, the default, leaves the image
        as it is). Values below it are raised to it before every stage, so the
        padding a scanner writes outside its field of view (-2048 or -3024 HU) reads
        as air; ``-1024`` is the natural choice (fastct's phantoms never go below
        it, so the phantom results are the same bits).
    slic_range_hu : (float, float), optional
        Real-scanner input handling (opt-in; ``None``: SLIC rescales the intensities
        over the mask's own minimum and maximum, as scikit-image does). With
        ``(lo, hi)``, SLIC sees the preprocessed image clipped to ``[lo, hi]`` and
        its colour distance is scaled as if it were rescaled over that fixed range
        (``compactness`` is multiplied by ``(hi - lo) / (max - min)`` of the clipped
        values in the mask, which is exactly that), so a calcification or contrast
        in one scan does not change the meaning of ``compactness``. fastct's phantom
        lungs span about -1000 .. +80 HU after the median filter; ``(-1000, 100)``
        makes a real scan's supervoxels behave like the phantom's.
    extra_features : sequence of str
        Opt-in feature sets added after the schema's columns (see
        :func:`detector_feature_names`); ``()`` by default.
    lung_mask_method : {None, 'threshold', 'anatomical'}
        The lung mask made when none is given (opt-in; ``None``, the default, is the
        threshold mask as before). ``'anatomical'``: :func:`fastct.lungs.lung_mask`'s
        default method (with a closing, so nodules on the pleura are inside), made
        from the raw image by :meth:`predict` and :meth:`case_table` alike (and by
        :meth:`segment` from the image it is given). A model trained with it records
        it in its file.

    Attributes
    ----------
    classifier_ : the fitted classifier
    feature_names_ : list of str
        Feature columns in model order (the schema).
    n_cases_, n_regions_, n_positive_ : int
        Training cases, training supervoxels and positive ones.

    Examples
    --------
    >>> from fastct.classify import NoduleDetector
    >>> det = NoduleDetector(threshold=0.3)
    >>> det.get_params()["threshold"]
    0.3
    >>> det.predict_regions({})
    Traceback (most recent call last):
    ...
    sklearn.exceptions.NotFittedError: This NoduleDetector instance is not fitted yet...
    """

    def __init__(
        self,
        n_segments_per_litre: float = 12000.0,
        compactness: float = 0.05,
        median_size: int = 3,
        blob_scales_mm: Sequence[float] = (1.5, 3.0, 6.0),
        target_overlap: float = 0.5,
        negative_fraction: float = 0.25,
        classifier: Any = None,
        threshold: float = 0.2,
        random_state: int | None = 0,
        clip_below_hu: float | None = None,
        slic_range_hu: tuple[float, float] | None = None,
        extra_features: Sequence[str] = (),
        lung_mask_method: str | None = None,
    ):
        self.n_segments_per_litre = n_segments_per_litre
        self.compactness = compactness
        self.median_size = median_size
        self.blob_scales_mm = blob_scales_mm
        self.target_overlap = target_overlap
        self.negative_fraction = negative_fraction
        self.classifier = classifier
        self.threshold = threshold
        self.random_state = random_state
        self.clip_below_hu = clip_below_hu
        self.slic_range_hu = slic_range_hu
        self.extra_features = extra_features
        self.lung_mask_method = lung_mask_method

    # -- parameters ---------------------------------------------------------------------
    def _scales(self) -> tuple[float, ...]:
        scales = self.blob_scales_mm
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Iterable):
            raise TypeError(
                f"blob_scales_mm must be a sequence of positive numbers, got "
                f"{type(scales).__name__}"
            )
        out = tuple(check_real(s, "blob_scales_mm", lo=0, lo_open=True) for s in scales)
        return out

    def _check_params(self) -> None:
        check_real(self.n_segments_per_litre, "n_segments_per_litre", lo=0, lo_open=True)
        check_real(self.compactness, "compactness", lo=0, lo_open=True)
        check_int(self.median_size, "median_size", lo=1)
        self._scales()
        check_real(self.target_overlap, "target_overlap", lo=0, hi=1, lo_open=True)
        check_real(self.negative_fraction, "negative_fraction", lo=0, hi=1, lo_open=True)
        check_real(self.threshold, "threshold", lo=0, hi=1)
        if self.clip_below_hu is not None:
            check_real(self.clip_below_hu, "clip_below_hu")
        self._slic_range()
        self._extra()
        self._lung_method()

    def _lung_method(self) -> str:
        m = self.lung_mask_method
        if m is None:
            return "threshold"
        if m not in ("threshold", "anatomical"):
            raise ValueError(
                f"lung_mask_method must be None, 'threshold' or 'anatomical', got {m!r}"
            )
        return m

    def _make_lung_mask(self, image: Any, sp: Any, direction: Any) -> Any:
        """The lung mask this detector makes when it is given none."""
        return _lung_mask(image, spacing=sp, method=self._lung_method(), direction=direction)

    def _slic_range(self) -> tuple[float, float] | None:
        r = self.slic_range_hu
        if r is None:
            return None
        if isinstance(r, (str, bytes)) or not isinstance(r, Iterable) or len(list(r)) != 2:
            raise TypeError(f"slic_range_hu must be None or a pair (lo, hi) of HU, got {r!r}")
        lo, hi = (check_real(v, "slic_range_hu") for v in r)
        if not hi > lo:
            raise ValueError(f"slic_range_hu must have lo < hi, got ({lo:g}, {hi:g})")
        return lo, hi

    def _extra(self) -> tuple[str, ...]:
        extra = self.extra_features
        if isinstance(extra, (str, bytes)) or not isinstance(extra, Iterable):
            raise TypeError(
                f"extra_features must be a sequence of feature-set names, got {extra!r}"
            )
        extra = tuple(extra)
        for name in extra:
            if name not in _regions.EXTRA_FEATURE_SETS:
                raise ValueError(
                    f"extra_features: unknown feature set {name!r}; known: "
                    f"{sorted(_regions.EXTRA_FEATURE_SETS)}"
                )
        return extra

    def feature_names(self) -> list[str]:
        """The feature columns this detector computes (see :func:`detector_feature_names`)."""
        return detector_feature_names(self._scales(), extra=self._extra())

    def _feature_params(self) -> dict[str, Any]:
        """JSON-able parameters (everything but the classifier)."""
        params: dict[str, Any] = {
            "n_segments_per_litre": float(self.n_segments_per_litre),
            "compactness": float(self.compactness),
            "median_size": int(self.median_size),
            "blob_scales_mm": [float(s) for s in self._scales()],
            "target_overlap": float(self.target_overlap),
            "negative_fraction": float(self.negative_fraction),
            "threshold": float(self.threshold),
            "random_state": None if self.random_state is None else int(self.random_state),
        }
        # the opt-in parameters only when set, so a default model's file is unchanged
        if self.clip_below_hu is not None:
            params["clip_below_hu"] = float(self.clip_below_hu)
        rng = self._slic_range()
        if rng is not None:
            params["slic_range_hu"] = [rng[0], rng[1]]
        if self._extra():
            params["extra_features"] = list(self._extra())
        if self.lung_mask_method is not None:
            params["lung_mask_method"] = self._lung_method()
        return params

    # -- stages -------------------------------------------------------------------------
    def preprocess(self, image: Any, *, spacing: Any = None, out: Any = None) -> Any:
        """Denoise as the detector expects: a ``median_size`` median filter (after
        raising values below ``clip_below_hu`` to it, when set).

        ndarray -> ndarray of the same dtype; a Volume with ``out=`` Volume streams.

        Examples
        --------
        >>> import numpy as np
        >>> from fastct.classify import NoduleDetector
        >>> img = np.zeros((3, 4, 4), np.int16); img[1, 1, 1] = 1000
        >>> int(NoduleDetector().preprocess(img, spacing=(1, 1, 1)).max())
        0
        """
        self._check_params()
        image = _check_image(image)
        _spacing3(spacing, image) if spacing is not None else None
        from ..filters import median

        if self.clip_below_hu is not None:
            return self._clipped_preprocess(image, out)
        if self.median_size == 1:
            if out is None:
                return image if isinstance(image, Volume) else np.array(image)
            from ..streaming import map_overlap

            return map_overlap(lambda d, i: d, image, out=out)
        return median(image, size=int(self.median_size), out=out)

    def _clipped_preprocess(self, image: Any, out: Any) -> Any:
        from ..filters import median
        from ..streaming import Scratch, map_overlap

        dt = np.dtype(image.dtype)
        floor = float(self.clip_below_hu)
        if dt.kind in "iu":  # the nearest representable value at or above the floor
            info = np.iinfo(dt)
            floor = float(min(max(math.ceil(floor), info.min), info.max))

        def clip(d: np.ndarray, info: Any = None) -> np.ndarray:
            return np.maximum(d, np.asarray(floor, dtype=d.dtype)).astype(dt, copy=False)

        if not isinstance(image, Volume):
            clipped = clip(np.asarray(image))
            if self.median_size == 1:
                if out is None:
                    return clipped if clipped is not image else np.array(image)
                out[...] = clipped
                return out
            return median(clipped, size=int(self.median_size), out=out)
        if self.median_size == 1:
            return map_overlap(clip, image, out=out, out_dtype=dt)
        scratch = Scratch(out if isinstance(out, Volume) else image)
        try:
            tmp = scratch.volume("clipped", tuple(image.shape), dt)
            map_overlap(clip, image, out=tmp)
            return median(tmp, size=int(self.median_size), out=out)
        finally:
            scratch.close()

    def segment(
        self,
        image: Any,
        *,
        spacing: Any = None,
        lung_mask: Any = None,
        out: Any = None,
        direction: Any = None,
    ):
        """SLIC supervoxels inside the lung mask: int32 labels (0 outside).

        ``n_segments`` is ``n_segments_per_litre`` times the mask volume in litres.
        Integer images are segmented as float32 (exact for 16-bit CT), streamed
        through a scratch file when ``image`` is a Volume. ``lung_mask=None`` uses
        :func:`fastct.lungs.lung_mask` with ``method="threshold"`` (or
        ``lung_mask_method``; in memory), which reads the scan's orientation from
        ``direction`` (default the Volume's).
        """
        self._check_params()
        image = _check_image(image)
        sp = _spacing3(spacing, image)
        if lung_mask is None:
            lung_mask = self._make_lung_mask(image, sp, direction)
        lung_mask = _check_labels(lung_mask, image.shape, "lung_mask")
        n_mask = _mask_count(lung_mask)
        if n_mask == 0:
            raise ValueError("lung_mask must select at least one voxel, got an empty mask")
        litres = n_mask * math.prod(sp) / 1e6
        n_segments = max(1, int(round(float(self.n_segments_per_litre) * litres)))
        from ..segmentation import slic
        from ..streaming import Scratch

        if not isinstance(lung_mask, Volume) and lung_mask.dtype != np.bool_:
            lung_mask = lung_mask > 0
        scratch = Scratch(out if isinstance(out, Volume) else image)
        try:
            src = image
            if np.dtype(image.dtype).kind in "biu":
                if isinstance(image, Volume):
                    from ..streaming import map_overlap

                    tmp = scratch.volume("image_f32", tuple(image.shape), np.float32)
                    map_overlap(lambda d, i: d.astype(np.float32), image, out=tmp)
                    src = tmp
                else:
                    src = np.asarray(image, dtype=np.float32)
            compactness = float(self.compactness)
            window = self._slic_range()
            if window is not None:
                src, compactness = _windowed(src, lung_mask, window, compactness, scratch)
            return slic(
                src, n_segments=n_segments, compactness=compactness, spacing=sp,
                mask=lung_mask, out=out,
            )  # fmt: skip
        finally:
            scratch.close()

    def region_table(
        self,
        labels: Any,
        image: Any,
        *,
        spacing: Any = None,
        origin: Any = None,
        direction: Any = None,
    ) -> FeatureTable:
        """Features of every supervoxel (columns: :meth:`feature_names` plus ``label``,
        ``count``, centroids and bounding boxes).

        ``image`` should be the :meth:`preprocess` output. ``table.meta["adjacency"]``
        holds the ``(n_edges, 2)`` label pairs of adjacent supervoxels (used by
        :meth:`detect`). The features are described in :mod:`fastct.classify._regions`.
        The centroids are physical points, ``origin + direction @ (index * spacing)``
        (``origin`` and ``direction`` default to the labels' or the image's Volume
        attributes, else 0 and the identity); no feature depends on ``direction``.
        """
        self._check_params()
        image = _check_image(image)
        labels = _check_labels(labels, image.shape, "labels")
        sp = _spacing3(spacing, image)
        org, d = _origin_direction(origin, direction, labels, image)
        return _regions.region_table(labels, image, sp, org, self._scales(), d, extra=self._extra())

    def predict_regions(self, table: Any) -> np.ndarray:
        """Nodule probability for every row of ``table`` (float64)."""
        check_is_fitted(self, "classifier_")
        X = _table_matrix(table, self.feature_names_, "table")
        return self._proba(X)

    def _proba(self, X: np.ndarray) -> np.ndarray:
        if X.shape[0] == 0:
            return np.zeros(0)
        p = self.classifier_.predict_proba(X)
        classes = list(self.classifier_.classes_)
        if 1 in classes:
            return np.ascontiguousarray(p[:, classes.index(1)], dtype=np.float64)
        return np.zeros(X.shape[0])

    def detect(
        self,
        table: Any,
        proba: Any,
        *,
        labels: Any = None,
        spacing: Any = None,
        origin: Any = None,
        threshold: float | None = None,
        direction: Any = None,
    ) -> list[Detection]:
        """Candidate nodules from supervoxel probabilities (highest probability first).

        Adjacent supervoxels with ``proba >= threshold`` (default ``self.threshold``)
        are grouped; adjacency comes from ``table.meta["adjacency"]`` when
        :meth:`region_table` made the table, else from ``labels`` (else every
        supervoxel stands alone). The centres are the table's physical centroids;
        ``origin`` / ``direction`` (when given and different from the ones in
        ``table.meta``) re-place them: the centroids' voxel positions on the table's
        grid are mapped to physical points with the new origin and direction.
        """
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        thr = self.threshold if threshold is None else threshold
        thr = check_real(thr, "threshold", lo=0, hi=1)
        needed = ["label", "volume_mm3", "centroid_z_mm", "centroid_y_mm", "centroid_x_mm"]
        missing = [c for c in needed if c not in _table_names(table)]
        if missing:
            raise ValueError(f"table lacks the columns {missing} (not a region_table result?)")
        ids = np.asarray(table["label"], dtype=np.int64)
        proba = np.asarray(proba, dtype=np.float64)
        if proba.shape != ids.shape:
            raise ValueError(
                f"proba must have one value per table row ({ids.shape[0]}), got shape {proba.shape}"
            )
        cent = np.column_stack([np.asarray(table[f"centroid_{a}_mm"], float) for a in "zyx"])
        meta = getattr(table, "meta", {}) or {}
        if (origin is not None or direction is not None) and "origin" in meta:
            old_o = np.asarray(meta["origin"], dtype=float)
            old_d = np.eye(3) if meta.get("direction") is None else np.asarray(meta["direction"])
            new_o = old_o if origin is None else np.asarray(check_origin(origin, 3))
            new_d = old_d if direction is None else check_direction(direction, 3)
            if np.allclose(new_d, old_d, rtol=0, atol=1e-9) or "spacing" not in meta:
                cent = cent + (new_o - old_o)
            else:
                sp_t = np.asarray(meta["spacing"], dtype=float)
                idx = physical_to_index(cent, sp_t, old_o, old_d)
                cent = index_to_physical(idx, sp_t, new_o, new_d)
        vol = np.asarray(table["volume_mm3"], dtype=np.float64)
        sel = np.flatnonzero(proba >= thr)
        if sel.size == 0:
            return []
        edges = meta.get("adjacency")
        if edges is None and labels is not None:
            from ..features import region_adjacency

            edges = region_adjacency(labels, spacing=spacing).edges
        pos = np.full(ids.shape[0], -1, np.int64)
        pos[sel] = np.arange(sel.size)
        if edges is not None and len(edges):
            edges = np.asarray(edges, dtype=np.int64)
            ra = np.searchsorted(ids, edges[:, 0])
            rb = np.searchsorted(ids, edges[:, 1])
            ok = (ra < ids.size) & (rb < ids.size)
            ra, rb = ra[ok], rb[ok]
            ok = (ids[ra] == edges[ok, 0]) & (ids[rb] == edges[ok, 1])
            ra, rb = ra[ok], rb[ok]
            keep = (pos[ra] >= 0) & (pos[rb] >= 0)
            a, b = pos[ra[keep]], pos[rb[keep]]
        else:
            a = b = np.zeros(0, np.int64)
        graph = coo_matrix((np.ones(a.size), (a, b)), shape=(sel.size, sel.size))
        _, comp = connected_components(graph, directed=False)
        out = []
        for k in range(comp.max() + 1):
            members = sel[comp == k]
            p, v = proba[members], vol[members]
            w = p * v
            w = w if w.sum() > 0 else np.ones_like(w)
            center = (cent[members] * w[:, None]).sum(axis=0) / w.sum()
            total = float(v.sum())
            out.append(
                Detection(
                    center_mm=tuple(float(c) for c in center),
                    diameter_mm=float((6.0 * total / math.pi) ** (1.0 / 3.0)),
                    volume_mm3=total,
                    probability=float(p.max()),
                    labels=tuple(int(i) for i in ids[members]),
                )
            )
        out.sort(key=lambda d: (-d.probability, d.center_mm))
        return out

    def probability_map(self, labels: Any, table: Any, proba: Any, *, out: Any = None) -> Any:
        """``proba`` painted on ``labels`` (float32, 0 where a label has no row)."""
        ids = np.asarray(table["label"], dtype=np.int64)
        proba = np.asarray(proba, dtype=np.float32)
        if proba.shape != ids.shape:
            raise ValueError(
                f"proba must have one value per table row ({ids.shape[0]}), got shape {proba.shape}"
            )
        labels = as_input(labels, "labels", integer=True)
        check_out(out, tuple(labels.shape), np.float32)
        top = int(ids.max()) if ids.size else 0
        lut = np.zeros(top + 1, np.float32)
        lut[ids] = proba

        def paint(block: np.ndarray, info: Any = None) -> np.ndarray:
            from .._kernels.lut import painted

            return painted(np.asarray(block), lut)

        if isinstance(labels, Volume) or isinstance(out, Volume):
            from ..streaming import map_overlap

            return map_overlap(paint, labels, out=out, out_dtype=np.float32)
        res = paint(np.asarray(labels))
        if out is not None:
            out[...] = res
            return out
        return res

    def predict(
        self,
        image: Any,
        *,
        spacing: Any = None,
        lung_mask: Any = None,
        origin: Any = None,
        direction: Any = None,
    ) -> DetectionResult:
        """All stages in memory: labels, table, probabilities, map and detections.

        Orientation: ``origin`` and ``direction`` (default the Volume's, else 0 and
        the identity) place the detections in physical space (LPS, ``(z, y, x)``
        components, ``origin + direction @ (index * spacing)``). A scan stored in
        any axis-aligned order (RAS, LAS, PIR ...) is run on its LPS-ordered view
        (an exact transpose/flip of the array), so the same scan gives the same
        detections whatever its storage order; ``labels``, ``probability_map`` and
        ``lung_mask`` come back in the scan's own array order, while the ``table``
        (bounding boxes, ``meta``) describes the LPS view. An oblique scan is run as
        stored (its centres still physical, the lung mask using the closest
        axis-aligned order).

        Examples
        --------
        >>> from fastct.classify import NoduleDetector
        >>> NoduleDetector().predict(np.zeros((4, 4, 4)), spacing=(1, 1, 1))
        Traceback (most recent call last):
        ...
        sklearn.exceptions.NotFittedError: This NoduleDetector instance is not fitted yet...
        """
        check_is_fitted(self, "classifier_")
        image = _check_image(image)
        sp = _spacing3(spacing, image)
        org, d = _origin_direction(origin, direction, image)
        img = _in_memory(image)
        if lung_mask is not None:
            lung_mask = _in_memory(_check_labels(lung_mask, img.shape, "lung_mask")) > 0
        view = _lps(img.shape, sp, org, d)
        if view is None:
            return self._predict(img, sp, lung_mask, org, d)
        res = self._predict(
            np.ascontiguousarray(view.to_lps(img)),
            view.spacing,
            None if lung_mask is None else np.ascontiguousarray(view.to_lps(lung_mask)),
            view.origin,
            None,
        )

        def back(a: Any) -> Any:
            return None if a is None else np.ascontiguousarray(view.from_lps(a))

        res.labels = back(res.labels)
        res.probability_map = back(res.probability_map)
        res.lung_mask = back(res.lung_mask)
        return res

    def _predict(self, img, sp, lung_mask, origin, direction) -> DetectionResult:
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if lung_mask is None:
            lung_mask = self._make_lung_mask(img, sp, direction)
            timings["lung_mask"] = time.perf_counter() - t0
        t = time.perf_counter()
        pre = self.preprocess(img, spacing=sp)
        timings["preprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        labels = self.segment(pre, spacing=sp, lung_mask=lung_mask)
        timings["segment"] = time.perf_counter() - t
        t = time.perf_counter()
        table = self.region_table(labels, pre, spacing=sp, origin=origin, direction=direction)
        timings["features"] = time.perf_counter() - t
        t = time.perf_counter()
        proba = self.predict_regions(table)
        pmap = self.probability_map(labels, table, proba)
        dets = self.detect(table, proba)
        timings["classify"] = time.perf_counter() - t
        return DetectionResult(labels, table, proba, pmap, dets, lung_mask, timings)

    # -- training -------------------------------------------------------------------------
    def case_table(self, case: Any) -> tuple[FeatureTable, np.ndarray]:
        """Stages 1-3 on one case: ``(table, overlap)`` where ``overlap`` is the
        fraction of each supervoxel's voxels inside the nodule mask."""
        case = _as_case(case)
        image = _check_image(case.image)
        sp = _spacing3(case.spacing, image)
        if case.nodule_mask is None:
            raise ValueError(f"case {case.name!r}: nodule_mask is required for training")
        nod = (
            _in_memory(case.nodule_mask)
            if isinstance(case.nodule_mask, Volume)
            else case.nodule_mask
        )
        nod = _check_labels(nod, image.shape, "nodule_mask")
        org, d = _origin_direction(case.origin, case.direction, image)
        img = _in_memory(image)
        lung = case.lung_mask
        if lung is not None:
            lung = _in_memory(_check_labels(lung, image.shape, "lung_mask")) > 0
        view = _lps(img.shape, sp, org, d)
        if view is not None:  # train on the LPS view, as predict runs
            img = np.ascontiguousarray(view.to_lps(img))
            nod = np.ascontiguousarray(view.to_lps(np.asarray(nod)))
            lung = None if lung is None else np.ascontiguousarray(view.to_lps(lung))
            sp, org, d = view.spacing, view.origin, None
        if lung is None and self.lung_mask_method is not None:  # as predict makes it
            lung = self._make_lung_mask(img, sp, d)
        pre = self.preprocess(img, spacing=sp)
        labels = self.segment(pre, spacing=sp, lung_mask=lung, direction=d)
        table = self.region_table(labels, pre, spacing=sp, origin=org, direction=d)
        ids = table["label"]
        inside = np.bincount(labels.ravel(), weights=(nod > 0).ravel(), minlength=ids.max() + 1)
        overlap = inside[ids] / np.asarray(table["count"], dtype=np.float64)
        return table, overlap

    def fit(self, cases: Iterable[Any], y: Any = None) -> NoduleDetector:
        """Train on cases: dicts or :class:`Case` records with ``image``, ``spacing``,
        ``nodule_mask`` and optionally ``lung_mask`` / ``origin`` / ``direction`` /
        ``name``.

        Volumes are read into memory one case at a time.
        """
        self._check_params()
        if isinstance(cases, (Mapping, Case)) or not isinstance(cases, Iterable):
            raise TypeError(
                f"cases must be an iterable of Case records or dicts, got {type(cases).__name__}"
            )
        tables, overlaps = [], []
        for case in cases:
            table, overlap = self.case_table(case)
            tables.append(table)
            overlaps.append(overlap)
        if not tables:
            raise ValueError("cases must hold at least one case, got none")
        return self.fit_tables(tables, overlaps)

    def fit_tables(self, tables: Sequence[Any], overlaps: Sequence[Any]) -> NoduleDetector:
        """Train from precomputed ``case_table`` results (tables and overlap fractions)."""
        self._check_params()
        names = self.feature_names()
        Xs, ys = [], []
        rng = np.random.default_rng(self.random_state)
        frac = float(self.negative_fraction)
        for table, overlap in zip(tables, overlaps, strict=True):
            X = _table_matrix(table, names, "table")
            ov = np.asarray(overlap, dtype=np.float64)
            if ov.shape != (X.shape[0],):
                raise ValueError(
                    f"overlap must have one value per table row ({X.shape[0]}), got {ov.shape}"
                )
            pos = ov >= float(self.target_overlap)
            keep = pos | ((ov == 0) & (rng.random(ov.shape[0]) < frac))
            Xs.append(X[keep])
            ys.append(pos[keep].astype(np.int64))
        X = np.concatenate(Xs)
        y = np.concatenate(ys)
        if X.shape[0] == 0 or np.unique(y).size < 2:
            raise ValueError(
                "the training cases must contain both nodule and non-nodule supervoxels "
                f"(got {int(y.sum())} nodule supervoxels of {y.size})"
            )
        if self.classifier is None:
            clf = _default_classifier(self.random_state)
        else:
            if not hasattr(self.classifier, "predict_proba"):
                raise TypeError(
                    f"classifier must have predict_proba, got {type(self.classifier).__name__}"
                )
            clf = clone(self.classifier)
        clf.fit(X, y)
        self.classifier_ = clf
        self.feature_names_ = names
        self.n_cases_ = len(Xs)
        self.n_regions_ = int(X.shape[0])
        self.n_positive_ = int(y.sum())
        return self

    # -- files ----------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write a safe model file (JSON metadata + skops payload; no pickle)."""
        from ._modelfile import save_model

        return save_model(self, path, overwrite=overwrite)


def _windowed(
    image: Any, mask: Any, window: tuple[float, float], compactness: float, scratch: Any
) -> tuple[Any, float]:
    """``image`` clipped to ``window`` (float32) and the compactness that makes SLIC's
    rescaling over the mask's value range equal to a rescaling over ``window``."""
    lo, hi = window

    def clip(d: np.ndarray, info: Any = None) -> np.ndarray:
        return np.clip(d.astype(np.float32), np.float32(lo), np.float32(hi))

    if isinstance(image, Volume):
        from ..streaming import map_overlap

        src = scratch.volume("image_window", tuple(image.shape), np.float32)
        map_overlap(clip, image, out=src)
    else:
        src = clip(np.asarray(image))
    vmin, vmax = np.inf, -np.inf
    step = max(1, (1 << 22) // max(1, src.shape[1] * src.shape[2]))
    for z0 in range(0, src.shape[0], step):
        z1 = min(src.shape[0], z0 + step)
        v = read_planes(src, z0, z1)[read_planes(mask, z0, z1) > 0]
        if v.size:
            vmin, vmax = min(vmin, float(v.min())), max(vmax, float(v.max()))
    if not vmax > vmin:  # a flat mask: SLIC's colour term is 0 whatever the compactness
        return src, compactness
    return src, compactness * (hi - lo) / (vmax - vmin)


def _as_case(case: Any) -> Case:
    if isinstance(case, Case):
        return case
    if isinstance(case, Mapping):
        keys = {"image", "spacing", "nodule_mask", "lung_mask", "origin", "name", "direction"}
        unknown = set(case) - keys
        if unknown:
            raise ValueError(f"case has unknown keys {sorted(unknown)}")
        if "image" not in case:
            raise ValueError("case must have an 'image'")
        return Case(
            image=case["image"], spacing=case.get("spacing"),
            nodule_mask=case.get("nodule_mask"), lung_mask=case.get("lung_mask"),
            origin=case.get("origin"), name=str(case.get("name", "")),
            direction=case.get("direction"),
        )  # fmt: skip
    raise TypeError(f"each case must be a Case or a dict, got {type(case).__name__}")

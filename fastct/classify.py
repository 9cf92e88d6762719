"""scikit-learn estimators on region features, and the supervoxel nodule detector.

:class:`RegionFeatureTransformer` turns a :class:`~fastct.features.FeatureTable` (or
any mapping / DataFrame of columns, or a plain 2-D array) into the feature matrix a
scikit-learn model wants. :class:`FeatureClassifier` puts it in front of any
scikit-learn classifier. Both follow scikit-learn's estimator rules (``get_params``,
``set_params``, ``clone``, ``check_estimator``).

:class:`NoduleDetector` finds lung nodules in CT volumes, stage by stage:

1. :meth:`~NoduleDetector.preprocess` -- a ``median_size`` median filter (noise).
2. :meth:`~NoduleDetector.segment` -- SLIC supervoxels inside the lung mask,
   ``n_segments_per_litre`` of them per litre of lung (so they have the same physical
   size, about 85 mm^3 by default, at every resolution).
3. :meth:`~NoduleDetector.region_table` -- per-supervoxel features (see
   :func:`detector_feature_names`): the intensity, shape and texture columns of
   :func:`fastct.region_features`, neighbourhood context from the region adjacency
   graph, a multi-scale Hessian blob response summarised per supervoxel, and the
   maxima of the blob peaks and of the bright HU (p90, max) over each supervoxel's
   closed neighbourhood (itself and its adjacent supervoxels), so that a small nodule
   split over several supervoxels still marks every piece.
4. :meth:`~NoduleDetector.predict_regions` -- the classifier's nodule probability per
   supervoxel.
5. :meth:`~NoduleDetector.detect` -- candidate nodules: connected groups of adjacent
   supervoxels whose probability is at least ``threshold``; centre =
   probability x volume weighted mean of the member centroids, volume = sum of the
   member volumes, diameter = equivalent-sphere diameter ``(6 V / pi)^(1/3)``,
   probability = the largest member probability.

Every stage takes in-memory arrays or archive :class:`~fastct.volume.Volume` objects
(with ``out=`` Volumes the large intermediates stream), so a pipeline can run them
one by one; :meth:`~NoduleDetector.predict` runs them all in memory.

Training (:meth:`NoduleDetector.fit`) runs stages 1-3 on each case and labels a
supervoxel positive when at least ``target_overlap`` (default half) of its voxels lie
in the nodule ground-truth mask, negative when none does; supervoxels with a smaller
non-zero overlap are ambiguous and left out of training.

Models are saved with :meth:`NoduleDetector.save` / :func:`save_model` to a safe model
file (:mod:`fastct._modelfile`: JSON metadata + skops payload, never pickle) and read
back with :func:`load_detector` / :func:`load_model`; :func:`default_detector` loads the
model that ships with fastct (recipe: ``fastct train``, see ``docs/classification.rst``).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from ._modelfile import ModelFileError, read_model_file, write_model_file
from ._validate import as_real_array, check_origin, check_real, check_spacing
from .features import FeatureTable
from .volume import Volume

__all__ = [
    "DEFAULT_MODEL_PATH",
    "Case",
    "Detection",
    "DetectionResult",
    "FeatureClassifier",
    "NoduleDetector",
    "RegionFeatureTransformer",
    "default_detector",
    "detector_feature_names",
    "load_detector",
    "load_model",
    "save_model",
    "threshold_lung_mask",
]

#: The model that ships with fastct (built by ``fastct train``, see the docs).
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "nodule_detector_v1.fastct-model"

#: Version of the detector's feature definitions (part of the saved schema).
SCHEMA_VERSION = 2

#: Table columns that identify or locate a region rather than describe it; left out of
#: the default feature selection.
IDENTIFIER_COLUMNS = frozenset(
    {"label", "count"}
    | {f"centroid_{a}_mm" for a in "zyx"}
    | {f"bbox_{m}_{a}" for m in ("min", "max") for a in "zyx"}
)

# region_features columns the detector uses (3-D), in order.
_BASE_FEATURES = (
    "volume_mm3", "mean", "std", "min", "max", "p10", "p50", "p90", "skewness", "kurtosis",
    "inertia_eig_0", "inertia_eig_1", "inertia_eig_2", "elongation", "flatness", "surface_mm2",
    "sphericity", "gradient_mean", "n_neighbors", "contrast",
)  # fmt: skip
# Context columns from the adjacency graph.
_CONTEXT_FEATURES = (
    "boundary_fraction",  # share of the surface facing outside the lung mask / image
    "nb_mean_max",  # brightest neighbour (mean HU)
    "nb_mean_min",  # darkest neighbour
    "nb_mean_area",  # face-area weighted mean of the neighbours' means
    "bright_nb_fraction",  # share of the neighbour face area with neighbour mean > -400 HU
    "bright_component_log_mm3",  # log10(1 + volume) of the largest bright structure touched
    "bright_component_extent_mm",  # its largest bounding-box side
)
_BRIGHT_HU = -400.0
# Columns pooled over the closed neighbourhood (the region and its adjacent regions) as
# ``nbhd_<column>`` = their maximum, after the blob maxima: a small nodule that SLIC
# splits over several supervoxels still lends its blob peak and its brightest voxels to
# every piece.
_POOLED_FEATURES = ("p90", "max")


def detector_feature_names(blob_scales_mm: Sequence[float] = (1.5, 3.0, 6.0)) -> list[str]:
    """Ordered feature columns of :meth:`NoduleDetector.region_table` (the schema).

    Examples
    --------
    >>> from fastct.classify import detector_feature_names
    >>> names = detector_feature_names((2.0,))
    >>> names[:3], names[-5:-3]
    (['volume_mm3', 'mean', 'std'], ['blob_2mm_mean', 'blob_2mm_max'])
    >>> names[-3:]
    ['nbhd_blob_2mm_max', 'nbhd_p90', 'nbhd_max']
    """
    names = list(_BASE_FEATURES) + list(_CONTEXT_FEATURES)
    for s in blob_scales_mm:
        names += [f"blob_{float(s):g}mm_mean", f"blob_{float(s):g}mm_max"]
    names += [f"nbhd_blob_{float(s):g}mm_max" for s in blob_scales_mm]
    names += [f"nbhd_{c}" for c in _POOLED_FEATURES]
    return names


# --------------------------------------------------------------------------------------
# Tables -> matrices
# --------------------------------------------------------------------------------------
def _is_table(X: Any) -> bool:
    """A mapping of columns (FeatureTable, dict) or a DataFrame-like object."""
    from scipy.sparse import issparse

    if issparse(X):  # dok matrices are dicts
        return False
    if isinstance(X, Mapping):
        return True
    return hasattr(X, "columns") and hasattr(X, "__getitem__") and not isinstance(X, np.ndarray)


def _table_names(X: Any) -> list[str]:
    return [str(c) for c in (X.keys() if isinstance(X, Mapping) else X.columns)]


def _column(X: Any, name: str) -> Any:
    """Column ``name`` of a table whose keys may be non-strings (a DataFrame's 0, 1, ..)."""
    for key in X.keys() if isinstance(X, Mapping) else X.columns:
        if str(key) == name:
            return X[key]
    raise KeyError(name)


def _table_matrix(X: Any, names: Sequence[str], what: str = "X") -> np.ndarray:
    present = set(_table_names(X))
    missing = [n for n in names if n not in present]
    if missing:
        raise ValueError(
            f"{what} lacks the feature columns {missing} that the model was trained with "
            f"(a table of another feature schema?)"
        )
    cols = []
    n = None
    for name in names:
        col = np.asarray(_column(X, name))
        if col.ndim != 1:
            raise ValueError(f"{what}: column {name!r} must be 1-D, got shape {col.shape}")
        if col.dtype.kind not in "biuf":
            raise TypeError(f"{what}: column {name!r} must be numeric, got dtype {col.dtype}")
        if n is None:
            n = col.shape[0]
        elif col.shape[0] != n:
            raise ValueError(f"{what}: column {name!r} has {col.shape[0]} rows, expected {n}")
        cols.append(col.astype(np.float64))
    if not cols:
        raise ValueError(f"{what}: no feature columns selected")
    return np.column_stack(cols)


class RegionFeatureTransformer(TransformerMixin, BaseEstimator):
    """Select feature columns of a region table as a float matrix.

    Parameters
    ----------
    columns : sequence of str or int, optional
        Columns to use, in this order. Names select from a table (a
        :class:`~fastct.features.FeatureTable`, a dict of columns, a DataFrame);
        integers select columns of a 2-D array. Default: for a table every numeric
        column except identifiers and positions (``label``, ``count``,
        ``centroid_*``, ``bbox_*``); for an array every column.

    Attributes
    ----------
    feature_names_out_ : ndarray of str
        The selected columns (names, or ``x<i>`` for array input), in output order.
    n_features_in_ : int
        Number of input columns seen in ``fit`` (tables: number of selected columns).

    Notes
    -----
    NaN passes through (e.g. ``skewness`` of a constant region); use a model that
    accepts it (histogram gradient boosting, random forests) or an imputer.

    Examples
    --------
    >>> import numpy as np, fastct
    >>> from fastct.classify import RegionFeatureTransformer
    >>> labels = np.array([[1, 1, 2], [3, 3, 2]])
    >>> table = fastct.region_features(labels, np.arange(6.0).reshape(2, 3),
    ...                                properties=["count", "mean", "max"])
    >>> t = RegionFeatureTransformer(columns=["max", "mean"]).fit(table)
    >>> t.transform(table)
    array([[1. , 0.5],
           [5. , 3.5],
           [4. , 3.5]])
    """

    def __init__(self, columns: Sequence[str | int] | None = None):
        self.columns = columns

    def _check_columns(self) -> list | None:
        if self.columns is None:
            return None
        if isinstance(self.columns, (str, bytes)) or not isinstance(self.columns, Iterable):
            raise TypeError(
                f"columns must be a sequence of names or indices, got {type(self.columns).__name__}"
            )
        cols = list(self.columns)
        if not cols:
            raise ValueError("columns must not be empty")
        kinds = {isinstance(c, str) for c in cols}
        if len(kinds) > 1:
            raise TypeError(f"columns must be all names or all indices, got {cols!r}")
        if not isinstance(cols[0], str):
            for c in cols:
                if isinstance(c, bool) or not isinstance(c, (numbers.Integral, np.integer)):
                    raise TypeError(f"columns must hold str or int, got {c!r}")
        return cols

    def fit(self, X: Any, y: Any = None) -> RegionFeatureTransformer:
        """Record the selected columns of ``X``."""
        cols = self._check_columns()
        if _is_table(X):
            if cols is not None and not isinstance(cols[0], str):
                raise TypeError("columns: a table needs column names, got integer indices")
            names = cols if cols is not None else _default_columns(X)
            _table_matrix(X, names)  # validates presence and dtypes
            self.feature_names_out_ = np.asarray(names, dtype=object)
            self.n_features_in_ = len(names)
            self._table_input = True
            return self
        Xa = validate_data(self, X, ensure_all_finite="allow-nan", dtype=np.float64)
        if cols is not None:
            if isinstance(cols[0], str):
                raise TypeError(
                    "columns: named columns need a table (FeatureTable, dict or DataFrame), "
                    "got an array"
                )
            bad = [c for c in cols if not -Xa.shape[1] <= c < Xa.shape[1]]
            if bad:
                raise ValueError(
                    f"columns: indices {bad} out of range for n_features={Xa.shape[1]}"
                )
            self._index = np.asarray(cols, dtype=np.intp)
        else:
            self._index = np.arange(Xa.shape[1])
        self.feature_names_out_ = np.asarray([f"x{i}" for i in self._index], dtype=object)
        self._table_input = False
        return self

    def transform(self, X: Any) -> np.ndarray:
        """The ``(n_rows, n_selected)`` float64 matrix of the selected columns."""
        check_is_fitted(self, "feature_names_out_")
        if _is_table(X):
            if not self._table_input:
                raise TypeError("X: this transformer was fitted on an array, got a table")
            return _table_matrix(X, list(self.feature_names_out_))
        if self._table_input:
            Xa = np.asarray(X, dtype=np.float64)
            if Xa.ndim != 2 or Xa.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X: expected a table or a 2-D array with {self.n_features_in_} columns "
                    f"in the fitted order, got shape {Xa.shape}"
                )
            return Xa.copy()
        Xa = validate_data(self, X, ensure_all_finite="allow-nan", dtype=np.float64, reset=False)
        return Xa[:, self._index]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The selected column names."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def _default_columns(X: Any) -> list[str]:
    names = []
    for name in _table_names(X):
        if name in IDENTIFIER_COLUMNS:
            continue
        if np.asarray(_column(X, name)).dtype.kind in "biuf":
            names.append(name)
    return names


def _default_classifier(random_state: Any = 0) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.1, max_leaf_nodes=31, l2_regularization=1.0,
        early_stopping=False, random_state=random_state,
    )  # fmt: skip


def _has(method: str):
    def check(self: Any) -> bool:
        clf = self.classifier_ if hasattr(self, "classifier_") else self.classifier
        clf = clf if clf is not None else _default_classifier()
        return hasattr(clf, method)

    return check


class FeatureClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier on region-feature tables (or arrays).

    ``RegionFeatureTransformer(columns)`` followed by a clone of ``classifier``;
    saved and loaded with :func:`save_model` / :func:`load_model` (safe model files
    that carry the feature schema).

    Parameters
    ----------
    classifier : scikit-learn classifier, optional
        Default ``HistGradientBoostingClassifier`` (multi-core, handles NaN).
    columns : sequence of str or int, optional
        Feature columns, see :class:`RegionFeatureTransformer`.

    Attributes
    ----------
    transformer_ : RegionFeatureTransformer
    classifier_ : the fitted classifier
    classes_ : ndarray
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from fastct.classify import FeatureClassifier
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> clf = FeatureClassifier(RandomForestClassifier(20, random_state=0)).fit(X, y)
    >>> bool(clf.score(X, y) > 0.95)
    True
    """

    def __init__(self, classifier: Any = None, columns: Sequence[str | int] | None = None):
        self.classifier = classifier
        self.columns = columns

    def fit(self, X: Any, y: Any) -> FeatureClassifier:
        """Fit the column selection and the classifier."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        transformer = RegionFeatureTransformer(self.columns).fit(X)
        Xm = transformer.transform(X)
        y = column_or_1d(y, warn=True)
        if y.shape[0] != Xm.shape[0]:
            raise ValueError(
                f"y must be 1-D with one target per row of X ({Xm.shape[0]}), got shape {y.shape}"
            )
        check_classification_targets(y)
        if self.classifier is None:
            clf = _default_classifier()
        else:
            if not hasattr(self.classifier, "fit") or not hasattr(self.classifier, "predict"):
                raise TypeError(
                    f"classifier must be a scikit-learn classifier, got "
                    f"{type(self.classifier).__name__}"
                )
            clf = clone(self.classifier)
        clf.fit(Xm, y)
        self.transformer_ = transformer
        self.classifier_ = clf
        self.classes_ = clf.classes_
        self.n_features_in_ = transformer.n_features_in_
        return self

    def _matrix(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "classifier_")
        return self.transformer_.transform(X)

    def predict(self, X: Any) -> np.ndarray:
        """Class per row."""
        X = self._matrix(X)
        return self.classifier_.predict(X)

    @available_if(_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities per row."""
        X = self._matrix(X)
        return self.classifier_.predict_proba(X)

    @available_if(_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        """The classifier's decision function per row."""
        X = self._matrix(X)
        return self.classifier_.decision_function(X)

    @property
    def feature_names_(self) -> list[str]:
        """The feature columns in model order."""
        check_is_fitted(self, "transformer_")
        return [str(n) for n in self.transformer_.feature_names_out_]

    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write a safe model file (see :func:`save_model`)."""
        return save_model(self, path, overwrite=overwrite)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


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
        Lung field; ``None``: :func:`threshold_lung_mask`.
    origin : tuple of float, optional
        Physical position of voxel 0 (default the Volume's, else 0).
    name : str
        For messages.
    """

    image: Any
    spacing: Any
    nodule_mask: Any = None
    lung_mask: Any = None
    origin: Any = None
    name: str = ""


@dataclass(frozen=True)
class Detection:
    """A candidate nodule.

    Attributes
    ----------
    center_mm : tuple of float
        ``(z, y, x)`` physical centre (probability x volume weighted).
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
def _check_image(image: Any, name: str = "image") -> np.ndarray | Volume:
    if isinstance(image, Volume):
        if np.dtype(image.dtype).kind not in "biuf":
            raise TypeError(f"{name} must have a real numeric dtype, got {image.dtype}")
    else:
        image = as_real_array(image, name, accepted="an array or a Volume")
    shape = image.shape
    if len(shape) != 3:
        raise ValueError(f"{name} must be a 3-D (z, y, x) volume, got shape {tuple(shape)}")
    if 0 in shape:
        raise ValueError(f"{name} must not have an empty axis, got shape {tuple(shape)}")
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
    from .streaming import read_all

    return read_all(x) if isinstance(x, Volume) else np.asarray(x)


def _spacing3(spacing: Any, image: Any) -> tuple[float, float, float]:
    if spacing is None and isinstance(image, Volume):
        spacing = image.spacing
    if spacing is None:
        raise ValueError("spacing is required (voxel size in mm per axis, z-y-x)")
    return check_spacing(spacing, 3, "spacing")


def _mask_count(mask: Any) -> int:
    if isinstance(mask, Volume):
        total = 0
        step = max(1, (1 << 24) // max(1, mask.shape[1] * mask.shape[2]))
        for z0 in range(0, mask.shape[0], step):
            total += int(np.count_nonzero(mask[z0 : z0 + step]))
        return total
    return int(np.count_nonzero(mask))


def threshold_lung_mask(
    image: Any, *, spacing: Any = None, threshold: float = -400.0
) -> np.ndarray:
    """A simple lung mask by thresholding, for when none is given.

    Voxels below ``threshold`` HU form air regions; the regions touching the in-plane
    (y or x) border of the volume (air around the body) are dropped and, of the rest, the components larger
    than 1% of the largest one (above 50 mL) are kept (lungs and main airways); holes
    of every axial slice are then filled so that vessels and nodules inside the lungs
    are included. Runs in memory (a Volume is read whole). Nodules attached to the
    chest wall may be cut off: pass a proper lung mask when you have one.

    Examples
    --------
    >>> from fastct.datasets import chest_phantom
    >>> from fastct.classify import threshold_lung_mask
    >>> ph = chest_phantom("tiny", seed=0)
    >>> m = threshold_lung_mask(ph.image, spacing=ph.spacing)
    >>> bool((m & ph.lung_mask).sum() > 0.8 * ph.lung_mask.sum())
    True
    """
    from scipy import ndimage as ndi

    image = _check_image(image)
    sp = _spacing3(spacing, image)
    img = _in_memory(image)
    air = img < threshold
    lab, n = ndi.label(air)
    if n == 0:
        return np.zeros(img.shape, bool)
    # air around the body touches the in-plane border; the airways may leave through the
    # top or bottom slice, so those do not count
    border = np.unique(np.concatenate([lab[:, [0, -1]].ravel(), lab[:, :, [0, -1]].ravel()]))
    sizes = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
    sizes[0] = 0
    sizes[border] = 0
    if sizes.max() <= 0:
        return np.zeros(img.shape, bool)
    vox_ml = math.prod(sp) / 1000.0
    keep = (sizes >= 0.01 * sizes.max()) & (sizes * vox_ml >= 50.0)
    if not keep.any():
        keep = sizes == sizes.max()
    mask = keep[lab]
    for z in range(mask.shape[0]):
        if mask[z].any():
            mask[z] = ndi.binary_fill_holes(mask[z])
    return mask


def _blob_kernel(sigma_vox: tuple[float, ...], spacing: tuple[float, ...], scale_mm: float):
    """map_overlap kernel: scale-normalised Hessian blob response of a bright blob.

    ``B = s^2 * cbrt(-det H)`` where the Hessian ``H`` (per mm^2, central differences
    of the Gaussian-smoothed image, scale ``s`` mm) has a negative trace and a
    negative determinant (three negative eigenvalues for a bright ball; a tube or a
    wall has one eigenvalue near 0 and scores near 0), else 0.
    """
    from .filters import gaussian

    dz, dy, dx = spacing
    norm = scale_mm * scale_mm

    def kernel(data: np.ndarray, info: Any) -> np.ndarray:
        g = gaussian(data, sigma_vox, truncate=4.0)
        c = info.core

        def sh(oz: int, oy: int, ox: int) -> np.ndarray:
            return g[
                c[0].start + oz : c[0].stop + oz,
                c[1].start + oy : c[1].stop + oy,
                c[2].start + ox : c[2].stop + ox,
            ]

        g0 = sh(0, 0, 0)
        hzz = (sh(1, 0, 0) - 2 * g0 + sh(-1, 0, 0)) / (dz * dz)
        hyy = (sh(0, 1, 0) - 2 * g0 + sh(0, -1, 0)) / (dy * dy)
        hxx = (sh(0, 0, 1) - 2 * g0 + sh(0, 0, -1)) / (dx * dx)
        hzy = (sh(1, 1, 0) - sh(1, -1, 0) - sh(-1, 1, 0) + sh(-1, -1, 0)) / (4 * dz * dy)
        hzx = (sh(1, 0, 1) - sh(1, 0, -1) - sh(-1, 0, 1) + sh(-1, 0, -1)) / (4 * dz * dx)
        hyx = (sh(0, 1, 1) - sh(0, 1, -1) - sh(0, -1, 1) + sh(0, -1, -1)) / (4 * dy * dx)
        det = (
            hzz * (hyy * hxx - hyx * hyx)
            - hzy * (hzy * hxx - hyx * hzx)
            + hzx * (hzy * hyx - hyy * hzx)
        )
        trace = hzz + hyy + hxx
        out = np.where((trace < 0) & (det < 0), np.cbrt(np.maximum(-det, 0)), 0)
        return (out * norm).astype(np.float32)

    return kernel


# --------------------------------------------------------------------------------------
# The detector
# --------------------------------------------------------------------------------------
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
        if isinstance(self.median_size, bool) or not isinstance(
            self.median_size, (numbers.Integral, np.integer)
        ):
            raise TypeError(
                f"median_size must be an integer, got {type(self.median_size).__name__}"
            )
        if self.median_size < 1:
            raise ValueError(f"median_size must be >= 1, got {self.median_size}")
        self._scales()
        check_real(self.target_overlap, "target_overlap", lo=0, hi=1, lo_open=True)
        check_real(self.negative_fraction, "negative_fraction", lo=0, hi=1, lo_open=True)
        check_real(self.threshold, "threshold", lo=0, hi=1)

    def feature_names(self) -> list[str]:
        """The feature columns this detector computes (see :func:`detector_feature_names`)."""
        return detector_feature_names(self._scales())

    def _feature_params(self) -> dict[str, Any]:
        """JSON-able parameters (everything but the classifier)."""
        return {
            "n_segments_per_litre": float(self.n_segments_per_litre),
            "compactness": float(self.compactness),
            "median_size": int(self.median_size),
            "blob_scales_mm": [float(s) for s in self._scales()],
            "target_overlap": float(self.target_overlap),
            "negative_fraction": float(self.negative_fraction),
            "threshold": float(self.threshold),
            "random_state": None if self.random_state is None else int(self.random_state),
        }

    # -- stages -------------------------------------------------------------------------
    def preprocess(self, image: Any, *, spacing: Any = None, out: Any = None) -> Any:
        """Denoise as the detector expects: a ``median_size`` median filter.

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
        from .filters import median

        if self.median_size == 1:
            if out is None:
                return image if isinstance(image, Volume) else np.array(image)
            from .streaming import map_overlap

            return map_overlap(lambda d, i: d, image, out=out)
        return median(image, size=int(self.median_size), out=out)

    def segment(self, image: Any, *, spacing: Any = None, lung_mask: Any = None, out: Any = None):
        """SLIC supervoxels inside the lung mask: int32 labels (0 outside).

        ``n_segments`` is ``n_segments_per_litre`` times the mask volume in litres.
        Integer images are segmented as float32 (exact for 16-bit CT), streamed
        through a scratch file when ``image`` is a Volume. ``lung_mask=None`` uses
        :func:`threshold_lung_mask` (in memory).
        """
        self._check_params()
        image = _check_image(image)
        sp = _spacing3(spacing, image)
        if lung_mask is None:
            lung_mask = threshold_lung_mask(image, spacing=sp)
        lung_mask = _check_labels(lung_mask, image.shape, "lung_mask")
        n_mask = _mask_count(lung_mask)
        if n_mask == 0:
            raise ValueError("lung_mask must select at least one voxel, got an empty mask")
        litres = n_mask * math.prod(sp) / 1e6
        n_segments = max(1, int(round(float(self.n_segments_per_litre) * litres)))
        from .segmentation import slic
        from .streaming import Scratch

        if not isinstance(lung_mask, Volume) and lung_mask.dtype != np.bool_:
            lung_mask = lung_mask > 0
        scratch = Scratch(out if isinstance(out, Volume) else image)
        try:
            src = image
            if np.dtype(image.dtype).kind in "biu":
                if isinstance(image, Volume):
                    from .streaming import map_overlap

                    tmp = scratch.volume("image_f32", tuple(image.shape), np.float32)
                    map_overlap(lambda d, i: d.astype(np.float32), image, out=tmp)
                    src = tmp
                else:
                    src = np.asarray(image, dtype=np.float32)
            return slic(
                src, n_segments=n_segments, compactness=float(self.compactness), spacing=sp,
                mask=lung_mask, out=out,
            )  # fmt: skip
        finally:
            scratch.close()

    def region_table(
        self, labels: Any, image: Any, *, spacing: Any = None, origin: Any = None
    ) -> FeatureTable:
        """Features of every supervoxel (columns: :meth:`feature_names` plus ``label``,
        ``count``, centroids and bounding boxes).

        ``image`` should be the :meth:`preprocess` output. ``table.meta["adjacency"]``
        holds the ``(n_edges, 2)`` label pairs of adjacent supervoxels (used by
        :meth:`detect`).
        """
        self._check_params()
        from .features import region_adjacency, region_features
        from .streaming import Scratch, map_overlap

        image = _check_image(image)
        labels = _check_labels(labels, image.shape, "labels")
        sp = _spacing3(spacing, image)
        if origin is None:
            origin = labels.origin if isinstance(labels, Volume) else None
            if origin is None and isinstance(image, Volume):
                origin = image.origin
        org = check_origin(origin, 3, "origin")
        base = region_features(labels, image, spacing=sp, origin=org)
        cols: dict[str, np.ndarray] = dict(base)
        ids = base["label"]
        n = ids.shape[0]
        # context from the adjacency graph (label 0 = outside the lung / image)
        adj = region_adjacency(labels, spacing=sp, include_background=True)
        la, lb, area = adj["label_a"], adj["label_b"], adj["area_mm2"]
        bg = la == 0
        ia_all = np.searchsorted(ids, la)
        ib_all = np.searchsorted(ids, lb)
        bg_area = np.bincount(ib_all[bg], weights=area[bg], minlength=n)
        surface = base["surface_mm2"]
        with np.errstate(divide="ignore", invalid="ignore"):
            cols["boundary_fraction"] = np.where(surface > 0, bg_area / surface, 0.0)
        inner = ~bg
        ia, ib, ar = ia_all[inner], ib_all[inner], area[inner]
        mean = base["mean"]
        src = np.concatenate([ia, ib])
        dst = np.concatenate([ib, ia])
        war = np.concatenate([ar, ar])
        nb_max = np.full(n, np.nan)
        nb_min = np.full(n, np.nan)
        if src.size:
            np.fmax.at(nb_max, src, mean[dst])
            np.fmin.at(nb_min, src, mean[dst])
        area_sum = np.bincount(src, weights=war, minlength=n)
        with np.errstate(divide="ignore", invalid="ignore"):
            cols["nb_mean_max"] = nb_max
            cols["nb_mean_min"] = nb_min
            cols["nb_mean_area"] = np.where(
                area_sum > 0, np.bincount(src, weights=war * mean[dst], minlength=n) / area_sum,
                np.nan,
            )  # fmt: skip
            bright = np.bincount(src, weights=war * (mean[dst] > _BRIGHT_HU), minlength=n)
            cols["bright_nb_fraction"] = np.where(area_sum > 0, bright / area_sum, 0.0)
        # the connected bright structure (> -400 HU inside the labelled field) a region
        # touches: a nodule is a small isolated one, a vessel junction part of a big tree
        comp_vol, comp_ext = _bright_components(labels, image, sp)
        for name, img in (("bright_component_log_mm3", comp_vol),
                          ("bright_component_extent_mm", comp_ext)):  # fmt: skip
            t = region_features(labels, img, spacing=sp, origin=org, properties=["max"],
                                percentiles=())  # fmt: skip
            cols[name] = t["max"]
        del comp_vol, comp_ext
        # multi-scale blob response, summarised per supervoxel
        scratch = Scratch(labels if isinstance(labels, Volume) else image)
        try:
            for s in self._scales():
                sigma_vox = tuple(s / d for d in sp)
                depth = tuple(int(math.ceil(4.0 * sv + 0.5)) + 1 for sv in sigma_vox)
                kernel = _blob_kernel(sigma_vox, sp, s)
                if isinstance(image, Volume) or isinstance(labels, Volume):
                    resp = scratch.volume(f"blob_{s:g}", tuple(image.shape), np.float32)
                    map_overlap(kernel, image, depth=depth, mode="nearest", dtype=np.float32,
                                out=resp)  # fmt: skip
                else:
                    resp = _blob_in_memory(kernel, np.asarray(image), np.asarray(labels), depth)
                t = region_features(
                    labels, resp, spacing=sp, origin=org, properties=["mean", "max"], percentiles=()
                )
                cols[f"blob_{s:g}mm_mean"] = t["mean"]
                cols[f"blob_{s:g}mm_max"] = t["max"]
                del resp
        finally:
            scratch.close()
        # neighbourhood maxima (region + adjacent regions) of the blob peaks and bright HU
        pooled = [f"blob_{s:g}mm_max" for s in self._scales()] + list(_POOLED_FEATURES)
        for name in pooled:
            v = np.asarray(cols[name], dtype=np.float64)
            m = v.copy()
            if src.size:
                np.fmax.at(m, src, v[dst])
            cols[f"nbhd_{name}"] = m
        meta = dict(base.meta)
        meta["adjacency"] = np.column_stack([la[inner], lb[inner]]).astype(np.int64)
        meta["feature_schema"] = SCHEMA_VERSION
        return FeatureTable(cols, meta)

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
    ) -> list[Detection]:
        """Candidate nodules from supervoxel probabilities (highest probability first).

        Adjacent supervoxels with ``proba >= threshold`` (default ``self.threshold``)
        are grouped; adjacency comes from ``table.meta["adjacency"]`` when
        :meth:`region_table` made the table, else from ``labels`` (else every
        supervoxel stands alone). ``origin`` shifts the centres when it differs from
        the one the table was computed with.
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
        if origin is not None and "origin" in meta:
            cent = cent + (np.asarray(check_origin(origin, 3)) - np.asarray(meta["origin"]))
        vol = np.asarray(table["volume_mm3"], dtype=np.float64)
        sel = np.flatnonzero(proba >= thr)
        if sel.size == 0:
            return []
        edges = meta.get("adjacency")
        if edges is None and labels is not None:
            from .features import region_adjacency

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
        top = int(ids.max()) if ids.size else 0
        lut = np.zeros(top + 1, np.float32)
        lut[ids] = proba

        def paint(block: np.ndarray, info: Any = None) -> np.ndarray:
            b = np.asarray(block, dtype=np.int64)
            inside = (b >= 0) & (b <= top)
            return np.where(inside, lut[np.clip(b, 0, top)], np.float32(0)).astype(np.float32)

        if isinstance(labels, Volume) or isinstance(out, Volume):
            from .streaming import map_overlap

            return map_overlap(paint, labels, out=out, out_dtype=np.float32)
        res = paint(np.asarray(labels))
        if out is not None:
            out[...] = res
            return out
        return res

    def predict(
        self, image: Any, *, spacing: Any = None, lung_mask: Any = None, origin: Any = None
    ) -> DetectionResult:
        """All stages in memory: labels, table, probabilities, map and detections.

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
        if origin is None and isinstance(image, Volume):
            origin = image.origin
        img = _in_memory(image)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if lung_mask is None:
            lung_mask = threshold_lung_mask(img, spacing=sp)
            timings["lung_mask"] = time.perf_counter() - t0
        else:
            lung_mask = _in_memory(_check_labels(lung_mask, img.shape, "lung_mask")) > 0
        t = time.perf_counter()
        pre = self.preprocess(img, spacing=sp)
        timings["preprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        labels = self.segment(pre, spacing=sp, lung_mask=lung_mask)
        timings["segment"] = time.perf_counter() - t
        t = time.perf_counter()
        table = self.region_table(labels, pre, spacing=sp, origin=origin)
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
        img = _in_memory(image)
        lung = case.lung_mask
        if lung is not None:
            lung = _in_memory(_check_labels(lung, image.shape, "lung_mask")) > 0
        pre = self.preprocess(img, spacing=sp)
        labels = self.segment(pre, spacing=sp, lung_mask=lung)
        table = self.region_table(labels, pre, spacing=sp, origin=case.origin)
        ids = table["label"]
        inside = np.bincount(labels.ravel(), weights=(nod > 0).ravel(), minlength=ids.max() + 1)
        overlap = inside[ids] / np.asarray(table["count"], dtype=np.float64)
        return table, overlap

    def fit(self, cases: Iterable[Any], y: Any = None) -> NoduleDetector:
        """Train on cases: dicts or :class:`Case` records with ``image``, ``spacing``,
        ``nodule_mask`` and optionally ``lung_mask`` / ``origin`` / ``name``.

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
        return save_model(self, path, overwrite=overwrite)


def _as_case(case: Any) -> Case:
    if isinstance(case, Case):
        return case
    if isinstance(case, Mapping):
        unknown = set(case) - {"image", "spacing", "nodule_mask", "lung_mask", "origin", "name"}
        if unknown:
            raise ValueError(f"case has unknown keys {sorted(unknown)}")
        if "image" not in case:
            raise ValueError("case must have an 'image'")
        return Case(
            image=case["image"], spacing=case.get("spacing"),
            nodule_mask=case.get("nodule_mask"), lung_mask=case.get("lung_mask"),
            origin=case.get("origin"), name=str(case.get("name", "")),
        )  # fmt: skip
    raise TypeError(f"each case must be a Case or a dict, got {type(case).__name__}")


def _bright_components(labels: Any, image: Any, spacing: tuple[float, ...]):
    """Per voxel: log10(1 + volume mm^3) and largest bounding-box side (mm) of the
    6-connected component of ``image > -400 HU`` within ``labels > 0`` (0 elsewhere).

    In memory (one bool mask and one int32 component image of the volume; Volumes are
    read slab by slab into them).
    """
    from scipy import ndimage as ndi

    shape = tuple(image.shape)
    bright = np.empty(shape, bool)
    step = max(1, (1 << 22) // max(1, shape[1] * shape[2]))
    for z0 in range(0, shape[0], step):
        z1 = min(shape[0], z0 + step)
        bright[z0:z1] = (np.asarray(image[z0:z1]) > _BRIGHT_HU) & (np.asarray(labels[z0:z1]) > 0)
    comp, n = ndi.label(bright)
    del bright
    vol = np.zeros(n + 1, np.float32)
    ext = np.zeros(n + 1, np.float32)
    if n:
        vol[1:] = np.log10(
            1.0 + np.bincount(comp.ravel(), minlength=n + 1)[1:] * math.prod(spacing)
        )
        for k, sl in enumerate(ndi.find_objects(comp), start=1):
            ext[k] = max((s.stop - s.start) * d for s, d in zip(sl, spacing))
    return vol[comp], ext[comp]


def _blob_in_memory(kernel: Any, image: np.ndarray, labels: np.ndarray, depth) -> np.ndarray:
    """Blob response on the bounding box of the labelled voxels only (0 elsewhere)."""
    from .streaming import map_overlap

    resp = np.zeros(image.shape, np.float32)
    nz = [np.flatnonzero(labels.any(axis=tuple(j for j in range(3) if j != a))) for a in range(3)]
    if any(x.size == 0 for x in nz):
        return resp
    box = tuple(slice(int(x[0]), int(x[-1]) + 1) for x in nz)
    # pad the box by the halo (real data where the volume has it, as map_overlap would)
    lo = [max(0, b.start - d) for b, d in zip(box, depth)]
    hi = [min(n, b.stop + d) for b, d, n in zip(box, depth, image.shape)]
    sub = image[tuple(slice(a, b) for a, b in zip(lo, hi))]
    r = map_overlap(kernel, sub, depth=depth, mode="nearest", dtype=np.float32)
    inner = tuple(slice(b.start - a, b.stop - a) for b, a in zip(box, lo))
    resp[box] = r[inner]
    return resp


# --------------------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------------------
_KIND_DETECTOR = "nodule-detector"
_KIND_CLASSIFIER = "feature-classifier"


def save_model(model: Any, path: str | Path, *, overwrite: bool = True) -> Path:
    """Save a fitted :class:`NoduleDetector` or :class:`FeatureClassifier` safely.

    The file is a zip of ``meta.json`` (fastct version, feature schema, parameters)
    and ``model.skops`` (the scikit-learn classifier); see :mod:`fastct._modelfile`.

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
    ValueError (``fastct._modelfile.ModelFileError``)
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

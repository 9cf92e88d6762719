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
   size, about 85 mm^3 by default, at every resolution). Without a lung mask it uses
   :func:`fastct.lungs.lung_mask` with ``method="threshold"``
   (:func:`threshold_lung_mask`).
3. :meth:`~NoduleDetector.region_table` -- per-supervoxel features (see
   :func:`detector_feature_names`): the intensity, shape and texture columns of
   :func:`fastct.region_features`, neighbourhood context from the region adjacency
   graph, a multi-scale Hessian blob response (:func:`fastct.filters.hessian_blob`)
   summarised per supervoxel, and the maxima of the blob peaks and of the bright HU
   (p90, max) over each supervoxel's closed neighbourhood (itself and its adjacent
   supervoxels), so that a small nodule split over several supervoxels still marks
   every piece.
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
file (JSON metadata + skops payload, never pickle) and read back with
:func:`load_detector` / :func:`load_model`; :func:`default_detector` loads the model
that ships with fastct (recipe: ``fastct train``, see ``docs/classification.rst``).

The package has one module per concern (all private; this package is the API):

``_estimators``
    :class:`RegionFeatureTransformer`, :class:`FeatureClassifier` and the
    table-to-matrix helpers.
``_regions``
    The detector's feature schema (:func:`detector_feature_names`) and the
    per-supervoxel table (context, bright components, blob summaries, pooling).
``_detector``
    :class:`NoduleDetector` (stage orchestration, training, grouping detections)
    and its records :class:`Case`, :class:`Detection`, :class:`DetectionResult`.
``_modelfile``
    Safe model files: the container format and its checks, and
    :func:`save_model` / :func:`load_model` / :func:`load_detector` /
    :func:`default_detector`.
"""
# ruff: noqa: F401  (re-exports)

from ._detector import (
    Case,
    Detection,
    DetectionResult,
    NoduleDetector,
    threshold_lung_mask,
)
from ._estimators import IDENTIFIER_COLUMNS, FeatureClassifier, RegionFeatureTransformer
from ._insert import (
    InsertedNodule,
    InsertionResult,
    insert_nodules,
    sample_insertion_sites,
)
from ._modelfile import (
    DEFAULT_MODEL_PATH,
    TRUSTED_TYPES,
    ModelFileError,
    UntrustedModelError,
    default_detector,
    load_detector,
    load_model,
    save_model,
)
from ._realct import (
    Lesion,
    RealCTCase,
    ScanScore,
    lesions_from_mask,
    realct_cases,
    realct_folder,
    score_scan,
)
from ._regions import SCHEMA_VERSION, detector_feature_names

__all__ = [
    "DEFAULT_MODEL_PATH",
    "Case",
    "Detection",
    "DetectionResult",
    "FeatureClassifier",
    "InsertedNodule",
    "InsertionResult",
    "Lesion",
    "NoduleDetector",
    "RealCTCase",
    "RegionFeatureTransformer",
    "ScanScore",
    "default_detector",
    "detector_feature_names",
    "insert_nodules",
    "load_detector",
    "lesions_from_mask",
    "load_model",
    "realct_cases",
    "realct_folder",
    "sample_insertion_sites",
    "save_model",
    "score_scan",
    "threshold_lung_mask",
]

"""scikit-learn estimators on region-feature tables.

:class:`RegionFeatureTransformer` turns a :class:`~fastct.features.FeatureTable` (or
any mapping / DataFrame of columns, or a plain 2-D array) into the feature matrix a
scikit-learn model wants. :class:`FeatureClassifier` puts it in front of any
scikit-learn classifier. Both follow scikit-learn's estimator rules (``get_params``,
``set_params``, ``clone``, ``check_estimator``). The table helpers here
(``_table_matrix`` and friends) are shared with the nodule detector.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

#: Table columns that identify or locate a region rather than describe it; left out of
#: the default feature selection.
IDENTIFIER_COLUMNS = frozenset(
    {"label", "count"}
    | {f"centroid_{a}_mm" for a in "zyx"}
    | {f"bbox_{m}_{a}" for m in ("min", "max") for a in "zyx"}
)


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
        from ._modelfile import save_model

        return save_model(self, path, overwrite=overwrite)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

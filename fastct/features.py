"""Per-region features and the region adjacency graph, in a few parallel passes.

:func:`region_features` turns a label image and an intensity image into one row per
region (label ``> 0``; label 0 is background and never a region);
:func:`region_adjacency` returns the face-adjacency graph of the regions. Both take
in-memory arrays or archive :class:`~fastct.volume.Volume` objects and stream
through the volume in slabs of whole planes, so labels and image never need to be
in memory at once.

Definitions
-----------
All intensity statistics are computed in float64 over the region's voxels.

``count``
    Number of voxels. ``volume_mm3`` (2-D: ``area_mm2``) is ``count`` times the
    voxel volume (product of ``spacing``).
``mean``, ``std``, ``min``, ``max``
    Population statistics (``std`` with ``ddof=0``, as ``numpy.std`` and
    ``scipy.ndimage.standard_deviation``). NaN in the region propagates to all of them.
``p10``, ``p50``, ``p90`` (one column ``p<q>`` per entry of ``percentiles``)
    Exact percentiles by numpy's default rule (``method='linear'``, Hyndman & Fan
    type 7): the value at virtual index ``(n - 1) * q / 100`` of the sorted values,
    interpolated between its two neighbours exactly as ``numpy.percentile`` does, so
    the result equals ``numpy.percentile(values.astype(float64), q)``.
``skewness``, ``kurtosis``
    Biased sample moments: ``m3 / m2**1.5`` and the *excess* (Fisher) kurtosis
    ``m4 / m2**2 - 3`` with ``mk`` the k-th central moment, i.e.
    ``scipy.stats.skew(v, bias=True)`` and ``scipy.stats.kurtosis(v, fisher=True,
    bias=True)``; NaN for a (numerically) constant region, as scipy.
``centroid_z_mm``, ``centroid_y_mm``, ``centroid_x_mm``
    Mean physical position of the voxels, ``origin + direction @ (index * spacing)``
    (ITK's convention, :mod:`fastct._geometry`): a physical point in the LPS frame,
    components in ``(z, y, x)`` order, the same for every storage order (RAS, LPS,
    permuted, oblique) of one scan. ``origin`` defaults to 0 and ``direction`` to the
    identity, or to the input volumes' own. The ``z``/``y``/``x`` in the names are the
    physical components, not array axes.
``bbox_min_*``, ``bbox_max_*``
    Index bounding box per *array axis* (``z``, ``y``, ``x`` = axes 0, 1, 2 whatever
    the direction); ``min`` inclusive, ``max`` exclusive (one past the last index),
    like ``skimage.measure.regionprops(...).bbox`` and the slices of
    ``scipy.ndimage.find_objects``.
``inertia_eig_0 .. _2``
    Eigenvalues (descending, clipped at 0) of the inertia tensor of the region's
    voxel centres in physical units, per unit mass, i.e.
    ``regionprops(labels, spacing=spacing).inertia_tensor_eigvals``. Eigenvalues do
    not change under a rotation, so they (and ``elongation``, ``flatness``) do not
    depend on ``direction``; ``surface_mm2`` and ``gradient_mean`` are computed along
    the array axes, which ``direction`` only rotates, so they do not either.
``elongation``, ``flatness``
    Pyradiomics shape definitions from the eigenvalues ``l1 >= l2 >= l3`` of the
    covariance matrix of the physical voxel positions: ``sqrt(l2 / l1)`` and
    ``sqrt(l3 / l1)`` (1 = isotropic, toward 0 = elongated / flat). NaN for a single
    voxel. 2-D tables have ``elongation`` only.
``surface_mm2`` (2-D: ``perimeter_mm``)
    Area of the exposed voxel faces: every face between a voxel of the region and a
    voxel of another label (background included) or the outside of the image, times
    the face's physical area. This digital surface over-estimates a smooth surface
    (by about 1.5x for a sphere, 4/pi for a disc) but is exact, cheap and additive.
``sphericity``
    ``(36 pi V^2)^(1/3) / surface_mm2`` (2-D: ``2 sqrt(pi A) / perimeter_mm``), the
    pyradiomics formula applied to the face-count surface: with that surface a ball
    scores about 0.67 (a disc about 0.79) and a single voxel 0.81 (0.89 in 2-D).
``gradient_mean``
    Mean over the region of the gradient magnitude ``sqrt(sum_a g_a**2)`` where
    ``g_a`` is ``numpy.gradient(image, *spacing)`` along axis ``a`` (central
    differences in intensity per mm, one-sided at the image edges); an axis of
    length 1 contributes 0 (numpy refuses it).
``n_neighbors``
    Number of labelled regions sharing at least one face with the region.
``contrast``
    ``mean`` minus the volume-weighted mean intensity of the face-adjacent regions,
    i.e. ``mean - sum_b(sum of values in b) / sum_b(count of b)`` over the
    neighbours ``b`` (background excluded). NaN for a region without neighbours.

Determinism and streaming
-------------------------
Each region's sums are accumulated by one thread that visits the region's voxels in
raster (C) order (the regions are split among threads by id, not the voxels), and
the coordinate moments are exact int64 sums. So the table is bit-identical at any
thread count, for any slab size, and streamed from an archive or in memory.

One pass for the basic columns: when only ``count``, ``volume``, ``mean``, ``min``,
``max``, ``centroid``, ``bbox``, ``inertia_eigvals``, ``elongation`` or ``flatness``
are asked for (no percentiles, moments, gradient, surface or neighbours), labels and
image are read once, in the image's own dtype, with no pass to find the labels first:
the accumulators are indexed by label value (up to ``max(65536, voxels / 64)``; larger
label values take the general path) and each thread finds the runs of the labels it
owns and sums their values in raster order, with the same arithmetic as the general
path, so those columns are bit-identical whichever path computed them. An in-memory
input that needs no conversion is one slab.

Memory: besides one slab of labels and image (about 4 Mi voxels, ~100-200 MB with
read-ahead), the passes keep about 0.8 KB per region at peak (accumulators, the
adjacency table and the output columns) and, when percentiles are requested, one
value per labelled voxel (float32 when the image dtype fits exactly in float32, else
float64). Pass ``percentiles=()`` for a table in O(regions + slab) memory.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _config
from ._atomic import atomic_path
from ._geometry import Geometry
from ._validate import as_array, check_ndim, check_positive_int
from .streaming import Slab, read_planes, slab_planes, slabs, stream
from .volume import Volume

__all__ = ["FeatureTable", "RegionAdjacency", "region_adjacency", "region_features"]

# Bytes a slab costs per voxel, for sizing slabs from the memory budget: int32 keys and
# float64 values, the kernels' run buffers, and the next slab read ahead (64 MiB: 4 Mi
# voxels per slab). The results do not depend on it.
_BYTES_PER_VOXEL = 16
# Largest label value indexed directly (counts + lookup table ~ 12 bytes per value);
# larger label values are remapped through a sorted list of the labels present.
DIRECT_LABEL_LIMIT = 1 << 24
# Image dtypes whose values float32 holds exactly (stored values use 4 bytes).
_FLOAT32_EXACT = {np.dtype(t) for t in (np.bool_, np.int8, np.uint8, np.int16, np.uint16)} | {
    np.dtype(np.float16),
    np.dtype(np.float32),
}

PROPERTIES = (
    "count",
    "volume",
    "mean",
    "std",
    "min",
    "max",
    "percentiles",
    "skewness",
    "kurtosis",
    "centroid",
    "bbox",
    "inertia_eigvals",
    "elongation",
    "flatness",
    "surface",
    "sphericity",
    "gradient_mean",
    "n_neighbors",
    "contrast",
)


# -- the table -------------------------------------------------------------------------
class FeatureTable(dict):
    """Columns by name, each an equal-length 1-D NumPy array (one row per region).

    A ``dict`` subclass, so ``pandas.DataFrame(table)`` gives one column per key and
    ``table["mean"]`` is a column. ``meta`` records how the table was made.

    Examples
    --------
    >>> import numpy as np, fastct
    >>> labels = np.array([[1, 1, 0], [2, 2, 2]])
    >>> image = np.arange(6.0).reshape(2, 3)
    >>> table = fastct.region_features(labels, image, properties=["count", "mean"])
    >>> table.columns
    ['label', 'count', 'mean']
    >>> table["label"], table["mean"]
    (array([1, 2]), array([0.5, 4. ]))
    """

    def __init__(self, columns: dict[str, np.ndarray], meta: dict[str, Any] | None = None):
        super().__init__()
        n = None
        for name, col in columns.items():
            col = np.asarray(col)
            if col.ndim != 1:
                raise ValueError(f"column {name!r} must be 1-D, got shape {col.shape}")
            if n is None:
                n = col.shape[0]
            elif col.shape[0] != n:
                raise ValueError(f"column {name!r} has {col.shape[0]} rows, expected {n}")
            self[name] = col
        self.meta: dict[str, Any] = dict(meta or {})

    @property
    def columns(self) -> list[str]:
        """Column names in order."""
        return list(self.keys())

    @property
    def n_rows(self) -> int:
        """Number of rows (regions or edges)."""
        return 0 if not self else len(next(iter(self.values())))

    def to_numpy(self, columns: Sequence[str] | None = None) -> np.ndarray:
        """The columns as one float64 ``(n_rows, n_columns)`` matrix."""
        names = self.columns if columns is None else list(columns)
        if not names:
            return np.empty((self.n_rows, 0))
        return np.column_stack([np.asarray(self[c], dtype=np.float64) for c in names])

    def to_csv(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write a CSV file (header row, then one row per region); atomic.

        Floats are written with the shortest text that reads back to the same
        float64 (NaN as ``nan``), so the file round-trips exactly.
        """
        path = Path(path)
        names = self.columns
        for name in names:
            if "," in name or "\n" in name:
                raise ValueError(f"column name {name!r} cannot be written to CSV")
        with atomic_path(path, overwrite=overwrite) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.write(",".join(names) + "\n")
                n = self.n_rows
                step = 65536
                for start in range(0, n, step):
                    cols = [_csv_text(self[c][start : start + step]) for c in names]
                    f.writelines(",".join(row) + "\n" for row in zip(*cols))
        return path

    def __repr__(self) -> str:
        return f"<fastct.FeatureTable {self.n_rows} rows x {len(self)} columns: {', '.join(self.columns)}>"


def _csv_text(col: np.ndarray) -> list[str]:
    if col.dtype.kind == "f":
        return [repr(v) for v in col.astype(np.float64).tolist()]
    return [str(v) for v in col.tolist()]


class RegionAdjacency(FeatureTable):
    """Region adjacency graph: one row per pair of face-adjacent regions.

    Columns ``label_a < label_b`` (sorted by ``label_a``, then ``label_b``),
    ``faces`` (number of shared voxel faces) and ``area_mm2`` (their total physical
    area). With ``include_background=True``, label 0 appears as ``label_a``.
    """

    @property
    def edges(self) -> np.ndarray:
        """``(n_edges, 2)`` int64 array of label pairs."""
        return np.column_stack([self["label_a"], self["label_b"]]).astype(np.int64)

    def __repr__(self) -> str:
        return f"<fastct.RegionAdjacency {self.n_rows} edges>"


# -- inputs ----------------------------------------------------------------------------------
class _Source:
    """A 2-D or 3-D array or Volume read in slabs of whole planes.

    Seen as 3-D ``(z, y, x)``; a 2-D ``(y, x)`` input is seen as ``(y, 1, x)``.
    """

    def __init__(self, data: np.ndarray | Volume):
        self.data = data
        self.is_volume = isinstance(data, Volume)
        self.shape = tuple(int(s) for s in data.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(data.dtype)
        self.shape3 = self.shape if self.ndim == 3 else (self.shape[0], 1, self.shape[1])

    def read(self, lo: int, hi: int, dtype: np.dtype | None = None) -> np.ndarray:
        """Planes ``lo:hi`` as a C-contiguous ``dtype`` array (a view when possible)."""
        return read_planes(self.data, lo, hi, dtype=dtype).reshape((hi - lo, *self.shape3[1:]))


def _as_source(value: Any, name: str, kinds: str, what: str) -> _Source:
    if isinstance(value, Volume):
        if value.dtype.kind not in kinds:
            raise TypeError(f"{name} must have {what} dtype, got {value.dtype} ({value.name})")
        return _Source(value)
    if not isinstance(value, np.ndarray):
        value = as_array(value, name, "an array or a Volume")
    if value.dtype.kind not in kinds:
        raise TypeError(f"{name} must have {what} dtype, got {value.dtype}")
    check_ndim(value.ndim, name)
    if 0 in value.shape:
        raise ValueError(f"{name} must not have an empty axis, got shape {value.shape}")
    if not value.dtype.isnative:
        value = value.astype(value.dtype.newbyteorder("="))
    return _Source(value)


def _label_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype the label kernels read (int32 or int64)."""
    if dtype.kind == "b" or (dtype.kind in "iu" and dtype.itemsize < 4) or dtype == np.int32:
        return np.dtype(np.int32)
    return np.dtype(np.int64)


def _physical(
    spacing: Any, origin: Any, sources: Iterable[_Source], ndim: int, direction: Any = None
) -> Geometry:
    """spacing / origin / direction: given, else from the Volume inputs (which must
    agree), else 1 / 0 / identity."""
    vols = [s.data for s in sources if s.is_volume]
    if spacing is None and vols:
        spacing = _agreed(vols, "spacing")
    if origin is None and vols:
        origin = _agreed(vols, "origin")
    if direction is None and vols:
        found = _agreed(vols, "direction")
        direction = None if found is None else np.asarray(found, dtype=float).reshape(ndim, ndim)
    return Geometry.of(ndim, spacing, origin, direction)


def _agreed(vols: Sequence[Volume], attr: str) -> Any:
    """The ``spacing``, ``origin`` or ``direction`` all the input volumes share."""

    def key(v: Volume) -> Any:
        value = getattr(v, attr)
        if value is None:  # direction: None is the identity
            value = np.eye(v.ndim)
        return tuple(np.asarray(value, dtype=float).ravel().tolist())

    found = {key(v) for v in vols}
    if len(found) > 1:
        raise ValueError(
            f"{attr}: the input volumes disagree ({sorted(found)}); pass {attr}= explicitly"
        )
    return found.pop()


def _slab_planes(src: _Source, others: Sequence[_Source], block_planes: Any) -> int:
    if block_planes is not None:
        block_planes = check_positive_int(block_planes, "block_planes")
    _, ny, nx = src.shape3
    sources = [s.data for s in (src, *others)]
    return slab_planes(sources, _BYTES_PER_VOXEL * ny * nx, planes=block_planes)


def _nbytes(*sources: _Source) -> int:
    """Bytes of the inputs (for the automatic progress bar)."""
    return sum(int(np.prod(s.shape)) * s.dtype.itemsize for s in sources)


def _n_parts() -> int:
    """Ownership classes for the kernels: a power of two >= the thread count."""
    n = _config.get_num_threads()
    return 1 << max(0, (n - 1).bit_length())


# -- pass 0: which labels are present ----------------------------------------------------
class _Runs:
    """Reusable run buffers for slabs of up to ``planes`` planes (see the kernels)."""

    def __init__(self, planes: int, ny: int, nx: int, value_dtype: Any = np.int32):
        cap = planes * ny * nx
        self.plane = ny * nx
        self.pos = np.empty(cap, dtype=np.int32)
        self.len = np.empty(cap, dtype=np.int32)
        self.val = np.empty(cap, dtype=value_dtype)
        self.n = np.zeros(planes, dtype=np.int64)


@dataclass
class _Labels:
    """The labels present, and how pass 1 reads them.

    Pass 1 works on int32 *keys*: the label values themselves when they are small
    enough to index a table (``key_lut[label] = region id``), otherwise the rank of
    the label among those present, plus 1. Key 0 is background (``key_lut[0] = -1``).
    """

    present: np.ndarray  # sorted label values > 0 present (int64)
    counts: np.ndarray  # voxels per present label (int64)
    direct: bool  # keys are the label values
    key_lut: np.ndarray  # key -> dense region id (int32), -1 for background
    ldtype: np.dtype

    def keys(self, lab: np.ndarray) -> np.ndarray:
        if self.direct:
            return np.ascontiguousarray(lab, dtype=np.int32)
        keys = np.empty(lab.shape, dtype=np.int32)
        np.copyto(keys, np.searchsorted(self.present, lab) + 1, casting="unsafe")
        keys[lab == 0] = 0
        return keys


def _scan_labels(lsrc: _Source, planes: int, nparts: int) -> _Labels:
    from ._kernels import features as K

    ldtype = _label_dtype(lsrc.dtype)
    counts = np.zeros(1024, dtype=np.int64)
    sparse: tuple[np.ndarray, np.ndarray] | None = None
    _, ny, nx = lsrc.shape3
    runs = _Runs(planes, ny, nx, np.int64)
    mins = np.empty(planes, dtype=np.int64)
    maxs = np.empty(planes, dtype=np.int64)

    def read(slab: Slab) -> np.ndarray:
        return _read_labels(lsrc, slab.lo, slab.hi, ldtype)

    for slab, lab in stream(
        slabs(lsrc.shape3[0], planes), read, desc="labels", nbytes=_nbytes(lsrc)
    ):
        nb = slab.planes
        K.label_runs(lab, runs.pos, runs.len, runs.val, runs.n, mins, maxs)
        lo, hi = int(mins[:nb].min()), int(maxs[:nb].max())
        if lo < 0:
            raise ValueError(f"labels must be >= 0 (0 is background), found label {lo}")
        if sparse is None and hi < DIRECT_LABEL_LIMIT:
            if hi >= counts.shape[0]:
                grown = np.zeros(max(hi + 1, 2 * counts.shape[0]), dtype=np.int64)
                grown[: counts.shape[0]] = counts
                counts = grown
            K.run_histogram(runs.len, runs.val, runs.n[:nb], runs.plane, nparts, counts)
            continue
        if sparse is None:
            nzl = np.flatnonzero(counts)
            sparse = (nzl.astype(np.int64), counts[nzl])
        u, c = np.unique(lab[lab > 0], return_counts=True)
        allu = np.concatenate([sparse[0], u.astype(np.int64)])
        allc = np.concatenate([sparse[1], c.astype(np.int64)])
        uu, inv = np.unique(allu, return_inverse=True)
        sparse = (uu, np.bincount(inv.ravel(), weights=allc).astype(np.int64))
    if sparse is None:
        present = np.flatnonzero(counts).astype(np.int64)
        cnt = counts[present]
    else:
        present, cnt = sparse
    if present.shape[0] == 0:
        raise ValueError("labels has no region: every voxel is 0 (background)")
    if present.shape[0] >= 1_000_000_000:
        raise ValueError(f"labels has {present.shape[0]} regions; at most 1e9 are supported")
    if sparse is None:
        lut = np.full(counts.shape[0], -1, dtype=np.int32)
        lut[present] = np.arange(present.shape[0], dtype=np.int32)
    else:
        lut = np.arange(-1, present.shape[0], dtype=np.int32)
    return _Labels(present, cnt, sparse is None, lut, ldtype)


def _read_labels(lsrc: _Source, lo: int, hi: int, ldtype: np.dtype) -> np.ndarray:
    raw = lsrc.read(lo, hi)
    if raw.dtype == np.uint64 and raw.size and raw.max() > np.iinfo(np.int64).max:
        raise ValueError(f"labels must be < 2**63, found {int(raw.max())}")
    return np.ascontiguousarray(raw, dtype=ldtype)


# -- adjacency ----------------------------------------------------------------------------
class _Pairs:
    """Adjacency entries: per-slab kernel output slots and the global (key -> faces) table.

    The slab's planes are split into about four work items per thread (integer face
    counts make the result independent of the split). A kernel slot holds up to its
    work item's number of faces, but only the entries actually written are ever
    touched, so the memory committed stays small.
    """

    def __init__(self, planes: int, ny: int, nx: int, n_ids: int):
        self.item_planes = max(1, -(-planes // (4 * _config.get_num_threads())))
        self.items = -(-planes // self.item_planes)
        self.cap = self.item_planes * 3 * ny * nx
        self.keys = np.empty(self.items * self.cap, dtype=np.int64)
        self.faces = np.empty(self.items * self.cap, dtype=np.int64)
        self.n = np.zeros(self.items, dtype=np.int64)
        self.n_ids = n_ids
        # room for ~4 (pair, axis) keys per region at half load before growing
        self.bits = min(26, max(12, int(8 * n_ids - 1).bit_length()))
        self.table_keys = np.full(1 << self.bits, -1, dtype=np.int64)
        self.table_faces = np.zeros(1 << self.bits, dtype=np.int64)
        self.used = 0

    def add_slab(self, keys, lut, zc0, ncore, z0, nz, skip_axis, include_bg) -> None:
        from ._kernels import features as K

        K.adjacency_scan(
            keys, lut, zc0, ncore, z0, nz, skip_axis, self.n_ids, include_bg, self.item_planes,
            self.cap, self.n, self.keys, self.faces,
        )  # fmt: skip
        nitems = -(-ncore // self.item_planes)
        for c in range(nitems):
            part = slice(c * self.cap, c * self.cap + int(self.n[c]))
            self._reserve(part.stop - part.start)
            self.used += K.merge_pairs(
                self.table_keys, self.table_faces, self.bits, self.keys[part], self.faces[part]
            )

    def _reserve(self, incoming: int) -> None:
        """Keep the table at most half full even if every incoming key is new."""
        from ._kernels import features as K

        need = 2 * (self.used + incoming)
        if need <= self.table_keys.shape[0]:
            return
        bits = max(self.bits + 1, int(need - 1).bit_length())
        keys, faces = self.entries()
        self.bits = bits
        self.table_keys = np.full(1 << bits, -1, dtype=np.int64)
        self.table_faces = np.zeros(1 << bits, dtype=np.int64)
        self.used = K.merge_pairs(self.table_keys, self.table_faces, bits, keys, faces)

    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        full = self.table_keys >= 0
        return self.table_keys[full], self.table_faces[full]

    def reduce(self, face_area: np.ndarray) -> tuple[np.ndarray, ...]:
        """(id_a + 1, id_b + 1, faces, area) per adjacent pair, sorted by pair."""
        keys, faces = self.entries()
        self.table_keys = self.table_faces = self.keys = self.faces = None  # free early
        order = np.argsort(keys)  # unique keys
        keys, faces = keys[order], faces[order]
        del order
        if keys.size == 0:
            z = np.zeros(0, np.int64)
            return z, z, z, np.zeros(0)
        axis = keys % 3
        pair = keys // 3
        starts = np.flatnonzero(np.concatenate([[True], pair[1:] != pair[:-1]]))
        pair_faces = np.add.reduceat(faces, starts)
        pair_area = np.add.reduceat(faces * face_area[axis], starts)
        pair = pair[starts]
        stride = self.n_ids + 1
        return pair // stride, pair % stride, pair_faces, pair_area


def _face_area(spacing3: np.ndarray) -> np.ndarray:
    sz, sy, sx = spacing3
    return np.array([sy * sx, sz * sx, sz * sy])


# -- validation of options ------------------------------------------------------------------
def _check_percentiles(percentiles: Any) -> tuple[list[float], list[str]]:
    if percentiles is None:
        return [], []
    if isinstance(percentiles, (numbers.Real, np.number)) and not isinstance(percentiles, bool):
        percentiles = (percentiles,)
    if isinstance(percentiles, (str, bytes)) or not isinstance(percentiles, (Sequence, np.ndarray)):
        raise TypeError(
            f"percentiles must be a sequence of numbers in [0, 100], got {percentiles!r}"
        )
    values: list[float] = []
    names: list[str] = []
    for p in np.asarray(percentiles, dtype=object).ravel().tolist():
        if isinstance(p, bool) or not isinstance(p, (numbers.Real, np.number)):
            raise TypeError(f"percentiles must contain numbers in [0, 100], got {p!r}")
        p = float(p)
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"percentiles must be in [0, 100], got {p}")
        name = f"p{p:g}"  # 6 significant digits, as the column is named
        if name in names:
            other = values[names.index(name)]
            raise ValueError(
                f"percentiles {other!r} and {p!r} both name the column {name!r} "
                "(columns show 6 significant digits): give each percentile once"
            )
        values.append(p)
        names.append(name)
    return values, names


def _check_properties(properties: Any, ndim: int) -> set[str]:
    valid = [p for p in PROPERTIES if not (ndim == 2 and p == "flatness")]
    if properties is None:
        return set(valid)
    if isinstance(properties, str):
        properties = (properties,)
    try:
        chosen = list(properties)
    except TypeError:
        raise TypeError(f"properties must be a sequence of names, got {properties!r}") from None
    for p in chosen:
        if p == "label":
            continue
        if p not in valid:
            raise ValueError(f"properties: unknown property {p!r}; valid names are {valid}")
    return {p for p in chosen if p != "label"}


# -- public API ----------------------------------------------------------------------------
def region_features(
    labels: np.ndarray | Volume,
    image: np.ndarray | Volume,
    *,
    spacing: Sequence[float] | float | None = None,
    origin: Sequence[float] | None = None,
    direction: Any = None,
    properties: Sequence[str] | None = None,
    percentiles: Sequence[float] | None = (10, 50, 90),
    block_planes: int | None = None,
) -> FeatureTable:
    """Features of every labelled region, one row per label present, in a few passes.

    Parameters
    ----------
    labels : ndarray or Volume
        2-D ``(y, x)`` or 3-D ``(z, y, x)`` integer (or bool) label image. Label 0 is
        background and gets no row; labels must be >= 0 and need not be contiguous.
    image : ndarray or Volume
        Intensities, same shape, any real dtype (computed in float64).
    spacing : float or sequence of float, optional
        Voxel size in mm per axis. Default: the volumes' spacing, else 1.
    origin : sequence of float, optional
        Physical position of voxel 0 (for the centroids). Default: the volumes'
        origin, else 0.
    direction : (ndim, ndim) array_like, optional
        Direction cosines, one column per array axis (ITK's convention, LPS frame,
        ``(z, y, x)`` components): centroids are ``origin + direction @ (index *
        spacing)``. Default: the volumes' direction, else the identity.
    properties : sequence of str, optional
        Subset of :data:`PROPERTIES` to compute (``label`` is always included);
        default all. Leaving out ``percentiles``, ``std``/``skewness``/``kurtosis``,
        ``gradient_mean``, ``surface``/``sphericity`` or ``contrast``/``n_neighbors``
        skips the corresponding work; leaving out all of them gives one pass over the
        inputs (see the module documentation), the fastest way to ``count``, ``mean``,
        ``min``, ``max``, ``centroid`` and ``bbox``.
    percentiles : sequence of float
        Percentiles in [0, 100] for columns ``p<q>`` (default 10, 50, 90); ``()``
        for none, which also drops the per-voxel value store.
    block_planes : int, optional
        Planes per slab (default: about 4 Mi voxels, aligned to the chunks). The
        result does not depend on it.

    Returns
    -------
    FeatureTable
        Columns (3-D): ``label, count, volume_mm3, mean, std, min, max, p10, p50,
        p90, skewness, kurtosis, centroid_{z,y,x}_mm, bbox_min_{z,y,x},
        bbox_max_{z,y,x}, inertia_eig_{0,1,2}, elongation, flatness, surface_mm2,
        sphericity, gradient_mean, n_neighbors, contrast``. 2-D: the same over
        ``y, x`` with ``area_mm2`` and ``perimeter_mm``, and no ``flatness``. See
        the module documentation for the definitions.

    Raises
    ------
    TypeError
        ``labels`` not integer, ``image`` not numeric, bad option types.
    ValueError
        Shapes differ, negative labels, no region at all, bad ``spacing``.

    Examples
    --------
    >>> import numpy as np, fastct
    >>> labels = np.zeros((4, 6, 6), np.int32)
    >>> labels[1:3, 1:4, 1:4] = 7
    >>> image = np.arange(labels.size, dtype=np.float32).reshape(labels.shape)
    >>> t = fastct.region_features(labels, image, spacing=(2.0, 0.5, 0.5))
    >>> int(t["label"][0]), int(t["count"][0]), float(t["volume_mm3"][0])
    (7, 18, 9.0)
    >>> [float(t[c][0]) for c in ("centroid_z_mm", "centroid_y_mm", "centroid_x_mm")]
    [3.0, 1.0, 1.0]
    """
    lsrc = _as_source(labels, "labels", "biu", "an integer (or bool)")
    isrc = _as_source(image, "image", "biuf", "a real numeric")
    if lsrc.shape != isrc.shape:
        raise ValueError(
            f"labels and image must have the same shape, got labels {lsrc.shape} "
            f"and image {isrc.shape}"
        )
    ndim = lsrc.ndim
    geom = _physical(spacing, origin, (lsrc, isrc), ndim, direction)
    spacing_t = geom.spacing
    props = _check_properties(properties, ndim)
    pvals, pnames = _check_percentiles(percentiles)
    if "percentiles" not in props:
        pvals, pnames = [], []
    planes = _slab_planes(lsrc, (isrc,), block_planes)

    need_moments = bool(props & {"std", "skewness", "kurtosis"})
    need_csr = bool(pvals)
    need_grad = "gradient_mean" in props
    need_faces = bool(props & {"surface", "sphericity"})
    need_adj = bool(props & {"contrast", "n_neighbors"})

    from ._kernels import features as K

    if not (need_moments or need_csr or need_grad or need_faces or need_adj):
        fast = _one_pass(lsrc, isrc, planes, block_planes, props, geom, ndim)
        if fast is not None:
            return fast

    with _config.kernel_threads():
        nparts = _n_parts()
        lab_info = _scan_labels(lsrc, planes, nparts)
        n = lab_info.present.shape[0]
        nz = lsrc.shape3[0]
        skip_axis = 1 if ndim == 2 else -1
        spacing3 = np.array(
            spacing_t if ndim == 3 else (spacing_t[0], 1.0, spacing_t[1]), dtype=np.float64
        )
        acc_i = np.zeros((n, K.N_ACC_I), dtype=np.int64)
        acc_f = np.zeros((n, K.N_ACC_F), dtype=np.float64)
        acc_c = np.zeros((n, 3), dtype=np.float64)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lab_info.counts, out=offsets[1:])
        if need_csr:
            vdtype = np.float32 if isrc.dtype in _FLOAT32_EXACT else np.float64
            vals = np.empty(int(offsets[-1]), dtype=vdtype)
            fill = offsets[:-1].copy()
        else:
            vals = np.zeros(0, dtype=np.float64)
            fill = np.zeros(1, dtype=np.int64)
        lut = lab_info.key_lut
        halo = 1 if (need_grad or need_faces or need_adj) else 0
        nbytes = _nbytes(lsrc, isrc)

        def read_both(slab: Slab) -> tuple[np.ndarray, np.ndarray]:
            keys = lab_info.keys(_read_labels(lsrc, slab.lo, slab.hi, lab_info.ldtype))
            return keys, isrc.read(slab.lo, slab.hi, np.float64)

        runs = _Runs(planes, lsrc.shape3[1], lsrc.shape3[2])
        pairs = _Pairs(planes, lsrc.shape3[1], lsrc.shape3[2], n) if need_adj else None
        for slab, (keys, img) in stream(
            slabs(nz, planes, halo=halo), read_both, desc="features", nbytes=nbytes
        ):
            z0, zc0, ncore = slab.start, slab.start - slab.lo, slab.planes
            nruns = runs.n[:ncore]
            K.key_runs(keys, lut, zc0, ncore, runs.pos, runs.len, runs.val, nruns)
            K.accumulate(
                keys, img, zc0, z0, nz, runs.pos, runs.len, runs.val, nruns, skip_axis,
                spacing3, nparts, need_grad, need_faces, acc_i, acc_f, need_csr, fill, vals,
            )  # fmt: skip
            if pairs is not None:
                pairs.add_slab(keys, lut, zc0, ncore, z0, nz, skip_axis, False)

        count = acc_i[:, 0]
        mean = acc_f[:, 0] / count
        vmin, vmax = acc_f[:, 1], acc_f[:, 2]
        pct = np.zeros((n, len(pvals)), dtype=np.float64)
        if need_csr:
            q = np.true_divide(np.asarray(pvals, dtype=np.float64), 100)
            K.finalize_values(vals, offsets, mean, vmin, vmax, q, acc_c, pct)
            vals = None  # free the stored values early
        elif need_moments:
            for slab, (keys, img) in stream(
                slabs(nz, planes), read_both, desc="moments", nbytes=nbytes
            ):
                nruns = runs.n[: slab.planes]
                K.key_runs(keys, lut, 0, slab.planes, runs.pos, runs.len, runs.val, nruns)
                K.central_sums(img, 0, runs.pos, runs.len, runs.val, nruns, nparts, mean, acc_c)

        cov_ev = None
        if props & {"inertia_eigvals", "elongation", "flatness"}:
            cov_ev = _covariance_eigvals(acc_i, spacing3, ndim)

    del runs, keys, img, fill, vals
    adjacency = None
    if pairs is not None:
        adjacency = pairs.reduce(_face_area(spacing3))
        del pairs
    return _assemble(
        lab_info, acc_i, acc_f, acc_c, pct, pnames, props, spacing3, geom, ndim,
        cov_ev, adjacency, mean,
    )  # fmt: skip


# Image dtypes the one-pass kernel reads as they are (float64 holds their values exactly).
_NATIVE_IMAGE = {
    np.dtype(t)
    for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.float32, np.float64)
}
# The one-pass path indexes its accumulators by label value: up to this many rows, or one
# per 64 voxels of the image when that is more (at most 3 bytes per voxel: 128 or 192
# bytes per row).
_ONE_PASS_MIN_ROWS = 1 << 16
# Rows to start with (more are added, and the slab read again for the new labels, when
# larger label values show up).
_ONE_PASS_FIRST_ROWS = 1 << 16
# Address space for the rows of the z parts after the first (see _kernels.features.
# one_pass; pages are touched only for the labels of a part): fewer parts beyond it.
_ONE_PASS_PART_BYTES = 1 << 30
# z parts of a slab (None: one per thread); tests set more than the machine's threads
_ONE_PASS_Z_PARTS: int | None = None


def _one_pass(
    lsrc: _Source,
    isrc: _Source,
    planes: int,
    block_planes: int | None,
    props: set[str],
    geom: Geometry,
    ndim: int,
) -> FeatureTable | None:
    """The table of the columns that need no second pass (count, volume, mean, min, max,
    centroid, bbox, inertia eigenvalues, elongation, flatness), in one pass over labels
    and image.

    No pass to find the labels first: accumulator rows are the label values themselves
    (grown as larger values show up) and the rows with a count become the table. The
    image is read in its own dtype. Each region's voxels are summed by one thread in
    raster order with the arithmetic of the general path, so the columns are
    bit-identical to it (and to themselves at any thread count or slab size). Returns
    None when a label value is too large to index a row; the caller then takes the
    general path.
    """
    from ._kernels import features as K

    nz, ny, nx = lsrc.shape3
    limit = min(DIRECT_LABEL_LIMIT, max(_ONE_PASS_MIN_ROWS, nz * ny * nx // 64))
    ldtype = _label_dtype(lsrc.dtype)
    idtype = None if isrc.dtype in _NATIVE_IMAGE else np.dtype(np.float64)
    int_sum = isrc.dtype.kind in "iu" and isrc.dtype.itemsize <= 2
    need_cov = bool(props & {"inertia_eigvals", "elongation", "flatness"})
    if not block_planes and all(
        not s.is_volume and s.data.flags.c_contiguous and s.dtype == t
        for s, t in ((lsrc, ldtype), (isrc, idtype or isrc.dtype))
    ):
        planes = nz  # views, no copies: one slab (one parallel region) for the whole volume
    spacing_t = geom.spacing
    spacing3 = np.array(
        spacing_t if ndim == 3 else (spacing_t[0], 1.0, spacing_t[1]), dtype=np.float64
    )

    def read_both(slab: Slab) -> tuple[np.ndarray, np.ndarray]:
        return _read_labels(lsrc, slab.lo, slab.hi, ldtype), isrc.read(slab.lo, slab.hi, idtype)

    width = K.ROW_SLOTS_COV if need_cov else K.ROW_SLOTS
    with _config.kernel_threads():
        nparts = _n_parts()
        threads = _ONE_PASS_Z_PARTS or _config.get_num_threads()
        stats = np.zeros(2, dtype=np.int64)
        # zeroed lazily by the OS: rows of absent label values cost no memory
        acc = _aligned_rows(min(limit, _ONE_PASS_FIRST_ROWS), width)
        tmp = _aligned_rows(0, width, 0)
        for slab, (lab, img) in stream(
            slabs(nz, planes), read_both, desc="features", nbytes=_nbytes(lsrc, isrc)
        ):
            lo_row = 1
            while True:
                # z parts, one per thread, each but the first with its own rows (touched
                # only for its labels; at most _ONE_PASS_PART_BYTES of address space)
                nzp = max(1, min(threads, lab.shape[0], 1 + _ONE_PASS_PART_BYTES // acc.nbytes))
                if tmp.shape[0] < nzp - 1 or tmp.shape[1] != acc.shape[0]:
                    tmp = _aligned_rows(acc.shape[0], width, nzp - 1)
                    sel = np.zeros(acc.shape[0], np.uint8)
                K.one_pass(
                    lab, img, slab.start, nzp, nparts, lo_row, need_cov, int_sum, acc,
                    acc.view(np.float64), tmp, tmp.view(np.float64), sel, stats,
                )  # fmt: skip
                lo, hi = int(stats[0]), int(stats[1])
                if lo < 0:
                    raise ValueError(f"labels must be >= 0 (0 is background), found label {lo}")
                if hi >= limit:
                    return None
                if hi < acc.shape[0]:
                    break
                # labels not seen before: more rows, and the slab again for those alone
                lo_row = acc.shape[0]
                grown = _aligned_rows(min(limit, max(hi + 1, 2 * lo_row)), width)
                grown[:lo_row] = acc
                acc = grown
        present = np.flatnonzero(acc[:, K.ROW_COUNT]).astype(np.int64)
        if present.shape[0] == 0:
            raise ValueError("labels has no region: every voxel is 0 (background)")
        acc_i, acc_f = _general_layout(acc[present], need_cov)
        del acc
        cov_ev = _covariance_eigvals(acc_i, spacing3, ndim) if need_cov else None
    n = present.shape[0]
    lab_info = _Labels(present, acc_i[:, 0], True, np.zeros(0, np.int32), ldtype)
    mean = acc_f[:, 0] / acc_i[:, 0]
    return _assemble(
        lab_info, acc_i, acc_f, np.zeros((n, 3)), np.zeros((n, 0)), [], props, spacing3, geom,
        ndim, cov_ev, None, mean,
    )  # fmt: skip


def _aligned_rows(rows: int, width: int, parts: int | None = None) -> np.ndarray:
    """A zeroed ``(rows, width)`` int64 array (``(parts, rows, width)`` with ``parts``)
    starting on a 64-byte boundary (so a 16-slot row is exactly two cache lines)."""
    n = rows * width * (1 if parts is None else parts)
    raw = np.zeros(n + 8, dtype=np.int64)
    skip = (-raw.ctypes.data % 64) // 8
    shape = (rows, width) if parts is None else (parts, rows, width)
    return raw[skip : skip + n].reshape(shape)


def _general_layout(rows: np.ndarray, need_cov: bool) -> tuple[np.ndarray, np.ndarray]:
    """The one-pass rows in the ``acc_i`` / ``acc_f`` layout of the general kernels."""
    from ._kernels import features as K

    acc_i = np.zeros((rows.shape[0], K.N_ACC_I), dtype=np.int64)
    acc_f = np.zeros((rows.shape[0], K.N_ACC_F), dtype=np.float64)
    acc_i[:, 0:7] = rows[:, 0:7]  # count, reference voxel, sums of offsets
    if need_cov:
        acc_i[:, 7:13] = rows[:, K.ROW_COV : K.ROW_COV + 6]
    acc_i[:, 13] = rows[:, K.ROW_REF]  # the first voxel in raster order has the least z
    acc_i[:, 14:16] = rows[:, K.ROW_LO : K.ROW_LO + 2]
    acc_i[:, 16] = rows[:, K.ROW_ZMAX]
    acc_i[:, 17:19] = rows[:, K.ROW_HI : K.ROW_HI + 2]
    acc_f[:, 0:3] = rows[:, K.ROW_SUM : K.ROW_SUM + 3].view(np.float64)
    return acc_i, acc_f


def _covariance_eigvals(acc_i: np.ndarray, spacing3: np.ndarray, ndim: int) -> np.ndarray:
    """Descending eigenvalues of each region's physical covariance (>= 0)."""
    from ._kernels import features as K

    out = np.zeros((acc_i.shape[0], ndim), dtype=np.float64)
    K.covariance_eigvals(acc_i, spacing3, ndim, out)
    return out


def _assemble(
    lab_info, acc_i, acc_f, acc_c, pct, pnames, props, spacing3, geom, ndim, cov_ev,
    adjacency, mean,
) -> FeatureTable:  # fmt: skip
    count = acc_i[:, 0]
    cnt = count.astype(np.float64)
    axes = (0, 1, 2) if ndim == 3 else (0, 2)  # internal axes holding real data
    names = ("z", "y", "x") if ndim == 3 else ("y", "x")
    cols: dict[str, np.ndarray] = {"label": lab_info.present.copy()}
    if "count" in props:
        cols["count"] = count.copy()
    if "volume" in props:
        cols["volume_mm3" if ndim == 3 else "area_mm2"] = cnt * math.prod(spacing3[list(axes)])
    with np.errstate(divide="ignore", invalid="ignore"):
        m2, m3, m4 = (acc_c[:, k] / cnt for k in range(3))
        if "mean" in props:
            cols["mean"] = mean
        if "std" in props:
            cols["std"] = np.sqrt(m2)
        if "min" in props:
            cols["min"] = acc_f[:, 1].copy()
        if "max" in props:
            cols["max"] = acc_f[:, 2].copy()
        for j, name in enumerate(pnames):
            cols[name] = pct[:, j].copy()
        zero = m2 <= (np.finfo(np.float64).eps * mean) ** 2
        if "skewness" in props:
            cols["skewness"] = np.where(zero, np.nan, m3 / m2**1.5)
        if "kurtosis" in props:
            cols["kurtosis"] = np.where(zero, np.nan, m4 / m2**2.0 - 3.0)
        if "centroid" in props:
            idx = np.column_stack([acc_i[:, 1 + a] + acc_i[:, 4 + a] / cnt for a in axes])
            if geom.is_identity:  # bit-for-bit the axis-aligned formula
                phys = np.asarray(geom.origin) + idx * np.asarray(geom.spacing)
            else:
                phys = geom.index_to_physical(idx)
            for k, name in enumerate(names):
                cols[f"centroid_{name}_mm"] = np.ascontiguousarray(phys[:, k])
        if "bbox" in props:
            for name, a in zip(names, axes):
                cols[f"bbox_min_{name}"] = acc_i[:, 13 + a].copy()
            for name, a in zip(names, axes):
                cols[f"bbox_max_{name}"] = acc_i[:, 16 + a] + 1
        if cov_ev is not None:
            if "inertia_eigvals" in props:
                tr = cov_ev.sum(axis=1)
                inertia = np.maximum(tr[:, None] - cov_ev[:, ::-1], 0.0) if ndim == 3 else cov_ev
                for k in range(ndim):
                    cols[f"inertia_eig_{k}"] = inertia[:, k].copy()
            l1 = cov_ev[:, 0]
            if "elongation" in props:
                cols["elongation"] = np.where(l1 > 0, np.sqrt(cov_ev[:, 1] / l1), np.nan)
            if "flatness" in props and ndim == 3:
                cols["flatness"] = np.where(l1 > 0, np.sqrt(cov_ev[:, 2] / l1), np.nan)
        area = None
        if props & {"surface", "sphericity"}:
            fa = _face_area(spacing3)
            area = acc_i[:, 19] * fa[0] + acc_i[:, 20] * fa[1] + acc_i[:, 21] * fa[2]
            if "surface" in props:
                cols["surface_mm2" if ndim == 3 else "perimeter_mm"] = area
        if "sphericity" in props:
            size = cnt * math.prod(spacing3[list(axes)])
            if ndim == 3:
                cols["sphericity"] = np.cbrt(36.0 * np.pi * size**2) / area
            else:
                cols["sphericity"] = 2.0 * np.sqrt(np.pi * size) / area
        if "gradient_mean" in props:
            cols["gradient_mean"] = acc_f[:, 3] / cnt
        if adjacency is not None:
            a1, b1, _faces, _area = adjacency
            both = a1 > 0
            a, b = a1[both] - 1, b1[both] - 1
            n = cnt.shape[0]
            sums = acc_f[:, 0]
            degree = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
            if "n_neighbors" in props:
                cols["n_neighbors"] = degree.astype(np.int64)
            if "contrast" in props:
                nb_sum = np.bincount(a, weights=sums[b], minlength=n) + np.bincount(
                    b, weights=sums[a], minlength=n
                )
                nb_cnt = np.bincount(a, weights=cnt[b], minlength=n) + np.bincount(
                    b, weights=cnt[a], minlength=n
                )
                cols["contrast"] = np.where(nb_cnt > 0, mean - nb_sum / nb_cnt, np.nan)
    meta = {
        "ndim": ndim,
        "spacing": tuple(float(spacing3[a]) for a in axes),
        "origin": tuple(geom.origin),
        "direction": geom.direction.copy(),
        "percentiles": tuple(float(p[1:]) for p in pnames),
    }
    return FeatureTable(cols, meta)


def region_adjacency(
    labels: np.ndarray | Volume,
    *,
    spacing: Sequence[float] | float | None = None,
    include_background: bool = False,
    block_planes: int | None = None,
) -> RegionAdjacency:
    """The region adjacency graph: pairs of labels sharing at least one voxel face.

    Two regions are adjacent when a voxel of one and a voxel of the other are face
    neighbours (6-connectivity in 3-D, 4 in 2-D). Every shared face is counted once.

    Parameters
    ----------
    labels : ndarray or Volume
        2-D or 3-D integer (or bool) labels, >= 0; 0 is background.
    spacing : float or sequence of float, optional
        Voxel size in mm per axis (for ``area_mm2``); default the volume's, else 1.
    include_background : bool
        Also report edges between label 0 and the regions touching it.
    block_planes : int, optional
        Planes per slab; the result does not depend on it.

    Returns
    -------
    RegionAdjacency
        Columns ``label_a``, ``label_b`` (``label_a < label_b``, rows sorted),
        ``faces`` (shared faces, int64) and ``area_mm2``; ``.edges`` gives the
        ``(n_edges, 2)`` pairs.

    Examples
    --------
    >>> import numpy as np, fastct
    >>> g = fastct.region_adjacency(np.array([[1, 1, 2], [3, 3, 2]]))
    >>> g.edges.tolist(), g["faces"].tolist()
    ([[1, 2], [1, 3], [2, 3]], [1, 2, 1])
    """
    lsrc = _as_source(labels, "labels", "biu", "an integer (or bool)")
    if not isinstance(include_background, (bool, np.bool_)):
        raise TypeError(
            f"include_background must be True or False, got {type(include_background).__name__}"
        )
    ndim = lsrc.ndim
    spacing_t = _physical(spacing, None, (lsrc,), ndim).spacing
    planes = _slab_planes(lsrc, (), block_planes)
    nz = lsrc.shape3[0]
    skip_axis = 1 if ndim == 2 else -1
    spacing3 = np.array(
        spacing_t if ndim == 3 else (spacing_t[0], 1.0, spacing_t[1]), dtype=np.float64
    )
    with _config.kernel_threads():
        lab_info = _scan_labels(lsrc, planes, _n_parts())
        n = lab_info.present.shape[0]

        def read(slab: Slab) -> np.ndarray:
            return lab_info.keys(_read_labels(lsrc, slab.lo, slab.hi, lab_info.ldtype))

        bg = bool(include_background)
        pairs = _Pairs(planes, lsrc.shape3[1], lsrc.shape3[2], n)
        for slab, keys in stream(
            slabs(nz, planes, halo=1), read, desc="adjacency", nbytes=_nbytes(lsrc)
        ):
            z0, zc0 = slab.start, slab.start - slab.lo
            pairs.add_slab(keys, lab_info.key_lut, zc0, slab.planes, z0, nz, skip_axis, bg)
    a1, b1, faces, area = pairs.reduce(_face_area(spacing3))
    present = lab_info.present
    label_a = np.where(a1 > 0, present[np.maximum(a1 - 1, 0)], 0).astype(np.int64)
    label_b = present[b1 - 1].astype(np.int64) if b1.size else np.zeros(0, np.int64)
    return RegionAdjacency(
        {"label_a": label_a, "label_b": label_b, "faces": faces.astype(np.int64), "area_mm2": area},
        {"ndim": ndim, "spacing": tuple(spacing_t), "include_background": bool(include_background)},
    )

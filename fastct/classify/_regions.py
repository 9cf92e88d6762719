"""The nodule detector's per-supervoxel features: the schema and the table.

:func:`detector_feature_names` is the schema (ordered columns, versioned by
:data:`SCHEMA_VERSION` in saved models); :func:`region_table` computes it for a
supervoxel label image:

* the intensity, shape and texture columns of :func:`fastct.region_features`;
* context from the region adjacency graph (label 0 = outside the lung / image):
  share of the surface on the boundary, brightest / darkest / face-area weighted
  neighbour means, share of bright neighbours;
* the size and extent of the connected bright structure (> -400 HU inside the
  labelled field) each supervoxel touches: a nodule is a small isolated one, a
  vessel junction part of a big tree;
* the :func:`fastct.filters.hessian_blob` response per scale, summarised by mean and
  max;
* the maxima of the blob peaks and of the bright HU (p90, max) over each
  supervoxel's closed neighbourhood (itself and its adjacent supervoxels), so that a
  small nodule split over several supervoxels still marks every piece.

Inputs are checked by the caller (:meth:`fastct.classify.NoduleDetector.region_table`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _config
from ..features import FeatureTable
from ..streaming import read_planes
from ..volume import Volume

#: Version of the detector's feature definitions (part of the saved schema).
SCHEMA_VERSION = 2

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

#: Opt-in feature sets (``NoduleDetector(extra_features=...)``): name -> description.
#: Their columns come after the schema's, so a model without them is unchanged.
EXTRA_FEATURE_SETS = {
    "hessian_shape": (
        "on the bright voxels (> -400 HU) of each region, per blob scale s: "
        "hs_blob_<s>mm_max (largest s^2 |l3| where all three Hessian eigenvalues are "
        "negative: curved in every direction) and hs_tube_<s>mm_max (largest "
        "s^2 (|l2| - |l3|) where l1, l2 < 0: curved across one axis only, a vessel); "
        "hs_blob_max / hs_tube_max over the scales, hs_blob_share = blob / "
        "(blob + tube), their neighbourhood maxima nbhd_hs_blob_max / nbhd_hs_tube_max, "
        "and hs_tube_density: the share of the closed neighbourhood's voxels that are "
        "tube-like (bright, tube response above 20 HU and above the blob response at "
        "some scale): the vessel density around the region"
    ),
}
_HS_TUBE_LEVEL = 20.0


def detector_feature_names(
    blob_scales_mm: Sequence[float] = (1.5, 3.0, 6.0), *, extra: Sequence[str] = ()
) -> list[str]:
    """Ordered feature columns of :meth:`NoduleDetector.region_table` (the schema).

    ``extra`` names opt-in feature sets (:data:`EXTRA_FEATURE_SETS`), whose columns
    follow the schema's.

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
    for name in extra:
        if name == "hessian_shape":
            for s in blob_scales_mm:
                names += [f"hs_blob_{float(s):g}mm_max", f"hs_tube_{float(s):g}mm_max"]
            names += ["hs_blob_max", "hs_tube_max", "hs_blob_share", "nbhd_hs_blob_max",
                      "nbhd_hs_tube_max", "hs_tube_density"]  # fmt: skip
        else:
            raise ValueError(
                f"extra: unknown feature set {name!r}; known: {sorted(EXTRA_FEATURE_SETS)}"
            )
    return names


def region_table(
    labels: np.ndarray | Volume,
    image: np.ndarray | Volume,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    scales: tuple[float, ...],
    direction: np.ndarray | None = None,
    extra: Sequence[str] = (),
) -> FeatureTable:
    """The detector's features of every supervoxel of ``labels`` (checked inputs).

    The centroids are physical points (``origin + direction @ (index * spacing)``);
    every other feature is invariant to ``direction``.
    """
    from ..features import region_adjacency, region_features

    sp = spacing
    org = {"origin": origin, "direction": np.eye(3) if direction is None else direction}
    base = region_features(labels, image, spacing=sp, **org)
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
    in_memory = not (isinstance(labels, Volume) or isinstance(image, Volume))
    # in memory: every labelled voxel, hence every bright component, lies in this box
    box = _labelled_box(np.asarray(labels)) if in_memory else None
    # (label values index per-thread rows of maxima: the direct path for compact labels)
    if box is not None and int(ids[-1]) < max(1 << 20, np.asarray(labels).size // 8):
        lab_c = np.ascontiguousarray(np.asarray(labels)[box])
        comp, vol, ext = _bright_components(lab_c, np.asarray(image)[box], sp, paint=False)
        from .._kernels.lut import max_lookup_by_label

        n_labels = int(ids[-1]) + 1
        with _config.kernel_threads() as threads:
            vmax, emax = max_lookup_by_label(lab_c, comp, vol, ext, n_labels, threads)
        cols["bright_component_log_mm3"] = vmax[ids].astype(np.float64)
        cols["bright_component_extent_mm"] = emax[ids].astype(np.float64)
        del comp, lab_c
    else:
        lab_c, img_c = labels, image
        if box is not None:
            lab_c, img_c = np.ascontiguousarray(np.asarray(labels)[box]), np.asarray(image)[box]
        comp_vol, comp_ext = _bright_components(lab_c, img_c, sp)
        for name, img in (("bright_component_log_mm3", comp_vol),
                          ("bright_component_extent_mm", comp_ext)):  # fmt: skip
            t = region_features(lab_c, img, spacing=sp, **org, properties=["max"],
                                percentiles=())  # fmt: skip
            cols[name] = t["max"]
        del comp_vol, comp_ext, lab_c, img_c
    # multi-scale blob response, summarised per supervoxel
    _blob_columns(cols, labels, image, sp, org, scales, box)
    # neighbourhood maxima (region + adjacent regions) of the blob peaks and bright HU
    pooled = [f"blob_{s:g}mm_max" for s in scales] + list(_POOLED_FEATURES)
    for name in pooled:
        v = np.asarray(cols[name], dtype=np.float64)
        m = v.copy()
        if src.size:
            np.fmax.at(m, src, v[dst])
        cols[f"nbhd_{name}"] = m
    if "hessian_shape" in extra:
        _hessian_shape_columns(cols, np.asarray(labels), np.asarray(image), sp, scales, src, dst)
    meta = dict(base.meta)
    meta["adjacency"] = np.column_stack([la[inner], lb[inner]]).astype(np.int64)
    meta["feature_schema"] = SCHEMA_VERSION
    return FeatureTable(cols, meta)


def _blob_columns(
    cols: dict[str, np.ndarray],
    labels: np.ndarray | Volume,
    image: np.ndarray | Volume,
    sp: tuple[float, ...],
    org: dict[str, Any],
    scales: tuple[float, ...],
    box: tuple[slice, ...] | None = None,
) -> None:
    """Add ``blob_<s>mm_mean`` / ``_max``: the Hessian blob response (float32, edges
    extended as 'nearest') at each scale, summarised per supervoxel.

    Archive inputs stream the response through a scratch volume; in memory only the
    bounding box of the labelled voxels is filtered.
    """
    from ..features import region_features
    from ..filters._blob import BoxBlob, _hessian_blob
    from ..streaming import Scratch

    streamed = isinstance(image, Volume) or isinstance(labels, Volume)
    if box is None and not streamed:
        box = _labelled_box(np.asarray(labels))
    if box is not None:
        # every labelled voxel lies in the box: the response is evaluated at them alone
        # and the regions are summarised on the box (the same voxels in the same order)
        lab_box = np.ascontiguousarray(np.asarray(labels)[box])
        blob = BoxBlob(np.asarray(image), box, scales, sp)
        for s in scales:
            t = region_features(
                lab_box, blob.response(s, lab_box > 0), spacing=sp, **org,
                properties=["mean", "max"], percentiles=(),
            )  # fmt: skip
            cols[f"blob_{s:g}mm_mean"] = t["mean"]
            cols[f"blob_{s:g}mm_max"] = t["max"]
        return
    scratch = Scratch(labels if isinstance(labels, Volume) else image)
    try:
        for s in scales:
            if streamed:
                resp = scratch.volume(f"blob_{s:g}", tuple(image.shape), np.float32)
                _hessian_blob(image, s, sp, mode="nearest", dtype=np.float32, out=resp)
            else:
                resp = np.zeros(image.shape, np.float32)
            t = region_features(
                labels, resp, spacing=sp, **org, properties=["mean", "max"], percentiles=()
            )
            cols[f"blob_{s:g}mm_mean"] = t["mean"]
            cols[f"blob_{s:g}mm_max"] = t["max"]
            del resp
    finally:
        scratch.close()


def _labelled_box(labels: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of the voxels with a label (``labels != 0``), or None."""
    nz = [np.flatnonzero(labels.any(axis=tuple(j for j in range(3) if j != a))) for a in range(3)]
    if any(x.size == 0 for x in nz):
        return None
    return tuple(slice(int(x[0]), int(x[-1]) + 1) for x in nz)


def _bright_components(labels: Any, image: Any, spacing: tuple[float, ...], paint: bool = True):
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
        bright[z0:z1] = (read_planes(image, z0, z1) > _BRIGHT_HU) & (
            read_planes(labels, z0, z1) > 0
        )
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
    if not paint:  # the component image and the per-component values
        return comp, vol, ext
    return vol[comp], ext[comp]


def _hessian_eigenvalues(
    image: np.ndarray,
    box: tuple[slice, ...],
    where: np.ndarray,
    scale: float,
    sp: tuple[float, ...],
) -> np.ndarray:
    """``(n, 3)`` Hessian eigenvalues (per mm^2, ascending) of the Gaussian-smoothed
    image (sigma ``scale`` mm, edges 'nearest') at the voxels ``where`` of ``box``."""
    from scipy import ndimage as ndi

    sig = [scale / d for d in sp]
    halo = [int(math.ceil(4.0 * s + 0.5)) + 1 for s in sig]
    lo = [max(0, b.start - h) for b, h in zip(box, halo, strict=True)]
    hi = [min(n, b.stop + h) for b, h, n in zip(box, halo, image.shape, strict=True)]
    sub = np.asarray(image[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))], np.float32)
    g = ndi.gaussian_filter(sub, sig, mode="nearest", truncate=4.0)
    gp = np.pad(g, 1, mode="edge")
    idx = np.nonzero(where)
    z, y, x = (idx[a] + box[a].start - lo[a] + 1 for a in range(3))

    def at(oz: int, oy: int, ox: int) -> np.ndarray:
        return gp[z + oz, y + oy, x + ox]

    dz, dy, dx = sp
    c = at(0, 0, 0)
    h = np.empty((c.size, 3, 3), np.float32)
    h[:, 0, 0] = (at(1, 0, 0) - 2 * c + at(-1, 0, 0)) / (dz * dz)
    h[:, 1, 1] = (at(0, 1, 0) - 2 * c + at(0, -1, 0)) / (dy * dy)
    h[:, 2, 2] = (at(0, 0, 1) - 2 * c + at(0, 0, -1)) / (dx * dx)
    h[:, 0, 1] = h[:, 1, 0] = (at(1, 1, 0) - at(1, -1, 0) - at(-1, 1, 0) + at(-1, -1, 0)) / (
        4 * dz * dy
    )
    h[:, 0, 2] = h[:, 2, 0] = (at(1, 0, 1) - at(1, 0, -1) - at(-1, 0, 1) + at(-1, 0, -1)) / (
        4 * dz * dx
    )
    h[:, 1, 2] = h[:, 2, 1] = (at(0, 1, 1) - at(0, 1, -1) - at(0, -1, 1) + at(0, -1, -1)) / (
        4 * dy * dx
    )
    return np.linalg.eigvalsh(h)


def _hessian_shape_columns(
    cols: dict[str, np.ndarray],
    labels: np.ndarray,
    image: np.ndarray,
    sp: tuple[float, ...],
    scales: tuple[float, ...],
    src: np.ndarray,
    dst: np.ndarray,
) -> None:
    """The ``hessian_shape`` feature set (see :data:`EXTRA_FEATURE_SETS`), in memory."""
    ids = np.asarray(cols["label"], dtype=np.int64)
    n = ids.size
    box = _labelled_box(labels)
    blob_all = np.zeros(n)
    tube_all = np.zeros(n)
    dense = np.zeros(n)
    if box is not None:
        where = labels[box] > 0
        lab = labels[box][where].astype(np.int64)
        row = np.searchsorted(ids, lab)
        bright = np.asarray(image[box])[where] > _BRIGHT_HU
        tube_any = np.zeros(lab.size, bool)
        for s in scales:
            ev = _hessian_eigenvalues(image, box, where, s, sp)  # ascending: l1 <= l2 <= l3
            # magnitudes in decreasing order for bright structures: |l1| >= |l2| >= |l3|
            a1, a2, a3 = np.abs(ev[:, 0]), np.abs(ev[:, 1]), np.abs(ev[:, 2])
            blob = np.where(bright & (ev[:, 2] < 0), a3, 0.0) * s * s
            tube = np.where(bright & (ev[:, 1] < 0), np.maximum(a2 - a3, 0.0), 0.0) * s * s
            del a1
            bmax = np.zeros(n)
            tmax = np.zeros(n)
            np.maximum.at(bmax, row, blob)
            np.maximum.at(tmax, row, tube)
            cols[f"hs_blob_{s:g}mm_max"] = bmax
            cols[f"hs_tube_{s:g}mm_max"] = tmax
            blob_all = np.maximum(blob_all, bmax)
            tube_all = np.maximum(tube_all, tmax)
            tube_any |= (tube > _HS_TUBE_LEVEL) & (tube > blob)
        dense = np.bincount(row, weights=tube_any, minlength=n)
    else:
        for s in scales:
            cols[f"hs_blob_{s:g}mm_max"] = np.zeros(n)
            cols[f"hs_tube_{s:g}mm_max"] = np.zeros(n)
    cols["hs_blob_max"] = blob_all
    cols["hs_tube_max"] = tube_all
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["hs_blob_share"] = np.where(
            blob_all + tube_all > 0, blob_all / (blob_all + tube_all), 0.0
        )
    for name, v in (("hs_blob_max", blob_all), ("hs_tube_max", tube_all)):
        m = v.copy()
        if src.size:
            np.fmax.at(m, src, v[dst])
        cols[f"nbhd_{name}"] = m
    # vessel density of the closed neighbourhood: tube voxels / voxels
    count = np.asarray(cols["count"], dtype=np.float64)
    num, den = dense.copy(), count.copy()
    if src.size:
        np.add.at(num, src, dense[dst])
        np.add.at(den, src, count[dst])
    cols["hs_tube_density"] = np.where(den > 0, num / den, 0.0)

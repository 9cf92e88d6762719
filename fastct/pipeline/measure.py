"""Nodule measurement as a follow-up read does it: axial diameters, volume, type.

Rules (research use; they imitate how lung-screening guidelines measure, they are not
a clinical tool):

Nodule region
    The voxels of the detection's supervoxels (its region) whose CT number on the
    denoised image is at least :data:`REGION_MIN_HU` (-700 HU: above aerated lung,
    about -850, and below ground glass, about -750 to -300). When no voxel passes,
    the whole region is used.
Diameters
    On the axial slice (array axis 0, z) of largest nodule area, the *long axis* is the
    largest Feret diameter and the *short axis* the largest extent of the slice's mask
    perpendicular to the long axis; the *mean diameter* is ``(long + short) / 2``.
    Lengths are measured between the points where the outline crosses voxel edges
    (the midpoints between an inside voxel and an outside 4-neighbour, the vertices
    a marching-squares outline at level 0.5 would have), in mm with the in-plane
    spacing, so a disc of radius ``r`` measures ``2 r`` to within about a voxel.
Volume
    Voxel count times the voxel volume.
Type (:func:`nodule_type`)
    ``calcified`` when at least :data:`CALCIFIED_FRACTION` of the voxels exceed
    :data:`CALCIFIED_HU` (200 HU); otherwise ``solid`` when the mean exceeds
    :data:`SOLID_HU` (-300 HU); otherwise ``part-solid`` when the solid part (voxels
    above -300 HU) holds at least :data:`SOLID_CORE_MIN_FRACTION` of the voxels,
    ``ground-glass`` when it does not.
Solid core
    For part-solid nodules the mean diameter of the solid part (voxels above -300 HU),
    measured as above on its own largest axial slice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "CALCIFIED_FRACTION",
    "CALCIFIED_HU",
    "REGION_MIN_HU",
    "SOLID_CORE_MIN_FRACTION",
    "SOLID_HU",
    "axial_diameters",
    "detection_box",
    "location",
    "lung_extent",
    "measure_detection",
    "measure_nodule",
    "nodule_type",
]

#: Voxels of a detection's region at least this dense (HU) form the nodule.
REGION_MIN_HU = -700.0
#: Voxels above this (HU) are solid (soft tissue); a nodule whose mean exceeds it is solid.
SOLID_HU = -300.0
#: Voxels above this (HU) are calcium.
CALCIFIED_HU = 200.0
#: A nodule with at least this fraction of calcium voxels is calcified.
CALCIFIED_FRACTION = 0.10
#: A non-solid nodule with at least this fraction of solid voxels is part-solid.
SOLID_CORE_MIN_FRACTION = 0.02


def _outline_points(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """(N, 2) points in mm (y, x) where the outline of a 2-D mask crosses voxel edges."""
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    sy, sx = (float(s) for s in spacing)
    pts = []
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        nb = np.roll(m, (-dy, -dx), axis=(0, 1))
        yy, xx = np.nonzero(m & ~nb)
        pts.append(np.column_stack(((yy - 1 + 0.5 * dy) * sy, (xx - 1 + 0.5 * dx) * sx)))
    return np.unique(np.vstack(pts), axis=0)


def _hull(points: np.ndarray) -> np.ndarray:
    """The convex hull's vertices (all points when there are too few for a hull)."""
    if len(points) < 4:
        return points
    try:
        from scipy.spatial import ConvexHull

        return points[ConvexHull(points).vertices]
    except Exception:  # noqa: BLE001 - collinear points: every point is on the "hull"
        return points


def axial_diameters(mask: Any, spacing: Sequence[float] = (1.0, 1.0)) -> tuple[float, float]:
    """Long and short axis (mm) of a 2-D mask, as guidelines measure nodules.

    Parameters
    ----------
    mask : (ny, nx) array_like of bool
        One axial slice of the nodule.
    spacing : (2,) sequence of float
        Pixel spacing (y, x) in mm.

    Returns
    -------
    long, short : float
        The largest Feret diameter, and the mask's largest extent perpendicular to it
        (both 0.0 for an empty mask). The outline is taken through the midpoints of the
        voxel edges between inside and outside (see the module docstring).

    Examples
    --------
    >>> yy, xx = np.mgrid[-20:21, -20:21]
    >>> long, short = axial_diameters((yy / 9.5) ** 2 + (xx / 14.5) ** 2 <= 1)
    >>> round(long), round(short)
    (29, 20)
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (y, x), got {m.ndim}-D")
    if not m.any():
        return 0.0, 0.0
    pts = _hull(_outline_points(m, spacing))
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(axis=2)
    i, j = np.unravel_index(int(np.argmax(d2)), d2.shape)
    long = float(math.sqrt(d2[i, j]))
    if long == 0.0:
        return 0.0, 0.0
    u = (pts[j] - pts[i]) / long
    perp = pts @ np.array([-u[1], u[0]])
    return long, float(perp.max() - perp.min())


def _largest_slice(mask: np.ndarray) -> int:
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    return int(np.argmax(areas))


def _mean_diameter(mask: np.ndarray, spacing: Sequence[float]) -> tuple[float, float, float, int]:
    k = _largest_slice(mask)
    long, short = axial_diameters(mask[k], spacing[1:])
    return 0.5 * (long + short), long, short, k


def nodule_type(hu: Any) -> str:
    """``'calcified'``, ``'solid'``, ``'part-solid'`` or ``'ground-glass'`` from the
    CT numbers (HU) of a nodule's voxels (rules in the module docstring).

    Examples
    --------
    >>> nodule_type([30.0] * 10), nodule_type([-500.0] * 10), nodule_type([-500] * 8 + [20] * 2)
    ('solid', 'ground-glass', 'part-solid')
    >>> nodule_type([300.0] * 2 + [30.0] * 8)
    'calcified'
    """
    v = np.asarray(hu, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("hu must hold at least one value")
    if np.mean(v > CALCIFIED_HU) >= CALCIFIED_FRACTION:
        return "calcified"
    if float(v.mean()) > SOLID_HU:
        return "solid"
    if np.mean(v > SOLID_HU) >= SOLID_CORE_MIN_FRACTION:
        return "part-solid"
    return "ground-glass"


def measure_nodule(region: Any, image: Any, spacing: Sequence[float]) -> dict[str, Any]:
    """Measure one nodule from its region and the (denoised) image around it.

    Parameters
    ----------
    region : (nz, ny, nx) array_like of bool
        The detection's region (e.g. its supervoxels) on a box of the scan.
    image : (nz, ny, nx) array_like
        CT numbers (HU) on the same box.
    spacing : (3,) sequence of float
        Voxel spacing (z, y, x) in mm.

    Returns
    -------
    dict
        ``type``; ``mean_diameter_mm``, ``long_axis_mm``, ``short_axis_mm`` and
        ``slice`` (index in the box of the axial slice measured); ``volume_mm3``;
        ``solid_mean_diameter_mm`` (part-solid only, else None); ``mean_hu``;
        ``mask`` (the nodule's voxels, bool, same shape as ``region``).

    Examples
    --------
    >>> zz, yy, xx = np.mgrid[-6:7, -6:7, -6:7]
    >>> ball = zz**2 + yy**2 + xx**2 <= 4.5**2
    >>> m = measure_nodule(ball, np.where(ball, 30.0, -850.0), (1.0, 1.0, 1.0))
    >>> m["type"], round(m["mean_diameter_mm"]), m["volume_mm3"]
    ('solid', 10, 389.0)
    """
    region = np.asarray(region, dtype=bool)
    img = np.asarray(image, dtype=np.float32)
    if region.ndim != 3 or img.shape != region.shape:
        raise ValueError(
            f"region and image must be 3-D of one shape, got {region.shape} and {img.shape}"
        )
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3:
        raise ValueError(f"spacing must have 3 values (z, y, x), got {len(sp)}")
    mask = region & (img >= REGION_MIN_HU)
    if not mask.any():
        mask = region
    if not mask.any():
        raise ValueError("region is empty")
    hu = img[mask]
    kind = nodule_type(hu)
    mean_d, long, short, k = _mean_diameter(mask, sp)
    solid_d = None
    if kind == "part-solid":
        solid = mask & (img > SOLID_HU)
        solid_d = _mean_diameter(solid, sp)[0]
    return {
        "type": kind,
        "mean_diameter_mm": float(mean_d),
        "long_axis_mm": float(long),
        "short_axis_mm": float(short),
        "slice": k,
        "volume_mm3": float(mask.sum() * sp[0] * sp[1] * sp[2]),
        "solid_mean_diameter_mm": None if solid_d is None else float(solid_d),
        "mean_hu": float(hu.mean()),
        "mask": mask,
    }


# -- on a scan -------------------------------------------------------------------------
#: Largest half-size (mm) of the box read around a detection to measure it.
MAX_BOX_HALF_MM = 60.0


def lung_extent(mask: Any, spacing: Any, origin: Any = None, direction: Any = None):
    """Superior-inferior extent and midline of a lung mask, in LPS mm.

    Returns ``{'z_min_mm', 'z_max_mm', 'x_min_mm', 'x_max_mm'}`` (LPS z grows to the
    head, x to the patient's left) from every second voxel of the mask along each axis,
    or None for an empty mask.

    Examples
    --------
    >>> m = np.zeros((10, 4, 8), bool); m[2:8, :, 1:7] = True
    >>> lung_extent(m, (2.0, 1.0, 1.0))
    {'z_min_mm': 4.0, 'z_max_mm': 12.0, 'x_min_mm': 2.0, 'x_max_mm': 6.0}
    """
    from .._geometry import index_to_physical

    m = np.asarray(mask)[::2, ::2, ::2]
    idx = np.argwhere(m) * 2
    if idx.size == 0:
        return None
    pts = index_to_physical(idx.astype(np.float64), spacing, origin, direction)
    return {
        "z_min_mm": float(pts[:, 0].min()),
        "z_max_mm": float(pts[:, 0].max()),
        "x_min_mm": float(pts[:, 2].min()),
        "x_max_mm": float(pts[:, 2].max()),
    }


def location(center_mm: Sequence[float], extent: dict[str, float] | None) -> dict[str, Any]:
    """Side and zone of a point (LPS mm, z y x) in a lung mask's extent.

    Side: ``'left'`` when the point's x (LPS: +x = patient left) exceeds the midline
    (the middle of the lung mask's x extent), else ``'right'``. Zone: ``'upper'``,
    ``'middle'`` or ``'lower'`` third of the lung mask's superior-inferior (LPS z)
    extent. Both None without an extent.

    Examples
    --------
    >>> ext = {"z_min_mm": 0.0, "z_max_mm": 300.0, "x_min_mm": -150.0, "x_max_mm": 150.0}
    >>> location([250.0, 0.0, 40.0], ext), location([50.0, 0.0, -40.0], ext)
    ({'side': 'left', 'zone': 'upper'}, {'side': 'right', 'zone': 'lower'})
    """
    if extent is None:
        return {"side": None, "zone": None}
    z, x = float(center_mm[0]), float(center_mm[2])
    mid = 0.5 * (extent["x_min_mm"] + extent["x_max_mm"])
    span = extent["z_max_mm"] - extent["z_min_mm"]
    t = 0.5 if span <= 0 else (extent["z_max_mm"] - z) / span
    zone = "upper" if t < 1 / 3 else ("middle" if t < 2 / 3 else "lower")
    return {"side": "left" if x > mid else "right", "zone": zone}


def detection_box(det: dict[str, Any], labels: Any, table: Any = None) -> tuple[slice, ...]:
    """Index box (z, y, x slices) holding a detection's supervoxels.

    From the region table's ``bbox_min_*`` / ``bbox_max_*`` columns of the member
    labels when ``table`` has them, else a cube of half-size ``max(1.5 diameter,
    10 mm)`` around the centre; at most :data:`MAX_BOX_HALF_MM` from the centre,
    and at least one voxel wider than the region on each side.
    """
    from .._geometry import physical_to_index

    shape = np.asarray(labels.shape)
    sp = np.asarray(labels.spacing, dtype=float)
    c = np.rint(physical_to_index(det["center_mm"], sp, labels.origin, labels.direction))
    c = np.clip(c.astype(int), 0, shape - 1)
    cap = np.ceil(MAX_BOX_HALF_MM / sp).astype(int)
    lo = hi = None
    ids = det.get("labels") or []
    if table is not None and ids:
        try:
            lab = np.asarray(table["label"], dtype=np.int64)
            rows = np.flatnonzero(np.isin(lab, ids))
            if rows.size:
                lo = np.array([np.min(np.asarray(table[f"bbox_min_{a}"])[rows]) for a in "zyx"])
                hi = np.array([np.max(np.asarray(table[f"bbox_max_{a}"])[rows]) for a in "zyx"])
        except (KeyError, ValueError, TypeError):
            lo = hi = None
    if lo is None or hi is None:
        half = np.ceil(max(1.5 * float(det["diameter_mm"]), 10.0) / sp).astype(int)
        lo, hi = c - half, c + half + 1
    lo = np.maximum(np.maximum(lo.astype(int) - 1, c - cap), 0)
    hi = np.minimum(np.minimum(hi.astype(int) + 1, c + cap + 1), shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def detection_mask(det: dict[str, Any], labels: Any, image: Any, box: tuple[slice, ...]):
    """The nodule voxels of a detection in ``box``: its supervoxels at least
    :data:`REGION_MIN_HU` dense (all its supervoxels when none is), and the region."""
    lab = np.asarray(labels[box])
    ids = det.get("labels") or []
    region = np.isin(lab, np.asarray(ids, dtype=lab.dtype)) if ids else np.zeros(lab.shape, bool)
    img = np.asarray(image[box], dtype=np.float32)
    return region, img


def measure_detection(
    det: dict[str, Any], labels: Any, image: Any, extent: Any = None, table: Any = None
) -> dict[str, Any]:
    """Measurements and location of one pipeline detection (added to its record).

    ``labels`` and ``image`` are the scan's supervoxels and denoised image (arrays
    with ``spacing``/``origin``/``direction`` or archive Volumes); only the box around
    the detection is read. Returns ``type``, ``mean_diameter_mm``, ``long_axis_mm``,
    ``short_axis_mm``, ``solid_mean_diameter_mm``, ``volume_measured_mm3``,
    ``mean_hu``, ``slice`` (index of the centre's axial slice), ``measured_slice``
    (the axial slice measured), ``box`` (the index box read), ``side`` and ``zone``
    (:func:`location`). A detection without member supervoxels gets only the
    location (and None measurements).
    """
    from .._geometry import physical_to_index

    box = detection_box(det, labels, table)
    region, img = detection_mask(det, labels, image, box)
    sp = tuple(float(s) for s in labels.spacing)
    c = physical_to_index(det["center_mm"], sp, labels.origin, labels.direction)
    out: dict[str, Any] = {
        "slice": int(np.clip(np.rint(c[0]), 0, labels.shape[0] - 1)),
        "box": [[s.start, s.stop] for s in box],
        **location(det["center_mm"], extent),
    }
    if not region.any():
        out.update(
            type=None,
            mean_diameter_mm=None,
            long_axis_mm=None,
            short_axis_mm=None,
            solid_mean_diameter_mm=None,
            volume_measured_mm3=None,
            mean_hu=None,
            measured_slice=None,
        )
        return out
    m = measure_nodule(region, img, sp)
    out.update(
        type=m["type"],
        mean_diameter_mm=m["mean_diameter_mm"],
        long_axis_mm=m["long_axis_mm"],
        short_axis_mm=m["short_axis_mm"],
        solid_mean_diameter_mm=m["solid_mean_diameter_mm"],
        volume_measured_mm3=m["volume_mm3"],
        mean_hu=m["mean_hu"],
        measured_slice=int(box[0].start + m["slice"]),
    )
    return out

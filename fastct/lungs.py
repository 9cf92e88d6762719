"""Lung field segmentation of a chest CT (HU): one function, two methods.

:func:`lung_mask` with ``method="anatomical"`` (the default) is the classic
threshold-and-morphology pipeline (Hu, Hoffman & Reinhardt, IEEE TMI 2001), written
with ``scipy.ndimage`` on boolean and small working arrays:

1. **Working grid.** The image is read slab by slab (an archive ``Volume`` is never
   loaded whole) and block-averaged by integer factors per axis so that a working
   voxel is about ``working_mm`` (at most 1.2 times it; no averaging where the
   spacing is already coarser). A clinical 400 x 512 x 512 scan at 0.75 x 0.70 x
   0.70 mm becomes 400 x 256 x 256 float32 (100 MiB); every later step works on
   bool/int32 arrays of that grid. **Scanner padding** is made air while reading:
   values below -1024 HU (the -2048 / -3024 HU outside the field of view) by value,
   and a constant value above -900 HU that fills the four corners of a slice (a
   scanner padding with 0) by the region of that value connected to the corners.
2. **Threshold.** ``air = image < threshold`` (default -400 HU; ``threshold="auto"``:
   Hu et al.'s iterative optimal threshold of the body's voxels, clipped to
   [-600, -300] HU, see :func:`optimal_threshold`).
3. **Body and outside air.** The body is the largest non-air component with the
   holes of each axial slice filled, opened in-plane with a 4 mm disk (a CT table,
   blanket or cable touching the patient along a narrow contact is cut off).
   Interior air is air inside the body that is not 6-connected to a y or x border
   face: lungs, airways, gas in the bowel; the air around the patient, in the
   padding and inside a hollow table is not.
4. **Airway removal.** The trachea is found as a small, round, central blob of the
   largest interior air component (the lungs and airways, never bowel gas) in the
   slices near either of its z ends (so the orientation of the scan does not
   matter) that is still such a blob 15 mm further in (a tube, not the tip of a lung
   apex or base); the airway tree is region-grown from it through voxels below
   ``airway_threshold`` (default -950 HU: lumen air, not lung parenchyma at about
   -850 HU), lowering that threshold if the growth leaks into the lungs (emphysema),
   and removed (dilated by one voxel to take the partial-volume rim with it). This
   disconnects the two lungs, which the airways join at the carina.
5. **Lungs.** The largest remaining component is kept, and the second largest if
   it holds at least ``min_lung_fraction`` of the largest, spans the largest one's
   middle slice and is at least a third as deep (anterior-posterior): two lungs, or
   one if they touch (anterior/posterior junction) or one is missing, never gas in
   the stomach under joined lungs or the air core of a table.
6. **Fill.** Holes in every axial slice are filled (vessels, nodules, bronchi inside
   the lung), then a closing with a ball of ``closing_mm`` (exact, through Euclidean
   distance transforms in mm) brings juxtapleural nodules and the hilar notches in,
   and the slices are filled once more.
7. **Back to the full grid.** The working mask is repeated back to the image's grid
   (nearest neighbour), in memory as a bool array (100 MiB for a clinical scan) or
   written slab by slab into ``out``.

Peak memory is about ``6 x`` the working grid's voxel count in bytes (for the
float32 image, an int32 label map and a few bool arrays) plus the distance
transforms of the closing over the lungs' bounding box: under 1.5 GiB for a
clinical scan.

``method="threshold"`` is the quick air-component mask the nodule detector falls
back on when it is given no lung mask (:mod:`fastct.classify`), at full resolution:

1. ``air = image < threshold``, computed slab by slab.
2. Air components (6-connected) touching a y or x border face are dropped (the
   airways may leave through the top or bottom slice, so those faces do not count).
3. Of the rest, the components holding at least 1% of the largest one's voxels and
   at least 50 mL are kept (lungs and main airways; if none is that big, the
   largest).
4. Holes of every axial slice are filled (vessels and nodules inside the lungs).

It keeps the main airways and does no closing, so nodules attached to the chest
wall may be cut off. Peak memory is the bool mask plus an int32 label map of the
full grid.

Orientation
-----------
Both methods rely on anatomy: *axial slices* (hole filling, the trachea's
cross-section) are the planes of the scan's superior-inferior axis, and the air
around the body touches the anterior-posterior and left-right faces. Every step is
symmetric under a flip of an axis (both z ends are searched for the trachea, the
"central" test is symmetric in x), so only the order of the axes matters. The mask is
computed on the scan's *LPS-ordered view* (array axes transposed so that axis 0 is
the superior-inferior, 1 the anterior-posterior and 2 the left-right axis), taken from
``direction`` (default: the Volume's own): exact for any axis-aligned storage (LPS,
RAS, LAS, PIR ...), and for an oblique scan its closest axis-aligned order (a tilt of
a few degrees is harmless; a strongly oblique scan should be resampled first). A
transposed scan is read into memory (the LPS view of a Volume whose axis 0 is not
the superior-inferior axis cannot be streamed in slabs); the mask is returned in the
scan's own array order.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from . import _config
from ._validate import (
    as_image,
    check_choice,
    check_direction,
    check_flag,
    check_out,
    check_real,
    check_spacing,
)
from .streaming import Slab, read_planes, slabs, stream, write_region
from .volume import Volume

__all__ = ["lung_mask", "optimal_threshold"]

# In-plane 4-connectivity only: per-slice operations in one call on the 3-D array.
_SLICE_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_SLICE_STRUCTURE[1] = ndi.generate_binary_structure(2, 1)
# Trachea candidates: area and roundness limits of the blob in an end slice.
_TRACHEA_AREA_MM2 = (30.0, 900.0)
_TRACHEA_CENTRAL_FRACTION = 0.15  # |x - body centre| <= this * body width
_TRACHEA_SEARCH_MM = 60.0  # how far from each z end to look for the trachea
_TRACHEA_TUBE_MM = 15.0  # the trachea is still a small blob this far inside the air column
_TRACHEA_MAX_TRIES = 8  # candidate seeds grown at most
_AIRWAY_MAX_FRACTION = 0.2  # an airway tree larger than this share of interior air leaked
_AIRWAY_MIN_LENGTH_MM = 30.0  # a shorter tree is not the trachea yet: raise or try the next
_AIRWAY_RAISE_HU = 75.0  # how far above airway_threshold the lumen threshold may go
# Scanner padding: values below the HU scale's floor are padding; a constant corner
# value above this is padding too when it fills the corners (see _unpad).
_AIR_HU = -1024.0
_WORKING_SLACK = 1.2  # a working voxel may be up to this much coarser than working_mm
_BODY_OPENING_MM = 4.0
_LUNG_MIN_DEPTH_FRACTION = (
    1.0 / 3.0
)  # the other lung is at least this deep (y extent)  # in-plane opening radius that detaches a table from the body
_PAD_MAX_PLAUSIBLE_AIR = -900.0
# method="threshold": components kept relative to the largest, and in absolute volume.
_THRESHOLD_MIN_FRACTION = 0.01
_THRESHOLD_MIN_ML = 50.0
METHODS = ("anatomical", "threshold")
# threshold="auto": Hu et al.'s iterative optimal threshold on the body's voxels, from
# this start, clipped to this range (HU); the voxels are clipped to _AUTO_CLIP first
# so that bone and metal do not pull the tissue mean up.
_AUTO_START = -400.0
_AUTO_RANGE = (-600.0, -300.0)
_AUTO_CLIP = (-1024.0, 200.0)


def _check_image(image: Any) -> np.ndarray | Volume:
    if isinstance(image, Volume):
        if image.ndim != 3:
            raise ValueError(f"image must be 3-D (z, y, x), got {image.ndim}-D volume")
        if image.dtype.kind not in "iuf":
            raise TypeError(f"image must hold CT numbers (HU), got dtype {image.dtype}")
        return image
    arr = as_image(image, "image", allow_bool=False)
    if arr.ndim != 3:
        raise ValueError(f"image must be 3-D (z, y, x), got {arr.ndim}-D with shape {arr.shape}")
    return arr


def _axial_order(direction: np.ndarray | None) -> tuple[int, ...]:
    """Array axes in (superior-inferior, anterior-posterior, left-right) order, from
    the direction (its closest signed permutation when oblique)."""
    if direction is None:
        return (0, 1, 2)
    from ._orient import closest_signed_permutation

    d = closest_signed_permutation(direction)
    return tuple(int(np.flatnonzero(d[c])[0]) for c in range(3))


def working_factors(spacing: tuple[float, ...], working_mm: float) -> tuple[int, ...]:
    """Integer block-averaging factor per axis so a working voxel is about ``working_mm``:
    the largest factor whose voxel is at most ``1.2 * working_mm`` (at least 1).

    Examples
    --------
    >>> working_factors((0.75, 0.703125, 0.703125), 1.5)
    (2, 2, 2)
    >>> working_factors((5.0, 0.84, 0.84), 1.5)
    (1, 2, 2)
    >>> working_factors((2.5, 2.8, 2.8), 1.5)
    (1, 1, 1)
    """
    return tuple(max(1, int(_WORKING_SLACK * working_mm / s + 1e-9)) for s in spacing)


def _downsample(image: np.ndarray | Volume, factors: tuple[int, ...]) -> np.ndarray:
    """Block mean by ``factors`` (edge blocks average the voxels they hold), float32,
    reading ``image`` in z slabs, scanner padding made air first (:func:`_unpad`)."""
    nz, ny, nx = image.shape
    fz, fy, fx = factors
    wshape = (-(-nz // fz), -(-ny // fy), -(-nx // fx))
    out = np.empty(wshape, dtype=np.float32)
    dtype = np.dtype(image.dtype)
    # integers of at most 32 bits: one compiled pass on the native values (same bits)
    native = dtype.kind in "iu" and dtype.itemsize <= 4
    # a slab of working rows: fz planes each (float32, or the native values)
    per_row = ny * nx * fz * (dtype.itemsize if native else 4)
    rows = max(1, _config.get_memory_budget() // max(1, per_row))

    def read(part: Slab) -> np.ndarray:
        z0, z1 = part.start * fz, min(nz, part.stop * fz)
        return read_planes(image, z0, z1, dtype=None if native else np.float32)

    nbytes = int(np.prod(image.shape)) * dtype.itemsize
    for part, slab in stream(slabs(wshape[0], rows), read, desc="lung mask", nbytes=nbytes):
        w0, w1 = part.start, part.stop
        if native and not _fov_padded(slab).any():
            from ._kernels.lungs import block_mean_floor

            block_mean_floor(slab, fz, fy, fx, np.float32(_AIR_HU), out[w0:w1])
            continue
        z0, z1 = w0 * fz, min(nz, w1 * fz)
        slab = _unpad(slab.astype(np.float32, copy=False))
        if factors == (1, 1, 1):
            out[w0:w1] = slab
            continue
        pad = [(0, (w1 - w0) * fz - (z1 - z0)), (0, wshape[1] * fy - ny), (0, wshape[2] * fx - nx)]
        if any(p[1] for p in pad):
            slab = np.pad(slab, pad)
        shape6 = (w1 - w0, fz, wshape[1], fy, wshape[2], fx)
        total = slab.reshape(shape6).sum(axis=(1, 3, 5), dtype=np.float64)
        # voxels per block: the factor, less the padding in the last block of an axis
        counts = [np.full(m, f, np.float64) for m, f in zip(total.shape, factors)]
        for c, (_, extra) in zip(counts, pad):
            c[-1] -= extra
        n = counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]
        out[w0:w1] = (total / n).astype(np.float32)
    return out


def _fov_padded(slab: np.ndarray) -> np.ndarray:
    """Per plane: do the four corners hold one value that :func:`_unpad` treats as
    padding by the field of view (after raising values below ``_AIR_HU``)?"""
    corners = np.maximum(slab[:, [0, 0, -1, -1], [0, -1, 0, -1]].astype(np.float32), _AIR_HU)
    return np.all(corners == corners[:, :1], axis=1) & (corners[:, 0] > _PAD_MAX_PLAUSIBLE_AIR)


def _unpad(slab: np.ndarray) -> np.ndarray:
    """Scanner padding outside the field of view made air (a new array, float32).

    *By value*: CT numbers below ``_AIR_HU`` (-1024, the scale's floor) exist only as
    padding (-2048, -3024, -32768 ...) and are raised to ``_AIR_HU``. *By the field of
    view*: where the four corners of a slice hold one and the same value above
    ``_PAD_MAX_PLAUSIBLE_AIR`` (a scanner that pads with 0 or -1000 + noise-free
    constants that would read as tissue), the region of exactly that value connected
    to the corners is set to ``_AIR_HU`` too.
    """
    out = np.maximum(slab, np.float32(_AIR_HU))
    for z in np.flatnonzero(_fov_padded(out)):
        plane = out[z]
        v = plane[0, 0]
        lab, _ = ndi.label(plane == v)
        ids = np.unique(lab[[0, 0, -1, -1], [0, -1, 0, -1]])
        plane[np.isin(lab, ids[ids > 0])] = _AIR_HU
    return out


def _fill_holes_in_slices(mask: np.ndarray) -> np.ndarray:
    """``ndi.binary_fill_holes(mask, structure=_SLICE_STRUCTURE)`` by one labelling:
    the False voxels not 4-connected, within their axial slice, to the slice's border
    become True (the structure has no z offset, so only the y/x border is outside)."""
    lab, n = ndi.label(~mask, structure=_SLICE_STRUCTURE)
    touches = np.zeros(n + 1, dtype=bool)
    for edge in (lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]):
        touches[edge.ravel()] = True
    touches[0] = False
    return ~touches[lab]


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of ``mask`` (all False if there is none)."""
    lab, n = ndi.label(mask)
    if n == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _body(air: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """The patient's body, lungs and airways included.

    The largest non-air component with the holes of every axial slice filled, then
    opened in-plane with a disk of ``_BODY_OPENING_MM`` (erosion, largest component,
    dilation): a CT table, blanket or cable that touches the patient along a narrow
    contact is cut off with its own enclosed air, while the filled chest is far too
    thick to be changed beyond rounding its outline.
    """
    filled = _fill_holes_in_slices(_largest(~air))
    r = _BODY_OPENING_MM
    k = [int(r / s) for s in spacing[1:]]
    if max(k) == 0 or not filled.any():
        return filled
    yy, xx = np.mgrid[-k[0] : k[0] + 1, -k[1] : k[1] + 1]
    disk = ((yy * spacing[1]) ** 2 + (xx * spacing[2]) ** 2 <= r * r)[None]
    # ndi.binary_erosion / binary_dilation with ``disk`` (symmetric), compiled
    from ._kernels.lungs import dilate_in_plane, erode_in_plane

    offsets = np.argwhere(disk[0]).astype(np.int64) - np.array(k, dtype=np.int64)
    eroded = np.empty_like(filled)
    erode_in_plane(filled, offsets, eroded)
    core = _largest(eroded)
    if not core.any():
        return filled
    dilated = np.empty_like(core)
    dilate_in_plane(core, offsets, dilated)
    return dilated & filled


def _outside_air(air: np.ndarray) -> np.ndarray:
    """Interior air: air minus the 6-connected components touching a y/x border face."""
    labels, _ = ndi.label(air)
    border = np.concatenate(
        [labels[:, 0, :].ravel(), labels[:, -1, :].ravel(), labels[:, :, 0].ravel()]
        + [labels[:, :, -1].ravel()]
    )
    keep = np.ones(int(labels.max()) + 1, dtype=bool)
    keep[0] = False
    keep[np.unique(border)] = False
    return keep[labels]


def _find_trachea(
    interior: np.ndarray, body: np.ndarray, spacing: tuple[float, ...]
) -> list[np.ndarray]:
    """Candidate seeds of the trachea (its cross-section in one slice), nearest a z end
    first (at most ``_TRACHEA_MAX_TRIES``; empty if there is none).

    Only the largest interior air component is searched (the airways join the lungs;
    gas in the bowel or a hollow table does not). In the slices within
    ``_TRACHEA_SEARCH_MM`` of each end of that component, a candidate is a blob of
    trachea-like area, central in the body, that is still such a blob
    ``_TRACHEA_TUBE_MM`` further in (a tube: a lung base or apex cut by the end slice
    widens at once). Every slice gives at most one candidate (its largest).
    """
    lab3, n3 = ndi.label(interior)
    if n3 == 0:
        return []
    sizes = np.bincount(lab3.ravel())
    sizes[0] = 0
    column = lab3 == int(np.argmax(sizes))
    del lab3
    zs = np.flatnonzero(column.any(axis=(1, 2)))
    pixel_mm2 = spacing[1] * spacing[2]
    n_search = max(1, int(round(_TRACHEA_SEARCH_MM / spacing[0])))
    n_tube = max(1, int(round(_TRACHEA_TUBE_MM / spacing[0])))
    lo_area, hi_area = _TRACHEA_AREA_MM2

    def blobs(z: int) -> tuple[np.ndarray, np.ndarray]:
        lab2, n2 = ndi.label(column[z])
        return lab2, np.bincount(lab2.ravel(), minlength=n2 + 1) * pixel_mm2

    found_at: list[tuple[int, int, np.ndarray]] = []  # (distance from end, z, blob mask)
    for end, step in ((zs[-1], -1), (zs[0], 1)):
        for k in range(min(n_search, zs.size)):
            z = int(end + step * k)
            if not column[z].any():
                continue
            body_x = np.flatnonzero(body[z].any(axis=0))
            if body_x.size == 0:
                continue
            centre_x = 0.5 * (body_x[0] + body_x[-1])
            width = body_x[-1] - body_x[0] + 1
            lab2, areas = blobs(z)
            z_in = z + step * n_tube
            inner = blobs(z_in) if 0 <= z_in < column.shape[0] else None
            found = None
            for i in range(1, areas.size):
                if not lo_area <= areas[i] <= hi_area:
                    continue
                blob = lab2 == i
                x_c = float(np.mean(np.nonzero(blob)[1]))
                if abs(x_c - centre_x) > _TRACHEA_CENTRAL_FRACTION * width:
                    continue
                if inner is None:
                    continue
                # the tube test: the blob below/above it is still trachea-sized
                ids = inner[0][blob]
                ids = ids[ids > 0]
                if ids.size == 0 or not lo_area <= inner[1][np.bincount(ids).argmax()] <= hi_area:
                    continue
                if found is None or areas[i] > areas[found]:
                    found = i
            if found is not None:
                found_at.append((k, z, lab2 == found))
    seeds = []
    for _, z, blob in sorted(found_at, key=lambda c: c[0])[:_TRACHEA_MAX_TRIES]:
        seed = np.zeros(interior.shape, dtype=bool)
        seed[z] = blob
        seeds.append(seed)
    return seeds


def _grow_airways(
    work: np.ndarray,
    interior: np.ndarray,
    seed: np.ndarray,
    airway_threshold: float,
    spacing: tuple[float, ...],
) -> np.ndarray | None:
    """The airway tree: interior voxels below the threshold connected to the seed.

    The threshold is lowered in 25 HU steps (down to ``airway_threshold - 100``) while
    the tree holds more than ``_AIRWAY_MAX_FRACTION`` of the interior air (it leaked
    into the lungs: emphysema). If instead the tree is shorter than
    ``_AIRWAY_MIN_LENGTH_MM`` along z, the threshold is raised in 25 HU steps (up to
    ``airway_threshold + _AIRWAY_RAISE_HU``, stopping before a leak): the lumen of a
    soft-tissue kernel or of a narrow airway reads above -950 HU.
    """
    limit = _AIRWAY_MAX_FRACTION * int(interior.sum())

    def tree_at(threshold: float) -> np.ndarray | None:
        lumen = (work < threshold) & interior
        labels, _ = ndi.label(lumen)
        ids = np.unique(labels[seed & lumen])
        ids = ids[ids > 0]
        if ids.size == 0:
            return None
        lut = np.zeros(int(labels.max()) + 1, dtype=bool)
        lut[ids] = True
        return lut[labels]

    threshold = airway_threshold
    tree = tree_at(threshold)
    if tree is not None and tree.sum() > limit:
        while tree is not None and tree.sum() > limit:
            threshold -= 25.0
            if threshold < airway_threshold - 100.0:
                return None
            tree = tree_at(threshold)
        return tree
    while _length_mm(tree, spacing) < _AIRWAY_MIN_LENGTH_MM:
        threshold += 25.0
        if threshold > airway_threshold + _AIRWAY_RAISE_HU:
            break
        higher = tree_at(threshold)
        if higher is not None and higher.sum() > limit:
            break
        tree = higher if higher is not None else tree
    return tree


def _length_mm(tree: np.ndarray | None, spacing: tuple[float, ...]) -> float:
    """Extent along z of ``tree`` in mm (0 for None)."""
    if tree is None:
        return 0.0
    zs = np.flatnonzero(tree.any(axis=(1, 2)))
    return float(zs.size and (zs[-1] - zs[0] + 1) * spacing[0])


def _dilate_in_box(mask: np.ndarray) -> np.ndarray:
    """``ndi.binary_dilation(mask)`` (6-connected, one voxel), computed in its bounding box."""
    idx = np.nonzero(mask)
    box = tuple(
        slice(max(0, int(i.min()) - 1), min(n, int(i.max()) + 2)) for i, n in zip(idx, mask.shape)
    )
    out = np.zeros_like(mask)
    out[box] = ndi.binary_dilation(mask[box])
    return out


def _keep_lungs(mask: np.ndarray, min_lung_fraction: float) -> np.ndarray:
    """The largest component, and the second largest as the other lung if it holds at
    least ``min_lung_fraction`` of the largest, spans the largest one's middle slice
    and is at least ``_LUNG_MIN_DEPTH_FRACTION`` as deep (anterior-posterior extent).

    Two lungs lie side by side, each from the front to the back of the chest; gas in
    the stomach or bowel under a pair of joined lungs does not reach their
    mid-height, and the air core of a CT table touching the patient is flat.
    """
    labels, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    order = np.argsort(sizes)[::-1]
    lut = np.zeros(n + 1, dtype=bool)
    lut[order[0]] = True
    if n > 1 and sizes[order[1]] >= min_lung_fraction * sizes[order[0]]:
        objs = ndi.find_objects(labels)
        first, second = objs[order[0] - 1], objs[order[1] - 1]
        middle = (first[0].start + first[0].stop - 1) / 2.0
        spans_middle = second[0].start - 0.5 <= middle <= second[0].stop - 0.5

        def depth(box: tuple[slice, ...]) -> int:
            return box[1].stop - box[1].start

        deep = depth(second) >= _LUNG_MIN_DEPTH_FRACTION * depth(first)
        if spans_middle and deep:
            lut[order[1]] = True
    return lut[labels]


def _closing_mm(mask: np.ndarray, spacing: tuple[float, ...], radius_mm: float) -> np.ndarray:
    """Binary closing with a ball of ``radius_mm`` (exact, via distance transforms),
    computed over the mask's bounding box plus a margin; the image border replicates."""
    if radius_mm <= 0 or not mask.any():
        return mask
    idx = np.nonzero(mask)
    margin = [int(math.ceil(radius_mm / s)) + 1 for s in spacing]
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) + 1 for i in idx]
    box = tuple(
        slice(max(0, a - m), min(n, b + m)) for a, b, m, n in zip(lo, hi, margin, mask.shape)
    )
    sub = mask[box]
    # Past the image border the mask continues as it is at the border (nearest).
    pad = [
        (max(0, m - b.start), max(0, b.stop + m - n)) for b, m, n in zip(box, margin, mask.shape)
    ]
    padded = np.pad(sub, pad, mode="edge")
    dilated = ndi.distance_transform_edt(~padded, sampling=spacing) <= radius_mm
    closed = ndi.distance_transform_edt(dilated, sampling=spacing) > radius_mm
    inner = tuple(slice(p[0], p[0] + s) for p, s in zip(pad, sub.shape))
    out = mask.copy()
    out[box] |= closed[inner]
    return out


def _upsample_into(
    mask: np.ndarray, factors: tuple[int, ...], shape: tuple[int, ...], out: Any
) -> np.ndarray | Volume:
    fz, fy, fx = factors
    if out is None:
        full = mask
        for axis, f in enumerate(factors):
            if f > 1:
                full = np.repeat(full, f, axis=axis)
        return np.ascontiguousarray(full[: shape[0], : shape[1], : shape[2]])
    rows = max(1, _config.get_memory_budget() // max(1, shape[1] * shape[2]))
    rows = max(fz, rows - rows % fz)
    for part in slabs(shape[0], rows):
        z0, z1 = part.start, part.stop
        w = mask[z0 // fz : -(-z1 // fz)]
        w = np.repeat(np.repeat(np.repeat(w, fz, 0), fy, 1), fx, 2)
        slab = np.ascontiguousarray(w[: z1 - z0, : shape[1], : shape[2]], dtype=out.dtype)
        write_region(out, (slice(z0, z1),), slab)
    return out


def _air_mask(image: np.ndarray | Volume, threshold: float) -> np.ndarray:
    """``image < threshold`` on the full grid (bool), reading ``image`` in z slabs."""
    nz, ny, nx = image.shape
    air = np.empty(image.shape, dtype=bool)
    itemsize = np.dtype(image.dtype).itemsize
    rows = max(1, _config.get_memory_budget() // max(1, ny * nx * itemsize))

    def read(part: Slab) -> np.ndarray:
        return read_planes(image, part.start, part.stop)

    nbytes = nz * ny * nx * itemsize
    for part, slab in stream(slabs(nz, rows), read, desc="lung mask", nbytes=nbytes):
        air[part.start : part.stop] = slab < threshold
    return air


def _threshold_mask(air: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """``method="threshold"``: the large interior air components, holes filled per slice."""
    lab, n = ndi.label(air)
    if n == 0:
        return np.zeros(air.shape, bool)
    # air around the body touches the in-plane border; the airways may leave through the
    # top or bottom slice, so those do not count
    border = np.unique(np.concatenate([lab[:, [0, -1]].ravel(), lab[:, :, [0, -1]].ravel()]))
    sizes = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
    sizes[0] = 0
    sizes[border] = 0
    if sizes.max() <= 0:
        return np.zeros(air.shape, bool)
    vox_ml = math.prod(spacing) / 1000.0
    keep = (sizes >= _THRESHOLD_MIN_FRACTION * sizes.max()) & (sizes * vox_ml >= _THRESHOLD_MIN_ML)
    if not keep.any():
        keep = sizes == sizes.max()
    mask = keep[lab]
    for z in range(mask.shape[0]):
        if mask[z].any():
            mask[z] = ndi.binary_fill_holes(mask[z])
    return mask


def optimal_threshold(values: np.ndarray, start: float = _AUTO_START) -> float:
    """Hu, Hoffman & Reinhardt's iterative optimal threshold of ``values`` (HU).

    From ``start``, the threshold is moved to the midpoint of the mean below it and the
    mean at or above it until it moves less than 0.5 HU; values are clipped to
    [-1024, 200] HU first (bone and metal do not count more than dense soft tissue).
    ``lung_mask(threshold="auto")`` applies it to the body's voxels and clips the result
    to [-600, -300] HU.

    Examples
    --------
    >>> import numpy as np
    >>> values = np.r_[np.full(100, -850.0), np.full(300, 40.0)]
    >>> optimal_threshold(values)
    -405.0
    """
    v = np.clip(np.asarray(values, dtype=np.float64).ravel(), *_AUTO_CLIP)
    t = float(start)
    for _ in range(100):
        below = v < t
        n_below = int(below.sum())
        if n_below == 0 or n_below == v.size:
            return t
        new = 0.5 * (float(v[below].mean()) + float(v[~below].mean()))
        if abs(new - t) < 0.5:
            return new
        t = new
    return t


def lung_mask(
    image: np.ndarray | Volume,
    *,
    method: str = "anatomical",
    spacing: Any = None,
    threshold: float | str = -400.0,
    airway_threshold: float = -950.0,
    remove_airways: bool = True,
    closing_mm: float = 5.0,
    working_mm: float = 1.5,
    min_lung_fraction: float = 0.1,
    direction: Any = None,
    out: np.ndarray | Volume | None = None,
) -> np.ndarray | Volume:
    """Segment the lungs of a chest CT in Hounsfield units.

    ``method="anatomical"`` (default): threshold, drop the air outside the body,
    remove the trachea and main bronchi (region growing from the trachea), keep the
    lungs (one or two largest components), fill holes and close in mm so vessels and
    juxtapleural nodules are inside. ``method="threshold"``: the large air
    components not connected to the in-plane border, holes filled per axial slice
    (quicker and cruder: main airways stay in, juxtapleural nodules may be cut off).
    See the module docstring for every step and the memory it takes.

    Parameters
    ----------
    image : ndarray or Volume, shape (z, y, x)
        CT values in HU (integer or float). A ``Volume`` is read in slabs.
    method : {'anatomical', 'threshold'}
        The segmentation, see above. The parameters below marked *anatomical* only
        affect ``'anatomical'`` (they are checked for both).
    spacing : sequence of 3 float, optional
        Voxel size in mm; default the Volume's spacing, or 1 mm for an array.
    threshold : float or 'auto'
        Air/tissue threshold in HU (voxels below it are air). ``'auto'``
        (*anatomical* only): :func:`optimal_threshold` of the body's voxels on the
        working grid, clipped to [-600, -300] HU (it follows the lungs' density:
        lower for emphysema, higher for dense or fibrotic lungs; -400 to -430 HU on
        the real scans of the documentation).
    airway_threshold : float
        *anatomical*: lumen threshold in HU for growing the airway tree (below lung
        parenchyma).
    remove_airways : bool
        *anatomical*: remove the trachea and bronchi connected to it (recommended;
        without it the airways that join the lungs stay in the mask).
    closing_mm : float
        *anatomical*: radius in mm of the closing that brings juxtapleural nodules
        and vessels at the lung border inside (0: none).
    working_mm : float
        *anatomical*: target voxel size of the working grid; axes with a finer
        spacing are block-averaged by an integer factor (the mask is then repeated
        back).
    min_lung_fraction : float
        *anatomical*: the second largest component is kept as the other lung only if
        it holds at least this fraction of the largest.
    direction : (3, 3) array_like, optional
        Direction cosines of the scan (ITK's convention, one column per array axis);
        default the Volume's direction, else the identity (axis 0 superior-inferior).
        Only the order of the axes is used: the mask is computed with axis 0 along
        the patient's superior-inferior axis (see *Orientation* in the module
        documentation).
    out : ndarray or Volume, optional
        Where to write the mask (bool or uint8 ndarray / Volume of the image's
        shape), slab by slab. Default: a new bool array.

    Returns
    -------
    ndarray of bool or Volume
        True inside the lungs (``out`` if given). An image without interior air
        gives an all-False mask.

    Raises
    ------
    TypeError
        ``image`` is not a numeric array/Volume, or a parameter has the wrong type.
    ValueError
        ``image`` is not 3-D or empty, a spacing or parameter is out of range, or
        ``out`` has the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> from fastct.datasets import chest_phantom
    >>> from fastct.lungs import lung_mask
    >>> ph = chest_phantom("tiny", seed=0)
    >>> mask = lung_mask(ph.image, spacing=ph.spacing)
    >>> mask.dtype, mask.shape
    (dtype('bool'), (32, 48, 48))
    >>> dice = 2 * (mask & ph.lung_mask).sum() / (mask.sum() + ph.lung_mask.sum())
    >>> bool(dice > 0.85)
    True
    >>> quick = lung_mask(ph.image, spacing=ph.spacing, method="threshold")
    >>> bool((quick & ph.lung_mask).sum() > 0.8 * ph.lung_mask.sum())
    True
    """
    image = _check_image(image)
    method = check_choice(method, "method", METHODS)
    if spacing is None and isinstance(image, Volume):
        spacing = image.spacing
    spacing = check_spacing(spacing, 3)
    auto = isinstance(threshold, str) and threshold == "auto"
    if auto:
        if method != "anatomical":
            raise ValueError("threshold='auto' needs method='anatomical', got method='threshold'")
    else:
        threshold = check_real(threshold, "threshold")
    airway_threshold = check_real(airway_threshold, "airway_threshold")
    lowest = _AUTO_RANGE[0] if auto else float(threshold)
    if method == "anatomical" and airway_threshold >= lowest:
        what = "the lowest 'auto' threshold" if auto else "threshold"
        raise ValueError(
            f"airway_threshold must be below {what} ({lowest:g} HU), got {airway_threshold:g}"
        )
    check_flag(remove_airways, "remove_airways")
    closing_mm = check_real(closing_mm, "closing_mm", lo=0)
    working_mm = check_real(working_mm, "working_mm", lo=0, lo_open=True)
    min_lung_fraction = check_real(min_lung_fraction, "min_lung_fraction", lo=0, hi=1)
    if direction is None and isinstance(image, Volume):
        direction = image.direction
    direction = check_direction(direction, 3)
    shape = tuple(image.shape)
    check_out(out, shape, dtypes=(bool, np.uint8), what="the image's shape")
    perm = _axial_order(direction)
    if perm != (0, 1, 2):
        # anatomy needs axis 0 superior-inferior: compute on the transposed scan
        from .streaming import read_all

        arr = read_all(image) if isinstance(image, Volume) else np.asarray(image)
        mask = lung_mask(
            np.ascontiguousarray(np.transpose(arr, perm)),
            method=method,
            spacing=tuple(spacing[a] for a in perm),
            threshold=threshold,
            airway_threshold=airway_threshold,
            remove_airways=remove_airways,
            closing_mm=closing_mm,
            working_mm=working_mm,
            min_lung_fraction=min_lung_fraction,
        )
        back = np.ascontiguousarray(np.transpose(mask, np.argsort(perm)))
        return _upsample_into(back, (1, 1, 1), shape, out)

    if method == "threshold":
        mask = _threshold_mask(_air_mask(image, float(threshold)), spacing)
        return _upsample_into(mask, (1, 1, 1), shape, out)
    factors = working_factors(spacing, working_mm)
    wspacing = tuple(s * f for s, f in zip(spacing, factors))
    work = _downsample(image, factors)
    air = work < (_AUTO_START if auto else threshold)
    body = _body(air, wspacing)
    if auto:
        t = optimal_threshold(work[body])
        air = work < min(max(t, _AUTO_RANGE[0]), _AUTO_RANGE[1])
    interior = _outside_air(air) & body
    if remove_airways and interior.any():
        # the first candidate whose tree is long enough (a blob at the top of the
        # larynx may be cut off from the trachea by the vocal folds), else the longest
        best: np.ndarray | None = None
        for seed in _find_trachea(interior, body, wspacing):
            if best is not None and (best & seed).any():
                continue  # same tree as a candidate already grown
            tree = _grow_airways(work, interior, seed, airway_threshold, wspacing)
            if _length_mm(tree, wspacing) > _length_mm(best, wspacing):
                best = tree
            if _length_mm(best, wspacing) >= _AIRWAY_MIN_LENGTH_MM:
                break
        if best is not None:
            interior &= ~_dilate_in_box(best)
    del work, air, body
    mask = _keep_lungs(interior, min_lung_fraction)
    del interior
    mask = _fill_holes_in_slices(mask)
    mask = _closing_mm(mask, wspacing, closing_mm)
    mask = _fill_holes_in_slices(mask)
    return _upsample_into(mask, factors, shape, out)

"""Quality metrics of a (super)voxel segmentation against a ground-truth label volume.

The two standard measures of the superpixel literature (Achanta et al. 2012, SLIC;
Neubert & Protzel 2012; Stutz, Hermans & Leibe 2018, "Superpixels: an evaluation of
the state-of-the-art"):

- :func:`boundary_recall`: the fraction of ground-truth boundary voxels that have a
  segmentation boundary voxel within a tolerance (higher is better);
- :func:`undersegmentation_error`: how much the segments leak across ground-truth
  regions (lower is better), in Neubert and Protzel's corrected form, which has no
  overlap threshold; Achanta's thresholded form is available too.

Both work on 2-D and 3-D label arrays (or archive Volumes, read into memory), with an
optional mask restricting the evaluation (e.g. the region a masked SLIC segmented).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ._validate import check_ndim
from .streaming import read_all
from .volume import Volume

__all__ = ["boundary_map", "boundary_recall", "undersegmentation_error"]


def _as_labels(labels: Any, name: str) -> np.ndarray:
    arr = read_all(labels) if isinstance(labels, Volume) else np.asarray(labels)
    if arr.dtype.kind not in "biu":
        raise TypeError(f"{name} must be an integer (or bool) label array, got dtype {arr.dtype}")
    check_ndim(arr.ndim, name)
    if 0 in arr.shape:
        raise ValueError(f"{name} must not have an empty axis, got shape {arr.shape}")
    return arr


def _pair(labels: Any, ground_truth: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    seg = _as_labels(labels, "labels")
    gt = _as_labels(ground_truth, "ground_truth")
    if seg.shape != gt.shape:
        raise ValueError(
            f"labels and ground_truth must have the same shape, got {seg.shape} and {gt.shape}"
        )
    if mask is not None:
        mask = read_all(mask) if isinstance(mask, Volume) else np.asarray(mask)
        if mask.shape != seg.shape:
            raise ValueError(f"mask must have shape {seg.shape}, got {mask.shape}")
        mask = mask.astype(bool, copy=False)
    return seg, gt, mask


def boundary_map(labels: Any, mask: Any = None) -> np.ndarray:
    """Boolean map of the boundary voxels of a label image.

    A voxel is a boundary voxel when one of its face neighbours (4 in 2-D, 6 in 3-D)
    has a different label; with ``mask``, only neighbours inside the mask count and
    only voxels inside it are marked. Both sides of an interface are marked (a
    two-voxel-thick boundary), the usual convention with a tolerance of at least one.
    """
    seg = _as_labels(labels, "labels")
    if mask is not None:
        mask = np.asarray(read_all(mask) if isinstance(mask, Volume) else mask).astype(bool)
        if mask.shape != seg.shape:
            raise ValueError(f"mask must have shape {seg.shape}, got {mask.shape}")
    out = np.zeros(seg.shape, bool)
    for axis in range(seg.ndim):
        lo = [slice(None)] * seg.ndim
        hi = [slice(None)] * seg.ndim
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        lo_t, hi_t = tuple(lo), tuple(hi)
        diff = seg[lo_t] != seg[hi_t]
        if mask is not None:
            diff &= mask[lo_t] & mask[hi_t]
        out[lo_t] |= diff
        out[hi_t] |= diff
    return out


def boundary_recall(
    labels: Any, ground_truth: Any, *, tolerance: int = 2, mask: Any = None
) -> float:
    """Fraction of ground-truth boundary voxels within ``tolerance`` of a segment boundary.

    Parameters
    ----------
    labels : ndarray or Volume of int
        The segmentation (e.g. supervoxels).
    ground_truth : ndarray or Volume of int
        Reference regions, same shape.
    tolerance : int
        Search radius in voxels (Chebyshev distance: a ``(2t+1)``-wide box), 2 by
        default as in the superpixel benchmarks.
    mask : ndarray or Volume of bool, optional
        Evaluate inside the mask only.

    Returns
    -------
    float
        In [0, 1]; 1.0 when the ground truth has no boundary.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.zeros((8, 8), int); gt[:, 4:] = 1
    >>> seg = np.zeros((8, 8), int); seg[:, 5:] = 1     # one voxel off
    >>> boundary_recall(seg, gt, tolerance=0), boundary_recall(seg, gt, tolerance=1)
    (0.5, 1.0)
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (numbers.Integral, np.integer)):
        raise TypeError(f"tolerance must be an integer number of voxels, got {tolerance!r}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    seg, gt, mask = _pair(labels, ground_truth, mask)
    gt_b = boundary_map(gt, mask)
    n = int(np.count_nonzero(gt_b))
    if n == 0:
        return 1.0
    seg_b = boundary_map(seg, mask)
    if tolerance > 0:
        seg_b = ndi.maximum_filter(seg_b, size=2 * int(tolerance) + 1, mode="constant")
    return float(np.count_nonzero(gt_b & seg_b)) / n


def undersegmentation_error(
    labels: Any, ground_truth: Any, *, mask: Any = None, method: str = "np", threshold: float = 0.05
) -> float:
    """How much segments leak across ground-truth regions (0 = none).

    Parameters
    ----------
    labels, ground_truth : ndarray or Volume of int
        Segmentation and reference regions, same shape.
    mask : ndarray or Volume of bool, optional
        Evaluate inside the mask only (``N`` is then the number of mask voxels).
    method : {'np', 'achanta'}
        ``'np'`` (default): Neubert & Protzel's corrected error
        ``(1/N) sum_G sum_{S meets G} min(|S & G|, |S - G|)``: each segment that
        overlaps a region counts the smaller of its part inside and its part outside.
        ``'achanta'``: ``(sum_G sum_{S: |S & G| > threshold |S|} |S| - N) / N``, the
        SLIC paper's form (segments overlapping a region by more than ``threshold``
        of their size count whole).
    threshold : float
        Overlap fraction for ``method='achanta'``.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.zeros((4, 4), int); gt[:, 2:] = 1
    >>> seg = np.zeros((4, 4), int); seg[:, 3:] = 1     # segment 0 straddles: 8 + 4
    >>> undersegmentation_error(seg, gt)                # min(8, 4) for each region
    0.5
    """
    if method not in ("np", "achanta"):
        raise ValueError(f"method must be 'np' or 'achanta', got {method!r}")
    if not isinstance(threshold, (numbers.Real, np.number)) or not 0 <= float(threshold) < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    seg, gt, mask = _pair(labels, ground_truth, mask)
    s = seg.ravel()
    g = gt.ravel()
    if mask is not None:
        keep = mask.ravel()
        s, g = s[keep], g[keep]
    n = s.size
    if n == 0:
        return 0.0
    _, s_idx = np.unique(s, return_inverse=True)
    _, g_idx = np.unique(g, return_inverse=True)
    s_idx = s_idx.astype(np.int64)
    size = np.bincount(s_idx)
    pair = s_idx * (int(g_idx.max()) + 1) + g_idx
    pairs, inter = np.unique(pair, return_counts=True)
    seg_of_pair = pairs // (int(g_idx.max()) + 1)
    seg_size = size[seg_of_pair]
    if method == "np":
        return float(np.minimum(inter, seg_size - inter).sum()) / n
    leak = seg_size[inter > float(threshold) * seg_size].sum()
    return float(leak - n) / n

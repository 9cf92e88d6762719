"""SLIC's seeds: scikit-image's regular grid, and maskSLIC's k-means seeding inside a
mask (exact, without its N x N distance matrix).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from ..streaming import slabs, stream
from ._inputs import _Source
from ._slabs import _slab_bytes, _threads_for

# Up to this many centroids the maskSLIC spacing estimate uses the full distance matrix
# as scikit-image does; above, a k-d tree finds the same nearest neighbours.
_PDIST_MAX = 2000


# --------------------------------------------------------------------------------------
# scikit-image's seeding helpers (same arithmetic, re-implemented)
# --------------------------------------------------------------------------------------
def regular_grid(ar_shape: Sequence[int], n_points: int) -> tuple[slice, ...]:
    """About ``n_points`` regularly spaced points in ``ar_shape`` (as slices).

    Same result as ``skimage.util.regular_grid``: the step is the ``ndim``-th root of
    the volume per point; axes too short for a full step are dropped from the root.
    """
    ar_shape = np.asanyarray(ar_shape)
    ndim = len(ar_shape)
    unsort_dim_idxs = np.argsort(np.argsort(ar_shape))
    sorted_dims = np.sort(ar_shape)
    space_size = float(np.prod(ar_shape))
    if space_size <= n_points:
        return (slice(None),) * ndim
    stepsizes = np.full(ndim, (space_size / n_points) ** (1.0 / ndim), dtype="float64")
    if (sorted_dims < stepsizes).any():
        for dim in range(ndim):
            stepsizes[dim] = sorted_dims[dim]
            space_size = float(np.prod(sorted_dims[dim + 1 :]))
            stepsizes[dim + 1 :] = (space_size / n_points) ** (1.0 / (ndim - dim - 1))
            if (sorted_dims >= stepsizes).all():
                break
    starts = (stepsizes // 2).astype(int)
    stepsizes = np.round(stepsizes).astype(int)
    slices = [slice(start, None, step) for start, step in zip(starts, stepsizes)]
    return tuple(slices[i] for i in unsort_dim_idxs)


def _grid_steps(shape3: tuple[int, ...], n: int) -> np.ndarray:
    return np.array([int(s.step if s.step is not None else 1) for s in regular_grid(shape3, n)])


def _grid_centroids(shape3: tuple[int, ...], n_segments: int):
    slices = regular_grid(shape3, n_segments)
    az, ay, ax = [np.arange(n)[s] for n, s in zip(shape3, slices)]
    # the grid points in C order (broadcast assignments: meshgrid + stack cost ~30 us)
    grid = np.empty((len(az), len(ay), len(ax), 3), np.int64)
    grid[..., 0] = az[:, None, None]
    grid[..., 1] = ay[None, :, None]
    grid[..., 2] = ax
    centroids = grid.reshape(-1, 3)
    steps = np.asarray([float(s.step) if s.step is not None else 1.0 for s in slices])
    return centroids, steps


# --------------------------------------------------------------------------------------
# maskSLIC seeding (scikit-image's _get_mask_centroids, exact and without its
# N x N distance matrix)
# --------------------------------------------------------------------------------------
def _mask_centroids(src: _Source, n_segments: int, n_mask: int, multichannel: bool):
    from .._kernels import slic as K

    rng = np.random.RandomState(123)
    m = min(n_segments, n_mask)
    idx = np.sort(rng.permutation(n_mask)[:m])
    ndim_spatial = 2 if multichannel else 3  # scikit-image's mask is 3-D here
    n_dense = int((10**ndim_spatial) * m)
    dense = n_mask > n_dense
    if dense:
        idx_dense = np.sort(rng.permutation(n_mask)[:n_dense])
    coords_seed = _rank_coords(src, idx)
    data = _rank_coords(src, idx_dense) if dense else _rank_coords(src, None, n_mask)
    codes = coords_seed.astype(np.float64)
    plan = _VqPlan(data, codes.shape[0])
    for _ in range(5):
        labels = _vq(data, codes, plan)
        codes, empty = K.cluster_means(data, labels, codes.shape[0], codes)
        if empty:
            warnings.warn(
                "One of the clusters is empty. Re-run kmeans with a different initialization.",
                UserWarning,
                stacklevel=3,
            )
    centroids = codes
    closest = _closest_other(centroids)
    steps = abs(centroids - centroids[closest, :]).mean(0)
    return centroids, steps


def _rank_coords(src: _Source, ranks: np.ndarray | None, n_all: int = 0) -> np.ndarray:
    """Coordinates (scikit-image orientation) of the mask voxels with the given ranks."""
    from .._kernels import slic as K

    if ranks is None:
        ranks = np.arange(n_all, dtype=np.int64)
    out = np.empty((len(ranks), 3), np.int32)
    state = np.zeros(2, np.int64)
    planes = max(1, _slab_bytes() // max(1, math.prod(src.shape[1:])))
    for slab, m in stream(slabs(src.shape[0], planes),
                          lambda slab: src.read_mask(slab.start, slab.stop),
                          prefetch=src.mask_is_volume, progress=False):  # fmt: skip
        K.ranks_to_coords(np.ascontiguousarray(m), slab.start, ranks, state, out)
    if src.is_2d:  # canonical (y, 0, x) -> scikit-image's (0, y, x)
        out = out[:, [1, 0, 2]].copy()
    return out


class _VqPlan:
    """What the nearest-code searches of one set of observations share across Lloyd
    iterations: their range and their blocks (see ``_kernels.slic.vq_blocks``)."""

    def __init__(self, data: np.ndarray, n_codes: int) -> None:
        from .._kernels import slic as K

        self.dmin = data.min(0).astype(np.int64) if len(data) else np.zeros(3, np.int64)
        self.dmax = data.max(0).astype(np.int64) if len(data) else np.zeros(3, np.int64)
        ext = self.dmax - self.dmin + 1
        span = ext > 1
        nd = max(1, int(span.sum()))
        # blocks about half the codes' spacing on a side (points per code ** 1 / nd):
        # a few candidate codes per block
        h = (max(1, data.shape[0]) / max(1, n_codes)) ** (1.0 / nd)
        side = int(min(max(1, round(_VQ_BLOCK * h)), 64))
        self.bs = np.where(span, side, 1).astype(np.int64)
        self.nb = -(-ext // self.bs)
        self.pblk, self.box = K.vq_block_plan(np.ascontiguousarray(data), self.bs, self.dmin,
                                              self.nb)  # fmt: skip


# The blocks' side in units of the codes' spacing (measured on the large lung phantom,
# 41,000 codes: 0.5 -> 0.67 s CPU per iteration, 0.8 -> 0.47 s, 1.2 -> 0.53 s).
_VQ_BLOCK = 0.8


def _vq_cells(dlo: np.ndarray, dhi: np.ndarray, codes: np.ndarray):
    """A uniform grid over the observations and the codes, about one code per cell."""
    lo = np.minimum(dlo.astype(np.float64), codes.min(0))
    hi = np.maximum(dhi.astype(np.float64), codes.max(0))
    ext = np.maximum(hi - lo, 1.0)
    nontrivial = ext > 1.0
    nd = max(1, int(nontrivial.sum()))
    h = (
        (float(np.prod(ext[nontrivial])) / codes.shape[0]) ** (1.0 / nd)
        if nontrivial.any()
        else 1.0
    )
    h = max(h, 1.0)
    g = np.clip(np.ceil(ext / h), 1, 512).astype(np.int64)
    cell = ext / g
    return lo, cell, g


def _bucket(cidx: np.ndarray, g: np.ndarray):
    cid = (cidx[:, 0] * g[1] + cidx[:, 1]) * g[2] + cidx[:, 2]
    order = np.argsort(cid, kind="stable")
    start = np.zeros(int(np.prod(g)) + 1, np.int64)
    np.add.at(start, cid + 1, 1)
    np.cumsum(start, out=start)
    return start, order.astype(np.int64)


def _vq(data: np.ndarray, codes: np.ndarray, plan: _VqPlan | None = None,
        method: str = "blocks") -> np.ndarray:  # fmt: skip
    """scipy.cluster.vq.vq's labels of integer observations (bit for bit, ties to the
    lowest code). ``method="grid"``: each observation searches the code grid in shells
    (``vq_grid``); ``"blocks"`` (default, several times faster on maskSLIC's lattice
    points): blocks of observations share a short list of candidate codes
    (``vq_blocks``)."""
    from .._kernels import slic as K

    if plan is None:
        plan = _VqPlan(data, codes.shape[0])
    lo, cell, g = _vq_cells(plan.dmin, plan.dmax, codes)
    cidx = np.clip(((codes - lo) // cell).astype(np.int64), 0, g - 1)
    start, order = _bucket(cidx, g)
    labels = np.empty(data.shape[0], np.int64)
    with _threads_for(data.shape[0] * 8):
        if method == "grid":
            K.vq_grid(data, codes, cell, lo, g, start, order, labels)
        else:
            # the blocks' grid: cells floor((code - lo) / cell), as the kernel computes
            fidx = np.clip(np.floor((codes - lo) / cell).astype(np.int64), 0, g - 1)
            fstart, forder = _bucket(fidx, g)
            K.vq_blocks(data, codes, plan.pblk, plan.box, lo, cell, g, fstart, forder, cell, lo,
                        g, start, order, labels)  # fmt: skip
    return labels


def _closest_other(c: np.ndarray) -> np.ndarray:
    """``argmin`` of each row of ``squareform(pdist(c))`` with an infinite diagonal."""
    from scipy.spatial.distance import pdist, squareform

    n = c.shape[0]
    if n <= _PDIST_MAX:
        dist = squareform(pdist(c))
        np.fill_diagonal(dist, np.inf)
        return dist.argmin(-1)
    from scipy.spatial import cKDTree

    tree = cKDTree(c)
    kq = min(n, 9)
    d, j = tree.query(c, k=kq)
    out = np.empty(n, np.int64)
    for i in range(n):
        di, ji = d[i], j[i]
        keep = ji != i
        di, ji = di[keep], ji[keep]
        dmin = di.min()
        tol = dmin * (1 + 1e-9) + 1e-300
        if di.max() <= tol:  # more ties may lie beyond the queried neighbours
            ji = np.array(sorted(set(tree.query_ball_point(c[i], tol)) - {i}))
        else:
            ji = np.sort(ji[di <= tol])
        if len(ji) == 1:
            out[i] = ji[0]
        else:  # resolve near-ties with scipy's own distance arithmetic
            sub = pdist(c[np.concatenate([[i], ji])])[: len(ji)]
            out[i] = ji[int(np.argmin(sub))]
    return out

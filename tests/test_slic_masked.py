"""Masked SLIC on sparse masks (issue 19): the block-based nearest-code search of
maskSLIC's seeding must give scipy's labels, and masked SLIC with sparse masks (tiles and
rows of tiles without mask voxels) scikit-image's, in memory, streamed and in 2-D."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.vq import vq

import fastct
from fastct import _config
from fastct._kernels import slic as K
from fastct.segmentation import _seeds, _slabs, slic

skimage_seg = pytest.importorskip("skimage.segmentation")


def _blob_mask(shape, fraction, rng):
    """A mask of random ellipsoids covering about ``fraction`` of the volume (lung-like:
    compact blobs with holes), at least one voxel."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    mask = np.zeros(shape, bool)
    while mask.mean() < fraction:
        c = [rng.uniform(0, n) for n in shape]
        r = [rng.uniform(1.5, max(2.0, n / 3)) for n in shape]
        mask |= sum(((g - ci) / ri) ** 2 for g, ci, ri in zip(grids, c, r)) < 1
    holes = rng.random(shape) < 0.05
    mask &= ~holes
    mask.flat[rng.integers(mask.size)] = True
    return mask


def _lloyd_labels(data, codes, method):
    """Five Lloyd iterations as maskSLIC's seeding runs them; every iteration's labels."""
    plan = _seeds._VqPlan(data, codes.shape[0])
    out = []
    for _ in range(5):
        labels = _seeds._vq(data, codes, plan, method=method)
        out.append(labels)
        codes, _ = K.cluster_means(data, labels, codes.shape[0], codes)
    return out


@pytest.mark.parametrize("fraction", [0.01, 0.09, 0.4, 1.0])
@pytest.mark.parametrize("ndim", [2, 3])
def test_vq_blocks_equal_scipy_on_mask_lattices(fraction, ndim):
    rng = np.random.default_rng(int(fraction * 100) + ndim)
    shape = (30, 40, 36) if ndim == 3 else (1, 120, 110)
    mask = _blob_mask(shape, fraction, rng)
    data = np.argwhere(mask).astype(np.int32)  # C order, as _rank_coords gives them
    # (scipy's vq compares every pair: at most ~2,000 codes keep it quick)
    for n_codes in (1, 7, max(1, len(data) // 40), max(1, min(len(data) // 3, 2000))):
        idx = np.sort(rng.permutation(len(data))[:n_codes])
        codes = data[idx].astype(np.float64)
        got = _lloyd_labels(data, codes, "blocks")
        grid = _lloyd_labels(data, codes, "grid")
        for it in range(5):
            ref = vq(data.astype(np.float64), codes)[0]
            assert np.array_equal(got[it], ref), (n_codes, it)
            assert np.array_equal(grid[it], ref), (n_codes, it)
            codes, _ = K.cluster_means(data, ref, codes.shape[0], codes)


def test_vq_blocks_ties_and_crowded_blocks():
    """Exact ties (codes on half-integer points, duplicated codes) and blocks with more
    candidates than a block keeps (they search the whole grid per point)."""
    rng = np.random.default_rng(5)
    data = np.argwhere(np.ones((9, 10, 11), bool)).astype(np.int32)
    base = rng.integers(0, 9, (40, 3)).astype(np.float64) + rng.choice([0.0, 0.5], (40, 3))
    dup = np.repeat(np.array([[4.0, 5.0, 5.0]]), 3 * K._VQ_CAP, axis=0)  # all tie everywhere
    for codes in (base, np.concatenate([base, dup]), np.concatenate([dup, base])):
        ref = vq(data.astype(np.float64), codes)[0]
        assert np.array_equal(_seeds._vq(data, codes), ref)
    # a sparse, shuffled sample (maskSLIC's "dense" case takes random ranks)
    idx = np.sort(rng.permutation(len(data))[:97])
    assert np.array_equal(_seeds._vq(data[idx], base), vq(data[idx].astype(np.float64), base)[0])


def _sk(image, mask, **kw):
    return skimage_seg.slic(image, mask=mask, channel_axis=None, **kw)


@pytest.mark.parametrize("fraction", [0.03, 0.09, 0.35])
def test_sparse_mask_equals_skimage_3d(fraction):
    rng = np.random.default_rng(int(fraction * 100))
    shape = (26, 44, 70)  # rows of tiles and tiles without mask voxels
    mask = _blob_mask(shape, fraction, rng)
    img = rng.normal(0, 0.2, shape).astype(np.float32)
    img[:, 20:] += 1
    kw = dict(n_segments=max(2, int(mask.sum()) // 60), compactness=0.1,
              spacing=(1.5, 0.8, 0.8))  # fmt: skip
    ref = _sk(img, mask, **kw)
    assert np.array_equal(slic(img, mask=mask, **kw), ref)


@pytest.mark.parametrize("fraction", [0.02, 0.2])
def test_sparse_mask_equals_skimage_2d(fraction):
    rng = np.random.default_rng(7)
    mask = _blob_mask((1, 150, 170), fraction, rng)[0]
    img = rng.normal(0, 0.2, mask.shape).astype(np.float32)
    img[70:] += 1
    kw = dict(n_segments=max(2, int(mask.sum()) // 50), compactness=0.2)
    assert np.array_equal(slic(img, mask=mask, **kw), _sk(img, mask, **kw))


@pytest.mark.parametrize("fraction", [0.04, 0.3])
def test_sparse_mask_streamed_equals_in_memory(fraction, archive_path, monkeypatch):
    rng = np.random.default_rng(11)
    shape = (30, 36, 70)
    mask = _blob_mask(shape, fraction, rng)
    img = rng.normal(0, 0.2, shape).astype(np.float32)
    img[15:] += 1
    kw = dict(n_segments=max(2, int(mask.sum()) // 50), compactness=0.1)
    ref = _sk(img, mask, **kw)
    assert np.array_equal(slic(img, mask=mask, **kw), ref)
    with fastct.open(archive_path, "w") as ar:
        vol = ar.create_volume("img", img, chunks=(8, 16, 16))
        mvol = ar.create_volume("mask", mask, chunks=(8, 16, 16))
        out = ar.create_volume_like("labels", vol, dtype=np.int32)
        nbytes = 20_000  # slabs of a few tiles of slices
        monkeypatch.setattr(_slabs, "_SLAB_SHARE", nbytes / _config.get_memory_budget())
        assert slic(vol, mask=mvol, out=out, **kw) is out
        assert np.array_equal(out.read(), ref)

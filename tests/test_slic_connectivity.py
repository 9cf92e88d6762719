"""Connectivity enforcement from connected components (fastct._kernels.slic_connectivity)
against scikit-image's own ``_enforce_label_connectivity_cython`` and against fastct's
port of its raster scan (which also handles the mask label)."""

from __future__ import annotations

import numpy as np
import pytest

from fastct._kernels import slic as K
from fastct.segmentation import _connectivity_memory

skimage_slic = pytest.importorskip("skimage.segmentation._slic")


def _raster_scan(seg, min_size, max_size, start_label):
    """fastct's port of scikit-image's scan (the streamed path uses it)."""
    mask_label = start_label - 1
    out = np.full(seg.shape, mask_label, np.int32)
    coord = np.empty((max(max_size, 1), 3), np.int64)
    state = np.array([start_label], np.int64)
    K.enforce_connectivity(seg, out, 0, seg.shape[0], min_size, max_size, mask_label, state, coord)
    return out


def _blocky_labels(rng, shape, n_labels, start_label, noise, masked):
    """Labels in 2-voxel blocks plus salt noise: components from 1 voxel to large ones."""
    coarse = rng.integers(start_label, start_label + n_labels, [n // 2 + 1 for n in shape])
    seg = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)[: shape[0], : shape[1], : shape[2]]
    seg = seg.astype(np.int32)
    salt = rng.random(shape) < noise
    seg[salt] = rng.integers(start_label, start_label + n_labels, int(salt.sum()))
    if masked:
        seg[rng.random(shape) < 0.2] = start_label - 1
    return np.ascontiguousarray(seg)


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("n_parts", [1, 2, 3, 7])
def test_matches_scikit_image(n_parts, in_place):
    rng = np.random.default_rng(n_parts)
    for _ in range(60):
        shape = tuple(int(n) for n in rng.integers(1, 13, 3))
        seg = _blocky_labels(rng, shape, int(rng.integers(1, 10)), 1, rng.random() * 0.3, False)
        min_size, max_size = int(rng.integers(0, 30)), int(rng.integers(1, 200))
        expected = skimage_slic._enforce_label_connectivity_cython(
            seg.astype(np.intp), min_size, max_size, start_label=1
        )
        got = _connectivity_memory(seg.copy(), min_size, max_size, 1, n_parts, in_place)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("start_label", [0, 1])
@pytest.mark.parametrize("n_parts", [1, 2, 5])
def test_matches_raster_scan_with_mask_and_large_components(start_label, n_parts):
    """Masked voxels, min_size above max_size, and components larger than max_size (the
    raster scan takes over from the first of them)."""
    rng = np.random.default_rng(10 * n_parts + start_label)
    for i in range(80):
        shape = tuple(int(n) for n in rng.integers(1, 14, 3))
        seg = _blocky_labels(
            rng, shape, int(rng.integers(1, 12)), start_label, rng.random() * 0.3, i % 2 == 0
        )
        min_size, max_size = int(rng.integers(0, 30)), int(rng.integers(1, 120))
        if i % 5 == 0:
            min_size, max_size = max_size, min_size + 1
        seg_before = seg.copy()
        got = _connectivity_memory(seg, min_size, max_size, start_label, n_parts=n_parts)
        np.testing.assert_array_equal(seg, seg_before)  # input untouched
        np.testing.assert_array_equal(got, _raster_scan(seg, min_size, max_size, start_label))


def test_two_dimensional_layout():
    """2-D labels arrive as (H, 1, W): rows are the z axis."""
    rng = np.random.default_rng(3)
    img = _blocky_labels(rng, (1, 40, 33), 6, 1, 0.2, False)
    expected = skimage_slic._enforce_label_connectivity_cython(img.astype(np.intp), 5, 60, 1)
    got = _connectivity_memory(np.ascontiguousarray(img.transpose(1, 0, 2)), 5, 60, 1, n_parts=3)
    np.testing.assert_array_equal(got.transpose(1, 0, 2), expected)


@pytest.mark.parametrize("n_parts", [1, 2, 4])
def test_small_component_takes_last_neighbour_not_holding_the_next_label(n_parts):
    """scikit-image's ``adjacent`` skips neighbours whose result label equals the label
    the next kept component will get: here the isolated single voxels (7, 8, 6, 4) take
    that label, and component 9 must take component 5's label although it meets the
    singles after 5 (also more of them than the parallel search keeps)."""
    rows = [
        [5, 5, 5, 5, 0, 0, 0, 0, 0, 0, 0, 0],
        [5, 5, 5, 5, 0, 7, 0, 8, 0, 6, 0, 4],
        [5, 5, 5, 5, 9, 9, 9, 9, 9, 9, 9, 9],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ]
    for last_single in (7, 4):  # one single met after 5, or four
        seg = np.array(rows, np.int32)
        if last_single == 7:
            seg[1, 6:] = 0
        seg3 = np.ascontiguousarray(seg[:, None, :])  # rows along z: split into parts
        got = _connectivity_memory(seg3.copy(), 10, 100, 1, n_parts=n_parts)
        expected = _raster_scan(seg3, 10, 100, 1)
        np.testing.assert_array_equal(got, expected)
        assert got[2, 0, 4] == got[0, 0, 0] == 1  # 9 merged into 5, not the singles' 2
        assert got[1, 0, 5] == 2

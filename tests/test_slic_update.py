"""The SLIC update step's running sums when they leave the float type's exact integers.

Coordinate sums of a run of equal labels are added in closed form while they stay below
2**24 (float32; every partial sum is then an exact integer, so the order does not
matter); above it the voxels are added one by one, as scikit-image does. The reference
is a plain C-order loop in float32."""

from __future__ import annotations

import numpy as np
import pytest

from fastct._kernels import slic as K


@pytest.mark.parametrize("shape", [(1, 1, 9000), (1, 9000, 2), (9000, 1, 3), (40, 50, 30)])
def test_sums_equal_sequential_float32(shape, rng):
    Z, Y, X = shape
    n_labels = 3
    # long runs of few labels: the coordinate sums pass 2**24 in the long shapes
    labels = np.sort(rng.integers(0, n_labels, shape), axis=-1).astype(np.int32) + 1
    feats = (rng.random((*shape, 1)) * 1000).astype(np.float32)
    mask = np.ones((1, 1, 1), np.uint8)
    ip = np.zeros(K.IP_SIZE, np.int64)
    ip[K.IP_START] = 1
    ip[K.IP_Z] = Z
    ip[K.IP_Y] = Y
    coords = np.concatenate([np.arange(n, dtype=np.float32) for n in shape])
    ref_sums = np.zeros((n_labels, 4), np.float32)
    ref_counts = np.zeros(n_labels, np.int64)
    flat = labels.ravel() - 1
    zz, yy, xx = (a.ravel() for a in np.indices(shape))
    fv = feats.ravel()
    for i in range(flat.size):  # plain C-order float32 running sums
        k = flat[i]
        ref_counts[k] += 1
        for j, v in enumerate((zz[i], yy[i], xx[i], fv[i])):
            ref_sums[k, j] = np.float32(ref_sums[k, j] + np.float32(v))
    if max(shape) > 1000:
        assert ref_sums[:, :3].max() > 2**24  # the sequential branch is exercised
    for run in ("serial", "parts"):
        sums = np.zeros_like(ref_sums)
        counts = np.zeros_like(ref_counts)
        if run == "serial":
            K.update_serial(feats, mask, labels, coords, ip, sums, counts)
        else:
            owner = np.zeros(n_labels, np.int64)
            K.update_parts(feats, mask, labels, owner, np.array([0, Z]), np.array([Z]), coords,
                           ip, sums, counts)  # fmt: skip
        np.testing.assert_array_equal(counts, ref_counts)
        np.testing.assert_array_equal(sums, ref_sums)


@pytest.mark.parametrize("ft", [np.float32, np.float64])
def test_search_windows_and_candidate_lists(ft, rng):
    """scikit-image's windows int(max(c - 2s, 0)), int(min(c + 2s + 1, n)) in the float
    type (dead NaN centres: empty), and the per-tile candidate lists against a plain
    loop over tiles and centres."""
    from fastct import segmentation as seg

    shape = np.array([37, 45, 70])
    centers = (rng.random((300, 4)) * (shape.max() + 20) - 10).astype(ft)
    centers[::9] = np.nan
    alive = ~np.isnan(centers[:, 0])
    two = np.array([6.5, 7.25, 20.0], ft)
    shape_f = shape.astype(ft)
    c = centers[:, :3]
    lo = np.maximum(c[alive] - two, ft(0)).astype(np.int64)
    hi = np.minimum((c[alive] + two) + ft(1), shape_f).astype(np.int64)
    windows = seg._windows(centers, alive, two, shape_f)
    assert np.array_equal(windows[alive][:, 0::2], lo)
    assert np.array_equal(windows[alive][:, 1::2], hi)
    assert not windows[~alive].any()

    tile = np.array([5, 6, 32])
    ntiles = -(-shape // tile)
    indptr, indices = K.build_candidates(windows, tile, ntiles)
    for t, (tz, ty, tx) in enumerate(np.ndindex(*ntiles)):
        box_lo = np.array([tz, ty, tx]) * tile
        box_hi = np.minimum(box_lo + tile, shape)
        expected = [
            k
            for k in range(len(centers))
            if np.all(windows[k, 1::2] > windows[k, 0::2])
            # the window's tiles include this one (windows may end past the volume's tiles)
            and np.all(windows[k, 0::2] // tile <= [tz, ty, tx])
            and np.all((windows[k, 1::2] - 1) // tile >= [tz, ty, tx])
        ]
        assert list(indices[indptr[t] : indptr[t + 1]]) == expected, (t, box_lo, box_hi)


@pytest.mark.parametrize("ft", [np.float32, np.float64])
def test_new_centres_and_uniform_colours_equal_numpy(ft, rng):
    """finalize_centres = sums / counts in the float type (empty clusters die as NaN),
    colours_uniform = every live centre has the same colour (and SLICO scale)."""
    count = rng.integers(0, 10**8, 300)
    count[::7] = 0
    sums = (rng.random((300, 5)) * 1e9).astype(ft)
    centers = np.zeros((300, 5), ft)
    alive = np.ones(300, bool)
    K.finalize_centres(count, sums, centers, alive)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = sums / count.astype(ft)[:, None]
    expected[count == 0] = np.nan
    np.testing.assert_array_equal(centers, expected)
    np.testing.assert_array_equal(alive, count > 0)

    for _ in range(300):
        nc = int(rng.integers(0, 3))
        c = rng.integers(0, 2, (12, 3 + nc)).astype(ft)
        live = rng.random(12) < 0.4
        scale = rng.integers(1, 3, 12).astype(ft)
        for slic_zero in (False, True):
            lc = c[live]
            want = len(lc) > 0 and nc > 0 and bool(np.all(lc[:, 3:] == lc[0, 3:]))
            if slic_zero and want:
                want = bool(np.all(scale[live] == scale[live][0]))
            assert K.colours_uniform(c, live, scale, slic_zero) == want


def test_candidate_lists_rebuilt_only_when_tile_ranges_change():
    """kmeans_prepare asks for new candidate lists on the first iteration and whenever a
    window reaches other tiles, not when the centres move within their tiles."""
    shape = (40, 1, 200)
    tile = np.array([8, 1, 64])
    centers = np.array([[10.0, 0, 30, 0], [25.0, 0, 100, 0], [33.0, 0, 170, 0]], np.float32)
    alive = np.ones(3, bool)
    maxdc = np.ones(3, np.float32)
    ip = np.zeros(K.IP_SIZE, np.int64)
    two = np.array([6.0, 0.0, 20.0], np.float32)
    shape_f = np.array(shape, np.float32)
    windows = np.empty((3, 6), np.int64)
    tr = np.empty((3, 6), np.int64)
    tr_lists = np.empty((3, 6), np.int64)
    none = np.zeros(0)

    def prepare(it):
        return K.kmeans_prepare(centers, alive, maxdc, ip, two, shape_f, tile, it, windows, tr,
                                tr_lists, none)  # fmt: skip

    assert prepare(0) and ip[K.IP_FRESH] == 1
    tr_lists[...] = tr
    centers[1, 2] += 0.5  # x window [80, 121) -> [80, 121): tile 1 only, still
    assert not prepare(1) and ip[K.IP_FRESH] == 0
    centers[1, 2] += 8.0  # x window [88, 129): now reaches tile 2 (128..191)
    assert prepare(2)
    tr_lists[...] = tr
    alive[2] = False  # a centre dies: its window is empty, its tiles none
    centers[2] = np.nan
    assert prepare(3)

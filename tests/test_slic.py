"""SLIC supervoxels: scikit-image's labels, streamed == in memory, determinism, errors."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster.vq import vq

import fastct
import fastct.segmentation as seg
from fastct import _config
from fastct.datasets import chest_phantom
from fastct.metrics import boundary_recall, undersegmentation_error
from fastct.segmentation import _kmeans, _seeds, _slabs, regular_grid, slic

skimage_seg = pytest.importorskip("skimage.segmentation")
skimage_util = pytest.importorskip("skimage.util")


def sk_slic(image, **kw):
    """scikit-image with fastct's conventions (grayscale by default, no CIELAB)."""
    kw.setdefault("channel_axis", None)
    if kw["channel_axis"] is not None:
        kw["convert2lab"] = False
    return skimage_seg.slic(image, **kw)


def blocks_2d():
    img = np.zeros((60, 80), np.float32)
    img[:, 40:] = 1
    img[30:, :] += 0.5
    return img


def blocks_3d(rng, noise=0.0):
    img = np.zeros((30, 40, 50), np.float32)
    img[:, 20:] = 1
    img[15:] += 2
    if noise:
        img += rng.normal(0, noise, img.shape).astype(np.float32)
    return img


# -- identical to scikit-image -----------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        dict(n_segments=12, compactness=1),
        dict(n_segments=50, compactness=0.5, max_num_iter=4),
        dict(n_segments=12, compactness=1, start_label=0, enforce_connectivity=False),
        dict(n_segments=30, compactness=0.3, sigma=1.5, spacing=(2.0, 1.0)),
        dict(n_segments=30, compactness=0.3, slic_zero=True),
    ],
)
def test_2d_gray_equals_skimage(kw, rng):
    img = blocks_2d() + rng.normal(0, 0.05, (60, 80)).astype(np.float32)
    assert np.array_equal(slic(img, **kw), sk_slic(img, **kw))


def test_2d_piecewise_constant_equals_skimage():
    # exact ties everywhere: the (distance, lowest index) rule and the float32 running
    # sums of the update must both be scikit-image's
    img = blocks_2d()
    for it in (1, 3, 10):
        assert np.array_equal(
            slic(img, n_segments=12, compactness=1, max_num_iter=it),
            sk_slic(img, n_segments=12, compactness=1, max_num_iter=it),
        )


@pytest.mark.parametrize(
    "kw",
    [
        dict(n_segments=40, compactness=1),
        dict(n_segments=100, compactness=0.3),
        dict(n_segments=100, compactness=0.3, spacing=(2, 1, 1), sigma=1),
        dict(n_segments=100, compactness=0.3, sigma=(1.0, 0.0, 2.0)),
        dict(n_segments=100, compactness=0.3, slic_zero=True, start_label=0),
        dict(n_segments=30, compactness=0.05, max_size_factor=0.7, min_size_factor=0.2),
    ],
)
def test_3d_gray_equals_skimage(kw, rng):
    img = blocks_3d(rng, noise=0.3)
    assert np.array_equal(slic(img, **kw), sk_slic(img, **kw))


@pytest.mark.parametrize("dtype", [np.float64, np.uint8, np.int16, np.uint16, np.bool_])
def test_dtypes_equal_skimage(dtype, rng):
    # integers go through scikit-image's img_as_float (float64) operation for operation
    img = blocks_2d() + rng.normal(0, 0.05, (60, 80))
    img = (img > 0.7) if dtype is np.bool_ else (img * 100).astype(dtype)
    kw = dict(n_segments=30, compactness=0.5)
    assert np.array_equal(slic(img, **kw), sk_slic(img, **kw))


def test_color_2d_equals_skimage(rng):
    col = np.zeros((50, 60, 3), np.float32)
    col[:, 30:, 0] = 1
    col[25:, :, 1] = 1
    col += rng.normal(0, 0.05, col.shape).astype(np.float32)
    kw = dict(n_segments=20, compactness=1, channel_axis=-1)
    assert np.array_equal(slic(col, **kw), sk_slic(col, **kw))
    # channel axis first (multi-sequence style)
    moved = np.ascontiguousarray(np.moveaxis(col, -1, 0))
    assert np.array_equal(
        slic(moved, n_segments=20, compactness=1, channel_axis=0), slic(col, **kw)
    )
    assert np.array_equal(
        slic(col, n_segments=20, compactness=1, channel_axis=-1, slic_zero=True),
        sk_slic(col, n_segments=20, compactness=1, channel_axis=-1, slic_zero=True),
    )


def test_multichannel_3d_equals_skimage(rng):
    two = np.stack([blocks_3d(rng, 0.2), blocks_3d(rng, 0.2)[:, ::-1]], axis=-1)
    kw = dict(n_segments=60, compactness=0.5, channel_axis=-1, sigma=0.8)
    assert np.array_equal(slic(two, **kw), sk_slic(two, **kw))


@pytest.mark.parametrize("ndim", [2, 3])
def test_mask_equals_skimage(ndim, rng):
    img = blocks_3d(rng, noise=0.3)
    mask = np.zeros(img.shape, bool)
    mask[3:27, 5:35, 4:46] = True
    mask[10:20, 15:25, 20:30] = False
    if ndim == 2:
        img, mask = img[12], mask[12]
    for kw in (
        dict(n_segments=40, compactness=0.3),
        dict(n_segments=25, compactness=0.3, start_label=0),
    ):
        ref = sk_slic(img, mask=mask, **kw)
        got = slic(img, mask=mask, **kw)
        assert np.array_equal(got, ref)
        assert np.all(got[~mask] == kw.get("start_label", 1) - 1)


def test_mask_seeding_kdtree_path_equals_skimage(rng, monkeypatch):
    # above _PDIST_MAX centroids the nearest-centroid search uses a k-d tree
    monkeypatch.setattr(_seeds, "_PDIST_MAX", 10)
    img = blocks_3d(rng, noise=0.3)
    mask = np.zeros(img.shape, bool)
    mask[2:28, 3:37, 3:47] = True
    kw = dict(n_segments=150, compactness=0.3)
    assert np.array_equal(slic(img, mask=mask, **kw), sk_slic(img, mask=mask, **kw))


def test_nan_outside_mask_is_allowed(rng):
    img = blocks_3d(rng, noise=0.3)[:, :, :30].copy()
    mask = np.ones(img.shape, bool)
    mask[:, :, 25:] = False
    img[:, :, 27] = np.nan
    kw = dict(n_segments=40, compactness=0.3)
    assert np.array_equal(slic(img, mask=mask, **kw), sk_slic(img, mask=mask, **kw))


@pytest.mark.parametrize(
    "kw",
    [
        dict(n_segments=1),
        dict(n_segments=5000),  # more segments than voxels
        dict(n_segments=20, max_num_iter=0),
        dict(n_segments=20, max_num_iter=1),
    ],
)
def test_edge_cases_equal_skimage(kw, rng):
    img = rng.random((9, 11, 13)).astype(np.float32)
    assert np.array_equal(slic(img, **kw), sk_slic(img, **kw))


def test_constant_image_equals_skimage():
    img = np.full((20, 30), 7.0)
    assert np.array_equal(slic(img, n_segments=6), sk_slic(img, n_segments=6))


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_ct_phantom_quality_matches_skimage(dtype):
    ph = chest_phantom("small", seed=0)
    clean = chest_phantom("small", seed=0, noise_hu=0).image
    gt = np.digitize(clean, [-900, -500, -200, 100, 300])  # air/lung/fat/soft/.../bone
    img = ph.image.astype(dtype)
    for kw in (
        dict(n_segments=300, compactness=0.1),
        dict(n_segments=300, compactness=0.05, spacing=ph.spacing, sigma=1, slic_zero=True),
    ):
        ref = sk_slic(img, **kw)
        got = slic(img, **kw)
        n_ref, n_got = len(np.unique(ref)), len(np.unique(got))
        assert abs(n_got - n_ref) <= 0.05 * n_ref
        assert boundary_recall(got, gt) >= boundary_recall(ref, gt)
        assert undersegmentation_error(got, gt) <= undersegmentation_error(ref, gt)
        assert np.array_equal(got, ref)  # in fact the very same labels


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 40), min_size=2, max_size=3),
    n=st.integers(1, 2000),
)
def test_regular_grid_matches_skimage(shape, n):
    assert regular_grid(shape, n) == skimage_util.regular_grid(shape, n)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_codes=st.integers(1, 30), spread=st.integers(1, 6))
def test_vq_matches_scipy_with_ties(seed, n_codes, spread):
    r = np.random.default_rng(seed)
    data = r.integers(0, spread, (200, 3)).astype(np.int32)  # many exact ties
    codes = r.integers(0, spread, (n_codes, 3)).astype(np.float64)
    if seed % 2:
        codes += r.choice([0.0, 0.5], codes.shape)
    assert np.array_equal(seg._vq(data, codes), vq(data.astype(np.float64), codes)[0])


def test_out_array_and_dtype(rng):
    img = blocks_3d(rng, noise=0.3)
    out = np.full(img.shape, -7, np.int32)
    res = slic(img, n_segments=40, compactness=0.3, out=out)
    assert res is out and out.dtype == np.int32
    assert np.array_equal(out, slic(img, n_segments=40, compactness=0.3))


# -- the features kernel -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scaled", [True, False])
def test_features_kernel_equals_numpy_steps(dtype, scaled, rng):
    # scikit-image's rescaling as NumPy's in-place steps, then the compactness weight
    from fastct._kernels import slic as K

    x = (rng.normal(0, 300, (7, 9, 70_001 // 63 + 1, 1)) - 500).astype(dtype)
    imin = dtype(x.min())
    scale = dtype(x.max() - x.min())
    ratio = dtype(1 / 0.3)
    ref = x.copy()
    ref -= imin
    if scaled:
        ref /= scale
    ref *= ratio
    out = np.empty_like(x)
    K.features_into(out, x, imin, scale if scaled else dtype(1), ratio, scaled)
    assert out.dtype == ref.dtype and np.array_equal(out, ref)


# -- the update step's kernels ----------------------------------------------------------------
@pytest.mark.parametrize("nc,use_mask,start", [(1, False, 1), (2, True, 0)])
def test_update_kernels_equal_plain_loop(nc, use_mask, start, rng):
    # scikit-image's update: running sums per label in the float type, voxels in C order
    from fastct._kernels import slic as K

    shape = (56, 15, 13)  # tall enough for three update parts (windows 13 slices high)
    Z, Y, X = shape
    grid = np.stack(
        np.meshgrid(*[np.arange(2.5, n, 4.0) for n in shape], indexing="ij"), -1
    ).reshape(-1, 3)
    nK = len(grid)
    alive = np.ones(nK, bool)
    alive[3] = False  # a dead centre (empty window)
    two = np.full(3, 6.0, np.float32)
    centers = np.zeros((nK, 3 + nc), np.float32)
    centers[:, :3] = grid
    windows = seg._windows(centers, alive, two, np.array(shape, np.float32))
    # every voxel takes a random live centre whose window contains it
    zz, yy, xx = np.indices(shape)
    labels = np.full(shape, start - 1, np.int32)
    for idx in np.ndindex(shape):
        inside = np.flatnonzero(
            alive
            & np.all(windows[:, 0::2] <= idx, axis=1)
            & np.all(np.array(idx) < windows[:, 1::2], axis=1)
        )
        labels[idx] = rng.choice(inside) + start
    feats = rng.random((*shape, nc)).astype(np.float32) * 7
    mask = np.ones(shape, np.uint8)
    if use_mask:
        mask[:, :4] = 0
        labels[:, :4] = start - 1  # the masked-out label, as the assignment writes it
    ip = np.zeros(K.IP_SIZE, np.int64)
    ip[K.IP_USE_MASK] = use_mask
    ip[K.IP_START] = start
    ip[K.IP_Z] = Z
    ip[K.IP_Y] = Y
    coords = np.concatenate([np.arange(n, dtype=np.float32) for n in shape])
    ref_sums = np.zeros((nK, 3 + nc), np.float32)
    ref_counts = np.zeros(nK, np.int64)
    for z, y, x in np.ndindex(shape):
        k = labels[z, y, x] - start
        if k < 0 or not mask[z, y, x]:
            continue
        ref_counts[k] += 1
        for j, v in enumerate((z, y, x, *feats[z, y, x])):
            ref_sums[k, j] = np.float32(ref_sums[k, j] + np.float32(v))
    plans = {n: K.update_parts_plan(windows, alive, np.int64(Z), np.int64(n)) for n in (1, 2, 3)}
    assert [len(plans[n][2]) for n in (1, 2, 3)] == [1, 2, 3]  # one part per thread
    for run in ("parts 1", "parts 2", "parts 3", "serial"):
        sums = np.zeros_like(ref_sums)
        counts = np.zeros_like(ref_counts)
        if run.startswith("parts"):
            owner, bounds, zend = plans[int(run[-1])]
            assert np.diff(bounds).min() >= 13  # every part at least a window high
            K.update_parts(feats, mask, labels, owner, bounds, zend, coords, ip, sums, counts)
        else:
            K.update_serial(feats, mask, labels, coords, ip, sums, counts)
        assert np.array_equal(counts, ref_counts), run
        assert np.array_equal(sums, ref_sums), run


@pytest.mark.parametrize(
    "kw",
    [
        dict(n_segments=100, compactness=0.3),
        dict(n_segments=60, compactness=0.5, channel_axis=-1),
        dict(n_segments=40, compactness=0.3, mask=True),
    ],
)
def test_serial_update_equals_skimage(kw, rng, monkeypatch):
    # the serial update (taken when a voxel that no window reached kept its label)
    monkeypatch.setattr(_kmeans, "_PARALLEL_UPDATE", False)
    img = blocks_3d(rng, noise=0.3)
    if kw.get("channel_axis") is not None:
        img = np.stack([img, img[:, ::-1]], axis=-1)
    if kw.pop("mask", False):
        mask = np.zeros(img.shape, bool)
        mask[3:27, 5:35, 4:46] = True
        kw["mask"] = mask
    assert np.array_equal(slic(img, **kw), sk_slic(img, **kw))


# -- streaming -------------------------------------------------------------------------------
STREAM_CASES = [
    ("3d", dict(n_segments=60, compactness=0.3), False),
    ("3d small", dict(n_segments=400, compactness=0.1, min_size_factor=0.8), False),
    (
        "3d sigma",
        dict(n_segments=60, compactness=0.3, sigma=1.2, slic_zero=True, spacing=(2, 1, 1)),
        False,
    ),
    ("3d mask", dict(n_segments=50, compactness=0.3), True),
    ("3d split", dict(n_segments=30, compactness=0.05, max_size_factor=0.7, start_label=0), False),
    ("2d", dict(n_segments=30, compactness=0.3, sigma=1), False),
    ("2d mask", dict(n_segments=20, compactness=0.3), True),
]


def _set_slab_bytes(monkeypatch, nbytes):
    """Slabs of about ``nbytes`` (below the 1 MiB minimum memory budget)."""
    monkeypatch.setattr(_slabs, "_SLAB_SHARE", nbytes / _config.get_memory_budget())
    assert seg._slab_bytes() == nbytes


@pytest.mark.parametrize("name,kw,use_mask", STREAM_CASES, ids=[c[0] for c in STREAM_CASES])
@pytest.mark.parametrize("chunks", [(5, 7, 6), (16, 16, 16)])
def test_streamed_equals_in_memory(name, kw, use_mask, chunks, archive_path, rng, monkeypatch):
    img = np.zeros((37, 29, 41), np.float32)
    img[:, 14:] = 1
    img[18:] += 2
    img += rng.normal(0, 0.3, img.shape).astype(np.float32)
    mask = np.zeros(img.shape, bool)
    mask[3:33, 2:27, 4:38] = True
    if name.startswith("2d"):
        img, mask, chunks = img[5], mask[5], chunks[1:]
    mask = mask if use_mask else None
    ref = slic(img, mask=mask, **kw)
    with fastct.open(archive_path, "w") as ar:
        vol = ar.create_volume("img", img, chunks=chunks)
        mvol = ar.create_volume("mask", mask, chunks=chunks) if use_mask else None
        out = ar.create_volume_like("labels", vol, dtype=np.int32)
        assert all(c < n for c, n in zip(vol.chunks, vol.shape))
        for slab_bytes in (1, 20_000):  # one tile of slices per slab, or a few
            _set_slab_bytes(monkeypatch, slab_bytes)
            assert slic(vol, mask=mvol, out=out, **kw) is out
            assert np.array_equal(out.read(), ref)
            assert np.array_equal(slic(vol, mask=mvol, **kw), ref)  # Volume in, array out
            assert np.array_equal(slic(img, mask=mask, out=out, **kw).read(), ref)  # array in
    with fastct.open(archive_path) as ar:
        assert np.array_equal(ar["labels"].read(), ref)


def test_streamed_connectivity_window_larger_than_slab(archive_path, monkeypatch, rng):
    # few, large segments: a component spans many slabs of the connectivity scan
    img = rng.random((40, 12, 14)).astype(np.float32)
    ref = slic(img, n_segments=4, compactness=0.01, min_size_factor=0.9)
    _set_slab_bytes(monkeypatch, 1)
    with fastct.open(archive_path, "w") as ar:
        vol = ar.create_volume("img", img, chunks=(3, 5, 4))
        out = ar.create_volume_like("labels", vol, dtype=np.int32)
        slic(vol, n_segments=4, compactness=0.01, min_size_factor=0.9, out=out)
        assert np.array_equal(out.read(), ref)


# -- determinism ----------------------------------------------------------------------------
def test_same_labels_at_1_and_2_threads(rng, monkeypatch):
    monkeypatch.setattr(_slabs, "_PARALLEL_MIN_VOXELS", 0)  # parallel even when small
    img = blocks_3d(rng, noise=0.3)
    mask = np.ones(img.shape, bool)
    mask[:, :5] = False
    res = []
    for n in (1, 2):
        fastct.set_num_threads(n)
        res.append(
            (
                slic(img, n_segments=120, compactness=0.3),
                slic(img, n_segments=60, compactness=0.3, mask=mask, slic_zero=True),
            )
        )
    assert all(np.array_equal(a, b) for a, b in zip(*res))


def test_numba_thread_count_restored(rng):
    import numba

    before = numba.get_num_threads()
    fastct.set_num_threads(1)
    slic(rng.random((10, 12, 14)).astype(np.float32), n_segments=10)
    assert numba.get_num_threads() == before


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw,exc,words",
    [
        (dict(n_segments=0), ValueError, "n_segments"),
        (dict(n_segments=2.5), TypeError, "n_segments"),
        (dict(compactness=0), ValueError, "compactness"),
        (dict(compactness=-1.0), ValueError, "compactness"),
        (dict(compactness=np.inf), ValueError, "compactness"),
        (dict(max_num_iter=-1), ValueError, "max_num_iter"),
        (dict(spacing=(1.0, 1.0)), ValueError, "spacing"),
        (dict(spacing=(1.0, 0.0, 1.0)), ValueError, "spacing"),
        (dict(spacing=(1.0, -2.0, 1.0)), ValueError, "spacing"),
        (dict(spacing="abc"), TypeError, "spacing"),
        (dict(sigma=-1), ValueError, "sigma"),
        (dict(sigma=(1, 2)), ValueError, "sigma"),
        (dict(start_label=2), ValueError, "start_label"),
        (dict(min_size_factor=-0.1), ValueError, "min_size_factor"),
        (dict(max_size_factor=0), ValueError, "max_size_factor"),
        (dict(slic_zero="yes"), TypeError, "slic_zero"),
        (dict(mask=np.ones((4, 5, 6), bool)), ValueError, "mask"),
        (dict(mask=np.zeros((6, 7, 8), bool)), ValueError, "mask"),
        (dict(channel_axis=5), ValueError, "channel_axis"),
        (dict(out=np.zeros((6, 7, 8), np.int64)), TypeError, "out"),
        (dict(out=np.zeros((6, 7), np.int32)), ValueError, "out"),
    ],
)
def test_bad_arguments(kw, exc, words, rng):
    img = rng.random((6, 7, 8)).astype(np.float32)
    with pytest.raises(exc, match=words):
        slic(img, **kw)


def test_bad_images(rng):
    img = rng.random((6, 7, 8)).astype(np.float32)
    img[2, 3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        slic(img)
    img[2, 3, 4] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        slic(img)
    with pytest.raises(ValueError, match="image must be 2-D"):
        slic(rng.random(10))
    with pytest.raises(ValueError, match="channel_axis"):
        slic(rng.random((10, 12)), channel_axis=-1)  # 2-D image with a channel axis
    with pytest.raises(TypeError, match="image"):
        slic(np.zeros((5, 5), complex))
    with pytest.raises(ValueError, match="empty"):
        slic(np.zeros((0, 5), np.float32))


def test_bad_volume_arguments(archive_path, rng):
    with fastct.open(archive_path, "w") as ar:
        vol = ar.create_volume("img", rng.random((6, 7, 8)).astype(np.float32))
        with pytest.raises(ValueError, match="channel_axis"):
            slic(vol, channel_axis=0)
        with pytest.raises(TypeError, match="int32"):
            slic(vol, out=ar.create_volume_like("bad", vol))


# -- the on-disk kernel cache (must be the last test: it reuses the compiled cache) -----------
def test_cache_survives_thread_count_changes(tmp_path):
    # cached parallel kernels have crashed elsewhere when the thread count changed
    # between runs: run cached SLIC in fresh processes with other thread counts
    code = (
        "import numpy as np, fastct, fastct.segmentation as s, fastct.segmentation._slabs as sl\n"
        "sl._PARALLEL_MIN_VOXELS = 0\n"
        "img = np.random.default_rng(0).random((20, 24, 28)).astype(np.float32)\n"
        "fastct.set_num_threads(int(__import__('sys').argv[1]))\n"
        "a = s.slic(img, n_segments=30, compactness=0.3)\n"
        "fastct.set_num_threads(1); b = s.slic(img, n_segments=30, compactness=0.3)\n"
        "assert np.array_equal(a, b); print(int(a.sum()))\n"
    )
    outs = []
    for numba_threads, threads in (("2", "2"), ("1", "1"), ("2", "1"), ("1", "2")):
        env = dict(os.environ, NUMBA_NUM_THREADS=numba_threads)
        r = subprocess.run(
            [sys.executable, "-c", code, threads],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(r.stdout.strip())
    assert len(set(outs)) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = np.random.default_rng(0).random((20, 24, 28)).astype(np.float32)
        assert str(int(slic(img, n_segments=30, compactness=0.3).sum())) == outs[0]

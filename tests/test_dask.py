"""fastct.dask: results on dask arrays equal the in-memory fastct calls bit for bit.

The references are the in-memory fastct functions, which their own tests compare with
scipy.ndimage / scikit-image / SimpleITK; here every comparison is exact
(``np.array_equal``), over random chunk shapes (chunks smaller than the halo at the
edges, uneven chunks, single chunks), every boundary mode and several dtypes.
"""

from __future__ import annotations

import sys
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastct

da = pytest.importorskip("dask.array")
fd = pytest.importorskip("fastct.dask")

MODES = ["reflect", "mirror", "nearest", "constant", "wrap"]


def random_chunks(rng, shape, min_chunk):
    """Uneven chunks per axis: interior chunks >= min_chunk, edge chunks anything."""
    out = []
    for n in shape:
        sizes = []
        left = n
        first = int(rng.integers(1, max(2, n // 2)))
        sizes.append(min(first, left))
        left -= sizes[-1]
        while left > 0:
            c = int(rng.integers(min_chunk[len(out)], min_chunk[len(out)] + 9))
            sizes.append(min(c, left))
            left -= sizes[-1]
        out.append(tuple(sizes))
    return tuple(out)


def image_of(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) > 0.5
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -2000), min(info.max, 2000), shape).astype(dtype)


@pytest.mark.parametrize(
    ("dtype", "mode"),
    [(np.float32, m) for m in MODES] + [(np.float64, "mirror"), (np.int16, "constant")],
)
def test_gaussian_equals_in_memory(dtype, mode):
    rng = np.random.default_rng(zlib.crc32(f"{mode}{np.dtype(dtype).str}".encode()))
    shape = (17, 23, 29)
    img = image_of(rng, shape, dtype)
    sigma = (1.0, 1.6, 0.7)
    depth = (4, 6, 3)  # int(4 * sigma + 0.5)
    for _ in range(1):
        chunks = random_chunks(rng, shape, depth)
        x = da.from_array(img, chunks=chunks)
        got = fd.gaussian(x, sigma, mode=mode, cval=0.25).compute()
        ref = fastct.gaussian(img, sigma, mode=mode, cval=0.25)
        assert got.dtype == ref.dtype
        assert np.array_equal(got, ref), chunks


def test_gaussian_2d_spacing_and_halo_larger_than_image():
    rng = np.random.default_rng(1)
    img = rng.random((9, 40), dtype=np.float32)
    x = da.from_array(img, chunks=((4, 5), (15, 15, 10)))  # halo 12 along y > the axis (9)
    for mode in MODES:
        got = fd.gaussian(x, 3.0, spacing=(1.0, 1.0), mode=mode).compute()
        assert np.array_equal(got, fastct.gaussian(img, 3.0, mode=mode)), mode


def test_gaussian_recursive_tiled_chunks():
    rng = np.random.default_rng(2)
    img = rng.random((12, 20, 150), dtype=np.float32)
    sigma = (0.0, 1.0, 3.0)  # x: IIR, margin 12, tile 64; y: exact taps; z: skipped
    x = da.from_array(img, chunks=(5, 7, 64))
    got = fd.gaussian(x, sigma, method="recursive", mode="mirror").compute()
    ref = fastct.gaussian(img, sigma, method="recursive", mode="mirror")
    assert np.array_equal(got, ref)
    with pytest.raises(ValueError, match="multiples of 64 voxels along axis 2"):
        fd.gaussian(da.from_array(img, chunks=(5, 7, 50)), sigma, method="recursive")


@pytest.mark.parametrize("mode", ["reflect", "constant", "wrap"])
def test_unsharp_mask_equals_in_memory(mode):
    rng = np.random.default_rng(3)
    img = image_of(rng, (15, 21, 18), np.uint8)
    x = da.from_array(img, chunks=random_chunks(rng, img.shape, (5, 5, 5)))
    got = fd.unsharp_mask(x, radius=(1.2, 1.0, 0.8), amount=1.7, mode=mode).compute()
    ref = fastct.unsharp_mask(img, radius=(1.2, 1.0, 0.8), amount=1.7, mode=mode)
    assert got.dtype == np.float32
    assert np.array_equal(got, ref)


@pytest.mark.parametrize(
    ("dtype", "mode"),
    [(np.int16, m) for m in MODES]
    + [(np.uint8, "reflect"), (np.float32, "nearest"), (np.bool_, "constant")],
)
def test_median_equals_in_memory(dtype, mode):
    rng = np.random.default_rng(zlib.crc32(f"median{mode}{np.dtype(dtype).str}".encode()))
    img = image_of(rng, (13, 19, 22), dtype)
    x = da.from_array(img, chunks=random_chunks(rng, img.shape, (2, 2, 2)))
    got = fd.median(x, size=(3, 4, 5), mode=mode, cval=1).compute()
    ref = fastct.median(img, size=(3, 4, 5), mode=mode, cval=1)
    assert got.dtype == img.dtype
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("mode", ["reflect", "constant", "wrap"])
def test_hessian_blob_equals_in_memory(mode):
    from fastct.filters import hessian_blob

    rng = np.random.default_rng(6)
    img = image_of(rng, (20, 22, 19), np.int16)
    x = da.from_array(img, chunks=random_chunks(rng, img.shape, (5, 6, 7)))  # the halos
    got = fd.hessian_blob(x, 1.2, spacing=(1.5, 1.0, 0.9), mode=mode, cval=5.0).compute()
    ref = hessian_blob(img, 1.2, spacing=(1.5, 1.0, 0.9), mode=mode, cval=5.0)
    assert np.array_equal(got, ref)


def test_median_footprint_2d():
    rng = np.random.default_rng(4)
    img = rng.standard_normal((30, 31)).astype(np.float32)
    fp = rng.random((5, 7)) > 0.4
    fp[2, 3] = True
    x = da.from_array(img, chunks=(4, 9))
    got = fd.median(x, footprint=fp, mode="mirror").compute()
    assert np.array_equal(got, fastct.median(img, footprint=fp, mode="mirror"))


def test_chunk_smaller_than_halo_is_a_clear_error():
    img = np.zeros((40, 40, 40), np.float32)
    x = da.from_array(img, chunks=(8, 20, 20))  # interior z chunks of 8 < halo 12
    with pytest.raises(ValueError, match=r"image chunks .* axis 0 .* at least 12 voxels"):
        fd.gaussian(x, 3.0)
    with pytest.raises(ValueError, match="at least 4 voxels"):
        fd.median(da.from_array(img, chunks=(3, 40, 40)), size=9)
    # first and last chunks may be shorter than the halo
    y = fd.gaussian(da.from_array(img, chunks=((5, 30, 5), 40, 40)), 3.0)
    assert y.chunks == ((5, 30, 5), (40,), (40,))


def test_bad_arguments():
    x = da.zeros((10, 10, 10), chunks=5)
    with pytest.raises(TypeError, match="image must be a dask array"):
        fd.gaussian([[1.0]], 1.0)
    with pytest.raises(ValueError, match="mode"):
        fd.gaussian(x, 1.0, mode="bogus")
    with pytest.raises(ValueError, match="image must be 2-D"):
        fd.median(da.zeros((4,), chunks=2))
    with pytest.raises(TypeError, match="labels must have an integer"):
        fd.region_features(x, x)
    with pytest.raises(ValueError, match="order must be 0, 1 or 3"):
        fd.resample(x, np.eye(4), shape=(4, 4, 4), order=2)


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r"'scale' extra"):
        fd.gaussian(np.zeros((4, 4), np.float32), 1.0)


@pytest.mark.parametrize("order", [0, 1, 3])
def test_resample_equals_in_memory(order):
    from fastct.transforms import RigidTransform

    rng = np.random.default_rng(10 + order)
    img = rng.standard_normal((18, 22, 20)).astype(np.float32)
    t = RigidTransform(3, rotation=(0.15, -0.1, 0.2), translation=(2.0, -3.0, 1.5),
                       center=(9.0, 11.0, 10.0))  # fmt: skip
    d = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, -1]])  # permuted and flipped output grid
    kw = dict(shape=(16, 25, 19), spacing=(1.2, 0.9, 1.1), origin=(-3.0, 2.0, 20.0),
              direction=d, moving_spacing=(1.0, 1.1, 0.95), cval=-7.0, order=order)  # fmt: skip
    ref = fastct.resample(img, t, **kw)
    x = da.from_array(img, chunks=(5, 11, 7))
    got = fd.resample(x, t, chunks=(4, 9, 8), **kw).compute()
    assert got.dtype == ref.dtype
    assert np.array_equal(got, ref)


def test_resample_2d_integer_and_outside_chunks():
    rng = np.random.default_rng(20)
    img = rng.integers(-1000, 1000, (30, 26)).astype(np.int16)
    m = np.eye(3)
    m[:2, 2] = (-25.0, 3.0)  # shifts most of the output outside the moving image
    ref = fastct.resample(img, m, shape=(40, 30), order=1, out=np.empty((40, 30), np.int16))
    got = fd.resample(da.from_array(img, chunks=10), m, shape=(40, 30), chunks=(7, 8),
                      dtype=np.int16).compute()  # fmt: skip
    assert np.array_equal(got, ref)
    near = fd.resample(img, m, shape=(40, 30), order=0, chunks=6).compute()
    assert near.dtype == np.int16
    assert np.array_equal(near, fastct.resample(img, m, shape=(40, 30), order=0))


def _phantom_labels(rng, shape):
    labels = np.zeros(shape, np.int32)
    for lab in (3, 7, 12, 40):
        c = [int(rng.integers(2, n - 2)) for n in shape]
        r = [int(rng.integers(1, 5)) for _ in shape]
        labels[tuple(slice(max(0, a - b), a + b + 1) for a, b in zip(c, r))] = lab
    return labels


@pytest.mark.parametrize("percentiles", [(10, 50, 90), ()])
def test_region_features_equal_in_memory(percentiles):
    rng = np.random.default_rng(30)
    shape = (21, 17, 19)
    labels = _phantom_labels(rng, shape)
    image = rng.standard_normal(shape) * 100
    geo = dict(spacing=(2.0, 0.7, 0.8), origin=(5.0, -3.0, 1.0),
               direction=np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]))  # fmt: skip
    ref = fastct.region_features(labels, image, percentiles=percentiles, **geo)
    lab = da.from_array(labels, chunks=(4, 9, 7))
    img = da.from_array(image.astype(np.float64), chunks=(6, 17, 10))
    got = fd.region_features(lab, img, percentiles=percentiles, block_planes=5, **geo)
    assert list(got) == list(ref)
    for col in ref:
        assert got[col].dtype == ref[col].dtype, col
        assert np.array_equal(got[col], ref[col], equal_nan=True), col


def test_volume_to_dask(archive_path):
    rng = np.random.default_rng(40)
    img = rng.integers(-1000, 1000, (20, 24, 28)).astype(np.int16)
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("scans/a/image", img, spacing=(2.0, 1.0, 1.0), chunks=(8, 12, 14))
    with fastct.open(archive_path) as ar:
        vol = ar["scans/a/image"]
        x = vol.to_dask()
        assert x.chunks[0] == (8, 8, 4) and x.dtype == np.int16
        assert np.array_equal(x.compute(), img)
        got = fd.gaussian(vol, 1.0, spacing=vol.spacing).compute()
        assert np.array_equal(got, fastct.gaussian(img, 1.0, spacing=(2.0, 1.0, 1.0)))
        assert fd.to_dask(vol, chunks=10).chunks[1] == (10, 10, 4)


def test_task_threads_rules(monkeypatch):
    import threading

    import dask

    assert fd.task_threads() == fastct.get_num_threads()  # main thread: fastct's count
    seen = []
    with dask.config.set(num_workers=2):
        t = threading.Thread(target=lambda: seen.append(fd.task_threads()))
        t.start()
        t.join()
    cores = fastct._config._max_threads()
    assert seen == [max(1, cores // 2)]
    fastct.set_num_threads(1)  # an explicit count wins
    assert fd.task_threads() == 1


@pytest.mark.slow  # about 25 s: two worker processes start and import numba
def test_local_cluster_equals_in_memory():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(50)
    img = rng.standard_normal((24, 30, 26)).astype(np.float32)
    labels = _phantom_labels(rng, img.shape)
    x = da.from_array(img, chunks=(10, 15, 13))
    with distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
        dashboard_address=None,
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        g, m = client.compute([fd.gaussian(x, 1.5), fd.median(x, size=3, mode="wrap")], sync=True)
        table = fd.region_features(da.from_array(labels, chunks=8), x, percentiles=(50,))
        host_threads = fd._host_threads()
        shares = [
            client.submit(fd.task_threads, host_threads, workers=[w], pure=False).result()
            for w in client.scheduler_info()["workers"]
        ]
    assert np.array_equal(g, fastct.gaussian(img, 1.5))
    assert np.array_equal(m, fastct.median(img, size=3, mode="wrap"))
    ref = fastct.region_features(labels, img, percentiles=(50,))
    for col in ref:
        assert np.array_equal(table[col], ref[col], equal_nan=True), col
    cores = fastct._config._max_threads()
    assert shares == [max(1, cores // 2)] * 2


@st.composite
def _case(draw):
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(1, 12)) for _ in range(ndim))
    sigma = tuple(draw(st.sampled_from([0.0, 0.6, 1.0, 2.2])) for _ in range(ndim))
    depth = [int(4.0 * s + 0.5) if s > 0 else 0 for s in sigma]
    chunks = []
    for n, d in zip(shape, depth):
        sizes, left = [], n
        while left > 0:  # interior chunks >= the halo, edge chunks anything
            lo = 1 if not sizes else max(1, d)
            c = min(left, draw(st.integers(lo, max(lo, 8))))
            sizes.append(c)
            left -= c
        chunks.append(tuple(sizes))
    mode = draw(st.sampled_from(MODES))
    return shape, sigma, tuple(chunks), mode


@settings(max_examples=40, deadline=None)
@given(_case(), st.integers(0, 2**32 - 1))
def test_gaussian_edges_property(case, seed):
    """Tiny and 1-voxel axes, halos longer than the axis, any chunking: exact."""
    shape, sigma, chunks, mode = case
    img = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    got = fd.gaussian(da.from_array(img, chunks=chunks), sigma, mode=mode, cval=-2.0)
    assert np.array_equal(got.compute(), fastct.gaussian(img, sigma, mode=mode, cval=-2.0))


def test_numba_thread_count_restored_after_tasks():
    import numba

    img = np.random.default_rng(8).random((12, 14, 16), dtype=np.float32)
    x = da.from_array(img, chunks=6)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        for scheduler in ("sync", "threads"):
            fd.median(x, size=3).compute(scheduler=scheduler)
            assert numba.get_num_threads() == 1, scheduler
    finally:
        numba.set_num_threads(previous)

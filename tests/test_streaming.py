"""The block streaming engine: streamed == in-memory, bit for bit."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import MODES, reference_box_sum, reference_extension
from numpy.lib.stride_tricks import sliding_window_view

import fastct
from fastct._kernels.box import box_sum
from fastct.streaming import (
    boundary_index,
    choose_block_shape,
    iter_blocks,
    map_overlap,
    read_extended,
)


def box_kernel(radius):
    def kernel(data, info):
        return box_sum(data, radius)

    return kernel


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_boundary_index_matches_scipy_rules(mode, n):
    index = np.arange(-3 * n - 2, 4 * n + 3)
    assert np.array_equal(boundary_index(index, n, mode), reference_extension(index, n, mode))


@pytest.mark.parametrize("mode", MODES)
def test_boundary_extension_matches_scipy(mode):
    # scipy's own extension, read out with a shifted delta kernel.
    x = np.arange(1.0, 8.0)
    d = 4
    for j in range(2 * d + 1):
        weights = np.zeros(2 * d + 1)
        weights[j] = 1.0
        scipy_vals = ndi.correlate1d(x, weights, mode=mode, cval=-5.0)
        ext = read_extended(x[None], (0, 0), (1, 7), (0, d), mode, -5.0, np.float64)[0]
        assert np.array_equal(scipy_vals, ext[j : j + 7]), j


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "shape,radius,block",
    [
        ((17, 13, 11), (1, 1, 1), (1, 1, 1)),  # chunk smaller than the halo
        ((17, 13, 11), (2, 2, 2), (2, 2, 2)),  # chunk equal to the halo
        ((17, 13, 11), (2, 1, 3), (5, 4, 7)),  # larger, not dividing the shape
        ((9, 1, 14), (3, 2, 1), (4, 1, 5)),  # 1-voxel axis, halo deeper than it
        ((3, 5, 4), (5, 6, 7), (2, 2, 3)),  # halo deeper than every axis
    ],
)
def test_box_streamed_equals_reference_3d(mode, shape, radius, block, rng):
    image = rng.integers(-1000, 3000, size=shape).astype(np.int16)
    expected = reference_box_sum(image, radius, mode, cval=7)
    whole = map_overlap(
        box_kernel(radius),
        image,
        depth=radius,
        mode=mode,
        cval=7,
        dtype=np.float64,
        block_shape=shape,
    )
    streamed = map_overlap(
        box_kernel(radius),
        image,
        depth=radius,
        mode=mode,
        cval=7,
        dtype=np.float64,
        block_shape=block,
    )
    assert np.array_equal(whole, expected)
    assert np.array_equal(streamed, whole)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("block", [(1, 1), (3, 3), (4, 6), (64, 64)])
def test_box_streamed_equals_in_memory_2d(mode, block, rng):
    image = rng.integers(0, 255, size=(23, 19)).astype(np.uint8)
    radius = (3, 3)
    whole = map_overlap(box_kernel(radius), image, depth=radius, mode=mode, dtype=np.float64)
    streamed = map_overlap(
        box_kernel(radius), image, depth=radius, mode=mode, dtype=np.float64, block_shape=block
    )
    assert np.array_equal(streamed, whole)
    assert np.array_equal(whole, reference_box_sum(image, radius, mode, 0.0))


@pytest.mark.parametrize("chunks", [(1, 2, 3), (2, 2, 2), (5, 7, 4), (32, 32, 32)])
@pytest.mark.parametrize("mode", ["reflect", "constant", "wrap"])
def test_box_archive_streaming_equals_in_memory(archive_path, chunks, mode, rng):
    image = rng.normal(size=(19, 14, 12)).astype(np.float32)
    radius = (2, 2, 2)
    in_memory = map_overlap(
        box_kernel(radius),
        image,
        depth=radius,
        mode=mode,
        dtype=np.float64,
        block_shape=image.shape,
    )
    with fastct.open(archive_path, "w") as ar:
        src = ar.create_volume("scans/a/image", image, chunks=chunks)
        dst = ar.create_volume("scans/a/box", shape=image.shape, dtype=np.float64, chunks=chunks)
        map_overlap(box_kernel(radius), src, depth=radius, mode=mode, dtype=np.float64, out=dst)
    with fastct.open(archive_path) as ar:
        assert np.array_equal(ar["scans/a/box"].read(), in_memory)
    # Float sums in another order agree only to rounding: compare scipy with a tolerance.
    scipy_box = ndi.uniform_filter(image.astype(np.float64), 5, mode=mode) * 125
    np.testing.assert_allclose(in_memory, scipy_box, rtol=1e-10, atol=1e-10)


def test_median_through_engine_equals_scipy(rng):
    image = rng.integers(-50, 50, size=(11, 9, 10)).astype(np.int16)

    def median3(data, info):
        w = sliding_window_view(data, (3, 3, 3))
        return np.median(w.reshape(w.shape[:3] + (27,)), axis=-1).astype(data.dtype)

    for mode in MODES:
        expected = ndi.median_filter(image, 3, mode=mode, cval=3)
        got = map_overlap(median3, image, depth=1, mode=mode, cval=3, block_shape=(4, 3, 5))
        assert np.array_equal(got, expected), mode


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=2, max_size=3),
    data=st.data(),
)
def test_extension_property(shape, data):
    """Any block of any volume, extended by any depth, equals the whole-array extension."""
    ndim = len(shape)
    mode = data.draw(st.sampled_from(MODES))
    depth = tuple(data.draw(st.integers(0, 12)) for _ in range(ndim))
    image = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    whole = read_extended(image, (0,) * ndim, tuple(shape), depth, mode, -1.5, np.float64)
    start = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
    stop = tuple(data.draw(st.integers(s + 1, n)) for s, n in zip(start, shape))
    block = read_extended(image, start, stop, depth, mode, -1.5, np.float64)
    window = tuple(slice(s, e + 2 * d) for s, e, d in zip(start, stop, depth))
    assert np.array_equal(block, whole[window])


def test_pipelined_and_serial_agree(rng):
    image = rng.normal(size=(40, 30, 20))
    k = box_kernel((1, 1, 1))
    a = map_overlap(k, image, depth=1, dtype=np.float64, block_shape=(7, 8, 9), prefetch=True)
    b = map_overlap(k, image, depth=1, dtype=np.float64, block_shape=(7, 8, 9), prefetch=False)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_same_bits_at_any_thread_count(threads, rng):
    import numba

    before = numba.get_num_threads()
    image = rng.normal(size=(30, 20, 10)).astype(np.float32)
    fastct.set_num_threads(threads)
    got = map_overlap(
        box_kernel((2, 1, 1)), image, depth=(2, 1, 1), dtype=np.float64, block_shape=(8, 8, 8)
    )
    fastct.set_num_threads(None)
    ref = map_overlap(box_kernel((2, 1, 1)), image, depth=(2, 1, 1), dtype=np.float64)
    assert np.array_equal(got, ref)
    assert numba.get_num_threads() == before  # never left changed


def test_kernel_errors_propagate_and_stop(rng):
    image = rng.normal(size=(20, 20, 20))
    calls = []

    def bad(data, info):
        calls.append(info.index)
        if info.index == 2:
            raise RuntimeError("kernel failed")
        return data[info.core]

    with pytest.raises(RuntimeError, match="kernel failed"):
        map_overlap(bad, image, depth=1, block_shape=(5, 20, 20))
    assert max(calls) == 2

    with pytest.raises(ValueError, match="kernel returned shape"):
        map_overlap(lambda d, i: d, image, depth=1, block_shape=(5, 20, 20))


def test_reader_errors_propagate(archive_path, rng):
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("v", rng.normal(size=(8, 8, 8)), chunks=(2, 8, 8))
    ar = fastct.open(archive_path)
    vol = ar["v"]
    ar.close()
    with pytest.raises(Exception):  # noqa: B017 - h5py raises its own error on a closed file
        map_overlap(lambda d, i: d, vol, block_shape=(2, 8, 8))


def test_bad_arguments(rng):
    image = rng.normal(size=(4, 4, 4))
    ident = lambda d, i: d[i.core]  # noqa: E731
    with pytest.raises(ValueError, match="mode"):
        map_overlap(ident, image, mode="reflective")
    with pytest.raises(ValueError, match="depth"):
        map_overlap(ident, image, depth=-1)
    with pytest.raises(ValueError, match="depth"):
        map_overlap(ident, image, depth=(1, 1))
    with pytest.raises(ValueError, match="out must have shape"):
        map_overlap(ident, image, out=np.empty((3, 4, 4)))
    with pytest.raises(TypeError, match="func"):
        map_overlap(None, image)
    with pytest.raises(ValueError, match="2-D or 3-D"):
        map_overlap(ident, np.zeros(5))
    with pytest.raises(ValueError, match="block_shape"):
        map_overlap(ident, image, block_shape=(0, 4, 4))


def test_block_geometry():
    blocks = list(iter_blocks((10, 7), (4, 3)))
    assert len(blocks) == 3 * 3
    assert blocks[-1] == ((8, 6), (10, 7))
    shape = choose_block_shape((1024, 1024, 1024), 2, align=(64, 64, 64), target_bytes=32 * 2**20)
    assert all(b % 64 == 0 for b in shape)
    assert 8 * 2**20 <= np.prod(shape) * 2 <= 32 * 2**20
    assert choose_block_shape((5, 6, 7), 8) == (5, 6, 7)

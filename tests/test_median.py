"""fastct.median: identical to scipy.ndimage.median_filter, in memory and streamed."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import MODES

import fastct
from fastct import streaming
from fastct.filters import _median
from fastct.filters._median import median, selection_network

INT_DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
ALL_DTYPES = [*INT_DTYPES, np.float32, np.float64, np.bool_]


def random_image(rng, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind == "f":
        return rng.normal(scale=100, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    # scipy ranks through float64: stay within +-2**53 so its result is exact too.
    lo, hi = max(info.min, -(2**53)), min(info.max, 2**53)
    return rng.integers(lo, hi, size=shape, endpoint=True, dtype=dtype)


def assert_same(result, expected):
    assert result.dtype == expected.dtype
    assert result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.fixture
def force_path(monkeypatch):
    """Force one algorithm whatever the footprint size and data; count its calls."""
    calls = {"n": 0}

    def spy(func):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            return func(*args, **kwargs)

        return wrapper

    def force(path):
        if path == "network":
            monkeypatch.setattr(_median, "NETWORK_MAX", 10**9)
            target = "_network"
        elif path == "histogram":
            monkeypatch.setattr(_median, "NETWORK_MAX", 0)
            target = "_histogram"
        elif path == "unique":
            monkeypatch.setattr(_median, "NETWORK_MAX", 0)
            monkeypatch.setattr(_median, "_UNIQUE_MIN_N", 0)
            target = "_histogram"
        elif path == "quickselect":
            monkeypatch.setattr(_median, "NETWORK_MAX", 0)
            monkeypatch.setattr(_median, "NETWORK_MAX_WIDE", 0)
            monkeypatch.setattr(_median, "_UNIQUE_MIN_N", 10**9)
            target = "_quickselect"
        else:  # pragma: no cover
            raise ValueError(path)
        monkeypatch.setattr(_median, target, spy(getattr(_median, target)))
        return calls

    return force


@pytest.fixture
def block_shape(monkeypatch):
    """Make the streaming engine cut volumes into blocks of a given core shape."""

    def use(shape):
        monkeypatch.setattr(
            streaming,
            "choose_block_shape",
            lambda vol_shape, itemsize, **kw: tuple(min(b, s) for b, s in zip(shape, vol_shape)),
        )

    return use


# -- equality with scipy ---------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 7])
def test_cubes_match_scipy_3d(rng, size, mode):
    img = random_image(rng, (9, 10, 11), np.int16)
    assert_same(
        median(img, size, mode=mode, cval=7), ndi.median_filter(img, size, mode=mode, cval=7)
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 7, 9])
def test_squares_match_scipy_2d(rng, size, mode):
    img = random_image(rng, (23, 41), np.uint8)
    assert_same(
        median(img, size, mode=mode, cval=3), ndi.median_filter(img, size, mode=mode, cval=3)
    )


@pytest.mark.parametrize(
    "size", [(1, 3, 5), (2, 1, 4), (7, 1, 1), (1, 1, 6), (3, 5, 2), (1, 2, 1), (4, 4, 4)]
)
@pytest.mark.parametrize("mode", ["reflect", "constant", "wrap"])
def test_per_axis_sizes(rng, size, mode):
    img = random_image(rng, (8, 13, 35), np.int16)
    assert_same(median(img, size, mode=mode), ndi.median_filter(img, size, mode=mode))


def test_even_size_window_placement():
    # A single bright voxel: with size 2 along x the window of x covers x-1 and x, so
    # the max-like median (rank 1 of 2) lights up x and x+1, as scipy does.
    img = np.zeros((1, 1, 8), np.int16)
    img[0, 0, 3] = 9
    res = median(img, (1, 1, 2))
    assert res[0, 0].tolist() == [0, 0, 0, 9, 9, 0, 0, 0]
    assert_same(res, ndi.median_filter(img, (1, 1, 2)))
    # size 4: offsets -2..1, rank 2 of 4 (upper middle)
    img = np.arange(10, dtype=np.int16)[None, None] * 10
    assert_same(median(img, (1, 1, 4)), ndi.median_filter(img, (1, 1, 4)))


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("size", [3, 4, 5])
def test_dtypes_match_scipy(rng, dtype, size):
    img = random_image(rng, (7, 9, 12), dtype)
    res = median(img, size)
    assert_same(res, ndi.median_filter(img, size))


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 5, 1), (3, 2, 5), (2, 1), (1, 9), (5, 1, 40)])
@pytest.mark.parametrize("mode", MODES)
def test_windows_larger_than_the_axes(rng, shape, mode):
    img = random_image(rng, shape, np.int16)
    for size in (5, 8):
        assert_same(
            median(img, size, mode=mode, cval=-4), ndi.median_filter(img, size, mode=mode, cval=-4)
        )


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    ndim=st.sampled_from([2, 3]),
    mode=st.sampled_from(MODES),
    dtype=st.sampled_from([np.int16, np.uint8, np.float32, np.int32]),
)
def test_random_footprints_match_scipy(data, ndim, mode, dtype):
    shape = tuple(data.draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    fshape = tuple(data.draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    fp = rng.random(fshape) < data.draw(st.floats(0.1, 1.0))
    fp.flat[rng.integers(fp.size)] = True
    img = random_image(rng, shape, dtype)
    res = median(img, footprint=fp, mode=mode, cval=2)
    assert_same(res, ndi.median_filter(img, footprint=fp, mode=mode, cval=2))


def test_footprint_overrides_size_and_accepts_numbers(rng):
    img = random_image(rng, (6, 7, 8), np.int16)
    fp = np.zeros((3, 3, 3))
    fp[1] = 1.0
    fp[0, 1, 1] = 2.0
    assert_same(median(img, size=5, footprint=fp), ndi.median_filter(img, footprint=fp > 0))


# -- each algorithm against scipy ------------------------------------------------------------
@pytest.mark.parametrize("path", ["network", "histogram"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.bool_])
def test_small_int_paths(rng, force_path, path, dtype):
    calls = force_path(path)
    img = random_image(rng, (6, 9, 37), dtype)
    for size in (2, 3, (1, 5, 5), (3, 1, 4)):
        assert_same(median(img, size, mode="mirror"), ndi.median_filter(img, size, mode="mirror"))
    assert calls["n"] > 0


WIDE = [np.int32, np.uint32, np.int64, np.float32, np.float64]


@pytest.mark.parametrize(
    "path,dtype",
    [(p, d) for p in ("network", "histogram", "unique", "quickselect") for d in WIDE
     # float blocks reach the histogram through "unique" (their keys span too much)
     if not (p == "histogram" and np.dtype(d).kind == "f")],
)  # fmt: skip
def test_wide_paths(rng, force_path, path, dtype):
    calls = force_path(path)
    img = random_image(rng, (5, 8, 36), dtype)
    if path == "histogram":
        img = (img % 1000).astype(dtype)  # a range that fits the histogram bins
    if path == "unique":
        img = rng.choice(random_image(rng, 50, dtype), size=img.shape)  # few distinct values
    fp = rng.random((3, 4, 5)) < 0.6
    for kw in ({"size": 3}, {"size": (2, 3, 4)}, {"footprint": fp}):
        assert_same(median(img, mode="nearest", **kw), ndi.median_filter(img, mode="nearest", **kw))
    assert calls["n"] > 0


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8, np.int8])
def test_histogram_large_windows(rng, dtype):
    # Full-range values exercise the skipping of empty histogram stretches.
    img = random_image(rng, (11, 13, 40), dtype)
    for size in (7, (5, 9, 6), (1, 11, 11)):
        assert_same(median(img, size, mode="wrap"), ndi.median_filter(img, size, mode="wrap"))


def test_histogram_ct_like_volume(rng):
    # Smooth regions with noise and sharp air / tissue edges (long median jumps).
    img = np.full((12, 40, 48), -1000, np.int16)
    img[:, 8:32, 6:42] = 40
    img[:, 15:25, 30:36] = 1200
    img = (img + rng.normal(0, 20, img.shape)).astype(np.int16)
    for size in (7, 9):
        assert_same(median(img, size), ndi.median_filter(img, size))


def test_float_large_windows(rng):
    img = random_image(rng, (10, 12, 14), np.float32)
    for size in (7, (3, 9, 9)):
        assert_same(median(img, size), ndi.median_filter(img, size))


def test_selection_network_is_exact():
    # 0-1 principle: a comparator network selects rank k of every input iff it does
    # for all 0/1 inputs; check exhaustively for small n with the reference rule.
    for n in range(1, 11):
        for rank in range(n):
            program, out_reg, nreg = selection_network(n, rank)
            bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
            regs = np.zeros((2**n, nreg), np.int64)
            regs[:, :n] = bits
            for a, b, kind in program:
                lo = np.minimum(regs[:, a], regs[:, b])
                hi = np.maximum(regs[:, a], regs[:, b])
                if kind & 1:
                    regs[:, a] = lo
                if kind & 2:
                    regs[:, b] = hi
            expected = np.sort(bits, axis=1)[:, rank]
            np.testing.assert_array_equal(regs[:, out_reg], expected)


# -- special values, dtypes and layouts ------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [3, 6])
def test_nan_propagates_to_windows_holding_it(rng, dtype, size):
    img = random_image(rng, (8, 9, 10), dtype)
    img[2, 3, 4] = np.nan
    img[7, 0, 9] = -np.nan
    img[5, 5, 5] = np.inf
    img[0, 8, 0] = -np.inf
    nan = np.isnan(img)
    res = median(img, size)
    touched = ndi.maximum_filter(nan, size)
    expected = ndi.median_filter(np.where(nan, 0, img), size)
    expected[touched] = np.nan
    assert_same(res, expected)
    assert np.isnan(res).sum() == touched.sum()


def test_nan_cval_marks_the_border(rng):
    img = random_image(rng, (6, 7, 8), np.float64)
    res = median(img, 3, mode="constant", cval=np.nan)
    border = np.ones(img.shape, bool)
    border[1:-1, 1:-1, 1:-1] = False
    assert np.isnan(res[border]).all() and not np.isnan(res[~border]).any()


def test_signed_zeros_are_deterministic():
    img = np.zeros((5, 6, 7), np.float32)
    img[::2] = -0.0
    a = median(img, 3)
    assert np.array_equal(a, ndi.median_filter(img, 3))
    fastct.set_num_threads(1)
    assert same_bits(a, median(img, 3))


def test_float16_matches_float32_route(rng):
    img = random_image(rng, (6, 7, 8), np.float16)  # scipy does not support float16
    res = median(img, 3)
    assert res.dtype == np.float16
    assert same_bits(res, median(img.astype(np.float32), 3).astype(np.float16))


def test_layouts_noncontiguous_readonly_bigendian(rng):
    base = random_image(rng, (12, 14, 16), np.int16)
    expected = ndi.median_filter(base[::2, 1:, ::-3], 3)
    view = base[::2, 1:, ::-3]
    assert not view.flags.c_contiguous
    assert_same(median(view, 3), expected)
    ro = base.copy()
    ro.flags.writeable = False
    assert_same(median(ro, 3), ndi.median_filter(base, 3))
    be = base.astype(">i2")
    res = median(be, 3)
    assert res.dtype == np.dtype(np.int16) and res.dtype.isnative
    assert_same(res, ndi.median_filter(base, 3))
    tr = base.transpose(2, 0, 1)
    assert_same(median(tr, (3, 1, 5)), ndi.median_filter(tr, (3, 1, 5)))


def test_input_is_never_modified(rng):
    img = random_image(rng, (6, 7, 8), np.float32)
    before = img.copy()
    median(img, 5)
    assert same_bits(img, before)


@pytest.mark.parametrize(
    "dtype,cval",
    [(np.int16, 2.5), (np.int16, -2.5), (np.uint8, 254.9), (np.bool_, 0.5), (np.bool_, 1)],
)
def test_constant_cval_is_cast_like_scipy(rng, dtype, cval):
    img = random_image(rng, (6, 7, 8), dtype)
    if np.dtype(dtype).kind in "iu":
        img = (img % 5).astype(dtype)
    res = median(img, 3, mode="constant", cval=cval)
    assert_same(res, ndi.median_filter(img, 3, mode="constant", cval=cval))


def test_out_argument(rng):
    img = random_image(rng, (6, 7, 8), np.int16)
    expected = ndi.median_filter(img, 3)
    out = np.empty_like(img)
    assert median(img, 3, out=out) is out
    assert_same(out, expected)
    wide = np.empty(img.shape, np.int32)
    median(img, 3, out=wide)
    np.testing.assert_array_equal(wide, expected)
    inplace = img.copy()
    assert median(inplace, 3, out=inplace) is inplace
    assert_same(inplace, expected)


# -- streaming and threads ----------------------------------------------------------------------
@pytest.mark.parametrize("blocks", [(2, 3, 4), (1, 64, 64), (5, 5, 5), (64, 1, 7), (3, 17, 64)])
@pytest.mark.parametrize("size,dtype", [(3, np.int16), (7, np.int16), (4, np.float32)])
def test_streamed_volume_equals_in_memory(rng, archive_path, block_shape, blocks, size, dtype):
    img = random_image(rng, (11, 13, 17), dtype)
    expected = median(img, size, mode="mirror")
    block_shape(blocks)
    with fastct.open(archive_path, "w") as ar:
        src = ar.create_volume("scans/a/image", img, chunks=(4, 4, 4))
        dst = ar.create_volume_like("scans/a/median", src)
        assert median(src, size, mode="mirror", out=dst) is dst
        in_memory_from_volume = median(src, size, mode="mirror")
        streamed_from_array = ar.create_volume_like("scans/a/median2", src, chunks=(3, 5, 7))
        median(img, size, mode="mirror", out=streamed_from_array)
        for res in (dst.read(), in_memory_from_volume, streamed_from_array.read()):
            assert same_bits(res, expected)
    in_memory_blocks = median(img, size, mode="mirror")
    assert same_bits(in_memory_blocks, expected)
    assert_same(expected, ndi.median_filter(img, size, mode="mirror"))


def test_streamed_2d_with_footprint(rng, archive_path, block_shape):
    img = random_image(rng, (37, 29), np.uint16)
    fp = rng.random((5, 4)) < 0.5
    fp[0, 0] = True
    expected = ndi.median_filter(img, footprint=fp, mode="wrap")
    block_shape((6, 5))
    with fastct.open(archive_path, "w") as ar:
        src = ar.create_volume("scans/a/image", img, chunks=(8, 8))
        dst = ar.create_volume_like("scans/a/median", src)
        median(src, footprint=fp, mode="wrap", out=dst)
        assert_same(dst.read(), expected)


@pytest.mark.parametrize(
    "size,dtype,path",
    [
        (3, np.int16, None),
        (7, np.int16, None),
        (5, np.float32, None),
        (3, np.float64, "quickselect"),
    ],
)
def test_same_bits_at_1_and_2_threads(rng, force_path, size, dtype, path):
    calls = force_path(path) if path else {"n": 1}
    img = random_image(rng, (16, 24, 40), dtype)
    fastct.set_num_threads(1)
    one = median(img, size)
    fastct.set_num_threads(2)
    two = median(img, size)
    assert same_bits(one, two)
    assert calls["n"] > 0


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"size": 0}, ValueError, "size"),
        ({"size": -3}, ValueError, "size"),
        ({"size": 2.5}, ValueError, "size"),
        ({"size": (3, 3)}, ValueError, "size must have 3"),
        ({"size": True}, TypeError, "size"),
        ({"size": "3"}, TypeError, "size"),
        ({"footprint": np.ones((3, 3), bool)}, ValueError, "footprint must have 3"),
        ({"footprint": np.zeros((3, 3, 3), bool)}, ValueError, "footprint must contain"),
        ({"footprint": np.ones((0, 3, 3), bool)}, ValueError, "footprint must contain"),
        ({"footprint": np.array([[["a"]]])}, TypeError, "footprint"),
        ({"mode": "edge"}, ValueError, "mode"),
        ({"mode": 3}, TypeError, "mode"),
        ({"cval": "0"}, TypeError, "cval"),
        ({"cval": 1e6, "mode": "constant"}, ValueError, "cval"),
        ({"cval": np.nan, "mode": "constant"}, ValueError, "cval"),
        ({"out": np.empty((2, 2, 2), np.int16)}, ValueError, "out must have shape"),
        ({"out": [1, 2]}, TypeError, "out"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    img = np.zeros((4, 5, 6), np.int16)
    with pytest.raises(exc, match=match):
        median(img, **kwargs)


@pytest.mark.parametrize(
    "image,exc,match",
    [
        (np.zeros((0, 4, 4), np.int16), ValueError, "empty"),
        (np.zeros(5, np.int16), ValueError, "2-D"),
        (np.zeros((2, 2, 2, 2), np.int16), ValueError, "2-D"),
        (np.zeros((3, 3), complex), TypeError, "dtype"),
        (np.array([["a", "b"]]), TypeError, "dtype"),
    ],
)
def test_bad_images(image, exc, match):
    with pytest.raises(exc, match=match):
        median(image, 3)


def test_out_that_cannot_hold_the_result_is_refused():
    with pytest.raises(TypeError, match="out dtype"):
        median(np.zeros((4, 5, 6), np.float32), 3, out=np.empty((4, 5, 6), np.int16))


def test_readonly_out_is_refused():
    out = np.empty((4, 5, 6), np.int16)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        median(np.zeros((4, 5, 6), np.int16), 3, out=out)


def test_out_must_not_be_the_input_volume(archive_path):
    with fastct.open(archive_path, "w") as ar:
        src = ar.create_volume("scans/a/image", np.zeros((4, 5, 6), np.int16))
        with pytest.raises(ValueError, match="out"):
            median(src, 3, out=src)

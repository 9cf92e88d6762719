"""Gaussian (exact and recursive) and unsharp mask against scipy.ndimage / scikit-image."""

import numba
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from naive import MODES

import fastct
from fastct.filters import _gaussian, gaussian, unsharp_mask


def assert_close_to_scipy(result, expected, dtype, image=None):
    """float32: max |diff| <= 1e-5 of the value range; float64: 1e-12.

    The value range is the input's (the data's dynamic range) when given, else the
    result's: a heavily smoothed result can span far less than one float32 ulp of its
    magnitude times 1e5, which no float32 computation (scipy's included) resolves.
    For a (near) constant image the scale is a tenth of the magnitude instead.
    """
    rel = 1e-5 if np.dtype(dtype) == np.float32 else 1e-12
    scale = float(np.ptp(expected))
    if image is not None:
        scale = max(scale, float(np.ptp(image.astype(np.float64))))
    scale = max(scale, 0.1 * float(np.abs(expected).max()), 1e-30)
    diff = np.abs(result.astype(np.float64) - expected.astype(np.float64)).max()
    assert diff <= rel * scale, (diff, scale)


def phantom(shape, dtype=np.float32, seed=0):
    """Smooth blobs on a noisy background (CT-like value range)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    img = np.zeros(shape)
    for _ in range(6):
        centre = [rng.uniform(0, n) for n in shape]
        radius = rng.uniform(3, max(4, min(shape) / 3))
        dist2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
        img += rng.uniform(200, 1000) * (dist2 < radius**2)
    img += rng.normal(0, 20, size=shape) - 1000
    return img.astype(dtype)


# -- exact: equal to scipy.ndimage.gaussian_filter ----------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "sigma",
    [1.0, 2.5, (1.5, 0.0, 3.0), (0.0, 0.0, 0.0), (0.2, 9.0, 1.0), 7.5],  # 9 > axis 8
)
def test_exact_matches_scipy_3d(mode, dtype, sigma, rng):
    image = rng.normal(100, 50, size=(11, 8, 13)).astype(dtype)
    result = gaussian(image, sigma, mode=mode, cval=-3.5)
    expected = ndi.gaussian_filter(image, sigma, mode=mode, cval=-3.5)
    assert result.dtype == dtype
    assert_close_to_scipy(result, expected, dtype, image)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(1, 9), (7, 1), (23, 17), (1, 1)])
def test_exact_matches_scipy_2d(mode, shape, rng):
    image = rng.random(shape).astype(np.float32)
    for sigma in (0.8, (3.0, 1.2), 12.0):
        result = gaussian(image, sigma, mode=mode, cval=0.25)
        assert result.shape == shape
        assert_close_to_scipy(
            result, ndi.gaussian_filter(image, sigma, mode=mode, cval=0.25), np.float32, image
        )


@pytest.mark.parametrize("shape", [(1, 6, 7), (5, 1, 8), (6, 7, 1), (1, 1, 1), (2, 3, 2)])
@pytest.mark.parametrize("mode", ["reflect", "mirror", "constant", "wrap"])
def test_exact_one_voxel_and_tiny_axes(shape, mode, rng):
    image = rng.random(shape)
    result = gaussian(image, 1.7, mode=mode, cval=0.5)
    assert_close_to_scipy(
        result, ndi.gaussian_filter(image, 1.7, mode=mode, cval=0.5), np.float64, image
    )


@pytest.mark.parametrize("truncate", [0.1, 1.0, 2.5, 4.0, 6.3])
def test_exact_truncate(truncate, rng):
    image = rng.random((9, 10, 12)).astype(np.float32)
    result = gaussian(image, (1.3, 2.1, 0.7), truncate=truncate)
    expected = ndi.gaussian_filter(image, (1.3, 2.1, 0.7), truncate=truncate)
    assert_close_to_scipy(result, expected, np.float32, image)


def test_weights_are_scipys():
    from scipy.ndimage._filters import _gaussian_kernel1d

    for sigma, truncate in [(0.5, 4.0), (2.0, 4.0), (3.3, 2.2), (8.0, 4.0)]:
        radius = int(truncate * sigma + 0.5)
        ours = _gaussian.gaussian_weights(sigma, truncate)
        assert np.array_equal(ours, _gaussian_kernel1d(sigma, 0, radius)[::-1])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.bool_])
def test_integer_and_bool_input_give_float32(dtype, rng):
    info = np.iinfo(dtype) if dtype != np.bool_ else None
    lo, hi = (0, 2) if info is None else (max(info.min, -5000), min(info.max, 5000) + 1)
    image = rng.integers(lo, hi, size=(9, 12, 10)).astype(dtype)
    result = gaussian(image, 1.5, mode="nearest")
    assert result.dtype == np.float32
    expected = ndi.gaussian_filter(image.astype(np.float64), 1.5, mode="nearest")
    assert_close_to_scipy(result, expected, np.float32, image)


def test_spacing_makes_sigma_physical(rng):
    image = rng.random((8, 9, 10)).astype(np.float32)
    a = gaussian(image, 2.0, spacing=(2.0, 1.0, 0.5))
    b = gaussian(image, (1.0, 2.0, 4.0))
    assert np.array_equal(a, b)
    a = unsharp_mask(image, 3.0, spacing=(3.0, 1.5, 1.0))
    assert np.array_equal(a, unsharp_mask(image, (1.0, 2.0, 3.0)))


def test_nan_and_inf_propagate_like_scipy(rng):
    image = rng.random((10, 12, 14))
    image[4, 5, 6] = np.nan
    image[1, 1, 1] = np.inf
    result = gaussian(image, 1.2)
    expected = ndi.gaussian_filter(image, 1.2)
    assert np.array_equal(np.isnan(result), np.isnan(expected))
    assert np.array_equal(np.isinf(result), np.isinf(expected))
    finite = np.isfinite(expected)
    assert np.abs(result[finite] - expected[finite]).max() < 1e-12


def test_awkward_arrays_just_work(rng):
    base = rng.random((12, 14, 16))
    expected = gaussian(base, 1.5)
    readonly = base.copy()
    readonly.flags.writeable = False
    assert np.array_equal(gaussian(readonly, 1.5), expected)
    assert np.array_equal(gaussian(base.astype(">f8"), 1.5), expected)
    view = base[:, ::2, ::-1]
    assert np.array_equal(gaussian(view, 1.5), gaussian(view.copy(), 1.5))
    fortran = np.asfortranarray(base)
    assert np.array_equal(gaussian(fortran, 1.5), expected)
    assert readonly.flags.writeable is False  # input untouched


def test_out_argument(rng):
    image = rng.random((7, 8, 9)).astype(np.float32)
    expected = gaussian(image, 1.0)
    out = np.empty_like(image)
    assert gaussian(image, 1.0, out=out) is out
    assert np.array_equal(out, expected)
    wide = np.empty(image.shape, np.float64)
    assert gaussian(image, 1.0, out=wide) is wide
    assert np.array_equal(wide, expected.astype(np.float64))
    inplace = image.copy()
    gaussian(inplace, 1.0, out=inplace)
    assert np.array_equal(inplace, expected)
    strided = np.empty((7, 8, 18), np.float32)[:, :, ::2]
    gaussian(image, 1.0, out=strided)
    assert np.array_equal(strided, expected)


# -- streaming: archive volumes bit-identical to in-memory ----------------------------------
STREAM_CASES = [
    ("exact", 1.0, (1, 2, 3)),  # chunks smaller than the halo
    ("exact", (2.0, 0.0, 1.3), (4, 5, 6)),
    ("exact", 3.0, (32, 32, 32)),  # one block
    ("recursive", 2.0, (3, 4, 5)),
    ("recursive", (0.0, 3.0, 2.0), (16, 16, 16)),
    ("recursive", (1.0, 4.0, 0.5), (4, 3, 5)),  # small sigmas use the exact taps
]


@pytest.mark.parametrize("method,sigma,chunks", STREAM_CASES)
@pytest.mark.parametrize("mode", MODES)
def test_streamed_equals_in_memory(archive_path, method, sigma, chunks, mode, rng):
    image = rng.normal(size=(13, 11, 17)).astype(np.float32)
    in_memory = gaussian(image, sigma, mode=mode, cval=0.4, method=method)
    with fastct.open(archive_path, "w") as ar:
        src = ar.create_volume("scans/a/image", image, chunks=chunks)
        dst = ar.create_volume_like("scans/a/smooth", src, dtype=np.float32)
        assert gaussian(src, sigma, mode=mode, cval=0.4, method=method, out=dst) is dst
        streamed_to_memory = gaussian(src, sigma, mode=mode, cval=0.4, method=method)
        dst2 = ar.create_volume(
            "scans/a/smooth2", shape=image.shape, dtype=np.float32, chunks=chunks
        )
        gaussian(image, sigma, mode=mode, cval=0.4, method=method, out=dst2)
    with fastct.open(archive_path) as ar:
        assert np.array_equal(ar["scans/a/smooth"].read(), in_memory)
        assert np.array_equal(ar["scans/a/smooth2"].read(), in_memory)
    assert np.array_equal(streamed_to_memory, in_memory)


@pytest.mark.parametrize("method", ["exact", "recursive"])
@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_streamed_2d_int16_equals_in_memory(archive_path, method, mode, rng):
    image = rng.integers(-1000, 3000, size=(37, 29)).astype(np.int16)
    in_memory = gaussian(image, (3.0, 1.5), mode=mode, cval=-1000, method=method)
    assert in_memory.dtype == np.float32
    with fastct.open(archive_path, "w") as ar:
        src = ar.create_volume("scans/a/slice", image, chunks=(4, 6))
        out = gaussian(src, (3.0, 1.5), mode=mode, cval=-1000, method=method)
    assert np.array_equal(out, in_memory)


@pytest.mark.parametrize("chunks", [(2, 3, 4), (5, 7, 8)])
def test_unsharp_streamed_equals_in_memory(archive_path, chunks, rng):
    image = rng.integers(-1000, 2000, size=(10, 12, 15)).astype(np.int16)
    in_memory = unsharp_mask(image, 1.5, 2.0)
    with fastct.open(archive_path, "w") as ar:
        src = ar.create_volume("scans/a/image", image, chunks=chunks)
        dst = ar.create_volume_like("scans/a/sharp", src, dtype=np.float32)
        unsharp_mask(src, 1.5, 2.0, out=dst)
        assert np.array_equal(dst.read(), in_memory)


def test_recursive_tiles_do_not_depend_on_blocks(monkeypatch, rng):
    """Several tiles per axis, streamed in several blocks: same bits as one call."""
    from fastct.filters._common import run_filter

    image = rng.normal(size=(6, 150, 140)).astype(np.float32)
    sigma = (0.0, 2.0, 2.0)  # halo 8, tile 64: 3 tiles per axis
    whole = gaussian(image, sigma, method="recursive", mode="wrap")
    plans = [_gaussian._pass_plan(s, 4.0) for s in sigma]
    assert [p[:3] for p in plans] == [("skip", 0, 1), ("iir", 8, 64), ("iir", 8, 64)]
    kernel = _gaussian._recursive_block_kernel(plans, "wrap", 0.0)
    for block in [(6, 64, 64), (3, 128, 64), (6, 64, 140)]:
        streamed = run_filter(
            kernel, image, depth=(0, 8, 8), mode="wrap", cval=0.0,
            compute_dtype=np.float32, out_dtype=np.float32, out=None,
            desc="test", block_shape=block,
        )  # fmt: skip
        assert np.array_equal(streamed, whole), block


def test_same_bits_at_one_and_two_threads(rng):
    image = rng.normal(size=(21, 33, 40)).astype(np.float32)
    image[5, 6, 7] = np.nan
    runs = []
    before = numba.get_num_threads()
    for n in (1, 2):
        fastct.set_num_threads(n)
        runs.append(
            [
                gaussian(image, 2.5),
                gaussian(image, (3.0, 1.0, 4.0), method="recursive", mode="constant"),
                unsharp_mask(image, 1.5, 2.0),
                gaussian(image[0].astype(np.float64), 2.0, mode="mirror"),
            ]
        )
        assert numba.get_num_threads() == before  # fastct restores Numba's setting
    for a, b in zip(*runs):
        assert np.array_equal(a, b, equal_nan=True)


# -- recursive ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_recursive_within_one_percent_of_exact(mode):
    image = phantom((64, 72, 80))
    exact = gaussian(image, 8.0, mode=mode)
    rec = gaussian(image, 8.0, mode=mode, method="recursive")
    assert rec.dtype == np.float32
    span = float(np.ptp(exact))
    # The target is 1% away from the border; the boundary rules make it hold everywhere.
    assert np.abs(rec - exact).max() <= 0.01 * span
    inner = (slice(24, -24),) * 3
    assert np.abs(rec[inner] - exact[inner]).max() <= 0.005 * span


def test_recursive_2d_float64_and_per_axis(rng):
    image = phantom((90, 70), np.float64)
    for sigma in (4.0, (6.0, 2.5), (0.0, 5.0)):
        exact = gaussian(image, sigma)
        rec = gaussian(image, sigma, method="recursive")
        assert rec.dtype == np.float64
        assert np.abs(rec - exact).max() <= 0.01 * np.ptp(exact)
    assert np.array_equal(gaussian(image, 0.0, method="recursive"), image)


def test_recursive_small_sigma_axes_use_exact_taps(rng):
    image = phantom((30, 60, 50))
    for sigma in [(0.8, 5.0, 1.2), (1.5, 0.0, 3.0), 1.0]:
        exact = gaussian(image, sigma)
        rec = gaussian(image, sigma, method="recursive")
        assert np.abs(rec - exact).max() <= 0.01 * np.ptp(exact), sigma
    assert np.array_equal(gaussian(image, 1.0, method="recursive"), gaussian(image, 1.0))


def test_recursive_constant_image_stays_constant():
    image = np.full((9, 40, 50), 123.25, np.float64)
    for mode in ("reflect", "nearest", "wrap"):
        rec = gaussian(image, 5.0, method="recursive", mode=mode)
        assert np.abs(rec - 123.25).max() < 1e-9


def test_recursive_variance_and_triggs_sdika_matrix():
    for sigma in (1.0, 3.0, 8.0, 25.0):
        coef, tsm = _gaussian.recursive_coefficients(sigma)
        alpha, a = coef[0], coef[1:]
        k = len(a)
        assert abs(alpha + a.sum() - 1.0) < 1e-12

        def causal(x, init, alpha=alpha, a=a, k=k):
            w = [*init]
            for v in x:
                w.append(alpha * v + sum(a[i] * w[-1 - i] for i in range(k)))
            return np.array(w[k:])

        # impulse response of forward + backward passes, by brute force
        n = int(40 * sigma) + 41
        x = np.zeros(n)
        x[n // 2] = 1.0
        y = causal(causal(x, [0.0] * k)[::-1], [0.0] * k)[::-1]
        pos = np.arange(n) - n // 2
        assert abs(y.sum() - 1.0) < 1e-8
        assert abs((pos**2 * y).sum() - sigma**2) < 1e-6 * sigma**2
        # Triggs-Sdika: anti-causal values after the end for a signal held constant
        state = np.array([0.7, -0.2, 0.4, 0.1])[:k]  # w[N - i] minus the constant
        wtail = [*state[::-1]]
        for _ in range(int(80 * sigma) + 200):
            wtail.append(sum(a[i] * wtail[-1 - i] for i in range(k)))
        wtail = np.array(wtail[k - 1 :])  # w[N], w[N+1], ...
        v = causal(wtail[::-1], [0.0] * k)[::-1]  # anti-causal pass from far away
        assert np.allclose(tsm @ state, v[:k], atol=1e-10)


# -- unsharp mask vs scikit-image ----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("radius,amount", [(1.0, 1.0), (2.0, 0.5), ((1.0, 2.0, 3.0), 2.5)])
def test_unsharp_matches_skimage(dtype, radius, amount, rng):
    from skimage.filters import unsharp_mask as sk_unsharp

    image = (rng.random((10, 13, 16)) * 400 - 100).astype(dtype)
    result = unsharp_mask(image, radius, amount)
    expected = sk_unsharp(image, radius, amount, preserve_range=True)
    assert result.dtype == expected.dtype == dtype
    assert_close_to_scipy(result, expected, dtype, image)


def test_unsharp_2d_and_modes(rng):
    from skimage.filters import gaussian as sk_gaussian

    image = rng.random((30, 41)).astype(np.float32)
    for mode in MODES:
        blur = sk_gaussian(image, sigma=1.5, mode=mode, cval=0.0, preserve_range=True)
        expected = image + (image - blur) * 1.7
        assert_close_to_scipy(unsharp_mask(image, 1.5, 1.7, mode=mode), expected, np.float32, image)


def test_unsharp_integer_input_does_not_overflow(rng):
    image = np.zeros((5, 20, 20), np.uint8)
    image[:, 8:12, 8:12] = 255
    result = unsharp_mask(image, 2.0, 3.0)
    assert result.dtype == np.float32
    assert result.max() > 255 and result.min() < 0
    expected = image + (image - ndi.gaussian_filter(image.astype(np.float64), 2.0)) * 3.0
    assert_close_to_scipy(result, expected, np.float32, image)


# -- property test for edge handling -------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 9), min_size=2, max_size=3),
    sigma=st.floats(0.0, 6.0),
    mode=st.sampled_from(MODES),
    cval=st.floats(-10, 10),
    truncate=st.floats(0.2, 5.0),
    seed=st.integers(0, 2**16),
)
def test_edges_property(shape, sigma, mode, cval, truncate, seed):
    image = np.random.default_rng(seed).normal(size=shape)
    result = gaussian(image, sigma, mode=mode, cval=cval, truncate=truncate)
    expected = ndi.gaussian_filter(image, sigma, mode=mode, cval=cval, truncate=truncate)
    assert_close_to_scipy(result, expected, np.float64, image)


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,exc,words",
    [
        ({"sigma": -1.0}, ValueError, "sigma"),
        ({"sigma": np.nan}, ValueError, "sigma"),
        ({"sigma": np.inf}, ValueError, "sigma"),
        ({"sigma": (1.0, 2.0)}, ValueError, "sigma"),
        ({"sigma": "2"}, TypeError, "sigma"),
        ({"sigma": 1.0, "spacing": (1.0, 1.0)}, ValueError, "spacing"),
        ({"sigma": 1.0, "spacing": (1.0, 0.0, 1.0)}, ValueError, "spacing"),
        ({"sigma": 1.0, "mode": "edge"}, ValueError, "mode"),
        ({"sigma": 1.0, "mode": 3}, TypeError, "mode"),
        ({"sigma": 1.0, "method": "fft"}, ValueError, "method"),
        ({"sigma": 1.0, "truncate": 0.0}, ValueError, "truncate"),
        ({"sigma": 1.0, "truncate": -2.0}, ValueError, "truncate"),
        ({"sigma": 1.0, "truncate": np.nan}, ValueError, "truncate"),
        ({"sigma": 1.0, "cval": "zero"}, TypeError, "cval"),
        ({"sigma": 1.0, "out": np.empty((3, 3, 3), np.float32)}, ValueError, "out"),
        ({"sigma": 1.0, "out": np.empty((4, 5, 6), np.int16)}, TypeError, "out"),
        ({"sigma": 1.0, "out": [1, 2]}, TypeError, "out"),
    ],
)
def test_gaussian_bad_arguments(kwargs, exc, words):
    image = np.zeros((4, 5, 6), np.float32)
    with pytest.raises(exc, match=words):
        gaussian(image, **kwargs)


@pytest.mark.parametrize(
    "image,exc",
    [
        (np.zeros((0, 4, 4)), ValueError),
        (np.zeros(5), ValueError),
        (np.zeros((2, 2, 2, 2)), ValueError),
        (np.zeros((3, 3), np.complex64), TypeError),
        (np.array([["a", "b"]]), TypeError),
    ],
)
def test_gaussian_bad_images(image, exc):
    with pytest.raises(exc, match="image"):
        gaussian(image, 1.0)


def test_unsharp_bad_arguments():
    image = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="radius"):
        unsharp_mask(image, -1.0)
    with pytest.raises(ValueError, match="amount"):
        unsharp_mask(image, 1.0, np.nan)
    with pytest.raises(TypeError, match="amount"):
        unsharp_mask(image, 1.0, "a lot")
    with pytest.raises(ValueError, match="truncate"):
        unsharp_mask(image, 1.0, truncate=0)
    with pytest.raises(ValueError, match="mode"):
        unsharp_mask(image, 1.0, mode="nope")

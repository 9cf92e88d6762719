"""The plain references of tests/naive.py: against their own definitions and against fastct."""

import naive
import numpy as np
import pytest
import scipy.ndimage as ndi
from naive import MODES

import fastct
from fastct.datasets import ChestScene, chest_phantom


def test_modes_are_scipys():
    image = np.arange(6.0)
    for mode in MODES:  # scipy knows each of them
        ndi.correlate1d(image, [1.0, 0.0, 0.0], mode=mode)
    assert len(set(MODES)) == 5


# -- recursive Gaussian -----------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [2.0, 3.5, 9.0])
def test_yvv_pair_is_unit_gain_with_variance_sigma_squared(sigma):
    """The reference's own definition: impulse response of the forward + backward
    passes sums to 1 and has variance sigma**2; and it is close to the Gaussian."""
    n = int(40 * sigma) + 41
    x = np.zeros((n, 1))
    x[n // 2] = 1.0
    h = naive.yvv_window(x, naive.yvv_coefficients(sigma))[:, 0]
    pos = np.arange(n) - n // 2
    assert abs(h.sum() - 1.0) < 1e-12
    assert abs((pos**2 * h).sum() - sigma**2) < 1e-9 * sigma**2
    gauss = np.exp(-0.5 * pos**2 / sigma**2) / (sigma * np.sqrt(2 * np.pi))
    assert np.abs(h - gauss).max() < 0.01 * gauss.max()


def test_recursive_reference_with_small_sigmas_is_the_exact_filter(rng):
    image = rng.normal(size=(7, 9, 11))
    for mode in MODES:
        got = naive.recursive_gaussian(image, (1.5, 0.0, 0.8), mode=mode, cval=2.0)
        expected = ndi.gaussian_filter(image, (1.5, 0.0, 0.8), mode=mode, cval=2.0)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)


RECURSIVE_CASES = [
    ((40, 150), (2.0, 3.0)),  # x: 3 tiles of 64 (margin 12); y: one tile, window past both ends
    ((5, 9, 70), (1.2, 2.5, 2.0)),  # z: the exact taps (sigma < 2); y: margin larger than the axis
    ((3, 130), (0.0, 8.0)),  # margin 32: a 128-voxel tile and a 2-voxel one
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,sigma", RECURSIVE_CASES)
def test_recursive_gaussian_equals_fastct(shape, sigma, mode, dtype, rng):
    """fastct.gaussian(method='recursive') against the NumPy recursion.

    Tolerance, relative to the largest input magnitude: float64 1e-11; float32 4
    float32 ulps (4 * 2**-23 ~ 4.8e-7). The two compute the same quantities
    differently: fastct solves the pole scale by bisection and starts the backward
    pass with the closed-form Triggs–Sdika matrix, the reference uses Brent's method
    and a long constant tail (coefficients agree to ~1e-16), and fastct sums the exact
    taps (sigma < 2 axes) in the result dtype, the reference in float64. The recursion
    amplifies coefficient differences as its poles approach 1 (large sigma). In
    float32 every pass is rounded to float32 in both. Measured: float64 2e-15 for
    sigma <= 3 and 2e-13 at sigma 8; float32 at most 0.3 ulp of the input range.
    """
    image = (rng.normal(size=shape) * 300 + 100).astype(dtype)
    got = fastct.gaussian(image, sigma, method="recursive", mode=mode, cval=-40.5)
    expected = naive.recursive_gaussian(image, sigma, mode=mode, cval=-40.5)
    assert got.dtype == expected.dtype == dtype
    scale = float(np.abs(image).max())
    rel = 1e-11 if dtype == np.float64 else 4 * 2.0**-23
    np.testing.assert_allclose(got, expected, rtol=0, atol=rel * scale)


# -- phantom renderer ---------------------------------------------------------------------------------
def assert_renders_equal(ph, clean, lung, labels):
    """Masks and labels identical; HU equal after the renderer's rounding to int16.

    The clean HU (float64 sums, stored as float32) agrees to about 1e-4 HU: the
    kernel takes its cosines from the C library (``math.cos``), the reference from
    NumPy, and the two may differ in the last bit.
    """
    assert np.array_equal(ph.lung_mask, lung)
    assert np.array_equal(ph.nodule_labels, labels)
    rounded = np.clip(np.rint(clean), -1024, 3071).astype(np.int16)
    assert np.array_equal(ph.image, rounded)


def test_phantom_renderer_equals_chest_phantom():
    """The whole chest on a coarse grid (every organ, both lungs, the airways)."""
    ph = chest_phantom(shape=(8, 12, 12), seed=1, n_nodules=3, noise_hu=0)
    scene = ChestScene.generate(1, n_nodules=3)
    clean, lung, labels = naive.render_phantom(scene, ph.image.shape, ph.spacing, ph.origin)
    assert lung.any() and not lung.all()
    assert_renders_equal(ph, clean, lung, labels)


@pytest.mark.parametrize("seed", [0, 5])
def test_phantom_renderer_equals_render_around_a_nodule(seed):
    """A fine grid around each nodule: labels, part-solid cores, lung texture, vessels."""
    scene = ChestScene.generate(seed, n_nodules=2)
    spacing = (1.3, 0.9, 1.1)
    for nod in scene.nodules:
        shape = (9, 11, 10)
        origin = tuple(c - (n // 2) * s for c, n, s in zip(nod.center_mm, shape, spacing))
        ph = scene.render(shape, spacing, origin, noise_hu=0)
        clean, lung, labels = naive.render_phantom(scene, shape, spacing, origin)
        assert (labels == nod.id).any()
        assert_renders_equal(ph, clean, lung, labels)

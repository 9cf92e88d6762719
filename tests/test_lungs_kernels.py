"""The lung mask's compiled steps against the SciPy / NumPy expressions they replace."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from fastct._kernels.lungs import dilate_in_plane, erode_in_plane
from fastct.lungs import _SLICE_STRUCTURE, _downsample, _fill_holes_in_slices

SHAPES = [(1, 1, 1), (1, 7, 1), (3, 1, 9), (5, 17, 23), (12, 40, 33)]


def _blobs(shape, density, seed):
    rng = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(rng.random(shape), 1.5)
    return noise > np.quantile(noise, 1 - density) if noise.size > 1 else noise > 0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("density", [0.0, 0.3, 0.7, 1.0])
def test_fill_holes_in_slices_equals_scipy(shape, density):
    for seed in range(3):
        mask = _blobs(shape, density, seed)
        expected = ndi.binary_fill_holes(mask, structure=_SLICE_STRUCTURE)
        np.testing.assert_array_equal(_fill_holes_in_slices(mask), expected)


def _disk(k, spacing, r):
    yy, xx = np.mgrid[-k[0] : k[0] + 1, -k[1] : k[1] + 1]
    return ((yy * spacing[0]) ** 2 + (xx * spacing[1]) ** 2 <= r * r)[None]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(
    ("k", "spacing", "r"),
    [((1, 1), (1.0, 1.0), 1.0), ((2, 2), (1.4, 1.4), 4.0), ((1, 3), (2.0, 0.9), 2.9)],
)
def test_erode_dilate_in_plane_equal_scipy(shape, k, spacing, r):
    disk = _disk(k, spacing, r)
    offsets = np.argwhere(disk[0]).astype(np.int64) - np.array(k, dtype=np.int64)
    for seed, density in enumerate((0.2, 0.5, 0.9)):
        mask = _blobs(shape, density, seed)
        got = np.empty_like(mask)
        erode_in_plane(mask, offsets, got)
        np.testing.assert_array_equal(got, ndi.binary_erosion(mask, structure=disk))
        dilate_in_plane(mask, offsets, got)
        np.testing.assert_array_equal(got, ndi.binary_dilation(mask, structure=disk))


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.uint16, np.int32])
@pytest.mark.parametrize("factors", [(1, 1, 1), (2, 2, 2), (1, 3, 2), (3, 1, 4)])
def test_downsample_native_equals_float_path(dtype, factors):
    # integer input takes the compiled pass, float32 input NumPy's: same bits
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -3024), min(info.max, 3000)
    img = rng.integers(lo, hi, size=(7, 11, 13), endpoint=True).astype(dtype)
    if dtype == np.int32:
        img[0, 3, :4] = [2**31 - 1, 2**30 + 1, -(2**31), 2**24 + 1]  # float32 rounds these
    if info.min < 0:
        img[:, :2, :] = -2048  # scanner padding below the HU floor
    got = _downsample(img, factors)
    expected = _downsample(img.astype(np.float32), factors)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))


def test_downsample_field_of_view_padding_takes_the_general_path():
    # planes whose corners hold one plausible-tissue value are unpadded by region
    img = np.full((4, 12, 12), 0, dtype=np.int16)
    img[:, 3:9, 3:9] = -800
    img[1] = 50  # corners 50 everywhere: a padded plane
    got = _downsample(img, (2, 2, 2))
    expected = _downsample(img.astype(np.float32), (2, 2, 2))
    np.testing.assert_array_equal(got, expected)
    assert got.min() < -900  # the padding became air

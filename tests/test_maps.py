"""The probability painting kernel against NumPy fancy indexing."""

import numpy as np
import pytest

from fastct._kernels.lut import painted
from fastct.pipeline._maps import probability_map


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64])
@pytest.mark.parametrize("shape", [(0, 3, 4), (1, 1, 1), (5, 7, 9)])
def test_painted_equals_numpy(dtype, shape):
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    labels = rng.integers(max(info.min, -5), 40, size=shape).astype(dtype)
    lut = rng.random(30).astype(np.float32)
    inside = (labels.astype(np.int64) >= 0) & (labels.astype(np.int64) < 30)
    expected = np.where(inside, lut[np.clip(labels.astype(np.int64), 0, 29)], np.float32(0))
    got = painted(labels, lut)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    if labels.size:
        np.testing.assert_array_equal(probability_map(labels, lut, None), expected)


@pytest.mark.parametrize("threads", [1, 2])
def test_max_lookup_by_label_equals_region_features_max(threads):
    import numba

    from fastct._kernels.lut import max_lookup_by_label
    from fastct.features import region_features

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 40, (9, 11, 13)).astype(np.int32)
    labels[labels == 7] = 0  # an absent label
    keys = rng.integers(0, 25, labels.shape).astype(np.int32)
    lut_a = rng.normal(0, 3, 25).astype(np.float32)
    lut_b = rng.random(25).astype(np.float32)
    a, b = max_lookup_by_label(labels, keys, lut_a, lut_b, 40, threads)
    ids = np.unique(labels[labels > 0])
    for got, lut in ((a, lut_a), (b, lut_b)):
        t = region_features(labels, lut[keys], properties=["max"], percentiles=())
        np.testing.assert_array_equal(t["label"], ids)
        np.testing.assert_array_equal(got[ids].astype(np.float64), t["max"])
        assert got[7] == -np.inf
    assert numba.get_num_threads() >= 1

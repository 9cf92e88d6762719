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

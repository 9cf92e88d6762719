"""Property tests of the filters (gaussian exact/recursive, median, unsharp_mask,
hessian_blob): random shapes (1-voxel and 0-size axes), dtypes, modes and parameters
against scipy.ndimage / scikit-image; chunked (HDF5 and Zarr, random chunk shapes and
memory budgets) == in memory bit for bit; the same bits at 1 and 2 threads."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.filters
from hypothesis import strategies as st
from property_profiles import (
    MODES,
    chunking,
    empty_shapes,
    memory_budget,
    property_tests,
    random_image,
    same_bits,
    shapes,
    threads,
)
from test_blob import reference as blob_reference

import fastct
from fastct.filters import hessian_blob

SMOOTH_DTYPES = [np.uint8, np.int16, np.uint16, np.float32, np.float64, np.bool_]
MEDIAN_DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.float32, np.float64, np.bool_]


def _close(result, expected, image, rel):
    """max |diff| <= rel * the data's range (or magnitude for a constant image)."""
    expected = np.asarray(expected, np.float64)
    scale = max(
        float(np.ptp(image.astype(np.float64))) if image.size else 0.0,
        float(np.ptp(expected)),
        0.1 * float(np.abs(expected).max()),
        1e-30,
    )
    diff = float(np.abs(result.astype(np.float64) - expected).max())
    assert diff <= rel * scale, (diff, scale)


def _sigma(data, ndim, hi=4.0):
    one = st.floats(0.0, hi)
    if data.draw(st.booleans(), label="per-axis sigma"):
        return tuple(data.draw(st.lists(one, min_size=ndim, max_size=ndim), label="sigma"))
    return data.draw(one, label="sigma")


def _smoothing_dtype(dtype):
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


# -- against the references -------------------------------------------------------------
def _gaussian_exact(data):
    """gaussian(method='exact') == scipy.ndimage.gaussian_filter (dtype policy applied)."""
    shape = shapes(data)
    dtype = data.draw(st.sampled_from(SMOOTH_DTYPES), label="dtype")
    image = random_image(data, shape, dtype)
    sigma = _sigma(data, len(shape))
    mode = data.draw(st.sampled_from(MODES), label="mode")
    cval = data.draw(st.floats(-50, 50), label="cval")
    truncate = data.draw(st.floats(0.5, 5.0), label="truncate")
    got = fastct.gaussian(image, sigma, mode=mode, cval=cval, truncate=truncate)
    assert got.dtype == _smoothing_dtype(dtype) and got.shape == shape
    ref = ndi.gaussian_filter(image.astype(np.float64), sigma, mode=mode, cval=cval,
                              truncate=truncate)  # fmt: skip
    _close(got, ref, image, 1e-5 if got.dtype == np.float32 else 1e-12)


def _gaussian_recursive(data):
    """gaussian(method='recursive'): dtype policy, constant images stay constant, and
    the result is within 2 % of the data range of the exact Gaussian."""
    shape = shapes(data)
    dtype = data.draw(st.sampled_from([np.int16, np.float32, np.float64]), label="dtype")
    image = random_image(data, shape, dtype)
    sigma = _sigma(data, len(shape), hi=6.0)
    mode = data.draw(st.sampled_from(MODES), label="mode")
    got = fastct.gaussian(image, sigma, mode=mode, method="recursive")
    assert got.dtype == _smoothing_dtype(dtype) and got.shape == shape
    assert np.all(np.isfinite(got))
    exact = fastct.gaussian(image, sigma, mode=mode).astype(np.float64)
    scale = max(float(np.ptp(image.astype(np.float64))), float(np.abs(image).max()), 1.0)
    assert np.abs(got - exact).max() <= 0.02 * scale
    flat = np.full(shape, 37, dtype)
    if mode != "constant":
        np.testing.assert_allclose(
            fastct.gaussian(flat, sigma, mode=mode, method="recursive"), 37, rtol=1e-5
        )


def _median(data):
    """median == scipy.ndimage.median_filter exactly, same dtype."""
    shape = shapes(data)
    dtype = data.draw(st.sampled_from(MEDIAN_DTYPES), label="dtype")
    image = random_image(data, shape, dtype)
    if data.draw(st.booleans(), label="per-axis size"):
        size = tuple(data.draw(st.lists(st.integers(1, 5), min_size=len(shape),
                                        max_size=len(shape)), label="size"))  # fmt: skip
    else:
        size = data.draw(st.integers(1, 5), label="size")
    mode = data.draw(st.sampled_from(MODES), label="mode")
    cval = 0 if dtype == np.bool_ else data.draw(st.integers(0, 100), label="cval")
    got = fastct.median(image, size, mode=mode, cval=cval)
    assert same_bits(got, ndi.median_filter(image, size, mode=mode, cval=cval))


def _unsharp(data):
    """unsharp_mask == skimage.filters.unsharp_mask(preserve_range=True) on floats;
    integers are computed in float32."""
    shape = shapes(data)
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.int16, np.uint8]), label="dt")
    image = random_image(data, shape, dtype)
    radius = data.draw(st.floats(0.0, 4.0), label="radius")
    amount = data.draw(st.floats(-2.0, 5.0), label="amount")
    mode = data.draw(st.sampled_from(MODES), label="mode")
    got = fastct.unsharp_mask(image, radius, amount, mode=mode)
    assert got.dtype == _smoothing_dtype(dtype) and got.shape == shape
    as_float = image.astype(np.float64)
    if mode == "reflect":  # scikit-image's own boundary
        ref = skimage.filters.unsharp_mask(as_float, radius, amount, preserve_range=True)
    else:  # the same formula with scipy's Gaussian in that mode
        ref = as_float + amount * (as_float - ndi.gaussian_filter(as_float, radius, mode=mode))
    _close(got, ref, image, (1e-5 if got.dtype == np.float32 else 1e-12) * (1 + abs(amount)))


def _blob(data):
    """hessian_blob == pad + scipy Gaussian + central differences (tests/test_blob.py)."""
    shape = shapes(data, ndim=(3,), lo=2)
    image = random_image(data, shape, np.float64)
    scale = data.draw(st.floats(0.5, 3.0), label="scale")
    spacing = tuple(data.draw(st.lists(st.floats(0.5, 2.0), min_size=3, max_size=3)))
    mode = data.draw(st.sampled_from(MODES), label="mode")
    got = hessian_blob(image, scale, spacing=spacing, mode=mode, cval=-3.0)
    ref = blob_reference(image, scale, spacing, mode=mode, cval=-3.0)
    assert got.shape == shape and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-7, atol=1e-7 * max(np.abs(ref).max(), 1.0))


test_gaussian_exact, test_gaussian_exact_fuzz = property_tests(_gaussian_exact)
test_gaussian_recursive, test_gaussian_recursive_fuzz = property_tests(_gaussian_recursive)
test_median, test_median_fuzz = property_tests(_median)
test_unsharp, test_unsharp_fuzz = property_tests(_unsharp)
test_blob, test_blob_fuzz = property_tests(_blob, fast=6)


# -- 0-size axes: a ValueError naming the parameter, never a crash ----------------------
OPERATIONS = {
    "gaussian": lambda a: fastct.gaussian(a, 1.0),
    "gaussian-recursive": lambda a: fastct.gaussian(a, 3.0, method="recursive"),
    "median": lambda a: fastct.median(a, 3),
    "unsharp_mask": lambda a: fastct.unsharp_mask(a, 1.0, 1.0),
    "hessian_blob": lambda a: hessian_blob(a, 1.0),
}


def _empty_axes(data):
    """An image with a 0-size axis is refused with a ValueError naming ``image``."""
    shape = empty_shapes(data)
    name = data.draw(st.sampled_from(sorted(OPERATIONS)), label="operation")
    if name == "hessian_blob" and len(shape) != 3:
        shape = (*shape, 2)[:3] if len(shape) < 3 else shape
    image = np.zeros(shape, data.draw(st.sampled_from([np.float32, np.int16, np.uint8])))
    with pytest.raises(ValueError, match=r"image must not have an empty axis"):
        OPERATIONS[name](image)


test_empty_axes, test_empty_axes_fuzz = property_tests(_empty_axes, fuzz=100)


# -- streamed == in memory, bit for bit ---------------------------------------------------
def _run(name, x, out=None):
    if name == "gaussian":
        return fastct.gaussian(x, 1.3, mode="mirror", out=out)
    if name == "gaussian-recursive":
        return fastct.gaussian(x, (2.5, 0.7, 3.5)[-x.ndim :], mode="nearest", method="recursive",
                               out=out)  # fmt: skip
    if name == "median":
        return fastct.median(x, (3, 1, 4)[-x.ndim :], mode="wrap", out=out)
    if name == "unsharp_mask":
        return fastct.unsharp_mask(x, 1.5, 2.0, mode="constant", out=out)
    return hessian_blob(x, 1.2, mode="reflect", out=out)


def _streamed(data):
    """On archive volumes (HDF5 or Zarr, random chunks, tiny to large memory budget,
    1 or 2 threads) every filter gives the in-memory bits."""
    name = data.draw(st.sampled_from(sorted(OPERATIONS)), label="operation")
    shape = shapes(data, ndim=(3,) if name == "hessian_blob" else (2, 3), hi=12)
    dtype = data.draw(st.sampled_from([np.int16, np.float32, np.uint8]), label="dtype")
    image = random_image(data, shape, dtype)
    expected = _run(name, image)
    chunks, budget, store = chunking(data, shape)
    out_chunks = tuple(data.draw(st.integers(1, n)) for n in shape)
    n_threads = data.draw(st.sampled_from([1, 2]), label="threads")
    with tempfile.TemporaryDirectory() as tmp, memory_budget(budget), threads(n_threads):
        with fastct.open(Path(tmp) / store, "w") as ar:
            vol = ar.create_volume("scans/a/image", image, chunks=chunks)
            out = ar.create_volume("out", shape=shape, dtype=expected.dtype, chunks=out_chunks)
            assert _run(name, vol, out=out) is out
            assert same_bits(out.read(), expected)
            assert same_bits(_run(name, vol), expected)  # Volume in, array out


test_streamed, test_streamed_fuzz = property_tests(_streamed, fast=8, fuzz=150)


def _threads(data):
    """1 and 2 threads give the same bits."""
    name = data.draw(st.sampled_from(sorted(OPERATIONS)), label="operation")
    shape = shapes(data, ndim=(3,), hi=20)
    image = random_image(data, shape, data.draw(st.sampled_from([np.int16, np.float32])))
    with threads(1):
        one = _run(name, image)
    with threads(2):
        two = _run(name, image)
    assert same_bits(one, two)


test_threads, test_threads_fuzz = property_tests(_threads, fuzz=150)

"""Property tests of SLIC (2-D and 3-D) and region_features: random shapes (1-voxel and
0-size axes), dtypes and parameters against scikit-image / scipy.ndimage; archive
volumes (random chunk shapes) == in memory; the same bits at 1 and 2 threads."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import strategies as st
from naive import region_features_reference
from property_profiles import (
    empty_shapes,
    memory_budget,
    property_tests,
    random_image,
    same_bits,
    shapes,
    threads,
)
from test_features import assert_matches_reference, assert_tables_identical

import fastct

skimage_seg = pytest.importorskip("skimage.segmentation")

SLIC_DTYPES = [np.float32, np.float64, np.uint8, np.int16, np.uint16, np.bool_]


def _slic_case(data):
    shape = shapes(data, ndim=(2, 3), lo=1, hi=14)
    dtype = data.draw(st.sampled_from(SLIC_DTYPES), label="dtype")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    # piecewise constant + noise: SLIC has something to find, ties happen
    image = (rng.integers(0, 3, shape) * 40 + rng.normal(0, 5, shape)).astype(np.float64)
    image = image > 40 if dtype == np.bool_ else image.astype(dtype)
    kw = {
        "n_segments": data.draw(st.integers(1, 30), label="n_segments"),
        "compactness": data.draw(st.sampled_from([0.01, 0.1, 1.0, 10.0]), label="compactness"),
        "max_num_iter": data.draw(st.integers(1, 6), label="max_num_iter"),
        "sigma": data.draw(st.sampled_from([0, 0.5, 1.0]), label="sigma"),
        "enforce_connectivity": data.draw(st.booleans(), label="enforce_connectivity"),
        "slic_zero": data.draw(st.booleans(), label="slic_zero"),
        "start_label": data.draw(st.sampled_from([0, 1]), label="start_label"),
    }
    if data.draw(st.booleans(), label="spacing"):
        kw["spacing"] = tuple(data.draw(st.lists(st.sampled_from([0.5, 1.0, 2.5]),
                                                 min_size=len(shape), max_size=len(shape))))  # fmt: skip
    return image, kw


def _slic(data):
    """slic == skimage.segmentation.slic (channel_axis=None), label for label."""
    image, kw = _slic_case(data)
    got = fastct.slic(image, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage's own notes on tiny images
        ref = skimage_seg.slic(image, channel_axis=None, **kw)
    assert got.dtype == np.int32 and got.shape == image.shape
    np.testing.assert_array_equal(got, ref)


def _slic_threads(data):
    """slic gives the same labels at 1 and 2 threads."""
    image, kw = _slic_case(data)
    with threads(1):
        one = fastct.slic(image, **kw)
    with threads(2):
        two = fastct.slic(image, **kw)
    assert same_bits(one, two)


test_slic, test_slic_fuzz = property_tests(_slic)
test_slic_threads, test_slic_threads_fuzz = property_tests(_slic_threads, fast=6)


# -- region_features ----------------------------------------------------------------------
LABEL_DTYPES = [np.uint8, np.int16, np.uint16, np.int32, np.int64, np.bool_]
IMAGE_DTYPES = [np.float32, np.float64, np.int16, np.uint8, np.uint16]


def _features_case(data, ndim=(2, 3)):
    shape = shapes(data, ndim=ndim, hi=10)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    n = data.draw(st.integers(1, 6), label="labels")
    ldtype = data.draw(st.sampled_from(LABEL_DTYPES), label="label dtype")
    values = rng.integers(0, n + 1, shape) * data.draw(st.sampled_from([1, 7]), label="step")
    labels = (values > 0) if ldtype == np.bool_ else values.astype(ldtype)
    labels.flat[rng.integers(labels.size)] = True if ldtype == np.bool_ else 7  # >= 1 region
    image = random_image(data, shape, data.draw(st.sampled_from(IMAGE_DTYPES), label="dtype"))
    spacing = tuple(data.draw(st.lists(st.sampled_from([0.5, 1.0, 2.5]), min_size=len(shape),
                                       max_size=len(shape)), label="spacing"))  # fmt: skip
    origin = tuple(data.draw(st.lists(st.floats(-100, 100), min_size=len(shape),
                                      max_size=len(shape)), label="origin"))  # fmt: skip
    return labels, image, spacing, origin


def _features(data):
    """region_features == scipy.ndimage / skimage.measure / NumPy (tests/naive.py)."""
    labels, image, spacing, origin = _features_case(data)
    with np.errstate(all="ignore"):
        table = fastct.region_features(labels, image, spacing=spacing, origin=origin)
    if min(labels.shape) >= 2:
        with np.errstate(all="ignore"):
            ref = region_features_reference(labels.astype(np.int64), image, spacing, origin)
        assert_matches_reference(table, ref, labels.ndim)
        return
    # a 1-voxel axis (the reference's numpy.gradient needs 2): the basic columns
    lab = labels.astype(np.int64)
    img = image.astype(np.float64)
    index = np.unique(lab[lab > 0])
    np.testing.assert_array_equal(table["label"], index)
    np.testing.assert_array_equal(table["count"], ndi.sum(np.ones_like(img), lab, index))
    np.testing.assert_array_equal(table["min"], ndi.minimum(img, lab, index))
    np.testing.assert_array_equal(table["max"], ndi.maximum(img, lab, index))
    np.testing.assert_allclose(table["mean"], ndi.mean(img, lab, index), rtol=1e-12)
    for axis, name in enumerate("zyx"[-lab.ndim :]):
        centre = np.array(ndi.center_of_mass(np.ones_like(img), lab, index))[:, axis]
        mm = origin[axis] + centre * spacing[axis]
        np.testing.assert_allclose(table[f"centroid_{name}_mm"], mm, rtol=1e-12, atol=1e-9)


def _features_streamed(data):
    """Archive volumes (HDF5 or Zarr, random chunks and slab heights, 1 or 2 threads)
    give the in-memory table, bit for bit."""
    labels, image, spacing, origin = _features_case(data, ndim=(3,))
    labels = labels.astype(np.int32)
    with np.errstate(all="ignore"):
        expected = fastct.region_features(labels, image, spacing=spacing, origin=origin)
    chunks = tuple(data.draw(st.integers(1, n), label="chunk") for n in labels.shape)
    planes = data.draw(st.sampled_from([None, 1, 2, 5]), label="block_planes")
    store = data.draw(st.sampled_from(["a.h5", "a.zarr"]), label="store")
    n_threads = data.draw(st.sampled_from([1, 2]), label="threads")
    with tempfile.TemporaryDirectory() as tmp, threads(n_threads), memory_budget(2_000):
        with fastct.open(Path(tmp) / store, "w") as ar:
            lv = ar.create_volume("l", labels, chunks=chunks, spacing=spacing, origin=origin)
            iv = ar.create_volume("i", image, chunks=chunks[::-1], spacing=spacing, origin=origin)
            with np.errstate(all="ignore"):
                got = fastct.region_features(lv, iv, block_planes=planes)
    assert_tables_identical(got, expected)


test_features, test_features_fuzz = property_tests(_features)
test_features_streamed, test_features_streamed_fuzz = property_tests(_features_streamed, fast=6)


def _empty(data):
    """0-size axes: a ValueError naming the parameter (image, labels)."""
    shape = empty_shapes(data)
    which = data.draw(st.sampled_from(["slic", "features"]), label="operation")
    if which == "slic":
        with pytest.raises(ValueError, match=r"image must not have an empty axis"):
            fastct.slic(np.zeros(shape, np.float32), 4)
    else:
        with pytest.raises(ValueError, match=r"labels must not have an empty axis"):
            fastct.region_features(np.zeros(shape, np.int32), np.zeros(shape, np.float32))


test_empty_axes, test_empty_axes_fuzz = property_tests(_empty, fast=6, fuzz=100)

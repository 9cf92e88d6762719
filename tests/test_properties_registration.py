"""Property tests of the registration parts that are cheap to run many times: the
transforms (matrix form, inverse, composition, serialisation), resample (against
scipy.ndimage.affine_transform; streamed == in memory; 1 vs 2 threads), the metric
evaluation inside register (same bits at 1 and 2 threads) and the lung mask (archive
volume == in memory; 1 vs 2 threads; 0-size axes refused)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st
from naive import resample_reference
from property_profiles import (
    chunking,
    empty_shapes,
    memory_budget,
    property_tests,
    random_image,
    same_bits,
    shapes,
    threads,
)

import fastct
from fastct import lungs
from fastct.transforms import RigidTransform, SimilarityTransform, load_transform


def _transform(data, ndim):
    if ndim == 3:
        rot = np.array(data.draw(st.lists(st.floats(-0.5, 0.5), min_size=3, max_size=3)))
    else:
        rot = data.draw(st.floats(-np.pi, np.pi), label="angle")
    translation = data.draw(st.lists(st.floats(-5, 5), min_size=ndim, max_size=ndim))
    center = data.draw(st.lists(st.floats(-20, 20), min_size=ndim, max_size=ndim))
    if data.draw(st.booleans(), label="similarity"):
        scale = data.draw(st.floats(0.5, 2.0), label="scale")
        return SimilarityTransform(ndim, rotation=rot, translation=translation, center=center,
                                   scale=scale)  # fmt: skip
    return RigidTransform(ndim, rotation=rot, translation=translation, center=center)


def _transforms(data):
    """apply == the homogeneous matrix; inverse undoes; compose == matrix product;
    to_dict/from_dict and save/load (.json, .tfm) give the same transform."""
    ndim = data.draw(st.sampled_from([2, 3]), label="ndim")
    a, b = _transform(data, ndim), _transform(data, ndim)
    n = data.draw(st.integers(0, 5), label="points")
    pts = np.array(data.draw(st.lists(st.lists(st.floats(-100, 100), min_size=ndim,
                                                 max_size=ndim), min_size=n, max_size=n)),
                   dtype=np.float64).reshape(n, ndim)  # fmt: skip
    homog = np.c_[pts, np.ones(n)] @ a.matrix.T
    np.testing.assert_allclose(a.apply(pts), homog[:, :ndim], atol=1e-9)
    np.testing.assert_allclose(a.inverse().apply(a.apply(pts)), pts, atol=1e-8)
    np.testing.assert_allclose(a.compose(b).matrix, a.matrix @ b.matrix, atol=1e-9)
    again = type(a).from_dict(a.to_dict())
    np.testing.assert_allclose(again.matrix, a.matrix, atol=1e-12)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("t.json", "t.tfm"):
            a.save(Path(tmp) / name)
            np.testing.assert_allclose(load_transform(Path(tmp) / name).matrix, a.matrix,
                                       atol=1e-9)  # fmt: skip
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["t.json", "t.tfm"]


test_transforms, test_transforms_fuzz = property_tests(_transforms)


def _resample_case(data):
    shape = shapes(data, hi=10)
    ndim = len(shape)
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.int16, np.uint8]), label="dt")
    image = random_image(data, shape, dtype)
    t = _transform(data, ndim)
    out_shape = shapes(data, ndim=(ndim,), hi=10)
    grid = st.lists(st.sampled_from([0.5, 1.0, 1.7]), min_size=ndim, max_size=ndim)
    kw = {
        "shape": out_shape,
        "spacing": tuple(data.draw(grid, label="spacing")),
        "moving_spacing": tuple(data.draw(grid, label="moving spacing")),
        "origin": tuple(data.draw(st.lists(st.floats(-3, 3), min_size=ndim, max_size=ndim))),
        "order": data.draw(st.sampled_from([0, 1, 3]), label="order"),
        "cval": data.draw(st.floats(-10, 10), label="cval"),
    }
    if image.dtype.kind in "iu":  # how x.5 rounds into an integer output: not compared here
        kw["cval"] = float(round(kw["cval"]))
    return image, t, kw


def _clear_of_edges(image, t, kw, order):
    """Output voxels whose sampling point is not within rounding of the moving image's
    edges (where fastct, like ITK, counts a point 1e-12 voxel outside as inside and scipy
    does not) nor, for order 0, at a rounding tie or between the edge and half a voxel
    beyond it (ITK's nearest-neighbour extent vs scipy's)."""
    ndim, eps = image.ndim, 1e-6
    msp, sp = np.asarray(kw["moving_spacing"], float), np.asarray(kw["spacing"], float)
    mat = (t.linear * sp[None, :]) / msp[:, None]
    vec = (t.linear @ np.asarray(kw["origin"], float) + t.offset) / msp
    idx = np.indices(kw["shape"]).reshape(ndim, -1).T @ mat.T + vec
    n = np.asarray(image.shape, float)
    outside = (idx < -0.5 - eps) | (idx > n - 0.5 + eps) if order == 0 else (
        (idx < -eps) | (idx > n - 1 + eps))  # fmt: skip
    inside = (idx > eps) & (idx < n - 1 - eps)
    if order == 0:
        inside &= np.abs(idx - np.floor(idx) - 0.5) > eps
    clear = np.all(inside, axis=1) | np.any(outside, axis=1)
    return clear.reshape(kw["shape"])


def _resample(data):
    """resample == scipy.ndimage.affine_transform on the index-space affine, away from
    the moving image's exact edges (see :func:`_clear_of_edges`)."""
    image, t, kw = _resample_case(data)
    got = fastct.resample(image, t, **kw)
    assert got.shape == kw["shape"]
    ref = resample_reference(image, t, kw["shape"], kw["spacing"], kw["origin"],
                             kw["moving_spacing"], (0.0,) * image.ndim, kw["order"], kw["cval"])  # fmt: skip
    clear = _clear_of_edges(image, t, kw, kw["order"])
    got, ref = got[clear], ref[clear]
    if got.dtype.kind in "iu":  # rounded and clipped into the integer range
        info = np.iinfo(got.dtype)
        ref = np.clip(np.round(ref), info.min, info.max)
    if kw["order"] == 0:  # nearest: float rounding next to a tie may pick either voxel
        assert got.size < 20 or np.mean(got != ref.astype(got.dtype)) <= 0.05
        return
    if got.dtype.kind in "iu":
        assert got.size == 0 or np.abs(got.astype(np.float64) - ref).max() <= 1
        return
    scale = max(float(np.abs(image).max()), abs(kw["cval"]), 1.0)
    rel = 1e-5 if got.dtype == np.float32 else 1e-9
    tol = rel * scale * (10 if kw["order"] == 3 else 1)
    assert got.size == 0 or np.abs(got.astype(np.float64) - ref).max() <= tol


def _resample_streamed(data):
    """A Volume in and out (random chunks and memory budgets, 1 or 2 threads) gives the
    in-memory bits."""
    image, t, kw = _resample_case(data)
    expected = fastct.resample(image, t, **kw)
    chunks, budget, store = chunking(data, image.shape)
    out_chunks = tuple(data.draw(st.integers(1, n)) for n in kw["shape"])
    n_threads = data.draw(st.sampled_from([1, 2]), label="threads")
    with tempfile.TemporaryDirectory() as tmp, memory_budget(budget), threads(n_threads):
        with fastct.open(Path(tmp) / store, "w") as ar:
            vol = ar.create_volume("m", image, chunks=chunks)
            out = ar.create_volume("o", shape=kw["shape"], dtype=expected.dtype,
                                   chunks=out_chunks)  # fmt: skip
            fastct.resample(vol, t, out=out, **kw)
            assert same_bits(out.read(), expected)
    with threads(1 if n_threads == 2 else 2):
        assert same_bits(fastct.resample(image, t, **kw), expected)


test_resample, test_resample_fuzz = property_tests(_resample)
test_resample_streamed, test_resample_streamed_fuzz = property_tests(_resample_streamed)


def _resample_empty(data):
    """A 0-size axis in the moving image or the output shape: a ValueError naming it."""
    empty = empty_shapes(data)
    t = RigidTransform(len(empty))
    if data.draw(st.booleans(), label="moving empty"):
        with pytest.raises(ValueError, match=r"moving must not have an empty axis"):
            fastct.resample(np.zeros(empty, np.float32), t, shape=(2,) * len(empty))
    else:
        with pytest.raises(ValueError, match=r"shape must be positive"):
            fastct.resample(np.zeros((3,) * len(empty), np.float32), t, shape=empty)


test_resample_empty, test_resample_empty_fuzz = property_tests(_resample_empty, fuzz=100)


def _register_threads(data):
    """register (every metric and transform kind) gives the same transform bits at 1 and
    2 threads: the metric is reduced over fixed blocks in a fixed order."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    shape = tuple(data.draw(st.lists(st.integers(8, 16), min_size=3, max_size=3)))
    z, y, x = np.indices(shape)
    blob = np.exp(-((z - shape[0] / 2) ** 2 + (y - shape[1] / 2.3) ** 2 + (x - 5) ** 2) / 8)
    fixed = (blob * 100 + rng.normal(0, 3, shape)).astype(np.float32)
    moving = np.roll(fixed, data.draw(st.integers(-2, 2)), axis=2)
    kw = {
        "metric": data.draw(st.sampled_from(["mse", "ncc", "mi"]), label="metric"),
        "transform": data.draw(st.sampled_from(["rigid", "similarity"]), label="transform"),
        "max_iterations": 5,
        "shrink_factors": (1,),
        "smoothing_sigmas": (0.0,),
        "bins": 8,
    }
    with threads(1):
        one = fastct.register(fixed, moving, **kw).transform.matrix
    with threads(2):
        two = fastct.register(fixed, moving, **kw).transform.matrix
    assert same_bits(one, two)


test_register_threads, test_register_threads_fuzz = property_tests(
    _register_threads, fast=4, fuzz=40
)


def _lung_mask(data):
    """lung_mask: a bool mask of the image's shape; the same bits from an archive volume
    (random chunks) and at 1 or 2 threads."""
    shape = shapes(data, ndim=(3,), hi=24)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    hu = rng.choice([-1000, -850, 40, 700], size=shape).astype(np.int16)
    hu[tuple(slice(n // 4, max(n // 4 + 1, 3 * n // 4)) for n in shape)] = -850
    spacing = tuple(data.draw(st.lists(st.sampled_from([0.7, 1.5, 3.0]), min_size=3,
                                       max_size=3), label="spacing"))  # fmt: skip
    method = data.draw(st.sampled_from(["anatomical", "threshold"]), label="method")
    with threads(1):
        one = lungs.lung_mask(hu, spacing=spacing, method=method)
    assert one.dtype == np.bool_ and one.shape == shape
    chunks = tuple(data.draw(st.integers(1, n), label="chunk") for n in shape)
    with tempfile.TemporaryDirectory() as tmp, threads(2), memory_budget(4_000):
        with fastct.open(Path(tmp) / "a.h5", "w") as ar:
            vol = ar.create_volume("ct", hu, chunks=chunks, spacing=spacing)
            assert same_bits(lungs.lung_mask(vol, method=method), one)


test_lung_mask, test_lung_mask_fuzz = property_tests(_lung_mask, fast=6, fuzz=100)


def test_lung_mask_empty_axis_is_refused():
    for shape in [(0, 5, 5), (4, 0, 3), (2, 2, 0)]:
        with pytest.raises(ValueError, match=r"image must not have an empty axis"):
            lungs.lung_mask(np.zeros(shape, np.int16))

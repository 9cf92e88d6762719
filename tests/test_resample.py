"""fastct.resample against scipy.ndimage.affine_transform; streamed == in memory."""

from __future__ import annotations

import numpy as np
import pytest
from naive import resample_reference as scipy_reference

import fastct
from fastct.transforms import RigidTransform, SimilarityTransform


def some_transform(rng, ndim=3):
    if ndim == 3:
        v = rng.normal(size=3)
        v *= 0.15 / np.linalg.norm(v)
        rot = v
    else:
        rot = 0.3
    return SimilarityTransform(
        ndim, rotation=rot, translation=rng.normal(size=ndim) * 2, center=(8.0,) * ndim,
        scale=1.07,
    )  # fmt: skip


@pytest.mark.parametrize("order", [0, 1, 3])
def test_equals_scipy_3d(rng, order):
    img = rng.normal(size=(13, 17, 19)).astype(np.float32)
    t = some_transform(rng)
    shape, sp, org = (14, 15, 18), (1.2, 1.1, 0.9), (0.5, -1.0, 0.3)
    msp, morig = (1.5, 1.0, 0.8), (0.0, 0.2, -0.4)
    got = fastct.resample(img, t, shape=shape, spacing=sp, origin=org, moving_spacing=msp,
                          moving_origin=morig, order=order, cval=-3.0)  # fmt: skip
    ref = scipy_reference(img, t, shape, sp, org, msp, morig, order, -3.0)
    assert got.dtype == np.float32 and got.shape == shape
    if order == 0:  # nearest: ties may round differently; almost all voxels identical
        assert np.mean(got != ref) < 1e-3
    else:
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-5)
    assert np.any(got == -3.0) and np.any(got != -3.0)


@pytest.mark.parametrize("order", [1, 3])
def test_equals_scipy_2d_float64_matrix(rng, order):
    img = rng.normal(size=(21, 16))
    t = some_transform(rng, 2)
    got = fastct.resample(img, t.matrix, shape=(20, 18), order=order)
    ref = scipy_reference(img, t, (20, 18), (1, 1), (0, 0), (1, 1), (0, 0), order, 0.0)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_integer_input_and_output(rng):
    img = rng.integers(-1000, 1000, size=(9, 10, 11)).astype(np.int16)
    t = RigidTransform(3, translation=(0.3, -0.2, 0.45))
    got = fastct.resample(img, t, shape=img.shape, order=1)
    ref = scipy_reference(img, t, img.shape, (1,) * 3, (0,) * 3, (1,) * 3, (0,) * 3, 1, 0.0)
    np.testing.assert_allclose(got, ref, atol=1e-3)
    assert got.dtype == np.float32
    nearest = fastct.resample(img, t, shape=img.shape, order=0)
    assert nearest.dtype == np.int16
    out = np.empty(img.shape, np.int16)
    fastct.resample(img, t, shape=img.shape, order=1, out=out)
    np.testing.assert_array_equal(out, np.clip(np.round(ref), -32768, 32767).astype(np.int16))


@pytest.mark.parametrize("order", [0, 1, 3])
@pytest.mark.parametrize("chunks", [(4, 5, 6), (16, 16, 16)])
def test_streamed_volumes_bit_identical(tmp_path, rng, order, chunks):
    img = rng.normal(size=(15, 18, 20)).astype(np.float32)
    before = img.copy()
    t = some_transform(rng)
    sp, msp = (1.1, 0.9, 1.0), (1.0, 1.2, 0.8)
    ref = fastct.resample(img, t, shape=(12, 19, 17), spacing=sp, moving_spacing=msp,
                          order=order, cval=5.0)  # fmt: skip
    path = tmp_path / "a.h5"
    with fastct.open(path, "w") as ar:
        ar.create_volume("m", img, spacing=msp, chunks=(5, 6, 7))
        out = ar.create_volume("o", shape=(12, 19, 17), dtype=np.float32, spacing=sp,
                               chunks=chunks)  # fmt: skip
        fastct.resample(ar["m"], t, shape=(12, 19, 17), order=order, cval=5.0, out=out)
        as_array = fastct.resample(ar["m"], t, shape=(12, 19, 17), spacing=sp, order=order,
                                   cval=5.0)  # fmt: skip
    with fastct.open(path) as ar:
        np.testing.assert_array_equal(ar["o"].read(), ref)
    np.testing.assert_array_equal(as_array, ref)
    np.testing.assert_array_equal(img, before)  # input untouched


@pytest.mark.parametrize("order", [0, 1, 3])
def test_streamed_in_many_blocks_bit_identical(tmp_path, rng, order, monkeypatch):
    # a 1 MiB memory budget cuts the output into several blocks, read one ahead by the
    # streaming engine; most of the output lies outside the moving image
    import fastct.registration._resample as reg
    from fastct import _config

    img = rng.normal(size=(30, 24, 26)).astype(np.float32)
    t = some_transform(rng)
    shape = (48, 50, 60)
    ref = fastct.resample(img, t, shape=shape, order=order, cval=-1.0)
    calls = []
    source_region = reg._source_region
    monkeypatch.setattr(reg, "_source_region", lambda *a: calls.append(1) or source_region(*a))
    _config.set_memory_budget(1 << 20)
    try:
        with fastct.open(tmp_path / "a.h5", "w") as ar:
            m = ar.create_volume("m", img, chunks=(5, 6, 7))
            out = ar.create_volume("o", shape=shape, dtype=np.float32, chunks=(4, 5, 6))
            fastct.resample(m, t, shape=shape, order=order, cval=-1.0, out=out)
            np.testing.assert_array_equal(out.read(), ref)
            as_array = fastct.resample(m, t, shape=shape, order=order, cval=-1.0)
            np.testing.assert_array_equal(as_array, ref)
    finally:
        _config.set_memory_budget(None)
    assert order == 3 or len(calls) > 2  # several blocks (order 3 samples the whole image)


def test_thread_count_does_not_change_bits(rng):
    img = rng.normal(size=(20, 21, 22)).astype(np.float32)
    t = some_transform(rng)
    fastct.set_num_threads(1)
    one = fastct.resample(img, t, shape=img.shape, order=3)
    fastct.set_num_threads(2)
    two = fastct.resample(img, t, shape=img.shape, order=3)
    np.testing.assert_array_equal(one, two)


def test_bad_input(rng):
    img = np.zeros((4, 5, 6), np.float32)
    t = RigidTransform(3)
    with pytest.raises(ValueError, match="order must be 0, 1 or 3"):
        fastct.resample(img, t, shape=img.shape, order=2)
    with pytest.raises(ValueError, match="shape must have 3 values"):
        fastct.resample(img, t, shape=(4, 5))
    with pytest.raises(ValueError, match="transform must be 3-D"):
        fastct.resample(img, RigidTransform(2), shape=img.shape)
    with pytest.raises(ValueError, match="transform matrix must be 4x4"):
        fastct.resample(img, np.eye(3), shape=img.shape)
    with pytest.raises(ValueError, match="out must have shape"):
        fastct.resample(img, t, shape=img.shape, out=np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="spacing must have 3 values"):
        fastct.resample(img, t, shape=img.shape, spacing=(1, 1))
    with pytest.raises(ValueError, match="moving_spacing must be > 0"):
        fastct.resample(img, t, shape=img.shape, moving_spacing=(1, 0, 1))
    with pytest.raises(TypeError, match="cval"):
        fastct.resample(img, t, shape=img.shape, cval="x")
    with pytest.raises(TypeError, match="transform must be"):
        fastct.resample(img, "identity", shape=img.shape)

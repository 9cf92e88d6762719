"""Hessian blob filter against a plain NumPy / scipy recipe; streamed == in memory."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from naive import hessian_central

import fastct
from fastct.filters import hessian_blob

# scipy.ndimage boundary mode -> numpy.pad mode
PAD = {"reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "wrap": "wrap",
       "constant": "constant"}  # fmt: skip


def reference(image, scale, spacing=(1.0, 1.0, 1.0), mode="reflect", cval=0.0, truncate=4.0):
    """Pad with the mode, scipy Gaussian, central differences, formula, crop (float64)."""
    sigma = [scale / d for d in spacing]
    pad = [int(truncate * s + 0.5) + 2 for s in sigma]
    kw = {"constant_values": cval} if mode == "constant" else {}
    padded = np.pad(image.astype(np.float64), [(p, p) for p in pad], mode=PAD[mode], **kw)
    g = ndi.gaussian_filter(padded, sigma, truncate=truncate)
    H = hessian_central(g, pad, spacing)
    det = np.linalg.det(H)
    trace = np.trace(H, axis1=-2, axis2=-1)
    return np.where((trace < 0) & (det < 0), np.cbrt(np.maximum(-det, 0)), 0.0) * scale**2


def blobs(rng, shape=(18, 23, 21)):
    z, y, x = np.indices(shape)
    img = rng.normal(0, 5, shape)
    img += 100 * (((z - 9) / 3.0) ** 2 + ((y - 8) / 3.5) ** 2 + ((x - 10) / 3.0) ** 2 <= 1)
    img += 80 * ((y - 16) ** 2 + (x - 6) ** 2 <= 4)  # a tube along z
    return img


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "constant", "wrap"])
def test_matches_numpy_scipy_reference(rng, mode):
    img = blobs(rng)
    sp = (2.0, 1.0, 1.25)
    got = hessian_blob(img, 2.5, spacing=sp, mode=mode, cval=-20.0)
    assert got.dtype == np.float64
    ref = reference(img, 2.5, sp, mode=mode, cval=-20.0)
    # where det is about 0 the sign test may flip; the value there is about 0 too
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8, bool])
def test_dtype_policy(rng, dtype):
    img = blobs(rng, (10, 12, 11)).clip(0, 120).astype(dtype)
    got = hessian_blob(img, 1.5)
    assert got.dtype == np.float32
    ref = reference(img.astype(np.float64), 1.5)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4 * max(1.0, np.abs(ref).max()))


def test_ball_beats_tube_and_dark():
    z, y, x = np.indices((21, 21, 21)) - 10
    ball = 100.0 * (z**2 + y**2 + x**2 <= 9)
    tube = 100.0 * (y**2 + x**2 <= 9)  # along z: one zero eigenvalue
    wall = 100.0 * (np.abs(x) <= 2)  # two zero eigenvalues
    b = hessian_blob(ball, 2.0)
    assert b[10, 10, 10] > 1 and b.max() == b[10, 10, 10]
    assert np.abs(hessian_blob(tube, 2.0)).max() < 1e-6 * b.max()
    assert np.abs(hessian_blob(wall, 2.0)).max() < 1e-6 * b.max()
    assert hessian_blob(-ball, 2.0)[10, 10, 10] == 0  # a dark ball
    assert hessian_blob(np.zeros((5, 6, 7)), 1.0).max() == 0


@pytest.mark.parametrize("chunks", [(4, 5, 6), (18, 23, 21), (7, 30, 3)])
def test_streamed_equals_in_memory(rng, tmp_path, chunks):
    img = blobs(rng).astype(np.float32)
    expected = hessian_blob(img, 1.5, spacing=(2.0, 1.0, 1.0), mode="nearest")
    with fastct.open(tmp_path / "a.h5", "w") as ar:
        v = ar.create_volume("img", img, chunks=chunks)
        out = ar.create_volume("out", shape=img.shape, dtype=np.float32, chunks=chunks[::-1])
        assert hessian_blob(v, 1.5, spacing=(2.0, 1.0, 1.0), mode="nearest", out=out) is out
        np.testing.assert_array_equal(out.read(), expected)
        np.testing.assert_array_equal(
            hessian_blob(v, 1.5, spacing=(2.0, 1.0, 1.0), mode="nearest"), expected
        )
    arr = np.zeros(img.shape, np.float32)
    assert hessian_blob(img, 1.5, spacing=(2.0, 1.0, 1.0), mode="nearest", out=arr) is arr
    np.testing.assert_array_equal(arr, expected)


def test_in_box_equals_whole_volume(rng):
    from fastct.filters._blob import _hessian_blob, _hessian_blob_in_box

    img = blobs(rng).astype(np.int16)
    sp = (2.0, 1.0, 1.0)
    whole = _hessian_blob(img, 3.0, sp, mode="nearest")
    for box in [
        (slice(3, 9), slice(0, 10), slice(5, 21)),
        (slice(0, 18), slice(11, 12), slice(2, 3)),
    ]:
        got = _hessian_blob_in_box(img, box, 3.0, sp)
        np.testing.assert_array_equal(got[box], whole[box])
        rest = np.ones(img.shape, bool)
        rest[box] = False
        assert not got[rest].any()


@pytest.mark.parametrize("seed", range(6))
def test_in_box_at_selected_voxels_equals_whole_volume(seed):
    """The compiled pass at ``where`` voxels gives the vectorised kernel's bits, with
    boxes on the volume's edges, anisotropic spacing, integer and float input."""
    from fastct.filters._blob import _hessian_blob, _hessian_blob_in_box

    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(5, 30, 3))
    img = rng.normal(-500, 300, shape).astype(np.int16 if seed % 2 else np.float32)
    sp = tuple(float(v) for v in rng.uniform(0.5, 2.5, 3))
    scale = float(rng.choice([0.7, 1.5, 3.0]))
    starts = [int(rng.integers(0, n)) if seed > 1 else 0 for n in shape]
    box = tuple(slice(a, int(rng.integers(a + 1, n + 1))) for a, n in zip(starts, shape))
    where = rng.random(tuple(b.stop - b.start for b in box)) < 0.6
    whole = _hessian_blob(img, scale, sp, mode="nearest")
    got = _hessian_blob_in_box(img, box, scale, sp, where=where)
    expected = np.zeros(shape, np.float32)
    expected[box] = np.where(where, whole[box], 0)
    np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))


@pytest.mark.parametrize("seed", range(6))
def test_box_blob_several_scales_from_one_copy_equal_whole_volume(seed):
    """BoxBlob pads the box for the largest scale once; every smaller scale filters a
    part of that copy (real data where its own halo would have had padding) and still
    gives the whole-volume filter's bits in the box."""
    from fastct.filters._blob import BoxBlob, _hessian_blob

    rng = np.random.default_rng(100 + seed)
    shape = tuple(int(v) for v in rng.integers(12, 40, 3))
    img = rng.normal(-500, 300, shape).astype(np.int16 if seed % 2 else np.float32)
    sp = tuple(float(v) for v in rng.uniform(0.6, 2.0, 3))
    scales = (0.7, 1.5, 3.0)
    # interior boxes (halos of small scales inside the volume), and boxes on its edges
    lo = [int(rng.integers(0, n // 2)) if seed > 1 else 0 for n in shape]
    box = tuple(slice(a, int(rng.integers(a + 1, n + 1))) for a, n in zip(lo, shape))
    where = rng.random(tuple(b.stop - b.start for b in box)) < 0.7
    blob = BoxBlob(img, box, scales, sp)
    for scale in scales:
        whole = _hessian_blob(img, scale, sp, mode="nearest")
        expected = np.where(where, whole[box], np.float32(0))
        got = blob.response(scale, where)
        np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"image": np.zeros((5, 6))}, ValueError, "image must be 3-D"),
        ({"image": np.zeros((0, 5, 6))}, ValueError, "image must not have an empty axis"),
        ({"image": "scan"}, TypeError, "image must have a real numeric"),
        ({"scale": 0}, ValueError, "scale must be a finite number > 0"),
        ({"scale": "big"}, TypeError, "scale must be a real number"),
        ({"spacing": (1, 1)}, ValueError, "spacing must have 3 values"),
        ({"mode": "edge"}, ValueError, "mode must be one of"),
        ({"truncate": -1}, ValueError, "truncate must be a finite number > 0"),
        ({"out": np.zeros((4, 5, 5))}, ValueError, "out must have shape"),
        ({"out": np.zeros((4, 5, 6), np.int16)}, TypeError, "out dtype int16 cannot hold"),
    ],
)
def test_bad_input(kwargs, exc, match):
    kwargs = {"image": np.zeros((4, 5, 6), np.float32), "scale": 1.0, **kwargs}
    with pytest.raises(exc, match=match):
        hessian_blob(**kwargs)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 4, 1), (3, 5, 7), (6, 2, 9)])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_pad_edge_float32_equals_numpy_pad(shape, dtype):
    from fastct.filters._blob import _pad_edge_float32

    a = np.random.default_rng(0).normal(0, 500, shape).astype(dtype)
    expected = np.pad(a.astype(np.float32), 1, mode="edge")
    np.testing.assert_array_equal(_pad_edge_float32(a), expected)
    np.testing.assert_array_equal(
        _pad_edge_float32(a[:, ::-1]), np.pad(a[:, ::-1].astype(np.float32), 1, mode="edge")
    )

"""2-D SLIC's centre-by-centre assignment (``_kernels.slic.assign_2d``): scikit-image's
labels for every input type, ties, float32 near-ties of float64 work (the filter's
exact recomputation), and the same labels as the tiled assignment."""

import os
from pathlib import Path

import numpy as np
import pytest

import fastct
from fastct.segmentation import _kmeans

skimage_seg = pytest.importorskip("skimage.segmentation")


def sk_slic(image, n_segments, **kw):
    kw.setdefault("channel_axis", None)
    return skimage_seg.slic(image, n_segments, **kw)


def both(image, n_segments, monkeypatch, **kw):
    """fastct's labels with the centre-by-centre assignment and with the tiled one."""
    monkeypatch.setattr(_kmeans, "_CENTRE_MAJOR", True)
    a = fastct.slic(image, n_segments, **kw)
    monkeypatch.setattr(_kmeans, "_CENTRE_MAJOR", False)
    b = fastct.slic(image, n_segments, **kw)
    return a, b


def near_tie_image(seed: int) -> np.ndarray:
    """float64 plateaus with noise far below float32's resolution of the features but
    above float64's: the winners of many pixels are decided by differences a float32
    distance cannot see."""
    rng = np.random.default_rng(seed)
    H, W = (int(v) for v in rng.integers(20, 70, 2))
    if seed % 2 == 0:
        img = 0.5 + rng.normal(0, 1e-5, (H, W))
        img[0, 0] = 0
        img[-1, -1] = 1
    else:
        img = np.full((H, W), 0.25)
        img[H // 2, W // 2] = 1.0
        img[0, 0] = 0
        img += rng.normal(0, 1e-6, (H, W))
    return img


# (seed, n_segments, compactness): cases where the unfiltered float32 sweep gives other
# labels than scikit-image (found by search; checked in test_filter_is_needed)
NEAR_TIES = [(2, 7, 0.1), (4, 35, 1.0), (20, 13, 0.1), (22, 27, 0.01), (26, 23, 0.01),
             (28, 11, 10.0), (34, 8, 10.0), (38, 15, 0.01)]  # fmt: skip


@pytest.mark.parametrize("seed,n,comp", NEAR_TIES)
def test_near_ties_equal_skimage(seed, n, comp, monkeypatch):
    img = near_tie_image(seed)
    kw = dict(compactness=comp, max_num_iter=10, enforce_connectivity=False)
    ref = sk_slic(img, n, **kw)
    a, b = both(img, n, monkeypatch, **kw)
    np.testing.assert_array_equal(a, ref)
    np.testing.assert_array_equal(b, ref)


def test_filter_is_needed(monkeypatch):
    """Without the exact recomputation (error bound 0: the float32 winner is kept) some
    of the near-tie cases differ from scikit-image: the tests above can fail."""
    monkeypatch.setattr(_kmeans, "_FILTER_MARGIN", 0.0)
    differ = 0
    for seed, n, comp in NEAR_TIES:
        img = near_tie_image(seed)
        kw = dict(compactness=comp, max_num_iter=10, enforce_connectivity=False)
        differ += not np.array_equal(fastct.slic(img, n, **kw), sk_slic(img, n, **kw))
    assert differ >= 3


@pytest.mark.parametrize("dtype", ["int16", "uint8", "uint16", "int32", "float32", "float64"])
@pytest.mark.parametrize(
    "shape,n,kw",
    [
        ((64, 80), 30, dict(compactness=0.1)),
        ((37, 53), 12, dict(compactness=1.0, start_label=0)),
        ((50, 41), 40, dict(compactness=10.0, spacing=(1.0, 2.5))),
        ((1, 90), 6, dict(compactness=0.5)),
        ((70, 1), 6, dict(compactness=0.5)),
        ((9, 7), 20, dict(compactness=0.1, max_num_iter=3)),
        ((33, 130), 25, dict(compactness=0.05, max_num_iter=1)),
        ((40, 40), 10, dict(compactness=0.1, max_num_iter=0)),
        ((48, 52), 16, dict(compactness=0.2, sigma=1.0)),
    ],
)
def test_equals_skimage_and_tiled(dtype, shape, n, kw, rng, monkeypatch):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        img = rng.normal(0.0, 1.0, shape).cumsum(axis=1).astype(dt)
    else:
        lo, hi = (0, 255) if dt == np.uint8 else (-1500, 2000) if dt.kind == "i" else (0, 4000)
        img = rng.integers(lo, hi, shape).astype(dt)
        img[:, shape[1] // 2 :] //= 3  # plateaus and edges
    kw = dict(kw, enforce_connectivity=True)
    ref = sk_slic(img, n, **kw)
    a, b = both(img, n, monkeypatch, **kw)
    np.testing.assert_array_equal(a, ref)
    np.testing.assert_array_equal(b, ref)


@pytest.mark.parametrize("dtype", ["int16", "float32", "float64"])
@pytest.mark.parametrize("shape,n", [((56, 56), 16), ((64, 64), 16), ((42, 84), 18), ((30, 30), 9)])
def test_ties(dtype, shape, n, monkeypatch):
    """Constant and symmetric images: exact distance ties everywhere (every centre the
    same colour), decided by the lowest centre index as in scikit-image."""
    H, W = shape
    img = np.zeros(shape, dtype)
    img[: H // 2] = 7
    img[:, : W // 2] += 3
    for im in (np.zeros(shape, dtype), img, img[::-1].copy(), img[:, ::-1].copy()):
        kw = dict(compactness=0.5, max_num_iter=10, enforce_connectivity=False)
        ref = sk_slic(im, n, **kw)
        a, b = both(im, n, monkeypatch, **kw)
        np.testing.assert_array_equal(a, ref)
        np.testing.assert_array_equal(b, ref)


def test_threads_same_labels(rng):
    img = rng.integers(-1000, 1000, (97, 131)).astype(np.int16)
    out = []
    for t in (1, 2, 3):
        fastct.set_num_threads(t)
        try:
            out.append(fastct.slic(img, 60, compactness=0.1))
        finally:
            fastct.set_num_threads(None)
    np.testing.assert_array_equal(out[0], out[1])
    np.testing.assert_array_equal(out[0], out[2])


def realct_slice() -> np.ndarray | None:
    env = os.environ.get("FASTCT_REALCT")
    folder = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "realct"
    path = folder / "LIDC-IDRI-0001_ct.nii.gz"
    if not path.exists():
        return None
    from fastct.io import read_nifti

    vol = read_nifti(path).array
    return np.ascontiguousarray(vol[vol.shape[0] // 2])


@pytest.mark.parametrize("n", [500, 2000])
def test_real_ct_slice(n):
    img = realct_slice()
    if img is None:
        pytest.skip("real CT not available (../shared/realct or FASTCT_REALCT)")
    kw = dict(compactness=0.1, max_num_iter=10, enforce_connectivity=True)
    for im in (img, img.astype(np.float32)):
        np.testing.assert_array_equal(fastct.slic(im, n, **kw), sk_slic(im, n, **kw))


@pytest.mark.parametrize("dtype", ["int16", "uint16", "float64"])
@pytest.mark.parametrize("comp", [0.1, 1.0, 1e-7])
def test_first_iteration_on_spatial_terms(dtype, comp, rng, monkeypatch):
    """float64 work whose centres share one colour (the first iteration) is swept in
    float32 on the spatial terms alone when the margins allow it (not with a tiny
    compactness, whose colour terms dwarf the spatial ones): the labels of every
    iteration count equal the float64 sweep's and scikit-image's."""
    dt = np.dtype(dtype)
    img = (rng.normal(0, 400, (61, 75)).cumsum(axis=1) % 3000).astype(dt)
    used = []
    original = _kmeans._spatial_only

    def spy(*args):
        out = original(*args)
        used.append(out is not None)
        return out

    monkeypatch.setattr(_kmeans, "_spatial_only", spy)
    for iters in (1, 2, 10):
        kw = dict(compactness=comp, max_num_iter=iters, enforce_connectivity=False)
        ref = sk_slic(img, 40, **kw)
        used.clear()
        fast = fastct.slic(img, 40, **kw)
        assert used and used[0] == (comp > 1e-6)
        monkeypatch.setattr(_kmeans, "_SPATIAL_ONLY", False)
        np.testing.assert_array_equal(fastct.slic(img, 40, **kw), fast)
        monkeypatch.setattr(_kmeans, "_SPATIAL_ONLY", True)
        np.testing.assert_array_equal(fast, ref)

"""Lung mask against the phantom's ground truth, scipy references and odd inputs."""

import numpy as np
import pytest
import scipy.ndimage as ndi

import fastct
from fastct import datasets
from fastct.lungs import _closing_mm, _downsample, lung_mask, working_factors


def dice(a, b):
    return 2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b))


@pytest.fixture(scope="module")
def small():
    return datasets.chest_phantom("small", seed=1)


def test_matches_phantom_truth(small):
    mask = lung_mask(small.image, spacing=small.spacing)
    assert mask.dtype == bool and mask.shape == small.image.shape
    d = dice(mask, small.lung_mask)
    assert d >= 0.98, d
    # Nodules (also juxtapleural ones) are inside the mask.
    nodules = small.nodule_labels > 0
    assert np.sum(mask & nodules) >= 0.99 * np.sum(nodules)
    # Two lungs, the airways joining them removed.
    assert ndi.label(mask)[1] == 2


@pytest.mark.parametrize("seed", [0, 2])
def test_other_seeds_and_trachea_removed(seed):
    ph = datasets.chest_phantom("small", seed=seed)
    mask = lung_mask(ph.image, spacing=ph.spacing)
    assert dice(mask, ph.lung_mask) >= 0.98
    # The trachea lumen (a scene landmark, baseline scene == physical coordinates).
    scene = datasets.ChestScene.generate(seed)
    idx = ph.index_of(scene.landmarks["trachea"])
    assert ph.image[idx] < -900 and not mask[idx]
    for side in ("right_lung", "left_lung"):
        assert mask[ph.index_of(scene.landmarks[side])]
    # Without airway removal the trachea's air stays in (so the removal did something).
    kept = lung_mask(ph.image, spacing=ph.spacing, remove_airways=False)
    assert np.sum(kept & ~ph.lung_mask) > np.sum(mask & ~ph.lung_mask)


def test_orientation_independent(small):
    """The trachea is searched at both z ends: a scan stored feet-first gives the flipped mask."""
    mask = lung_mask(small.image, spacing=small.spacing)
    flipped = lung_mask(np.ascontiguousarray(small.image[::-1]), spacing=small.spacing)
    np.testing.assert_array_equal(flipped, mask[::-1])


def test_volume_input_and_streamed_out(tmp_path, small):
    expected = lung_mask(small.image, spacing=small.spacing)
    path = tmp_path / "a.h5"
    with fastct.open(path, "w") as ar:
        ar.create_volume("img", small.image, spacing=small.spacing, chunks=(16, 32, 32))
    with fastct.open(path, "a") as ar:
        vol = ar["img"]
        got = lung_mask(vol)  # spacing from the volume
        np.testing.assert_array_equal(got, expected)
        out = ar.create_volume_like("mask", vol, dtype=np.uint8)
        assert lung_mask(vol, out=out) is out
    with fastct.open(path) as ar:
        np.testing.assert_array_equal(ar["mask"].read().astype(bool), expected)
        assert ar["img"].read().tobytes() == small.image.tobytes()  # input untouched


def test_working_grid_downsampled(small):
    """A coarse working grid (here 2x per axis) still gives a good mask at full size."""
    mask = lung_mask(small.image, spacing=small.spacing, working_mm=6.0)
    assert working_factors(small.spacing, 6.0) == (1, 2, 2)
    assert mask.shape == small.image.shape
    assert dice(mask, small.lung_mask) >= 0.95


def test_downsample_matches_numpy_loop():
    rng = np.random.default_rng(0)
    img = rng.integers(-1000, 500, size=(7, 10, 9)).astype(np.int16)
    factors = (2, 3, 4)
    got = _downsample(img, factors)
    shape = tuple(-(-n // f) for n, f in zip(img.shape, factors))
    ref = np.empty(shape)
    for i in range(shape[0]):
        for j in range(shape[1]):
            for k in range(shape[2]):
                block = img[i * 2 : i * 2 + 2, j * 3 : j * 3 + 3, k * 4 : k * 4 + 4]
                ref[i, j, k] = block.astype(np.float64).mean()
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    np.testing.assert_array_equal(_downsample(img, (1, 1, 1)), img.astype(np.float32))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 1.0, 1.5)])
def test_closing_equals_scipy_ball_closing(spacing):
    rng = np.random.default_rng(1)
    mask = np.zeros((30, 34, 32), bool)
    mask[8:22, 8:26, 8:24] = rng.random((14, 18, 16)) < 0.7
    radius = 2.5
    got = _closing_mm(mask, spacing, radius)
    m = [int(np.ceil(radius / s)) for s in spacing]
    grid = np.mgrid[tuple(slice(-k, k + 1) for k in m)]
    ball = sum((g * s) ** 2 for g, s in zip(grid, spacing)) <= radius**2
    ref = ndi.binary_closing(mask, structure=ball)
    np.testing.assert_array_equal(got, ref)


def synthetic_body(n_lungs=2, shape=(24, 40, 48)):
    """Air around a soft-tissue body holding ``n_lungs`` air boxes (no trachea)."""
    img = np.full(shape, -1000, np.int16)
    img[:, 5:35, 4:44] = 40
    truth = np.zeros(shape, bool)
    truth[4:20, 10:30, 8:20] = True
    if n_lungs == 2:
        truth[4:20, 10:30, 28:40] = True
    img[truth] = -850
    img[10, 20, 12] = 60  # a vessel inside the lung: a hole to fill
    return img, truth


@pytest.mark.parametrize("n_lungs", [1, 2])
def test_synthetic_boxes(n_lungs):
    img, truth = synthetic_body(n_lungs)
    mask = lung_mask(img, closing_mm=0)
    np.testing.assert_array_equal(mask, truth)


def test_small_bubble_dropped():
    img, truth = synthetic_body(2)
    img[2:4, 30:32, 22:24] = -1000  # gas pocket, far smaller than a lung
    np.testing.assert_array_equal(lung_mask(img, closing_mm=0), truth)


@pytest.mark.parametrize("value", [-1000, 40])
def test_no_lungs_gives_empty_mask(value):
    img = np.full((8, 10, 12), value, np.int16)
    assert not lung_mask(img).any()


def test_out_array():
    img, truth = synthetic_body(2)
    out = np.zeros(img.shape, np.uint8)
    assert lung_mask(img, closing_mm=0, out=out) is out
    np.testing.assert_array_equal(out.astype(bool), truth)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"image": np.zeros((4, 5))}, ValueError, "image must be 3-D"),
        ({"image": np.zeros((4, 5, 6), bool)}, TypeError, "image must have a real numeric"),
        ({"image": "scan"}, TypeError, "image must have a real numeric"),
        ({"image": np.zeros((0, 5, 6))}, ValueError, "image must not have an empty axis"),
        ({"spacing": (1, -1, 1)}, ValueError, "spacing must be > 0"),
        ({"spacing": (1, 1)}, ValueError, "spacing must have 3 values"),
        ({"threshold": "low"}, TypeError, "threshold must be a real number"),
        ({"threshold": float("nan")}, ValueError, "threshold must be a finite number"),
        ({"airway_threshold": -300.0}, ValueError, "airway_threshold must be below"),
        ({"remove_airways": "yes"}, TypeError, "remove_airways must be True or False"),
        ({"closing_mm": -1.0}, ValueError, "closing_mm must be a finite number >= 0"),
        ({"working_mm": 0.0}, ValueError, "working_mm must be a finite number > 0"),
        ({"min_lung_fraction": 2.0}, ValueError, "min_lung_fraction must be a finite number in"),
        ({"out": np.zeros((4, 5, 5), bool)}, ValueError, "out must have the image's shape"),
        ({"out": np.zeros((4, 5, 6), np.float32)}, TypeError, "out must have dtype bool"),
        ({"out": [0]}, TypeError, "out must be an ndarray or a Volume"),
    ],
)
def test_bad_input(kwargs, exc, match):
    kwargs = {"image": np.zeros((4, 5, 6), np.int16), **kwargs}
    with pytest.raises(exc, match=match):
        lung_mask(**kwargs)


def test_dilate_in_box_equals_scipy():
    from fastct.lungs import _dilate_in_box

    rng = np.random.default_rng(4)
    mask = np.zeros((12, 14, 16), bool)
    mask[3:9, 0:6, 5:15] = rng.random((6, 6, 10)) < 0.3
    np.testing.assert_array_equal(_dilate_in_box(mask), ndi.binary_dilation(mask))


# -- method="threshold" (the detector's fallback mask) ------------------------------------
def threshold_reference(image, spacing, threshold=-400.0):
    """Plain scipy: air components off the in-plane border, >= 1% of the largest and
    >= 50 mL (else the largest), holes filled per axial slice."""
    lab, n = ndi.label(image < threshold)
    if n == 0:
        return np.zeros(image.shape, bool)
    sizes = np.bincount(lab.ravel(), minlength=n + 1).astype(float)
    sizes[0] = 0
    for face in (lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]):
        sizes[np.unique(face)] = 0
    if sizes.max() == 0:
        return np.zeros(image.shape, bool)
    keep = (sizes >= 0.01 * sizes.max()) & (sizes * np.prod(spacing) / 1000 >= 50)
    if not keep.any():
        keep = sizes == sizes.max()
    mask = keep[lab]
    return np.stack([ndi.binary_fill_holes(s) for s in mask])


def test_threshold_method_equals_scipy_reference(small):
    got = lung_mask(small.image, spacing=small.spacing, method="threshold")
    np.testing.assert_array_equal(got, threshold_reference(small.image, small.spacing))
    assert dice(got, small.lung_mask) > 0.9
    # the threshold applies to the input values as they are (no working grid)
    got = lung_mask(small.image, spacing=small.spacing, method="threshold", threshold=-600.0)
    np.testing.assert_array_equal(got, threshold_reference(small.image, small.spacing, -600.0))


def test_threshold_method_synthetic_and_empty():
    img, truth = synthetic_body(2)
    # tiny boxes: below 50 mL at 1 mm, so only the largest component is kept (the second
    # box: the first lost a voxel to the vessel)
    got = lung_mask(img, method="threshold")
    np.testing.assert_array_equal(got, threshold_reference(img, (1.0, 1.0, 1.0)))
    np.testing.assert_array_equal(got, truth & (np.arange(48) >= 24))
    np.testing.assert_array_equal(
        lung_mask(img, spacing=(3.0, 3.0, 3.0), method="threshold"), truth
    )
    assert not lung_mask(np.full((8, 10, 12), 40, np.int16), method="threshold").any()
    assert not lung_mask(np.full((8, 10, 12), -1000, np.int16), method="threshold").any()
    # its threshold may be below the (anatomical-only) airway threshold
    assert not lung_mask(img, method="threshold", threshold=-1000.0).any()


def test_threshold_method_volume_and_out(tmp_path, small):
    expected = lung_mask(small.image, spacing=small.spacing, method="threshold")
    out = np.zeros(small.image.shape, np.uint8)
    assert lung_mask(small.image, spacing=small.spacing, method="threshold", out=out) is out
    np.testing.assert_array_equal(out.astype(bool), expected)
    path = tmp_path / "a.h5"
    with fastct.open(path, "w") as ar:
        ar.create_volume("img", small.image, spacing=small.spacing, chunks=(16, 32, 32))
    with fastct.open(path, "a") as ar:
        vol = ar["img"]
        np.testing.assert_array_equal(lung_mask(vol, method="threshold"), expected)
        vout = ar.create_volume_like("mask", vol, dtype=bool)
        assert lung_mask(vol, method="threshold", out=vout) is vout
    with fastct.open(path) as ar:
        np.testing.assert_array_equal(ar["mask"].read(), expected)


@pytest.mark.parametrize(
    "method, exc, match",
    [("hu", ValueError, "method must be one of"), (1, TypeError, "method must be a string")],
)
def test_bad_method(method, exc, match):
    with pytest.raises(exc, match=match):
        lung_mask(np.zeros((4, 5, 6), np.int16), method=method)

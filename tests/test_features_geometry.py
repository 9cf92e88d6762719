"""region_features centroids are physical points (origin + direction @ (index * spacing))
for flipped, permuted and oblique images, arrays and Volumes alike."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import fastct
from fastct._geometry import index_to_physical
from fastct._orient import direction_from_code, from_lps_geometry
from fastct.features import region_features

SPACING = (2.0, 0.75, 0.5)
ORIGIN = (-40.0, 12.5, 100.0)
OBLIQUE = Rotation.from_euler("zyx", [17.0, -8.0, 31.0], degrees=True).as_matrix()


def _case(rng, shape=(9, 11, 13)):
    labels = rng.integers(0, 6, size=shape).astype(np.int32)
    labels[labels == 3] = 0
    image = rng.normal(size=shape).astype(np.float32)
    return labels, image


def _loop_centroids(labels, spacing, origin, direction):
    out = {}
    for lab in np.unique(labels[labels > 0]):
        idx = np.argwhere(labels == lab).astype(float)
        out[int(lab)] = index_to_physical(idx, spacing, origin, direction).mean(axis=0)
    return out


def _centroids(t):
    return np.column_stack([t[f"centroid_{a}_mm"] for a in "zyx"])


@pytest.mark.parametrize("code", ["RAS", "LAS", "PIR", "oblique"])
def test_centroids_are_physical_points(rng, code):
    labels, image = _case(rng)
    direction = OBLIQUE if code == "oblique" else direction_from_code(code)
    t = region_features(
        labels, image, spacing=SPACING, origin=ORIGIN, direction=direction, percentiles=()
    )
    ref = _loop_centroids(labels, SPACING, ORIGIN, direction)
    np.testing.assert_allclose(_centroids(t), [ref[k] for k in t["label"]], rtol=0, atol=1e-9)
    np.testing.assert_allclose(t.meta["direction"], direction, rtol=0, atol=1e-12)


def test_centroids_match_skimage_regionprops(rng):
    measure = pytest.importorskip("skimage.measure")
    labels, image = _case(rng)
    t = region_features(labels, image, spacing=SPACING, origin=ORIGIN, direction=OBLIQUE)
    props = measure.regionprops(labels)
    ref = index_to_physical(np.array([p.centroid for p in props]), SPACING, ORIGIN, OBLIQUE)
    np.testing.assert_allclose(_centroids(t), ref, rtol=0, atol=1e-9)
    # rotation-invariant shape features do not depend on the direction
    t0 = region_features(labels, image, spacing=SPACING, origin=ORIGIN)
    for col in ("inertia_eig_0", "inertia_eig_2", "elongation", "flatness", "surface_mm2"):
        np.testing.assert_allclose(t[col], t0[col], rtol=1e-12, equal_nan=True)


def test_identity_direction_is_bit_identical_to_none(rng):
    labels, image = _case(rng)
    a = region_features(labels, image, spacing=SPACING, origin=ORIGIN)
    b = region_features(labels, image, spacing=SPACING, origin=ORIGIN, direction=np.eye(3))
    for col in a.columns:
        np.testing.assert_array_equal(a[col], b[col])


@pytest.mark.parametrize("code", ["RAS", "LAS", "PIR"])
def test_reoriented_copy_gives_the_same_centroids(rng, code, archive_path):
    """The same scan stored in another orientation (array flipped/transposed, origin and
    direction adjusted) has the same physical centroids, also read from Volumes."""
    labels, image = _case(rng)
    ref = region_features(labels, image, spacing=SPACING, origin=ORIGIN, percentiles=())
    direction = direction_from_code(code)
    shape, sp, org, view = from_lps_geometry(labels.shape, SPACING, ORIGIN, direction)
    lab2, img2 = view.from_lps(labels), view.from_lps(image)
    assert lab2.shape == shape
    t = region_features(lab2, img2, spacing=sp, origin=org, direction=direction, percentiles=())
    np.testing.assert_array_equal(t["label"], ref["label"])
    np.testing.assert_allclose(_centroids(t), _centroids(ref), rtol=0, atol=1e-9)
    np.testing.assert_allclose(t["mean"], ref["mean"], rtol=1e-12)
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("lab", lab2, spacing=sp, origin=org, direction=direction)
        ar.create_volume("img", img2, spacing=sp, origin=org, direction=direction)
    with fastct.open(archive_path) as ar:
        tv = region_features(ar["lab"], ar["img"], percentiles=())
    np.testing.assert_allclose(_centroids(tv), _centroids(ref), rtol=0, atol=1e-9)


def test_2d_direction(rng):
    labels = rng.integers(0, 4, size=(7, 9)).astype(np.int32)
    image = rng.normal(size=labels.shape)
    c, s = np.cos(0.4), np.sin(0.4)
    d = np.array([[c, -s], [s, c]])
    t = region_features(labels, image, spacing=(1.5, 0.5), origin=(3.0, -2.0), direction=d)
    ref = _loop_centroids(labels, (1.5, 0.5), (3.0, -2.0), d)
    got = np.column_stack([t["centroid_y_mm"], t["centroid_x_mm"]])
    np.testing.assert_allclose(got, [ref[k] for k in t["label"]], rtol=0, atol=1e-9)


def test_bad_or_disagreeing_direction(rng, archive_path):
    labels, image = _case(rng)
    with pytest.raises(ValueError, match="direction must be a 3x3 matrix"):
        region_features(labels, image, direction=np.eye(2))
    with pytest.raises(ValueError, match="direction must have orthonormal columns"):
        region_features(labels, image, direction=2 * np.eye(3))
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("lab", labels)
        ar.create_volume("img", image, direction=direction_from_code("RAS"))
    with fastct.open(archive_path) as ar:
        with pytest.raises(ValueError, match="direction: the input volumes disagree"):
            region_features(ar["lab"], ar["img"])
        t = region_features(ar["lab"], ar["img"], direction=np.eye(3), percentiles=())
        assert np.array_equal(t.meta["direction"], np.eye(3))

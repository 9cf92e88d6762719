"""Detection centres are physical points: the same phantom stored as LPS, RAS, LAS or
PIR (array flipped/transposed, origin and direction adjusted so that every voxel keeps
its physical position) gives the same detections; an oblique direction rotates them."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import fastct
from fastct._geometry import index_to_physical, physical_to_index
from fastct._orient import direction_from_code, from_lps_geometry
from fastct.classify import default_detector
from fastct.datasets import chest_phantom
from fastct.lungs import lung_mask


@pytest.fixture(scope="module")
def phantom():
    return chest_phantom("small", seed=3, n_nodules=4, diameter_range=(10, 20))


@pytest.fixture(scope="module")
def detector():
    det = default_detector()
    det.threshold = 0.05  # several detections, so the comparison means something
    return det


@pytest.fixture(scope="module")
def lps_result(phantom, detector):
    return detector.predict(phantom.image, spacing=phantom.spacing, origin=phantom.origin)


def _stored_as(ph, code):
    d = direction_from_code(code)
    shape, sp, org, view = from_lps_geometry(ph.image.shape, ph.spacing, ph.origin, d)
    return view.from_lps(ph.image), sp, org, d, view


def _centres(res):
    return np.array([d.center_mm for d in res.detections]).reshape(-1, 3)


@pytest.mark.slow  # three detector runs on a 'small' phantom
@pytest.mark.parametrize("code", ["RAS", "LAS", "PIR"])
def test_reoriented_scan_gives_the_same_detections(phantom, detector, lps_result, code):
    img, sp, org, d, view = _stored_as(phantom, code)
    res = detector.predict(img, spacing=sp, origin=org, direction=d)
    ref = _centres(lps_result)
    assert len(ref) > 0
    got = _centres(res)
    assert got.shape == ref.shape
    # within a voxel (in fact the same up to round-off: the detector runs on the LPS view)
    assert np.abs(got - ref).max() < 1e-6 * (1 + np.abs(ref).max())
    assert [x.probability for x in res.detections] == [x.probability for x in lps_result.detections]
    # the voxel outputs come back in the scan's own array order
    assert res.labels.shape == img.shape
    np.testing.assert_array_equal(view.to_lps(res.labels), lps_result.labels)
    np.testing.assert_array_equal(view.to_lps(res.probability_map), lps_result.probability_map)
    # the centres are physical: they lie on the nodules the phantom put there (same mm)
    idx = physical_to_index(got, sp, org, d)
    assert np.all((idx > -0.5) & (idx < np.array(img.shape) - 0.5))


@pytest.mark.slow  # a detector run on a "small" phantom (and the LPS reference)
def test_reoriented_volume_gives_the_same_detections(phantom, detector, lps_result, tmp_path):
    img, sp, org, d, _ = _stored_as(phantom, "RAS")
    with fastct.open(tmp_path / "a.h5", "w") as ar:
        ar.create_volume("scan", img, spacing=sp, origin=org, direction=d)
    with fastct.open(tmp_path / "a.h5") as ar:
        res = detector.predict(ar["scan"])
    np.testing.assert_allclose(_centres(res), _centres(lps_result), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_oblique_direction_rotates_the_centres(phantom, detector, lps_result):
    """An oblique scan is run as stored; its centres are origin + D @ (index * spacing)."""
    d = Rotation.from_euler("zyx", [6.0, -4.0, 3.0], degrees=True).as_matrix()
    res = detector.predict(
        phantom.image, spacing=phantom.spacing, origin=phantom.origin, direction=d
    )
    ref_idx = physical_to_index(_centres(lps_result), phantom.spacing, phantom.origin)
    expect = index_to_physical(ref_idx, phantom.spacing, phantom.origin, d)
    np.testing.assert_allclose(_centres(res), expect, rtol=0, atol=1e-6)


@pytest.mark.slow  # needs the LPS reference run
def test_detect_replaces_origin_and_direction(detector, lps_result, phantom):
    """detect(origin=, direction=) maps the table's centroids to the new grid."""
    d = direction_from_code("RAS")
    res = lps_result
    dets = detector.detect(res.table, res.proba, origin=(1.0, 2.0, 3.0), direction=d)
    ref_idx = physical_to_index(_centres(res), phantom.spacing, phantom.origin)
    expect = index_to_physical(ref_idx, phantom.spacing, (1.0, 2.0, 3.0), d)
    np.testing.assert_allclose(_centres_list(dets), expect, rtol=0, atol=1e-9)
    same = detector.detect(res.table, res.proba, origin=phantom.origin)
    assert [x.center_mm for x in same] == [x.center_mm for x in res.detections]


def _centres_list(dets):
    return np.array([x.center_mm for x in dets]).reshape(-1, 3)


@pytest.mark.parametrize("code", ["RAS", "PIR"])
def test_lung_mask_follows_the_orientation(phantom, code):
    """The lung mask of a transposed/flipped scan is the LPS scan's mask, transposed."""
    ref = lung_mask(phantom.image, spacing=phantom.spacing)
    img, sp, org, d, view = _stored_as(phantom, code)
    got = lung_mask(img, spacing=sp, direction=d)
    assert got.shape == img.shape
    lps = view.to_lps(got)
    dice = 2 * (lps & ref).sum() / (lps.sum() + ref.sum())
    assert dice > 0.99, dice
    quick_ref = lung_mask(phantom.image, spacing=phantom.spacing, method="threshold")
    quick = lung_mask(img, spacing=sp, direction=d, method="threshold")
    np.testing.assert_array_equal(view.to_lps(quick), quick_ref)

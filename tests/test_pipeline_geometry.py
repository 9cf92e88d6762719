"""The pipeline in physical space: scans in any orientation are accepted, the derived
volumes keep the scan's direction, the registration/resampling calls get the scans'
directions, truth comparison and report figures map mm through the direction.
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import fastct
from fastct import pipeline
from fastct._geometry import index_to_physical
from fastct._orient import direction_from_code, from_lps_geometry
from fastct.evaluation import registration_error_mm
from fastct.pipeline import _stages
from fastct.pipeline._inputs import scan_volume

OBLIQUE = Rotation.from_euler("zyx", [12.0, -5.0, 20.0], degrees=True).as_matrix()


@pytest.mark.parametrize(
    "direction", [direction_from_code("RAS"), direction_from_code("PIR"), OBLIQUE]
)
def test_scans_in_any_orientation_are_accepted(tmp_path, direction):
    img = np.full((8, 16, 16), -1000, np.int16)
    with fastct.open(tmp_path / "s.h5", "w") as ar:
        ar.create_volume(
            "scans/a/image", img, spacing=(2, 1, 1), direction=direction, modality="CT"
        )
    with fastct.open(tmp_path / "s.h5") as ar:
        vol = scan_volume(ar, "/scans/a", "baseline")
        np.testing.assert_allclose(vol.direction, direction)


def test_derived_volumes_keep_the_direction(tmp_path):
    with fastct.open(tmp_path / "s.h5", "w") as ar:
        like = ar.create_volume(
            "a",
            np.zeros((3, 4, 5), np.int16),
            spacing=(2, 1, 1),
            origin=(1, 2, 3),
            direction=OBLIQUE,
        )
        v = _stages._derived(ar, "b", like, np.uint8)
        np.testing.assert_allclose(v.direction, like.direction)
        assert v.origin == like.origin and v.spacing == like.spacing


@pytest.mark.parametrize("direction", [None, direction_from_code("PIR"), OBLIQUE])
def test_registration_error_uses_physical_corners(direction):
    shape, spacing, origin = (5, 6, 7), (2.0, 1.0, 0.5), (10.0, -20.0, 5.0)
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("x", 3, degrees=True).as_matrix()
    corners = np.array([[a * (shape[0] - 1), b * (shape[1] - 1), c * (shape[2] - 1)]
                        for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)  # fmt: skip
    pts = index_to_physical(corners, spacing, origin, direction)
    # the identity mapping is off by |M p - p|: largest over the physical corners
    expect = np.linalg.norm(pts @ m[:3, :3].T + m[:3, 3] - pts, axis=1).max()
    got = registration_error_mm(lambda p: p, m, shape, spacing, origin, direction)
    assert got == pytest.approx(expect, rel=1e-12)


@pytest.mark.parametrize("code", ["RAS", "PIR"])
def test_report_samples_planes_in_physical_space(tmp_path, rng, code):
    """The report's 'before registration' planes sample the follow-up at the
    baseline's physical points: a reoriented copy of the baseline gives the baseline."""
    from fastct import report

    base = rng.normal(size=(6, 7, 8)).astype(np.float32)
    spacing, origin = (2.0, 1.0, 0.5), (3.0, -4.0, 5.0)
    d = direction_from_code(code)
    _, sp2, org2, view = from_lps_geometry(base.shape, spacing, origin, d)
    with fastct.open(tmp_path / "s.h5", "w") as ar:
        copy = ar.create_volume("c", view.from_lps(base), spacing=sp2, origin=org2, direction=d)
        for axis, index in ((0, 2), (1, 3)):
            pts = report._plane_points(base.shape, spacing, origin, axis, index)
            got = report._sample_plane(copy, pts)
            np.testing.assert_allclose(got, np.take(base, index, axis=axis), rtol=0, atol=1e-5)
        # and the focus of a detection is its voxel in the stored grid
        centre = index_to_physical([4, 5, 6], sp2, org2, d)
        res = type(
            "R",
            (),
            {
                "detections": {
                    "baseline": [{"center_mm": centre, "diameter_mm": 5.0, "probability": 0.9}],
                    "followup": [],
                }
            },
        )()
        assert report._focus(res, copy.shape, sp2, org2, d) == (4, 5, 6)


def _write_pair(path, pair, follow_code):
    """``fastct phantom``'s layout, with the follow-up stored in ``follow_code``."""
    from fastct.cli._data import _nodules_json

    with fastct.open(path, "w") as ar:
        for tag, scan, code in (
            ("baseline", pair.baseline, "LPS"),
            ("followup", pair.followup, follow_code),
        ):
            d = direction_from_code(code)
            _, sp, org, view = from_lps_geometry(scan.image.shape, scan.spacing, scan.origin, d)
            meta = {"spacing": sp, "origin": org, "direction": d}
            ar.create_volume(
                f"/p/{tag}/image", view.from_lps(scan.image), modality="CT", units="HU", **meta
            )
            ar.create_volume(f"/p/{tag}/labels/nodules", view.from_lps(scan.nodule_labels), **meta)
        ar.set_attrs(
            "/p/truth", transform=np.asarray(pair.transform), nodules_json=_nodules_json(pair)
        )


@pytest.mark.slow  # two detector runs, a registration and a report on 'small' phantoms
@pytest.mark.parametrize("code", ["RAS", "PIR"])
def test_pipeline_with_reoriented_followup(tmp_path, code):
    """A follow-up stored flipped (RAS) or transposed (PIR) is registered, matched and
    compared with the truth in physical space."""
    from fastct.datasets import phantom_pair

    pair = phantom_pair("small", seed=5, n_nodules=4, diameter_range=(10, 20))
    path = tmp_path / "study.h5"
    _write_pair(path, pair, code)
    res = pipeline.run(path, "/p/baseline", "/p/followup", out_dir=tmp_path / "out", report=True)
    truth = res.truth
    assert truth["registration_error_mm"] < 1.0, truth
    nodules = res.nodules
    assert any(r["status"] == "matched" for r in nodules), nodules
    for tp in ("baseline", "followup"):
        assert truth[tp]["found"] >= 2, truth[tp]
    with fastct.open(path) as ar:
        f_img = ar["/p/followup/image"]
        for name in ("followup/probability", "followup/supervoxels", "followup/lungs"):
            np.testing.assert_allclose(ar[f"/results/out/{name}"].direction, f_img.direction)
        assert ar["/results/out/followup_registered"].shape == ar["/p/baseline/image"].shape

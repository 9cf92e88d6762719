"""Tests for the hard chest phantom (fastct.datasets.hard_chest_phantom / hard_phantom_pair)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from fastct import datasets as ds
from fastct.datasets._hard import _fissure_distance
from fastct.datasets._primitives import _segment_distance

# A short z-range of the chest (65-230 mm, where nodules are placed) on the 'small'
# in-plane grid, 5 mm slices: every nodule type is resolved and a render takes seconds.
GRID = {"shape": (34, 128, 128), "spacing": (5.0, 2.8125, 2.8125), "origin": (65.0, 0.0, 0.0)}
TYPES = ["solid", "ground-glass", "part-solid", "calcified"]
SHAPES = ["round", "lobulated", "spiculated", "lobulated"]
POSITIONS = ["free", "juxtapleural", "juxtavascular", "perifissural"]
STATUSES = ["stable", "growing", "shrinking", "resolved"]


def _sha(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def pair() -> ds.HardPhantomPair:
    return ds.hard_phantom_pair(
        seed=3,
        n_nodules=4,
        nodule_types=TYPES,
        nodule_shapes=SHAPES,
        nodule_positions=POSITIONS,
        statuses=STATUSES,
        new_nodules=1,
        diameter_range=(10.0, 18.0),
        slice_thickness=5.0,
        transform="identity",
        **GRID,
    )


def test_default_phantom_unchanged():
    # Checksums computed once from the code before the hard phantom was added.
    ph = ds.chest_phantom("tiny", seed=0)
    assert (
        _sha(ph.image, ph.lung_mask, ph.nodule_labels)
        == "6e9a0e3e15365ace9fcc48d26ed6f575cc7d883c630b816f158088580f9b555b"
    )
    p = ds.phantom_pair("tiny", seed=1, n_nodules=3, new_nodules=1)
    assert (
        _sha(p.baseline.image, p.followup.image, p.followup.nodule_labels)
        == "651a78de6a87f5b95a69b2d574b2a56fed16db225e90dbe2869c94c75fbea86c"
    )


def test_every_type_shape_position_rendered(pair):
    ph = pair.baseline
    assert isinstance(ph, ds.HardPhantom)
    assert sorted(n.type for n in ph.nodules) == sorted(TYPES)
    assert {n.shape for n in ph.nodules} == set(ds.NODULE_SHAPES)
    assert sorted(n.position for n in ph.nodules) == sorted(POSITIONS)
    for n in ph.nodules:
        assert n.kind == n.type
        assert n.n_voxels == np.count_nonzero(ph.nodule_labels == n.id) > 0
        # Truth records agree with each other and with the label mask.
        assert 0.6 * n.diameter_mm < n.mean_axial_diameter_mm < 1.7 * n.diameter_mm
        assert n.long_axis_mm >= n.short_axis_mm > 0
        assert n.mean_axial_diameter_mm == pytest.approx(0.5 * (n.long_axis_mm + n.short_axis_mm))
        vox = float(np.prod(ph.spacing))
        assert 0.3 * n.volume_mm3 < n.n_voxels * vox < 2.5 * n.volume_mm3
        idx = ph.index_of(n.center_mm)
        assert ph.lung_mask[idx]


def test_volume_matches_the_analytic_ellipsoid(pair):
    # Round nodules are one ellipsoid: the fine-grid volume equals 4/3 pi a b c.
    for spec in pair.baseline_scene.nodules:
        if spec.shape != "round":
            continue
        rec = next(n for n in pair.baseline.nodules if n.id == spec.id)
        exact = 4.0 / 3.0 * np.pi * float(np.prod(spec.lobes[0][1]))
        assert rec.volume_mm3 == pytest.approx(exact, rel=0.03)
        assert rec.diameter_mm == pytest.approx((6.0 * exact / np.pi) ** (1.0 / 3.0), rel=0.01)
        assert min(spec.lobes[0][1]) * 2 - 0.5 < rec.long_axis_mm < max(spec.lobes[0][1]) * 2 + 0.5


def _by_type(ph, t):
    return next(n for n in ph.nodules if n.type == t)


def test_nodule_hu_by_type(pair):
    ph = pair.baseline
    img = ph.image.astype(float)
    lung_median = float(np.median(img[ph.lung_mask & (ph.nodule_labels == 0)]))
    ggo = _by_type(ph, "ground-glass")
    vals = img[ph.nodule_labels == ggo.id]
    assert -750.0 <= ggo.hu <= -300.0
    assert -800.0 < np.median(vals) < -250.0
    assert np.median(vals) > lung_median + 50
    solid = _by_type(ph, "solid")
    assert np.median(img[ph.nodule_labels == solid.id]) > -400.0
    calc = _by_type(ph, "calcified")
    assert calc.hu > 200.0
    assert img[ph.nodule_labels == calc.id].max() > 200.0
    part = _by_type(ph, "part-solid")
    assert 0 < part.solid_core_diameter_mm < part.mean_axial_diameter_mm
    assert ggo.solid_core_diameter_mm == 0.0
    assert solid.solid_core_diameter_mm == solid.mean_axial_diameter_mm
    spec = next(s for s in pair.baseline_scene.nodules if s.id == part.id)
    core = img[ph.index_of(spec.core[0])]
    assert core > part.hu + 150.0  # the solid core is denser than its ground glass


def test_nodule_positions(pair):
    ph, scene = pair.baseline, pair.baseline_scene
    specs = {s.id: s for s in scene.nodules}
    jp = next(n for n in ph.nodules if n.position == "juxtapleural")
    # The labelled nodule touches the chest wall: dense non-lung voxels next to it.
    ring = ndimage.binary_dilation(ph.nodule_labels == jp.id, iterations=1)
    wall = ring & ~ph.lung_mask & (ph.image > -500)
    assert np.count_nonzero(wall) > 0
    jv = specs[next(n.id for n in ph.nodules if n.position == "juxtavascular")]
    vs = scene.base.vessel_segments
    gap = _segment_distance(np.asarray(jv.center_mm), vs[:, :3], vs[:, 3:6]) - vs[:, 6]
    assert gap.min() < max(max(s) for _, s in jv.lobes)
    pf = specs[next(n.id for n in ph.nodules if n.position == "perifissural")]
    c = np.asarray(pf.center_mm)[:, None]
    assert _fissure_distance(scene.fissures, *c)[0] < min(pf.lobes[0][1])
    free = specs[next(n.id for n in ph.nodules if n.position == "free")]
    big = vs[vs[:, 6] >= 1.0]
    gap = _segment_distance(np.asarray(free.center_mm), big[:, :3], big[:, 3:6]) - big[:, 6]
    assert gap.min() > max(free.lobes[0][1])


def test_mimics_fissures_padding_table(pair):
    ph = pair.baseline
    kinds = {m["type"] for m in ph.mimics}
    assert {"scar", "atelectasis", "bifurcation"} <= kinds
    assert ph.settings["fissures"] == 3
    assert ph.settings["padding_hu"] == -2048.0
    assert np.all(ph.image[:, ~ph.fov_mask] == -2048)
    assert np.all(ph.image[:, ph.fov_mask] >= -1024)
    assert not ph.lung_mask[:, ~ph.fov_mask].any()
    # The table: a dense skin in the centre column just below its top, air above it.
    top = ph.settings["table"]
    j = int(np.ceil((top - ph.origin[1]) / ph.spacing[1]))
    col = ph.image[:, j : j + 3, 60:68].astype(float)
    assert np.all(col.max(axis=(1, 2)) > -600.0)


def test_table_and_padding_options():
    kw = dict(GRID, shape=(2, 128, 128), origin=(140.0, 0.0, 0.0), noise_hu=0.0, n_nodules=0)
    a = ds.hard_chest_phantom(padding_hu=-3024, **kw)
    b = ds.hard_chest_phantom(padding_hu=None, table=False, **kw)
    assert np.all(a.image[:, ~a.fov_mask] == -3024)
    assert b.image.min() >= -1024
    top = a.settings["table"]
    j = int(np.ceil((top - a.origin[1]) / a.spacing[1]))
    assert a.image[:, j : j + 2, 64].max() > -600
    assert b.image[:, j : j + 2, 64].max() < -990
    assert b.settings["table"] is None


@pytest.mark.parametrize("thickness", ds.SLICE_THICKNESS_PRESETS)
def test_slice_thickness_sets_z_spacing(thickness):
    ph = ds.hard_chest_phantom("tiny", seed=0, n_nodules=0, slice_thickness=thickness)
    assert ph.spacing[0] == thickness
    assert ph.image.shape[0] == round(300.0 / thickness)
    assert ph.settings["slice_thickness"] == thickness


def test_thick_slices_average_partial_volume():
    # A thick slice is the mean of the scene over its thickness, so a sharp z edge
    # (the lung apex region) is smoother at 5 mm than at 1 mm on the same positions.
    kw = dict(spacing=(5.0, 2.8125, 2.8125), shape=(20, 128, 128), origin=(100.0, 0.0, 0.0))
    thin = ds.hard_chest_phantom(slice_thickness=1.0, noise_hu=0, n_nodules=0, **kw)
    thick = ds.hard_chest_phantom(slice_thickness=5.0, noise_hu=0, n_nodules=0, **kw)
    dz_thin = np.abs(np.diff(thin.image.astype(float), axis=0)).mean()
    dz_thick = np.abs(np.diff(thick.image.astype(float), axis=0)).mean()
    assert dz_thick < dz_thin


def _nps_centroid(noise: np.ndarray, spacing) -> float:
    f = np.abs(np.fft.fft2(noise)) ** 2
    nps = f.mean(axis=0)
    fy = np.fft.fftfreq(noise.shape[1], d=spacing[1])
    fx = np.fft.fftfreq(noise.shape[2], d=spacing[2])
    fr = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    return float((nps * fr).sum() / nps.sum())


def test_sharp_kernel_noise_has_more_high_frequency_power():
    kw = dict(
        shape=(3, 160, 160),
        spacing=(2.5, 1.40625, 1.40625),
        origin=(140.0, 68.0, 68.0),
        n_nodules=0,
        padding_hu=None,
    )
    clean = ds.hard_chest_phantom(noise_hu=0.0, **kw).image.astype(float)
    soft = ds.hard_chest_phantom(recon_kernel="soft", noise_hu=30.0, **kw).image - clean
    sharp = ds.hard_chest_phantom(recon_kernel="sharp", noise_hu=30.0, **kw).image - clean
    tissue = (clean > -200) & (clean < 200)
    assert np.std(soft[tissue]) == pytest.approx(30.0, rel=0.15)
    assert np.std(sharp[tissue]) == pytest.approx(30.0, rel=0.15)
    # Mediastinum patches (noise unclipped there): compare the spectra's centroids.
    box = (slice(None), slice(60, 92), slice(66, 94))
    assert (clean[box] > -880).all()
    assert _nps_centroid(sharp[box], kw["spacing"]) > 1.15 * _nps_centroid(soft[box], kw["spacing"])
    # Default noise levels follow the kernel: sharp is noisier.
    a = ds.hard_chest_phantom(recon_kernel="soft", **kw).settings["noise_hu"]
    b = ds.hard_chest_phantom(recon_kernel="sharp", **kw).settings["noise_hu"]
    assert b > 2 * a


def test_followup_statuses(pair):
    by_id = {c["id"]: c for c in pair.changes}
    assert [by_id[i]["status"] for i in (1, 2, 3, 4)] == STATUSES
    assert by_id[5]["status"] == "new"
    assert {c["status"] for c in pair.changes} == set(ds.FOLLOWUP_STATUSES)
    b_ids = {n.id for n in pair.baseline.nodules}
    f_ids = {n.id for n in pair.followup.nodules}
    assert b_ids == {1, 2, 3, 4} and f_ids == {1, 2, 3, 5}
    assert 4 not in np.unique(pair.followup.nodule_labels)
    assert 5 in np.unique(pair.followup.nodule_labels)
    assert 5 not in np.unique(pair.baseline.nodule_labels)
    for c in pair.changes:
        b, f = c["baseline"], c["followup"]
        if c["status"] == "stable":
            assert f.volume_mm3 == pytest.approx(b.volume_mm3, rel=1e-9)
        elif c["status"] == "growing":
            assert f.volume_mm3 / b.volume_mm3 == pytest.approx(c["growth_ratio"], rel=0.05)
            assert c["growth_ratio"] >= 1.4
            assert f.n_voxels > b.n_voxels
        elif c["status"] == "shrinking":
            assert c["growth_ratio"] <= 0.7
            assert f.volume_mm3 < 0.75 * b.volume_mm3
        elif c["status"] == "resolved":
            assert f is None and c["growth_ratio"] is None
        else:
            assert b is None and f.status == "new"
        if f is not None:
            assert f.status == c["status"]


def test_followup_moves_the_patient_not_the_scanner():
    kw = dict(GRID, shape=(3, 128, 128), origin=(140.0, 0.0, 0.0), n_nodules=1, new_nodules=0)
    pair = ds.hard_phantom_pair(seed=1, max_translation_mm=10.0, **kw)
    m = pair.transform
    assert not np.allclose(m, np.eye(4))
    c = pair.changes[0]
    if c["followup"] is not None:
        assert np.allclose(m @ [*c["center_baseline_mm"], 1.0], [*c["center_followup_mm"], 1.0])
    # Field of view and table are the scanner's: the same in both scans.
    fov = pair.baseline.fov_mask
    assert np.array_equal(fov, pair.followup.fov_mask)
    assert pair.baseline.settings["table"] == pair.followup.settings["table"]


def test_deterministic_and_seeded():
    kw = dict(GRID, shape=(4, 64, 64), spacing=(5.0, 5.625, 5.625), origin=(140.0, 0.0, 0.0))
    # Seeds whose anatomy other tests already built (the nodule-free chest is cached).
    a = ds.hard_chest_phantom(seed=3, n_nodules=2, **kw)
    b = ds.hard_chest_phantom(seed=3, n_nodules=2, **kw)
    c = ds.hard_chest_phantom(seed=1, n_nodules=2, **kw)
    assert _sha(a.image, a.nodule_labels, a.lung_mask) == _sha(
        b.image, b.nodule_labels, b.lung_mask
    )
    assert a.nodules == b.nodules
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"recon_kernel": "medium"}, "recon_kernel"),
        ({"slice_thickness": 7.0}, "slice_thickness"),
        ({"nodule_types": ["solid", "glass"]}, "nodule_types"),
        ({"nodule_positions": "apical"}, "nodule_positions"),
        ({"padding_hu": -500}, "padding_hu"),
        ({"diameter_range": (1.0, 5.0)}, "diameter_range"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ds.hard_chest_phantom("tiny", **kwargs)


def _realct() -> Path | None:
    env = os.environ.get("FASTCT_REALCT")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "realct"
    return path if path.is_dir() else None


@pytest.mark.slow
def test_calibration_ranges_cover_real_scans():
    """The phantom's parenchyma and noise settings bracket the real scans' measurements."""
    real = _realct()
    if real is None:
        pytest.skip("real chest CT folder absent (set FASTCT_REALCT or ../shared/realct)")
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "phantom_calibration.py"
    spec = importlib.util.spec_from_file_location("phantom_calibration", path)
    pc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pc)
    sharp_img, spc = pc.load_nifti(real / pc.REAL_SCANS["Lung_Dx-A0001 sharp (L)"])
    soft_img, _ = pc.load_nifti(real / pc.REAL_SCANS["Lung_Dx-A0001 soft (B)"])
    sharp = pc.noise_stats(sharp_img, spc)
    soft = pc.noise_stats(soft_img, spc)
    assert sharp["nps_centroid"] > soft["nps_centroid"]
    assert sharp["noise_std"] > 2 * soft["noise_std"]
    lung = pc.parenchyma_stats(soft_img, pc.simple_lung_mask(soft_img), spc)
    ph = ds.hard_chest_phantom("small", seed=0, slice_thickness=5.0, recon_kernel="soft")
    mine = pc.parenchyma_stats(ph.image, pc.simple_lung_mask(ph.image), ph.spacing)
    assert abs(mine["lung_median"] - lung["lung_median"]) < 60.0
    assert 0.3 < mine["vessel_fraction"] / lung["vessel_fraction"] < 3.0


def test_realism_switch():
    ph = ds.chest_phantom("tiny", seed=3, n_nodules=1, realism="hard")
    assert isinstance(ph, ds.HardPhantom)
    assert ph.spacing[0] == 2.5 and ph.settings["recon_kernel"] == "soft"
    assert not isinstance(ds.chest_phantom("tiny", seed=3, n_nodules=1), ds.HardPhantom)
    with pytest.raises(ValueError, match="realism"):
        ds.chest_phantom("tiny", realism="real")
    with pytest.raises(ValueError, match="realism"):
        ds.phantom_pair("tiny", realism="easy")

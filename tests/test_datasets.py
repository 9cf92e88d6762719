"""Tests for fastct.datasets: the analytic chest phantom and its follow-up generator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastct import datasets as ds
from fastct._config import set_num_threads
from fastct.datasets._primitives import _segment_distance

TINY = ds.PRESETS["tiny"]
SMALL = ds.PRESETS["small"]


@pytest.fixture(scope="module")
def small():
    return ds.chest_phantom("small", seed=0)


@pytest.fixture(scope="module")
def pair():
    # Similarity with a visible scale, every kind of change and one new nodule.
    return ds.phantom_pair(
        "small",
        seed=1,
        transform="similarity",
        scale_range=(1.03, 1.05),
        diameter_range=(8.0, 25.0),
        new_nodules=1,
    )


def _centroid_mm(labels, label, spacing, origin):
    idx = np.argwhere(labels == label)
    return np.asarray(origin) + idx.mean(axis=0) * np.asarray(spacing)


def _fine_volume(scene, label, center_mm, radius_mm, transform=None):
    """Volume (mm^3) of nodule ``label`` measured on a fine local grid around it."""
    step = min(0.4, radius_mm / 12)
    n = int(math.ceil(2 * (radius_mm + 2) / step)) + 1
    origin = np.asarray(center_mm) - (n - 1) / 2 * step
    ph = scene.render((n, n, n), step, origin, transform=transform, noise_hu=0)
    return np.count_nonzero(ph.nodule_labels == label) * step**3


# -- presets and grids ------------------------------------------------------------------


def test_presets_cover_same_field_of_view():
    for name, p in ds.PRESETS.items():
        assert len(p["shape"]) == 3, name
        extent = np.multiply(p["shape"], p["spacing"])
        np.testing.assert_allclose(extent, ds.FOV_MM, err_msg=name)
    clinical = ds.PRESETS["clinical"]
    assert clinical["shape"] == (400, 512, 512)
    assert clinical["spacing"][1] == clinical["spacing"][2] < 1.0


def test_shape_or_spacing_override_derives_the_other():
    ph = ds.chest_phantom("tiny", shape=(20, 30, 30), noise_hu=0)
    assert ph.image.shape == (20, 30, 30)
    np.testing.assert_allclose(np.multiply(ph.spacing, ph.image.shape), ds.FOV_MM)
    ph = ds.chest_phantom("tiny", spacing=(10.0, 9.0, 9.0), noise_hu=0)
    assert ph.image.shape == (30, 40, 40)
    ph = ds.chest_phantom("tiny", shape=(8, 16, 16), spacing=2.0, origin="center", noise_hu=0)
    centre = np.add(ph.origin, np.multiply(np.subtract(ph.image.shape, 1) / 2, ph.spacing))
    np.testing.assert_allclose(centre, ds.SCENE_CENTER_MM)


def test_same_anatomy_across_presets():
    a = ds.chest_phantom("tiny", seed=4)
    b = ds.chest_phantom("small", seed=4)
    assert [(n.id, n.kind) for n in a.nodules] == [(n.id, n.kind) for n in b.nodules]
    np.testing.assert_allclose([n.center_mm for n in a.nodules], [n.center_mm for n in b.nodules])
    np.testing.assert_allclose(
        [n.diameter_mm for n in a.nodules], [n.diameter_mm for n in b.nodules]
    )


# -- determinism --------------------------------------------------------------------------


def test_same_seed_same_bytes_different_seed_differs():
    a = ds.chest_phantom("tiny", seed=0)
    b = ds.chest_phantom("tiny", seed=0)
    c = ds.chest_phantom("tiny", seed=1)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.lung_mask.tobytes() == b.lung_mask.tobytes()
    assert a.nodule_labels.tobytes() == b.nodule_labels.tobytes()
    assert a.nodules == b.nodules
    assert a.image.tobytes() != c.image.tobytes()
    # Anatomy (not just noise) depends on the seed.
    a0 = ds.chest_phantom("tiny", seed=0, noise_hu=0)
    c0 = ds.chest_phantom("tiny", seed=1, noise_hu=0)
    assert not np.array_equal(a0.image, c0.image)


def test_scene_is_independent_of_nodule_count_for_vessels():
    a = ds.ChestScene.generate(3, n_nodules=2)
    b = ds.ChestScene.generate(3, n_nodules=5)
    np.testing.assert_array_equal(a.vessel_segments, b.vessel_segments)
    assert len(a.nodules) == 2 and len(b.nodules) == 5


def test_thread_count_does_not_change_bits():
    ref = ds.chest_phantom("small", seed=2, noise_hu=0)
    set_num_threads(1)
    try:
        one = ds.chest_phantom("small", seed=2, noise_hu=0)
    finally:
        set_num_threads(None)
    assert np.array_equal(ref.image, one.image)
    assert np.array_equal(ref.nodule_labels, one.nodule_labels)


# -- content ------------------------------------------------------------------------------


def test_dtypes_and_shapes(small):
    assert small.image.dtype == np.int16
    assert small.lung_mask.dtype == np.bool_
    assert small.nodule_labels.dtype == np.int32
    assert small.image.shape == small.lung_mask.shape == small.nodule_labels.shape
    assert small.image.shape == SMALL["shape"]
    assert small.spacing == SMALL["spacing"]
    assert small.origin == (0.0, 0.0, 0.0)
    assert small.image.min() >= -1024 and small.image.max() <= 3071


@pytest.mark.parametrize("seed", [0, 5])
def test_tissue_values_at_landmarks(seed):
    scene = ds.ChestScene.generate(seed)
    ph = scene.render(SMALL["shape"], SMALL["spacing"], noise_hu=0)

    def hu(name):
        return int(ph.image[ph.index_of(scene.landmarks[name])])

    assert hu("air") == -1000
    assert -130 <= hu("fat") <= -60
    assert 20 <= hu("heart") <= 70
    assert hu("trachea") < -900
    assert hu("vertebral_body") > 300
    for side in ("right_lung", "left_lung"):
        assert -920 <= hu(side) <= -780
        assert ph.lung_mask[ph.index_of(scene.landmarks[side])]
    assert not ph.lung_mask[ph.index_of(scene.landmarks["heart"])]
    assert not ph.lung_mask[ph.index_of(scene.landmarks["trachea"])]
    # Bones: ribs and spine reach cortical values somewhere.
    assert ph.image.max() > 600


def test_lung_parenchyma_and_noise(small):
    lung = small.image[small.lung_mask]
    assert -880 <= np.median(lung) <= -820
    # The lungs take a realistic share of the chest (both well inside the body).
    assert 0.05 < small.lung_mask.mean() < 0.2
    clean = ds.chest_phantom("small", seed=0, noise_hu=0)
    noise = small.image.astype(float) - clean.image
    valid = clean.image > -900  # no clipping at -1024
    assert 18.0 < noise[valid].std() < 22.0
    # Spatially correlated in-plane, independent across slices.
    n = noise * valid
    in_plane = np.corrcoef(n[:, :, :-1].ravel(), n[:, :, 1:].ravel())[0, 1]
    across = np.corrcoef(n[:-1].ravel(), n[1:].ravel())[0, 1]
    assert in_plane > 0.2
    assert abs(across) < 0.05


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nodules_inside_lungs_with_valid_records(seed):
    ph = ds.chest_phantom("small", seed=seed)
    assert len(ph.nodules) == 6
    assert [n.id for n in ph.nodules] == list(range(1, 7))
    assert set(np.unique(ph.nodule_labels)) <= {0, 1, 2, 3, 4, 5, 6}
    assert ph.lung_mask[ph.nodule_labels > 0].all()
    kinds = {n.kind for n in ph.nodules}
    assert kinds <= {"solid", "part-solid"}
    counts = np.bincount(ph.nodule_labels.ravel(), minlength=7)
    voxel = np.prod(ph.spacing)
    for n in ph.nodules:
        assert 3.0 <= n.diameter_mm <= 30.0
        assert n.n_voxels == counts[n.id]
        assert n.volume_mm3 == pytest.approx(n.n_voxels * voxel)
        assert n.analytic_volume_mm3 == pytest.approx(math.pi / 6 * n.diameter_mm**3)
        if n.kind == "part-solid":
            assert n.solid_diameter_mm < n.diameter_mm
        # Nothing but parenchyma (and thin vessels) in a shell just outside the nodule.
        if n.n_voxels >= 30:
            inside = ph.image[ph.nodule_labels == n.id].mean()
            assert inside > -700


def test_nodules_clear_of_big_vessels_and_each_other():
    scene = ds.ChestScene.generate(0)
    vs = scene.vessel_segments
    big = vs[:, 6] >= 1.5
    for a in scene.nodules:
        c = np.asarray(a.center_mm)
        d = _segment_distance(c, vs[big, :3], vs[big, 3:6]) - vs[big, 6]
        assert d.min() > a.bounding_radius_mm
        for b in scene.nodules:
            if b.id != a.id:
                gap = np.linalg.norm(c - b.center_mm)
                assert gap > a.bounding_radius_mm + b.bounding_radius_mm


def test_measured_volume_matches_analytic():
    scene = ds.ChestScene.generate(0, n_nodules=4, diameter_range=(3.0, 30.0))
    for nod in scene.nodules:
        vol = _fine_volume(scene, nod.id, nod.center_mm, nod.bounding_radius_mm)
        assert vol == pytest.approx(nod.volume_mm3, rel=0.04), nod


def test_part_solid_nodule_has_ground_glass_and_core():
    scene = ds.ChestScene.generate(0)
    nod = next(n for n in scene.nodules if n.kind == "part-solid")
    step = 0.5
    n = int(2 * nod.bounding_radius_mm / step) + 9
    origin = np.asarray(nod.center_mm) - (n - 1) / 2 * step
    ph = scene.render((n, n, n), step, origin, noise_hu=0)
    core_centre = np.add(nod.center_mm, nod.core_offset_mm)
    assert ph.image[ph.index_of(core_centre)] > -100
    values = ph.image[ph.nodule_labels == nod.id]
    assert np.count_nonzero((values > -650) & (values < -350)) > 0.2 * values.size


# -- slabs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size,slab", [("tiny", 5), ("small", 9), ("small", 64)])
def test_slabs_concatenate_to_whole_render(size, slab):
    whole = ds.chest_phantom(size, seed=3)
    parts = list(ds.iter_phantom_slabs(size, seed=3, slab=slab))
    assert parts[0][0] == 0 and parts[-1][1] == whole.image.shape[0]
    for (z0, z1, p), (nz0, _, _) in zip(parts, parts[1:] + [(whole.image.shape[0], 0, 0)]):
        assert z1 == nz0 and p.z_range == (z0, z1)
        assert p.origin[0] == pytest.approx(whole.origin[0] + z0 * whole.spacing[0])
        assert p.nodules == whole.nodules
    for name in ("image", "lung_mask", "nodule_labels"):
        cat = np.concatenate([getattr(p, name) for _, _, p in parts])
        assert cat.tobytes() == getattr(whole, name).tobytes(), name


def test_z_range_and_transformed_slabs_match_whole():
    scene = ds.ChestScene.generate(2, n_nodules=3)
    m = ds.random_transform(7, ds.SCENE_CENTER_MM, kind="similarity")
    inv = np.linalg.inv(m)
    whole = scene.render(TINY["shape"], TINY["spacing"], transform=inv, noise_seed=11)
    part = scene.render(
        TINY["shape"], TINY["spacing"], transform=inv, noise_seed=11, z_range=(7, 19)
    )
    assert np.array_equal(part.image, whole.image[7:19])
    assert np.array_equal(part.nodule_labels, whole.nodule_labels[7:19])
    slabs = scene.iter_slabs(TINY["shape"], TINY["spacing"], slab=4, transform=inv, noise_seed=11)
    cat = np.concatenate([p.image for _, _, p in slabs])
    assert np.array_equal(cat, whole.image)


# -- follow-up -----------------------------------------------------------------------------


def test_pair_baseline_is_the_chest_phantom():
    p = ds.phantom_pair("tiny", seed=6, n_nodules=3)
    ph = ds.chest_phantom("tiny", seed=6, n_nodules=3)
    assert np.array_equal(p.baseline.image, ph.image)
    assert p.baseline.nodules == ph.nodules


def test_pair_transform_is_a_bounded_similarity(pair):
    m = pair.transform
    assert m.shape == (4, 4)
    np.testing.assert_array_equal(m[3], [0, 0, 0, 1])
    lin = m[:3, :3] / pair.scale
    np.testing.assert_allclose(lin @ lin.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(lin) == pytest.approx(1.0)
    assert 1.03 <= pair.scale <= 1.05
    angle = math.degrees(math.acos(np.clip((np.trace(lin) - 1) / 2, -1, 1)))
    assert angle <= 10.0 + 1e-9
    # Rotation about the grid centre, then a translation of at most 10 mm.
    b = pair.baseline
    centre = np.add(b.origin, np.multiply(np.subtract(b.image.shape, 1) / 2, b.spacing))
    moved = m[:3, :3] @ centre + m[:3, 3]
    assert np.linalg.norm(moved - centre) <= 10.0 + 1e-9


def test_pair_rigid_has_unit_scale():
    p = ds.phantom_pair("tiny", seed=2, n_nodules=2, transform="rigid", max_rotation_deg=5)
    lin = p.transform[:3, :3]
    np.testing.assert_allclose(lin @ lin.T, np.eye(3), atol=1e-12)
    assert p.scale == pytest.approx(1.0)


def test_transform_maps_baseline_centres_to_followup_centres(pair):
    m = pair.transform
    fu, base = pair.followup, pair.baseline
    for c in pair.changes:
        q = np.asarray(c["center_followup_mm"])
        if c["center_baseline_mm"] is not None:
            p = np.asarray(c["center_baseline_mm"])
            np.testing.assert_allclose(m[:3, :3] @ p + m[:3, 3], q, atol=1e-9)
            bc = _centroid_mm(base.nodule_labels, c["id"], base.spacing, base.origin)
            assert np.all(np.abs(bc - p) <= np.asarray(base.spacing))
        # The follow-up label centroid (physical mm) lies within a voxel of M @ p.
        if np.count_nonzero(fu.nodule_labels == c["id"]) < 5:
            assert c["change"] in ("new", "shrink")  # too small to have a stable centroid
            continue
        fc = _centroid_mm(fu.nodule_labels, c["id"], fu.spacing, fu.origin)
        assert np.all(np.abs(fc - q) <= np.asarray(fu.spacing)), (c["id"], fc - q)
    assert fu.lung_mask[fu.nodule_labels > 0].all()


def test_growth_reported_matches_masks(pair):
    m = pair.transform
    inv = np.linalg.inv(m)
    counts = np.bincount(pair.followup.nodule_labels.ravel())
    voxel = np.prod(pair.followup.spacing)
    changes = {c["change"] for c in pair.changes}
    assert {"grow", "shrink", "stable", "new"} <= changes
    for c in pair.changes:
        assert c["volume_followup_mm3"] == pytest.approx(counts[c["id"]] * voxel)
        assert 3.0 - 1e-9 <= c["diameter_followup_mm"] / pair.scale <= 30.0 + 1e-9
        r = c["growth_ratio"]
        if c["change"] == "new":
            assert r is None and c["volume_baseline_mm3"] is None
            assert not np.any(pair.baseline.nodule_labels == c["id"])
            continue
        assert {"grow": r > 1.05, "shrink": r < 0.95, "stable": r == 1.0}[c["change"]]
        # Analytic: follow-up volume in follow-up mm = growth * scale^3 * baseline volume.
        expected = r * pair.scale**3
        analytic = c["analytic_volume_followup_mm3"] / c["analytic_volume_baseline_mm3"]
        assert analytic == pytest.approx(expected)
        d_ratio = c["diameter_followup_mm"] / c["diameter_baseline_mm"]
        assert d_ratio == pytest.approx(expected ** (1 / 3))
        # Masks: measured on fine grids around the nodule in each scan.
        spec_b = next(n for n in pair.baseline_scene.nodules if n.id == c["id"])
        spec_f = next(n for n in pair.followup_scene.nodules if n.id == c["id"])
        vb = _fine_volume(
            pair.baseline_scene, c["id"], c["center_baseline_mm"], spec_b.bounding_radius_mm
        )
        vf = _fine_volume(
            pair.followup_scene,
            c["id"],
            c["center_followup_mm"],
            spec_f.bounding_radius_mm * pair.scale,
            transform=inv,
        )
        assert vf / vb == pytest.approx(expected, rel=0.06)
        # And the coarse masks of the scans themselves agree roughly.
        if counts[c["id"]] >= 100:
            measured = c["volume_followup_mm3"] / c["volume_baseline_mm3"]
            assert measured == pytest.approx(expected, rel=0.25)


def test_identity_without_growth_reproduces_baseline():
    p = ds.phantom_pair("small", seed=2, transform="identity", growth=None, followup_noise_seed=2)
    np.testing.assert_array_equal(p.transform, np.eye(4))
    assert p.baseline.image.tobytes() == p.followup.image.tobytes()
    assert p.baseline.lung_mask.tobytes() == p.followup.lung_mask.tobytes()
    assert p.baseline.nodule_labels.tobytes() == p.followup.nodule_labels.tobytes()
    assert all(c["change"] == "stable" for c in p.changes)
    # Default follow-up noise is independent; the anatomy is still the same.
    q = ds.phantom_pair("small", seed=2, transform="identity", growth=None)
    diff = q.followup.image.astype(float) - q.baseline.image
    assert 0 < np.abs(diff).mean() < 60
    assert np.array_equal(q.baseline.nodule_labels, q.followup.nodule_labels)
    r = ds.phantom_pair("small", seed=2, transform="identity", growth=None, noise_hu=0)
    assert np.array_equal(r.baseline.image, r.followup.image)


def test_explicit_translation_matrix():
    m = np.eye(4)
    m[:3, 3] = (4.6875, -5.625, 8.4375)  # whole voxels of the small grid
    p = ds.phantom_pair("small", seed=3, n_nodules=2, transform=m, growth=1.0, noise_hu=0)
    shift = np.array([1, -2, 3])
    a = p.baseline.image[2:-2, 4:-4, 4:-4]
    b = p.followup.image[2 + shift[0] : -2 + shift[0], 4 + shift[1] : -4 + shift[1], 4 + 3 : -4 + 3]
    assert np.array_equal(a, b)
    for c in p.changes:
        np.testing.assert_allclose(
            c["center_followup_mm"], np.add(c["center_baseline_mm"], m[:3, 3])
        )


def test_uniform_growth_and_too_much_growth():
    p = ds.phantom_pair("tiny", seed=0, n_nodules=3, transform="identity", growth=1.5, noise_hu=0)
    assert all(c["growth_ratio"] == pytest.approx(1.5) for c in p.changes)
    with pytest.raises(ValueError, match="growth"):
        ds.phantom_pair("tiny", seed=0, n_nodules=3, growth=1000.0)


# -- argument errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,exc,name",
    [
        ({"size": "huge"}, ValueError, "size"),
        ({"size": 3}, TypeError, "size"),
        ({"shape": (-4, 48, 48)}, ValueError, "shape"),
        ({"shape": (0, 48, 48)}, ValueError, "shape"),
        ({"shape": (48, 48)}, ValueError, "shape"),
        ({"spacing": (0.0, 1.0, 1.0)}, ValueError, "spacing"),
        ({"spacing": -2.0}, ValueError, "spacing"),
        ({"spacing": (1.0, 1.0)}, ValueError, "spacing"),
        ({"spacing": (1.0, float("nan"), 1.0)}, ValueError, "spacing"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"n_nodules": -1}, ValueError, "n_nodules"),
        ({"noise_hu": -5.0}, ValueError, "noise_hu"),
        ({"diameter_range": (1.0, 10.0)}, ValueError, "diameter_range"),
        ({"diameter_range": (20.0, 10.0)}, ValueError, "diameter_range"),
        ({"origin": "middle"}, ValueError, "origin"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, exc, name):
    kwargs = {"size": "tiny", **kwargs}
    with pytest.raises(exc, match=name):
        ds.chest_phantom(**kwargs)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"transform": "affine"}, "transform"),
        ({"transform": np.eye(3)}, "transform"),
        ({"scale_range": (1.1, 0.9)}, "scale_range"),
        ({"transform": "similarity", "scale_range": (0.0, 1.0)}, "scale_range"),
        ({"max_rotation_deg": -1.0}, "max_rotation_deg"),
        ({"max_translation_mm": -1.0}, "max_translation_mm"),
        ({"growth": "lots"}, "growth"),
        ({"growth": [1.0, 2.0]}, "growth"),
        ({"growth": -1.0}, "growth"),
        ({"new_nodules": -1}, "new_nodules"),
    ],
)
def test_bad_pair_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ds.phantom_pair("tiny", seed=0, n_nodules=3, **kwargs)


def test_bad_render_arguments():
    scene = ds.ChestScene.generate(0, n_nodules=1)
    with pytest.raises(ValueError, match="z_range"):
        scene.render(TINY["shape"], TINY["spacing"], z_range=(10, 5))
    with pytest.raises(ValueError, match="z_range"):
        scene.render(TINY["shape"], TINY["spacing"], z_range=(0, 99))
    with pytest.raises(ValueError, match="transform"):
        scene.render(TINY["shape"], TINY["spacing"], transform=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="slab"):
        scene.iter_slabs(TINY["shape"], TINY["spacing"], slab=0)
    with pytest.raises(ValueError, match="shape"):
        scene.render((4, 4), 1.0)

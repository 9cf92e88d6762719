"""Rigid / similarity transforms: algebra, parameters, JSON and ITK .tfm through SimpleITK."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastct.transforms import RigidTransform, SimilarityTransform, load_transform

sitk = pytest.importorskip("SimpleITK")


def random_rigid(rng, ndim=3, similarity=False):
    if ndim == 3:
        v = rng.normal(size=3)
        v *= rng.uniform(0.05, 0.6) / np.linalg.norm(v)
        rot = v
    else:
        rot = float(rng.uniform(-1, 1))
    kw = dict(rotation=rot, translation=rng.normal(size=ndim) * 10,
              center=rng.normal(size=ndim) * 50)  # fmt: skip
    if similarity:
        return SimilarityTransform(ndim, scale=float(rng.uniform(0.8, 1.2)), **kw)
    return RigidTransform(ndim, **kw)


def itk_points(t, points):
    return np.array([t.TransformPoint(tuple(float(v) for v in p[::-1]))[::-1] for p in points])


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("similarity", [False, True])
def test_apply_matches_matrix_and_definition(rng, ndim, similarity):
    t = random_rigid(rng, ndim, similarity)
    p = rng.normal(size=(7, ndim)) * 40
    expected = t.scale * (p - t.center) @ t.rotation.T + t.center + t.translation
    np.testing.assert_allclose(t.apply(p), expected, atol=1e-10)
    hom = np.c_[p, np.ones(len(p))] @ t.matrix.T
    np.testing.assert_allclose(hom[:, :ndim], expected, atol=1e-10)
    np.testing.assert_allclose(t.apply(p[0]), expected[0], atol=1e-10)
    r = t.rotation
    np.testing.assert_allclose(r.T @ r, np.eye(ndim), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


@pytest.mark.parametrize("ndim", [2, 3])
def test_inverse_and_composition(rng, ndim):
    a = random_rigid(rng, ndim, similarity=True)
    b = random_rigid(rng, ndim)
    p = rng.normal(size=(5, ndim)) * 30
    np.testing.assert_allclose(a.inverse().apply(a.apply(p)), p, atol=1e-9)
    np.testing.assert_allclose((a @ b).apply(p), a.apply(b.apply(p)), atol=1e-9)
    np.testing.assert_allclose(a.compose(b).matrix, a.matrix @ b.matrix, atol=1e-9)
    assert isinstance(a @ b, SimilarityTransform)
    assert type(b @ b) is RigidTransform
    np.testing.assert_allclose((b @ b.inverse()).matrix, np.eye(ndim + 1), atol=1e-12)


def test_from_matrix_recovers_parameters(rng):
    t = random_rigid(rng, 3, similarity=True)
    back = SimilarityTransform.from_matrix(t.matrix, center=t.center)
    np.testing.assert_allclose(back.translation, t.translation, atol=1e-9)
    np.testing.assert_allclose(back.rotation, t.rotation, atol=1e-12)
    assert back.scale == pytest.approx(t.scale)
    with pytest.raises(ValueError, match="scale"):
        RigidTransform.from_matrix(t.matrix)
    shear = np.eye(4)
    shear[0, 1] = 0.2
    with pytest.raises(ValueError, match="rotation times an isotropic scale"):
        SimilarityTransform.from_matrix(shear)
    with pytest.raises(ValueError, match="det > 0"):
        RigidTransform.from_matrix(np.diag([-1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="last row"):
        RigidTransform.from_matrix(np.ones((4, 4)))
    with pytest.raises(ValueError, match="3x3 .* or 4x4"):
        RigidTransform.from_matrix(np.eye(5))


def test_versor_and_euler_match_itk(rng):
    t = random_rigid(rng, 3)
    w, *v = t.versor
    assert w >= 0 and np.linalg.norm(t.versor) == pytest.approx(1.0)
    # ITK's versor of the same physical rotation is -reversed(v) (the axis flip is a
    # reflection); check through SimpleITK's own matrix.
    itk = sitk.VersorRigid3DTransform()
    itk.SetCenter(tuple(t.center[::-1]))
    itk.SetParameters((*(-np.asarray(v)[::-1]), *t.translation[::-1]))
    p = rng.normal(size=(4, 3)) * 30
    np.testing.assert_allclose(itk_points(itk, p), t.apply(p), atol=1e-9)
    e = sitk.Euler3DTransform(tuple(t.center[::-1]), *t.euler_angles, tuple(t.translation[::-1]))
    np.testing.assert_allclose(itk_points(e, p), t.apply(p), atol=1e-9)
    r2 = RigidTransform(2, rotation=0.4, center=(1.0, 2.0), translation=(3.0, 4.0))
    assert r2.angle == pytest.approx(0.4) and r2.euler_angles == pytest.approx((0.4,))
    e2 = sitk.Euler2DTransform((2.0, 1.0), 0.4, (4.0, 3.0))
    p2 = rng.normal(size=(4, 2)) * 30
    np.testing.assert_allclose(itk_points(e2, p2), r2.apply(p2), atol=1e-9)
    # construction from a versor (w, vz, vy, vx) and its vector part agree
    t4 = RigidTransform(3, rotation=t.versor)
    np.testing.assert_allclose(t4.rotation, t.rotation, atol=1e-12)
    with pytest.raises(ValueError, match="versor"):
        _ = r2.versor


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("similarity", [False, True])
def test_tfm_read_by_simpleitk(tmp_path, rng, ndim, similarity):
    t = random_rigid(rng, ndim, similarity)
    path = t.save(tmp_path / "t.tfm")
    itk = sitk.ReadTransform(str(path))
    p = rng.normal(size=(6, ndim)) * 50
    np.testing.assert_allclose(itk_points(itk, p), t.apply(p), atol=1e-9)
    back = load_transform(path)
    assert type(back) is type(t)
    np.testing.assert_allclose(back.matrix, t.matrix, atol=1e-12)


def test_reads_files_written_by_simpleitk(tmp_path, rng):
    p = rng.normal(size=(5, 3)) * 40
    cases = {
        "versor": sitk.VersorRigid3DTransform((0.1, -0.2, 0.05, 0.9734), (1, 2, 3), (10, 20, 30)),
        "euler": sitk.Euler3DTransform((4, 5, 6), 0.1, -0.3, 0.2, (7, 8, 9)),
        "similarity": sitk.Similarity3DTransform(1.1, (0, 0.6, 0.8), 0.3, (1, 2, 3), (5, 5, 5)),
        "affine": sitk.AffineTransform(
            sitk.Euler3DTransform((0, 0, 0), 0.2, 0.1, 0.3).GetMatrix(), (1, 2, 3), (4, 5, 6)
        ),
        "translation": sitk.TranslationTransform(3, (1.5, -2, 3)),
    }
    composite = sitk.CompositeTransform([cases["euler"], cases["translation"]])
    cases["composite"] = composite
    for name, itk in cases.items():
        path = tmp_path / f"{name}.tfm"
        sitk.WriteTransform(itk, str(path))
        t = load_transform(path)
        np.testing.assert_allclose(t.apply(p), itk_points(itk, p), atol=1e-8, err_msg=name)
    assert isinstance(load_transform(tmp_path / "similarity.tfm"), SimilarityTransform)
    assert type(load_transform(tmp_path / "affine.tfm")) is RigidTransform


def test_json_round_trip_exact(tmp_path, rng):
    for sim in (False, True):
        t = random_rigid(rng, 3, sim)
        path = t.save(tmp_path / "t.json")
        back = load_transform(path)
        assert back == t
        data = json.loads(path.read_text())
        assert data["type"] == type(t).__name__ and len(data["versor"]) == 4
        assert RigidTransform.from_dict(t.to_dict()) == t


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        RigidTransform(4)
    with pytest.raises(TypeError, match="ndim"):
        RigidTransform("3")
    with pytest.raises(ValueError, match="translation must have 3 values"):
        RigidTransform(3, translation=(1, 2))
    with pytest.raises(ValueError, match="proper rotation"):
        RigidTransform(3, rotation=np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="rotation must be"):
        RigidTransform(3, rotation=np.eye(2))
    with pytest.raises(ValueError, match="norm 1"):
        RigidTransform(3, rotation=(2.0, 0, 0, 0))
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        SimilarityTransform(3, scale=-1.0)
    with pytest.raises(ValueError, match="center must be finite"):
        RigidTransform(2, center=(np.nan, 0))
    t = RigidTransform(3)
    with pytest.raises(ValueError, match=r"points must have shape \(N, 3\)"):
        t.apply(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="cannot compose"):
        t @ RigidTransform(2)
    with pytest.raises(ValueError, match=".json or .tfm"):
        t.save(tmp_path / "t.txt")
    # a transform file of another type
    bspline = sitk.BSplineTransform(3)
    sitk.WriteTransform(bspline, str(tmp_path / "b.tfm"))
    with pytest.raises(ValueError, match="unsupported transform type"):
        load_transform(tmp_path / "b.tfm")
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a fastct transform"):
        load_transform(tmp_path / "other.json")
    (tmp_path / "junk.tfm").write_text("hello world\n")
    with pytest.raises(ValueError, match="not an ITK transform file"):
        load_transform(tmp_path / "junk.tfm")
    with pytest.raises(TypeError, match="path"):
        load_transform(3)

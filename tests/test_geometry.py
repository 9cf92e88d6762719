"""fastct._geometry against SimpleITK: index <-> physical point and orientation codes."""

import itertools

import numpy as np
import pytest

from fastct._geometry import Geometry, index_to_physical, orientation_code, physical_to_index

sitk = pytest.importorskip("SimpleITK")


def _signed_permutations():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            d = np.zeros((3, 3))
            for axis, (comp, sign) in enumerate(zip(perm, signs)):
                d[comp, axis] = sign
            yield d


def _sitk_image(shape, spacing, origin, direction):
    """SimpleITK image of the fastct geometry: reverse every (z, y, x) order."""
    img = sitk.Image(list(shape[::-1]), sitk.sitkFloat32)
    img.SetSpacing(list(spacing[::-1]))
    img.SetOrigin(list(origin[::-1]))
    img.SetDirection(np.asarray(direction)[::-1, ::-1].ravel().tolist())
    return img


@pytest.mark.parametrize("direction", list(_signed_permutations()))
def test_orientation_code_matches_simpleitk(direction):
    img = _sitk_image((4, 5, 6), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), direction)
    expected = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(img.GetDirection())
    assert orientation_code(direction) == expected


def test_orientation_code_identity_and_oblique():
    assert orientation_code(None) == "LPS"
    assert orientation_code(np.eye(3)) == "LPS"
    c, s = np.cos(0.3), np.sin(0.3)
    oblique = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    code = orientation_code(oblique)
    assert code.startswith("oblique (closest ") and code.endswith(")")
    assert orientation_code(np.eye(2)) == "LP"


@pytest.mark.parametrize("seed", range(4))
def test_index_to_physical_matches_simpleitk(seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    directions = [q, *list(_signed_permutations())[seed::12]]
    spacing = tuple(rng.uniform(0.5, 2.5, 3))
    origin = tuple(rng.uniform(-100, 100, 3))
    idx = rng.uniform(-2, 8, size=(5, 3))
    for d in directions:
        img = _sitk_image((7, 8, 9), spacing, origin, d)
        expected = np.array(
            [img.TransformContinuousIndexToPhysicalPoint(p[::-1].tolist())[::-1] for p in idx]
        )
        got = index_to_physical(idx, spacing, origin, d)
        np.testing.assert_allclose(got, expected, atol=1e-9)
        np.testing.assert_allclose(physical_to_index(got, spacing, origin, d), idx, atol=1e-9)
        geo = Geometry.of(3, spacing, origin, d)
        np.testing.assert_allclose(geo.index_to_physical(idx), expected, atol=1e-9)
        hom = geo.index_affine() @ np.c_[idx, np.ones(len(idx))].T
        np.testing.assert_allclose(hom[:3].T, expected, atol=1e-9)


def test_geometry_validates_with_prefixed_names():
    with pytest.raises(ValueError, match="fixed_spacing"):
        Geometry.of(3, (1.0, 0.0, 1.0), name="fixed")
    with pytest.raises(ValueError, match="moving_direction"):
        Geometry.of(3, direction=np.ones((3, 3)), name="moving")
    geo = Geometry.of(3)
    assert geo.is_identity and geo.is_axis_aligned and geo.orientation_code() == "LPS"
    flipped = Geometry.of(3, direction=np.diag([1.0, -1.0, -1.0]))
    assert not flipped.is_identity and flipped.is_axis_aligned

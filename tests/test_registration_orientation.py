"""Registration and resampling with image direction cosines (ITK's convention).

``physical = origin + direction @ (index * spacing)`` (LPS, ``(z, y, x)`` components):
the same scan stored in other orientations (flips, permutations, oblique directions)
must give the same physical answer, and the ``.tfm`` written must be what SimpleITK
uses with the same images.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import fastct
from fastct._geometry import Geometry, orientation_code
from fastct.registration._levels import _Level
from fastct.registration._model import _Model
from fastct.transforms import RigidTransform

REALCT = Path(__file__).resolve().parents[1].parent / "shared" / "realct"
REALCT_CT = REALCT / "LIDC-IDRI-0001_ct.nii.gz"

# How each orientation is stored, starting from an identity-direction (LPS) array:
# (axis permutation for np.transpose, then the axes flipped).
ORIENTATIONS = {
    "LPS": ((0, 1, 2), ()),
    "RAS": ((0, 1, 2), (1, 2)),
    "LAS": ((0, 1, 2), (1,)),
    "PIR": ((2, 0, 1), (0, 1)),
    "SLA": ((1, 2, 0), (0,)),
}


# -- helpers -------------------------------------------------------------------------------
class Image:
    """An array with its geometry (spacing, origin, direction), (z, y, x) order."""

    def __init__(self, array, spacing, origin=(0.0, 0.0, 0.0), direction=None):
        self.array = np.ascontiguousarray(array)
        self.spacing = tuple(float(s) for s in spacing)
        self.origin = tuple(float(o) for o in origin)
        nd = self.array.ndim
        self.direction = np.eye(nd) if direction is None else np.asarray(direction, dtype=float)

    @property
    def geo(self) -> Geometry:
        return Geometry.of(self.array.ndim, self.spacing, self.origin, self.direction)

    def kw(self, prefix: str) -> dict:
        return {
            f"{prefix}_spacing": self.spacing,
            f"{prefix}_origin": self.origin,
            f"{prefix}_direction": self.direction,
        }

    def grid(self) -> dict:
        return {
            "shape": self.array.shape,
            "spacing": self.spacing,
            "origin": self.origin,
            "direction": self.direction,
        }

    def points(self) -> np.ndarray:
        """Physical points of every voxel, (N, ndim) in C order."""
        idx = np.indices(self.array.shape).reshape(self.array.ndim, -1).T
        return self.geo.index_to_physical(idx)

    def corners(self) -> np.ndarray:
        ranges = [[0, n - 1] for n in self.array.shape]
        idx = np.array(list(itertools.product(*ranges)), dtype=float)
        return self.geo.index_to_physical(idx)


def reorient(img: Image, perm, flips) -> Image:
    """The same voxels stored transposed by ``perm`` then flipped along ``flips``:
    every voxel keeps its physical position."""
    a = np.transpose(img.array, perm)
    sp = np.asarray(img.spacing)[list(perm)]
    d = img.direction[:, list(perm)].copy()
    o = np.asarray(img.origin, dtype=float)
    for k in flips:
        o = o + d[:, k] * (a.shape[k] - 1) * sp[k]
        d[:, k] = -d[:, k]
        a = np.flip(a, k)
    return Image(a, sp, o, d)


def oriented(img: Image, code: str) -> Image:
    out = reorient(img, *ORIENTATIONS[code])
    if np.allclose(img.direction, np.eye(3)):
        assert orientation_code(out.direction) == code
    return out


def rotation(angles_deg) -> np.ndarray:
    """A rotation matrix from angles about the z, y, x axes (degrees)."""
    a, b, c = np.deg2rad(angles_deg)
    rz = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def centred(shape, spacing, direction) -> np.ndarray:
    """The origin that centres a grid on the physical origin."""
    return -(np.asarray(direction) @ ((np.asarray(shape) - 1) / 2 * np.asarray(spacing)))


def phantom(points: np.ndarray, seed: int = 0, n_blobs: int = 10) -> np.ndarray:
    """A smooth analytic phantom evaluated at physical points (N, 3): anisotropic
    Gaussian blobs placed around the physical origin (no symmetry to confuse)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(points))
    for _ in range(n_blobs):
        c = rng.uniform(-11, 11, size=3)
        s = rng.uniform(3.0, 6.0, size=3)
        amp = rng.uniform(0.4, 1.0) * rng.choice([-1.0, 1.0])
        out += amp * np.exp(-0.5 * (((points - c) / s) ** 2).sum(axis=1))
    return (1000 * out).astype(np.float32)


def phantom_image(shape, spacing, origin_center=True, direction=None, transform=None, seed=0):
    """The phantom sampled on a grid centred on the physical origin; with
    ``transform`` (fixed -> moving) the grid is the moving image of the moved phantom:
    ``M(q) = F(T^-1 q)``."""
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    origin = centred(shape, spacing, d) if origin_center else np.zeros(3)
    img = Image(np.zeros(shape, np.float32), spacing, origin, d)
    pts = img.points()
    if transform is not None:
        pts = transform.inverse().apply(pts)
    img.array = phantom(pts, seed).reshape(shape)
    return img


def corner_error_voxels(t_a, t_b, fixed: Image) -> float:
    """Largest distance between two transforms' images of the fixed corners, in voxels
    (of the fixed image's smallest spacing)."""
    c = fixed.corners()
    return float(np.sqrt(((t_a.apply(c) - t_b.apply(c)) ** 2).sum(axis=1)).max()) / min(
        fixed.spacing
    )


def to_sitk(img: Image):
    sitk = pytest.importorskip("SimpleITK")
    s = sitk.GetImageFromArray(img.array)
    s.SetSpacing(img.spacing[::-1])
    s.SetOrigin(img.origin[::-1])
    s.SetDirection(tuple(img.direction[::-1, ::-1].ravel()))
    return s


IDENTITY = RigidTransform(3)
MOTION = RigidTransform(3, rotation=rotation((4.0, -2.0, 3.0)), translation=(2.0, -3.0, 1.5),
                        center=(1.0, -2.0, 0.5))  # fmt: skip


# -- unit tests: resample ------------------------------------------------------------------
@pytest.mark.parametrize("code", ["RAS", "LAS", "PIR", "SLA"])
@pytest.mark.parametrize("order", [0, 1])
def test_resample_flip_permute_is_exact(code, order):
    rng = np.random.default_rng(3)
    base = Image(rng.normal(size=(6, 7, 9)).astype(np.float32), (1.5, 0.8, 1.1), (4.0, -3.0, 2.0))
    other = oriented(base, code)
    # moving stored in `code`, output on the LPS grid: the exact array back
    out = fastct.resample(other.array, IDENTITY, **base.grid(), **other.kw("moving"), order=order)
    np.testing.assert_array_equal(out, base.array)
    # and the other way round
    back = fastct.resample(base.array, IDENTITY, **other.grid(), **base.kw("moving"), order=order)
    np.testing.assert_array_equal(back, other.array)


def test_resample_oblique_matches_physical_interpolation():
    """Output voxel i holds moving at the continuous index of T(p_i), directions both sides."""
    rng = np.random.default_rng(4)
    dm = rotation((20, -15, 30)) @ np.diag([1, -1, 1])
    dg = rotation((-10, 5, 25))
    moving = Image(
        ndimage.gaussian_filter(rng.normal(size=(12, 14, 16)), 1.5).astype(np.float32),
        (1.2, 0.9, 1.0), centred((12, 14, 16), (1.2, 0.9, 1.0), dm) + (0.5, -0.2, 0.3), dm,
    )  # fmt: skip
    grid = Image(np.zeros((10, 11, 12)), (1.0, 1.1, 0.8), centred((10, 11, 12), (1.0, 1.1, 0.8), dg),
                 dg)  # fmt: skip
    t = RigidTransform(3, rotation=rotation((3, 2, -4)), translation=(0.5, -0.3, 1.0))
    out = fastct.resample(moving.array, t, **grid.grid(), **moving.kw("moving"), order=1, cval=-1)
    u = moving.geo.physical_to_index(t.apply(grid.points()))
    ref = ndimage.map_coordinates(moving.array.astype(np.float64), u.T, order=1, cval=-1.0)
    inside = ((u >= 0) & (u <= np.asarray(moving.array.shape) - 1)).all(axis=1)
    assert inside.sum() > 200
    np.testing.assert_allclose(out.reshape(-1)[inside], ref[inside], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("order", [0, 1])
def test_resample_2d_direction(order):
    rng = np.random.default_rng(5)
    a = rng.normal(size=(7, 9)).astype(np.float32)
    d = np.array([[0.0, 1.0], [-1.0, 0.0]])  # axis 0 runs along -x, axis 1 along +y
    # a's voxel (i, j) lies at (y, x) = (j, -i): on the identity grid with origin
    # (0, -6) the point (y, x) is voxel (y, x + 6), so b[j, 6 - i] = a[i, j]
    b = np.flip(a, 0).T
    out = fastct.resample(a, RigidTransform(2), shape=b.shape, origin=(0.0, -6.0),
                          moving_direction=d, order=order)  # fmt: skip
    np.testing.assert_array_equal(out, b)


def test_volume_directions_are_the_defaults(tmp_path):
    rng = np.random.default_rng(6)
    base = Image(ndimage.gaussian_filter(rng.normal(size=(6, 8, 10)), 1).astype(np.float32),
                 (1.5, 0.8, 1.1), (4.0, -3.0, 2.0), rotation((10, 20, -30)))  # fmt: skip
    other = oriented(base, "PIR")
    with fastct.open(tmp_path / "a.h5", "w") as ar:
        vb = ar.create_volume("base", base.array, spacing=base.spacing, origin=base.origin,
                              direction=base.direction)  # fmt: skip
        vo = ar.create_volume("other", other.array, spacing=other.spacing, origin=other.origin,
                              direction=other.direction)  # fmt: skip
        out = ar.create_volume("out", shape=base.array.shape, dtype=np.float32,
                               spacing=base.spacing, origin=base.origin,
                               direction=base.direction)  # fmt: skip
        ref = fastct.resample(other.array, IDENTITY, **base.grid(), **other.kw("moving"))
        fastct.resample(vo, IDENTITY, shape=base.array.shape, out=out)
        np.testing.assert_array_equal(out[...], ref)
        np.testing.assert_allclose(ref, base.array, atol=1e-4)
        # register picks the directions up too: same result as explicit arrays
        kw = {"metric": "mse", "max_iterations": 5, "translation_search": None}
        r_vol = fastct.register(vb, vo, **kw)
        r_arr = fastct.register(base.array, other.array, **base.kw("fixed"), **other.kw("moving"),
                                **kw)  # fmt: skip
        np.testing.assert_array_equal(r_vol.transform.matrix, r_arr.transform.matrix)
        r_plain = fastct.register(base.array, other.array, **kw)  # directions ignored
        assert not np.allclose(r_plain.transform.matrix, r_arr.transform.matrix)


def test_direction_validation_names_the_parameter():
    a = np.zeros((4, 5, 6), np.float32)
    a[1:3, 1:4, 2:5] = 1
    with pytest.raises(ValueError, match="fixed_direction"):
        fastct.register(a, a, fixed_direction=np.ones((3, 3)))
    with pytest.raises(ValueError, match="moving_direction"):
        fastct.register(a, a, moving_direction=np.eye(2))
    with pytest.raises(ValueError, match="moving_direction"):
        fastct.resample(a, IDENTITY, shape=a.shape, moving_direction=np.eye(3) * 2)
    with pytest.raises(ValueError, match="^direction"):
        fastct.resample(a, IDENTITY, shape=a.shape, direction=np.full((3, 3), np.nan))


# -- unit tests: the metric gradient with directions -----------------------------------------
def _level(metric, fixed: Image, moving: Image, mask):
    return _Level(fixed.array, fixed.spacing, fixed.origin, mask, moving.array, moving.spacing,
                  moving.origin, metric, 32, "full", 10**9, np.random.default_rng(0), 0,
                  fixed.geo.direction, moving.geo.direction)  # fmt: skip


def _evaluate(lev, model, theta):
    a, o = model.affine3(theta)
    return lev.evaluate(a, o, model.center3, model.coefficients(theta))


def _gradient_pair():
    rng = np.random.default_rng(2)
    arr = ndimage.gaussian_filter(rng.normal(size=(20, 24, 28)), 2.0)
    arr = (1000 * arr / arr.std()).astype(np.float32)
    fixed = Image(arr, (1.5, 1.0, 1.2), (3.0, -2.0, 1.0), rotation((10, -20, 5)))
    mv = ndimage.shift(arr, (0.6, -0.4, 0.3), order=3, mode="nearest").astype(np.float32)
    moving = Image(mv, (1.5, 1.0, 1.2), (-1.0, 5.0, 2.0))
    mask = np.zeros(arr.shape, bool)
    mask[4:-4, 4:-4, 4:-4] = True
    center = fixed.geo.index_to_physical((np.asarray(arr.shape) - 1) / 2)
    mcenter = moving.geo.index_to_physical((np.asarray(arr.shape) - 1) / 2)
    theta = np.array([0.04, -0.03, 0.02, *(mcenter - center + [1.3, -0.7, 0.9]), 1.03])
    return fixed, moving, mask, center, theta


@pytest.mark.parametrize("metric", ["mse", "ncc", "mi"])
@pytest.mark.parametrize("code", ["RAS", "PIR", "SLA"])
def test_gradient_with_directions(metric, code):
    """The analytic gradient with a flipped/permuted (proper or improper) moving
    direction equals the identity-direction one of the same voxels, and finite
    differences; the fixed direction is oblique."""
    fixed, moving, mask, center, theta = _gradient_pair()
    model = _Model(3, "similarity", center)
    ref = _evaluate(_level(metric, fixed, moving, mask), model, theta)
    lev = _level(metric, fixed, oriented(moving, code), mask)
    v, grad, count = _evaluate(lev, model, theta)
    assert count == ref[2] and v == pytest.approx(ref[0], rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(grad, ref[1], rtol=1e-9, atol=1e-12 * np.abs(ref[1]).max())
    for k, h in enumerate([1e-6] * 3 + [1e-4] * 3 + [1e-6]):
        e = np.zeros(len(theta))
        e[k] = h
        num = (_evaluate(lev, model, theta + e)[0] - _evaluate(lev, model, theta - e)[0]) / (2 * h)
        # trilinear kinks make finite differences noisy at the 1e-3 level
        assert grad[k] == pytest.approx(num, rel=1e-2, abs=2e-3 * np.abs(grad).max())


def test_gradient_oblique_moving_finite_differences():
    fixed, moving, mask, center, theta = _gradient_pair()
    moving = Image(moving.array, moving.spacing, moving.origin,
                   rotation((-7, 12, 3)) @ np.diag([1.0, 1.0, -1.0]))  # fmt: skip
    mcenter = moving.geo.index_to_physical((np.asarray(moving.array.shape) - 1) / 2)
    theta[3:6] = mcenter - center + [1.3, -0.7, 0.9]
    model = _Model(3, "rigid", center)
    theta = theta[:6]
    for metric in ("mse", "mi"):
        lev = _level(metric, fixed, moving, mask)
        _, grad, count = _evaluate(lev, model, theta)
        assert count > 0.9 * mask.sum()
        for k, h in enumerate([1e-6] * 3 + [1e-4] * 3):
            e = np.zeros(len(theta))
            e[k] = h
            hi, lo = _evaluate(lev, model, theta + e)[0], _evaluate(lev, model, theta - e)[0]
            num = (hi - lo) / (2 * h)
            assert grad[k] == pytest.approx(num, rel=1e-2, abs=2e-3 * np.abs(grad).max())


# -- the same scan in several orientations -------------------------------------------------
@pytest.mark.parametrize(
    ("fixed_code", "moving_code"),
    [("LPS", "RAS"), ("LPS", "LAS"), ("LPS", "PIR"), ("RAS", "PIR"), ("PIR", "SLA")],
)
def test_same_scan_other_orientation_gives_identity(fixed_code, moving_code):
    scan = phantom_image((30, 34, 32), (1.2, 0.9, 1.0))
    fixed, moving = oriented(scan, fixed_code), oriented(scan, moving_code)
    reg = fastct.register(fixed.array, moving.array, **fixed.kw("fixed"), **moving.kw("moving"))
    err = corner_error_voxels(reg.transform, IDENTITY, fixed)
    assert err < 0.1, (err, reg)


def test_oblique_same_scan_gives_identity():
    scan = phantom_image((30, 34, 32), (1.2, 0.9, 1.0), direction=rotation((25, -10, 15)))
    fixed, moving = scan, oriented(scan, "PIR")
    assert orientation_code(moving.direction).startswith("oblique")
    reg = fastct.register(fixed.array, moving.array, **fixed.kw("fixed"), **moving.kw("moving"))
    assert corner_error_voxels(reg.transform, IDENTITY, fixed) < 0.1


@pytest.mark.parametrize("code", ["RAS", "PIR"])
def test_known_motion_phantom_other_orientation(code):
    """Moving sampled from the moved analytic phantom on a grid stored in ``code``."""
    fixed = phantom_image((30, 34, 32), (1.2, 0.9, 1.0))
    moving_grid = oriented(phantom_image((28, 32, 34), (1.0, 1.1, 0.9)), code)
    moving = phantom_image(moving_grid.array.shape, moving_grid.spacing,
                           direction=moving_grid.direction, transform=MOTION)  # fmt: skip
    reg = fastct.register(fixed.array, moving.array, **fixed.kw("fixed"), **moving.kw("moving"))
    assert corner_error_voxels(reg.transform, MOTION, fixed) < 0.5


@pytest.mark.parametrize("code", ["RAS", "LAS", "PIR"])
def test_storage_order_does_not_change_the_result(code):
    """On one full-resolution level the metric sees the same physical samples whatever
    the moving image's storage order: the same transform, to round-off. (Coarse pyramid
    levels subsample from index 0, so they differ for flipped storage.)"""
    fixed = phantom_image((30, 34, 32), (1.2, 0.9, 1.0))
    base = phantom_image((28, 32, 34), (1.0, 1.1, 0.9), transform=MOTION)
    other = oriented(base, code)
    kw = {"metric": "mse", "shrink_factors": (1,), "smoothing_sigmas": (0.0,)}
    ref = fastct.register(fixed.array, base.array, **fixed.kw("fixed"), **base.kw("moving"), **kw)
    reg = fastct.register(fixed.array, other.array, **fixed.kw("fixed"), **other.kw("moving"),
                          **kw)  # fmt: skip
    assert corner_error_voxels(reg.transform, ref.transform, fixed) < 1e-6
    assert corner_error_voxels(reg.transform, MOTION, fixed) < 0.1


# -- a real chest CT -----------------------------------------------------------------------
def _realct_fixed() -> Image:
    if not REALCT_CT.exists():
        pytest.skip(f"{REALCT_CT} not available")
    from fastct.io import read_nifti

    v = read_nifti(REALCT_CT)
    a = np.asarray(v.array, dtype=np.float32)
    # in-plane 2x block mean, then the central 64 x 128 x 128 voxels
    a = a[:, : a.shape[1] // 2 * 2, : a.shape[2] // 2 * 2]
    a = a.reshape(a.shape[0], a.shape[1] // 2, 2, a.shape[2] // 2, 2).mean(axis=(2, 4))
    start = [(n - c) // 2 for n, c in zip(a.shape, (64, 128, 128))]
    crop = a[start[0] : start[0] + 64, start[1] : start[1] + 128, start[2] : start[2] + 128]
    sp = np.asarray(v.spacing) * (1, 2, 2)
    d = np.eye(3) if v.direction is None else np.asarray(v.direction)
    # voxel (i, j, k) of the block-mean image is centred at original index (i, 2j + .5, 2k + .5)
    first = np.asarray(start, dtype=float) * (1, 2, 2) + (0.0, 0.5, 0.5)
    origin = np.asarray(v.origin) + d @ (first * np.asarray(v.spacing))
    return Image(np.ascontiguousarray(crop), sp, origin, d)


@pytest.mark.slow
@pytest.mark.parametrize("code", ["RAS", "PIR"])
def test_real_ct_known_motion_other_orientation(code):
    fixed = _realct_fixed()
    center = fixed.geo.index_to_physical((np.asarray(fixed.array.shape) - 1) / 2)
    truth = RigidTransform(3, rotation=rotation((4.0, 0.0, 0.0)), translation=(0.0, 3.0, -4.0),
                           center=center)  # fmt: skip
    grid = oriented(fixed, code)
    # moving(q) = fixed(T^-1 q) on the re-oriented grid (cubic interpolation)
    moving = fastct.resample(fixed.array, truth.inverse(), **grid.grid(), **fixed.kw("moving"),
                             order=3, cval=float(fixed.array.min()))  # fmt: skip
    reg = fastct.register(fixed.array, moving, **fixed.kw("fixed"), **grid.kw("moving"))
    err = corner_error_voxels(reg.transform, truth, fixed)
    assert err < 0.5, (err, reg)


# -- SimpleITK agreement -------------------------------------------------------------------
def _oblique_pair():
    fixed = phantom_image((30, 34, 32), (1.2, 0.9, 1.0), direction=rotation((20, -10, 15)))
    grid = oriented(phantom_image((28, 32, 34), (1.0, 1.1, 0.9), direction=rotation((-5, 8, 12))),
                    "PIR")  # fmt: skip
    moving = phantom_image(grid.array.shape, grid.spacing, direction=grid.direction,
                           transform=MOTION)  # fmt: skip
    return fixed, moving


def test_tfm_resample_matches_simpleitk(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    fixed, moving = _oblique_pair()
    path = tmp_path / "motion.tfm"
    MOTION.save(path)
    ref = sitk.GetArrayFromImage(
        sitk.Resample(
            to_sitk(moving),
            to_sitk(fixed),
            sitk.ReadTransform(str(path)),
            sitk.sitkLinear,
            -5000.0,
            sitk.sitkFloat32,
        )  # fmt: skip
    )
    out = fastct.resample(moving.array, MOTION, **fixed.grid(), **moving.kw("moving"), order=1,
                          cval=-5000.0)  # fmt: skip
    both = (ref != -5000) & (out != -5000)
    assert both.mean() > 0.5
    rng = float(np.ptp(moving.array))
    assert np.abs(out[both] - ref[both]).max() < 1e-4 * rng
    # SimpleITK also samples within half a voxel outside the moving grid (ITK's buffer
    # test, edge values); fastct.resample uses cval there (scipy's convention)
    only_sitk = (ref != -5000) & (out == -5000)
    assert not ((ref == -5000) & (out != -5000)).any()
    u = moving.geo.physical_to_index(MOTION.apply(fixed.points()))[only_sitk.reshape(-1)]
    n = np.asarray(moving.array.shape)
    assert (u >= -0.5 - 1e-6).all() and (u <= n - 0.5 + 1e-6).all()


@pytest.mark.slow
def test_registration_agrees_with_simpleitk(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    fixed, moving = _oblique_pair()
    reg = fastct.register(fixed.array, moving.array, **fixed.kw("fixed"), **moving.kw("moving"))
    path = tmp_path / "fastct.tfm"
    reg.transform.save(path)
    f_s, m_s = to_sitk(fixed), to_sitk(moving)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetMetricSamplingStrategy(method.NONE)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, 300, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    init = sitk.CenteredTransformInitializer(f_s, m_s, sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)  # fmt: skip
    method.SetInitialTransform(init, inPlace=False)
    out = method.Execute(f_s, m_s)
    corners = fixed.corners()
    ours = sitk.ReadTransform(str(path))
    p_sitk = np.array([out.TransformPoint(tuple(c[::-1]))[::-1] for c in corners])
    p_file = np.array([ours.TransformPoint(tuple(c[::-1]))[::-1] for c in corners])
    p_fast = reg.transform.apply(corners)
    voxel = min(fixed.spacing)
    # the .tfm file is the transform fastct applies ...
    assert np.abs(p_file - p_fast).max() < 1e-6
    # ... and SimpleITK's own registration finds the same one (and the truth)
    assert np.sqrt(((p_sitk - p_fast) ** 2).sum(axis=1)).max() / voxel < 0.5
    assert corner_error_voxels(reg.transform, MOTION, fixed) < 0.5

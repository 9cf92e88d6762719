"""fastct.register: metric values against references, gradients, recovery, determinism, CLI."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import fastct
from fastct import datasets
from fastct.registration._levels import _Level
from fastct.registration._model import _Model
from fastct.transforms import RigidTransform, SimilarityTransform, load_transform

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def blob_image(shape=(20, 24, 28), seed=0):
    """Smooth random structure with edges: a good registration target."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    return (1000 * img / img.std()).astype(np.float32)


def level_and_model(metric, fixed, moving, sp, mask=None, kind="similarity"):
    lev = _Level(fixed, sp, np.zeros(3), mask, moving, sp, np.zeros(3), metric, 32, "full",
                   10**9, np.random.default_rng(0), 0)  # fmt: skip
    center = (np.asarray(fixed.shape) - 1) / 2 * np.asarray(sp)
    return lev, _Model(3, kind, center)


def evaluate(lev, model, theta):
    a, o = model.affine3(theta)
    return lev.evaluate(a, o, model.center3, model.coefficients(theta))


def interior_mask(shape, margin):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(margin, n - margin) for n in shape)] = True
    return mask


THETA = np.array([0.04, -0.03, 0.02, 1.3, -0.7, 0.9, 1.03])


def numpy_samples(lev_fixed, moving, model, theta, sp, mask):
    """Fixed values and moving values by scipy's trilinear interpolation (reference)."""
    idx = np.argwhere(mask)
    p = idx * np.asarray(sp)
    a, o = model.affine3(theta)
    u = (p @ a.T + o) / np.asarray(sp)
    m = ndimage.map_coordinates(moving.astype(np.float64), u.T, order=1, mode="nearest")
    return lev_fixed[mask].astype(np.float64), m


@pytest.mark.parametrize("metric", ["mse", "ncc"])
def test_mse_ncc_equal_numpy_reference(metric):
    sp = (1.5, 1.0, 1.2)
    fixed, moving = blob_image(seed=1), blob_image(seed=1) * 0.8 + 50
    mask = interior_mask(fixed.shape, 4)
    lev, model = level_and_model(metric, fixed, moving, sp, mask)
    value, _, count = evaluate(lev, model, THETA)
    f, m = numpy_samples(fixed, moving, model, THETA, sp, mask)
    assert count == mask.sum()
    if metric == "mse":
        ref = np.mean((m - f) ** 2)
    else:
        ref = -(np.corrcoef(f, m)[0, 1] ** 2)
    assert value == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("metric", ["mse", "ncc", "mi"])
def test_gradient_matches_finite_differences(metric):
    sp = (1.5, 1.0, 1.2)
    fixed = blob_image(seed=2)
    moving = ndimage.shift(fixed, (0.6, -0.4, 0.3), order=3, mode="nearest")
    mask = interior_mask(fixed.shape, 4)  # every sample stays inside: a smooth metric
    lev, model = level_and_model(metric, fixed, moving, sp, mask)
    _, grad, _ = evaluate(lev, model, THETA)
    for k, h in enumerate([1e-6] * 3 + [1e-4] * 3 + [1e-6]):
        e = np.zeros(len(THETA))
        e[k] = h
        num = (evaluate(lev, model, THETA + e)[0] - evaluate(lev, model, THETA - e)[0]) / (2 * h)
        assert grad[k] == pytest.approx(num, rel=2e-3, abs=1e-6 * np.abs(grad).max())


@pytest.mark.parametrize("metric", ["ncc", "mi"])
@pytest.mark.parametrize("kind", ["rigid", "similarity"])
def test_gradient_2d_matches_finite_differences(metric, kind):
    """The 7-number gradient bookkeeping also holds for the embedded 2-D transforms."""
    sp = (1.0, 1.5, 1.2)
    fixed = blob_image((1, 40, 44), seed=6)
    moving = ndimage.shift(fixed, (0.0, 0.6, -0.4), order=3, mode="nearest")
    mask = interior_mask(fixed.shape[1:], 5)[None]
    lev = _Level(fixed, sp, np.zeros(3), mask, moving, sp, np.zeros(3), metric, 32, "full",
                   10**9, np.random.default_rng(0), 0)  # fmt: skip
    model = _Model(2, kind, np.array([30.0, 26.0]))
    theta = np.array([0.05, 0.7, -0.4] + ([1.04] if kind == "similarity" else []))
    _, grad, _ = evaluate(lev, model, theta)
    for k, h in enumerate([1e-6, 1e-4, 1e-4, 1e-6][: model.n]):
        e = np.zeros(model.n)
        e[k] = h
        num = (evaluate(lev, model, theta + e)[0] - evaluate(lev, model, theta - e)[0]) / (2 * h)
        assert grad[k] == pytest.approx(num, rel=2e-3, abs=1e-6 * np.abs(grad).max())


def test_mattes_mi_close_to_simpleitk():
    sitk = pytest.importorskip("SimpleITK")
    fixed = blob_image(seed=3)
    moving = (np.tanh(blob_image(seed=3) / 800.0) * 300).astype(np.float32)  # non-linear
    sp = (1.0, 1.0, 1.0)
    lev, model = level_and_model("mi", fixed, moving, sp)
    theta = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    value, _, count = evaluate(lev, model, theta)
    assert count == fixed.size
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.NONE)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetInitialTransform(sitk.TranslationTransform(3))
    ref = method.MetricEvaluate(sitk.GetImageFromArray(fixed), sitk.GetImageFromArray(moving))
    assert value == pytest.approx(ref, rel=0.02)
    assert value < -0.5  # strongly dependent images


@functools.cache
def phantom_case(kind="rigid", seed=0, shape=(32, 40, 40)):
    pair = datasets.phantom_pair(shape=shape, seed=seed, transform=kind, growth=None,
                                 n_nodules=2, max_rotation_deg=8, max_translation_mm=10)  # fmt: skip
    return pair


def corner_error_mm(t, matrix, shape, spacing, origin=(0.0, 0.0, 0.0)):
    idx = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1).T
    p = np.asarray(origin) + idx * np.asarray(spacing)
    return float(np.linalg.norm(t.apply(p) - (p @ matrix[:3, :3].T + matrix[:3, 3]), axis=1).max())


@pytest.mark.parametrize(
    "metric,kind", [("mi", "rigid"), ("ncc", "rigid"), ("mse", "rigid"), ("mi", "similarity")]
)
def test_recovers_phantom_transform(metric, kind):
    pair = phantom_case(kind, seed=1)
    b, f = pair.baseline, pair.followup
    reg = fastct.register(b.image, f.image, transform=kind, metric=metric,
                          fixed_spacing=b.spacing, moving_spacing=f.spacing)  # fmt: skip
    err = corner_error_mm(reg.transform, pair.transform, b.image.shape, b.spacing)
    assert err < 0.5 * min(b.spacing), (err, reg)
    assert isinstance(
        reg.transform, SimilarityTransform if kind == "similarity" else RigidTransform
    )
    assert reg.iterations > 0 and reg.elapsed_s > 0 and len(reg.levels) >= 2
    assert reg.metric == metric and np.isfinite(reg.metric_value)


def test_different_shapes_spacings_and_origins():
    """Moving on its own grid (finer, shifted, smaller): same physical answer."""
    pair = phantom_case("rigid", seed=1)
    b, f = pair.baseline, pair.followup
    msp = (5.0, 4.2, 4.0)
    morig = (3.0, -2.0, 5.0)
    mshape = (50, 80, 82)
    ident = RigidTransform(3)
    moving = fastct.resample(f.image, ident, shape=mshape, spacing=msp, origin=morig,
                             moving_spacing=f.spacing, order=3, cval=-1000)  # fmt: skip
    reg = fastct.register(b.image, moving, metric="mi", fixed_spacing=b.spacing,
                          moving_spacing=msp, moving_origin=morig)  # fmt: skip
    err = corner_error_mm(reg.transform, pair.transform, b.image.shape, b.spacing)
    assert err < 0.5 * min(b.spacing)


def test_2d_recovery_and_mask():
    img = blob_image((1, 90, 100), seed=4)[0]
    truth = RigidTransform(2, rotation=0.12, translation=(3.0, -4.0), center=(45.0, 50.0))
    # moving(q) = fixed(inv(T) q)
    moving = fastct.resample(img, truth.inverse(), shape=img.shape, order=3)
    mask = np.zeros(img.shape, bool)
    mask[10:-10, 10:-10] = True
    for kwargs in ({}, {"fixed_mask": mask}):
        reg = fastct.register(img, moving, metric="ncc", **kwargs)
        assert reg.transform.ndim == 2
        p = np.array([[0.0, 0.0], [89.0, 99.0], [0.0, 99.0], [89.0, 0.0]])
        assert np.abs(reg.transform.apply(p) - truth.apply(p)).max() < 0.3


def test_deterministic_across_threads_and_seeded():
    pair = phantom_case("rigid", seed=1)
    b, f = pair.baseline, pair.followup
    kw = dict(metric="mi", fixed_spacing=b.spacing, moving_spacing=f.spacing, sampling=0.3,
              seed=5)  # fmt: skip
    fastct.set_num_threads(1)
    one = fastct.register(b.image, f.image, **kw)
    fastct.set_num_threads(2)
    two = fastct.register(b.image, f.image, **kw)
    np.testing.assert_array_equal(one.transform.matrix, two.transform.matrix)
    assert one.metric_value == two.metric_value and one.iterations == two.iterations
    other = fastct.register(b.image, f.image, **{**kw, "seed": 6})
    assert not np.array_equal(other.transform.matrix, one.transform.matrix)


def test_volumes_initial_transform_and_rotation_search(tmp_path):
    pair = phantom_case("rigid", seed=1)
    b, f = pair.baseline, pair.followup
    with fastct.open(tmp_path / "a.h5", "w") as ar:
        ar.create_volume("b", b.image, spacing=b.spacing)
        ar.create_volume("f", f.image, spacing=f.spacing)
    truth = RigidTransform.from_matrix(pair.transform)
    with fastct.open(tmp_path / "a.h5") as ar:
        reg = fastct.register(ar["b"], ar["f"], metric="ncc", initial_transform=truth)
        err = corner_error_mm(reg.transform, pair.transform, b.image.shape, b.spacing)
        assert err < 0.5 * min(b.spacing)
        # a large extra rotation is found back by the coarse search
        big = RigidTransform(3, rotation=(0.0, 0.0, np.sin(np.radians(25))), center=(150, 180, 180))
        reg = fastct.register(ar["b"], ar["f"], metric="ncc", initial_transform=truth @ big,
                              rotation_search=30.0)  # fmt: skip
        err = corner_error_mm(reg.transform, pair.transform, b.image.shape, b.spacing)
        assert err < 0.5 * min(b.spacing)


def test_translation_search_extends_capture_range():
    """A shift of a quarter of the field of view plus a non-linear intensity change: the
    optimiser alone ends in a wrong basin; the coarse translation search finds it."""
    rng = np.random.default_rng(3)
    img = ndimage.gaussian_filter(rng.normal(size=(20, 40, 40)), 2.5)
    img = (1000 * img / img.std()).astype(np.float32)
    truth = RigidTransform(3, rotation=(0.0, 0.0, np.sin(np.radians(5))),
                           translation=(0.0, 10.0, -10.0), center=(9.5, 19.5, 19.5))  # fmt: skip
    moving = fastct.resample(img, truth.inverse(), shape=img.shape, order=3,
                             cval=float(img.min()))  # fmt: skip
    moving = (np.tanh(moving / 1500) * 100).astype(np.float32)
    p = np.array(np.meshgrid([0, 19], [0, 39], [0, 39], indexing="ij")).reshape(3, -1).T * 1.0
    reg = fastct.register(img, moving, metric="mi")
    assert np.abs(reg.transform.apply(p) - truth.apply(p)).max() < 0.5
    plain = fastct.register(img, moving, metric="mi", translation_search=None)
    assert np.abs(plain.transform.apply(p) - truth.apply(p)).max() > 1.0  # the search matters


def test_bad_input():
    img = blob_image((8, 9, 10))
    with pytest.raises(ValueError, match="do not overlap"):
        far = RigidTransform(3, translation=(0.0, 0.0, 500.0))
        fastct.register(img, img, initial_transform=far)
    with pytest.raises(ValueError, match="do not overlap"):
        fastct.register(img, img, moving_origin=(1000.0, 0, 0), init="none")
    with pytest.raises(ValueError, match="fixed is constant"):
        fastct.register(np.zeros_like(img), img)
    with pytest.raises(ValueError, match="moving is constant"):
        fastct.register(img, np.full_like(img, 3.0))
    bad = img.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="moving contains NaN"):
        fastct.register(img, bad)
    with pytest.raises(ValueError, match="same dimension"):
        fastct.register(img, img[0])
    with pytest.raises(ValueError, match="fixed_spacing must have 3 values"):
        fastct.register(img, img, fixed_spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match="moving_spacing must be > 0"):
        fastct.register(img, img, moving_spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="metric must be one of"):
        fastct.register(img, img, metric="cc")
    with pytest.raises(ValueError, match="transform must be one of"):
        fastct.register(img, img, transform="affine")
    with pytest.raises(ValueError, match="fixed_mask must have the fixed image's shape"):
        fastct.register(img, img, fixed_mask=np.ones((2, 2, 2), bool))
    with pytest.raises(ValueError, match="fixed_mask selects no voxel"):
        fastct.register(img, img, fixed_mask=np.zeros(img.shape, bool))
    with pytest.raises(TypeError, match="initial_transform"):
        fastct.register(img, img, initial_transform=np.eye(4))
    with pytest.raises(ValueError, match="initial_transform must be 3-D"):
        fastct.register(img, img, initial_transform=RigidTransform(2))
    with pytest.raises(ValueError, match="sampling fraction"):
        fastct.register(img, img, sampling=1.5)
    with pytest.raises(ValueError, match="smoothing_sigmas must have one value per level"):
        fastct.register(img, img, shrink_factors=(2, 1), smoothing_sigmas=(1.0,))
    with pytest.raises(ValueError, match="shrink_factors"):
        fastct.register(img, img, shrink_factors=(0, 1))
    with pytest.raises(ValueError, match="translation_search must be finite and >= 0"):
        fastct.register(img, img, translation_search=-0.1)
    with pytest.raises(ValueError, match="translation_search must be at most 2"):
        fastct.register(img, img, translation_search=3.0)
    with pytest.raises(TypeError, match="translation_search must be a number"):
        fastct.register(img, img, translation_search="wide")
    with pytest.raises(ValueError, match="step_tolerance must be finite and >= 0"):
        fastct.register(img, img, step_tolerance=-1.0)
    with pytest.raises(ValueError, match="bins must be >= 8"):
        fastct.register(img, img, bins=4)


def test_cli_register(tmp_path, capsys):
    from fastct.cli import main

    pair = phantom_case("rigid", seed=1)
    b, f = pair.baseline, pair.followup
    src = tmp_path / "s.h5"
    with fastct.open(src, "w") as ar:
        ar.create_volume("b", b.image, spacing=b.spacing)
        ar.create_volume("f", f.image, spacing=f.spacing)
    tfm = tmp_path / "t.tfm"
    rc = main(["register", f"{src}:/b", f"{src}:/f",
              "--metric", "ncc", "--output-transform", str(tfm),
              "--resampled", f"{tmp_path / 'r.h5'}:/res"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "metric value" in out and "iterations" in out and " s " in out
    t = load_transform(tfm)
    err = corner_error_mm(t, pair.transform, b.image.shape, b.spacing)
    assert err < 0.5 * min(b.spacing)
    with fastct.open(tmp_path / "r.h5") as ar:
        res = ar["res"]
        assert res.shape == b.image.shape and res.spacing == b.spacing
        inside = ar["res"].read()[10:-10, 10:-10, 10:-10]
    assert np.corrcoef(inside.ravel(), b.image[10:-10, 10:-10, 10:-10].ravel())[0, 1] > 0.9
    # errors: one line, status 2, nothing written
    bad = tmp_path / "bad.json"
    rc = main(["register", f"{src}:/b", f"{src}:/nope", "--output-transform", str(bad)])
    assert rc == 2 and not bad.exists()
    assert "error" in capsys.readouterr().err
    rc = main(["register", f"{src}:/b", f"{src}:/f", "--output-transform", str(tmp_path / "x")])
    assert rc == 2
    # the search and stopping options reach register(): a bad value is its one-line error
    capsys.readouterr()
    rc = main(["register", f"{src}:/b", f"{src}:/f", "--output-transform", str(bad),
              "--step-tolerance", "-1"])  # fmt: skip
    assert rc == 2 and not bad.exists()
    assert "--step-tolerance" in capsys.readouterr().err  # the flag, not the parameter
    rc = main(["register", f"{src}:/b", f"{src}:/f", "--output-transform", str(bad),
              "--metric", "ncc", "--translation-search", "0", "--step-tolerance", "0.05"])  # fmt: skip
    assert rc == 0 and bad.exists()


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["mi", "ncc"])
@pytest.mark.parametrize("kind", ["rigid", "similarity"])
@pytest.mark.parametrize("dataset", ["phantom", "example4d"])
def test_accuracy_40_trials(metric, kind, dataset):
    sys.path.insert(0, str(BENCH))
    try:
        from registration_accuracy import run_config
    finally:
        sys.path.remove(str(BENCH))
    result = run_config(dataset, metric, kind, "gamma" if metric == "mi" else "none", 40)
    assert result["success"] >= 0.95, result

"""fastct.register: off-grid (jittered) metric samples remove the sub-voxel phase bias of
linear interpolation (issue 19), and the real-CT accuracy that depends on it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import fastct
from fastct.registration._levels import _expand_parzen, _jittered, _Level

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
REALCT = Path(os.environ.get("FASTCT_REALCT") or
              Path(__file__).resolve().parents[1].parent / "shared" / "realct")  # fmt: skip


def render(shape, blobs, shift):
    """Sum of Gaussian blobs evaluated analytically at ``index - shift`` (no interpolation)."""
    grids = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    out = np.zeros(shape)
    for c, s, a in blobs:
        r2 = sum((g - ci - si) ** 2 for g, ci, si in zip(grids, c, shift))
        out += a * np.exp(-r2 / (2 * s * s))
    return out


def phase_case(seed, shape=(20, 22, 24)):
    """Noisy smooth pair whose true shift has sub-voxel phase 0.3 per axis; the content
    of ``moving`` is moved by ``t`` (``moving(q) = fixed(q - t)``)."""
    rng = np.random.default_rng(seed)
    blobs = [(rng.uniform(-4, np.array(shape) + 4), rng.uniform(1.5, 4), rng.uniform(-1, 1))
             for _ in range(50)]  # fmt: skip
    t = np.round(rng.uniform(-2, 2, 3)) + 0.3 * np.sign(rng.uniform(-1, 1, 3))
    fixed = render(shape, blobs, (0.0, 0.0, 0.0))
    moving = render(shape, blobs, t)
    sd = 0.5 * fixed.std()
    fixed = (fixed + rng.normal(0, sd, shape)).astype(np.float32)
    moving = (moving + rng.normal(0, sd, shape)).astype(np.float32)
    return fixed, moving, t


def corner_error(reg, t, shape) -> float:
    p = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij"), float)
    p = p.reshape(3, -1).T
    return float(np.linalg.norm(reg.transform.apply(p) - (p + t), axis=1).max())


def test_ncc_subvoxel_phase_bias_removed():
    """Issue 19: on grid-aligned samples the correlation of two noisy images prefers the
    half-voxel phase (linear interpolation averages the moving noise away there), so a
    shift with phase 0.3 ends about 0.2 voxel per axis off (0.35 voxel at the corners).
    The default sampling ('auto', off-grid) must not show that bias; the grid-aligned
    'full' sampling on the same pairs shows the case does reproduce it."""
    grid, jit = [], []
    for seed in range(3):
        fixed, moving, t = phase_case(seed)
        reg = fastct.register(fixed, moving, metric="ncc")
        jit.append(corner_error(reg, t, fixed.shape))
        reg = fastct.register(fixed, moving, metric="ncc", sampling="full")
        grid.append(corner_error(reg, t, fixed.shape))
    assert np.mean(grid) > 0.28, grid  # the bias exists on the grid ...
    assert np.mean(jit) < 0.2 and max(jit) < 0.3, (jit, grid)  # ... and not off the grid


def test_jittered_samples_interpolate_the_fixed_image():
    rng = np.random.default_rng(0)
    for shape in [(5, 6, 7), (1, 6, 7), (4, 1, 3)]:
        img = rng.normal(size=shape).astype(np.float32)
        zyx = np.stack(np.unravel_index(np.arange(img.size), shape), 1).astype(float)
        pos, vals = _jittered(img, zyx, rng)
        assert pos.shape == zyx.shape and vals.dtype == np.float32
        assert np.abs(pos - zyx).max() <= 0.5
        assert (pos >= 0).all() and (pos <= np.asarray(shape) - 1).all()
        assert np.all(pos[:, np.asarray(shape) == 1] == 0)
        ref = ndimage.map_coordinates(img.astype(float), pos.T, order=1, mode="nearest")
        np.testing.assert_allclose(vals, ref, rtol=0, atol=1e-5)


def test_sampling_modes_and_determinism():
    rng = np.random.default_rng(1)
    fixed = ndimage.gaussian_filter(rng.normal(size=(10, 12, 14)), 1.5).astype(np.float32)
    sp, org = (1.0, 1.0, 1.0), np.zeros(3)

    def level(sampling, seed=0, mask=None):
        return _Level(fixed, sp, org, mask, fixed, sp, org, "ncc", 32, sampling, 10**9,
                      np.random.default_rng(seed), 0)  # fmt: skip

    full = level("full")
    assert full.use_all and full.n == fixed.size
    auto = level("auto")  # every voxel once, off the grid
    assert not auto.use_all and auto.n == fixed.size
    assert np.abs(auto.pts - np.round(auto.pts)).max() > 0.1
    np.testing.assert_array_equal(auto.pts, level("auto").pts)  # seeded
    assert not np.array_equal(auto.pts, level("auto", seed=1).pts)
    part = level(0.25)
    assert part.n == round(0.25 * fixed.size)
    mask = np.zeros(fixed.shape, bool)
    mask[2:8, 3:9, 4:10] = True
    masked = level("full", mask=mask)  # 'full' with a mask: the mask's voxels, on the grid
    np.testing.assert_array_equal(masked.pts, np.argwhere(mask).astype(float))


def test_expand_parzen_value_only_matches():
    from fastct._kernels.registration import N_DPOW, N_POW, N_VPAD

    rng = np.random.default_rng(2)
    bins = 16
    hp = rng.random(bins * bins * N_POW)
    dp = rng.normal(size=bins * bins * N_DPOW * N_VPAD)
    joint, deriv = _expand_parzen(hp, dp, bins)
    joint2, none = _expand_parzen(hp, None, bins)
    assert none is None and deriv.shape == (bins, bins, 7)
    np.testing.assert_array_equal(joint, joint2)
    # plain-loop reference of the histogram expansion
    from fastct._kernels.registration import PARZEN_D, PARZEN_W

    h = hp.reshape(bins, bins, N_POW)
    d = dp.reshape(bins, bins, N_DPOW, N_VPAD)[..., :7]
    ref_j = np.zeros((bins, bins))
    ref_d = np.zeros((bins, bins, 7))
    for fb in range(bins):
        for km in range(2, bins - 2):
            for j in range(4):
                ref_j[fb, km - 1 + j] += PARZEN_W[j] @ h[fb, km]
                ref_d[fb, km - 1 + j] += PARZEN_D[j] @ d[fb, km]
    np.testing.assert_allclose(joint, ref_j, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(deriv, ref_d, rtol=1e-12, atol=1e-12)


# -- real chest CT (slow; skipped without ../shared/realct) ----------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("metric", ["ncc", "mi"])
def test_real_ct_rigid_within_half_voxel(metric):
    """10 seeded honest pairs cut from a real chest CT at 1 mm (benchmarks/_realct_pairs.py:
    cubic B-spline resampling by scipy, anatomy beyond every face, independent noise):
    every trial within 0.5 voxel, median within 0.1 voxel."""
    if not (REALCT / "LIDC-IDRI-0001_ct.nii.gz").exists():
        pytest.skip(f"real CT not available in {REALCT} (set FASTCT_REALCT)")
    sys.path.insert(0, str(BENCH))
    try:
        from _realct_pairs import corner_error_mm, make_pair
    finally:
        sys.path.remove(str(BENCH))
    errors = []
    for seed in range(10):
        pair = make_pair(seed, scan=REALCT / "LIDC-IDRI-0001_ct.nii.gz")
        reg = fastct.register(pair.fixed, pair.moving, metric=metric, fixed_spacing=pair.spacing,
                              moving_spacing=pair.spacing, fixed_origin=pair.origin,
                              moving_origin=pair.origin)  # fmt: skip
        errors.append(corner_error_mm(reg.transform.apply, pair))
    assert max(errors) <= 0.5 and np.median(errors) <= 0.1, errors


@pytest.mark.parametrize("seed", range(4))
def test_pyramid_level_by_slabs_equals_smoothing_the_whole_image(seed, monkeypatch):
    """_shrink smooths z slabs of the kept planes (no whole smoothed copy): the level
    is the same bits as gaussian(image)[kept], for any memory budget."""
    from fastct import _config
    from fastct.filters import gaussian
    from fastct.registration._levels import _shrink

    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(3, 40, 3))
    img = rng.normal(0, 100, shape).astype(np.float32)
    sp = tuple(float(v) for v in rng.uniform(0.5, 2.0, 3))
    factors = tuple(int(v) for v in rng.integers(1, 5, 3))
    sigma = float(rng.uniform(0.5, 4.0))
    # a tiny budget: one kept plane per slab, halos at both ends
    monkeypatch.setattr(_config, "get_memory_budget", lambda: 4 * shape[1] * shape[2] * 3)
    got, new_sp, _, sl = _shrink(img, sp, (0.0, 0.0, 0.0), factors, sigma)
    sig = tuple(0.0 if n == 1 else sigma for n in shape)
    expected = np.ascontiguousarray(gaussian(img, sig, spacing=sp, mode="nearest")[sl])
    np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))
    monkeypatch.undo()
    whole, *_ = _shrink(img, sp, (0.0, 0.0, 0.0), factors, sigma)
    np.testing.assert_array_equal(whole.view(np.int32), expected.view(np.int32))


def _center_of_mass_reference(img, sp, org, d3):
    """The general float64 path of _center_of_mass (a whole float64 copy)."""
    w = img.astype(np.float64) - float(img.min())
    total = w.sum()
    com = []
    for ax in range(3):
        other = tuple(i for i in range(3) if i != ax)
        com.append(float(w.sum(axis=other) @ np.arange(img.shape[ax])) / total)
    return org + d3 @ (np.asarray(com) * sp)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("integer_valued", [True, False])
def test_center_of_mass_by_slabs_equals_float64_path(seed, integer_valued):
    """CT values (integers) take the int64 slab path: the same bits as the float64
    computation over the whole image; other images take that computation itself."""
    from fastct.registration._register import _center_of_mass, _integer_profiles

    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(2, 60, 3))
    img = rng.normal(-400, 600, shape)
    img = np.rint(img) if integer_valued else img
    img = img.astype(np.float32)
    sp, org = np.array([0.75, 0.7, 0.7]), np.array([-10.0, 5.0, 3.0])
    d3 = np.eye(3)[[0, 2, 1]] if seed % 2 else np.eye(3)
    assert (_integer_profiles(img) is not None) == integer_valued
    got = _center_of_mass(img, sp, org, d3)
    np.testing.assert_array_equal(got, _center_of_mass_reference(img, sp, org, d3))

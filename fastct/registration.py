"""Rigid and similarity registration (MSE, NCC, Mattes MI) and resampling.

:func:`register` finds the transform that maps FIXED physical points to MOVING physical
points (ITK's convention; see :mod:`fastct.transforms`) by minimising a metric over a
multi-resolution pyramid; :func:`resample` warps the moving image onto the fixed grid
with such a transform.

How :func:`register` works
--------------------------
* Both images are read as float32 (an archive ``Volume`` is read into memory) and a
  pyramid is built per level: Gaussian smoothing with ``smoothing_sigmas`` (mm) then
  subsampling by ``shrink_factors``. A scalar shrink factor ``f`` is applied in
  physical units: axis ``a`` is shrunk by ``max(1, round(f * min(spacing) /
  spacing[a]))`` so anisotropic scans get near-isotropic coarse levels; a tuple
  gives the per-axis factors explicitly (ITK's convention).
* The metric is evaluated at fixed samples: every voxel of the level (``'full'``), or
  a seeded random subset (``sampling`` a fraction or a count; ``'auto'`` uses at most
  ``max_samples`` voxels). Samples mapping outside the moving image are skipped.
  The value and its analytic gradient come from one parallel Numba pass over the
  samples (Mattes MI too: each block accumulates the joint histogram and its
  derivative, as ITK does for low-dimensional transforms), reduced over fixed blocks
  in block order, so the result is the same bits at any thread count.
* Metrics (all minimised): ``'mse'`` mean squared difference; ``'ncc'`` minus the
  squared normalised correlation (ITK's ``CorrelationImageToImageMetricv4``);
  ``'mi'`` minus Mattes mutual information (joint histogram with ``bins`` bins, a
  zero-order window on the fixed intensity and a cubic B-spline Parzen window on the
  moving one, 2 padding bins, as ITK's ``MattesMutualInformationImageToImageMetricv4``).
* Parameters: 3-D rigid is a versor (vector part) and a translation about a fixed
  centre; similarity adds an isotropic scale; 2-D uses an angle. They are scaled by
  the largest physical shift they cause at the corners of the fixed image (ITK's
  ``RegistrationParameterScalesFromPhysicalShift``), so the optimiser works in mm.
  The optimiser is L-BFGS with an Armijo backtracking line search (no curvature
  condition: about one metric evaluation per iteration; no step moves the fixed
  corners by more than 4 voxels of the level; the curvature pairs are carried from
  level to level), per level at most ``max_iterations`` iterations, stopping when a
  step moves the fixed image's corners by less than ``step_tolerance`` voxels of the
  level, when the relative decrease of the metric falls below ``tolerance`` or the
  largest scaled gradient below ``gradient_tolerance`` (per mm). A step that would
  keep fewer than 20% of the level's starting valid samples is refused (the
  small-overlap optimum of mutual information).
* Initialisation: ``init='geometry'`` aligns the image centres, ``'moments'`` the
  intensity centres of mass (intensities minus their minimum), ``'auto'`` (default)
  tries both on the coarsest level and keeps the better, ``'none'`` starts from the
  identity; ``initial_transform`` overrides all three. ``rotation_search=A``
  tries rotations of -A, -A/2, 0, A/2, A degrees about each axis (ITK Euler angles,
  125 combinations in 3-D) on the coarsest level and starts from the best.
  ``translation_search=F`` (default 0.4) scores shifts of -F, -2F/3, ..., F (7 per
  axis) times the fixed image's extent along each axis (343 in 3-D, 49 in 2-D) on 2048
  seeded random samples of the coarsest level (shifts losing more than half of the valid
  samples ignored) and optimises the two best-scoring shifts that beat the start as
  extra starts; the best end point continues to the finer levels.

Image ``direction`` cosines are ignored (assumed identity): registration and
resampling work with ``origin + index * spacing``.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _config
from ._validate import (
    as_image,
    check_origin,
    check_positive_int,
    check_shape,
    check_spacing,
    smoothing_dtype,
)
from .transforms import (
    RigidTransform,
    _euler3_itk,
    _flip,
    _make,
    _rot2,
    versor_matrix,
)

__all__ = ["Registration", "register", "resample"]

TRANSFORMS = ("rigid", "similarity")
METRICS = ("mse", "ncc", "mi")
INITS = ("auto", "geometry", "moments", "none")
_BLOCK = 4096  # samples per reduction block (fixed: results do not depend on threads)
_MI_BLOCKS = 64  # at most this many Mattes histogram slabs (block size grows with n)
# and at most this much memory for them (large ``bins``): the default memory budget,
# not the current one (fastct.set_memory_budget), because the block size decides how
# the metric's sums are grouped, hence its bits; results never depend on the budget
_MI_SLAB_BYTES = _config.DEFAULT_MEMORY_BUDGET
_MIN_OVERLAP = 32  # fewer valid samples than this is "no overlap"
_FD_STEP = 1e-6
_MAX_STEP_VOXELS = 4.0  # no optimiser step moves the fixed corners further (level voxels)
_KEEP_OVERLAP = 0.2  # a step may not lose more than 80% of the level's starting overlap


@dataclass
class Registration:
    """Result of :func:`register`.

    Attributes
    ----------
    transform : RigidTransform or SimilarityTransform
        Maps fixed physical points to moving physical points.
    metric : str
        ``'mse'``, ``'ncc'`` or ``'mi'``.
    metric_value : float
        Final value at the finest level (MSE; minus squared NCC; minus Mattes MI).
    iterations : int
        Optimiser iterations over all levels.
    elapsed_s : float
        Wall time of the whole call.
    converged : bool
        The finest level stopped on a convergence criterion (not the iteration limit).
    stop_reason : str
        The optimiser's message at the finest level.
    levels : list of dict
        Per pyramid level: shrink factors, smoothing sigma, spacing, shape, samples,
        starts optimised, iterations (of the kept start), evaluations (all starts),
        search_evaluations (translation grid, on a subsample), initial and final metric
        value, stop reason, time.
    initial_transform : RigidTransform or SimilarityTransform
        The starting transform after initialisation (and rotation search).
    """

    transform: RigidTransform
    metric: str
    metric_value: float
    iterations: int
    elapsed_s: float
    converged: bool
    stop_reason: str
    levels: list[dict] = field(default_factory=list)
    initial_transform: RigidTransform | None = None

    def __repr__(self) -> str:
        return (
            f"Registration({self.transform!r}, metric={self.metric!r}, "
            f"metric_value={self.metric_value:.6g}, iterations={self.iterations}, "
            f"elapsed_s={self.elapsed_s:.3f}, converged={self.converged})"
        )


# -- inputs ------------------------------------------------------------------------------
def _is_volume(x: Any) -> bool:
    from .volume import Volume

    return isinstance(x, Volume)


def _choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {options}, got {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def _image_meta(image: Any, name: str, spacing: Any, origin: Any):
    """(array, spacing, origin) of an ndarray or Volume; spacing/origin validated."""
    if _is_volume(image):
        ndim = image.ndim
        if spacing is None:
            spacing = image.spacing
        if origin is None:
            origin = image.origin
        array = image
    else:
        array = as_image(image, name)
        ndim = array.ndim
    sp = check_spacing(spacing, ndim, f"{name}_spacing")
    org = check_origin(origin, ndim, f"{name}_origin")
    return array, sp, org


def _load_float32(array: Any, name: str) -> np.ndarray:
    """The image as a C-contiguous float32 array, checked for NaN/inf."""
    if _is_volume(array):
        from .streaming import read_all

        data = read_all(array)
        if data.dtype.kind not in "biuf":
            raise TypeError(f"{name} must have a real numeric dtype, got {data.dtype}")
    else:
        data = array
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ValueError(f"{name} contains NaN or inf; registration needs finite intensities")
    data = np.ascontiguousarray(data, dtype=np.float32)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ValueError(f"{name} has values outside the float32 range")
    return data


def _as3(a: np.ndarray) -> np.ndarray:
    return a if a.ndim == 3 else a[None]


def _pad3(values: tuple, fill: float) -> np.ndarray:
    return np.array(values if len(values) == 3 else (fill, *values), dtype=np.float64)


# -- transform parametrisation ----------------------------------------------------------------
class _Model:
    """Parameter vector <-> transform, and dq/dtheta, in 3-D index space (2-D embedded)."""

    def __init__(self, ndim: int, kind: str, center: np.ndarray):
        self.ndim = ndim
        self.kind = kind
        self.center = np.asarray(center, dtype=float)  # ndim
        self.center3 = _pad3(tuple(self.center), 0.0)
        self.n_rot = 3 if ndim == 3 else 1
        self.n = self.n_rot + ndim + (1 if kind == "similarity" else 0)

    def _rot(self, theta: np.ndarray) -> np.ndarray:
        return versor_matrix(theta[:3]) if self.ndim == 3 else _rot2(theta[0])

    def _scale(self, theta: np.ndarray) -> float:
        return float(theta[-1]) if self.kind == "similarity" else 1.0

    def _embed(self, m: np.ndarray) -> np.ndarray:
        if self.ndim == 3:
            return m
        out = np.zeros((3, 3))
        out[1:, 1:] = m
        return out

    def linear(self, theta: np.ndarray) -> np.ndarray:
        return self._scale(theta) * self._rot(theta)

    def translation(self, theta: np.ndarray) -> np.ndarray:
        return np.asarray(theta[self.n_rot : self.n_rot + self.ndim], dtype=float)

    def affine3(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A, off) with q = A @ p + off in 3-D (2-D: identity on the dummy axis)."""
        lin = self.linear(theta)
        off = self.center + self.translation(theta) - lin @ self.center
        a3 = np.eye(3)
        if self.ndim == 3:
            a3 = lin
            off3 = off
        else:
            a3[1:, 1:] = lin
            off3 = np.array([0.0, *off])
        return np.ascontiguousarray(a3), np.ascontiguousarray(off3)

    def jacobians(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per parameter (J, e): dq/dtheta_k = J @ (p - c) + e (3-D embedded)."""
        s = self._scale(theta)
        out = []
        for k in range(self.n_rot):
            hi, lo = theta.copy(), theta.copy()
            hi[k] += _FD_STEP
            lo[k] -= _FD_STEP
            d = s * (self._rot(hi) - self._rot(lo)) / (2 * _FD_STEP)
            out.append((self._embed(d), np.zeros(3)))
        for k in range(self.ndim):
            e = np.zeros(3)
            e[3 - self.ndim + k] = 1.0
            out.append((np.zeros((3, 3)), e))
        if self.kind == "similarity":
            out.append((self._embed(self._rot(theta)), np.zeros(3)))
        return out

    def coefficients(self, theta: np.ndarray) -> np.ndarray:
        """(n, 7) rows ``(a_k, e_k, s_k)``: ``dq/dtheta_k = a_k x w + s_k w + e_k`` with
        ``w = A (p - c)`` (see :mod:`fastct._kernels.registration`)."""
        a3, _ = self.affine3(theta)
        inv = np.linalg.inv(a3)
        act = slice(3 - self.ndim, 3)
        rows = []
        for j, e in self.jacobians(theta):
            m = j @ inv  # dq/dtheta = m @ w + e
            axis = 0.5 * np.array([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]])
            scale = float(np.trace(m[act, act])) / self.ndim
            rows.append(np.concatenate([axis, e, [scale]]))
        return np.asarray(rows)

    def transform(self, theta: np.ndarray) -> RigidTransform:
        return _make(
            self.ndim,
            self._rot(theta),
            self.translation(theta),
            self.center,
            self._scale(theta),
            similarity=self.kind == "similarity",
        )

    def theta_of(self, t: RigidTransform) -> np.ndarray:
        """Parameters of transform ``t`` re-expressed about this model's centre."""
        rot = t.rotation
        theta = np.zeros(self.n)
        if self.ndim == 3:
            q = _transform_versor(rot)
            theta[:3] = q[1:]
        else:
            r = _flip(rot)
            theta[0] = math.atan2(r[1, 0], r[0, 0])
        theta[self.n_rot : self.n_rot + self.ndim] = t.apply(self.center) - self.center
        if self.kind == "similarity":
            theta[-1] = t.scale
        return theta

    def bounds(self) -> list[tuple[float, float]]:
        b = [(-0.95, 0.95)] * self.n_rot if self.ndim == 3 else [(-math.pi, math.pi)]
        b += [(-np.inf, np.inf)] * self.ndim
        if self.kind == "similarity":
            b.append((0.2, 5.0))
        return b


def _transform_versor(rot: np.ndarray) -> np.ndarray:
    from .transforms import _matrix_to_quat

    return _matrix_to_quat(rot)


# -- pyramid --------------------------------------------------------------------------------
def _level_factors(f: Any, spacing: tuple, ndim: int, level: int) -> tuple[int, ...]:
    if isinstance(f, (tuple, list, np.ndarray)):
        vals = tuple(f)
        if len(vals) != ndim or any(
            isinstance(v, bool) or not isinstance(v, (numbers.Integral, np.integer)) or v < 1
            for v in vals
        ):
            raise ValueError(
                f"shrink_factors[{level}] must be a positive integer or {ndim} positive "
                f"integers, got {f!r}"
            )
        return tuple(int(v) for v in vals)
    if isinstance(f, bool) or not isinstance(f, (numbers.Integral, np.integer)) or f < 1:
        raise ValueError(f"shrink_factors[{level}] must be a positive integer, got {f!r}")
    smin = min(spacing)
    return tuple(max(1, int(round(int(f) * smin / s))) for s in spacing)


def _shrink(
    image: np.ndarray, spacing: tuple, origin: tuple, factors: tuple, sigma_mm: float
) -> tuple[np.ndarray, tuple, tuple]:
    """Smooth (sigma in mm, axes of length 1 skipped) then subsample by ``factors``."""
    from .filters import gaussian

    if sigma_mm > 0:
        sig = tuple(0.0 if n == 1 else sigma_mm for n in image.shape)
        image = gaussian(image, sig, spacing=spacing, mode="nearest")
    offs = tuple((f - 1) // 2 if n > f else 0 for f, n in zip(factors, image.shape))
    sl = tuple(slice(o, None, f) for o, f in zip(offs, factors))
    out = np.ascontiguousarray(image[sl], dtype=np.float32)
    new_sp = tuple(s * f for s, f in zip(spacing, factors))
    new_org = tuple(o + k * s for o, k, s in zip(origin, offs, spacing))
    return out, new_sp, new_org, sl


def _default_pyramid(fixed_shape: tuple, spacing: tuple) -> tuple[tuple, tuple]:
    """Shrink factors (4, 2, 1), coarse levels dropped when they would be under 8 voxels."""
    extent = min(n * s for n, s in zip(fixed_shape, spacing) if n > 1)
    smin = min(s for n, s in zip(fixed_shape, spacing) if n > 1)
    factors = [f for f in (4, 2) if extent / (f * smin) >= 8] + [1]
    sigmas = tuple(0.5 * f * smin if f > 1 else 0.0 for f in factors)
    return tuple(factors), sigmas


# -- metric evaluation on one level ------------------------------------------------------------
class _Level:
    def __init__(self, fixed, fsp, forig, mask, moving, msp, morig, metric, bins, sampling,
                 max_samples, rng, index):  # fmt: skip
        self.fixed = fixed
        self.fsp = np.asarray(fsp, dtype=float)
        self.forig = np.asarray(forig, dtype=float)
        self.moving = moving
        self.msp = np.asarray(msp, dtype=float)
        self.morig = np.asarray(morig, dtype=float)
        self.metric = metric
        self.bins = bins
        self.fshape = np.asarray(fixed.shape, dtype=np.int64)
        fflat = fixed.reshape(-1)
        candidates = None if mask is None else np.flatnonzero(mask)
        n_vox = fflat.size if candidates is None else candidates.size
        if n_vox == 0:
            raise ValueError(f"fixed_mask selects no voxel at pyramid level {index}")
        if sampling == "full":
            n = n_vox
        elif sampling == "auto":
            n = min(n_vox, max_samples)
        elif isinstance(sampling, float):
            n = max(1, int(round(sampling * n_vox)))
        else:
            n = min(n_vox, int(sampling))
        if n >= n_vox and candidates is None:
            self.use_all = True
            self.pts = np.zeros((1, 3))
            self.fvals = fflat
            self.n = n_vox
        else:
            self.use_all = False
            if n >= n_vox:
                sidx = candidates
            else:
                pick = rng.choice(n_vox, size=n, replace=False)
                pick.sort()
                sidx = pick if candidates is None else candidates[pick]
            self.n = sidx.size
            zyx = np.unravel_index(sidx, fixed.shape)
            self.pts = np.ascontiguousarray(
                np.stack([o + np.asarray(k, dtype=np.float64) * s
                          for o, k, s in zip(self.forig, zyx, self.fsp)], axis=1)
            )  # fmt: skip
            self.fvals = np.ascontiguousarray(fflat[sidx])
        values = fflat if candidates is None else fflat[candidates]
        fmin, fmax = float(values.min()), float(values.max())
        mmin, mmax = float(moving.min()), float(moving.max())
        self.constant = (fmin == fmax, mmin == mmax)
        self.rsp = 1.0 / self.msp
        from ._kernels.registration import N_DPOW, N_POW, N_STATS, N_V, N_VPAD

        if metric == "mi":
            pad = 2
            fbs = (fmax - fmin) / (bins - 2 * pad) if fmax > fmin else 1.0
            fnmin = fmin / fbs - pad
            term = self.fvals.astype(np.float64) / fbs - fnmin
            self.fixbin = np.clip(np.floor(term), 2, bins - 3).astype(np.int32)
            self.mbs = (mmax - mmin) / (bins - 2 * pad) if mmax > mmin else 1.0
            self.mnmin = mmin / self.mbs - pad
            # Each block owns (bins, bins) power sums for the histogram and its derivative:
            # at most _MI_BLOCKS of them and _MI_SLAB_BYTES in all (the block size depends
            # on n and bins only, never on the thread count).
            slab = bins * bins * (N_POW + N_DPOW * N_VPAD) * 8
            max_blocks = max(2, min(_MI_BLOCKS, _MI_SLAB_BYTES // slab))
            self.block = max(_BLOCK, -(-self.n // (max_blocks * _BLOCK)) * _BLOCK)
            nblocks = (self.n + self.block - 1) // self.block
            self.hist = np.zeros((nblocks, bins * bins * N_POW))
            self.dhist = np.zeros((nblocks, bins * bins * N_DPOW * N_VPAD))
            self.nblocks = nblocks
        else:
            self.block = _BLOCK
            nblocks = (self.n + _BLOCK - 1) // _BLOCK
            self.acc = np.zeros((nblocks, N_STATS + 3 * N_V))
            self.nblocks = nblocks

    def evaluate(self, a3, off3, center3, coef):
        """(value, dvalue/dtheta, number of valid samples); ``coef`` from
        :meth:`_Model.coefficients`."""
        from ._kernels import registration as k

        args = (self.pts, self.n, self.use_all, self.fshape, self.fsp, self.forig)
        # moving continuous index u = ia @ p + ioff; centred mapped point w = u * msp + wo
        ia = np.ascontiguousarray(a3 * self.rsp[:, None])
        ioff = np.ascontiguousarray((off3 - self.morig) * self.rsp)
        wo = np.ascontiguousarray(self.morig - off3 - a3 @ center3)
        geo = (ia, ioff, self.rsp, self.msp, wo, self.moving)
        if self.metric == "mi":
            with _threads(self.nblocks):
                k.mi_pass(self.fixbin, *args, *geo, self.mbs, self.mnmin, self.bins,
                          self.block, self.hist, self.dhist)  # fmt: skip
            joint, dsum = _expand_parzen(self.hist.sum(axis=0), self.dhist.sum(axis=0), self.bins)
            total = float(joint.sum())
            count = int(round(total))
            if count < _MIN_OVERLAP:
                return 0.0, np.zeros(len(coef)), count
            p = joint / total
            pf = p.sum(axis=1)
            pm = p.sum(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                logratio = np.where(p > 0, np.log(p / pm[None, :]), 0.0)
                mi = float(np.sum(np.where(p > 0, p * (logratio - np.log(pf)[:, None]), 0.0)))
            sums = logratio.reshape(-1) @ dsum.reshape(-1, k.N_V)
            return -mi, coef @ sums / (total * self.mbs), count
        with _threads(self.nblocks):
            k.stats_pass(self.fvals, *args, *geo, _BLOCK, self.acc)
        s = self.acc.sum(axis=0)
        count = int(s[0])
        if count < _MIN_OVERLAP:
            return (np.inf if self.metric == "mse" else 0.0), np.zeros(len(coef)), count
        n_stats, n_v = k.N_STATS, k.N_V
        g_f = s[n_stats : n_stats + n_v]
        g_m = s[n_stats + n_v : n_stats + 2 * n_v]
        g_1 = s[n_stats + 2 * n_v :]
        n = s[0]
        if self.metric == "mse":
            value = s[6] / n
            return value, coef @ (2.0 * (g_m - g_f) / n), count
        sf, sm, sff, smm, sfm = s[1:6]
        vf = sff - sf * sf / n
        vm = smm - sm * sm / n
        cfm = sfm - sf * sm / n
        if vf <= 0 or vm <= 0:
            return 0.0, np.zeros(len(coef)), count
        value = -(cfm * cfm) / (vf * vm)
        fbar, mbar = sf / n, sm / n
        # d value / d m_i = -2 cfm / (vf vm) * [(f_i - fbar) - cfm / vm * (m_i - mbar)]
        a = -2.0 * cfm / (vf * vm)
        b = cfm / vm
        sums = a * ((g_f - fbar * g_1) - b * (g_m - mbar * g_1))
        return value, coef @ sums, count


def _expand_parzen(hpow: np.ndarray, dpow: np.ndarray, bins: int):
    """Joint histogram (bins, bins) and its derivative (bins, bins, N_V) from the power
    sums of :func:`fastct._kernels.registration.mi_pass` (summed over blocks)."""
    from ._kernels.registration import N_DPOW, N_POW, N_V, N_VPAD, PARZEN_D, PARZEN_W

    hp = hpow.reshape(bins, bins, N_POW)[:, 2 : bins - 2]  # km in [2, bins - 3]
    dp = dpow.reshape(bins, bins, N_DPOW, N_VPAD)[:, 2 : bins - 2, :, :N_V]
    joint = np.zeros((bins, bins))
    deriv = np.zeros((bins, bins, N_V))
    for j in range(4):  # bin k = km - 1 + j
        joint[:, 1 + j : bins - 3 + j] += hp @ PARZEN_W[j]
        deriv[:, 1 + j : bins - 3 + j] += np.einsum("lkpv,p->lkv", dp, PARZEN_D[j])
    return joint, deriv


@contextlib.contextmanager
def _threads(nblocks: int):
    """fastct's thread count, but no more threads than blocks: a small evaluation then
    runs on the calling thread alone (waking idle workers costs milliseconds on a
    loaded machine). Results do not depend on the thread count."""
    import numba

    with _config.kernel_threads() as n:
        if nblocks < n:
            numba.set_num_threads(max(1, nblocks))
        yield


# -- register --------------------------------------------------------------------------------
def _check_sampling(sampling: Any) -> Any:
    if isinstance(sampling, str):
        return _choice(sampling, "sampling", ("auto", "full"))
    if isinstance(sampling, bool) or not isinstance(sampling, (numbers.Real, np.number)):
        raise TypeError(
            f"sampling must be 'auto', 'full', a fraction in (0, 1] or a sample count, "
            f"got {type(sampling).__name__}"
        )
    if isinstance(sampling, (numbers.Integral, np.integer)):
        if sampling < 1:
            raise ValueError(f"sampling count must be >= 1, got {sampling}")
        return int(sampling)
    sampling = float(sampling)
    if not 0.0 < sampling <= 1.0:
        raise ValueError(f"sampling fraction must be in (0, 1], got {sampling}")
    return sampling


def _positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (>= 0 with ``allow_zero``). Its messages ("must be
    finite and >= 0") differ from ``_validate.per_axis``'s and are kept as they are."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(float(value)) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return float(value)


def _center_of_mass(img: np.ndarray, sp: np.ndarray, org: np.ndarray, mask=None) -> np.ndarray:
    w = img.astype(np.float64) - float(img.min())
    if mask is not None:
        w = w * mask
    total = w.sum()
    if total <= 0:
        return org + (np.asarray(img.shape) - 1) / 2.0 * sp
    com = []
    for ax in range(3):
        other = tuple(i for i in range(3) if i != ax)
        prof = w.sum(axis=other)
        com.append(float(prof @ np.arange(img.shape[ax])) / total)
    return org + np.asarray(com) * sp


def register(
    fixed: Any,
    moving: Any,
    *,
    transform: str = "rigid",
    metric: str = "mi",
    fixed_spacing: Any = None,
    moving_spacing: Any = None,
    fixed_origin: Any = None,
    moving_origin: Any = None,
    fixed_mask: Any = None,
    initial_transform: RigidTransform | None = None,
    init: str = "auto",
    shrink_factors: Any = None,
    smoothing_sigmas: Any = None,
    bins: int = 32,
    sampling: Any = "auto",
    max_samples: int = 100_000,
    seed: int = 0,
    max_iterations: int = 100,
    tolerance: float = 1e-7,
    gradient_tolerance: float = 1e-6,
    step_tolerance: float = 0.01,
    rotation_search: float | None = None,
    translation_search: float | None = 0.4,
) -> Registration:
    """Rigid or similarity registration of ``moving`` onto ``fixed``.

    Parameters
    ----------
    fixed, moving : ndarray or Volume
        2-D ``(y, x)`` or 3-D ``(z, y, x)`` images of the same dimension; shapes and
        spacings may differ. Volumes take spacing and origin from their attributes.
    transform : {'rigid', 'similarity'}
        Rotation + translation, or with an isotropic scale as well.
    metric : {'mi', 'ncc', 'mse'}
        Mattes mutual information (multi-modal), normalised cross-correlation, or mean
        squared difference (see the module notes).
    fixed_spacing, moving_spacing, fixed_origin, moving_origin : sequence of float, optional
        Voxel size (mm) and position of voxel 0; default 1 and 0 (or the Volume's).
    fixed_mask : array_like of bool, optional
        Fixed voxels to sample (same shape as ``fixed``).
    initial_transform : RigidTransform or SimilarityTransform, optional
        Starting transform (fixed -> moving); overrides ``init``.
    init : {'auto', 'geometry', 'moments', 'none'}
        Starting translation: align image centres, intensity centres of mass (also the
        centre of rotation), or none; ``'auto'`` takes whichever of the first two gives
        the better metric on the coarsest level.
    shrink_factors : sequence, optional
        Per level, coarse to fine: an integer (applied in physical units, see the module
        notes) or one integer per axis. Default ``(4, 2, 1)``, coarse levels dropped for
        small images.
    smoothing_sigmas : sequence of float, optional
        Gaussian sigma in mm per level; default ``0.5 * factor * min(spacing)`` (0 at
        the full-resolution level).
    bins : int
        Histogram bins of Mattes MI (default 32).
    sampling : 'auto', 'full', float or int
        Fixed samples per level: all voxels, a fraction, or a count (seeded random
        voxels without replacement); ``'auto'`` uses ``min(voxels, max_samples)``.
    max_samples : int
        Sample budget of ``sampling='auto'``.
    seed : int
        Seed of the random sampling; the result is reproducible bit for bit.
    max_iterations : int
        Optimiser iterations per level.
    tolerance, gradient_tolerance : float
        Stop a level when the relative metric decrease is below ``tolerance`` or the
        largest parameter gradient (per mm of shift) is below ``gradient_tolerance``.
    step_tolerance : float
        Stop a level when an optimiser step moves the fixed image's corners by less
        than this many voxels of the level (default 0.01).
    rotation_search : float, optional
        Largest rotation (degrees) of a coarse search for large misalignment.
    translation_search : float or None
        Largest shift of the coarse translation search on the coarsest level, as a
        fraction of the fixed image's extent along each axis (default 0.4; at most 2);
        ``None`` or 0 turns it off. Widens the capture range of large translations.

    Returns
    -------
    Registration
        ``.transform`` maps fixed physical points to moving physical points.

    Examples
    --------
    >>> import numpy as np, fastct
    >>> from scipy import ndimage
    >>> z, y, x = np.mgrid[:24, :28, :32].astype(np.float32)
    >>> fixed = np.exp(-((z - 12) ** 2 / 40 + (y - 13) ** 2 / 30 + (x - 15) ** 2 / 60))
    >>> moving = ndimage.shift(fixed, (1.0, -2.0, 1.5), order=1)  # content moved by +shift
    >>> reg = fastct.register(fixed, moving, metric="mse")
    >>> np.round(reg.transform.translation, 1)
    array([ 1. , -2. ,  1.5])
    """
    t_start = time.perf_counter()
    transform = _choice(transform, "transform", TRANSFORMS)
    metric = _choice(metric, "metric", METRICS)
    init = _choice(init, "init", INITS)
    bins = check_positive_int(bins, "bins", minimum=8)
    sampling = _check_sampling(sampling)
    max_samples = check_positive_int(max_samples, "max_samples")
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    tolerance = _positive(tolerance, "tolerance", allow_zero=True)
    gradient_tolerance = _positive(gradient_tolerance, "gradient_tolerance", allow_zero=True)
    step_tolerance = _positive(step_tolerance, "step_tolerance", allow_zero=True)
    if translation_search is not None:
        translation_search = _positive(translation_search, "translation_search", allow_zero=True)
        if translation_search > 2:
            raise ValueError(
                f"translation_search must be at most 2 (fixed image extents), got "
                f"{translation_search}"
            )
    if rotation_search is not None:
        rotation_search = _positive(rotation_search, "rotation_search")
        if rotation_search > 180:
            raise ValueError(f"rotation_search must be at most 180 degrees, got {rotation_search}")

    farr, fsp, forig = _image_meta(fixed, "fixed", fixed_spacing, fixed_origin)
    marr, msp, morig = _image_meta(moving, "moving", moving_spacing, moving_origin)
    if farr.ndim != marr.ndim:
        raise ValueError(
            f"fixed and moving must have the same dimension, got {farr.ndim}-D fixed and "
            f"{marr.ndim}-D moving"
        )
    ndim = farr.ndim
    mask = None
    if fixed_mask is not None:
        from .streaming import read_all

        mask = read_all(fixed_mask) if _is_volume(fixed_mask) else np.asarray(fixed_mask)
        if mask.shape != tuple(farr.shape):
            raise ValueError(
                f"fixed_mask must have the fixed image's shape {tuple(farr.shape)}, "
                f"got {mask.shape}"
            )
        if mask.dtype.kind not in "biu":
            raise TypeError(f"fixed_mask must be boolean or integer, got {mask.dtype}")
        mask = mask != 0
        if not mask.any():
            raise ValueError("fixed_mask selects no voxel")
    if initial_transform is not None:
        if not isinstance(initial_transform, RigidTransform):
            raise TypeError(
                "initial_transform must be a RigidTransform or SimilarityTransform, got "
                f"{type(initial_transform).__name__}"
            )
        if initial_transform.ndim != ndim:
            raise ValueError(
                f"initial_transform must be {ndim}-D like the images, got "
                f"{initial_transform.ndim}-D"
            )
        if transform == "rigid" and abs(initial_transform.scale - 1.0) > 1e-9:
            raise ValueError(
                f"initial_transform has scale {initial_transform.scale}; use transform='similarity'"
            )

    fimg = _load_float32(farr, "fixed")
    mimg = _load_float32(marr, "moving")
    fvals = fimg[mask] if mask is not None else fimg
    if float(fvals.min()) == float(fvals.max()):
        where = " inside fixed_mask" if mask is not None else ""
        raise ValueError(f"fixed is constant{where} (all {float(fvals.min())}); nothing to align")
    if float(mimg.min()) == float(mimg.max()):
        raise ValueError(f"moving is constant (all {float(mimg.min())}); nothing to align")
    del fvals

    # pyramid schedule
    if shrink_factors is None:
        shrink_factors, default_sigmas = _default_pyramid(fimg.shape, fsp)
    else:
        if isinstance(shrink_factors, (numbers.Integral, np.integer)):
            shrink_factors = (shrink_factors,)
        shrink_factors = tuple(shrink_factors)
        if not shrink_factors:
            raise ValueError("shrink_factors must have at least one level")
        default_sigmas = None
    levels_f = [_level_factors(f, fsp, ndim, i) for i, f in enumerate(shrink_factors)]
    if smoothing_sigmas is None:
        if default_sigmas is None:
            smin = min(fsp)
            default_sigmas = tuple(0.5 * max(f) * smin if max(f) > 1 else 0.0 for f in levels_f)
        smoothing_sigmas = default_sigmas
    if isinstance(smoothing_sigmas, (numbers.Real, np.number)):
        smoothing_sigmas = (smoothing_sigmas,)
    smoothing_sigmas = tuple(smoothing_sigmas)
    if len(smoothing_sigmas) != len(levels_f):
        raise ValueError(
            f"smoothing_sigmas must have one value per level ({len(levels_f)}), "
            f"got {len(smoothing_sigmas)}"
        )
    smoothing_sigmas = tuple(
        _positive(s, "smoothing_sigmas", allow_zero=True) for s in smoothing_sigmas
    )

    fsp3, forig3 = _pad3(fsp, 1.0), _pad3(forig, 0.0)
    msp3, morig3 = _pad3(msp, 1.0), _pad3(morig, 0.0)
    f3, m3 = _as3(fimg), _as3(mimg)
    mask3 = None if mask is None else _as3(mask)

    # initialisation
    fcenter = forig3 + (np.asarray(f3.shape) - 1) / 2.0 * fsp3
    mcenter = morig3 + (np.asarray(m3.shape) - 1) / 2.0 * msp3
    center3 = fcenter
    trans3 = np.zeros(3)
    candidates: list[np.ndarray] = []
    if initial_transform is None:
        if init == "geometry":
            trans3 = mcenter - fcenter
        elif init in ("moments", "auto"):
            center3 = _center_of_mass(f3, fsp3, forig3, mask3)
            trans3 = _center_of_mass(m3, msp3, morig3) - center3
            if init == "auto":  # the better of the two at the coarsest level
                candidates = [mcenter - fcenter]
    center = center3[3 - ndim :]
    model = _Model(ndim, transform, center)
    if initial_transform is not None:
        theta = model.theta_of(initial_transform)
    else:
        theta = np.zeros(model.n)
        theta[model.n_rot : model.n_rot + ndim] = trans3[3 - ndim :]
        if transform == "similarity":
            theta[-1] = 1.0

    rng_levels = [np.random.default_rng([seed, i]) for i in range(len(levels_f))]
    level_info: list[dict] = []
    total_iter = 0
    value = float("nan")
    result_msg, converged = "", False
    start_transform = None
    memory: list = []  # L-BFGS pairs carried from level to level
    for li, (factors, sigma) in enumerate(zip(levels_f, smoothing_sigmas)):
        t_level = time.perf_counter()
        fac3 = (1, *factors) if ndim == 2 else factors
        ff, fsp_l, forig_l, fsl = _shrink(f3, tuple(fsp3), tuple(forig3), fac3, sigma)
        target = [f * s for f, s in zip(fac3, fsp3)]
        mfac = tuple(
            1 if m3.shape[a] == 1 else max(1, int(round(target[a] / msp3[a]))) for a in range(3)
        )
        mm, msp_l, morig_l, _ = _shrink(m3, tuple(msp3), tuple(morig3), mfac, sigma)
        lmask = None if mask3 is None else np.ascontiguousarray(mask3[fsl])
        level = _Level(ff, fsp_l, forig_l, lmask, mm, msp_l, morig_l, metric, bins, sampling,
                       max_samples, rng_levels[li], li)  # fmt: skip
        if level.constant[0] or level.constant[1]:
            which = "fixed" if level.constant[0] else "moving"
            raise ValueError(
                f"{which} is constant at pyramid level {li} (shrink {factors}, sigma "
                f"{sigma} mm); use fewer or smaller shrink factors"
            )

        def evaluate(th: np.ndarray, level=level):
            a3, off3 = model.affine3(th)
            return level.evaluate(a3, off3, model.center3, model.coefficients(th))

        v0, g0, count0 = evaluate(theta)
        # init='auto': the moments start and the geometry start (when distinct) are
        # both optimised on the coarsest level; the better end point continues.
        starts = [(theta, v0, g0, count0)]
        if li == 0 and candidates:
            for t3 in candidates:
                th = theta.copy()
                th[model.n_rot : model.n_rot + ndim] = t3[3 - ndim :]
                if np.allclose(th, theta, atol=1e-6):
                    continue
                v, g, count = evaluate(th)
                starts.append((th, v, g, count))
            starts = [st for st in starts if st[3] >= _MIN_OVERLAP] or starts[:1]
        theta, v0, g0, count0 = starts[0]
        if count0 < _MIN_OVERLAP:
            raise ValueError(
                f"fixed and moving do not overlap after initialisation (init={init!r}): "
                f"{count0} of {level.n} fixed samples map inside the moving image at "
                f"pyramid level {li}; check origins, spacings and initial_transform"
            )
        if li == 0 and rotation_search is not None:
            theta, v0 = _rotation_search(model, theta, evaluate, rotation_search, v0)
            v0, g0, count0 = evaluate(theta)
            starts[0] = (theta, v0, g0, count0)
        n_search = 0
        if li == 0 and translation_search:
            extent = np.asarray(f3.shape, dtype=float) * fsp3
            found, n_search = _translation_search(
                model, theta, level, translation_search * extent, seed, ff, fsp_l, forig_l,
                mm, msp_l, morig_l, metric, bins, lmask)  # fmt: skip
            for th in found:
                v, g, count = evaluate(th)
                starts.append((th, v, g, count))
        if li == 0:
            start_transform = model.transform(theta)

        best = None
        n_evals = 0
        step_tol = step_tolerance * min(s for s, n in zip(fsp_l, ff.shape) if n > 1)
        for theta_s, v_s, g_s, count_s in starts:
            out = _optimise(model, theta_s, evaluate, ff, fsp_l, forig_l, v_s, g_s, count_s,
                            max_iterations, tolerance, gradient_tolerance, step_tol, metric,
                            memory)  # fmt: skip
            total_iter += out[1]["iterations"]
            n_evals += out[1]["evaluations"]
            if best is None or out[1]["metric_value"] < best[1]["metric_value"]:
                best = out
                if li == 0:
                    start_transform = model.transform(theta_s)
        theta, info = best
        memory = info.pop("memory")
        info.update(starts=len(starts), evaluations=n_evals, search_evaluations=n_search)
        value = info["metric_value"]
        result_msg, converged = info["stop_reason"], info["converged"]
        info.update(
            level=li,
            shrink_factors=tuple(int(f) for f in factors),
            smoothing_sigma_mm=sigma,
            fixed_shape=tuple(ff.shape[3 - ndim :]),
            fixed_spacing=tuple(float(s) for s in fsp_l[3 - ndim :]),
            moving_shape=tuple(mm.shape[3 - ndim :]),
            samples=int(level.n),
            elapsed_s=time.perf_counter() - t_level,
        )
        level_info.append(info)
        del level

    return Registration(
        transform=model.transform(theta),
        metric=metric,
        metric_value=float(value),
        iterations=int(total_iter),
        elapsed_s=time.perf_counter() - t_start,
        converged=bool(converged),
        stop_reason=result_msg,
        levels=level_info,
        initial_transform=start_transform,
    )


def _corners(shape, sp, org) -> np.ndarray:
    idx = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1).T
    return np.asarray(org) + idx * np.asarray(sp)


def _param_scales(model: _Model, theta, corners) -> np.ndarray:
    """Largest physical shift (mm) at the fixed corners per unit change of each parameter."""
    d = corners - model.center3
    scales = []
    for j, e in model.jacobians(theta):
        shift = d @ j.T + e
        scales.append(max(float(np.sqrt((shift**2).sum(axis=1)).max()), 1e-6))
    return np.asarray(scales)


_LBFGS_MEMORY = 6
_ARMIJO = 1e-4
_MAX_BACKTRACK = 8


def _lbfgs_direction(g: np.ndarray, memory: list, gamma0: float) -> np.ndarray:
    """-H g by the two-loop recursion (H0 = s.y / y.y of the newest pair, else gamma0)."""
    q = g.copy()
    alphas = []
    for s_k, y_k, rho in reversed(memory):
        a = rho * (s_k @ q)
        alphas.append(a)
        q -= a * y_k
    if memory:
        s_k, y_k, _ = memory[-1]
        q *= (s_k @ y_k) / (y_k @ y_k)
    else:
        q *= gamma0
    for (s_k, y_k, rho), a in zip(memory, reversed(alphas)):
        b = rho * (y_k @ q)
        q += (a - b) * s_k
    return -q


def _optimise(model, theta0, evaluate, ff, fsp, forig, v0, g0, count0, max_iter, ftol, gtol,
              step_tol, metric, memory=None):  # fmt: skip
    """L-BFGS in parameters scaled to mm of corner shift, about one evaluation per iteration.

    Each iteration tries the quasi-Newton step (the first one, without curvature
    information, moves the corners by about one voxel of the level; no step moves
    them by more than ``_MAX_STEP_VOXELS`` voxels) and accepts it on sufficient decrease
    (Armijo); otherwise it backtracks by quadratic interpolation. No curvature
    condition, hence no extra evaluations; pairs with ``s.y <= 0`` are not stored.
    Stops when an accepted step moves the fixed image's corners by less than
    ``step_tol`` mm, when the relative decrease is below ``ftol``, when the largest
    scaled gradient is below ``gtol``, when no decrease is found down to ``step_tol``,
    or after ``max_iter`` iterations. ``memory`` (the (s, y) pairs of the previous
    level) seeds the inverse Hessian: the scaled parameters mean the same on every level.
    """
    corners = _corners(ff.shape, fsp, forig)
    scales = _param_scales(model, theta0, corners)
    voxel = float(min(s for s, n in zip(fsp, ff.shape) if n > 1) if max(ff.shape) > 1 else 1.0)
    max_step = _MAX_STEP_VOXELS * voxel
    # MSE is in squared intensity units: optimise it relative to its starting value.
    norm = abs(v0) if metric == "mse" and abs(v0) > 0 else 1.0
    lo = np.array([(b[0] - t) * s if np.isfinite(b[0]) else -np.inf
                   for b, t, s in zip(model.bounds(), theta0, scales)])  # fmt: skip
    hi = np.array([(b[1] - t) * s if np.isfinite(b[1]) else np.inf
                   for b, t, s in zip(model.bounds(), theta0, scales)])  # fmt: skip

    def theta_of(x):
        return theta0 + x / scales

    def moved(th_a, th_b) -> float:
        a = model.transform(th_a).apply(corners[:, 3 - model.ndim :])
        b = model.transform(th_b).apply(corners[:, 3 - model.ndim :])
        return float(np.sqrt(((a - b) ** 2).sum(axis=1)).max())

    # Guard against the small-overlap optimum of MI (a few samples in the moving image
    # give a spuriously high dependence): points keeping fewer than _KEEP_OVERLAP of the
    # starting valid samples count as no overlap and the line search backs off.
    min_count = max(_MIN_OVERLAP, int(math.ceil(_KEEP_OVERLAP * count0)))
    memory = list(memory or [])
    x = np.zeros(model.n)
    f = v0 / norm
    g = g0 / scales / norm
    count = count0
    nfev = 0
    it = 0
    converged, reason = False, "maximum number of iterations reached"
    while it < max_iter:
        if not np.isfinite(g).all():
            reason = "non-finite gradient"
            break
        if np.abs(g).max() <= gtol:
            converged, reason = True, "gradient below gradient_tolerance"
            break
        gnorm = float(np.sqrt(g @ g))
        d = _lbfgs_direction(g, memory, voxel / gnorm)
        gd = float(g @ d)
        if not gd < 0:  # not a descent direction: restart from the gradient
            memory.clear()
            d = -g * (voxel / gnorm)
            gd = float(g @ d)
        th = theta_of(x)
        length = moved(th, theta_of(x + d))
        alpha = min(1.0, max_step / length) if length > 0 else 1.0
        accepted = False
        for _ in range(_MAX_BACKTRACK + 1):
            x_new = np.clip(x + alpha * d, lo, hi)
            th_new = theta_of(x_new)
            v, gr, cnt = evaluate(th_new)
            nfev += 1
            ok = cnt >= min_count and np.isfinite(v)
            f_new = v / norm if ok else np.inf
            if ok and f_new <= f + _ARMIJO * float(g @ (x_new - x)):
                accepted = True
                break
            if ok:  # minimiser of the quadratic through f, gd and f_new
                denom = 2.0 * (f_new - f - gd * alpha)
                a_q = -gd * alpha * alpha / denom if denom > 0 else 0.5 * alpha
                alpha = min(max(a_q, 0.1 * alpha), 0.5 * alpha)
            else:
                alpha *= 0.25
            if moved(th, theta_of(np.clip(x + alpha * d, lo, hi))) < step_tol:
                break
        if not accepted:
            converged, reason = True, "no decrease along the search direction above step_tolerance"
            break
        it += 1
        g_new = gr / scales / norm
        s_k, y_k = x_new - x, g_new - g
        sy = float(s_k @ y_k)
        if sy > 1e-12 * float(np.sqrt((s_k @ s_k) * (y_k @ y_k))):
            memory.append((s_k, y_k, 1.0 / sy))
            del memory[:-_LBFGS_MEMORY]
        step = moved(th, th_new)
        decrease = (f - f_new) / max(abs(f), abs(f_new), 1e-300)
        x, f, g, count = x_new, f_new, g_new, cnt
        if step < step_tol:
            converged, reason = True, "step below step_tolerance"
            break
        if decrease < ftol:
            converged, reason = True, "relative decrease below tolerance"
            break
    theta = theta_of(x)
    return theta, {
        "iterations": it,
        "evaluations": nfev + 1,
        "initial_metric_value": float(v0),
        "metric_value": float(f * norm),
        "valid_samples": int(count),
        "converged": converged,
        "stop_reason": reason,
        "memory": memory,
    }


_SEARCH_SAMPLES = 2048  # fixed samples scoring the translation grid
_SEARCH_STARTS = 2  # grid points optimised besides the initial start
_SEARCH_STEPS = 7  # grid points per axis
_SEARCH_KEEP = 0.5  # grid points must keep this fraction of the start's valid samples


def _translation_search(model, theta, level, max_shift3, seed, ff, fsp, forig, mm, msp, morig,
                        metric, bins, mask) -> list[np.ndarray]:  # fmt: skip
    """Extra starts from a coarse exhaustive translation search on the coarsest level.

    Shifts of ``linspace(-1, 1, _SEARCH_STEPS) * max_shift`` per axis (343 in 3-D) are
    added to the start's translation and scored by the metric on at most
    ``_SEARCH_SAMPLES`` seeded random fixed samples of the level; grid points keeping
    fewer than ``_SEARCH_KEEP`` of the start's valid samples are ignored (the small-
    overlap optimum of MI). The best ``_SEARCH_STARTS`` points that score better than
    the unshifted start are returned, to be optimised like the start itself.
    """
    if level.n > _SEARCH_SAMPLES:
        level = _Level(ff, fsp, forig, mask, mm, msp, morig, metric, bins, _SEARCH_SAMPLES,
                       _SEARCH_SAMPLES, np.random.default_rng([seed, 1 << 20]), 0)  # fmt: skip
    ndim = model.ndim
    coef = np.zeros((model.n, 7))

    def score(th):
        a3, off3 = model.affine3(th)
        v, _, count = level.evaluate(a3, off3, model.center3, coef)
        return v, count

    v_ref, count_ref = score(theta)
    steps = np.linspace(-1.0, 1.0, _SEARCH_STEPS)
    shifts = np.stack(np.meshgrid(*[steps] * ndim, indexing="ij"), axis=-1).reshape(-1, ndim)
    found = []
    for k, sh in enumerate(shifts):
        if not sh.any():
            continue
        th = theta.copy()
        th[model.n_rot : model.n_rot + ndim] += sh * max_shift3[3 - ndim :]
        v, count = score(th)
        if count >= max(_MIN_OVERLAP, _SEARCH_KEEP * count_ref) and v < v_ref:
            found.append((v, k, th))
    found.sort(key=lambda t: (t[0], t[1]))
    return [th for _, _, th in found[:_SEARCH_STARTS]], len(shifts)


def _rotation_search(model: _Model, theta, evaluate, max_deg, v0):
    steps = np.deg2rad(max_deg) * np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    base = model.transform(theta)
    best_v, best_theta = v0, theta
    if model.ndim == 3:
        combos = [(a, b, c) for a in steps for b in steps for c in steps]
    else:
        combos = [(a,) for a in steps]
    for angles in combos:
        if not any(angles):
            continue
        rot = _flip(_euler3_itk(*angles)) if model.ndim == 3 else _rot2(angles[0])
        # rotate about the centre, keeping the centre's image: T' = T o R
        trial = _make(model.ndim, base.rotation @ rot, base.translation, base.center,
                      base.scale, similarity=model.kind == "similarity")  # fmt: skip
        th = model.theta_of(trial)
        v, _, count = evaluate(th)
        if count >= _MIN_OVERLAP and v < best_v:
            best_v, best_theta = v, th
    return best_theta, best_v


# -- resample -------------------------------------------------------------------------------
def _as_transform(transform: Any, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """(linear, offset) of a transform object or homogeneous matrix."""
    if isinstance(transform, RigidTransform):
        if transform.ndim != ndim:
            raise ValueError(f"transform must be {ndim}-D like moving, got {transform.ndim}-D")
        return transform.linear, transform.offset
    if hasattr(transform, "matrix") and not isinstance(transform, np.ndarray):
        transform = transform.matrix
    try:
        m = np.asarray(transform, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            "transform must be a RigidTransform/SimilarityTransform or a homogeneous matrix, "
            f"got {type(transform).__name__}"
        ) from None
    if m.shape != (ndim + 1, ndim + 1):
        raise ValueError(
            f"transform matrix must be {ndim + 1}x{ndim + 1} for a {ndim}-D image, got {m.shape}"
        )
    if not np.all(np.isfinite(m)):
        raise ValueError("transform matrix must be finite")
    return m[:ndim, :ndim], m[:ndim, ndim]


def resample(
    moving: Any,
    transform: Any,
    *,
    shape: Any,
    spacing: Any = None,
    origin: Any = None,
    moving_spacing: Any = None,
    moving_origin: Any = None,
    order: int = 1,
    cval: float = 0.0,
    out: Any = None,
) -> Any:
    """Warp ``moving`` onto a grid: ``output[i] = moving at transform.apply(origin + i * spacing)``.

    With the transform from :func:`register` and the fixed image's grid this gives the
    moving image aligned with the fixed one.

    Parameters
    ----------
    moving : ndarray or Volume
        2-D or 3-D image; a Volume is read block by block (orders 0 and 1 read only the
        region each output block needs; order 3 reads it whole to compute the spline
        coefficients, float64).
    transform : RigidTransform, SimilarityTransform or (ndim + 1, ndim + 1) matrix
        Output (fixed) physical points -> moving physical points.
    shape : sequence of int
        Output shape.
    spacing, origin : sequence of float, optional
        Output grid; default the ``out`` Volume's, else 1 mm and 0.
    moving_spacing, moving_origin : sequence of float, optional
        Moving grid; default the Volume's, else 1 mm and 0.
    order : {0, 1, 3}
        Nearest, linear or cubic B-spline interpolation (scipy.ndimage's).
    cval : float
        Value outside the moving image (scipy's ``mode='constant'``: points outside
        ``[0, n - 1]`` in index space).
    out : ndarray or Volume, optional
        Output of ``shape``; a Volume is written block by block, bit-identical to the
        in-memory result. Integer outputs are rounded and clipped.

    Returns
    -------
    ndarray or Volume
        ``out`` if given; else a new array, dtype of ``moving`` for ``order=0``,
        float32 (float64 for float64 input) otherwise.

    Examples
    --------
    >>> import numpy as np, fastct
    >>> from fastct.transforms import RigidTransform
    >>> img = np.arange(24, dtype=np.float32).reshape(4, 6)
    >>> shift = RigidTransform(2, translation=(1.0, 0.0))
    >>> fastct.resample(img, shift, shape=(4, 6), cval=-1)[:, 0]
    array([ 6., 12., 18., -1.], dtype=float32)
    """
    from scipy import ndimage

    from ._kernels.resample import resample_affine

    if isinstance(order, bool) or order not in (0, 1, 3):
        raise ValueError(f"order must be 0, 1 or 3, got {order!r}")
    if isinstance(cval, bool) or not isinstance(cval, (numbers.Real, np.number)):
        raise TypeError(f"cval must be a real number, got {type(cval).__name__}")
    marr, msp, morig = _image_meta(moving, "moving", moving_spacing, moving_origin)
    ndim = marr.ndim
    shape = check_shape(shape, "shape")
    if len(shape) != ndim:
        raise ValueError(f"shape must have {ndim} values like moving, got {shape}")
    out_is_vol = _is_volume(out)
    if out is not None:
        if not out_is_vol and not isinstance(out, np.ndarray):
            raise TypeError(f"out must be an ndarray or Volume, got {type(out).__name__}")
        if tuple(out.shape) != shape:
            raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
        if out.dtype.kind not in "biuf":
            raise TypeError(f"out must have a real numeric dtype, got {out.dtype}")
        if out_is_vol:
            spacing = out.spacing if spacing is None else spacing
            origin = out.origin if origin is None else origin
    sp = np.asarray(check_spacing(spacing, ndim), dtype=float)
    org = np.asarray(check_origin(origin, ndim), dtype=float)
    lin, off = _as_transform(transform, ndim)

    # output index -> moving continuous index, embedded in 3-D
    mat = (lin * sp[None, :]) / np.asarray(msp)[:, None]
    vec = (lin @ org + off - np.asarray(morig)) / np.asarray(msp)
    mat3, vec3 = np.zeros((3, 3)), np.zeros(3)
    mat3[3 - ndim :, 3 - ndim :] = mat
    vec3[3 - ndim :] = vec
    mshape3 = np.asarray((1,) * (3 - ndim) + tuple(marr.shape), dtype=np.int64)

    in_dtype = np.dtype(marr.dtype)
    if in_dtype.kind not in "biuf":
        raise TypeError(f"moving must have a real numeric dtype, got {in_dtype}")
    res_dtype = in_dtype if order == 0 else smoothing_dtype(in_dtype)
    if res_dtype.kind == "b":
        res_dtype = np.dtype(np.uint8) if order == 0 else res_dtype
    dst_dtype = np.dtype(out.dtype) if out is not None else res_dtype
    is_int = dst_dtype.kind in "biu"
    if dst_dtype.kind == "b":
        lo, hi = 0.0, 1.0
    elif is_int:
        info = np.iinfo(dst_dtype)
        lo, hi = float(info.min), float(info.max)
    else:
        lo = hi = 0.0

    from .streaming import map_blocks, read_all

    def src_full() -> np.ndarray:
        data = read_all(marr)
        if order == 3:
            if data.dtype.kind == "f" and data.dtype != np.float64:
                data = data.astype(np.float64)
            data = ndimage.spline_filter(data, order=3, output=np.float64, mode="mirror")
        elif data.dtype.kind == "b":
            data = data.view(np.uint8)
        return np.ascontiguousarray(data).reshape(tuple(mshape3))

    kernel_args = (mat3, vec3)
    full_start = np.zeros(3, np.int64)

    if not out_is_vol and not _is_volume(marr):
        src = src_full()
        result = out if out is not None else np.empty(shape, dtype=res_dtype)
        target = result if result.flags.c_contiguous else np.empty(shape, dtype=result.dtype)
        t3 = target.reshape((1,) * (3 - ndim) + shape)
        with _config.kernel_threads():
            resample_affine(src, t3, *kernel_args, full_start, full_start, mshape3, order,
                            float(cval), is_int, lo, hi)  # fmt: skip
        if target is not result:
            result[...] = target
        return result

    # streamed by output blocks: the engine reads the moving box of the next block on its
    # I/O thread (orders 0 and 1; order 3 samples the whole coefficient array) while this
    # one is interpolated, and writes the blocks to ``out`` (aligned to its chunks)
    src_cache = src_full() if order == 3 else None

    def as3(start: tuple[int, ...], stop: tuple[int, ...]) -> tuple[np.ndarray, tuple]:
        start3 = np.asarray((0,) * (3 - ndim) + tuple(start), dtype=np.int64)
        return start3, (1,) * (3 - ndim) + tuple(b - a for a, b in zip(start, stop))

    def read(start: tuple[int, ...], stop: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        if order == 3:
            return src_cache, full_start
        return _source_region(marr, mat3, vec3, *as3(start, stop), mshape3, ndim)

    def kernel(data: tuple[np.ndarray, np.ndarray], info) -> np.ndarray:
        src, sstart = data
        start3, bshape3 = as3(info.start, info.stop)
        block = np.empty(bshape3, dtype=dst_dtype)
        resample_affine(src, block, mat3, vec3, start3, sstart, mshape3, order, float(cval),
                        is_int, lo, hi)  # fmt: skip
        return block.reshape(info.core_shape)

    # blocks of about half the memory budget at 8 bytes per output voxel
    return map_blocks(kernel, shape, read, out=out, out_dtype=res_dtype, itemsize=8,
                      desc="resample")  # fmt: skip


def _source_region(marr, mat3, vec3, start3, bshape3, mshape3, ndim):
    """The moving region (and its start) that output block needs for orders 0 and 1."""
    from .streaming import read_region

    corners = np.array(
        np.meshgrid(*[[s, s + n - 1] for s, n in zip(start3, bshape3)], indexing="ij")
    ).reshape(3, -1)
    u = mat3 @ corners + vec3[:, None]
    lo = np.maximum(np.floor(u.min(axis=1)) - 1, 0).astype(np.int64)
    hi = np.minimum(np.ceil(u.max(axis=1)) + 1, mshape3 - 1).astype(np.int64)
    if np.any(hi < lo):  # the block sees nothing of the moving image
        return np.zeros((1, 1, 1), dtype=marr.dtype if marr.dtype.kind != "b" else np.uint8), lo * 0
    region3 = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi))
    buf = read_region(marr, region3[3 - ndim :])
    if buf.dtype.kind == "b":
        buf = buf.view(np.uint8)
    return buf.reshape(tuple(r.stop - r.start for r in region3)), lo

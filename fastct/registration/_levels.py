"""The multi-resolution pyramid and the metric (value and gradient) on one level."""

from __future__ import annotations

import contextlib
import numbers
from typing import Any

import numpy as np

from .. import _config

_BLOCK = 4096  # samples per reduction block (fixed: results do not depend on threads)
_MI_BLOCKS = 64  # at most this many Mattes histogram slabs (block size grows with n)
# and at most this much memory for them (large ``bins``): the default memory budget,
# not the current one (fastct.set_memory_budget), because the block size decides how
# the metric's sums are grouped, hence its bits; results never depend on the budget
_MI_SLAB_BYTES = _config.DEFAULT_MEMORY_BUDGET
_MIN_OVERLAP = 32  # fewer valid samples than this is "no overlap"


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
    image: np.ndarray,
    spacing: tuple,
    origin: tuple,
    factors: tuple,
    sigma_mm: float,
    direction: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple, tuple, tuple]:
    """Smooth (sigma in mm, axes of length 1 skipped) then subsample by ``factors``.

    The level keeps the image's ``direction``; its origin is the physical point of the
    first kept voxel, ``origin + direction @ (offset * spacing)``.
    """
    offs = tuple((f - 1) // 2 if n > f else 0 for f, n in zip(factors, image.shape))
    sl = tuple(slice(o, None, f) for o, f in zip(offs, factors))
    if sigma_mm > 0:
        out = _smooth_and_keep(image, sigma_mm, spacing, sl)
    else:
        out = np.ascontiguousarray(image[sl], dtype=np.float32)
    new_sp = tuple(s * f for s, f in zip(spacing, factors))
    if direction is None or not any(offs):
        new_org = tuple(o + k * s for o, k, s in zip(origin, offs, spacing))
    else:
        shift = np.asarray(direction) @ (np.asarray(offs, dtype=float) * np.asarray(spacing))
        new_org = tuple(float(v) for v in np.asarray(origin, dtype=float) + shift)
    return out, new_sp, new_org, sl


def _smooth_and_keep(
    image: np.ndarray, sigma_mm: float, spacing: tuple, keep: tuple[slice, ...]
) -> np.ndarray:
    """``gaussian(image, sigma_mm, mode='nearest')[keep]`` (float32) without the
    smoothed copy of the whole image: z slabs of the kept planes, each smoothed with
    a halo of real data beyond the Gaussian's reach (its values are then those of the
    whole-image filter, the engine's chunked == whole guarantee), within one memory
    budget."""
    from .. import _config
    from ..filters import gaussian
    from ..filters._gaussian import gaussian_weights
    from ..streaming import slabs

    nz = image.shape[0]
    sig = tuple(0.0 if n == 1 else sigma_mm for n in image.shape)
    reach = (len(gaussian_weights(sig[0] / spacing[0], 4.0)) - 1) // 2
    kz, f = keep[0].start, keep[0].step
    planes = range(kz, nz, f)
    plane_bytes = 4 * int(np.prod(image.shape[1:]))
    per_slab = max(1, (_config.get_memory_budget() // plane_bytes - 2 * reach) // f)
    out = None
    for part in slabs(len(planes), per_slab):
        z0, z1 = planes[part.start], planes[part.stop - 1] + 1
        lo, hi = max(0, z0 - reach), min(nz, z1 + reach)
        smooth = gaussian(image[lo:hi], sig, spacing=spacing, mode="nearest")
        rows = smooth[(slice(z0 - lo, z1 - lo, f),) + tuple(keep[1:])]
        if out is None:
            out = np.empty((len(planes), *rows.shape[1:]), np.float32)
        out[part.start : part.stop] = rows
    assert out is not None
    return out


def _default_pyramid(fixed_shape: tuple, spacing: tuple) -> tuple[tuple, tuple]:
    """Shrink factors (4, 2, 1), coarse levels dropped when they would be under 8 voxels."""
    extent = min(n * s for n, s in zip(fixed_shape, spacing) if n > 1)
    smin = min(s for n, s in zip(fixed_shape, spacing) if n > 1)
    factors = [f for f in (4, 2) if extent / (f * smin) >= 8] + [1]
    sigmas = tuple(0.5 * f * smin if f > 1 else 0.0 for f in factors)
    return tuple(factors), sigmas


def _jittered(fixed: np.ndarray, zyx: np.ndarray, rng: np.random.Generator):
    """Random sample positions moved off the grid: each of the chosen voxels ``zyx``
    (float (n, 3)) by a uniform offset in [-0.5, 0.5) voxel per axis (kept inside the
    grid), with the fixed value interpolated trilinearly there (float32).

    Why: on grid-aligned samples, the moving image's linear interpolation blurs by an
    amount that depends on the transform's sub-voxel phase (none at whole-voxel shifts,
    most at half-voxel ones), so a similarity metric has grid-locked ripples and an
    optimum biased toward the phase that suits the noise (correlation prefers the
    half-voxel blur that removes noise). Off-grid samples have uniformly distributed
    phases whatever the transform, which removes that bias (elastix's
    ``RandomCoordinate`` sampler, Thevenaz et al. 2008).
    """
    from .._kernels.registration import jitter_samples

    off = rng.uniform(-0.5, 0.5, size=zyx.shape)
    off[:, np.asarray(fixed.shape) == 1] = 0.0
    pos = np.empty_like(zyx)
    vals = np.empty(len(zyx), dtype=np.float32)
    jitter_samples(fixed, np.ascontiguousarray(zyx), off, pos, vals)
    return pos, vals


# -- metric evaluation on one level ------------------------------------------------------------
class _Level:
    """The metric on one pyramid level.

    Geometry: a fixed sample at voxel ``i`` is handed to the kernels as the "local"
    point ``p_k = forig + i * fsp`` (axis-aligned); its physical point is ``p = forig +
    fdir @ (p_k - forig)``. The moving continuous index of a physical point ``q`` is
    ``u = mdir^T (q - morig) / msp``. :meth:`evaluate` composes both directions with the
    transform into the affine map ``u = ia @ p_k + ioff`` the kernels use, gives them
    the centred mapped point in the moving local frame (``mdir^T w``) and rotates the
    accumulated gradient numbers back to physical space (the kernels' per-mm gradient
    is ``mdir^T`` of the physical one; a cross product picks up ``det(mdir)``).
    ``fdir``/``mdir`` are 3x3 (2-D embedded), None for the identity.
    """

    def __init__(self, fixed, fsp, forig, mask, moving, msp, morig, metric, bins, sampling,
                 max_samples, rng, index, fdir=None, mdir=None, jitter=True):  # fmt: skip
        self.fixed = fixed
        self.fsp = np.asarray(fsp, dtype=float)
        self.forig = np.asarray(forig, dtype=float)
        self.moving = moving
        self.msp = np.asarray(msp, dtype=float)
        self.morig = np.asarray(morig, dtype=float)
        eye = np.eye(3)
        self.fdir = None if fdir is None or np.array_equal(fdir, eye) else np.asarray(fdir, float)
        self.mdir = None if mdir is None or np.array_equal(mdir, eye) else np.asarray(mdir, float)
        if self.mdir is not None:
            # physical 7-vector (w x g, g, g . w) = rot7 @ local 7-vector
            self.rot7 = np.eye(7)
            self.rot7[:3, :3] = np.linalg.det(self.mdir) * self.mdir
            self.rot7[3:6, 3:6] = self.mdir
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
        # Every sampling but 'full' draws its samples off the grid (see _jittered); with
        # 'auto' and fewer voxels than max_samples, every voxel once, jittered.
        jitter = jitter and sampling != "full"
        if n >= n_vox and candidates is None and not jitter:
            self.use_all = True
            self.pts = np.zeros((1, 3))
            self.fvals = fflat
            self.n = n_vox
        else:
            self.use_all = False
            if n >= n_vox:
                sidx = np.arange(n_vox) if candidates is None else candidates
            else:
                pick = rng.choice(n_vox, size=n, replace=False)
                pick.sort()
                sidx = pick if candidates is None else candidates[pick]
            self.n = sidx.size
            zyx = np.stack(np.unravel_index(sidx, fixed.shape), axis=1).astype(np.float64)
            if jitter:
                zyx, vals = _jittered(fixed, zyx, rng)
            else:
                vals = fflat[sidx]
            self.pts = np.ascontiguousarray(self.forig + zyx * self.fsp)
            self.fvals = np.ascontiguousarray(vals)
        values = fflat if candidates is None else fflat[candidates]
        fmin, fmax = float(values.min()), float(values.max())
        mmin, mmax = float(moving.min()), float(moving.max())
        self.constant = (fmin == fmax, mmin == mmax)
        self.rsp = 1.0 / self.msp
        from .._kernels.registration import N_DPOW, N_POW, N_STATS, N_V, N_VPAD

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

    def evaluate(self, a3, off3, center3, coef, gradient: bool = True):
        """(value, dvalue/dtheta, number of valid samples); ``coef`` from
        :meth:`_Model.coefficients`. With ``gradient=False`` the gradient is zeros (the
        coarse searches only compare values; Mattes MI then skips expanding the
        histogram derivative)."""
        from .._kernels import registration as k

        args = (self.pts, self.n, self.use_all, self.fshape, self.fsp, self.forig)
        ia, ioff, wo = self._affine(a3, off3, center3)
        geo = (ia, ioff, self.rsp, self.msp, wo, self.moving)
        if self.metric == "mi":
            with _threads(self.nblocks):
                k.mi_pass(self.fixbin, *args, *geo, self.mbs, self.mnmin, self.bins,
                          self.block, self.hist, self.dhist)  # fmt: skip
            dsum_pow = self.dhist.sum(axis=0) if gradient else None
            joint, dsum = _expand_parzen(self.hist.sum(axis=0), dsum_pow, self.bins)
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
            if dsum is None:
                return -mi, np.zeros(len(coef)), count
            sums = self._physical(logratio.reshape(-1) @ dsum.reshape(-1, k.N_V))
            return -mi, coef @ sums / (total * self.mbs), count
        with _threads(self.nblocks):
            k.stats_pass(self.fvals, *args, *geo, _BLOCK, self.acc)
        s = self.acc.sum(axis=0)
        count = int(s[0])
        if count < _MIN_OVERLAP:
            return (np.inf if self.metric == "mse" else 0.0), np.zeros(len(coef)), count
        n_stats, n_v = k.N_STATS, k.N_V
        g_f = self._physical(s[n_stats : n_stats + n_v])
        g_m = self._physical(s[n_stats + n_v : n_stats + 2 * n_v])
        g_1 = self._physical(s[n_stats + 2 * n_v :])
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

    def _affine(self, a3, off3, center3):
        """(ia, ioff, wo): the moving continuous index ``u = ia @ p_k + ioff`` of a local
        fixed point and the offset ``wo`` of the centred mapped point in the moving
        local frame, ``mdir^T A (p - c) = u * msp + wo`` (see the class notes)."""
        a = a3 if self.fdir is None else a3 @ self.fdir
        off = off3 if self.fdir is None else off3 + a3 @ (self.forig - self.fdir @ self.forig)
        wo = self.morig - off3 - a3 @ center3
        rel = off - self.morig
        if self.mdir is not None:
            a = self.mdir.T @ a
            rel = self.mdir.T @ rel
            wo = self.mdir.T @ wo
        ia = np.ascontiguousarray(a * self.rsp[:, None])
        ioff = np.ascontiguousarray(rel * self.rsp)
        return ia, ioff, np.ascontiguousarray(wo)

    def _physical(self, v: np.ndarray) -> np.ndarray:
        """The kernels' gradient numbers (moving local frame) in physical space."""
        return v if self.mdir is None else self.rot7 @ v


def _expand_parzen(hpow: np.ndarray, dpow: np.ndarray | None, bins: int):
    """Joint histogram (bins, bins) and its derivative (bins, bins, N_V) from the power
    sums of :func:`fastct._kernels.registration.mi_pass` (summed over blocks); the
    derivative is None when ``dpow`` is None (value only)."""
    from .._kernels.registration import N_DPOW, N_POW, N_V, N_VPAD, PARZEN_D, PARZEN_W

    hp = hpow.reshape(bins, bins, N_POW)[:, 2 : bins - 2]  # km in [2, bins - 3]
    w = hp @ PARZEN_W.T  # (bins, bins - 4, 4): the weight of bin k = km - 1 + j
    joint = np.zeros((bins, bins))
    for j in range(4):
        joint[:, 1 + j : bins - 3 + j] += w[..., j]
    if dpow is None:
        return joint, None
    dp = dpow.reshape(bins, bins, N_DPOW, N_VPAD)[:, 2 : bins - 2, :, :N_V]
    d = np.matmul(PARZEN_D, dp)  # (bins, bins - 4, 4, N_V)
    deriv = np.zeros((bins, bins, N_V))
    for j in range(4):
        deriv[:, 1 + j : bins - 3 + j] += d[:, :, j]
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

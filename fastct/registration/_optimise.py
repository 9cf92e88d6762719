"""The optimiser (L-BFGS with backtracking, parameter scales) and the coarse
rotation and translation searches."""

from __future__ import annotations

import math

import numpy as np

from ..transforms import _euler3_itk, _flip, _make, _rot2
from ._levels import _MIN_OVERLAP, _Level
from ._model import _Model

_MAX_STEP_VOXELS = 4.0  # no optimiser step moves the fixed corners further (level voxels)
_KEEP_OVERLAP = 0.2  # a step may not lose more than 80% of the level's starting overlap


def _corners(shape, sp, org, direction=None) -> np.ndarray:
    """Physical points (8, 3) of the corner voxels of a 3-D (embedded) grid."""
    idx = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1).T
    scaled = idx * np.asarray(sp)
    if direction is not None:
        scaled = scaled @ np.asarray(direction, dtype=float).T
    return np.asarray(org) + scaled


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
              step_tol, metric, memory=None, fdir=None):  # fmt: skip
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
    corners = _corners(ff.shape, fsp, forig, fdir)
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
                        metric, bins, mask, fdir=None, mdir=None) -> list[np.ndarray]:  # fmt: skip
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
                       _SEARCH_SAMPLES, np.random.default_rng([seed, 1 << 20]), 0, fdir,
                       mdir)  # fmt: skip
    ndim = model.ndim
    coef = np.zeros((model.n, 7))

    def score(th):
        a3, off3 = model.affine3(th)
        v, _, count = level.evaluate(a3, off3, model.center3, coef, gradient=False)
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

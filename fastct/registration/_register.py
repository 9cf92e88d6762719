""":func:`register`, its result :class:`Registration` and the initialisation."""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _log
from .._validate import check_positive_int
from ..transforms import RigidTransform
from ._inputs import (
    _as3,
    _check_sampling,
    _choice,
    _direction3,
    _image_meta,
    _is_volume,
    _load_float32,
    _pad3,
    _positive,
)
from ._levels import _MIN_OVERLAP, _default_pyramid, _Level, _level_factors, _shrink
from ._model import _Model
from ._optimise import _optimise, _rotation_search, _translation_search

TRANSFORMS = ("rigid", "similarity")
METRICS = ("mse", "ncc", "mi")
INITS = ("auto", "geometry", "moments", "none")

log = _log.get_logger(__name__)


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


def _physical3(index: np.ndarray, sp: np.ndarray, org: np.ndarray, d3: np.ndarray) -> np.ndarray:
    """Physical point of a continuous 3-D (embedded) index: ``org + d3 @ (index * sp)``."""
    return org + d3 @ (np.asarray(index, dtype=float) * sp)


def _center_of_mass(img: np.ndarray, sp: np.ndarray, org: np.ndarray, d3: np.ndarray,
                    mask=None) -> np.ndarray:  # fmt: skip
    """Physical intensity centre of mass (intensities minus their minimum)."""
    if mask is None:
        exact = _integer_profiles(img)
        if exact is not None:
            total, profiles = exact
            if total <= 0:
                return _physical3((np.asarray(img.shape) - 1) / 2.0, sp, org, d3)
            com = [float(p @ np.arange(n)) / total for p, n in zip(profiles, img.shape)]
            return _physical3(np.asarray(com), sp, org, d3)
    w = img.astype(np.float64) - float(img.min())
    if mask is not None:
        w = w * mask
    total = w.sum()
    if total <= 0:
        return _physical3((np.asarray(img.shape) - 1) / 2.0, sp, org, d3)
    com = []
    for ax in range(3):
        other = tuple(i for i in range(3) if i != ax)
        prof = w.sum(axis=other)
        com.append(float(prof @ np.arange(img.shape[ax])) / total)
    return _physical3(np.asarray(com), sp, org, d3)


def _integer_profiles(img: np.ndarray) -> tuple[float, list[np.ndarray]] | None:
    """The sum and the per-axis profiles of ``img - img.min()`` (float64), computed
    in int64 by z slabs, for an image of integer values (a CT in HU): every float64
    operation of :func:`_center_of_mass`'s general path on such an image is exact
    (the bounds below), so these are the same numbers without its float64 copy of the
    whole image. None when the values or sizes are outside those bounds."""
    lo = float(img.min())
    hi = float(img.max())
    span = hi - lo
    n_max = max(img.shape)
    # every sum, and every profile dotted with its indices, below 2**53
    if not (abs(lo) < 2**31 and abs(hi) < 2**31) or span * img.size * n_max >= 2.0**53:
        return None
    base = int(lo)
    profiles = [np.zeros(n, np.int64) for n in img.shape]
    rows = max(1, (64 * 1024**2) // max(1, 8 * int(np.prod(img.shape[1:]))))
    for z0 in range(0, img.shape[0], rows):
        slab = img[z0 : z0 + rows]
        if slab.dtype.kind == "f" and not np.array_equal(slab, np.rint(slab)):
            return None
        w = slab.astype(np.int64)
        w -= base
        profiles[0][z0 : z0 + slab.shape[0]] = w.sum(axis=(1, 2))
        profiles[1] += w.sum(axis=(0, 2))
        profiles[2] += w.sum(axis=(0, 1))
    total = float(profiles[0].sum())
    return total, [p.astype(np.float64) for p in profiles]


def _moving_factors(fac3, fsp3, fdir3, mshape3, msp3, mdir3) -> tuple[int, ...]:
    """Shrink factors of the moving image matching the fixed level's spacing: along
    moving axis ``a`` the target spacing is the fixed level's spacing in that physical
    direction (the fixed axis it maps to for flips and permutations)."""
    target = np.asarray(fac3, dtype=float) * fsp3
    c = fdir3.T @ mdir3  # c[b, a]: moving axis a's direction on fixed axis b
    out = []
    for a in range(3):
        if mshape3[a] == 1:
            out.append(1)
            continue
        t = float(np.sqrt(((c[:, a] * target) ** 2).sum()))
        out.append(max(1, int(round(t / msp3[a]))))
    return tuple(out)


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
    fixed_direction: Any = None,
    moving_direction: Any = None,
    fixed_mask: Any = None,
    initial_transform: RigidTransform | None = None,
    init: str = "auto",
    shrink_factors: Any = None,
    smoothing_sigmas: Any = None,
    bins: int = 32,
    sampling: Any = "auto",
    max_samples: int = 400_000,
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
        2-D ``(y, x)`` or 3-D ``(z, y, x)`` images of the same dimension; shapes,
        spacings and orientations may differ. Volumes take spacing, origin and direction
        from their attributes.
    transform : {'rigid', 'similarity'}
        Rotation + translation, or with an isotropic scale as well.
    metric : {'mi', 'ncc', 'mse'}
        Mattes mutual information (multi-modal), normalised cross-correlation, or mean
        squared difference (see the module notes).
    fixed_spacing, moving_spacing, fixed_origin, moving_origin : sequence of float, optional
        Voxel size (mm) and position of voxel 0; default 1 and 0 (or the Volume's).
    fixed_direction, moving_direction : (ndim, ndim) array_like, optional
        Direction cosines (one orthonormal column per array axis, ITK's convention:
        ``physical = origin + direction @ (index * spacing)``, LPS, ``(z, y, x)``
        components); default the identity (or the Volume's ``direction``). Flips,
        permutations and oblique directions are handled exactly.
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
        Except with ``'full'`` (every voxel, on the grid), each sample is moved off the
        grid by a seeded uniform offset of up to half a voxel per axis, the fixed image
        interpolated there: this removes the sub-voxel phase bias that linear
        interpolation gives grid-aligned samples (module notes).
    max_samples : int
        Sample budget of ``sampling='auto'`` at the full-resolution level (default
        400 000); a level shrunk by ``f`` uses at most ``max_samples // f``.
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

    farr, fgeo = _image_meta(fixed, "fixed", fixed_spacing, fixed_origin, fixed_direction)
    marr, mgeo = _image_meta(moving, "moving", moving_spacing, moving_origin, moving_direction)
    fsp, forig, msp, morig = fgeo.spacing, fgeo.origin, mgeo.spacing, mgeo.origin
    if farr.ndim != marr.ndim:
        raise ValueError(
            f"fixed and moving must have the same dimension, got {farr.ndim}-D fixed and "
            f"{marr.ndim}-D moving"
        )
    ndim = farr.ndim
    mask = None
    if fixed_mask is not None:
        from ..streaming import read_all

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
    fdir3, mdir3 = _direction3(fgeo.direction), _direction3(mgeo.direction)
    f3, m3 = _as3(fimg), _as3(mimg)
    mask3 = None if mask is None else _as3(mask)

    # initialisation (physical points)
    fcenter = _physical3((np.asarray(f3.shape) - 1) / 2.0, fsp3, forig3, fdir3)
    mcenter = _physical3((np.asarray(m3.shape) - 1) / 2.0, msp3, morig3, mdir3)
    center3 = fcenter
    trans3 = np.zeros(3)
    candidates: list[np.ndarray] = []
    if initial_transform is None:
        if init == "geometry":
            trans3 = mcenter - fcenter
        elif init in ("moments", "auto"):
            center3 = _center_of_mass(f3, fsp3, forig3, fdir3, mask3)
            trans3 = _center_of_mass(m3, msp3, morig3, mdir3) - center3
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
        ff, fsp_l, forig_l, fsl = _shrink(f3, tuple(fsp3), tuple(forig3), fac3, sigma, fdir3)
        mfac = _moving_factors(fac3, fsp3, fdir3, m3.shape, msp3, mdir3)
        mm, msp_l, morig_l, _ = _shrink(m3, tuple(msp3), tuple(morig3), mfac, sigma, mdir3)
        lmask = None if mask3 is None else np.ascontiguousarray(mask3[fsl])
        # sampling='auto': max_samples at full resolution, max_samples / f on a level
        # shrunk by f (coarse levels take many cheap evaluations, the finest few)
        budget = max(1, max_samples // max(factors))
        level = _Level(ff, fsp_l, forig_l, lmask, mm, msp_l, morig_l, metric, bins, sampling,
                       budget, rng_levels[li], li, fdir3, mdir3)  # fmt: skip
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
            # the fixed image's physical extent along each (z, y, x) axis
            extent = np.abs(fdir3) @ (np.asarray(f3.shape, dtype=float) * fsp3)
            found, n_search = _translation_search(
                model, theta, level, translation_search * extent, seed, ff, fsp_l, forig_l,
                mm, msp_l, morig_l, metric, bins, lmask, fdir3, mdir3)  # fmt: skip
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
                            memory, fdir3)  # fmt: skip
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
        log.info("register: level %d of %d (shrink %s): %d iterations, %s %.6g, %.2f s",
                 li + 1, len(levels_f), factors, info["iterations"], metric, value,
                 info["elapsed_s"])  # fmt: skip
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

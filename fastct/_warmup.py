"""Compile (and so cache on disk) every kernel ahead of use: :func:`fastct.warmup`.

Every kernel is cached on disk (see :mod:`fastct._config`), so a process only compiles
what no earlier process compiled. ``warmup`` runs each public operation on tiny inputs,
for the dtypes and dimensions the public API dispatches on, so a later process finds
everything in the cache. It calls the public functions, never private kernel
signatures, so it follows the API wherever the kernels' signatures go.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import numpy as np

__all__ = ["STEPS", "WarmupStep", "warmup"]

_log = logging.getLogger("fastct")


class WarmupStep(NamedTuple):
    """What one warm-up step did."""

    name: str
    """The step (``'gaussian'``, ``'median'``, ...)."""
    seconds: float
    """Wall time of the step."""
    compiled: int
    """Kernel specialisations compiled (and written to the cache)."""
    loaded: int
    """Kernel specialisations loaded from the on-disk cache."""


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _images(dtypes: Iterable[Any], shapes: Iterable[tuple[int, ...]]) -> list[np.ndarray]:
    rng = _rng()
    out = []
    for shape in shapes:
        base = rng.random(shape) * 200.0
        for dt in dtypes:
            out.append(base.astype(dt))
    return out


_SHAPES = ((16, 17, 18), (17, 18))  # 3-D and 2-D; big enough for every code path
_REAL = (np.float32, np.float64)
_ALL = (np.float32, np.float64, np.int16, np.uint16, np.int32, np.uint8, np.bool_)


def _gaussian() -> None:
    import fastct

    for img in _images(_ALL, _SHAPES):
        fastct.gaussian(img, 1.0)
        fastct.gaussian(img, 3.0, method="recursive")  # IIR from sigma 2
    for img in _images(_REAL + (np.int16,), _SHAPES):
        fastct.unsharp_mask(img, 1.0, 1.0)


def _median() -> None:
    import fastct

    # the window size and the value range pick the algorithm (selection network,
    # sliding histogram, quickselect) and the keys' dtype
    for img in _images(_ALL, _SHAPES):
        wide = img * 3000 if img.dtype.kind == "f" else img
        for size in (3, 5, 7, 9):
            fastct.median(img, size)
            fastct.median(wide, size)
        fastct.median(img, footprint=np.ones((3,) * img.ndim, bool))


def _slic() -> None:
    import fastct

    rng = _rng()
    for shape in ((8, 10, 12), (10, 12)):
        for dt in _REAL:
            img = rng.random(shape).astype(dt)
            mask = np.ones(shape, bool)
            mask[..., :2] = False
            fastct.slic(img, n_segments=4, compactness=0.5)
            fastct.slic(img, n_segments=4, compactness=0.5, mask=mask)
            fastct.slic(img, n_segments=4, compactness=0.5, slic_zero=True)
            fastct.slic(img, n_segments=4, compactness=0.5, enforce_connectivity=False)
        rgb = rng.random(shape + (3,)).astype(np.float32)
        fastct.slic(rgb, n_segments=4, compactness=0.5, channel_axis=-1)


def _registration() -> None:
    import fastct

    rng = _rng()
    for shape in ((12, 14, 16), (14, 16)):
        base = rng.random(shape).astype(np.float32)
        grid = np.indices(shape).sum(0).astype(np.float32)
        fixed = fastct.gaussian(base + grid / 8, 1.0)
        moving = np.roll(fixed, 1, axis=-1)
        for transform in ("rigid", "similarity"):
            for metric in ("mi", "ncc", "mse"):
                reg = fastct.register(
                    fixed, moving, transform=transform, metric=metric, max_iterations=2
                )
        for dt in (np.float32, np.float64, np.int16, np.uint8):
            for order in (0, 1, 3):
                fastct.resample(moving.astype(dt), reg.transform, shape=shape, order=order)


def _features() -> None:
    import fastct

    rng = _rng()
    for shape in _SHAPES:
        labels = rng.integers(0, 4, shape)
        for ldt in (np.int32, np.int64, np.uint8, np.uint16):
            for img in _images(_REAL + (np.int16, np.uint8), (shape,)):
                fastct.region_features(labels.astype(ldt), img)
                # the one-pass kernel of the basic columns (what the detector asks for)
                fastct.region_features(labels.astype(ldt), img, properties=["mean", "max"],
                                       percentiles=())  # fmt: skip
            fastct.region_adjacency(labels.astype(ldt))


def _pipeline() -> None:
    import fastct
    from fastct import datasets, pipeline

    # what only the longitudinal pipeline uses (phantom rendering, lung mask, detector
    # features...), on the smallest phantom pair
    pair = datasets.phantom_pair("tiny", seed=0)
    with tempfile.TemporaryDirectory(prefix="fastct-warmup-") as tmp:
        path = Path(tmp) / "warmup.h5"
        with fastct.open(path, "w") as ar:
            for tag, scan in (("a", pair.baseline), ("b", pair.followup)):
                ar.create_volume(
                    f"/scans/{tag}/image",
                    scan.image,
                    spacing=scan.spacing,
                    origin=scan.origin,
                    modality="CT",
                    units="HU",
                )
        pipeline.run(path, "/scans/a", "/scans/b", out_dir=Path(tmp) / "out", report=False)


#: The warm-up steps, in order: name -> function running the public API on tiny inputs.
STEPS: dict[str, Callable[[], None]] = {
    "gaussian": _gaussian,
    "median": _median,
    "slic": _slic,
    "registration": _registration,
    "features": _features,
    "pipeline": _pipeline,
}


def _dispatchers() -> list[Any]:
    """Every compiled kernel of the loaded kernel modules."""
    from numba.core.registry import CPUDispatcher

    found = []
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("fastct._kernels."):
            continue
        for obj in vars(module).values():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == name:
                found.append(obj)
    return found


def _counts() -> dict[int, tuple[int, int]]:
    return {
        id(d): (d.stats.cache_misses.total(), d.stats.cache_hits.total()) for d in _dispatchers()
    }


def warmup(
    steps: Iterable[str] | None = None, *, verbose: bool = False, file: TextIO | None = None
) -> list[WarmupStep]:
    """Compile every kernel ahead of use, so later processes load them from disk.

    Runs the public operations (Gaussian, unsharp mask, median, SLIC, registration,
    resampling, region features, the demo pipeline) on tiny inputs for the dtypes and
    dimensions they dispatch on. Kernels are cached on disk by Numba (next to the
    package, or in ``NUMBA_CACHE_DIR`` / the user's cache folder when the package folder
    is read-only), so this pays the compilation once; a second call loads everything.

    Parameters
    ----------
    steps : iterable of str, optional
        Names from :data:`STEPS` (``'gaussian'``, ``'median'``, ``'slic'``,
        ``'registration'``, ``'features'``, ``'pipeline'``); default all.
    verbose : bool
        Print one line per step (time, kernels compiled, kernels loaded from the
        cache) and a total to ``file``.
    file : file object, optional
        Where ``verbose`` prints; default ``sys.stderr``.

    Returns
    -------
    list of WarmupStep
        ``(name, seconds, compiled, loaded)`` per step.

    Examples
    --------
    >>> import fastct
    >>> fastct.warmup(["gaussian", "median"], verbose=True)  # doctest: +SKIP
    gaussian         38.0 s     7 compiled     0 loaded from cache
    median           80.5 s     6 compiled     0 loaded from cache
    total           118.5 s    13 compiled     0 loaded from cache
    cache: /home/me/.cache/numba/...
    >>> fastct.warmup([])  # nothing asked, nothing done
    []
    """
    if steps is None:
        names = list(STEPS)
    else:
        if isinstance(steps, str):
            raise TypeError(f"steps must be an iterable of step names, got {steps!r}")
        names = list(steps)
        unknown = [n for n in names if n not in STEPS]
        if unknown:
            raise ValueError(f"steps must be among {sorted(STEPS)}, got {unknown[0]!r}")
    if not isinstance(verbose, bool):
        raise TypeError(f"verbose must be True or False, got {verbose!r}")
    out = sys.stderr if file is None else file

    import numba  # noqa: F401 - imported here so the first step's time is its own

    report = []
    total = time.perf_counter()
    for name in names:
        before = _counts()
        t0 = time.perf_counter()
        STEPS[name]()
        seconds = time.perf_counter() - t0
        after = _counts()
        compiled = loaded = 0
        for key, (misses, hits) in after.items():
            m0, h0 = before.get(key, (0, 0))
            compiled += misses - m0
            loaded += hits - h0
        step = WarmupStep(name, seconds, compiled, loaded)
        report.append(step)
        _log.info("warmup %s: %.1f s, %d compiled, %d loaded", name, seconds, compiled, loaded)
        if verbose:
            print(
                f"{name:<13} {seconds:7.1f} s  {compiled:4d} compiled  {loaded:4d} loaded from cache",
                file=out,
                flush=True,
            )
    if verbose:
        compiled = sum(s.compiled for s in report)
        loaded = sum(s.loaded for s in report)
        cache = sorted({d.stats.cache_path for d in _dispatchers() if d.stats.cache_path})
        print(
            f"{'total':<13} {time.perf_counter() - total:7.1f} s  {compiled:4d} compiled  "
            f"{loaded:4d} loaded from cache",
            file=out,
        )
        if cache:
            print(f"cache: {', '.join(cache)}", file=out)
        else:
            print(
                "cache: none (no writable cache folder: kernels compile in each process)", file=out
            )
    return report

"""The longitudinal lung-CT pipeline: a baseline and a follow-up scan in, nodules and
how each changed out.

:func:`run` takes two scans of one archive and runs, for each time point,

    denoise (the detector's preprocessing: median and/or Gaussian)
    -> enhance (unsharp mask) -> lung mask (:func:`fastct.lungs.lung_mask`)
    -> supervoxels inside the lungs -> per-region features -> detector
    (probability per region, probability map, detections),

then registers the follow-up to the baseline (rigid by default, similarity on
request), resamples the follow-up onto the baseline grid, computes the difference
map, matches the nodules across time points and builds the growth table (diameter,
volume, change, volume doubling time). It writes every intermediate volume into the
archive under ``/results/<run>/`` and a folder with ``report.html`` (figures next to
it, no remote resources), CSV tables and the transform.

The run is a table of stages (names in :data:`STAGES`), each a small function of one
run context; the matching and growth table live in :mod:`fastct.pipeline.growth`,
the comparison with a phantom's ground truth in :mod:`fastct.evaluation`.

Streaming and memory
--------------------
Every result is written to the archive. A scan that fits ``max_memory`` (about 24
bytes per voxel: 2.5 GB for 400 x 512 x 512 int16; default half the available
memory) is read once and its per-scan stages (denoise, enhance, lung mask,
supervoxels, features, detection) run on in-memory arrays, which cuts the CPU time
of supervoxels and features by about 2.5x. A larger scan streams: every volume
stage reads and writes archive ``Volume`` objects block by block, the lung mask
works on a ~1.5 mm working grid and keeps one bool mask of the scan in memory (100
MiB for a 512 x 512 x 400 scan), and the detector's supervoxels and features stream
as its module documents. Both paths give the same results bit for bit (tested).
The pair stages (registration, resampling, difference map) always stream.

Nothing half-written
--------------------
All inputs are checked (scans exist, same modality, plausible spacing, CT numbers in
HU, the model loads, the output folder is free) before any work starts. The archive
is opened as a transaction (:func:`fastct.open` mode ``'a'``) that is committed only
when every stage succeeded, and the output folder is written under a temporary name
and renamed into place at the end. A failure at any stage leaves the archive and the
folder as they were.

Matching and growth
-------------------
Baseline detections are mapped into follow-up physical space with the registration
transform and matched to follow-up detections one-to-one by minimum total distance
(Hungarian algorithm), pairs further apart than ``match_tolerance_mm`` (default
``max(10 mm, the larger diameter)``) being left unmatched. Each matched pair gets
its measurements at both time points (mean axial diameter, volume, type:
:mod:`fastct.pipeline.measure`), the volume change in percent and, for a growing
nodule only, the volume doubling time ``VDT = interval_days * ln 2 / ln(V2 / V1)``
(days; n/a for a stable or shrinking one, never negative). Only detections above the
detector's operating threshold take part; candidates below it are listed apart
(``PipelineResult.candidates``). Every nodule gets an ID (N1, N2 ...), a location
(slice, side, lung zone) and a Lung-RADS v2022-*style* category
(:mod:`fastct.pipeline.lungrads`; research use, not a clinical tool); the report is
shaped like a follow-up read (``docs/report.rst``). With a similarity registration
the follow-up volume is divided by ``scale**3`` before the ratio, so a global scale
difference between scans is not read as growth. ``interval_days`` is a parameter;
when it is not given it is read from the archive: an ``interval_days`` attribute on
the follow-up volume or its group, or the difference between ``study_date``
attributes (``YYYYMMDD`` or ISO ``YYYY-MM-DD``) of the two scans. Without either the
VDT column is empty.

Ground truth
------------
When the scans come from ``fastct phantom`` (a ``truth`` group beside them holding
the true transform and the nodule records), the result also holds the nodules found
versus the truth (a truth nodule is found when a detection's centre lies within
``max(radius, 3 mm)`` of its centre), the FROC of both scans, and the registration
error: the largest distance over the 8 corners of the baseline grid between
``transform.apply(p)`` and the true ``M p``, and every row of the growth table marked
true or false against the truth (:func:`fastct.pipeline.growth.truth_verdicts`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import _atomic
from .._validate import check_choice, check_flag, check_real
from ..evaluation import MIN_HIT_RADIUS_MM as MIN_HIT_RADIUS_MM
from ..evaluation import MIN_TRUTH_DIAMETER_MM as MIN_TRUTH_DIAMETER_MM
from ..evaluation import registration_error_mm, truth_hits
from ..volume import open as _open_archive
from ._context import Clock, RunContext, RunOptions
from ._inputs import SPACING_LIMITS_MM as SPACING_LIMITS_MM
from ._inputs import (
    check_pair,
    check_run_name,
    model_info,
    read_truth,
    resolve_detector,
    scan_volume,
)
from ._maps import difference_map, probability_map
from ._memory import parse_memory
from ._outputs import PipelineResult
from ._stages import STAGES, count_steps, run_stages
from .growth import growth_table, match_nodules, volume_doubling_time

__all__ = [
    "STAGES",
    "PipelineResult",
    "difference_map",
    "growth_table",
    "match_nodules",
    "probability_map",
    "registration_error_mm",
    "resolve_detector",
    "run",
    "truth_hits",
    "volume_doubling_time",
]

#: Registration models of the follow-up onto the baseline.
TRANSFORMS = ("rigid", "similarity")


def run(
    archive: str | os.PathLike,
    baseline: str = "/scans/a",
    followup: str = "/scans/b",
    *,
    out_dir: str | os.PathLike,
    model: Any = None,
    transform: str = "rigid",
    run_name: str | None = None,
    overwrite: bool = False,
    interval_days: float | None = None,
    enhance_radius_mm: float = 2.0,
    enhance_amount: float = 1.0,
    match_tolerance_mm: float | None = None,
    report: bool = True,
    max_memory: int | str | None = None,
    progress: bool | Callable[[str, float], None] | None = None,
) -> PipelineResult:
    """Run the longitudinal pipeline on two scans of an archive.

    Parameters
    ----------
    archive : path
        The HDF5 archive holding both scans; results are added under
        ``/results/<run_name>/`` (committed only if the whole run succeeds).
    baseline, followup : str
        The scans: a volume path (``'/scans/a/image'``) or a group holding an ``image``
        volume (``'/scans/a'``).
    out_dir : path
        Output folder for ``report.html``, its figures, CSV tables and
        ``transform.json``; it must not exist unless ``overwrite``.
    model : None, path or detector
        None: the detector shipped with fastct (``fastct.classify.default_detector()``);
        a path: a model file saved by fastct (``fastct.classify.load_detector``); or a
        detector object (see :func:`resolve_detector`).
    transform : {'rigid', 'similarity'}
        Registration model of the follow-up onto the baseline.
    run_name : str, optional
        Name of the results group; default the output folder's name.
    overwrite : bool
        Replace an existing output folder and results group of the same name.
    interval_days : float, optional
        Days between the scans for the doubling times (default: from the archive's
        attributes, see the module docstring).
    enhance_radius_mm, enhance_amount : float
        Unsharp mask of the enhanced images (Gaussian sigma in mm, strength).
    match_tolerance_mm : float, optional
        Largest distance of a nodule match; default ``max(10 mm, larger diameter)``.
    report : bool
        Write ``report.html`` with its figures.
    max_memory : int, str or None
        Bytes (or a size such as ``'3G'``) the per-scan stages may hold in memory: a
        scan that fits (about 24 bytes per voxel, 2.5 GB for 400 x 512 x 512) runs
        them on arrays read once, else they stream through the archive. Same results
        either way. None or ``'auto'``: half the memory available at the start.
    progress : bool or callable, optional
        True: a progress bar over the stages on stderr; a callable is called with
        ``(stage, seconds)`` after each stage; None follows ``fastct.set_progress``.

    Returns
    -------
    PipelineResult

    Raises
    ------
    ValueError
        A scan is missing, not a 3-D CT scan in HU, of absurd spacing, the two scans
        differ in modality, the transform, run name or a number is bad, or the model
        file is of another schema.
    FileExistsError
        ``out_dir`` or the results group exists and ``overwrite`` is False.
    TypeError
        A parameter has the wrong type.

    Examples
    --------
    See ``docs/tutorial.rst`` and ``fastct demo``; a run on the small phantom takes
    about half a minute, too long for a doctest.
    """
    archive = Path(archive)
    out_dir = Path(out_dir)
    transform = check_choice(transform, "transform", TRANSFORMS)
    overwrite = check_flag(overwrite, "overwrite")
    if interval_days is not None:
        interval_days = check_real(interval_days, "interval_days", lo=0, lo_open=True)
    enhance_radius_mm = check_real(enhance_radius_mm, "enhance_radius_mm", lo=0)
    enhance_amount = check_real(enhance_amount, "enhance_amount")
    if match_tolerance_mm is not None:
        match_tolerance_mm = check_real(match_tolerance_mm, "match_tolerance_mm", lo=0)
    report = check_flag(report, "report")
    max_memory = parse_memory(max_memory, "max_memory")
    run_name = check_run_name(run_name, out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(
            f"output folder {str(out_dir)!r} already exists; pass overwrite=True "
            "(--overwrite) to replace it"
        )
    if not archive.exists():  # an HDF5 file or a Zarr store (a folder)
        raise FileNotFoundError(f"archive {str(archive)!r} does not exist")
    # Read-only checks first: nothing is opened for writing before the inputs are good.
    with _open_archive(archive) as ar:
        base_vol = scan_volume(ar, baseline, "baseline")
        follow_vol = scan_volume(ar, followup, "followup")
        check_pair(base_vol, follow_vol)
        if f"/results/{run_name}" in ar and not overwrite:
            raise FileExistsError(
                f"/results/{run_name} already exists in {str(archive)!r}; pass overwrite=True "
                "or choose another run_name"
            )
        scans = {"baseline": base_vol.name, "followup": follow_vol.name}
        truth = read_truth(ar, base_vol, follow_vol)
    if report:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ImportError(
                "the report needs matplotlib: pip install 'fastct-engine[report]' (or report=False)"
            ) from None
    ctx = RunContext(
        scans=scans,
        options=RunOptions(
            run_name=run_name,
            transform=transform,
            interval_days=interval_days,
            enhance_radius_mm=enhance_radius_mm,
            enhance_amount=enhance_amount,
            match_tolerance_mm=match_tolerance_mm,
            report=report,
            max_memory=max_memory,
        ),
        detector=resolve_detector(model),
        truth=truth,
        out_dir=out_dir,
        model_info=model_info(model),
    )
    ctx.clock = Clock(progress, n_steps=count_steps(ctx))
    try:
        with _atomic.atomic_folder(out_dir, overwrite) as folder, _open_archive(archive, "a") as ar:
            ctx.folder, ctx.archive = folder, ar
            run_stages(ctx)
    finally:
        ctx.clock.close()
    assert ctx.result is not None, "the last stage records the result"
    return ctx.result

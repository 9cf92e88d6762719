"""The stage table of a pipeline run and the driver that walks it.

Each stage is a small function of the :class:`~._context.RunContext` (per-scan stages
also get the time point, ``'baseline'`` or ``'followup'``). :data:`STAGE_TABLE` lists
them in order; :func:`run_stages` runs a block of consecutive per-scan stages once
per time point (all of the baseline's, then all of the follow-up's), the others once,
skips a stage whose ``when`` is false, and times every stage that has a ``label``
(progress bar or callback, :attr:`PipelineResult.timings`). Stages without a label
are bookkeeping (archive attributes, output files) and are not timed.
"""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import evaluation
from ..classify import NoduleDetector
from ..streaming import write_all
from ..volume import Archive, Volume
from ._context import TIMEPOINTS, RunContext
from ._inputs import read_interval_days
from ._maps import difference_map, probability_map, table_lut
from ._memory import fits_in_memory
from ._outputs import PipelineResult, plain, write_summary, write_tables
from .growth import growth_table, match_nodules, truth_verdicts
from .measure import lung_extent, measure_detection


@dataclass(frozen=True)
class Stage:
    """One row of the stage table.

    Attributes
    ----------
    name : str
        Key of the stage in the timings (:data:`STAGES`).
    label : str or None
        Progress label (prefixed with ``'<time point>: '`` for per-scan stages); None
        for an untimed bookkeeping step.
    func : callable
        ``func(ctx)``, or ``func(ctx, timepoint)`` for a per-scan stage.
    per_scan : bool
        Run once per time point.
    when : callable, optional
        ``when(ctx)``: run the stage only if true.
    """

    name: str
    label: str | None
    func: Callable[..., None]
    per_scan: bool = False
    when: Callable[[RunContext], bool] | None = None

    @property
    def timed(self) -> bool:
        return self.label is not None

    def applies(self, ctx: RunContext) -> bool:
        return self.when is None or bool(self.when(ctx))


# -- helpers -------------------------------------------------------------------------------
def _derived(ar: Archive, name: str, like: Volume, dtype: Any) -> Volume:
    """A volume on ``like``'s grid (spacing, origin, direction) holding a
    label/mask/probability (no modality, units)."""
    return ar.create_volume(
        name,
        shape=like.shape,
        dtype=dtype,
        spacing=like.spacing,
        origin=like.origin,
        direction=like.direction,
        chunks=like.chunks,
    )


def _detection_dict(d: Any) -> dict[str, Any]:
    get = d.get if isinstance(d, dict) else lambda k: getattr(d, k, None)
    labels = get("labels")
    return {
        "center_mm": [float(v) for v in get("center_mm")],
        "diameter_mm": float(get("diameter_mm")),
        "volume_mm3": float(get("volume_mm3")),
        "probability": float(get("probability")),
        "labels": [] if labels is None else [int(v) for v in labels],
    }


#: Candidates below the operating threshold are listed down to this fraction of it.
CANDIDATE_FRACTION = 0.5
#: At most this many below-threshold candidates are listed per scan (most probable first).
MAX_CANDIDATES = 15


def _timings(ctx: RunContext) -> dict[str, float]:
    return ctx.clock.ordered(STAGES)


# -- per scan ------------------------------------------------------------------------------
def _prepare(ctx: RunContext) -> None:
    """Drop an earlier run of the same name; open the two scans."""
    ar = ctx.archive
    assert ar is not None, "the run opens the archive before the stages"
    if ctx.root in ar:
        ar.delete(ctx.root)
    ctx.volumes = {tp: {"image": ar[ctx.scans[tp]]} for tp in TIMEPOINTS}


def _source(ctx: RunContext, tp: str, name: str) -> Any:
    """The in-memory copy of a time point's volume when the scan is held in memory,
    else the archive Volume (same values: the stages give equal results on both)."""
    held = ctx.arrays.get(tp, {})
    return held[name] if name in held else ctx.volumes[tp][name]


def _denoise(ctx: RunContext, tp: str) -> None:
    v = ctx.volumes[tp]
    image = v["image"]
    v["denoised"] = ctx.archive.create_volume_like(f"{ctx.group(tp)}/denoised", image)
    if not fits_in_memory(tuple(image.shape), ctx.options.max_memory):
        ctx.detector.preprocess(image, spacing=image.spacing, out=v["denoised"])
        return
    # the scan is read once; its denoised copy feeds every later per-scan stage
    img = image.read()
    den = np.asarray(ctx.detector.preprocess(img, spacing=image.spacing))
    write_all(v["denoised"], den)
    ctx.arrays[tp] = {"image": img, "denoised": den}


def _enhance(ctx: RunContext, tp: str) -> None:
    from ..filters import unsharp_mask

    v = ctx.volumes[tp]
    v["enhanced"] = ctx.archive.create_volume_like(
        f"{ctx.group(tp)}/enhanced", v["image"], dtype=np.float32
    )
    src = v["denoised"]
    opts = ctx.options
    unsharp_mask(
        _source(ctx, tp, "denoised"),
        opts.enhance_radius_mm,
        opts.enhance_amount,
        spacing=src.spacing,
        out=v["enhanced"],
    )


def _lungs(ctx: RunContext, tp: str) -> None:
    from ..lungs import lung_mask

    v = ctx.volumes[tp]
    image = v["image"]
    v["lungs"] = _derived(ctx.archive, f"{ctx.group(tp)}/lungs", image, np.uint8)
    mask = lung_mask(_source(ctx, tp, "image"), spacing=image.spacing, direction=image.direction)
    ctx.arrays.get(tp, {}).pop("image", None)  # no later stage reads the raw scan
    write_all(v["lungs"], mask)
    ctx.lung_extents[tp] = lung_extent(mask, image.spacing, image.origin, image.direction)
    ctx.lung_masks[tp] = mask  # kept for the supervoxels, then dropped


def _supervoxels(ctx: RunContext, tp: str) -> None:
    v = ctx.volumes[tp]
    image = v["image"]
    v["supervoxels"] = _derived(ctx.archive, f"{ctx.group(tp)}/supervoxels", image, np.int32)
    mask = ctx.lung_masks.pop(tp)
    held = ctx.arrays.get(tp)
    if held is None:
        ctx.detector.segment(
            v["denoised"], spacing=image.spacing, lung_mask=mask, out=v["supervoxels"]
        )
        return
    src = held["denoised"]
    reread = False
    if isinstance(ctx.detector, NoduleDetector) and src.dtype.kind in "iu" and src.itemsize <= 2:
        # NoduleDetector segments integer scans as float32 (exact for 16-bit values):
        # hand it that copy and drop the integer one during SLIC (the stage's memory
        # peak); the features read it back from the archive afterwards
        src = held.pop("denoised").astype(np.float32)
        reread = True
    labels = np.asarray(ctx.detector.segment(src, spacing=image.spacing, lung_mask=mask))
    del mask, src
    write_all(v["supervoxels"], labels)
    held["supervoxels"] = labels
    if reread:
        held["denoised"] = v["denoised"].read()


def _features(ctx: RunContext, tp: str) -> None:
    v = ctx.volumes[tp]
    image = v["image"]
    ctx.tables[tp] = ctx.detector.region_table(
        _source(ctx, tp, "supervoxels"),
        _source(ctx, tp, "denoised"),
        spacing=image.spacing,
        origin=image.origin,
        direction=image.direction,
    )


def _detect(ctx: RunContext, tp: str) -> None:
    v = ctx.volumes[tp]
    image, table, det = v["image"], ctx.tables[tp], ctx.detector
    proba = det.predict_regions(table)
    v["probability"] = _derived(ctx.archive, f"{ctx.group(tp)}/probability", image, np.float32)
    labels = _source(ctx, tp, "supervoxels")
    probability_map(labels, table_lut(table, proba), v["probability"])
    detect = functools.partial(
        det.detect,
        table,
        proba,
        labels=labels,
        spacing=image.spacing,
        origin=image.origin,
        direction=image.direction,
    )
    ctx.detections[tp] = [_detection_dict(d) for d in detect()]
    thr = getattr(det, "threshold", None)
    ctx.thresholds[tp] = None if thr is None else float(thr)
    cands: list[dict[str, Any]] = []
    if thr is not None and float(thr) > 0:
        # Candidates between CANDIDATE_FRACTION * threshold and the threshold: the
        # report lists them apart (and notes them beside unmatched nodules).
        low = detect(threshold=CANDIDATE_FRACTION * float(thr))
        cands = [c for c in map(_detection_dict, low) if c["probability"] < float(thr)]
        cands = sorted(cands, key=lambda d: -d["probability"])[:MAX_CANDIDATES]
    ctx.candidates[tp] = cands
    extent = ctx.lung_extents.get(tp)
    for d in ctx.detections[tp] + cands:  # (reads only a box around each: the Volumes)
        d.update(measure_detection(d, v["supervoxels"], v["denoised"], extent, table))
    ctx.arrays.pop(tp, None)  # the held copies are not needed after the detection


def _record_detections(ctx: RunContext, tp: str) -> None:
    ctx.archive.set_attrs(
        ctx.group(tp),
        detections_json=json.dumps(ctx.detections[tp]),
        source=ctx.volumes[tp]["image"].name,
    )


# -- the pair ------------------------------------------------------------------------------
def _register(ctx: RunContext) -> None:
    from .. import registration

    base, follow = ctx.volumes["baseline"], ctx.volumes["followup"]
    b_img, f_img = base["image"], follow["image"]
    transform = ctx.options.transform
    reg = registration.register(
        base["denoised"],
        follow["denoised"],
        transform=transform,
        fixed_spacing=b_img.spacing,
        moving_spacing=f_img.spacing,
        fixed_origin=b_img.origin,
        moving_origin=f_img.origin,
        fixed_direction=b_img.direction,
        moving_direction=f_img.direction,
    )
    matrix = np.asarray(reg.transform.matrix, dtype=float)
    scale = float(abs(np.linalg.det(matrix[:3, :3])) ** (1.0 / 3.0))
    ctx.registration = reg
    ctx.registration_info = {
        "transform": transform,
        "matrix": matrix.tolist(),
        "scale": scale,
        "metric_value": plain(getattr(reg, "metric_value", None)),
        "iterations": plain(getattr(reg, "iterations", None)),
        "elapsed_s": plain(getattr(reg, "elapsed_s", None)),
    }
    assert ctx.folder is not None, "the run opens the output folder before the stages"
    reg.transform.save(ctx.folder / "transform.json")


def _resample(ctx: RunContext) -> None:
    from .. import registration

    b_img = ctx.volumes["baseline"]["image"]
    follow = ctx.volumes["followup"]
    f_img = follow["image"]
    ctx.registered = ctx.archive.create_volume_like(
        f"{ctx.root}/followup_registered", b_img, dtype=np.float32
    )
    registration.resample(
        follow["denoised"],
        ctx.registration.transform,
        shape=b_img.shape,
        spacing=b_img.spacing,
        origin=b_img.origin,
        moving_spacing=f_img.spacing,
        moving_origin=f_img.origin,
        direction=b_img.direction,
        moving_direction=f_img.direction,
        order=1,
        cval=-1000.0,
        out=ctx.registered,
    )


def _difference(ctx: RunContext) -> None:
    base = ctx.volumes["baseline"]
    ctx.difference = ctx.archive.create_volume_like(
        f"{ctx.root}/difference", base["image"], dtype=np.float32
    )
    difference_map(ctx.registered, base["denoised"], ctx.difference)


def _match(ctx: RunContext) -> None:
    opts = ctx.options
    b_img, f_img = ctx.volumes["baseline"]["image"], ctx.volumes["followup"]["image"]
    interval = opts.interval_days
    if interval is None:
        interval = read_interval_days(ctx.archive, b_img, f_img)
    ctx.interval_days = interval
    b_det, f_det = ctx.detections["baseline"], ctx.detections["followup"]
    if opts.match_tolerance_mm is None:
        tol: Any = [max(10.0, d["diameter_mm"]) for d in b_det]
    else:
        tol = opts.match_tolerance_mm
    pairs = match_nodules(
        [d["center_mm"] for d in b_det],
        [d["center_mm"] for d in f_det],
        ctx.registration.transform.apply,
        tolerance_mm=tol,
    )
    paired_b = {i for i, _, _ in pairs}
    paired_f = {j for _, j, _ in pairs}
    b_cand, f_cand = ctx.candidates.get("baseline", []), ctx.candidates.get("followup", [])
    lone_b = [i for i in range(len(b_det)) if i not in paired_b]
    lone_f = [j for j in range(len(f_det)) if j not in paired_f]
    near_f = match_nodules(
        [b_det[i]["center_mm"] for i in lone_b],
        [c["center_mm"] for c in f_cand],
        ctx.registration.transform.apply,
        tolerance_mm=[tol[i] for i in lone_b] if isinstance(tol, list) else tol,
    )
    near_b = match_nodules(
        [c["center_mm"] for c in b_cand],
        [f_det[j]["center_mm"] for j in lone_f],
        ctx.registration.transform.apply,
        tolerance_mm=[max(10.0, c["diameter_mm"]) for c in b_cand]
        if isinstance(tol, list)
        else tol,
    )
    thr = ctx.thresholds.get("baseline")
    ctx.nodules = growth_table(
        b_det,
        f_det,
        pairs,
        interval_days=interval,
        scale=ctx.registration_info["scale"],
        threshold=thr,
        followup_candidates={lone_b[a]: f_cand[c] for a, c, _ in near_f},
        baseline_candidates={lone_f[c]: b_cand[a] for a, c, _ in near_b},
    )


def _evaluate(ctx: RunContext) -> None:
    b_img = ctx.volumes["baseline"]["image"]
    assert ctx.truth is not None, "the stage runs only with truth"
    ctx.truth_info = evaluation.truth_summary(
        ctx.detections,
        ctx.truth["nodules"],
        apply=ctx.registration.transform.apply,
        true_matrix=ctx.truth["transform"],
        shape=b_img.shape,
        spacing=b_img.spacing,
        origin=b_img.origin,
        direction=b_img.direction,
    )
    ctx.truth_info["rows"] = truth_verdicts(
        ctx.nodules,
        ctx.detections,
        ctx.truth["nodules"],
        min_diameter_mm=evaluation.MIN_TRUTH_DIAMETER_MM,
        min_radius_mm=evaluation.MIN_HIT_RADIUS_MM,
    )


def _tables(ctx: RunContext) -> None:
    """The result so far; the CSV tables and ``timings.json`` (before the report)."""
    b_img = ctx.volumes["baseline"]["image"]
    ctx.result = PipelineResult(
        run_name=ctx.options.run_name,
        archive=Path(ctx.archive.path),
        out_dir=ctx.out_dir,
        report_path=ctx.out_dir / "report.html",
        timings=_timings(ctx),
        detections=ctx.detections,
        nodules=ctx.nodules,
        registration=ctx.registration_info,
        interval_days=ctx.interval_days,
        truth=ctx.truth_info,
        shape=tuple(b_img.shape),
        spacing=tuple(b_img.spacing),
        candidates=ctx.candidates,
        thresholds=ctx.thresholds,
        exam_category=_exam_categories(ctx.nodules),
        model=ctx.model_info,
        parameters=_parameters(ctx),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    write_tables(ctx.folder, ctx.result)


def _exam_categories(rows: list[dict[str, Any]]) -> dict[str, str | None]:
    from .lungrads import exam_category

    out: dict[str, str | None] = {}
    for tp in TIMEPOINTS:
        cats = [r[f"category_{tp}"] for r in rows if r.get(f"category_{tp}")]
        out[tp] = exam_category(cats)
    return out


def _parameters(ctx: RunContext) -> dict[str, Any]:
    o = ctx.options
    return {
        "transform": o.transform,
        "interval_days": ctx.interval_days,
        "enhance_radius_mm": o.enhance_radius_mm,
        "enhance_amount": o.enhance_amount,
        "match_tolerance_mm": o.match_tolerance_mm
        if o.match_tolerance_mm is not None
        else "max(10 mm, baseline diameter)",
        "threshold": ctx.thresholds.get("baseline"),
        "candidate_threshold": None
        if ctx.thresholds.get("baseline") is None
        else CANDIDATE_FRACTION * float(ctx.thresholds["baseline"] or 0.0),
        "baseline": ctx.scans["baseline"],
        "followup": ctx.scans["followup"],
    }


def _report(ctx: RunContext) -> None:
    from .. import report

    report.pipeline_report(
        ctx.folder, ctx.result, ctx.archive, ctx.root, ctx.registration.transform
    )


def _publish(ctx: RunContext) -> None:
    """Final timings; ``summary.json``; the run's attributes in the archive."""
    result = ctx.result
    result.timings = _timings(ctx)
    result.stage_profile = {k: ctx.clock.profile[k] for k in result.timings}
    write_summary(ctx.folder, result)
    info = ctx.registration_info
    ctx.archive.set_attrs(
        ctx.root,
        transform=np.asarray(info["matrix"]),
        transform_kind=ctx.options.transform,
        transform_convention="maps baseline (fixed) physical points to follow-up (moving) points",
        registration_json=json.dumps(info),
        nodules_json=json.dumps(ctx.nodules),
        timings_json=json.dumps(result.timings),
        baseline=ctx.scans["baseline"],
        followup=ctx.scans["followup"],
        interval_days=np.nan if ctx.interval_days is None else float(ctx.interval_days),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


# -- the table -----------------------------------------------------------------------------
#: The stages of a run, in order.
STAGE_TABLE = (
    Stage("prepare", None, _prepare),
    Stage("denoise", "denoise", _denoise, per_scan=True),
    Stage("enhance", "enhance", _enhance, per_scan=True),
    Stage("lungs", "lung mask", _lungs, per_scan=True),
    Stage("supervoxels", "supervoxels", _supervoxels, per_scan=True),
    Stage("features", "features", _features, per_scan=True),
    Stage("detect", "detect", _detect, per_scan=True),
    Stage("record", None, _record_detections, per_scan=True),
    Stage("register", "register", _register),
    Stage("resample", "resample", _resample),
    Stage("difference", "difference map", _difference),
    Stage("match", "match nodules", _match),
    Stage("evaluate", "compare with ground truth", _evaluate, when=lambda c: c.truth is not None),
    Stage("tables", None, _tables),
    Stage("report", "report", _report, when=lambda c: c.options.report),
    Stage("publish", None, _publish),
)
#: Names of the timed stages, in order, as they appear in the timings (``load``, the
#: input checks before the run, is not timed).
STAGES = ("load", *(s.name for s in STAGE_TABLE if s.timed))


def count_steps(ctx: RunContext, table: tuple[Stage, ...] = STAGE_TABLE) -> int:
    """Timed stage runs ``ctx`` will make (the length of the progress bar)."""
    return sum(len(TIMEPOINTS) if s.per_scan else 1 for s in table if s.timed and s.applies(ctx))


def run_stages(ctx: RunContext, table: tuple[Stage, ...] = STAGE_TABLE) -> None:
    """Run ``table`` on ``ctx``: each block of consecutive per-scan stages once per
    time point, the other stages once, in order."""
    for per_scan, block in itertools.groupby(table, key=lambda s: s.per_scan):
        stages = list(block)
        for tp in TIMEPOINTS if per_scan else (None,):
            for stage in stages:
                if stage.applies(ctx):
                    _run_stage(ctx, stage, tp)


def _run_stage(ctx: RunContext, stage: Stage, tp: str | None) -> None:
    args = (ctx,) if tp is None else (ctx, tp)
    if not stage.timed:
        stage.func(*args)
        return
    label = stage.label if tp is None else f"{tp}: {stage.label}"
    with ctx.clock.stage(stage.name, label):
        stage.func(*args)

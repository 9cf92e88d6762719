"""What a pipeline run hands back and writes: :class:`PipelineResult`, the CSV tables,
``timings.json`` and ``summary.json`` of the output folder."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._context import TIMEPOINTS

#: Columns of ``nodules.csv``, in order (the ID is the report's: N1, N2 ...).
NODULE_COLUMNS = (
    "id",
    "nodule",
    "status",
    "change",
    "note",
    "type",
    "type_baseline",
    "type_followup",
    "slice_baseline",
    "slice_followup",
    "side",
    "zone",
    "mean_diameter_baseline_mm",
    "mean_diameter_followup_mm",
    "solid_diameter_baseline_mm",
    "solid_diameter_followup_mm",
    "diameter_change_mm",
    "growing",
    "category_baseline",
    "category_followup",
    "diameter_baseline_mm",
    "diameter_followup_mm",
    "volume_baseline_mm3",
    "volume_followup_mm3",
    "volume_change_pct",
    "doubling_time_days",
    "probability_baseline",
    "probability_followup",
    "distance_mm",
    "center_baseline_mm",
    "center_followup_mm",
    "truth_baseline",
    "truth_followup",
    "verdict",
)


@dataclass
class PipelineResult:
    """What :func:`run` produced.

    Attributes
    ----------
    run_name : str
        Name of the run; its volumes are under ``/results/<run_name>/`` in the archive.
    archive : Path
        The archive.
    out_dir : Path
        The output folder (``report.html``, figures, CSV tables, ``transform.json``).
    report_path : Path
        ``out_dir / 'report.html'``.
    timings : dict of str to float
        Seconds per stage (stages of both time points summed), in :data:`STAGES` order.
    detections : dict of str to list of dict
        ``'baseline'`` and ``'followup'``: one dict per detection with ``center_mm``
        (z, y, x in that scan's physical mm), ``diameter_mm``, ``volume_mm3`` and
        ``probability``.
    nodules : list of dict
        The growth table, one row per nodule seen at either time point (see
        :func:`growth_table`).
    registration : dict
        ``transform`` kind, ``matrix`` (4 x 4, baseline physical -> follow-up
        physical), ``scale``, ``metric_value``, ``iterations``, ``elapsed_s``.
    interval_days : float or None
        Time between the scans used for the doubling times.
    truth : dict or None
        Only for phantom archives: ``registration_error_mm``, per time point the
        nodules found versus the truth (``found``, ``total`` over nodules of at least
        5 mm, ``missed`` ids), ``froc`` (see :func:`fastct.evaluation.truth_summary`)
        and ``rows`` (:func:`fastct.pipeline.growth.truth_verdicts`: each nodule row
        marked true or false, pairs counted).
    shape, spacing : tuple
        The baseline grid.
    candidates : dict of str to list of dict
        Per time point, detections grouped at half the operating threshold whose
        probability is below it (most probable first, at most 15): listed apart, never
        in the growth table.
    thresholds : dict of str to float or None
        The detector's operating threshold per time point.
    exam_category : dict of str to str or None
        Lung-RADS v2022-style exam category (:mod:`fastct.pipeline.lungrads`) of the
        ``'baseline'`` and ``'followup'`` reads (None when no nodule was measured).
    model : dict
        The detector's ``path`` and ``sha256`` (None for a detector object).
    parameters : dict
        The run's parameters (transform, interval, enhancement, match tolerance).
    created : str
        UTC date and time of the run (ISO 8601).
    stage_profile : dict of str to dict
        Per timed stage: ``cpu_s`` (process CPU seconds, all threads), ``read_mb`` and
        ``written_mb`` (storage I/O of the process, Linux; 0 elsewhere; reads served
        from the page cache do not count) and ``peak_rss_mb`` (the process's peak
        resident memory when the stage ended).
    """

    run_name: str
    archive: Path
    out_dir: Path
    report_path: Path
    timings: dict[str, float]
    detections: dict[str, list[dict[str, Any]]]
    nodules: list[dict[str, Any]]
    registration: dict[str, Any]
    interval_days: float | None = None
    truth: dict[str, Any] | None = None
    shape: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()
    candidates: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    thresholds: dict[str, float | None] = dataclasses.field(default_factory=dict)
    exam_category: dict[str, str | None] = dataclasses.field(default_factory=dict)
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)
    created: str = ""
    stage_profile: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        """Sum of the stage timings."""
        return float(sum(self.timings.values()))

    def summary(self) -> str:
        """A few lines for a terminal: nodules, registration, truth, timings."""
        lines = [
            f"run {self.run_name!r}: {len(self.detections['baseline'])} detections above the "
            f"threshold in the baseline, {len(self.detections['followup'])} in the follow-up, "
            f"{sum(1 for r in self.nodules if r['status'] == 'matched')} matched",
        ]
        for row in self.nodules:
            d1 = _fmt(row.get("mean_diameter_baseline_mm"), ".1f")
            d2 = _fmt(row.get("mean_diameter_followup_mm"), ".1f")
            change = _fmt(row["volume_change_pct"], "+.0f", "%")
            vdt = _fmt(row["doubling_time_days"], ".0f", " d", "n/a")
            verdict = f" [{row['verdict']}]" if row.get("verdict") else ""
            lines.append(
                f"  {row.get('id', row['nodule'])}: {row['status']:<9} mean diameter {d1} -> "
                f"{d2} mm, volume change {change}, doubling time {vdt}{verdict}"
            )
        if self.exam_category:
            lines.append(
                "Lung-RADS v2022-style exam category (research use): baseline "
                f"{self.exam_category.get('baseline') or '-'}, follow-up "
                f"{self.exam_category.get('followup') or '-'}"
            )
        reg = self.registration
        lines.append(
            f"registration ({reg['transform']}): scale {reg['scale']:.4f}, "
            f"{reg.get('iterations', '?')} iterations"
        )
        if self.truth is not None:
            lines.append(
                f"registration error vs truth: {self.truth['registration_error_mm']:.3f} mm "
                "(max over the baseline grid corners)"
            )
            for tp in TIMEPOINTS:
                t = self.truth[tp]
                missed = f" (missed ids {t['missed']})" if t["missed"] else ""
                lines.append(
                    f"{tp}: found {t['found']} of {t['total']} true nodules >= "
                    f"{t['min_diameter_mm']:g} mm{missed}; {t['false_positives']} false positives"
                )
            rows = self.truth.get("rows")
            if rows:
                p = rows["pairs"]
                lines.append(
                    f"pairs vs truth: {p['true']} true, {p['wrong']} wrong matches, "
                    f"{p['false_positive']} false-positive pairs; {rows['tracked']} of "
                    f"{rows['trackable']} true nodules tracked across both scans"
                )
        lines.append(
            "stage timings: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items())
            + f" (total {self.total_seconds:.1f} s)"
        )
        lines.append(f"report: {self.report_path}")
        return "\n".join(lines)


def _fmt(value: Any, spec: str, suffix: str = "", missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{value:{spec}}{suffix}"


def plain(value: Any) -> Any:
    """A NumPy scalar as the Python scalar (for JSON); anything else as it is."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def result_json(result: PipelineResult) -> dict[str, Any]:
    """The result as JSON-ready plain data (paths as strings)."""
    out = dataclasses.asdict(result)
    for key in ("archive", "out_dir", "report_path"):
        out[key] = str(out[key])
    return json.loads(json.dumps(out, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_tables(folder: Path, result: PipelineResult) -> None:
    """``detections_<scan>.csv``, ``nodules.csv`` and ``timings.json`` into ``folder``."""
    for tp in TIMEPOINTS:
        with open(folder / f"detections_{tp}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["z_mm", "y_mm", "x_mm", "diameter_mm", "volume_mm3", "probability"])
            for d in result.detections[tp]:
                w.writerow([*d["center_mm"], d["diameter_mm"], d["volume_mm3"], d["probability"]])
    for tp in TIMEPOINTS:
        with open(folder / f"candidates_{tp}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["z_mm", "y_mm", "x_mm", "diameter_mm", "volume_mm3", "probability"])
            for d in result.candidates.get(tp, []):
                w.writerow([*d["center_mm"], d["diameter_mm"], d["volume_mm3"], d["probability"]])
    cols = NODULE_COLUMNS
    with open(folder / "nodules.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for row in result.nodules:
            w.writerow(
                [
                    " ".join(f"{v:.2f}" for v in row[c])
                    if isinstance(row.get(c), list)
                    else ("" if row.get(c) is None else row[c])
                    for c in cols
                ]
            )
    (folder / "timings.json").write_text(json.dumps(result.timings, indent=2))


def write_summary(folder: Path, result: PipelineResult) -> None:
    """``summary.json``: the whole result (:func:`result_json`) into ``folder``."""
    (folder / "summary.json").write_text(json.dumps(result_json(result), indent=2))

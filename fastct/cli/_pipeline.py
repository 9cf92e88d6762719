"""Sub-commands ``fastct pipeline`` (the end-to-end job) and ``fastct demo``."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

from ._common import AddCommand, _say, add_transform_kind
from ._data import cmd_phantom

#: A file marking a folder as ``fastct demo`` output (so a re-run may replace it).
DEMO_MARKER = ".fastct-demo"


def _progress(args: argparse.Namespace) -> Any:
    return False if args.quiet else None


def cmd_pipeline(args: argparse.Namespace) -> int:
    from fastct import pipeline

    result = pipeline.run(
        args.archive,
        args.baseline,
        args.followup,
        out_dir=args.out,
        model=args.model,
        transform=args.transform,
        run_name=args.run,
        overwrite=args.overwrite,
        interval_days=args.interval_days,
        max_memory=args.max_memory,
        progress=_progress(args),
    )
    _say(args, result.summary())
    return 0


def _check_demo_out(out: Path, overwrite: bool) -> bool:
    """True when ``out`` exists and may be replaced; raises if it must not be touched."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise FileExistsError(f"output {str(out)!r} exists and is not a folder")
    if overwrite or (out / DEMO_MARKER).is_file():
        return True
    raise FileExistsError(
        f"output folder {str(out)!r} already exists and is not a previous demo output; "
        "pass --overwrite to replace it"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Phantom pair -> archive -> pipeline (shipped detector) -> report, in a temp folder
    renamed onto ``--out`` at the end."""
    from fastct import _atomic, datasets, pipeline

    t0 = time.perf_counter()
    out = Path(args.out)
    if args.size not in datasets.PRESETS:
        raise ValueError(f"--size must be one of {sorted(datasets.PRESETS)}, got {args.size!r}")
    _check_demo_out(out, args.overwrite)
    if not out.resolve().parent.is_dir():
        raise FileNotFoundError(f"folder {str(out.resolve().parent)!r} does not exist")
    det = pipeline.resolve_detector(args.model)  # a bad model fails before any work
    _atomic.remove_stale_folders(out.resolve().parent)
    tmp = _atomic.temp_name(out.resolve())
    tmp.mkdir()
    try:
        (tmp / DEMO_MARKER).write_text("written by 'fastct demo'; a re-run replaces it\n")
        ns = argparse.Namespace(**vars(args))
        ns.archive, ns.prefix, ns.transform, ns.overwrite = (
            tmp / "demo.h5",
            "scans/phantom",
            args.transform,
            True,
        )
        ns.quiet = True
        t_phantom = time.perf_counter()
        cmd_phantom(ns)
        t_phantom = time.perf_counter() - t_phantom
        _say(args, f"phantom pair ({args.size}, seed {args.seed}) built in {t_phantom:.1f} s")
        result = pipeline.run(
            tmp / "demo.h5",
            "/scans/phantom/baseline",
            "/scans/phantom/followup",
            out_dir=tmp / "report",
            model=det,
            transform=args.transform,
            run_name="demo",
            interval_days=args.interval_days,
            max_memory=args.max_memory,
            progress=_progress(args),
        )
        summary = tmp / "report" / "summary.json"
        summary.write_text(summary.read_text().replace(str(tmp), str(out.resolve())))
        _atomic.publish_folder(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    _say(
        args,
        result.summary().replace(str(tmp), str(out)),
        f"archive: {out / 'demo.h5'} (results under /results/demo)",
        f"demo finished in {time.perf_counter() - t0:.1f} s (phantom {t_phantom:.1f} s, "
        f"pipeline {result.total_seconds:.1f} s); open {out / 'report' / 'report.html'}",
    )
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of days, got {text!r}")
    return value


def _memory_size(text: str) -> int | None:
    from fastct.pipeline._memory import parse_memory

    try:
        return parse_memory(text, "SIZE")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_max_memory(p: argparse.ArgumentParser) -> None:
    """``--max-memory``: when the per-scan stages run in memory."""
    p.add_argument(
        "--max-memory",
        type=_memory_size,
        default="auto",
        metavar="SIZE",
        help="memory the per-scan stages may hold (e.g. 3G; about 24 bytes per voxel); a scan "
        "that does not fit streams through the archive, same results; 'auto': half the "
        "available memory",
    )


def add_commands(command: AddCommand) -> None:
    """Add ``pipeline`` and ``demo`` to the fastct parser."""
    p = command(
        "pipeline",
        cmd_pipeline,
        "longitudinal nodule pipeline on a baseline and a follow-up scan",
        description="Denoise, enhance, lung mask, supervoxels, features, detector, "
        "registration, difference map, nodule matching and growth table; results into "
        "ARCHIVE under /results/RUN/ and report.html into --out. The scans are groups "
        "/scans/<id> of one archive holding image (and optional labels/lungs); import NIfTI "
        "or DICOM scans first with 'fastct import'.",
        example="fastct pipeline phantom.h5 --baseline /scans/phantom/baseline "
        "--followup /scans/phantom/followup --out report",
    )
    p.add_argument("archive", type=Path, metavar="ARCHIVE.h5")
    p.add_argument("--baseline", required=True, metavar="/scans/a",
                   help="baseline scan group (required)")  # fmt: skip
    p.add_argument("--followup", required=True, metavar="/scans/b",
                   help="follow-up scan group (required)")  # fmt: skip
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="report folder (required)")  # fmt: skip
    _add_model(p)
    add_transform_kind(p)
    p.add_argument("--run", metavar="NAME", help="results group name (default: DIR's name)")
    p.add_argument(
        "--interval-days",
        type=_positive_float,
        metavar="D",
        help="days between the scans (default: archive attributes)",
    )
    _add_max_memory(p)
    p.add_argument("--overwrite", action="store_true", help="replace --out and /results/RUN")

    p = command(
        "demo",
        cmd_demo,
        "run the whole pipeline on the built-in phantom",
        description="Builds a phantom baseline/follow-up pair with ground truth, runs the "
        "pipeline with the shipped detector, prints the nodules found against the truth, the "
        "registration error and the stage timings, and writes DIR/report/report.html.",
        example="fastct demo --out demo-out --size tiny",
    )
    p.add_argument("--out", default="demo-out", help="output folder")
    p.add_argument("--size", default="medium", help="phantom preset: tiny, small, medium, large")
    p.add_argument("--seed", type=int, default=0, help="phantom seed")
    add_transform_kind(p)
    _add_model(p)
    p.add_argument(
        "--interval-days",
        type=_positive_float,
        default=90.0,
        metavar="D",
        help="assumed days between the phantom scans, for doubling times",
    )
    _add_max_memory(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out even if it is not a previous demo output",
    )


def _add_model(p: argparse.ArgumentParser) -> None:
    """``--model``: the detector of ``pipeline`` and ``demo``."""
    p.add_argument("--model", type=Path, metavar="M", help="detector model file (default: shipped)")

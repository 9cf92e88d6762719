"""``fastct batch``: one fastct operation, or the whole pipeline per scan pair, over many
scans on dask.distributed (:func:`fastct.batch.run_batch`)."""

from __future__ import annotations

import argparse
import sys

from ._common import AddCommand, _say

#: The options of each operation (the others are refused with it).
_OPERATION_OPTIONS = {
    "gaussian": ("sigma",),
    "median": ("size",),
    "unsharp_mask": ("radius", "amount"),
    "pipeline": ("transform", "model", "no_report"),
}
_OPTIONS = sorted({k for v in _OPERATION_OPTIONS.values() for k in v})


def cmd_batch(args: argparse.Namespace) -> int:
    from fastct.batch import run_batch

    given = {k for k in _OPTIONS if getattr(args, k) not in (None, False)}
    wrong = sorted(given - set(_OPERATION_OPTIONS[args.operation]))
    if wrong:
        names = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise ValueError(f"{names}: not an option of --operation {args.operation}")
    if args.operation == "gaussian" and args.sigma is None:
        raise ValueError("--sigma is required with --operation gaussian")
    params: dict[str, object] = {k: getattr(args, k) for k in given}
    if args.operation == "pipeline":
        params["report"] = not params.pop("no_report", False)
    inputs = args.inputs[0] if len(args.inputs) == 1 else args.inputs
    res = run_batch(
        inputs,
        args.out,
        operation=args.operation,
        params=params,
        scheduler=args.scheduler,
        local_workers=args.local_workers,
        resume=not args.no_resume,
        connect_timeout=args.timeout,
        progress=False if args.quiet else None,
    )
    if res.dashboard:
        _say(args, f"dashboard: {res.dashboard}")
    _say(
        args,
        f"{len(res.written)} written, {len(res.skipped)} skipped, {len(res.failed)} failed "
        f"in {res.seconds:.1f} s",
    )
    for scan_id, error in sorted(res.failed.items()):
        print(f"fastct batch: {scan_id}: {error}", file=sys.stderr)
    return 1 if res.failed else 0


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def add_commands(command: AddCommand) -> None:
    """Add ``batch`` to the fastct parser."""
    from fastct.batch import OPERATIONS

    p = command(
        "batch",
        cmd_batch,
        "run one operation, or the pipeline per scan pair, over many scans on dask.distributed",
        description="Run gaussian, median or unsharp_mask over every scans/<id>/image volume of "
        "an archive (HDF5 or Zarr; or over a list of NIfTI/.npy files or DICOM folders), one "
        "dask task per scan, on a running scheduler (--scheduler) or a LocalCluster started "
        "here (--local-workers). --out names where results go: a folder (OUT/<id>.h5 per "
        "scan, volume results/<operation>), a Zarr store OUT.zarr (volume "
        "results/<id>/<operation>, written by each task) or an HDF5 archive OUT.h5 (the same "
        "volumes, each task writing a file in the hidden folder .OUT.h5.parts that this "
        "command then merges into OUT.h5 in one transaction). --operation pipeline runs "
        "fastct pipeline on every pair scans/<id>/baseline/image + scans/<id>/followup/image "
        "of an archive (the layout of fastct phantom), one task per pair, publishing the "
        "folder OUT/<id>/ (results.h5 with the pair's scans and results/pipeline/..., and "
        "report/); the input archive is only read. Every result is published atomically; a "
        "rerun skips finished scans; a worker lost mid-task is retried without duplicating "
        "a result. Exit 1 if some scans failed (listed).",
        example="fastct batch baseline.nii.gz followup.nii.gz --out smoothed.zarr --sigma 1.5 "
        "--local-workers 1",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="an archive, or NIfTI / .npy files, DICOM folders")  # fmt: skip
    p.add_argument("--out", required=True, metavar="OUT",
                   help="results: a folder, a .zarr store or a .h5 archive (required)")  # fmt: skip
    p.add_argument("--operation", default="gaussian", choices=OPERATIONS,
                   help="the operation (default: gaussian)")  # fmt: skip
    p.add_argument("--sigma", type=_positive(float), metavar="MM", help="gaussian sigma (mm)")
    p.add_argument("--size", type=_positive(int), metavar="K", help="median window")
    p.add_argument("--radius", type=_positive(float), metavar="MM",
                   help="unsharp_mask radius (mm)")  # fmt: skip
    p.add_argument("--amount", type=float, metavar="A", help="unsharp_mask amount")
    p.add_argument("--transform", choices=("rigid", "similarity"),
                   help="pipeline: registration model (default: rigid)")  # fmt: skip
    p.add_argument("--model", metavar="MODEL",
                   help="pipeline: detector file (default: the one shipped with fastct)")  # fmt: skip
    p.add_argument("--no-report", action="store_true",
                   help="pipeline: no report.html and figures (tables and results only)")  # fmt: skip
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="address of a running dask scheduler")  # fmt: skip
    where.add_argument("--local-workers", type=_positive(int), metavar="N",
                       help="start a LocalCluster of N worker processes")  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="recompute finished scans")
    p.add_argument("--timeout", type=_positive(float), default=10.0, metavar="S",
                   help="seconds to reach the scheduler (default: 10)")  # fmt: skip

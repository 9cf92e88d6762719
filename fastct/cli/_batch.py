"""``fastct batch``: one fastct operation over many scans on dask.distributed
(:func:`fastct.batch.run_batch`)."""

from __future__ import annotations

import argparse
import sys

from ._common import AddCommand, _say


def cmd_batch(args: argparse.Namespace) -> int:
    from fastct.batch import run_batch

    params = {k: getattr(args, k) for k in ("sigma", "size", "radius", "amount")}
    params = {k: v for k, v in params.items() if v is not None}
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
        "run one operation over many scans on dask.distributed",
        description="Run gaussian, median or unsharp_mask over every scans/<id>/image volume of "
        "an archive (or over a list of NIfTI/.npy files or DICOM folders), one dask task per "
        "scan, on a running scheduler (--scheduler) or a LocalCluster started here "
        "(--local-workers). Each result is published atomically as OUT/<id>.h5 (volume "
        "results/<operation>); a rerun skips finished scans; a worker lost mid-task is "
        "retried without duplicating a result. Exit 1 if some scans failed (listed).",
        example="fastct batch baseline.nii.gz followup.nii.gz --out smoothed --sigma 1.5 "
        "--local-workers 1",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="an archive, or NIfTI / .npy files, DICOM folders")  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder of the <id>.h5 results (required)")  # fmt: skip
    p.add_argument("--operation", default="gaussian", choices=OPERATIONS,
                   help="the operation (default: gaussian)")  # fmt: skip
    p.add_argument("--sigma", type=_positive(float), metavar="MM", help="gaussian sigma (mm)")
    p.add_argument("--size", type=_positive(int), metavar="K", help="median window")
    p.add_argument("--radius", type=_positive(float), metavar="MM",
                   help="unsharp_mask radius (mm)")  # fmt: skip
    p.add_argument("--amount", type=float, metavar="A", help="unsharp_mask amount")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="address of a running dask scheduler")  # fmt: skip
    where.add_argument("--local-workers", type=_positive(int), metavar="N",
                       help="start a LocalCluster of N worker processes")  # fmt: skip
    p.add_argument("--no-resume", action="store_true", help="recompute finished scans")
    p.add_argument("--timeout", type=_positive(float), default=10.0, metavar="S",
                   help="seconds to reach the scheduler (default: 10)")  # fmt: skip

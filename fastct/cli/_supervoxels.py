"""Supervoxel commands: ``slic`` (streamed) and ``features`` (per-region table as CSV)."""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

import numpy as np

import fastct

from ._common import (
    AddCommand,
    _one_or_per_axis,
    _physical_spacing,
    _say,
    _stream_filter,
    add_per_axis,
    add_volume,
    add_volumes,
    csv_out,
    float_list,
    positive_int,
    volume_at,
)


def cmd_slic(args: argparse.Namespace) -> int:
    from ..segmentation import slic

    def run(src: Any, dst: Any) -> None:
        with contextlib.ExitStack() as stack:
            mask = None
            if args.mask is not None:
                mask = stack.enter_context(fastct.open(args.mask[0]))[args.mask[1]]
            slic(
                src,
                args.n_segments,
                args.compactness,
                max_num_iter=args.max_num_iter,
                sigma=_one_or_per_axis(args.sigma),
                spacing=_physical_spacing(args, src),
                mask=mask,
                slic_zero=args.slic_zero,
                out=dst,
            )

    return _stream_filter(args, "slic", run, lambda dtype: np.dtype(np.int32))


def cmd_features(args: argparse.Namespace) -> int:
    from .. import features

    t0 = time.perf_counter()
    out = csv_out(args)
    kwargs: dict[str, Any] = {"spacing": args.spacing}
    if args.percentiles is not None:
        kwargs["percentiles"] = args.percentiles
    with fastct.open(args.labels[0]) as lar, fastct.open(args.image[0]) as iar:
        labels, image = volume_at(lar, args.labels), volume_at(iar, args.image)
        table = features.region_features(labels, image, **kwargs)
    table.to_csv(out)
    _say(
        args,
        f"wrote {table.n_rows} regions x {len(table.columns)} columns to {out} "
        f"in {time.perf_counter() - t0:.1f} s",
    )
    return 0


def add_commands(command: AddCommand) -> None:
    """Add ``slic`` and ``features`` to the fastct parser."""
    p = command("slic", cmd_slic, "SLIC supervoxels (scikit-image semantics)")
    add_volumes(p, source="SRC", dest="DST")
    p.add_argument("--n-segments", type=positive_int, required=True, metavar="N")
    p.add_argument("--compactness", type=float, required=True, metavar="C")
    add_volume(p, "--mask", "MASK", help="segment only inside this mask (label 0 outside)")
    p.add_argument("--slic-zero", action="store_true", help="SLICO: adaptive compactness")
    p.add_argument("--max-num-iter", type=positive_int, default=10, metavar="K")
    add_per_axis(p, "--sigma", "S", float_list, default=(0.0,),
                 help="pre-smoothing sigma (default 0: none)")  # fmt: skip
    p.add_argument(
        "--mm", action="store_true", help="use the volume's spacing (distances and sigma in mm)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST volume")

    p = command(
        "features",
        cmd_features,
        "per-region features (one row per label) of a label volume, as CSV",
    )
    add_volumes(p, labels="LABELS", image="IMAGE")
    p.add_argument("--out", required=True, metavar="TABLE.csv", help="CSV file to write")
    p.add_argument(
        "--spacing",
        type=float_list,
        metavar="Z,Y,X",
        help="voxel size in mm (default: the volume's)",
    )
    p.add_argument(
        "--percentiles",
        type=float_list,
        metavar="Q,...",
        help="percentile columns (default 10,50,90)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing TABLE.csv")

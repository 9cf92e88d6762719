"""Supervoxel commands: ``slic`` (streamed) and ``features`` (per-region table as CSV)."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np

import fastct

from ._common import (
    _one_or_per_axis,
    _physical_spacing,
    _say,
    _stream_filter,
    float_list,
    positive_int,
    volume_spec,
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
    (lpath, lname), (ipath, iname) = args.labels, args.image
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise ValueError(f"--out must name a .csv file, got {str(out)!r}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{str(out)!r} already exists; pass --overwrite to replace it")
    kwargs: dict[str, Any] = {"spacing": args.spacing}
    if args.percentiles is not None:
        kwargs["percentiles"] = args.percentiles
    with fastct.open(lpath) as lar, fastct.open(ipath) as iar:
        labels, image = lar[lname], iar[iname]
        for (path, name), vol in ((args.labels, labels), (args.image, image)):
            if not isinstance(vol, fastct.Volume):
                raise ValueError(f"{path}:{name} is a group, not a volume")
        table = features.region_features(labels, image, **kwargs)
    table.to_csv(out)
    _say(
        args,
        f"wrote {table.n_rows} regions x {len(table.columns)} columns to {out} "
        f"in {time.perf_counter() - t0:.1f} s",
    )
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``slic`` and ``features`` to the fastct parser."""
    p = sub.add_parser("slic", parents=[common], help="SLIC supervoxels (scikit-image semantics)")
    p.add_argument("source", type=volume_spec, metavar="SRC.h5:/path")
    p.add_argument("dest", type=volume_spec, metavar="DST.h5:/path")
    p.add_argument("--n-segments", type=positive_int, required=True, metavar="N")
    p.add_argument("--compactness", type=float, required=True, metavar="C")
    p.add_argument(
        "--mask",
        type=volume_spec,
        metavar="MASK.h5:/path",
        help="segment only inside this mask (label 0 outside)",
    )
    p.add_argument("--slic-zero", action="store_true", help="SLICO: adaptive compactness")
    p.add_argument("--max-num-iter", type=positive_int, default=10, metavar="K")
    p.add_argument(
        "--sigma",
        type=float_list,
        default=(0.0,),
        metavar="S[,S,S]",
        help="pre-smoothing sigma (default 0: none)",
    )
    p.add_argument(
        "--mm", action="store_true", help="use the volume's spacing (distances and sigma in mm)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST volume")
    p.set_defaults(func=cmd_slic)

    p = sub.add_parser(
        "features",
        parents=[common],
        help="per-region features (one row per label) of a label volume, as CSV",
    )
    p.add_argument("labels", type=volume_spec, metavar="LABELS.h5:/path")
    p.add_argument("image", type=volume_spec, metavar="IMAGE.h5:/path")
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
    p.set_defaults(func=cmd_features)

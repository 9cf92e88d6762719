"""Supervoxel commands: ``slic`` (streamed archive to archive) and ``features`` (per-region
table as CSV)."""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

import numpy as np

import fastct

from ._common import (
    AddCommand,
    _npy_geometry,
    _one_or_per_axis,
    _physical_spacing,
    _say,
    _stream_filter,
    add_npy_geometry,
    add_per_axis,
    add_volume,
    add_volumes,
    check_npy_options,
    csv_out,
    float_list,
    open_source,
    positive_int,
)


def cmd_slic(args: argparse.Namespace) -> int:
    from ..segmentation import slic

    check_npy_options(args, args.source, args.mask)

    def run(src: Any, data: Any, dst: Any) -> None:
        with contextlib.ExitStack() as stack:
            mask = None
            if args.mask is not None:
                msrc = stack.enter_context(open_source(args.mask, **_npy_geometry(args),
                                                       what="--mask"))  # fmt: skip
                # An archive mask streams with an archive SRC; otherwise it is in memory.
                mask = msrc.data if isinstance(data, fastct.Volume) else msrc.read()
            slic(
                data,
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
    kwargs: dict[str, Any] = {}
    if args.percentiles is not None:
        kwargs["percentiles"] = args.percentiles
    geometry = _npy_geometry(args)
    if args.origin is not None:
        check_npy_options(argparse.Namespace(origin=args.origin), args.labels, args.image)
    with (
        open_source(args.labels, **geometry, what="LABELS") as labels,
        open_source(args.image, **geometry, what="IMAGE") as image,
    ):
        if labels.shape != image.shape:
            raise ValueError(
                f"LABELS and IMAGE must have the same shape, got {labels.shape} and {image.shape}"
            )
        streamed = labels.streamed and image.streamed
        lab = labels.data if streamed else labels.read()
        img = image.data if streamed else image.read()
        spacing = labels.spacing if args.spacing is None else args.spacing
        kwargs.update(spacing=spacing, origin=labels.origin, direction=labels.direction)
        table = features.region_features(lab, img, **kwargs)
    table.to_csv(out)
    _say(
        args,
        f"wrote {table.n_rows} regions x {len(table.columns)} columns to {out} "
        f"in {time.perf_counter() - t0:.1f} s",
    )
    return 0


#: fastct.slic's defaults (not imported here, to keep ``fastct --help`` fast; a test
#: checks that they agree with the function's signature).
SLIC_DEFAULTS = {"n_segments": 100, "compactness": 10.0, "max_num_iter": 10}


def add_commands(command: AddCommand) -> None:
    """Add ``slic`` and ``features`` to the fastct parser."""

    p = command(
        "slic",
        cmd_slic,
        "SLIC supervoxels (scikit-image semantics), int32 labels",
        example="fastct slic ct.nii.gz supervoxels.nii.gz --n-segments 2000 --compactness 0.1",
    )
    add_volumes(p, source="SRC", dest="DST")
    p.add_argument("--n-segments", type=positive_int, metavar="N",
                   default=SLIC_DEFAULTS["n_segments"],
                   help="approximate number of supervoxels")  # fmt: skip
    p.add_argument("--compactness", type=float, metavar="C",
                   default=SLIC_DEFAULTS["compactness"],
                   help="balance of intensity and space distances (higher: more cubic)")  # fmt: skip
    add_volume(p, "--mask", "MASK", help="segment only inside this mask (label 0 outside)")
    p.add_argument("--slic-zero", action="store_true", help="SLICO: adaptive compactness")
    p.add_argument("--max-num-iter", type=positive_int, metavar="K",
                   default=SLIC_DEFAULTS["max_num_iter"], help="k-means iterations")  # fmt: skip
    add_per_axis(p, "--sigma", "S", float_list, default=(0.0,),
                 help="pre-smoothing sigma, one or one per axis (0: none)")  # fmt: skip
    p.add_argument(
        "--mm", action="store_true", help="use the volume's spacing (distances and sigma in mm)"
    )
    add_npy_geometry(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST")

    p = command(
        "features",
        cmd_features,
        "per-region features (one row per label) of a label volume, as CSV",
        example="fastct features supervoxels.nii.gz ct.nii.gz --out regions.csv",
    )
    add_volumes(p, labels="LABELS", image="IMAGE")
    p.add_argument("--out", required=True, metavar="TABLE.csv", help="CSV file to write (required)")
    p.add_argument(
        "--spacing",
        type=float_list,
        metavar="Z,Y,X",
        help="voxel size in mm (default: the LABELS volume's; for .npy inputs 1)",
    )
    add_npy_geometry(p, spacing=False)
    p.add_argument(
        "--percentiles",
        type=float_list,
        metavar="Q,...",
        help="percentile columns (default: 10,50,90)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing TABLE.csv")

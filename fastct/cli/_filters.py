"""Filter commands: ``gaussian``, ``median`` and ``unsharp``.

Archive to archive they stream block by block; NIfTI, DICOM and ``.npy`` inputs or
outputs are held in memory (:func:`fastct.cli._common.open_source`)."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import (
    AddCommand,
    _one_or_per_axis,
    _physical_spacing,
    _stream_filter,
    add_npy_geometry,
    add_per_axis,
    add_volumes,
    float_list,
    int_list,
)


def cmd_gaussian(args: argparse.Namespace) -> int:
    from .._validate import smoothing_dtype
    from ..filters import gaussian

    def run(src: Any, data: Any, dst: Any) -> None:
        gaussian(
            data,
            _one_or_per_axis(args.sigma),
            spacing=_physical_spacing(args, src),
            mode=args.mode,
            cval=args.cval,
            truncate=args.truncate,
            method=args.method,
            out=dst,
        )

    return _stream_filter(args, "gaussian", run, smoothing_dtype)


def cmd_median(args: argparse.Namespace) -> int:
    from ..filters import median

    def run(src: Any, data: Any, dst: Any) -> None:
        median(data, _one_or_per_axis(args.size), mode=args.mode, cval=args.cval, out=dst)

    return _stream_filter(args, "median", run, lambda dtype: dtype)


def cmd_unsharp(args: argparse.Namespace) -> int:
    from .._validate import smoothing_dtype
    from ..filters import unsharp_mask

    def run(src: Any, data: Any, dst: Any) -> None:
        unsharp_mask(
            data,
            _one_or_per_axis(args.radius),
            args.amount,
            spacing=_physical_spacing(args, src),
            mode=args.mode,
            truncate=args.truncate,
            out=dst,
        )

    return _stream_filter(args, "unsharp", run, smoothing_dtype)


def add_commands(command: AddCommand) -> None:
    """Add ``gaussian``, ``median`` and ``unsharp`` to the fastct parser."""

    def filter_parser(
        name: str, func: Any, help_text: str, example: str, cval: bool = True
    ) -> argparse.ArgumentParser:
        p = command(name, func, help_text, example=example)
        add_volumes(p, source="SRC", dest="DST")
        constant = "pads with --cval" if cval else "pads with 0"
        p.add_argument(
            "--mode",
            default="reflect",
            choices=["reflect", "mirror", "nearest", "constant", "wrap"],
            help=f"boundary mode, as in scipy.ndimage ('constant' {constant})",
        )
        if cval:
            p.add_argument("--cval", type=float, default=0.0, help="fill value for --mode constant")
        add_npy_geometry(p)
        p.add_argument("--overwrite", action="store_true", help="replace an existing DST")
        return p

    p = filter_parser(
        "gaussian",
        cmd_gaussian,
        "Gaussian smoothing (scipy.ndimage semantics)",
        "fastct gaussian ct.nii.gz smooth.nii.gz --sigma 1.5",
    )
    add_per_axis(p, "--sigma", "S", float_list, required=True,
                 help="standard deviation in voxels (in mm with --mm), one or one per axis "
                 "(required)")  # fmt: skip
    p.add_argument("--mm", action="store_true", help="sigma in mm, using the volume's spacing")
    p.add_argument("--truncate", type=float, default=4.0, help="kernel radius in sigmas")
    p.add_argument("--method", choices=["exact", "recursive"], default="exact",
                   help="exact: scipy's FIR kernel; recursive: IIR, cost independent of sigma")  # fmt: skip

    p = filter_parser(
        "median",
        cmd_median,
        "median filter (scipy.ndimage semantics), same dtype",
        "fastct median study.h5:/scans/case01/image study.h5:/scans/case01/median --size 3",
    )
    add_per_axis(p, "--size", "K", int_list, default=(3,),
                 help="window size, one or one per axis")  # fmt: skip

    p = filter_parser(
        "unsharp",
        cmd_unsharp,
        "unsharp mask: image + amount * (image - gaussian(image, radius))",
        "fastct unsharp ct.nii.gz sharp.nii.gz --radius 1 --amount 0.5",
        cval=False,
    )
    add_per_axis(p, "--radius", "R", float_list, default=(1.0,),
                 help="Gaussian sigma in voxels (in mm with --mm), one or one per axis")  # fmt: skip
    p.add_argument("--amount", type=float, default=1.0, help="sharpening strength")
    p.add_argument("--mm", action="store_true", help="radius in mm, using the volume's spacing")
    p.add_argument("--truncate", type=float, default=4.0, help="kernel radius in sigmas")

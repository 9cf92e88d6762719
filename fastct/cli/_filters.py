"""Filter commands, streamed block by block: ``gaussian``, ``median`` and ``unsharp``."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import (
    AddCommand,
    _one_or_per_axis,
    _physical_spacing,
    _stream_filter,
    add_per_axis,
    add_volumes,
    float_list,
    int_list,
)


def cmd_gaussian(args: argparse.Namespace) -> int:
    from .._validate import smoothing_dtype
    from ..filters import gaussian

    def run(src: Any, dst: Any) -> None:
        gaussian(
            src,
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

    def run(src: Any, dst: Any) -> None:
        median(src, _one_or_per_axis(args.size), mode=args.mode, cval=args.cval, out=dst)

    return _stream_filter(args, "median", run, lambda dtype: dtype)


def cmd_unsharp(args: argparse.Namespace) -> int:
    from .._validate import smoothing_dtype
    from ..filters import unsharp_mask

    def run(src: Any, dst: Any) -> None:
        unsharp_mask(
            src,
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

    def filter_parser(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = command(name, func, help_text)
        add_volumes(p, source="SRC", dest="DST")
        p.add_argument(
            "--mode",
            default="reflect",
            choices=["reflect", "mirror", "nearest", "constant", "wrap"],
            help="boundary mode, as in scipy.ndimage (default reflect)",
        )
        p.add_argument("--cval", type=float, default=0.0, help="fill value for --mode constant")
        p.add_argument("--overwrite", action="store_true", help="replace an existing DST volume")
        return p

    p = filter_parser(
        "gaussian", cmd_gaussian, "Gaussian smoothing (scipy.ndimage semantics), streamed"
    )
    add_per_axis(p, "--sigma", "S", float_list, required=True,
                 help="standard deviation in voxels (in mm with --mm), one or one per axis")  # fmt: skip
    p.add_argument("--mm", action="store_true", help="sigma in mm, using the volume's spacing")
    p.add_argument("--truncate", type=float, default=4.0, help="kernel radius in sigmas")
    p.add_argument("--method", choices=["exact", "recursive"], default="exact")

    p = filter_parser("median", cmd_median, "median filter (scipy.ndimage semantics), streamed")
    add_per_axis(p, "--size", "K", int_list, default=(3,),
                 help="window size, one or one per axis (default 3)")  # fmt: skip

    p = filter_parser("unsharp", cmd_unsharp, "unsharp mask: image + amount * (image - gaussian)")
    add_per_axis(p, "--radius", "R", float_list, default=(1.0,),
                 help="Gaussian sigma in voxels (in mm with --mm)")  # fmt: skip
    p.add_argument("--amount", type=float, default=1.0, help="sharpening strength (default 1)")
    p.add_argument("--mm", action="store_true", help="radius in mm, using the volume's spacing")
    p.add_argument("--truncate", type=float, default=4.0, help="kernel radius in sigmas")

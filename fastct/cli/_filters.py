"""Filter commands, streamed block by block: ``gaussian``, ``median`` and ``unsharp``."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import (
    _one_or_per_axis,
    _physical_spacing,
    _stream_filter,
    float_list,
    int_list,
    volume_spec,
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


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``gaussian``, ``median`` and ``unsharp`` to the fastct parser."""

    def filter_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text)
        p.add_argument("source", type=volume_spec, metavar="SRC.h5:/path")
        p.add_argument("dest", type=volume_spec, metavar="DST.h5:/path")
        p.add_argument(
            "--mode",
            default="reflect",
            choices=["reflect", "mirror", "nearest", "constant", "wrap"],
            help="boundary mode, as in scipy.ndimage (default reflect)",
        )
        p.add_argument("--cval", type=float, default=0.0, help="fill value for --mode constant")
        p.add_argument("--overwrite", action="store_true", help="replace an existing DST volume")
        return p

    p = filter_parser("gaussian", "Gaussian smoothing (scipy.ndimage semantics), streamed")
    p.add_argument(
        "--sigma",
        type=float_list,
        required=True,
        metavar="S[,S,S]",
        help="standard deviation in voxels (in mm with --mm), one or one per axis",
    )
    p.add_argument("--mm", action="store_true", help="sigma in mm, using the volume's spacing")
    p.add_argument("--truncate", type=float, default=4.0, help="kernel radius in sigmas")
    p.add_argument("--method", choices=["exact", "recursive"], default="exact")
    p.set_defaults(func=cmd_gaussian)

    p = filter_parser("median", "median filter (scipy.ndimage semantics), streamed")
    p.add_argument(
        "--size",
        type=int_list,
        default=(3,),
        metavar="K[,K,K]",
        help="window size, one or one per axis (default 3)",
    )
    p.set_defaults(func=cmd_median)

    p = filter_parser("unsharp", "unsharp mask: image + amount * (image - gaussian)")
    p.add_argument(
        "--radius",
        type=float_list,
        default=(1.0,),
        metavar="R[,R,R]",
        help="Gaussian sigma in voxels (in mm with --mm)",
    )
    p.add_argument("--amount", type=float, default=1.0, help="sharpening strength (default 1)")
    p.add_argument("--mm", action="store_true", help="radius in mm, using the volume's spacing")
    p.add_argument("--truncate", type=float, default=4.0, help="kernel radius in sigmas")
    p.set_defaults(func=cmd_unsharp)

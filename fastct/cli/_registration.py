"""Sub-commands of fastct.registration: ``fastct register``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ._common import (
    AddCommand,
    _npy_geometry,
    _say,
    add_npy_geometry,
    add_transform_kind,
    add_volume,
    add_volumes,
    check_new_file,
    check_npy_options,
    check_output,
    float_list,
    int_list,
    open_sink,
    open_source,
    positive_int,
    read_mask,
)


def cmd_register(args: argparse.Namespace) -> int:
    import numpy as np

    import fastct

    from ..registration import register, resample

    out_t = Path(args.output_transform)
    if out_t.suffix.lower() not in (".json", ".tfm"):
        raise ValueError(f"--output-transform must end in .json or .tfm, got {str(out_t)!r}")
    check_new_file(out_t, args.overwrite)
    if not out_t.parent.is_dir():
        raise FileNotFoundError(f"folder of --output-transform {str(out_t.parent)!r} not found")
    kwargs: dict[str, Any] = {
        "transform": args.transform,
        "metric": args.metric,
        "bins": args.bins,
        "seed": args.seed,
        "init": args.init,
        "max_iterations": args.max_iterations,
    }
    if args.shrink_factors is not None:
        kwargs["shrink_factors"] = args.shrink_factors
    if args.smoothing_sigmas is not None:
        kwargs["smoothing_sigmas"] = args.smoothing_sigmas
    if args.sampling is not None:
        kwargs["sampling"] = _sampling(args.sampling)
    if args.rotation_search is not None:
        kwargs["rotation_search"] = args.rotation_search
    if args.translation_search is not None:
        kwargs["translation_search"] = args.translation_search or None
    if args.step_tolerance is not None:
        kwargs["step_tolerance"] = args.step_tolerance
    if args.initial_transform is not None:
        kwargs["initial_transform"] = fastct.load_transform(args.initial_transform)
    check_npy_options(args, args.fixed, args.moving, args.fixed_mask)
    if args.resampled is not None:
        check_output(args.resampled, args, "--resampled")
    geometry = _npy_geometry(args)
    t0 = time.perf_counter()
    with (
        open_source(args.fixed, **geometry, what="FIXED") as fixed,
        open_source(args.moving, **geometry, what="MOVING") as moving,
    ):
        # Archive volumes carry their geometry (direction included); arrays read from
        # files get it as keyword arguments, direction where this fastct takes it.
        kwargs.update(_geometry_kwargs(fixed, "fixed_"))
        kwargs.update(_geometry_kwargs(moving, "moving_"))
        reg = register(
            fixed.data if fixed.streamed else fixed.read(),
            moving.data if moving.streamed else moving.read(),
            fixed_mask=read_mask(args.fixed_mask, args),
            **kwargs,
        )
        lines = [
            f"register ({args.transform}, {args.metric}): {args.fixed} <- {args.moving}",
            f"  metric value {reg.metric_value:.6g}, {reg.iterations} iterations over "
            f"{len(reg.levels)} levels, {reg.elapsed_s:.2f} s ({reg.stop_reason})",
            f"  transform -> {out_t}",
        ]
        if args.resampled is not None:
            dtype = moving.dtype if args.order == 0 else np.dtype(np.float32)
            with open_sink(args.resampled, args, fixed, dtype, what="--resampled") as out:
                streamed = isinstance(out, fastct.Volume) and moving.streamed
                grid = {
                    "spacing": fixed.spacing,
                    "origin": fixed.origin,
                    "direction": fixed.direction,
                }
                resample(
                    moving.data if streamed else moving.read(),
                    reg.transform,
                    shape=fixed.shape,
                    order=args.order,
                    cval=args.cval,
                    out=out,
                    **grid,
                    **({} if streamed else _geometry_kwargs(moving, "moving_",
                                                            force=True)),
                )  # fmt: skip
            lines.append(f"  resampled moving -> {args.resampled}")
        reg.transform.save(out_t)
    lines.append(f"  total {time.perf_counter() - t0:.2f} s")
    _say(args, *lines)
    return 0


def _geometry_kwargs(src: Any, prefix: str, force: bool = False) -> dict[str, Any]:
    """``fixed_spacing=``, ``fixed_origin=`` and ``fixed_direction=`` for a source read
    into memory; nothing for an archive Volume, which
    carries its own geometry (unless ``force``)."""
    if src.streamed and not force:
        return {}
    return {
        f"{prefix}spacing": src.spacing,
        f"{prefix}origin": src.origin,
        f"{prefix}direction": src.direction,
    }


def _sampling(text: str) -> Any:
    if text in ("auto", "full"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"--sampling must be auto, full, a fraction or a count, got {text!r}"
        ) from None
    return int(value) if value > 1 and value.is_integer() else value


def add_commands(command: AddCommand) -> None:
    """Add this module's sub-commands to the fastct parser."""
    p = command(
        "register",
        cmd_register,
        "rigid or similarity registration of MOVING onto FIXED (writes the transform)",
        example="fastct register baseline.nii.gz followup.nii.gz --output-transform t.tfm "
        "--resampled followup-on-baseline.nii.gz",
    )
    add_volumes(p, fixed="FIXED", moving="MOVING")
    add_transform_kind(p)
    p.add_argument("--metric", choices=["mse", "ncc", "mi"], default="mi",
                   help="mean squared error, normalised cross-correlation or Mattes mutual "
                   "information")  # fmt: skip
    p.add_argument(
        "--output-transform",
        required=True,
        metavar="T.json|T.tfm",
        help="where to write the transform (fixed -> moving physical points); .tfm is "
        "ITK's (required)",
    )
    add_volume(p, "--resampled", "DST",
               help="also write MOVING resampled onto FIXED's grid (and geometry)")  # fmt: skip
    p.add_argument("--order", type=int, choices=[0, 1, 3], default=1,
                   help="interpolation order for --resampled")  # fmt: skip
    p.add_argument("--cval", type=float, default=0.0, help="outside value for --resampled")
    add_volume(p, "--fixed-mask", "MASK", help="use only FIXED's voxels inside this mask")
    p.add_argument("--init", choices=["auto", "geometry", "moments", "none"], default="auto",
                   help="initial alignment when there is no --initial-transform")  # fmt: skip
    p.add_argument("--initial-transform", metavar="T.json|T.tfm", help="start from this transform")
    p.add_argument("--bins", type=positive_int, default=32, help="Mattes MI histogram bins")
    p.add_argument(
        "--sampling", metavar="auto|full|F|N", help="fixed samples per level (default: auto)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random sampling")
    p.add_argument("--shrink-factors", type=int_list, metavar="4,2,1",
                   help="pyramid shrink factors, coarse to fine (default: from the image size)")  # fmt: skip
    p.add_argument("--smoothing-sigmas", type=float_list, metavar="MM,MM,MM",
                   help="pyramid smoothing in mm per level (default: from the shrink factors)")  # fmt: skip
    p.add_argument("--max-iterations", type=positive_int, default=100, metavar="N",
                   help="optimiser iterations per pyramid level")  # fmt: skip
    p.add_argument(
        "--rotation-search", type=float, metavar="DEG",
        help="coarse rotation search range in degrees (default: none)",
    )  # fmt: skip
    p.add_argument(
        "--translation-search",
        type=float,
        metavar="F",
        help="coarse translation search range as a fraction of the fixed extent "
        "(default 0.4; 0 turns it off)",
    )
    p.add_argument(
        "--step-tolerance",
        type=float,
        metavar="VOXELS",
        help="stop a pyramid level when a step moves the corners by less (default 0.01)",
    )
    add_npy_geometry(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")

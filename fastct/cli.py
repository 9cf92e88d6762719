"""The ``fastct`` command line.

Volumes are named ``FILE.h5:/path/in/file``. Bad input prints one line
``fastct: error: ...`` on stderr and exits with status 2; Ctrl-C exits with 130.
Outputs are published atomically: an interrupted command leaves every file as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import fastct

from . import _config

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Modules that add sub-commands (registration, classifier, pipeline and demo).
_COMMAND_MODULES = (
    "fastct._cli_registration",
    "fastct._cli_classify",
    "fastct._cli_pipeline",
)


class UsageError(ValueError):
    """Bad command-line input."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


# -- argument types ---------------------------------------------------------------------
def volume_spec(text: str) -> tuple[Path, str]:
    """Parse ``FILE.h5:/path/in/file``."""
    path, sep, inner = text.rpartition(":")
    if not sep or not path or not inner.strip("/"):
        raise argparse.ArgumentTypeError(f"expected FILE.h5:/path/in/file, got {text!r}")
    return Path(path), "/" + inner.strip("/")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def int_triple(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 64,64,64, got {text!r}") from None
    if len(values) not in (2, 3) or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected 2 or 3 positive integers, got {text!r}")
    return values


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers like 3 or 3,5,5, got {text!r}"
        ) from None


def float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 2.5,0.7,0.7, got {text!r}"
        ) from None


def _say(args: argparse.Namespace, *lines: str) -> None:
    if not args.quiet:
        for line in lines:
            print(line)


# -- commands ---------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    with fastct.open(args.archive) as ar:
        print(ar.summary())
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from . import io

    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {}
    if args.spacing is not None:
        kwargs["spacing"] = args.spacing
    if args.series_uid is not None:
        kwargs["series_uid"] = args.series_uid
    if args.volume_index is not None:
        kwargs["volume_index"] = args.volume_index
    if args.recursive:
        kwargs["recursive"] = True
    imported = io.read_volume(args.input, **kwargs)
    path, name = args.dest
    with fastct.open(path, "a") as ar:
        vol = ar.create_volume(
            name,
            imported.array,
            spacing=imported.spacing,
            origin=imported.origin,
            direction=imported.direction,
            modality=imported.modality,
            units=imported.units,
            chunks=args.chunks,
            compression=args.compression,
            shuffle=args.compression is not None,
            overwrite=args.overwrite,
        )
        summary = repr(vol)
    _say(
        args, f"imported {args.input} -> {path}:{name} in {time.perf_counter() - t0:.1f} s", summary
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from . import io

    path, name = args.source
    out = Path(args.output)
    with fastct.open(path) as ar:
        vol = ar[name]
        if not isinstance(vol, fastct.Volume):
            raise ValueError(f"{path}:{name} is a group, not a volume")
        data = vol.read()
        if out.name.endswith((".nii", ".nii.gz")):
            io.write_nifti(
                out,
                data,
                spacing=vol.spacing,
                origin=vol.origin,
                direction=vol.direction,
                overwrite=args.overwrite,
            )
        elif out.suffix == ".npy":
            io.write_npy(out, data, overwrite=args.overwrite)
        else:
            raise ValueError(f"output must end in .nii, .nii.gz or .npy, got {str(out)!r}")
    _say(args, f"exported {path}:{name} -> {out}")
    return 0


def cmd_phantom(args: argparse.Namespace) -> int:
    from . import datasets

    t0 = time.perf_counter()
    prefix = "/" + args.prefix.strip("/")
    pair = datasets.phantom_pair(args.size, seed=args.seed, transform=args.transform)
    with fastct.open(args.archive, "a") as ar:
        for tag, scan in (("baseline", pair.baseline), ("followup", pair.followup)):
            group = f"{prefix}/{tag}"
            meta = {"spacing": scan.spacing, "origin": scan.origin, "chunks": args.chunks}
            ar.create_volume(
                f"{group}/image",
                scan.image,
                modality="CT",
                units="HU",
                overwrite=args.overwrite,
                **meta,
            )
            ar.create_volume(
                f"{group}/labels/lungs",
                scan.lung_mask.astype(np.uint8),
                overwrite=args.overwrite,
                **meta,
            )
            ar.create_volume(
                f"{group}/labels/nodules", scan.nodule_labels, overwrite=args.overwrite, **meta
            )
        ar.set_attrs(
            f"{prefix}/truth",
            transform=np.asarray(pair.transform, dtype=np.float64),
            transform_convention="maps baseline (fixed) physical points to follow-up (moving) points",
            nodules_json=_nodules_json(pair),
            seed=args.seed,
            size=args.size,
        )
    _say(
        args,
        f"wrote phantom pair ({args.size}, seed {args.seed}) to {args.archive}:{prefix} "
        f"in {time.perf_counter() - t0:.1f} s",
        f"  {prefix}/baseline/image, {prefix}/followup/image, labels/lungs, labels/nodules, truth",
    )
    return 0


def _nodules_json(pair: Any) -> str:
    import dataclasses
    import json

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return plain(dataclasses.asdict(obj))
        if isinstance(obj, dict):
            return {str(k): plain(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [plain(v) for v in obj]
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        return obj

    return json.dumps(
        {
            "baseline": plain(pair.baseline.nodules),
            "followup": plain(pair.followup.nodules),
            "changes": plain(pair.changes),
        }
    )


def _stream_filter(args: argparse.Namespace, name: str, run: Any, out_dtype: Any) -> int:
    """Open SRC read-only and DST's archive as a transaction; stream ``run`` into DST."""
    src_path, src_name = args.source
    dst_path, dst_name = args.dest
    t0 = time.perf_counter()
    with fastct.open(src_path) as src_ar, fastct.open(dst_path, "a") as dst_ar:
        src = src_ar[src_name]
        if not isinstance(src, fastct.Volume):
            raise ValueError(f"{src_path}:{src_name} is a group, not a volume")
        dtype = out_dtype(src.dtype)
        kwargs: dict[str, Any] = {"dtype": dtype, "overwrite": args.overwrite}
        if args.chunks is not None:
            kwargs["chunks"] = args.chunks
        dst = dst_ar.create_volume_like(dst_name, src, **kwargs)
        run(src, dst)
    _say(
        args,
        f"{name}: {src_path}:{src_name} -> {dst_path}:{dst_name} "
        f"({' x '.join(map(str, src.shape))} {np.dtype(dtype)}) in {time.perf_counter() - t0:.1f} s",
    )
    return 0


def _one_or_per_axis(values: tuple) -> Any:
    """``--sigma 2`` means every axis; ``--sigma 2,1,1`` one value per axis."""
    return values[0] if len(values) == 1 else values


def _physical_spacing(args: argparse.Namespace, vol: Any) -> Any:
    return vol.spacing if args.mm else None


def cmd_gaussian(args: argparse.Namespace) -> int:
    from ._validate import smoothing_dtype
    from .filters import gaussian

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
    from .filters import median

    def run(src: Any, dst: Any) -> None:
        median(src, _one_or_per_axis(args.size), mode=args.mode, cval=args.cval, out=dst)

    return _stream_filter(args, "median", run, lambda dtype: dtype)


def cmd_unsharp(args: argparse.Namespace) -> int:
    from ._validate import smoothing_dtype
    from .filters import unsharp_mask

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


def cmd_features(args: argparse.Namespace) -> int:
    from . import features

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


def cmd_slic(args: argparse.Namespace) -> int:
    from .segmentation import slic

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


# -- parser -------------------------------------------------------------------------------
def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the command name.

    Sub-commands use SUPPRESS defaults so an option given before the command name
    (``fastct --quiet info``) is not reset by the sub-command's own default.
    """
    common = _Parser(add_help=False)
    g = common.add_argument_group("common options")
    default = (lambda value: value) if defaults else (lambda value: argparse.SUPPRESS)
    g.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        default=default(None),
        help="threads for compiled kernels (default: FASTCT_NUM_THREADS or all cores)",
    )
    g.add_argument(
        "--chunks",
        type=int_triple,
        metavar="Z,Y,X",
        default=default(None),
        help="chunk shape of new volumes (default about 64^3)",
    )
    g.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=default(False),
        help="no progress bars or summaries",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(defaults=False)
    parser = _Parser(
        prog="fastct",
        description="Compiled-kernel engine for 3-D medical volumes in HDF5 archives. "
        "Volumes are named FILE.h5:/path/in/file.",
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"fastct {fastct.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("info", parents=[common], help="list the volumes of an archive")
    p.add_argument("archive", type=Path, metavar="ARCHIVE.h5")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "import",
        parents=[common],
        help="import a DICOM series folder, NIfTI file or .npy into an archive",
    )
    p.add_argument("input", type=Path, metavar="INPUT")
    p.add_argument("dest", type=volume_spec, metavar="ARCHIVE.h5:/scans/ID/image")
    p.add_argument("--spacing", type=float_list, metavar="Z,Y,X", help="spacing in mm (.npy input)")
    p.add_argument("--series-uid", help="pick one series of a folder holding several")
    p.add_argument("--volume-index", type=int, help="pick one volume of a 4-D NIfTI file")
    p.add_argument("--recursive", action="store_true", help="search sub-folders for DICOM files")
    p.add_argument("--compression", choices=["gzip", "lzf"], help="HDF5 compression filter")
    p.add_argument("--overwrite", action="store_true", help="replace an existing volume")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", parents=[common], help="export a volume to NIfTI or .npy")
    p.add_argument("source", type=volume_spec, metavar="ARCHIVE.h5:/path")
    p.add_argument("output", metavar="OUT.nii.gz|OUT.npy")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "phantom",
        parents=[common],
        help="write a synthetic baseline/follow-up chest-CT pair with ground truth",
    )
    p.add_argument("archive", type=Path, metavar="ARCHIVE.h5")
    p.add_argument(
        "--size", default="small", help="preset: tiny, small, medium, large, clinical (512x512x400)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--transform", choices=["rigid", "similarity"], default="rigid")
    p.add_argument("--prefix", default="scans/phantom", help="group to write under")
    p.add_argument("--overwrite", action="store_true", help="replace existing volumes")
    p.set_defaults(func=cmd_phantom)

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

    # Commands of the larger subsystems live beside them; each module exposes
    # ``add_commands(sub, common)`` and imports its heavy dependencies lazily.
    for module in _COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    # pydicom warns about every oddity it tolerates; the CLI reports real problems as
    # one error line instead.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\..*)?$")
    try:
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return EXIT_USAGE
        if args.threads is not None:
            _config.set_num_threads(args.threads)
        if args.quiet:
            _config.set_progress(False)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("fastct: interrupted; no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, KeyError, OSError, ImportError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        message = " ".join(str(message).split())  # exactly one line
        print(f"fastct: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

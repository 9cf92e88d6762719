"""What every command shares: the one-line-error parser, exit codes, argument types, the
common options, quiet-aware printing and the streamed SRC -> DST filter runner."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

import fastct

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


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

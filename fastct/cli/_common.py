"""What every command shares: the one-line-error parser, exit codes, argument types, the
common options and the options several commands take, quiet-aware printing, opening
volumes and checking outputs, and the streamed SRC -> DST filter runner."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
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


#: ``command(name, func, help_text, **parser_kwargs)`` adds a sub-command that takes the
#: common options and runs ``func(args)``; every module's ``add_commands`` receives it.
AddCommand = Callable[..., argparse.ArgumentParser]


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


def _comma_list(text: str, kind: Callable[[str], Any], expected: str) -> tuple:
    """``text`` split at commas, each part converted by ``kind``."""
    try:
        return tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def int_triple(text: str) -> tuple[int, ...]:
    values = _comma_list(text, int, "integers like 64,64,64")
    if len(values) not in (2, 3) or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected 2 or 3 positive integers, got {text!r}")
    return values


def int_list(text: str) -> tuple[int, ...]:
    return _comma_list(text, int, "integers like 3 or 3,5,5")


def float_list(text: str) -> tuple[float, ...]:
    return _comma_list(text, float, "numbers like 2.5,0.7,0.7")


def _say(args: argparse.Namespace, *lines: str) -> None:
    if not args.quiet:
        for line in lines:
            print(line)


def volume_at(archive: Any, spec: tuple[Path, str]) -> Any:
    """The Volume that ``spec`` (``FILE, /path``) names in the open ``archive``."""
    path, name = spec
    vol = archive[name]
    if not isinstance(vol, fastct.Volume):
        raise ValueError(f"{path}:{name} is a group, not a volume")
    return vol


def read_mask(spec: tuple[Path, str] | None) -> np.ndarray | None:
    """The mask volume ``spec`` names, read into memory; None when the option is not given."""
    if spec is None:
        return None
    path, name = spec
    with fastct.open(path) as ar:
        vol = ar[name]
        if not isinstance(vol, fastct.Volume):
            raise ValueError(f"{path}:{name} is not a volume")
        return vol.read()


def check_new_file(out: Path, overwrite: bool) -> None:
    """An output file may exist only when --overwrite says to replace it."""
    if out.exists() and not overwrite:
        raise FileExistsError(f"{str(out)!r} already exists; pass --overwrite to replace it")


def csv_out(args: argparse.Namespace) -> Path:
    """``--out`` of a command writing a table: a new (or --overwrite) ``.csv`` file."""
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise ValueError(f"--out must name a .csv file, got {str(out)!r}")
    check_new_file(out, args.overwrite)
    return out


def new_volume_like(
    args: argparse.Namespace, archive: Any, name: str, like: Any, dtype: Any
) -> Any:
    """An empty output volume on ``like``'s grid; --chunks when given, else ``like``'s."""
    kwargs: dict[str, Any] = {"dtype": dtype, "overwrite": args.overwrite}
    if args.chunks is not None:
        kwargs["chunks"] = args.chunks
    return archive.create_volume_like(name, like, **kwargs)


def _stream_filter(args: argparse.Namespace, name: str, run: Any, out_dtype: Any) -> int:
    """Open SRC read-only and DST's archive as a transaction; stream ``run`` into DST."""
    src_path, src_name = args.source
    dst_path, dst_name = args.dest
    t0 = time.perf_counter()
    with fastct.open(src_path) as src_ar, fastct.open(dst_path, "a") as dst_ar:
        src = volume_at(src_ar, args.source)
        dtype = out_dtype(src.dtype)
        run(src, new_volume_like(args, dst_ar, dst_name, src, dtype))
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


# -- options several commands take -------------------------------------------------------
def add_volume(p: argparse.ArgumentParser, arg: str, name: str, **kwargs: Any) -> None:
    """A volume argument (``fixed``) or option (``--fixed-mask``) shown as ``NAME.h5:/path``."""
    p.add_argument(arg, type=volume_spec, metavar=f"{name}.h5:/path", **kwargs)


def add_volumes(p: argparse.ArgumentParser, **names: str) -> None:
    """Positional volumes in order: ``add_volumes(p, fixed="FIXED", moving="MOVING")``."""
    for arg, name in names.items():
        add_volume(p, arg, name)


def add_per_axis(
    p: argparse.ArgumentParser, flag: str, letter: str, kind: Any, **kwargs: Any
) -> None:
    """``--sigma S[,S,S]``: one value for every axis or one per axis (:func:`_one_or_per_axis`)."""
    p.add_argument(flag, type=kind, metavar=f"{letter}[,{letter},{letter}]", **kwargs)


def add_transform_kind(p: argparse.ArgumentParser) -> None:
    """``--transform``: rigid or similarity (estimated by a registration, or the motion
    of a phantom pair)."""
    p.add_argument("--transform", choices=["rigid", "similarity"], default="rigid")


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the command name.

    Sub-commands take them without defaults (``argparse.SUPPRESS``) so an option given
    before the command name (``fastct --quiet info``) is not reset by the sub-command.
    """
    common = _Parser(add_help=False, argument_default=None if defaults else argparse.SUPPRESS)
    g = common.add_argument_group("common options")
    g.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="threads for compiled kernels (default: FASTCT_NUM_THREADS or all cores)",
    )
    g.add_argument(
        "--chunks",
        type=int_triple,
        metavar="Z,Y,X",
        help="chunk shape of new volumes (default about 64^3)",
    )
    g.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="warnings and errors only: no progress, no summaries",
    )
    g.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="log every stage (sizes, durations) and the progress of all streamed work on "
        "stderr (default: a progress bar for long work on a terminal, one-line progress "
        "records every 10 s for work over 10 s otherwise)",
    )
    return common

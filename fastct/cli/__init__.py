"""The ``fastct`` command line (also ``python -m fastct``).

Volumes are named ``FILE.h5:/path/in/file`` or ``STORE.zarr:/path`` (streamed block by
block) or are NIfTI files,
DICOM folders (inputs) or ``.npy`` files (read into memory). Bad input prints one line
``fastct: error: ...`` on stderr and exits with status 2; Ctrl-C exits with 130.
Outputs are published atomically: an interrupted command leaves every file as it was.

Layout: :mod:`fastct.cli._common` holds what every command shares (parser class, exit
codes, argument types, common options, shared options and checks); each other module adds
one family of commands through ``add_commands(command)`` and imports its heavy
dependencies lazily.
"""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import fastct

from .. import _atomic, _config, _log
from . import (
    _batch,
    _classify,
    _convert,
    _data,
    _filters,
    _pipeline,
    _registration,
    _supervoxels,
    _warmup,
)
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    _common_options,
    _Parser,
    float_list,
    int_list,
    int_triple,
    io_error_message,
    positive_int,
    volume_spec,
    with_flag_names,
)

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "float_list",
    "int_list",
    "int_triple",
    "main",
    "positive_int",
    "volume_spec",
]

#: Modules that add sub-commands, in the order ``fastct --help`` lists them.
_COMMAND_MODULES = (
    _data,
    _convert,
    _filters,
    _supervoxels,
    _registration,
    _classify,
    _pipeline,
    _batch,
    _warmup,
)


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(defaults=False)
    parser = _Parser(
        prog="fastct",
        description="Compiled-kernel engine for 3-D medical volumes. A volume argument is "
        "FILE.h5:/path/in/file or STORE.zarr:/path (an archive volume, streamed block by "
        "block), a NIfTI file "
        "(.nii, .nii.gz), a DICOM folder (inputs only) or a .npy file (with --spacing); "
        "files that are not archives are read into memory. The output format follows the "
        "destination's name and the geometry (spacing, origin, direction) travels with the "
        "data.",
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"fastct {fastct.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(
        name: str,
        func: Callable[[argparse.Namespace], int],
        help_text: str,
        *,
        example: str | None = None,
        **kwargs: Any,
    ) -> argparse.ArgumentParser:
        kwargs.setdefault("description", help_text[:1].upper() + help_text[1:] + ".")
        if example is not None:
            kwargs["epilog"] = f"example:\n  $ {example}"
        p = sub.add_parser(name, parents=[common], help=help_text, **kwargs)
        p.set_defaults(func=with_flag_names(func, p))
        p.example = example  # type: ignore[attr-defined] # docs/cli.rst shows it
        return p

    # Each command family lives in its own module; each exposes
    # ``add_commands(command)`` and imports its heavy dependencies lazily.
    for module in _COMMAND_MODULES:
        module.add_commands(command)
    return parser


def _interrupted_message(published: Sequence[Path]) -> str:
    """What an interrupted command leaves: the outputs it had already published (each
    complete: publishing is one rename) or nothing."""
    written = [str(p) for p in dict.fromkeys(published) if p.exists()]
    if not written:
        return "interrupted; no output was written"
    return f"interrupted after writing {', '.join(written)} (complete); nothing else was written"


def run() -> None:
    """The ``fastct`` process (console script, ``python -m fastct``): :func:`main`, then
    exit with its status.

    Once :func:`main` has returned, every output is complete or the interruption was
    reported. A Ctrl-C after that would land in the interpreter's exit, where Python
    has restored the default action: the process would die by SIGINT without a word
    (found by the pipeline's SIGINT fault test). So SIGINT is ignored from the return
    of :func:`main` on, and a Ctrl-C that escapes :func:`main` (one landing between its
    return and that switch, or a second one during its own report) ends the process
    with the command's status, or 130, without a traceback. :func:`main` itself runs
    no line after its handlers, so callers in Python keep their own handler.
    """
    code: int | None = None
    try:
        code = main()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if code is None:
            code = EXIT_INTERRUPTED
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    n_published, held_before = len(_atomic.published_outputs()), _atomic.held_locks()
    try:
        # Inside the try: a Ctrl-C while the parser is built is reported like any other.
        parser = build_parser()
        # pydicom warns about every oddity it tolerates; the CLI reports real problems as
        # one error line instead.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\..*)?$")
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return EXIT_USAGE
        if args.threads is not None:
            _config.set_num_threads(args.threads)
        if args.quiet and args.verbose:
            raise UsageError("--quiet and --verbose cannot be combined")
        verbosity = "quiet" if args.quiet else "verbose" if args.verbose else "default"
        previous_progress = _config.get_progress()
        if verbosity != "default":
            _config.set_progress(verbosity == "verbose")
        try:
            with _log.cli_logging(verbosity):
                return int(args.func(args) or 0)
        finally:
            _config.set_progress(previous_progress)
    except KeyboardInterrupt:
        return _report_interrupt(n_published, held_before)
    except Exception as exc:
        if _raised_by_interrupt(exc):
            return _report_interrupt(n_published, held_before)
        if isinstance(exc, (ValueError, TypeError, KeyError, OSError, ImportError)):
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            message = " ".join(io_error_message(str(message)).split())  # exactly one line
            print(f"fastct: error: {message}", file=sys.stderr)
            return EXIT_USAGE
        # HDF5 reports a failed write (disk full) as RuntimeError
        if isinstance(exc, RuntimeError) and io_error_message(str(exc)) != str(exc):
            print(f"fastct: error: {io_error_message(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        raise


def _raised_by_interrupt(exc: BaseException) -> bool:
    """True when ``exc`` was raised while a Ctrl-C unwound the stack: e.g. the standard
    library's ``threading.Condition`` interrupted between releasing and re-taking its
    lock raises 'release unlocked lock' on the way out. The Ctrl-C is the cause."""
    seen: set[int] = set()
    context = exc.__context__
    while context is not None and id(context) not in seen:
        if isinstance(context, KeyboardInterrupt):
            return True
        seen.add(id(context))
        context = context.__context__
    return False


def _report_interrupt(n_published: int, held_before: list[str]) -> int:
    # A Ctrl-C inside an archive's close can cut its lock's release short: finish it.
    _atomic.release_held_locks(keep=held_before)
    print(f"fastct: {_interrupted_message(_atomic.published_outputs(n_published))}",
          file=sys.stderr)  # fmt: skip
    return EXIT_INTERRUPTED

"""The ``warmup`` command: compile (and cache on disk) every kernel ahead of use."""

from __future__ import annotations

import argparse
import sys

from ._common import AddCommand


def cmd_warmup(args: argparse.Namespace) -> int:
    from .._warmup import STEPS, warmup

    if args.list:
        print("\n".join(STEPS))
        return 0
    warmup(args.steps or None, verbose=not args.quiet, file=sys.stderr)
    return 0


def add_commands(command: AddCommand) -> None:
    """Add ``warmup`` to the fastct parser."""
    from .._warmup import STEPS

    p = command(
        "warmup",
        cmd_warmup,
        "compile (and cache on disk) every kernel ahead of use",
        description="Runs every operation on tiny inputs so that Numba compiles each kernel "
        "once and caches it on disk; later commands load the machine code instead of "
        "compiling it (seconds per command). Prints one line per step (time, kernels "
        "compiled, kernels loaded from the cache) on stderr, unless --quiet. Run it once "
        "after installing or upgrading fastct (or Numba).",
        example="fastct warmup gaussian median",
    )
    p.add_argument(
        "steps",
        nargs="*",
        metavar="STEP",
        help=f"steps to run, of: {', '.join(STEPS)} (default: all)",
    )
    p.add_argument("--list", action="store_true", help="list the steps and exit (default: off)")

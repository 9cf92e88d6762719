"""Sub-commands ``fastct demo`` and ``fastct pipeline`` (the end-to-end job)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def cmd_demo(args: argparse.Namespace) -> int:
    """The stages that exist so far, on the built-in phantom."""
    import fastct
    from fastct.cli import _say, cmd_phantom

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ns = argparse.Namespace(**vars(args))
    ns.archive, ns.prefix, ns.seed, ns.transform, ns.overwrite = (
        out / "demo.h5",
        "scans/phantom",
        0,
        "rigid",
        True,
    )
    cmd_phantom(ns)
    with fastct.open(ns.archive) as ar:
        _say(args, ar.summary())
    _say(
        args,
        f"demo finished in {time.perf_counter() - t0:.1f} s. Implemented so far: phantom, "
        "archive, streaming engine, import/export. Filtering, supervoxels, detection, "
        "registration and the report are not implemented yet (see the open issues).",
    )
    return 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common], help="run the pipeline on the built-in phantom")
    p.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    p.add_argument("--size", default="small", help="phantom preset (default small)")
    p.set_defaults(func=cmd_demo)

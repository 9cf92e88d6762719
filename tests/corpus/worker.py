"""Run untrusted-input cases in a child process: crashes, hangs and runaway
allocations become test failures that name the case instead of killing pytest.

The child (``python worker.py``) reads one JSON case per line on stdin and answers one
JSON line per case on stdout. Its address space is capped with ``RLIMIT_AS`` (after
imports and a warm-up, so compiled kernels and thread stacks are already there): an
unbounded allocation fails inside the case instead of swapping the machine. Its file
descriptors 1 and 2 are redirected around each case, so whatever the HDF5 C library
or a warning prints is part of the case's stderr.

A case is ``{"id", "op": "api"|"cli", "format", "path", "volume", "argv", "cwd"}``;
the answer ``{"id", "outcome", ...}`` with outcome one of

``ok``          the API call returned (valid data) / the command exited 0
``error``       a clean project error: ``ValueError``/``TypeError``/``KeyError``/
                ``ImportError`` from the API, exit 2 with one ``fastct: error:`` line
                from the CLI
``bad``         anything else (another exception type, a traceback, several lines,
                another exit status); ``detail`` says what

and the parent (:class:`Pool`) adds ``crash`` (the child died: ``detail`` has its exit
status or signal) and ``hang`` (no answer within the timeout; the child is killed).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

#: Clean errors of the API readers (ArchiveDamagedError, ModelFileError and
#: UntrustedModelError are ValueErrors; a missing DICOM decoder is an ImportError).
CLEAN = (ValueError, TypeError, KeyError, ImportError)
#: Address space granted on top of what the warmed-up worker already maps.
HEADROOM = 1536 * 1024**2


# -- child side -------------------------------------------------------------------------
def api_read(fmt: str, path: str, volume: str | None) -> str:
    """Read ``path`` as a user of the API would; a short description of what came back."""
    import numpy as np

    import fastct

    if fmt in ("hdf5", "zarr"):
        with fastct.open(path) as ar:
            names = [volume] if volume else ar.volumes()
            shapes = []
            for name in names:
                vol = ar[name]
                if not isinstance(vol, fastct.Volume):  # damage turned it into a group
                    raise KeyError(f"{name!r} is not a volume in this archive")
                data = vol.read()
                _ = (vol.spacing, vol.origin, vol.direction, vol.modality, vol.units)
                assert data.shape == vol.shape and np.isfinite(np.asarray(vol.spacing)).all()
                shapes.append(data.shape)
            ar.summary()
            return f"{len(names)} volume(s) {shapes}"
    if fmt == "model":
        from fastct.classify import load_model

        return type(load_model(path)).__name__
    from fastct.io import read_volume

    kw = {"spacing": (1.0, 1.0, 1.0)} if fmt == "npy" else {}
    img = read_volume(path, **kw)
    spacing = np.asarray(img.spacing, dtype=float)
    assert np.isfinite(spacing).all() and (spacing > 0).all(), img.spacing
    assert np.isfinite(np.asarray(img.origin, dtype=float)).all(), img.origin
    return f"{img.array.shape} {img.array.dtype}"


@contextlib.contextmanager
def _captured() -> Any:
    """Redirect fds 1 and 2 (and sys.stdout/stderr) to files; yields a dict filled with
    their text when the block ends."""
    import io

    got: dict[str, str] = {}
    files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    saved = [os.dup(1), os.dup(2)]
    py = (sys.stdout, sys.stderr)
    out, err = io.StringIO(), io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(files[0].fileno(), 1)
    os.dup2(files[1].fileno(), 2)
    sys.stdout, sys.stderr = out, err
    try:
        yield got
    finally:
        sys.stdout, sys.stderr = py
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        texts = []
        for f in files:
            f.seek(0)
            texts.append(f.read().decode("utf-8", "replace"))
            f.close()
        got["stdout"] = out.getvalue() + texts[0]
        got["stderr"] = err.getvalue() + texts[1]


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {"id": case["id"]}
    cwd = case.get("cwd")
    if cwd:
        os.chdir(cwd)
    if case["op"] == "api":
        try:
            with _captured():
                answer["detail"] = api_read(case["format"], case["path"], case.get("volume"))
            answer["outcome"] = "ok"
        except CLEAN as exc:
            answer.update(outcome="error", type=type(exc).__name__, detail=str(exc)[:500])
        except BaseException as exc:  # noqa: BLE001 - the point is to report it
            answer.update(outcome="bad", type=type(exc).__name__,
                          detail="".join(traceback.format_exception(exc))[-3000:])  # fmt: skip
        return answer
    from fastct.cli import main

    code: Any
    with _captured() as got:
        try:
            code = main(case["argv"])
        except BaseException as exc:  # noqa: BLE001 - what the CLI let escape
            code = f"escaped {type(exc).__name__}: {exc}"
            traceback.print_exc()
    lines = got["stderr"].strip().splitlines()
    answer.update(code=code, stderr=lines[:20])
    if code == 0:
        answer["outcome"] = "ok"
    elif code == 2 and len(lines) == 1 and lines[0].startswith("fastct: error: "):
        answer.update(outcome="error", detail=lines[0])
    else:
        answer.update(outcome="bad", detail=f"exit {code!r}, stderr {lines[:20]!r}")
    return answer


def _address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def child_main() -> int:
    import resource

    warmup = json.loads(os.environ.get("FASTCT_WORKER_WARMUP", "[]"))
    for case in warmup:  # compile / load kernels before the cap
        run_case(case)
    mapped = _address_space()
    cap = mapped + int(os.environ.get("FASTCT_WORKER_HEADROOM", HEADROOM)) if mapped else None
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    if cap is not None and (hard == resource.RLIM_INFINITY or cap <= hard):
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))  # no /proc: no cap
    home = os.getcwd()
    print(json.dumps({"ready": True, "cap": cap}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        case = json.loads(line)
        try:
            answer = run_case(case)
        except MemoryError:
            answer = {"id": case["id"], "outcome": "bad", "detail": "MemoryError outside a case"}
        os.chdir(home)
        print(json.dumps(answer), flush=True)
    return 0


# -- parent side ------------------------------------------------------------------------
class Pool:
    """One worker process at a time, restarted after a crash or a hang."""

    def __init__(self, warmup: list[dict[str, Any]] | None = None, *, start_timeout: float = 600):
        self.warmup = warmup or []
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def _start(self) -> None:
        env = dict(os.environ, FASTCT_WORKER_WARMUP=json.dumps(self.warmup),
                   PYTHONFAULTHANDLER="1")  # fmt: skip
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env=env, start_new_session=True,
        )  # fmt: skip
        self.starts += 1
        line = self._readline(self.start_timeout)
        if line is None or "ready" not in line:
            self.close()
            raise RuntimeError(f"the fuzz worker did not start: {line!r}")

    def _readline(self, timeout: float) -> str | None:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                return self.proc.stdout.readline()

    def run(self, case: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(case) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self._readline(timeout)
        if line:
            return json.loads(line)
        if line is None:
            self.close()
            return {"id": case["id"], "outcome": "hang", "detail": f"no answer in {timeout:g} s"}
        code = self.proc.wait()
        self.close()
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        return {"id": case["id"], "outcome": "crash", "detail": f"the interpreter died ({how})"}

    def close(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()  # type: ignore[union-attr]
            self.proc = None


if __name__ == "__main__":
    raise SystemExit(child_main())

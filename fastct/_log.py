"""Logging and progress: the ``fastct`` logger hierarchy and the one progress policy.

fastct logs through the standard :mod:`logging` module, under the ``fastct`` logger and
its children (``fastct.streaming``, ``fastct.registration``, ``fastct.pipeline``...). As
a library it configures nothing: the ``fastct`` logger has a :class:`logging.NullHandler`,
so nothing is printed unless the application configures logging (the command line does,
see :func:`cli_logging`). INFO records mark the boundaries of long work: a streamed
operation's start (shape, size, blocks) and end (duration, throughput), registration
levels, pipeline stages.

Progress of one long operation (:class:`Progress`) is shown one of two ways:

- stderr is a terminal: a tqdm bar on stderr, as before;
- stderr is not a terminal (CI logs, ``nohup``, cluster jobs): one-line records on the
  ``fastct.progress`` logger, e.g. ``gaussian: 45% (123/270 blocks, 12.3 s, about 15 s
  left)``. With progress forced on (``fastct.set_progress(True)``, CLI ``--verbose``)
  one record every 10 % of the work; in the automatic mode one every
  :data:`PROGRESS_INTERVAL` seconds, so work shorter than that logs no progress at all.

:func:`progress_mode` is the one decision between the two, for every caller.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from typing import Any

__all__ = [
    "PROGRESS_INTERVAL",
    "Progress",
    "cli_logging",
    "get_logger",
    "progress_logger",
    "progress_mode",
    "start_progress",
    "stderr_is_terminal",
]

logger = logging.getLogger("fastct")
logger.addHandler(logging.NullHandler())  # a library prints nothing unless asked to
#: Periodic progress records (not a terminal); the CLI shows these by default.
progress_logger = logging.getLogger("fastct.progress")

#: Seconds between two progress records of one operation in the automatic mode.
PROGRESS_INTERVAL = 10.0
#: Automatic mode on a terminal: a bar only for work on more than this many bytes.
BAR_BYTES = 256 * 1024**2


def get_logger(name: str) -> logging.Logger:
    """The logger of a fastct module: ``get_logger(__name__)`` (``fastct.x.y``)."""
    return logging.getLogger(name if name.startswith("fastct") else f"fastct.{name}")


def stderr_is_terminal() -> bool:
    """True when ``sys.stderr`` is an interactive terminal (False when it is missing,
    closed, redirected to a file or a pipe)."""
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def progress_mode(progress: bool | None, *, long: bool = True) -> str | None:
    """How to show the progress of one operation: ``"bar"``, ``"log"`` or None.

    ``progress``: True/False forces it on/off; None follows ``fastct.set_progress``, and
    when that is automatic too, a terminal gets a bar only for ``long`` work and
    anything else gets time-based records (``"log"``: nothing for work shorter than
    :data:`PROGRESS_INTERVAL`).
    """
    if progress is None:
        from ._config import get_progress

        progress = get_progress()
    if progress is False:
        return None
    if stderr_is_terminal():
        return "bar" if (progress is True or long) else None
    return "log"


class Progress:
    """Progress of one operation over ``total`` steps: ``update(n)`` then ``close()``.

    ``mode`` is :func:`progress_mode`'s answer; ``forced`` (progress explicitly on) logs
    every 10 % of the work, otherwise a record is due every ``interval`` seconds (default
    :data:`PROGRESS_INTERVAL`).
    Thread-safe enough for one writer thread (logging is thread-safe).
    """

    def __init__(
        self,
        total: int,
        desc: str,
        mode: str,
        *,
        unit: str = "block",
        forced: bool = False,
        interval: float | None = None,
    ):
        self.total = max(int(total), 1)
        self.desc = desc
        self.unit = unit
        self.done = 0
        self.forced = forced
        self.interval = PROGRESS_INTERVAL if interval is None else float(interval)
        self.start = self.last = time.monotonic()
        self.step = 0  # last 10 % step logged
        self.logged = False
        self.bar: Any = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        step = math.floor(10 * self.done / self.total)
        due = now - self.last >= self.interval
        if self.forced and step > self.step:
            due = True
        if self.done == self.total and self.logged:
            due = True  # a log that showed the start shows the end
        if due:
            self.step, self.last = step, now
            self._record(now)

    def _record(self, now: float) -> None:
        elapsed = now - self.start
        pct = 100.0 * self.done / self.total
        units = self.unit + ("s" if self.total != 1 else "")
        text = f"{self.desc}: {pct:.0f}% ({self.done}/{self.total} {units}, {elapsed:.1f} s"
        if 0 < self.done < self.total:
            text += f", about {elapsed * (self.total - self.done) / self.done:.0f} s left"
        progress_logger.info(text + ")")
        self.logged = True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def start_progress(
    total: int,
    desc: str,
    progress: bool | None,
    *,
    long: bool = True,
    unit: str = "block",
) -> Progress | None:
    """A :class:`Progress` over ``total`` steps, or None when none is to be shown
    (``progress`` and ``long`` as in :func:`progress_mode`; one step shows nothing)."""
    if progress is None:
        from ._config import get_progress

        progress = get_progress()
    mode = progress_mode(progress, long=long)
    if mode is None or total <= 1:
        return None
    return Progress(total, desc, mode, unit=unit, forced=progress is True)


# -- the command line's logging ------------------------------------------------------------
class _CliFormatter(logging.Formatter):
    """``fastct: 12:03:04 message``; warnings and errors name their level."""

    def __init__(self) -> None:
        super().__init__("fastct: %(asctime)s %(message)s", datefmt="%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        text = super().formatMessage(record)
        if record.levelno >= logging.WARNING:
            text = text.replace(
                f"{record.asctime} ", f"{record.asctime} {record.levelname.lower()}: ", 1
            )
        return text


@contextlib.contextmanager
def cli_logging(verbosity: str = "default") -> Iterator[logging.Handler]:
    """Log ``fastct`` records to stderr, one line each, for the duration of a command.

    ``verbosity``: ``"quiet"`` shows warnings only; ``"default"`` warnings and the
    ``fastct.progress`` records (long work on a non-terminal stderr); ``"verbose"``
    every INFO record. Logger levels and handlers are restored afterwards, so running
    the CLI in-process (tests, notebooks) leaves the caller's logging as it was.
    """
    if verbosity not in ("quiet", "default", "verbose"):
        raise ValueError(f"verbosity must be 'quiet', 'default' or 'verbose', got {verbosity!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_CliFormatter())
    saved = (logger.level, progress_logger.level)
    logger.setLevel(logging.INFO if verbosity == "verbose" else logging.WARNING)
    progress_logger.setLevel(logging.WARNING if verbosity == "quiet" else logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        progress_logger.setLevel(saved[1])

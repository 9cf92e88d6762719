"""What the stages of a run share: the options, the open archive, the clock, and the
volumes and results built so far."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ..volume import Archive, Volume
    from ._outputs import PipelineResult

#: The two scans of a run, in the order their per-scan stages run.
TIMEPOINTS = ("baseline", "followup")


@dataclass(frozen=True)
class RunOptions:
    """The checked parameters of :func:`fastct.pipeline.run` that steer the stages."""

    run_name: str
    transform: str
    interval_days: float | None
    enhance_radius_mm: float
    enhance_amount: float
    match_tolerance_mm: float | None
    report: bool
    max_memory: int | None = None


@dataclass
class RunContext:
    """Everything the stages of one run read and write.

    Set before the run: ``scans`` (time point -> volume path in the archive),
    ``options``, ``detector``, ``truth`` (phantom ground truth or None), ``out_dir``. Set when the run starts: ``clock``, ``archive`` (open for writing, a
    transaction committed only when every stage succeeded) and ``folder`` (the output
    folder's temporary twin, renamed onto ``out_dir`` at the end). The stages fill
    in the rest, in table order.
    """

    scans: dict[str, str]
    options: RunOptions
    detector: Any
    truth: dict[str, Any] | None
    out_dir: Path
    clock: Clock | None = None
    archive: Archive | None = None
    folder: Path | None = None
    # per time point: 'image', 'denoised', 'enhanced', 'lungs', 'supervoxels', 'probability'
    volumes: dict[str, dict[str, Volume]] = field(default_factory=dict)
    lung_masks: dict[str, np.ndarray] = field(default_factory=dict)  # lungs -> supervoxels
    # per time point, when the scan fits ``max_memory``: in-memory copies of 'image',
    # 'denoised' and 'supervoxels' that the next stages read instead of the archive
    # (written to the archive as well; dropped after the detection)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    detections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # the pair
    registration: Any = None
    registration_info: dict[str, Any] = field(default_factory=dict)
    registered: Volume | None = None
    difference: Volume | None = None
    interval_days: float | None = None
    nodules: list[dict[str, Any]] = field(default_factory=list)
    # per time point: lung extent (location rule), operating threshold, candidates below it
    lung_extents: dict[str, dict[str, float] | None] = field(default_factory=dict)
    thresholds: dict[str, float | None] = field(default_factory=dict)
    candidates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    model_info: dict[str, Any] = field(default_factory=dict)
    truth_info: dict[str, Any] | None = None
    result: PipelineResult | None = None

    @property
    def root(self) -> str:
        """The run's results group in the archive."""
        return f"/results/{self.options.run_name}"

    def group(self, timepoint: str) -> str:
        """The results group of one time point."""
        return f"{self.root}/{timepoint}"


def _io_bytes() -> tuple[int, int] | None:
    """Bytes this process has read from and written to storage (Linux), or None."""
    try:
        with open("/proc/self/io", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["read_bytes"]), int(fields["write_bytes"])
    except (OSError, KeyError, ValueError):
        return None


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (0 where unknown)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak / 1e3  # bytes vs KiB


class Clock:
    """Per-stage wall-clock timings, with an optional bar over the stages.

    ``progress``: True draws a bar on stderr, a callable is called with
    ``(label, seconds)`` after each stage, None follows ``fastct.set_progress`` (a bar
    when stderr is a terminal), False is silent.
    """

    def __init__(self, progress: Any, n_steps: int):
        self.timings: dict[str, float] = {}
        #: per stage: process CPU seconds, MB read and written (Linux /proc/self/io,
        #: storage reads and writes), and the process's peak resident MB when it ended
        self.profile: dict[str, dict[str, float]] = {}
        self.callback = progress if callable(progress) else None
        self.bar = None
        from .. import _log

        # A bar on a terminal; elsewhere (CI logs, nohup) one fastct.progress record per stage.
        mode = _log.progress_mode(progress if progress in (None, True) else False)
        self.log = _log.progress_logger if mode == "log" else _log.get_logger(__name__)
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=n_steps, desc="pipeline", unit="stage", file=sys.stderr)

    @contextlib.contextmanager
    def stage(self, name: str, label: str | None = None) -> Iterator[None]:
        """Time the block as stage ``name`` (summed over repeats), shown as ``label``."""
        label = label or name
        if self.bar is not None:
            self.bar.set_postfix_str(label)
        t0, c0, io0 = time.perf_counter(), time.process_time(), _io_bytes()
        yield
        dt = time.perf_counter() - t0
        self.timings[name] = self.timings.get(name, 0.0) + dt
        row = self.profile.setdefault(
            name, {"cpu_s": 0.0, "read_mb": 0.0, "written_mb": 0.0, "peak_rss_mb": 0.0}
        )
        row["cpu_s"] += time.process_time() - c0
        io1 = _io_bytes()
        if io0 is not None and io1 is not None:
            row["read_mb"] += (io1[0] - io0[0]) / 1e6
            row["written_mb"] += (io1[1] - io0[1]) / 1e6
        row["peak_rss_mb"] = max(row["peak_rss_mb"], _peak_rss_mb())
        if self.bar is not None:
            self.bar.update(1)
        if self.callback is not None:
            self.callback(label, dt)
        self.log.info("pipeline: %s done in %.1f s", label, dt)

    def ordered(self, names: Sequence[str]) -> dict[str, float]:
        """The timings of the stages that ran, in the order of ``names``."""
        return {k: self.timings[k] for k in names if k in self.timings}

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

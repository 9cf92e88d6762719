"""Logging and progress: the ``fastct`` logger hierarchy, progress records when stderr is
not a terminal, the CLI's --verbose/--quiet, and silence for a library left unconfigured."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastct
from fastct import _config, _log
from fastct.streaming import map_overlap, slabs, stream

ROOT = Path(__file__).resolve().parent.parent


def box(data, info):
    """A 3-tap mean along the last axis: pure NumPy, nothing to compile."""
    c = info.core
    return (
        data[c[0], c[1].start - 1 : c[1].stop - 1]
        + data[c]
        + data[c[0], c[1].start + 1 : c[1].stop + 1]
    ) / 3


def _records(caplog, name):
    return [r.getMessage() for r in caplog.records if r.name == name]


@pytest.fixture
def not_a_terminal(monkeypatch):
    monkeypatch.setattr(_log, "stderr_is_terminal", lambda: False)


@pytest.fixture
def a_terminal(monkeypatch):
    monkeypatch.setattr(_log, "stderr_is_terminal", lambda: True)


def test_library_logger_has_a_null_handler_only():
    logger = logging.getLogger("fastct")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    assert all(isinstance(h, logging.NullHandler) for h in logger.handlers)
    assert _log.get_logger("fastct.streaming").name == "fastct.streaming"
    assert _log.get_logger("streaming").name == "fastct.streaming"


def test_forced_progress_off_a_terminal_logs_every_tenth(caplog, not_a_terminal):
    fastct.set_progress(True)
    caplog.set_level(logging.INFO, logger="fastct")
    img = np.random.default_rng(0).random((20, 30))
    out = map_overlap(box, img, depth=1, dtype=np.float64, block_shape=(2, 30), desc="box")
    ref = map_overlap(box, img, depth=1, dtype=np.float64, block_shape=(20, 30), progress=False)
    np.testing.assert_array_equal(out, ref)  # progress changes nothing in the result
    progress = _records(caplog, "fastct.progress")
    assert len(progress) == 10, progress  # 10 blocks: one record per 10 %
    assert progress[0].startswith("box: 10% (1/10 blocks, ") and "s left)" in progress[0]
    assert progress[-1].startswith("box: 100% (10/10 blocks, ")
    # start and end of the operation, with sizes and duration
    info = _records(caplog, "fastct.streaming")
    assert info[0] == "box: 20x30 (4.7 KiB) in 10 blocks of 2x30"
    assert info[1].startswith("box: done in ") and "MiB/s" in info[1]
    assert info[2] == "box: 20x30 (4.7 KiB) in 1 block of 20x30"  # the reference run


def test_progress_records_are_one_per_step_at_most(caplog, not_a_terminal):
    fastct.set_progress(True)
    caplog.set_level(logging.INFO, logger="fastct.progress")
    map_overlap(box, np.zeros((100, 8)), depth=1, block_shape=(1, 8), desc="many")
    progress = _records(caplog, "fastct.progress")
    assert [p.split("%")[0] for p in progress] == [f"many: {k}" for k in range(10, 101, 10)]


def test_automatic_progress_is_time_based(caplog, not_a_terminal, monkeypatch):
    caplog.set_level(logging.INFO, logger="fastct.progress")
    img = np.zeros((12, 8))
    map_overlap(box, img, depth=1, block_shape=(3, 8), desc="short")
    assert _records(caplog, "fastct.progress") == []  # shorter than PROGRESS_INTERVAL
    monkeypatch.setattr(_log, "PROGRESS_INTERVAL", 0.0)  # every block is "10 s later"
    map_overlap(box, img, depth=1, block_shape=(3, 8), desc="long")
    assert [p.split(" (")[0] for p in _records(caplog, "fastct.progress")] == [
        "long: 25%",
        "long: 50%",
        "long: 75%",
        "long: 100%",
    ]


def test_stream_logs_slabs(caplog, not_a_terminal):
    fastct.set_progress(True)
    caplog.set_level(logging.INFO, logger="fastct")
    vol = np.arange(40.0).reshape(10, 2, 2)
    total = 0.0
    for _slab, data in stream(slabs(10, 2), lambda s: vol[s.lo : s.hi], desc="sum", nbytes=320):
        total += float(data.sum())
    assert total == float(vol.sum())
    assert _records(caplog, "fastct.streaming")[0] == "sum: 5 slabs over 320 B"
    assert _records(caplog, "fastct.streaming")[-1].startswith("sum: done in ")
    assert _records(caplog, "fastct.progress")[-1].startswith("sum: 100% (5/5 slabs, ")


def test_progress_off_logs_no_progress(caplog, not_a_terminal):
    fastct.set_progress(False)
    caplog.set_level(logging.INFO, logger="fastct")
    map_overlap(box, np.zeros((20, 8)), depth=1, block_shape=(2, 8))
    assert _records(caplog, "fastct.progress") == []
    assert _records(caplog, "fastct.streaming")  # the stage records stay


def test_terminal_gets_a_bar_not_records(caplog, a_terminal, capsys):
    fastct.set_progress(True)
    caplog.set_level(logging.INFO, logger="fastct.progress")
    map_overlap(box, np.zeros((20, 8)), depth=1, block_shape=(2, 8), desc="barred")
    assert _records(caplog, "fastct.progress") == []
    assert "barred" in capsys.readouterr().err  # tqdm drew on stderr


def test_progress_mode_policy(monkeypatch):
    monkeypatch.setattr(_log, "stderr_is_terminal", lambda: True)
    assert _log.progress_mode(None, long=False) is None
    assert _log.progress_mode(None, long=True) == "bar"
    assert _log.progress_mode(True, long=False) == "bar"
    assert _log.progress_mode(False) is None
    monkeypatch.setattr(_log, "stderr_is_terminal", lambda: False)
    assert _log.progress_mode(None, long=False) == "log"
    assert _log.progress_mode(True) == "log"
    fastct.set_progress(False)
    assert _log.progress_mode(None) is None


def test_stderr_is_terminal_survives_odd_streams(monkeypatch):
    monkeypatch.setattr(sys, "stderr", None)
    assert _log.stderr_is_terminal() is False

    class Closed:
        def isatty(self):
            raise ValueError("I/O operation on closed file")

    monkeypatch.setattr(sys, "stderr", Closed())
    assert _log.stderr_is_terminal() is False


# -- the command line --------------------------------------------------------------------
def test_cli_logging_levels_and_restores(capsys):
    logger, progress = logging.getLogger("fastct"), logging.getLogger("fastct.progress")
    before = (logger.level, progress.level, list(logger.handlers))
    for verbosity, shown in [
        ("verbose", ["info", "progress", "warning"]),
        ("default", ["progress", "warning"]),
        ("quiet", ["warning"]),
    ]:
        with _log.cli_logging(verbosity):
            logging.getLogger("fastct.streaming").info("info")
            progress.info("progress")
            logging.getLogger("fastct.io").warning("warning")
        lines = capsys.readouterr().err.splitlines()
        assert [line.split(" ", 2)[2] for line in lines] == [
            "warning: warning" if s == "warning" else s for s in shown
        ], verbosity
        assert all(line.startswith("fastct: ") for line in lines)
    assert (logger.level, progress.level, list(logger.handlers)) == before
    with pytest.raises(ValueError, match="verbosity"):
        with _log.cli_logging("loud"):
            pass


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("log") / "in.h5"
    with fastct.open(path, "w") as ar:
        ar.create_volume(
            "scans/a/image",
            np.random.default_rng(0).random((24, 24, 24)).astype(np.float32),
            spacing=(1.0, 1.0, 1.0),
        )
    return path


def _gaussian_args(src, tmp_path, name, *flags):
    return ["gaussian", f"{src}:/scans/a/image", f"{tmp_path / name}:/g", "--sigma", "1", *flags]


def test_cli_verbose_quiet_default(small_archive, tmp_path, capsys):
    from fastct.cli import main

    assert main(_gaussian_args(small_archive, tmp_path, "v.h5", "--verbose")) == 0
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith("fastct: ") for line in err), err
    assert any("gaussian: 24x24x24" in line for line in err)
    assert any("gaussian: done in" in line for line in err)
    assert _config.get_progress() is None  # --verbose does not outlive the command

    assert main(_gaussian_args(small_archive, tmp_path, "q.h5", "--quiet")) == 0
    assert capsys.readouterr().err == ""
    assert main(_gaussian_args(small_archive, tmp_path, "d.h5")) == 0
    assert capsys.readouterr().err == ""  # short work: no records by default

    assert main(_gaussian_args(small_archive, tmp_path, "x.h5", "--quiet", "--verbose")) == 2
    assert "--quiet and --verbose cannot be combined" in capsys.readouterr().err


def _run_cli(*args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "fastct.cli", *map(str, args)],
        capture_output=True,  # stderr is a pipe, not a terminal
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.slow
def test_cli_subprocess_progress_records_on_a_pipe(small_archive, tmp_path):
    """A fresh ``python -m fastct.cli`` with stderr on a pipe: --verbose logs the stages and
    the progress (small memory budget: many blocks), --quiet logs nothing."""
    # Output chunks of 4 planes and a budget of about 4 planes: 6 blocks.
    budget = {"FASTCT_MEMORY_BUDGET": str(24 * 24 * 4 * 4)}
    args = _gaussian_args(small_archive, tmp_path, "v.h5", "--verbose", "--chunks", "4,24,24")
    proc = _run_cli(*args, env_extra=budget)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert all(re.match(r"fastct: \d\d:\d\d:\d\d ", line) for line in lines), lines
    assert any(
        line.endswith(" gaussian: 24x24x24 (54.0 KiB) in 6 blocks of 4x24x24") for line in lines
    ), lines
    assert any(" gaussian: 50% (3/6 blocks, " in line for line in lines), lines
    assert any(" gaussian: 100% (6/6 blocks, " in line for line in lines), lines
    assert "%" not in proc.stdout  # records go to stderr only

    proc = _run_cli(*_gaussian_args(small_archive, tmp_path, "q.h5", "--quiet"), env_extra=budget)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout == ""


def test_library_prints_nothing_without_logging_configured(tmp_path):
    """No handler configured: progress forced on, stderr a pipe, still nothing printed."""
    code = textwrap.dedent(
        """
        import numpy as np
        import fastct
        from fastct import _log
        from fastct.streaming import map_overlap
        _log.PROGRESS_INTERVAL = 0.0
        fastct.set_progress(True)
        map_overlap(lambda d, i: d[i.core], np.zeros((50, 4)), depth=1, block_shape=(5, 4))
        import logging
        logging.getLogger("fastct.registration").warning("left to the application")
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    # The library's NullHandler keeps logging's last-resort handler quiet too.
    assert proc.stderr == ""


def test_pipeline_stages_are_progress_records_off_a_terminal(caplog, not_a_terminal):
    from fastct.pipeline._context import Clock

    caplog.set_level(logging.INFO, logger="fastct")
    clock = Clock(None, 2)
    with clock.stage("denoise"):
        pass
    clock.close()
    assert [m.split(" in ")[0] for m in _records(caplog, "fastct.progress")] == [
        "pipeline: denoise done"
    ]
    caplog.clear()
    clock = Clock(False, 2)  # progress off: an ordinary INFO record, no progress record
    with clock.stage("register"):
        pass
    assert _records(caplog, "fastct.progress") == []
    assert any(m.startswith("pipeline: register done") for m in caplog.messages)

"""An interrupted command says truthfully whether its output was written.

Publishing an output is one rename, recorded with SIGINT held back, so Ctrl-C either
lands before it (nothing written) or after it (the output is there, complete).
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

import numpy as np
import pytest

import fastct
from fastct import _atomic
from fastct.cli import main


@pytest.fixture
def npy_input(tmp_path):
    image = np.random.default_rng(3).normal(size=(6, 9, 8)).astype(np.float32)
    np.save(tmp_path / "in.npy", image)
    return tmp_path / "in.npy", image


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_interrupt_before_publishing_says_nothing_was_written(
    tmp_path, npy_input, monkeypatch, capsys
):
    src, _ = npy_input
    dst = tmp_path / "out.npy"
    monkeypatch.setattr(_atomic, "fsync_path", _interrupt)  # runs just before the rename
    assert main(["gaussian", str(src), str(dst), "--sigma", "1", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "fastct: interrupted; no output was written"
    assert not dst.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.npy"]  # no temp file left


def test_interrupt_after_publishing_names_the_complete_output(
    tmp_path, npy_input, monkeypatch, capsys
):
    src, image = npy_input
    dst = tmp_path / "out.npy"
    monkeypatch.setattr(_atomic, "fsync_dir", _interrupt)  # runs just after the rename
    assert main(["gaussian", str(src), str(dst), "--sigma", "1", "--quiet"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"fastct: interrupted after writing {dst} (complete); nothing else was written"
    assert np.array_equal(np.load(dst), fastct.gaussian(image, 1.0))


def test_an_earlier_command_output_is_not_reported(tmp_path, npy_input, monkeypatch, capsys):
    src, _ = npy_input
    assert main(["gaussian", str(src), str(tmp_path / "first.npy"), "--sigma", "1"]) == 0
    monkeypatch.setattr(_atomic, "fsync_path", _interrupt)
    assert main(["gaussian", str(src), str(tmp_path / "second.npy"), "--sigma", "1"]) == 130
    assert capsys.readouterr().err.strip().endswith("interrupted; no output was written")


def test_published_folder_is_recorded_and_replaces_the_old_one(tmp_path):
    n = len(_atomic.published_outputs())
    out = tmp_path / "report"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with _atomic.atomic_folder(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert _atomic.published_outputs(n) == [out]
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no trash left


@pytest.fixture
def python_sigint_handler():
    """Python's own Ctrl-C handler (earlier code in the process may have replaced it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_sigint_during_the_rename_is_delivered_after_it_is_recorded(
    tmp_path, python_sigint_handler
):
    """A real SIGINT sent while the rename runs: it arrives after the record."""
    assert threading.current_thread() is threading.main_thread()
    n = len(_atomic.published_outputs())
    path = tmp_path / "a.bin"
    seen_inside = []
    with pytest.raises(KeyboardInterrupt):
        with _atomic._sigint_held():
            os.kill(os.getpid(), signal.SIGINT)  # pending: held back
            time.sleep(0.05)  # the handler has run by now
            seen_inside.append(True)  # still running: no KeyboardInterrupt yet
            tmp = tmp_path / "tmp.bin"
            tmp.write_bytes(b"x")
            os.replace(tmp, path)
            _atomic._PUBLISHED.append(path)
    assert seen_inside == [True]
    assert _atomic.published_outputs(n) == [path]


def test_sigint_while_the_archive_lock_is_released_leaves_it_free(tmp_path, python_sigint_handler):
    """A Ctrl-C landing as a writer releases its lock (after publishing): the lock is
    released all the same (no stale lock file; the next writer in this process is not
    refused) and the interrupt is raised after."""
    path = tmp_path / "a.h5"
    real_unlink = os.unlink

    def unlink_then_interrupt(target, *args, **kwargs):
        if str(target).endswith(".lock"):
            os.kill(os.getpid(), signal.SIGINT)  # held back until the release is done
        real_unlink(target, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_atomic.os, "unlink", unlink_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            with fastct.open(path, "w") as ar:
                ar.create_volume("v", np.zeros((2, 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]
    with fastct.open(path, "a") as ar:  # not "already open for writing in this process"
        ar.create_volume("w", np.ones((2, 3)))


def _first_release_interrupted(monkeypatch) -> list:
    """The first lock release raises KeyboardInterrupt before it starts (a Ctrl-C landing
    before the release holds SIGINT back); returns the list of release calls."""
    real_release = _atomic._release
    calls: list = []

    def interrupted_release(*args):
        calls.append(args)
        if len(calls) == 1:
            raise KeyboardInterrupt
        real_release(*args)

    monkeypatch.setattr(_atomic, "_release", interrupted_release)
    return calls


def test_interrupt_before_the_lock_release_holds_sigint_is_finished_by_the_cli(
    tmp_path, npy_input, monkeypatch, capsys
):
    """No Python line is safe from a Ctrl-C: one landing in an archive's close before the
    lock's release holds SIGINT back leaves the lock held; the CLI's interrupt handler
    finishes the release (no stale .lock file, the next writer is not refused)."""
    src, image = npy_input
    dst = tmp_path / "out.h5"
    calls = _first_release_interrupted(monkeypatch)
    assert main(["gaussian", str(src), f"{dst}:/out", "--sigma", "1", "--quiet"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"fastct: interrupted after writing {dst} (complete); nothing else was written"
    assert len(calls) == 2 and _atomic.held_locks() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "out.h5"]
    with fastct.open(dst, "a") as ar:  # not "already open for writing in this process"
        assert np.array_equal(ar["out"].read(), fastct.gaussian(image, 1.0))


def test_release_held_locks_keeps_the_locks_it_is_told_to(tmp_path):
    first, second = _atomic.file_lock(tmp_path / "a.h5"), _atomic.file_lock(tmp_path / "b.h5")
    first.__enter__()
    kept = _atomic.held_locks()
    second.__enter__()  # never exited: as if a Ctrl-C cut its release short
    _atomic.release_held_locks(keep=kept)
    assert _atomic.held_locks() == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.h5.lock"]
    first.__exit__(None, None, None)
    assert _atomic.held_locks() == [] and list(tmp_path.iterdir()) == []


def test_an_api_user_can_write_again_after_a_ctrl_c_cut_a_lock_release_short(tmp_path, monkeypatch):
    """Outside the CLI: once the interrupted ``with`` block's exception is handled, the
    lock object is dropped and its finalizer finishes the release."""
    path = tmp_path / "a.h5"
    calls = _first_release_interrupted(monkeypatch)
    try:
        with fastct.open(path, "w") as ar:
            ar.create_volume("v", np.zeros((2, 3)))
    except KeyboardInterrupt:
        pass
    gc.collect()
    assert len(calls) == 2 and _atomic.held_locks() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]
    with fastct.open(path, "a") as ar:  # not "already open for writing in this process"
        ar.create_volume("w", np.ones((2, 3)))


def test_an_error_raised_while_a_ctrl_c_unwinds_is_reported_as_the_interrupt(
    tmp_path, npy_input, monkeypatch, capsys
):
    """The standard library can raise on the way out of a Ctrl-C (threading.Condition
    interrupted between releasing and re-taking its lock: 'release unlocked lock'): the
    command reports the interrupt, in one line, not a traceback."""
    src, _ = npy_input

    def interrupted_then_broken(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("release unlocked lock")

    monkeypatch.setattr(_atomic, "fsync_path", interrupted_then_broken)
    argv = ["gaussian", str(src), str(tmp_path / "out.npy"), "--sigma", "1", "--quiet"]
    assert main(argv) == 130
    assert capsys.readouterr().err.strip() == "fastct: interrupted; no output was written"
    assert [p.name for p in tmp_path.iterdir()] == ["in.npy"]


def test_interrupted_zarr_publish_leaves_no_empty_group(tmp_path, monkeypatch, capsys):
    from fastct import _store_zarr

    store = tmp_path / "s.zarr"
    with fastct.open(store, "w") as ar:
        ar.create_volume("scans/b/image", np.zeros((3, 4, 5), np.int16))
    monkeypatch.setattr(_store_zarr, "_fsync_tree", _interrupt)  # just before the rename
    argv = ["gaussian", f"{store}:/scans/b/image", f"{store}:/scans/new/out", "--sigma", "1"]
    assert main(argv) == 130
    assert capsys.readouterr().err.strip() == "fastct: interrupted; no output was written"
    assert not (store / "scans" / "new").exists()


def test_a_ctrl_c_after_the_command_returned_is_ignored(tmp_path, npy_input):
    """Found by the pipeline's SIGINT fault test: a Ctrl-C that lands after the command
    finished, in the interpreter's exit, killed the process by SIGINT without a word
    (Python restores the default action there). The process entry (``run``) ignores
    SIGINT from the end of ``main`` on, so the exit status stays the command's; ``main``
    called in a process of its own (the API, these tests) leaves the handler alone."""
    import subprocess
    import sys

    src, _ = npy_input
    before = signal.getsignal(signal.SIGINT)
    assert main(["gaussian", str(src), str(tmp_path / "a.npy"), "--sigma", "1", "--quiet"]) == 0
    assert signal.getsignal(signal.SIGINT) is before
    child = (
        "import os, signal, sys\n"
        "import fastct.cli as cli\n"
        "try:\n"
        "    cli.run()\n"
        "except SystemExit as exit:  # on the way out of the process\n"
        "    os.kill(os.getpid(), signal.SIGINT)  # lands after main, as in the exit\n"
        "    sys.exit(7 if exit.code == 0 else 1)\n"
    )
    argv = ["gaussian", str(src), str(tmp_path / "b.npy"), "--sigma", "1", "--quiet"]
    proc = subprocess.run([sys.executable, "-c", child, *argv], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    assert proc.stderr == ""
    assert (tmp_path / "b.npy").exists()

"""Never leave a half-written output.

Outputs (files with :func:`atomic_path`, folders with :func:`atomic_folder`) are
written under a temporary name in the destination's folder (same file system, so the
final ``os.replace`` is atomic) and moved into place only on success. A process
killed at any moment leaves either the old output or the new one, plus at worst a
hidden ``.fastct-tmp-*`` file or folder that later runs clean up.

Every publish (the final rename) is recorded in :func:`published_outputs`, with SIGINT
held back for the rename and its record, so an interrupted command can say exactly
whether its output was written.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # C-level signal(): no Python lines
import atexit
import contextlib
import errno
import fcntl
import os
import shutil
import signal
import threading
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".fastct-tmp-"
# Lock files this process holds: realpath -> (lock path, release state). Kept here, not
# only in the lock object, so that a release a Ctrl-C cut short can be finished.
_HELD: dict[str, tuple[Path, dict[str, Any]]] = {}
_PUBLISHED: list[Path] = []  # outputs this process moved into place, in order


def published_outputs(since: int = 0) -> list[Path]:
    """Outputs published (renamed into place) by this process, from number ``since`` on.

    ``len(published_outputs())`` before a command and ``published_outputs(n)`` after
    it (or after it was interrupted) name exactly what the command wrote.
    """
    return list(_PUBLISHED[since:])


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold SIGINT back (it is acted on right after) so that a rename and its record in
    :func:`published_outputs` happen together or not at all.

    The Python-level handler is swapped for one that only notes the signal (a signal
    mask would not do: the kernel may deliver SIGINT to any thread, e.g. a Numba worker);
    the previous handler then runs once on exit. The swap is the first thing done, by
    the C-level ``_signal.signal`` (no Python code between: nothing for a signal to
    interrupt). Only the main thread can do this.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[Any] = []
    previous = _signal.signal(signal.SIGINT, lambda signum, frame: pending.append(frame))
    if not callable(previous):  # SIG_IGN / SIG_DFL / not set from Python: leave it
        _signal.signal(signal.SIGINT, previous)
        yield
        return
    try:
        yield
    finally:
        _signal.signal(signal.SIGINT, previous)
        if pending:
            previous(signal.SIGINT, pending[0])


def publish_folder(tmp: Path, path: Path) -> None:
    """Move the finished folder ``tmp`` onto ``path`` (replacing an existing one)."""
    trash = None
    with _sigint_held():
        if path.exists():
            trash = temp_name(path)
            os.replace(path, trash)
        os.replace(tmp, path)
        _PUBLISHED.append(path)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)
    fsync_dir(path.parent)


def temp_name(path: Path) -> Path:
    """A unique hidden sibling of ``path`` carrying our pid (for stale-file cleanup)."""
    token = os.urandom(4).hex()
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{token}-{path.name}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: Path) -> None:
    """Delete temp files left by fastct processes that no longer run."""
    try:
        entries = list(Path(folder).glob(TMP_PREFIX + "*"))
    except OSError:
        return
    for entry in entries:
        try:
            pid = int(entry.name[len(TMP_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            with contextlib.suppress(OSError):
                entry.unlink()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """Durably move a finished temp file onto ``path``."""
    fsync_path(tmp)
    with _sigint_held():
        os.replace(tmp, path)
        _PUBLISHED.append(path)
    fsync_dir(path.parent)


def clone_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst``, sharing blocks (reflink) when the file system can."""
    try:
        FICLONE = 0x40049409  # linux/fs.h; copy-on-write clone on btrfs, xfs, ...
        with open(src, "rb") as fsrc, open(dst, "wb") as fdst:
            fcntl.ioctl(fdst.fileno(), FICLONE, fsrc.fileno())
        shutil.copymode(src, dst)
        return
    except OSError as exc:
        if exc.errno not in (
            errno.EOPNOTSUPP,
            errno.ENOTTY,
            errno.EXDEV,
            errno.EINVAL,
            errno.ENOSYS,
            errno.EBADF,
        ):
            raise
    shutil.copyfile(src, dst)
    shutil.copymode(src, dst)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; it replaces ``path`` only if the block succeeds.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_path(os.path.join(d, "a.npy")) as tmp:
    ...     with open(tmp, "wb") as f:
    ...         np.save(f, np.zeros(3))
    >>> os.listdir(d)
    ['a.npy']
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"output {str(path)!r} already exists")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(path.parent)!r} does not exist")
    remove_stale_temps(path.parent)
    tmp = temp_name(path)
    try:
        yield tmp
        commit(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def remove_stale_folders(parent: str | os.PathLike) -> None:
    """Delete temporary files and folders in ``parent`` left by fastct processes that
    no longer run (killed while writing); those of live processes are kept."""
    parent = Path(parent)
    remove_stale_temps(parent)
    for entry in parent.glob(TMP_PREFIX + "*"):
        try:
            pid = int(entry.name[len(TMP_PREFIX) :].split("-", 1)[0])
        except ValueError:
            continue
        if entry.is_dir() and pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``path`` to fill; it is renamed onto ``path``
    only if the block succeeds (replacing an existing folder when ``overwrite``) and
    deleted if the block raises.

    Examples
    --------
    >>> import tempfile, os
    >>> d = Path(tempfile.mkdtemp())
    >>> with atomic_folder(d / "out", overwrite=False) as tmp:
    ...     _ = (tmp / "a.txt").write_text("x")
    >>> os.listdir(d), os.listdir(d / "out")
    (['out'], ['a.txt'])
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"output folder {str(path)!r} already exists; pass overwrite=True (--overwrite) "
            "to replace it"
        )
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"output {str(path)!r} exists and is not a folder")
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"folder {str(parent)!r} for the output does not exist")
    remove_stale_folders(parent)
    tmp = temp_name(path)
    tmp.mkdir()
    try:
        yield tmp
        publish_folder(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class file_lock:  # noqa: N801 - used like the context-manager function it was
    """An exclusive advisory lock serialising writers of one archive (a context manager).

    The lock file (``.NAME.lock``) is removed on release. A waiter that wakes up
    holding a lock on a file that was meanwhile removed (or replaced) retries, so
    two writers can never both believe they hold the lock.

    A Ctrl-C can land on any Python line, so also on the first line of the release,
    before it holds SIGINT back: the lock then stays held. Three things finish such a
    release: :func:`release_held_locks` (the command line's interrupt handler),
    dropping the lock object (a finalizer: the interrupted ``with`` or ``ExitStack`` no
    longer refers to it once the exception is handled), and interpreter exit.
    """

    def __init__(self, path: Path):
        path = Path(path)
        self._path = path
        self._lock = path.with_name(f".{path.name}.lock")
        self._key = os.path.realpath(self._lock)
        self._state: dict[str, Any] = {"fd": None, "held": False, "done": []}

    def __enter__(self) -> None:
        key, lock, state = self._key, self._lock, self._state
        if key in _HELD:
            # flock is per open file: a second writer in this process would wait forever.
            raise RuntimeError(
                f"archive {str(self._path)!r} is already open for writing in this process; "
                "close it first"
            )
        # Registered before the first open: whatever happens from here (a Ctrl-C while
        # waiting for another writer included), dropping this object closes what was
        # opened and removes the lock file only if we held it.
        weakref.finalize(self, _release, key, lock, state)
        try:
            while True:
                state["fd"] = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(state["fd"], fcntl.LOCK_EX)
                state["held"] = True
                try:
                    same = os.stat(lock).st_ino == os.fstat(state["fd"]).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                fd, state["fd"], state["held"] = state["fd"], None, False
                os.close(fd)
            _HELD[key] = (lock, state)
        except BaseException:
            _release(key, lock, state)
            raise

    def __exit__(self, *exc: Any) -> None:
        _release(self._key, self._lock, self._state)


def held_locks() -> list[str]:
    """The archive locks this process holds (their lock files' real paths)."""
    return list(_HELD)


@atexit.register
def release_held_locks(keep: Iterable[str] = ()) -> None:
    """Release every archive lock this process still holds, except those in ``keep``.

    A Ctrl-C that lands inside an archive's close, before its lock's release holds
    SIGINT back, leaves the lock held and its file behind; the CLI calls this when a
    command is interrupted (keeping the locks held before it started), and it runs at
    interpreter exit.
    """
    keep = set(keep)
    for key, (lock, state) in list(_HELD.items()):
        if key not in keep:
            _release(key, lock, state)


def _release(key: str, lock: Path, state: dict[str, Any]) -> None:
    """Release a :func:`file_lock` with Ctrl-C held back: a release cut short would
    leave the lock held in this process (every later writer of the archive refused) and
    its file behind. Idempotent (``state['done']``), so a second call after a Ctrl-C that
    landed before the hold only finishes the job."""
    with _sigint_held():
        if not state["done"]:
            fd = state["fd"]
            if fd is not None:
                if state["held"]:
                    with contextlib.suppress(OSError):
                        if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                            os.unlink(lock)
                    with contextlib.suppress(OSError):
                        fcntl.flock(fd, fcntl.LOCK_UN)
                with contextlib.suppress(OSError):
                    os.close(fd)
            state["done"].append(True)
        if _HELD.get(key, (None, None))[1] is state:  # not a later holder's entry
            del _HELD[key]

"""Run one fastct operation over many scans on a dask.distributed cluster.

:func:`run_batch` takes the scans of an archive (every ``scans/<id>/image``) or a list
of files (NIfTI, ``.npy``, DICOM folders), runs one task per scan on a
``dask.distributed`` cluster (an existing scheduler, or a ``LocalCluster`` it starts)
and writes each result to its own archive ``OUT/<id>.h5`` (volume
``results/<operation>``, the scan's geometry kept).

* **Safe outputs**: each result archive is written under a temporary name and published
  by one rename when complete (:func:`fastct.open`), so a reader sees a whole result or
  none, and a task that dies leaves nothing visible.
* **Resumable**: a scan whose result archive exists is skipped (``resume=True``).
* **Workers that die**: dask.distributed reruns a task whose worker was lost on
  another worker (``retries`` more times for errors raised by the task); a rerun
  publishes the same archive under the same name, so every result appears exactly
  once.
* **Threads**: each task runs fastct's kernels on
  :func:`fastct.dask.task_threads` threads (the host's cores over the threads of the
  workers on it), so workers do not oversubscribe the cores.
* **Errors**: an unreachable scheduler raises a ``ValueError`` after
  ``connect_timeout`` seconds (no hang); a scan that fails (a path missing on the
  workers, a bad file) is reported in the result's ``failed`` list with its error,
  the other scans go on.

Status: a first version (issue 17, part 3): single operations only (``gaussian``,
``median``, ``unsharp_mask``), HDF5 result archives. The command line is ``fastct
batch`` (``python -m fastct.batch`` runs the same through :func:`main`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OPERATIONS", "BatchResult", "main", "run_batch"]

#: Operations a batch can run, by name (keyword parameters as the fastct function's).
OPERATIONS = ("gaussian", "median", "unsharp_mask")


@dataclass
class BatchResult:
    """What a batch did: scan ids written, skipped (already done) and failed."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    dashboard: str | None = None


@dataclass(frozen=True)
class _Scan:
    """One scan: an id and where to read it (a file, or an archive and volume name)."""

    scan_id: str
    path: str
    volume: str | None = None


def _scans(inputs: Any) -> list[_Scan]:
    """The scans of an archive path or of a list of files."""
    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs)
        if path.suffix in (".h5", ".hdf5", ".zarr"):
            from .volume import open as open_archive

            if not path.exists():
                raise ValueError(f"inputs: archive {str(path)!r} does not exist")
            scans = []
            with open_archive(path) as ar:
                for name in ar.volumes():
                    parts = name.strip("/").split("/")
                    if len(parts) == 3 and parts[0] == "scans" and parts[2] == "image":
                        scans.append(_Scan(parts[1], str(path.resolve()), name))
            if not scans:
                raise ValueError(f"inputs: archive {str(path)!r} has no scans/<id>/image volume")
            return scans
        inputs = [inputs]
    if not isinstance(inputs, Sequence) or isinstance(inputs, (str, bytes)):
        raise TypeError(
            f"inputs must be an archive path or a list of files, got {type(inputs).__name__}"
        )
    scans = []
    seen: set[str] = set()
    for item in inputs:
        p = Path(item)
        scan_id = p.name
        for suffix in (".nii.gz", ".nii", ".npy", ".h5"):
            if scan_id.endswith(suffix):
                scan_id = scan_id[: -len(suffix)]
                break
        if scan_id in seen:
            raise ValueError(f"inputs: two scans are named {scan_id!r}; rename one")
        seen.add(scan_id)
        scans.append(_Scan(scan_id, str(p.resolve())))
    if not scans:
        raise ValueError("inputs: no scan given")
    return scans


def _read(scan: _Scan) -> tuple[np.ndarray, dict[str, Any]]:
    """The scan's voxels and geometry (on the worker)."""
    if scan.volume is not None:
        from .streaming import read_all
        from .volume import Volume
        from .volume import open as open_archive

        with open_archive(scan.path) as ar:
            vol = ar[scan.volume]
            if not isinstance(vol, Volume):
                raise ValueError(f"scan {scan.scan_id!r}: {scan.volume} is not a volume")
            return read_all(vol), {
                "spacing": vol.spacing,
                "origin": vol.origin,
                "direction": vol.direction,
            }
    from .io import read_volume

    if not os.path.exists(scan.path):
        raise FileNotFoundError(f"scan {scan.scan_id!r}: {scan.path} not found on this worker")
    got = read_volume(scan.path)
    return got.array, {"spacing": got.spacing, "origin": got.origin, "direction": got.direction}


def _process(
    scan: _Scan, out_dir: str, operation: str, params: dict[str, Any], host_threads: Any
) -> tuple[str, str]:
    """One task: read, compute, publish ``out_dir/<id>.h5`` atomically. Returns
    ``(scan_id, 'written' | 'exists')``."""
    import fastct

    from .dask import task_threads
    from .volume import open as open_archive

    target = Path(out_dir) / f"{scan.scan_id}.h5"
    if target.exists():  # a rerun after a lost worker whose first run finished
        return scan.scan_id, "exists"
    fastct.set_num_threads(task_threads(host_threads))
    try:
        data, geometry = _read(scan)
        kw = dict(params)
        if operation in ("gaussian", "unsharp_mask") and "spacing" not in kw:
            kw["spacing"] = geometry["spacing"]  # sigma / radius in mm
        result = getattr(fastct, operation)(data, **kw)
        with open_archive(target, "w") as ar:
            ar.create_volume(f"results/{operation}", result, **geometry)
    finally:
        fastct.set_num_threads(None)
    return scan.scan_id, "written"


def _client(scheduler: str | None, local_workers: int | None, connect_timeout: float):
    """(client, cluster or None): connect to ``scheduler`` or start a LocalCluster."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "fastct.batch needs dask.distributed: install the 'scale' extra "
            "(pip install 'fastct-engine[scale]')"
        ) from exc
    if (scheduler is None) == (local_workers is None):
        raise ValueError("give exactly one of scheduler (tcp://HOST:PORT) and local_workers")
    if scheduler is not None:
        if not isinstance(scheduler, str) or "://" not in scheduler:
            raise ValueError(
                f"scheduler must be an address like tcp://HOST:PORT, got {scheduler!r}"
            )
        try:
            return Client(scheduler, timeout=connect_timeout), None
        except (OSError, TimeoutError) as exc:
            raise ValueError(
                f"scheduler {scheduler} could not be reached within {connect_timeout:g} s ({exc})"
            ) from None
    if isinstance(local_workers, bool) or not isinstance(local_workers, int) or local_workers < 1:
        raise ValueError(f"local_workers must be a positive integer, got {local_workers!r}")
    cluster = LocalCluster(
        n_workers=local_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=":0",
    )  # fmt: skip
    return Client(cluster), cluster


def run_batch(
    inputs: Any,
    out_dir: str | os.PathLike,
    *,
    operation: str = "gaussian",
    params: dict[str, Any] | None = None,
    scheduler: str | None = None,
    local_workers: int | None = None,
    resume: bool = True,
    retries: int = 2,
    connect_timeout: float = 10.0,
    progress: bool | None = None,
) -> BatchResult:
    """Run ``operation`` on every scan of ``inputs``, one dask.distributed task per scan.

    Parameters
    ----------
    inputs : path or list of paths
        An archive (every ``scans/<id>/image`` volume is a scan) or files readable by
        :func:`fastct.io.read_volume` (the scan id is the file name without suffix).
        Workers read them by path: the paths must exist on the workers.
    out_dir : path
        Folder of the results: ``<id>.h5`` per scan, volume ``results/<operation>``.
    operation : {'gaussian', 'median', 'unsharp_mask'}
        The fastct function to run.
    params : dict, optional
        Its keyword arguments (``{'sigma': 1.0}``); for ``gaussian`` and
        ``unsharp_mask`` lengths are in mm (the scan's spacing is passed) unless
        ``spacing`` is given.
    scheduler : str, optional
        Address of a running scheduler, ``tcp://HOST:PORT``.
    local_workers : int, optional
        Start a ``LocalCluster`` of this many single-threaded worker processes
        (loopback only) instead.
    resume : bool
        Skip scans whose result exists (default). False recomputes them all.
    retries : int
        Extra attempts for a task that raised an error.
    connect_timeout : float
        Seconds to wait for ``scheduler`` before a ``ValueError``.
    progress : bool, optional
        Progress bar on stderr (default: fastct's setting).

    Returns
    -------
    BatchResult
        ``written``, ``skipped``, ``failed`` (id -> error), ``seconds``, ``dashboard``.
    """
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {OPERATIONS}, got {operation!r}")
    params = dict(params or {})
    scans = _scans(inputs)
    out = Path(out_dir)
    if out.exists():
        from ._atomic import remove_stale_temps

        remove_stale_temps(out)  # temp files of writers killed in an earlier run
    result = BatchResult()
    todo = []
    for scan in scans:
        done = (out / f"{scan.scan_id}.h5").exists()
        if done and resume:
            result.skipped.append(scan.scan_id)
        else:
            if done:
                (out / f"{scan.scan_id}.h5").unlink()
            todo.append(scan)
    t0 = time.perf_counter()
    if not todo:
        return result
    from distributed import as_completed

    from . import _log
    from .dask import _host_threads

    client, cluster = _client(scheduler, local_workers, connect_timeout)
    try:
        out.mkdir(parents=True, exist_ok=True)  # (not before the scheduler answered)
        result.dashboard = getattr(client, "dashboard_link", None)
        _log.get_logger(__name__).info("batch: %d scans, dashboard %s", len(todo),
                                       result.dashboard)  # fmt: skip
        host_threads = _host_threads()
        futures = {
            client.submit(
                _process,
                scan,
                str(out.resolve()),
                operation,
                params,
                host_threads,
                key=f"fastct-batch-{scan.scan_id}-{time.time_ns()}",
                retries=retries,
                pure=False,
            ): scan  # fmt: skip
            for scan in todo
        }
        bar = _log.start_progress(len(todo), "batch", progress, long=True, unit="scan")
        try:
            for future in as_completed(futures):
                scan = futures[future]
                try:
                    future.result()
                    result.written.append(scan.scan_id)
                except Exception as exc:  # noqa: BLE001 - reported per scan
                    result.failed[scan.scan_id] = f"{type(exc).__name__}: {exc}"
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    remove_stale_temps(out)  # those of workers killed during this run
    result.written.sort()
    result.seconds = time.perf_counter() - t0
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastct.batch INPUTS... --out DIR (--scheduler ADDR | --local-workers N)``.

    Exit status 0 when every scan is written or skipped, 1 when some failed, 2 on bad
    arguments or an unreachable scheduler.
    """
    p = argparse.ArgumentParser(
        prog="fastct batch",
        description="Run one fastct operation over many scans on dask.distributed.",
    )
    p.add_argument("inputs", nargs="+", help="an archive, or NIfTI / .npy files, DICOM folders")
    p.add_argument("--out", required=True, help="folder of the <id>.h5 results")
    p.add_argument("--operation", default="gaussian", choices=OPERATIONS)
    p.add_argument("--sigma", type=float, help="gaussian sigma (mm)")
    p.add_argument("--size", type=int, help="median window")
    p.add_argument("--radius", type=float, help="unsharp_mask radius (mm)")
    p.add_argument("--amount", type=float, help="unsharp_mask amount")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--scheduler", help="tcp://HOST:PORT of a running scheduler")
    where.add_argument("--local-workers", type=int, help="start a LocalCluster of N workers")
    p.add_argument("--no-resume", action="store_true", help="recompute finished scans")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to reach the scheduler")
    args = p.parse_args(argv)
    params = {k: getattr(args, k) for k in ("sigma", "size", "radius", "amount")}
    params = {k: v for k, v in params.items() if v is not None}
    inputs: Any = args.inputs[0] if len(args.inputs) == 1 else args.inputs
    try:
        res = run_batch(inputs, args.out, operation=args.operation, params=params,
                        scheduler=args.scheduler, local_workers=args.local_workers,
                        resume=not args.no_resume, connect_timeout=args.timeout)  # fmt: skip
    except (ValueError, TypeError, ImportError) as exc:
        print(f"fastct batch: error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(res.written)} written, {len(res.skipped)} skipped, {len(res.failed)} failed "
          f"in {res.seconds:.1f} s")  # fmt: skip
    for scan_id, error in sorted(res.failed.items()):
        print(f"  {scan_id}: {error}", file=sys.stderr)
    return 1 if res.failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

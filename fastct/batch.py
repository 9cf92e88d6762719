"""Run one fastct operation, or the whole pipeline, over many scans on a
dask.distributed cluster.

:func:`run_batch` takes the scans of an archive (every ``scans/<id>/image``) or a list
of files (NIfTI, ``.npy``, DICOM folders), runs one task per scan on a
``dask.distributed`` cluster (an existing scheduler, or a ``LocalCluster`` it starts)
and writes the results where ``out_dir`` says:

* a folder: one archive ``OUT/<id>.h5`` per scan (volume ``results/<operation>``);
* a Zarr store ``OUT.zarr``: volume ``results/<id>/<operation>`` of one store; each
  task writes its own volume in its own transaction (Zarr takes writers of distinct
  volumes at once, each volume published by one rename);
* an HDF5 archive ``OUT.h5``: volume ``results/<id>/<operation>`` of one file; HDF5
  takes one writer at a time, so each task writes its own small archive in a hidden
  folder ``.OUT.h5.parts`` beside it, and the client (the one writer) merges them
  into the archive in one atomic transaction, then removes them.

With ``operation='pipeline'`` a task takes a *pair*, ``scans/<id>/baseline/image``
and ``scans/<id>/followup/image`` of an archive (the layout ``fastct phantom``
writes), and runs :func:`fastct.pipeline.run` on it: the task copies the pair's
``scans/<id>`` group (scans, labels, truth, attributes) into a working archive of its
own, runs the pipeline there and publishes the folder ``OUT/<id>/`` (``results.h5``:
the copied scans and ``results/pipeline/...``; ``report/``: ``report.html``, CSV
tables, ``transform.json``) by one rename. The input archive is only read.

* **Safe outputs**: every result is written under a temporary name and published by
  one rename when complete, so a reader sees a whole result or none, and a task that
  dies leaves nothing visible (its temporary files are removed by the next run).
* **Resumable**: a scan whose result exists is skipped (``resume=True``); with an
  HDF5 ``out_dir`` the per-task files of tasks that finished before an interrupted
  merge are merged at the next run, not recomputed.
* **Workers that die**: dask.distributed reruns a task whose worker was lost on
  another worker (``retries`` more times for errors raised by the task); a rerun
  publishes the same result under the same name, so every result appears exactly
  once.
* **Threads**: each task runs fastct's kernels on
  :func:`fastct.dask.task_threads` threads (the host's cores over the threads of the
  workers on it), so workers do not oversubscribe the cores.
* **Errors**: an unreachable scheduler raises a ``ValueError`` after
  ``connect_timeout`` seconds (no hang); a scan that fails (a path missing on the
  workers, a bad file) is reported in the result's ``failed`` list with its error,
  the other scans go on.

The command line is ``fastct batch`` (``python -m fastct.batch`` runs the same
through :func:`main`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _atomic

__all__ = ["OPERATIONS", "BatchResult", "main", "run_batch"]

#: Operations a batch can run, by name: fastct functions (keyword parameters as the
#: function's) and ``'pipeline'`` (:func:`fastct.pipeline.run` per scan pair).
OPERATIONS = ("gaussian", "median", "unsharp_mask", "pipeline")

#: Run name of the pipeline results inside ``OUT/<id>/results.h5``.
PIPELINE_RUN = "pipeline"


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
    """One scan: an id and where to read it (a file, or an archive and volume name).
    For a pipeline pair, ``volume`` is the pair's group ``/scans/<id>``."""

    scan_id: str
    path: str
    volume: str | None = None


def _out_kind(out_dir: Path) -> str:
    """'zarr', 'h5' (one merged archive) or 'folder' (one archive per scan)."""
    name = out_dir.name.lower()
    if name.endswith(".zarr"):
        return "zarr"
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    return "folder"


def _is_archive(path: Path) -> bool:
    return path.suffix.lower() in (".h5", ".hdf5", ".zarr")


def _scans(inputs: Any, pairs: bool = False) -> list[_Scan]:
    """The scans (or, with ``pairs``, the baseline/follow-up pairs) of an archive path
    or of a list of files."""
    if isinstance(inputs, (str, os.PathLike)):
        path = Path(inputs)
        if _is_archive(path):
            from .volume import open as open_archive

            if not path.exists():
                raise ValueError(f"inputs: archive {str(path)!r} does not exist")
            found: dict[str, set[str]] = {}
            with open_archive(path) as ar:
                for name in ar.volumes():
                    parts = name.strip("/").split("/")
                    if len(parts) == 3 and parts[0] == "scans" and parts[2] == "image":
                        found.setdefault(parts[1], set()).add("image")
                    elif len(parts) == 4 and parts[0] == "scans" and parts[3] == "image":
                        found.setdefault(parts[1], set()).add(parts[2])
            where = str(path.resolve())
            if pairs:
                ids = [k for k, v in found.items() if {"baseline", "followup"} <= v]
                if not ids:
                    raise ValueError(
                        f"inputs: archive {str(path)!r} has no scan pair (scans/<id>/baseline/"
                        "image and scans/<id>/followup/image)"
                    )
                return [_Scan(k, where, f"/scans/{k}") for k in sorted(ids)]
            ids = [k for k, v in found.items() if "image" in v]
            if not ids:
                raise ValueError(f"inputs: archive {str(path)!r} has no scans/<id>/image volume")
            return [_Scan(k, where, f"/scans/{k}/image") for k in sorted(ids)]
        inputs = [inputs]
    if pairs:
        raise ValueError(
            "inputs: operation='pipeline' takes one archive holding scans/<id>/baseline/image "
            f"and scans/<id>/followup/image, got {inputs!r}"
        )
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
        if scan_id in ("", ".", "..") or "\\" in scan_id:
            # the id names the scan's output file or folder: never one outside the output
            raise ValueError(f"inputs: {str(item)!r} gives no usable scan name; rename it")
        if scan_id in seen:
            raise ValueError(f"inputs: two scans are named {scan_id!r}; rename one")
        seen.add(scan_id)
        if not p.exists():  # (a path on the workers only: run the client where it exists)
            raise ValueError(f"inputs: {str(item)!r} does not exist")
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


def _result_name(scan_id: str, operation: str) -> str:
    """The result volume's name in a Zarr or merged HDF5 ``out_dir``."""
    return f"results/{scan_id}/{operation}"


def _parts_dir(out: Path) -> Path:
    """The hidden folder of the per-task archives of a merged HDF5 ``out_dir``."""
    return out.with_name(f".{out.name}.parts")


def _compute(
    scan: _Scan, operation: str, params: dict[str, Any]
) -> tuple[np.ndarray, dict[str, Any]]:
    import fastct

    data, geometry = _read(scan)
    kw = dict(params)
    if operation in ("gaussian", "unsharp_mask") and "spacing" not in kw:
        kw["spacing"] = geometry["spacing"]  # sigma / radius in mm
    return getattr(fastct, operation)(data, **kw), geometry


def _process(
    scan: _Scan,
    out_dir: str,
    operation: str,
    params: dict[str, Any],
    host_threads: Any,
    kind: str = "folder",
) -> tuple[str, str]:
    """One task: read, compute, publish the result atomically (``kind``: see
    :func:`_out_kind`). Returns ``(scan_id, 'written' | 'exists')``."""
    import fastct

    from .dask import task_threads
    from .volume import open as open_archive

    out = Path(out_dir)
    if kind == "zarr":
        name = _result_name(scan.scan_id, operation)
        with open_archive(out) as ar:
            if name in ar:  # a rerun after a lost worker whose first run finished
                return scan.scan_id, "exists"
    else:
        folder = _parts_dir(out) if kind == "h5" else out
        target = folder / (scan.scan_id if operation == "pipeline" else f"{scan.scan_id}.h5")
        if target.exists():
            return scan.scan_id, "exists"
    fastct.set_num_threads(task_threads(host_threads))
    try:
        if operation == "pipeline":
            _run_pair(scan, out, params)
            return scan.scan_id, "written"
        result, geometry = _compute(scan, operation, params)
        if kind == "zarr":
            try:  # one transaction, one volume: published by one rename on close
                with open_archive(out, "a") as ar:
                    ar.create_volume(name, result, **geometry)
            except FileExistsError:  # the same task ran twice at once: same bits
                return scan.scan_id, "exists"
        else:
            inner = _result_name(scan.scan_id, operation) if kind == "h5" else None
            with open_archive(target, "w") as ar:
                ar.create_volume(inner or f"results/{operation}", result, **geometry)
    finally:
        fastct.set_num_threads(None)
    return scan.scan_id, "written"


def _copy_group(src: Any, dst: Any, group: str) -> None:
    """Copy every volume and group attribute under ``group`` of archive ``src`` into
    ``dst`` (same names), one slab of chunks at a time."""
    from .streaming import copy_volume
    from .volume import Volume

    attrs = src.get_attrs(group)
    if attrs:
        dst.set_attrs(group, **attrs)
    for child in src[group].keys():
        path = f"{group.rstrip('/')}/{child}"
        member = src[path]
        if not isinstance(member, Volume):
            _copy_group(src, dst, path)
            continue
        meta = {"spacing", "origin", "direction", "modality", "units"}
        extra = {k: v for k, v in member.attrs.items() if k not in meta}
        out = dst.create_volume(path, shape=member.shape, dtype=member.dtype,
                                chunks=member.chunks, attrs=extra,
                                **member.metadata())  # fmt: skip
        copy_volume(member, out)


def _run_pair(scan: _Scan, out: Path, params: dict[str, Any]) -> None:
    """The pipeline on one pair, published as ``out/<id>/`` by one rename."""
    from .pipeline import run as run_pipeline
    from .volume import open as open_archive

    assert scan.volume is not None
    with _atomic.atomic_folder(out / scan.scan_id, overwrite=True) as folder:
        work = folder / "results.h5"
        with open_archive(scan.path) as src, open_archive(work, "w") as dst:
            _copy_group(src, dst, scan.volume)
        kw = {"run_name": PIPELINE_RUN, "progress": False, **params}
        run_pipeline(work, f"{scan.volume}/baseline", f"{scan.volume}/followup",
                     out_dir=folder / "report", **kw)  # fmt: skip
        _final_paths(folder / "report" / "summary.json", folder, out / scan.scan_id)


def _final_paths(summary: Path, folder: Path, final: Path) -> None:
    """Name the published folder, not the working one, in the run's ``summary.json``."""
    import json

    if not summary.is_file():
        return
    doc = json.loads(summary.read_text())
    for key in ("archive", "out_dir", "report_path"):
        value = doc.get(key)
        if isinstance(value, str) and value.startswith(str(folder)):
            doc[key] = str(final) + value[len(str(folder)) :]
    summary.write_text(json.dumps(doc, indent=2))


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
    import logging

    # silence_logs: a scan that fails is reported once in the result (and by the CLI in
    # one line), not also as the worker's traceback on stderr
    cluster = LocalCluster(
        n_workers=local_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=":0", silence_logs=logging.CRITICAL,
    )  # fmt: skip
    return Client(cluster), cluster


def _done_in_archive(out: Path, names: dict[str, str]) -> set[str]:
    """Ids whose result volume (``names``: id -> volume name) exists in archive ``out``."""
    from .volume import open as open_archive

    if not out.exists():
        return set()
    with open_archive(out) as ar:
        return {k for k, name in names.items() if name in ar}


def _plan(
    scans: list[_Scan], out: Path, kind: str, operation: str, resume: bool
) -> tuple[list[str], list[_Scan], set[str]]:
    """(skipped ids, scans to compute, ids whose per-task archive awaits the merge),
    removing the results that ``resume=False`` recomputes."""
    from .volume import open as open_archive

    ids = [s.scan_id for s in scans]
    if kind == "folder":
        if out.exists():
            _atomic.remove_stale_folders(out)  # temp files of writers killed earlier
        name = "{}" if operation == "pipeline" else "{}.h5"
        done = {i for i in ids if (out / name.format(i)).exists()}
        if not resume:
            for i in done:
                target = out / name.format(i)
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink()
    else:
        names = {i: _result_name(i, operation) for i in ids}
        done = _done_in_archive(out, names)
        if not resume and done:
            with open_archive(out, "a") as ar:
                for i in done:
                    ar.delete(names[i])
    parts: set[str] = set()
    if kind == "h5":
        folder = _parts_dir(out)
        if folder.exists():
            _atomic.remove_stale_temps(folder)
            for i in ids:
                part = folder / f"{i}.h5"
                if not part.exists():
                    continue
                if i in done or not resume:  # merged before the last run was stopped
                    part.unlink()
                else:
                    parts.add(i)
    if not resume:
        done = set()
    skipped = [i for i in ids if i in done]
    todo = [s for s in scans if s.scan_id not in done and s.scan_id not in parts]
    return skipped, todo, parts


def _merge(out: Path, ids: list[str], operation: str) -> None:
    """Copy the per-task archives of ``ids`` (each holding its
    ``results/<id>/<operation>``) into the HDF5 archive ``out`` in one transaction of
    one writer (this process), then delete them."""
    from .volume import open as open_archive

    folder = _parts_dir(out)
    if ids:
        with open_archive(out, "a") as ar:
            for i in ids:
                with open_archive(folder / f"{i}.h5") as part:
                    _copy_group(part, ar, f"/results/{i}")
    for i in ids:
        with contextlib.suppress(OSError):
            (folder / f"{i}.h5").unlink()
    _atomic.remove_stale_temps(folder)  # those of workers killed while writing
    with contextlib.suppress(OSError):
        folder.rmdir()  # only once empty


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
    """Run ``operation`` on every scan (or scan pair) of ``inputs``, one
    dask.distributed task each.

    Parameters
    ----------
    inputs : path or list of paths
        An archive (HDF5 or Zarr; every ``scans/<id>/image`` volume is a scan) or files
        readable by :func:`fastct.io.read_volume` (the scan id is the file name without
        suffix). For ``operation='pipeline'``: an archive whose
        ``scans/<id>/baseline/image`` and ``scans/<id>/followup/image`` make a pair.
        Workers read them by path: the paths must exist on the workers.
    out_dir : path
        Where the results go, by its name: a folder (``<id>.h5`` per scan, volume
        ``results/<operation>``; for the pipeline a folder ``<id>/`` per pair holding
        ``results.h5`` and ``report/``), a Zarr store ``*.zarr`` or an HDF5 archive
        ``*.h5`` (volume ``results/<id>/<operation>`` of that one archive; the HDF5
        one is merged by this process from per-task files).
    operation : {'gaussian', 'median', 'unsharp_mask', 'pipeline'}
        The fastct function to run, or :func:`fastct.pipeline.run` per pair.
    params : dict, optional
        Its keyword arguments (``{'sigma': 1.0}``); for ``gaussian`` and
        ``unsharp_mask`` lengths are in mm (the scan's spacing is passed) unless
        ``spacing`` is given. For the pipeline, those of :func:`fastct.pipeline.run`
        (``transform``, ``model``, ``report``, ...).
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

    Examples
    --------
    >>> import numpy as np, tempfile, os, fastct
    >>> from fastct.batch import run_batch
    >>> d = tempfile.mkdtemp()
    >>> np.save(os.path.join(d, "a.npy"), np.zeros((4, 5, 6), np.float32))
    >>> run_batch([os.path.join(d, "a.npy")], os.path.join(d, "out.zarr"),
    ...           params={"sigma": 1.0}, local_workers=1, progress=False).written
    ['a']
    >>> with fastct.open(os.path.join(d, "out.zarr")) as ar:
    ...     ar["results/a/gaussian"].shape
    (4, 5, 6)
    """
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {OPERATIONS}, got {operation!r}")
    if not isinstance(params, (dict, type(None))):
        raise TypeError(f"params must be a dict of keyword arguments, got {type(params).__name__}")
    params = dict(params or {})
    out = Path(out_dir)
    kind = _out_kind(out)
    if operation == "pipeline" and kind != "folder":
        raise ValueError(
            "out_dir: operation='pipeline' writes one folder per pair (report and archive): "
            f"give a folder, not {str(out)!r}"
        )
    if kind == "h5" and out.is_dir():
        raise ValueError(f"out_dir: {str(out)!r} is a folder, not an HDF5 archive")
    if kind != "folder" and not out.parent.is_dir():
        raise ValueError(f"out_dir: folder {str(out.parent)!r} does not exist")
    scans = _scans(inputs, pairs=operation == "pipeline")
    result = BatchResult()
    result.skipped, todo, parts = _plan(scans, out, kind, operation, resume)
    t0 = time.perf_counter()
    if todo:
        _run_tasks(todo, out, kind, operation, params, scheduler, local_workers, retries,
                   connect_timeout, progress, result)  # fmt: skip
    if kind == "h5":
        finished = sorted(parts | set(result.written))
        _merge(out, finished, operation)
        result.written = finished
    elif kind == "folder" and out.exists():
        _atomic.remove_stale_folders(out)  # those of workers killed during this run
    elif kind == "zarr" and out.is_dir():
        from ._store_zarr import remove_stale

        remove_stale(out)  # the same inside the store
    result.written.sort()
    result.seconds = time.perf_counter() - t0
    return result


def _run_tasks(
    todo: list[_Scan],
    out: Path,
    kind: str,
    operation: str,
    params: dict[str, Any],
    scheduler: str | None,
    local_workers: int | None,
    retries: int,
    connect_timeout: float,
    progress: bool | None,
    result: BatchResult,
) -> None:
    """Submit one task per scan of ``todo`` and record each outcome in ``result``."""
    from distributed import as_completed

    from . import _log
    from .dask import _host_threads
    from .volume import open as open_archive

    client, cluster = _client(scheduler, local_workers, connect_timeout)
    try:
        # Created only once the scheduler answered.
        if kind == "zarr":
            with open_archive(out, "a"):
                pass  # the store exists before the tasks open it
        else:
            (_parts_dir(out) if kind == "h5" else out).mkdir(parents=True, exist_ok=True)
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
                kind,
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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastct.batch ARGS...``: the same as ``fastct batch ARGS...``.

    Exit status 0 when every scan is written or skipped, 1 when some failed, 2 on bad
    arguments or an unreachable scheduler.
    """
    from .cli import main as cli_main

    return cli_main(["batch", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

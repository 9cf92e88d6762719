"""fastct operations on dask arrays, bit-identical to the in-memory calls.

Each function takes a :class:`dask.array.Array` (an ndarray or an archive
:class:`~fastct.volume.Volume` is wrapped with :func:`to_dask`) and returns a lazy dask
array (a table for :func:`region_features`); nothing is computed before ``.compute()``
(or ``.store()``, ``.to_zarr()``), on whatever scheduler is active: the threaded one,
processes, or a ``dask.distributed`` cluster.

How the halos work
------------------
A filter's value at a voxel depends on the input within its support (``depth`` voxels
per axis: the Gaussian's ``int(truncate * sigma + 0.5)``, half the median's window).
Every output chunk is one dask task that builds the chunk's *halo-extended block*, the
chunk plus ``depth`` voxels on every side, and runs the same compiled block kernel as
fastct's streaming engine (:func:`fastct.streaming.map_overlap`) on it:

* inside the volume the halo holds the real neighbouring voxels, taken from the
  neighbouring chunks (the task depends on exactly the chunks its block touches);
* past the true outer edges of the volume, and only there, the halo holds the boundary
  ``mode``'s values (scipy.ndimage's rules, :func:`fastct.streaming.boundary_index`:
  ``'wrap'`` reads the chunks at the other end, ``'constant'`` fills ``cval`` and the
  Gaussian re-applies it at every pass, as scipy does).

A voxel's arithmetic does not depend on where its block starts, so the result equals
``fastct.gaussian(image.compute(), ...)`` bit for bit, for any chunk shape. This is the
block :func:`dask.array.map_overlap` would build with the mode at the outer edges, made
in one task per chunk that copies each voxel once: dask's own ``map_overlap`` pads the
array, then slices a strip out of every neighbour and concatenates them (about 30 tasks
and three copies per chunk in 3-D), which cost more than the filter itself on 64^3
chunks (docs/benchmarks/dask.md).

Chunk-size guidance
-------------------
* Every chunk except the first and last along an axis must be at least ``depth``
  voxels long on that axis (so a halo comes from the neighbouring chunk only); a
  smaller chunk raises a ``ValueError`` naming the axis and the minimum. Rechunk with
  ``image.rechunk(...)``. The first and last chunks, and the whole axis, may be
  shorter than the halo.
* Good chunks are much larger than the halo: a block computes ``(c + 2 d)**3`` input
  voxels for ``c**3`` results, so ``c = 64, d = 8`` (sigma 2) reads 1.95x the data,
  ``c = 128`` 1.42x. Aim at 64-256 voxels per axis (1-64 MiB per float32 chunk): big
  enough that the halo and per-task overhead (~1 ms) stay small, small enough that
  every worker thread gets several chunks.
* ``gaussian(..., method='recursive')`` works on fixed tiles of ``max(64, 4 * margin)``
  voxels (rounded up to 64, see :func:`fastct.gaussian`): its chunk boundaries must
  fall on tile boundaries (chunks a multiple of the tile, except the last).

Threads
-------
Inside a dask task the Numba kernels run on :func:`task_threads` threads, so that
``threads per task * tasks running at once <= cores``: under the local threaded
scheduler one thread per task (dask already runs one task per core); in a
``dask.distributed`` worker the host's cores divided by the threads of all workers on
that host (a ``LocalCluster(n_workers=2, threads_per_worker=1)`` on 16 cores: 8 threads
per task); in the synchronous scheduler fastct's own count. A thread count set
explicitly (``fastct.set_num_threads`` or ``FASTCT_NUM_THREADS`` in the worker's
environment) wins. Numba's count is restored after each task.

Requires the ``scale`` extra (``pip install 'fastct-engine[scale]'``) or ``dask[array]``;
``import fastct.dask`` itself does not import dask.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import _config
from ._validate import check_mode, check_real, check_shape, per_axis, smoothing_dtype
from .streaming import BlockInfo, _runs, boundary_index
from .volume import Volume

__all__ = [
    "gaussian",
    "hessian_blob",
    "median",
    "region_features",
    "resample",
    "task_threads",
    "to_dask",
    "unsharp_mask",
]

_EXTRA_HINT = (
    "fastct.dask needs dask: install the 'scale' extra (pip install 'fastct-engine[scale]') "
    "or dask[array]>=2024"
)


def _da() -> Any:
    """``dask.array``, imported on first use with a clear error when missing."""
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - exercised in a venv without dask
        raise ImportError(_EXTRA_HINT) from exc
    return da


# -- inputs -----------------------------------------------------------------------------------
class _VolumeReader:
    """A picklable view of an archive volume for :func:`dask.array.from_array`: it holds
    the archive's path and the volume's name and opens the archive (read-only, once per
    process) on first read, so tasks can run in other processes and on other hosts that
    see the same path."""

    _open: dict[tuple[str, int], Any] = {}
    _lock = threading.Lock()

    def __init__(self, volume: Volume):
        self.path = os.fspath(volume.archive.path)
        self.name = volume.name
        self.shape = tuple(volume.shape)
        self.dtype = np.dtype(volume.dtype)
        self.ndim = len(self.shape)

    def _volume(self) -> Volume:
        from .volume import open as open_archive

        key = (self.path, os.getpid())
        with self._lock:
            archive = self._open.get(key)
            if archive is None or archive.closed:
                archive = open_archive(self.path, "r")
                self._open[key] = archive
        volume = archive[self.name]
        if not isinstance(volume, Volume):
            raise ValueError(f"{self.name!r} in {self.path} is not a volume")
        return volume

    def __getitem__(self, key: Any) -> np.ndarray:
        from .streaming import read_region  # the engine's door to volume storage

        if not isinstance(key, tuple):
            key = (key,)
        return read_region(self._volume(), key)


def to_dask(volume: Volume | np.ndarray, chunks: Any = None) -> Any:
    """A dask array reading ``volume`` chunk by chunk.

    Parameters
    ----------
    volume : Volume or ndarray
        An archive volume (read lazily; the tasks reopen the archive by path, so they
        may run in other processes or on other hosts that see the same file) or an
        in-memory array.
    chunks : int, sequence of int, str or None
        Dask chunks. Default: the volume's storage chunks (whole storage chunks per
        task: no chunk is read twice), or dask's ``'auto'`` for an ndarray.

    Returns
    -------
    dask.array.Array
        Same shape and dtype. Geometry is not carried by dask arrays: pass
        ``spacing=`` (and ``origin``/``direction`` where used) to the operations.

    Examples
    --------
    >>> import numpy as np
    >>> import fastct.dask as fd
    >>> x = fd.to_dask(np.zeros((8, 8, 8), np.float32), chunks=4)
    >>> x.chunks
    ((4, 4), (4, 4), (4, 4))
    """
    da = _da()
    if isinstance(volume, Volume):
        reader = _VolumeReader(volume)
        if chunks is None:
            chunks = volume.chunks or "auto"
        try:
            stamp = os.stat(reader.path).st_mtime_ns
        except OSError:
            stamp = 0
        from dask.base import tokenize

        token = "fastct-volume-" + tokenize(reader.path, reader.name, reader.shape, stamp)
        meta = np.empty((0,) * reader.ndim, dtype=reader.dtype)
        return da.from_array(reader, chunks=chunks, name=token, meta=meta, fancy=False)
    if isinstance(volume, da.Array):
        return volume if chunks is None else volume.rechunk(chunks)
    array = np.asarray(volume)
    return da.from_array(array, chunks="auto" if chunks is None else chunks)


def _as_dask(image: Any, name: str, kinds: str = "biuf", what: str = "a real numeric") -> Any:
    """``image`` as a dask array: 2-D or 3-D, no empty axis, dtype kind in ``kinds``."""
    da = _da()
    if isinstance(image, da.Array):
        x = image
    elif isinstance(image, (Volume, np.ndarray)):
        x = to_dask(image)
    else:
        raise TypeError(
            f"{name} must be a dask array, an ndarray or a Volume, got {type(image).__name__}"
        )
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} must be 2-D (y, x) or 3-D (z, y, x), got {x.ndim}-D")
    if any(math.isnan(n) for n in x.shape):
        raise ValueError(f"{name} must have known chunk sizes; call {name}.compute_chunk_sizes()")
    if 0 in x.shape:
        raise ValueError(f"{name} must not have an empty axis, got shape {x.shape}")
    if np.dtype(x.dtype).kind not in kinds:
        raise TypeError(f"{name} must have {what} dtype, got {x.dtype}")
    if not np.dtype(x.dtype).isnative:
        x = x.astype(np.dtype(x.dtype).newbyteorder("="))
    return x


# -- threads ----------------------------------------------------------------------------------
def _host_threads() -> dict[str, int] | None:
    """Threads of all workers per host of the active dask.distributed client, if any."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        client = default_client()
    except ValueError:
        return None
    try:
        workers = client.scheduler_info(n_workers=-1).get("workers", {})
    except TypeError:  # older distributed: no n_workers argument
        workers = client.scheduler_info().get("workers", {})
    except Exception:  # noqa: BLE001 - no cluster information: fall back per worker
        return None
    per_host: dict[str, int] = {}
    for info in workers.values():
        host = str(info.get("host", ""))
        per_host[host] = per_host.get(host, 0) + int(info.get("nthreads", 1))
    return per_host


def task_threads(host_threads: dict[str, int] | None = None) -> int:
    """Numba threads for one fastct kernel call inside a dask task (see the module notes).

    Parameters
    ----------
    host_threads : dict, optional
        Threads of all dask.distributed workers per host address (as the client saw
        them when the graph was built).

    Returns
    -------
    int
        fastct's explicit thread count if one is set; else, in a dask.distributed
        worker, ``cores // threads of the workers on this host`` (the worker's own
        threads when the host is unknown); in a thread of dask's local threaded
        scheduler ``cores // pool size``; on the main thread fastct's count. At least 1.

    Examples
    --------
    >>> import fastct.dask as fd
    >>> fd.task_threads() >= 1
    True
    """
    if _config._num_threads is not None or os.environ.get(_config._ENV_THREADS):
        return _config.get_num_threads()
    cores = _config._max_threads()
    worker = None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        worker = None
    if worker is not None:
        share = int(getattr(worker.state, "nthreads", 1) or 1)
        if host_threads:
            share = max(share, host_threads.get(str(getattr(worker, "ip", "")), share))
        return max(1, cores // share)
    if threading.current_thread() is threading.main_thread():
        return _config.get_num_threads()
    import dask

    pool = dask.config.get("num_workers", None) or os.cpu_count() or 1
    return max(1, cores // int(pool))


@contextmanager
def _threads(host_threads: dict[str, int] | None) -> Iterator[int]:
    """Run a task's kernels on :func:`task_threads` threads; Numba's count restored."""
    import numba

    previous = numba.get_num_threads()
    n = min(task_threads(host_threads), numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(previous)


# -- the halo engine ------------------------------------------------------------------------
def _check_chunks(
    x: Any, depth: tuple[int, ...], what: str, name: str = "image", tiles: Any = None
) -> None:
    """Chunks the halo engine can use: interior chunks at least ``depth`` (and whole
    ``tiles`` for tiled kernels); a ValueError naming the axis and minimum otherwise."""
    for axis, (d, chunks) in enumerate(zip(depth, x.chunks)):
        interior = chunks[1:-1]
        if interior and min(interior) < d:
            raise ValueError(
                f"{name} chunks are too small for {what}: along axis {axis} the halo is "
                f"{d} voxels, so every chunk except the first and last must have at least "
                f"{d} voxels; got chunks {tuple(chunks)}. Rechunk, e.g. "
                f"{name}.rechunk({{{axis}: {max(d, 64)}}})"
            )
        if tiles is not None and tiles[axis] > 1:
            t = tiles[axis]
            if any(c % t for c in chunks[:-1]):
                raise ValueError(
                    f"{name} chunks must be multiples of {t} voxels along axis {axis} for "
                    f"{what} (the recursive filter's tile; the last chunk may be shorter), "
                    f"got chunks {tuple(chunks)}. Rechunk, e.g. {name}.rechunk({{{axis}: {t}}})"
                )


def _block_info(chunks: tuple, depth: tuple[int, ...], block_id: tuple[int, ...]) -> BlockInfo:
    """The :class:`BlockInfo` fastct's streaming engine gives the same block."""
    shape = tuple(int(sum(c)) for c in chunks)
    start = tuple(int(sum(c[:i])) for c, i in zip(chunks, block_id))
    stop = tuple(s + int(c[i]) for s, c, i in zip(start, chunks, block_id))
    valid = tuple(
        slice(d - min(d, s), d + (e - s) + min(d, n - e))
        for s, e, d, n in zip(start, stop, depth, shape)
    )
    index = 0
    for c, i in zip(chunks, block_id):
        index = index * len(c) + i
    return BlockInfo(start, stop, depth, valid, shape, index)


def _axis_pieces(
    chunks: tuple[int, ...], i: int, d: int, mode: str
) -> list[tuple[int, int, int, int, int]]:
    """How the halo-extended block ``i`` of one axis is assembled from source chunks.

    Returns ``(dst_start, length, chunk, src_start, step)`` pieces covering the
    extended range ``[start - d, stop + d)``: ``step`` 1 (a slice of ``chunk``), -1 (a
    reversed slice, ``src_start`` its first element), 0 (one voxel repeated) or
    ``chunk = -1`` (the ``mode='constant'`` fill). Indices past the edges come from
    :func:`fastct.streaming.boundary_index`, exactly as the streaming engine reads.
    """
    bounds = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
    n = int(bounds[-1])
    start, stop = int(bounds[i]), int(bounds[i + 1])
    mapped = boundary_index(np.arange(start - d, stop + d), n, mode)
    pieces = []
    for dst0, length, src0, step in _runs(mapped):
        if src0 < 0:
            pieces.append((dst0, length, -1, 0, 0))
            continue
        if step == 0:
            c = int(np.searchsorted(bounds, src0, side="right") - 1)
            pieces.append((dst0, length, c, src0 - int(bounds[c]), 0))
            continue
        done = 0
        while done < length:
            g = src0 + step * done  # global source index of this piece's first voxel
            c = int(np.searchsorted(bounds, g, side="right") - 1)
            room = int(bounds[c + 1]) - g if step == 1 else g - int(bounds[c]) + 1
            take = min(room, length - done)
            pieces.append((dst0 + done, take, c, g - int(bounds[c]), step))
            done += take
    return pieces


def _gather_block(
    arrays: list[np.ndarray],
    *,
    ids: list[tuple[int, ...]],
    pieces: list[list[tuple[int, int, int, int, int]]],
    ext_shape: tuple[int, ...],
    fill: Any,
    kernel: Any,
    info: BlockInfo,
    dtype: np.dtype,
    host_threads: dict[str, int] | None,
) -> np.ndarray:
    """One dask task: assemble the halo-extended block from its source chunks (every
    voxel copied once, converted to the compute dtype ``dtype`` as NumPy's ``astype``
    does) and run the fastct block kernel on it."""
    chunk_of = dict(zip(ids, arrays))
    data = np.empty(ext_shape, dtype=dtype)
    for combo in itertools.product(*pieces):
        dst = tuple(slice(p[0], p[0] + p[1]) for p in combo)
        if any(p[2] < 0 for p in combo):
            data[dst] = fill
            continue
        src_key = []
        flips = []
        for axis, (_d0, length, _c, s0, step) in enumerate(combo):
            if step == 1:
                src_key.append(slice(s0, s0 + length))
            elif step == -1:
                src_key.append(slice(s0 - length + 1, s0 + 1))
                flips.append(axis)
            else:
                src_key.append(slice(s0, s0 + 1))
        box = np.asarray(chunk_of[tuple(p[2] for p in combo)])[tuple(src_key)]
        if flips:
            box = np.flip(box, axis=tuple(flips))
        data[dst] = box  # broadcasts the repeated (step 0) voxels
    with _threads(host_threads):
        result = kernel(data, info)
    return np.ascontiguousarray(result)


def _map_overlap(
    x: Any,
    kernel: Any,
    *,
    depth: tuple[int, ...],
    mode: str,
    fill: Any,
    dtype: np.dtype,
    out_dtype: np.dtype,
    what: str,
    tiles: Any = None,
) -> Any:
    """``kernel(block, info)`` over every chunk of ``x`` with a halo of ``depth`` and the
    boundary ``mode`` at the outer edges only; lazy, same chunks as ``x``.

    The same blocks as :func:`dask.array.map_overlap` with the mode at the true edges
    would give (and as fastct's streaming engine builds), but made in one task per
    chunk: the task takes the source chunks its extended block touches (its
    neighbours, and for ``'wrap'``/``'reflect'`` near an edge the chunks the mode
    reads) and copies each voxel once into the block. dask's ``map_overlap`` builds
    the same block through a padding step, one slicing task per neighbour strip and a
    concatenation (three to four copies and ~30 tasks per chunk in 3-D), which cost
    more than the Gaussian itself on 64^3 chunks.
    """
    import dask
    from dask.highlevelgraph import HighLevelGraph

    da = _da()
    _check_chunks(x, depth, what, tiles=tiles)
    chunks = x.chunks
    host_threads = _host_threads()
    token = dask.base.tokenize(x.name, depth, mode, fill, str(dtype), str(out_dtype), what)
    name = f"fastct-{what.split()[0]}-{token}"
    per_axis_pieces = [
        [_axis_pieces(c, i, d, mode) for i in range(len(c))] for c, d in zip(chunks, depth)
    ]
    dsk: dict = {}
    for block_id in itertools.product(*(range(len(c)) for c in chunks)):
        pieces = [per_axis_pieces[a][i] for a, i in enumerate(block_id)]
        needed = [sorted({p[2] for p in ps if p[2] >= 0}) for ps in pieces]
        ids = list(itertools.product(*needed))
        info = _block_info(chunks, depth, block_id)
        ext_shape = tuple(int(c[i]) + 2 * d for c, i, d in zip(chunks, block_id, depth))
        func = functools.partial(
            _gather_block, ids=ids, pieces=pieces, ext_shape=ext_shape, fill=fill,
            kernel=kernel, info=info, dtype=dtype, host_threads=host_threads,
        )  # fmt: skip
        key = (name, *block_id)
        dsk[key] = (func, [(x.name, *cid) for cid in ids])
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[x])
    return da.Array(graph, name, chunks=chunks, dtype=out_dtype,
                    meta=np.empty((0,) * x.ndim, dtype=out_dtype))  # fmt: skip


# -- filters ----------------------------------------------------------------------------------
def _smoothing_args(image: Any, mode: Any, truncate: Any) -> tuple[Any, str, float]:
    x = _as_dask(image, "image")
    mode = check_mode(mode)
    truncate = check_real(truncate, "truncate", lo=0, lo_open=True)
    return x, mode, truncate


def gaussian(
    image: Any,
    sigma: float | Sequence[float],
    *,
    spacing: float | Sequence[float] | None = None,
    mode: str = "reflect",
    cval: float = 0.0,
    truncate: float = 4.0,
    method: str = "exact",
) -> Any:
    """Gaussian smoothing of a dask array, bit-identical to :func:`fastct.gaussian`.

    Parameters
    ----------
    image : dask.array.Array, ndarray or Volume
        2-D ``(y, x)`` or 3-D ``(z, y, x)`` input (an ndarray or Volume is wrapped with
        :func:`to_dask`).
    sigma : float or sequence of float
        Standard deviation per axis (voxels, or mm with ``spacing``).
    spacing : float or sequence of float, optional
        Voxel size in mm per axis; when given, ``sigma`` is in mm.
    mode : {'reflect', 'mirror', 'nearest', 'constant', 'wrap'}
        Boundary at the volume's outer edges, as in scipy.ndimage.
    cval : float
        Fill value past the edges when ``mode='constant'``.
    truncate : float
        Taps stop at ``int(truncate * sigma + 0.5)`` voxels (the halo per axis).
    method : {'exact', 'recursive'}
        As in :func:`fastct.gaussian`; ``'recursive'`` needs chunks that are whole tiles
        (see the module notes).

    Returns
    -------
    dask.array.Array
        Lazy result, same chunks; float32 for float32, integer and bool input, float64
        for float64 input.

    Raises
    ------
    ValueError
        A chunk (other than the first and last on an axis) is shorter than the halo
        ``int(truncate * sigma + 0.5)``; the message names the axis and the minimum.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastct, fastct.dask as fd
    >>> img = np.random.default_rng(0).random((20, 30, 40), dtype=np.float32)
    >>> x = da.from_array(img, chunks=(7, 16, 13))
    >>> y = fd.gaussian(x, 1.5, mode="nearest")
    >>> bool(np.array_equal(y.compute(), fastct.gaussian(img, 1.5, mode="nearest")))
    True
    """
    from .filters._gaussian import (
        _check_method,
        _exact_block_kernel,
        _pass_plan,
        _recursive_block_kernel,
        _sigma_voxels,
        gaussian_weights,
    )

    x, mode, truncate = _smoothing_args(image, mode, truncate)
    method = _check_method(method)
    cval = check_real(cval, "cval", finite=False)
    sig = _sigma_voxels(sigma, spacing, x.ndim, "sigma")
    cdt = smoothing_dtype(x.dtype)
    sig3 = sig if x.ndim == 3 else (0.0, *sig)
    xc = x  # converted to the compute dtype as the tasks copy it into their blocks
    what = f"gaussian (sigma={sig}, truncate={truncate})"
    if method == "recursive":
        plans = [_pass_plan(s, truncate) for s in sig3]
        if any(p[0] == "iir" for p in plans):
            rcval = float(cdt.type(cval))
            kernel = _recursive_block_kernel(plans, mode, rcval)
            depth = tuple(p[1] for p in plans)[-x.ndim :]
            tiles = tuple(p[2] for p in plans)[-x.ndim :]
            return _map_overlap(xc, kernel, depth=depth, mode=mode, fill=cval, dtype=cdt,
                                out_dtype=cdt, what=what, tiles=tiles)  # fmt: skip
    weights = [gaussian_weights(s, truncate) for s in sig3]
    depth = tuple((len(w) - 1) // 2 for w in weights)[-x.ndim :]
    kernel = _exact_block_kernel(weights, mode, cval)
    return _map_overlap(xc, kernel, depth=depth, mode=mode, fill=cval, dtype=cdt,
                        out_dtype=cdt, what=what)  # fmt: skip


def unsharp_mask(
    image: Any,
    radius: float | Sequence[float] = 1.0,
    amount: float = 1.0,
    *,
    spacing: float | Sequence[float] | None = None,
    mode: str = "reflect",
    truncate: float = 4.0,
) -> Any:
    """Unsharp mask of a dask array, bit-identical to :func:`fastct.unsharp_mask`.

    ``image + amount * (image - gaussian(image, radius))``, the halo being the
    Gaussian's ``int(truncate * radius + 0.5)`` voxels per axis.

    Parameters
    ----------
    image : dask.array.Array, ndarray or Volume
        2-D or 3-D input.
    radius : float or sequence of float
        Sigma of the blur per axis (voxels, or mm with ``spacing``).
    amount : float
        Strength of the sharpening.
    spacing : float or sequence of float, optional
        Voxel size in mm per axis; when given, ``radius`` is in mm.
    mode : {'reflect', 'mirror', 'nearest', 'constant', 'wrap'}
        Boundary at the outer edges (``'constant'`` uses 0).
    truncate : float
        Taps stop at ``int(truncate * radius + 0.5)`` voxels.

    Returns
    -------
    dask.array.Array
        float32 (float64 for float64 input), same chunks.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastct, fastct.dask as fd
    >>> img = np.random.default_rng(1).random((16, 24, 24), dtype=np.float32)
    >>> y = fd.unsharp_mask(da.from_array(img, chunks=8), radius=2.0, amount=1.5)
    >>> bool(np.array_equal(y.compute(), fastct.unsharp_mask(img, 2.0, 1.5)))
    True
    """
    from .filters._gaussian import _exact_block_kernel, _sigma_voxels, gaussian_weights

    x, mode, truncate = _smoothing_args(image, mode, truncate)
    amount = check_real(amount, "amount", finite=False)
    if not math.isfinite(amount):
        raise ValueError(f"amount must be finite, got {amount!r}")
    sig = _sigma_voxels(radius, spacing, x.ndim, "radius")
    cdt = smoothing_dtype(x.dtype)
    sig3 = sig if x.ndim == 3 else (0.0, *sig)
    weights = [gaussian_weights(s, truncate) for s in sig3]
    depth = tuple((len(w) - 1) // 2 for w in weights)[-x.ndim :]
    kernel = _exact_block_kernel(weights, mode, 0.0, amount, True)
    return _map_overlap(x, kernel, depth=depth, mode=mode, fill=0.0, dtype=cdt,
                        out_dtype=cdt, what=f"unsharp_mask (radius={sig})")  # fmt: skip


def median(
    image: Any,
    size: int | Sequence[int] = 3,
    *,
    footprint: Any = None,
    mode: str = "reflect",
    cval: float = 0.0,
) -> Any:
    """Median filter of a dask array, bit-identical to :func:`fastct.median` (and so to
    ``scipy.ndimage.median_filter``), in the input dtype.

    Parameters
    ----------
    image : dask.array.Array, ndarray or Volume
        2-D or 3-D input.
    size : int or sequence of int
        Window size per axis; the halo is ``size // 2`` voxels.
    footprint : array_like of bool, optional
        Window shape (overrides ``size``), anchored at ``s // 2`` as in scipy.
    mode : {'reflect', 'mirror', 'nearest', 'constant', 'wrap'}
        Boundary at the outer edges, as in scipy.ndimage.
    cval : float
        Fill value for ``mode='constant'`` (truncated toward zero for integer images).

    Returns
    -------
    dask.array.Array
        Same dtype and chunks as the input.

    Examples
    --------
    >>> import numpy as np, dask.array as da, scipy.ndimage as ndi, fastct.dask as fd
    >>> ct = np.random.default_rng(0).integers(-1000, 1000, (12, 20, 20)).astype(np.int16)
    >>> m = fd.median(da.from_array(ct, chunks=(5, 8, 8)), size=3).compute()
    >>> m.dtype, bool(np.array_equal(m, ndi.median_filter(ct, size=3)))
    (dtype('int16'), True)
    """
    from .filters._median import _check_cval, _check_footprint, _Plan, _rank_block

    x = _as_dask(image, "image")
    fp = _check_footprint(size, footprint, x.ndim)
    mode = check_mode(mode)
    dtype = np.dtype(x.dtype)
    fill = _check_cval(cval, dtype, mode)
    plan = _Plan(fp)

    def kernel(data: np.ndarray, info: BlockInfo) -> np.ndarray:
        return _rank_block(data, plan)

    return _map_overlap(x, kernel, depth=plan.depth, mode=mode, fill=fill, dtype=dtype,
                        out_dtype=dtype, what=f"median (footprint {fp.shape})")  # fmt: skip


def hessian_blob(
    image: Any,
    scale: float,
    *,
    spacing: float | Sequence[float] | None = None,
    mode: str = "reflect",
    cval: float = 0.0,
    truncate: float = 4.0,
) -> Any:
    """Hessian blob response of a 3-D dask array, bit-identical to
    :func:`fastct.filters.hessian_blob`.

    The halo is the Gaussian's reach plus one voxel (the Hessian's central
    differences): ``int(ceil(truncate * scale / spacing + 0.5)) + 1`` voxels per axis.

    Parameters
    ----------
    image : dask.array.Array, ndarray or Volume
        3-D ``(z, y, x)`` input.
    scale : float
        Gaussian sigma (voxels, or mm with ``spacing``).
    spacing : float or sequence of float, optional
        Voxel size in mm per axis.
    mode : {'reflect', 'mirror', 'nearest', 'constant', 'wrap'}
        Boundary at the outer edges.
    cval : float
        Fill value for ``mode='constant'``.
    truncate : float
        Gaussian taps stop at ``int(truncate * sigma + 0.5)`` voxels.

    Returns
    -------
    dask.array.Array
        float32 (float64 for float64 input), same chunks.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastct.dask as fd
    >>> from fastct.filters import hessian_blob
    >>> img = np.random.default_rng(0).random((24, 24, 24), dtype=np.float32)
    >>> y = fd.hessian_blob(da.from_array(img, chunks=12), 1.5).compute()
    >>> bool(np.array_equal(y, hessian_blob(img, 1.5)))
    True
    """
    from ._validate import check_spacing
    from .filters._blob import _plan

    x = _as_dask(image, "image")
    if x.ndim != 3:
        raise ValueError(f"image must be 3-D (z, y, x), got {x.ndim}-D with shape {x.shape}")
    scale = check_real(scale, "scale", lo=0, lo_open=True)
    sp = check_spacing(spacing, 3)
    mode = check_mode(mode)
    cval = check_real(cval, "cval", finite=False)
    truncate = check_real(truncate, "truncate", lo=0, lo_open=True)
    cdt = smoothing_dtype(x.dtype)
    kernel, depth = _plan(scale, sp, truncate, cdt)
    return _map_overlap(x, kernel, depth=tuple(depth), mode=mode, fill=cval, dtype=cdt,
                        out_dtype=cdt, what=f"hessian_blob (scale={scale})")  # fmt: skip


# -- resample ---------------------------------------------------------------------------------
def _resample_chunk(
    src: np.ndarray,
    sstart: np.ndarray,
    start3: np.ndarray,
    bshape3: tuple[int, ...],
    plan: tuple,
    host_threads: dict[str, int] | None,
) -> np.ndarray:
    """One output chunk of :func:`resample` (the moving box ``src`` starts at ``sstart``)."""
    from ._kernels.resample import resample_affine

    mat3, vec3, mshape3, order, cval, is_int, lo, hi, dst_dtype, core_shape = plan
    src = np.asarray(src)
    if src.dtype.kind == "b":
        src = src.view(np.uint8)
    src = np.ascontiguousarray(src)
    if src.ndim == 2:
        src = src.reshape((1, *src.shape))
    block = np.empty(bshape3, dtype=dst_dtype)
    with _threads(host_threads):
        resample_affine(src, block, mat3, vec3, start3, sstart, mshape3, order, cval, is_int,
                        lo, hi)  # fmt: skip
    return block.reshape(core_shape)


def _spline_coefficients(data: np.ndarray, ndim: int) -> np.ndarray:
    """Cubic B-spline coefficients of the whole moving image, as fastct.resample makes."""
    from scipy import ndimage

    data = np.asarray(data)
    if data.dtype.kind == "f" and data.dtype != np.float64:
        data = data.astype(np.float64)
    coef = ndimage.spline_filter(data, order=3, output=np.float64, mode="mirror")
    return np.ascontiguousarray(coef).reshape((1,) * (3 - ndim) + coef.shape)


def resample(
    moving: Any,
    transform: Any,
    *,
    shape: Sequence[int],
    spacing: Any = None,
    origin: Any = None,
    direction: Any = None,
    moving_spacing: Any = None,
    moving_origin: Any = None,
    moving_direction: Any = None,
    order: int = 1,
    cval: float = 0.0,
    chunks: Any = None,
    dtype: Any = None,
) -> Any:
    """Warp a dask array onto a grid, bit-identical to :func:`fastct.resample`.

    ``output[i] = moving at transform.apply(origin + direction @ (i * spacing))``. Each
    output chunk is one task that reads only the moving box its transform needs: the
    bounding box of the chunk's mapped corners plus the interpolation support (one
    voxel), clipped to the image; a chunk that maps outside the image reads nothing.
    ``order=3`` needs the whole image's spline coefficients: they are computed once
    (one task) and every chunk reads them.

    Parameters
    ----------
    moving : dask.array.Array, ndarray or Volume
        2-D or 3-D image (a Volume also gives the ``moving_*`` geometry defaults).
    transform : RigidTransform, SimilarityTransform or (ndim + 1, ndim + 1) matrix
        Output (fixed) physical points -> moving physical points.
    shape : sequence of int
        Output shape.
    spacing, origin, direction : optional
        Output grid (default 1 mm, 0, identity).
    moving_spacing, moving_origin, moving_direction : optional
        Moving grid (default the Volume's, else 1 mm, 0, identity).
    order : {0, 1, 3}
        Nearest, linear or cubic B-spline interpolation.
    cval : float
        Value outside the moving image.
    chunks : int or sequence of int, optional
        Output chunks (default: the moving array's chunk shape, capped at ``shape``).
        Small chunks read a little more input each (the support), so 64-256 voxels per
        axis is a good size.
    dtype : dtype, optional
        Output dtype (integers are rounded and clipped, as ``fastct.resample`` does for
        an integer ``out``). Default: the moving dtype for ``order=0``, else float32
        (float64 for float64 input).

    Returns
    -------
    dask.array.Array
        Lazy output of ``shape``.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastct, fastct.dask as fd
    >>> from fastct.transforms import RigidTransform
    >>> img = np.random.default_rng(0).random((24, 24, 24), dtype=np.float32)
    >>> t = RigidTransform(3, rotation=(0.1, 0.0, 0.05), translation=(1.0, -2.0, 0.5),
    ...                    center=(12.0, 12.0, 12.0))
    >>> y = fd.resample(da.from_array(img, chunks=8), t, shape=(20, 24, 24), chunks=10)
    >>> bool(np.array_equal(y.compute(), fastct.resample(img, t, shape=(20, 24, 24))))
    True
    """
    import dask

    from ._geometry import Geometry
    from .registration._resample import _as_transform, _snap

    da = _da()
    if isinstance(order, bool) or order not in (0, 1, 3):
        raise ValueError(f"order must be 0, 1 or 3, got {order!r}")
    if isinstance(cval, bool) or not isinstance(cval, (numbers.Real, np.number)):
        raise TypeError(f"cval must be a real number, got {type(cval).__name__}")
    if isinstance(moving, Volume):
        moving_spacing = moving.spacing if moving_spacing is None else moving_spacing
        moving_origin = moving.origin if moving_origin is None else moving_origin
        moving_direction = moving.direction if moving_direction is None else moving_direction
    x = _as_dask(moving, "moving")
    ndim = x.ndim
    mgeo = Geometry.of(ndim, moving_spacing, moving_origin, moving_direction, name="moving")
    shape_t = check_shape(shape, "shape")
    if len(shape_t) != ndim:
        raise ValueError(f"shape must have {ndim} values like moving, got {shape_t}")
    ogeo = Geometry.of(ndim, spacing, origin, direction)
    sp = np.asarray(ogeo.spacing, dtype=float)
    org = np.asarray(ogeo.origin, dtype=float)
    lin, off = _as_transform(transform, ndim)
    # The same affine map, in the same operations, as fastct.resample.
    lin_d = lin
    if not ogeo.is_identity:
        lin_d = lin @ ogeo.direction
    rel = lin @ org + off - np.asarray(mgeo.origin)
    if not mgeo.is_identity:
        lin_d = mgeo.direction.T @ lin_d
        rel = mgeo.direction.T @ rel
    mat = (lin_d * sp[None, :]) / np.asarray(mgeo.spacing)[:, None]
    vec = rel / np.asarray(mgeo.spacing)
    mat3, vec3 = np.zeros((3, 3)), np.zeros(3)
    mat3[3 - ndim :, 3 - ndim :] = mat
    vec3[3 - ndim :] = vec
    mat3, vec3 = _snap(mat3), _snap(vec3)
    mshape3 = np.asarray((1,) * (3 - ndim) + tuple(x.shape), dtype=np.int64)

    in_dtype = np.dtype(x.dtype)
    res_dtype = in_dtype if order == 0 else smoothing_dtype(in_dtype)
    if res_dtype.kind == "b":
        res_dtype = np.dtype(np.uint8) if order == 0 else res_dtype
    dst_dtype = res_dtype if dtype is None else np.dtype(dtype)
    if dst_dtype.kind not in "biuf":
        raise TypeError(f"dtype must be a real numeric dtype, got {dst_dtype}")
    is_int = dst_dtype.kind in "biu"
    if dst_dtype.kind == "b":
        lo, hi = 0.0, 1.0
    elif is_int:
        info = np.iinfo(dst_dtype)
        lo, hi = float(info.min), float(info.max)
    else:
        lo = hi = 0.0

    if chunks is None:
        chunks = tuple(min(int(c[0]), n) for c, n in zip(x.chunks, shape_t))
    out_chunks = da.core.normalize_chunks(chunks, shape_t, dtype=dst_dtype)
    host_threads = _host_threads()
    coef = None
    if order == 3:
        coef = dask.delayed(_spline_coefficients, pure=True)(x, ndim)
    blocks: dict[tuple[int, ...], Any] = {}
    for block_id in itertools.product(*(range(len(c)) for c in out_chunks)):
        start = tuple(int(sum(c[:i])) for c, i in zip(out_chunks, block_id))
        core = tuple(int(c[i]) for c, i in zip(out_chunks, block_id))
        start3 = np.asarray((0,) * (3 - ndim) + start, dtype=np.int64)
        bshape3 = (1,) * (3 - ndim) + core
        plan = (mat3, vec3, mshape3, order, float(cval), is_int, lo, hi, dst_dtype, core)
        if order == 3:
            src, sstart = coef, np.zeros(3, np.int64)
        else:
            src, sstart = _moving_box(x, mat3, vec3, start3, bshape3, mshape3, ndim)
        task = dask.delayed(_resample_chunk, pure=True)(
            src, sstart, start3, bshape3, plan, host_threads
        )
        blocks[block_id] = da.from_delayed(task, shape=core, dtype=dst_dtype)
    nested = _nest(blocks, tuple(len(c) for c in out_chunks))
    return da.block(nested)


def _moving_box(x, mat3, vec3, start3, bshape3, mshape3, ndim):
    """The moving box (a dask slice) and its start that an output chunk needs (orders 0
    and 1): the bounding box of the chunk's mapped corners plus one voxel, clipped; the
    same box as fastct.resample's streamed path reads."""
    corners = np.array(
        np.meshgrid(*[[s, s + n - 1] for s, n in zip(start3, bshape3)], indexing="ij")
    ).reshape(3, -1)
    u = mat3 @ corners + vec3[:, None]
    lo = np.maximum(np.floor(u.min(axis=1)) - 1, 0).astype(np.int64)
    hi = np.minimum(np.ceil(u.max(axis=1)) + 1, mshape3 - 1).astype(np.int64)
    if np.any(hi < lo):  # the chunk sees nothing of the moving image
        dt = x.dtype if np.dtype(x.dtype).kind != "b" else np.uint8
        return np.zeros((1, 1, 1), dtype=dt), lo * 0
    region = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi))[3 - ndim :]
    return x[region], lo


def _nest(blocks: dict[tuple[int, ...], Any], counts: tuple[int, ...]) -> Any:
    """Blocks by id as the nested lists :func:`dask.array.block` takes."""

    def level(prefix: tuple[int, ...]) -> Any:
        if len(prefix) == len(counts):
            return blocks[prefix]
        return [level((*prefix, i)) for i in range(counts[len(prefix)])]

    return level(())


# -- region features -------------------------------------------------------------------------
class _DaskVolume(Volume):
    """A dask array seen by fastct's streaming engine as a read-only Volume: each region
    read computes that box of the array (on the active dask scheduler)."""

    def __init__(self, array: Any, name: str, spacing: tuple[float, ...]):  # noqa: D107
        self._array = array
        self.name = name
        self._spacing = spacing
        self._origin = (0.0,) * array.ndim
        self._direction = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    @property
    def ndim(self) -> int:
        return int(self._array.ndim)

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return tuple(int(c[0]) for c in self._array.chunks)

    @property
    def compression(self) -> str | None:
        return None

    @property
    def modality(self) -> str | None:
        return None

    @property
    def units(self) -> str | None:
        return None

    @property
    def attrs(self) -> dict[str, Any]:
        return {}

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._array[key].compute())

    def read_region(self, region: tuple[slice, ...], out: np.ndarray) -> None:
        out[...] = self._array[region].compute()

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        data = np.asarray(self._array.compute())
        if out is None:
            return data
        out[...] = data
        return out

    def write_region(self, region: tuple[slice, ...], data: np.ndarray) -> None:
        raise PermissionError(f"{self.name} is a read-only dask array")

    def __repr__(self) -> str:
        return f"<fastct dask input {self.name} {self.shape} {self.dtype}>"


def region_features(
    labels: Any,
    image: Any,
    *,
    spacing: Sequence[float] | float | None = None,
    origin: Sequence[float] | None = None,
    direction: Any = None,
    properties: Sequence[str] | None = None,
    percentiles: Sequence[float] | None = (10, 50, 90),
    block_planes: int | None = None,
) -> Any:
    """Per-region features of dask arrays, equal to :func:`fastct.region_features`.

    Exact method: the table's float columns are sums over each region's voxels in
    raster order, so partial sums from chunks added in another order would differ in
    the last bits. Here fastct's own streaming passes run on the caller's side over
    slabs of whole z-planes, and each slab of ``labels`` and ``image`` is computed by
    dask (in parallel, on the active scheduler, the next slab while this one is
    accumulated). Every column, integer and float, is therefore bit-identical to the
    in-memory table. The inputs are computed once or twice per pass (labels: a scan
    for the labels present, then with the image; a second image pass for
    ``std``/``skewness``/``kurtosis`` without percentiles): ``persist()`` expensive
    inputs first. Memory: one slab (``block_planes`` planes, default about 4 Mi voxels,
    whole z-chunks) plus the table.

    Parameters
    ----------
    labels : dask.array.Array, ndarray or Volume
        Integer (or bool) label image, 2-D or 3-D; 0 is background.
    image : dask.array.Array, ndarray or Volume
        Intensities, same shape.
    spacing, origin, direction, properties, percentiles, block_planes
        As for :func:`fastct.region_features` (geometry defaults: 1 mm, 0, identity).

    Returns
    -------
    FeatureTable
        One row per label present.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastct, fastct.dask as fd
    >>> labels = np.zeros((8, 10, 10), np.int32)
    >>> labels[1:5, 2:6, 2:7] = 3
    >>> image = np.random.default_rng(0).random(labels.shape)
    >>> t = fd.region_features(da.from_array(labels, chunks=4), da.from_array(image, chunks=4),
    ...                        spacing=(2.0, 1.0, 1.0))
    >>> ref = fastct.region_features(labels, image, spacing=(2.0, 1.0, 1.0))
    >>> all(np.array_equal(t[c], ref[c], equal_nan=True) for c in ref)
    True
    """
    from . import features

    lab = _as_dask(labels, "labels", "biu", "an integer (or bool)")
    img = _as_dask(image, "image")
    if lab.shape != img.shape:
        raise ValueError(
            f"labels and image must have the same shape, got labels {lab.shape} "
            f"and image {img.shape}"
        )
    sp = (1.0,) * lab.ndim if spacing is None else per_axis(spacing, lab.ndim, "spacing")
    return features.region_features(
        _DaskVolume(lab, "labels", sp),
        _DaskVolume(img, "image", sp),
        spacing=spacing,
        origin=origin,
        direction=direction,
        properties=properties,
        percentiles=percentiles,
        block_planes=block_planes,
    )

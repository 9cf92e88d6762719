"""The streaming engine: the only door between operations and volume storage.

Every fastct operation that reads or writes an archive :class:`~fastct.volume.Volume`
does it through the access patterns here, never through the Volume's region methods
directly, so that block sizes, read-ahead, progress and (later) other storage backends
are decided in one place:

``map_overlap`` (halo blocks)
    Cuts the output into blocks, reads each block plus a halo of ``depth`` voxels per
    axis, extends it past the *true* edges of the volume with the boundary ``mode``
    (scipy.ndimage semantics), hands it to a kernel and writes the kernel's core
    result. Interior halos hold real neighbouring voxels, so a kernel whose value at a
    voxel depends only on the (mode-extended) input within ``depth`` of it gives
    bit-identical results whatever the block shape. Filters run on it.
``map_blocks`` (output-driven gather)
    For each output block, a caller-supplied ``read(start, stop)`` fetches whatever
    input the block needs (resampling reads the moving-image box its output block
    maps into), the kernel computes, the engine writes.
``stream`` over ``slabs`` (z-slabs with carried state)
    Whole z-planes, optionally with a halo of planes, read one slab ahead on a
    background thread while the caller's loop body runs and carries its own state
    from slab to slab (SLIC's k-means sums, feature accumulators, lung-mask reduction).
``read_region`` / ``write_region`` / ``read_all`` / ``write_all``
    Single reads and writes of a box, or a whole volume, for in-memory algorithms.

In every pattern, reading the next block and writing the previous one happen on a
background thread while the kernel runs (kernels release the GIL), so HDF5 I/O
overlaps computation. Block and slab sizes come from one memory budget
(:func:`fastct.set_memory_budget`, see :mod:`fastct._config`); results never depend
on them.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _config, _log
from ._validate import check_mode, check_out, per_axis
from .volume import Volume

__all__ = [
    "BlockInfo",
    "Scratch",
    "Slab",
    "block_bytes",
    "boundary_index",
    "choose_block_shape",
    "iter_blocks",
    "map_blocks",
    "map_overlap",
    "read_all",
    "read_extended",
    "read_planes",
    "read_region",
    "slab_planes",
    "slabs",
    "stream",
    "write_all",
    "write_region",
]

# Sentinel closing the reader/writer queues.
_DONE = object()

#: Start and end of every streamed operation (INFO), with sizes and durations.
log = _log.get_logger(__name__)


@dataclass(frozen=True)
class BlockInfo:
    """Where a block sits, passed to kernels beside the halo-extended data.

    Attributes
    ----------
    start, stop : tuple of int
        Global index range of the block's core (the voxels the kernel must return).
    depth : tuple of int
        Halo width on each side of every axis; the data array has shape
        ``core + 2 * depth``.
    valid : tuple of slice
        The part of the data array holding real voxels; outside it the values come
        from the boundary ``mode`` (only ever at the true edges of the volume).
    shape : tuple of int
        Shape of the whole volume.
    index : int
        Position of the block in iteration order.
    """

    start: tuple[int, ...]
    stop: tuple[int, ...]
    depth: tuple[int, ...]
    valid: tuple[slice, ...]
    shape: tuple[int, ...]
    index: int

    @property
    def core(self) -> tuple[slice, ...]:
        """The core region inside the halo-extended data array."""
        return tuple(slice(d, d + (e - s)) for s, e, d in zip(self.start, self.stop, self.depth))

    @property
    def core_shape(self) -> tuple[int, ...]:
        """Shape of the core (the kernel's output for this block)."""
        return tuple(e - s for s, e in zip(self.start, self.stop))

    @property
    def global_slices(self) -> tuple[slice, ...]:
        """The core's position in the whole volume."""
        return tuple(slice(s, e) for s, e in zip(self.start, self.stop))


# -- boundary index maps (scipy.ndimage semantics) ---------------------------------
def boundary_index(index: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map indices possibly outside ``[0, n)`` to source indices; -1 means ``cval``.

    ``reflect``  d c b a | a b c d | d c b a
    ``mirror``   d c b | a b c d | c b a
    ``nearest``  a a a | a b c d | d d d
    ``wrap``     b c d | a b c d | a b c
    ``constant`` k k k | a b c d | k k k
    """
    index = np.asarray(index, dtype=np.int64)
    if mode == "nearest":
        return np.clip(index, 0, n - 1)
    if mode == "wrap":
        return np.mod(index, n)
    if mode == "reflect":
        m = np.mod(index, 2 * n)
        return np.where(m >= n, 2 * n - 1 - m, m)
    if mode == "mirror":
        if n == 1:
            return np.zeros_like(index)
        m = np.mod(index, 2 * n - 2)
        return np.where(m >= n, 2 * n - 2 - m, m)
    if mode == "constant":
        return np.where((index >= 0) & (index < n), index, -1)
    raise ValueError(f"unknown mode {mode!r}")


def _runs(mapped: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Split a mapped index vector into runs of step +1, -1 or 0, or constant fill.

    Returns ``(dst_start, length, src_start, step)``; ``src_start = -1`` marks fill.
    """
    runs: list[tuple[int, int, int, int]] = []
    i, n = 0, len(mapped)
    while i < n:
        first = int(mapped[i])
        if first < 0:
            j = i + 1
            while j < n and mapped[j] < 0:
                j += 1
            runs.append((i, j - i, -1, 0))
            i = j
            continue
        step = 0
        if i + 1 < n and mapped[i + 1] >= 0 and abs(int(mapped[i + 1]) - first) <= 1:
            step = int(mapped[i + 1]) - first
        j = i + 1
        while j < n and mapped[j] >= 0 and int(mapped[j]) == first + step * (j - i):
            j += 1
        runs.append((i, j - i, first, step))
        i = j
    return runs


def read_extended(
    src: np.ndarray | Volume,
    start: tuple[int, ...],
    stop: tuple[int, ...],
    depth: tuple[int, ...],
    mode: str,
    cval: float,
    dtype: np.dtype,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Read ``src[start-depth : stop+depth]`` with the boundary ``mode`` past the edges.

    Interior blocks are a single read; blocks at an edge are assembled from a few
    boxes (at most three per axis), flipped or broadcast as the mode requires.
    """
    shape = src.shape
    ext_shape = tuple(e - s + 2 * d for s, e, d in zip(start, stop, depth))
    if out is None:
        out = np.empty(ext_shape, dtype=dtype)
    per_axis_runs = []
    for s, e, d, n in zip(start, stop, depth, shape):
        idx = np.arange(s - d, e + d)
        if s - d >= 0 and e + d <= n:
            per_axis_runs.append([(0, len(idx), s - d, 1)])
        else:
            per_axis_runs.append(_runs(boundary_index(idx, n, mode)))
    for combo in itertools.product(*per_axis_runs):
        dst_key: list[slice] = []
        src_key: list[slice] = []
        flips: list[int] = []
        fill = False
        for dst0, length, src0, step in combo:
            dst_key.append(slice(dst0, dst0 + length))
            if src0 < 0:
                fill = True
                src_key.append(slice(0, 0))  # not read: the box is filled
            elif step == 1:
                src_key.append(slice(src0, src0 + length))
            elif step == -1:
                src_key.append(slice(src0 - length + 1, src0 + 1))
                flips.append(len(dst_key) - 1)
            else:
                src_key.append(slice(src0, src0 + 1))
        dst_box = out[tuple(dst_key)]
        if (
            not fill
            and not flips
            and isinstance(src, Volume)
            and dst_box.shape == out.shape
            and all(st[3] == 1 for st in combo)
        ):
            # Interior block: HDF5 reads straight into the block buffer.
            src.read_region(tuple(src_key), out)
            continue
        if fill:
            dst_box[...] = cval
            continue
        box = src[tuple(src_key)]
        if flips:
            box = np.flip(box, axis=tuple(flips))
        dst_box[...] = np.broadcast_to(box, dst_box.shape)
    return out


# -- block geometry ---------------------------------------------------------------
def block_bytes() -> int:
    """Bytes of one streamed block's core, in its compute dtype.

    Half the memory budget: a block in flight holds its halo-extended input and its
    result, and the engine keeps one block read ahead.
    """
    return max(1, _config.get_memory_budget() // 2)


def choose_block_shape(
    shape: tuple[int, ...],
    itemsize: int,
    *,
    align: tuple[int, ...] | None = None,
    target_bytes: int | None = None,
) -> tuple[int, ...]:
    """A block shape of about ``target_bytes``, a multiple of ``align`` (chunk shape).

    Grows along the last (contiguous) axis first, so reads are long and writes cover
    whole chunks. ``target_bytes`` defaults to :func:`block_bytes`.
    """
    ndim = len(shape)
    if target_bytes is None:
        target_bytes = block_bytes()
    align = tuple(align) if align else (1,) * ndim
    block = [min(a, s) for a, s in zip(align, shape)]
    budget = max(1, target_bytes // max(1, itemsize))
    for axis in reversed(range(ndim)):
        others = math.prod(block[:axis] + block[axis + 1 :])
        room = max(1, budget // max(1, others))
        unit = max(1, min(align[axis], shape[axis]))
        grown = max(unit, (room // unit) * unit)
        block[axis] = min(shape[axis], max(block[axis], grown))
    return tuple(block)


def iter_blocks(
    shape: tuple[int, ...], block_shape: tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Yield ``(start, stop)`` of every block, in C order."""
    ranges = [range(0, n, b) for n, b in zip(shape, block_shape)]
    for corner in itertools.product(*ranges):
        stop = tuple(min(c + b, n) for c, b, n in zip(corner, block_shape, shape))
        yield tuple(corner), stop


# -- storage access ------------------------------------------------------------------
def _box(shape: tuple[int, ...], region: tuple[slice, ...]) -> tuple[slice, ...]:
    """``region`` completed with whole trailing axes, as unit-step slices."""
    region = tuple(region) + (slice(None),) * (len(shape) - len(region))
    box = []
    for r, n in zip(region, shape):
        start, stop, step = r.indices(n)
        if step != 1:
            raise ValueError(f"region must have unit steps, got {r}")
        box.append(slice(start, max(start, stop)))
    return tuple(box)


def read_region(
    src: np.ndarray | Volume, region: tuple[slice, ...], *, dtype: Any = None
) -> np.ndarray:
    """A C-contiguous array holding ``src[region]`` (unit-step slices; missing trailing
    axes are whole), in ``dtype`` (default: the source's).

    From a Volume the box is read straight into a new buffer; from an ndarray the
    result is a view when it already has the layout and dtype, else a copy.
    """
    box = _box(tuple(src.shape), region)
    if isinstance(src, Volume):
        buf = np.empty(tuple(b.stop - b.start for b in box), dtype=src.dtype)
        if buf.size:
            src.read_region(box, buf)
        return buf if dtype is None else np.ascontiguousarray(buf, dtype=dtype)
    return np.ascontiguousarray(src[box], dtype=dtype)


def write_region(dst: np.ndarray | Volume, region: tuple[slice, ...], data: np.ndarray) -> None:
    """Write ``data`` into the box ``region`` of ``dst`` (converted to ``dst``'s dtype
    as NumPy assignment, or HDF5 for a Volume, converts)."""
    box = _box(tuple(dst.shape), region)
    if isinstance(dst, Volume):
        dst.write_region(box, np.asarray(data))
    else:
        dst[box] = data


def read_all(src: np.ndarray | Volume, *, dtype: Any = None) -> np.ndarray:
    """The whole of ``src`` in memory, C-contiguous, in ``dtype`` (default: its own).

    An ndarray that already fits is returned as it is (not copied).
    """
    if isinstance(src, Volume):
        data = src.read()
        return data if dtype is None else np.ascontiguousarray(data, dtype=dtype)
    return np.ascontiguousarray(src, dtype=dtype)


def copy_volume(src: np.ndarray | Volume, dst: np.ndarray | Volume) -> None:
    """Copy every voxel of ``src`` into ``dst`` (same shape), one row of ``dst``'s chunks
    (or one memory-budget slab) at a time, so memory stays bounded by one slab."""
    if tuple(src.shape) != tuple(dst.shape):
        raise ValueError(f"dst must have shape {tuple(src.shape)}, got {tuple(dst.shape)}")
    chunks = dst.chunks if isinstance(dst, Volume) else None
    plane_bytes = math.prod(src.shape[1:]) * np.dtype(src.dtype).itemsize
    step = chunks[0] if chunks else slab_planes(dst, plane_bytes)
    for start in range(0, src.shape[0], max(1, step)):
        region = (slice(start, min(start + step, src.shape[0])),)
        write_region(dst, region, read_region(src, region))


def write_all(dst: np.ndarray | Volume, data: np.ndarray) -> np.ndarray | Volume:
    """Write an in-memory ``data`` of ``dst``'s shape into ``dst``.

    A Volume is written in z slabs of whole chunks, each converted to the volume's
    dtype on its own, so no full-size converted copy is made.
    """
    if tuple(np.shape(data)) != tuple(dst.shape):
        raise ValueError(f"data must have shape {tuple(dst.shape)}, got {np.shape(data)}")
    if not isinstance(dst, Volume):
        dst[...] = data
        return dst
    plane_bytes = math.prod(dst.shape[1:]) * np.dtype(dst.dtype).itemsize
    for slab in slabs(dst.shape[0], slab_planes(dst, plane_bytes)):
        part = np.ascontiguousarray(data[slab.start : slab.stop], dtype=dst.dtype)
        write_region(dst, (slice(slab.start, slab.stop),), part)
    return dst


class Scratch:
    """A private HDF5 file for streamed intermediates (e.g. a smoothed image that a
    multi-pass operation reads again), created on first use next to ``near``'s archive
    (else in the temporary folder) and removed by :meth:`close`."""

    def __init__(self, near: Any):
        self._dir: tempfile.TemporaryDirectory | None = None
        self._archive: Any = None
        self._near = near

    def volume(self, name: str, shape: tuple[int, ...], dtype: Any) -> Volume:
        """A new empty volume ``name`` in the scratch file (created on first use)."""
        if self._archive is None:
            from .volume import open as open_archive

            base = None
            if isinstance(self._near, Volume):
                base = os.path.dirname(os.path.abspath(self._near.archive.path))
            folder = tempfile.TemporaryDirectory(prefix="fastct-scratch-", dir=base)
            self._dir = folder
            self._archive = open_archive(os.path.join(folder.name, "scratch.h5"), "w")
        return self._archive.create_volume(name, shape=shape, dtype=dtype)

    def close(self) -> None:
        """Discard the scratch file and its folder (idempotent)."""
        if self._archive is not None:
            self._archive.abort()
            self._archive = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


# -- z-slabs -------------------------------------------------------------------------
@dataclass(frozen=True)
class Slab:
    """A run of whole z-planes: the core ``[start, stop)`` and the planes read
    ``[lo, hi)`` (the core plus up to ``halo`` planes each side, clipped to the volume).
    """

    start: int
    stop: int
    lo: int
    hi: int
    index: int

    @property
    def core(self) -> slice:
        """The core planes inside the planes read."""
        return slice(self.start - self.lo, self.stop - self.lo)

    @property
    def planes(self) -> int:
        return self.stop - self.start


def slab_planes(
    sources: np.ndarray | Volume | tuple | list,
    bytes_per_plane: int,
    *,
    planes: int | None = None,
    share: float = 1.0,
) -> int:
    """Planes per slab: ``planes`` if given (capped at the volume), else as many as
    ``share`` of the memory budget holds at ``bytes_per_plane`` (everything a slab
    plane costs the caller: inputs, outputs and scratch), rounded down to whole
    z-chunks of the first chunked Volume among ``sources`` when at least one fits.
    """
    if not isinstance(sources, (tuple, list)):
        sources = (sources,)
    nz = int(sources[0].shape[0])
    if planes is not None:
        return max(1, min(nz, int(planes)))
    n = max(1, int(_config.get_memory_budget() * share) // max(1, int(bytes_per_plane)))
    for src in sources:
        if isinstance(src, Volume) and src.chunks:
            cz = int(src.chunks[0])
            if n >= cz:
                n = n // cz * cz
            break
    return min(nz, n)


def slabs(n_planes: int, planes: int, *, halo: int = 0) -> list[Slab]:
    """The slabs of ``planes`` planes covering ``n_planes``, each read with ``halo``."""
    out = []
    for i, start in enumerate(range(0, n_planes, max(1, planes))):
        stop = min(start + planes, n_planes)
        out.append(Slab(start, stop, max(0, start - halo), min(n_planes, stop + halo), i))
    return out


def read_planes(src: np.ndarray | Volume, lo: int, hi: int, *, dtype: Any = None) -> np.ndarray:
    """Planes ``lo:hi`` of ``src`` as a C-contiguous array (a view when possible)."""
    return read_region(src, (slice(lo, hi),), dtype=dtype)


def stream(
    items: list,
    read: Callable[[Any], Any],
    *,
    prefetch: bool = True,
    progress: bool | None = None,
    desc: str | None = None,
    nbytes: int = 0,
) -> Generator[tuple[Any, Any], None, None]:
    """Yield ``(item, read(item))`` in order, reading the next item on the I/O thread
    while the caller works on this one.

    ``items`` are usually :func:`slabs`; ``read`` does the storage reads (through
    :func:`read_planes` / :func:`read_region`) and any per-slab conversion, off the
    caller's thread. The caller's loop body carries its state from slab to slab and
    writes through :func:`write_region`. ``nbytes`` (the volume's size) decides the
    automatic progress bar, as in :func:`map_overlap`.
    """
    items = list(items)
    label = desc or "stream"
    bar = _progress_bar(len(items), desc, progress, nbytes, unit="slab")
    log.info("%s: %d slab%s%s", label, len(items), "" if len(items) == 1 else "s",
             f" over {_size(nbytes)}" if nbytes else "")  # fmt: skip
    t0 = time.perf_counter()
    try:
        if not prefetch or len(items) <= 1:
            for item in items:
                data = read(item)
                yield item, data
                del data
                if bar is not None:
                    bar.update(1)
            _log_done(label, t0, nbytes)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="fastct-io") as pool:
            future = pool.submit(read, items[0])
            try:
                for i, item in enumerate(items):
                    data = future.result()
                    if i + 1 < len(items):
                        future = pool.submit(read, items[i + 1])
                    yield item, data
                    del data
                    if bar is not None:
                        bar.update(1)
            finally:
                future.cancel()
        _log_done(label, t0, nbytes)
    finally:
        if bar is not None:
            bar.close()


# -- progress and log records ------------------------------------------------------------
def _progress_bar(
    total: int, desc: str | None, progress: bool | None, nbytes: int, unit: str = "block"
) -> _log.Progress | None:
    """The progress display of one streamed operation (see :mod:`fastct._log`): a bar on
    a terminal (automatic mode: work over 256 MiB), periodic ``fastct.progress`` log
    records otherwise; None when progress is off or there is one step."""
    return _log.start_progress(
        total, desc or "fastct", progress, long=nbytes > _log.BAR_BYTES, unit=unit
    )


def _size(nbytes: int) -> str:
    """``nbytes`` for people: ``12.0 MiB``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # pragma: no cover


def _log_done(label: str, t0: float, nbytes: int) -> None:
    dt = time.perf_counter() - t0
    rate = f", {nbytes / 1024**2 / dt:.3g} MiB/s" if nbytes and dt > 0 else ""
    log.info("%s: done in %.2f s%s", label, dt, rate)


# -- the engine -----------------------------------------------------------------------
def map_overlap(
    func: Callable[[np.ndarray, BlockInfo], np.ndarray],
    src: np.ndarray | Volume,
    *,
    depth: int | tuple[int, ...] = 0,
    mode: str = "reflect",
    cval: float = 0.0,
    dtype: Any = None,
    out: np.ndarray | Volume | None = None,
    out_dtype: Any = None,
    block_shape: tuple[int, ...] | None = None,
    progress: bool | None = None,
    desc: str | None = None,
    prefetch: bool = True,
) -> np.ndarray | Volume:
    """Stream ``src`` through ``func`` block by block with a halo of ``depth``.

    Parameters
    ----------
    func : callable ``func(data, info) -> ndarray``
        Receives the halo-extended block ``data`` (shape ``core + 2*depth``, dtype
        ``dtype``, C-contiguous, owned by the call: it may be modified) and a
        :class:`BlockInfo`; returns the core result, shape ``info.core_shape``.
    src : ndarray or Volume
        The input, 2-D or 3-D.
    depth : int or sequence of int
        Halo per axis; the kernel's support radius.
    mode, cval
        Boundary handling at the true edges, as in scipy.ndimage.
    dtype : dtype, optional
        dtype of the blocks handed to ``func`` (default: the source dtype).
    out : ndarray or Volume, optional
        Destination with ``src``'s shape. Default: a new in-memory array.
    out_dtype : dtype, optional
        dtype of the new output when ``out`` is not given (default ``dtype``).
    block_shape : sequence of int, optional
        Core block shape. Default: :func:`block_bytes` (half the memory budget,
        32 MiB by default) per block, aligned to the
        destination's (else the source's) chunk shape.
    progress : bool, optional
        Progress bar on stderr. ``None`` (default) follows
        ``fastct.set_progress`` (``--quiet`` sets it to False); when that is
        automatic too, a bar is shown only for long work on a terminal.
    desc : str, optional
        Label of the progress bar.
    prefetch : bool
        Read the next block and write the previous one on background threads.

    Returns
    -------
    ndarray or Volume
        ``out`` (or the new array).

    Examples
    --------
    A 3x3 box mean, streamed in 4x4 blocks, equals the whole-array computation:

    >>> import numpy as np
    >>> from fastct.streaming import map_overlap
    >>> def box(data, info):
    ...     c = info.core
    ...     acc = np.zeros(info.core_shape)
    ...     for dy in (-1, 0, 1):
    ...         for dx in (-1, 0, 1):
    ...             acc += data[c[0].start + dy:c[0].stop + dy, c[1].start + dx:c[1].stop + dx]
    ...     return acc / 9
    >>> img = np.random.default_rng(0).random((10, 7))
    >>> a = map_overlap(box, img, depth=1, dtype=np.float64, block_shape=(4, 4))
    >>> b = map_overlap(box, img, depth=1, dtype=np.float64, block_shape=(10, 7))
    >>> bool(np.array_equal(a, b))
    True
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    if isinstance(src, Volume):
        shape = src.shape
    else:
        src = np.asarray(src)
        shape = src.shape
    if len(shape) not in (2, 3):
        raise ValueError(f"src must be 2-D or 3-D, got {len(shape)}-D")
    ndim = len(shape)
    depth_t = per_axis(depth, ndim, "depth", kind=int)
    mode = check_mode(mode)
    dtype = np.dtype(src.dtype if dtype is None else dtype)
    out = _destination(out, shape, np.dtype(out_dtype) if out_dtype is not None else dtype)
    itemsize = max(dtype.itemsize, np.dtype(out.dtype).itemsize)
    block_shape = _block_shape(block_shape, shape, itemsize, (out, src))
    blocks = list(iter_blocks(shape, block_shape))

    def read(i: int) -> tuple[np.ndarray, BlockInfo]:
        start, stop = blocks[i]
        valid = tuple(
            slice(d - min(d, s), d + (e - s) + min(d, n - e))
            for s, e, d, n in zip(start, stop, depth_t, shape)
        )
        info = BlockInfo(start, stop, depth_t, valid, tuple(shape), i)
        return read_extended(src, start, stop, depth_t, mode, cval, dtype), info

    nbytes = int(np.prod(shape)) * dtype.itemsize
    return _execute(blocks, read, func, out, progress, desc, prefetch, nbytes)


def map_blocks(
    func: Callable[[Any, BlockInfo], np.ndarray],
    shape: tuple[int, ...],
    read: Callable[[tuple[int, ...], tuple[int, ...]], Any],
    *,
    out: np.ndarray | Volume | None = None,
    out_dtype: Any = np.float64,
    itemsize: int | None = None,
    align: tuple[int, ...] | None = None,
    block_shape: tuple[int, ...] | None = None,
    progress: bool | None = None,
    desc: str | None = None,
    prefetch: bool = True,
) -> np.ndarray | Volume:
    """Compute an output of ``shape`` block by block from inputs the blocks gather.

    ``read(start, stop)`` runs on the I/O thread, one block ahead, and returns what the
    output block ``[start, stop)`` needs (read through :func:`read_region`, e.g. the
    moving-image box a resampled block maps into); ``func(data, info)`` returns the
    block (shape ``info.core_shape``, ``info.depth`` is 0) and the engine writes it to
    ``out`` (default: a new ``out_dtype`` array). Blocks hold about :func:`block_bytes`
    at ``itemsize`` bytes per voxel (default: the output dtype's), aligned to ``align``
    or to ``out``'s chunks.
    """
    shape = tuple(int(n) for n in shape)
    out = _destination(out, shape, np.dtype(out_dtype))
    if itemsize is None:
        itemsize = np.dtype(out.dtype).itemsize
    if block_shape is None and align is not None:
        block_shape = choose_block_shape(shape, itemsize, align=align)
    block_shape = _block_shape(block_shape, shape, itemsize, (out,))
    blocks = list(iter_blocks(shape, block_shape))
    zero = (0,) * len(shape)

    def read_block(i: int) -> tuple[Any, BlockInfo]:
        start, stop = blocks[i]
        info = BlockInfo(start, stop, zero, tuple(slice(0, e - s) for s, e in zip(start, stop)),
                         shape, i)  # fmt: skip
        return read(start, stop), info

    nbytes = math.prod(shape) * itemsize
    return _execute(blocks, read_block, func, out, progress, desc, prefetch, nbytes)


def _destination(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | Volume:
    """``out`` checked by the input layer, or a new ``dtype`` array when None."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    check_out(out, shape)
    return out


def _block_shape(block_shape: Any, shape: tuple[int, ...], itemsize: int, volumes: tuple):
    """The given block shape (capped at the volume), else one from the memory budget
    aligned to the first chunked Volume among ``volumes``."""
    if block_shape is not None:
        block_shape = per_axis(block_shape, len(shape), "block_shape", kind=int, allow_zero=False)
        return tuple(min(b, s) for b, s in zip(block_shape, shape))
    align = None
    for candidate in volumes:
        if isinstance(candidate, Volume) and candidate.chunks:
            align = candidate.chunks
            break
    return choose_block_shape(shape, itemsize, align=align)


def _execute(blocks, read, func, out, progress, desc, prefetch, nbytes) -> np.ndarray | Volume:
    """Run ``func`` over ``blocks``: ``read(i)`` gives ``(data, info)``; results go to
    ``out`` at the block's position."""
    bar = _progress_bar(len(blocks), desc, progress, nbytes)
    label = desc or getattr(func, "__name__", "map")
    if log.isEnabledFor(logging.INFO):
        shape = "x".join(str(n) for n in np.shape(out))
        core = "x".join(str(e - s) for s, e in zip(*blocks[0])) if blocks else "-"
        log.info("%s: %s (%s) in %d block%s of %s", label, shape, _size(nbytes), len(blocks),
                 "" if len(blocks) == 1 else "s", core)  # fmt: skip
    t0 = time.perf_counter()

    def compute(data: Any, info: BlockInfo) -> np.ndarray:
        result = func(data, info)
        if tuple(np.shape(result)) != info.core_shape:
            raise ValueError(
                f"kernel returned shape {np.shape(result)} for a block core of {info.core_shape}"
            )
        return result

    def write(result: np.ndarray, info: BlockInfo) -> None:
        write_region(out, info.global_slices, np.asarray(result))
        if bar is not None:
            bar.update(1)

    try:
        with _config.kernel_threads():
            if prefetch and len(blocks) > 1:
                _run_pipelined(len(blocks), read, compute, write)
            else:
                for i in range(len(blocks)):
                    data, info = read(i)
                    write(compute(data, info), info)
    finally:
        if bar is not None:
            bar.close()
    _log_done(label, t0, nbytes)
    return out


def _run_pipelined(n_blocks: int, read, compute, write) -> None:
    """One I/O thread reads ahead and writes behind; this thread runs the kernels.

    All reads and writes stay on one thread on purpose: h5py serialises HDF5 calls
    behind a global lock, and separate reader and writer threads contending for it
    (and the GIL) ran 2-3x slower than one thread doing both in order. The I/O
    thread keeps one block read ahead of the kernel and writes results as soon as
    they are ready. Any error (or Ctrl-C here) stops both and is re-raised here.
    """
    read_q: queue.Queue = queue.Queue()
    write_q: queue.Queue = queue.Queue()
    stop = threading.Event()
    errors: list[BaseException] = []

    def get(q: queue.Queue) -> Any:
        while not stop.is_set():
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                pass
        return _DONE

    def io() -> None:
        try:
            next_read = written = 0
            while written < n_blocks and not stop.is_set():
                try:
                    ready = write_q.get_nowait()
                except queue.Empty:
                    ready = None
                if ready is None and next_read < n_blocks and next_read - written < 2:
                    read_q.put(read(next_read))
                    next_read += 1
                    continue
                if ready is None:
                    ready = get(write_q)
                    if ready is _DONE:
                        return
                write(*ready)
                written += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)
            stop.set()

    thread = threading.Thread(target=io, name="fastct-io", daemon=True)
    thread.start()
    try:
        for _ in range(n_blocks):
            item = get(read_q)
            if item is _DONE:
                break
            data, info = item
            del item
            result = compute(data, info)
            del data
            write_q.put((result, info))
            del result
        thread.join()  # the I/O thread writes every result before we return
    finally:
        stop.set()
        thread.join()
    if errors:
        raise errors[0]

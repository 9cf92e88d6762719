"""The block streaming engine every operation runs through.

:func:`map_overlap` cuts the output into blocks, reads each block plus a halo of
``depth`` voxels per axis from the source, extends it past the *true* edges of the
volume with the boundary ``mode`` (scipy.ndimage semantics), hands it to a kernel
and writes the kernel's core result. Interior halos hold real neighbouring voxels,
so a kernel whose value at a voxel depends only on the (mode-extended) input within
``depth`` of it gives bit-identical results whatever the block shape, and the same
result as one call on the whole array.

Reading the next block and writing the previous one happen on background threads
while the kernel runs (kernels release the GIL), so HDF5 I/O overlaps computation.
At most a few blocks are alive at once, whatever the volume size.
"""

from __future__ import annotations

import itertools
import math
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _config
from ._validate import check_mode, per_axis
from .volume import Volume

# Default working-set target: one block of this many bytes in the compute dtype.
DEFAULT_BLOCK_BYTES = 32 * 1024**2
# Sentinel closing the reader/writer queues.
_DONE = object()


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
        dst_key, src_key, flips, fill = [], [], [], False
        for dst0, length, src0, step in combo:
            dst_key.append(slice(dst0, dst0 + length))
            if src0 < 0:
                fill = True
                src_key.append(None)
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
def choose_block_shape(
    shape: tuple[int, ...],
    itemsize: int,
    *,
    align: tuple[int, ...] | None = None,
    target_bytes: int = DEFAULT_BLOCK_BYTES,
) -> tuple[int, ...]:
    """A block shape of about ``target_bytes``, a multiple of ``align`` (chunk shape).

    Grows along the last (contiguous) axis first, so reads are long and writes cover
    whole chunks.
    """
    ndim = len(shape)
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


# -- progress ----------------------------------------------------------------------
def _progress_bar(total: int, desc: str | None, progress: bool | None, nbytes: int):
    if progress is None:
        progress = _config.get_progress()
        if progress is None:  # auto: long work on an interactive terminal
            progress = sys.stderr.isatty() and nbytes > 256 * 1024**2
    if not progress or total <= 1:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc or "fastct", unit="block", file=sys.stderr, leave=False)


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
        Core block shape. Default: about 32 MiB per block, aligned to the
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
    if out is None:
        out = np.empty(shape, dtype=np.dtype(out_dtype) if out_dtype is not None else dtype)
    elif tuple(out.shape) != tuple(shape):
        raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
    if isinstance(out, Volume):
        out._archive._check_writable()
    elif not isinstance(out, np.ndarray):
        raise TypeError(f"out must be an ndarray or a Volume, got {type(out).__name__}")
    elif not out.flags.writeable:
        raise ValueError("out must be writeable")

    if block_shape is None:
        align = None
        for candidate in (out, src):
            if isinstance(candidate, Volume) and candidate.chunks:
                align = candidate.chunks
                break
        itemsize = max(dtype.itemsize, np.dtype(out.dtype).itemsize)
        block_shape = choose_block_shape(shape, itemsize, align=align)
    else:
        block_shape = per_axis(block_shape, ndim, "block_shape", kind=int, allow_zero=False)
        block_shape = tuple(min(b, s) for b, s in zip(block_shape, shape))

    blocks = list(iter_blocks(shape, block_shape))
    bar = _progress_bar(len(blocks), desc, progress, int(np.prod(shape)) * dtype.itemsize)

    def read(i: int) -> tuple[np.ndarray, BlockInfo]:
        start, stop = blocks[i]
        valid = tuple(
            slice(d - min(d, s), d + (e - s) + min(d, n - e))
            for s, e, d, n in zip(start, stop, depth_t, shape)
        )
        info = BlockInfo(start, stop, depth_t, valid, tuple(shape), i)
        return read_extended(src, start, stop, depth_t, mode, cval, dtype), info

    def compute(data: np.ndarray, info: BlockInfo) -> np.ndarray:
        result = func(data, info)
        if tuple(np.shape(result)) != info.core_shape:
            raise ValueError(
                f"kernel returned shape {np.shape(result)} for a block core of {info.core_shape}"
            )
        return result

    def write(result: np.ndarray, info: BlockInfo) -> None:
        if isinstance(out, Volume):
            out.write_region(info.global_slices, np.asarray(result))
        else:
            out[info.global_slices] = result
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

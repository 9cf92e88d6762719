"""Resource limits for untrusted input: sizes declared by a file are checked before
anything of that size is allocated or written.

A file's header is a claim, not a fact: a 1 KiB NIfTI file may declare 32767^3 voxels,
an HDF5 archive a 2^60-voxel dataset, a DICOM slice 65535 x 65535 pixels. Every reader
asks :func:`check_allocation` before it allocates the array the header describes, and
writers of a known size ask :func:`check_disk_space` before they write; both raise
:class:`ResourceLimitError` (a ``ValueError``, so the command line prints one line and
exits with status 2) naming the size needed and the limit.

The memory limit is, in order: the ``max_memory`` argument, the environment variable
``FASTCT_MAX_MEMORY`` (``'3G'``, ``'512M'``, bytes; the syntax of the pipeline's
``--max-memory``), else what the machine has available (Linux ``MemAvailable``) and the
process may still map under its ``RLIMIT_AS``.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

#: Largest volume fastct accepts at all, in voxels (2^40: a 10000^3 scan is 1e12). A
#: file declaring more is refused when it is opened, whatever the memory.
MAX_VOXELS = 2**40
#: Largest storage chunk (uncompressed bytes) fastct decodes: HDF5 and Zarr allocate a
#: whole chunk to read any voxel of it.
MAX_CHUNK_BYTES = 1024**3
#: Environment variable with a memory bound for readers (same syntax as --max-memory).
ENV_MAX_MEMORY = "FASTCT_MAX_MEMORY"


class ResourceLimitError(ValueError):
    """A file declares more voxels, memory or disk than fastct may use for it."""


def human_bytes(n: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _address_space_left() -> int | None:
    """Bytes the process may still map under its soft ``RLIMIT_AS``, or None."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft == resource.RLIM_INFINITY:
            return None
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return max(0, soft - int(line.split()[1]) * 1024)
    except (ImportError, OSError, ValueError, IndexError):
        pass
    return None


def memory_limit(max_memory: object = None) -> int | None:
    """The bound readers apply, in bytes (None: unknown, no check)."""
    from ..pipeline._memory import available_memory, parse_memory

    bound = parse_memory(max_memory, "max_memory")
    if bound is None and os.environ.get(ENV_MAX_MEMORY, "").strip():
        bound = parse_memory(os.environ[ENV_MAX_MEMORY], ENV_MAX_MEMORY)
    if bound is not None:
        return bound
    limits = [v for v in (available_memory(), _address_space_left()) if v is not None]
    return min(limits) if limits else None


def check_voxels(shape: tuple[int, ...], what: str) -> None:
    """Refuse a declared shape of more than :data:`MAX_VOXELS` voxels (or a negative axis)."""
    if any(int(s) < 0 for s in shape):
        raise ResourceLimitError(f"{what} declares a negative size {tuple(shape)}")
    n = math.prod(int(s) for s in shape)
    if n > MAX_VOXELS:
        raise ResourceLimitError(
            f"{what} declares shape {tuple(int(s) for s in shape)} ({n:.3g} voxels), more "
            f"than fastct's limit of {MAX_VOXELS:.3g} voxels; the file is damaged or hostile"
        )


def check_chunk(chunks: tuple[int, ...] | None, itemsize: int, what: str) -> None:
    """Refuse a storage chunk larger than :data:`MAX_CHUNK_BYTES` once decoded."""
    if not chunks:
        return
    if any(int(c) < 1 for c in chunks):
        raise ResourceLimitError(f"{what} declares an empty chunk shape {tuple(chunks)}")
    nbytes = math.prod(int(c) for c in chunks) * int(itemsize)
    if nbytes > MAX_CHUNK_BYTES:
        raise ResourceLimitError(
            f"{what} declares chunks {tuple(int(c) for c in chunks)} of {human_bytes(nbytes)} "
            f"each, more than fastct's limit of {human_bytes(MAX_CHUNK_BYTES)} per chunk"
        )


def check_allocation(nbytes: int, what: str, *, max_memory: object = None) -> None:
    """Raise :class:`ResourceLimitError` when ``nbytes`` exceeds :func:`memory_limit`.

    Parameters
    ----------
    nbytes : int
        Size of the allocation about to be made.
    what : str
        What it is for, e.g. ``"reading volume '/scans/a/image' of study.h5"``.
    max_memory : int or str, optional
        A bound in bytes or a size such as ``'2G'`` (default: see the module notes).

    Examples
    --------
    >>> from fastct.io import check_allocation
    >>> check_allocation(1024, "a small array")
    >>> check_allocation(2**62, "reading x.nii")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fastct.io._limits.ResourceLimitError: reading x.nii needs 4096.0 PiB of memory, ...
    """
    limit = memory_limit(max_memory)
    if limit is not None and nbytes > limit:
        raise ResourceLimitError(
            f"{what} needs {human_bytes(nbytes)} of memory, more than the "
            f"{human_bytes(limit)} available (set {ENV_MAX_MEMORY} to change the bound)"
        )


def check_disk_space(nbytes: int, path: str | os.PathLike, what: str) -> None:
    """Raise :class:`ResourceLimitError` when writing ``nbytes`` next to ``path`` would
    not fit in the free space of its file system (checked before writing).

    Examples
    --------
    >>> import tempfile
    >>> from fastct.io import check_disk_space
    >>> check_disk_space(10, tempfile.gettempdir() + "/out.nii", "writing out.nii")
    """
    folder = Path(path)
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # unknown: let the write itself report a full disk
    if nbytes > free:
        raise ResourceLimitError(
            f"{what} needs {human_bytes(nbytes)} of disk, more than the {human_bytes(free)} "
            f"free in {str(folder)!r}"
        )


def declared_too_much(path: Path, what: str) -> Exception:
    """The error to raise for a ``MemoryError`` while a reader parses ``path``: a file
    that is small next to the memory and still exhausts it declares lengths it does not
    hold (a damaged length field), a ``ValueError``; a genuinely large file keeps the
    ``MemoryError``."""
    size = path.stat().st_size
    limit = memory_limit()
    if limit is not None and size * 4 > limit:
        return MemoryError(f"{what} ({size} bytes) does not fit in memory")
    return ResourceLimitError(
        f"{what} is corrupt: a length field declares more data than the memory holds "
        f"(the file has {size} bytes)"
    )

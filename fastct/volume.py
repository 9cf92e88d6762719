"""HDF5 volume archives: many scans in one file, chunked, with physical metadata.

An :class:`Archive` is one HDF5 file; a :class:`Volume` is one chunked dataset in it
with the attributes ``spacing``, ``origin`` and optionally ``direction``,
``modality`` and ``units`` (see ``docs/archive-format.rst``).

Writing is transactional. Opening an archive for writing works on a private copy of
the file (a copy-on-write clone where the file system supports it), and
:meth:`Archive.close` moves the copy into place in one atomic ``rename`` only when
the ``with`` block finishes without error. A crash, ``SIGKILL`` or Ctrl-C at any
moment leaves the original file as it was: HDF5 is not journaled, so this is the
only way to guarantee that datasets that existed before are never damaged.

Zarr v3 / OME-Zarr stores (``.zarr`` folders) are the second backend:
:func:`open` returns a :class:`fastct._store_zarr.ZarrArchive`, a subclass of
:class:`Archive` whose volumes are the same :class:`Volume` class over a Zarr array, with
per-volume atomic publishing instead of a whole-file copy.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import _atomic
from ._validate import check_direction, check_ndim, check_origin, check_spacing
from .io import _limits

FORMAT_NAME = "fastct-archive"
FORMAT_VERSION = 1
DEFAULT_CHUNK_3D = (64, 64, 64)
DEFAULT_CHUNK_2D = (256, 256)
COMPRESSIONS = (None, "gzip", "lzf")
_MODES = ("r", "r+", "a", "w", "x")
# A larger raw-chunk cache than HDF5's 1 MiB default so a block's halo re-reads hit memory.
_CHUNK_CACHE_BYTES = 64 * 1024**2


class ArchiveDamagedError(ValueError):
    """The HDF5 library could not read a part of the archive file (a damaged or
    overwritten header, B-tree, heap or chunk). A ``ValueError``, so the CLI reports it
    in one line with exit status 2."""


def _raised_by_hdf5(exc: BaseException) -> bool:
    """True when ``exc`` comes from inside h5py (HDF5 library errors surface as plain
    ``RuntimeError``/``OSError``/``KeyError``), not from the operating system."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return False  # a real I/O error (disk, permissions): leave it as it is
    tb = exc.__traceback__
    while tb is not None:
        if "h5py" in Path(tb.tb_frame.f_code.co_filename).parts:
            return True
        tb = tb.tb_next
    return False


def _hdf5_reads(method: Callable) -> Callable:
    """Report HDF5 read failures of ``method`` as :class:`ArchiveDamagedError` naming the
    file (h5py's own errors name neither the file nor the member)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (RuntimeError, OSError, KeyError) as exc:
            if isinstance(exc, ArchiveDamagedError) or not _raised_by_hdf5(exc):
                raise
            archive = self if isinstance(self, Archive) else self._archive
            where = getattr(self, "name", None)
            member = f" (reading {where!r})" if isinstance(where, str) else ""
            reason = " ".join(str(exc).split())
            raise ArchiveDamagedError(
                f"archive {str(archive.path)!r} is damaged or unreadable{member}: {reason}"
            ) from None

    return wrapper


def _check_member_name(name: str, archive: Path) -> None:
    """Refuse a member whose name has a ``.`` or ``..`` component (HDF5 allows them):
    scan ids taken from member names become file and folder names of outputs, and
    ``scans/../image`` must never turn into a path outside the output folder."""
    parts = name.strip("/").split("/")
    bad = [p for p in parts if p in (".", "..") or "\\" in p or "\x00" in p]
    if bad:
        raise ArchiveDamagedError(
            f"archive {str(archive)!r} has a member {name!r} whose name component "
            f"{bad[0]!r} could address a path outside an output folder; fastct refuses "
            "such archives"
        )


#: How much of an HDF5 file's start and end :func:`_looping_global_heap` scans.
_HEAP_SCAN_BYTES = 32 * 1024**2
#: Files already scanned, by (device, inode, size, mtime): each version once a process.
_HEAP_SCANNED: dict[tuple[int, int, int, int], int | None] = {}


def _looping_global_heap(path: Path) -> int | None:
    """Offset of a global heap collection that would send HDF5 into an endless loop, or
    None.

    Variable-length strings (attributes such as ``modality``) live in global heap
    collections (``GCOL``). HDF5 (2.0 included) parses a collection by walking its
    objects, and a free-space object of size 0 (a collection partly zeroed or
    overwritten) never advances the walk: reading any attribute then hangs inside the C
    library, where no timeout or Ctrl-C reaches. This walks every collection found in
    the file's first and last :data:`_HEAP_SCAN_BYTES` (where archives keep their
    metadata) the way HDF5 does and reports the one that would not terminate; other
    damage is left to HDF5, which reports it as an error.
    """
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HEAP_SCANNED:
        if len(_HEAP_SCANNED) > 1024:
            _HEAP_SCANNED.clear()
        _HEAP_SCANNED[key] = _scan_global_heaps(path, st.st_size)
    return _HEAP_SCANNED[key]


def _scan_global_heaps(path: Path, size: int) -> int | None:
    import mmap
    import struct

    if size < 16:
        return None
    with builtins.open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        windows = [(0, min(size, _HEAP_SCAN_BYTES))]
        if size > _HEAP_SCAN_BYTES:
            windows.append((max(_HEAP_SCAN_BYTES, size - _HEAP_SCAN_BYTES), size))
        for lo, hi in windows:
            at = m.find(b"GCOL", lo, hi)
            while at != -1:
                if at + 16 <= size and m[at + 4] == 1:
                    (length,) = struct.unpack_from("<Q", m, at + 8)
                    end = min(at + length, size)
                    p = at + 16
                    while p < end:
                        if p + 16 > end:
                            break  # trailing space too small for an object: free
                        idx, _refs, _res, objsize = struct.unpack_from("<HHIQ", m, p)
                        need = 16 + ((objsize + 7) & ~7) if idx > 0 else objsize
                        if need <= 0:
                            return at
                        p += need
                at = m.find(b"GCOL", at + 4, hi)
    return None


def _normalise_name(name: object, param: str = "name") -> str:
    if not isinstance(name, str):
        raise TypeError(
            f"{param} must be a string path inside the archive, got {type(name).__name__}"
        )
    parts = [p for p in name.strip().split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"{param} must be a path like 'scans/a/image', got {name!r}")
    return "/" + "/".join(parts)


def default_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """About 64^3 (3-D) or 256^2 (2-D) voxels per chunk, clipped to the shape."""
    base = DEFAULT_CHUNK_3D if len(shape) == 3 else DEFAULT_CHUNK_2D
    return tuple(max(1, min(b, s)) for b, s in zip(base, shape))


def _check_chunks(chunks: object, shape: tuple[int, ...]) -> tuple[int, ...]:
    if chunks is None or chunks is True:
        return default_chunks(shape)
    try:
        dims = tuple(int(c) for c in chunks)  # type: ignore[union-attr]
    except TypeError:
        raise TypeError(
            f"chunks must be a sequence of {len(shape)} integers, got {chunks!r}"
        ) from None
    if len(dims) != len(shape) or any(c < 1 for c in dims):
        raise ValueError(f"chunks must be {len(shape)} positive integers, got {chunks!r}")
    return tuple(min(c, s) for c, s in zip(dims, shape))


class Volume:
    """One scan (or label map) in an archive: a chunked array with physical metadata.

    Behaves like a read-only NumPy array for slicing (``vol[10:20, :, ::2]``) and,
    in an archive opened for writing, accepts slice assignment. ``read()`` loads
    the whole volume.

    Attributes
    ----------
    name : str
        Path inside the archive, e.g. ``'/scans/a/image'``.
    shape, dtype, ndim, chunks
        As for the HDF5 dataset.
    spacing : tuple of float
        Voxel size in mm per axis (z, y, x).
    origin : tuple of float
        Physical position in mm of voxel index 0.
    direction : ndarray or None
        Direction cosines, ``ndim x ndim``.
    modality, units : str or None
    """

    @_hdf5_reads
    def __init__(self, dataset: h5py.Dataset, archive: Archive):
        self._ds = dataset
        self._archive = archive
        self.name: str = dataset.name
        check_ndim(dataset.ndim, f"volume {self.name!r}")
        if dataset.dtype.kind not in "biuf":
            raise ValueError(
                f"volume {self.name!r} has dtype {dataset.dtype}; fastct volumes hold "
                "real numbers or booleans"
            )
        # Declared sizes are claims of the file: refused before anything that size exists.
        where = f"volume {self.name!r} in {str(archive.path)!r}"
        _limits.check_voxels(tuple(dataset.shape), where)
        _limits.check_chunk(dataset.chunks, dataset.dtype.itemsize, where)
        self._check_metadata()

    @property
    def archive(self) -> Archive:
        """The archive holding this volume."""
        return self._archive

    # -- metadata ---------------------------------------------------------------
    def _check_metadata(self) -> None:
        attrs = self._ds.attrs
        where = f"volume {self.name!r} in {self._archive.path}"
        try:
            self._spacing = check_spacing(attrs.get("spacing"), self.ndim, "spacing")
            self._origin = check_origin(attrs.get("origin"), self.ndim, "origin")
            self._direction = check_direction(attrs.get("direction"), self.ndim, "direction")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: invalid metadata attribute {exc}") from None

    @property
    def shape(self) -> tuple[int, ...]:
        """Number of voxels per axis."""
        return tuple(self._ds.shape)

    @property
    def dtype(self) -> np.dtype:
        """Element type."""
        return self._ds.dtype

    @property
    def ndim(self) -> int:
        """2 or 3."""
        return self._ds.ndim

    @property
    def size(self) -> int:
        """Total number of voxels."""
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Uncompressed size in bytes."""
        return self.size * self.dtype.itemsize

    @property
    def chunks(self) -> tuple[int, ...] | None:
        """Chunk shape."""
        return self._ds.chunks

    @property
    def compression(self) -> str | None:
        """Compression filter (HDF5) or codec (Zarr) name, or None."""
        return self._ds.compression

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm per axis (settable in a writable archive)."""
        return self._spacing

    @spacing.setter
    def spacing(self, value: Any) -> None:
        self._archive._check_writable()
        self._spacing = check_spacing(value, self.ndim)
        self._ds.attrs["spacing"] = np.asarray(self._spacing, dtype=np.float64)

    @property
    def origin(self) -> tuple[float, ...]:
        """Physical position in mm of voxel index 0 (settable in a writable archive)."""
        return self._origin

    @origin.setter
    def origin(self, value: Any) -> None:
        self._archive._check_writable()
        self._origin = check_origin(value, self.ndim)
        self._ds.attrs["origin"] = np.asarray(self._origin, dtype=np.float64)

    @property
    def direction(self) -> np.ndarray | None:
        """Direction cosines (ndim x ndim, columns per array axis), or None."""
        return None if self._direction is None else self._direction.copy()

    @property
    @_hdf5_reads
    def modality(self) -> str | None:
        """Imaging modality, e.g. 'CT', or None."""
        return _str_attr(self._ds.attrs.get("modality"))

    @property
    @_hdf5_reads
    def units(self) -> str | None:
        """Intensity units, e.g. 'HU', or None."""
        return _str_attr(self._ds.attrs.get("units"))

    @property
    @_hdf5_reads
    def attrs(self) -> dict[str, Any]:
        """A copy of all HDF5 attributes."""
        return {k: self._ds.attrs[k] for k in self._ds.attrs}

    def metadata(self) -> dict[str, Any]:
        """Physical metadata as keyword arguments for :meth:`Archive.create_volume`."""
        return {
            "spacing": self.spacing,
            "origin": self.origin,
            "direction": self.direction,
            "modality": self.modality,
            "units": self.units,
        }

    # -- data -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.shape[0]

    @_hdf5_reads
    def __getitem__(self, key: Any) -> np.ndarray:
        key, flip = _positive_step_key(key, self.shape)
        data = self._ds[key]
        return data[flip] if flip else data

    def check_writable(self) -> None:
        """Raise unless the volume can be written: ``PermissionError`` for an archive
        opened read-only, ``ValueError`` for a closed one."""
        self._archive._check_writable()

    def __setitem__(self, key: Any, value: Any) -> None:
        self._archive._check_writable()
        self._ds[key] = value

    @_hdf5_reads
    def read_region(self, region: tuple[slice, ...], out: np.ndarray) -> None:
        """Read a box of unit-step slices straight into a C-contiguous ``out`` (no copy)."""
        self._ds.read_direct(out, source_sel=region)

    def write_region(self, region: tuple[slice, ...], data: np.ndarray) -> None:
        """Write a C-contiguous array of the volume's dtype into a box of unit-step slices."""
        self._archive._check_writable()
        if data.dtype == self.dtype and data.flags.c_contiguous:
            self._ds.write_direct(data, dest_sel=region)
        else:
            self._ds[region] = data

    @_hdf5_reads
    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        """Read the whole volume into memory (into ``out`` if given)."""
        if out is None:
            _limits.check_allocation(
                self.nbytes, f"reading volume {self.name!r} of {str(self._archive.path)!r}"
            )
            out = np.empty(self.shape, dtype=self.dtype)
        elif out.shape != self.shape:
            raise ValueError(f"out must have shape {self.shape}, got {out.shape}")
        self._ds.read_direct(out)
        return out

    def to_dask(self, chunks: Any = None) -> Any:
        """A lazy dask array over this volume (see :func:`fastct.dask.to_dask`); chunks
        default to the storage chunks. Needs the ``scale`` extra (dask)."""
        from .dask import to_dask

        return to_dask(self, chunks)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self.read()
        return data if dtype is None else data.astype(dtype, copy=False)

    def __repr__(self) -> str:
        sp = "x".join(f"{s:g}" for s in self.spacing)
        return (
            f"<fastct.Volume {self.name!r} shape={self.shape} dtype={self.dtype} "
            f"chunks={self.chunks} spacing={sp} mm>"
        )


def _str_attr(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _positive_step_key(key: Any, shape: tuple[int, ...]) -> tuple[Any, tuple | None]:
    """h5py refuses negative steps: read with positive steps, then flip."""
    if not isinstance(key, tuple):
        key = (key,)
    if not any(isinstance(k, slice) and k.step is not None and k.step < 0 for k in key):
        return key, None
    new, flip, axis = [], [], 0
    for k in key:
        if k is Ellipsis:
            n_rest = len(shape) - (len(key) - 1)
            new.extend([slice(None)] * n_rest)
            flip.extend([slice(None)] * n_rest)
            axis += n_rest
            continue
        if isinstance(k, slice) and k.step is not None and k.step < 0:
            idx = range(*k.indices(shape[axis]))
            if len(idx) == 0:
                new.append(slice(0, 0))
            else:
                new.append(slice(idx[-1], idx[0] + 1, -k.step))
            flip.append(slice(None, None, -1))
        else:
            new.append(k)
            if isinstance(k, slice):
                flip.append(slice(None))
        axis += 1
    return tuple(new), tuple(flip)


class Group:
    """A folder inside an archive (``archive['scans']``)."""

    def __init__(self, group: h5py.Group, archive: Archive):
        self._group = group
        self._archive = archive
        self.name: str = group.name

    @_hdf5_reads
    def keys(self) -> list[str]:
        return list(self._group.keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __contains__(self, name: str) -> bool:
        return name in self._group

    def __getitem__(self, name: str) -> Volume | Group:
        return self._archive[self.name.rstrip("/") + "/" + name.lstrip("/")]

    def __repr__(self) -> str:
        return f"<fastct.Group {self.name!r} ({len(self.keys())} members)>"


class Archive:
    """An HDF5 file holding many volumes. Use :func:`fastct.open` to create one.

    Opened for writing (``mode`` other than ``'r'``), all changes go to a private
    copy that replaces the file atomically when the archive is closed without
    error; :meth:`abort` (or an exception inside a ``with`` block) discards them.
    A Zarr store (``.zarr``) is opened as the subclass
    :class:`fastct._store_zarr.ZarrArchive`, with the same API.
    """

    #: Compression names :meth:`create_volume` takes.
    COMPRESSIONS: tuple[str | None, ...] = COMPRESSIONS

    def __init__(self, path: str | os.PathLike, mode: str = "r", *, allow_external: bool = False):
        if not isinstance(mode, str) or mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.allow_external = bool(allow_external)
        self._tmp: Path | None = None
        self._lock: contextlib.ExitStack | None = None
        if self.path.is_dir():
            raise IsADirectoryError(f"archive path {str(self.path)!r} is a folder, not a file")
        if mode == "r":
            if not self.path.exists():
                raise FileNotFoundError(f"archive {str(self.path)!r} does not exist")
            self._file = self._open_h5(self.path, "r")
            self._check_format()
            return
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"folder {str(self.path.parent)!r} does not exist")
        self._lock = contextlib.ExitStack()
        self._lock.enter_context(_atomic.file_lock(self.path))
        try:
            # Decided under the lock: another writer may have created the file meanwhile.
            exists = self.path.exists()
            if mode == "r+" and not exists:
                raise FileNotFoundError(f"archive {str(self.path)!r} does not exist")
            if mode == "x" and exists:
                raise FileExistsError(f"archive {str(self.path)!r} already exists")
            _atomic.remove_stale_temps(self.path.parent)
            self._tmp = _atomic.temp_name(self.path)
            if exists and mode in ("r+", "a"):
                _atomic.clone_file(self.path, self._tmp)
                self._file = self._open_h5(self._tmp, "r+", shown_as=self.path)
                self._check_format()
            else:
                self._file = self._open_h5(self._tmp, "w", shown_as=self.path)
            self._file.attrs["fastct_format"] = FORMAT_NAME
            self._file.attrs["fastct_format_version"] = FORMAT_VERSION
        except BaseException:
            self._discard()
            raise

    @staticmethod
    def _open_h5(path: Path, mode: str, shown_as: Path | None = None) -> h5py.File:
        if mode != "w":
            try:
                looping = _looping_global_heap(path)
            except (OSError, ValueError):
                looping = None  # unreadable or empty: h5py reports it below
            if looping is not None:
                raise ArchiveDamagedError(
                    f"archive {str(shown_as or path)!r} is damaged: the global heap at byte "
                    f"{looping} (where variable-length strings are kept) is corrupt"
                )
        try:
            return h5py.File(path, mode, rdcc_nbytes=_CHUNK_CACHE_BYTES, rdcc_nslots=10007)
        except OSError as exc:
            reason = str(exc).split("(")[0].strip().rstrip(",")
            name = str(shown_as or path)
            raise ValueError(f"{name!r} is not a readable HDF5 archive ({reason})") from None

    def _check_format(self) -> None:
        version = self._file.attrs.get("fastct_format_version")
        if version is not None and int(version) > FORMAT_VERSION:
            raise ValueError(
                f"archive {str(self.path)!r} has format version {int(version)}; "
                f"this fastct reads up to {FORMAT_VERSION}"
            )

    # -- life cycle -------------------------------------------------------------
    @property
    def writable(self) -> bool:
        """True unless opened with mode 'r'."""
        return self.mode != "r"

    @property
    def closed(self) -> bool:
        """True once closed."""
        return not bool(self._file)

    def _check_writable(self) -> None:
        if not self.writable:
            raise PermissionError(f"archive {str(self.path)!r} is open read-only (mode='r')")
        if self.closed:
            raise ValueError(f"archive {str(self.path)!r} is closed")

    def close(self) -> None:
        """Close; for a writable archive, atomically publish the changes."""
        if self.closed and self._tmp is None:
            return
        if not self.writable:
            self._file.close()
            return
        try:
            self._file.flush()
            self._file.close()
            _atomic.commit(self._tmp, self.path)
            self._tmp = None
        finally:
            self._discard()

    def abort(self) -> None:
        """Close a writable archive discarding every change since it was opened."""
        self._discard()

    def _discard(self) -> None:
        if self._tmp is not None and getattr(self, "_file", None):
            # The changes are discarded: empty the temporary file first. When HDF5 could
            # not write (disk full), the flush at close fails again and leaves the file
            # half-closed, and HDF5 then crashes the interpreter when its objects are
            # freed; on an empty file the close's writes find room.
            with contextlib.suppress(OSError):
                os.truncate(self._tmp, 0)
        with contextlib.suppress(Exception):
            if self._file:
                self._file.close()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            self._tmp = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # An archive dropped without close() is aborted, never half-published.
        with contextlib.suppress(Exception):
            if getattr(self, "_tmp", None) is not None:
                self._discard()

    # -- navigation -------------------------------------------------------------
    @_hdf5_reads
    def _resolve(self, name: str) -> h5py.Dataset | h5py.Group:
        if self.closed:
            raise ValueError(f"archive {str(self.path)!r} is closed")
        path = _normalise_name(name)
        node: h5py.Group = self._file
        for part in path.strip("/").split("/"):
            link = node.get(part, getlink=True)
            if link is None:
                raise KeyError(f"{path!r} not found in archive {str(self.path)!r}")
            if isinstance(link, h5py.ExternalLink) and not self.allow_external:
                raise ValueError(
                    f"{path!r} in {str(self.path)!r} is an external link to "
                    f"{link.filename}:{link.path}; pass allow_external=True to follow it"
                )
            node = node[part]
        if isinstance(node, h5py.Dataset) and node.external and not self.allow_external:
            files = sorted({str(entry[0]) for entry in node.external})
            raise ValueError(
                f"{path!r} in {str(self.path)!r} stores its data in other files {files}; "
                "pass allow_external=True to read them"
            )
        if isinstance(node, h5py.Dataset) and node.is_virtual and not self.allow_external:
            outside = {s.file_name for s in node.virtual_sources()} - {"."}
            if outside:
                raise ValueError(
                    f"{path!r} in {str(self.path)!r} is a virtual dataset reading "
                    f"{sorted(outside)}; pass allow_external=True to follow it"
                )
        return node

    def __getitem__(self, name: str) -> Volume | Group:
        """``archive['scans/a/image']``: a :class:`Volume`, or a :class:`Group` for a folder."""
        node = self._resolve(name)
        if isinstance(node, h5py.Dataset):
            return Volume(node, self)
        return Group(node, self)

    def __contains__(self, name: object) -> bool:
        try:
            self._resolve(name)  # type: ignore[arg-type]
        except ArchiveDamagedError:
            raise  # "not there" must not be answered for a file that cannot be read
        except (KeyError, TypeError, ValueError):
            return False
        return True

    @_hdf5_reads
    def keys(self) -> list[str]:
        """Names of the top-level groups and datasets."""
        return list(self._file.keys())

    @_hdf5_reads
    def volumes(self) -> list[str]:
        """Paths of every 2-D or 3-D dataset in the archive, sorted."""
        found: list[str] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3):
                _check_member_name(name, self.path)
                found.append("/" + name)

        self._file.visititems(visit)
        return sorted(found)

    # -- writing ----------------------------------------------------------------
    def create_volume(
        self,
        name: str,
        data: np.ndarray | None = None,
        *,
        shape: tuple[int, ...] | None = None,
        dtype: Any = None,
        spacing: Any = None,
        origin: Any = None,
        direction: Any = None,
        modality: str | None = None,
        units: str | None = None,
        chunks: Any = None,
        compression: str | None = None,
        compression_opts: Any = None,
        shuffle: bool = False,
        fillvalue: Any = None,
        attrs: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> Volume:
        """Create a chunked volume, from ``data`` or empty with ``shape`` and ``dtype``.

        Parameters
        ----------
        name : str
            Path inside the archive, e.g. ``'scans/a/image'``; parent groups are created.
        data : ndarray, optional
            Initial content. Otherwise give ``shape`` and ``dtype``.
        spacing, origin : sequence of float, optional
            mm per axis (default 1) and physical position of voxel 0 (default 0).
        direction : (ndim, ndim) array_like, optional
            Direction cosines with orthonormal columns.
        modality, units : str, optional
            For example ``'CT'`` and ``'HU'``.
        chunks : sequence of int, optional
            Chunk shape; default about 64^3 (3-D) or 256^2 (2-D).
        compression : {None, 'gzip', 'lzf'}
            HDF5 filter; ``compression_opts`` is the gzip level (0-9).
        shuffle : bool
            Byte-shuffle filter, which helps compression of integer CT data.
        overwrite : bool
            Replace an existing volume of the same name (otherwise an error).

        Examples
        --------
        >>> import numpy as np, tempfile, os, fastct
        >>> path = os.path.join(tempfile.mkdtemp(), "study.h5")
        >>> with fastct.open(path, "w") as ar:
        ...     v = ar.create_volume("scans/a/image", np.zeros((4, 5, 6), np.int16),
        ...                          spacing=(2.0, 0.7, 0.7), modality="CT", units="HU")
        >>> with fastct.open(path) as ar:
        ...     ar["scans/a/image"].spacing
        (2.0, 0.7, 0.7)
        """
        self._check_writable()
        path = _normalise_name(name)
        if data is not None:
            if isinstance(data, Volume):
                raise TypeError(
                    "data must be an in-memory array; stream volumes with fastct.streaming"
                )
            data = np.asarray(data)
            if data.dtype.kind not in "biuf":
                raise TypeError(f"data must have a real numeric or bool dtype, got {data.dtype}")
            if not data.dtype.isnative:
                data = data.astype(data.dtype.newbyteorder("="))
            if shape is not None and tuple(shape) != data.shape:
                raise ValueError(f"shape {tuple(shape)} does not match data shape {data.shape}")
            shape, dtype = data.shape, (data.dtype if dtype is None else np.dtype(dtype))
        else:
            if shape is None or dtype is None:
                raise ValueError("create_volume needs data, or both shape and dtype")
            dtype = np.dtype(dtype)
            if dtype.kind not in "biuf":
                raise TypeError(f"dtype must be a real numeric or bool dtype, got {dtype}")
        shape = tuple(int(s) for s in shape)
        check_ndim(len(shape), "shape")
        if any(s < 1 for s in shape):
            raise ValueError(f"shape must be positive on every axis, got {shape}")
        ndim = len(shape)
        meta = {
            "spacing": np.asarray(check_spacing(spacing, ndim), dtype=np.float64),
            "origin": np.asarray(check_origin(origin, ndim), dtype=np.float64),
        }
        direction = check_direction(direction, ndim)
        if direction is not None:
            meta["direction"] = direction.astype(np.float64)
        for key, value in (("modality", modality), ("units", units)):
            if value is not None:
                if not isinstance(value, str):
                    raise TypeError(f"{key} must be a string, got {type(value).__name__}")
                meta[key] = value
        if compression not in self.COMPRESSIONS:
            raise ValueError(f"compression must be one of {self.COMPRESSIONS}, got {compression!r}")
        if compression == "gzip" and compression_opts is not None:
            if not isinstance(compression_opts, int) or not 0 <= compression_opts <= 9:
                raise ValueError(
                    f"compression_opts must be a gzip level 0-9, got {compression_opts!r}"
                )
        chunk_shape = _check_chunks(chunks, shape)
        _limits.check_voxels(shape, "shape")
        if compression is None:  # the size on disk is known: refuse before writing
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            _limits.check_disk_space(nbytes, self._tmp or self.path, f"volume {path!r}")
        ds = self._new_dataset(
            path,
            shape=shape,
            dtype=dtype,
            chunks=chunk_shape,
            compression=compression,
            compression_opts=compression_opts,
            shuffle=bool(shuffle),
            fillvalue=fillvalue,
            meta=meta,
            attrs=attrs,
            overwrite=overwrite,
        )
        if data is not None:
            _write_in_slabs(ds, data)
        return Volume(ds, self)

    def _new_dataset(
        self,
        path: str,
        *,
        shape: tuple[int, ...],
        dtype: np.dtype,
        chunks: tuple[int, ...],
        compression: str | None,
        compression_opts: Any,
        shuffle: bool,
        fillvalue: Any,
        meta: dict[str, Any],
        attrs: dict[str, Any] | None,
        overwrite: bool,
    ) -> h5py.Dataset:
        """The storage half of :meth:`create_volume` (arguments already checked)."""
        if path in self._file:
            if not overwrite:
                raise FileExistsError(
                    f"{path!r} already exists in {str(self.path)!r}; pass overwrite=True to replace it"
                )
            del self._file[path]
        ds = self._file.create_dataset(
            path,
            shape=shape,
            dtype=dtype,
            chunks=chunks,
            compression=compression,
            compression_opts=compression_opts if compression == "gzip" else None,
            shuffle=shuffle if compression else False,
            fillvalue=fillvalue,
        )
        for key, value in meta.items():
            ds.attrs[key] = value
        for key, value in (attrs or {}).items():
            ds.attrs[key] = value
        return ds

    def create_volume_like(
        self, name: str, like: Volume | np.ndarray, *, dtype: Any = None, **kw: Any
    ) -> Volume:
        """An empty volume with the shape, chunks and metadata of ``like``."""
        if isinstance(like, Volume):
            meta = like.metadata()
            meta.setdefault("chunks", like.chunks)
            if like.compression:
                # Between backends: a codec the target lacks becomes its general one.
                codec = like.compression
                meta.setdefault("compression", codec if codec in self.COMPRESSIONS else "gzip")
        else:
            meta = {}
        meta.update(kw)
        return self.create_volume(name, shape=like.shape, dtype=dtype or like.dtype, **meta)

    def delete(self, name: str) -> None:
        """Remove a volume or group (space is reclaimed when the file is rewritten)."""
        self._check_writable()
        path = _normalise_name(name)
        if path not in self._file:
            raise KeyError(f"{path!r} not found in archive {str(self.path)!r}")
        del self._file[path]

    @_hdf5_reads
    def get_attrs(self, name: str) -> dict[str, Any]:
        """The free-form attributes of a group or volume (``"/"``: the archive's own),
        as a new dict. ``KeyError`` when there is no such member; links that leave the
        file are refused as for reads."""
        if isinstance(name, str) and name.strip("/") == "":
            if self.closed:
                raise ValueError(f"archive {str(self.path)!r} is closed")
            return dict(self._file.attrs)
        return dict(self._resolve(name).attrs)

    def set_attrs(self, name: str, **attrs: Any) -> None:
        """Set free-form attributes on a group or volume (created as a group if missing;
        ``"/"``: the archive's own)."""
        self._check_writable()
        if isinstance(name, str) and name.strip("/") == "":
            node = self._file
        else:
            path = _normalise_name(name)
            node = self._file.require_group(path) if path not in self._file else self._file[path]
        for key, value in attrs.items():
            node.attrs[key] = value

    def summary(self) -> str:
        """A human-readable listing of the archive's volumes."""
        lines = [f"{self.path}  ({_human_bytes(self.path.stat().st_size)})"]
        for name in self.volumes():
            try:
                vol = self[name]
            except ValueError as exc:
                lines.append(f"  {name}: unreadable metadata ({exc})")
                continue
            sp = " x ".join(f"{s:g}" for s in vol.spacing)
            extra = " ".join(x for x in (vol.modality, vol.units and f"[{vol.units}]") if x)
            lines.append(
                f"  {name}: {' x '.join(map(str, vol.shape))} {vol.dtype}, spacing {sp} mm, "
                f"chunks {vol.chunks}, {vol.compression or 'uncompressed'} {extra}".rstrip()
            )
        if len(lines) == 1:
            lines.append("  (no volumes)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.mode
        return f"<fastct.Archive {str(self.path)!r} ({state})>"


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n} B"


def _write_in_slabs(ds: h5py.Dataset, data: np.ndarray) -> None:
    """Write along the first axis a chunk-row at a time to bound conversion copies."""
    step = ds.chunks[0] if ds.chunks else data.shape[0]
    for start in range(0, data.shape[0], step):
        stop = min(start + step, data.shape[0])
        ds[start:stop] = np.ascontiguousarray(data[start:stop], dtype=ds.dtype)


def open(path: str | os.PathLike, mode: str = "r", *, allow_external: bool = False) -> Archive:  # noqa: A001
    """Open a volume archive: an HDF5 file, or a Zarr v3 / OME-Zarr store.

    Parameters
    ----------
    path : str or path-like
        The ``.h5`` file, or a ``.zarr`` folder (a Zarr v3 store with OME-NGFF 0.5
        metadata; needs the ``zarr`` package). Both give the same Archive/Volume API;
        see ``docs/archive-format.rst`` for when to choose which.
    mode : {'r', 'r+', 'a', 'w', 'x'}
        ``'r'`` read-only (default); ``'r+'`` read/write, must exist; ``'a'``
        read/write, created if missing; ``'w'`` create or truncate; ``'x'`` create,
        fail if it exists. Writable archives publish their changes atomically on
        :meth:`Archive.close` (or the end of a ``with`` block without error).
    allow_external : bool
        Follow external links and virtual datasets that read other files
        (refused by default).

    Returns
    -------
    Archive

    Examples
    --------
    >>> import numpy as np, tempfile, os, fastct
    >>> path = os.path.join(tempfile.mkdtemp(), "a.h5")
    >>> with fastct.open(path, "w") as ar:
    ...     _ = ar.create_volume("scans/x/image", np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    >>> with fastct.open(path) as ar:
    ...     vol = ar["scans/x/image"]
    ...     vol.shape, int(vol[1, 2, 3])
    ((2, 3, 4), 23)
    """
    from . import _store_zarr

    if isinstance(path, (str, os.PathLike)) and _store_zarr.is_zarr_path(path):
        return _store_zarr.ZarrArchive(path, mode, allow_external=allow_external)
    return Archive(path, mode, allow_external=allow_external)

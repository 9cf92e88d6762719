"""Zarr (v3) / OME-Zarr archives: the second storage backend behind :func:`fastct.open`.

Layout (documented in ``docs/archive-format.rst``)::

    study.zarr/
      zarr.json                 root group, attributes fastct_format, fastct_format_version
      scans/zarr.json           plain groups
      scans/a/image/zarr.json   one volume = one OME-NGFF 0.5 image group: attributes
                                "ome" (multiscales: axes z,y,x in millimeter, scale =
                                spacing, translation = origin) and fastct's own spacing,
                                origin, direction, modality, units and free attributes
      scans/a/image/0/          the voxels: a Zarr v3 array (chunks about 64^3)

Crash safety with O(change) cost. Every volume lives in its own folder, so publishing
one never touches another:

* a new volume is written into a hidden ``.fastct-tmp-*`` folder at the store's root and
  published, when the archive is closed without error, by one ``rename`` onto its path;
* a volume that is replaced (``overwrite=True``, or data written into an existing volume,
  which first copies that one volume) is swapped in by one atomic exchange of the two
  folders (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two renames, so a reader
  may for an instant find the name missing, never half-written);
* attribute changes rewrite one small ``zarr.json`` through a temporary file and
  ``os.replace``.

A process killed at any moment leaves every published volume as it was and no partial
one visible: readers skip hidden names, and the next writer removes the temporary
folders of processes that no longer run on this host. Writers of *distinct* volumes may
work at the same time from different processes (no archive-wide lock); each volume of a
transaction is published atomically, one after the other, when the archive is closed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from . import _atomic
from .volume import (
    _MODES,
    FORMAT_NAME,
    FORMAT_VERSION,
    Archive,
    ArchiveDamagedError,
    Group,
    Volume,
    _check_member_name,
    _human_bytes,
    _normalise_name,
)

ZARR_SUFFIX = ".zarr"
NGFF_VERSION = "0.5"
#: Compression names a Zarr archive takes; ``'lzf'`` (HDF5's fast filter) maps to zstd
#: level 1 so that volumes copied from HDF5 keep a fast codec.
COMPRESSIONS = (None, "gzip", "zstd", "lzf")
_AXIS_NAMES = {2: ("y", "x"), 3: ("z", "y", "x")}
_META_JSON = "zarr.json"
_SCALE_PATH = "0"  # the full-resolution array inside a volume's image group


def _import_zarr() -> Any:
    try:
        import zarr
    except ImportError:  # pragma: no cover - zarr is in the test extra
        raise ImportError(
            "Zarr archives need the 'zarr' package (>= 3): pip install 'fastct-engine[scale]'"
        ) from None
    return zarr


def is_zarr_path(path: str | os.PathLike) -> bool:
    """True when ``path`` names a Zarr store: a ``.zarr`` name, or a folder holding a
    ``zarr.json``."""
    p = Path(path)
    if p.name.lower().endswith(ZARR_SUFFIX) or str(path).lower().rstrip("/").endswith(ZARR_SUFFIX):
        return True
    return p.is_dir() and (p / _META_JSON).is_file()


# -- JSON -------------------------------------------------------------------------------
def _to_json(value: Any) -> Any:
    """Attribute values as JSON: arrays -> nested lists, NumPy scalars -> Python ones."""
    if isinstance(value, np.ndarray):
        return _to_json(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(
        f"attribute values must be numbers, strings, booleans or arrays of them, "
        f"got {type(value).__name__}"
    )


def _from_json(value: Any) -> Any:
    """Numeric lists come back as NumPy arrays (as h5py gives them)."""
    if isinstance(value, list) and value:
        arr = np.asarray(value)
        if arr.dtype.kind in "biuf":
            return arr.astype(np.float64) if arr.dtype.kind == "f" else arr
    return value


def _host_tag() -> str:
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:40] or "host"


def _temp_name(root: Path, name: str) -> Path:
    """A hidden folder or file at the store's root: pid, random token, host, then a name."""
    token = os.urandom(4).hex()
    safe = name.strip("/").replace("/", "_") or "root"
    return root / f"{_atomic.TMP_PREFIX}{os.getpid()}-{token}-{_host_tag()}-{safe}"


def remove_stale(root: Path) -> None:
    """Delete the temporary folders and files at ``root`` left by killed writers of this
    host (those of live processes, and of other hosts, are kept)."""
    host = _host_tag()
    try:
        entries = list(root.glob(_atomic.TMP_PREFIX + "*"))
    except OSError:
        return
    for entry in entries:
        parts = entry.name[len(_atomic.TMP_PREFIX) :].split("-", 3)
        if len(parts) < 4 or parts[2] != host:
            continue
        try:
            pid = int(parts[0])
        except ValueError:
            continue
        if pid == os.getpid() or _atomic._pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()


def _read_json(path: Path, archive: Path, member: str) -> dict[str, Any]:
    try:
        text = path.read_text()
        doc = json.loads(text)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise ArchiveDamagedError(
            f"archive {str(archive)!r} is damaged or unreadable (reading {member!r}): "
            f"{' '.join(str(exc).split())}"
        ) from None
    if not isinstance(doc, dict):
        raise ArchiveDamagedError(
            f"archive {str(archive)!r} is damaged or unreadable (reading {member!r}): "
            f"{path.name} is not a JSON object"
        )
    return doc


def _write_json_atomic(path: Path, doc: dict[str, Any], root: Path) -> None:
    """Replace ``path`` by ``doc`` in one ``os.replace`` (temporary file at ``root``)."""
    tmp = _temp_name(root, path.parent.name + "-" + path.name)
    try:
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _group_doc(attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes or {}}


# -- OME-NGFF --------------------------------------------------------------------------
def ome_metadata(
    name: str, spacing: Any, origin: Any, ndim: int, path: str = _SCALE_PATH
) -> dict[str, Any]:
    """The OME-NGFF 0.5 ``"ome"`` attribute of one volume's image group: one multiscale
    with one (full-resolution) dataset, axes ``z, y, x`` (or ``y, x``) in millimeter,
    ``scale`` = spacing and ``translation`` = origin. NGFF has no rotation: the
    direction cosines stay in fastct's own ``direction`` attribute.

    Examples
    --------
    >>> meta = ome_metadata("image", (2.0, 0.5, 0.5), (0.0, -10.0, 5.0), 3)
    >>> meta["version"], [a["name"] for a in meta["multiscales"][0]["axes"]]
    ('0.5', ['z', 'y', 'x'])
    >>> meta["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    {'type': 'scale', 'scale': [2.0, 0.5, 0.5]}
    """
    axes = [{"name": a, "type": "space", "unit": "millimeter"} for a in _AXIS_NAMES[ndim]]
    transforms = [
        {"type": "scale", "scale": [float(s) for s in spacing]},
        {"type": "translation", "translation": [float(o) for o in origin]},
    ]
    return {
        "version": NGFF_VERSION,
        "multiscales": [
            {
                "name": name,
                "axes": axes,
                "datasets": [{"path": path, "coordinateTransformations": transforms}],
            }
        ],
    }


def _volume_array_path(attributes: dict[str, Any]) -> str | None:
    """The full-resolution array path of an NGFF image group, or None for a plain group."""
    ome = attributes.get("ome")
    if not isinstance(ome, dict):
        return None
    try:
        path = str(ome["multiscales"][0]["datasets"][0]["path"])
    except (KeyError, IndexError, TypeError):
        return None
    parts = path.replace("\\", "/").split("/")
    if path.startswith("/") or ".." in parts or ":" in path or not path.strip("/"):
        # The metadata names a folder outside the image group: never followed.
        raise ArchiveDamagedError(
            f"OME-Zarr dataset path {path!r} leaves its image group; only relative paths "
            "inside the store are read"
        )
    return path


def _refresh_ome(attributes: dict[str, Any], name: str, ndim: int) -> None:
    """Rewrite the NGFF scale/translation after spacing or origin changed."""
    path = _volume_array_path(attributes)
    if path is None:
        return
    spacing = attributes.get("spacing", [1.0] * ndim)
    origin = attributes.get("origin", [0.0] * ndim)
    attributes["ome"] = ome_metadata(name, spacing, origin, ndim, path)


# -- exchange ---------------------------------------------------------------------------
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False when not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _codec_name(codec: Any) -> str:
    name = type(codec).__name__.lower()
    return name[: -len("codec")] if name.endswith("codec") else name


# -- nodes ------------------------------------------------------------------------------
class _Attrs:
    """The attributes of a Zarr node, shaped like h5py's ``.attrs`` (get, [], in, iter,
    assignment); values come back as NumPy arrays where numeric."""

    def __init__(self, node: _ZarrNode):
        self._node = node

    def _current(self) -> dict[str, Any]:
        return {k: v for k, v in self._node._attributes.items() if k != "ome"}

    def get(self, key: str, default: Any = None) -> Any:
        current = self._current()
        return _from_json(current[key]) if key in current else default

    def __getitem__(self, key: str) -> Any:
        return _from_json(self._current()[key])

    def __contains__(self, key: object) -> bool:
        return key in self._current()

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._current()))

    def keys(self) -> list[str]:
        return list(self._current())

    def __setitem__(self, key: str, value: Any) -> None:
        self._node._archive._set_node_attrs(self._node.name, {key: value})


def _check_inside(folder: Path, archive: ZarrArchive, name: str) -> None:
    """Refuse an array folder, or a chunk file or folder in it, that is a symbolic link
    leading out of the store (the Zarr analogue of an HDF5 external link)."""
    roots = {archive.path.resolve(), archive._root.resolve()}

    def inside(p: Path) -> bool:
        real = p.resolve()
        return any(real == r or r in real.parents for r in roots)

    offenders = [folder] if not inside(folder) else []
    if not offenders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for entry in (*dirnames, *filenames):
                p = Path(dirpath) / entry
                if p.is_symlink() and not inside(p):
                    offenders.append(p)
                    break
            if offenders:
                break
    if offenders:
        raise ValueError(
            f"{name!r} in {str(archive.path)!r} reads {str(offenders[0].resolve())!r} "
            "outside the store (a symbolic link); pass allow_external=True to follow it"
        )


class _ZarrNode:
    """One volume of a Zarr archive, shaped like an ``h5py.Dataset`` for :class:`Volume`."""

    def __init__(self, archive: ZarrArchive, name: str, folder: Path, doc: dict[str, Any]):
        self._archive = archive
        self.name = name
        self._folder = folder
        self._attributes: dict[str, Any] = dict(doc.get("attributes") or {})
        self._bare = doc.get("node_type") == "array"
        self._array_path = "" if self._bare else _volume_array_path(self._attributes)
        self._array = self._open_array(folder)

    def _open_array(self, folder: Path) -> Any:
        zarr = _import_zarr()
        from zarr.storage import LocalStore

        where = folder / self._array_path if self._array_path else folder
        if not self._archive.allow_external:
            _check_inside(where, self._archive, self.name)
        read_only = not self._archive.writable
        try:
            return zarr.open_array(store=LocalStore(where, read_only=read_only), mode="r" if
                                   read_only else "r+", zarr_format=3)  # fmt: skip
        except Exception as exc:  # zarr reports bad metadata in many types
            if isinstance(exc, (MemoryError, KeyboardInterrupt)) or (
                isinstance(exc, OSError) and exc.errno is not None and not
                isinstance(exc, FileNotFoundError)
            ):  # fmt: skip
                raise
            raise ArchiveDamagedError(
                f"archive {str(self._archive.path)!r} is damaged or unreadable "
                f"(reading {self.name!r}): {' '.join(str(exc).split())}"
            ) from None

    # h5py.Dataset's shape
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    @property
    def ndim(self) -> int:
        return len(self._array.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self._array.chunks)

    @property
    def compression(self) -> str | None:
        codecs = tuple(getattr(self._array, "compressors", ()) or ())
        return _codec_name(codecs[0]) if codecs else None

    @property
    def attrs(self) -> _Attrs:
        return _Attrs(self)

    def _read(self, key: Any) -> Any:
        """``self._array[key]``; a chunk that cannot be decoded is reported as
        :class:`ArchiveDamagedError` naming the store and volume (a bad key keeps its own
        error)."""
        try:
            return self._array[key]
        except (IndexError, TypeError, KeyboardInterrupt):
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # a real I/O error (disk, permissions): leave it as it is
            probe = np.lib.stride_tricks.as_strided(
                np.zeros(1, np.uint8), self.shape, (0,) * self.ndim
            )
            probe[key]  # raises, as NumPy would, for a key that is wrong itself
            raise ArchiveDamagedError(
                f"archive {str(self._archive.path)!r} is damaged or unreadable (reading "
                f"{self.name!r}): {type(exc).__name__}: {' '.join(str(exc).split())}"
            ) from None

    def __getitem__(self, key: Any) -> Any:
        data = self._read(key)
        return data[()] if isinstance(data, np.ndarray) and data.ndim == 0 else data

    def _writable(self) -> Any:
        self._archive._make_private(self)
        return self._array

    def __setitem__(self, key: Any, value: Any) -> None:
        self._writable()[key] = value

    def read_direct(self, out: np.ndarray, source_sel: Any = None) -> None:
        out[...] = self._read(source_sel if source_sel is not None else ...)

    def write_direct(self, data: np.ndarray, dest_sel: Any = None) -> None:
        self._writable()[dest_sel if dest_sel is not None else ...] = data


class _GroupNode:
    """A plain group of a Zarr archive, shaped like an ``h5py.Group`` for :class:`Group`."""

    def __init__(self, archive: ZarrArchive, name: str):
        self._archive = archive
        self.name = name

    def keys(self) -> list[str]:
        return self._archive._children(self.name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.strip("/") in self.keys()


class ZarrArchive(Archive):
    """A Zarr v3 store (a ``.zarr`` folder) holding many volumes, with the API of the HDF5
    :class:`~fastct.volume.Archive`. Use :func:`fastct.open` to create one.

    Opened for writing, new and changed volumes are kept in hidden temporary folders and
    published one by one, each by one atomic rename, when the archive is closed without
    error; :meth:`abort` (or an exception inside a ``with`` block) discards them.
    """

    COMPRESSIONS = COMPRESSIONS

    def __init__(self, path: str | os.PathLike, mode: str = "r", *, allow_external: bool = False):
        if not isinstance(mode, str) or mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        _import_zarr()
        self.path = Path(path)
        self.mode = mode
        self.allow_external = bool(allow_external)
        self._tmp: Path | None = None  # the whole new store in mode 'w'
        self._lock = None
        self._closed = False
        self._ops: list[tuple[Any, ...]] = []
        self._pending: dict[str, Path] = {}  # volume name -> its private folder
        self._deleted: set[str] = set()
        self._attr_overlay: dict[str, dict[str, Any]] = {}
        self._root = self.path
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"{str(self.path)!r} is a file, not a Zarr store (a .zarr folder)")
        if mode in ("r", "r+"):
            if not self.path.exists():
                raise FileNotFoundError(f"archive {str(self.path)!r} does not exist")
            self._check_format()
        elif not self.path.parent.is_dir():
            raise FileNotFoundError(f"folder {str(self.path.parent)!r} does not exist")
        elif mode == "w":
            _atomic.remove_stale_folders(self.path.parent)
            self._tmp = self._new_store(_temp_name_beside(self.path))
            self._root = self._tmp
        elif mode in ("a", "x"):
            if not self.path.exists():
                self._create_in_place(exclusive=mode == "x")
            elif mode == "x":
                raise FileExistsError(f"archive {str(self.path)!r} already exists")
            self._check_format()
        if self.writable and self._tmp is None:
            remove_stale(self._root)

    # -- store life cycle --------------------------------------------------------------
    @staticmethod
    def _new_store(folder: Path) -> Path:
        folder.mkdir()
        doc = _group_doc({"fastct_format": FORMAT_NAME, "fastct_format_version": FORMAT_VERSION})
        (folder / _META_JSON).write_text(json.dumps(doc, indent=2))
        return folder

    def _create_in_place(self, exclusive: bool) -> None:
        """Create the store by renaming a finished empty one into place; another process
        creating it at the same moment wins the race harmlessly (mode 'a')."""
        tmp = self._new_store(_temp_name_beside(self.path))
        try:
            os.rename(tmp, self.path)
            _atomic.fsync_dir(self.path.parent)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or exclusive:
                if exclusive and exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise FileExistsError(f"archive {str(self.path)!r} already exists") from None
                raise

    def _check_format(self) -> None:
        meta = self.path / _META_JSON
        hint = "create fastct archives with fastct.open(path, 'w') or fastct convert"
        if not meta.is_file():
            raise ValueError(
                f"{str(self.path)!r} is not a fastct archive: no zarr.json (not a Zarr v3 "
                f"store); {hint}"
            )
        doc = _read_json(meta, self.path, "/")
        attrs = doc.get("attributes") or {}
        if doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
            raise ValueError(
                f"{str(self.path)!r} is not a fastct archive: its root is not a Zarr v3 group; "
                f"{hint}"
            )
        if attrs.get("fastct_format") != FORMAT_NAME:
            raise ValueError(
                f"{str(self.path)!r} is not a fastct archive: the Zarr root group has no "
                f"fastct_format={FORMAT_NAME!r} attribute; {hint}"
            )
        version = attrs.get("fastct_format_version")
        if version is not None and int(version) > FORMAT_VERSION:
            raise ValueError(
                f"archive {str(self.path)!r} has format version {int(version)}; "
                f"this fastct reads up to {FORMAT_VERSION}"
            )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close; for a writable archive, publish every change (each volume by one
        atomic rename), in the order made."""
        if self._closed:
            return
        if not self.writable:
            self._closed = True
            return
        try:
            for op in self._ops:
                getattr(self, "_apply_" + op[0])(*op[1:])
            self._ops.clear()
            self._pending.clear()
            if self._tmp is not None:
                _fsync_tree(self._tmp)
                _atomic.publish_folder(self._tmp, self.path)
                self._tmp = None
        finally:
            self._discard()

    def _discard(self) -> None:
        for folder in self._pending.values():
            shutil.rmtree(folder, ignore_errors=True)
        self._pending.clear()
        self._ops.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._closed = True

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._closed and (self._pending or self._tmp is not None):
                self._discard()

    # -- publishing ----------------------------------------------------------------------
    def _ensure_groups(self, name: str, created: list[Path] | None = None) -> None:
        """Create the parent groups of ``name`` (each ``zarr.json`` written atomically);
        the folders made here are appended to ``created``."""
        folder = self._root
        for part in name.strip("/").split("/")[:-1]:
            folder = folder / part
            with contextlib.suppress(FileExistsError):
                folder.mkdir()
                if created is not None:
                    created.append(folder)
            if not (folder / _META_JSON).exists():
                _write_json_atomic(folder / _META_JSON, _group_doc(), self._root)

    def _apply_publish(self, name: str, tmp: Path, overwrite: bool) -> None:
        target = self._root / name.strip("/")
        created: list[Path] = []
        try:
            self._ensure_groups(name, created)
            _fsync_tree(tmp)  # the data is on disk before the name points at it
            self._publish_renamed(name, tmp, target, overwrite)
        except BaseException:
            if not target.exists():  # not published: the groups made for it go too
                for folder in reversed(created):
                    with contextlib.suppress(OSError):
                        if {p.name for p in folder.iterdir()} <= {_META_JSON}:
                            (folder / _META_JSON).unlink(missing_ok=True)
                            folder.rmdir()
            raise

    def _publish_renamed(self, name: str, tmp: Path, target: Path, overwrite: bool) -> None:
        with _atomic._sigint_held():
            try:
                os.rename(tmp, target)
                replaced = False
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                    raise
                if not overwrite:
                    raise FileExistsError(
                        f"{name!r} was created in {str(self.path)!r} by another writer; "
                        "pass overwrite=True to replace it"
                    ) from None
                replaced = True
                if not _exchange(tmp, target):
                    trash = _temp_name(self._root, "old-" + name)
                    os.rename(target, trash)
                    os.rename(tmp, target)
                    tmp = trash
            if self._tmp is None:
                _atomic._PUBLISHED.append(target)
        if replaced:
            shutil.rmtree(tmp, ignore_errors=True)
        _atomic.fsync_dir(target.parent)

    def _apply_delete(self, name: str) -> None:
        target = self._root / name.strip("/")
        if not target.exists():
            return
        trash = _temp_name(self._root, "deleted-" + name)
        os.rename(target, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _apply_attrs(self, name: str, attrs: dict[str, Any]) -> None:
        folder = self._root / name.strip("/") if name != "/" else self._root
        if name != "/":
            self._ensure_groups(name)
            with contextlib.suppress(FileExistsError):
                folder.mkdir()
        meta = folder / _META_JSON
        doc = _read_json(meta, self.path, name) if meta.exists() else _group_doc()
        self._merge_attrs(doc, name, attrs)
        _write_json_atomic(meta, doc, self._root)

    @staticmethod
    def _merge_attrs(doc: dict[str, Any], name: str, attrs: dict[str, Any]) -> None:
        attributes = doc.setdefault("attributes", {})
        attributes.update(_to_json(attrs))
        if doc.get("node_type") == "group" and "spacing" in attributes:
            _refresh_ome(attributes, name.rsplit("/", 1)[-1], len(attributes["spacing"]))

    # -- navigation -----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"archive {str(self.path)!r} is closed")

    def _is_deleted(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/" + "/".join(parts[:i])
            if prefix in self._deleted:
                return True
        return False

    def _locate(self, path: str) -> tuple[Path, dict[str, Any]] | None:
        """The folder and ``zarr.json`` of member ``path`` as this transaction sees it."""
        if path in self._pending:
            folder = self._pending[path]
            return folder, _read_json(folder / _META_JSON, self.path, path)
        implied = any(n.startswith(path + "/") for n in self._pending)
        if self._is_deleted(path):
            # deleted, unless a volume created after the delete lives under it
            return (self._root / path.strip("/"), _group_doc()) if implied else None
        folder = self._root / path.strip("/")
        if any(p.startswith(".") for p in path.strip("/").split("/")):
            return None
        meta = folder / _META_JSON
        if meta.is_file():
            doc = _read_json(meta, self.path, path)
        elif implied or path in self._attr_overlay:
            doc = _group_doc()
        else:
            return None
        if path in self._attr_overlay:
            doc = dict(doc)
            self._merge_attrs(doc, path, self._attr_overlay[path])
        return folder, doc

    def _resolve(self, name: str) -> Any:
        self._check_open()
        path = _normalise_name(name)
        found = self._locate(path)
        if found is None:
            raise KeyError(f"{path!r} not found in archive {str(self.path)!r}")
        folder, doc = found
        if doc.get("node_type") == "array" or _volume_array_path(doc.get("attributes") or {}):
            if folder.is_symlink() and not self.allow_external:
                raise ValueError(
                    f"{path!r} in {str(self.path)!r} is a symbolic link to "
                    f"{os.readlink(folder)}; pass allow_external=True to follow it"
                )
            return _ZarrNode(self, path, folder, doc)
        return _GroupNode(self, path)

    def __getitem__(self, name: str) -> Volume | Group:
        node = self._resolve(name)
        if isinstance(node, _ZarrNode):
            return Volume(node, self)
        return Group(node, self)

    def _children(self, name: str) -> list[str]:
        """Member names directly under group ``name`` (hidden names skipped)."""
        path = "/" if name.strip("/") == "" else _normalise_name(name)
        names: set[str] = set()
        folder = self._root / path.strip("/") if path != "/" else self._root
        if path not in self._pending and not (path != "/" and self._is_deleted(path)):
            with contextlib.suppress(OSError):
                for entry in os.scandir(folder):
                    if (
                        not entry.name.startswith(".")
                        and entry.is_dir()
                        and (Path(entry.path) / _META_JSON).is_file()
                    ):
                        names.add(entry.name)
        prefix = path.rstrip("/") + "/"
        for pending in self._pending:
            if pending.startswith(prefix):
                names.add(pending[len(prefix) :].split("/")[0])
        return sorted(n for n in names if not self._is_deleted(prefix + n) or prefix + n in
                      self._pending or any(p.startswith(prefix + n + "/") for p in
                                           self._pending))  # fmt: skip

    def keys(self) -> list[str]:
        """Names of the top-level groups and volumes."""
        self._check_open()
        return self._children("/")

    def volumes(self) -> list[str]:
        """Paths of every volume (NGFF image or plain array) in the archive, sorted."""
        self._check_open()
        found: list[str] = []

        def visit(path: str) -> None:
            for child in self._children(path):
                full = path.rstrip("/") + "/" + child
                _check_member_name(full, self.path)
                located = self._locate(full)
                if located is None:
                    continue
                doc = located[1]
                if doc.get("node_type") == "array" or _volume_array_path(
                    doc.get("attributes") or {}
                ):
                    found.append(full)
                else:
                    visit(full)

        visit("/")
        return sorted(found)

    # -- writing -----------------------------------------------------------------------------
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
    ) -> _ZarrNode:
        zarr = _import_zarr()
        from zarr.codecs import GzipCodec, ZstdCodec
        from zarr.storage import LocalStore

        if path in self:
            if not overwrite:
                raise FileExistsError(
                    f"{path!r} already exists in {str(self.path)!r}; pass overwrite=True to replace it"
                )
        attributes = _to_json({**meta, **(attrs or {})})
        ndim = len(shape)
        attributes["ome"] = ome_metadata(
            path.rsplit("/", 1)[-1], attributes["spacing"], attributes["origin"], ndim
        )
        if compression == "gzip":
            compressors: Any = [
                GzipCodec(level=4 if compression_opts is None else compression_opts)
            ]
        elif compression == "zstd":
            level = 3 if compression_opts is None else int(compression_opts)
            compressors = [ZstdCodec(level=level)]
        elif compression == "lzf":
            compressors = [ZstdCodec(level=1)]
        else:
            compressors = None
        tmp = _temp_name(self._root, path)
        tmp.mkdir()
        try:
            doc = _group_doc(attributes)
            (tmp / _META_JSON).write_text(json.dumps(doc, indent=2))
            zarr.create_array(
                store=LocalStore(tmp / _SCALE_PATH),
                shape=shape,
                dtype=dtype,
                chunks=chunks,
                compressors=compressors,
                fill_value=(np.zeros((), dtype)[()] if fillvalue is None else fillvalue),
                zarr_format=3,
                config={"write_empty_chunks": False},
            )
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._drop_pending(path)
        self._pending[path] = tmp
        self._deleted.discard(path)
        self._ops.append(("publish", path, tmp, overwrite))
        return _ZarrNode(self, path, tmp, doc)

    def _drop_pending(self, path: str) -> None:
        old = self._pending.pop(path, None)
        if old is not None:
            self._ops = [op for op in self._ops if not (op[0] == "publish" and op[2] == old)]
            shutil.rmtree(old, ignore_errors=True)

    def _make_private(self, node: _ZarrNode) -> None:
        """Before the first write into a published volume: copy that one volume to a
        private folder, published over the old one (one atomic exchange) on close."""
        self._check_writable()
        if self._pending.get(node.name) == node._folder:
            return
        tmp = _temp_name(self._root, node.name)
        shutil.copytree(node._folder, tmp, symlinks=True)
        if node.name in self._attr_overlay:  # attribute changes made before this write
            doc = _read_json(tmp / _META_JSON, self.path, node.name)
            self._merge_attrs(doc, node.name, self._attr_overlay[node.name])
            (tmp / _META_JSON).write_text(json.dumps(doc, indent=2))
        self._drop_pending(node.name)
        self._pending[node.name] = tmp
        self._ops.append(("publish", node.name, tmp, True))
        node._folder = tmp
        node._array = node._open_array(tmp)

    def _set_node_attrs(self, name: str, attrs: dict[str, Any]) -> None:
        self._check_writable()
        if name in self._pending:
            meta = self._pending[name] / _META_JSON
            doc = _read_json(meta, self.path, name)
            self._merge_attrs(doc, name, attrs)
            meta.write_text(json.dumps(doc, indent=2))
            return
        self._attr_overlay.setdefault(name, {}).update(attrs)
        self._ops.append(("attrs", name, dict(attrs)))

    def delete(self, name: str) -> None:
        """Remove a volume or group (its folder is removed on close)."""
        self._check_writable()
        path = _normalise_name(name)
        if path not in self:
            raise KeyError(f"{path!r} not found in archive {str(self.path)!r}")
        for pending in [p for p in self._pending if p == path or p.startswith(path + "/")]:
            self._drop_pending(pending)
        self._deleted.add(path)
        self._ops.append(("delete", path))

    def get_attrs(self, name: str) -> dict[str, Any]:
        """The free-form attributes of a group or volume (``"/"``: the archive's own)."""
        self._check_open()
        if isinstance(name, str) and name.strip("/") == "":
            doc = _read_json(self._root / _META_JSON, self.path, "/")
            attributes = dict(doc.get("attributes") or {})
            attributes.update(self._attr_overlay.get("/", {}))
        else:
            path = _normalise_name(name)
            self._resolve(path)
            found = self._locate(path)
            assert found is not None
            attributes = dict(found[1].get("attributes") or {})
        return {k: _from_json(v) for k, v in attributes.items() if k != "ome"}

    def set_attrs(self, name: str, **attrs: Any) -> None:
        """Set free-form attributes on a group or volume (created as a group if missing);
        published on close by rewriting one ``zarr.json`` atomically."""
        self._check_writable()
        _to_json(attrs)  # refuse what JSON cannot hold now, not on close
        path = "/" if isinstance(name, str) and name.strip("/") == "" else _normalise_name(name)
        self._set_node_attrs(path, attrs)

    def _size_bytes(self) -> int:
        total = 0
        for folder, _dirs, files in os.walk(self._root):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(folder, f)).st_size
        return total

    def summary(self) -> str:
        """A human-readable listing of the archive's volumes."""
        rest = super().summary().partition("\n")[2]
        return f"{self.path}  (Zarr, {_human_bytes(self._size_bytes())})\n{rest}"

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.mode
        return f"<fastct.Archive {str(self.path)!r} (Zarr, {state})>"


def _fsync_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (durable before it is published).
    One file per chunk: the fsyncs run on a few threads so the file system can batch
    them (serial fsyncs cost about 2x the write itself)."""
    from concurrent.futures import ThreadPoolExecutor

    files: list[Path] = []
    folders: list[Path] = []
    for parent, _dirs, names in os.walk(folder):
        files.extend(Path(parent) / name for name in names)
        folders.append(Path(parent))
    if len(files) < 8:
        for path in files:
            _atomic.fsync_path(path)
    else:
        # Ctrl-C held back while the pool runs (fsyncs are bounded work, acted on right
        # after): an interrupt inside the standard library's thread start-up can leave
        # its locks taken ('release unlocked lock', or a later hang).
        with _atomic._sigint_held(), ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(_atomic.fsync_path, files))
    for path in reversed(folders):
        _atomic.fsync_dir(path)


def _temp_name_beside(path: Path) -> Path:
    token = os.urandom(4).hex()
    return path.with_name(f"{_atomic.TMP_PREFIX}{os.getpid()}-{token}-{path.name}")

"""NumPy ``.npy`` files (no pickles): the array only, geometry given by the caller."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path
from .._validate import as_image, check_direction, check_origin, check_spacing
from . import _limits
from ._common import _PASS_THROUGH, ImportedVolume, _check_input_path, _check_output_path


def read_npy(
    path: str | os.PathLike,
    *,
    spacing: Any = None,
    origin: Any = None,
    direction: Any = None,
    mmap: bool = False,
) -> ImportedVolume:
    """Read a ``.npy`` array (no pickles) as a volume with the given geometry.

    Parameters
    ----------
    path : str or path-like
        The ``.npy`` file, holding a 2-D ``(y, x)`` or 3-D ``(z, y, x)`` array.
    spacing, origin, direction : optional
        Geometry (the file has none): mm per axis (default 1), physical position
        of voxel 0 (default 0), direction cosines (default None, identity).
    mmap : bool
        Memory-map the file read-only instead of loading it (C-order,
        native-endian files only; others are loaded).

    Returns
    -------
    ImportedVolume
    """
    path = _check_input_path(path, "NumPy file")
    if path.is_dir():
        raise ValueError(f"NumPy file {str(path)!r} is a directory")
    _check_npy_header(path, allocate=not mmap)
    try:
        loaded = np.load(str(path), mmap_mode="r" if mmap else None, allow_pickle=False)
    except _PASS_THROUGH:
        raise
    except Exception as exc:
        raise ValueError(
            f"NumPy file {str(path)!r} cannot be read (corrupt, truncated or not .npy): {exc}"
        ) from None
    if not isinstance(loaded, np.ndarray):
        raise ValueError(
            f"NumPy file {str(path)!r} must hold one array (.npy), got a {type(loaded).__name__}"
        )
    try:
        data = as_image(loaded, "array")
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"NumPy file {str(path)!r}: {exc}") from None
    if not data.flags.c_contiguous:
        data = np.ascontiguousarray(data)
    ndim = data.ndim
    return ImportedVolume(
        array=data,
        spacing=check_spacing(spacing, ndim),
        origin=check_origin(origin, ndim),
        direction=check_direction(direction, ndim),
        metadata={"format": "npy", "source": str(path), "stored_dtype": str(loaded.dtype)},
    )


def _check_npy_header(path: Path, *, allocate: bool = True) -> None:
    """Check what a ``.npy`` header declares (dtype, shape, size against the file and
    the memory) before NumPy allocates it; other files (``.npz``, text) pass through to
    :func:`numpy.load`, which refuses them."""
    fmt = np.lib.format
    what = f"NumPy file {str(path)!r}"
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            return
        f.seek(0)
        try:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, _fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _fortran, dtype = fmt.read_array_header_2_0(f)
            else:
                raise ValueError(f"format version {version} is not supported")
        except Exception as exc:  # noqa: BLE001 - a damaged header, whatever NumPy raises
            raise ValueError(f"{what} cannot be read: invalid header ({exc})") from None
        header_end = f.tell()
    if dtype.hasobject:
        raise ValueError(
            f"{what} cannot be read: it holds Python objects (dtype {dtype}) and fastct never "
            "unpickles"
        )
    _limits.check_voxels(tuple(shape), what)
    nbytes = math.prod(shape) * dtype.itemsize
    size = path.stat().st_size
    if header_end + nbytes > size:
        raise ValueError(
            f"{what} is truncated: its header declares shape {tuple(shape)} {dtype} "
            f"({_limits.human_bytes(nbytes)}), the file has {size - header_end} bytes of data"
        )
    if allocate:
        _limits.check_allocation(nbytes, f"reading {what}")


def write_npy(path: str | os.PathLike, array: Any, *, overwrite: bool = False) -> None:
    """Write a 2-D or 3-D array as ``.npy`` (atomically; no pickles).

    Parameters
    ----------
    path : str or path-like
        Output file ending in ``.npy``.
    array : array_like
        2-D or 3-D real numeric image.
    overwrite : bool
        Replace an existing file (otherwise :class:`FileExistsError`).
    """
    out = _check_output_path(path, (".npy",), "NumPy")
    data = np.ascontiguousarray(as_image(array, "array"))
    _limits.check_disk_space(data.nbytes + 4096, out, f"writing {str(out)!r}")
    with atomic_path(out, overwrite=bool(overwrite)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, data, allow_pickle=False)

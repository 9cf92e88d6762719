"""What every reader shares: the :class:`ImportedVolume` record, path checks, optional
imports and the (x, y, z) <-> (z, y, x) geometry conjugation."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Axis reversal (x, y, z) <-> (z, y, x) and the RAS <-> LPS flip.
_REV3 = np.eye(3)[::-1]
_RAS_LPS = np.diag([-1.0, -1.0, 1.0])

# Errors that are not about the file's content: never reworded as "corrupt".
_PASS_THROUGH = (MemoryError, PermissionError)

# Orientation tolerance shared by the DICOM and NIfTI readers.
_ORTHO_EXACT = 1e-4  # |D^T D - I| below this: orientation used as written


@dataclass
class ImportedVolume:
    """A volume read from a file, with its physical geometry.

    Attributes
    ----------
    array : ndarray
        Voxels, ``(z, y, x)`` or ``(y, x)``, C order, native byte order.
    spacing : tuple of float
        Voxel size in mm per array axis.
    origin : tuple of float
        Physical position (LPS, components in ``(z, y, x)`` order) of voxel 0.
    direction : ndarray or None
        ``ndim x ndim`` matrix whose columns are the physical directions of the
        array axes (same frame as ``origin``); None means identity.
    modality : str or None
        E.g. ``'CT'``, ``'MR'``.
    units : str or None
        Voxel value units, e.g. ``'HU'``.
    metadata : dict
        Source description without patient information (format, source path,
        series UID, description, file count, ...). Values are str, int, float,
        bool or lists of those, so the dict can be stored as HDF5 attributes or
        JSON.
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray | None = None
    modality: str | None = None
    units: str | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape

    def physical(self, index: Any) -> np.ndarray:
        """Physical positions (mm, ``(z, y, x)``-ordered LPS) of voxel indices.

        Parameters
        ----------
        index : array_like, shape (..., ndim)
            Voxel indices (may be fractional).
        """
        idx = np.asarray(index, dtype=float)
        scaled = idx * np.asarray(self.spacing)
        if self.direction is not None:
            scaled = scaled @ np.asarray(self.direction).T
        return np.asarray(self.origin) + scaled


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _require(module: str, what: str) -> Any:
    """Import an optional dependency or explain how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs the optional package {module!r}: pip install 'fastct-engine[io]'"
        ) from exc


def _check_input_path(path: object, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{name} {str(p)!r} does not exist")
    return p


def _check_output_path(path: object, suffixes: tuple[str, ...], what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a path (str or os.PathLike), got {type(path).__name__}")
    p = Path(path)
    if not p.name.lower().endswith(suffixes):
        raise ValueError(f"path must end with {' or '.join(suffixes)} for {what}, got {str(p)!r}")
    if p.is_dir():
        raise ValueError(f"path {str(p)!r} is a directory; expected a {what} file name")
    return p


def _native(array: np.ndarray) -> np.ndarray:
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _reverse_geometry(matrix: np.ndarray) -> np.ndarray:
    """Conjugate an (x, y, z)-frame matrix into the (z, y, x) frame: R @ M @ R."""
    return _REV3 @ matrix @ _REV3

"""Importers and exporters: DICOM series, NIfTI and NumPy files.

Every reader returns an :class:`ImportedVolume`: the voxel array in fastct's
``(z, y, x)`` C order plus its physical geometry and a little source metadata.

Coordinate convention
---------------------
fastct's world frame is **LPS** (x towards the patient's Left, y towards
Posterior, z towards Superior), the frame of DICOM and ITK, but its components
are stored in **(z, y, x) order**, like the array axes. For a 3-D volume::

    physical(i) = origin + direction @ (i * spacing)      # i = (k, j, i) voxel index

where ``physical = (S, P, L)`` coordinates in mm, i.e. the DICOM/ITK LPS point
``(x, y, z)`` reversed. ``direction[:, a]`` is the unit vector, in that reversed
LPS frame, along which array axis ``a`` runs. If ``R`` is the 3x3 axis-reversal
permutation, ITK's geometry (index ``(i, j, k)``, LPS point ``(x, y, z)``) maps as::

    origin    = R @ origin_itk            spacing = spacing_itk[::-1]
    direction = R @ direction_itk @ R

So a plain axial DICOM series or a NIfTI file with an LPS-aligned affine gets
the identity direction.

* DICOM: array ``[k, r, c]`` is slice ``k`` (sorted by increasing position along
  the slice normal ``ImageOrientationPatient[:3] x ImageOrientationPatient[3:]``),
  row ``r``, column ``c``. ``origin`` is the first slice's
  ``ImagePositionPatient`` reversed; ``direction`` columns are the normal, the
  column cosine (rows run along it) and the row cosine, each reversed.
* NIfTI: the file's voxel ``(i, j, k)`` is array ``[k, j, i]`` (a transpose; no
  flipping or resampling), and the RAS affine ``A`` becomes LPS by
  ``diag(-1, -1, 1, 1) @ A`` as ITK does. Spatial units of metres or microns
  are converted to mm. :func:`write_nifti` performs the inverse and also stores
  the float64 geometry in a small JSON header extension, so
  ``read_nifti(write_nifti(...))`` returns bit-identical spacing, origin,
  direction, array and dtype (other tools ignore the extension; it is only used
  when it still agrees with the header's affine).

pydicom and nibabel are optional (``pip install "fastct-engine[io]"``) and imported only
when a reader or writer needs them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._common import ImportedVolume, _check_input_path
from ._dicom import _DICOM_SUFFIXES, read_dicom_series
from ._limits import ResourceLimitError, check_allocation, check_disk_space
from ._nifti import read_nifti, write_nifti
from ._npy import read_npy, write_npy

__all__ = [
    "ImportedVolume",
    "ResourceLimitError",
    "check_allocation",
    "check_disk_space",
    "read_dicom_series",
    "read_nifti",
    "read_npy",
    "read_volume",
    "write_nifti",
    "write_npy",
]

# Reader options accepted for each kind of input.
_OPTIONS = {
    "DICOM folder": {"series_uid", "recursive"},
    "DICOM file": set(),
    "NIfTI": {"volume_index"},
    "NumPy": {"spacing", "origin", "direction", "mmap"},
}


def _has_dicm_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_volume(path: str | os.PathLike, **kw: Any) -> ImportedVolume:
    """Read a volume, choosing the reader from the input.

    * a folder: :func:`read_dicom_series` (options ``series_uid``, ``recursive``)
    * ``.nii`` / ``.nii.gz`` / ``.hdr``: :func:`read_nifti` (``volume_index``)
    * ``.npy``: :func:`read_npy` (``spacing``, ``origin``, ``direction``, ``mmap``)
    * ``.dcm`` (or any file with a DICOM preamble): one-slice 3-D volume

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Unrecognised format, or what the chosen reader raises.
    TypeError
        An option that does not apply to this kind of input.
    """
    p = _check_input_path(path, "input")
    name = p.name.lower()
    if p.is_dir():
        kind, reader = "DICOM folder", read_dicom_series
    elif name.endswith((".nii", ".nii.gz", ".hdr")):
        kind, reader = "NIfTI", read_nifti
    elif name.endswith(".npy"):
        kind, reader = "NumPy", read_npy
    elif name.endswith(_DICOM_SUFFIXES) or _has_dicm_preamble(p):
        kind, reader = "DICOM file", read_dicom_series
    else:
        raise ValueError(
            f"input {str(p)!r} has an unsupported format: expected a DICOM folder, a .dcm file, "
            ".nii/.nii.gz or .npy"
        )
    unknown = sorted(set(kw) - _OPTIONS[kind])
    if unknown:
        accepted = ", ".join(sorted(_OPTIONS[kind])) or "none"
        raise TypeError(
            f"option(s) {', '.join(unknown)} do not apply to {kind} input {str(p)!r} "
            f"(accepted: {accepted})"
        )
    return reader(p, **kw)

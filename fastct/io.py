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

pydicom and nibabel are optional (``pip install fastct[io]``) and imported only
when a reader or writer needs them.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path
from ._validate import as_image, check_direction, check_origin, check_spacing

__all__ = [
    "ImportedVolume",
    "read_dicom_series",
    "read_nifti",
    "read_npy",
    "read_volume",
    "write_nifti",
    "write_npy",
]

# Axis reversal (x, y, z) <-> (z, y, x) and the RAS <-> LPS flip.
_REV3 = np.eye(3)[::-1]
_RAS_LPS = np.diag([-1.0, -1.0, 1.0])

# Files whose name claims DICOM: unreadable ones are errors, not skipped.
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

# Errors that are not about the file's content: never reworded as "corrupt".
_PASS_THROUGH = (MemoryError, PermissionError)

# Slice-stack tolerances (mm / relative).
_ORTHO_EXACT = 1e-4  # |D^T D - I| below this: orientation used as written
_ORTHO_REPAIR = 1e-2  # below this: orthonormalised (rounded header values)
_STEP_REL_TOL = 1e-2  # slice steps may differ from their mean by 1 % ...
_STEP_ABS_TOL = 1e-5  # ... plus this (mm)
_TILT_REL_TOL = 1e-2  # in-plane drift allowed per mm along the normal ...
_TILT_ABS_TOL = 1e-3  # ... plus this (mm)

# NIfTI header extension carrying fastct's exact geometry.
_NIFTI_EXT_CODE = 6  # NIFTI_ECODE_COMMENT: plain text that other tools ignore
_NIFTI_EXT_TAG = "fastct-geometry"
# dtypes NIfTI cannot store, and what they are written as.
_NIFTI_STORAGE = {np.dtype(bool): np.dtype(np.uint8), np.dtype(np.float16): np.dtype(np.float32)}


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
            f"{what} needs the optional package {module!r}: pip install fastct[io]"
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


# ---------------------------------------------------------------------------
# DICOM
# ---------------------------------------------------------------------------


@dataclass
class _Slice:
    path: Path
    header: Any  # pydicom Dataset without pixel data
    force: bool  # needed force=True to parse (no DICM preamble)


def _claims_dicom(path: Path) -> bool:
    return path.name.lower().endswith(_DICOM_SUFFIXES)


def _read_dicom_header(pydicom: Any, path: Path, *, strict: bool) -> _Slice | None:
    """Header of one file; None if it is not DICOM (and ``strict`` is False)."""
    from pydicom.errors import InvalidDicomError

    force = False
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=False)
    except InvalidDicomError:
        if not (strict or _claims_dicom(path)):
            return None
        # Named like DICOM but without the 'DICM' preamble: old files still parse.
        force = True
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            raise ValueError(f"DICOM file {str(path)!r} is not a valid DICOM file: {exc}") from None
        if "SOPClassUID" not in ds and "Rows" not in ds:
            raise ValueError(
                f"DICOM file {str(path)!r} is not a valid DICOM file "
                "(no 'DICM' preamble and no recognisable DICOM header)"
            ) from None
    except _PASS_THROUGH:
        raise
    except Exception as exc:
        raise ValueError(f"DICOM file {str(path)!r} is corrupt or truncated: {exc}") from None
    return _Slice(path, ds, force)


def _is_image(sl: _Slice) -> bool:
    """True for image files; False for DICOMDIR, SR, RT structures...

    Raises for a file of an image storage class whose header stops before the
    image attributes (truncated).
    """
    ds = sl.header
    meta = getattr(ds, "file_meta", None)
    sop = str(
        ds.get("SOPClassUID", "") or (meta.get("MediaStorageSOPClassUID", "") if meta else "")
    )
    if sop == _DICOMDIR_SOP_CLASS:
        return False
    if "Rows" in ds and "Columns" in ds:
        return True
    try:
        from pydicom.uid import UID

        name = UID(sop).name if sop else ""
    except Exception:  # noqa: BLE001 - unknown UID
        name = ""
    if name.endswith("Image Storage"):
        raise ValueError(
            f"DICOM file {str(sl.path)!r} is corrupt or truncated: it is a {name} file "
            "without Rows/Columns"
        )
    return False


def _floats(ds: Any, keyword: str, count: int, path: Path) -> np.ndarray | None:
    if keyword not in ds or ds.get(keyword) in (None, ""):
        return None
    try:
        values = np.array([float(v) for v in ds[keyword].value], dtype=float)
    except (TypeError, ValueError):
        values = np.array([])
    if values.size != count or not np.all(np.isfinite(values)):
        raise ValueError(
            f"DICOM file {str(path)!r}: {keyword} must hold {count} finite numbers, "
            f"got {ds[keyword].value!r}"
        )
    return values


def _pixel_spacing(ds: Any, path: Path) -> tuple[tuple[float, float], str]:
    """(row spacing, column spacing) in mm and which attribute gave it."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _floats(ds, keyword, 2, path)
        if values is not None:
            if np.any(values <= 0):
                raise ValueError(
                    f"DICOM file {str(path)!r}: {keyword} must be > 0, got {values.tolist()}"
                )
            return (float(values[0]), float(values[1])), keyword
    return (1.0, 1.0), "default"


def _orientation(ds: Any, path: Path) -> np.ndarray | None:
    """3x3 LPS matrix with columns (row cosine, column cosine, normal), or None."""
    iop = _floats(ds, "ImageOrientationPatient", 6, path)
    if iop is None:
        return None
    row, col = iop[:3], iop[3:]
    mat = np.column_stack([row, col, np.cross(row, col)])
    err = np.abs(mat.T @ mat - np.eye(3)).max()
    if err > _ORTHO_REPAIR:
        raise ValueError(
            f"DICOM file {str(path)!r}: ImageOrientationPatient must be two orthogonal unit "
            f"vectors, got {iop.tolist()}"
        )
    if err > _ORTHO_EXACT:
        # Header values rounded to few digits: use the nearest rotation.
        u, _, vt = np.linalg.svd(mat)
        mat = u @ vt
    return mat


def _to_fastct_direction(orient: np.ndarray) -> np.ndarray:
    """LPS (row, col, normal) columns -> fastct (z, y, x) direction matrix."""
    return _reverse_geometry(orient)


def _series_label(slices: list[_Slice]) -> str:
    ds = slices[0].header
    uid = str(ds.get("SeriesInstanceUID", "") or "(no SeriesInstanceUID)")
    modality = str(ds.get("Modality", "") or "?")
    desc = str(ds.get("SeriesDescription", "") or "")
    desc = f"{desc!r}" if desc else "no description"
    return f"{uid} ({modality}, {desc}, {len(slices)} files)"


def _scan_folder(pydicom: Any, folder: Path, recursive: bool) -> tuple[list[_Slice], list[str]]:
    """Headers of every DICOM image in ``folder``, and the names of skipped files."""
    if recursive:
        candidates = sorted(p for p in folder.rglob("*") if p.is_file())
    else:
        candidates = sorted(p for p in folder.iterdir() if p.is_file())
    images: list[_Slice] = []
    skipped: list[str] = []
    for path in candidates:
        rel = str(path.relative_to(folder))
        if path.name.startswith("."):
            skipped.append(rel)
            continue
        sl = _read_dicom_header(pydicom, path, strict=False)
        if sl is None or not _is_image(sl):
            skipped.append(rel)
            continue
        images.append(sl)
    return images, skipped


def _choose_series(
    slices: list[_Slice], folder: Path, series_uid: str | None
) -> tuple[str, list[_Slice]]:
    groups: dict[str, list[_Slice]] = {}
    for sl in slices:
        groups.setdefault(str(sl.header.get("SeriesInstanceUID", "") or ""), []).append(sl)
    if series_uid is not None:
        if not isinstance(series_uid, str):
            raise TypeError(f"series_uid must be a string, got {type(series_uid).__name__}")
        if series_uid not in groups:
            found = "; ".join(_series_label(g) for g in groups.values())
            raise ValueError(
                f"series_uid {series_uid!r} not found in {str(folder)!r}; series found: {found}"
            )
        return series_uid, groups[series_uid]
    if len(groups) > 1:
        found = "; ".join(_series_label(g) for g in groups.values())
        raise ValueError(
            f"found {len(groups)} DICOM series in {str(folder)!r}; choose one with "
            f"series_uid=: {found}"
        )
    uid, group = next(iter(groups.items()))
    return uid, group


def _check_image_attrs(sl: _Slice) -> None:
    ds = sl.header
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        raise ValueError(
            f"DICOM file {str(sl.path)!r}: only single-channel (greyscale) images can be "
            f"imported, got SamplesPerPixel={samples}"
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise ValueError(
            f"DICOM file {str(sl.path)!r}: multi-frame files ({frames} frames) are not "
            "supported; export the series as one file per slice"
        )


def _sort_and_check(slices: list[_Slice], uid: str) -> tuple[list[_Slice], float, np.ndarray]:
    """Sort a stack along its normal, check the geometry; return slices, z step, orientation."""
    first = slices[0]
    orient = _orientation(first.header, first.path)
    rows, cols = int(first.header.Rows), int(first.header.Columns)
    spacing, _ = _pixel_spacing(first.header, first.path)
    label = f"DICOM series {uid!r}" if uid else "DICOM series"
    if orient is None:
        raise ValueError(
            f"{label}: file {str(first.path)!r} lacks ImageOrientationPatient, so its "
            f"{len(slices)} slices cannot be ordered"
        )
    positions = []
    for sl in slices:
        ds = sl.header
        _check_image_attrs(sl)
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise ValueError(
                f"{label} has inconsistent image sizes: {str(first.path)!r} is {rows}x{cols} "
                f"(Rows x Columns) but {str(sl.path)!r} is {int(ds.Rows)}x{int(ds.Columns)}"
            )
        other = _orientation(ds, sl.path)
        if other is None or not np.allclose(other, orient, atol=_ORTHO_EXACT * 10):
            got = "missing" if other is None else other[:, :2].T.ravel().round(6).tolist()
            raise ValueError(
                f"{label} has inconsistent ImageOrientationPatient: "
                f"{str(first.path)!r} has {orient[:, :2].T.ravel().round(6).tolist()} but "
                f"{str(sl.path)!r} has {got}"
            )
        sp, _ = _pixel_spacing(ds, sl.path)
        if not np.allclose(sp, spacing, rtol=1e-4, atol=1e-6):
            raise ValueError(
                f"{label} has inconsistent PixelSpacing: {str(first.path)!r} has {list(spacing)} "
                f"but {str(sl.path)!r} has {list(sp)}"
            )
        pos = _floats(ds, "ImagePositionPatient", 3, sl.path)
        if pos is None:
            raise ValueError(
                f"{label}: file {str(sl.path)!r} lacks ImagePositionPatient, so the slices "
                "cannot be ordered"
            )
        positions.append(pos)
    positions_arr = np.array(positions)
    normal = orient[:, 2]
    dist = positions_arr @ normal
    order = np.argsort(dist, kind="stable")
    slices = [slices[i] for i in order]
    dist, positions_arr = dist[order], positions_arr[order]
    steps = np.diff(dist)
    mean_step = (dist[-1] - dist[0]) / (len(dist) - 1)
    dup = np.flatnonzero(steps <= max(1e-6, 1e-3 * mean_step))
    if dup.size:
        a, b = slices[dup[0]].path, slices[dup[0] + 1].path
        raise ValueError(
            f"{label} has duplicate slice positions: {str(a)!r} and {str(b)!r} are both at "
            f"{dist[dup[0]]:.4f} mm along the slice normal ({dup.size} duplicate(s) in all)"
        )
    bad = np.flatnonzero(np.abs(steps - mean_step) > _STEP_REL_TOL * mean_step + _STEP_ABS_TOL)
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"{label} has uneven slice spacing: steps range from {steps.min():.4f} to "
            f"{steps.max():.4f} mm (mean {mean_step:.4f} mm); the step between "
            f"{str(slices[k].path)!r} and {str(slices[k + 1].path)!r} is {steps[k]:.4f} mm "
            "(missing or extra slice?)"
        )
    offsets = positions_arr - positions_arr[0]
    along = offsets @ normal
    drift = np.linalg.norm(offsets - along[:, None] * normal, axis=1)
    tilted = np.flatnonzero(drift > _TILT_ABS_TOL + _TILT_REL_TOL * np.abs(along))
    if tilted.size:
        k = int(tilted[0])
        raise ValueError(
            f"{label}: slices are not stacked along the slice normal (gantry tilt or shifted "
            f"slices): {str(slices[k].path)!r} is offset {drift[k]:.3f} mm in-plane from "
            f"{str(slices[0].path)!r}; tilted stacks are not supported"
        )
    return slices, float(mean_step), orient


def _read_pixels(pydicom: Any, sl: _Slice) -> np.ndarray:
    try:
        ds = pydicom.dcmread(str(sl.path), force=sl.force)
        if "PixelData" not in ds:
            raise ValueError("it has no pixel data")
        pixels = ds.pixel_array
    except _PASS_THROUGH:
        raise
    except Exception as exc:
        raise ValueError(
            f"DICOM file {str(sl.path)!r} is corrupt or truncated, or its pixel data cannot be "
            f"decoded: {exc}"
        ) from None
    rows, cols = int(sl.header.Rows), int(sl.header.Columns)
    if pixels.shape != (rows, cols):
        raise ValueError(
            f"DICOM file {str(sl.path)!r}: pixel data has shape {pixels.shape}, expected "
            f"{rows}x{cols} (Rows x Columns)"
        )
    return _native(pixels)


def _rescale(sl: _Slice) -> tuple[float, float]:
    ds = sl.header
    raw_slope, raw_inter = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    try:
        slope = 1.0 if raw_slope in (None, "") else float(raw_slope)
        inter = 0.0 if raw_inter in (None, "") else float(raw_inter)
    except (TypeError, ValueError):
        raise ValueError(
            f"DICOM file {str(sl.path)!r}: RescaleSlope/RescaleIntercept must be numbers, got "
            f"{ds.get('RescaleSlope')!r}/{ds.get('RescaleIntercept')!r}"
        ) from None
    if not (math.isfinite(slope) and math.isfinite(inter)) or slope == 0:
        raise ValueError(
            f"DICOM file {str(sl.path)!r}: invalid RescaleSlope/RescaleIntercept {slope}/{inter}"
        )
    return slope, inter


def _fits(dtype: np.dtype, lo: float, hi: float) -> bool:
    info = np.iinfo(dtype)
    return info.min <= lo and hi <= info.max


def _load_stack(pydicom: Any, slices: list[_Slice], modality: str) -> tuple[np.ndarray, dict]:
    """Pixel values with the rescale applied, in the output dtype policy."""
    rows, cols = int(slices[0].header.Rows), int(slices[0].header.Columns)
    rescales = [_rescale(sl) for sl in slices]
    identity = all(r == (1.0, 0.0) for r in rescales)
    integral = all(float(s).is_integer() and float(i).is_integer() for s, i in rescales)
    info: dict[str, Any] = {}
    if len(set(rescales)) == 1:
        info["rescale_slope"], info["rescale_intercept"] = rescales[0]
    else:
        info["rescale_varies"] = True

    if modality == "CT":
        # Hounsfield units as int16: rounded, and refused if out of range.
        out = np.empty((len(slices), rows, cols), dtype=np.int16)
        for k, (sl, (slope, inter)) in enumerate(zip(slices, rescales)):
            hu = _read_pixels(pydicom, sl).astype(np.float64) * slope + inter
            lo, hi = float(hu.min()), float(hu.max())
            if lo < -32768.5 or hi > 32767.5:
                raise ValueError(
                    f"DICOM file {str(sl.path)!r}: CT values {lo:g}..{hi:g} HU after "
                    f"RescaleSlope={slope:g}/RescaleIntercept={inter:g} do not fit int16 "
                    "(-32768..32767)"
                )
            out[k] = np.rint(hu)
        return out, info

    raws = [_read_pixels(pydicom, sl) for sl in slices]
    raw_dtype = np.result_type(*[r.dtype for r in raws])
    if identity:
        out = np.empty((len(slices), rows, cols), dtype=raw_dtype)
        for k, raw in enumerate(raws):
            out[k] = raw
        return out, info
    if integral and raw_dtype.kind in "iu":
        lo = min(min(r.min() * s, r.max() * s) + i for r, (s, i) in zip(raws, rescales))
        hi = max(max(r.min() * s, r.max() * s) + i for r, (s, i) in zip(raws, rescales))
        lo, hi = float(lo), float(hi)
        for cand in (raw_dtype, np.dtype(np.int16), np.dtype(np.uint16), np.dtype(np.int32)):
            if _fits(cand, lo, hi):
                dtype = cand
                break
        else:
            dtype = (
                np.dtype(np.float64)
                if not _fits(np.dtype(np.int64), lo, hi)
                else np.dtype(np.int64)
            )
        out = np.empty((len(slices), rows, cols), dtype=dtype)
        for k, (raw, (s, i)) in enumerate(zip(raws, rescales)):
            out[k] = raw.astype(np.int64) * int(s) + int(i)
        return out, info
    out = np.empty((len(slices), rows, cols), dtype=np.float32)
    for k, (raw, (s, i)) in enumerate(zip(raws, rescales)):
        out[k] = raw.astype(np.float64) * s + i
    return out, info


def _units(ds: Any, modality: str) -> str | None:
    if modality == "CT":
        return "HU"
    rescale_type = str(ds.get("RescaleType", "") or "").strip()
    if rescale_type and rescale_type.upper() != "US":
        return rescale_type
    if modality == "PT":
        units = str(ds.get("Units", "") or "").strip()
        return units or None
    return None


def _series_metadata(ds: Any, uid: str, source: Path, slices: list[_Slice]) -> dict:
    """Patient-free description of the series."""
    meta: dict[str, Any] = {"format": "dicom", "source": str(source)}
    if uid:
        meta["series_uid"] = uid
    for key, keyword in (
        ("series_description", "SeriesDescription"),
        ("series_number", "SeriesNumber"),
        ("manufacturer", "Manufacturer"),
        ("body_part", "BodyPartExamined"),
        ("photometric_interpretation", "PhotometricInterpretation"),
        ("convolution_kernel", "ConvolutionKernel"),
    ):
        value = ds.get(keyword)
        if value not in (None, ""):
            meta[key] = int(value) if keyword == "SeriesNumber" else str(value)
    try:
        thickness = float(ds.get("SliceThickness") or "nan")
    except (TypeError, ValueError):
        thickness = math.nan
    if math.isfinite(thickness):
        meta["slice_thickness"] = thickness
    tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if tsyntax:
        meta["transfer_syntax"] = str(tsyntax)
    meta["file_count"] = len(slices)
    meta["files"] = [sl.path.name for sl in slices]
    return meta


def _read_dicom_file(path: Path) -> ImportedVolume:
    """One DICOM image file as a one-slice 3-D volume."""
    pydicom = _require("pydicom", "reading DICOM")
    sl = _read_dicom_header(pydicom, path, strict=True)
    assert sl is not None
    if not _is_image(sl):
        raise ValueError(f"DICOM file {str(path)!r} holds no image (no Rows/Columns)")
    _check_image_attrs(sl)
    ds = sl.header
    modality = str(ds.get("Modality", "") or "") or None
    array, info = _load_stack(pydicom, [sl], modality or "")
    (dy, dx), spacing_source = _pixel_spacing(ds, path)
    dz, dz_source = 1.0, "default"
    try:
        thickness = float(ds.get("SliceThickness") or 0.0)
    except (TypeError, ValueError):
        thickness = 0.0
    if math.isfinite(thickness) and thickness > 0:
        dz, dz_source = thickness, "SliceThickness"
    orient = _orientation(ds, path)
    position = _floats(ds, "ImagePositionPatient", 3, path)
    meta = _series_metadata(ds, str(ds.get("SeriesInstanceUID", "") or ""), path, [sl])
    meta.update(info)
    meta["pixel_spacing_source"] = spacing_source
    meta["slice_spacing_source"] = dz_source
    if position is None:
        meta["origin_source"] = "default"
    return ImportedVolume(
        array=array,
        spacing=(dz, dy, dx),
        origin=tuple(float(v) for v in position[::-1]) if position is not None else (0.0, 0.0, 0.0),
        direction=_to_fastct_direction(orient) if orient is not None else None,
        modality=modality,
        units=_units(ds, modality or ""),
        metadata=meta,
    )


def read_dicom_series(
    folder: str | os.PathLike, *, series_uid: str | None = None, recursive: bool = False
) -> ImportedVolume:
    """Read a DICOM series (one file per slice) as a ``(z, y, x)`` volume.

    Every file in ``folder`` is examined; files that are not DICOM (README,
    hidden files) or hold no image (DICOMDIR, structured reports...) are
    skipped. Images are grouped by SeriesInstanceUID, sorted by the projection
    of ImagePositionPatient on the slice normal, checked for a consistent
    geometry and rescaled with RescaleSlope/RescaleIntercept.

    Parameters
    ----------
    folder : str or path-like
        Folder holding the series. A single DICOM file is also accepted and
        gives a one-slice volume (z spacing from SliceThickness, else 1 mm).
    series_uid : str, optional
        SeriesInstanceUID to import when the folder holds several series.
    recursive : bool
        Also search sub-folders.

    Returns
    -------
    ImportedVolume
        CT: int16 Hounsfield units. Other modalities: the stored integer dtype
        when the rescale is the identity, an integer dtype wide enough for an
        integral rescale, float32 otherwise. ``spacing`` is (slice step along
        the normal, PixelSpacing row spacing, PixelSpacing column spacing);
        ``origin`` and ``direction`` come from the first slice (see the module
        docstring for the axis convention).

    Raises
    ------
    FileNotFoundError
        ``folder`` does not exist.
    ValueError
        No DICOM images, several series and no ``series_uid``, inconsistent
        geometry (orientation, size, pixel spacing, uneven or duplicate slice
        positions, tilted stack), or a corrupt/truncated file (named).
    ImportError
        pydicom is not installed.

    Examples
    --------
    >>> vol = read_dicom_series("scans/chest_ct")            # doctest: +SKIP
    >>> vol.array.dtype, vol.units                            # doctest: +SKIP
    (dtype('int16'), 'HU')
    """
    folder = _check_input_path(folder, "DICOM folder")
    if folder.is_file():
        vol = _read_dicom_file(folder)
        if series_uid is not None and vol.metadata.get("series_uid") != series_uid:
            raise ValueError(
                f"series_uid {series_uid!r} does not match DICOM file {str(folder)!r}, whose "
                f"series is {vol.metadata.get('series_uid')!r}"
            )
        return vol
    pydicom = _require("pydicom", "reading DICOM")
    images, skipped = _scan_folder(pydicom, folder, bool(recursive))
    if not images:
        hint = ""
        if not recursive and any(p.is_dir() for p in folder.iterdir()):
            hint = "; it has sub-folders: pass recursive=True to search them"
        raise ValueError(
            f"DICOM folder {str(folder)!r} holds no DICOM image files "
            f"({len(skipped)} other file(s) skipped){hint}"
        )
    uid, group = _choose_series(images, folder, series_uid)
    if len(group) == 1:
        vol = _read_dicom_file(group[0].path)
        vol.metadata["source"] = str(folder)
        vol.metadata["skipped_files"] = skipped
        return vol
    slices, step, orient = _sort_and_check(group, uid)
    ds = slices[0].header
    modality = str(ds.get("Modality", "") or "") or None
    array, info = _load_stack(pydicom, slices, modality or "")
    (dy, dx), spacing_source = _pixel_spacing(ds, slices[0].path)
    position = _floats(ds, "ImagePositionPatient", 3, slices[0].path)
    meta = _series_metadata(ds, uid, folder, slices)
    meta.update(info)
    meta["pixel_spacing_source"] = spacing_source
    meta["slice_spacing_source"] = "ImagePositionPatient"
    meta["skipped_files"] = skipped
    return ImportedVolume(
        array=array,
        spacing=(step, dy, dx),
        origin=tuple(float(v) for v in position[::-1]),
        direction=_to_fastct_direction(orient),
        modality=modality,
        units=_units(ds, modality or ""),
        metadata=meta,
    )


# ---------------------------------------------------------------------------
# NIfTI
# ---------------------------------------------------------------------------

_UNIT_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 1e-3, "unknown": 1.0}


def _fastct_affine_lps(spacing: tuple, origin: tuple, direction: np.ndarray | None) -> np.ndarray:
    """4x4 LPS affine of NIfTI voxel (i, j, k) for a 3-D fastct geometry."""
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    lin = _reverse_geometry(d @ np.diag(spacing))
    aff = np.eye(4)
    aff[:3, :3] = lin
    aff[:3, 3] = np.asarray(origin, dtype=float)[::-1]
    return aff


def _embed_2d(spacing: tuple, origin: tuple, direction: np.ndarray | None) -> tuple:
    """A (y, x) geometry as the one-slice 3-D geometry (1, y, x)."""
    d3 = np.eye(3)
    if direction is not None:
        d3[1:, 1:] = direction
    return (1.0, *spacing), (0.0, *origin), d3


def _geometry_from_extension(img: Any, shape_zyx: tuple, lps: np.ndarray) -> dict | None:
    """fastct's exact geometry from our header extension, if present and still valid."""
    for ext in img.header.extensions:
        if ext.get_code() != _NIFTI_EXT_CODE:
            continue
        try:
            content = ext.get_content()
            text = content.decode("utf-8") if isinstance(content, bytes) else str(content)
            text = text.rstrip("\x00 ")
            if not text.startswith(_NIFTI_EXT_TAG + ":"):
                continue
            geo = json.loads(text[len(_NIFTI_EXT_TAG) + 1 :])
            ndim = int(geo["ndim"])
            shape = tuple(int(s) for s in geo["shape"])
            spacing = check_spacing(geo["spacing"], ndim)
            origin = check_origin(geo["origin"], ndim)
            direction = check_direction(geo["direction"], ndim)
            dtype = np.dtype(geo["dtype"])
        except Exception:  # noqa: BLE001 - a foreign or damaged comment: ignore it
            continue
        if ndim == 2:
            if shape_zyx != (1, *shape):
                continue
            s3, o3, d3 = _embed_2d(spacing, origin, direction)
        else:
            if shape_zyx != shape:
                continue
            s3, o3, d3 = spacing, origin, direction
        expected = _fastct_affine_lps(s3, o3, d3)
        scale = max(1.0, float(np.abs(expected).max()))
        # The header holds float32 copies: agree to float32 precision or ignore.
        if not np.allclose(expected, lps, rtol=1e-5, atol=1e-5 * scale):
            continue
        return {
            "ndim": ndim,
            "spacing": spacing,
            "origin": origin,
            "direction": direction,
            "dtype": dtype,
        }
    return None


def read_nifti(path: str | os.PathLike, *, volume_index: int | None = None) -> ImportedVolume:
    """Read a NIfTI-1/NIfTI-2 file (``.nii``, ``.nii.gz``) as a ``(z, y, x)`` volume.

    The file's voxel ``(i, j, k)`` becomes array ``[k, j, i]`` (transpose only;
    no resampling). Spacing is the length of each affine column, direction the
    normalised columns, origin the translation; the affine (sform, else qform)
    is converted from RAS to LPS as ITK does and reordered to ``(z, y, x)``.

    Parameters
    ----------
    path : str or path-like
        The NIfTI file (a ``.hdr``/``.img`` pair also works).
    volume_index : int, optional
        Which volume of a 4-D file to read (index on the 4th axis); required
        for 4-D files, refused for 3-D ones.

    Returns
    -------
    ImportedVolume
        A 3-D volume (2-D files give ``(1, y, x)``, except files written by
        :func:`write_nifti` from a 2-D array, which come back 2-D). The dtype is
        the stored one (native byte order) unless scl_slope/scl_inter scale the
        data, in which case it is float32 (float64 for float64 data).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        Not a NIfTI file, a 4-D file without ``volume_index`` (or out of range),
        a sheared affine with no usable qform.
    ImportError
        nibabel is not installed.
    """
    path = _check_input_path(path, "NIfTI file")
    nib = _require("nibabel", "reading NIfTI")
    if path.is_dir():
        raise ValueError(f"NIfTI file {str(path)!r} is a directory")
    try:
        img = nib.load(str(path), mmap=False)
    except _PASS_THROUGH:
        raise
    except Exception as exc:
        raise ValueError(
            f"NIfTI file {str(path)!r} cannot be read (corrupt or not NIfTI): {exc}"
        ) from None
    if not isinstance(img, nib.Nifti1Pair):  # Nifti1Image, Nifti2Image and pairs
        raise ValueError(f"NIfTI file {str(path)!r} is a {type(img).__name__}, not a NIfTI image")
    header = img.header
    shape = tuple(int(s) for s in img.shape)

    # Spatial axes and the (optional) volume axis.
    index: tuple = ()
    while len(shape) > 3 and shape[-1] == 1 and not (len(shape) == 4 and volume_index is not None):
        shape, index = shape[:-1], (0, *index)
    if len(shape) == 4:
        if volume_index is None:
            raise ValueError(
                f"NIfTI file {str(path)!r} is 4-D with shape {shape} ({shape[3]} volumes); "
                "pass volume_index= to choose one"
            )
        if isinstance(volume_index, bool) or not isinstance(volume_index, (int, np.integer)):
            raise TypeError(f"volume_index must be an integer, got {type(volume_index).__name__}")
        if not 0 <= volume_index < shape[3]:
            raise ValueError(
                f"volume_index must be in 0..{shape[3] - 1} for NIfTI file {str(path)!r}, "
                f"got {volume_index}"
            )
        index = (int(volume_index), *index)
    elif len(shape) > 4:
        raise ValueError(
            f"NIfTI file {str(path)!r} has {len(shape)} dimensions {img.shape}; at most 4 are supported"
        )
    elif volume_index is not None:
        raise ValueError(
            f"volume_index applies to 4-D NIfTI files only; {str(path)!r} is {len(shape)}-D with shape {shape}"
        )

    # Affine: sform/qform as nibabel chooses, qform if the sform is sheared.
    unit = header.get_xyzt_units()[0] or "unknown"
    to_mm = _UNIT_TO_MM.get(unit, 1.0)
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    affine = np.asarray(img.affine, dtype=float)
    source = "sform" if sform_code > 0 else "qform" if qform_code > 0 else "default"
    lin = affine[:3, :3]
    norms = np.linalg.norm(lin, axis=0)
    if (
        np.any(norms == 0)
        or np.abs((lin / norms).T @ (lin / norms) - np.eye(3)).max() > _ORTHO_EXACT
    ):
        if source == "sform" and qform_code > 0:
            affine = np.asarray(header.get_qform(), dtype=float)
            source = "qform"
            lin = affine[:3, :3]
            norms = np.linalg.norm(lin, axis=0)
        else:
            raise ValueError(
                f"NIfTI file {str(path)!r} has a sheared or degenerate affine "
                f"{np.round(affine, 6).tolist()}; only rotations and scalings are supported"
            )
    affine = affine.copy()
    affine[:3] *= to_mm
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    spatial = shape[:3] + (1,) * (3 - min(len(shape), 3))  # 1-D/2-D files: unit axes

    # Voxels: read only the requested volume, transpose (i, j, k) -> (k, j, i).
    slope, inter = img.dataobj.slope, img.dataobj.inter
    scaled = not (
        (slope is None or np.isnan(slope) or slope == 1)
        and (inter is None or np.isnan(inter) or inter == 0)
    )
    try:
        proxy = img.dataobj
        raw = proxy[(Ellipsis, *index)] if index else np.asarray(proxy)
        raw = np.asarray(raw)
    except _PASS_THROUGH:
        raise
    except Exception as exc:
        raise ValueError(
            f"NIfTI file {str(path)!r}: voxel data cannot be read (truncated?): {exc}"
        ) from None
    raw = raw.reshape(spatial)
    if scaled:
        stored = img.get_data_dtype()
        raw = raw.astype(np.float64 if stored == np.float64 else np.float32, copy=False)
    array = _native(np.ascontiguousarray(raw.transpose(2, 1, 0)))
    shape_zyx = array.shape

    meta: dict[str, Any] = {
        "format": "nifti2" if isinstance(img, (nib.Nifti2Image, nib.Nifti2Pair)) else "nifti1",
        "source": str(path),
        "affine_source": source,
        "sform_code": sform_code,
        "qform_code": qform_code,
        "spatial_units": unit,
        "stored_dtype": str(img.get_data_dtype().newbyteorder("=")),
        "file_shape": [int(s) for s in img.shape],
    }
    if scaled:
        meta["scl_slope"], meta["scl_inter"] = float(slope), float(inter)
    if volume_index is not None:
        meta["volume_index"] = int(volume_index)
    descrip = header["descrip"].tobytes().rstrip(b"\x00").decode("latin-1").strip()
    if descrip:
        meta["description"] = descrip

    exact = None if (index or scaled) else _geometry_from_extension(img, shape_zyx, lps)
    if exact is not None:
        if exact["ndim"] == 2:
            array = array.reshape(shape_zyx[1:])
        dtype = exact["dtype"]
        if dtype != array.dtype and np.dtype(dtype) in _NIFTI_STORAGE:
            converted = array.astype(dtype)
            if np.array_equal(converted, array):
                array = converted
        return ImportedVolume(
            array=array,
            spacing=exact["spacing"],
            origin=exact["origin"],
            direction=exact["direction"]
            if exact["direction"] is not None
            else np.eye(exact["ndim"]),
            metadata=meta,
        )

    lin = _reverse_geometry(lps[:3, :3])  # columns: axes (k, j, i) in the (z, y, x) frame
    spacing = np.linalg.norm(lin, axis=0)
    return ImportedVolume(
        array=array,
        spacing=tuple(float(s) for s in spacing),
        origin=tuple(float(v) for v in lps[:3, 3][::-1]),
        direction=lin / spacing,
        metadata=meta,
    )


def write_nifti(
    path: str | os.PathLike,
    array: Any,
    *,
    spacing: Any = None,
    origin: Any = None,
    direction: Any = None,
    overwrite: bool = False,
) -> None:
    """Write a ``(z, y, x)`` or ``(y, x)`` array as NIfTI-1 (``.nii`` or ``.nii.gz``).

    The geometry is converted to a RAS affine (stored as both sform and qform,
    code 1 "scanner", units mm), so nibabel and ITK read back the same physical
    positions; a JSON header extension keeps the exact float64 values so that
    :func:`read_nifti` round-trips bit for bit. bool is stored as uint8 and
    float16 as float32 (restored by :func:`read_nifti`).

    Parameters
    ----------
    path : str or path-like
        Output file, ending in ``.nii`` or ``.nii.gz`` (gzip-compressed).
    array : array_like
        2-D or 3-D real numeric image.
    spacing, origin, direction : optional
        Geometry in fastct's convention (mm per axis, default 1; position of
        voxel 0, default 0; ``ndim x ndim`` direction cosines, default identity).
    overwrite : bool
        Replace an existing file (otherwise :class:`FileExistsError`).

    Notes
    -----
    The file appears only when complete (written to a hidden temporary name in
    the same folder, then renamed).
    """
    nib = _require("nibabel", "writing NIfTI")
    out = _check_output_path(path, (".nii", ".nii.gz"), "NIfTI")
    data = as_image(array, "array")
    ndim = data.ndim
    spacing_t = check_spacing(spacing, ndim)
    origin_t = check_origin(origin, ndim)
    direction_m = check_direction(direction, ndim)
    if ndim == 2:
        s3, o3, d3 = _embed_2d(spacing_t, origin_t, direction_m)
        data3 = data[None]
    else:
        s3, o3, d3 = spacing_t, origin_t, direction_m
        data3 = data
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ _fastct_affine_lps(s3, o3, d3)
    store = _NIFTI_STORAGE.get(data.dtype, data.dtype)
    # NIfTI's first axis varies fastest: the (k, j, i) array transposed, F order on disk.
    voxels = data3.astype(store, copy=False).transpose(2, 1, 0)
    img = nib.Nifti1Image(voxels, ras, dtype=store)
    img.set_sform(ras, code=1)
    img.set_qform(ras, code=1)
    img.header.set_xyzt_units("mm")
    img.header["scl_slope"], img.header["scl_inter"] = 1.0, 0.0
    geometry = {
        "ndim": ndim,
        "shape": list(data.shape),
        "spacing": list(spacing_t),
        "origin": list(origin_t),
        "direction": None if direction_m is None else direction_m.tolist(),
        "dtype": data.dtype.name,
    }
    text = _NIFTI_EXT_TAG + ":" + json.dumps(geometry)
    img.header.extensions.append(nib.nifti1.Nifti1Extension(_NIFTI_EXT_CODE, text.encode("utf-8")))
    with atomic_path(out, overwrite=bool(overwrite)) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            img.to_filename(str(tmp))


# ---------------------------------------------------------------------------
# NumPy
# ---------------------------------------------------------------------------


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
    with atomic_path(out, overwrite=bool(overwrite)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, data, allow_pickle=False)


# ---------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------

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

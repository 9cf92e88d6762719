"""DICOM: one file per slice, grouped into series, sorted, checked and rescaled."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _limits
from ._common import (
    _ORTHO_EXACT,
    _PASS_THROUGH,
    ImportedVolume,
    _check_input_path,
    _native,
    _require,
    _reverse_geometry,
)

# Files whose name claims DICOM: unreadable ones are errors, not skipped.
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

# Slice-stack tolerances (mm / relative).
_ORTHO_REPAIR = 1e-2  # below this: orthonormalised (rounded header values)
_STEP_REL_TOL = 1e-2  # slice steps may differ from their mean by 1 % ...
_STEP_ABS_TOL = 1e-5  # ... plus this (mm)
_TILT_REL_TOL = 1e-2  # in-plane drift allowed per mm along the normal ...
_TILT_ABS_TOL = 1e-3  # ... plus this (mm)


@dataclass
class _Slice:
    path: Path
    header: Any  # pydicom Dataset without pixel data
    force: bool  # needed force=True to parse (no DICM preamble)


def _claims_dicom(path: Path) -> bool:
    return path.name.lower().endswith(_DICOM_SUFFIXES)


#: Header elements longer than this are not read while scanning a folder (pydicom reads
#: them only if accessed), so a corrupt length field does not allocate its claim.
_DEFER = 1024**2


def _declared_too_much(path: Path) -> Exception:
    return _limits.declared_too_much(path, f"DICOM file {str(path)!r}")


def _parse_all(ds: Any) -> Any:
    """Convert every header element now (pydicom converts lazily, on first access), so
    that a damaged element fails here and not somewhere later; an element that cannot be
    converted is dropped (as if absent: a required one then gets its clear error), so a
    scanner's odd private tag does not make an otherwise valid file unreadable."""
    for block in (ds, getattr(ds, "file_meta", None)):
        if block is None:
            continue
        for tag in list(block.keys()):
            try:
                block[tag]
            except _PASS_THROUGH:
                raise
            except Exception:  # noqa: BLE001 - unknown VR, bad length, undecodable value
                del block[tag]
    return ds


def _read_dicom_header(pydicom: Any, path: Path, *, strict: bool) -> _Slice | None:
    """Header of one file; None if it is not DICOM (and ``strict`` is False)."""
    from pydicom.errors import InvalidDicomError

    force = False
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=False, defer_size=_DEFER)
        _parse_all(ds)
    except MemoryError:
        raise _declared_too_much(path) from None
    except InvalidDicomError:
        if not (strict or _claims_dicom(path)):
            return None
        # Named like DICOM but without the 'DICM' preamble: old files still parse.
        force = True
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True, defer_size=_DEFER)
            _parse_all(ds)
        except MemoryError:
            raise _declared_too_much(path) from None
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


def _missing_decoder(ds: Any, exc: Exception) -> str | None:
    """The name of the compression of ``ds`` when decoding failed only because no
    decoder for it is installed (not because the data is damaged), else None."""
    try:
        tsyntax = ds.file_meta.TransferSyntaxUID
        if not tsyntax.is_compressed:
            return None
    except Exception:  # noqa: BLE001 - no transfer syntax: not a decoder problem
        return None
    try:  # pydicom >= 3: ask the decoder registry
        from pydicom.pixels import get_decoder

        available = get_decoder(tsyntax).is_available
    except Exception:  # noqa: BLE001 - pydicom 2.x, or a syntax without a decoder
        available = "missing" not in str(exc).lower()  # pydicom 2.x's wording
    return None if available else f"{tsyntax.name!r}"


def _read_pixels(pydicom: Any, sl: _Slice) -> np.ndarray:
    ds = None
    try:
        ds = pydicom.dcmread(str(sl.path), force=sl.force)
        if "PixelData" not in ds:
            raise ValueError("it has no pixel data")
        pixels = ds.pixel_array
    except MemoryError:
        raise _declared_too_much(sl.path) from None
    except _PASS_THROUGH:
        raise
    except Exception as exc:
        codec = _missing_decoder(ds, exc)
        if codec is not None:
            raise ImportError(
                f"DICOM file {str(sl.path)!r} holds {codec} compressed pixel data and no "
                "installed decoder reads it: pip install 'fastct-engine[io]' (pylibjpeg with "
                "pylibjpeg-libjpeg, pylibjpeg-openjpeg and pylibjpeg-rle)"
            ) from None
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
    what = f"DICOM series of {len(slices)} file(s) from {str(slices[0].path)!r}"
    if rows < 1 or cols < 1:
        raise ValueError(f"{what}: Rows x Columns must be positive, got {rows} x {cols}")
    _limits.check_voxels((len(slices), rows, cols), what)
    # Output plus the decoded slices (at most 8 bytes a voxel together) and one
    # float64 slice of temporaries, checked before anything that size is allocated.
    _limits.check_allocation(
        len(slices) * rows * cols * 8 + rows * cols * 16, f"reading the {what}"
    )
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
        pydicom is not installed, or no decoder for compressed pixel data (JPEG,
        JPEG-LS, JPEG 2000, RLE) is: both come with the ``io`` extra.

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

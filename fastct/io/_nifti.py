"""NIfTI-1/NIfTI-2: read (any affine source, 4-D volume choice) and write (exact geometry
kept in a header extension)."""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import Any

import numpy as np

from .._atomic import atomic_path
from .._validate import as_image, check_direction, check_origin, check_spacing
from . import _limits
from ._common import (
    _ORTHO_EXACT,
    _PASS_THROUGH,
    ImportedVolume,
    _check_input_path,
    _check_output_path,
    _native,
    _require,
    _reverse_geometry,
)

# NIfTI header extension carrying fastct's exact geometry.
_NIFTI_EXT_CODE = 6  # NIFTI_ECODE_COMMENT: plain text that other tools ignore
_NIFTI_EXT_TAG = "fastct-geometry"
# dtypes NIfTI cannot store, and what they are written as.
_NIFTI_STORAGE = {np.dtype(bool): np.dtype(np.uint8), np.dtype(np.float16): np.dtype(np.float32)}

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
        with warnings.catch_warnings():
            # nibabel warns about header oddities it repairs; what it cannot repair raises
            warnings.simplefilter("ignore")
            img = nib.load(str(path), mmap=False)
    except MemoryError:  # a header extension's size field claiming gigabytes
        raise _limits.declared_too_much(path, f"NIfTI file {str(path)!r}") from None
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
    what = f"NIfTI file {str(path)!r}"
    if any(s < 1 for s in shape):
        raise ValueError(f"{what} declares an empty or negative dimension {shape}")
    _limits.check_voxels(shape, what)

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
    # The header's claims are checked before nibabel allocates what it declares.
    stored_dtype = img.get_data_dtype()
    nbytes = math.prod(spatial) * stored_dtype.itemsize
    offset = float(header["vox_offset"])
    if not math.isfinite(offset) or offset < 0:
        raise ValueError(f"{what} has an invalid vox_offset {offset!r}")
    if not str(path).lower().endswith(".gz") and isinstance(
        img, (nib.Nifti1Image, nib.Nifti2Image)
    ):
        start = int(offset)
        if index:  # volumes follow each other (the first file axis varies fastest)
            start += int(np.ravel_multi_index(index, img.shape[3:], order="F")) * nbytes
        if start + nbytes > path.stat().st_size:
            raise ValueError(
                f"{what} is truncated: its header declares {_limits.human_bytes(nbytes)} of "
                f"voxel data from byte {int(offset)}, the file has {path.stat().st_size} bytes"
            )
    _limits.check_allocation(nbytes * (2 if index else 1), f"reading {what}")
    slope, inter = img.dataobj.slope, img.dataobj.inter
    scaled = not (
        (slope is None or np.isnan(slope) or slope == 1)
        and (inter is None or np.isnan(inter) or inter == 0)
    )
    try:
        proxy = img.dataobj
        raw = proxy[(Ellipsis,) + tuple(index)] if index else np.asarray(proxy)
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
    try:
        with np.errstate(all="ignore"):
            unit_columns = lin / spacing
        checked = (
            check_spacing(tuple(float(s) for s in spacing), 3, "spacing"),
            check_origin(tuple(float(v) for v in lps[:3, 3][::-1]), 3, "origin"),
            check_direction(unit_columns, 3, "direction"),
        )
    except (TypeError, ValueError):
        raise ValueError(
            f"{what}: its {source} affine gives a non-finite or degenerate geometry (voxel "
            f"size {np.round(spacing, 6).tolist()} mm, position {lps[:3, 3].tolist()})"
        ) from None
    return ImportedVolume(
        array=array,
        spacing=checked[0],
        origin=checked[1],
        direction=checked[2],
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
    if not out.name.lower().endswith(".gz"):  # gzip: the size is not known up front
        _limits.check_disk_space(voxels.nbytes + 4096, out, f"writing {str(out)!r}")
    with atomic_path(out, overwrite=bool(overwrite)) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            img.to_filename(str(tmp))

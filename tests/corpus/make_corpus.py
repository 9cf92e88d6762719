"""Regenerate the corpus of crafted bad input files (deterministic).

    .venv/bin/python tests/corpus/make_corpus.py

Every file is small (a 4 x 8 x 8 volume at most) and each one is wrong in one way a
real file from an unknown source could be: truncated, overwritten headers, lying
shapes, wrong types, NaN geometry, links or payloads that reach outside the file.
``MANIFEST.json`` lists them with their format, the volume path inside archives and
what the file exercises; ``tests/test_damaged_archive.py`` runs every one through the
API reader and the command line.

The files are committed, so the test does not depend on the library versions that
wrote them; the script stays so that anyone can see (and redo) how each was made. Every
file comes out byte-identical on a rerun except ``hdf5/virtual_outside.h5``, whose
dataset carries HDF5 creation timestamps.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
VOLUME = "/scans/a/image"
#: A command that the pickle payloads below would run: creates this file in the cwd.
MARKER = "fastct-pickle-marker"

_entries: list[dict[str, Any]] = []


def _add(path: Path, fmt: str, what: str, *, volume: str | None = None) -> None:
    _entries.append({
        "file": path.relative_to(HERE).as_posix(),
        "format": fmt,
        "volume": volume,
        "what": what,
    })  # fmt: skip


def _image() -> np.ndarray:
    return (np.arange(4 * 8 * 8, dtype=np.int16).reshape(4, 8, 8) * 7 - 900).astype(np.int16)


# -- HDF5 -------------------------------------------------------------------------------
def _h5(path: Path, build: Any) -> None:
    import h5py

    with h5py.File(path, "w", libver="earliest", track_order=False) as f:
        f.attrs["fastct_format"] = "fastct-archive"
        f.attrs["fastct_format_version"] = 1
        build(f)


def _good_volume(f: Any, *, compression: str | None = "gzip", **attrs: Any) -> Any:
    ds = f.create_dataset(VOLUME, data=_image(), chunks=(2, 8, 8), compression=compression)
    meta = {"spacing": np.array([2.0, 0.7, 0.7]), "origin": np.zeros(3), "modality": "CT"}
    meta.update(attrs)
    for key, value in meta.items():
        if value is not None:
            ds.attrs[key] = value
    return ds


def _overwrite(src: Path, dst: Path, offset: int, length: int, byte: int | None = None) -> None:
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(offset)
    fill = (
        bytes([byte]) * length
        if byte is not None
        else rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    )
    data[offset : offset + length] = fill[: max(0, len(data) - offset)]
    dst.write_bytes(bytes(data[: len(src.read_bytes())]))


def make_hdf5(folder: Path) -> None:
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "_good.h5"
    _h5(good, lambda f: _good_volume(f))
    data = good.read_bytes()

    def out(name: str, what: str, volume: str | None = VOLUME) -> Path:
        p = folder / name
        _add(p, "hdf5", what, volume=volume)
        return p

    out("truncated_half.h5", "the first half of a good archive").write_bytes(data[: len(data) // 2])
    out("truncated_100.h5", "the first 100 bytes (inside the superblock)").write_bytes(data[:100])
    out("empty.h5", "zero bytes").write_bytes(b"")
    out("not_hdf5.h5", "a text file named .h5").write_bytes(b"this is not an HDF5 file\n" * 4)
    _overwrite(good, out("superblock_signature.h5", "superblock signature zeroed"), 0, 8, 0)
    _overwrite(good, out("superblock_fields.h5", "superblock fields after the signature"), 8, 88)
    with h5py.File(good, "r") as f:
        ds = f[VOLUME]
        ohdr = h5py.h5o.get_info(ds.id).addr
        chunk = ds.id.get_chunk_info(0).byte_offset
        chunk_size = ds.id.get_chunk_info(0).size
        scans = h5py.h5o.get_info(f["/scans"].id).addr
    _overwrite(good, out("object_header.h5", "the volume's object header overwritten"), ohdr, 64)
    _overwrite(good, out("group_header.h5", "a group's object header overwritten"), scans, 64)
    for sig, name in ((b"TREE", "btree"), (b"HEAP", "heap"), (b"SNOD", "symbol_node")):
        at = data.find(sig)
        _overwrite(good, out(f"{name}.h5", f"the first {sig.decode()} node overwritten"), at, 48)
    _overwrite(good, out("chunk_data.h5", "a gzip chunk's bytes overwritten"), chunk, chunk_size)
    _overwrite(good, out("tail_zeroed.h5", "the last 2 KiB zeroed"), len(data) - 2048, 2048, 0)
    gcol = data.find(b"GCOL")  # variable-length strings: a zeroed object hangs HDF5 2.0
    _overwrite(good, out("global_heap_zeroed.h5", "global heap objects zeroed (HDF5 loops)"),
               gcol + 16, 600, 0)  # fmt: skip

    # Lying or hostile content written through the library itself.
    def huge(f: Any) -> None:
        ds = f.create_dataset(VOLUME, shape=(2**20, 2**20, 2**20), dtype=np.int16,
                              chunks=(64, 64, 64))  # fmt: skip
        ds.attrs["spacing"] = np.ones(3)
        ds.attrs["origin"] = np.zeros(3)

    _h5(out("huge_shape.h5", "declares 2^60 int16 voxels (2 EiB), stores none"), huge)

    def big_chunks(f: Any) -> None:
        ds = f.create_dataset(VOLUME, shape=(4, 8, 8), maxshape=(None, None, None),
                              dtype=np.float64, chunks=(1024, 1024, 512))  # fmt: skip
        ds.attrs["spacing"] = np.ones(3)
        ds.attrs["origin"] = np.zeros(3)

    _h5(out("absurd_chunks.h5", "a 4 GiB chunk for a 4x8x8 volume"), big_chunks)

    def compound(f: Any) -> None:
        dt = np.dtype([("a", np.int16), ("b", np.float32)])
        ds = f.create_dataset(VOLUME, shape=(4, 8, 8), dtype=dt, chunks=(2, 8, 8))
        ds.attrs["spacing"] = np.ones(3)

    _h5(out("compound_dtype.h5", "a compound dtype as a volume"), compound)

    def strings(f: Any) -> None:
        ds = f.create_dataset(VOLUME, data=np.full((2, 2, 2), "abc", dtype=object),
                              dtype=h5py.string_dtype())  # fmt: skip
        ds.attrs["spacing"] = np.ones(3)

    _h5(out("string_dtype.h5", "a variable-length string dataset as a volume"), strings)

    def four_d(f: Any) -> None:
        f.create_dataset(VOLUME, data=np.zeros((2, 2, 2, 2), np.int16))

    _h5(out("four_d.h5", "a 4-D dataset as a volume"), four_d)

    bad_attrs: dict[str, dict[str, Any]] = {
        "spacing_nan": {"spacing": np.array([np.nan, 1.0, 1.0])},
        "spacing_inf": {"spacing": np.array([np.inf, 1.0, 1.0])},
        "spacing_zero": {"spacing": np.array([0.0, 1.0, 1.0])},
        "spacing_negative": {"spacing": np.array([-1.0, 1.0, 1.0])},
        "spacing_length": {"spacing": np.array([1.0, 1.0])},
        "spacing_string": {"spacing": "1,1,1"},
        "spacing_matrix": {"spacing": np.ones((3, 3))},
        "origin_length": {"origin": np.zeros(5)},
        "origin_nan": {"origin": np.array([0.0, np.nan, 0.0])},
        "direction_nonortho": {"direction": np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]])},
        "direction_nan": {"direction": np.full((3, 3), np.nan)},
        "direction_shape": {"direction": np.eye(2)},
    }
    for name, attrs in bad_attrs.items():
        what = f"volume attribute {next(iter(attrs))} = {np.asarray(attrs[next(iter(attrs))]).tolist()!r}"
        _h5(out(f"attr_{name}.h5", what), lambda f, a=attrs: _good_volume(f, **a))

    def future(f: Any) -> None:
        _good_volume(f)
        f.attrs["fastct_format_version"] = 99

    _h5(out("format_version_99.h5", "an archive format version from the future"), future)

    def version_text(f: Any) -> None:
        _good_volume(f)
        f.attrs["fastct_format_version"] = "one"

    _h5(out("format_version_text.h5", "fastct_format_version is a string"), version_text)

    # Links and storage that leave the file (refused unless allow_external=True).
    def ext_link(f: Any) -> None:
        f["/scans/a/image"] = h5py.ExternalLink("/etc/passwd-archive.h5", "/data")

    _h5(out("external_link.h5", "an external link to another file"), ext_link)

    def ext_raw(f: Any) -> None:
        ds = f.create_dataset(VOLUME, shape=(4, 8, 8), dtype=np.uint8,
                              external=[("/etc/hostname", 0, 256)])  # fmt: skip
        ds.attrs["spacing"] = np.ones(3)

    _h5(out("external_raw.h5", "raw data stored in /etc/hostname"), ext_raw)

    def virtual(f: Any) -> None:
        layout = h5py.VirtualLayout(shape=(4, 8, 8), dtype=np.int16)
        layout[:] = h5py.VirtualSource("/tmp/outside.h5", "/data", shape=(4, 8, 8))
        ds = f.create_virtual_dataset(VOLUME, layout, fillvalue=0)
        ds.attrs["spacing"] = np.ones(3)

    _h5(out("virtual_outside.h5", "a virtual dataset reading /tmp/outside.h5"), virtual)
    good.unlink()


# -- Zarr -------------------------------------------------------------------------------
def make_zarr(folder: Path) -> None:
    import fastct

    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "_good.zarr"
    shutil.rmtree(good, ignore_errors=True)
    with fastct.open(good, "w") as ar:
        ar.create_volume(VOLUME, _image(), spacing=(2.0, 0.7, 0.7), chunks=(2, 8, 8))

    def variant(name: str, what: str) -> Path:
        dst = folder / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(good, dst)
        _add(dst, "zarr", what, volume=VOLUME)
        return dst

    arr = Path("scans/a/image/0/zarr.json")
    img = Path("scans/a/image/zarr.json")

    def edit(path: Path, change: Any) -> None:
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc, indent=1))

    (variant("array_json_garbage.zarr", "array zarr.json is not JSON") / arr).write_text("{ nope")
    (variant("root_json_garbage.zarr", "root zarr.json is binary") / "zarr.json").write_bytes(
        bytes(range(256))
    )
    (variant("array_json_missing.zarr", "array zarr.json removed") / arr).unlink()
    (variant("array_json_list.zarr", "array zarr.json is a JSON list") / arr).write_text("[1, 2]")
    edit(variant("shape_huge.zarr", "declares 2^60 voxels") / arr,
         lambda d: d.update(shape=[2**20] * 3))  # fmt: skip
    edit(variant("shape_negative.zarr", "a negative shape") / arr,
         lambda d: d.update(shape=[-4, 8, 8]))  # fmt: skip
    edit(variant("shape_string.zarr", "shape is a string") / arr,
         lambda d: d.update(shape="4,8,8"))  # fmt: skip
    edit(variant("chunks_absurd.zarr", "a 2^60-voxel chunk for a 4x8x8 array") / arr,
         lambda d: d["chunk_grid"]["configuration"].update(chunk_shape=[2**20] * 3))  # fmt: skip
    edit(variant("chunks_zero.zarr", "a zero chunk shape") / arr,
         lambda d: d["chunk_grid"]["configuration"].update(chunk_shape=[0, 8, 8]))  # fmt: skip
    edit(variant("dtype_unknown.zarr", "an unknown data_type") / arr,
         lambda d: d.update(data_type="complex512"))  # fmt: skip
    edit(variant("dtype_string.zarr", "a string data_type") / arr,
         lambda d: d.update(data_type="string", fill_value=""))  # fmt: skip
    edit(variant("codec_unknown.zarr", "an unknown codec") / arr,
         lambda d: d.update(codecs=[{"name": "rot13"}]))  # fmt: skip
    edit(variant("spacing_nan.zarr", "spacing NaN in the attributes") / img,
         lambda d: d["attributes"].update(spacing=[None, 1, 1]))  # fmt: skip
    edit(variant("spacing_text.zarr", "spacing is a string") / img,
         lambda d: d["attributes"].update(spacing="2,1,1"))  # fmt: skip
    edit(variant("direction_bad.zarr", "a non-orthonormal direction") / img,
         lambda d: d["attributes"].update(direction=[[1, 1, 0], [0, 1, 0], [0, 0, 1]]))  # fmt: skip
    edit(variant("ome_path_escape.zarr", "OME dataset path '../../..'") / img,
         lambda d: d["attributes"]["ome"]["multiscales"][0]["datasets"][0].update(
             path="../../../../etc"))  # fmt: skip
    for chunk in sorted((variant("chunk_garbage.zarr", "a chunk file overwritten") /
                         "scans/a/image/0/c").rglob("0")):  # fmt: skip
        if chunk.is_file():
            chunk.write_bytes(b"\xff" * 7)
            break
    shutil.rmtree(variant("chunks_missing.zarr", "every chunk file removed (fill value)")
                  / "scans/a/image/0/c")  # fmt: skip
    _entries[-1]["ok"] = True  # Zarr semantics: missing chunks read as the fill value
    shutil.rmtree(good)


# -- NIfTI ------------------------------------------------------------------------------
def _nifti_bytes() -> bytes:
    """A minimal valid NIfTI-1 single file: 348-byte header, 4 extension bytes, int16."""
    hdr = bytearray(348)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, 3, 8, 8, 4, 1, 1, 1, 1)  # dim
    struct.pack_into("<h", hdr, 70, 4)  # datatype int16
    struct.pack_into("<h", hdr, 72, 16)  # bitpix
    struct.pack_into("<8f", hdr, 76, 1.0, 0.7, 0.7, 2.0, 1, 1, 1, 1)  # pixdim
    struct.pack_into("<f", hdr, 108, 352.0)  # vox_offset
    struct.pack_into("<f", hdr, 112, 1.0)  # scl_slope
    hdr[123] = 2  # xyzt_units: mm
    struct.pack_into("<h", hdr, 252, 1)  # qform_code
    struct.pack_into("<h", hdr, 254, 1)  # sform_code
    struct.pack_into("<4f", hdr, 280, -0.7, 0, 0, 0)  # srow_x
    struct.pack_into("<4f", hdr, 296, 0, -0.7, 0, 0)
    struct.pack_into("<4f", hdr, 312, 0, 0, 2.0, 0)
    struct.pack_into("<f", hdr, 256, 0.0)  # quatern_b..d = 0 -> identity rotation
    hdr[344:348] = b"n+1\x00"
    data = _image().transpose(2, 1, 0).astype("<i2").tobytes(order="F")
    return bytes(hdr) + b"\x00" * 4 + data


def make_nifti(folder: Path) -> None:
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    good = _nifti_bytes()

    def out(name: str, what: str, data: bytes) -> None:
        p = folder / name
        p.write_bytes(data)
        _add(p, "nifti", what)

    def patched(fmt: str, offset: int, *values: Any) -> bytes:
        b = bytearray(good)
        struct.pack_into(fmt, b, offset, *values)
        return bytes(b)

    out("sizeof_hdr_bad.nii", "sizeof_hdr 12345", patched("<i", 0, 12345))
    _entries[-1]["ok"] = True  # nibabel reads it: the rest of the header is valid
    out("magic_bad.nii", "magic 'xyz'", patched("4s", 344, b"xyz\x00"))
    out("dim_negative.nii", "dim[1] = -8", patched("<h", 42, -8))
    out("dim_zero.nii", "dim[2] = 0", patched("<h", 44, 0))
    out("dim0_nine.nii", "dim[0] = 9 (> 7)", patched("<h", 40, 9))
    out("dims_huge.nii", "dims 32767^3 in a 1 KiB file", patched("<3h", 42, 32767, 32767, 32767))
    out("vox_offset_past_eof.nii", "vox_offset 1e9", patched("<f", 108, 1e9))
    out("vox_offset_nan.nii", "vox_offset NaN", patched("<f", 108, float("nan")))
    out("truncated_data.nii", "the voxel data cut in half", good[: 352 + 256])
    out("truncated_header.nii", "200 bytes of header", good[:200])
    out("pixdim_nan.nii", "pixdim[1..3] NaN, sform and qform 0",
        patched("<3f", 80, *(float("nan"),) * 3)[:252] + b"\0" * 4 + good[256:])  # fmt: skip
    out("sform_nan.nii", "srow_x NaN", patched("<4f", 280, *(float("nan"),) * 4))
    out("sform_singular.nii", "an all-zero sform, no qform",
        patched("<12f", 280, *(0.0,) * 12)[:252] + struct.pack("<hh", 0, 1) + good[256:])  # fmt: skip
    _entries[-1]["ok"] = True  # repaired by the reader (see MANIFEST)
    out("qform_bad_quatern.nii", "quatern_b = 5 (not a unit quaternion), no sform",
        patched("<f", 256, 5.0)[:252] + struct.pack("<hh", 1, 0) + good[256:])  # fmt: skip
    _entries[-1]["ok"] = True  # repaired by the reader (see MANIFEST)
    out("datatype_unknown.nii", "datatype code 999", patched("<h", 70, 999))
    out("datatype_complex.nii", "complex64 voxels", patched("<hh", 70, 32, 64))
    out("scl_slope_inf.nii", "scl_slope inf", patched("<f", 112, float("inf")))
    _entries[-1]["ok"] = True  # repaired by the reader (see MANIFEST)
    out("gzip_truncated.nii.gz", "a .nii.gz cut short", gzip.compress(good, mtime=0)[:300])
    out("gzip_garbage.nii.gz", "a .nii.gz that is not gzip", b"\x1f\x8b" + b"\x00" * 64)


# -- DICOM ------------------------------------------------------------------------------
def _dicom_slice(k: int, **change: Any) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.10.999.2.{k + 1}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.999.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.999.1.1"
    ds.Modality = "CT"
    ds.SeriesDescription = "crafted"
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 2.0
    ds.Rows, ds.Columns = 8, 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    ds.PixelData = _image()[k % 4].astype("<i2").tobytes()
    for key, value in change.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def _save(ds: Any, path: Path) -> None:
    ds.save_as(path, enforce_file_format=True)


def make_dicom(folder: Path) -> None:
    from pydicom.uid import JPEG2000Lossless

    folder.mkdir(parents=True, exist_ok=True)

    def series(name: str, what: str, changes: list[dict[str, Any]]) -> None:
        d = folder / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        for k, change in enumerate(changes):
            _save(_dicom_slice(k, **change), d / f"{k:03d}.dcm")
        _add(d, "dicom", what)

    def single(name: str, what: str, **change: Any) -> None:
        p = folder / name
        _save(_dicom_slice(0, **change), p)
        _add(p, "dicom", what)

    single("no_pixel_data.dcm", "no PixelData", PixelData=None)
    single("no_rows.dcm", "no Rows", Rows=None)
    single("no_columns.dcm", "no Columns", Columns=None)
    single("rows_columns_lie.dcm", "Rows x Columns 512 x 512 with 64 pixels", Rows=512, Columns=512)
    single(
        "rows_huge.dcm", "Rows x Columns 65535 x 65535 with 64 pixels", Rows=65535, Columns=65535
    )
    single("bits_allocated_bad.dcm", "BitsAllocated 13", BitsAllocated=13)
    single("samples_per_pixel_3.dcm", "SamplesPerPixel 3 with 1 sample of data", SamplesPerPixel=3)
    single("pixel_spacing_zero.dcm", "PixelSpacing 0\\0", PixelSpacing=[0.0, 0.0])
    single("pixel_spacing_nan.dcm", "PixelSpacing NaN", PixelSpacing=["nan", "nan"])
    ds = _dicom_slice(0)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    p = folder / "jpeg2000_garbage.dcm"
    _save(ds, p)
    _add(p, "dicom", "JPEG 2000 syntax with a garbage codestream")
    ds = _dicom_slice(0)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: pydicom has no decoder
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    p = folder / "mpeg2_no_decoder.dcm"
    _save(ds, p)
    _add(p, "dicom", "MPEG2 transfer syntax, for which no decoder exists")
    p = folder / "truncated.dcm"
    buf = io.BytesIO()
    _dicom_slice(0).save_as(buf, enforce_file_format=True)
    p.write_bytes(buf.getvalue()[:-50])
    _add(p, "dicom", "a slice with its last 50 bytes cut")
    p = folder / "preamble_only.dcm"
    p.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 20)
    _add(p, "dicom", "a DICM preamble followed by garbage")

    series("series_spacing_inconsistent", "slice positions 0, 2, 7 mm",
           [{}, {}, {"ImagePositionPatient": [0.0, 0.0, 7.0]}])  # fmt: skip
    series("series_orientation_mixed", "one slice with another orientation",
           [{}, {}, {"ImageOrientationPatient": [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]}])  # fmt: skip
    series("series_no_position", "no ImagePositionPatient",
           [{"ImagePositionPatient": None}] * 3)  # fmt: skip
    series("series_duplicate_position", "two slices at the same position",
           [{}, {"ImagePositionPatient": [0.0, 0.0, 0.0]}, {}])  # fmt: skip
    series("series_rows_differ", "slices of different sizes",
           [{}, {}, {"Rows": 4, "PixelData": b"\0" * 64}])  # fmt: skip
    series("series_orientation_nan", "ImageOrientationPatient NaN",
           [{"ImageOrientationPatient": ["nan"] * 6}] * 2)  # fmt: skip
    series("series_orientation_zero", "ImageOrientationPatient all zero",
           [{"ImageOrientationPatient": [0.0] * 6}] * 2)  # fmt: skip
    series("series_description_script", "path-like, HTML-like series description",
           [{"SeriesDescription": '../../<script>alert("x")</script>'}] * 2)  # fmt: skip
    _entries[-1]["ok"] = True  # a valid series: the description is data, not a path
    d = folder / "folder_of_garbage"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir()
    (d / "a.dcm").write_bytes(b"\x00" * 200)
    (d / "b.dcm").write_bytes(b"not dicom")
    _add(d, "dicom", "a folder whose .dcm files are not DICOM")


# -- NumPy ------------------------------------------------------------------------------
class _Payload:
    """Unpickling this runs ``os.system('touch MARKER')`` (never done by fastct)."""

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {MARKER}",))


def make_npy(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, _image())
    good = buf.getvalue()

    def out(name: str, what: str, data: bytes) -> None:
        p = folder / name
        p.write_bytes(data)
        _add(p, "npy", what)

    out("bad_magic.npy", "magic bytes wrong", b"\x93NUMPX" + good[6:])
    out(
        "bad_header.npy",
        "header dict is not a literal",
        good[:10] + b"{'descr': os.system('x')}" + good[35:],
    )
    out("truncated.npy", "data cut short", good[:-100])
    out("header_only.npy", "no data", good[:128])
    hdr = b"{'descr': '<i2', 'fortran_order': False, 'shape': (1048576, 1048576, 1048576), }"
    hdr += b" " * (118 - len(hdr)) + b"\n"
    out("shape_huge.npy", "declares 2^60 voxels", good[:8] + struct.pack("<H", len(hdr)) + hdr)
    hdr = b"{'descr': '<i2', 'fortran_order': False, 'shape': (-4, 8, 8), }"
    hdr += b" " * (118 - len(hdr)) + b"\n"
    out(
        "shape_negative.npy",
        "a negative shape",
        good[:8] + struct.pack("<H", len(hdr)) + hdr + good[128:],
    )
    obj = io.BytesIO()
    arr = np.empty((1, 1, 1), dtype=object)
    arr[0, 0, 0] = _Payload()
    np.save(obj, arr, allow_pickle=True)
    out("object_pickle.npy", "object dtype whose pickle runs a shell command", obj.getvalue())
    s = io.BytesIO()
    np.save(s, np.full((2, 2, 2), "x", dtype="<U3"))
    out("unicode_dtype.npy", "a string array", s.getvalue())
    s = io.BytesIO()
    np.save(s, np.zeros((2, 2, 2, 2), np.float32))
    out("four_d.npy", "a 4-D array", s.getvalue())
    s = io.BytesIO()
    np.save(s, np.zeros((2, 2, 2), np.complex64))
    out("complex.npy", "complex voxels", s.getvalue())


# -- model files ------------------------------------------------------------------------
def make_models(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shipped = (
        HERE.parents[1] / "fastct" / "models" / "nodule_detector_v1.fastct-model"
    ).read_bytes()

    def out(name: str, what: str, data: bytes) -> None:
        p = folder / name
        p.write_bytes(data)
        _add(p, "model", what)

    def zipped(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, payload in members.items():
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                zf.writestr(info, payload)
        return buf.getvalue()

    meta = {"format": "fastct-model", "format_version": 1, "fastct_version": "0",
            "kind": "nodule-detector", "created": "2020-01-01T00:00:00Z", "schema": {},
            "params": {}, "types": []}  # fmt: skip
    payload = pickle.dumps(_Payload(), protocol=2)
    out("truncated.fastct-model", "the first 4 KiB of the shipped model", shipped[:4096])
    out("wrong_magic.fastct-model", "zip magic overwritten", b"XX" + shipped[2:4096])
    out("pickle.fastct-model", "a pickle that runs a shell command", payload)
    out("joblib_like.fastct-model", "a protocol-4 pickle, as joblib writes",
        pickle.dumps(_Payload(), protocol=4))  # fmt: skip
    out("zip_pickle_member.fastct-model", "valid meta.json, model.skops is a pickle",
        zipped({"meta.json": json.dumps(meta).encode(), "model.skops": payload}))  # fmt: skip
    out("zip_meta_not_json.fastct-model", "meta.json is not JSON",
        zipped({"meta.json": b"\x80\x04garbage", "model.skops": b""}))  # fmt: skip
    out("zip_meta_wrong_types.fastct-model", "meta.json fields of the wrong types",
        zipped({"meta.json": json.dumps({**meta, "params": [1, 2], "schema": "x",
                                         "format_version": "1"}).encode(),
                "model.skops": b""}))  # fmt: skip
    out("zip_extra_member.fastct-model", "an unexpected member ../evil.py",
        zipped({"meta.json": json.dumps(meta).encode(), "model.skops": b"",
                "../evil.py": b"import os"}))  # fmt: skip
    out("empty.fastct-model", "zero bytes", b"")


def main() -> int:
    sys.path.insert(0, str(HERE.parents[1]))
    _entries.clear()
    make_hdf5(HERE / "hdf5")
    make_zarr(HERE / "zarr")
    make_nifti(HERE / "nifti")
    make_dicom(HERE / "dicom")
    make_npy(HERE / "npy")
    make_models(HERE / "model")
    _entries.sort(key=lambda e: e["file"])
    (HERE / "MANIFEST.json").write_text(json.dumps(_entries, indent=1) + "\n")
    counts: dict[str, int] = {}
    for e in _entries:
        counts[e["format"]] = counts.get(e["format"], 0) + 1
    print(f"{len(_entries)} crafted files: {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Importers and exporters (fastct.io) on the sample files shipped by pydicom and
nibabel, and on synthetic DICOM series built from them in tmp_path."""

from __future__ import annotations

import copy
import hashlib
import os
import sys

import numpy as np
import pytest

from fastct import io as fio

# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def pydicom():
    return pytest.importorskip("pydicom")


@pytest.fixture(scope="module")
def nib():
    return pytest.importorskip("nibabel")


@pytest.fixture(scope="module")
def dicom_dir(pydicom):
    import pydicom.data

    folder = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")
    assert os.path.isdir(folder), f"pydicom sample folder missing: {folder}"
    return folder


@pytest.fixture(scope="module")
def nifti_dir(nib):
    folder = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
    assert os.path.isdir(folder), f"nibabel sample folder missing: {folder}"
    return folder


@pytest.fixture(scope="module")
def ct_path(dicom_dir):
    return os.path.join(dicom_dir, "CT_small.dcm")


@pytest.fixture(scope="module")
def mr_path(dicom_dir):
    return os.path.join(dicom_dir, "MR_small.dcm")


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def tree_hashes(folder) -> dict:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            out[p] = sha256(p)
    return out


def rotation(angles) -> np.ndarray:
    """A proper rotation from three angles (radians)."""
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_series(
    pydicom,
    template_path,
    folder,
    positions,
    *,
    iop=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    series_uid=None,
    description="synthetic",
    shuffle_seed=0,
    edit=None,
):
    """Write one DICOM file per position from a template; slice k's pixels are
    template + 7 * k. File names are shuffled relative to slice order.
    Returns (files in slice order, pixel arrays in slice order, series UID)."""
    from pydicom.uid import generate_uid

    base = pydicom.dcmread(template_path)
    pixels = base.pixel_array.astype(np.int16)
    uid = series_uid or generate_uid()
    os.makedirs(folder, exist_ok=True)
    perm = np.random.default_rng(shuffle_seed).permutation(len(positions))
    files, arrays = [], []
    for k, pos in enumerate(positions):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID = uid
        ds.SeriesDescription = description
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        arr = (pixels + 7 * k).astype(np.int16)
        ds.PixelData = arr.tobytes()
        if edit is not None:
            arr = edit(k, ds, arr)
        path = os.path.join(folder, f"im{perm[k]:03d}.dcm")
        ds.save_as(path)
        files.append(path)
        arrays.append(arr)
    return files, arrays, uid


def lps_of_voxel(ipp, iop, pixel_spacing, r, c) -> np.ndarray:
    """DICOM's own formula for the LPS position of pixel (row r, column c)."""
    row_cos, col_cos = np.asarray(iop[:3]), np.asarray(iop[3:])
    return np.asarray(ipp) + c * pixel_spacing[1] * row_cos + r * pixel_spacing[0] * col_cos


# --------------------------------------------------------------------------- DICOM samples


def test_ct_sample_hounsfield(pydicom, ct_path):
    vol = fio.read_volume(ct_path)
    ds = pydicom.dcmread(ct_path)
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        ds.RescaleIntercept
    )
    assert vol.array.shape == (1, 128, 128)
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array[0], expected)
    assert vol.modality == "CT" and vol.units == "HU"
    assert vol.spacing == (5.0, 0.661468, 0.661468)  # SliceThickness, PixelSpacing
    assert vol.origin == tuple(float(v) for v in ds.ImagePositionPatient[::-1])
    np.testing.assert_array_equal(vol.direction, np.eye(3))
    assert vol.metadata["series_uid"] == ds.SeriesInstanceUID
    assert "PatientName" not in str(vol.metadata) and str(ds.PatientName) not in str(vol.metadata)


def test_mr_sample(pydicom, mr_path):
    vol = fio.read_dicom_series(mr_path)  # a single file is accepted too
    ds = pydicom.dcmread(mr_path)
    assert vol.array.shape == (1, 64, 64)
    assert vol.array.dtype == ds.pixel_array.dtype  # no rescale: stored dtype kept
    np.testing.assert_array_equal(vol.array[0], ds.pixel_array)
    assert vol.spacing == (0.8, 0.3125, 0.3125)
    assert vol.modality == "MR" and vol.units is None


def test_real_series_from_pydicom(dicom_dir):
    # Five 2.5 mm axial CT slices whose file names run in descending z.
    folder = os.path.join(dicom_dir, "dicomdirtests", "98892001", "CT5N")
    vol = fio.read_volume(folder)
    assert vol.array.shape == (5, 16, 16) and vol.array.dtype == np.int16
    assert vol.spacing[0] == pytest.approx(2.5)
    assert vol.spacing[1:] == (0.488281, 0.488281)
    assert vol.origin == pytest.approx((-1.2375, -143.0, -72.199997))
    assert vol.metadata["files"] == ["3353", "3023", "2693", "2392", "2062"]


def test_folder_with_several_real_series_lists_them(dicom_dir):
    folder = os.path.join(dicom_dir, "dicomdirtests", "77654033")
    with pytest.raises(ValueError, match="recursive=True"):
        fio.read_dicom_series(folder)
    with pytest.raises(
        ValueError, match=r"found 4 DICOM series.*Cervical LAT.*Routine Brain', 4 files"
    ):
        fio.read_dicom_series(folder, recursive=True)


# --------------------------------------------------------------------------- synthetic series


def test_axial_series_shuffled(pydicom, ct_path, tmp_path):
    positions = [(-158.0, -179.0, -75.0 + 1.25 * k) for k in range(6)]
    files, arrays, uid = make_series(pydicom, ct_path, tmp_path / "s", positions)
    vol = fio.read_dicom_series(tmp_path / "s")
    assert vol.array.shape == (6, 128, 128)
    for k in range(6):
        np.testing.assert_array_equal(vol.array[k], arrays[k].astype(np.int32) - 1024)
    assert vol.spacing == pytest.approx((1.25, 0.661468, 0.661468))
    assert vol.origin == pytest.approx((-75.0, -179.0, -158.0))
    np.testing.assert_allclose(vol.direction, np.eye(3), atol=1e-12)
    assert vol.metadata["files"] == [os.path.basename(f) for f in files]
    assert vol.metadata["file_count"] == 6 and vol.metadata["series_uid"] == uid


def test_descending_positions_are_sorted(pydicom, ct_path, tmp_path):
    # Instance numbers run head to feet: the array still runs along +normal.
    positions = [(0.0, 0.0, 10.0 - 2.0 * k) for k in range(4)]
    _, arrays, _ = make_series(pydicom, ct_path, tmp_path / "s", positions, shuffle_seed=3)
    vol = fio.read_dicom_series(tmp_path / "s")
    for k in range(4):
        np.testing.assert_array_equal(vol.array[k], arrays[3 - k].astype(np.int32) - 1024)
    assert vol.origin == pytest.approx((4.0, 0.0, 0.0))
    assert vol.spacing[0] == pytest.approx(2.0)


@pytest.mark.parametrize(
    "iop",
    [
        (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),  # coronal
        (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),  # sagittal
        tuple(rotation((0.3, -0.2, 0.5))[:, 0])
        + tuple(rotation((0.3, -0.2, 0.5))[:, 1]),  # oblique
    ],
    ids=["coronal", "sagittal", "oblique"],
)
def test_non_axial_series_geometry(pydicom, ct_path, tmp_path, iop):
    row, col = np.array(iop[:3]), np.array(iop[3:])
    normal = np.cross(row, col)
    p0 = np.array([-20.5, 33.25, 12.0])
    step = 3.0
    positions = [p0 + step * k * normal for k in range(5)]
    _, arrays, _ = make_series(pydicom, ct_path, tmp_path / "s", positions, iop=iop, shuffle_seed=7)
    vol = fio.read_dicom_series(tmp_path / "s")
    assert vol.array.shape == (5, 128, 128)
    for k in range(5):
        np.testing.assert_array_equal(vol.array[k], arrays[k].astype(np.int32) - 1024)
    assert vol.spacing[0] == pytest.approx(step, abs=1e-5)
    # Direction columns: normal, column cosine, row cosine, each in (z, y, x) order.
    expected = np.column_stack([normal[::-1], col[::-1], row[::-1]])
    np.testing.assert_allclose(vol.direction, expected, atol=1e-6)
    np.testing.assert_allclose(vol.direction.T @ vol.direction, np.eye(3), atol=1e-6)
    # Every voxel's physical position agrees with DICOM's own formula on its slice.
    ps = (0.661468, 0.661468)
    for k, r, c in [(0, 0, 0), (2, 5, 100), (4, 127, 3), (3, 64, 64)]:
        lps = lps_of_voxel(positions[k], iop, ps, r, c)
        np.testing.assert_allclose(vol.physical((k, r, c))[::-1], lps, atol=1e-4)


def test_several_series_listed(pydicom, ct_path, tmp_path):
    folder = tmp_path / "mixed"
    _, _, uid_a = make_series(
        pydicom, ct_path, folder, [(0, 0, k) for k in range(3)], description="lung"
    )
    (folder / "README").write_text("exported by a scanner\n")  # not DICOM: skipped
    b = tmp_path / "b"
    _, _, uid_b = make_series(
        pydicom, ct_path, b, [(0, 0, 2 * k) for k in range(2)], description="bone"
    )
    for name in os.listdir(b):
        os.replace(b / name, folder / f"b_{name}")
    with pytest.raises(ValueError) as err:
        fio.read_dicom_series(folder)
    msg = str(err.value)
    assert "found 2 DICOM series" in msg and "series_uid=" in msg
    assert f"{uid_a} (CT, 'lung', 3 files)" in msg
    assert f"{uid_b} (CT, 'bone', 2 files)" in msg
    assert "\n" not in msg
    vol = fio.read_dicom_series(folder, series_uid=uid_b)
    assert vol.array.shape == (2, 128, 128) and vol.spacing[0] == pytest.approx(2.0)
    assert vol.metadata["skipped_files"] == ["README"]
    with pytest.raises(ValueError, match="series_uid '1.2.3' not found"):
        fio.read_dicom_series(folder, series_uid="1.2.3")


def test_dicomdir_and_hidden_files_skipped(pydicom, ct_path, dicom_dir, tmp_path):
    import shutil

    make_series(pydicom, ct_path, tmp_path / "s", [(0, 0, k) for k in range(3)])
    shutil.copy(os.path.join(dicom_dir, "dicomdirtests", "DICOMDIR"), tmp_path / "s" / "DICOMDIR")
    (tmp_path / "s" / ".DS_Store").write_bytes(b"\x00\x01junk")
    vol = fio.read_volume(tmp_path / "s")
    assert vol.array.shape == (3, 128, 128)
    assert sorted(vol.metadata["skipped_files"]) == [".DS_Store", "DICOMDIR"]


def test_uneven_spacing_error(pydicom, ct_path, tmp_path):
    make_series(pydicom, ct_path, tmp_path / "s", [(0, 0, z) for z in (0.0, 1.0, 2.0, 4.0, 5.0)])
    with pytest.raises(ValueError, match=r"uneven slice spacing.*1\.0000 to 2\.0000 mm.*missing"):
        fio.read_dicom_series(tmp_path / "s")


def test_duplicate_positions_error(pydicom, ct_path, tmp_path):
    make_series(pydicom, ct_path, tmp_path / "s", [(0, 0, z) for z in (0.0, 1.0, 1.0, 2.0)])
    with pytest.raises(
        ValueError, match=r"duplicate slice positions: '.*im\d+\.dcm' and '.*im\d+\.dcm'"
    ):
        fio.read_dicom_series(tmp_path / "s")


def test_inconsistent_rows_error(pydicom, ct_path, tmp_path):
    def edit(k, ds, arr):
        if k == 2:
            arr = arr[:64]
            ds.Rows = 64
            ds.PixelData = arr.tobytes()
        return arr

    make_series(pydicom, ct_path, tmp_path / "s", [(0, 0, z) for z in range(4)], edit=edit)
    with pytest.raises(ValueError, match=r"inconsistent image sizes.*128x128.*64x128"):
        fio.read_dicom_series(tmp_path / "s")


def test_inconsistent_pixel_spacing_error(pydicom, ct_path, tmp_path):
    def edit(k, ds, arr):
        if k == 1:
            ds.PixelSpacing = ["0.7", "0.7"]
        return arr

    make_series(pydicom, ct_path, tmp_path / "s", [(0, 0, z) for z in range(3)], edit=edit)
    with pytest.raises(ValueError, match="inconsistent PixelSpacing"):
        fio.read_dicom_series(tmp_path / "s")


def test_inconsistent_orientation_error(pydicom, ct_path, tmp_path):
    def edit(k, ds, arr):
        if k == 1:
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
        return arr

    make_series(pydicom, ct_path, tmp_path / "s", [(0, 0, z) for z in range(3)], edit=edit)
    with pytest.raises(ValueError, match="inconsistent ImageOrientationPatient"):
        fio.read_dicom_series(tmp_path / "s")


def test_tilted_stack_error(pydicom, ct_path, tmp_path):
    # Gantry tilt: slices advance along z but shift in y.
    make_series(pydicom, ct_path, tmp_path / "s", [(0, 0.5 * k, 2.0 * k) for k in range(4)])
    with pytest.raises(ValueError, match="not stacked along the slice normal"):
        fio.read_dicom_series(tmp_path / "s")


def test_truncated_file_error(pydicom, ct_path, tmp_path):
    files, _, _ = make_series(pydicom, ct_path, tmp_path / "s", [(0, 0, z) for z in range(3)])
    with open(files[1], "r+b") as f:
        f.truncate(os.path.getsize(files[1]) // 2)
    with pytest.raises(ValueError) as err:
        fio.read_dicom_series(tmp_path / "s")
    assert os.path.basename(files[1]) in str(err.value) and "truncated" in str(err.value)
    # Cut inside the header: still named, never silently skipped.
    with open(files[1], "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ValueError, match=os.path.basename(files[1]) + ".*truncated"):
        fio.read_dicom_series(tmp_path / "s")
    with pytest.raises(ValueError, match=os.path.basename(files[1]) + ".*truncated"):
        fio.read_volume(files[1])


def test_text_file_named_dcm_error(pydicom, ct_path, tmp_path):
    make_series(pydicom, ct_path, tmp_path / "s", [(0, 0, z) for z in range(3)])
    bogus = tmp_path / "s" / "notes.dcm"
    bogus.write_text("This is not a DICOM file, just some notes.\n" * 20)
    with pytest.raises(ValueError, match=r"'.*notes\.dcm' is not a valid DICOM file"):
        fio.read_dicom_series(tmp_path / "s")
    with pytest.raises(ValueError, match=r"notes\.dcm"):
        fio.read_volume(bogus)


def test_empty_folder_error(pydicom, tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(ValueError, match="holds no DICOM image files"):
        fio.read_dicom_series(tmp_path)


def test_ct_out_of_int16_range_error(pydicom, ct_path, tmp_path):
    def edit(k, ds, arr):
        ds.RescaleSlope = "100"
        return arr

    make_series(pydicom, ct_path, tmp_path / "s", [(0, 0, z) for z in range(2)], edit=edit)
    with pytest.raises(ValueError, match="do not fit int16"):
        fio.read_dicom_series(tmp_path / "s")


def test_ct_fractional_rescale_rounds(pydicom, ct_path, tmp_path):
    def edit(k, ds, arr):
        ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1000.25"
        return arr

    _, arrays, _ = make_series(
        pydicom, ct_path, tmp_path / "s", [(0, 0, z) for z in range(2)], edit=edit
    )
    vol = fio.read_dicom_series(tmp_path / "s")
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array[1], np.rint(arrays[1] * 0.5 - 1000.25))


def test_mr_float_rescale_gives_float32(pydicom, mr_path, tmp_path):
    def edit(k, ds, arr):
        ds.RescaleSlope, ds.RescaleIntercept = "0.5", "0.25"
        return arr

    _, arrays, _ = make_series(
        pydicom, mr_path, tmp_path / "s", [(0, 0, z) for z in range(3)], edit=edit
    )
    vol = fio.read_dicom_series(tmp_path / "s")
    assert vol.array.dtype == np.float32 and vol.modality == "MR"
    np.testing.assert_array_equal(vol.array[2], (arrays[2] * 0.5 + 0.25).astype(np.float32))


def test_dicom_inputs_unchanged(pydicom, ct_path, dicom_dir, tmp_path):
    make_series(pydicom, ct_path, tmp_path / "s", [(0, 0, z) for z in range(3)])
    real = os.path.join(dicom_dir, "dicomdirtests", "98892001", "CT5N")
    before = {**tree_hashes(tmp_path / "s"), **tree_hashes(real), ct_path: sha256(ct_path)}
    fio.read_volume(tmp_path / "s")
    fio.read_volume(real)
    fio.read_volume(ct_path)
    after = {**tree_hashes(tmp_path / "s"), **tree_hashes(real), ct_path: sha256(ct_path)}
    assert before == after
    assert sorted(os.listdir(tmp_path / "s")) == sorted(
        os.path.basename(p) for p in before if str(tmp_path) in p
    )


# --------------------------------------------------------------------------- NIfTI samples


def check_against_nibabel(nib, path, vol, volume_index=None):
    """Values and world positions of a few voxels agree with nibabel's affine."""
    img = nib.load(path)
    data = np.asarray(img.dataobj)
    if volume_index is not None:
        data = data[..., volume_index]
    assert vol.array.shape == data.shape[::-1]
    nx, ny, nz = data.shape
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    for i, j, k in [
        (0, 0, 0),
        (nx - 1, 0, 0),
        (0, ny - 1, 0),
        (0, 0, nz - 1),
        (nx // 2, ny // 3, nz - 1),
    ]:
        lps = ras_to_lps @ (img.affine @ [i, j, k, 1.0])[:3]
        np.testing.assert_allclose(vol.physical((k, j, i))[::-1], lps, atol=1e-4)
        assert vol.array[k, j, i] == pytest.approx(data[i, j, k], rel=1e-6)


@pytest.mark.parametrize(
    "name, volume_index, shape, spacing, dtype",
    [
        ("anatomical.nii", None, (25, 41, 33), (2.0, 2.0, 2.0), np.int16),
        ("standard.nii.gz", None, (7, 5, 4), (2.0, 3.0, 1.0), np.uint8),
        ("example4d.nii.gz", 1, (24, 96, 128), (2.2, 2.0, 2.0), np.int16),
        ("example_nifti2.nii.gz", 0, (12, 20, 32), (2.2, 2.0, 2.0), np.int16),
        ("functional.nii", 3, (3, 21, 17), (8.0, 4.0, 4.0), np.float32),  # scl_slope set
    ],
)
def test_nifti_samples(nib, nifti_dir, name, volume_index, shape, spacing, dtype):
    path = os.path.join(nifti_dir, name)
    digest = sha256(path)
    kw = {} if volume_index is None else {"volume_index": volume_index}
    vol = fio.read_volume(path, **kw)
    assert vol.array.shape == shape and vol.array.dtype == dtype
    assert vol.array.dtype.isnative and vol.array.flags.c_contiguous
    assert vol.spacing == pytest.approx(spacing, abs=1e-5)
    np.testing.assert_allclose(vol.direction.T @ vol.direction, np.eye(3), atol=1e-6)
    check_against_nibabel(nib, path, vol, volume_index)
    assert sha256(path) == digest


def test_nifti_sample_geometry_itk_convention(nifti_dir):
    # anatomical.nii: RAS affine diag(-2, 2, 2), translation (32, -40, -16).
    # ITK: LPS origin (-32, 40, -16), direction diag(1, -1, 1); in (z, y, x) order:
    vol = fio.read_nifti(os.path.join(nifti_dir, "anatomical.nii"))
    assert vol.origin == (-16.0, 40.0, -32.0)
    np.testing.assert_array_equal(vol.direction, np.diag([1.0, -1.0, 1.0]))
    assert vol.metadata["format"] == "nifti1" and vol.metadata["affine_source"] == "sform"


def test_nifti_4d_needs_volume_index(nifti_dir):
    path = os.path.join(nifti_dir, "example4d.nii.gz")
    with pytest.raises(ValueError, match=r"4-D .*\(2 volumes\); pass volume_index="):
        fio.read_nifti(path)
    with pytest.raises(ValueError, match=r"volume_index must be in 0\.\.1"):
        fio.read_nifti(path, volume_index=2)
    with pytest.raises(TypeError, match="volume_index must be an integer"):
        fio.read_nifti(path, volume_index=1.0)
    with pytest.raises(ValueError, match="4-D NIfTI files only"):
        fio.read_nifti(os.path.join(nifti_dir, "anatomical.nii"), volume_index=0)
    assert (
        fio.read_nifti(os.path.join(nifti_dir, "example_nifti2.nii.gz"), volume_index=1).metadata[
            "format"
        ]
        == "nifti2"
    )


def test_nifti_corrupt_error(nib, nifti_dir, tmp_path):
    with open(os.path.join(nifti_dir, "anatomical.nii"), "rb") as f:
        src = f.read()
    bad = tmp_path / "cut.nii"
    bad.write_bytes(src[: len(src) // 2])
    with pytest.raises(ValueError, match=r"cut\.nii"):
        fio.read_nifti(bad)
    junk = tmp_path / "junk.nii"
    junk.write_text("hello")
    with pytest.raises(ValueError, match=r"junk\.nii"):
        fio.read_nifti(junk)


# --------------------------------------------------------------------------- exporters


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize(
    "dtype",
    [np.int16, np.uint16, np.int8, np.uint8, np.float32, np.float64, np.int64, np.float16, bool],
)
def test_nifti_round_trip_3d(nib, tmp_path, rng, suffix, dtype):
    array = (rng.normal(size=(5, 7, 9)) * 100).astype(dtype)
    spacing = (2.5, 0.661468, 0.7031)
    origin = (-75.699997, 12.3456789, -158.135803)
    direction = rotation((0.3, -0.7, 1.1))
    path = tmp_path / f"vol{suffix}"
    fio.write_nifti(path, array, spacing=spacing, origin=origin, direction=direction)
    assert os.listdir(tmp_path) == [path.name]
    vol = fio.read_nifti(path)
    assert vol.array.dtype == array.dtype
    np.testing.assert_array_equal(vol.array, array)
    assert vol.spacing == spacing and vol.origin == origin
    np.testing.assert_array_equal(vol.direction, direction)
    # Other readers (nibabel, hence ITK) see the same physical geometry.
    img = nib.load(path)
    assert img.shape == array.shape[::-1]
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    for idx in [(0, 0, 0), (4, 6, 8), (1, 2, 3)]:
        lps = ras_to_lps @ (img.affine @ [*idx[::-1], 1.0])[:3]
        np.testing.assert_allclose(vol.physical(idx)[::-1], lps, atol=1e-4)
    np.testing.assert_allclose(img.header.get_qform(), img.affine, atol=1e-4)


def test_nifti_round_trip_2d_and_defaults(tmp_path, rng):
    image = rng.integers(-1000, 1000, size=(6, 11)).astype(np.int16)
    fio.write_nifti(tmp_path / "slice.nii", image, spacing=(0.5, 0.25), origin=(3.0, -4.0))
    vol = fio.read_nifti(tmp_path / "slice.nii")
    np.testing.assert_array_equal(vol.array, image)
    assert vol.spacing == (0.5, 0.25) and vol.origin == (3.0, -4.0)
    np.testing.assert_array_equal(vol.direction, np.eye(2))
    fio.write_nifti(tmp_path / "plain.nii.gz", image[None].astype(np.float32))
    vol = fio.read_nifti(tmp_path / "plain.nii.gz")
    assert vol.spacing == (1.0, 1.0, 1.0) and vol.origin == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(vol.direction, np.eye(3))


def test_nifti_geometry_without_extension(nib, tmp_path, rng):
    """A file rewritten by another tool (no fastct extension) keeps the geometry
    to float32 precision; a stale extension that disagrees is ignored."""
    array = rng.normal(size=(4, 5, 6)).astype(np.float32)
    direction = rotation((0.1, 0.2, -0.3))
    fio.write_nifti(
        tmp_path / "a.nii", array, spacing=(3, 2, 1), origin=(5, 6, 7), direction=direction
    )
    img = nib.load(tmp_path / "a.nii")
    stripped = nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header.copy())
    stripped.header.extensions.clear()
    stripped.to_filename(tmp_path / "b.nii")
    moved = nib.Nifti1Image(
        np.asarray(img.dataobj), img.affine @ np.diag([2.0, 1, 1, 1]), img.header.copy()
    )
    moved.to_filename(tmp_path / "c.nii")  # extension kept, affine changed
    b = fio.read_nifti(tmp_path / "b.nii")
    np.testing.assert_array_equal(b.array, array)
    np.testing.assert_allclose(b.spacing, (3, 2, 1), atol=1e-5)
    np.testing.assert_allclose(b.origin, (5, 6, 7), atol=1e-5)
    np.testing.assert_allclose(b.direction, direction, atol=1e-5)
    c = fio.read_nifti(tmp_path / "c.nii")
    np.testing.assert_allclose(c.spacing, (3, 2, 2), atol=1e-5)


def test_npy_round_trip(tmp_path, rng):
    array = rng.normal(size=(3, 4, 5)).astype(np.float32)
    fio.write_npy(tmp_path / "v.npy", array)
    vol = fio.read_npy(tmp_path / "v.npy", spacing=(2.0, 0.5, 0.5), origin=(1, 2, 3))
    np.testing.assert_array_equal(vol.array, array)
    assert vol.array.dtype == array.dtype
    assert (
        vol.spacing == (2.0, 0.5, 0.5) and vol.origin == (1.0, 2.0, 3.0) and vol.direction is None
    )
    mapped = fio.read_volume(tmp_path / "v.npy", mmap=True)
    np.testing.assert_array_equal(mapped.array, array)
    assert mapped.spacing == (1.0, 1.0, 1.0) and not mapped.array.flags.writeable
    # Fortran order and big-endian inputs come back C-ordered and native.
    np.save(tmp_path / "f.npy", np.asfortranarray(array).astype(">f4"))
    vol = fio.read_npy(tmp_path / "f.npy")
    assert vol.array.flags.c_contiguous and vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, array)
    assert sorted(os.listdir(tmp_path)) == ["f.npy", "v.npy"]


@pytest.mark.parametrize(
    "writer, name",
    [(fio.write_nifti, "out.nii.gz"), (fio.write_npy, "out.npy")],
)
def test_exporters_refuse_overwrite(tmp_path, writer, name):
    if name.endswith(".gz"):
        pytest.importorskip("nibabel")
    path = tmp_path / name
    writer(path, np.zeros((2, 3, 4), np.int16))
    digest = sha256(path)
    with pytest.raises(FileExistsError, match="already exists"):
        writer(path, np.ones((2, 3, 4), np.int16))
    assert sha256(path) == digest
    writer(path, np.ones((2, 3, 4), np.int16), overwrite=True)
    assert sha256(path) != digest
    assert os.listdir(tmp_path) == [name]


def test_no_temp_files_after_failed_write(nib, tmp_path, monkeypatch):
    def broken_nifti(self, filename, **kw):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nib.Nifti1Image, "to_filename", broken_nifti)
    with pytest.raises(OSError, match="disk full"):
        fio.write_nifti(tmp_path / "x.nii.gz", np.zeros((2, 2, 2)))
    assert os.listdir(tmp_path) == []

    real_save = np.save

    def broken_save(f, arr, **kw):
        real_save(f, arr[:1], **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        fio.write_npy(tmp_path / "x.npy", np.zeros((2, 2, 2)))
    assert os.listdir(tmp_path) == []

    # A failure replacing an existing file leaves the old file intact.
    monkeypatch.setattr(np, "save", real_save)
    fio.write_npy(tmp_path / "y.npy", np.zeros((2, 2, 2)))
    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        fio.write_npy(tmp_path / "y.npy", np.ones((2, 2, 2)), overwrite=True)
    monkeypatch.setattr(np, "save", real_save)
    assert os.listdir(tmp_path) == ["y.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.zeros((2, 2, 2)))


def test_exporter_argument_errors(tmp_path):
    pytest.importorskip("nibabel")
    with pytest.raises(ValueError, match=r"path must end with \.nii or \.nii\.gz"):
        fio.write_nifti(tmp_path / "x.nrrd", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"path must end with \.npy"):
        fio.write_npy(tmp_path / "x.npz", np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="spacing must have 3 values"):
        fio.write_nifti(tmp_path / "x.nii", np.zeros((2, 2, 2)), spacing=(1, 1))
    with pytest.raises(ValueError, match="direction must have orthonormal columns"):
        fio.write_nifti(tmp_path / "x.nii", np.zeros((2, 2, 2)), direction=np.diag([1, 2, 1]))
    with pytest.raises(ValueError, match="array must be 2-D .* got 4-D"):
        fio.write_npy(tmp_path / "x.npy", np.zeros((2, 2, 2, 2)))
    with pytest.raises(TypeError, match="array must have a real numeric dtype"):
        fio.write_npy(tmp_path / "x.npy", np.array([["a", "b"]]))
    with pytest.raises(FileNotFoundError, match="output folder"):
        fio.write_npy(tmp_path / "missing" / "x.npy", np.zeros((2, 2)))
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- dispatch and errors


def test_read_volume_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="input '.*nope.nii' does not exist"):
        fio.read_volume(tmp_path / "nope.nii")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported format"):
        fio.read_volume(tmp_path / "a.txt")
    np.save(tmp_path / "a.npy", np.zeros((2, 2)))
    with pytest.raises(
        TypeError,
        match=r"volume_index do not apply to NumPy input .*accepted: direction, mmap, origin, spacing",
    ):
        fio.read_volume(tmp_path / "a.npy", volume_index=0)
    with pytest.raises(ValueError, match="spacing must be > 0"):
        fio.read_npy(tmp_path / "a.npy", spacing=(0, 1))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"obj\.npy.*cannot be read"):
        fio.read_npy(tmp_path / "obj.npy")
    np.save(tmp_path / "one.npy", np.zeros(5))
    with pytest.raises(ValueError, match=r"one\.npy.*2-D \(y, x\) or 3-D"):
        fio.read_npy(tmp_path / "one.npy")
    with pytest.raises(TypeError, match="must be a path"):
        fio.read_volume(3)


def test_missing_optional_dependency(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nibabel", None)
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImportError, match=r"pip install 'fastct-engine\[io\]'"):
        fio.write_nifti(tmp_path / "x.nii", np.zeros((2, 2, 2)))
    (tmp_path / "d").mkdir()
    with pytest.raises(ImportError, match=r"pip install 'fastct-engine\[io\]'"):
        fio.read_dicom_series(tmp_path / "d")

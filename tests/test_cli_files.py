"""The command line with files in and files out: NIfTI, DICOM folders, .npy and archives,
geometry carried through; and the CLI defects of issue 15, one test each."""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastct
from fastct.cli import build_parser, main
from fastct.cli._common import _HelpFormatter, flag_message, volume_spec

nib = pytest.importorskip("nibabel")

# An LAS-stored volume (x flipped relative to RAS) with anisotropic spacing and an origin
# away from 0: NIfTI in, NIfTI out must keep exactly this affine.
LAS_AFFINE = np.array(
    [[-0.8, 0.0, 0.0, 10.0], [0.0, 0.9, 0.0, -20.0], [0.0, 0.0, 2.0, 30.0], [0, 0, 0, 1]]
)
# A permuted one (PIR-like: the file's axes run along A/P, S/I and L/R).
PERMUTED_AFFINE = np.array(
    [[0.0, 0.0, -1.5, 5.0], [-0.7, 0.0, 0.0, 8.0], [0.0, -1.1, 0.0, -3.0], [0, 0, 0, 1]]
)


def write_nifti(path, data_zyx, affine):
    """``data_zyx`` (fastct order) written with nibabel (file order x, y, z)."""
    img = nib.Nifti1Image(np.ascontiguousarray(data_zyx.transpose(2, 1, 0)), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, str(path))
    return path


def zyx(path):
    """A NIfTI file's voxels in fastct's (z, y, x) order."""
    return np.asarray(nib.load(str(path)).dataobj).transpose(2, 1, 0)


def assert_same_geometry(a, b):
    ia, ib = nib.load(str(a)), nib.load(str(b))
    assert np.allclose(ia.affine, ib.affine, atol=1e-6), (ia.affine, ib.affine)
    assert ia.shape == ib.shape
    sitk = pytest.importorskip("SimpleITK")
    sa, sb = sitk.ReadImage(str(a)), sitk.ReadImage(str(b))
    assert np.allclose(sa.GetDirection(), sb.GetDirection(), atol=1e-6)
    assert np.allclose(sa.GetOrigin(), sb.GetOrigin(), atol=1e-5)
    assert np.allclose(sa.GetSpacing(), sb.GetSpacing(), atol=1e-6)


@pytest.fixture
def image():
    rng = np.random.default_rng(5)
    return (rng.normal(size=(9, 12, 10)) * 100).astype(np.float32)


def run_main(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- volume arguments --------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,kind,path,name",
    [
        ("a.h5:/scans/x", "archive", "a.h5", "/scans/x"),
        ("dir/a:b.h5:scans/x", "archive", "dir/a:b.h5", "/scans/x"),
        ("ct.nii.gz", "nifti", "ct.nii.gz", None),
        ("CT.NII", "nifti", "CT.NII", None),
        ("v.npy", "npy", "v.npy", None),
        ("series/", "dicom", "series", None),
        ("s.zarr:/x", "archive", "s.zarr", "/x"),
        ("dir/s.ZARR/:scans/x", "archive", "dir/s.ZARR", "/scans/x"),
    ],
)
def test_volume_spec_kinds(text, kind, path, name):
    ref = volume_spec(text)
    assert (ref.kind, ref.path, ref.name, str(ref)) == (kind, Path(path), name, text)


@pytest.mark.parametrize("text", ["a.h5", "a.h5:", "a.h5:/", "", "s.zarr", "s.zarr/"])
def test_volume_spec_refuses_archive_without_path(text):
    with pytest.raises(argparse.ArgumentTypeError):
        volume_spec(text)


# -- files in, files out -----------------------------------------------------------------
@pytest.mark.parametrize("affine", [LAS_AFFINE, PERMUTED_AFFINE], ids=["LAS", "permuted"])
def test_gaussian_nifti_in_nifti_out_keeps_affine(tmp_path, capsys, image, affine):
    src = write_nifti(tmp_path / "ct.nii.gz", image, affine)
    dst = tmp_path / "smooth.nii.gz"
    code, out, err = run_main(capsys, "gaussian", src, dst, "--sigma", "1.5")
    assert code == 0, err
    assert_same_geometry(src, dst)
    assert np.array_equal(zyx(dst), fastct.gaussian(image, 1.5))
    # --mm uses the file's spacing (in fastct's z, y, x order).
    dst_mm = tmp_path / "smooth-mm.nii"
    assert run_main(capsys, "gaussian", src, dst_mm, "--sigma", "2", "--mm")[0] == 0
    spacing = fastct.io.read_nifti(src).spacing
    assert np.array_equal(zyx(dst_mm), fastct.gaussian(image, 2.0, spacing=spacing))
    # An existing output is refused (the library's overwrite=True named as the flag).
    code, _, err = run_main(capsys, "gaussian", src, dst, "--sigma", "1")
    assert code == 2 and "--overwrite" in err and "overwrite=True" not in err
    assert run_main(capsys, "gaussian", src, dst, "--sigma", "1", "--overwrite")[0] == 0


def test_nifti_to_archive_and_back_keeps_geometry(tmp_path, capsys, image):
    src = write_nifti(tmp_path / "ct.nii.gz", image, LAS_AFFINE)
    archive = tmp_path / "a.h5"
    assert run_main(capsys, "median", src, f"{archive}:/m", "--size", "3")[0] == 0
    ref = fastct.io.read_nifti(src)
    with fastct.open(archive) as ar:
        vol = ar["m"]
        assert vol.spacing == ref.spacing and vol.origin == ref.origin
        assert np.allclose(vol.direction, ref.direction)
        assert np.array_equal(vol.read(), fastct.median(image, 3))
    back = tmp_path / "back.nii.gz"
    assert run_main(capsys, "median", f"{archive}:/m", back, "--size", "1")[0] == 0
    assert_same_geometry(src, back)
    assert run_main(capsys, "export", f"{archive}:/m", tmp_path / "e.nii")[0] == 0
    assert_same_geometry(src, tmp_path / "e.nii")


def test_npy_input_with_spacing_and_origin(tmp_path, capsys, image):
    np.save(tmp_path / "v.npy", image)
    dst = tmp_path / "g.nii.gz"
    code, _, err = run_main(capsys, "gaussian", tmp_path / "v.npy", dst, "--sigma", "1",
                            "--spacing", "2,0.5,0.7", "--origin", "1,2,3")  # fmt: skip
    assert code == 0, err
    back = fastct.io.read_nifti(dst)
    assert back.spacing == (2.0, 0.5, 0.7) and back.origin == (1.0, 2.0, 3.0)
    assert np.array_equal(back.array, fastct.gaussian(image, 1.0))
    # .npy out keeps the voxels only and says so on stderr.
    code, _, err = run_main(capsys, "gaussian", dst, tmp_path / "g.npy", "--sigma", "1")
    assert code == 0 and "voxels only" in err
    assert np.array_equal(np.load(tmp_path / "g.npy"), fastct.gaussian(back.array, 1.0))
    # --spacing where no input is .npy is an error, not silently ignored.
    code, _, err = run_main(capsys, "gaussian", dst, tmp_path / "x.nii", "--sigma", "1",
                            "--spacing", "1,1,1")  # fmt: skip
    assert code == 2 and "--spacing applies to .npy inputs only" in err


def make_dicom_series(folder: Path, n: int = 3) -> Path:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.uid import generate_uid

    template = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    if not template.exists():
        pytest.skip("pydicom sample not installed")
    base = pydicom.dcmread(template)
    uid = generate_uid()
    folder.mkdir()
    x0, y0, z0 = (float(v) for v in base.ImagePositionPatient)
    for k in range(n):
        ds = copy.deepcopy(base)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{x0:.6f}", f"{y0:.6f}", f"{z0 + 2.5 * k:.6f}"]
        ds.PixelData = (base.pixel_array.astype(np.int16) + 7 * k).tobytes()
        ds.save_as(folder / f"im{n - k:03d}.dcm")
    return folder


def test_dicom_folder_input(tmp_path, capsys):
    series = make_dicom_series(tmp_path / "series")
    ref = fastct.io.read_volume(series)
    dst = tmp_path / "m.nii.gz"
    code, _, err = run_main(capsys, "median", series, dst, "--size", "1")
    assert code == 0, err
    back = fastct.io.read_nifti(dst)
    assert np.array_equal(back.array, ref.array)
    assert np.allclose(back.spacing, ref.spacing) and np.allclose(back.origin, ref.origin)
    # info describes the folder; DICOM is input only.
    code, out, _ = run_main(capsys, "info", series, "--json")
    doc = json.loads(out)
    assert doc["volumes"][0]["shape"] == list(ref.shape) and doc["volumes"][0]["units"] == "HU"
    code, _, err = run_main(capsys, "median", dst, tmp_path / "out-series", "--size", "1")
    assert code == 2 and "DICOM is input only" in err


def test_failed_command_leaves_no_output(tmp_path, capsys, image):
    src = write_nifti(tmp_path / "ct.nii.gz", image, LAS_AFFINE)
    before = sorted(os.listdir(tmp_path))
    for dst in ("bad.nii.gz", "bad.npy", "bad.h5:/x"):
        code, _, err = run_main(capsys, "gaussian", src, tmp_path / dst, "--sigma", "-1")
        assert code == 2 and "--sigma" in err and len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == before


def test_zarr_store_in_and_out(tmp_path, capsys, image):
    pytest.importorskip("zarr")
    src = write_nifti(tmp_path / "ct.nii.gz", image, LAS_AFFINE)
    code, _, err = run_main(capsys, "gaussian", src, f"{tmp_path}/s.zarr:/x", "--sigma", "1")
    assert code == 0, err
    code, out, err = run_main(capsys, "info", f"{tmp_path}/s.zarr")
    assert code == 0 and "/x: 9 x 12 x 10 float32" in out
    dst = tmp_path / "back.nii.gz"
    assert run_main(capsys, "export", f"{tmp_path}/s.zarr:/x", dst)[0] == 0
    assert_same_geometry(src, dst)
    assert np.array_equal(zyx(dst), fastct.gaussian(image, 1.0))


def test_foreign_zarr_is_a_clear_error(tmp_path, capsys, image):
    zarr = pytest.importorskip("zarr")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")
    (tmp_path / "empty.zarr").mkdir()
    for argv in (["info", f"{tmp_path}/other.zarr"],
                 ["info", f"{tmp_path}/empty.zarr"],
                 ["export", f"{tmp_path}/other.zarr:/x", f"{tmp_path}/x.nii"],
                 ["gaussian", f"{tmp_path}/s.npy", f"{tmp_path}/other.zarr:/x", "--sigma", "1"]):  # fmt: skip
        np.save(tmp_path / "s.npy", image)
        code, _, err = run_main(capsys, *argv)
        assert code == 2 and "not a fastct archive" in err, argv
        assert len(err.strip().splitlines()) == 1


# -- CLI defects -------------------------------------------------------------------------
def test_import_prints_no_repr(tmp_path, capsys, image):
    src = write_nifti(tmp_path / "ct.nii.gz", image, LAS_AFFINE)
    code, out, err = run_main(capsys, "import", src, f"{tmp_path}/a.h5:/scans/x/image")
    assert code == 0, err
    assert "<fastct" not in out and "orientation LAS" in out


def test_unsharp_has_no_cval():
    # fastct.unsharp_mask (like skimage.filters.unsharp_mask) has no cval; 'constant'
    # pads with 0, so the flag that was accepted and ignored is gone.
    assert "cval" not in inspect.signature(fastct.unsharp_mask).parameters
    with pytest.raises(fastct.cli.UsageError, match="--cval"):
        build_parser().parse_args(["unsharp", "a.nii", "b.nii", "--cval", "5"])
    help_text = " ".join(_subparsers()["unsharp"].format_help().split())
    assert "--cval" not in help_text and "pads with 0" in help_text


def test_errors_name_flags_not_parameters(tmp_path, capsys, image):
    src = write_nifti(tmp_path / "ct.nii.gz", image, LAS_AFFINE)
    dest = f"{tmp_path}/a.h5:/x"
    assert run_main(capsys, "import", src, dest)[0] == 0
    code, _, err = run_main(capsys, "import", src, dest)
    assert code == 2 and "pass --overwrite to replace it" in err
    code, _, err = run_main(capsys, "import", src, f"{tmp_path}/a.h5:/y", "--volume-index", "1")
    assert code == 2 and "--volume-index applies to 4-D" in err and "volume_index" not in err
    code, _, err = run_main(capsys, "import", src, f"{tmp_path}/a.h5:/y", "--series-uid", "1")
    assert code == 2 and "--series-uid" in err and "series_uid" not in err


def test_flag_message_translation():
    sub = _subparsers()
    slic, gaussian = sub["slic"], sub["gaussian"]
    assert (
        flag_message("n_segments must be >= 1, got 0", slic) == "--n-segments must be >= 1, got 0"
    )
    assert flag_message("max_num_iter=0 is invalid", slic) == "--max-num-iter 0 is invalid"
    assert flag_message("sigma must be >= 0", gaussian) == "--sigma must be >= 0"
    assert flag_message("mode must be one of ...", gaussian) == "--mode must be one of ..."
    assert flag_message("'x' exists; pass overwrite=True (--overwrite) to replace it",
                        gaussian) == "'x' exists; pass --overwrite to replace it"  # fmt: skip
    # Ordinary words and names that are no flag of the command are left alone.
    assert flag_message("the sigma of the image", gaussian) == "the sigma of the image"
    assert flag_message("n_segments must be >= 1", gaussian) == "n_segments must be >= 1"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


def test_help_shows_every_default():
    formatter = _HelpFormatter("fastct")
    for name, parser in _subparsers().items():
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            text = formatter._get_help_string(action)
            assert "default" in text, f"fastct {name} {action.option_strings[0]}: {text!r}"
        assert "(default: " in parser.format_help()
    text = _subparsers()["median"].format_help()
    assert "(default: 3)" in text and "(default: reflect)" in text


def test_slic_options_default_to_the_api():
    from fastct.cli._supervoxels import SLIC_DEFAULTS

    params = inspect.signature(fastct.slic).parameters
    assert SLIC_DEFAULTS == {k: params[k].default for k in SLIC_DEFAULTS}
    args = build_parser().parse_args(["slic", "a.nii", "b.nii"])
    assert (args.n_segments, args.compactness, args.max_num_iter) == (100, 10.0, 10)


def test_info_orientation_and_json(tmp_path, capsys, image):
    src = write_nifti(tmp_path / "ct.nii.gz", image, LAS_AFFINE)
    archive = tmp_path / "a.h5"
    assert run_main(capsys, "import", src, f"{archive}:/scans/x/image")[0] == 0
    with fastct.open(archive, "a") as ar:
        ar.create_volume("scans/y/image", image, spacing=(2, 1, 1), modality="CT", units="HU")
        ar.set_attrs("scans/y/image", note="hello", weights=np.arange(3.0))
    code, out, _ = run_main(capsys, "info", archive)
    assert code == 0
    assert "/scans/x/image: 9 x 12 x 10 float32" in out and "orientation LAS" in out
    assert "origin 30 x 20 x -10 mm" in out and "orientation LPS" in out
    code, out, _ = run_main(capsys, "info", archive, "--json")
    doc = json.loads(out)
    assert doc["path"] == str(archive)
    by_path = {v["path"]: v for v in doc["volumes"]}
    x, y = by_path["/scans/x/image"], by_path["/scans/y/image"]
    for key in ("shape", "dtype", "chunks", "spacing", "origin", "direction", "orientation",
                "attrs"):  # fmt: skip
        assert key in x
    assert x["orientation"] == "LAS" and x["shape"] == [9, 12, 10] and x["dtype"] == "float32"
    ref = fastct.io.read_nifti(src)
    assert np.allclose(x["direction"], ref.direction) and x["origin"] == list(ref.origin)
    assert y["attrs"] == {"note": "hello", "weights": [0.0, 1.0, 2.0]} and y["units"] == "HU"
    # One volume of an archive, a NIfTI file and .npy with --spacing.
    code, out, _ = run_main(capsys, "info", f"{archive}:/scans/y/image", "--json")
    assert [v["path"] for v in json.loads(out)["volumes"]] == ["/scans/y/image"]
    code, out, _ = run_main(capsys, "info", src, "--json")
    assert json.loads(out)["volumes"][0]["orientation"] == "LAS"
    np.save(tmp_path / "v.npy", image)
    code, out, _ = run_main(capsys, "info", tmp_path / "v.npy", "--spacing", "3,2,1", "--json")
    assert json.loads(out)["volumes"][0]["spacing"] == [3.0, 2.0, 1.0]
    code, out, _ = run_main(capsys, "info", tmp_path / "v.npy")
    assert "spacing 1 x 1 x 1 mm" in out and "orientation LPS" in out


def test_python_m_fastct(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(fastct.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "fastct", "--version"], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 0 and fastct.__version__ in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "fastct", "info", str(tmp_path / "no.h5")],
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("fastct: error:")


# -- every command, NIfTI in and NIfTI out -------------------------------------------------
@pytest.mark.slow
def test_every_volume_command_nifti_in_nifti_out(tmp_path, capsys):
    """A phantom exported to LAS-stored NIfTI runs through every command that takes or
    writes volumes; every NIfTI output has the input's affine."""
    phantom = fastct.datasets.chest_phantom("tiny", seed=0, n_nodules=3)
    ct = write_nifti(tmp_path / "ct.nii.gz", phantom.image, LAS_AFFINE)
    lungs = write_nifti(tmp_path / "lungs.nii.gz", phantom.lung_mask.astype(np.uint8), LAS_AFFINE)
    t = tmp_path

    def ok(*argv):
        code, out, err = run_main(capsys, *argv)
        assert code == 0, (argv, err)
        return out

    outputs = []
    for argv in (
        ["gaussian", ct, t / "g.nii.gz", "--sigma", "1"],
        ["median", ct, t / "m.nii.gz", "--size", "3"],
        ["unsharp", ct, t / "u.nii.gz", "--radius", "1", "--amount", "0.5"],
        ["slic", ct, t / "s.nii.gz", "--n-segments", "50", "--compactness", "0.1",
         "--mask", lungs],
        ["register", ct, ct, "--output-transform", t / "t.tfm", "--resampled", t / "r.nii.gz",
         "--metric", "mse", "--shrink-factors", "2,1", "--max-iterations", "5"],
        ["detect", ct, "--out", t / "d.csv", "--probability-map", t / "p.nii.gz",
         "--lung-mask", lungs],
    ):  # fmt: skip
        ok(*argv)
        outputs += [a for a in argv if str(a).endswith(".nii.gz") and a not in (ct, lungs)]
    for out in outputs:
        assert_same_geometry(ct, out)
    assert np.array_equal(zyx(t / "g.nii.gz"), fastct.gaussian(phantom.image, 1.0))
    labels = zyx(t / "s.nii.gz")
    assert (
        labels.dtype == np.int32 and labels.max() >= 1 and (labels[~phantom.lung_mask] == 0).all()
    )
    ok("features", t / "s.nii.gz", ct, "--out", t / "f.csv")
    assert len((t / "f.csv").read_text().splitlines()) == len(np.unique(labels[labels > 0])) + 1
    assert (t / "d.csv").read_text().startswith("id,center_z_mm")
    # import / export round trip.
    ok("import", ct, f"{t}/a.h5:/scans/ct/image")
    ok("export", f"{t}/a.h5:/scans/ct/image", t / "e.nii.gz")
    assert_same_geometry(ct, t / "e.nii.gz")
    assert np.array_equal(zyx(t / "e.nii.gz"), zyx(ct))

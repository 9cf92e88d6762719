"""The command line: commands work, bad input is one line and exit status 2."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastct
from fastct.cli import main


def run(*argv):
    """Run the CLI in a fresh process (as a user would)."""
    proc = subprocess.run(
        [sys.executable, "-m", "fastct.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


def pydicom_ct_sample():
    pydicom = pytest.importorskip("pydicom")
    path = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    if not path.exists():
        pytest.skip("pydicom sample not installed")
    return path


def nibabel_sample(name):
    nibabel = pytest.importorskip("nibabel")
    path = Path(nibabel.__file__).parent / "tests" / "data" / name
    if not path.exists():
        pytest.skip("nibabel sample not installed")
    return path


def test_help_and_version():
    code, out, _ = run("--help")
    assert code == 0 and "import" in out and "phantom" in out and "--threads" in out
    code, out, _ = run("--version")
    assert code == 0 and fastct.__version__ in out


def test_import_info_export_round_trip(tmp_path, capsys):
    data = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)
    npy = tmp_path / "vol.npy"
    np.save(npy, data)
    archive = tmp_path / "a.h5"
    assert (
        main(
            [
                "import",
                str(npy),
                f"{archive}:/scans/x/image",
                "--spacing",
                "2,1,1",
                "--chunks",
                "2,2,2",
            ]
        )
        == 0
    )
    assert main(["info", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "/scans/x/image: 3 x 4 x 5 int16" in out and "spacing 2 x 1 x 1" in out
    assert main(["export", f"{archive}:/scans/x/image", str(tmp_path / "back.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "back.npy"), data)
    # .npy keeps the voxels only: a note on stderr says the spacing was not stored.
    assert "voxels only" in capsys.readouterr().err
    # Re-import without --overwrite is refused, with one line and status 2.
    assert main(["import", str(npy), f"{archive}:/scans/x/image"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "overwrite" in err


def test_import_real_samples(tmp_path):
    archive = tmp_path / "samples.h5"
    code, out, err = run("--quiet", "import", pydicom_ct_sample(), f"{archive}:/scans/ct/image")
    assert code == 0, err
    code, _, err = run("import", nibabel_sample("anatomical.nii"), f"{archive}:/scans/mr/image")
    assert code == 0, err
    code, _, err = run(
        "import",
        nibabel_sample("example4d.nii.gz"),
        f"{archive}:/scans/f/image",
        "--volume-index",
        "1",
    )
    assert code == 0, err
    with fastct.open(archive) as ar:
        ct = ar["scans/ct/image"]
        assert ct.shape == (1, 128, 128) and ct.dtype == np.int16 and ct.units == "HU"
        assert ar["scans/mr/image"].shape == (25, 41, 33)
        assert ar["scans/f/image"].shape == (24, 96, 128)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["info", "{tmp}/missing.h5"], "does not exist"),
        (["info", "{tmp}/corrupt.h5"], "not a readable HDF5"),
        (["import", "{tmp}/missing.nii", "{tmp}/a.h5:/scans/x"], "missing.nii"),
        (["import", "{tmp}/corrupt.dcm", "{tmp}/a.h5:/scans/x"], "corrupt.dcm"),
        (["import", "{tmp}/corrupt.nii", "{tmp}/a.h5:/scans/x"], "corrupt.nii"),
        (["import", "{tmp}/vol.npy", "no-colon.h5"], "FILE.h5:/path"),
        (["--threads", "0", "info", "{tmp}/a.h5"], "positive integer"),
        (["--chunks", "1,x,2", "info", "{tmp}/a.h5"], "64,64,64"),
        (["frobnicate"], "invalid choice"),
        (["export", "{tmp}/good.h5:/nothing", "{tmp}/o.npy"], "not found"),
        (["export", "{tmp}/good.h5:/v", "{tmp}/o.txt"], ".npy"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, argv, needle):
    (tmp_path / "corrupt.h5").write_bytes(b"\x89HDF\r\n garbage")
    (tmp_path / "corrupt.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00" * 10)
    (tmp_path / "corrupt.nii").write_bytes(b"not a nifti file at all" * 20)
    np.save(tmp_path / "vol.npy", np.zeros((2, 2, 2)))
    with fastct.open(tmp_path / "good.h5", "w") as ar:
        ar.create_volume("v", np.zeros((2, 2, 2)))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    code, out, err = run(*[a.format(tmp=tmp_path) for a in argv])
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastct: error:"), err
    assert needle in lines[0]
    # Inputs untouched, nothing half-written.
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if not k.endswith(".lock")} == before


def test_threads_option_and_environment(tmp_path, capsys):
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4), np.float32))
    env = dict(os.environ, FASTCT_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", "import fastct; print(fastct.get_num_threads())"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.stdout.strip() == "1"
    env["FASTCT_NUM_THREADS"] = "zero"
    proc = subprocess.run(
        [sys.executable, "-c", "import fastct; fastct.get_num_threads()"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "FASTCT_NUM_THREADS" in proc.stderr
    assert (
        main(
            [
                "--threads",
                "1",
                "--quiet",
                "import",
                str(tmp_path / "v.npy"),
                f"{tmp_path / 'a.h5'}:/v",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == ""


def test_phantom_writes_pair_with_truth(tmp_path):
    archive = tmp_path / "ph.h5"
    code, out, err = run(
        "phantom", archive, "--size", "tiny", "--seed", "3", "--transform", "similarity"
    )
    assert code == 0, err
    import h5py

    with fastct.open(archive) as ar:
        base = ar["scans/phantom/baseline/image"]
        follow = ar["scans/phantom/followup/image"]
        assert base.dtype == np.int16 and base.modality == "CT" and base.units == "HU"
        assert follow.shape == base.shape
        assert ar["scans/phantom/baseline/labels/nodules"].read().max() >= 1
    with h5py.File(archive) as f:
        truth = f["scans/phantom/truth"].attrs
        assert truth["transform"].shape == (4, 4)
        assert "baseline" in truth["transform_convention"]
    # Same seed, same bytes of the image.
    again = tmp_path / "again.h5"
    assert (
        run("phantom", again, "--size", "tiny", "--seed", "3", "--transform", "similarity")[0] == 0
    )
    with fastct.open(archive) as a, fastct.open(again) as b:
        assert np.array_equal(
            a["scans/phantom/followup/image"].read(), b["scans/phantom/followup/image"].read()
        )
    code, _, err = run("phantom", archive, "--size", "huge")
    assert code == 2 and "size" in err and len(err.strip().splitlines()) == 1
    code, _, err = run("phantom", archive, "--size", "tiny")
    assert code == 2 and "overwrite" in err


def test_features_command_writes_csv(tmp_path):
    labels = np.zeros((6, 8, 8), np.int32)
    labels[:3] = 1
    labels[3:, :, :4] = 2
    image = np.arange(labels.size, dtype=np.float32).reshape(labels.shape)
    archive = tmp_path / "f.h5"
    with fastct.open(archive, "w") as ar:
        ar.create_volume("labels", labels, spacing=(2, 1, 1), chunks=(4, 4, 4))
        ar.create_volume("image", image, spacing=(2, 1, 1), chunks=(4, 4, 4))
    out = tmp_path / "table.csv"
    code, _, err = run("features", f"{archive}:/labels", f"{archive}:/image", "--out", out)
    assert code == 0, err
    lines = out.read_text().splitlines()
    header = lines[0].split(",")
    assert "volume_mm3" in header and len(lines) == 3
    row = dict(zip(header, lines[1].split(",")))
    assert int(float(row["count"])) == 3 * 64 and float(row["volume_mm3"]) == 3 * 64 * 2
    code, _, err = run("features", f"{archive}:/labels", f"{archive}:/image", "--out", out)
    assert code == 2 and "overwrite" in err


def test_filter_commands_stream_and_match_in_memory(tmp_path):
    import scipy.ndimage as ndi

    rng = np.random.default_rng(1)
    image = rng.integers(-1000, 1000, size=(20, 24, 22)).astype(np.int16)
    src = tmp_path / "src.h5"
    with fastct.open(src, "w") as ar:
        ar.create_volume("scans/a/image", image, spacing=(2.0, 1.0, 1.0), chunks=(8, 8, 8))
    dst = tmp_path / "dst.h5"
    assert run("gaussian", f"{src}:/scans/a/image", f"{dst}:/g", "--sigma", "2", "--mm")[0] == 0
    assert run("median", f"{src}:/scans/a/image", f"{dst}:/m", "--size", "3,3,5")[0] == 0
    code, _, err = run(
        "unsharp",
        f"{src}:/scans/a/image",
        f"{dst}:/u",
        "--radius",
        "1.5",
        "--amount",
        "0.7",
        "--mode",
        "nearest",
    )
    assert code == 0, err
    with fastct.open(dst) as ar:
        g = ar["g"].read()
        assert g.dtype == np.float32
        assert np.array_equal(g, fastct.gaussian(image, 2.0, spacing=(2.0, 1.0, 1.0)))
        assert np.array_equal(ar["m"].read(), ndi.median_filter(image, size=(3, 3, 5)))
        u = fastct.unsharp_mask(image, 1.5, 0.7, mode="nearest")
        assert np.array_equal(ar["u"].read(), u)
    code, _, err = run("gaussian", f"{src}:/scans/a/image", f"{dst}:/g2", "--sigma", "-1")
    assert code == 2 and "sigma" in err and len(err.strip().splitlines()) == 1


def test_slic_command_matches_in_memory(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.normal(size=(16, 20, 18)).astype(np.float32)
    image[:, :, 9:] += 5.0
    mask = np.ones(image.shape, np.uint8)
    mask[:2] = 0
    src = tmp_path / "s.h5"
    with fastct.open(src, "w") as ar:
        ar.create_volume("img", image, chunks=(8, 8, 8))
        ar.create_volume("mask", mask, chunks=(8, 8, 8))
    code, _, err = run(
        "slic",
        f"{src}:/img",
        f"{src}:/labels",
        "--n-segments",
        "20",
        "--compactness",
        "0.5",
        "--mask",
        f"{src}:/mask",
    )
    assert code == 0, err
    with fastct.open(src) as ar:
        got = ar["labels"].read()
    expected = fastct.slic(image, 20, 0.5, mask=mask.astype(bool))
    assert got.dtype == np.int32 and np.array_equal(got, expected)
    code, _, err = run(
        "slic", f"{src}:/img", f"{src}:/l2", "--n-segments", "0", "--compactness", "1"
    )
    assert code == 2 and len(err.strip().splitlines()) == 1

"""``fastct convert``: HDF5 <-> Zarr archives and one volume to/from NIfTI, bit for bit with
the geometry."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastct
from fastct.cli import main

pytest.importorskip("zarr")
nib = pytest.importorskip("nibabel")

OBLIQUE = np.array(
    [
        [0.9, -0.3, 0.3162],
        [0.3, 0.9487, 0.0],
        [-0.3162, 0.1, 0.9487],
    ]
)


def oblique_direction():
    q, _ = np.linalg.qr(OBLIQUE)
    return q


def make_archive(path):
    rng = np.random.default_rng(7)
    content = {
        "/scans/a/image": rng.integers(-1024, 3000, (11, 17, 13)).astype(np.int16),
        "/scans/a/labels/lungs": (rng.random((11, 17, 13)) > 0.6).astype(np.uint8),
        "/results/r/prob": rng.random((11, 17, 13)).astype(np.float32),
        "/results/r/slice": rng.normal(size=(17, 13)),
        "/flags": rng.random((5, 6)) > 0.5,
    }
    with fastct.open(path, "w") as ar:
        for i, (name, data) in enumerate(content.items()):
            ar.create_volume(
                name,
                data,
                spacing=tuple(0.5 + 0.25 * k + i for k in range(data.ndim)),
                origin=tuple(-100.0 + 3 * k - i for k in range(data.ndim)),
                direction=oblique_direction() if data.ndim == 3 else None,
                modality="CT" if i == 0 else None,
                units="HU" if i == 0 else None,
                chunks=(4, 8, 8) if data.ndim == 3 else None,
                compression="gzip" if i % 2 else None,
                attrs={"kind": name.rsplit("/", 1)[-1], "level": i},
            )
        ar.set_attrs("results/r", sigma=1.5, note="run 1")
        ar.set_attrs("/", project="demo")
        ar.set_attrs("empty/group")
    return content


def assert_same_archives(a_path, b_path, content):
    with fastct.open(a_path) as a, fastct.open(b_path) as b:
        assert a.volumes() == b.volumes() == sorted(content)
        for name, data in content.items():
            va, vb = a[name], b[name]
            got = vb.read()
            assert got.dtype == data.dtype and np.array_equal(got, data), name
            assert va.metadata().keys() == vb.metadata().keys()
            for key, value in va.metadata().items():
                other = vb.metadata()[key]
                if isinstance(value, np.ndarray) or isinstance(other, np.ndarray):
                    assert np.array_equal(value, other), (name, key)
                else:
                    assert value == other, (name, key)
            assert va.chunks == vb.chunks
            assert bool(va.compression) == bool(vb.compression)
            assert vb.attrs["kind"] == name.rsplit("/", 1)[-1]
            assert int(vb.attrs["level"]) == int(va.attrs["level"])
        assert b.get_attrs("results/r") == {"sigma": 1.5, "note": "run 1"}
        assert b.get_attrs("/")["project"] == "demo"
        assert "empty/group" in b


def test_round_trip_h5_zarr_h5(tmp_path, capsys):
    content = make_archive(tmp_path / "a.h5")
    assert main(["convert", str(tmp_path / "a.h5"), str(tmp_path / "b.zarr")]) == 0
    assert_same_archives(tmp_path / "a.h5", tmp_path / "b.zarr", content)
    assert main(["convert", str(tmp_path / "b.zarr"), str(tmp_path / "c.h5"), "-q"]) == 0
    assert_same_archives(tmp_path / "a.h5", tmp_path / "c.h5", content)
    assert "converted" in capsys.readouterr().out
    # An existing destination needs --overwrite, and is then replaced whole.
    code = main(["convert", str(tmp_path / "a.h5"), str(tmp_path / "b.zarr")])
    assert code == 2 and "--overwrite" in capsys.readouterr().err
    with fastct.open(tmp_path / "b.zarr", "a") as ar:
        ar.create_volume("extra", np.zeros((2, 2)))
    assert main(["convert", str(tmp_path / "a.h5"), str(tmp_path / "b.zarr"), "--overwrite"]) == 0
    assert_same_archives(tmp_path / "a.h5", tmp_path / "b.zarr", content)
    assert sorted(os.listdir(tmp_path)) == ["a.h5", "b.zarr", "c.h5"]


def test_one_volume_through_nifti_and_zarr(tmp_path, capsys):
    content = make_archive(tmp_path / "a.h5")
    image = content["/scans/a/image"]
    nii, zarr_vol = tmp_path / "ct.nii.gz", f"{tmp_path}/s.zarr:/scans/x/image"
    assert main(["convert", f"{tmp_path}/a.h5:/scans/a/image", str(nii)]) == 0
    assert main(["convert", str(nii), zarr_vol]) == 0
    assert main(["convert", zarr_vol, f"{tmp_path}/b.h5:/v"]) == 0
    with fastct.open(tmp_path / "a.h5") as a, fastct.open(tmp_path / "s.zarr") as z:
        src, got = a["scans/a/image"], z["scans/x/image"]
        assert np.array_equal(got.read(), image)
        assert np.allclose(got.spacing, src.spacing) and np.allclose(got.origin, src.origin)
        assert np.allclose(got.direction, src.direction, atol=1e-6)
        with fastct.open(tmp_path / "b.h5") as b:
            assert np.array_equal(b["v"].read(), image)
            assert b["v"].spacing == got.spacing and b["v"].origin == got.origin
            assert np.array_equal(b["v"].direction, got.direction)
    # archive volume -> archive volume keeps the free attributes too
    assert main(["convert", f"{tmp_path}/a.h5:/results/r/prob", f"{tmp_path}/s.zarr:/p"]) == 0
    with fastct.open(tmp_path / "s.zarr") as z:
        assert z["p"].attrs["kind"] == "prob" and z["p"].chunks == (4, 8, 8)
        assert np.array_equal(z["p"].read(), content["/results/r/prob"])


def test_convert_errors(tmp_path, capsys):
    make_archive(tmp_path / "a.h5")
    for argv in (
        ["convert", f"{tmp_path}/a.h5", f"{tmp_path}/x.nii.gz"],
        ["convert", f"{tmp_path}/missing.h5", f"{tmp_path}/x.zarr"],
        ["convert", f"{tmp_path}/a.h5", f"{tmp_path}/a.h5", "--overwrite"],
        ["convert", f"{tmp_path}/a.h5:/nope", f"{tmp_path}/x.nii"],
    ):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1, (argv, err)
    assert sorted(os.listdir(tmp_path)) == ["a.h5"]

"""Archives and volumes: round trips, metadata validation, transactional writes."""

import os

import h5py
import numpy as np
import pytest

import fastct
from fastct.volume import default_chunks

DTYPES = [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64, np.bool_]


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5, 6, 7), (1, 3, 1), (9, 11)])
def test_round_trip(archive_path, dtype, shape, rng):
    data = (rng.normal(size=shape) * 100).astype(dtype)
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume(
            "scans/a/image",
            data,
            spacing=[2.5] + [0.7] * (len(shape) - 1),
            origin=[-10.0] * len(shape),
            modality="CT",
            units="HU",
        )
    with fastct.open(archive_path) as ar:
        vol = ar["/scans/a/image"]
        assert vol.dtype == data.dtype and vol.shape == shape
        assert np.array_equal(vol.read(), data)
        assert np.array_equal(np.asarray(vol), data)
        assert vol.spacing == (2.5,) + (0.7,) * (len(shape) - 1)
        assert vol.origin == (-10.0,) * len(shape)
        assert vol.modality == "CT" and vol.units == "HU"
        assert vol.direction is None


def test_slicing_like_numpy(archive_path, rng):
    data = rng.integers(0, 1000, size=(10, 12, 14)).astype(np.int16)
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("v", data, chunks=(3, 4, 5))
    with fastct.open(archive_path) as ar:
        vol = ar["v"]
        for key in [
            (slice(2, 7), slice(None), slice(1, None, 3)),
            (4,),
            (Ellipsis, 3),
            (slice(None, None, -1), 2, slice(10, 1, -2)),
            (slice(None), slice(None, None, -3)),
            (-1, -2),
        ]:
            assert np.array_equal(vol[key], data[key]), key
        assert len(vol) == 10


def test_default_chunks_and_compression(archive_path, rng):
    data = rng.integers(-1000, 1000, size=(70, 130, 40)).astype(np.int16)
    assert default_chunks((400, 512, 512)) == (64, 64, 64)
    assert default_chunks((10, 512)) == (10, 256)
    with fastct.open(archive_path, "w") as ar:
        plain = ar.create_volume("plain", data)
        assert plain.chunks == (64, 64, 40)
        ar.create_volume("gz", data, compression="gzip", compression_opts=4, shuffle=True)
        ar.create_volume("lzf", data, compression="lzf", chunks=(16, 16, 16))
    with fastct.open(archive_path) as ar:
        assert ar["gz"].compression == "gzip" and ar["lzf"].chunks == (16, 16, 16)
        for name in ("plain", "gz", "lzf"):
            assert np.array_equal(ar[name].read(), data)


def test_direction_and_write_by_slices(archive_path):
    rot = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)
    with fastct.open(archive_path, "w") as ar:
        vol = ar.create_volume("v", shape=(4, 4, 4), dtype=np.float32, direction=rot)
        vol[1:3] = 5.0
        vol.spacing = (1, 2, 3)
    with fastct.open(archive_path) as ar:
        vol = ar["v"]
        assert np.array_equal(vol.direction, rot)
        assert vol.spacing == (1.0, 2.0, 3.0)
        assert vol[:].sum() == 5.0 * 32
        assert "/v" in ar.volumes() and "v" in ar and "w" not in ar
        assert "4 x 4 x 4 float32" in ar.summary()


def test_read_only_archive_refuses_writes(archive_path):
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("v", np.zeros((2, 2, 2)))
    with fastct.open(archive_path) as ar:
        with pytest.raises(PermissionError):
            ar["v"][0] = 1
        with pytest.raises(PermissionError):
            ar.create_volume("w", np.zeros((2, 2)))


def test_failed_transaction_leaves_file_unchanged(archive_path, tmp_path):
    data = np.arange(27, dtype=np.int16).reshape(3, 3, 3)
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("scans/a/image", data)
    before = archive_path.read_bytes()
    with pytest.raises(RuntimeError):
        with fastct.open(archive_path, "a") as ar:
            ar.create_volume("scans/b/image", data)
            ar["scans/a/image"][0] = 99
            raise RuntimeError("boom")
    assert archive_path.read_bytes() == before
    assert listing(tmp_path) == ["study.h5"]
    # Explicit abort too.
    ar = fastct.open(archive_path, "a")
    ar.delete("scans/a/image")
    ar.abort()
    assert archive_path.read_bytes() == before
    assert listing(tmp_path) == ["study.h5"]


def test_append_keeps_other_volumes(archive_path):
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("scans/a/image", np.ones((3, 3, 3), np.int16), spacing=(1, 2, 3))
    with fastct.open(archive_path, "a") as ar:
        ar.create_volume("scans/b/image", np.zeros((2, 2, 2), np.int16))
        with pytest.raises(FileExistsError, match="overwrite=True"):
            ar.create_volume("scans/b/image", np.zeros((2, 2, 2), np.int16))
        ar.create_volume("scans/b/image", np.full((2, 2, 2), 3, np.int16), overwrite=True)
    with fastct.open(archive_path) as ar:
        assert ar.volumes() == ["/scans/a/image", "/scans/b/image"]
        assert ar["scans/a/image"].spacing == (1.0, 2.0, 3.0)
        assert ar["scans/b/image"][0, 0, 0] == 3
        assert sorted(ar["scans"].keys()) == ["a", "b"]


def test_open_modes(archive_path):
    with pytest.raises(FileNotFoundError):
        fastct.open(archive_path)
    with pytest.raises(FileNotFoundError):
        fastct.open(archive_path, "r+")
    with pytest.raises(ValueError, match="mode"):
        fastct.open(archive_path, "rw")
    with fastct.open(archive_path, "x") as ar:
        ar.create_volume("v", np.zeros((2, 2)))
    with pytest.raises(FileExistsError):
        fastct.open(archive_path, "x")
    with fastct.open(archive_path, "w"):
        pass
    with fastct.open(archive_path) as ar:
        assert ar.volumes() == []
    with pytest.raises(FileNotFoundError, match="folder"):
        fastct.open(archive_path.parent / "missing" / "a.h5", "w")


def test_not_an_hdf5_file(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        fastct.open(bad)
    with pytest.raises(ValueError, match="not a readable HDF5"):
        fastct.open(bad, "a")
    assert bad.read_text() == "not hdf5"


@pytest.mark.parametrize(
    "attr,value",
    [
        ("spacing", [1.0, -2.0, 1.0]),
        ("spacing", [1.0, 2.0]),
        ("origin", [np.nan, 0, 0]),
        ("direction", np.ones((3, 3))),
        ("spacing", [0.0, 1.0, 1.0]),
    ],
)
def test_invalid_metadata_rejected_on_read(archive_path, attr, value):
    with h5py.File(archive_path, "w") as f:
        ds = f.create_dataset("v", data=np.zeros((2, 3, 4)))
        ds.attrs[attr] = value
    with fastct.open(archive_path) as ar:
        with pytest.raises(ValueError, match=attr):
            ar["v"]


def test_foreign_file_without_metadata_defaults(archive_path):
    with h5py.File(archive_path, "w") as f:
        f.create_dataset("img", data=np.ones((3, 4, 5), np.int16))
        f.create_dataset("vec", data=np.ones(3))
    with fastct.open(archive_path) as ar:
        vol = ar["img"]
        assert vol.spacing == (1.0, 1.0, 1.0) and vol.origin == (0.0, 0.0, 0.0)
        assert ar.volumes() == ["/img"]
        with pytest.raises(ValueError, match="2-D"):
            ar["vec"]


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        ({"spacing": (1, 1)}, ValueError, "spacing"),
        ({"spacing": (1, -1, 1)}, ValueError, "spacing"),
        ({"origin": (0, 0)}, ValueError, "origin"),
        ({"direction": np.ones((3, 3))}, ValueError, "direction"),
        ({"compression": "zstd"}, ValueError, "compression"),
        ({"compression": "gzip", "compression_opts": 12}, ValueError, "compression_opts"),
        ({"chunks": (0, 1, 1)}, ValueError, "chunks"),
        ({"modality": 5}, TypeError, "modality"),
    ],
)
def test_create_volume_bad_arguments(archive_path, kwargs, err, match):
    with fastct.open(archive_path, "w") as ar:
        with pytest.raises(err, match=match):
            ar.create_volume("v", np.zeros((2, 3, 4)), **kwargs)
        with pytest.raises(ValueError, match="shape and dtype"):
            ar.create_volume("w", shape=(2, 2, 2))
        with pytest.raises(TypeError, match="dtype"):
            ar.create_volume("w", np.array([["a"]]))
        with pytest.raises(ValueError, match="name"):
            ar.create_volume("../x", np.zeros((2, 2)))
        with pytest.raises(KeyError):
            ar["nothing/here"]


def test_external_links_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("secret", data=np.ones((2, 2, 2)))
    main = tmp_path / "main.h5"
    with h5py.File(main, "w") as f:
        f["link"] = h5py.ExternalLink(str(other), "/secret")
        layout = h5py.VirtualLayout(shape=(2, 2, 2), dtype="f8")
        layout[:] = h5py.VirtualSource(str(other), "secret", shape=(2, 2, 2))
        f.create_virtual_dataset("virtual", layout)
    with fastct.open(main) as ar:
        with pytest.raises(ValueError, match="external link"):
            ar["link"]
        with pytest.raises(ValueError, match="virtual dataset"):
            ar["virtual"]
    with fastct.open(main, allow_external=True) as ar:
        assert ar["link"].read().sum() == 8
        assert ar["virtual"].read().sum() == 8


def test_stale_temp_files_are_cleaned(archive_path, tmp_path):
    stale = tmp_path / ".fastct-tmp-999999999-abcd-study.h5"
    stale.write_bytes(b"partial")
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("v", np.zeros((2, 2)))
    assert not stale.exists()
    assert listing(tmp_path) == ["study.h5"]


def test_big_endian_and_repr(archive_path):
    data = np.arange(8, dtype=">i2").reshape(2, 2, 2)
    with fastct.open(archive_path, "w") as ar:
        vol = ar.create_volume("v", data)
        assert vol.dtype == np.dtype("<i2")
        assert "fastct.Volume" in repr(vol) and "fastct.Archive" in repr(ar)
    assert os.path.getsize(archive_path) > 0


def test_second_writer_in_same_process_is_refused_not_deadlocked(archive_path):
    with fastct.open(archive_path, "w"):
        pass
    with fastct.open(archive_path, "a") as ar:
        ar.create_volume("v", np.zeros((2, 2)))
        with pytest.raises(RuntimeError, match="already open for writing"):
            fastct.open(archive_path, "a")
        with fastct.open(archive_path) as reader:  # readers see the last published state
            assert reader.volumes() == []
    with fastct.open(archive_path) as ar:
        assert ar.volumes() == ["/v"]


def test_complex_dataset_refused(archive_path):
    with h5py.File(archive_path, "w") as f:
        f.create_dataset("c", data=np.ones((2, 2, 2), np.complex64))
    with fastct.open(archive_path) as ar:
        with pytest.raises(ValueError, match="complex64"):
            ar["c"]


def test_get_attrs_reads_groups_volumes_and_the_root(archive_path):
    with fastct.open(archive_path, "w") as ar:
        ar.create_volume("scans/a/image", np.zeros((2, 3, 4), np.int16))
        ar.set_attrs("scans/a", study_date="2026-01-02")
    with fastct.open(archive_path) as ar:
        assert ar.get_attrs("scans/a")["study_date"] == "2026-01-02"
        assert "spacing" in ar.get_attrs("scans/a/image")
        assert isinstance(ar.get_attrs("/"), dict)
        attrs = ar.get_attrs("scans/a")
        attrs["study_date"] = "changed"  # a copy: the archive is not touched
        assert ar.get_attrs("scans/a")["study_date"] == "2026-01-02"
        with pytest.raises(KeyError, match="not found"):
            ar.get_attrs("scans/missing")

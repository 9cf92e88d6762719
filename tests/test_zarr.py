"""Zarr v3 / OME-Zarr archives: the HDF5 Archive/Volume API on a .zarr store, OME-NGFF 0.5
metadata, per-volume atomic publishing, concurrent writers and real kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fastct
from fastct.volume import ArchiveDamagedError

zarr = pytest.importorskip("zarr")

WRITER = Path(__file__).parent / "helpers" / "slow_writer.py"
KIND_SUFFIX = {"h5": ".h5", "zarr": ".zarr"}


@pytest.fixture
def image():
    rng = np.random.default_rng(3)
    return rng.integers(-1000, 2000, size=(9, 13, 11)).astype(np.int16)


def meta_kw():
    direction = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])
    return {
        "spacing": (2.5, 0.7, 0.8),
        "origin": (-10.0, 3.5, 100.25),
        "direction": direction,
        "modality": "CT",
        "units": "HU",
    }


# -- the same API on both backends --------------------------------------------------------
@pytest.mark.parametrize("kind", ["h5", "zarr"])
def test_same_api_on_both_backends(tmp_path, image, kind):
    path = tmp_path / f"study{KIND_SUFFIX[kind]}"
    with fastct.open(path, "w") as ar:
        vol = ar.create_volume("scans/a/image", image, chunks=(4, 5, 6), **meta_kw())
        assert isinstance(vol, fastct.Volume)
        ar.create_volume("scans/a/labels/lung", (image > 0).astype(np.uint8))
        empty = ar.create_volume_like("results/r/smooth", vol, dtype=np.float32)
        empty.write_region((slice(0, 4), slice(0, 13), slice(0, 11)), np.ones((4, 13, 11), "f4"))
        ar.set_attrs("results/r", sigma=1.5, note="run")
    assert sorted(os.listdir(tmp_path)) == [path.name]  # nothing else left behind
    with fastct.open(path) as ar:
        assert isinstance(ar, fastct.Archive)
        assert ar.keys() == ["results", "scans"]
        assert ar.volumes() == ["/results/r/smooth", "/scans/a/image", "/scans/a/labels/lung"]
        vol = ar["scans/a/image"]
        assert (vol.shape, vol.dtype, vol.chunks) == (image.shape, np.int16, (4, 5, 6))
        assert vol.spacing == (2.5, 0.7, 0.8) and vol.origin == (-10.0, 3.5, 100.25)
        assert np.array_equal(vol.direction, meta_kw()["direction"])
        assert (vol.modality, vol.units) == ("CT", "HU")
        assert np.array_equal(vol.read(), image)
        for key in [np.s_[2], np.s_[1:7:2, ::-1, 3], np.s_[..., ::-3], np.s_[-1, -2, -3]]:
            assert np.array_equal(vol[key], image[key]), key
        out = np.empty((3, 4, 5), np.int16)
        vol.read_region((slice(1, 4), slice(2, 6), slice(3, 8)), out)
        assert np.array_equal(out, image[1:4, 2:6, 3:8])
        smooth = ar["results/r/smooth"]
        assert smooth.dtype == np.float32 and smooth.chunks == (4, 5, 6)
        assert smooth.read()[:4].min() == 1 and smooth.read()[4:].max() == 0
        assert smooth.spacing == vol.spacing
        assert ar.get_attrs("results/r") == {"sigma": 1.5, "note": "run"}
        assert ar.get_attrs("/")["fastct_format"] == "fastct-archive"
        assert isinstance(ar["scans/a"], fastct.volume.Group)
        assert ar["scans/a"].keys() == ["image", "labels"]
        assert "scans/a/labels/lung" in ar and "scans/zzz" not in ar
        assert "/scans/a/image: 9 x 13 x 11 int16" in ar.summary()
        with pytest.raises(PermissionError):
            vol[0] = 1
        with pytest.raises(KeyError):
            ar["nope"]
    with fastct.open(path, "r+") as ar:
        with pytest.raises(FileExistsError, match="overwrite=True"):
            ar.create_volume("scans/a/image", image)
        ar.delete("scans/a/labels")
        assert "scans/a/labels/lung" not in ar
        ar["scans/a/image"].spacing = (1.0, 1.0, 1.0)
        ar["scans/a/image"][0] = 5
    with fastct.open(path) as ar:
        assert ar.volumes() == ["/results/r/smooth", "/scans/a/image"]
        vol = ar["scans/a/image"]
        assert vol.spacing == (1.0, 1.0, 1.0) and vol.origin == (-10.0, 3.5, 100.25)
        assert np.all(vol[0] == 5) and np.array_equal(vol[1:], image[1:])


def test_abort_discards_everything(tmp_path, image):
    path = tmp_path / "s.zarr"
    with fastct.open(path, "w") as ar:
        ar.create_volume("scans/a/image", image)
    before = sorted(str(p.relative_to(path)) for p in path.rglob("*"))
    with pytest.raises(RuntimeError), fastct.open(path, "a") as ar:
        ar.create_volume("scans/b/image", image)
        ar["scans/a/image"][...] = 0
        ar["scans/a/image"].origin = (5, 5, 5)
        ar.delete("scans/a")
        raise RuntimeError("boom")
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*")) == before
    with fastct.open(path) as ar:
        assert np.array_equal(ar["scans/a/image"].read(), image)
        assert ar["scans/a/image"].origin == (0.0, 0.0, 0.0)


def test_compression_and_cross_backend_like(tmp_path, image):
    with fastct.open(tmp_path / "a.h5", "w") as h5:
        src = h5.create_volume("v", image, compression="lzf")
        with fastct.open(tmp_path / "a.zarr", "w") as zr:
            z = zr.create_volume_like("v", src)
            assert z.compression == "zstd"
            z.write_region((slice(0, 9), slice(0, 13), slice(0, 11)), image)
            g = zr.create_volume("g", image, compression="gzip", compression_opts=6)
            assert g.compression == "gzip"
            back = h5.create_volume_like("back", z)  # zstd -> HDF5's gzip
            assert back.compression == "gzip"
    with fastct.open(tmp_path / "a.zarr") as zr:
        assert np.array_equal(zr["v"].read(), image) and np.array_equal(zr["g"].read(), image)
    with (
        fastct.open(tmp_path / "b.zarr", "w") as zr,
        pytest.raises(ValueError, match="compression"),
    ):
        zr.create_volume("v", image, compression="szip")


def test_bool_2d_and_float_volumes(tmp_path):
    rng = np.random.default_rng(1)
    data = {
        "mask": rng.random((7, 9)) > 0.5,
        "f64": rng.normal(size=(3, 4, 5)),
        "u8": rng.integers(0, 255, (2, 70, 3)).astype(np.uint8),
    }
    with fastct.open(tmp_path / "s.zarr", "w") as ar:
        for name, arr in data.items():
            ar.create_volume(name, arr)
    with fastct.open(tmp_path / "s.zarr") as ar:
        for name, arr in data.items():
            got = ar[name].read()
            assert got.dtype == arr.dtype and np.array_equal(got, arr)
        assert ar["mask"].chunks == (7, 9)


# -- OME-NGFF 0.5 ---------------------------------------------------------------------------
def check_ngff_05_image(folder: Path) -> dict:
    """The required keys of an OME-NGFF 0.5 image group (spec section "multiscales"),
    checked by hand: no network, no schema package."""
    doc = json.loads((folder / "zarr.json").read_text())
    assert doc["zarr_format"] == 3 and doc["node_type"] == "group"
    ome = doc["attributes"]["ome"]
    assert ome["version"] == "0.5"
    multiscales = ome["multiscales"]
    assert isinstance(multiscales, list) and len(multiscales) >= 1
    for ms in multiscales:
        axes = ms["axes"]
        assert 2 <= len(axes) <= 5
        names = [a["name"] for a in axes]
        assert len(set(names)) == len(names)
        types = [a.get("type") for a in axes]
        assert 2 <= types.count("space") <= 3
        assert types[-types.count("space") :] == ["space"] * types.count("space")
        for a in axes:
            if a.get("type") == "space" and "unit" in a:
                assert a["unit"] in ("millimeter", "micrometer", "meter", "nanometer")
        datasets = ms["datasets"]
        assert len(datasets) >= 1
        for ds in datasets:
            transforms = ds["coordinateTransformations"]
            assert transforms[0]["type"] == "scale" and len(transforms[0]["scale"]) == len(axes)
            assert all(s > 0 for s in transforms[0]["scale"])
            assert len(transforms) <= 2
            if len(transforms) == 2:
                assert transforms[1]["type"] == "translation"
                assert len(transforms[1]["translation"]) == len(axes)
            array = json.loads((folder / ds["path"] / "zarr.json").read_text())
            assert array["zarr_format"] == 3 and array["node_type"] == "array"
            assert len(array["shape"]) == len(axes)
    return ome


def test_ome_ngff_metadata(tmp_path, image):
    path = tmp_path / "s.zarr"
    with fastct.open(path, "w") as ar:
        ar.create_volume("scans/a/image", image, **meta_kw())
        ar.create_volume("scans/a/slice", image[0], spacing=(0.7, 0.8), origin=(1.0, 2.0))
    ome = check_ngff_05_image(path / "scans" / "a" / "image")
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert ms["axes"][0]["unit"] == "millimeter"
    scale, translation = ms["datasets"][0]["coordinateTransformations"]
    assert scale["scale"] == [2.5, 0.7, 0.8]
    assert translation["translation"] == [-10.0, 3.5, 100.25]
    ome2 = check_ngff_05_image(path / "scans" / "a" / "slice")
    assert [a["name"] for a in ome2["multiscales"][0]["axes"]] == ["y", "x"]
    # A plain zarr reader opens the full-resolution array.
    arr = zarr.open_array(str(path / "scans" / "a" / "image" / "0"), mode="r")
    assert np.array_equal(arr[...], image)
    # Changing the spacing keeps the NGFF scale in step.
    with fastct.open(path, "a") as ar:
        ar["scans/a/image"].spacing = (3.0, 1.0, 1.0)
    ome = check_ngff_05_image(path / "scans" / "a" / "image")
    assert ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [
        3.0,
        1.0,
        1.0,
    ]


# -- not a fastct archive -------------------------------------------------------------------
def test_foreign_zarr_is_a_clear_error(tmp_path):
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w").attrs["x"] = 1
    for mode in ("r", "r+", "a"):
        with pytest.raises(ValueError, match="not a fastct archive"):
            fastct.open(foreign, mode)
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    with pytest.raises(ValueError, match="not a fastct archive.*no zarr.json"):
        fastct.open(empty)
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(ValueError, match="not a Zarr store"):
        fastct.open(tmp_path / "file.zarr")
    with pytest.raises(FileNotFoundError):
        fastct.open(tmp_path / "missing.zarr")
    with pytest.raises(FileExistsError):
        fastct.open(foreign, "x")
    # A damaged zarr.json is reported like a damaged HDF5 file.
    good = tmp_path / "good.zarr"
    with fastct.open(good, "w") as ar:
        ar.create_volume("v", np.zeros((2, 2)))
    (good / "v" / "zarr.json").write_text("{not json")
    with fastct.open(good) as ar, pytest.raises(ArchiveDamagedError, match="good.zarr"):
        ar["v"]
    # So is a chunk that cannot be decoded; a bad key keeps its own error.
    data = np.arange(16 * 16 * 16, dtype=np.int16).reshape(16, 16, 16)
    with fastct.open(good, "w") as ar:
        ar.create_volume("raw", data, chunks=(8, 8, 8))
        ar.create_volume("gz", data, chunks=(8, 8, 8), compression="gzip")
    for name in ("raw", "gz"):
        (good / name / "0" / "c" / "1" / "0" / "1").write_bytes(b"garbage")
    with fastct.open(good) as ar:
        for name in ("raw", "gz"):
            assert np.array_equal(ar[name][:8], data[:8])  # the other chunks read fine
            with pytest.raises(ArchiveDamagedError, match=f"good.zarr.*'/{name}'"):
                ar[name].read()
        with pytest.raises(IndexError):
            ar["raw"][16]
        with pytest.raises(ValueError, match="step"):
            ar["raw"][::0]


# -- concurrency and kills --------------------------------------------------------------------
PARALLEL_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    import fastct
    path, name, value, barrier = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    with fastct.open(path, "a") as ar:
        vol = ar.create_volume(name, shape=(8, 16, 16), dtype=np.int16, chunks=(2, 16, 16))
        (barrier / str(value)).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # both transactions are open before either writes
        print("started" if len(list(barrier.iterdir())) == 2 else "alone", flush=True)
        for z in range(0, 8, 2):
            time.sleep(0.15)
            vol.write_region((slice(z, z + 2), slice(0, 16), slice(0, 16)),
                             np.full((2, 16, 16), value + z, np.int16))
    print("committed", flush=True)
    """
)


def test_two_processes_write_distinct_volumes_at_once(tmp_path):
    path = tmp_path / "shared.zarr"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    with fastct.open(path, "w") as ar:
        ar.create_volume("scans/old/image", np.ones((2, 3, 4), np.int16))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                PARALLEL_WRITER,
                str(path),
                f"scans/p{i}/image",
                str(100 * i),
                str(barrier),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in (1, 2)
    ]
    starts = []
    for p in procs:
        starts.append(p.stdout.readline())
    outs = [p.communicate(timeout=120) for p in procs]
    assert starts == [b"started\n"] * 2  # both transactions were open at the same time
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err.decode()
    with fastct.open(path) as ar:
        assert ar.volumes() == ["/scans/old/image", "/scans/p1/image", "/scans/p2/image"]
        for i in (1, 2):
            data = ar[f"scans/p{i}/image"].read()
            expected = (100 * i + 2 * (np.arange(8) // 2)).astype(np.int16)
            assert np.array_equal(data[:, 0, 0], expected)
        assert ar["scans/old/image"].read().sum() == 24


@pytest.fixture(scope="module")
def crash_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zcrash")
    rng = np.random.default_rng(0)
    image = rng.integers(-1000, 1000, size=(24, 32, 32)).astype(np.int16)
    other = rng.integers(-1000, 1000, size=(8, 16, 16)).astype(np.int16)
    src = folder / "src.zarr"
    with fastct.open(src, "w") as ar:
        ar.create_volume("scans/a/image", image, chunks=(4, 16, 16))
    return folder, src, image, other


def tree_state(path: Path) -> dict:
    """Every file under ``path`` with its bytes (chunks and metadata)."""
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def start_writer(src, dst):
    env = dict(os.environ, FASTCT_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(src), str(dst), "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout.readline() == b"started\n", proc.stderr.read().decode()
    return proc


def fresh_destination(folder, other, name):
    dst = folder / f"dst-{name}.zarr"
    with fastct.open(dst, "w") as ar:
        ar.create_volume("scans/b/image", other, spacing=(1, 2, 3))
        ar.create_volume("scans/c/image", other[::-1].copy())
    return dst


@pytest.fixture(scope="module")
def writer_seconds(crash_files):
    """How long the writer's transaction lasts on this machine now (from 'started' to
    its exit), so that kill times cover all of it under any load."""
    folder, src, _, other = crash_files
    dst = fresh_destination(folder, other, "calibrate")
    proc = start_writer(src, dst)
    t0 = time.perf_counter()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"committed" in out, err.decode()
    return time.perf_counter() - t0


def kill_trials(crash_files, writer_seconds, sig, trials):
    folder, src, image, other = crash_files
    src_state = tree_state(src)
    rng = np.random.default_rng(int(sig) + 17)
    outcomes = []
    for trial in range(trials):
        dst = fresh_destination(folder, other, f"{sig.name}-{trials}-{trial}")
        c_state = tree_state(dst / "scans" / "c")
        proc = start_writer(src, dst)
        # Kill times are spread over the transaction: writing, then publishing on close.
        time.sleep(float(rng.uniform(0.0, 1.1)) * writer_seconds)
        if proc.poll() is None:
            proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        assert tree_state(src) == src_state, "the source store changed"
        assert tree_state(dst / "scans" / "c") == c_state, "an untouched volume changed"
        with fastct.open(dst) as ar:
            visible = ar.volumes()
            assert set(visible) <= {"/scans/b/image", "/scans/c/image", "/scans/new/image"}
            new = "/scans/new/image" in visible
            if new:  # present means complete
                assert np.array_equal(ar["scans/new/image"].read(), -image)
            b = ar["scans/b/image"].read()
            changed = bool(np.all(b == 7))
            assert changed or np.array_equal(b, other), "scans/b is half-written"
            assert ar["scans/b/image"].spacing == (1.0, 2.0, 3.0)
            outcomes.append((new, changed))
        if b"committed" in out:
            assert outcomes[-1] == (True, True)
        if changed:
            assert new  # published in the order made: the new volume first
        # The next writer removes what the killed one left behind.
        with fastct.open(dst, "a"):
            pass
        assert list(dst.glob(".fastct-tmp-*")) == []
    return outcomes


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_random_kills_leave_zarr_volumes_intact(crash_files, writer_seconds, sig):
    print(sig.name, kill_trials(crash_files, writer_seconds, sig, 2))


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_many_random_kills_leave_zarr_volumes_intact(crash_files, writer_seconds, sig):
    outcomes = kill_trials(crash_files, writer_seconds, sig, 15)
    print(sig.name, outcomes)
    assert len(set(outcomes)) >= 2  # the kills landed in different phases


def test_transaction_view_of_pending_changes(tmp_path, image):
    path = tmp_path / "s.zarr"
    with fastct.open(path, "w") as ar:
        ar.create_volume("scans/a/image", image)
        ar.create_volume("scans/a/mask", image > 0)
    with fastct.open(path, "a") as ar:
        ar.delete("scans/a")
        assert ar.volumes() == [] and "scans/a" not in ar
        ar.create_volume("scans/a/image", image[:2])
        assert ar.volumes() == ["/scans/a/image"] and ar["scans/a"].keys() == ["image"]
        assert ar["scans/a/image"].shape == (2, 13, 11)
        # published only on close: another reader still sees the old state
        with fastct.open(path) as other:
            assert other.volumes() == ["/scans/a/image", "/scans/a/mask"]
            assert other["scans/a/image"].shape == image.shape
        # hidden temporary folders are never members
        assert not any(k.startswith(".") for k in ar.keys())
    with fastct.open(path) as ar:
        assert ar.volumes() == ["/scans/a/image"]
        assert np.array_equal(ar["scans/a/image"].read(), image[:2])


def test_streamed_filters_on_zarr_equal_in_memory(tmp_path):
    """Zarr volumes stream through the engine like HDF5 ones: chunked == in-memory."""
    rng = np.random.default_rng(11)
    image = rng.normal(size=(13, 21, 17)).astype(np.float32)
    with fastct.open(tmp_path / "s.zarr", "w") as ar:
        src = ar.create_volume("in", image, chunks=(4, 8, 5))
        smooth = ar.create_volume_like("g", src)
        fastct.gaussian(src, 1.5, out=smooth)
        med = ar.create_volume_like("m", src)
        fastct.median(src, 3, out=med)
    with fastct.open(tmp_path / "s.zarr") as ar:
        assert np.array_equal(ar["g"].read(), fastct.gaussian(image, 1.5))
        assert np.array_equal(ar["m"].read(), fastct.median(image, 3))


@pytest.mark.slow
def test_pipeline_on_zarr_equals_hdf5(tmp_path, monkeypatch):
    """The whole lung-CT pipeline on a Zarr archive writes the same volumes, bit for bit,
    and the same tables as on HDF5."""
    from fastct.cli import main

    monkeypatch.chdir(tmp_path)
    for suffix in (".zarr", ".h5"):
        assert main(["phantom", f"p{suffix}", "--size", "tiny", "--seed", "3", "-q"]) == 0
        argv = ["pipeline", f"p{suffix}", "--baseline", "/scans/phantom/baseline"]
        argv += ["--followup", "/scans/phantom/followup", "--out", f"run{suffix[1:]}", "-q"]
        assert main(argv) == 0
    for table in ("nodules.csv", "detections_followup.csv", "transform.json"):
        assert (tmp_path / "runzarr" / table).read_bytes() == (
            tmp_path / "runh5" / table
        ).read_bytes()
    with fastct.open("p.zarr") as z, fastct.open("p.h5") as h:
        names = z.volumes()
        assert [n.replace("/runzarr/", "/runh5/") for n in names] == h.volumes()
        for name in names:
            other = h[name.replace("/runzarr/", "/runh5/")]
            assert np.array_equal(z[name].read(), other.read()), name
            assert z[name].metadata().keys() == other.metadata().keys()
            assert z[name].spacing == other.spacing and z[name].origin == other.origin

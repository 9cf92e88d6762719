"""fastct.batch: results into one Zarr store or one merged HDF5 archive, and the
pipeline per scan pair; each equal to the serial run, resumable."""

from __future__ import annotations

import numpy as np
import pytest

import fastct

pytest.importorskip("distributed")
pytest.importorskip("zarr")
batch = pytest.importorskip("fastct.batch")

SIGMA = 1.1
UNREACHABLE = "tcp://127.0.0.1:1"  # a rerun that needs no task must not contact it


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:  # fmt: skip
        yield cluster.scheduler_address


def _study(path, seed=0):
    """An archive of three scans of different shapes and spacings; {id: (array, spacing)}."""
    rng = np.random.default_rng(seed)
    scans = {}
    with fastct.open(path, "w") as ar:
        for i, shape in enumerate([(9, 12, 10), (11, 8, 13), (6, 10, 10)]):
            a = rng.integers(-1000, 1000, shape).astype(np.int16)
            spacing = (2.0 + i, 0.8, 0.7)
            ar.create_volume(f"scans/s{i}/image", a, spacing=spacing, origin=(i, 0.0, -1.0))
            scans[f"s{i}"] = (a, spacing)
    return scans


def _check(out, scans, operation="gaussian"):
    with fastct.open(out) as ar:
        assert sorted(ar["results"].keys()) == sorted(scans)
        for scan_id, (a, spacing) in scans.items():
            vol = ar[f"results/{scan_id}/{operation}"]
            assert vol.spacing == spacing and vol.origin[0] == float(scan_id[1:])
            expected = fastct.gaussian(a, SIGMA, spacing=spacing)
            assert vol.dtype == expected.dtype
            assert np.array_equal(vol.read(), expected)  # bit for bit


@pytest.mark.parametrize(("src", "dst"), [("study.h5", "out.zarr"), ("study.zarr", "out.h5")])
def test_one_archive_output_equals_serial_and_resumes(tmp_path, scheduler, src, dst):
    scans = _study(tmp_path / src)
    out = tmp_path / dst
    res = batch.run_batch(tmp_path / src, out, params={"sigma": SIGMA}, scheduler=scheduler)
    assert res.written == sorted(scans) and res.skipped == [] and res.failed == {}
    _check(out, scans)
    # nothing left beside the output but the output itself (no per-task files)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src, dst])
    again = batch.run_batch(tmp_path / src, out, params={"sigma": SIGMA}, scheduler=UNREACHABLE)
    assert again.skipped == sorted(scans) and again.written == []
    # a new scan: only that one is computed
    with fastct.open(tmp_path / src, "a") as ar:
        a = np.arange(7 * 8 * 9, dtype=np.int16).reshape(7, 8, 9)
        ar.create_volume("scans/s3/image", a, spacing=(1.0, 1.0, 1.0), origin=(3, 0, -1))
    scans["s3"] = (a, (1.0, 1.0, 1.0))
    more = batch.run_batch(tmp_path / src, out, params={"sigma": SIGMA}, scheduler=scheduler)
    assert more.written == ["s3"] and more.skipped == ["s0", "s1", "s2"]
    _check(out, scans)


def test_h5_merge_interrupted_is_resumed_without_recomputing(tmp_path, scheduler, monkeypatch):
    scans = _study(tmp_path / "study.h5", seed=3)
    out = tmp_path / "out.h5"

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt("stopped before the merge")

    with monkeypatch.context() as m:
        m.setattr(batch, "_merge", stopped)
        with pytest.raises(KeyboardInterrupt):
            batch.run_batch(tmp_path / "study.h5", out, params={"sigma": SIGMA},
                            scheduler=scheduler)  # fmt: skip
    assert not out.exists()
    parts = tmp_path / ".out.h5.parts"
    assert sorted(p.name for p in parts.iterdir()) == ["s0.h5", "s1.h5", "s2.h5"]
    # the rerun merges them and contacts no scheduler (nothing to compute)
    res = batch.run_batch(tmp_path / "study.h5", out, params={"sigma": SIGMA},
                          scheduler=UNREACHABLE)  # fmt: skip
    assert res.written == sorted(scans) and res.failed == {}
    assert not parts.exists()
    _check(out, scans)
    # resume=False recomputes and replaces every result, one archive still
    res = batch.run_batch(tmp_path / "study.h5", out, params={"sigma": SIGMA},
                          scheduler=scheduler, resume=False)  # fmt: skip
    assert res.written == sorted(scans) and res.skipped == []
    _check(out, scans)


def test_output_argument_errors(tmp_path):
    _study(tmp_path / "study.h5")
    (tmp_path / "dir.h5").mkdir()
    with pytest.raises(ValueError, match="is a folder, not an HDF5 archive"):
        batch.run_batch(tmp_path / "study.h5", tmp_path / "dir.h5", local_workers=1)
    (tmp_path / "alien.zarr").mkdir()
    (tmp_path / "alien.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    with pytest.raises(ValueError, match="not a fastct archive"):
        batch.run_batch(tmp_path / "study.h5", tmp_path / "alien.zarr", local_workers=1)
    with pytest.raises(ValueError, match="one folder per pair"):
        batch.run_batch(tmp_path / "study.h5", tmp_path / "o.zarr", operation="pipeline",
                        local_workers=1)  # fmt: skip
    with pytest.raises(ValueError, match="has no scan pair"):
        batch.run_batch(tmp_path / "study.h5", tmp_path / "o", operation="pipeline",
                        local_workers=1)  # fmt: skip
    with pytest.raises(ValueError, match="takes one archive"):
        batch.run_batch([tmp_path / "a.npy"], tmp_path / "o", operation="pipeline",
                        local_workers=1)  # fmt: skip
    # a file named so that its id would name the output's parent: refused before any work
    (tmp_path / "o").mkdir()
    for name in ("..h5", "...h5", ".npy"):
        np.save(tmp_path / "x.npy", np.zeros((2, 3, 4), np.float32))
        (tmp_path / "x.npy").rename(tmp_path / name)
        with pytest.raises(ValueError, match="gives no usable scan name"):
            batch.run_batch([tmp_path / name], tmp_path / "o", local_workers=1)
    assert list((tmp_path / "o").iterdir()) == []


@pytest.mark.slow  # two tiny phantom pairs through the whole pipeline: about 30 s warm
def test_pipeline_per_pair_equals_serial_run_and_resumes(tmp_path, scheduler):
    import hashlib
    import json
    import shutil

    from fastct.cli import main as cli
    from fastct.pipeline import run as run_pipeline

    study = tmp_path / "study.h5"
    for seed in (1, 2):
        assert cli(["phantom", str(study), "--size", "tiny", "--seed", str(seed),
                    "--prefix", f"scans/p{seed}", "--quiet"]) == 0  # fmt: skip
    digest = hashlib.sha256(study.read_bytes()).hexdigest()
    out = tmp_path / "pairs"
    res = batch.run_batch(study, out, operation="pipeline", params={"report": False},
                          scheduler=scheduler)  # fmt: skip
    assert res.written == ["p1", "p2"] and res.failed == {}
    assert hashlib.sha256(study.read_bytes()).hexdigest() == digest  # inputs only read
    assert sorted(p.name for p in out.iterdir()) == ["p1", "p2"]  # no temporary left
    # the serial run of pair p1 on a copy of the archive
    serial = tmp_path / "serial.h5"
    shutil.copy(study, serial)
    run_pipeline(serial, "/scans/p1/baseline", "/scans/p1/followup", out_dir=tmp_path / "ref",
                 run_name="pipeline", report=False, progress=False)  # fmt: skip
    with fastct.open(out / "p1" / "results.h5") as got, fastct.open(serial) as ref:
        names = [n for n in ref.volumes() if n.startswith("/results/pipeline/")]
        assert len(names) >= 8
        assert [n for n in got.volumes() if n.startswith("/results/")] == names
        for name in names:
            assert np.array_equal(got[name].read(), ref[name].read()), name
        assert got.get_attrs("/scans/p1/truth")["seed"] == 1  # truth copied with the pair
    for table in ("nodules.csv", "detections_baseline.csv", "detections_followup.csv"):
        assert (out / "p1" / "report" / table).read_text() == (tmp_path / "ref" / table).read_text()
    summary = json.loads((out / "p1" / "report" / "summary.json").read_text())
    assert summary["archive"] == str((out / "p1" / "results.h5").resolve())
    assert summary["truth"] is not None
    again = batch.run_batch(study, out, operation="pipeline", scheduler=UNREACHABLE)
    assert again.skipped == ["p1", "p2"] and again.written == []
    # a Zarr input archive gives the same results
    assert cli(["convert", str(study), str(tmp_path / "study.zarr"), "--quiet"]) == 0
    res = batch.run_batch(tmp_path / "study.zarr", tmp_path / "z", operation="pipeline",
                          params={"report": False}, scheduler=scheduler)  # fmt: skip
    assert res.written == ["p1", "p2"]
    for pair in ("p1", "p2"):
        with fastct.open(tmp_path / "z" / pair / "results.h5") as z, \
                fastct.open(out / pair / "results.h5") as h:  # fmt: skip
            assert z.volumes() == h.volumes()
            for name in h.volumes():
                assert np.array_equal(z[name].read(), h[name].read()), name


def test_cli_batch_options_belong_to_the_operation(tmp_path, capsys):
    from fastct.cli import main

    np.save(tmp_path / "a.npy", np.zeros((4, 5, 6), np.int16))
    args = ["batch", str(tmp_path / "a.npy"), "--out", str(tmp_path / "o.zarr"),
            "--scheduler", UNREACHABLE]  # fmt: skip
    assert main([*args, "--operation", "median", "--sigma", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--sigma: not an option of --operation median" in err[0]
    assert main([*args, "--no-report", "--size", "3"]) == 2
    assert "--no-report, --size: not an option of --operation gaussian" in capsys.readouterr().err
    assert main(args) == 2
    assert "--sigma is required with --operation gaussian" in capsys.readouterr().err
    assert not (tmp_path / "o.zarr").exists()

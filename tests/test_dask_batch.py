"""fastct.batch: one task per scan on dask.distributed; results equal the serial run."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

import fastct

pytest.importorskip("distributed")
batch = pytest.importorskip("fastct.batch")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_a_clear_error_not_a_hang(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 5, 6), np.float32))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"scheduler tcp://127\.0\.0\.1:\d+ could not be reached"):
        batch.run_batch([tmp_path / "a.npy"], tmp_path / "out", params={"sigma": 1.0},
                        scheduler=f"tcp://127.0.0.1:{_free_port()}", connect_timeout=1.0)  # fmt: skip
    assert time.perf_counter() - t0 < 20


def test_bad_arguments(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((4, 5, 6), np.float32))
    files = [tmp_path / "a.npy"]
    with pytest.raises(ValueError, match="operation must be one of"):
        batch.run_batch(files, tmp_path / "o", operation="slic", local_workers=1)
    with pytest.raises(ValueError, match="exactly one of scheduler"):
        batch.run_batch(files, tmp_path / "o")
    with pytest.raises(ValueError, match="two scans are named 'a'"):
        batch.run_batch([*files, tmp_path / "x" / "a.npy"], tmp_path / "o", local_workers=1)
    with pytest.raises(ValueError, match="has no scans"):
        with fastct.open(tmp_path / "e.h5", "w") as ar:
            ar.create_volume("other/v", np.zeros((2, 2, 2), np.float32))
        batch.run_batch(tmp_path / "e.h5", tmp_path / "o", local_workers=1)
    assert batch.main(["--out", str(tmp_path / "o"), "--scheduler", "nowhere", str(files[0])]) == 2


@pytest.mark.slow  # a LocalCluster of two processes: about 20-30 s
def test_local_cluster_batch_equals_serial_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    files, arrays = [], {}
    for i in range(4):
        a = rng.standard_normal((10 + i, 16, 14)).astype(np.float32)
        path = tmp_path / f"scan{i}.npy"
        np.save(path, a)
        files.append(path)
        arrays[f"scan{i}"] = a
    out = tmp_path / "out"
    # a path missing here is refused before any work; a scan that fails on a worker
    # (a damaged file) is reported and the others go on
    with pytest.raises(ValueError, match="missing.npy' does not exist"):
        batch.run_batch(files + [tmp_path / "missing.npy"], out, local_workers=2)
    (tmp_path / "damaged.npy").write_bytes(b"\x93NUMPY not really")
    res = batch.run_batch(files + [tmp_path / "damaged.npy"], out, params={"sigma": 1.2},
                          local_workers=2, retries=0)  # fmt: skip
    assert res.written == sorted(arrays) and res.skipped == []
    assert list(res.failed) == ["damaged"] and res.failed["damaged"]
    for scan_id, a in arrays.items():
        with fastct.open(out / f"{scan_id}.h5") as ar:
            got = ar["results/gaussian"].read()
        assert np.array_equal(got, fastct.gaussian(a, 1.2, spacing=(1.0, 1.0, 1.0)))
    again = batch.run_batch(files, out, params={"sigma": 1.2}, local_workers=1)
    assert again.skipped == sorted(arrays) and again.written == []
    # an archive as input: every scans/<id>/image
    with fastct.open(tmp_path / "study.h5", "w") as ar:
        for scan_id in ("p1", "p2"):
            ar.create_volume(f"scans/{scan_id}/image", arrays["scan0"], spacing=(2.0, 1.0, 1.0))
    res = batch.run_batch(tmp_path / "study.h5", tmp_path / "out2", operation="median",
                          params={"size": 3}, local_workers=2)  # fmt: skip
    assert res.written == ["p1", "p2"]
    with fastct.open(tmp_path / "out2" / "p2.h5") as ar:
        vol = ar["results/median"]
        assert vol.spacing == (2.0, 1.0, 1.0)
        assert np.array_equal(vol.read(), fastct.median(arrays["scan0"], size=3))


@pytest.mark.slow  # a LocalCluster of two processes, one killed mid-batch: about 10 s each
@pytest.mark.parametrize("out_name", ["out", "out.zarr", "out.h5"])
def test_worker_killed_mid_batch_every_result_exactly_once(tmp_path, out_name):
    import os
    import signal
    import threading

    from distributed import Client, LocalCluster

    rng = np.random.default_rng(1)
    files, arrays = [], {}
    for i in range(6):
        a = rng.integers(-1000, 1000, (40, 64, 64)).astype(np.int16)
        np.save(tmp_path / f"s{i}.npy", a)
        files.append(tmp_path / f"s{i}.npy")
        arrays[f"s{i}"] = a
    out = tmp_path / out_name
    killed: list[int] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:  # fmt: skip
        pids = client.run(os.getpid)

        def kill_one_busy_worker():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                busy = [w for w, tasks in client.processing().items() if tasks]
                if busy and any(str(t).startswith("fastct-batch") for w in busy
                                for t in client.processing()[w]):  # fmt: skip
                    time.sleep(0.3)  # inside the task: reading or filtering
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(pids[busy[0]])
                time.sleep(0.05)

        killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
        killer.start()
        res = batch.run_batch(files, out, operation="median", params={"size": 7},
                              scheduler=cluster.scheduler_address)  # fmt: skip
        killer.join()
    assert killed, "no worker was killed"
    assert res.failed == {} and res.written == sorted(arrays)
    if out_name == "out":
        assert sorted(p.name for p in out.iterdir()) == sorted(f"{k}.h5" for k in arrays)
        for scan_id, a in arrays.items():
            with fastct.open(out / f"{scan_id}.h5") as ar:
                assert np.array_equal(ar["results/median"].read(), fastct.median(a, size=7))
        return
    # one archive: every result once, no partial volume or temporary left anywhere
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(f.name for f in files),
                                                                 out_name])  # fmt: skip
    with fastct.open(out) as ar:
        assert sorted(ar.volumes()) == sorted(f"/results/{k}/median" for k in arrays)
        for scan_id, a in arrays.items():
            got = ar[f"results/{scan_id}/median"].read()
            assert np.array_equal(got, fastct.median(a, size=7))
    if out_name.endswith(".zarr"):
        assert not [p for p in out.rglob(".fastct-tmp-*")]


def test_cli_batch_errors_are_one_line(tmp_path, capsys):
    """``fastct batch``: an unreachable scheduler and bad numbers exit 2 with one line."""
    from fastct.cli import main

    scan = tmp_path / "a.npy"
    np.save(scan, np.zeros((4, 5, 6), np.int16))
    args = ["batch", str(scan), "--out", str(tmp_path / "out")]
    code = main([*args, "--scheduler", "tcp://127.0.0.1:1", "--timeout", "1", "--sigma", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "could not be reached" in err[0]
    assert main([*args, "--local-workers", "0"]) == 2
    assert "--local-workers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

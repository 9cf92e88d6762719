"""Real kills (SIGKILL, SIGINT) at random moments never damage existing data."""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import fastct

WRITER = Path(__file__).parent / "helpers" / "slow_writer.py"
TRIALS = 10


def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash")
    rng = np.random.default_rng(0)
    image = rng.integers(-1000, 1000, size=(24, 32, 32)).astype(np.int16)
    other = rng.integers(-1000, 1000, size=(8, 16, 16)).astype(np.int16)
    src = folder / "src.h5"
    with fastct.open(src, "w") as ar:
        ar.create_volume("scans/a/image", image, chunks=(4, 16, 16))
    return folder, src, image, other


def fresh_destination(folder, other, trial):
    dst = folder / f"dst-{trial}.h5"
    with fastct.open(dst, "w") as ar:
        ar.create_volume("scans/b/image", other, spacing=(1, 2, 3))
        ar.create_volume("scans/c/image", other[::-1].copy())
    return dst


def run_and_kill(src, dst, sig, delay):
    env = dict(os.environ, FASTCT_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(src), str(dst), "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_random_kills_leave_data_intact(files, sig):
    folder, src, image, other = files
    src_hash = sha(src)
    rng = np.random.default_rng(int(sig))
    # The writer lives about 0.7 s (start-up 0.1 s, six blocks of 50 ms, numba import, commit);
    # kill times are spread over all of it, including the final commit.
    outcomes = []
    for trial in range(TRIALS):
        dst = fresh_destination(folder, other, f"{sig.name}-{trial}")
        dst_hash = sha(dst)
        delay = float(rng.uniform(0.02, 0.9))
        code, out, err = run_and_kill(src, dst, sig, delay)
        committed = "committed" in out

        assert sha(src) == src_hash, "the source file changed"
        with h5py.File(dst, "r") as f:  # always a readable HDF5 file
            names = set()
            f.visit(names.add)
        with fastct.open(dst) as ar:
            assert np.array_equal(ar["scans/c/image"].read(), other[::-1])
            if "scans/new" in names:
                # Present means complete: the transaction published everything.
                assert np.array_equal(ar["scans/new/image"].read(), -image)
                assert np.all(ar["scans/b/image"].read() == 7)
                outcomes.append("published")
            else:
                assert sha(dst) == dst_hash, "an aborted run changed the destination"
                assert np.array_equal(ar["scans/b/image"].read(), other)
                assert ar["scans/b/image"].spacing == (1.0, 2.0, 3.0)
                outcomes.append("untouched")
        if committed:
            assert outcomes[-1] == "published"
        if sig == signal.SIGINT and code != 0:
            # Ctrl-C is handled: the temporary copy is removed on the way out.
            leftovers = [p.name for p in folder.glob(".fastct-tmp-*")]
            assert leftovers == [], leftovers
    # A later writer cleans temp files left by killed processes.
    with fastct.open(folder / "cleanup.h5", "w") as ar:
        ar.create_volume("v", np.zeros((2, 2)))
    assert list(folder.glob(".fastct-tmp-*")) == []
    print(sig.name, outcomes)


def test_cli_import_interrupted_keeps_archive(tmp_path):
    """The CLI path: a killed import never leaves a partial volume."""
    npy = tmp_path / "vol.npy"
    np.save(npy, np.arange(40 * 64 * 64, dtype=np.int16).reshape(40, 64, 64))
    dst = tmp_path / "dst.h5"
    with fastct.open(dst, "w") as ar:
        ar.create_volume("scans/b/image", np.ones((4, 4, 4), np.int16))
    before = sha(dst)
    cmd = [sys.executable, "-m", "fastct.cli", "import", str(npy), f"{dst}:/scans/x/image"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    with fastct.open(dst) as ar:
        if "scans/x/image" in ar:
            assert ar["scans/x/image"].shape == (40, 64, 64)
        else:
            assert sha(dst) == before
        assert ar["scans/b/image"].read().sum() == 64

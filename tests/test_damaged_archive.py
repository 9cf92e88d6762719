"""A damaged HDF5 archive gives one clear error line (exit 2), never a traceback.

Seeded mutations overwrite 4 KiB of a good archive at offsets across its metadata
(superblock, object headers, symbol tables, B-trees, heaps) and its chunk data; the
commands run in one child process, so a crash of the interpreter fails the test instead
of killing pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastct
from fastct.volume import ArchiveDamagedError

VOLUME = "/scans/phantom/baseline/image"

CHILD = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from fastct.cli import main

    results = []
    for case in json.loads(sys.argv[1]):
        for argv in case["commands"]:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = main(argv)
                except BaseException as exc:  # what the CLI let escape
                    code = f"escaped {type(exc).__name__}: {exc}"
            results.append({"offset": case["offset"], "argv": argv, "code": code,
                            "err": err.getvalue().strip().splitlines()})
    print(json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def good_archive(tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged")
    path = folder / "good.h5"
    ph = fastct.datasets.chest_phantom("tiny", seed=2)
    with fastct.open(path, "w") as ar:
        ar.create_volume(VOLUME, data=ph.image, spacing=ph.spacing, modality="CT", units="HU")
    return path


def _mutations(size: int) -> list[int]:
    """Offsets: every 512 bytes through the first 16 KiB (metadata), then a few in the
    chunk data."""
    head = list(range(0, min(size, 16384), 512))
    rng = np.random.default_rng(0)
    tail = sorted(int(o) for o in rng.integers(16384, max(size - 4096, 16385), 4))
    return head + tail


def test_every_mutation_gives_exit_0_or_one_error_line(good_archive, tmp_path):
    data = good_archive.read_bytes()
    rng = np.random.default_rng(1)
    cases = []
    for offset in _mutations(len(data)):
        bad = bytearray(data)
        bad[offset : offset + 4096] = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        path = tmp_path / f"bad_{offset}.h5"
        path.write_bytes(bytes(bad[: len(data)]))
        out = tmp_path / f"out_{offset}.nii"
        cases.append({
            "offset": offset,
            "commands": [
                ["info", str(path)],
                ["gaussian", f"{path}:{VOLUME}", str(out), "--sigma", "1", "--quiet"],
                ["median", f"{path}:{VOLUME}", str(out), "--overwrite", "--quiet"],
            ],
        })  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cases)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"the child process died: {proc.stderr[-2000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == 3 * len(cases)
    bad = [r for r in results if r["code"] not in (0, 2)]
    assert not bad, bad[:3]
    for r in results:
        if r["code"] == 2:
            assert len(r["err"]) == 1 and r["err"][0].startswith("fastct: error: "), r
            assert "Traceback" not in r["err"][0]
    errors = [r for r in results if r["code"] == 2]
    assert errors, "no mutation was detected at all: the test exercises nothing"
    # a refused command leaves no output behind
    for case, triple in zip(cases, np.array_split(np.arange(len(results)), len(cases))):
        codes = [results[i]["code"] for i in triple]
        if codes[1] == 2 and codes[2] == 2:
            assert not (tmp_path / f"out_{case['offset']}.nii").exists()


def test_library_raises_archive_damaged_error_naming_the_file(good_archive, tmp_path):
    data = bytearray(good_archive.read_bytes())
    data[1024 : 1024 + 4096] = bytes(4096)  # zero the root group's symbol table
    path = tmp_path / "zeroed.h5"
    path.write_bytes(bytes(data))
    try:
        ar = fastct.open(path)
    except ValueError as exc:  # refused at open: also a clear error
        assert str(path) in str(exc) or path.name in str(exc)
        return
    with ar, pytest.raises(ArchiveDamagedError, match="zeroed.h5"):
        ar[VOLUME].read()
    assert issubclass(ArchiveDamagedError, ValueError)

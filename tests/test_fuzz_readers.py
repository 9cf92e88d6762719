"""Seeded mutation fuzzing of every reader: good small files with random bytes flipped,
ranges overwritten or the end cut off.

Each mutated file goes through the API reader in a worker process (tests/corpus/worker.py)
capped with RLIMIT_AS, with a per-case timeout; every few cases also through
``fastct info``. The only acceptable outcomes are valid data or a clean project error
(``ValueError``/``TypeError``/``KeyError``/``ImportError``; exit 2 with one line from the
CLI). A crash of the interpreter, a hang, another exception or a traceback fails the test
with the seed that reproduces it::

    FASTCT_FUZZ_SEED=<seed> FASTCT_FUZZ_FORMATS=<format> \\
        .venv/bin/python -m pytest tests/test_fuzz_readers.py -q -p no:cacheprovider

``make test`` runs a fixed number of cases per format (about 5 s); ``make test-fuzz``
(the ``fuzz`` marker) runs for ``FASTCT_FUZZ_SECONDS`` (default 200) and prints the
counts by format and outcome.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import fastct

CORPUS = Path(__file__).resolve().parent / "corpus"
sys.path.insert(0, str(CORPUS))
from make_corpus import _dicom_slice  # noqa: E402
from worker import Pool  # noqa: E402

VOLUME = "/scans/a/image"
FORMATS = ("hdf5", "zarr", "nifti", "dicom", "npy", "model")
MODEL = Path(fastct.__file__).resolve().parent / "models" / "nodule_detector_v1.fastct-model"


def _image() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(-1000, 1000, (6, 12, 10)).astype(np.int16)


def make_seeds(folder: Path) -> dict[str, Path]:
    """One good small file (or store) per format."""
    from fastct.io import write_nifti, write_npy

    folder.mkdir(parents=True, exist_ok=True)
    img = _image()
    seeds = {}
    seeds["hdf5"] = folder / "good.h5"
    with fastct.open(seeds["hdf5"], "w") as ar:
        ar.create_volume(VOLUME, img, spacing=(2.0, 0.7, 0.8), origin=(1, 2, 3),
                         chunks=(3, 6, 5), compression="gzip", modality="CT", units="HU")  # fmt: skip
    seeds["zarr"] = folder / "good.zarr"
    with fastct.open(seeds["zarr"], "w") as ar:
        ar.create_volume(VOLUME, img, spacing=(2.0, 0.7, 0.8), chunks=(3, 6, 5),
                         compression="gzip")  # fmt: skip
    seeds["nifti"] = folder / "good.nii"
    write_nifti(seeds["nifti"], img, spacing=(2.0, 0.7, 0.8))
    seeds["npy"] = folder / "good.npy"
    write_npy(seeds["npy"], img)
    seeds["dicom"] = folder / "good.dcm"
    buf = io.BytesIO()
    _dicom_slice(0).save_as(buf, enforce_file_format=True)
    seeds["dicom"].write_bytes(buf.getvalue())
    seeds["model"] = folder / "good.fastct-model"
    shutil.copyfile(MODEL, seeds["model"])
    return seeds


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One random mutation of ``data``; returns the bytes and what was done."""
    n = len(data)
    kind = rng.choice(["flip", "overwrite", "truncate", "zero"], p=[0.4, 0.3, 0.15, 0.15])
    buf = bytearray(data)
    if kind == "flip":
        count = int(rng.integers(1, 9))
        where = rng.integers(0, n, count)
        for pos in where:
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(buf), f"flip {count} bits at {sorted(int(w) for w in where)}"
    if kind == "truncate":
        cut = int(rng.integers(0, n))
        return bytes(buf[:cut]), f"truncate to {cut} bytes"
    start = int(rng.integers(0, n))
    length = int(min(n - start, rng.integers(1, 4097)))
    if kind == "zero":
        buf[start : start + length] = bytes(length)
    else:
        buf[start : start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    return bytes(buf), f"{kind} {length} bytes at {start}"


def make_case(fmt: str, seed: int, seeds: dict[str, Path], folder: Path) -> dict:
    """The mutated file of ``seed`` (deterministic) and its API case."""
    rng = np.random.default_rng([FORMATS.index(fmt), seed])
    src = seeds[fmt]
    dst = folder / f"case{src.suffix}"
    if fmt == "zarr":
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
        files = sorted(p for p in dst.rglob("*") if p.is_file())
        victim = files[int(rng.integers(0, len(files)))]
        data, what = mutate(victim.read_bytes(), rng)
        victim.write_bytes(data)
        what = f"{victim.relative_to(dst)}: {what}"
    else:
        dst.unlink(missing_ok=True)
        data, what = mutate(src.read_bytes(), rng)
        dst.write_bytes(data)
    return {
        "id": f"{fmt}:{seed}",
        "op": "api",
        "format": fmt,
        "path": str(dst),
        "volume": VOLUME if fmt in ("hdf5", "zarr") else None,
        "cwd": str(folder),
        "mutation": what,
    }


def run_fuzz(folder: Path, formats: list[str], seeds_per_format: int | None,
             seconds: float | None, first_seed: int = 0) -> tuple[Counter, list[dict]]:  # fmt: skip
    """Run cases round-robin over ``formats``; every 5th case also runs ``fastct info``.
    Returns the outcome counts by (format, op, outcome) and the failures."""
    seeds = make_seeds(folder / "seeds")
    work = folder / "work"
    work.mkdir()
    pool = Pool()
    counts: Counter = Counter()
    failures: list[dict] = []
    deadline = None if seconds is None else time.monotonic() + seconds
    seed = first_seed
    try:
        while True:
            if seeds_per_format is not None and seed >= first_seed + seeds_per_format:
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            for fmt in formats:
                case = make_case(fmt, seed, seeds, work)
                runs = [case]
                if seed % 5 == 0 and fmt != "model":
                    target = f"{case['path']}:{VOLUME}" if case["volume"] else case["path"]
                    extra = ["--spacing", "1,1,1"] if fmt == "npy" else []
                    runs.append({**case, "op": "cli", "argv": ["info", target, *extra]})
                for run in runs:
                    res = pool.run(run, timeout=30)
                    counts[(fmt, run["op"], res["outcome"])] += 1
                    if res["outcome"] not in ("ok", "error"):
                        failures.append({**res, "format": fmt, "seed": seed, "op": run["op"],
                                         "mutation": case["mutation"]})  # fmt: skip
            seed += 1
    finally:
        pool.close()
    return counts, failures


def _report(counts: Counter, failures: list[dict], elapsed: float) -> str:
    by_fmt: Counter = Counter()
    lines = []
    for (fmt, op, outcome), n in sorted(counts.items()):
        by_fmt[fmt] += n
        lines.append(f"  {fmt:6s} {op:4s} {outcome:6s} {n}")
    total = sum(counts.values())
    head = f"fuzz: {total} cases in {elapsed:.0f} s ({dict(by_fmt)}), {len(failures)} failures"
    return "\n".join([head, *lines])


def _formats() -> list[str]:
    chosen = os.environ.get("FASTCT_FUZZ_FORMATS")
    return chosen.split(",") if chosen else list(FORMATS)


def _check(counts: Counter, failures: list[dict]) -> None:
    if failures:
        shown = "\n".join(
            f"{f['id']} {f['op']} {f['mutation']}: {f['outcome']} "
            f"{str(f.get('detail', '')).strip().splitlines()[-1:]}"
            for f in failures[:20]
        )
        pytest.fail(
            f"{len(failures)} fuzz case(s) crashed, hung or raised a raw error; reproduce with "
            f"FASTCT_FUZZ_SEED=<seed> FASTCT_FUZZ_FORMATS=<format>:\n{shown}"
        )
    for fmt in {k[0] for k in counts}:
        assert counts[(fmt, "api", "error")] > 0, f"no {fmt} mutation was detected: {counts}"


def test_fuzz_readers_bounded(tmp_path):
    """The make-test run: 20 mutations of each format (seeds 0..19, or
    FASTCT_FUZZ_SEED alone)."""
    seed = os.environ.get("FASTCT_FUZZ_SEED")
    start = time.monotonic()
    counts, failures = run_fuzz(tmp_path, _formats(), 1 if seed else 20, None,
                                int(seed) if seed else 0)  # fmt: skip
    print(_report(counts, failures, time.monotonic() - start))
    _check(counts, failures) if not seed else None
    assert not failures, failures


@pytest.mark.fuzz
def test_fuzz_readers_long(tmp_path):
    """The CI run: as many mutations as fit in FASTCT_FUZZ_SECONDS (default 200),
    seeds from FASTCT_FUZZ_FIRST_SEED (default 1000) on (the bounded run covers 0..19)."""
    seconds = float(os.environ.get("FASTCT_FUZZ_SECONDS", "200"))
    start = time.monotonic()
    first = int(os.environ.get("FASTCT_FUZZ_FIRST_SEED", "1000"))
    counts, failures = run_fuzz(tmp_path, _formats(), None, seconds, first_seed=first)
    report = _report(counts, failures, time.monotonic() - start)
    print(report)
    with open(os.environ.get("FASTCT_FUZZ_REPORT", os.devnull), "a") as f:
        f.write(report + "\n")
    _check(counts, failures)


def test_mutations_are_deterministic(tmp_path):
    seeds = make_seeds(tmp_path / "seeds")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for fmt in ("hdf5", "npy"):
        a = make_case(fmt, 3, seeds, tmp_path / "a")
        b = make_case(fmt, 3, seeds, tmp_path / "b")
        assert a["mutation"] == b["mutation"]
        assert Path(a["path"]).read_bytes() == Path(b["path"]).read_bytes()

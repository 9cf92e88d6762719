"""Median filter: fastct against scipy.ndimage.median_filter and SimpleITK's Median.

Targets (issue 3, same run, warm):
  * median 3^3 on int16 256^3: >= 30x scipy.ndimage.median_filter, >= 10x SimpleITK;
  * median 7^3 on int16 256^3: >= 50x scipy;
  * identical to scipy (checked on every case scipy runs).

Warm times: fastct is the minimum over several pytest-benchmark rounds (after a warm
call); scipy and SimpleITK are slow, so they are timed once (7^3 with scipy takes
about a minute on 256^3) after a call on a tiny input. First-call (compile) time
and fastct's peak memory come from a fresh process per case (this file run as a
script).
The table goes to docs/benchmarks/median.md.

Run: ``make bench`` or ``python -m pytest benchmarks/bench_median.py -s``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import reset_peak, vm_kib  # noqa: E402

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "median.md"
CUBE = (256, 256, 256)
CT = (300, 512, 512)  # 300 slices of 512 x 512

try:  # optional reference
    import SimpleITK as sitk
except ImportError:  # pragma: no cover - depends on the environment
    sitk = None


# -- inputs ----------------------------------------------------------------------------------
def ct_phantom(shape=CUBE, dtype=np.int16, seed=0) -> np.ndarray:
    """CT-like volume in HU: air, an elliptic body, two lungs, a spine, noise (sd 25).

    Built slab by slab (cheap on memory); sharp air / tissue / lung / bone edges make
    the median jump by hundreds of HU, as in real scans.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    y = ((np.arange(ny, dtype=np.float32) - ny / 2) / ny)[:, None]
    x = ((np.arange(nx, dtype=np.float32) - nx / 2) / nx)[None, :]
    out = np.empty(shape, dtype)
    for z0 in range(0, nz, 16):
        z = ((np.arange(z0, min(nz, z0 + 16), dtype=np.float32) - nz / 2) / nz)[:, None, None]
        img = np.full((len(z), ny, nx), -1000.0, np.float32)
        img[(y / 0.40) ** 2 + (x / 0.45) ** 2 + (z / 0.48) ** 2 < 1] = 40.0
        for side in (-1, 1):
            lung = ((y + 0.02) / 0.28) ** 2 + ((x - side * 0.2) / 0.15) ** 2 + (z / 0.38) ** 2
            img[lung < 1] = -850.0
        spine = ((y - 0.3) / 0.05) ** 2 + (x / 0.05) ** 2 + 0 * z < 1
        img[spine] = 700.0
        img += rng.normal(0, 25, size=img.shape).astype(np.float32)
        out[z0 : z0 + len(z)] = np.clip(np.rint(img), -1024, 3071).astype(dtype)
    return out


# -- the operations (lazy imports, also used by the worker) -------------------------------------
def op(name: str):
    import scipy.ndimage as ndi

    from fastct.filters._median import median

    table = {
        "fastct 3^3": lambda a: median(a, 3),
        "fastct 7^3": lambda a: median(a, 7),
        "scipy 3^3": lambda a: ndi.median_filter(a, 3),
        "scipy 7^3": lambda a: ndi.median_filter(a, 7),
    }
    if sitk is not None:
        table.update(
            {"SimpleITK 3^3": lambda a: _sitk(a, 1), "SimpleITK 7^3": lambda a: _sitk(a, 3)}
        )
    return table[name]


def _sitk(a, radius):
    f = sitk.MedianImageFilter()
    f.SetRadius([radius] * a.ndim)
    return sitk.GetArrayViewFromImage(f.Execute(sitk.GetImageFromArray(a)))


# -- fresh-process measurements -------------------------------------------------------------------
def _worker(name: str, kind: str) -> dict:
    """First call on a tiny input (compile time), then peak memory on the real one."""
    t0 = time.perf_counter()
    import fastct  # noqa: F401

    t_import = time.perf_counter() - t0
    fn = op(name)
    shape, dtype = INPUTS[kind]
    tiny = np.zeros((9, 10, 11), dtype)
    t0 = time.perf_counter()
    fn(tiny)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fn(tiny)
    second = time.perf_counter() - t0
    image = ct_phantom(shape, dtype)
    # ru_maxrss is no good in a child process (Linux carries the parent's peak over
    # fork + exec): reset the high-water mark (VmHWM) so the peak is the call's own.
    base = vm_kib("VmRSS")
    reset_peak()
    result = fn(image)
    peak = vm_kib("VmHWM")
    del result
    return {
        "import_s": t_import,
        "first_call_s": first - second,
        "peak_extra_mib": (peak - base) / 1024 if peak and base else float("nan"),
        "input_mib": image.nbytes / 2**20,
    }


def fresh_process(name: str, kind: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, name, kind], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- benchmark cases ----------------------------------------------------------------------------
INPUTS = {
    "cube int16": (CUBE, np.int16),
    "cube float32": (CUBE, np.float32),
    "ct int16": (CT, np.int16),
}
RESULTS: dict[str, dict] = {}
_ARRAYS: dict[str, np.ndarray] = {}


def get_input(kind: str) -> np.ndarray:
    if kind not in _ARRAYS:
        _ARRAYS.clear()  # one big input alive at a time
        _ARRAYS[kind] = ct_phantom(*INPUTS[kind])
    return _ARRAYS[kind]


def best_of(fn, arg, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t0)
    return best


def run_case(benchmark, case, kind, fast, refs, rounds):
    import fastct

    image = get_input(kind)
    fn = op(fast)
    fn(image)  # warm (compiled, pages touched)
    result = benchmark.pedantic(fn, args=(image,), rounds=rounds, iterations=1, warmup_rounds=0)
    t_fast = benchmark.stats.stats.min
    fastct.set_num_threads(1)
    try:
        t_one = best_of(fn, image, 1 if "7^3" in fast else 3)
    finally:
        fastct.set_num_threads(None)
    ref_times, exact = {}, None
    for ref in refs:
        rfn = op(ref)
        rfn(image[:8, :8, :8])  # imports and first-call costs out of the timing
        t0 = time.perf_counter()
        ref_result = rfn(image)
        ref_times[ref] = time.perf_counter() - t0
        if ref.startswith("scipy"):
            exact = bool(ref_result.dtype == result.dtype and np.array_equal(ref_result, result))
        del ref_result
    t_copy = best_of(np.copy, image, 5)
    RESULTS[case] = {
        "kind": kind,
        "fastct": fast,
        "t_fast": t_fast,
        "t_one": t_one,
        "refs": ref_times,
        "t_copy": t_copy,
        "exact": exact,
        "fresh": fresh_process(fast, kind),
    }
    lines = [f"{case}: fastct {t_fast * 1e3:.1f} ms (1 thread {t_one * 1e3:.1f} ms), "
             f"copy {t_copy * 1e3:.1f} ms, identical to scipy: {exact}"]  # fmt: skip
    lines += [f"  {r}: {t * 1e3:.1f} ms ({t / t_fast:.1f}x)" for r, t in ref_times.items()]
    print("\n".join(lines))


def _sitk_refs(*names):
    return [n for n in names if sitk is not None]


def test_median_3_cube_int16(benchmark):
    refs = ["scipy 3^3", *_sitk_refs("SimpleITK 3^3")]
    run_case(benchmark, "int16 256^3, 3x3x3", "cube int16", "fastct 3^3", refs, rounds=10)


def test_median_7_cube_int16(benchmark):
    refs = ["scipy 7^3", *_sitk_refs("SimpleITK 7^3")]
    run_case(benchmark, "int16 256^3, 7x7x7", "cube int16", "fastct 7^3", refs, rounds=5)


def test_median_3_cube_float32(benchmark):
    run_case(benchmark, "float32 256^3, 3x3x3", "cube float32", "fastct 3^3", ["scipy 3^3"],
             rounds=10)  # fmt: skip


def test_median_3_ct_int16(benchmark):
    refs = ["scipy 3^3", *_sitk_refs("SimpleITK 3^3")]
    run_case(benchmark, "int16 512x512x300, 3x3x3", "ct int16", "fastct 3^3", refs, rounds=5)


def test_median_7_ct_int16(benchmark):
    # scipy would take about 4 minutes here; SimpleITK about 2.
    run_case(benchmark, "int16 512x512x300, 7x7x7", "ct int16", "fastct 7^3", [], rounds=3)


def test_zz_write_report():
    """Write the Markdown table, then check the targets."""
    import fastct

    rows = []
    for case, r in RESULTS.items():
        fresh = r["fresh"]
        first = fresh["first_call_s"]
        ratios = ", ".join(f"{name}: {t:.2f} s (**{t / r['t_fast']:.0f}x**)"
                           for name, t in r["refs"].items()) or "-"  # fmt: skip
        mem = f"{fresh['peak_extra_mib']:.0f}"
        exact = {True: "yes", False: "**no**", None: "-"}[r["exact"]]
        rows.append(
            f"| {case} | {r['t_fast'] * 1e3:.0f} | {r['t_one'] * 1e3:.0f} | {ratios} | "
            f"{r['t_copy'] * 1e3:.1f} ({r['t_fast'] / r['t_copy']:.0f} copies) | {first:.1f} | "
            f"{mem} | {exact} |"
        )
    import_s = next(iter(RESULTS.values()))["fresh"]["import_s"] if RESULTS else float("nan")
    sitk_txt = f"SimpleITK {sitk.Version_VersionString()}" if sitk is not None else "no SimpleITK"
    text = "\n".join(
        [
            "# Median filter benchmark",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, fastct {fastct.__version__} with "
            f"{fastct.get_num_threads()} threads, {sitk_txt} (its default thread count). "
            "Inputs: CT-like phantoms in HU (air, body, lungs, spine, noise sd 25 HU), "
            f"{CUBE[0]}^3 int16 (32 MiB) and float32 (64 MiB), and "
            f"{CT[2]}x{CT[1]}x{CT[0]} int16 (150 MiB). In-memory arrays, default "
            "`mode='reflect'`; every result keeps the input dtype.",
            "",
            "fastct: minimum of several pytest-benchmark rounds after a warm call, and the "
            "best of a few calls at 1 thread. scipy.ndimage.median_filter and SimpleITK "
            "MedianImageFilter: one timed call each (they take seconds to minutes). "
            "Speed-up = reference time / fastct time. Memory floor: one `np.copy` of the "
            "input (allocation and copy); the filter reads the input and writes a result "
            "of the same size. First call: fresh process, first call on a tiny input "
            f"minus a second one, i.e. compile time (`import fastct` takes {import_s:.3f} s "
            "and compiles nothing). Peak extra: fresh process, peak RSS during one call "
            "on the full input minus the RSS before it (output included). Identical: fastct's result equals scipy's element for element, "
            "same dtype. Ratios compare runs made minutes apart in one process; on this "
            "shared 2-core VM absolute times vary up to 2x between runs.",
            "",
            "Algorithms: 3x3x3 runs a pruned Batcher selection network over whole rows "
            "(vectorised min/max), 7x7x7 on int16 Huang's sliding histogram (49 updates "
            "per voxel instead of sorting 343 values).",
            "",
            "| case | fastct (ms) | fastct 1 thread (ms) | references (speed-up) "
            "| np.copy (ms) (fastct in copies) | first call (s) | fastct peak extra (MiB) "
            "| identical to scipy |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Reproduce: `make bench` (or `python -m pytest benchmarks/bench_median.py -s`); "
            "SimpleITK comes from `pip install SimpleITK`.",
            "",
        ]
    )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
    print(text)
    for r in RESULTS.values():
        assert r["exact"] in (True, None)
    small, large = RESULTS.get("int16 256^3, 3x3x3"), RESULTS.get("int16 256^3, 7x7x7")
    if small:
        assert small["refs"]["scipy 3^3"] / small["t_fast"] >= 30
        if "SimpleITK 3^3" in small["refs"]:
            assert small["refs"]["SimpleITK 3^3"] / small["t_fast"] >= 10
    if large:
        assert large["refs"]["scipy 7^3"] / large["t_fast"] >= 50


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1], sys.argv[2])))

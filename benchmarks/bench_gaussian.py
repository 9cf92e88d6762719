"""Gaussian (exact, recursive) and unsharp mask: fastct against scipy, scikit-image, SimpleITK.

Targets (issue 3, same run, warm):
  * exact Gaussian sigma=2, float32 256^3: >= 6x scipy.ndimage.gaussian_filter and
    faster than SimpleITK's DiscreteGaussian and SmoothingRecursiveGaussian;
  * recursive Gaussian sigma=8: >= 10x scipy's exact sigma=8, within 1% of the value
    range of the exact result away from the border;
  * unsharp mask radius=2, float32 256^3: >= 6x skimage.filters.unsharp_mask;
  * exact float32 within 1e-5 of the value range of scipy.

Warm times are the minimum over several rounds in this process, the references timed
between fastct's rounds (pytest-benchmark's untimed setup), each timed call right
after an untimed call of the same operation; first-call (compile)
time and peak memory come from a fresh process per case (this file run as a script).
The table goes to docs/benchmarks/gaussian.md.

Run: ``make bench`` or ``python -m pytest benchmarks/bench_gaussian.py -s``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _machine import OtherLoad, reset_peak, vm_kib  # noqa: E402 - benchmarks/ is on sys.path under pytest

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "gaussian.md"
CUBE = (256, 256, 256)
CT = (300, 512, 512)  # 300 slices of 512 x 512, int16 HU

try:  # optional reference
    import SimpleITK as sitk
except ImportError:  # pragma: no cover - depends on the environment
    sitk = None


# -- inputs ----------------------------------------------------------------------------------
def cube_phantom(shape=CUBE, seed=0) -> np.ndarray:
    """float32 CT-like cube: air, a body, soft-tissue and bone spheres, noise."""
    rng = np.random.default_rng(seed)
    z, y, x = (np.arange(n, dtype=np.float32)[(slice(None),) + (None,) * (2 - i)]
               for i, n in enumerate(shape))  # fmt: skip
    img = np.full(shape, -1000.0, np.float32)
    c = [n / 2 for n in shape]
    body = ((y - c[1]) / (0.42 * shape[1])) ** 2 + ((x - c[2]) / (0.36 * shape[2])) ** 2 < 1
    img[np.broadcast_to(body, shape)] = 40.0
    for _ in range(12):
        centre = [rng.uniform(0.25 * n, 0.75 * n) for n in shape]
        r = rng.uniform(4, shape[1] / 10)
        inside = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 < r * r
        img[inside] = rng.choice([-800.0, 60.0, 700.0])
    img += rng.normal(0, 25, size=shape).astype(np.float32)
    return img


def ct_phantom(shape=CT, seed=1) -> np.ndarray:
    """int16 CT-like volume (HU), built slab by slab to stay light on memory."""
    rng = np.random.default_rng(seed)
    out = np.empty(shape, np.int16)
    base = cube_phantom((16, shape[1], shape[2]), seed)
    for z0 in range(0, shape[0], 16):
        n = min(16, shape[0] - z0)
        out[z0 : z0 + n] = np.clip(np.roll(base, z0 // 16, axis=2)[:n], -1024, 3071)
    out += rng.integers(-5, 6, size=shape, dtype=np.int16)
    return out


# -- the operations (lazy imports, also used by the worker) -------------------------------------
def op(name: str):
    import scipy.ndimage as ndi

    from fastct.filters import gaussian, unsharp_mask

    table = {
        "fastct gaussian s2": lambda a: gaussian(a, 2.0),
        "fastct recursive s8": lambda a: gaussian(a, 8.0, method="recursive"),
        "fastct gaussian s8": lambda a: gaussian(a, 8.0),
        "fastct unsharp r2": lambda a: unsharp_mask(a, 2.0, 1.0),
        "scipy gaussian s2": lambda a: ndi.gaussian_filter(a, 2.0),
        "scipy gaussian s8": lambda a: ndi.gaussian_filter(a, 8.0),
        "skimage unsharp r2": lambda a: _skimage_unsharp(a, 2.0, 1.0),
    }
    if sitk is not None:
        table.update(
            {
                "SimpleITK DiscreteGaussian s2": lambda a: _sitk(a, "discrete", 2.0),
                "SimpleITK RecursiveGaussian s2": lambda a: _sitk(a, "recursive", 2.0),
                "SimpleITK RecursiveGaussian s8": lambda a: _sitk(a, "recursive", 8.0),
            }
        )
    return table[name]


def _skimage_unsharp(a, radius, amount):
    from skimage.filters import unsharp_mask

    return unsharp_mask(a, radius, amount, preserve_range=True)


def _sitk(a, kind, sigma):
    img = sitk.GetImageFromArray(a)
    if kind == "discrete":  # variance sigma^2, same kernel reach as scipy's truncate=4
        res = sitk.DiscreteGaussian(img, sigma * sigma, int(4 * sigma + 1) * 2 + 1, 0.001, False)
    else:
        res = sitk.SmoothingRecursiveGaussian(img, sigma)
    return sitk.GetArrayViewFromImage(res)


# -- fresh-process measurements -------------------------------------------------------------------


def _worker(name: str, kind: str) -> dict:
    """First call on a tiny input (compile time), then peak memory on the real one."""
    t0 = time.perf_counter()
    import fastct  # noqa: F401

    t_import = time.perf_counter() - t0
    fn = op(name)
    shape = CUBE if kind == "cube" else CT
    dtype = np.float32 if kind == "cube" else np.int16
    tiny = np.zeros((5, 6, 7), dtype)
    t0 = time.perf_counter()
    fn(tiny)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fn(tiny)
    second = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    if kind == "cube":
        image = rng.random(shape, dtype=np.float32)
    else:
        image = rng.integers(-1000, 2000, size=shape, dtype=np.int16)
    # Compilation raised the peak far above what the call needs: reset the kernel's
    # high-water mark (VmHWM) so the peak is the call's own.
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
RESULTS: dict[str, dict] = {}
# Other processes using more than this many cores during a case make its speed
# targets unverifiable on a 2-core machine: they are then reported, not asserted.
OTHER_LOAD_LIMIT = 0.25


def best_of(fn, arg, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t0)
    return best


_INPUTS: dict[str, np.ndarray] = {}


def get_input(kind: str) -> np.ndarray:
    if kind not in _INPUTS:
        _INPUTS[kind] = cube_phantom() if kind == "cube" else ct_phantom()
    return _INPUTS[kind]


def accuracy(case: str, result: np.ndarray, ref: np.ndarray, image: np.ndarray, sigma: float):
    """Max |diff| as a fraction of the value range (input's for exact, result's for IIR)."""
    diff = np.abs(result.astype(np.float64) - ref.astype(np.float64))
    if "recursive" in case:
        m = int(4 * sigma)
        inner = (slice(m, -m),) * 3
        span = float(np.ptp(ref))
        return {"max_rel": diff.max() / span, "inner_max_rel": diff[inner].max() / span}
    return {"max_rel": diff.max() / float(np.ptp(image.astype(np.float64)))}


def run_case(benchmark, case, kind, fast, refs, acc_ref, sigma, rounds):
    """fastct under pytest-benchmark, the references timed between its rounds.

    Interleaving puts fastct and the references under the same machine conditions
    (the reference calls run in pytest-benchmark's untimed ``setup``). Every timed
    call, fastct's and each reference's, directly follows an untimed call of the
    same operation, so each is measured in its own warm steady state.
    """
    image = get_input(kind)
    load = OtherLoad()
    fn = op(fast)
    fn(image)  # warm (compiled, pages touched)
    ref_fns = {ref: op(ref) for ref in refs}
    for rfn in ref_fns.values():
        rfn(image[:8, :8, :8])  # imports, first-call costs out of the timing
    ref_times = dict.fromkeys(refs, float("inf"))

    def setup():
        for ref, rfn in ref_fns.items():
            rfn(image)  # untimed: the timed call follows a call of its own kind
            t0 = time.perf_counter()
            rfn(image)
            ref_times[ref] = min(ref_times[ref], time.perf_counter() - t0)
        # The same for fastct: right after another library freed hundreds of MiB,
        # the kernel's first large allocation can stall in page compaction (seen
        # 4x slower on the CT case), which is not the warm steady state.
        fn(image)
        return (image,), {}

    result = benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1)
    t_fast = benchmark.stats.stats.min
    t_copy = best_of(np.copy, image, 5)
    acc = accuracy(fast, result, op(acc_ref)(image), image, sigma) if acc_ref else {}
    RESULTS[case] = {
        "other_load": load.cores(),
        "kind": kind,
        "fastct": fast,
        "t_fast": t_fast,
        "refs": ref_times,
        "t_copy": t_copy,
        "acc": acc,
        "acc_ref": acc_ref,
        "fresh": {name: fresh_process(name, kind) for name in [fast, *refs[:1]]},
    }
    lines = [f"{case}: fastct {t_fast * 1e3:.1f} ms, copy {t_copy * 1e3:.1f} ms"]
    lines += [f"  {r}: {t * 1e3:.1f} ms ({t / t_fast:.1f}x)" for r, t in ref_times.items()]
    print("\n".join(lines), acc)


def _sitk_refs(*names):
    return [n for n in names if sitk is not None]


def test_gaussian_sigma2_cube(benchmark):
    refs = ["scipy gaussian s2", *_sitk_refs("SimpleITK DiscreteGaussian s2",
                                             "SimpleITK RecursiveGaussian s2")]  # fmt: skip
    run_case(benchmark, "Gaussian sigma=2", "cube", "fastct gaussian s2", refs,
             "scipy gaussian s2", 2.0, rounds=6)  # fmt: skip


def test_recursive_sigma8_cube(benchmark):
    refs = [
        "scipy gaussian s8",
        "fastct gaussian s8",
        *_sitk_refs("SimpleITK RecursiveGaussian s8"),
    ]
    run_case(benchmark, "Recursive Gaussian sigma=8", "cube", "fastct recursive s8", refs,
             "scipy gaussian s8", 8.0, rounds=6)  # fmt: skip


def test_unsharp_radius2_cube(benchmark):
    run_case(benchmark, "Unsharp mask radius=2", "cube", "fastct unsharp r2",
             ["skimage unsharp r2"], "skimage unsharp r2", 2.0, rounds=6)  # fmt: skip


def test_gaussian_sigma2_ct(benchmark):
    refs = ["scipy gaussian s2", *_sitk_refs("SimpleITK DiscreteGaussian s2",
                                             "SimpleITK RecursiveGaussian s2")]  # fmt: skip
    run_case(benchmark, "CT int16: Gaussian sigma=2", "ct", "fastct gaussian s2", refs,
             None, 2.0, rounds=3)  # fmt: skip


def test_recursive_sigma8_ct(benchmark):
    refs = ["scipy gaussian s8", *_sitk_refs("SimpleITK RecursiveGaussian s8")]
    run_case(benchmark, "CT int16: Recursive Gaussian sigma=8", "ct", "fastct recursive s8",
             refs, None, 8.0, rounds=3)  # fmt: skip


def test_unsharp_radius2_ct(benchmark):
    run_case(benchmark, "CT int16: Unsharp mask radius=2", "ct", "fastct unsharp r2",
             ["skimage unsharp r2"], None, 2.0, rounds=3)  # fmt: skip


def test_zz_write_report():
    """Write the Markdown table, then check the targets."""
    import fastct

    rows = []
    for case, r in RESULTS.items():
        fresh = r["fresh"]
        first = fresh[r["fastct"]]["first_call_s"]
        ratios = ", ".join(f"{name}: {t * 1e3:.0f} ms (**{t / r['t_fast']:.1f}x**)"
                           for name, t in r["refs"].items())  # fmt: skip
        mem = " / ".join(f"{v['peak_extra_mib']:.0f}" for v in fresh.values())
        acc = r["acc"]
        acc_txt = "-"
        if "inner_max_rel" in acc:
            acc_txt = f"{acc['inner_max_rel']:.2%} inner, {acc['max_rel']:.2%} all"
        elif acc:
            acc_txt = f"{acc['max_rel']:.1e}"
        rows.append(
            f"| {case} | {r['t_fast'] * 1e3:.1f} | {ratios} | {r['t_copy'] * 1e3:.1f} "
            f"({r['t_fast'] / r['t_copy']:.1f} copies) | {first:.1f} | {mem} | {acc_txt} "
            f"| {r['other_load']:.2f} |"
        )
    any_fresh = next(iter(RESULTS.values()))["fresh"] if RESULTS else {}
    import_s = next(iter(any_fresh.values()))["import_s"] if any_fresh else float("nan")
    text = "\n".join(
        [
            "# Gaussian and unsharp mask benchmark",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, fastct {fastct.__version__}, "
            f"{fastct.get_num_threads()} threads. Inputs: a float32 CT-like phantom "
            f"{CUBE[0]}x{CUBE[1]}x{CUBE[2]} (64 MiB) and an int16 CT-like volume "
            f"{CT[2]}x{CT[1]}x{CT[0]} (150 MiB; fastct returns float32, scipy int16, "
            "scikit-image float64). In-memory arrays.",
            "",
            "Warm times: minimum over several rounds in one process, fastct timed by "
            "pytest-benchmark and every reference timed between its rounds, so all see "
            "the same machine conditions; each timed call directly follows an untimed "
            "call of the same operation (warm steady state). "
            "Ratio = reference time / fastct time. Memory floor: one `np.copy` of the "
            "input volume (allocation and copy); an out-of-place separable filter reads "
            "and writes the volume at least once. First call: fresh process, compile "
            "time of the first call minus a warm call (same process for all kernels a "
            f"case uses; `import fastct` takes {import_s * 1e3:.0f} ms and compiles nothing). "
            "Peak extra memory: fresh process, peak RSS during one call on the full "
            "input minus the RSS before it (output included), fastct / first reference. "
            "Accuracy: max |fastct - reference| over the value range (exact: the input's "
            "range, reference scipy or scikit-image; recursive: the exact result's range, "
            "reference scipy's exact filter, inside = more than 4 sigma from the border). "
            "Other load: cores kept busy by other processes during the case (work on a "
            "shared machine slows the multi-threaded fastct kernels more than the "
            "single-threaded references; the targets are asserted only below "
            f"{OTHER_LOAD_LIMIT} cores).",
            "",
            "| case | fastct (ms) | references (speed-up) | np.copy (ms) (fastct in copies) "
            "| first call (s) | peak extra (MiB) | accuracy | other load (cores) |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Reproduce: `make bench` (or `python -m pytest benchmarks/bench_gaussian.py -s`).",
            "",
        ]
    )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
    print(text)
    checks = {
        "Gaussian sigma=2": lambda r: [
            ("6x scipy", r["refs"]["scipy gaussian s2"] / r["t_fast"] >= 6),
            (
                "faster than SimpleITK",
                all(t > r["t_fast"] for n, t in r["refs"].items() if "SimpleITK" in n),
            ),
            ("1e-5 of the range", r["acc"]["max_rel"] <= 1e-5),
        ],  # fmt: skip
        "Recursive Gaussian sigma=8": lambda r: [
            ("10x scipy exact", r["refs"]["scipy gaussian s8"] / r["t_fast"] >= 10),
            ("1% away from the border", r["acc"]["inner_max_rel"] <= 0.01),
        ],
        "Unsharp mask radius=2": lambda r: [
            ("6x scikit-image", r["refs"]["skimage unsharp r2"] / r["t_fast"] >= 6),
            ("1e-5 of the range", r["acc"]["max_rel"] <= 1e-5),
        ],
    }
    failed = []
    for case, check in checks.items():
        if case not in RESULTS:
            continue
        r = RESULTS[case]
        for what, ok in check(r):
            if ok:
                continue
            speed = "x " in what or "faster" in what
            if speed and r["other_load"] > OTHER_LOAD_LIMIT:
                warnings.warn(
                    f"{case}: target {what} missed with {r['other_load']:.2f} cores of "
                    "other work on the machine; rerun on an idle machine",
                    stacklevel=1,
                )
            else:
                failed.append(f"{case}: {what}")
    assert not failed, failed


if __name__ == "__main__":
    print(json.dumps(_worker(sys.argv[1], sys.argv[2])))

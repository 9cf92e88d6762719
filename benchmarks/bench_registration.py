"""Registration: fastct.register against SimpleITK's ImageRegistrationMethod, same run.

Input: the chest phantom on an isotropic cube (128^3 at 2.8125 mm, 256^3 at 1.40625 mm)
and its follow-up rendered analytically under a random rigid transform (rotation <= 10
degrees, translation <= 10 mm). Every method is configured alike: rigid transform,
the same metric (Mattes MI with 32 bins, or correlation), the same pyramid (shrink
factors 4, 2, 1 and Gaussian sigmas 2, 1, 0 voxels of the finest level, in mm), linear
interpolation, initial centres aligned by geometry, parameter scales from physical shift.
SimpleITK uses its regular-step gradient descent (learning rate 2 mm, minimum step
0.001 mm, relaxation 0.5, at most 100 iterations per level), either on every voxel
(``full``) or on 10% random voxels (``random 10%``); fastct runs with ``sampling='full'``
(the same sample set as SimpleITK's full sampling) and with its defaults
(``sampling='auto'``: at most 100 000 random voxels per level).

Accuracy is the largest error over the eight corners of the fixed image, in mm, against
the known transform. Times are wall times of one call, warm (fastct compiled before);
fastct's first-call (compile) time is measured separately on a small input. CPU time
is the process's CPU time during the call (all threads): its ratio is the work ratio,
much less sensitive to other processes than the wall-time ratio. Peak memory is the
growth of the process's peak RSS (VmHWM, reset before each case) over its RSS before
the call. ``other load`` is how many cores other processes used meanwhile (this 2-core
machine is shared): with other load above ~0.3 the wall-time ratios are noisy.

Run: ``python benchmarks/bench_registration.py [--sizes 128 256] [--metrics mi ncc]
[--threads N]`` (rewrites the generated section of docs/benchmarks/registration.md) or ``python -m pytest
benchmarks/bench_registration.py -s`` (128^3 only).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import OtherLoad, reset_peak, vm_kib  # noqa: E402

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "registration.md"
SPEED_TARGET = 10.0

try:  # optional reference
    import SimpleITK as sitk
except ImportError:  # pragma: no cover - depends on the environment
    sitk = None


def make_pair(n: int, seed: int = 0):
    from fastct import datasets

    spacing = 360.0 / n
    center = (np.full(3, n) - 1) / 2 * spacing
    m = datasets.random_transform(seed, center, max_rotation_deg=10, max_translation_mm=10)
    pair = datasets.phantom_pair(shape=(n, n, n), spacing=spacing, seed=seed, transform=m,
                                 growth=None)  # fmt: skip
    return (pair.baseline.image.astype(np.float32), pair.followup.image.astype(np.float32),
            (spacing,) * 3, m)  # fmt: skip


def corner_error_mm(apply, matrix, shape, spacing) -> float:
    idx = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1).T
    p = idx * np.asarray(spacing)
    true = p @ matrix[:3, :3].T + matrix[:3, 3]
    return float(np.linalg.norm(apply(p) - true, axis=1).max())


SHRINK = (4, 2, 1)


def sigmas_mm(spacing) -> tuple[float, ...]:
    return tuple(0.5 * f * spacing[0] if f > 1 else 0.0 for f in SHRINK)


def run_fastct(fixed, moving, spacing, metric, sampling):
    import fastct

    reg = fastct.register(fixed, moving, metric=metric, fixed_spacing=spacing,
                          moving_spacing=spacing, init="geometry", shrink_factors=SHRINK,
                          smoothing_sigmas=sigmas_mm(spacing), sampling=sampling)  # fmt: skip
    return reg.transform.apply, reg.iterations


def run_sitk(fixed, moving, spacing, metric, fraction):
    f = sitk.GetImageFromArray(fixed)
    m = sitk.GetImageFromArray(moving)
    f.SetSpacing(spacing[::-1])
    m.SetSpacing(spacing[::-1])
    method = sitk.ImageRegistrationMethod()
    if metric == "mi":
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    elif metric == "ncc":
        method.SetMetricAsCorrelation()
    else:
        method.SetMetricAsMeanSquares()
    if fraction is None:
        method.SetMetricSamplingStrategy(method.NONE)
    else:
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(fraction, 1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=100, relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-6,
    )  # fmt: skip
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(SHRINK))
    method.SetSmoothingSigmasPerLevel(list(sigmas_mm(spacing)))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    init = sitk.CenteredTransformInitializer(
        f, m, sitk.VersorRigid3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    method.SetInitialTransform(init, inPlace=False)
    iterations = []
    method.AddCommand(sitk.sitkIterationEvent, lambda: iterations.append(1))
    out = method.Execute(f, m)

    def apply(p):
        return np.array([out.TransformPoint(tuple(float(v) for v in q[::-1]))[::-1] for q in p])

    return apply, len(iterations)


def measure(fn, *args):
    base = vm_kib("VmRSS")
    reset_peak()
    load = OtherLoad()
    c0 = time.process_time()
    t0 = time.perf_counter()
    apply, iters = fn(*args)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = vm_kib("VmHWM")
    mib = (peak - base) / 1024 if peak and base else float("nan")
    return apply, iters, elapsed, cpu, mib, load


def compile_time() -> float:
    """First call of register (MI, NCC) on a small pair minus the second call.

    The pair is large enough for the benchmark's three-level pyramid, so the Gaussian
    smoothing is compiled here too and no timed case below includes compilation.
    """
    import fastct

    rng = np.random.default_rng(0)
    a = rng.normal(size=(34, 36, 38)).astype(np.float32)
    b = np.roll(a, 1, axis=2)
    kw = dict(shrink_factors=SHRINK, smoothing_sigmas=sigmas_mm((1.0,) * 3), init="geometry")
    t0 = time.perf_counter()
    for metric in ("mi", "ncc"):
        for sampling in ("full", "auto"):
            fastct.register(a, b, metric=metric, sampling=sampling, **kw)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for metric in ("mi", "ncc"):
        for sampling in ("full", "auto"):
            fastct.register(a, b, metric=metric, sampling=sampling, **kw)
    return first - (time.perf_counter() - t0)


def run_size(n: int, metrics) -> list[dict]:
    fixed, moving, spacing, m = make_pair(n)
    rows = []
    for metric in metrics:
        cases = [
            ("fastct full", run_fastct, (fixed, moving, spacing, metric, "full")),
            ("fastct default (auto sampling)", run_fastct, (fixed, moving, spacing, metric, "auto")),
        ]  # fmt: skip
        if sitk is not None:
            cases += [
                ("SimpleITK full", run_sitk, (fixed, moving, spacing, metric, None)),
                ("SimpleITK random 10%", run_sitk, (fixed, moving, spacing, metric, 0.1)),
            ]
        for name, fn, args in cases:
            apply, iters, elapsed, cpu, peak, load = measure(fn, *args)
            err = corner_error_mm(apply, m, fixed.shape, spacing)
            rows.append({"size": n, "metric": metric, "method": name, "time_s": elapsed,
                         "cpu_s": cpu, "iterations": iters, "error_mm": err, "peak_mib": peak,
                         "other_load": load.cores(), "voxel_mm": spacing[0]})  # fmt: skip
            print(f"{n}^3 {metric} {name}: {elapsed:.2f} s (cpu {cpu:.2f} s), {iters} iterations, "
                  f"corner error {err:.3f} mm, peak +{peak:.0f} MiB, other load "
                  f"{rows[-1]['other_load']:.2f}", flush=True)  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    out = [
        "| size | metric | method | time (s) | speed-up of fastct full / default | "
        "CPU time (s) | CPU-time ratio full / default | iterations | corner error (mm) | "
        "peak memory (MiB) | other load (cores) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        same = [x for x in rows if x["size"] == r["size"] and x["metric"] == r["metric"]]
        full = next(x for x in same if x["method"] == "fastct full")
        auto = next(x for x in same if x["method"].startswith("fastct default"))
        ratio = cratio = "-"
        if not r["method"].startswith("fastct"):
            ratio = (f"**{r['time_s'] / full['time_s']:.1f}x** / "
                     f"**{r['time_s'] / auto['time_s']:.1f}x**")  # fmt: skip
            cratio = f"{r['cpu_s'] / full['cpu_s']:.1f}x / {r['cpu_s'] / auto['cpu_s']:.1f}x"
        out.append(
            f"| {r['size']}^3 | {r['metric']} | {r['method']} | {r['time_s']:.2f} | {ratio} | "
            f"{r['cpu_s']:.2f} | {cratio} | {r['iterations']} | {r['error_mm']:.3f} | "
            f"{r['peak_mib']:.0f} | {r['other_load']:.2f} |"
        )
    return "\n".join(out)


BEGIN = "<!-- bench_registration: begin (generated) -->"
END = "<!-- bench_registration: end -->"


def write_report(rows, first_s, command) -> None:
    """Write the generated speed section of docs/benchmarks/registration.md.

    Only the text between the BEGIN and END markers is replaced (the rest of the page,
    e.g. the accuracy tables, is kept); without markers the page is created.
    """
    import fastct

    sitk_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() if sitk else 0
    machine = (f"{platform.processor() or platform.machine()}, "
               f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}, "
               f"fastct {fastct.get_num_threads()} threads"
               + (f", SimpleITK {sitk.Version.VersionString()} {sitk_threads} threads"
                  if sitk else ""))  # fmt: skip
    loads = [r["other_load"] for r in rows]
    block = f"""{BEGIN}
Machine: {machine}.
Other processes used {min(loads):.2f}-{max(loads):.2f} cores during the cases (last
column; above ~0.3 the wall-time ratios are noisy, the CPU-time ratios much less so).
fastct first-call compile time (MI + NCC kernels, Gaussian): {first_s:.1f} s.

Reproduce: `{command}`

{table(rows)}
{END}"""
    if REPORT.exists() and BEGIN in (text := REPORT.read_text()) and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = f"""# Registration benchmark

fastct.register against SimpleITK's ImageRegistrationMethod in the same process, rigid,
same metric and pyramid (shrink 4, 2, 1; sigmas 2, 1, 0 voxels in mm), linear
interpolation, geometry initialisation, physical-shift parameter scales (details in
`benchmarks/bench_registration.py`). Corner error: largest distance over the fixed image's
8 corners between the found and the true transform. Voxel size: 2.8125 mm at 128^3,
1.40625 mm at 256^3.

{block}
"""
    REPORT.write_text(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--metrics", nargs="+", default=["mi", "ncc"])
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of both libraries (default: fastct's and SimpleITK's own)")  # fmt: skip
    args = p.parse_args(argv)
    if args.threads:
        import fastct

        fastct.set_num_threads(args.threads)
        if sitk is not None:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    first = compile_time()
    print(f"first-call compile time {first:.1f} s", flush=True)
    rows = []
    for n in args.sizes:
        rows += run_size(n, args.metrics)
    print(table(rows))
    if not args.no_report:
        cmd = ".venv/bin/python benchmarks/bench_registration.py " + " ".join(
            ["--sizes", *map(str, args.sizes), "--metrics", *args.metrics]
            + (["--threads", str(args.threads)] if args.threads else [])
        )
        write_report(rows, first, cmd)
    return 0


def test_registration_128_vs_simpleitk():
    """128^3 Mattes MI: fastct full sampling >= 10x SimpleITK full, equal or better accuracy."""
    import pytest

    if sitk is None:
        pytest.skip("SimpleITK not installed")
    compile_time()
    rows = run_size(128, ["mi"])
    print(table(rows))
    by = {r["method"]: r for r in rows}
    fast, ref = by["fastct full"], by["SimpleITK full"]
    assert fast["error_mm"] <= max(ref["error_mm"], 0.5 * fast["voxel_mm"])
    if max(r["other_load"] for r in rows) < 0.3:
        assert ref["time_s"] / fast["time_s"] >= SPEED_TARGET, table(rows)


if __name__ == "__main__":
    sys.exit(main())

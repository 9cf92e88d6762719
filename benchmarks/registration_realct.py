"""Rigid registration on real chest CT: fastct against elastix and SimpleITK, same run.

Pairs: :mod:`_realct_pairs` (a real chest CT, default LIDC-IDRI-0001 from
``../shared/realct`` or ``$FASTCT_REALCT``, resampled with cubic B-splines by scipy onto
an isotropic 1 mm grid of 96 x 128 x 128 voxels centred in the scan; the moving image
is the same scan resampled under a seeded rigid motion of up to 10 degrees and 10 mm,
cut from the larger field so there is real anatomy beyond every face; independent
15 HU Gaussian noise on each image). Corner error: the largest distance over the fixed
image's 8 corners between the found and the true transform (mm; 1 mm = 1 voxel).

Two comparisons, every method on the same pairs in the same process, interleaved:

* ``--mi`` (seeds 0..``--mi-pairs``-1): fastct ``register(metric='mi')`` with its defaults
  against elastix (``itk-elastix``) with its default rigid parameter map
  (``itk.ParameterObject.New().GetDefaultParameterMap('rigid')``: Euler transform,
  Mattes MI, 4 resolutions, adaptive stochastic gradient descent, 256 iterations of
  2048 random samples per resolution), unchanged, and once more with only
  ``WriteResultImage`` set to ``false`` (elastix then skips resampling the moving image,
  which fastct does not do either). Times are warm (each library ran a registration
  before).
* ``--ncc`` (seeds 0..``--ncc-trials``-1): fastct ``register(metric='ncc')`` with its
  defaults against SimpleITK's ImageRegistrationMethod with the correlation metric,
  configured as in ``bench_registration.py`` (shrink 4, 2, 1, sigmas 2, 1, 0 mm, linear
  interpolation, geometry initialisation, physical-shift scales, regular-step gradient
  descent) on 10% random samples per level. Success: corner error <= 0.5 voxel.

Run (prints Markdown tables; record them in docs/benchmarks/registration.md)::

    .venv/bin/python benchmarks/registration_realct.py --mi --ncc

Needs scipy, nibabel (reading the scan), ``itk-elastix`` for ``--mi`` (the ``bench``
extra) and SimpleITK for ``--ncc``; exits with status 0 and a message when the real CT
folder is absent, and skips a reference library that is not installed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import OtherLoad  # noqa: E402
from _realct_pairs import DEFAULT_SCAN, Pair, corner_error_mm, make_pair, realct_folder  # noqa: E402


def run_fastct(pair: Pair, metric: str, **kw):
    import fastct

    reg = fastct.register(pair.fixed, pair.moving, metric=metric, fixed_spacing=pair.spacing,
                          moving_spacing=pair.spacing, fixed_origin=pair.origin,
                          moving_origin=pair.origin, **kw)  # fmt: skip
    return reg.transform.apply


def _itk_image(itk, arr: np.ndarray, pair: Pair):
    img = itk.image_from_array(np.ascontiguousarray(arr, dtype=np.float32))
    img.SetSpacing([float(v) for v in pair.spacing[::-1]])
    img.SetOrigin([float(v) for v in pair.origin[::-1]])
    return img


def run_elastix(pair: Pair, write_result: bool = True):
    """elastix's default rigid map; returns the fixed -> moving point map (z, y, x)."""
    import itk

    fixed = _itk_image(itk, pair.fixed, pair)
    moving = _itk_image(itk, pair.moving, pair)
    po = itk.ParameterObject.New()
    pm = po.GetDefaultParameterMap("rigid")
    if not write_result:
        pm["WriteResultImage"] = ["false"]
    po.AddParameterMap(pm)
    _, result = itk.elastix_registration_method(fixed, moving, parameter_object=po,
                                                log_to_console=False)  # fmt: skip
    params = [float(v) for v in result.GetParameter(0, "TransformParameters")]
    center = [float(v) for v in result.GetParameter(0, "CenterOfRotationPoint")]
    zyx_first = result.GetParameter(0, "ComputeZYX")
    t = itk.Euler3DTransform[itk.D].New()
    t.SetComputeZYX(bool(zyx_first) and zyx_first[0] == "true")
    t.SetCenter(center)
    p = itk.OptimizerParameters[itk.D](6)
    for i, v in enumerate(params):
        p[i] = v
    t.SetParameters(p)
    m = np.array([[t.GetMatrix()(i, j) for j in range(3)] for i in range(3)])
    off = np.array([t.GetOffset()[i] for i in range(3)])

    def apply(pts):  # ITK works in (x, y, z)
        xyz = np.asarray(pts, dtype=float)[:, ::-1]
        return (xyz @ m.T + off)[:, ::-1]

    return apply


SITK_SHRINK = (4, 2, 1)


def run_sitk(pair: Pair, metric: str = "ncc", fraction: float = 0.1):
    import SimpleITK as sitk

    def img(a):
        im = sitk.GetImageFromArray(a)
        im.SetSpacing(pair.spacing[::-1])
        im.SetOrigin(pair.origin[::-1])
        return im

    f, m = img(pair.fixed), img(pair.moving)
    method = sitk.ImageRegistrationMethod()
    if metric == "ncc":
        method.SetMetricAsCorrelation()
    else:
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(fraction, 1)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=100, relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-6,
    )  # fmt: skip
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(SITK_SHRINK))
    vox = pair.spacing[0]
    method.SetSmoothingSigmasPerLevel([0.5 * s * vox if s > 1 else 0.0 for s in SITK_SHRINK])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    init = sitk.CenteredTransformInitializer(
        f, m, sitk.VersorRigid3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    method.SetInitialTransform(init, inPlace=False)
    out = method.Execute(f, m)

    def apply(pts):
        return np.array([out.TransformPoint(tuple(float(v) for v in q[::-1]))[::-1] for q in pts])

    return apply


def timed(fn, *args, **kw):
    load = OtherLoad()
    c0 = time.process_time()
    t0 = time.perf_counter()
    apply = fn(*args, **kw)
    return apply, time.perf_counter() - t0, time.process_time() - c0, load.cores()


def machine_line(threads: int) -> str:

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{threads} threads for every library, load average {load:.1f} at the start")  # fmt: skip


def compare_mi(pairs: int) -> list[dict]:
    try:
        import itk  # noqa: F401
    except ImportError:
        print("itk-elastix not installed (pip install itk-elastix): MI comparison skipped")
        return []
    warm = make_pair(100)
    run_fastct(warm, "mi")
    run_elastix(warm)
    rows = []
    for seed in range(pairs):
        pair = make_pair(seed)
        r = {"seed": seed}
        for name, fn, kw in (("fastct", run_fastct, {"metric": "mi"}),
                             ("elastix", run_elastix, {}),
                             ("elastix_nowrite", run_elastix, {"write_result": False})):  # fmt: skip
            apply, wall, cpu, other = timed(fn, pair, **kw)
            r[name] = (wall, cpu, corner_error_mm(apply, pair), other)
        rows.append(r)
        f, e, n = r["fastct"], r["elastix"], r["elastix_nowrite"]
        print(f"MI seed {seed}: fastct {f[0]:.2f} s, cpu {f[1]:.2f} s ({f[2]:.3f} mm), elastix "
              f"{e[0]:.2f} s, cpu {e[1]:.2f} s ({e[2]:.3f} mm), elastix without result image "
              f"{n[0]:.2f} s, cpu {n[1]:.2f} s ({n[2]:.3f} mm), other load "
              f"{max(f[3], e[3], n[3]):.2f}", flush=True)  # fmt: skip
    return rows


def mi_table(rows: list[dict]) -> str:
    out = [
        "| pair (seed) | fastct MI time (s) | elastix default time (s) | speed-up | "
        "CPU time fastct / elastix (s) | CPU-time ratio | elastix, no result image: time, "
        "CPU (s) | fastct error (mm) | elastix error (mm) | fastct <= elastix | "
        "other load (cores) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for r in rows:
        f, e, n = r["fastct"], r["elastix"], r["elastix_nowrite"]
        out.append(
            f"| {r['seed']} | {f[0]:.2f} | {e[0]:.2f} | **{e[0] / f[0]:.1f}x** | "
            f"{f[1]:.2f} / {e[1]:.2f} | **{e[1] / f[1]:.1f}x** | {n[0]:.2f}, {n[1]:.2f} | "
            f"{f[2]:.3f} | {e[2]:.3f} | {'yes' if f[2] <= e[2] else 'no'} | "
            f"{max(f[3], e[3], n[3]):.2f} |"
        )
    if rows:
        ft = np.array([r["fastct"][0] for r in rows])
        et = np.array([r["elastix"][0] for r in rows])
        nt = np.array([r["elastix_nowrite"][0] for r in rows])
        fc = np.array([r["fastct"][1] for r in rows])
        ec = np.array([r["elastix"][1] for r in rows])
        fe = np.array([r["fastct"][2] for r in rows])
        ee = np.array([r["elastix"][2] for r in rows])
        nc = np.array([r["elastix_nowrite"][1] for r in rows])
        out.append(
            f"| **all {len(rows)}** (median) | {np.median(ft):.2f} | {np.median(et):.2f} | "
            f"**{np.median(et / ft):.1f}x** (min {np.min(et / ft):.1f}x) | "
            f"{np.median(fc):.2f} / {np.median(ec):.2f} | **{np.median(ec / fc):.1f}x** (min "
            f"{np.min(ec / fc):.1f}x) | {np.median(nt):.2f}, {np.median(nc):.2f} | "
            f"{np.median(fe):.3f} | {np.median(ee):.3f} | "
            f"**{int((fe <= ee).sum())} of {len(rows)}** | |"
        )
    return "\n".join(out)


def compare_ncc(trials: int) -> list[dict]:
    try:
        import SimpleITK  # noqa: F401

        have_sitk = True
    except ImportError:
        print("SimpleITK not installed: only fastct's NCC trials run")
        have_sitk = False
    warm = make_pair(100)
    run_fastct(warm, "ncc")
    rows = []
    for seed in range(trials):
        pair = make_pair(seed)
        r = {"seed": seed}
        apply, wall, cpu, other = timed(run_fastct, pair, "ncc")
        r["fastct"] = (wall, cpu, corner_error_mm(apply, pair), other)
        if have_sitk:
            apply, wall, cpu, other = timed(run_sitk, pair, "ncc")
            r["sitk"] = (wall, cpu, corner_error_mm(apply, pair), other)
        rows.append(r)
        s = r.get("sitk")
        print(f"NCC seed {seed}: fastct {r['fastct'][0]:.2f} s, cpu {r['fastct'][1]:.2f} s "
              f"({r['fastct'][2]:.3f} mm)"
              + (f", SimpleITK {s[0]:.2f} s, cpu {s[1]:.2f} s ({s[2]:.3f} mm)" if s else ""),
              flush=True)  # fmt: skip
    return rows


def ncc_table(rows: list[dict]) -> str:
    out = [
        "| method | trials | within 0.5 voxel | median error (mm) | p95 | max | "
        "median time (s) | median CPU time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, name in (("fastct", "fastct NCC (defaults)"),
                      ("sitk", "SimpleITK correlation, 10% random samples")):  # fmt: skip
        vals = [r[key] for r in rows if key in r]
        if not vals:
            continue
        e = np.array([v[2] for v in vals])
        t = np.array([v[0] for v in vals])
        c = np.array([v[1] for v in vals])
        out.append(
            f"| {name} | {len(vals)} | **{100 * np.mean(e <= 0.5):.1f}%** | {np.median(e):.3f} | "
            f"{np.percentile(e, 95):.3f} | {e.max():.3f} | {np.median(t):.2f} | "
            f"{np.median(c):.2f} |"
        )
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mi", action="store_true", help="fastct MI against elastix")
    p.add_argument("--ncc", action="store_true", help="fastct NCC against SimpleITK")
    p.add_argument("--mi-pairs", type=int, default=10)
    p.add_argument("--ncc-trials", type=int, default=40)
    p.add_argument("--threads", type=int, default=None,
                   help="threads of every library (default: all cores)")  # fmt: skip
    args = p.parse_args(argv)
    scan = realct_folder() / DEFAULT_SCAN
    if not scan.exists():
        print(f"real CT scan {scan} not found (set FASTCT_REALCT): benchmark skipped")
        return 0
    import fastct

    threads = args.threads or os.cpu_count() or 1
    fastct.set_num_threads(threads)
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    except ImportError:
        pass
    try:
        import itk

        itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(threads)
    except ImportError:
        pass
    print(f"Machine: {machine_line(threads)}; fastct {fastct.__version__}; scan {scan.name}")
    t0 = time.perf_counter()
    if args.mi:
        rows = compare_mi(args.mi_pairs)
        print(mi_table(rows))
    if args.ncc:
        rows = compare_ncc(args.ncc_trials)
        print(ncc_table(rows))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s, load average at the end "
          f"{os.getloadavg()[0]:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Start-up: one-off commands in fresh processes, first-ever (cold cache) and later runs.

Every kernel is cached on disk (Numba ``cache=True``), so only the first process that
uses a kernel compiles it. This benchmark gives the cache a private folder
(``NUMBA_CACHE_DIR`` in a temporary folder), so "cold" really is the first run ever,
and times fresh processes (wall time of the whole process, as a user sees it):

* ``import fastct`` (compiles nothing, imports no Numba);
* ``fastct gaussian SRC DST --sigma 1`` on a 64^3 int16 CT volume against an equivalent
  Python script (nibabel + scipy.ndimage.gaussian_filter, NIfTI in and out), target
  fastct within 1.5x. NIfTI paths when the CLI takes them, else ``FILE.h5:/path`` in and
  out (the reference still reads and writes NIfTI);
* ``fastct register FIXED MOVING`` on two 64^3 volumes (phantom pair), target < 3 s warm;
* ``fastct demo --size S``: a second process against the warm time in one process
  (the demo run twice by ``cli.main``), target no more than 10 s above;
* ``fastct warmup``, cold (compiles everything) and warm (loads everything).

Warm numbers are the best of ``--repeat`` runs, fastct and the reference alternating.
The table goes to docs/benchmarks/startup.md.

Run: ``python benchmarks/bench_startup.py [--repeat 3] [--demo-size small]`` or
``python -m pytest benchmarks/bench_startup.py -s``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import OtherLoad  # noqa: E402 - benchmarks/ is on sys.path under pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "benchmarks" / "startup.md"
N = 64

REFERENCE = """
import sys
import nibabel as nib
import numpy as np
from scipy.ndimage import gaussian_filter
img = nib.load(sys.argv[1])
data = np.asarray(img.dataobj).astype(np.float32)
out = gaussian_filter(data, 1.0, mode="reflect", truncate=4.0)
nib.save(nib.Nifti1Image(out, img.affine, img.header), sys.argv[2])
"""


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    return env


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    """Wall time of a fresh process; raises with its stderr when it fails."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return wall


def fastct_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fastct.cli", *args]


def make_inputs(folder: Path) -> dict[str, str]:
    """64^3 int16 CT volumes: NIfTI and HDF5 copies of a phantom pair."""
    import nibabel as nib

    import fastct
    from fastct import datasets

    pair = datasets.phantom_pair("tiny", shape=(N, N, N), seed=0)
    base, follow = (np.asarray(v.image, dtype=np.int16) for v in (pair.baseline, pair.followup))
    spacing = tuple(float(s) for s in pair.baseline.spacing)
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    # NIfTI is (x, y, z): the same voxels transposed
    nib.save(nib.Nifti1Image(base.transpose(2, 1, 0), affine), folder / "ct.nii.gz")
    with fastct.open(folder / "in.h5", "w") as ar:
        ar.create_volume("/scans/a/image", base, spacing=spacing)
        ar.create_volume("/scans/b/image", follow, spacing=spacing)
    return {"nii": str(folder / "ct.nii.gz"), "h5": str(folder / "in.h5")}


def gaussian_cold(folder: Path, env: dict[str, str], paths: dict[str, str]):
    """The first-ever gaussian command: NIfTI in and out if the CLI takes them, else
    HDF5 volumes. Returns (arguments for later runs, I/O kind, cold seconds)."""
    nifti = ["gaussian", paths["nii"], str(folder / "out.nii.gz"), "--sigma", "1"]
    try:
        cold = timed(fastct_cmd(*nifti), env, folder)
        return nifti + ["--overwrite"], "NIfTI", cold
    except RuntimeError:
        h5 = ["gaussian", paths["h5"] + ":/scans/a/image", str(folder / "out.h5") + ":/g"]
        h5 += ["--sigma", "1", "--overwrite"]
        return h5, "HDF5", timed(fastct_cmd(*h5), env, folder)


def run(repeat: int = 3, demo_size: str = "small", warmup: bool = True) -> dict[str, float | str]:
    res: dict[str, float | str] = {}
    load = OtherLoad()
    with tempfile.TemporaryDirectory(prefix="fastct-bench-startup-") as tmp:
        folder = Path(tmp)
        cache = folder / "numba-cache"
        env = _env(cache)
        paths = make_inputs(folder)
        imp = [sys.executable, "-c", "import fastct"]
        res["import"] = min(timed(imp, env, folder) for _ in range(repeat))
        ref = [sys.executable, "-c", REFERENCE, paths["nii"], str(folder / "ref.nii.gz")]

        # cold: the first process ever (empty cache) compiles what it uses
        gargs, res["gaussian_io"], res["gaussian_cold"] = gaussian_cold(folder, env, paths)
        fast, slow = [], []
        for _ in range(repeat):
            fast.append(timed(fastct_cmd(*gargs), env, folder))
            slow.append(timed(ref, env, folder))
        res["gaussian_warm"], res["reference"] = min(fast), min(slow)

        h5 = paths["h5"]
        reg = ["register", h5 + ":/scans/a/image", h5 + ":/scans/b/image",
               "--output-transform", str(folder / "t.json"), "--overwrite"]  # fmt: skip
        res["register_cold"] = timed(fastct_cmd(*reg), env, folder)
        res["register_warm"] = min(timed(fastct_cmd(*reg), env, folder) for _ in range(repeat))

        demo = ["demo", "--size", demo_size, "--out", str(folder / "demo"), "--overwrite"]
        res["demo_size"] = demo_size
        res["demo_cold"] = timed(fastct_cmd(*demo), env, folder)
        res["demo_second"] = min(timed(fastct_cmd(*demo), env, folder) for _ in range(2))
        twice = (
            "import sys, time; from fastct import cli\n"
            "for i in range(2):\n"
            "    t = time.perf_counter(); assert cli.main(sys.argv[1:]) == 0\n"
            "print(time.perf_counter() - t)\n"
        )
        r = subprocess.run([sys.executable, "-c", twice, *demo], env=env, cwd=folder,
                           capture_output=True, text=True)  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-3000:])
        res["demo_in_process"] = float(r.stdout.split()[-1])

        # the warm-up itself, on an empty cache, then again
        cache2 = folder / "numba-cache-2"
        if not warmup:
            res["warmup_cold"] = res["warmup_warm"] = float("nan")
        else:
            res["warmup_cold"] = timed(fastct_cmd("warmup", "--quiet"), _env(cache2), folder)
            res["warmup_warm"] = timed(fastct_cmd("warmup", "--quiet"), _env(cache2), folder)
    res["other_load"] = load.cores()
    return res


def table(res: dict) -> str:
    ratio = res["gaussian_warm"] / res["reference"]
    rows = [
        ("`import fastct`", "-", f"{res['import']:.2f}", "-"),
        (f"`fastct gaussian` 64^3 ({res['gaussian_io']} in/out)",
         f"{res['gaussian_cold']:.1f}", f"{res['gaussian_warm']:.2f}",
         f"{ratio:.2f}x the nibabel + scipy script ({res['reference']:.2f} s); target <= 1.5x"),
        ("`fastct register` 64^3 pair", f"{res['register_cold']:.1f}",
         f"{res['register_warm']:.2f}", "target < 3 s warm"),
        (f"`fastct demo --size {res['demo_size']}`", f"{res['demo_cold']:.1f}",
         f"{res['demo_second']:.1f}",
         f"warm in one process {res['demo_in_process']:.1f} s: second process "
         f"{res['demo_second'] - res['demo_in_process']:+.1f} s (target <= +10 s)"),
    ]  # fmt: skip
    if res["warmup_cold"] == res["warmup_cold"]:  # not NaN: measured
        rows.append(("`fastct warmup` (everything)", f"{res['warmup_cold']:.1f}",
                     f"{res['warmup_warm']:.1f}", "warm: loads every kernel from the cache"))  # fmt: skip
    lines = [
        "| command (fresh process) | first ever, s | later runs, s | notes |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def write_report(res: dict, command: str) -> None:
    import fastct

    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}, fastct {fastct.__version__}")  # fmt: skip
    REPORT.write_text(
        f"""# Start-up benchmark

Fresh processes, wall time as a user sees it; "first ever" runs on an empty Numba cache
(a private `NUMBA_CACHE_DIR`), "later runs" are the best of several fresh processes
once the cache holds the kernels (details in `benchmarks/bench_startup.py`).

Machine: {machine}. Other processes used {res["other_load"]:.2f} cores on average
during the run.

Reproduce: `{command}`

{table(res)}
"""
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--demo-size", default="small")
    p.add_argument("--no-warmup", action="store_true", help="skip timing 'fastct warmup'")
    p.add_argument("--no-report", action="store_true")
    args = p.parse_args(argv)
    res = run(args.repeat, args.demo_size, not args.no_warmup)
    print(res)
    print(table(res))
    if not args.no_report:
        cmd = (f".venv/bin/python benchmarks/bench_startup.py --repeat {args.repeat} "
               f"--demo-size {args.demo_size}" + (" --no-warmup" if args.no_warmup else ""))  # fmt: skip
        write_report(res, cmd)
    return 0


def test_startup():
    """Cold and warm start-up of one-off commands; writes docs/benchmarks/startup.md."""
    res = run(repeat=2, demo_size="small")
    print(table(res))
    write_report(res, "python -m pytest benchmarks/bench_startup.py -s")
    assert res["gaussian_warm"] < res["gaussian_cold"]
    assert not res["warmup_warm"] >= res["warmup_cold"]


if __name__ == "__main__":
    sys.exit(main())

"""fastct.dask Gaussian against dask-image's, on the same chunked dask array, same run.

Target (issue 17): ``fastct.dask.gaussian`` >= 1.5x ``dask_image.ndfilters.gaussian_filter``
with the same sigma, truncate and mode, on the same chunked float32 array, under the
same dask scheduler (the local threaded one). Both results are checked against
``scipy.ndimage.gaussian_filter`` on the whole array (max |diff| / value range), and
fastct.dask's against the in-memory ``fastct.gaussian`` bit for bit.

Timing: the two libraries alternate, each timed call right after an untimed call of its
own; the minimum over the rounds is kept. ``.compute()`` of a fresh graph each time
(graph construction included: it is part of what a user pays).

Run: ``python -m pytest benchmarks/bench_dask.py -s -p no:cacheprovider``
(or ``make bench``); writes docs/benchmarks/dask.md.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import pytest
from _machine import OtherLoad  # noqa: E402 - benchmarks/ is on sys.path under pytest

da = pytest.importorskip("dask.array")
ndfilters = pytest.importorskip("dask_image.ndfilters")

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "dask.md"
SHAPE = (128, 256, 256)  # float32, 32 MiB
CHUNKS = (64, 64, 64)
ROUNDS = 5
# Other processes using more than this many cores make the speed target unverifiable
# on a 2-core machine: it is then reported, not asserted.
OTHER_LOAD_LIMIT = 0.25
CASES = [
    ("sigma=2, reflect", 2.0, "reflect"),
    ("sigma=2, nearest", 2.0, "nearest"),
    ("sigma=1, reflect", 1.0, "reflect"),
]
RESULTS: list[dict] = []


def phantom(shape=SHAPE, seed=0) -> np.ndarray:
    """float32 CT-like volume: a body, spheres of lung/tissue/bone, noise (HU)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    img = np.full(shape, -1000.0, np.float32)
    body = ((y - shape[1] / 2) / (0.42 * shape[1])) ** 2 + (
        (x - shape[2] / 2) / (0.36 * shape[2])
    ) ** 2 < 1
    img[np.broadcast_to(body, shape)] = 40.0
    for _ in range(12):
        c = [rng.uniform(0.25 * n, 0.75 * n) for n in shape]
        r = rng.uniform(4, shape[1] / 10)
        img[(z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r * r] = rng.choice(
            [-800.0, 60.0, 700.0]
        )
    img += rng.normal(0, 25, size=shape).astype(np.float32)
    return img


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return phantom()


@pytest.mark.parametrize(("case", "sigma", "mode"), CASES)
def test_dask_gaussian_vs_dask_image(image, case, sigma, mode):
    import scipy.ndimage as ndi

    import fastct
    import fastct.dask as fd

    truncate = 4.0
    x = da.from_array(image, chunks=CHUNKS)

    def run_fastct():
        return fd.gaussian(x, sigma, mode=mode, truncate=truncate).compute()

    def run_dask_image():
        return ndfilters.gaussian_filter(x, sigma, mode=mode, truncate=truncate).compute()

    ours, theirs = run_fastct(), run_dask_image()  # warm: compile, imports
    load = OtherLoad()
    best = {"fastct": float("inf"), "dask-image": float("inf")}
    for _ in range(ROUNDS):
        for name, fn in (("fastct", run_fastct), ("dask-image", run_dask_image)):
            fn()
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    other = load.cores()
    ref = ndi.gaussian_filter(image, sigma, mode=mode, truncate=truncate)
    span = float(np.ptp(image))
    err_ours = float(np.abs(ours.astype(np.float64) - ref).max()) / span
    err_theirs = float(np.abs(theirs.astype(np.float64) - ref).max()) / span
    exact = bool(np.array_equal(ours, fastct.gaussian(image, sigma, mode=mode, truncate=truncate)))
    ratio = best["dask-image"] / best["fastct"]
    RESULTS.append(
        dict(case=case, t_ours=best["fastct"], t_theirs=best["dask-image"], ratio=ratio,
             err_ours=err_ours, err_theirs=err_theirs, exact=exact, other=other)
    )  # fmt: skip
    print(f"{case}: fastct.dask {best['fastct'] * 1e3:.0f} ms, dask-image "
          f"{best['dask-image'] * 1e3:.0f} ms ({ratio:.2f}x), other load {other:.2f}")  # fmt: skip
    assert exact
    assert err_ours < 1e-6 and err_theirs < 1e-6
    if other < OTHER_LOAD_LIMIT:
        assert ratio >= 1.5, f"fastct.dask only {ratio:.2f}x dask-image"


BATCH_SCANS = 6
BATCH_SHAPE = (96, 256, 256)  # int16, 12 MiB per scan
BATCH: list[dict] = []


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_throughput(tmp_path_factory, workers):
    """fastct.batch: scans per hour with 1 and 2 single-threaded local workers."""
    distributed = pytest.importorskip("distributed")
    from fastct.batch import run_batch

    folder = tmp_path_factory.mktemp(f"batch{workers}")
    rng = np.random.default_rng(5)
    files = []
    for i in range(BATCH_SCANS):
        scan = np.clip(phantom(BATCH_SHAPE, seed=i), -1024, 3071).astype(np.int16)
        scan += rng.integers(-3, 4, BATCH_SHAPE, dtype=np.int16)
        np.save(folder / f"scan{i}.npy", scan)
        files.append(folder / f"scan{i}.npy")
    params = {"sigma": 1.0}
    with distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:  # fmt: skip
        address = cluster.scheduler_address
        # warm every worker (imports, cached kernels) on a throw-away run
        run_batch(files[:workers], folder / "warm", params=params, scheduler=address)
        load = OtherLoad()
        t0 = time.perf_counter()
        res = run_batch(files, folder / "out", params=params, scheduler=address)
        wall = time.perf_counter() - t0
        other = load.cores()
    assert res.failed == {} and len(res.written) == BATCH_SCANS
    scan_bytes = int(np.prod(BATCH_SHAPE)) * 2
    out_bytes = sum(p.stat().st_size for p in (folder / "out").glob("*.h5")) / BATCH_SCANS
    BATCH.append(dict(workers=workers, wall=wall, per_scan=wall / BATCH_SCANS,
                      per_hour=3600 * BATCH_SCANS / wall, in_mib=scan_bytes / 2**20,
                      out_mib=out_bytes / 2**20, other=other))  # fmt: skip
    print(f"batch, {workers} worker(s): {BATCH_SCANS} scans in {wall:.1f} s "
          f"({3600 * BATCH_SCANS / wall:.0f} scans/h), other load {other:.2f}")  # fmt: skip


def test_zz_write_report():
    import dask
    import dask_image

    import fastct

    if not RESULTS:
        pytest.skip("no case ran")
    try:
        from importlib.metadata import version

        di_version = version("dask-image")
    except Exception:  # noqa: BLE001
        di_version = getattr(dask_image, "__version__", "?")
    rows = [
        f"| {r['case']} | {r['t_ours'] * 1e3:.0f} | {r['t_theirs'] * 1e3:.0f} | "
        f"**{r['ratio']:.2f}x** | {r['err_ours']:.1e} | {r['err_theirs']:.1e} | "
        f"{'yes' if r['exact'] else 'NO'} | {r['other']:.2f} |"
        for r in RESULTS
    ]
    n = os.cpu_count()
    pool = int(dask.config.get("num_workers", None) or n or 1)
    n_chunks = int(np.prod([-(-s // c) for s, c in zip(SHAPE, CHUNKS)]))
    text = "\n".join(
        [
            "# fastct.dask benchmark: Gaussian on a chunked dask array",
            "",
            f"Machine: {platform.machine()}, {n} cores, Python {platform.python_version()}, "
            f"fastct {fastct.__version__}, dask {dask.__version__}, dask-image {di_version}. "
            f"Input: a float32 CT-like phantom {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]} (32 MiB) "
            f"as a dask array in {CHUNKS[0]}^3 chunks ({n_chunks} chunks), computed with "
            f"dask's local threaded scheduler ({pool} threads; fastct's kernels run on "
            f"{max(1, fastct.get_num_threads() // pool)} Numba thread(s) per task, "
            "`fastct.dask.task_threads`). Same sigma, `truncate=4` and mode for both.",
            "",
            "Times: minimum over "
            f"{ROUNDS} rounds, the two libraries alternating, each timed `.compute()` "
            "(graph construction included) right after an untimed one of its own. "
            "Ratio = dask-image time / fastct.dask time (target: >= 1.5x). Accuracy: "
            "max |result - scipy.ndimage.gaussian_filter(whole array)| / value range. "
            "Exact: fastct.dask's result equals the in-memory `fastct.gaussian` bit for "
            "bit. Other load: cores busy with other processes during the case (the "
            "target is asserted only below 0.25).",
            "",
            "| case | fastct.dask (ms) | dask-image (ms) | ratio | fastct vs scipy | "
            "dask-image vs scipy | exact | other load |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            *_batch_lines(),
            "Reproduce: `python -m pytest benchmarks/bench_dask.py -s -p no:cacheprovider` "
            "(needs the `bench` extra: dask and dask-image).",
            "",
        ]
    )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    tmp = REPORT.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, REPORT)


def _batch_lines() -> list[str]:
    if not BATCH:
        return []
    n_cores = os.cpu_count() or 1
    rows = [
        f"| {b['workers']} | {b['wall']:.1f} | {b['per_scan']:.2f} | {b['per_hour']:.0f} | "
        f"{b['per_hour'] / n_cores:.0f} | {b['in_mib']:.0f} + {b['out_mib']:.0f} | "
        f"{b['other']:.2f} |"
        for b in BATCH
    ]
    return [
        "## fastct.batch throughput",
        "",
        f"`fastct.batch.run_batch` over {BATCH_SCANS} int16 CT-like scans of "
        f"{BATCH_SHAPE[0]}x{BATCH_SHAPE[1]}x{BATCH_SHAPE[2]} (`.npy` files), Gaussian "
        "sigma 1 mm, each result published as its own HDF5 archive; a LocalCluster of "
        "single-threaded worker processes, warmed first (imports, cached kernels); the "
        "time covers submitting, reading, filtering, writing and collecting. I/O per "
        "scan: input read + result archive written (float32).",
        "",
        "| workers | wall (s) | s per scan | scans per hour | scans per hour per core | "
        "I/O per scan (MiB) | other load |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]

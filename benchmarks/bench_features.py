"""Per-region features: fastct.region_features vs skimage.measure.regionprops_table.

Targets. Issue 19: on a 256^3 volume with about 16,000 SLIC-like labels, the basic
columns that ``regionprops_table`` computes in C (label, area, centroid, bbox,
intensity mean / min / max) at least 30x faster than ``regionprops_table`` for those
columns, faster on 2 threads than on 1, and reported against the memory floor (one
pass over labels and image). Issue 6: at least 30x ``regionprops_table`` for the
richer common set (std, percentiles, skewness, kurtosis through
``extra_properties``); one million labels on 512^3 completes, with time and peak
memory reported.

The labels are SLIC-like Voronoi cells (seeds on a jittered 25^3 grid, so 15,625
cells of ~1,000 voxels) and, for 512^3, a grid of 100^3 irregular boxes; the image
is random float32. Both libraries run in the same process on the same input, best of
several rounds on both sides, and the outputs are compared. First-call (compile) time
and peak memory are measured in fresh processes.

Run: ``make bench`` or ``python -m pytest benchmarks/bench_features.py -p
no:cacheprovider -s``; the Markdown table goes to ``docs/benchmarks/features.md``.
"""

import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.stats
from _machine import OtherLoad  # noqa: E402 - benchmarks/ is on sys.path under pytest

import fastct
from fastct.features import region_features

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "features.md"
RESULTS: dict[str, dict] = {}
SPACING = (2.0, 0.7, 0.7)
# The properties skimage can produce, in fastct's names.
COMMON = [
    "count",
    "volume",
    "mean",
    "std",
    "min",
    "max",
    "percentiles",
    "skewness",
    "kurtosis",
    "centroid",
    "bbox",
    "inertia_eigvals",
]


# The columns regionprops_table computes in C, in both libraries' names.
BASIC = ["count", "volume", "mean", "min", "max", "centroid", "bbox"]
SK_BASIC = ("label", "area", "bbox", "centroid", "intensity_mean", "intensity_min", "intensity_max")


def slic_like_labels(n: int, per_axis: int, seed: int = 0) -> np.ndarray:
    """Voronoi cells of seeds on a jittered grid (like SLIC's initial centres)."""
    rng = np.random.default_rng(seed)
    step = n / per_axis
    centres = (np.arange(per_axis) + 0.5) * step
    grid = np.stack(np.meshgrid(centres, centres, centres, indexing="ij"), -1).reshape(-1, 3)
    grid += rng.uniform(-0.3 * step, 0.3 * step, grid.shape)
    pts = np.clip(np.round(grid).astype(int), 0, n - 1)
    seeds = np.zeros((n, n, n), np.int32)
    seeds[tuple(pts.T)] = np.arange(1, len(pts) + 1, dtype=np.int32)
    idx = ndi.distance_transform_edt(seeds == 0, return_distances=False, return_indices=True)
    return seeds[tuple(idx)]


def box_grid(n: int, k: int, seed: int = 0) -> np.ndarray:
    """k^3 boxes with random cut positions along every axis (int32 labels 1..k^3)."""
    rng = np.random.default_rng(seed)
    cuts = [np.sort(rng.choice(np.arange(1, n), k - 1, replace=False)) for _ in range(3)]
    idx = [np.searchsorted(c, np.arange(n), side="right").astype(np.int32) for c in cuts]
    return idx[0][:, None, None] * (k * k) + idx[1][None, :, None] * k + idx[2][None, None, :] + 1


def peak_rss_reset() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_fresh(code: str) -> dict:
    """Run ``code`` (printing one JSON line last) in a fresh interpreter with this
    module's helpers imported."""
    prelude = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import numpy as np\n"
        "from bench_features import slic_like_labels, box_grid, peak_rss_reset, peak_rss\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def skimage_table(labels, image, spacing):
    from skimage.measure import regionprops_table

    def std(mask, img):
        return np.std(img[mask])

    def percentiles(mask, img):
        return np.percentile(img[mask], [10, 50, 90])

    def skewness(mask, img):
        return scipy.stats.skew(img[mask], bias=True)

    def kurtosis(mask, img):
        return scipy.stats.kurtosis(img[mask], fisher=True, bias=True)

    return regionprops_table(
        labels,
        image,
        spacing=spacing,
        properties=(
            "label",
            "area",
            "bbox",
            "centroid",
            "intensity_mean",
            "intensity_min",
            "intensity_max",
            "inertia_tensor_eigvals",
        ),
        extra_properties=(std, percentiles, skewness, kurtosis),
    )


def best_of(fn, rounds: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(rounds):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return min(times)


def best_wall_and_cpu(fn, rounds: int) -> tuple[float, float]:
    """Best wall time and best CPU time (this process, all threads) of ``rounds`` calls."""
    wall, cpu = [], []
    for _ in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


@pytest.fixture(scope="module")
def case256():
    labels = slic_like_labels(256, 25)
    image = np.random.default_rng(1).normal(0, 100, labels.shape).astype(np.float32)
    return labels, image


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if RESULTS:
        write_report()


def test_features_256_basic_vs_regionprops_table(benchmark, case256):
    """Issue 19: the columns regionprops_table computes in C, both sides, same run."""
    from skimage.measure import regionprops_table

    labels, image = case256
    region_features(labels[:32, :32, :32], image[:32, :32, :32], properties=BASIC)  # compile
    kw = {"spacing": SPACING, "properties": BASIC}
    load = OtherLoad()
    table = benchmark.pedantic(
        region_features, args=(labels, image), kwargs=kw, rounds=7, iterations=1
    )
    fast = benchmark.stats.stats.min
    # 1 and 2 threads, interleaved so that both see the same load
    best = {1: np.inf, 2: np.inf}
    cpu = {1: np.inf, 2: np.inf}
    try:
        for _ in range(7):
            for n in (1, 2):
                fastct.set_num_threads(n)
                w, c = best_wall_and_cpu(lambda: region_features(labels, image, **kw), 1)
                best[n], cpu[n] = min(best[n], w), min(cpu[n], c)
    finally:
        fastct.set_num_threads(None)
    ref: dict = {}

    def sk():
        ref.update(regionprops_table(labels, image, spacing=SPACING, properties=SK_BASIC))

    slow, slow_cpu = best_wall_and_cpu(sk, 2)
    # an int16 image (CT in HU): values summed in int64, the same bits
    image16 = np.clip(image * 4, -1024, 3000).astype(np.int16)
    fast16 = best_of(lambda: region_features(labels, image16, **kw), 7)
    ref16: dict = {}
    slow16 = best_of(
        lambda: ref16.update(
            regionprops_table(labels, image16, spacing=SPACING, properties=SK_BASIC)
        ),
        1,
    )
    np.testing.assert_array_equal(
        region_features(labels, image16, **kw)["max"], ref16["intensity_max"]
    )
    # the floor: one pass over the same bytes (numpy, one thread)
    dst_l, dst_i = np.empty_like(labels), np.empty_like(image)
    copy = best_of(lambda: (np.copyto(dst_l, labels), np.copyto(dst_i, image)), 5)
    read = best_of(lambda: (labels.max(), image.max()), 5)
    other = load.cores()
    # same numbers
    np.testing.assert_array_equal(table["label"], ref["label"])
    np.testing.assert_allclose(table["volume_mm3"], ref["area"], rtol=1e-12)
    for a, name in enumerate("zyx"):
        np.testing.assert_array_equal(table[f"bbox_min_{name}"], ref[f"bbox-{a}"])
        np.testing.assert_array_equal(table[f"bbox_max_{name}"], ref[f"bbox-{a + 3}"])
        np.testing.assert_allclose(table[f"centroid_{name}_mm"], ref[f"centroid-{a}"], rtol=1e-12)
    np.testing.assert_array_equal(table["min"], ref["intensity_min"])
    np.testing.assert_array_equal(table["max"], ref["intensity_max"])
    # skimage averages a float32 image in float32; fastct in float64
    np.testing.assert_allclose(table["mean"], ref["intensity_mean"], rtol=1e-5, atol=1e-3)
    RESULTS["basic"] = {
        "labels": int(table.n_rows),
        "fastct": fast,
        "threads": fastct.get_num_threads(),
        "one": best[1],
        "two": best[2],
        "skimage": slow,
        "fast16": fast16,
        "skimage16": slow16,
        "cpu_one": cpu[1],
        "cpu_two": cpu[2],
        "cpu_skimage": slow_cpu,
        "copy": copy,
        "read": read,
        "nbytes": labels.nbytes + image.nbytes,
        "other": other,
    }
    print(
        f"\nbasic columns: fastct {fast:.4f} s ({fastct.get_num_threads()} threads), "
        f"1 thread {best[1]:.4f} s, 2 threads {best[2]:.4f} s, regionprops_table "
        f"{slow:.2f} s: {slow / fast:.0f}x; numpy copy {copy:.4f} s, read {read:.4f} s; "
        f"other processes kept {other:.1f} cores busy; CPU seconds: fastct 1 thread "
        f"{cpu[1]:.4f}, 2 threads {cpu[2]:.4f}, regionprops_table {slow_cpu:.2f}"
    )
    assert slow / fast >= 30


def test_features_256_vs_skimage(benchmark, case256):
    labels, image = case256
    n_labels = int(labels.max())
    region_features(labels[:32, :32, :32], image[:32, :32, :32], properties=COMMON)  # compile
    table = benchmark.pedantic(
        region_features,
        args=(labels, image),
        kwargs={"spacing": SPACING, "properties": COMMON},
        rounds=3,
        iterations=1,
    )
    fast = benchmark.stats.stats.min
    fastct.set_num_threads(1)
    try:
        one = []
        for _ in range(2):
            t0 = time.perf_counter()
            region_features(labels, image, spacing=SPACING, properties=COMMON)
            one.append(time.perf_counter() - t0)
    finally:
        fastct.set_num_threads(None)
    t0 = time.perf_counter()
    ref = skimage_table(labels, image, SPACING)
    slow = time.perf_counter() - t0
    # same numbers
    np.testing.assert_array_equal(table["label"], ref["label"])
    np.testing.assert_allclose(table["volume_mm3"], ref["area"], rtol=1e-12)
    # skimage averages a float32 image in float32; fastct in float64
    np.testing.assert_allclose(table["mean"], ref["intensity_mean"], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(table["p50"], ref["percentiles-1"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(table["inertia_eig_0"], ref["inertia_tensor_eigvals-0"], rtol=1e-9)
    RESULTS["common"] = {
        "labels": n_labels,
        "fastct": fast,
        "skimage": slow,
        "ratio": slow / fast,
        "one_thread": min(one),
        "threads": fastct.get_num_threads(),
    }
    print(
        f"\n256^3, {n_labels} labels: fastct {fast:.3f} s, skimage {slow:.2f} s, {slow / fast:.0f}x"
    )
    assert slow / fast >= 30


def test_features_256_full_table(benchmark, case256):
    labels, image = case256
    region_features(labels[:32, :32, :32], image[:32, :32, :32])  # compile
    table = benchmark.pedantic(
        region_features, args=(labels, image), kwargs={"spacing": SPACING}, rounds=3, iterations=1
    )
    RESULTS["full"] = {"fastct": benchmark.stats.stats.min, "columns": len(table)}
    # contrast and n_neighbors come from the adjacency graph: check one region by hand
    row = table.n_rows // 2
    lab = table["label"][row]
    inside = labels == lab
    ring = ndi.binary_dilation(inside, ndi.generate_binary_structure(3, 1)) & ~inside
    neighbours = np.unique(labels[ring])
    assert table["n_neighbors"][row] == len(neighbours)


def test_features_256_streamed(benchmark, case256, tmp_path):
    labels, image = case256
    path = tmp_path / "case.h5"
    with fastct.open(path, "w") as ar:
        ar.create_volume("s/labels", labels, spacing=SPACING, chunks=(64, 64, 64))
        ar.create_volume("s/image", image, spacing=SPACING, chunks=(64, 64, 64))
    memory = region_features(labels, image, spacing=SPACING)
    with fastct.open(path) as ar:
        lv, iv = ar["s/labels"], ar["s/image"]
        table = benchmark.pedantic(region_features, args=(lv, iv), rounds=3, iterations=1)
    for col in memory:
        np.testing.assert_array_equal(table[col], memory[col], err_msg=col)
    RESULTS["streamed"] = {"fastct": benchmark.stats.stats.min}


def test_features_first_call_and_memory_256():
    info = run_fresh(
        """
        import json, time
        labels = slic_like_labels(256, 25)
        image = np.random.default_rng(1).normal(0, 100, labels.shape).astype(np.float32)
        t0 = time.perf_counter()
        import fastct.features
        fastct.features.region_features(labels[:16, :16, :16], image[:16, :16, :16])
        first = time.perf_counter() - t0
        peak_rss_reset()
        base = peak_rss()
        t0 = time.perf_counter()
        fastct.features.region_features(labels, image, spacing=(2.0, 0.7, 0.7))
        warm = time.perf_counter() - t0
        print(json.dumps({"first_call": first, "warm": warm, "peak_extra": peak_rss() - base,
                          "inputs": labels.nbytes + image.nbytes}))
        """
    )
    RESULTS["fresh256"] = info


@pytest.mark.slow
def test_features_one_million_labels_512():
    info = run_fresh(
        """
        import json, time
        import fastct.features
        labels = box_grid(512, 100)
        image = np.random.default_rng(2).standard_normal(labels.shape, dtype=np.float32)
        fastct.features.region_features(labels[:16, :16, :16], image[:16, :16, :16])
        peak_rss_reset()
        base = peak_rss()
        t0 = time.perf_counter()
        table = fastct.features.region_features(labels, image)
        full = time.perf_counter() - t0
        full_peak = peak_rss() - base
        del table
        peak_rss_reset()
        base = peak_rss()
        t0 = time.perf_counter()
        table = fastct.features.region_features(labels, image, percentiles=())
        lean = time.perf_counter() - t0
        print(json.dumps({"labels": int(table.n_rows), "full": full, "full_peak": full_peak,
                          "lean": lean, "lean_peak": peak_rss() - base,
                          "inputs": labels.nbytes + image.nbytes}))
        """
    )
    assert info["labels"] == 1_000_000
    RESULTS["million"] = info


def write_report() -> None:
    mib = 2**20
    lines = [
        "# Region features benchmark",
        "",
        f"Machine: {machine()}, Python {platform.python_version()}, fastct "
        f"{fastct.__version__}, {fastct.get_num_threads()} fastct threads unless said "
        "(skimage is single-threaded). Both libraries in the same process on the same input.",
        "",
    ]
    if "basic" in RESULTS:
        b = RESULTS["basic"]
        mb = b["nbytes"] / 1e6
        lines += [
            "## Basic columns (issue 19)",
            "",
            f"256^3 float32 image, {b['labels']} SLIC-like Voronoi labels (int32), spacing "
            f"{SPACING} mm. The columns `regionprops_table` computes in C: label, area "
            "(`volume_mm3`), bbox, centroid, intensity mean / min / max; outputs checked "
            "equal. Best of 7 runs for fastct, of 2 for skimage. Load: other processes kept "
            f"{b['other']:.1f} of the {os.cpu_count()} cores busy on average during these runs.",
            "",
            "| run | seconds | regionprops_table / run |",
            "|---|---|---|",
            f"| skimage.measure.regionprops_table, same columns | {b['skimage']:.3f} | 1x |",
            f"| fastct.region_features(properties=[basic]), {b['threads']} threads | "
            f"{b['fastct']:.4f} | **{b['skimage'] / b['fastct']:.0f}x** |",
            f"| the same, 1 thread (interleaved with the next row) | {b['one']:.4f} | "
            f"{b['skimage'] / b['one']:.0f}x |",
            f"| the same, 2 threads | {b['two']:.4f} | {b['skimage'] / b['two']:.0f}x |",
            f"| int16 image: regionprops_table, same columns | {b['skimage16']:.3f} | 1x |",
            f"| int16 image: fastct, {b['threads']} threads | {b['fast16']:.4f} | "
            f"{b['skimage16'] / b['fast16']:.0f}x |",
            f"| floor: numpy reads labels and image once (`max`, 1 thread) | {b['read']:.4f} | "
            f"{b['skimage'] / b['read']:.0f}x |",
            f"| floor: numpy copies labels and image (`copyto`, 1 thread) | {b['copy']:.4f} | "
            f"{b['skimage'] / b['copy']:.0f}x |",
        ]
        if "full" in RESULTS:
            f = RESULTS["full"]
            lines.append(
                f"| fastct.region_features, full default set ({f['columns']} columns) | "
                f"{f['fastct']:.3f} | {b['skimage'] / f['fastct']:.0f}x |"
            )
        lines += [
            "",
            "CPU seconds (this process, all threads; less sensitive to the other processes "
            f"than wall time): regionprops_table {b['cpu_skimage']:.3f}, fastct 1 thread "
            f"{b['cpu_one']:.4f} (**{b['cpu_skimage'] / b['cpu_one']:.0f}x**), fastct 2 "
            f"threads {b['cpu_two']:.4f} in total over both threads.",
            "",
            f"Target >= 30x: **{b['skimage'] / b['fastct']:.0f}x**; 2 threads vs 1: "
            f"{b['one'] / b['two']:.2f}x. Distance from the floor: "
            f"{b['fastct'] / b['read']:.1f}x the numpy read pass ({mb / b['read'] / 1e3:.1f} "
            f"GB/s over {mb:.0f} MB), {b['fastct'] / b['copy']:.1f}x the copy.",
            "",
            "Where the time goes (one thread, CPU time of the kernel alone and of variants "
            "of it with parts left out, measured once outside this script under the same "
            "load): finding the runs (maximal stretches of one label along x, about 2 "
            "million here, 8 voxels each) about 13 ms, close to the NumPy read pass; the "
            "per-run bookkeeping (count, bbox, coordinate sums) about 18 ms more; summing "
            "the values (with min and max) about 55 ms, more than half. Each region's sum is one chain of float64 "
            "additions in raster order (the general path's order, so that every column is "
            "bit-identical whichever path computed it and at any thread count): a chain "
            "cannot be split or reordered without changing the last bits, so one thread "
            "adds one value per float-add latency at best, and a mispredicted branch ends "
            "every run. Integer images of at most 16 bits are summed per run in int64, "
            "which is exact (same bits) and faster. With two threads the volume is cut "
            "in two along z, one part per thread, and the labels that span the cut are "
            "summed again over the second part's planes up to their last voxel, "
            "continuing their chains (a few planes: the same bits as one thread). The two "
            "threads' CPU seconds split evenly would give "
            f"{b['cpu_two'] / 2:.3f} s per thread against {b['cpu_one']:.3f} s on one "
            f"thread ({b['cpu_two'] / 2 / b['cpu_one']:.2f}x); when other processes keep "
            "the cores busy the threads wait for each other and for a core, and the "
            "measured wall times "
            "above are what this machine gave.",
            "",
        ]
    if "common" in RESULTS:
        c = RESULTS["common"]
        lines += [
            "## Common statistics (issue 6)",
            "",
            f"256^3 float32 image, {c['labels']} SLIC-like Voronoi labels, spacing "
            f"{SPACING} mm. Same properties on both sides: label, area/volume, bbox, "
            "centroid, mean, min, max, inertia-tensor eigenvalues, std, 10/50/90th "
            "percentiles, skewness, kurtosis (skimage: the last four via `extra_properties`). "
            "Best of 3 runs for fastct, one run for skimage.",
            "",
            "| run | seconds | speed-up vs skimage |",
            "|---|---|---|",
            f"| skimage.measure.regionprops_table | {c['skimage']:.2f} | 1x |",
            f"| fastct.region_features (same properties) | {c['fastct']:.3f} | "
            f"**{c['ratio']:.0f}x** |",
            f"| fastct.region_features (same properties), 1 thread | {c['one_thread']:.3f} | "
            f"{c['skimage'] / c['one_thread']:.0f}x |",
        ]
        if "full" in RESULTS:
            f = RESULTS["full"]
            lines.append(
                f"| fastct.region_features (all {f['columns']} columns, + gradient, surface, "
                f"sphericity, adjacency, contrast) | {f['fastct']:.3f} | "
                f"{c['skimage'] / f['fastct']:.0f}x |"
            )
        if "streamed" in RESULTS:
            s = RESULTS["streamed"]
            lines.append(
                f"| fastct, all columns, streamed from an HDF5 archive (chunks 64^3) | "
                f"{s['fastct']:.3f} | {c['skimage'] / s['fastct']:.0f}x |"
            )
        lines += ["", f"Target: >= 30x for the same properties: **{c['ratio']:.0f}x**.", ""]
    if "fresh256" in RESULTS:
        r = RESULTS["fresh256"]
        lines += [
            f"Fresh process: first call (import + compilation) {r['first_call']:.1f} s; "
            f"then the full 256^3 table in {r['warm']:.2f} s with a peak memory of "
            f"{r['peak_extra'] / mib:.0f} MiB above the inputs ({r['inputs'] / mib:.0f} MiB).",
            "",
        ]
    if "million" in RESULTS:
        m = RESULTS["million"]
        lines += [
            f"One million labels (100^3 irregular boxes) on 512^3, float32 image "
            f"(inputs {m['inputs'] / mib:.0f} MiB, in memory), fresh process:",
            "",
            "| run | seconds | peak memory above the inputs (MiB) |",
            "|---|---|---|",
            f"| all columns | {m['full']:.1f} | {m['full_peak'] / mib:.0f} |",
            f"| all columns except percentiles (`percentiles=()`) | {m['lean']:.1f} | "
            f"{m['lean_peak'] / mib:.0f} |",
            "",
            "Percentiles keep one float32 value per labelled voxel (512 MiB here); "
            f"without them memory is about {m['lean_peak'] / m['labels']:.0f} bytes per "
            "region (accumulators, adjacency table, the output table) plus one slab.",
            "",
        ]
    lines += [
        "Reproduce: `make bench`, or this file alone: `.venv/bin/python -m pytest "
        "benchmarks/bench_features.py -p no:cacheprovider -s` (the 512^3 case included).",
        "",
    ]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines))
    print("\n".join(lines))

"""FROC of the nodule detector on held-out phantom scans (writes docs/benchmarks/detection.md).

Reproduce the table of the shipped model (medium preset, phantom lung masks; the model's
training recipe is in docs/benchmarks/detection.md):

    python benchmarks/detection_froc.py --seeds 5000-5031 --size medium \
        --write docs/benchmarks/detection.md

Each held-out scan is ``chest_phantom(size, seed=s)`` with the default nodules (6 per
scan, diameters 3-30 mm); the training seeds of the shipped model are 1000-1011 and
1100-1111 and its threshold was chosen on 2000-2019, so the scans are disjoint. Per scan the detector runs its stages exactly as
``NoduleDetector.predict`` does (preprocess, segment, region_table, predict_regions,
detect); ``--cache DIR`` keeps each scan's feature table so that re-running with another
model or threshold skips the image work. ``--lung-mask threshold`` uses
``fastct.lungs.lung_mask(method="threshold")`` (the detector's own fallback) instead of
the phantom's mask, and ``--lung-mask computed`` its default ``method="anatomical"``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

import fastct
from fastct.classify import Case, default_detector, load_detector
from fastct.datasets import chest_phantom
from fastct.evaluation import froc, sensitivity_by_size
from fastct.features import FeatureTable


def _seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _lung(ph, how: str):
    from fastct.lungs import lung_mask

    if how == "truth":
        return ph.lung_mask
    if how == "threshold":
        return lung_mask(ph.image, spacing=ph.spacing, method="threshold")
    return lung_mask(ph.image, spacing=ph.spacing)  # the pipeline's lung mask


def scan_table(det, seed: int, size: str, how: str, cache: Path | None):
    """(table, nodule records) of one held-out scan, from the cache when present."""
    stem = None
    if cache is not None:
        stem = cache / (f"test_{seed}" if how == "truth" else f"test_{seed}_{how}")
    if stem is not None and stem.with_suffix(".npz").is_file():
        d = np.load(stem.with_suffix(".npz"))
        meta = {"adjacency": d["adjacency"], "origin": tuple(d["origin"])}
        cols = {k: d[k] for k in d.files if k not in ("overlap", "adjacency", "origin")}
        return FeatureTable(cols, meta), json.loads(stem.with_suffix(".json").read_text())
    ph = chest_phantom(size, seed=seed)
    case = Case(ph.image, ph.spacing, ph.nodule_labels, _lung(ph, how), ph.origin)
    table, overlap = det.case_table(case)
    nods = [{"center_mm": n.center_mm, "diameter_mm": n.diameter_mm, "kind": n.kind}
            for n in ph.nodules]  # fmt: skip
    if stem is not None:
        np.savez(stem.with_suffix(".npz"), overlap=overlap, adjacency=table.meta["adjacency"],
                 origin=np.array(table.meta["origin"]), **table)  # fmt: skip
        stem.with_suffix(".json").write_text(json.dumps(nods))
    return table, nods


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: the shipped one)")
    ap.add_argument("--seeds", default="5000-5015")
    ap.add_argument("--size", default="medium")
    ap.add_argument("--lung-mask", choices=("truth", "threshold", "computed"), default="truth")
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--write", type=Path, default=None, help="append the tables to this file")
    args = ap.parse_args(argv)
    det = default_detector() if args.model is None else load_detector(args.model)
    seeds = _seeds(args.seeds)
    t0 = time.perf_counter()
    dets, truths = [], []
    for s in seeds:
        table, nods = scan_table(det, s, args.size, args.lung_mask, args.cache)
        proba = det.predict_regions(table)
        dets.append(det.detect(table, proba, threshold=0.01))
        truths.append(nods)
    elapsed = time.perf_counter() - t0
    r5 = froc(dets, truths, min_diameter_mm=5.0)
    rall = froc(dets, truths)
    by_size = sensitivity_by_size(dets, truths, bins_mm=(0, 5, 8, 12, 20, 31), fps_per_scan=1.0)
    lines = [
        f"### {args.size} preset, {len(seeds)} held-out scans (seeds {args.seeds}), "
        f"lung mask: {args.lung_mask}",
        "",
        f"Nodules >= 5 mm ({r5.n_nodules} nodules, {r5.n_found} hit by any candidate):",
        "",
        r5.to_markdown(),
        "",
        f"All nodules ({rall.n_nodules}, 3-30 mm):",
        "",
        rall.to_markdown(),
        "",
        f"Sensitivity by size at 1 FP/scan (threshold {by_size[0]['threshold']:.3f}, "
        f"{by_size[0]['fps_per_scan']:.2f} FP/scan):",
        "",
        "| diameter (mm) | nodules | found | sensitivity |",
        "|---|---:|---:|---:|",
    ]
    for row in by_size:
        lines.append(
            f"| {row['min_mm']:g}-{row['max_mm']:g} | {row['n_nodules']} | {row['n_found']} | "
            f"{row['sensitivity']:.3f} |"
        )
    lines += [
        "",
        f"fastct {fastct.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}; evaluation {elapsed:.0f} s "
        f"({'cached tables' if args.cache else 'including the image work'}).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write is not None:
        with open(args.write, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

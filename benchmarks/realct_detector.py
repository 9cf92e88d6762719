"""The nodule detector on the real chest CT of ``../shared/realct`` (docs/detector_real_ct.rst).

Reproduce the baseline table of the shipped model, and with the opt-in real-scanner
input handling:

    python benchmarks/realct_detector.py --cache /tmp/fastct-realct
    python benchmarks/realct_detector.py --cache /tmp/fastct-realct \
        --clip-below-hu -1024 --slic-range=-1000,100

Per scan the detector runs ``NoduleDetector.predict`` (its own threshold lung mask unless
``--lung-mask anatomical``) and every annotated lesion of at least 10 mm is scored by the
hit rule of :func:`fastct.classify.score_scan` (detection centre inside the lesion, or
within its radius + 5 mm of its centroid); every other detection at the detector's
threshold is a false positive. ``--cache DIR`` keeps each scan's feature table,
probabilities, lung mask and timings (``DIR/<tag>/<scan>.npz``) so that a second run
(another threshold, a re-scoring) skips the image work. The folder is ``$FASTCT_REALCT``
or ``../shared/realct``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from fastct.classify import (
    default_detector,
    load_detector,
    realct_cases,
    realct_folder,
    score_scan,
)
from fastct.features import FeatureTable


def run_scan(det, case, lung: str, cache: Path | None):
    """(table, proba, lung mask voxels, timings) of one scan, from the cache when present."""
    path = None if cache is None else cache / f"{case.name}.npz"
    if path is not None and path.is_file():
        z = np.load(path, allow_pickle=False)
        cols = {k[4:]: z[k] for k in z.files if k.startswith("col_")}
        meta = json.loads(str(z["meta"]))
        table = FeatureTable(cols, {"adjacency": z["adjacency"], **meta["table_meta"]})
        return table, z["proba"], int(z["lung_voxels"]), meta["timings"]
    kw = {}
    if lung == "anatomical":
        from fastct.lungs import lung_mask

        t = time.perf_counter()
        kw["lung_mask"] = lung_mask(case.image, spacing=case.spacing, direction=case.direction)
        t_lung = time.perf_counter() - t
    t = time.perf_counter()
    res = det.predict(case.image, spacing=case.spacing, origin=case.origin,
                      direction=case.direction, **kw)  # fmt: skip
    timings = dict(res.timings)
    timings["total"] = time.perf_counter() - t
    if lung == "anatomical":
        timings["lung_mask"] = t_lung
        timings["total"] += t_lung
    lung_voxels = int(np.count_nonzero(res.lung_mask))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tm = {k: (np.asarray(v).tolist() if k in ("origin", "direction", "spacing") else v)
              for k, v in res.table.meta.items() if k in ("origin", "direction", "spacing")}  # fmt: skip
        meta = {"timings": timings, "table_meta": tm}
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp, proba=res.proba, adjacency=res.table.meta["adjacency"],
            lung_voxels=lung_voxels, lung_bits=np.packbits(res.lung_mask.ravel()),
            meta=json.dumps(meta), **{f"col_{k}": np.asarray(v) for k, v in res.table.items()},
        )  # fmt: skip
        tmp.replace(path)
    return res.table, res.proba, lung_voxels, timings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model file (default: the shipped model)")
    ap.add_argument("--threshold", type=float, help="detection threshold (default: model's)")
    ap.add_argument("--lung-mask", choices=["threshold", "anatomical"], default="threshold")
    ap.add_argument("--clip-below-hu", type=float, help="opt-in: NoduleDetector(clip_below_hu=)")
    ap.add_argument("--slic-range", help="opt-in: NoduleDetector(slic_range_hu=), e.g. -1000,100")
    ap.add_argument("--scans", help="comma-separated scan names (default: all)")
    ap.add_argument("--cache", type=Path, help="cache folder (per model tag)")
    ap.add_argument("--tag", default=None, help="cache sub-folder (default from the options)")
    ap.add_argument("--json", type=Path, help="write the per-scan results here")
    args = ap.parse_args(argv)
    folder = realct_folder()
    if folder is None:
        print("real-CT folder absent (set FASTCT_REALCT)", file=sys.stderr)
        return 2
    det = load_detector(args.model) if args.model else default_detector()
    thr = det.threshold if args.threshold is None else args.threshold
    tag = args.tag or f"{Path(args.model).stem if args.model else 'default'}_{args.lung_mask}"
    if args.clip_below_hu is not None:
        det.set_params(clip_below_hu=args.clip_below_hu)
        tag += f"_clip{args.clip_below_hu:g}"
    if args.slic_range:
        lo, hi = (float(v) for v in args.slic_range.split(","))
        det.set_params(slic_range_hu=(lo, hi))
        tag += f"_slic{lo:g},{hi:g}"
    cache = None if args.cache is None else args.cache / tag
    names = args.scans.split(",") if args.scans else None
    rows = []
    print("| scan | lesions >= 10 mm (diameter) | found (best p) | FP/scan @ "
          f"{thr:g} | detections | lung mL | time s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for case in realct_cases(folder, names):
        table, proba, lung_vox, timings = run_scan(det, case, args.lung_mask, cache)
        dets = det.detect(table, proba, threshold=thr)
        s = score_scan(dets, case.lesion_mask, spacing=case.spacing, origin=case.origin,
                       direction=case.direction, ignore=case.ignore)  # fmt: skip
        lung_ml = lung_vox * float(np.prod(case.spacing)) / 1e3
        les = ", ".join(f"{le.diameter_mm:.0f} mm" for le in s.lesions)
        fnd = ", ".join(
            ("yes" if f else "no") + ("" if np.isnan(p) else f" ({p:.2f})")
            for f, p in zip(s.found, s.best_probability, strict=True)
        )
        print(f"| {case.name} | {les} | {fnd} | {s.false_positives} | {s.n_detections} | "
              f"{lung_ml:.0f} | {timings['total']:.0f} |", flush=True)  # fmt: skip
        rows.append({"scan": case.name, "threshold": thr, "lung_ml": lung_ml,
                     "timings": timings, **s.as_dict()})  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

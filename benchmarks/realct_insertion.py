"""The nodule detector on real CT with synthetic nodules inserted (docs/detector_real_ct.rst).

Reproduce the table of the shipped model:

    python benchmarks/realct_insertion.py --cache /tmp/fastct-realct

Per scan of ``../shared/realct`` (or ``$FASTCT_REALCT``): ``--per-scan`` nodules (default
10) with diameters cycling through 6, 8, 10, 12, 15, 20 mm, kinds cycling through solid
round, solid lobulated, ground glass, part solid, and sites cycling through parenchymal,
juxtapleural, juxtavascular, are placed by :func:`fastct.classify.sample_insertion_sites`
inside the detector's own threshold lung mask of the original scan, at least 10 mm + the radius
away from the scan's annotated lesions and from each other, and inserted with
:func:`fastct.classify.insert_nodules` (seed = ``--seed`` + scan index). The detector then
runs on the modified scan; inserted nodules are scored by the hit rule of
:func:`fastct.classify.score_scan` (every size counted, the annotated lesions are ignore
regions: a detection of one is neither a hit nor a false positive). ``--cache DIR``
keeps each scan's table, probabilities, supervoxel labels and the truth overlaps
(``DIR/<tag>/<scan>_ins.npz``) for re-scoring and for training experiments.
``--lung-mask anatomical`` gives the detector :func:`fastct.lungs.lung_mask`'s default
mask of the modified scan (the pipeline's) instead of its own threshold mask.
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
    insert_nodules,
    lesions_from_mask,
    load_detector,
    realct_cases,
    realct_folder,
    sample_insertion_sites,
    score_scan,
    threshold_lung_mask,
)
from fastct.features import FeatureTable

DIAMETERS = (6.0, 8.0, 10.0, 12.0, 15.0, 20.0)
KINDS = (("solid", "round"), ("solid", "lobulated"), ("ground_glass", "round"),
         ("part_solid", "round"))  # fmt: skip
SITES = ("parenchymal", "juxtapleural", "juxtavascular")


def inserted_case(case, n: int, seed: int):
    """(InsertionResult, lung mask used for the sites) of one scan."""
    lung = threshold_lung_mask(case.image, spacing=case.spacing, direction=case.direction)
    diams = [DIAMETERS[i % len(DIAMETERS)] for i in range(n)]
    sites = [SITES[i % len(SITES)] for i in range(n)]
    got = sample_insertion_sites(
        case.image, lung, diams, spacing=case.spacing, origin=case.origin,
        direction=case.direction, sites=sites, exclude=case.lesion_mask, seed=seed,
    )  # fmt: skip
    kinds = [KINDS[i % len(KINDS)] for i in range(n)]
    res = insert_nodules(
        case.image, [c for c, _ in got], diams, spacing=case.spacing, origin=case.origin,
        direction=case.direction, kind=[k for k, _ in kinds], shape=[s for _, s in kinds],
        site=[s for _, s in got], seed=seed,
    )  # fmt: skip
    return res, lung


def run_scan(det, case, n: int, seed: int, cache: Path | None, lung: str = "threshold"):
    path = None if cache is None else cache / f"{case.name}_ins.npz"
    if path is not None and path.is_file():
        z = np.load(path, allow_pickle=False)
        cols = {k[4:]: z[k] for k in z.files if k.startswith("col_")}
        meta = json.loads(str(z["meta"]))
        table = FeatureTable(cols, {"adjacency": z["adjacency"]})
        return table, z["proba"], meta
    ins, _ = inserted_case(case, n, seed)
    t = time.perf_counter()
    kw = {}
    if lung == "anatomical":  # the pipeline's lung mask of the modified scan
        from fastct.lungs import lung_mask

        kw["lung_mask"] = lung_mask(ins.image, spacing=case.spacing, direction=case.direction)
    res = det.predict(ins.image, spacing=case.spacing, origin=case.origin,
                      direction=case.direction, **kw)  # fmt: skip
    seconds = time.perf_counter() - t
    ids = np.asarray(res.table["label"])
    count = np.asarray(res.table["count"], float)
    top = int(res.labels.max()) + 1
    ov_ins = np.bincount(res.labels.ravel(), weights=(ins.truth > 0).ravel(), minlength=top)
    ov_les = np.bincount(res.labels.ravel(), weights=case.lesion_mask.ravel(), minlength=top)
    meta = {
        "seconds": seconds, "timings": res.timings,
        "nodules": [r.as_dict() for r in ins.nodules],
    }  # fmt: skip
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp, proba=res.proba, adjacency=res.table.meta["adjacency"], labels=res.labels,
            truth=ins.truth, overlap_inserted=ov_ins[ids] / count,
            overlap_lesion=ov_les[ids] / count, meta=json.dumps(meta),
            **{f"col_{k}": np.asarray(v) for k, v in res.table.items()},
        )  # fmt: skip
        tmp.replace(path)
    return res.table, res.proba, meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model file (default: the shipped model)")
    ap.add_argument("--thresholds", default="", help="extra thresholds to report, e.g. 0.3,0.5")
    ap.add_argument("--per-scan", type=int, default=10)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument(
        "--lung-mask",
        choices=["threshold", "anatomical"],
        default="threshold",
        help="the detector's own threshold mask, or fastct.lungs.lung_mask's default",
    )
    ap.add_argument("--scans", help="comma-separated scan names (default: all)")
    ap.add_argument("--cache", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if realct_folder() is None:
        print("real-CT folder absent (set FASTCT_REALCT)", file=sys.stderr)
        return 2
    det = load_detector(args.model) if args.model else default_detector()
    tag = f"{Path(args.model).stem if args.model else 'default'}_seed{args.seed}_n{args.per_scan}"
    if args.lung_mask != "threshold":
        tag += f"_{args.lung_mask}"
    cache = None if args.cache is None else args.cache / tag
    thrs = [det.threshold] + [float(t) for t in args.thresholds.split(",") if t]
    names = args.scans.split(",") if args.scans else None
    rows = []
    for i, case in enumerate(realct_cases(names=names)):
        table, proba, meta = run_scan(det, case, args.per_scan, args.seed + i, cache,
                                      args.lung_mask)  # fmt: skip
        nods = meta["nodules"]
        if cache is None:  # rebuild the truth (deterministic)
            truth = inserted_case(case, args.per_scan, args.seed + i)[0].truth
        else:
            truth = np.load(cache / f"{case.name}_ins.npz")["truth"]
        ignore = [(les.center_mm, 0.5 * les.diameter_mm) for les in
                  lesions_from_mask(case.lesion_mask, spacing=case.spacing,
                                    origin=case.origin, direction=case.direction)]  # fmt: skip
        ignore += case.ignore
        for thr in thrs:
            dets = det.detect(table, proba, threshold=thr)
            s = score_scan(dets, truth, spacing=case.spacing, origin=case.origin,
                           direction=case.direction, min_diameter_mm=0.0, ignore=ignore)  # fmt: skip
            # score_scan's lesions come largest first: map them back to the records
            by_label = dict(zip([le.label for le in s.lesions], s.found, strict=True))
            per = [{**n, "found": bool(by_label.get(n["label"], False))} for n in nods]
            rows.append({"scan": case.name, "threshold": thr, "seconds": meta["seconds"],
                         "false_positives": s.false_positives, "nodules": per})  # fmt: skip
            print(
                f"{case.name:28s} thr {thr:.2f}: found {sum(p['found'] for p in per)}/"
                f"{len(per)}  FP {s.false_positives}  ({meta['seconds']:.0f} s)",
                flush=True,
            )
    print()
    print(
        "| threshold | sensitivity (all) | solid | ground glass | part solid | "
        ">= 10 mm | parenchymal | juxtapleural | juxtavascular | FP/scan |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for thr in thrs:
        sel = [r for r in rows if r["threshold"] == thr]
        allp = [p for r in sel for p in r["nodules"]]

        def rate(ps):
            return f"{sum(p['found'] for p in ps)}/{len(ps)}" if ps else "-"

        cells = [rate(allp)]
        cells += [rate([p for p in allp if p["kind"] == k])
                  for k in ("solid", "ground_glass", "part_solid")]  # fmt: skip
        cells.append(rate([p for p in allp if p["diameter_mm"] >= 10]))
        cells += [rate([p for p in allp if p["site"] == s]) for s in SITES]
        fps = np.mean([r["false_positives"] for r in sel])
        print(f"| {thr:.2f} | " + " | ".join(cells) + f" | {fps:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

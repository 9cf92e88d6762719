"""Leave-one-patient-out comparison of detector feature sets on real CT with inserted
nodules (docs/detector_real_ct.rst).

Needs the cache of ``benchmarks/realct_insertion.py`` (same ``--seed`` / ``--per-scan``):

    python benchmarks/realct_insertion.py --cache /tmp/fastct-realct
    python benchmarks/realct_loso.py --cache /tmp/fastct-realct

For every scan the inserted scan is rebuilt (deterministic), preprocessed as the detector
does, and the opt-in ``hessian_shape`` columns are computed on the cached supervoxels
(``DIR/<tag>/<scan>_hs.npz``). Folds hold one patient out (the two Lung-PET-CT-Dx kernels
are one patient: same fold). Training supervoxels: positive when at least half of their
voxels lie in an inserted nodule, negative when none does and they touch no annotated
lesion (supervoxels touching an annotated lesion are left out: a real nodule is never
a negative); a quarter of the negatives, as the shipped recipe. Each held-out scan is
scored by :func:`fastct.classify.score_scan` against its inserted nodules (annotated
lesions are ignore regions) at every threshold; the table gives the pooled sensitivity
at a false-positive budget per scan, for the shipped model (phantom-trained), and for
models trained on the other patients' real scans with the schema features alone and
with ``hessian_shape`` added.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fastct.classify import (
    NoduleDetector,
    _regions,
    default_detector,
    lesions_from_mask,
    realct_cases,
    score_scan,
)
from fastct.features import FeatureTable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realct_insertion import inserted_case  # noqa: E402

PATIENT = {"LIDC-IDRI-0001": "LIDC", "lung1": "lung1",
           "Lung_Dx-A0001_lungkernelL": "LungDx", "Lung_Dx-A0001_softkernelB": "LungDx"}  # fmt: skip


def load_scan(det, case, idx: int, args, folder: Path):
    z = np.load(folder / f"{case.name}_ins.npz", allow_pickle=False)
    cols = {k[4:]: z[k] for k in z.files if k.startswith("col_")}
    adjacency = z["adjacency"]
    hs_path = folder / f"{case.name}_hs.npz"
    if hs_path.is_file():
        cols.update(dict(np.load(hs_path)))
    else:
        ins, _ = inserted_case(case, args.per_scan, args.seed + idx)
        if not np.array_equal(ins.truth, z["truth"]):
            raise RuntimeError(f"{case.name}: rebuilt insertion differs from the cache")
        pre = det.preprocess(ins.image, spacing=case.spacing)
        ids = np.asarray(cols["label"])
        ia = np.searchsorted(ids, adjacency[:, 0])
        ib = np.searchsorted(ids, adjacency[:, 1])
        src, dst = np.concatenate([ia, ib]), np.concatenate([ib, ia])
        extra: dict = {"label": ids, "count": cols["count"]}
        _regions._hessian_shape_columns(extra, z["labels"], pre, case.spacing,
                                        det._scales(), src, dst)  # fmt: skip
        extra = {k: v for k, v in extra.items() if k.startswith(("hs_", "nbhd_hs_"))}
        np.savez(hs_path, **extra)
        cols.update(extra)
    table = FeatureTable(cols, {"adjacency": adjacency})
    return table, z


def sweep(det, table, proba, case, truth, ignore, lesions):
    """(thresholds, found count, n nodules, FPs) over the distinct probabilities."""
    out = []
    thrs = np.unique(np.round(proba[proba >= 0.02], 3))[::-1]
    for thr in thrs[:: max(1, thrs.size // 40)]:
        dets = det.detect(table, proba, threshold=float(thr))
        s = score_scan(dets, truth, spacing=case.spacing, origin=case.origin,
                       direction=case.direction, min_diameter_mm=0.0, ignore=ignore,
                       lesions=lesions)  # fmt: skip
        out.append((float(thr), int(sum(s.found)), len(s.found), s.false_positives))
    return out


def pooled(curves: dict[str, list], budget: float) -> tuple[int, int]:
    """(found, total) pooled over the scans at one common threshold: the most found
    whose mean false positives per scan stay within ``budget``."""
    thr_all = sorted({t for c in curves.values() for t, *_ in c}, reverse=True)
    best = (0, sum(c[0][2] for c in curves.values()) if curves else 0)
    for thr in thr_all:
        found = fps = total = 0
        for c in curves.values():
            ok = [row for row in c if row[0] >= thr]
            row = ok[-1] if ok else (thr, 0, c[0][2], 0)
            found += row[1]
            total += row[2]
            fps += row[3]
        if fps / len(curves) <= budget and found > best[0]:
            best = (found, total)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-scan", type=int, default=10)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    shipped = default_detector()
    folder = args.cache / f"default_seed{args.seed}_n{args.per_scan}"
    cases = realct_cases()
    data = {}
    for i, case in enumerate(cases):
        table, z = load_scan(shipped, case, i, args, folder)
        ov = np.asarray(z["overlap_inserted"], float).copy()
        ov[np.asarray(z["overlap_lesion"]) > 0] = 0.01  # touches a real lesion: left out
        ignore = [(les.center_mm, 0.5 * les.diameter_mm) for les in
                  lesions_from_mask(case.lesion_mask, spacing=case.spacing,
                                    origin=case.origin, direction=case.direction)]  # fmt: skip
        truth = z["truth"]
        ins = lesions_from_mask(truth, spacing=case.spacing, origin=case.origin,
                                direction=case.direction)  # fmt: skip
        data[case.name] = (case, table, ov, truth, ignore + case.ignore, z["proba"], ins)
        print(f"{case.name}: {len(ov)} supervoxels, {(ov >= 0.5).sum()} positive", flush=True)
    variants = {"shipped (phantom-trained)": None, "real LOPO, schema": (),
                "real LOPO, schema + hessian_shape": ("hessian_shape",)}  # fmt: skip
    results = {}
    for vname, extra in variants.items():
        curves = {}
        for name, (case, table, _ov, truth, ignore, p_shipped, ins) in data.items():
            if extra is None:
                det, proba = shipped, p_shipped
            else:
                det = NoduleDetector(extra_features=extra)
                train = [n for n in data if PATIENT[n] != PATIENT[name]]
                det.fit_tables([data[n][1] for n in train], [data[n][2] for n in train])
                proba = det.predict_regions(table)
            curves[name] = sweep(det, table, proba, case, truth, ignore, ins)
        print(f"{vname}: done", flush=True)
        results[vname] = curves
    budgets = (2.0, 5.0, 10.0, 20.0, 40.0)
    print()
    print("| model | " + " | ".join(f"sens. @ {b:g} FP/scan" for b in budgets) + " |")
    print("|---|" + "---|" * len(budgets))
    for vname, curves in results.items():
        cells = []
        for b in budgets:
            f, t = pooled(curves, b)
            cells.append(f"{f}/{t} ({f / t:.0%})" if t else "-")
        print(f"| {vname} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

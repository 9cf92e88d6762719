"""Train the candidate v2 nodule detector and evaluate it once on held-out data
(docs/detector_training.rst).

Re-create the model file (deterministic for its seeds; uses the real-CT insertion tables
of ``benchmarks/realct_insertion.py`` when ``--realct-cache`` holds them):

    python benchmarks/realct_insertion.py --cache /tmp/fastct-realct      # once
    python benchmarks/train_detector_v2.py --cache /tmp/fastct-trainv2 \\
        --realct-cache /tmp/fastct-realct --out fastct/models/nodule_detector_v2.fastct-model

Held-out evaluation (run once, after every choice was fixed), v1 and v2 side by side:

    python benchmarks/train_detector_v2.py --cache /tmp/fastct-trainv2 \\
        --realct-cache /tmp/fastct-realct --heldout --json /tmp/fastct-trainv2/heldout.json

Recipe (:func:`recipe_detector`): every pair of :data:`TRAIN_SEEDS` gives two hard
phantom scans (baseline and follow-up) of ``hard_phantom_pair(seed=s, shape=SHAPE,
spacing=SPACING, recon_kernel=None, slice_thickness=None)`` (kernel and slice thickness
drawn per seed); each scan runs the detector's own stages with its own threshold lung
mask (as ``predict`` does); a supervoxel is positive when at least half of it lies in a
nodule (every type, calcified included), negative when none of it does (a quarter of
the negatives, drawn with the detector's ``random_state``). The real part: the inserted
real scans of ``realct_insertion.py`` (10 nodules per scan, seed 100); positive as
above for inserted nodules, supervoxels touching an annotated lesion left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastct.classify import Case, NoduleDetector, default_detector, lesions_from_mask, score_scan
from fastct.datasets import hard_phantom_pair
from fastct.evaluation import MIN_HIT_RADIUS_MM, froc
from fastct.features import FeatureTable

#: Grid of every training and held-out phantom scan.
SHAPE = (120, 160, 160)
SPACING = (2.5, 2.25, 2.25)
#: Training pairs (two scans each); the last :data:`VALIDATION_PAIRS` of them are the
#: validation split on which the options and the operating threshold were chosen.
TRAIN_SEEDS = tuple(range(7000, 7024))
VALIDATION_PAIRS = 6
#: Held-out pairs: disjoint from every seed used in training or in a choice.
HELDOUT_SEEDS = tuple(range(9000, 9016))
#: Nodules counted in the held-out sensitivity (mean axial diameter, mm).
MIN_COUNTED_MM = 6.0
#: The false-positive budget per scan of the operating threshold.
FP_BUDGET = 1.0
#: What the validation split chose (``--validate`` re-derives them; docs/detector_training.rst).
CHOSEN_EXTRA: tuple[str, ...] = ()
CHOSEN_THRESHOLD = 0.98
#: Thresholds swept for the operating point (descending).
SWEEP = tuple(np.round(np.arange(0.98, 0.0, -0.02), 2).tolist())
PATIENT = {"LIDC-IDRI-0001": "LIDC", "lung1": "lung1",
           "Lung_Dx-A0001_lungkernelL": "LungDx", "Lung_Dx-A0001_softkernelB": "LungDx"}  # fmt: skip


def make_detector(
    extra: Sequence[str] = ("hessian_shape",), threshold: float = 0.5
) -> NoduleDetector:
    """The v2 detector's parameters (classifier not fitted)."""
    return NoduleDetector(clip_below_hu=-1024.0, extra_features=tuple(extra), threshold=threshold)


def phantom_scans(seed: int, shape=SHAPE, spacing=SPACING) -> list[tuple[str, Any]]:
    """The two scans (baseline, follow-up) of training/held-out pair ``seed``."""
    pair = hard_phantom_pair(seed=seed, shape=shape, spacing=spacing, recon_kernel=None,
                             slice_thickness=None)  # fmt: skip
    return [(f"{seed}b", pair.baseline), (f"{seed}f", pair.followup)]


def truth_records(ph: Any) -> list[dict[str, Any]]:
    """Every nodule of a hard phantom scan present on its grid (mean axial diameter)."""
    return [{"center_mm": tuple(float(c) for c in n.center_mm),
             "diameter_mm": float(n.mean_axial_diameter_mm), "type": n.type,
             "position": n.position} for n in ph.nodules if n.n_voxels > 0]  # fmt: skip


def _save(path: Path, table: FeatureTable, overlap: np.ndarray, extra: dict) -> None:
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, adjacency=table.meta["adjacency"], overlap=overlap,
                        meta=json.dumps(extra),
                        **{f"col_{k}": np.asarray(v) for k, v in table.items()})  # fmt: skip
    tmp.replace(path)


def _load(path: Path) -> tuple[FeatureTable, np.ndarray, dict]:
    z = np.load(path, allow_pickle=False)
    cols = {k[4:]: z[k] for k in z.files if k.startswith("col_")}
    return (
        FeatureTable(cols, {"adjacency": z["adjacency"]}),
        z["overlap"],
        json.loads(str(z["meta"])),
    )


def phantom_records(det: NoduleDetector, seeds: Sequence[int], cache: Path | None, tag: str,
                    shape=SHAPE, spacing=SPACING, log=print) -> list[dict[str, Any]]:  # fmt: skip
    """Per scan of the pairs ``seeds``: ``name``, ``table``, ``overlap``, ``truths``."""
    out = []
    for seed in seeds:
        path = None if cache is None else cache / f"{tag}_{seed}.npz"
        if path is not None and path.is_file():
            z = np.load(path, allow_pickle=False)
            for part in ("b", "f"):
                sub = {k[len(part) + 1 :]: z[k] for k in z.files if k.startswith(part + "_")}
                cols = {k[4:]: v for k, v in sub.items() if k.startswith("col_")}
                table = FeatureTable(cols, {"adjacency": sub["adjacency"]})
                out.append({"name": f"{seed}{part}", "table": table, "overlap": sub["overlap"],
                            "truths": json.loads(str(sub["meta"]))})  # fmt: skip
            continue
        t0 = time.perf_counter()
        arrays: dict[str, Any] = {}
        for name, ph in phantom_scans(seed, shape, spacing):
            table, overlap = det.case_table(Case(image=ph.image, spacing=ph.spacing,
                                                 nodule_mask=ph.nodule_labels,
                                                 origin=ph.origin, name=name))  # fmt: skip
            truths = truth_records(ph)
            out.append({"name": name, "table": table, "overlap": overlap, "truths": truths})
            part = name[-1]
            arrays[f"{part}_adjacency"] = table.meta["adjacency"]
            arrays[f"{part}_overlap"] = overlap
            arrays[f"{part}_meta"] = json.dumps(truths)
            arrays.update({f"{part}_col_{k}": np.asarray(v) for k, v in table.items()})
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, **arrays)
            tmp.replace(path)
        log(f"{tag} pair {seed}: {time.perf_counter() - t0:.1f} s")
    return out


def real_records(folder: Path) -> list[dict[str, Any]]:
    """The inserted real scans of ``realct_insertion.py`` (its cache folder
    ``DIR/default_seed100_n10``): table (schema + ``hessian_shape`` columns), overlap with
    supervoxels touching an annotated lesion left out (0.01), and what scoring needs."""
    from fastct.classify import realct_cases

    out = []
    for case in realct_cases():
        ins = folder / f"{case.name}_ins.npz"
        hs = folder / f"{case.name}_hs.npz"
        if not (ins.is_file() and hs.is_file()):
            raise FileNotFoundError(
                f"{ins} / {hs} missing: run realct_insertion.py and realct_loso.py"
            )
        z = np.load(ins, allow_pickle=False)
        cols = {k[4:]: z[k] for k in z.files if k.startswith("col_")}
        cols.update(dict(np.load(hs)))
        ov = np.asarray(z["overlap_inserted"], float).copy()
        ov[np.asarray(z["overlap_lesion"]) > 0] = 0.01
        out.append({"name": case.name, "case": case, "overlap": ov, "truth": z["truth"],
                    "table": FeatureTable(cols, {"adjacency": z["adjacency"]})})  # fmt: skip
    return out


def fit(det: NoduleDetector, records: Sequence[dict[str, Any]]) -> NoduleDetector:
    return det.fit_tables([r["table"] for r in records], [r["overlap"] for r in records])


def recipe_detector(seeds: Sequence[int] = TRAIN_SEEDS, *, extra: Sequence[str] = CHOSEN_EXTRA,
                    threshold: float = CHOSEN_THRESHOLD, real: Sequence[dict] = (), cache: Path | None = None,
                    shape=SHAPE, spacing=SPACING, log=print) -> NoduleDetector:  # fmt: skip
    """Fit the v2 detector on the phantom pairs ``seeds`` (plus ``real`` records,
    :func:`real_records`) with the options chosen on the validation split (defaults)."""
    det = make_detector(extra, threshold)
    recs = phantom_records(make_detector(("hessian_shape",)), seeds, cache, "train", shape,
                           spacing, log)  # fmt: skip
    return fit(det, list(recs) + list(real))


# ---------------------------------------------------------------------------- scoring
def _hits(dets, truths) -> np.ndarray:
    """(n_dets, n_truths) bool: detection centre within max(radius, 3 mm) of the nodule."""
    if not dets or not truths:
        return np.zeros((len(dets), len(truths)), bool)
    dc = np.array([d.center_mm for d in dets], float)
    tc = np.array([t["center_mm"] for t in truths], float)
    r = np.maximum(np.array([t["diameter_mm"] for t in truths]) / 2, MIN_HIT_RADIUS_MM)
    return np.linalg.norm(dc[:, None, :] - tc[None, :, :], axis=2) <= r[None, :]


def counted(t: dict) -> bool:
    return t["diameter_mm"] >= MIN_COUNTED_MM and t["type"] != "calcified"


def phantom_sweep(
    det: NoduleDetector, records: Sequence[dict], proba: Sequence[np.ndarray], more=()
):
    """Per threshold of :data:`SWEEP` (and ``more``, descending): per scan (found flags
    over all truths, FPs)."""
    rows = []
    for thr in sorted(set(SWEEP) | {float(t) for t in more}, reverse=True):
        per_scan = []
        for rec, p in zip(records, proba, strict=True):
            dets = det.detect(rec["table"], p, threshold=thr)
            h = _hits(dets, rec["truths"])
            fps = int((~h.any(axis=1)).sum()) if h.size else len(dets)
            per_scan.append((h.any(axis=0) if h.size else np.zeros(len(rec["truths"]), bool), fps))
        rows.append((thr, per_scan))
    return rows


def operating_threshold(rows, budget: float = FP_BUDGET) -> float:
    """The lowest swept threshold whose mean FPs per scan stay within ``budget``."""
    best = rows[0][0]
    for thr, per_scan in rows:
        if np.mean([fp for _, fp in per_scan]) <= budget:
            best = thr
    return best


def sensitivity_table(records, rows, thr: float) -> dict[str, Any]:
    """Sensitivity by group at threshold ``thr`` (nodules >= 6 mm)."""
    per_scan = dict(rows)[thr]
    groups: dict[str, list[int]] = {}
    for rec, (found, _fp) in zip(records, per_scan, strict=True):
        for t, f in zip(rec["truths"], found, strict=True):
            if t["diameter_mm"] < MIN_COUNTED_MM:
                continue
            keys = [t["type"]] if t["type"] == "calcified" else ["all", t["type"], t["position"]]
            for k in keys:
                groups.setdefault(k, [0, 0])
                groups[k][0] += int(f)
                groups[k][1] += 1
    return {"threshold": thr, "fp_per_scan": float(np.mean([fp for _, fp in per_scan])),
            "groups": groups}  # fmt: skip


def phantom_froc(det, records, proba, low: float = 0.05):
    """fastct.evaluation.froc at detections of threshold ``low``; calcified and < 6 mm
    nodules are irrelevant findings (calcified ones given diameter 0: hit radius 3 mm)."""
    dets = [det.detect(r["table"], p, threshold=low) for r, p in zip(records, proba, strict=True)]
    truths = [[{"center_mm": t["center_mm"],
                "diameter_mm": t["diameter_mm"] if t["type"] != "calcified" else 0.0}
               for t in r["truths"]] for r in records]  # fmt: skip
    res = froc(dets, truths, min_diameter_mm=MIN_COUNTED_MM, min_radius_mm=MIN_HIT_RADIUS_MM)
    return {"fps": list(res.fps_per_scan), "sensitivity": [float(s) for s in res.sensitivity],
            "cpm": float(np.mean(res.sensitivity)), "n_nodules": res.n_nodules}  # fmt: skip


def evaluate_phantoms(det, records, thr: float | None = None) -> dict[str, Any]:
    proba = [det.predict_regions(r["table"]) for r in records]
    rows = phantom_sweep(det, records, proba, () if thr is None else (thr,))
    op = operating_threshold(rows) if thr is None else thr
    out = sensitivity_table(records, rows, op)
    out["at_1fp"] = sensitivity_table(records, rows, operating_threshold(rows))
    out["froc"] = phantom_froc(det, records, proba)
    return out


def evaluate_real(det, rec, thr: float) -> dict[str, Any]:
    """Annotated lesions >= 10 mm found, FPs and inserted-nodule sensitivity at ``thr``."""
    case = rec["case"]
    proba = det.predict_regions(rec["table"])
    dets = det.detect(rec["table"], proba, threshold=thr)
    geo = {"spacing": case.spacing, "origin": case.origin, "direction": case.direction}
    ins = lesions_from_mask(rec["truth"], **geo)
    ann = lesions_from_mask(case.lesion_mask, **geo)
    s_ins = score_scan(dets, rec["truth"], min_diameter_mm=0.0, lesions=ins,
                       ignore=[(a.center_mm, 0.5 * a.diameter_mm) for a in ann] + list(case.ignore),
                       **geo)  # fmt: skip
    s_ann = score_scan(dets, case.lesion_mask, lesions=ann,
                       ignore=[(a.center_mm, 0.5 * a.diameter_mm) for a in ins] + list(case.ignore),
                       **geo)  # fmt: skip
    return {"scan": rec["name"], "threshold": thr,
            "annotated_found": int(sum(s_ann.found)), "annotated": len(s_ann.found),
            "inserted_found": int(sum(s_ins.found)), "inserted": len(s_ins.found),
            "false_positives": int(s_ins.false_positives)}  # fmt: skip


def choose_options(train: Sequence[dict], real: Sequence[dict]):
    """``(extra_features, threshold, report)`` chosen on the validation split.

    Models are fitted on the training pairs but the last :data:`VALIDATION_PAIRS` (plus
    ``real``) with and without ``hessian_shape``, and evaluated on those last pairs:
    the set with the higher sensitivity at <= :data:`FP_BUDGET` false positives per scan
    wins (tie: the higher CPM; tie: without), and the threshold is its operating point.
    """
    n_val = 2 * VALIDATION_PAIRS
    fit_part, val = list(train[:-n_val]), list(train[-n_val:])
    report, scores = {}, {}
    for ex in ((), ("hessian_shape",)):
        det = fit(make_detector(ex), fit_part + list(real))
        r = evaluate_phantoms(det, val)
        report["+".join(("schema",) + ex)] = r
        g = r["at_1fp"]["groups"]
        f, n = g.get("all", (0, 0))
        scores[ex] = (f / max(n, 1), r["froc"]["cpm"], -len(ex))
        print(
            f"validation {'+'.join(('schema',) + ex)}: thr {r['at_1fp']['threshold']} FP/scan "
            f"{r['at_1fp']['fp_per_scan']:.2f} "
            + " ".join(f"{k} {_fmt(g, k)}" for k in sorted(g))
            + f" CPM {r['froc']['cpm']:.3f}",
            flush=True,
        )
    best = max(scores, key=lambda e: scores[e])
    return best, float(report["+".join(("schema",) + best)]["at_1fp"]["threshold"]), report


def _fmt(g: dict, key: str) -> str:
    if key not in g:
        return "-"
    f, n = g[key]
    return f"{f}/{n} ({f / n:.0%})"


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the v2 model file here")
    ap.add_argument("--cache", type=Path, help="feature tables per pair (re-used)")
    ap.add_argument("--realct-cache", type=Path, help="realct_insertion.py's cache folder")
    ap.add_argument("--train-seeds", default=f"{TRAIN_SEEDS[0]}-{TRAIN_SEEDS[-1]}")
    ap.add_argument("--validate", action="store_true", help="option choice on the validation split")
    ap.add_argument("--heldout", action="store_true", help="the one held-out evaluation")
    ap.add_argument("--threshold", type=float, default=None, help="operating threshold (model)")
    ap.add_argument("--no-hessian-shape", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    seeds = _seeds(args.train_seeds)
    extra = () if args.no_hessian_shape else ("hessian_shape",)
    t0 = time.perf_counter()
    feat = make_detector(("hessian_shape",))
    train = phantom_records(feat, seeds, args.cache, "train")
    print(f"training tables: {len(train)} scans, {time.perf_counter() - t0:.0f} s", flush=True)
    real = []
    if args.realct_cache is not None:
        real = real_records(args.realct_cache / "default_seed100_n10")
    report: dict[str, Any] = {"train_seeds": seeds}

    def dump() -> None:
        if args.json:
            args.json.write_text(json.dumps(report, indent=1, default=str))

    thr = 0.5 if args.threshold is None else args.threshold
    if args.validate:  # the choices, made on the validation split of the training seeds
        extra, thr, report["validation"] = choose_options(train, real)
        print(f"chosen: extra_features={extra}, threshold={thr}", flush=True)
    report["extra_features"], report["threshold"] = list(extra), thr
    dump()
    v2 = fit(make_detector(extra, thr), train + real)
    print(
        f"v2 fitted: {v2.n_regions_} supervoxels, {v2.n_positive_} positive, "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    if args.out is not None:
        v2.save(args.out)
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    if args.heldout:
        held = phantom_records(feat, HELDOUT_SEEDS, args.cache, "heldout")
        v1 = default_detector()
        held_v1 = phantom_records(v1, HELDOUT_SEEDS, args.cache, "heldout_v1")
        for name, det, recs in (("v1", v1, held_v1), ("v2", v2, held)):
            r = evaluate_phantoms(det, recs, thr=float(det.threshold))
            report[f"heldout {name}"] = r
            for key in ("at_1fp",):
                g = r[key]["groups"]
                print(
                    f"held-out {name} ({key}): thr {r[key]['threshold']} FP/scan "
                    f"{r[key]['fp_per_scan']:.2f} "
                    + " ".join(f"{k} {_fmt(g, k)}" for k in sorted(g))
                )
            g = r["groups"]
            print(
                f"held-out {name} (model threshold {r['threshold']}): FP/scan "
                f"{r['fp_per_scan']:.2f} " + " ".join(f"{k} {_fmt(g, k)}" for k in sorted(g))
            )
            print(f"held-out {name} FROC {r['froc']}", flush=True)
            dump()
        if real:
            rows = []
            lopos: dict[str, NoduleDetector] = {}  # one model per held-out patient
            for rec in real:
                pat = PATIENT[rec["name"]]
                if pat not in lopos:
                    others = [x for x in real if PATIENT[x["name"]] != pat]
                    lopos[pat] = fit(make_detector(extra, thr), train + others)
                lopo = lopos[pat]
                rows.append({"lopo": evaluate_real(lopo, rec, thr),
                             "v1": evaluate_real(v1, rec, float(v1.threshold))})  # fmt: skip
                print(rec["name"], rows[-1], flush=True)
                report["real"] = rows
                dump()
    dump()
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sub-commands ``fastct train`` and ``fastct detect`` (the nodule detector)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import time
from pathlib import Path
from typing import Any

from ._common import (
    AddCommand,
    _npy_geometry,
    _say,
    add_npy_geometry,
    check_new_file,
    check_npy_options,
    check_output,
    csv_out,
    open_sink,
    open_source,
    positive_int,
    read_mask,
    volume_spec,
)

#: Default training recipe of the shipped model (``fastct train`` without options).
DEFAULT_PHANTOMS = 12
DEFAULT_SEED = 1000
DEFAULT_NODULES = 10
DEFAULT_SIZE = "medium"
#: Extra phantoms whose nodules are all small (5-8 mm nodules give one positive supervoxel
#: each, too few to learn from in the standard set); seeds start at ``--seed + 100``.
DEFAULT_SMALL_PHANTOMS = 12
SMALL_SEED_OFFSET = 100
SMALL_DIAMETER_RANGE = (4.5, 9.0)
#: Lowest score with at most 1 false positive per scan on the validation seeds 2000-2019.
DEFAULT_THRESHOLD = 0.67


def _iter_phantom_cases(args: argparse.Namespace):
    from fastct.classify import Case
    from fastct.datasets import chest_phantom

    recipe = [(args.seed + k, None) for k in range(args.phantoms)]
    recipe += [
        (args.seed + SMALL_SEED_OFFSET + k, SMALL_DIAMETER_RANGE)
        for k in range(args.small_phantoms)
    ]
    for k, (seed, diameters) in enumerate(recipe):
        t0 = time.perf_counter()
        extra = {} if diameters is None else {"diameter_range": diameters}
        ph = chest_phantom(args.size, seed=seed, n_nodules=args.nodules, **extra)
        kind = "" if diameters is None else f", nodules {diameters[0]}-{diameters[1]} mm"
        _say(args, f"  phantom {k + 1}/{len(recipe)} (seed {seed}{kind}) rendered")
        yield Case(ph.image, ph.spacing, ph.nodule_labels, ph.lung_mask, ph.origin, f"seed {seed}")
        _say(args, f"    features in {time.perf_counter() - t0:.1f} s")


def _iter_archive_cases(args: argparse.Namespace, archive: Any):
    from fastct.classify import Case

    if "scans" not in archive:
        raise ValueError(f"{args.archive}: no /scans group (expected /scans/<id>/image)")
    ids = archive["scans"].keys() if args.scans is None else args.scans.split(",")
    n = 0
    for sid in ids:
        base = f"scans/{sid}"
        if f"{base}/image" not in archive:
            raise ValueError(f"{args.archive}: /{base}/image does not exist")
        if f"{base}/labels/nodules" not in archive:
            if args.scans is None:
                _say(args, f"  skipping /{base}: no labels/nodules")
                continue
            raise ValueError(f"{args.archive}: /{base}/labels/nodules does not exist")
        image = archive[f"{base}/image"]
        lungs = archive[f"{base}/labels/lungs"] if f"{base}/labels/lungs" in archive else None
        n += 1
        _say(args, f"  scan /{base}")
        yield Case(
            image.read(),
            image.spacing,
            archive[f"{base}/labels/nodules"].read(),
            None if lungs is None else lungs.read(),
            image.origin,
            base,
        )
    if n == 0:
        raise ValueError(f"{args.archive}: no scan with labels/nodules to train on")


def cmd_train(args: argparse.Namespace) -> int:
    import fastct
    from fastct.classify import NoduleDetector

    out = Path(args.out)
    check_new_file(out, args.overwrite)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder {str(out.parent)!r} does not exist")
    if args.phantoms < 1:
        raise ValueError(f"--phantoms must be >= 1, got {args.phantoms}")
    if args.small_phantoms < 0:
        raise ValueError(f"--small-phantoms must be >= 0, got {args.small_phantoms}")
    det = NoduleDetector(
        n_segments_per_litre=args.n_segments_per_litre,
        compactness=args.compactness,
        random_state=args.random_state,
        threshold=args.threshold,
    )
    t0 = time.perf_counter()
    if args.archive is not None:
        with fastct.open(args.archive) as ar:
            det.fit(_iter_archive_cases(args, ar))
    else:
        _say(
            args,
            f"training on {args.phantoms} {args.size} phantoms (seeds {args.seed}..) and "
            f"{args.small_phantoms} small-nodule phantoms (seeds {args.seed + SMALL_SEED_OFFSET}..)",
        )
        det.fit(_iter_phantom_cases(args))
    det.save(out, overwrite=args.overwrite)
    _say(
        args,
        f"trained on {det.n_cases_} scans ({det.n_regions_} supervoxels, {det.n_positive_} "
        f"nodule supervoxels) in {time.perf_counter() - t0:.1f} s; wrote {out}",
    )
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    import numpy as np

    from fastct._atomic import atomic_path
    from fastct.classify import default_detector, load_detector

    t0 = time.perf_counter()
    out = csv_out(args)
    det = default_detector() if args.model is None else load_detector(args.model)
    if args.threshold is not None:
        det.set_params(threshold=args.threshold)
    check_npy_options(args, args.image, args.lung_mask)
    if args.probability_map is not None:
        check_output(args.probability_map, args, "--probability-map")
    with open_source(args.image, **_npy_geometry(args), what="IMAGE") as src:
        image = np.asarray(src.read())
        src = dataclasses.replace(src, data=image)  # outlives the archive
    lung = read_mask(args.lung_mask, args)
    res = det.predict(
        image,
        lung_mask=lung,
        spacing=src.spacing,
        origin=src.origin,
        direction=src.direction,
    )
    if args.probability_map is not None:
        with open_sink(args.probability_map, args, src, np.float32,
                       what="--probability-map") as pm:  # fmt: skip
            pm[...] = res.probability_map.astype(np.float32)
    fields = ["id", "center_z_mm", "center_y_mm", "center_x_mm", "diameter_mm", "volume_mm3",
              "probability", "n_regions"]  # fmt: skip
    with atomic_path(out, overwrite=True) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            w.writeheader()
            for i, d in enumerate(res.detections, start=1):
                row = {k: (repr(float(v)) if isinstance(v, float) else v)
                       for k, v in d.as_dict().items()}  # fmt: skip
                w.writerow({"id": i, **row})
    _say(
        args,
        f"{len(res.detections)} candidates (probability >= {det.threshold:g}) in "
        f"{time.perf_counter() - t0:.1f} s; wrote {out}",
    )
    return 0


def add_commands(command: AddCommand) -> None:
    """Add ``train`` and ``detect`` to the fastct parser."""
    p = command(
        "train",
        cmd_train,
        "train the nodule detector on phantoms or an archive with ground truth",
        description="Train a NoduleDetector. Without --archive: on --phantoms synthetic "
        "chest phantoms with seeds --seed, --seed+1, ... (the recipe of the shipped model "
        f"is the default: {DEFAULT_PHANTOMS} {DEFAULT_SIZE} phantoms, seed {DEFAULT_SEED}, "
        f"{DEFAULT_NODULES} nodules each, plus {DEFAULT_SMALL_PHANTOMS} phantoms with seeds "
        f"from seed+{SMALL_SEED_OFFSET} whose nodules are {SMALL_DIAMETER_RANGE[0]}-"
        f"{SMALL_DIAMETER_RANGE[1]} mm). With --archive: on /scans/<id>/image with "
        "/scans/<id>/labels/nodules (and optional labels/lungs).",
        example="fastct train --out detector.skops --phantoms 1 --small-phantoms 0 --size small",
    )
    p.add_argument("--out", required=True, metavar="MODEL", help="model file to write (required)")
    p.add_argument("--phantoms", type=positive_int, default=DEFAULT_PHANTOMS, metavar="N",
                   help="standard phantoms to train on")  # fmt: skip
    p.add_argument("--size", default=DEFAULT_SIZE, help="phantom preset")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="first phantom seed")
    p.add_argument("--nodules", type=positive_int, default=DEFAULT_NODULES, metavar="N",
                   help="nodules per phantom")  # fmt: skip
    p.add_argument("--small-phantoms", type=int, default=DEFAULT_SMALL_PHANTOMS, metavar="N",
                   help="extra phantoms with small nodules only (default "
                   f"{DEFAULT_SMALL_PHANTOMS}; 0 for none)")  # fmt: skip
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"detection threshold stored in the model (default {DEFAULT_THRESHOLD})")  # fmt: skip
    p.add_argument("--archive", type=Path, default=None, help="train on this archive instead")
    p.add_argument("--scans", default=None, help="comma-separated scan ids (default all)")
    p.add_argument("--n-segments-per-litre", type=float, default=12000.0,
                   help="SLIC supervoxels per litre of lung")  # fmt: skip
    p.add_argument("--compactness", type=float, default=0.05, help="SLIC compactness")
    p.add_argument("--random-state", type=int, default=0, help="seed of the classifier")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model file")

    p = command(
        "detect",
        cmd_detect,
        "detect nodules in a CT volume (CSV of candidates, optional probability map)",
        example="fastct detect ct.nii.gz --out nodules.csv --probability-map p.nii.gz",
    )
    p.add_argument("image", type=volume_spec, metavar="IMAGE",
                   help="CT volume in HU: FILE.h5:/path, NIfTI, DICOM folder or .npy")  # fmt: skip
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--out", required=True, metavar="CSV", help="detections CSV to write (required)")
    p.add_argument("--probability-map", type=volume_spec, default=None, metavar="DST",
                   help="also write the voxel probability map (FILE.h5:/path, NIfTI or .npy)")  # fmt: skip
    p.add_argument("--lung-mask", type=volume_spec, default=None, metavar="MASK",
                   help="lung mask volume (default: threshold-based mask)")  # fmt: skip
    add_npy_geometry(p)
    p.add_argument("--threshold", type=float, default=None,
                   help="candidate threshold (default: the model's)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing CSV and probability map")  # fmt: skip

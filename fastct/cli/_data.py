"""Archive commands: ``info``, ``import``, ``export`` and ``phantom``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

import fastct

from ._common import (
    AddCommand,
    _say,
    add_transform_kind,
    add_volume,
    float_list,
    volume_at,
    volume_spec,
)


def cmd_info(args: argparse.Namespace) -> int:
    with fastct.open(args.archive) as ar:
        print(ar.summary())
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .. import io

    t0 = time.perf_counter()
    kwargs: dict[str, Any] = {}
    if args.spacing is not None:
        kwargs["spacing"] = args.spacing
    if args.series_uid is not None:
        kwargs["series_uid"] = args.series_uid
    if args.volume_index is not None:
        kwargs["volume_index"] = args.volume_index
    if args.recursive:
        kwargs["recursive"] = True
    imported = io.read_volume(args.input, **kwargs)
    path, name = args.dest
    with fastct.open(path, "a") as ar:
        vol = ar.create_volume(
            name,
            imported.array,
            spacing=imported.spacing,
            origin=imported.origin,
            direction=imported.direction,
            modality=imported.modality,
            units=imported.units,
            chunks=args.chunks,
            compression=args.compression,
            shuffle=args.compression is not None,
            overwrite=args.overwrite,
        )
        summary = repr(vol)
    _say(
        args, f"imported {args.input} -> {path}:{name} in {time.perf_counter() - t0:.1f} s", summary
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .. import io

    path, name = args.source
    out = Path(args.output)
    with fastct.open(path) as ar:
        vol = volume_at(ar, args.source)
        data = vol.read()
        if out.name.endswith((".nii", ".nii.gz")):
            io.write_nifti(
                out,
                data,
                spacing=vol.spacing,
                origin=vol.origin,
                direction=vol.direction,
                overwrite=args.overwrite,
            )
        elif out.suffix == ".npy":
            io.write_npy(out, data, overwrite=args.overwrite)
        else:
            raise ValueError(f"output must end in .nii, .nii.gz or .npy, got {str(out)!r}")
    _say(args, f"exported {path}:{name} -> {out}")
    return 0


def cmd_phantom(args: argparse.Namespace) -> int:
    from .. import datasets

    t0 = time.perf_counter()
    prefix = "/" + args.prefix.strip("/")
    pair = datasets.phantom_pair(args.size, seed=args.seed, transform=args.transform)
    with fastct.open(args.archive, "a") as ar:
        for tag, scan in (("baseline", pair.baseline), ("followup", pair.followup)):
            group = f"{prefix}/{tag}"
            meta = {"spacing": scan.spacing, "origin": scan.origin, "chunks": args.chunks}
            ar.create_volume(
                f"{group}/image",
                scan.image,
                modality="CT",
                units="HU",
                overwrite=args.overwrite,
                **meta,
            )
            ar.create_volume(
                f"{group}/labels/lungs",
                scan.lung_mask.astype(np.uint8),
                overwrite=args.overwrite,
                **meta,
            )
            ar.create_volume(
                f"{group}/labels/nodules", scan.nodule_labels, overwrite=args.overwrite, **meta
            )
        ar.set_attrs(
            f"{prefix}/truth",
            transform=np.asarray(pair.transform, dtype=np.float64),
            transform_convention="maps baseline (fixed) physical points to follow-up (moving) points",
            nodules_json=_nodules_json(pair),
            seed=args.seed,
            size=args.size,
        )
    _say(
        args,
        f"wrote phantom pair ({args.size}, seed {args.seed}) to {args.archive}:{prefix} "
        f"in {time.perf_counter() - t0:.1f} s",
        f"  {prefix}/baseline/image, {prefix}/followup/image, labels/lungs, labels/nodules, truth",
    )
    return 0


def _nodules_json(pair: Any) -> str:
    import dataclasses
    import json

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return plain(dataclasses.asdict(obj))
        if isinstance(obj, dict):
            return {str(k): plain(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [plain(v) for v in obj]
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        return obj

    return json.dumps(
        {
            "baseline": plain(pair.baseline.nodules),
            "followup": plain(pair.followup.nodules),
            "changes": plain(pair.changes),
        }
    )


def add_commands(command: AddCommand) -> None:
    """Add ``info``, ``import``, ``export`` and ``phantom`` to the fastct parser."""
    p = command("info", cmd_info, "list the volumes of an archive")
    p.add_argument("archive", type=Path, metavar="ARCHIVE.h5")

    p = command(
        "import", cmd_import, "import a DICOM series folder, NIfTI file or .npy into an archive"
    )
    p.add_argument("input", type=Path, metavar="INPUT")
    p.add_argument("dest", type=volume_spec, metavar="ARCHIVE.h5:/scans/ID/image")
    p.add_argument("--spacing", type=float_list, metavar="Z,Y,X", help="spacing in mm (.npy input)")
    p.add_argument("--series-uid", help="pick one series of a folder holding several")
    p.add_argument("--volume-index", type=int, help="pick one volume of a 4-D NIfTI file")
    p.add_argument("--recursive", action="store_true", help="search sub-folders for DICOM files")
    p.add_argument("--compression", choices=["gzip", "lzf"], help="HDF5 compression filter")
    p.add_argument("--overwrite", action="store_true", help="replace an existing volume")

    p = command("export", cmd_export, "export a volume to NIfTI or .npy")
    add_volume(p, "source", "ARCHIVE")
    p.add_argument("output", metavar="OUT.nii.gz|OUT.npy")
    p.add_argument("--overwrite", action="store_true")

    p = command(
        "phantom",
        cmd_phantom,
        "write a synthetic baseline/follow-up chest-CT pair with ground truth",
    )
    p.add_argument("archive", type=Path, metavar="ARCHIVE.h5")
    p.add_argument(
        "--size", default="small", help="preset: tiny, small, medium, large, clinical (512x512x400)"
    )
    p.add_argument("--seed", type=int, default=0)
    add_transform_kind(p)
    p.add_argument("--prefix", default="scans/phantom", help="group to write under")
    p.add_argument("--overwrite", action="store_true", help="replace existing volumes")

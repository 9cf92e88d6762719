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
    Source,
    UsageError,
    _say,
    add_npy_geometry,
    add_transform_kind,
    add_volume,
    archive_spec,
    check_npy_options,
    check_output,
    is_archive_name,
    open_source,
    volume_spec,
    write_array,
)


def _plain(value: Any) -> Any:
    """An attribute value as JSON: arrays as lists, bytes as text, NaN as null."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _describe(name: str, vol: Any) -> dict[str, Any]:
    """One volume (an archive Volume or a :class:`Source`) as a JSON-ready dict."""
    from .._geometry import orientation_code

    ndim = len(vol.shape)
    direction = np.eye(ndim) if vol.direction is None else np.asarray(vol.direction, float)
    attrs = (
        vol.data.attrs if isinstance(vol, Source) and vol.streamed else getattr(vol, "attrs", {})
    )
    streamed = isinstance(vol, fastct.Volume) or (isinstance(vol, Source) and vol.streamed)
    data = vol.data if isinstance(vol, Source) else vol
    return {
        "path": name,
        "shape": list(vol.shape),
        "dtype": str(np.dtype(vol.dtype)),
        "chunks": list(data.chunks) if streamed and data.chunks else None,
        "compression": data.compression if streamed else None,
        "spacing": [float(v) for v in vol.spacing],
        "origin": [float(v) for v in vol.origin],
        "direction": direction.tolist(),
        "orientation": orientation_code(direction),
        "modality": vol.modality,
        "units": vol.units,
        "attrs": {
            str(k): _plain(v)
            for k, v in dict(attrs).items()
            if k not in ("spacing", "origin", "direction", "modality", "units")
        },
    }


def _fmt(values: Any) -> str:
    return " x ".join(f"{float(v):g}" for v in values)


def _info_lines(d: dict[str, Any]) -> list[str]:
    extra = " ".join(x for x in (d["modality"], d["units"] and f"[{d['units']}]") if x)
    storage = ""
    if d["chunks"] is not None:
        storage = f", chunks {tuple(d['chunks'])}, {d['compression'] or 'uncompressed'}"
    first = (
        f"  {d['path']}: {' x '.join(map(str, d['shape']))} {d['dtype']}, "
        f"spacing {_fmt(d['spacing'])} mm{storage} {extra}"
    ).rstrip()
    ident = np.allclose(d["direction"], np.eye(len(d["shape"])))
    direction = "identity" if ident else str(np.round(np.asarray(d["direction"]), 6).tolist())
    second = (
        f"    origin {_fmt(d['origin'])} mm (z, y, x), direction {direction}, "
        f"orientation {d['orientation']}"
    )
    return [first, second]


def cmd_info(args: argparse.Namespace) -> int:
    import json

    target: str = args.target
    ref = None
    as_archive = (
        is_archive_name(target)
        or (Path(target).is_file() and _is_hdf5(Path(target)))
        or (Path(target).is_dir() and (Path(target) / "zarr.json").is_file())
    )
    if not as_archive:
        ref = volume_spec_or_usage(target)
        check_npy_options(args, ref)
    doc: dict[str, Any] = {"path": target, "volumes": []}
    if ref is None:
        with fastct.open(target) as ar:
            doc["size_bytes"] = archive_size(Path(target))
            for name in ar.volumes():
                try:
                    doc["volumes"].append(_describe(name, ar[name]))
                except ValueError as exc:
                    doc["volumes"].append({"path": name, "error": str(exc)})
    else:
        with open_source(ref, spacing=args.spacing, origin=args.origin, what="SRC") as src:
            if ref.kind == "archive":
                doc["path"] = str(ref.path)
                name = ref.name
            else:
                name = target
            doc["volumes"].append(_describe(name, src))
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    lines = [f"{doc['path']}" + (f"  ({_human(doc['size_bytes'])})" if "size_bytes" in doc else "")]
    for d in doc["volumes"]:
        if "error" in d:
            lines.append(f"  {d['path']}: unreadable metadata ({d['error']})")
        else:
            lines += _info_lines(d)
    if not doc["volumes"]:
        lines.append("  (no volumes)")
    print("\n".join(lines))
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def archive_size(path: Path) -> int:
    """Bytes on disk of an archive: the HDF5 file, or every file of a Zarr store."""
    if not path.is_dir():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def volume_spec_or_usage(text: str) -> Any:
    try:
        return volume_spec(text)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None


def cmd_import(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.input.kind == "archive":
        raise ValueError(
            f"INPUT {args.input.text!r} is already an archive volume; import reads DICOM, "
            "NIfTI or .npy files"
        )
    check_npy_options(args, args.input)
    options = {
        "series_uid": args.series_uid,
        "volume_index": args.volume_index,
        "recursive": args.recursive,
    }
    with open_source(
        args.input, spacing=args.spacing, origin=args.origin, what="INPUT", **options
    ) as src:
        with fastct.open(args.dest.path, "a") as ar:
            vol = ar.create_volume(
                args.dest.name,
                src.read(),
                spacing=src.spacing,
                origin=src.origin,
                direction=src.direction,
                modality=src.modality,
                units=src.units,
                chunks=args.chunks,
                compression=args.compression,
                shuffle=args.compression is not None,
                overwrite=args.overwrite,
            )
            described = _info_lines(_describe(args.dest.name, vol))
    _say(
        args,
        f"imported {args.input} -> {args.dest} in {time.perf_counter() - t0:.1f} s",
        *described,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    out = args.output
    if out.kind not in ("nifti", "npy"):
        raise ValueError(f"output must end in .nii, .nii.gz or .npy, got {out.text!r}")
    check_npy_options(args, args.source)
    check_output(out, args, "output")
    with open_source(args.source, spacing=args.spacing, origin=args.origin) as src:
        write_array(out, args, np.asarray(src.read()), src)
    _say(args, f"exported {args.source} -> {out}")
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


def _output_file(text: str) -> Any:
    """The OUT argument of ``export``: a .nii, .nii.gz or .npy file."""
    ref = volume_spec(text) if text.lower().endswith((".nii", ".nii.gz", ".npy")) else None
    if ref is None:
        raise argparse.ArgumentTypeError(f"expected OUT.nii, OUT.nii.gz or OUT.npy, got {text!r}")
    return ref


def add_commands(command: AddCommand) -> None:
    """Add ``info``, ``import``, ``export`` and ``phantom`` to the fastct parser."""
    p = command(
        "info",
        cmd_info,
        "list the volumes of an archive, or describe one volume file",
        description="List every volume of ARCHIVE.h5 or STORE.zarr (or describe one volume: "
        "FILE.h5:/path, STORE.zarr:/path, a NIfTI file, a DICOM folder or .npy): shape, dtype, chunks, "
        "spacing, origin, direction and orientation code (LPS, RAS, ..., or 'oblique "
        "(closest XYZ)'), modality and units. --json prints one JSON document instead.",
        example="fastct info study.h5 --json",
    )
    p.add_argument("target", metavar="ARCHIVE.h5|STORE.zarr|SRC")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON document: path and a list of volumes with path, shape, dtype, chunks, "
        "spacing, origin, direction, orientation, modality, units and attrs",
    )
    add_npy_geometry(p)

    p = command(
        "import",
        cmd_import,
        "import a DICOM series folder, NIfTI file or .npy into an archive",
        description="Import a DICOM series, a NIfTI file or a NumPy .npy file as a volume of "
        "an archive (created if missing). A folder is a DICOM series (--series-uid picks one "
        "when the folder holds several, --recursive searches sub-folders); slices are sorted "
        "along the slice normal and checked for consistent size, orientation and spacing, "
        "and CT values are rescaled to Hounsfield units (int16, units HU). .nii/.nii.gz/.hdr "
        "is NIfTI (--volume-index for 4-D files); .npy has no geometry (--spacing, "
        "--origin). Spacing, origin and direction are converted to the archive's "
        "conventions. An option that does not apply to the input is an error.",
        example="fastct import ct.nii.gz study.h5:/scans/case01/image --compression gzip",
    )
    p.add_argument("input", type=volume_spec, metavar="INPUT",
                   help="a DICOM folder or file, a NIfTI file or a .npy file")  # fmt: skip
    p.add_argument("dest", type=archive_spec, metavar="ARCHIVE.h5:/scans/ID/image",
                   help="the new archive volume (ARCHIVE.h5:/path or STORE.zarr:/path)")  # fmt: skip
    add_npy_geometry(p)
    p.add_argument("--series-uid", help="pick one series of a folder holding several")
    p.add_argument("--volume-index", type=int, help="pick one volume of a 4-D NIfTI file")
    p.add_argument("--recursive", action="store_true", help="search sub-folders for DICOM files")
    p.add_argument("--compression", choices=["gzip", "lzf"],
                   help="compression filter (Zarr stores: lzf becomes zstd level 1)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace an existing volume")

    p = command(
        "export",
        cmd_export,
        "write a volume to NIfTI (geometry kept) or .npy (voxels only)",
        description="Write a volume (FILE.h5:/path, STORE.zarr:/path, or any volume input) to NIfTI (.nii or "
        ".nii.gz; the geometry becomes a RAS affine that nibabel and ITK read back to the "
        "same physical positions) or to .npy (voxels only). The format follows OUT's "
        "extension; the volume is read into memory.",
        example="fastct export study.h5:/scans/case01/image case01.nii.gz",
    )
    add_volume(p, "source", "SRC")
    p.add_argument("output", type=_output_file, metavar="OUT.nii.gz|OUT.npy")
    add_npy_geometry(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    p = command(
        "phantom",
        cmd_phantom,
        "write a synthetic baseline/follow-up chest-CT pair with ground truth",
        example="fastct phantom phantom.h5 --size tiny --seed 3",
    )
    p.add_argument("archive", type=Path, metavar="ARCHIVE.h5")
    p.add_argument(
        "--size", default="small", help="preset: tiny, small, medium, large, clinical (512x512x400)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random anatomy")
    add_transform_kind(p)
    p.add_argument("--prefix", default="scans/phantom", help="group to write under")
    p.add_argument("--overwrite", action="store_true", help="replace existing volumes")

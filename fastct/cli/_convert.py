"""``fastct convert``: between HDF5 archives, Zarr stores and NIfTI files.

A whole archive converts to another archive (``study.h5`` <-> ``study.zarr``): every volume
(voxels bit for bit, chunks, compression, geometry, modality, units, free attributes) and
every group with its attributes, streamed a chunk row at a time and published atomically.
One volume converts between any volume input and any volume output (``FILE.h5:/path``,
``STORE.zarr:/path``, NIfTI, ``.npy``), geometry kept.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

import fastct

from ..streaming import copy_volume, write_all
from ._common import (
    AddCommand,
    UsageError,
    _npy_geometry,
    _say,
    add_npy_geometry,
    check_npy_options,
    check_output,
    is_archive_name,
    new_volume_like,
    open_sink,
    open_source,
    volume_spec,
)

#: Attributes that the archive format itself sets (not copied as free attributes).
_FORMAT_ATTRS = ("fastct_format", "fastct_format_version")
_META_ATTRS = ("spacing", "origin", "direction", "modality", "units")


def _endpoint(text: str) -> Any:
    """A whole archive (``Path``) or one volume (:class:`VolumeRef`)."""
    if is_archive_name(text) or (Path(text).is_dir() and (Path(text) / "zarr.json").is_file()):
        return Path(text.rstrip("/") or text)
    return volume_spec(text)


def copy_archive(src: Path, dst: Path, *, chunks: Any = None, overwrite: bool = False) -> int:
    """Copy every group and volume of archive ``src`` into a new archive ``dst`` (HDF5 or
    Zarr, from the name); returns the number of volumes. The new archive appears only
    when complete (``overwrite`` replaces an existing one atomically)."""
    if not src.exists():
        raise FileNotFoundError(f"SRC {str(src)!r} does not exist")
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{str(dst)!r} already exists; pass --overwrite to replace it")
    if src.resolve() == dst.resolve():
        raise ValueError(f"SRC and DST are the same archive {str(src)!r}")
    count = 0
    with fastct.open(src) as sar, fastct.open(dst, "w") as dar:
        root = {k: v for k, v in sar.get_attrs("/").items() if k not in _FORMAT_ATTRS}
        if root:
            dar.set_attrs("/", **root)

        def visit(group: str) -> None:
            nonlocal count
            node = sar[group] if group != "/" else None
            names = node.keys() if node is not None else sar.keys()
            for child in names:
                path = group.rstrip("/") + "/" + child
                member = sar[path]
                if isinstance(member, fastct.Volume):
                    extra = {k: v for k, v in member.attrs.items() if k not in _META_ATTRS}
                    kw: dict[str, Any] = {"attrs": extra}
                    if chunks is not None:
                        kw["chunks"] = chunks
                    out = dar.create_volume_like(path, member, **kw)
                    copy_volume(member, out)
                    count += 1
                else:
                    dar.set_attrs(path, **sar.get_attrs(path))
                    visit(path)

        visit("/")
    return count


def cmd_convert(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    src, dst = _endpoint(args.source), _endpoint(args.dest)
    if isinstance(src, Path) != isinstance(dst, Path):
        raise UsageError(
            "a whole archive converts to a whole archive (study.h5 <-> study.zarr); name one "
            "volume on both sides (FILE.h5:/path, STORE.zarr:/path, .nii.gz, .npy) to convert "
            f"one volume, got SRC {args.source!r} and DST {args.dest!r}"
        )
    if isinstance(src, Path):
        check_npy_options(args)
        n = copy_archive(src, dst, chunks=getattr(args, "chunks", None), overwrite=args.overwrite)
        _say(args, f"converted {src} -> {dst} ({n} volumes) in {time.perf_counter() - t0:.1f} s")
        return 0
    check_npy_options(args, src)
    check_output(dst, args)
    with open_source(src, **_npy_geometry(args)) as source:
        if dst.kind == "archive":
            with fastct.open(dst.path, "a") as ar:
                out = new_volume_like(args, ar, dst.name, source, source.dtype)
                if source.streamed:
                    extra = {k: v for k, v in source.data.attrs.items() if k not in _META_ATTRS}
                    if extra:
                        ar.set_attrs(dst.name, **extra)
                    copy_volume(source.data, out)
                else:
                    write_all(out, np.ascontiguousarray(source.read()))
        else:
            with open_sink(dst, args, source, source.dtype) as out:
                out[...] = source.read()
    _say(
        args,
        f"converted {src} -> {dst} ({' x '.join(map(str, source.shape))} "
        f"{np.dtype(source.dtype)}) in {time.perf_counter() - t0:.1f} s",
    )
    return 0


def add_commands(command: AddCommand) -> None:
    """Add ``convert`` to the fastct parser."""
    p = command(
        "convert",
        cmd_convert,
        "convert between HDF5 archives, Zarr stores and NIfTI files",
        description="Convert a whole archive between HDF5 and Zarr (study.h5 <-> study.zarr: "
        "every volume bit for bit with its chunks, compression, spacing, origin, direction, "
        "modality, units and attributes, and every group's attributes; the new archive "
        "appears only when complete), or one volume between any input (FILE.h5:/path, "
        "STORE.zarr:/path, NIfTI, DICOM folder, .npy) and any output (FILE.h5:/path, "
        "STORE.zarr:/path, .nii/.nii.gz, .npy), geometry kept. Zarr stores carry OME-NGFF "
        "0.5 metadata, so napari and other NGFF viewers show them at their physical scale.",
        example="fastct convert study.h5 study.zarr",
    )
    p.add_argument("source", metavar="SRC", help="ARCHIVE.h5, STORE.zarr, or one volume")
    p.add_argument("dest", metavar="DST", help="ARCHIVE.h5, STORE.zarr, or one volume")
    add_npy_geometry(p)
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing archive, volume or file"
    )

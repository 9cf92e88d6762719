"""What every command shares: the one-line-error parser, exit codes, argument types, the
common options and the options several commands take, quiet-aware printing, opening
volumes and checking outputs, and the streamed SRC -> DST filter runner.

Volumes in and out (:class:`VolumeRef`, :func:`open_source`, :func:`open_sink`): a volume
argument is ``FILE.h5:/path`` or ``STORE.zarr:/path`` (streamed block by block), a NIfTI file (``.nii``,
``.nii.gz``), a DICOM folder or file (inputs only) or ``.npy`` (geometry from
``--spacing``/``--origin``). Files that are not archives are read into memory; outputs
follow the destination's name and are written atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import fastct

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """Bad command-line input."""


def _default_text(value: Any) -> str:
    """A default as the user types it: ``(3, 3)`` -> ``3,3``."""
    if isinstance(value, (tuple, list)):
        return ",".join(_default_text(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, ``(default: X)``: ``none`` when the
    option has none, ``off`` for switches. Help that already explains its default
    (``default:`` in the text) is kept as written. Paragraphs of a description or epilog
    that start with ``example`` keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.help is argparse.SUPPRESS or "default" in text or not action.option_strings:
            return text
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        if isinstance(action, argparse._StoreTrueAction):
            shown = "off"
        elif action.default is None or action.default is argparse.SUPPRESS:
            shown = "none"
        else:
            shown = _default_text(action.default)
        shown = shown.replace("%", "%%")
        return f"{text} (default: {shown})" if text else f"(default: {shown})"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.split("\n\n")
        out = []
        for para in paragraphs:
            if para.lstrip().lower().startswith("example"):
                out.append("\n".join(indent + line for line in para.splitlines()))
            else:
                out.append(super()._fill_text(para, width, indent))
        return "\n\n".join(out)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2) and defaults shown in the help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


#: ``command(name, func, help_text, **parser_kwargs)`` adds a sub-command that takes the
#: common options and runs ``func(args)``; every module's ``add_commands`` receives it.
AddCommand = Callable[..., argparse.ArgumentParser]


# -- errors in the command line's words ----------------------------------------------------
def _flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Python parameter name -> what the user typed: ``n_segments`` -> ``--n-segments``,
    ``source`` -> ``SRC``."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if action.dest in (argparse.SUPPRESS, "help", "version"):
            continue
        if action.option_strings:
            names[action.dest] = max(action.option_strings, key=len)
        elif isinstance(action.metavar, str):
            names[action.dest] = action.metavar
    return names


def flag_message(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` of a library error with Python parameter names replaced by the
    command's flags: ``pass overwrite=True to replace it`` -> ``pass --overwrite to
    replace it``, ``n_segments must be >= 1`` -> ``--n-segments must be >= 1``.

    Names containing an underscore are replaced wherever they appear as a word; plain
    names (``sigma``) only where they read as a parameter (``sigma must``, ``sigma=``),
    so ordinary words in a message are left alone.
    """
    for param, flag in sorted(_flag_names(parser).items(), key=lambda kv: -len(kv[0])):
        word = rf"(?<![\w\-./']){re.escape(param)}(?![\w\-/])"
        if flag.startswith("--"):
            # ``overwrite=True (--overwrite)`` and ``overwrite=True``: the switch itself.
            message = re.sub(word + rf"=True(?: \({re.escape(flag)}\))?", flag, message)
        message = re.sub(word + r"=(?=\S)", flag + (" " if flag.startswith("--") else "="),
                         message)  # fmt: skip
        if "_" in param:
            message = re.sub(word, flag, message)
        else:
            message = re.sub(
                word + r"(?=\s+(?:must|should|is|are|has|have|cannot|needs|expects|"
                r"applies|does|do)\b|:)",
                flag,
                message,
            )
    return message


def with_flag_names(func: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser):
    """``func`` with the messages of its ValueError/TypeError/KeyError/OSError in the
    command line's words (:func:`flag_message`); the error handling of ``main`` then
    prints them as one line."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except UsageError:
            raise
        except (ValueError, TypeError, KeyError, OSError) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            translated = flag_message(str(text), parser)
            if translated == str(text):
                raise
            raise UsageError(translated) from exc

    run.__wrapped__ = func  # type: ignore[attr-defined]
    run.__name__ = getattr(func, "__name__", "run")
    return run


# -- argument types ---------------------------------------------------------------------
#: Suffixes of the files a volume argument may name, by kind.
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_ZARR_SUFFIX = ".zarr"
_ARCHIVE_SUFFIXES = (*_HDF5_SUFFIXES, _ZARR_SUFFIX)
VOLUME_FORMS = "FILE.h5:/path, STORE.zarr:/path, a .nii/.nii.gz file, a DICOM folder or a .npy file"
OUTPUT_FORMS = "FILE.h5:/path, STORE.zarr:/path, a .nii/.nii.gz file or a .npy file"


def is_archive_name(text: str) -> bool:
    """True when ``text`` names a whole archive: an HDF5 file (``.h5``, ``.hdf5``,
    ``.hdf``) or a Zarr store (``.zarr``, trailing slash allowed)."""
    return text.lower().rstrip("/").endswith(_ARCHIVE_SUFFIXES)


@dataclass(frozen=True)
class VolumeRef:
    """A volume named on the command line.

    ``kind`` is ``'archive'`` (``path`` is the HDF5 file or Zarr store, ``name`` the path
    inside it), ``'nifti'``, ``'npy'`` or ``'dicom'`` (a folder or a ``.dcm`` file; inputs
    only).
    """

    text: str
    kind: str
    path: Path
    name: str | None = None

    def __str__(self) -> str:
        return self.text

    @property
    def is_file(self) -> bool:
        """True for volumes read into memory (everything but archives)."""
        return self.kind != "archive"

    @property
    def store(self) -> str | None:
        """``'zarr'`` or ``'hdf5'`` for archive volumes, None for files."""
        if self.kind != "archive":
            return None
        return "zarr" if str(self.path).lower().rstrip("/").endswith(_ZARR_SUFFIX) else "hdf5"


def volume_spec(text: str) -> VolumeRef:
    """Parse a volume argument: ``FILE.h5:/path/in/file``, ``STORE.zarr:/path``,
    ``X.nii[.gz]``, ``X.npy``, a DICOM folder or file."""
    low = text.lower()
    if low.endswith(_NIFTI_SUFFIXES):
        return VolumeRef(text, "nifti", Path(text))
    if low.endswith(".npy"):
        return VolumeRef(text, "npy", Path(text))
    path, sep, inner = text.rpartition(":")
    if sep and path and inner.strip("/"):
        return VolumeRef(text, "archive", Path(path), "/" + inner.strip("/"))
    if is_archive_name(text) or sep:
        raise argparse.ArgumentTypeError(
            "expected FILE.h5:/path/in/file or STORE.zarr:/path/in/store (the volume inside "
            f"the archive), got {text!r}"
        )
    if not text:
        raise argparse.ArgumentTypeError(f"expected {VOLUME_FORMS}, got an empty string")
    return VolumeRef(text, "dicom", Path(text))


def archive_spec(text: str) -> VolumeRef:
    """A volume argument that must name a volume inside an archive (``FILE.h5:/path`` or
    ``STORE.zarr:/path``)."""
    ref = volume_spec(text)
    if ref.kind != "archive":
        raise argparse.ArgumentTypeError(
            f"expected FILE.h5:/path/in/file or STORE.zarr:/path/in/store, got {text!r}"
        )
    return ref


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _comma_list(text: str, kind: Callable[[str], Any], expected: str) -> tuple:
    """``text`` split at commas, each part converted by ``kind``."""
    try:
        return tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def int_triple(text: str) -> tuple[int, ...]:
    values = _comma_list(text, int, "integers like 64,64,64")
    if len(values) not in (2, 3) or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected 2 or 3 positive integers, got {text!r}")
    return values


def int_list(text: str) -> tuple[int, ...]:
    return _comma_list(text, int, "integers like 3 or 3,5,5")


def float_list(text: str) -> tuple[float, ...]:
    return _comma_list(text, float, "numbers like 2.5,0.7,0.7")


_HDF5_IO_ERROR = re.compile(
    r"filename = '(?P<file>[^']*)'.*errno = (?P<errno>\d+), error message = '(?P<msg>[^']*)'",
    re.S,
)


def io_error_message(text: str) -> str:
    """HDF5's report of a failed read or write (``... file write failed: time = ...,
    filename = '...', file descriptor = 17, errno = 28, error message = 'No space left on
    device', buf = ...``) as one readable line: ``cannot write dst.h5: No space left on
    device [Errno 28]``, naming the output rather than its temporary file. Other text is
    returned unchanged.

    Examples
    --------
    >>> io_error_message("Unable to flush raw data (file write failed: time = Mon, "
    ...     "filename = '/d/.fastct-tmp-12-ab12cd34-dst.h5', file descriptor = 17, "
    ...     "errno = 28, error message = 'No space left on device', buf = 0x1)")
    'cannot write /d/dst.h5: No space left on device [Errno 28]'
    """
    match = _HDF5_IO_ERROR.search(text)
    if match is None:
        return text
    name = re.sub(r"\.fastct-tmp-\d+-[0-9a-f]+-", "", match["file"])
    verb = "read" if "read failed" in text else "write"
    return f"cannot {verb} {name}: {match['msg']} [Errno {match['errno']}]"


def _say(args: argparse.Namespace, *lines: str) -> None:
    if not args.quiet:
        for line in lines:
            print(line)


def volume_at(archive: Any, spec: VolumeRef) -> Any:
    """The Volume that ``spec`` (``FILE.h5:/path``) names in the open ``archive``."""
    vol = archive[spec.name]
    if not isinstance(vol, fastct.Volume):
        raise ValueError(f"{spec.path}:{spec.name} is a group, not a volume")
    return vol


# -- volumes in ----------------------------------------------------------------------------
@dataclass
class Source:
    """An input volume: ``data`` is an archive :class:`fastct.Volume` (streamed) or an
    in-memory ndarray (files), with its geometry."""

    ref: VolumeRef
    data: Any
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray | None = None
    modality: str | None = None
    units: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def streamed(self) -> bool:
        return isinstance(self.data, fastct.Volume)

    def read(self) -> np.ndarray:
        """The voxels in memory."""
        return self.data.read() if self.streamed else self.data

    def geometry(self) -> dict[str, Any]:
        """``spacing``, ``origin`` and ``direction`` as keyword arguments."""
        return {"spacing": self.spacing, "origin": self.origin, "direction": self.direction}


def check_npy_options(args: argparse.Namespace, *refs: VolumeRef | None) -> None:
    """``--spacing``/``--origin`` give the geometry of ``.npy`` inputs: an error when
    none of ``refs`` is one (other inputs carry their own geometry)."""
    if any(r is not None and r.kind == "npy" for r in refs):
        return
    for flag in ("spacing", "origin"):
        if getattr(args, flag, None) is not None:
            raise UsageError(
                f"--{flag} applies to .npy inputs only (the other inputs carry their own geometry)"
            )


@contextlib.contextmanager
def open_source(
    ref: VolumeRef,
    *,
    spacing: Any = None,
    origin: Any = None,
    what: str = "SRC",
    **read_options: Any,
) -> Iterator[Source]:
    """Open an input volume read-only.

    An archive volume is yielded as a :class:`fastct.Volume` (read block by block while
    the archive is open); a NIfTI file, DICOM folder/file or ``.npy`` file is read into
    memory by :func:`fastct.io.read_volume`. ``spacing``/``origin`` (``--spacing``,
    ``--origin``) apply to ``.npy`` files, ``read_options`` (``series_uid``,
    ``recursive``, ``volume_index``) to the readers that take them.
    """
    if ref.kind == "archive":
        with fastct.open(ref.path) as ar:
            vol = volume_at(ar, ref)
            yield Source(ref, vol, vol.spacing, vol.origin, vol.direction, vol.modality,
                         vol.units)  # fmt: skip
        return
    from .. import io

    options = {k: v for k, v in read_options.items() if v is not None and v is not False}
    if ref.kind == "npy":
        options.update({k: v for k, v in (("spacing", spacing), ("origin", origin)) if v})
    if not ref.path.exists():
        raise FileNotFoundError(f"{what} {ref.text!r} does not exist")
    if (
        ref.kind == "dicom" and ref.path.is_file() and ref.path.suffix.lower() in _ARCHIVE_SUFFIXES
    ):  # pragma: no cover - caught by volume_spec
        raise ValueError(f"expected FILE.h5:/path/in/file, got {ref.text!r}")
    imported = io.read_volume(ref.path, **options)
    yield Source(
        ref,
        imported.array,
        tuple(imported.spacing),
        tuple(imported.origin),
        imported.direction,
        imported.modality,
        imported.units,
    )


def read_mask(spec: VolumeRef | None, args: argparse.Namespace | None = None) -> np.ndarray | None:
    """The mask volume ``spec`` names, read into memory; None when the option is not given."""
    if spec is None:
        return None
    with open_source(spec, **_npy_geometry(args), what="mask") as src:
        return np.asarray(src.read())


def _npy_geometry(args: argparse.Namespace | None) -> dict[str, Any]:
    if args is None:
        return {}
    return {"spacing": getattr(args, "spacing", None), "origin": getattr(args, "origin", None)}


def add_npy_geometry(p: argparse.ArgumentParser, *, spacing: bool = True) -> None:
    """``--spacing`` and ``--origin``: the geometry of ``.npy`` inputs (which have none)."""
    if spacing:
        p.add_argument(
            "--spacing",
            type=float_list,
            metavar="Z,Y,X",
            help="voxel size in mm of .npy inputs (default: 1 on every axis)",
        )
    p.add_argument(
        "--origin",
        type=float_list,
        metavar="Z,Y,X",
        help="physical position in mm (LPS, z,y,x order) of voxel 0 of .npy inputs (default: 0)",
    )


def check_new_file(out: Path, overwrite: bool) -> None:
    """An output file may exist only when --overwrite says to replace it."""
    if out.exists() and not overwrite:
        raise FileExistsError(f"{str(out)!r} already exists; pass --overwrite to replace it")


def csv_out(args: argparse.Namespace) -> Path:
    """``--out`` of a command writing a table: a new (or --overwrite) ``.csv`` file."""
    out = Path(args.out)
    if out.suffix.lower() != ".csv":
        raise ValueError(f"--out must name a .csv file, got {str(out)!r}")
    check_new_file(out, args.overwrite)
    return out


def new_volume_like(
    args: argparse.Namespace, archive: Any, name: str, like: Any, dtype: Any
) -> Any:
    """An empty output volume on ``like``'s grid; --chunks when given, else ``like``'s.

    ``like`` is a :class:`fastct.Volume` (its metadata is copied) or a :class:`Source`
    read from a file (its geometry, modality and units are used)."""
    kwargs: dict[str, Any] = {"dtype": dtype, "overwrite": getattr(args, "overwrite", False)}
    chunks = getattr(args, "chunks", None)
    if chunks is not None:
        kwargs["chunks"] = chunks
    if isinstance(like, Source):
        if like.streamed:
            like = like.data
        else:
            return archive.create_volume(
                name,
                shape=like.shape,
                modality=like.modality,
                units=like.units,
                **like.geometry(),
                **kwargs,
            )
    return archive.create_volume_like(name, like, **kwargs)


def _is_default_geometry(like: Source) -> bool:
    ndim = len(like.shape)
    direction = like.direction
    return (
        np.allclose(like.spacing, 1.0)
        and np.allclose(like.origin, 0.0)
        and (direction is None or np.allclose(direction, np.eye(ndim)))
    )


def check_output(ref: VolumeRef, args: argparse.Namespace, what: str = "DST") -> None:
    """Fail before any work when an output cannot be written (wrong kind, existing file
    without --overwrite, missing folder)."""
    if ref.kind == "dicom":
        raise ValueError(f"{what} must be {OUTPUT_FORMS} (DICOM is input only), got {ref.text!r}")
    if ref.kind in ("nifti", "npy"):
        check_new_file(ref.path, getattr(args, "overwrite", False))
        if not ref.path.resolve().parent.is_dir():
            raise FileNotFoundError(f"folder of {what} {str(ref.path.parent)!r} does not exist")


@contextlib.contextmanager
def open_sink(
    ref: VolumeRef, args: argparse.Namespace, like: Source, dtype: Any, *, what: str = "DST"
) -> Iterator[Any]:
    """The output volume on ``like``'s grid, yielded for a command to fill.

    ``FILE.h5:/path`` or ``STORE.zarr:/path``: a new archive volume (streamed into; the archive is committed on
    success). ``.nii``/``.nii.gz``: an in-memory array written, when the block succeeds,
    with ``like``'s spacing, origin and direction (a temporary file renamed into place,
    so a half-written file never appears). ``.npy``: the voxels only; a note on stderr
    says when non-default geometry is dropped.
    """
    check_output(ref, args, what)
    if ref.kind == "archive":
        with fastct.open(ref.path, "a") as ar:
            yield new_volume_like(args, ar, ref.name, like, dtype)
        return
    fastct.io.check_allocation(
        int(np.prod(like.shape)) * np.dtype(dtype).itemsize, f"the result for {ref}"
    )
    out = np.empty(like.shape, dtype=dtype)
    yield out
    write_array(ref, args, out, like)


def write_array(ref: VolumeRef, args: argparse.Namespace, data: np.ndarray, like: Source) -> None:
    """Write an in-memory result to a NIfTI or ``.npy`` file with ``like``'s geometry."""
    try:
        _write_array(ref, args, data, like)
    except OSError as exc:  # a full disk, a file size limit: say which file
        if str(ref.path) in str(exc):
            raise
        reason = exc.strerror or str(exc)
        if exc.errno is not None:
            reason += f" [Errno {exc.errno}]"
        elif " requested and " in reason:  # numpy's short write: the disk or a size limit
            reason += " (disk full or file size limit)"
        raise OSError(f"cannot write {ref.text}: {reason}") from exc


def _write_array(ref: VolumeRef, args: argparse.Namespace, data: np.ndarray, like: Source) -> None:
    from .. import io

    overwrite = bool(getattr(args, "overwrite", False))
    if ref.kind == "nifti":
        io.write_nifti(ref.path, data, overwrite=overwrite, **like.geometry())
    elif ref.kind == "npy":
        if not _is_default_geometry(like) and not getattr(args, "quiet", False):
            print(
                f"fastct: note: {ref.text} holds the voxels only; spacing, origin and "
                "direction are not stored in .npy files (use .nii.gz or FILE.h5:/path to "
                "keep them)",
                file=sys.stderr,
            )
        io.write_npy(ref.path, data, overwrite=overwrite)
    else:  # pragma: no cover - check_output refuses the others
        raise ValueError(f"cannot write {ref.text!r}")


#: errno values of a write that failed for want of room: the error names the output.
_NO_ROOM = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


@contextlib.contextmanager
def naming_output(ref: VolumeRef) -> Iterator[None]:
    """Re-raise a disk-full / file-too-large ``OSError`` that does not say which output
    it was writing as ``cannot write DST: No space left on device [Errno 28]``."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _NO_ROOM or str(ref.path) in str(exc):
            raise
        reason = exc.strerror or str(exc)
        raise OSError(f"cannot write {ref.text}: {reason} [Errno {exc.errno}]") from exc


def _stream_filter(args: argparse.Namespace, name: str, run: Any, out_dtype: Any) -> int:
    """Open SRC read-only and DST (an archive transaction or an in-memory array written
    atomically); run ``run(src_data, dst)``, streamed when both are archive volumes."""
    check_npy_options(args, args.source)
    check_output(args.dest, args)
    t0 = time.perf_counter()
    with open_source(args.source, **_npy_geometry(args)) as src:
        dtype = out_dtype(src.dtype)
        with naming_output(args.dest), open_sink(args.dest, args, src, dtype) as dst:
            data = src.data if isinstance(dst, fastct.Volume) else src.read()
            run(src, data, dst)
    _say(
        args,
        f"{name}: {args.source} -> {args.dest} "
        f"({' x '.join(map(str, src.shape))} {np.dtype(dtype)}) in {time.perf_counter() - t0:.1f} s",
    )
    return 0


def _one_or_per_axis(values: tuple) -> Any:
    """``--sigma 2`` means every axis; ``--sigma 2,1,1`` one value per axis."""
    return values[0] if len(values) == 1 else values


def _physical_spacing(args: argparse.Namespace, src: Source) -> Any:
    return src.spacing if args.mm else None


# -- options several commands take -------------------------------------------------------
def add_volume(p: argparse.ArgumentParser, arg: str, name: str, **kwargs: Any) -> None:
    """A volume argument (``fixed``) or option (``--fixed-mask``) shown as ``NAME``: an
    archive volume ``FILE.h5:/path``, a NIfTI file, a DICOM folder (inputs) or ``.npy``."""
    p.add_argument(arg, type=volume_spec, metavar=name, **kwargs)


SRC_HELP = (
    "input volume: FILE.h5:/path, STORE.zarr:/path, a .nii/.nii.gz file, a DICOM folder or .npy"
)
DST_HELP = (
    "output volume, format from the name: FILE.h5:/path or STORE.zarr:/path (streamed), "
    ".nii/.nii.gz (geometry kept) or .npy (voxels only)"
)


def add_volumes(p: argparse.ArgumentParser, **names: str) -> None:
    """Positional volumes in order: ``add_volumes(p, fixed="FIXED", moving="MOVING")``;
    ``dest`` is an output, the others inputs."""
    for arg, name in names.items():
        add_volume(p, arg, name, help=DST_HELP if arg == "dest" else SRC_HELP)


def add_per_axis(
    p: argparse.ArgumentParser, flag: str, letter: str, kind: Any, **kwargs: Any
) -> None:
    """``--sigma S[,S,S]``: one value for every axis or one per axis (:func:`_one_or_per_axis`)."""
    p.add_argument(flag, type=kind, metavar=f"{letter}[,{letter},{letter}]", **kwargs)


def add_transform_kind(p: argparse.ArgumentParser) -> None:
    """``--transform``: rigid or similarity (estimated by a registration, or the motion
    of a phantom pair)."""
    p.add_argument(
        "--transform",
        choices=["rigid", "similarity"],
        default="rigid",
        help="rigid: rotation + translation; similarity: also an isotropic scale",
    )


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the command name.

    Sub-commands take them without defaults (``argparse.SUPPRESS``) so an option given
    before the command name (``fastct --quiet info``) is not reset by the sub-command.
    """
    common = _Parser(add_help=False, argument_default=None if defaults else argparse.SUPPRESS)
    g = common.add_argument_group("common options")
    g.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="threads for compiled kernels (default: FASTCT_NUM_THREADS or all cores)",
    )
    g.add_argument(
        "--chunks",
        type=int_triple,
        metavar="Z,Y,X",
        help="chunk shape of new volumes (default about 64^3)",
    )
    g.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="warnings and errors only: no progress, no summaries",
    )
    g.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="log every stage (sizes, durations) and the progress of all streamed work on "
        "stderr (default: a progress bar for long work on a terminal, one-line progress "
        "records every 10 s for work over 10 s otherwise)",
    )
    return common

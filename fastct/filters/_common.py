"""Plumbing shared by every filter: input/output dispatch and docstring fragments.

A public filter validates its arguments, then calls :func:`run_filter` with a block
kernel. In memory and on archive volumes the same kernel runs through the same
streaming engine (:func:`fastct.streaming.map_overlap`), so the streamed result is
bit-identical to the in-memory one by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._validate import as_image
from ..streaming import BlockInfo, map_overlap
from ..volume import Volume

# Shared numpydoc fragments (scipy.ndimage style: one wording for one parameter).
DOC_IMAGE = """image : ndarray or Volume
        2-D ``(y, x)`` or 3-D ``(z, y, x)`` input, in memory or in an archive."""
DOC_MODE = """mode : {'reflect', 'mirror', 'nearest', 'constant', 'wrap'}
        How the input is extended past its edges, as in scipy.ndimage
        (default ``'reflect'``)."""
DOC_CVAL = """cval : float
        Fill value past the edges when ``mode='constant'``."""
DOC_SPACING = """spacing : sequence of float, optional
        Voxel size in mm per axis. When given, lengths (sigma, radius) are in mm;
        when omitted they are in voxels."""
DOC_OUT = """out : ndarray or Volume, optional
        Where to write the result (same shape). An archive Volume is filled block by
        block, so volumes larger than memory stream through. Default: a new array."""


def check_input(image: Any, name: str = "image") -> np.ndarray | Volume:
    """Accept an archive Volume as is; validate an in-memory array."""
    if isinstance(image, Volume):
        return image
    return as_image(image, name)


def check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if out is None:
        return
    if not isinstance(out, (np.ndarray, Volume)):
        raise TypeError(f"out must be an ndarray or a Volume, got {type(out).__name__}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out must have shape {tuple(shape)}, got {tuple(out.shape)}")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise ValueError("out must be writeable")
    if np.dtype(out.dtype) != dtype and not np.can_cast(dtype, out.dtype, "same_kind"):
        raise TypeError(f"out dtype {out.dtype} cannot hold the {dtype} result")


def run_filter(
    kernel: Callable[[np.ndarray, BlockInfo], np.ndarray],
    image: np.ndarray | Volume,
    *,
    depth: tuple[int, ...],
    mode: str,
    cval: float,
    compute_dtype: np.dtype,
    out_dtype: np.dtype,
    out: np.ndarray | Volume | None,
    desc: str,
    block_shape: tuple[int, ...] | None = None,
) -> np.ndarray | Volume:
    """Run a block kernel over an in-memory array or an archive volume."""
    check_out(out, image.shape, np.dtype(out_dtype))
    return map_overlap(
        kernel,
        image,
        depth=depth,
        mode=mode,
        cval=cval,
        dtype=compute_dtype,
        out=out,
        out_dtype=out_dtype,
        block_shape=block_shape,
        desc=desc,
    )

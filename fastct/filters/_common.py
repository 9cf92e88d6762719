"""Plumbing shared by every filter: input/output dispatch.

A public filter validates its arguments, then calls :func:`run_filter` with a block
kernel. In memory and on archive volumes the same kernel runs through the same
streaming engine (:func:`fastct.streaming.map_overlap`), so the streamed result is
bit-identical to the in-memory one by construction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._validate import check_out
from ..streaming import BlockInfo, map_overlap
from ..volume import Volume


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

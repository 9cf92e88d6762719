"""The pipeline's own block-wise volume stages: probability map and difference map.

Both stream through the engine (:mod:`fastct.streaming`), so they work on archive
volumes of any size as on in-memory arrays, with bit-identical results.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import as_input
from ..streaming import map_blocks, map_overlap, read_region
from ..volume import Volume


def probability_map(labels: np.ndarray | Volume, lut: np.ndarray, out: Any) -> Any:
    """``out = lut[labels]`` streamed block by block (labels outside the LUT give 0).

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.array([[[0, 1], [2, 5]]], dtype=np.int32)
    >>> probability_map(lab, np.array([0, 0.5, 0.25], np.float32), None)[0].tolist()
    [[0.0, 0.5], [0.25, 0.0]]
    """
    labels = as_input(labels, "labels", integer=True)
    from .._kernels.lut import painted

    lut = np.ascontiguousarray(lut, dtype=np.float32)

    def kernel(block: np.ndarray, info: Any) -> np.ndarray:
        return painted(block[info.core], lut)

    return map_overlap(
        kernel, labels, depth=0, out=out, out_dtype=np.float32, desc="probability map"
    )


def difference_map(a: np.ndarray | Volume, b: np.ndarray | Volume, out: Any) -> Any:
    """``out = a - b`` in float32, streamed block by block over both volumes.

    Examples
    --------
    >>> import numpy as np
    >>> float(difference_map(np.ones((1, 2, 2)), np.zeros((1, 2, 2)), None).sum())
    4.0
    """
    a, b = as_input(a, "a"), as_input(b, "b")
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"b must have the shape of a {tuple(a.shape)}, got {tuple(b.shape)}")

    def read(start: tuple[int, ...], stop: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        box = tuple(slice(s, e) for s, e in zip(start, stop))
        return read_region(a, box, dtype=np.float32), read_region(b, box, dtype=np.float32)

    def kernel(pair: tuple[np.ndarray, np.ndarray], info: Any) -> np.ndarray:
        return pair[0] - pair[1]

    align = next((v.chunks for v in (out, a, b) if isinstance(v, Volume) and v.chunks), None)
    return map_blocks(
        kernel, a.shape, read, out=out, out_dtype=np.float32, align=align, desc="difference"
    )


def table_lut(table: Any, proba: np.ndarray) -> np.ndarray:
    """A label -> probability lookup table from a region table and its probabilities
    (labels absent from the table map to 0)."""
    labels = np.asarray(table["label"], dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float32).ravel()
    if len(labels) != len(proba):
        raise ValueError(f"detector gave {len(proba)} probabilities for {len(labels)} regions")
    lut = np.zeros(int(labels.max()) + 1 if len(labels) else 1, dtype=np.float32)
    lut[labels] = proba
    return lut

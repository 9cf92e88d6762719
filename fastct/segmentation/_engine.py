"""SLIC's slab engine: input values, mask, labels and features of one z slab (views in
memory, streamed reads and writes from an archive).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..streaming import Scratch, Slab, read_planes, slabs, stream, write_region
from ..volume import Volume
from ._inputs import _Source
from ._rescale import PRE_NONE, PRE_SIGNED, _rescale_into
from ._slabs import _threads_for

_DUMMY_MASK = np.zeros((1, 1, 1), np.uint8)


class _Engine:
    """Input values, mask, labels and features per z slab: in memory the slabs are views
    (usually one slab for the whole volume); streamed, slabs are read through the
    streaming engine (the next slab on its I/O thread, see :meth:`stream`) and the
    labels written back. Only the features (float type) live in a scratch buffer."""

    def __init__(self, src: _Source, labels: Any, slab_z: int, scratch: Scratch):
        self.src = src
        self.shape = src.shape
        self.labels = labels  # canonical ndarray, or a Volume with the spatial shape
        self.slab_z = slab_z
        self.scratch = scratch
        self.smoothed: Any = None  # canonical (Z, Y, X, C) ndarray or a Volume
        self.ftype = src.ftype
        self._fsteps: Any = None
        self._fbuf: np.ndarray | None = None
        self._cached = False
        # (zmin, zmax) per label of the stored labels when the k-means pass took them
        self.z_extent: tuple[np.ndarray, np.ndarray] | None = None

    def slabs(self) -> list[Slab]:
        return slabs(self.shape[0], self.slab_z)

    @property
    def stored(self) -> bool:
        """Whether any slab data lives in an archive (else all reads are views)."""
        return any(
            isinstance(a, Volume) for a in (self.src.arr, self.src.mask, self.labels, self.smoothed)
        )

    def stream(self, read: Any, desc: str | None = None) -> Iterator[tuple[Slab, Any]]:
        """``(slab, read(slab))`` over the slabs; from an archive the next slab is read
        on the engine's I/O thread while this one is computed (in memory the reads are
        views and run in line)."""
        nbytes = math.prod(self.shape) * self.src.nc * self.src.dtype.itemsize
        return stream(self.slabs(), read, prefetch=self.stored, desc=desc, nbytes=nbytes)

    def read_slab(
        self, slab: Slab, fresh: bool, fill: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, bool, Any]:
        """Raw values, mask (and whether there is one) and labels of a slab: what the
        k-means steps read (on the I/O thread when streamed). With ``fill`` the labels
        of a stored volume are not read: a new buffer, which the assignment fills
        (``IP_FILL``: ``fill`` where no window reaches)."""
        z0, z1 = slab.start, slab.stop
        M, use_mask = self.mask(z0, z1)
        if fill is not None and not isinstance(self.labels, np.ndarray):
            L = np.empty((z1 - z0, *self.shape[1:]), np.int32)
        else:
            L = self.read_labels(z0, z1, fresh)
        return self.values(z0, z1), M, use_mask, L

    def features(self, z0: int, z1: int, X: np.ndarray | None = None) -> np.ndarray:
        """Features of slices ``[z0, z1)`` (from their values ``X`` when already read):
        rescaled values times 1/compactness in the float type, in a reused slab buffer,
        with scikit-image's own operations: for float input one parallel kernel, else
        NumPy (no compiled kernel has to be specialised per integer input dtype). When
        one slab holds the whole volume they are computed once."""
        if self._cached and self._fbuf is not None:
            return self._fbuf
        if X is None:
            X = self.values(z0, z1)
        nz = z1 - z0
        if self._fbuf is None or self._fbuf.shape[0] < nz:
            self._fbuf = np.empty((min(self.slab_z, self.shape[0]), *X.shape[1:]), self.ftype)
        F = self._fbuf[:nz]
        pre, imin, scale, ratio, rescaled = self._fsteps
        if rescaled:  # the smoothed image is already in [0, 1]
            np.multiply(X, ratio, out=F)
        elif pre[0] == PRE_NONE and X.dtype == F.dtype and X.flags.c_contiguous:
            # float input: the same steps fused in one parallel pass
            from .._kernels import slic as K

            one = self.ftype.type(1)
            with _threads_for(F.size):
                K.features_into(F, X, imin, one if scale is None else scale, ratio,
                                scale is not None)  # fmt: skip
        elif pre[0] != PRE_NONE and X.dtype == np.int16 and X.flags.c_contiguous:
            # int16 (CT) input: the same float64 steps fused in one parallel pass
            from .._kernels import slic as K

            with _threads_for(F.size):
                K.features_int_into(F, X, pre[1], pre[0] == PRE_SIGNED, imin,
                                    1.0 if scale is None else scale, ratio,
                                    scale is not None)  # fmt: skip
        else:
            _rescale_into(F, X, pre, imin, scale)
            F *= ratio
        self._cached = self.slab_z >= self.shape[0]
        return F

    def values(self, z0: int, z1: int) -> np.ndarray:
        """Canonical ``(nz, Y, X, C)`` input values (or smoothed, rescaled values)."""
        if self.smoothed is None:
            return self.src.read(z0, z1)
        data = read_planes(self.smoothed, z0, z1)  # in memory: canonical already, a view
        if isinstance(self.smoothed, Volume):  # stored with the spatial shape
            data = data.reshape((z1 - z0, *self.shape[1:], 1))
        return data

    def mask(self, z0: int, z1: int) -> tuple[np.ndarray, bool]:
        m = self.src.read_mask(z0, z1)
        return (m, True) if m is not None else (_DUMMY_MASK, False)

    def read_labels(self, z0: int, z1: int, fresh: bool) -> np.ndarray:
        """Canonical ``(z1-z0, Y, X)`` int32 labels: a view in memory; from a Volume
        read, or (``fresh``) a new buffer the assignment fills completely."""
        if isinstance(self.labels, np.ndarray):
            return self.labels[z0:z1]
        if fresh:
            return np.empty((z1 - z0, *self.shape[1:]), np.int32)
        data = read_planes(self.labels, z0, z1, dtype=np.int32)
        return data.reshape((z1 - z0, *self.shape[1:]))

    def write_labels(self, z0: int, z1: int, data: np.ndarray) -> None:
        """Store a slab of labels (in memory they were computed in place)."""
        if isinstance(self.labels, np.ndarray):
            return
        write_region(self.labels, (slice(z0, z1),),
                     data.reshape((z1 - z0, *self.labels.shape[1:])))  # fmt: skip

    def release(self) -> None:
        self.smoothed = None
        self._fbuf = None

    def set_features(self, pre, imin, scale, ratio, rescaled: bool) -> None:
        """scikit-image's feature steps; ``rescaled``: the values are already in [0, 1]
        (the smoothed image), only the compactness weight remains."""
        self._fsteps = (pre, imin, scale, ratio, rescaled)
        self._cached = False

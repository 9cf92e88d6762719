"""SLIC supervoxels with scikit-image's semantics, parallel, exact and streamable.

:func:`slic` follows ``skimage.segmentation.slic`` (scikit-image 0.26) argument for
argument and step for step: grid seeding (or maskSLIC's k-means seeding inside a mask),
rescaling of the intensities to ``[0, 1]``, optional Gaussian pre-smoothing, k-means in
(space, intensity) within the 2S search window, SLICO, and the raster-order
connectivity enforcement with its minimum/maximum size rules. Labels are identical to
scikit-image's whenever the floating-point inputs are (same float operations in the
same order, including the running sums of the update step).

It is fast because the assignment step does not sweep every centre's whole window:
each row of voxels visits its candidate centres nearest-first and stops as soon as no
remaining centre can come closer (an exact bound), and the remaining distance
evaluations run as vectorised row loops on all cores. The update adds a run's
coordinates in closed form while the sums are exact integers, and the connectivity
enforcement finds connected components in parallel and replays scikit-image's search
only for the small components it merges (``_kernels.slic_connectivity``).

Archive volumes stream through slab by slab (z slabs of whole tiles): every iteration
reads the input once, the update continues scikit-image's running sums from slab to
slab, and connectivity runs the same raster scan on a sliding window, so the streamed
labels equal the in-memory ones bit for bit whatever the chunk shape.

The parts, one concern each: ``_inputs`` (argument checks, the input adapter),
``_seeds`` (grid and maskSLIC seeds), ``_rescale`` (value range, ``img_as_float``,
smoothing), ``_engine`` (slabs of values, mask, labels, features), ``_kmeans`` (the
k-means passes), ``_connectivity``, ``_slabs`` (slab size and thread policy) and
``_slic`` (the driver).
"""
# ruff: noqa: F401  (re-exports: the public names, and private helpers the tests call)

from __future__ import annotations

from ._connectivity import _connectivity_memory
from ._kmeans import _windows
from ._seeds import _vq, regular_grid
from ._slabs import _slab_bytes
from ._slic import slic

__all__ = ["slic", "regular_grid"]

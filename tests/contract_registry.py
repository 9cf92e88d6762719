"""Registry of every public operation that takes an archive ``Volume``.

``tests/test_contracts.py`` runs the same contracts (DESIGN.md, "Conventions") over
every entry of :data:`OPS`:

* ``stream``: a streamed run (archive Volumes in, an archive Volume out through
  ``out=``, over chunk shapes smaller and larger than the halo, cut into blocks of
  the chunk shape) gives the in-memory result bit for bit;
* ``threads``: the same bits at 1 and 2 threads;
* ``restore``: Numba's global thread count is unchanged after a call, after a call
  that fails while it streams, and after a call refused for a bad argument;
* ``out``: an ndarray ``out`` is filled and returned; a wrong shape, a wrong type or a
  read-only array is refused naming ``out``; an ``out`` Volume in an archive opened
  read-only is refused;
* ``errors``: bad arguments raise ``ValueError``/``TypeError`` naming the parameter.

Adding an operation is one :class:`Op` entry. An entry says how to build small
inputs for a shape (:attr:`Op.args`: every keyword argument of the call), which of
them may be archive Volumes (:attr:`Op.streamed`), the ``out=`` it accepts (or why
it has none: :attr:`Op.no_out`), and its bad arguments. A contract an operation does
not meet because of a known fastct bug is listed in :attr:`Op.known` with the reason;
the test then runs as a *strict* xfail, so it fails loudly once the bug is fixed.

Tiny volumes stream in many blocks through one public knob, the memory budget
(:func:`small_blocks`); :func:`force_parallel` is the one private knob: volumes here
are a few thousand voxels, far below the engine's default budget (64 MiB).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage as ndi

import fastct

# Chunk shapes (z, y, x; the last two for 2-D): smaller than every halo below, about
# the size of a small halo, larger than it, none dividing the odd shapes, and one
# larger than the whole volume (clipped to it by the archive).
CHUNKS = ((1, 2, 3), (2, 3, 4), (4, 5, 7), (7, 8, 10), (32, 32, 32))
# For the extra shapes of an operation: one chunk below the halo, one above it.
FEW_CHUNKS = ((2, 3, 4), (7, 8, 10))

SHAPE_3D = (9, 11, 13)
SHAPE_2D = (11, 13)


# -- private knobs, in one place ------------------------------------------------------------
def small_blocks(monkeypatch) -> None:
    """Make the streamed paths cut small volumes into blocks of the chunk shape.

    One public knob does it: every block and slab size derives from the memory budget,
    and a block never shrinks below one chunk (one plane, one SLIC tile of slices).
    ``monkeypatch`` is taken for symmetry with :func:`force_parallel`; conftest resets
    the budget after every test.
    """
    fastct.set_memory_budget(1)


def force_parallel(monkeypatch) -> None:
    """Run the parallel kernels even on volumes this small (private knob)."""
    monkeypatch.setattr("fastct.segmentation._slabs._PARALLEL_MIN_VOXELS", 0)


# -- the registry ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Op:
    """One public operation and how the contracts exercise it."""

    name: str
    #: the public name it covers, e.g. ``fastct.filters.gaussian``
    api: str
    #: the public callable, called with keyword arguments only
    func: Callable[..., Any]
    #: ``args(rng, shape)`` -> every keyword argument of an in-memory call
    args: Callable[[np.random.Generator, tuple[int, ...]], dict[str, Any]]
    #: shapes to test: the first is the main one (all chunk shapes, bad arguments)
    shapes: tuple[tuple[int, ...], ...]
    #: arguments that may be archive Volumes (read block by block)
    streamed: tuple[str, ...]
    #: the main array argument (bad-input checks name it)
    image: str
    #: ``out_like(args)`` -> (shape, dtype) of a valid ``out``; None: no ``out=``
    out_like: Callable[[dict[str, Any]], tuple[tuple[int, ...], Any]] | None = None
    #: why there is no ``out=`` (required when ``out_like`` is None)
    no_out: str = ""
    #: keyword sets that must not change a streamed result (e.g. ``block_planes``)
    stream_variants: tuple[dict[str, Any], ...] = ({},)
    #: bad arguments: ``(parameter, value, exception type)``, the message naming the
    #: parameter, or ``(parameter, value, exception type, name the message must hold)``
    bad: tuple[tuple[str, Any, type], ...] = ()
    #: whether ``image`` is type-checked (a complex array must be refused)
    checks_dtype: bool = True
    #: known fastct bugs: contract id -> reason (run as strict xfail)
    known: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.out_like is None and not self.no_out:
            raise ValueError(f"{self.name}: say why there is no out= (no_out)")

    def __repr__(self) -> str:  # short test ids
        return self.name


def _f32_image(rng, shape, *, nan=False):
    """Smooth structure plus noise, CT-like range, float32; optionally two NaNs."""
    grids = np.indices(shape).astype(np.float64)
    img = 200.0 * np.sin(grids.sum(axis=0) / 3.0) + rng.normal(0.0, 40.0, shape)
    img = img.astype(np.float32)
    if nan and img.size > 8:
        img.flat[[3, img.size // 2]] = np.nan
    return img


def _int16_image(rng, shape):
    return np.round(_f32_image(rng, shape) * 3).astype(np.int16)


def _slic_image(rng, shape):
    """Piecewise-constant blocks with noise (SLIC has edges to follow)."""
    blocks = (np.indices(shape).sum(axis=0) // 4 % 3).astype(np.float32)
    return blocks + rng.normal(0.0, 0.2, shape).astype(np.float32)


def _voronoi_labels(rng, shape, n=9):
    """Voronoi cells of ``n`` seeds with sparse label values and some background."""
    seeds = np.zeros(shape, np.int32)
    n = min(n, seeds.size)
    seeds.flat[rng.choice(seeds.size, size=n, replace=False)] = np.arange(1, n + 1) * 3
    _, idx = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    labels = seeds[tuple(idx)]
    labels[rng.random(shape) < 0.1] = 0
    return labels


def _transform(ndim):
    from fastct.transforms import SimilarityTransform

    rotation = (0.06, -0.03, 0.02) if ndim == 3 else 0.07
    return SimilarityTransform(
        ndim, rotation=rotation, translation=(0.6, -0.4, 0.3)[-ndim:],
        center=(4.0, 5.0, 6.0)[-ndim:], scale=1.04,
    )  # fmt: skip


def _oblique(ndim):
    """A rotated (oblique) direction matrix."""
    a = 0.3
    r2 = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    if ndim == 2:
        return r2
    out = np.eye(3)
    out[1:, 1:] = r2
    b = 0.2
    return out @ np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])


@functools.lru_cache(maxsize=8)
def _phantom(shape):
    from fastct.datasets import chest_phantom

    return chest_phantom(shape=shape, seed=3, n_nodules=2)


def _box_mean(data, info):
    """A 3x3(x3) box mean written in NumPy, for map_overlap."""
    core = info.core
    acc = np.zeros(info.core_shape)
    for offset in np.ndindex(*(3,) * data.ndim):
        key = tuple(slice(c.start + o - 1, c.stop + o - 1) for c, o in zip(core, offset))
        acc += data[key]
    return acc / 3**data.ndim


def _detector(**params):
    from fastct.classify import NoduleDetector

    return NoduleDetector(**params)


def _call_method(method):
    def call(detector, **kwargs):
        return getattr(detector, method)(**kwargs)

    call.__name__ = method
    return call


def _same_shape(name, dtype=None):
    """out_like for an output of the shape (and dtype, default the result's) of ``name``."""

    def like(args):
        return np.shape(args[name]), dtype

    return like


BAD_SPACING_3D = (1.0, 0.0, 1.0)
OPS: tuple[Op, ...] = (
    Op(
        name="gaussian-exact",
        api="fastct.filters.gaussian",
        func=fastct.gaussian,
        args=lambda rng, shape: {
            "image": _f32_image(rng, shape, nan=True),
            "sigma": (1.0, 1.5, 0.7)[-len(shape) :],  # halo 4, 6, 3
            "mode": "constant",
            "cval": 0.25,
        },
        shapes=(SHAPE_3D, (1, 11, 13), (9, 1, 13), SHAPE_2D, (1, 13)),
        streamed=("image",),
        image="image",
        out_like=_same_shape("image", np.float32),
        bad=(
            ("sigma", -1.0, ValueError),
            ("sigma", (1.0, 2.0), ValueError),
            ("sigma", "2", TypeError),
            ("spacing", BAD_SPACING_3D, ValueError),
            ("mode", "edge", ValueError),
            ("mode", 3, TypeError),
            ("cval", "zero", TypeError),
            ("truncate", 0.0, ValueError),
            ("method", "fft", ValueError),
        ),
    ),
    Op(
        name="gaussian-recursive",
        api="fastct.filters.gaussian",
        func=fastct.gaussian,
        # sigma >= 2 runs the IIR recursion on 64-voxel tiles (two tiles along x);
        # the 1.2 axis gets the exact taps.
        args=lambda rng, shape: {
            "image": _f32_image(rng, shape),
            "sigma": (1.2, 2.5, 2.0)[-len(shape) :],
            "method": "recursive",
            "mode": "reflect",
        },
        shapes=((5, 9, 70), (1, 9, 70), (9, 70)),
        streamed=("image",),
        image="image",
        out_like=_same_shape("image", np.float32),
        bad=(("method", 1, TypeError), ("truncate", -1.0, ValueError)),
    ),
    Op(
        name="median",
        api="fastct.filters.median",
        func=fastct.median,
        args=lambda rng, shape: {"image": _int16_image(rng, shape), "size": 3, "mode": "mirror"},
        shapes=(SHAPE_3D, (1, 11, 13), (9, 1, 13), SHAPE_2D, (1, 13)),
        streamed=("image",),
        image="image",
        out_like=_same_shape("image", np.int16),
        bad=(
            ("size", 0, ValueError),
            ("footprint", np.ones((3, 3), bool), ValueError),
            ("mode", "edge", ValueError),
            ("cval", "x", TypeError),
        ),
    ),
    Op(
        name="median-float-nan",
        api="fastct.filters.median",
        func=fastct.median,
        args=lambda rng, shape: {
            "image": _f32_image(rng, shape, nan=True),
            "footprint": ndi.generate_binary_structure(len(shape), 1),
            "mode": "wrap",
        },
        shapes=(SHAPE_3D, SHAPE_2D),
        streamed=("image",),
        image="image",
        out_like=_same_shape("image", np.float32),
    ),
    Op(
        name="unsharp_mask",
        api="fastct.filters.unsharp_mask",
        func=fastct.unsharp_mask,
        args=lambda rng, shape: {
            "image": _f32_image(rng, shape, nan=True),
            "radius": 1.2,
            "amount": 1.5,
            "mode": "nearest",
        },
        shapes=(SHAPE_3D, (1, 11, 13), SHAPE_2D),
        streamed=("image",),
        image="image",
        out_like=_same_shape("image", np.float32),
        bad=(
            ("radius", -1.0, ValueError),
            ("amount", np.nan, ValueError),
            ("amount", "a lot", TypeError),
            ("truncate", 0, ValueError),
            ("mode", "nope", ValueError),
        ),
    ),
    Op(
        name="hessian_blob",
        api="fastct.filters.hessian_blob",
        func=fastct.filters.hessian_blob,
        args=lambda rng, shape: {
            "image": _f32_image(rng, shape),
            "scale": 1.5,
            "mode": "nearest",
        },
        shapes=(SHAPE_3D, (1, 11, 13)),
        streamed=("image",),
        image="image",
        out_like=_same_shape("image", np.float32),
        bad=(
            ("scale", -1.0, ValueError),
            ("scale", "big", TypeError),
            ("truncate", 0, ValueError),
            ("mode", "nope", ValueError),
        ),
    ),
    Op(
        name="slic",
        api="fastct.segmentation.slic",
        func=fastct.slic,
        args=lambda rng, shape: {
            "image": _slic_image(rng, shape),
            "n_segments": 12,
            "compactness": 0.3,
        },
        shapes=(SHAPE_3D, (1, 11, 13), SHAPE_2D),
        streamed=("image",),
        image="image",
        out_like=_same_shape("image", np.int32),
        bad=(
            ("n_segments", 0, ValueError),
            ("compactness", 0.0, ValueError),
            ("max_num_iter", -1, ValueError),
            ("spacing", (1.0, 1.0), ValueError),
            ("sigma", -1.0, ValueError),
            ("start_label", 2, ValueError),
            ("slic_zero", "yes", TypeError),
            ("min_size_factor", -1.0, ValueError),
            ("max_size_factor", 0.0, ValueError),
        ),
    ),
    Op(
        name="slic-mask",
        api="fastct.segmentation.slic",
        func=fastct.slic,
        args=lambda rng, shape: {
            "image": _slic_image(rng, shape),
            "mask": np.indices(shape).sum(axis=0) % 7 < 5,
            "n_segments": 10,
            "compactness": 0.3,
            "slic_zero": True,
        },
        shapes=(SHAPE_3D, SHAPE_2D),
        streamed=("image", "mask"),
        image="image",
        out_like=_same_shape("image", np.int32),
        bad=(("mask", np.ones((2, 2, 2), bool), ValueError),),
    ),
    Op(
        name="resample",
        api="fastct.registration.resample",
        func=fastct.resample,
        args=lambda rng, shape: {
            "moving": _f32_image(rng, shape),
            "transform": _transform(len(shape)),
            "shape": tuple(s + 1 for s in shape),
            "spacing": (1.1, 0.9, 1.0)[-len(shape) :],
            "moving_spacing": (1.0, 1.2, 0.8)[-len(shape) :],
            "cval": -7.0,
        },
        shapes=(SHAPE_3D, (1, 11, 13), SHAPE_2D),
        streamed=("moving",),
        image="moving",
        out_like=lambda args: (args["shape"], np.float32),
        bad=(
            ("order", 2, ValueError),
            ("cval", "x", TypeError),
            ("shape", (5, 5), ValueError),
            ("spacing", BAD_SPACING_3D, ValueError),
            ("moving_spacing", BAD_SPACING_3D, ValueError),
            ("transform", "rigid", TypeError),
        ),
    ),
    Op(
        name="resample-oriented",
        api="fastct.registration.resample",
        func=fastct.resample,
        args=lambda rng, shape: {
            "moving": _f32_image(rng, shape),
            "transform": _transform(len(shape)),
            "shape": shape,
            "origin": (3.0, -4.0, 2.0)[-len(shape) :],
            "direction": _oblique(len(shape)),
            "moving_origin": (14.0, 6.0, 12.0) if len(shape) == 3 else (6.0, 12.0),
            "moving_direction": np.eye(len(shape))[::-1] * -1.0,  # flipped and permuted
        },
        shapes=(SHAPE_3D, SHAPE_2D),
        streamed=("moving",),
        image="moving",
        out_like=lambda args: (args["shape"], np.float32),
        bad=(("moving_direction", np.ones((3, 3)), ValueError),),
    ),
    Op(
        name="resample-cubic-int",
        api="fastct.registration.resample",
        func=fastct.resample,
        args=lambda rng, shape: {
            "moving": _int16_image(rng, shape),
            "transform": _transform(len(shape)).matrix,
            "shape": shape,
            "order": 3,
        },
        shapes=(SHAPE_3D, SHAPE_2D),
        streamed=("moving",),
        image="moving",
        out_like=lambda args: (args["shape"], np.float32),
    ),
    Op(
        name="region_features",
        api="fastct.features.region_features",
        func=fastct.region_features,
        args=lambda rng, shape: {
            "labels": _voronoi_labels(rng, shape),
            "image": _f32_image(rng, shape),
            "spacing": (2.5, 0.7, 1.1)[-len(shape) :],
            "origin": (-10.0, 3.0, 0.5)[-len(shape) :],
        },
        shapes=(SHAPE_3D, (1, 11, 13), (9, 1, 13), SHAPE_2D),
        streamed=("labels", "image"),
        image="labels",
        no_out="returns a table (one row per label), not an image",
        stream_variants=({}, {"block_planes": 1}, {"block_planes": 4}),
        bad=(
            ("image", np.zeros((2, 2, 2), np.float32), ValueError),
            ("spacing", BAD_SPACING_3D, ValueError),
            ("properties", ["nope"], ValueError),
            ("percentiles", [101], ValueError),
            ("block_planes", 0, ValueError),
            ("block_planes", 1.5, TypeError),
        ),
    ),
    Op(
        name="region_adjacency",
        api="fastct.features.region_adjacency",
        func=fastct.region_adjacency,
        args=lambda rng, shape: {
            "labels": _voronoi_labels(rng, shape),
            "spacing": (2.5, 0.7, 1.1)[-len(shape) :],
            "include_background": True,
        },
        shapes=(SHAPE_3D, (1, 11, 13), SHAPE_2D),
        streamed=("labels",),
        image="labels",
        no_out="returns a table of label pairs, not an image",
        stream_variants=({}, {"block_planes": 1}, {"block_planes": 4}),
        bad=(
            ("include_background", "yes", TypeError),
            ("spacing", BAD_SPACING_3D, ValueError),
            ("block_planes", 0, ValueError),
        ),
    ),
    Op(
        name="lung_mask",
        api="fastct.lungs.lung_mask",
        func=fastct.lungs.lung_mask,
        args=lambda rng, shape: {
            "image": _phantom(shape).image,
            "spacing": _phantom(shape).spacing,
            "closing_mm": 20.0,
        },
        # 3-D only (a chest CT); the phantom on coarse grids, one of them a single slice
        shapes=((9, 11, 13), (12, 24, 24), (1, 24, 24)),
        streamed=("image",),
        image="image",
        out_like=_same_shape("image", bool),
        bad=(
            ("threshold", "x", TypeError),
            ("airway_threshold", 0.0, ValueError),
            ("remove_airways", "yes", TypeError),
            ("closing_mm", -1.0, ValueError),
            ("working_mm", 0.0, ValueError),
            ("min_lung_fraction", 2.0, ValueError),
            ("spacing", BAD_SPACING_3D, ValueError),
            ("image", np.zeros((5, 5), np.int16), ValueError),
        ),
    ),
    Op(
        name="threshold_lung_mask",
        api="fastct.classify.threshold_lung_mask",
        func=fastct.classify.threshold_lung_mask,
        args=lambda rng, shape: {
            "image": _phantom(shape).image,
            "spacing": _phantom(shape).spacing,
        },
        shapes=((9, 11, 13), (12, 24, 24)),
        streamed=("image",),
        image="image",
        no_out="reads the image whole and returns a new bool array (documented: in memory)",
        bad=(("spacing", BAD_SPACING_3D, ValueError), ("image", np.zeros((5, 5)), ValueError)),
    ),
    Op(
        name="map_overlap",
        api="fastct.streaming.map_overlap",
        func=fastct.map_overlap,
        args=lambda rng, shape: {
            "func": _box_mean,
            "src": _f32_image(rng, shape, nan=True),
            "depth": 1,
            "mode": "reflect",
            "dtype": np.float64,
        },
        shapes=(SHAPE_3D, (1, 11, 13), SHAPE_2D, (1, 13)),
        streamed=("src",),
        image="src",
        out_like=_same_shape("src", np.float64),
        checks_dtype=False,  # any dtype is handed to the user's kernel
        bad=(
            ("func", 3, TypeError),
            ("depth", -1, ValueError),
            ("mode", "edge", ValueError),
            ("block_shape", (0, 4, 4), ValueError),
        ),
    ),
    Op(
        name="pipeline.probability_map",
        api="fastct.pipeline.probability_map",
        func=fastct.pipeline.probability_map,
        args=lambda rng, shape: {
            "labels": rng.integers(-1, 12, shape).astype(np.int32),
            "lut": rng.random(10).astype(np.float32),
            "out": None,
        },
        shapes=(SHAPE_3D, SHAPE_2D),
        streamed=("labels",),
        image="labels",
        out_like=_same_shape("labels", np.float32),
    ),
    Op(
        name="pipeline.difference_map",
        api="fastct.pipeline.difference_map",
        func=fastct.pipeline.difference_map,
        args=lambda rng, shape: {
            "a": _int16_image(rng, shape),
            "b": _f32_image(rng, shape, nan=True),
            "out": None,
        },
        shapes=(SHAPE_3D, SHAPE_2D),
        streamed=("a", "b"),
        image="a",
        out_like=_same_shape("a", np.float32),
        bad=(("b", np.zeros((2, 2, 2), np.float32), ValueError),),
    ),
    Op(
        name="NoduleDetector.preprocess",
        api="fastct.classify.NoduleDetector.preprocess",
        func=_call_method("preprocess"),
        args=lambda rng, shape: {
            "detector": _detector(median_size=3),
            "image": _int16_image(rng, shape),
            "spacing": (2.0, 0.8, 0.8),
        },
        shapes=(SHAPE_3D, (1, 11, 13)),
        streamed=("image",),
        image="image",
        out_like=_same_shape("image", np.int16),
        bad=(
            ("detector", _detector(median_size=0), ValueError, "median_size"),
            ("spacing", BAD_SPACING_3D, ValueError),
        ),
    ),
    Op(
        name="NoduleDetector.segment",
        api="fastct.classify.NoduleDetector.segment",
        func=_call_method("segment"),
        args=lambda rng, shape: {
            # about 10 supervoxels in the mask
            "detector": _detector(n_segments_per_litre=1e7 / (0.7 * np.prod(shape))),
            "image": _int16_image(rng, shape),
            "spacing": (1.0, 1.0, 1.0),
            "lung_mask": np.indices(shape).sum(axis=0) % 10 < 7,
        },
        shapes=(SHAPE_3D,),
        streamed=("image", "lung_mask"),
        image="image",
        out_like=_same_shape("image", np.int32),
        bad=(
            ("lung_mask", np.zeros(SHAPE_3D, bool), ValueError),
            ("lung_mask", np.zeros((2, 2, 2), bool), ValueError),
            ("detector", _detector(compactness=0.0), ValueError, "compactness"),
        ),
    ),
    Op(
        name="NoduleDetector.region_table",
        api="fastct.classify.NoduleDetector.region_table",
        func=_call_method("region_table"),
        args=lambda rng, shape: {
            "detector": _detector(blob_scales_mm=(1.5, 3.0)),
            "labels": _voronoi_labels(rng, shape),
            "image": _int16_image(rng, shape),
            "spacing": (2.0, 0.8, 0.9),
            "origin": (5.0, -3.0, 1.0),
        },
        shapes=(SHAPE_3D, (1, 11, 13)),
        streamed=("labels", "image"),
        image="image",
        no_out="returns a table (one row per supervoxel), not an image",
        bad=(
            ("labels", np.zeros((2, 2, 2), np.int32), ValueError),
            ("labels", np.zeros(SHAPE_3D, np.float32), TypeError),
            ("spacing", BAD_SPACING_3D, ValueError),
        ),
    ),
    Op(
        name="NoduleDetector.probability_map",
        api="fastct.classify.NoduleDetector.probability_map",
        func=_call_method("probability_map"),
        args=lambda rng, shape: {
            "detector": _detector(),
            "labels": rng.integers(0, 14, shape).astype(np.int32),
            "table": {"label": np.array([1, 2, 3, 5, 8, 13])},
            "proba": rng.random(6),
        },
        shapes=(SHAPE_3D, SHAPE_2D),
        streamed=("labels",),
        image="labels",
        out_like=_same_shape("labels", np.float32),
        bad=(("proba", np.zeros(3), ValueError),),
    ),
    Op(
        name="register",
        api="fastct.registration.register",
        func=fastct.register,
        args=lambda rng, shape: {
            "fixed": _f32_image(rng, shape),
            "moving": fastct.resample(_f32_image(rng, shape), _transform(len(shape)), shape=shape),
            "metric": "mi",
            "max_iterations": 8,
        },
        shapes=((12, 14, 16), (15, 17)),
        streamed=("fixed", "moving"),
        image="fixed",
        no_out="returns a transform, not an image",
        bad=(
            ("transform", "affine", ValueError),
            ("metric", "l1", ValueError),
            ("fixed_spacing", BAD_SPACING_3D, ValueError),
            ("moving", np.zeros((12, 14), np.float32), ValueError),
            ("bins", 0, ValueError),
        ),
    ),
    Op(
        name="metrics.boundary_recall",
        api="fastct.metrics.boundary_recall",
        func=fastct.metrics.boundary_recall,
        args=lambda rng, shape: {
            "labels": _voronoi_labels(rng, shape),
            "ground_truth": _voronoi_labels(rng, shape, n=5),
            "tolerance": 1,
            "mask": np.indices(shape).sum(axis=0) % 5 > 0,
        },
        shapes=(SHAPE_3D, SHAPE_2D),
        streamed=("labels", "ground_truth", "mask"),
        image="labels",
        no_out="returns a number",
        bad=(("tolerance", -1, ValueError), ("tolerance", 1.5, TypeError)),
    ),
    Op(
        name="metrics.undersegmentation_error",
        api="fastct.metrics.undersegmentation_error",
        func=fastct.metrics.undersegmentation_error,
        args=lambda rng, shape: {
            "labels": _voronoi_labels(rng, shape),
            "ground_truth": _voronoi_labels(rng, shape, n=5),
        },
        shapes=(SHAPE_3D, SHAPE_2D),
        streamed=("labels", "ground_truth"),
        image="labels",
        no_out="returns a number",
        bad=(("ground_truth", np.zeros((2, 2, 2), np.int32), ValueError),),
    ),
)

BY_NAME = {op.name: op for op in OPS}

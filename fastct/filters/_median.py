"""Median filter: scipy.ndimage.median_filter's result, exactly, in the input dtype.

scipy's median is a rank filter: over the ``n`` voxels of the footprint it returns
the element of rank ``n // 2`` (0-based) in sorted order, so an even count picks
the upper of the two middle values. The footprint of shape ``s`` is anchored at
index ``s // 2`` on every axis, i.e. along an axis of size ``s`` the window spans
offsets ``-(s // 2) .. s - s // 2 - 1`` (for even ``s`` one more voxel before the
centre than after it). Past the edges the input is extended with the boundary
``mode``, also for ``'constant'``.

Every call streams through :func:`fastct.filters._common.run_filter`: the engine
hands each block, extended by the footprint's reach with the boundary mode exactly
as scipy extends the input, to :func:`_rank_block`, which only ever does "valid"
processing. A rank is exact, so in memory, streamed, any block shape and any thread
count give the same bits.

Algorithms, chosen per block (:func:`_select`):

* small footprints (``n <= 64``, e.g. 3x3, 5x5, 2x2x2, 3x3x3, 4x4x4): a min/max
  selection network (Batcher's odd-even merge sort, pruned to the one output
  needed) applied to whole rows, so every compare-exchange is a vectorised loop;
* larger footprints on data whose block spans at most 65536 consecutive integer
  values (every 8/16-bit block; wider ones when their range allows): Huang's
  sliding histogram along x, per-voxel cost proportional to the footprint's
  cross-section (49 updates for 7x7x7, 343 voxels), not its volume;
* wide data (32/64-bit, floats) with a wider range: footprints of 200+ voxels
  first try ranking the block's distinct values (``np.unique``) into histogram
  bins when there are at most 65536 of them; otherwise the selection network up to
  2048 voxels and per-voxel quickselect beyond.

Floats are ranked through order-preserving integer keys (IEEE bits, negatives
flipped), a total order in which ``-0.0 < +0.0``. NaN: a window holding a NaN gives
NaN (like ``numpy.median``); scipy's result there is unspecified.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._docs import docfiller
from .._validate import as_array, as_input, check_mode, per_axis
from ..streaming import BlockInfo
from ..volume import Volume
from ._common import run_filter

# Footprints up to this many voxels use the selection network on any data; beyond
# it the sliding histogram is faster whenever the values fit its bins.
NETWORK_MAX = 64
# Wide data with too many distinct values: the network up to this many voxels
# (it beats quickselect 2-4x up to at least 1331), quickselect beyond.
NETWORK_MAX_WIDE = 2048
# Largest number of distinct values the sliding histogram handles (uint16 bins).
HISTOGRAM_BINS = 1 << 16
# Wide data: rank the block's distinct values (np.unique + searchsorted, about
# 100 ns/voxel) only when the footprint is big enough for that to pay off.
_UNIQUE_MIN_N = 200
# Rows shorter than this are slid along a longer axis instead (the block is transposed).
_SHORT_ROW = 32


# -- argument checks -------------------------------------------------------------------
def _check_footprint(size: Any, footprint: Any, ndim: int) -> np.ndarray:
    """The boolean footprint: ``footprint`` if given, else a box of ``size``."""
    if footprint is None:
        sizes = per_axis(size, ndim, "size", kind=int, allow_zero=False)
        return np.ones(sizes, dtype=bool)
    if isinstance(footprint, Volume):
        raise TypeError("footprint must be an in-memory array, got a Volume")
    fp = as_array(footprint, "footprint", "an array of booleans")
    if fp.dtype.kind not in "biuf":
        raise TypeError(
            f"footprint must be an array of booleans (or 0/1 numbers), got dtype {fp.dtype}"
        )
    if fp.ndim != ndim:
        raise ValueError(
            f"footprint must have {ndim} dimensions like the image, got {fp.ndim}-D "
            f"(shape {fp.shape})"
        )
    fp = fp.astype(bool)
    if not fp.any():
        raise ValueError(
            f"footprint must contain at least one True element, got shape {fp.shape} with none"
        )
    return fp


def _check_cval(cval: Any, dtype: np.dtype, mode: str) -> float | int:
    """cval as the block fill value; integer images take scipy's C cast (truncation)."""
    if isinstance(cval, bool) or not isinstance(cval, (numbers.Real, np.number)):
        raise TypeError(f"cval must be a real number, got {type(cval).__name__}")
    if dtype.kind == "f":
        # The block holds cval in the image's float type (rounding is monotone, so
        # the rank is the same as scipy's float64 one, cast back).
        with np.errstate(over="ignore"):
            return float(dtype.type(cval))
    if mode != "constant":
        return 0
    if not math.isfinite(float(cval)):
        raise ValueError(f"cval must be finite for a {dtype} image, got {cval!r}")
    # scipy ranks cval as a double and casts the result with C semantics
    # (truncation toward zero); truncation is monotone, so truncating first gives
    # the same rank.
    value = int(cval) if isinstance(cval, (numbers.Integral, np.integer)) else math.trunc(cval)
    if dtype.kind == "b":
        return int(value != 0)
    info = np.iinfo(dtype)
    if not info.min <= value <= info.max:
        raise ValueError(
            f"cval must lie in the {dtype} range [{info.min}, {info.max}] for a {dtype} "
            f"image, got {cval!r}"
        )
    return value


# -- plan --------------------------------------------------------------------------------
class _Plan:
    """Footprint geometry in the halo-extended block, 3-D (a 2-D image gets z = 1)."""

    def __init__(self, fp: np.ndarray):
        pos = np.nonzero(fp)
        offs = [p - s // 2 for p, s in zip(pos, fp.shape)]
        self.depth = tuple(int(np.abs(o).max()) for o in offs)
        self.ndim = fp.ndim
        box = [o + d for o, d in zip(offs, self.depth)]
        if fp.ndim == 2:
            box = [np.zeros_like(box[0]), *box]
        self.offsets = np.ascontiguousarray(np.stack(box, axis=1), dtype=np.int64)
        self.n = int(self.offsets.shape[0])
        self.rank = self.n // 2
        depth3 = (0,) * (3 - fp.ndim) + self.depth
        self.box = np.zeros(tuple(2 * d + 1 for d in depth3), dtype=bool)
        self.box[tuple(self.offsets.T)] = True


def _runs_along_x(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box offsets entering / leaving when the window moves +1 along x.

    Entering at position x: ``(dz, dy, dx)`` with ``box[dz, dy, dx]`` and not
    ``box[dz, dy, dx + 1]`` (read at ``x + dx``); leaving: ``box[dz, dy, dx]`` and not
    ``box[dz, dy, dx - 1]`` (read at ``x - 1 + dx``). One of each per run.
    """
    pad = np.zeros(box.shape[:2] + (box.shape[2] + 2,), dtype=bool)
    pad[..., 1:-1] = box
    enter = np.argwhere(pad[..., 1:-1] & ~pad[..., 2:])
    leave = np.argwhere(pad[..., 1:-1] & ~pad[..., :-2])
    leave[:, 2] -= 1
    return enter.astype(np.int64), leave.astype(np.int64)


def _linear(offsets: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(
        (offsets[:, 0] * shape[1] + offsets[:, 1]) * shape[2] + offsets[:, 2], dtype=np.int64
    )


# -- selection networks ------------------------------------------------------------------
def _batcher_pairs(size: int) -> list[tuple[int, int]]:
    """Comparators of Batcher's odd-even merge sort on ``size = 2**p`` wires."""
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


@functools.lru_cache(maxsize=64)
def selection_network(n: int, rank: int) -> tuple[np.ndarray, int, int]:
    """A min/max network leaving the rank-``rank`` element of ``n`` inputs in a register.

    Returns ``(program, out_reg, nreg)``; ``program`` rows are ``(a, b, kind)`` with
    kind 3 = compare-exchange (min to ``a``, max to ``b``), 1 = ``a = min(a, b)``,
    2 = ``b = max(a, b)``. Registers ``0 .. n-1`` start with the inputs. Built from
    Batcher's merge sort padded to a power of two with +inf wires (resolved
    statically), then pruned backwards to what the one output depends on.
    """
    size = 1
    while size < n:
        size *= 2
    content: list[int | None] = [*range(n), *([None] * (size - n))]  # None: +inf
    reg = list(range(size))  # wire -> register holding its value
    ops = []
    next_id = n
    for i, j in _batcher_pairs(size):
        a, b = content[i], content[j]
        if b is None:  # max with +inf: nothing moves
            continue
        if a is None:  # +inf sinks to j: the value moves to wire i, no work
            content[i], content[j] = b, None
            reg[i], reg[j] = reg[j], reg[i]
            continue
        lo, hi = next_id, next_id + 1
        next_id += 2
        ops.append((lo, hi, a, b, reg[i], reg[j]))
        content[i], content[j] = lo, hi
    needed = {content[rank]}
    program = []
    for lo, hi, a, b, ra, rb in reversed(ops):
        want_lo, want_hi = lo in needed, hi in needed
        if want_lo or want_hi:
            program.append((ra, rb, int(want_lo) + 2 * int(want_hi)))
            needed.update((a, b))
    program.reverse()
    prog = np.array(program, dtype=np.int64).reshape(-1, 3)
    return prog, reg[rank], max(n, int(prog[:, :2].max()) + 1 if len(prog) else 1)


# -- order-preserving keys ---------------------------------------------------------------
def _to_keys(a: np.ndarray) -> tuple[np.ndarray, Any]:
    """A signed-integer array ordered like ``a``, and the function mapping keys back.

    8-bit types and bools widen to int16 (the narrowest type the kernels are compiled
    for); unsigned types flip their top bit; floats become their IEEE bits with the
    magnitude bits of negatives flipped.
    """
    dt = a.dtype
    if dt.kind == "b":
        return a.view(np.uint8).astype(np.int16), lambda k: k.astype(np.uint8).view(bool)
    if dt.kind in "iu" and dt.itemsize == 1:
        return a.astype(np.int16), lambda k: k.astype(dt)
    if dt.kind == "i":
        return a, lambda k: k
    if dt.kind == "u":
        sint = np.dtype(f"i{dt.itemsize}")
        top = dt.type(1 << (8 * dt.itemsize - 1))
        return (a ^ top).view(sint), lambda k: k.view(dt) ^ top
    if dt.kind == "f":
        sint = np.dtype(f"i{dt.itemsize}")
        low = sint.type((1 << (8 * dt.itemsize - 1)) - 1)

        def flip(bits: np.ndarray) -> np.ndarray:
            return np.where(bits < 0, bits ^ low, bits)

        return flip(a.view(sint)), lambda k: flip(k).view(dt)
    raise TypeError(f"unsupported dtype {dt}")


# -- block kernel ---------------------------------------------------------------------------
def _network(keys: np.ndarray, plan: _Plan, rank: int, core: tuple[int, ...]) -> np.ndarray:
    from .._kernels.median import network_select

    program, out_reg, nreg = selection_network(plan.n, rank)
    tile = int(min(512, max(32, 32768 // (nreg * keys.dtype.itemsize))))
    out = np.empty(core, dtype=keys.dtype)
    network_select(keys, plan.offsets, program, out_reg, nreg, tile, out)
    return out


def _histogram(idx: np.ndarray, nbins: int, plan: _Plan, rank: int, core) -> np.ndarray:
    from .._kernels.median import histogram_select

    enter, leave = _runs_along_x(plan.box)
    shift = max(4, (max(1, nbins - 1).bit_length() + 1) // 2)
    out = np.empty(core, dtype=np.uint16)
    histogram_select(
        idx,
        _linear(plan.offsets, idx.shape),
        _linear(enter, idx.shape),
        _linear(leave, idx.shape),
        rank,
        nbins,
        shift,
        out,
    )
    return out


def _quickselect(keys: np.ndarray, plan: _Plan, rank: int, core) -> np.ndarray:
    from .._kernels.median import quickselect_select

    out = np.empty(core, dtype=keys.dtype)
    quickselect_select(keys, _linear(plan.offsets, keys.shape), rank, out)
    return out


def _select(keys: np.ndarray, plan: _Plan, rank: int, core: tuple[int, ...]) -> np.ndarray:
    """Rank filter of a 3-D signed-integer block (int16, int32 or int64), valid part."""
    if plan.n <= NETWORK_MAX:
        return _network(keys, plan, rank, core)
    lo, hi = int(keys.min()), int(keys.max())
    if hi - lo < HISTOGRAM_BINS:
        # Offsets from the minimum fit 16 bits; computing them (and back) in the keys'
        # own type wraps harmlessly, since every true value lies in [lo, hi].
        base = keys.dtype.type(lo)
        idx = (keys - base).astype(np.uint16)
        res = _histogram(idx, hi - lo + 1, plan, rank, core).astype(keys.dtype)
        res += base
        return res
    if plan.n >= _UNIQUE_MIN_N and _few_distinct(keys):
        values = np.unique(keys)
        if values.size <= HISTOGRAM_BINS:
            idx = np.searchsorted(values, keys).astype(np.uint16)
            return values[_histogram(idx, values.size, plan, rank, core)]
    if plan.n <= NETWORK_MAX_WIDE:
        return _network(keys, plan, rank, core)
    return _quickselect(keys, plan, rank, core)


def _few_distinct(keys: np.ndarray) -> bool:
    """Cheap guess whether ``keys`` holds at most ~65536 distinct values."""
    sample = keys.ravel()[:: max(1, keys.size // (1 << 17))]
    return np.unique(sample).size <= HISTOGRAM_BINS // 2


def _rank_block(data: np.ndarray, plan: _Plan) -> np.ndarray:
    """Rank-``plan.rank`` filter of a halo-extended block (2-D or 3-D), core only."""
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    squeeze = data.ndim == 2
    data3 = data[None] if squeeze else data
    core = tuple(s - 2 * d for s, d in zip(data3.shape, (0,) * (3 - plan.ndim) + plan.depth))
    # Slide along the longest axis when rows are short (a transposed block).
    axes = (0, 1, 2)
    if core[2] < _SHORT_ROW and max(core[:2]) >= 2 * core[2]:
        longest = int(np.argmax(core[:2]))
        axes = tuple(a for a in (0, 1, 2) if a != longest) + (longest,)
        data3 = np.ascontiguousarray(data3.transpose(axes))
        plan = _transposed(plan, axes)
        core = tuple(core[a] for a in axes)
    else:
        data3 = np.ascontiguousarray(data3)
    if data3.dtype.kind == "f" and data3.dtype.itemsize >= 4 and plan.n <= NETWORK_MAX:
        # Small footprints on float32/64: the network runs on the floats themselves
        # (every block takes this path, so equal values of either sign always come
        # out the same way); windows with a NaN are overwritten below.
        res = _network(data3, plan, plan.rank, core)
    else:
        keys, decode = _to_keys(data3)
        res = decode(_select(np.ascontiguousarray(keys), plan, plan.rank, core))
    if data3.dtype.kind == "f" and np.isnan(data3.max()):
        nan = np.isnan(data3)
        if nan.any():
            # A window holding a NaN gives NaN: the window maximum of the NaN mask.
            hit = _select(nan.view(np.uint8).astype(np.int16), plan, plan.n - 1, core)
            res[hit.astype(bool)] = np.nan
    if axes != (0, 1, 2):
        res = res.transpose(np.argsort(axes))
    res = np.ascontiguousarray(res)
    return res[0] if squeeze else res


def _transposed(plan: _Plan, axes: tuple[int, ...]) -> _Plan:
    """The plan for a block whose axes were permuted by ``axes`` (3-D)."""
    new = object.__new__(_Plan)
    new.ndim = 3
    depth3 = (0,) * (3 - plan.ndim) + plan.depth
    new.depth = tuple(depth3[a] for a in axes)
    new.offsets = np.ascontiguousarray(plan.offsets[:, list(axes)])
    new.n = plan.n
    new.rank = plan.rank
    new.box = np.ascontiguousarray(plan.box.transpose(axes))
    return new


# -- public API ------------------------------------------------------------------------------
@docfiller
def median(
    image: np.ndarray | Volume,
    size: int | Sequence[int] = 3,
    *,
    footprint: ArrayLike | None = None,
    mode: str = "reflect",
    cval: float = 0.0,
    out: np.ndarray | Volume | None = None,
) -> np.ndarray | Volume:
    """Median filter, identical to ``scipy.ndimage.median_filter``, in the input dtype.

    Parameters
    ----------
    {image}
    size : int or sequence of int
        Window size per axis (odd or even, at least 1). Ignored when ``footprint``
        is given.
    footprint : array_like of bool, optional
        Window shape, same number of dimensions as the image; True marks the voxels
        that take part. Anchored at index ``s // 2`` on each axis, as in scipy.
    {mode}
    {cval}
        For integer and boolean images it is truncated toward zero (scipy's C cast)
        and must lie in the dtype's range.
    {out}

    Returns
    -------
    ndarray or Volume
        The filtered image, same dtype as the input (``out`` if given).

    Notes
    -----
    Of the ``n`` voxels in a window the result is the one of rank ``n // 2``
    (0-based) in sorted order, so for an even ``n`` it is the upper middle value,
    exactly as scipy. Even sizes span ``-(s // 2) .. s - s // 2 - 1`` around the
    voxel. Small footprints (at most 64 voxels) run a vectorised selection network;
    larger ones a sliding histogram on 8/16-bit data (and on wider data whose values
    fit 65536 bins), else the network (up to 2048 voxels) or quickselect.

    Integers beyond 2**53 in magnitude (int64/uint64) are ranked exactly here;
    scipy ranks them as float64 and may return a rounded value.

    NaN: any window containing a NaN gives NaN (as ``numpy.median``); scipy's result
    there is unspecified. Among equal values ``-0.0`` orders before ``+0.0``.

    Examples
    --------
    >>> import numpy as np, scipy.ndimage as ndi, fastct
    >>> ct = np.random.default_rng(0).integers(-1000, 1000, (20, 30, 40)).astype(np.int16)
    >>> m = fastct.median(ct, size=3)
    >>> m.dtype, bool(np.array_equal(m, ndi.median_filter(ct, size=3)))
    (dtype('int16'), True)
    >>> fp = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    >>> img = np.arange(25.0).reshape(5, 5)
    >>> bool(np.array_equal(fastct.median(img, footprint=fp, mode="wrap"),
    ...                     ndi.median_filter(img, footprint=fp, mode="wrap")))
    True
    """
    image = as_input(image)
    ndim = len(image.shape)
    fp = _check_footprint(size, footprint, ndim)
    mode = check_mode(mode)
    dtype = np.dtype(image.dtype).newbyteorder("=")
    fill = _check_cval(cval, dtype, mode)
    plan = _Plan(fp)
    if isinstance(out, Volume) and isinstance(image, Volume) and out.name == image.name:
        if out.archive is image.archive:
            raise ValueError("out must not be the input volume (results are written blockwise)")
    if isinstance(out, np.ndarray) and isinstance(image, np.ndarray):
        if np.may_share_memory(out, image):
            image = image.copy()

    def kernel(data: np.ndarray, info: BlockInfo) -> np.ndarray:
        return _rank_block(data, plan)

    return run_filter(
        kernel,
        image,
        depth=plan.depth,
        mode=mode,
        cval=fill,
        compute_dtype=dtype,
        out_dtype=dtype,
        out=out,
        desc="median",
    )

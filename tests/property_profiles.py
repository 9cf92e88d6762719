"""Shared settings of the property tests (tests/test_properties_*.py).

Each property is a function of a Hypothesis ``data`` object; :func:`property_tests`
turns it into two tests: a short one that ``make test`` runs (``FAST`` generated cases)
and a long one under the ``fuzz`` marker (``FUZZ`` cases; ``make test-fuzz``, CI).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastct

FAST = 6
FUZZ = 150
MODES = ["reflect", "mirror", "nearest", "constant", "wrap"]
_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


def property_tests(prop: Callable[[Any], None], fast: int = FAST, fuzz: int = FUZZ):
    """``(test, test_fuzz)``: the property ``prop(data)`` checked on ``fast`` generated
    cases and, under ``pytest.mark.fuzz``, on ``fuzz`` cases."""

    @settings(max_examples=fast, **_SETTINGS)
    @given(data=st.data())
    def test(data: Any) -> None:
        prop(data)

    @pytest.mark.fuzz
    @settings(max_examples=fuzz, **_SETTINGS)
    @given(data=st.data())
    def test_fuzz(data: Any) -> None:
        prop(data)

    test.__doc__ = test_fuzz.__doc__ = prop.__doc__
    return test, test_fuzz


def shapes(data: Any, ndim: tuple[int, ...] = (2, 3), lo: int = 1, hi: int = 9) -> tuple:
    """A random shape: 2-D or 3-D, 1-voxel axes drawn often."""
    n = data.draw(st.sampled_from(ndim), label="ndim")
    axis = st.one_of(st.just(1), st.integers(lo, hi))
    return tuple(data.draw(st.lists(axis, min_size=n, max_size=n), label="shape"))


def empty_shapes(data: Any) -> tuple:
    """A 2-D or 3-D shape with at least one 0-size axis."""
    shape = list(shapes(data))
    for i in data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1), label="empty axes"):
        shape[i % len(shape)] = 0
    return tuple(shape)


def random_image(data: Any, shape: tuple, dtype: Any) -> np.ndarray:
    """Random voxels of ``dtype`` (the whole integer range, or normal floats)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind == "f":
        return (rng.normal(size=shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def same_bits(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """fastct's thread count set to ``n`` for the block (restored after)."""
    previous = fastct.get_num_threads()
    fastct.set_num_threads(n)
    try:
        yield
    finally:
        fastct.set_num_threads(previous)


@contextlib.contextmanager
def memory_budget(nbytes: int | None) -> Iterator[None]:
    previous = fastct.get_memory_budget()
    fastct.set_memory_budget(nbytes)
    try:
        yield
    finally:
        fastct.set_memory_budget(previous)


def chunking(data: Any, shape: tuple) -> tuple[tuple, int, str]:
    """Random chunk shape, memory budget (small: many blocks) and store kind."""
    chunks = tuple(data.draw(st.integers(1, max(1, n)), label="chunk") for n in shape)
    budget = data.draw(st.sampled_from([1, 2_000, 20_000, 64 * 1024**2]), label="budget")
    store = data.draw(st.sampled_from(["a.h5", "a.zarr"]), label="store")
    return chunks, budget, store

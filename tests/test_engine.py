"""The engine's access patterns besides map_overlap, and the one memory budget."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fastct
from fastct import _config
from fastct.streaming import (
    Slab,
    block_bytes,
    map_blocks,
    read_all,
    read_planes,
    read_region,
    slab_planes,
    slabs,
    stream,
    write_all,
    write_region,
)


# -- memory budget -----------------------------------------------------------------------
def test_memory_budget_setting_environment_and_default(monkeypatch):
    assert fastct.get_memory_budget() == _config.DEFAULT_MEMORY_BUDGET
    assert block_bytes() == _config.DEFAULT_MEMORY_BUDGET // 2
    fastct.set_memory_budget(1 << 20)
    assert fastct.get_memory_budget() == 1 << 20
    assert block_bytes() == 1 << 19
    fastct.set_memory_budget(None)
    monkeypatch.setenv("FASTCT_MEMORY_BUDGET", "12345")
    assert fastct.get_memory_budget() == 12345
    monkeypatch.setenv("FASTCT_MEMORY_BUDGET", "lots")
    with pytest.raises(ValueError, match="FASTCT_MEMORY_BUDGET must be a positive integer"):
        fastct.get_memory_budget()


@pytest.mark.parametrize(
    "bad, exc", [(0, ValueError), (-5, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_memory_budget_refuses_bad_values(bad, exc):
    with pytest.raises(exc, match="nbytes must be a positive integer"):
        fastct.set_memory_budget(bad)


# -- slabs -------------------------------------------------------------------------------
def test_slabs_cover_the_volume_with_clipped_halos():
    got = slabs(10, 4, halo=1)
    assert [(s.start, s.stop, s.lo, s.hi, s.index) for s in got] == [
        (0, 4, 0, 5, 0),
        (4, 8, 3, 9, 1),
        (8, 10, 7, 10, 2),
    ]
    assert got[1].core == slice(1, 5) and got[2].planes == 2
    assert [(s.start, s.stop) for s in slabs(3, 10)] == [(0, 3)]


def test_slab_planes_from_budget_rounded_to_chunks(tmp_path):
    data = np.zeros((40, 8, 8), np.float32)
    fastct.set_memory_budget(8 * 8 * 4 * 10)  # ten float32 planes
    assert slab_planes(data, 8 * 8 * 4) == 10
    assert slab_planes(data, 8 * 8 * 4, share=0.5) == 5
    assert slab_planes(data, 8 * 8 * 4, planes=100) == 40  # capped at the volume
    assert slab_planes(data, 10**9) == 1  # never below one plane
    with fastct.open(tmp_path / "a.h5", "w") as ar:
        vol = ar.create_volume("v", data, chunks=(4, 8, 8))
        assert slab_planes(vol, 8 * 8 * 4) == 8  # whole z-chunks
        assert slab_planes([data, vol], 8 * 8 * 4) == 8  # first chunked Volume decides


@pytest.mark.parametrize("prefetch", [True, False])
def test_stream_reads_ahead_in_order_off_the_callers_thread(prefetch):
    main = threading.get_ident()
    readers = []

    def read(slab: Slab) -> int:
        readers.append(threading.get_ident())
        return slab.index * 10

    items = slabs(7, 2)
    got = [(s.index, v) for s, v in stream(items, read, prefetch=prefetch)]
    assert got == [(0, 0), (1, 10), (2, 20), (3, 30)]
    assert all((r != main) == prefetch for r in readers)


def test_stream_stops_cleanly_on_an_error_in_the_loop_body():
    with pytest.raises(RuntimeError, match="body"):
        for slab, _ in stream(slabs(10, 1), lambda s: s.index):
            if slab.index == 3:
                raise RuntimeError("body")


def test_stream_reraises_a_read_error():
    def read(slab):
        if slab.index == 2:
            raise OSError("disk")
        return slab.index

    with pytest.raises(OSError, match="disk"):
        list(stream(slabs(5, 1), read))


# -- reads and writes --------------------------------------------------------------------
def test_region_reads_and_writes_agree_for_arrays_and_volumes(tmp_path, rng):
    data = rng.random((9, 7, 5)).astype(np.float32)
    box = (slice(2, 6), slice(1, 7))
    with fastct.open(tmp_path / "a.h5", "w") as ar:
        vol = ar.create_volume("v", data, chunks=(2, 3, 4))
        for src in (data, vol):
            got = read_region(src, box, dtype=np.float64)
            assert got.dtype == np.float64 and got.flags.c_contiguous
            np.testing.assert_array_equal(got, data[2:6, 1:7])
            np.testing.assert_array_equal(read_planes(src, 3, 5), data[3:5])
            np.testing.assert_array_equal(read_all(src), data)
        assert np.shares_memory(read_planes(data, 3, 5), data)  # a view in memory
        assert read_region(vol, (slice(4, 4),)).shape == (0, 7, 5)
        with pytest.raises(ValueError, match="unit steps"):
            read_region(data, (slice(0, 9, 2),))
        out = ar.create_volume("o", shape=data.shape, dtype=np.float32, chunks=(4, 4, 4))
        write_region(out, (slice(0, 9),), data)
        np.testing.assert_array_equal(out.read(), data)
        fastct.set_memory_budget(7 * 5 * 4 * 3)  # a few planes per write
        out16 = ar.create_volume("i", shape=data.shape, dtype=np.int16, chunks=(2, 7, 5))
        write_all(out16, data * 1000)
        np.testing.assert_array_equal(out16.read(), (data * 1000).astype(np.int16))
        with pytest.raises(ValueError, match="data must have shape"):
            write_all(out16, data[:3])


# -- output-driven gather ----------------------------------------------------------------
def test_map_blocks_gathers_per_block_and_equals_the_whole(tmp_path, rng):
    src = rng.random((11, 13, 6)).astype(np.float32)

    def read(start, stop):  # what each output block needs: the mirrored box
        box = tuple(slice(n - e, n - s) for s, e, n in zip(start, stop, src.shape))
        return read_region(src, box)

    def kernel(data, info):
        assert data.shape == info.core_shape
        return data[::-1, ::-1, ::-1] * 2

    whole = src[::-1, ::-1, ::-1] * 2
    np.testing.assert_array_equal(map_blocks(kernel, src.shape, read, block_shape=(4, 5, 6)), whole)
    with fastct.open(tmp_path / "a.h5", "w") as ar:
        out = ar.create_volume("o", shape=src.shape, dtype=np.float32, chunks=(3, 4, 6))
        assert map_blocks(kernel, src.shape, read, out=out) is out
        np.testing.assert_array_equal(out.read(), whole)
    with pytest.raises(ValueError, match="out must have shape"):
        map_blocks(kernel, src.shape, read, out=np.empty((2, 2, 2)))


def test_out_in_a_read_only_archive_is_refused(tmp_path):
    with fastct.open(tmp_path / "a.h5", "w") as ar:
        ar.create_volume("o", shape=(3, 4, 5), dtype=np.float32)
    with fastct.open(tmp_path / "a.h5") as ar:
        with pytest.raises(PermissionError, match="read-only"):
            fastct.gaussian(np.zeros((3, 4, 5), np.float32), 1.0, out=ar["o"])

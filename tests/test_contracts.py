"""The contracts every public streamed operation keeps (DESIGN.md, "Conventions").

Parametrised over the registry in ``tests/contract_registry.py``: streamed ==
in-memory bit for bit over chunk shapes, the same bits at 1 and 2 threads, Numba's
thread count restored (after success and after errors), ``out=`` behaviour, and
errors that name the parameter. Inputs are tiny (about 10^3 voxels); most of the
time goes into compiling the kernels on their first call.
"""

from __future__ import annotations

import importlib
import inspect
import re
import zlib

import numba
import numpy as np
import pytest
from contract_registry import CHUNKS, FEW_CHUNKS, OPS, force_parallel, small_blocks

import fastct
from fastct.volume import Volume


# -- helpers ---------------------------------------------------------------------------------
def make_args(op, shape):
    """The op's keyword arguments for ``shape``, from a seed fixed per (op, shape)."""
    seed = zlib.crc32(f"{op.name}{shape}".encode())
    return op.args(np.random.default_rng(seed), shape)


def to_volumes(ar, args, op, chunks, prefix="in"):
    """``args`` with the op's streamed arrays stored in archive ``ar`` (``chunks``)."""
    out = dict(args)
    for name in op.streamed:
        if args.get(name) is None:
            continue
        data = np.asarray(args[name])
        out[name] = ar.create_volume(f"{prefix}/{name}", data, chunks=chunks[-data.ndim :])
    return out


def new_out_volume(ar, op, args, chunks, name="out/result"):
    shape, dtype = op.out_like(args)
    return ar.create_volume(name, shape=shape, dtype=dtype, chunks=chunks[-len(shape) :])


def snapshot(args):
    return {k: v.copy() for k, v in args.items() if isinstance(v, np.ndarray)}


def assert_unmodified(args, before):
    for name, copy in before.items():
        assert args[name].tobytes() == copy.tobytes(), f"input {name!r} was modified"


def assert_same(got, expected, what="result"):
    """Bit-for-bit equality of op results (arrays, tables, transforms, numbers)."""
    if isinstance(got, Volume):
        got = got.read()
    if isinstance(expected, np.ndarray):
        assert isinstance(got, np.ndarray), f"{what}: got {type(got).__name__}"
        assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
        assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
        if got.tobytes() != expected.tobytes():
            diff = np.asarray(got != expected)
            if got.dtype.kind == "f":
                diff &= ~(np.isnan(got) & np.isnan(expected))
            pytest.fail(f"{what}: {int(diff.sum())} of {got.size} values differ in their bits")
    elif isinstance(expected, dict):  # FeatureTable, RegionAdjacency, plain dicts
        assert list(got) == list(expected), f"{what}: columns differ"
        for key in expected:
            assert_same(got[key], expected[key], f"{what}[{key!r}]")
        if hasattr(expected, "meta"):
            assert_same(got.meta, expected.meta, f"{what}.meta")
    elif isinstance(expected, (list, tuple)):
        assert type(got) is type(expected) and len(got) == len(expected), what
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_same(g, e, f"{what}[{i}]")
    elif isinstance(expected, fastct.Registration):
        assert_same(got.transform.matrix, expected.transform.matrix, f"{what}.transform")
        for attr in ("metric_value", "iterations", "converged", "stop_reason"):
            assert_same(getattr(got, attr), getattr(expected, attr), f"{what}.{attr}")
    elif isinstance(expected, float):
        assert isinstance(got, float), f"{what}: got {type(got).__name__}"
        assert np.float64(got).tobytes() == np.float64(expected).tobytes(), (what, got, expected)
    else:
        assert got == expected, what


def known_bug(request, op, contract):
    """Run as a strict xfail when the registry lists a known fastct bug for it."""
    reason = op.known.get(contract)
    if reason:
        request.applymarker(pytest.mark.xfail(reason=f"fastct bug: {reason}", strict=True))


def names_parameter(exc, name):
    return re.search(rf"\b{re.escape(name)}\b", str(exc)) is not None


@pytest.fixture
def numba_threads():
    """Restore Numba's thread count of this (the main) thread after the test."""
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


def op_id(op):
    return op.name


def shape_id(shape):
    return "x".join(map(str, shape))


# -- (a) streamed == in memory -------------------------------------------------------------------
STREAM_CASES = [
    pytest.param(op, shape, chunks, id=f"{op.name}-{shape_id(shape)}-c{shape_id(chunks)}")
    for op in OPS
    for i, shape in enumerate(op.shapes)
    for chunks in (CHUNKS if i == 0 else FEW_CHUNKS)
]


@pytest.mark.parametrize("op,shape,chunks", STREAM_CASES)
def test_streamed_equals_in_memory(op, shape, chunks, tmp_path, monkeypatch, request):
    known_bug(request, op, "stream")
    args = make_args(op, shape)
    before = snapshot(args)
    expected = op.func(**args)
    assert_unmodified(args, before)  # inputs are never modified
    if op.out_like is not None:
        assert np.dtype(op.out_like(args)[1]) == expected.dtype  # registry sanity
    small_blocks(monkeypatch)
    with fastct.open(tmp_path / "stream.h5", "w") as ar:
        vargs = to_volumes(ar, args, op, chunks)
        for extra in op.stream_variants:  # Volume in, result in memory
            assert_same(op.func(**{**vargs, **extra}), expected, f"volume in {extra}")
        if op.out_like is not None:
            dst = new_out_volume(ar, op, args, chunks)
            assert op.func(**{**vargs, "out": dst}) is dst  # Volume in, Volume out
            assert_same(dst.read(), expected, "volume in, volume out")
            dst2 = new_out_volume(ar, op, args, chunks, "out/from_memory")
            assert op.func(**{**args, "out": dst2}) is dst2  # array in, Volume out
            assert_same(dst2.read(), expected, "array in, volume out")
            assert_unmodified(args, before)
    if op.out_like is not None:  # what was published is the result
        with fastct.open(tmp_path / "stream.h5") as ar:
            assert_same(ar["out/result"].read(), expected, "published")


# -- (b) same bits at 1 and 2 threads --------------------------------------------------------------
THREAD_CASES = [
    pytest.param(op, shape, id=f"{op.name}-{shape_id(shape)}")
    for op in OPS
    for shape in op.shapes[:2]
]


@pytest.mark.parametrize("op,shape", THREAD_CASES)
def test_same_bits_at_one_and_two_threads(op, shape, tmp_path, monkeypatch, request):
    known_bug(request, op, "threads")
    force_parallel(monkeypatch)
    args = make_args(op, shape)
    results = []
    for n in (1, 2):
        fastct.set_num_threads(n)
        results.append(op.func(**args))
    assert_same(results[1], results[0], "2 threads vs 1")
    small_blocks(monkeypatch)
    with fastct.open(tmp_path / "threads.h5", "w") as ar:
        vargs = to_volumes(ar, args, op, FEW_CHUNKS[0])
        for n in (1, 2):
            fastct.set_num_threads(n)
            assert_same(op.func(**vargs), results[0], f"streamed at {n} threads")


# -- (c) Numba's thread count restored ---------------------------------------------------------------
class ReadFailure(OSError):
    """The injected I/O error."""


def count_reads(monkeypatch):
    """Count the reads of archive volumes (every way a Volume is read)."""
    calls = {"n": 0, "fail_at": None}
    for method in ("read_region", "__getitem__", "read", "__array__"):
        real = getattr(Volume, method)

        def spy(self, *a, _real=real, **kw):
            calls["n"] += 1
            if calls["fail_at"] is not None and calls["n"] >= calls["fail_at"]:
                raise ReadFailure("injected read failure")
            return _real(self, *a, **kw)

        monkeypatch.setattr(Volume, method, spy)
    return calls


@pytest.mark.parametrize("op", OPS, ids=op_id)
def test_thread_count_restored(op, tmp_path, monkeypatch, numba_threads, request):
    known_bug(request, op, "restore")
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs Numba started with at least 2 threads")
    args = make_args(op, op.shapes[0])
    fastct.set_num_threads(2)
    numba.set_num_threads(1)
    op.func(**args)
    assert numba.get_num_threads() == 1, "after an in-memory call"
    small_blocks(monkeypatch)
    with fastct.open(tmp_path / "restore.h5", "w") as ar:
        vargs = to_volumes(ar, args, op, FEW_CHUNKS[0])
        calls = count_reads(monkeypatch)
        op.func(**vargs)
        assert numba.get_num_threads() == 1, "after a streamed call"
        # the same call failing half-way through its reads
        calls["fail_at"], calls["n"] = max(1, calls["n"] // 2), 0
        with pytest.raises(ReadFailure):
            op.func(**vargs)
        assert numba.get_num_threads() == 1, "after a call that failed while streaming"
    for param, value, exc, *_ in op.bad[:1]:
        with pytest.raises(exc):
            op.func(**{**args, param: value})
        assert numba.get_num_threads() == 1, "after a call refused for a bad argument"
    assert fastct.get_num_threads() == 2


# -- (d) out= ------------------------------------------------------------------------------------------
OUT_OPS = [op for op in OPS if op.out_like is not None]


@pytest.mark.parametrize("op", OUT_OPS, ids=op_id)
def test_out_array_is_filled_and_returned(op, tmp_path, request):
    known_bug(request, op, "out-array")
    args = make_args(op, op.shapes[0])
    expected = op.func(**args)
    shape, dtype = op.out_like(args)
    out = np.full(shape, 3, dtype)
    assert op.func(**{**args, "out": out}) is out
    assert_same(out, expected, "array in, array out")
    with fastct.open(tmp_path / "out.h5", "w") as ar:
        vargs = to_volumes(ar, args, op, FEW_CHUNKS[0])
        out = np.full(shape, 3, dtype)
        assert op.func(**{**vargs, "out": out}) is out
        assert_same(out, expected, "volume in, array out")


@pytest.mark.parametrize("op", OUT_OPS, ids=op_id)
def test_out_of_wrong_shape_or_type_is_refused(op, request):
    known_bug(request, op, "out-bad")
    args = make_args(op, op.shapes[0])
    shape, dtype = op.out_like(args)
    wrong = (shape[0] + 1, *shape[1:])
    with pytest.raises(ValueError) as info:
        op.func(**{**args, "out": np.zeros(wrong, dtype)})
    assert names_parameter(info.value, "out"), info.value
    with pytest.raises(TypeError) as info:
        op.func(**{**args, "out": [0, 1, 2]})
    assert names_parameter(info.value, "out"), info.value


@pytest.mark.parametrize("op", OUT_OPS, ids=op_id)
def test_read_only_out_array_is_refused(op, request):
    known_bug(request, op, "out-read-only")
    args = make_args(op, op.shapes[0])
    shape, dtype = op.out_like(args)
    out = np.zeros(shape, dtype)
    out.flags.writeable = False
    with pytest.raises((ValueError, TypeError)) as info:
        op.func(**{**args, "out": out})
    assert names_parameter(info.value, "out"), info.value
    assert not out.any()


@pytest.mark.parametrize("op", OUT_OPS, ids=op_id)
def test_out_volume_in_read_only_archive_is_refused(op, tmp_path, request):
    known_bug(request, op, "out-read-only-archive")
    args = make_args(op, op.shapes[0])
    path = tmp_path / "ro.h5"
    with fastct.open(path, "w") as ar:
        to_volumes(ar, args, op, FEW_CHUNKS[1])
        new_out_volume(ar, op, args, FEW_CHUNKS[1])
    stamp = path.stat().st_mtime_ns
    with fastct.open(path) as ar:
        vargs = {**args, **{n: ar[f"in/{n}"] for n in op.streamed if args.get(n) is not None}}
        for inputs in (args, vargs):
            with pytest.raises((PermissionError, ValueError)):
                op.func(**{**inputs, "out": ar["out/result"]})
    assert path.stat().st_mtime_ns == stamp
    with fastct.open(path) as ar:
        assert not ar["out/result"].read().any()


# -- (e) bad arguments name the parameter ---------------------------------------------------------------
ONE_D = "a 1-D array of the argument's dtype"  # made in the test: no work at collection


def bad_cases():
    for op in OPS:
        shape = op.shapes[0]
        cases = [(op.image, ONE_D, ValueError, op.image, "1d")]
        if op.checks_dtype:
            cases.append((op.image, np.zeros(shape, np.complex64), TypeError, op.image, "complex"))
        for i, (param, value, exc, *named) in enumerate(op.bad):
            cases.append((param, value, exc, named[0] if named else param, str(i)))
        for param, value, exc, named, tag in cases:
            yield pytest.param(op, param, value, exc, named, tag, id=f"{op.name}-{param}-{tag}")


@pytest.mark.parametrize("op,param,value,exc,named,tag", list(bad_cases()))
def test_bad_argument_is_refused_naming_it(op, param, value, exc, named, tag, request):
    known_bug(request, op, f"bad:{param}-{tag}")
    args = make_args(op, op.shapes[0])
    if value is ONE_D:
        value = np.zeros(5, np.asarray(args[param]).dtype)
    with pytest.raises((ValueError, TypeError)) as info:
        op.func(**{**args, param: value})
    assert isinstance(info.value, exc), f"{type(info.value).__name__}: {info.value}"
    assert names_parameter(info.value, named), f"message does not name {named!r}: {info.value}"


# -- the registry covers the public API ----------------------------------------------------------------
# Public callables that take a Volume but are not in the registry, and why.
NOT_REGISTERED = {
    "fastct.classify.NoduleDetector.fit": "training on Cases (minutes): tests/test_classify.py, slow",
    "fastct.classify.NoduleDetector.case_table": "a training stage on a Case: tests/test_classify.py",
    "fastct.classify.NoduleDetector.predict": "the registered stages chained, in memory; "
    "about 10 s on the smallest phantom, too slow here: tests/test_classify.py",
    "fastct.streaming.read_extended": "the engine's halo reader: tests/test_streaming.py",
    # the engine's other primitives are not operations: tests/test_engine.py checks them
    # (gather == whole, Volume out, slabs, read-ahead, region reads and writes)
    "fastct.streaming.map_blocks": "engine pattern: tests/test_engine.py",
    "fastct.streaming.read_region": "engine primitive: tests/test_engine.py",
    "fastct.streaming.write_region": "engine primitive: tests/test_engine.py",
    "fastct.streaming.read_planes": "engine primitive: tests/test_engine.py",
    "fastct.streaming.read_all": "engine primitive: tests/test_engine.py",
    "fastct.streaming.write_all": "engine primitive: tests/test_engine.py",
    "fastct.streaming.slab_planes": "engine primitive: tests/test_engine.py",
    "fastct.streaming.Scratch.volume": "a scratch file's volume factory: tests/test_slic.py",
    "fastct.pipeline.volume_doubling_time": "'Volume' there is a nodule's, not an archive's",
}
PUBLIC_MODULES = (
    "filters", "segmentation", "registration", "features", "lungs", "pipeline",
    "classify", "metrics", "streaming",
)  # fmt: skip


def volume_callables():
    """Public functions and methods of fastct whose signature or docstring mention a Volume."""
    found = {}
    for mod_name in PUBLIC_MODULES:
        module = importlib.import_module(f"fastct.{mod_name}")
        names = getattr(module, "__all__", None) or [n for n in dir(module) if n[0] != "_"]
        for name in names:
            obj = getattr(module, name)
            if not getattr(obj, "__module__", "").startswith("fastct"):
                continue
            members = [(name, obj)]
            if inspect.isclass(obj):
                members = [
                    (f"{name}.{m}", f)
                    for m, f in vars(obj).items()
                    if m[0] != "_" and inspect.isfunction(f)
                ]
            elif not inspect.isfunction(obj):
                continue
            for qual, func in members:
                text = (inspect.getdoc(func) or "") + str(inspect.signature(func))
                if re.search(r"\bVolume\b", text):
                    found[f"fastct.{mod_name}.{qual}"] = func
    return found


def test_registry_covers_every_public_volume_operation():
    registered = {op.api for op in OPS}
    missing = sorted(set(volume_callables()) - registered - set(NOT_REGISTERED))
    assert not missing, f"public operations taking a Volume without contracts: {missing}"
    for api in registered | set(NOT_REGISTERED):  # every name listed is real
        module, _, attr = api.removeprefix("fastct.").partition(".")
        obj = importlib.import_module(f"fastct.{module}")
        for part in attr.split("."):
            obj = getattr(obj, part)


def test_every_registered_op_says_why_it_has_no_out():
    for op in OPS:
        assert (op.out_like is None) == bool(op.no_out), op.name

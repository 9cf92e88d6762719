"""The on-disk kernel cache: every kernel cached, and the known hazards of Numba's cache.

Every case runs fresh processes with a private cache folder (``NUMBA_CACHE_DIR`` under
``tmp_path``), so the user's own cache is never read or written. The kernel is the
streaming engine's box sum (``parallel=True``, quick to compile); the warm-up check uses
the public Gaussian.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastct import _config

# Prints "<misses> <hits> <sha256 of the result>" for box sums at the given fastct thread
# counts (all in one process); every result must be the same bytes.
_BOX = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np, fastct
    from fastct._kernels.box import box_sum, box_sum_3d
    data = np.random.default_rng(0).random((9, 10, 11))
    digests = set()
    for n in sys.argv[1:] or ["1"]:
        fastct.set_num_threads(int(n))
        with fastct._config.kernel_threads():
            digests.add(hashlib.sha256(box_sum(data, (1, 2, 1)).tobytes()).hexdigest())
    assert len(digests) == 1, digests
    s = box_sum_3d.stats
    print(s.cache_misses.total(), s.cache_hits.total(), digests.pop())
    """
)


def _env(cache: Path | str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    env.pop("NUMBA_DISABLE_JIT", None)
    env.pop("FASTCT_NUM_THREADS", None)
    env.update(extra)
    return env


def _box(cache: Path | str, *threads: str, **extra: str) -> tuple[int, int, str, str]:
    """Run the box sum in a fresh process: (compiled, loaded, digest, stderr)."""
    r = subprocess.run(
        [sys.executable, "-c", _BOX, *threads],
        env=_env(cache, **extra),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    misses, hits, digest = r.stdout.split()
    return int(misses), int(hits), digest, r.stderr


def _index_files(cache: Path) -> list[Path]:
    found = sorted(cache.rglob("box.box_sum_3d-*.nbi"))
    assert found, f"no index file under {cache}"
    return found


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A cache holding the box sum, written by a process that created its folder and
    ran at 2 then 1 threads: (folder, digest). Tests copy it."""
    cache = tmp_path_factory.mktemp("filled") / "not" / "yet" / "there"
    compiled, loaded, digest, err = _box(cache, "2", "1", NUMBA_NUM_THREADS="2")
    assert (compiled, loaded) == (1, 0)
    assert "Numba cache" not in err
    return cache, digest


def _copy(filled, tmp_path) -> Path:
    return Path(shutil.copytree(filled[0], tmp_path / "cache"))


# -- every kernel is cached -------------------------------------------------------------
def test_every_profile_caches_on_disk():
    assert all(profile["cache"] is True for profile in _config.PROFILES.values())


def test_every_kernel_has_the_guarded_cache():
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    import fastct._kernels as kernels

    seen = 0
    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"fastct._kernels.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == module.__name__:
                seen += 1
                assert type(obj._cache).__name__ == "GuardedFunctionCache", name
    assert seen > 50


def test_kernels_call_no_kernel_of_another_module():
    # Numba checks a cache against the kernel's own source file only: machine code
    # inlined or linked from another module's kernel would go stale when that changes
    import re

    import fastct._kernels as kernels

    own_imports = re.compile(r"\s*(from\s+\.|from\s+fastct\b|import\s+fastct\b)")
    for path in Path(kernels.__file__).parent.glob("*.py"):
        for line in path.read_text().splitlines():
            if own_imports.match(line):
                assert "_config import" in line, f"{path.name}: {line}"


def test_second_process_loads_instead_of_compiling(filled):
    # (the missing cache folder was created by the first process)
    compiled, loaded, again, _ = _box(filled[0])
    assert (compiled, loaded, again) == (0, 1, filled[1])


_OPTIONS = textwrap.dedent(
    """
    import sys
    from types import MappingProxyType
    from fastct import _config
    if sys.argv[1] == "fastmath":  # another profile, as if _config.py had been edited
        _config.PROFILES = MappingProxyType(
            {"exact": {"nogil": True, "cache": True, "fastmath": True}}
        )
    sys.path.insert(0, sys.argv[2])
    from tiny_kernel import twice
    twice(1.5)
    print(twice.stats.cache_misses.total(), twice.stats.cache_hits.total())
    """
)


def test_changed_compile_options_are_recompiled(tmp_path):
    # the options come from fastct/_config.py, not from the kernel's own file, whose
    # content is all Numba checks a cache against: they are part of the entry's key
    (tmp_path / "tiny_kernel.py").write_text(
        "from fastct._config import kernel\n\n\n"
        '@kernel("exact")\ndef twice(x):\n    return 2.0 * x\n'
    )

    def run(profile):
        r = subprocess.run(
            [sys.executable, "-c", _OPTIONS, profile, str(tmp_path)],
            env=_env(tmp_path / "cache"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        return tuple(map(int, r.stdout.split()))

    assert run("exact") == (1, 0)
    assert run("exact") == (0, 1)
    assert run("fastmath") == (1, 0)  # not the machine code compiled without fastmath
    assert run("fastmath") == (0, 1)
    assert run("exact") == (0, 1)


# -- (a) thread counts ------------------------------------------------------------------
def test_cached_parallel_kernel_across_thread_counts(filled, tmp_path):
    # cached parallel kernels have crashed elsewhere when the thread count changed:
    # within a process (2 -> 1 -> 2) and between processes (Numba started with 1 or 2
    # threads, fastct's count 1 or 2), loading a cache written at 2 then 1 threads
    cache = _copy(filled, tmp_path)
    runs = [
        ({"NUMBA_NUM_THREADS": "1"}, ("1",)),
        ({"NUMBA_NUM_THREADS": "2"}, ("2", "1", "2")),
        ({"NUMBA_NUM_THREADS": "2"}, ("1", "2")),
        ({"NUMBA_NUM_THREADS": "1", "FASTCT_NUM_THREADS": "2"}, ()),
        ({"NUMBA_NUM_THREADS": "2", "FASTCT_NUM_THREADS": "1"}, ()),
        # and another threading layer than the one that wrote the cache (OpenMP here)
        ({"NUMBA_NUM_THREADS": "2", "NUMBA_THREADING_LAYER": "workqueue"}, ("2", "1")),
    ]
    for extra, threads in runs:
        compiled, loaded, digest, _ = _box(cache, *threads, **extra)
        assert (compiled, loaded, digest) == (0, 1, filled[1]), extra


# -- (b) concurrent first compiles ------------------------------------------------------
def test_two_processes_compiling_the_same_cache_at_once(tmp_path):
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _BOX, "2"],
            env=_env(cache, NUMBA_NUM_THREADS="2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        outs.append(out.split())
    assert len({digest for _, _, digest in outs}) == 1
    # whatever order they wrote in, the cache they left is whole
    compiled, loaded, digest, err = _box(cache)
    assert (compiled, loaded, digest) == (0, 1, outs[0][2])
    assert "Numba cache" not in err


# -- (c) read-only, missing and unusable cache folders ----------------------------------
def test_no_writable_cache_folder_anywhere_still_works(filled, tmp_path):
    # Numba raises "cannot cache function ...: no locator available" at decoration time
    # when no cache folder is writable (here: NUMBA_CACHE_DIR lies below a regular file
    # and no other locator is allowed); fastct compiles in each process instead.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    only_user_dir = {"NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator"}
    compiled, loaded, digest, err = _box(blocker / "cache", **only_user_dir)
    assert (compiled, loaded) == (1, 0)
    assert "Numba cache set-up failed" in err and "compiled instead" in err
    assert err.count("Numba cache") == 1  # one line, not one per kernel
    assert digest == filled[1]


def test_read_only_cache_folder_still_works(filled, tmp_path):
    cache = _copy(filled, tmp_path)
    digest = filled[1]
    for path in [cache, *cache.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        try:
            (cache / "probe").write_text("")
        except OSError:
            pass
        else:
            pytest.skip("this user writes to read-only folders (root): cannot test")
        # Numba uses a cache folder only if it can write to it: a read-only one is
        # passed over (here no other is allowed), and the kernel is compiled
        only_user_dir = {"NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator"}
        compiled, loaded, again, err = _box(cache, **only_user_dir)
        assert (compiled, loaded, again) == (1, 0, digest)
        assert "compiled instead" in err
    finally:
        for path in [cache, *cache.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


# -- (d) another Numba version, damaged files -------------------------------------------
def test_cache_of_another_numba_version_is_recompiled(filled, tmp_path):
    cache = _copy(filled, tmp_path)
    digest = filled[1]
    for index in _index_files(cache):
        with index.open("rb") as f:
            version = pickle.load(f)
            rest = f.read()
        assert isinstance(version, str)  # the index starts with Numba's version
        index.write_bytes(pickle.dumps("0.0.1") + rest)
    compiled, loaded, again, err = _box(cache)
    assert (compiled, loaded, again) == (1, 0, digest)
    assert "Numba cache" not in err  # Numba itself handles this case
    assert _box(cache)[:2] == (0, 1)  # and rewrote the index


@pytest.mark.parametrize(
    "damage",
    ["truncated index", "garbage data", "empty data"],
)
def test_damaged_cache_files_are_recompiled(filled, tmp_path, damage):
    # plain Numba raises UnpicklingError (or EOFError) here, in every later process
    cache = _copy(filled, tmp_path)
    digest = filled[1]
    kind, what = damage.split()
    suffix = ".nbi" if what == "index" else ".nbc"
    files = sorted(cache.rglob(f"box.box_sum_3d-*{suffix}"))
    assert files
    for path in files:
        data = path.read_bytes()
        new = {"truncated": data[: len(data) // 2], "garbage": b"\x80garbage", "empty": b""}
        path.write_bytes(new[kind])
    compiled, loaded, again, err = _box(cache)
    assert (compiled, loaded, again) == (1, 0, digest)
    assert "Numba cache load failed for box_sum_3d" in err
    compiled, loaded, again, err = _box(cache)
    assert (compiled, loaded, again) == (0, 1, digest)
    assert "Numba cache" not in err


# -- warm-up ----------------------------------------------------------------------------
_GAUSS = textwrap.dedent(
    """
    import numpy as np, fastct
    from fastct._kernels import gaussian as g
    img = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    fastct.gaussian(img, 1.0)
    fastct.gaussian(img.astype(np.int16), 3.0, method="recursive")
    ds = [d for d in vars(g).values() if hasattr(d, "stats")]
    print(sum(d.stats.cache_misses.total() for d in ds), sum(d.stats.cache_hits.total() for d in ds))
    """
)


@pytest.mark.slow
def test_after_warmup_a_new_process_compiles_nothing(tmp_path):
    env = _env(tmp_path / "cache")
    warm = "import fastct; s, = fastct.warmup(['gaussian']); print(s.compiled, s.loaded)"
    r = subprocess.run(
        [sys.executable, "-c", warm], env=env, capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, r.stderr[-3000:]
    compiled, loaded = map(int, r.stdout.split())
    assert compiled > 0 and loaded == 0
    r = subprocess.run(
        [sys.executable, "-c", _GAUSS], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    misses, hits = map(int, r.stdout.split())
    assert misses == 0 and hits > 0
    # a second warm-up loads everything and compiles nothing
    r = subprocess.run(
        [sys.executable, "-m", "fastct.cli", "warmup", "gaussian"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "   0 compiled" in r.stderr, r.stderr


def test_warmup_rejects_unknown_steps():
    import fastct

    with pytest.raises(ValueError, match="steps must be among"):
        fastct.warmup(["gaussain"])
    with pytest.raises(TypeError, match="steps must be an iterable"):
        fastct.warmup("gaussian")
    with pytest.raises(TypeError, match="verbose"):
        fastct.warmup([], verbose=1)


def test_warmup_command_lists_its_steps(capsys):
    from fastct import cli

    assert cli.main(["warmup", "--list"]) == 0
    steps = capsys.readouterr().out.split()
    assert steps[0] == "gaussian" and "pipeline" in steps
    assert cli.main(["warmup", "nonsense"]) == 2
    assert "STEP must be among" in capsys.readouterr().err

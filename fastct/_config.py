"""One place for compile profiles and thread policy.

Compile profiles
----------------
Every compiled kernel in ``fastct._kernels`` is declared with :func:`kernel` and the
name of a profile below; no kernel module sets ``nogil``, ``cache`` or ``fastmath``
itself, so these decisions are made here, once. A kernel only adds what belongs to its
own code: ``parallel=True`` when it has a ``prange`` loop, ``inline=True`` for a small
helper that Numba inlines into its callers (``inline="always"``).

===========  =====  =====  ========  ===========================================================
profile      nogil  cache  fastmath  kernels
===========  =====  =====  ========  ===========================================================
``exact``    yes    yes    off       every kernel: Gaussian, median, features, registration,
                                     resample, phantom, box sum, SLIC, SLIC connectivity
``objmode``  no     yes    off       SLIC's ``_cpu_clock`` (an ``objmode`` block)
===========  =====  =====  ========  ===========================================================

Why:

- fastmath is off everywhere. Results must equal scipy.ndimage, scikit-image and NumPy
  bit for bit (median, exact Gaussian, SLIC's labels) and must not depend on the
  chunking or the thread count; reassociation and fused multiply-add contraction
  change the rounding, and ``nnan``/``ninf`` would break NaN and inf propagation. A
  fastmath profile belongs here, with its own tests, the day a kernel can tolerate it.
- ``nogil``: kernels release the GIL, so Dask workers and user threads run them
  concurrently. The one exception holds a ``numba.objmode`` block (Python code, which
  needs the GIL; Numba warns when such a function asks for ``nogil``).
- ``cache``: on everywhere, so a new process loads machine code from disk instead of
  compiling it again (a one-off command spent seconds compiling: ``fastct gaussian``
  on a tiny volume about 8 s, a registration about 12 s). A cached kernel is the same
  machine code as a freshly compiled one (same LLVM module, same options), so results
  do not change by a bit. Numba keeps the cache in ``NUMBA_CACHE_DIR`` if that is
  set, else next to the module (``fastct/_kernels/__pycache__``), else, where that
  folder is not writable, in the user-wide cache (``~/.cache/numba``); with no
  writable folder at all the kernel is compiled in each process (see
  :func:`_enable_cache`). ``fastct.warmup()`` (CLI ``fastct warmup``) fills the cache
  ahead of use. The hazards (cached ``parallel=True`` kernels with the thread count
  changing within and between processes, two processes compiling the same cache at
  once, read-only, missing or unusable cache folders, a cache written by another Numba
  version, damaged cache files) are tested in ``tests/test_cache.py``.

  What can and cannot be cached: Numba keys a cache entry by the kernel's source file
  (a hash of its content), its bytecode, the argument types and, for a closure, the
  pickled values of its free variables, so SLIC's ``row_pair`` kernels, built by a
  factory per row length, are cached like the others. Kernels must not take
  functions as arguments or build kernels from run-time values that cannot be
  pickled. A cache is checked against the kernel's own source file only: a kernel
  calling a kernel of another module would keep stale machine code after the
  callee's file changed, so kernels call helpers of their own module only. The
  compile options, which live here and not in the kernel's file, are part of every
  cache entry's key (a changed profile recompiles).

Numba is imported only when a kernel module is, never by ``import fastct``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

# name -> numba.njit options; see the module docstring for why each is what it is.
PROFILES: Mapping[str, Mapping[str, bool]] = MappingProxyType(
    {
        "exact": MappingProxyType({"nogil": True, "cache": True, "fastmath": False}),
        "objmode": MappingProxyType({"nogil": False, "cache": True, "fastmath": False}),
    }
)


def compile_options(
    profile: str, *, parallel: bool = False, inline: bool = False
) -> dict[str, Any]:
    """The ``numba.njit`` options of a kernel compiled with ``profile``.

    ``parallel`` and ``inline`` are added only when set, so a kernel's options are
    exactly its profile's otherwise.

    Examples
    --------
    >>> from fastct._config import compile_options
    >>> compile_options("exact", parallel=True)
    {'nogil': True, 'cache': True, 'fastmath': False, 'parallel': True}
    >>> compile_options("exact", inline=True)
    {'nogil': True, 'cache': True, 'fastmath': False, 'inline': 'always'}
    >>> compile_options("fast")
    Traceback (most recent call last):
    ...
    ValueError: profile must be one of 'exact', 'objmode', got 'fast'
    """
    if profile not in PROFILES:
        names = ", ".join(repr(name) for name in sorted(PROFILES))
        raise ValueError(f"profile must be one of {names}, got {profile!r}")
    options: dict[str, Any] = dict(PROFILES[profile])
    if parallel:
        options["parallel"] = True
    if inline:
        options["inline"] = "always"
    return options


def kernel(
    profile: str, *, parallel: bool = False, inline: bool = False
) -> Callable[[Callable[..., Any]], Any]:
    """Decorator compiling a kernel with ``numba.njit`` and the options of ``profile``.

    Used by the modules of ``fastct._kernels`` only (they import Numba anyway)::

        @kernel("exact", parallel=True)
        def box_sum_3d(data, rz, ry, rx, out): ...

    A cached profile gets Numba's on-disk cache through :func:`_enable_cache`, which
    never lets the cache break a kernel: no writable cache folder, an unreadable or
    corrupt cache file, or a failed save only cost a compilation.
    """
    import numba

    options = compile_options(profile, parallel=parallel, inline=inline)
    cache = options.pop("cache")

    def decorate(func: Callable[..., Any]) -> Any:
        dispatcher = numba.njit(**options)(func)
        if cache:
            _enable_cache(dispatcher)
        return dispatcher

    return decorate


# -- on-disk cache ----------------------------------------------------------------------
_log = logging.getLogger("fastct")
_cache_problem_reported = False
_guarded_cache_class: Any = None


def _report_cache_problem(what: str, name: str, exc: BaseException) -> None:
    """Log a cache problem: once per process as a warning, then at debug level."""
    global _cache_problem_reported
    level = logging.DEBUG if _cache_problem_reported else logging.WARNING
    _cache_problem_reported = True
    _log.log(
        level,
        "Numba cache %s failed for %s (%s: %s); the kernel is compiled instead",
        what,
        name,
        type(exc).__name__,
        exc,
    )


def _guarded_cache() -> Any:
    """Numba's ``FunctionCache`` whose load and save errors cost a compilation only.

    Numba itself recompiles when the index was written by another Numba version or for
    an older source file, but raises when an index or data file is unreadable
    (truncated, corrupt, unpicklable): every later process would then fail on that
    kernel. Here a failed load empties the index (the next save rewrites it) and
    compiles; a failed save keeps the compiled kernel and leaves the cache as it was.
    """
    global _guarded_cache_class
    if _guarded_cache_class is None:
        from numba.core.caching import FunctionCache

        class GuardedFunctionCache(FunctionCache):
            def load_overload(self, sig: Any, target_context: Any) -> Any:
                try:
                    return super().load_overload(sig, target_context)
                except Exception as exc:
                    _report_cache_problem("load", self._py_func.__qualname__, exc)
                    with contextlib.suppress(Exception):
                        self.flush()
                    return None

            def save_overload(self, sig: Any, data: Any) -> None:
                try:
                    super().save_overload(sig, data)
                except Exception as exc:
                    _report_cache_problem("save", self._py_func.__qualname__, exc)

            def _index_key(self, sig: Any, codegen: Any) -> Any:
                # Numba keys an entry by the kernel's own source and bytecode; the
                # compile options come from this module, so they join the key: a
                # changed profile recompiles instead of loading stale machine code.
                return (*super()._index_key(sig, codegen), self.fastct_options)

        _guarded_cache_class = GuardedFunctionCache
    return _guarded_cache_class


def _enable_cache(dispatcher: Any) -> None:
    """Give ``dispatcher`` an on-disk cache, if Numba finds a writable cache folder.

    Numba looks for one in this order: ``NUMBA_CACHE_DIR`` if set, the kernel module's
    ``__pycache__``, the user-wide cache (``~/.cache/numba``). With none writable it
    raises at decoration time, which would make every kernel module fail to import;
    the kernel is compiled in each process instead.
    """
    try:
        cache = _guarded_cache()(dispatcher.py_func)
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        _report_cache_problem("set-up", dispatcher.py_func.__qualname__, exc)
        return
    cache.fastct_options = repr(sorted(dispatcher.targetoptions.items()))
    dispatcher._cache = cache


_ENV_THREADS = "FASTCT_NUM_THREADS"
_num_threads: int | None = None  # None: follow FASTCT_NUM_THREADS, else all cores


def _max_threads() -> int:
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def _parse_threads(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__}")
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n}")
    return n


def set_num_threads(n: int | None) -> None:
    """Set the number of threads fastct kernels use.

    Parameters
    ----------
    n : int or None
        Number of threads, at least 1; values above the number of cores Numba was
        started with are capped to it. ``None`` restores the default: the
        ``FASTCT_NUM_THREADS`` environment variable if set, else all cores.

    Examples
    --------
    >>> import fastct
    >>> fastct.set_num_threads(1)
    >>> fastct.get_num_threads()
    1
    >>> fastct.set_num_threads(None)
    """
    global _num_threads
    _num_threads = None if n is None else _parse_threads(n, "n")


def get_num_threads() -> int:
    """Return the number of threads fastct kernels will use."""
    n = _num_threads
    if n is None:
        env = os.environ.get(_ENV_THREADS)
        n = _parse_threads(env, _ENV_THREADS) if env else _max_threads()
    return max(1, min(n, _max_threads()))


@contextlib.contextmanager
def kernel_threads() -> Iterator[int]:
    """Run a block of kernel calls at fastct's thread count.

    Numba's global thread count is restored afterwards, even on error, so fastct never
    leaves a caller's Numba setting changed.
    """
    import numba

    previous = numba.get_num_threads()
    n = get_num_threads()
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(previous)


# Progress bars: None = automatic (long work on a terminal), True/False = forced.
_progress: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """Force progress bars on stderr on (True) or off (False); None = automatic."""
    global _progress
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True, False or None, got {enabled!r}")
    _progress = enabled


def get_progress() -> bool | None:
    return _progress


# -- memory -------------------------------------------------------------------------
# The one memory budget of the streaming engine: the bytes a streamed operation may hold
# for one block or slab (its inputs, outputs and scratch together). Every access
# pattern of ``fastct.streaming`` sizes its blocks from it; nothing else sets one.
_ENV_MEMORY = "FASTCT_MEMORY_BUDGET"
DEFAULT_MEMORY_BUDGET = 64 * 1024**2
_memory_budget: int | None = None


def set_memory_budget(nbytes: int | None) -> None:
    """Set the working-set budget of one streamed block, in bytes.

    Parameters
    ----------
    nbytes : int or None
        A positive number of bytes. ``None`` restores the default: the
        ``FASTCT_MEMORY_BUDGET`` environment variable (bytes) if set, else 64 MiB.
        Results do not depend on it (streamed results are bit-identical for any block
        shape); larger blocks read and write in longer runs, smaller ones bound memory.
        A block never shrinks below one voxel (one plane for slabs), whatever the budget.

    Examples
    --------
    >>> import fastct
    >>> fastct.set_memory_budget(16 * 1024**2)
    >>> fastct.get_memory_budget()
    16777216
    >>> fastct.set_memory_budget(None)
    """
    global _memory_budget
    if nbytes is None:
        _memory_budget = None
        return
    _memory_budget = _parse_budget(nbytes, "nbytes")


def _parse_budget(value: object, name: str) -> int:
    return _parse_threads(value, name)


def get_memory_budget() -> int:
    """The working-set budget of one streamed block, in bytes."""
    if _memory_budget is not None:
        return _memory_budget
    env = os.environ.get(_ENV_MEMORY)
    return _parse_budget(env, _ENV_MEMORY) if env else DEFAULT_MEMORY_BUDGET

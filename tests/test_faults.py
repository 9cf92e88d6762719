"""Fault injection on every writing command: Ctrl-C (a real SIGINT) and SIGKILL at
seeded random moments, a full disk, a read-only output.

After every fault: the input is unchanged (bytes), every output is either exactly as
before (bytes) or complete (the same content as an undisturbed run), the message says
which, no temporary or lock file is left where a user would see it (a SIGKILLed run's
are cleaned by the next run), and a rerun succeeds.

Kill points (SIGINT): the command runs in this process under ``sys.settrace``, which
counts the Python lines executed; at the chosen line a real SIGINT is sent to the
process (Python's own handler, so ``_atomic``'s hold of SIGINT around publishing is
exercised as in a terminal). Points are drawn uniformly over the whole run plus a window
around each publish (the reported symptom). SIGKILL: a child process is killed after a
seeded random delay. ``make test`` tries a few points per command; the ``fuzz`` marker
many (``make test-fuzz``).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

import fastct
from fastct import _atomic
from fastct.cli import main

FUZZ_SECONDS = 25  # per command, SIGINT kill points under the fuzz marker


# -- fingerprints ----------------------------------------------------------------------------
def _hash_tree(path: Path) -> str:
    """Bytes of a file, or of every file under a folder (names included)."""
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            h.update(str(p.relative_to(path)).encode())
            if p.is_file():
                h.update(p.read_bytes())
    elif path.exists():
        h.update(path.read_bytes())
    else:
        return "absent"
    return h.hexdigest()


def _content(path: Path) -> str:
    """What a reader sees: every volume (values and metadata) of an archive, the voxels
    and affine of a NIfTI file, else the bytes."""
    if not path.exists():
        return "absent"
    h = hashlib.sha256()
    name = path.name.lower()
    if name.endswith((".h5", ".zarr")):
        with fastct.open(path) as ar:
            for vol in sorted(ar.volumes()):
                v = ar[vol]
                h.update(vol.encode() + str((v.shape, v.dtype, v.spacing, v.origin)).encode())
                h.update(np.ascontiguousarray(v.read()).tobytes())
    elif name.endswith((".nii", ".nii.gz")):
        import nibabel

        img = nibabel.load(path)
        h.update(np.asarray(img.dataobj).tobytes() + img.affine.tobytes())
    else:
        return _hash_tree(path)
    return h.hexdigest()


def _without_empty_groups(store: Path) -> Path:
    """A copy of a Zarr store without hidden temporaries at its root and without groups
    that hold nothing (or nothing but ``zarr.json``)."""
    copy = Path(tempfile.mkdtemp()) / store.name
    shutil.copytree(store, copy)
    for temp in list(copy.glob(_atomic.TMP_PREFIX + "*")):
        shutil.rmtree(temp) if temp.is_dir() else temp.unlink()
    for folder in sorted(copy.rglob("*"), key=lambda p: -len(p.parts)):
        if folder.is_dir() and [p.name for p in folder.iterdir()] in ([], ["zarr.json"]):
            shutil.rmtree(folder)
    return copy


def _visible_leftovers(*folders: Path) -> list[str]:
    """Temporary and lock files a user would see (or trip over)."""
    found = []
    for folder in folders:
        for p in folder.rglob("*"):
            if p.name.startswith(_atomic.TMP_PREFIX) or p.name.endswith(".lock"):
                found.append(str(p.relative_to(folder)))
    return found


# -- the commands --------------------------------------------------------------------------
@dataclass
class Case:
    """A writing command: ``argv`` with ``{dir}`` for the trial folder, the outputs it
    writes (relative to it) and the files that exist there beforehand (copied from the
    shared inputs folder)."""

    name: str
    argv: list[str]
    outputs: list[str]
    existing: list[str] = field(default_factory=list)

    def args(self, folder: Path, inputs: Path) -> list[str]:
        return [a.format(dir=folder, inp=inputs) for a in self.argv] + ["--quiet"]


SRC = "{inp}/src.h5:/scans/a/image"
CASES = [
    Case("gaussian", ["gaussian", SRC, "{dir}/dst.h5:/scans/new/out", "--sigma", "1.5",
                      "--chunks", "4,8,8"], ["dst.h5"], ["dst.h5"]),
    Case("gaussian-zarr", ["gaussian", SRC, "{dir}/dst.zarr:/scans/new/out", "--sigma", "1",
                           "--method", "recursive"], ["dst.zarr"], ["dst.zarr"]),
    Case("gaussian-nifti", ["gaussian", SRC, "{dir}/out.nii.gz", "--sigma", "1", "--overwrite"],
         ["out.nii.gz"], ["out.nii.gz"]),
    Case("median", ["median", SRC, "{dir}/dst.h5:/scans/b/image", "--size", "3", "--overwrite"],
         ["dst.h5"], ["dst.h5"]),
    Case("unsharp", ["unsharp", SRC, "{dir}/out.npy", "--radius", "1", "--amount", "0.5"],
         ["out.npy"]),
    Case("slic", ["slic", SRC, "{dir}/dst.h5:/scans/new/sv", "--n-segments", "20",
                  "--compactness", "0.1"], ["dst.h5"], ["dst.h5"]),
    Case("features", ["features", "{inp}/src.h5:/scans/a/labels", SRC, "--out",
                      "{dir}/table.csv", "--overwrite"], ["table.csv"], ["table.csv"]),
    Case("register", ["register", SRC, "{inp}/src.h5:/scans/a/moved", "--metric", "mse",
                      "--output-transform", "{dir}/t.tfm", "--resampled",
                      "{dir}/dst.h5:/scans/new/res", "--overwrite"], ["t.tfm", "dst.h5"],
         ["t.tfm", "dst.h5"]),
    Case("import", ["import", "{inp}/src.nii.gz", "{dir}/dst.h5:/scans/x/image"], ["dst.h5"],
         ["dst.h5"]),
    Case("export", ["export", SRC, "{dir}/out.nii.gz", "--overwrite"], ["out.nii.gz"],
         ["out.nii.gz"]),
    Case("convert", ["convert", "{inp}/src.h5", "{dir}/copy.zarr"], ["copy.zarr"]),
    Case("convert-volume", ["convert", SRC, "{dir}/dst.zarr:/scans/c/image"], ["dst.zarr"],
         ["dst.zarr"]),
    Case("phantom", ["phantom", "{dir}/ph.h5", "--size", "tiny", "--seed", "2", "--overwrite"],
         ["ph.h5"], ["ph.h5"]),
]  # fmt: skip
CASE_IDS = [c.name for c in CASES]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Inputs, and the pre-existing files a trial's folder starts with."""
    return _make_inputs(tmp_path_factory.mktemp("fault-inputs"))


def _make_inputs(folder: Path) -> Path:
    rng = np.random.default_rng(7)
    image = rng.integers(-1000, 1000, size=(10, 24, 22)).astype(np.int16)
    labels = (np.indices(image.shape).sum(0) // 9 % 5).astype(np.int32)
    with fastct.open(folder / "src.h5", "w") as ar:
        ar.create_volume("scans/a/image", image, chunks=(4, 8, 8), spacing=(2.0, 0.8, 0.8))
        ar.create_volume("scans/a/moved", np.roll(image, 1, axis=2), spacing=(2.0, 0.8, 0.8))
        ar.create_volume("scans/a/labels", labels, spacing=(2.0, 0.8, 0.8))
    old = rng.integers(0, 100, size=(6, 7, 8)).astype(np.int16)
    with fastct.open(folder / "dst.h5", "w") as ar:
        ar.create_volume("scans/b/image", old, spacing=(1.0, 2.0, 3.0))
    with fastct.open(folder / "dst.zarr", "w") as ar:
        ar.create_volume("scans/b/image", old)
    fastct.io.write_nifti(folder / "src.nii.gz", image, spacing=(2.0, 0.8, 0.8))
    fastct.io.write_nifti(folder / "out.nii.gz", old)
    shutil.copy(folder / "dst.h5", folder / "ph.h5")
    (folder / "table.csv").write_text("old table\n")
    fastct.RigidTransform(3, translation=(1.0, 2.0, 3.0)).save(folder / "t.tfm")
    return folder


def _fresh(case: Case, inputs: Path, root: Path) -> Path:
    folder = Path(tempfile.mkdtemp(dir=root))
    for name in case.existing:
        if (inputs / name).is_dir():
            shutil.copytree(inputs / name, folder / name)
        else:
            shutil.copy2(inputs / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def references(inputs, tmp_path_factory) -> dict[str, dict[str, str]]:
    """The content of each output after an undisturbed run (compiles the kernels too)."""
    return _make_references(inputs, tmp_path_factory.mktemp("fault-references"), CASES)


def _make_references(inputs: Path, root: Path, cases: list[Case]) -> dict[str, dict[str, str]]:
    refs = {}
    for case in cases:
        folder = _fresh(case, inputs, root)
        assert main(case.args(folder, inputs)) == 0, case.name
        refs[case.name] = {out: _content(folder / out) for out in case.outputs}
    return refs


# -- SIGINT at the n-th Python line --------------------------------------------------------
@contextlib.contextmanager
def _python_sigint_handler() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _sigint_at_line(n: int | None, marks: dict[str, int] | None = None) -> Iterator[list[int]]:
    """Count the Python lines run by ``fastct.cli.main`` in this thread; send SIGINT to
    this process at line ``n`` (never when None). ``marks`` receives the line counts at
    which the command's function starts (``work``) and the first publish (``publish``)."""
    count = [0]
    publish_code = {_atomic.commit.__code__, _atomic.publish_folder.__code__}
    main_code = main.__code__
    active = [False]  # inside fastct.cli.main
    first = [True]

    def local(frame, event, arg):
        if event == "line" and frame.f_code is main_code and first[0]:
            first[0] = False  # main's first line: before its try, a signal there is Python's
        elif event == "line" and active[0]:
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGINT)
        elif event == "return" and frame.f_code is main_code:
            active[0] = False
        return local

    def on_call(frame, event, arg):
        if frame.f_code is main_code:
            active[0] = True
            first[0] = True
        if marks is not None:
            code = frame.f_code
            if code.co_name.startswith("cmd_") and "cli" in code.co_filename:
                marks.setdefault("work", count[0])
            if code in publish_code or code.co_name == "_apply_publish":
                marks.setdefault("publish", count[0])
        return local

    sys.settrace(on_call)
    try:
        yield count
    finally:
        sys.settrace(None)


def _run_with_sigint(argv: list[str], n: int | None, marks=None) -> tuple[int, str, int]:
    import io

    err = io.StringIO()
    with _python_sigint_handler(), contextlib.redirect_stderr(err):
        with _sigint_at_line(n, marks) as count:
            code = main(argv)
    gc.collect()  # what an interrupted run left unreferenced is finalised
    return code, err.getvalue(), count[0]


def _check_outcome(case, folder, inputs, before, refs, code, err):
    """Every output is before-or-complete, the message says which, nothing left over."""
    assert _hash_tree(inputs / "src.h5") == before["src.h5"], "the input changed"
    states = {}
    for out in case.outputs:
        path = folder / out
        if _hash_tree(path) == before[out]:
            states[out] = "before"
        elif path.is_dir() and _hash_tree(_without_empty_groups(path)) == before[out]:
            # A Zarr publish killed (SIGKILL: no cleanup runs) between creating the new
            # volume's parent group and the rename leaves that group, empty; a Ctrl-C
            # removes it (tests/test_interrupt.py). No data changes.
            states[out] = "before"
        else:
            assert _content(path) == refs[case.name][out], f"{out} is neither old nor complete"
            states[out] = "complete"
    lines = err.strip().splitlines()
    if code == 0:
        assert all(s == "complete" for s in states.values()), (states, err)
    else:
        assert code == 130, (code, err)
        assert len(lines) == 1 and "Traceback" not in err, err
        message = lines[0]
        if message == "fastct: interrupted; no output was written":
            assert all(s == "before" for s in states.values()), (states, message)
        else:
            assert message.startswith("fastct: interrupted after writing "), message
            assert message.endswith(" (complete); nothing else was written"), message
            for out, state in states.items():
                named = str(folder / out) in message
                assert named == (state == "complete"), (out, state, message)
    leftovers = [
        name
        for name in _visible_leftovers(folder)
        # Known, reported (fastct/_store_zarr.py): a Zarr writer interrupted while it
        # cleans up may leave its hidden temporary volume in the store; a later writer
        # (another process) removes it.
        if not re.fullmatch(r"[^/]+\.zarr/\.fastct-tmp-[^/]*", name)
    ]
    assert leftovers == [], leftovers
    return states


def _kill_points(total: int, marks: dict[str, int], fuzz: bool, seed: int) -> list[int]:
    """Lines at which to interrupt: ``marks['work']`` is where the command's own code
    starts (before it: argument parsing), ``marks['publish']`` where its first output
    is published. make test: one point, in the work or just after the publish. Fuzz: 10
    while parsing, 20 in the work, and every line from 5 before the publish to the end
    (at most 80, evenly spaced)."""
    rng = np.random.default_rng(seed)
    work, publish = marks["work"], marks.get("publish", total)
    if not fuzz:  # one point: in the work, or from the publish on (every other command)
        if seed % 2:
            return [int(rng.integers(publish, min(total, publish + 60) + 1))]
        return [int(rng.integers(work, publish + 1))]
    points = set(rng.integers(1, work + 1, size=10).tolist())
    points.update(rng.integers(work, publish + 1, size=20).tolist())
    tail = np.arange(max(1, publish - 5), total + 1)
    if tail.size > 80:
        tail = tail[np.linspace(0, tail.size - 1, 80).round().astype(int)]
    points.update(tail.tolist())
    return sorted(int(p) for p in points)


def _sigint_trials(case, inputs, refs, root, fuzz, seed):
    before = {"src.h5": _hash_tree(inputs / "src.h5")}
    for out in case.outputs:
        before[out] = _hash_tree(inputs / out) if out in case.existing else "absent"
    # a counting run: how many lines, where the publishes start
    folder = _fresh(case, inputs, root)
    marks: dict[str, int] = {}
    code, err, total = _run_with_sigint(case.args(folder, inputs), None, marks)
    assert code == 0 and "work" in marks and "publish" in marks, (err, marks)
    outcomes = []
    points = _kill_points(total, marks, fuzz, seed)
    # fuzz: the points in a random order, as many as FUZZ_SECONDS allow (a command whose
    # run executes millions of Python lines, Zarr chunk by chunk, tries fewer)
    order = np.random.default_rng(seed).permutation(len(points)) if fuzz else range(len(points))
    t0 = time.perf_counter()
    for n in (points[i] for i in order):
        if fuzz and time.perf_counter() - t0 > FUZZ_SECONDS:
            break
        folder = _fresh(case, inputs, root)
        code, err, _ = _run_with_sigint(case.args(folder, inputs), n)
        states = _check_outcome(case, folder, inputs, before, refs, code, err)
        outcomes.append((n, code, tuple(sorted(states.values()))))
        # a rerun succeeds (--overwrite when the interrupted run published already)
        argv = case.args(folder, inputs)
        if "complete" in states.values() and "--overwrite" not in argv:
            argv.append("--overwrite")
        assert main(argv) == 0
        for out in case.outputs:
            assert _content(folder / out) == refs[case.name][out]
    return total, outcomes


# A SIGINT that lands while the garbage collector runs a weakref callback is reported by
# Python as "Exception ignored in ..." and dropped: the command then completes (checked).
UNRAISABLE = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@UNRAISABLE
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_sigint_at_random_lines(case, inputs, references, tmp_path):
    seed = CASE_IDS.index(case.name)
    total, outcomes = _sigint_trials(case, inputs, references, tmp_path, False, seed)
    print(case.name, total, outcomes)


def _fuzz_child(name: str, seed: int) -> None:
    """``python tests/test_faults.py NAME SEED``: the fuzz kill points of one command in
    a fresh process (an interrupt landing inside the standard library's own thread or
    executor locks can leave them taken: a process should not go on after it, and the
    tests do not); prints the outcomes; exit status 0 when every check passed."""
    import faulthandler
    import warnings

    # a hang shows where every thread waits (before the parent's timeout kills us)
    faulthandler.dump_traceback_later(FUZZ_SECONDS + 170, exit=True)
    warnings.simplefilter("ignore")  # Python's "Exception ignored" notes (weakref callbacks)
    root = Path(tempfile.mkdtemp())
    case = CASES[CASE_IDS.index(name)]
    (root / "inputs").mkdir()
    inputs = _make_inputs(root / "inputs")
    refs = _make_references(inputs, root, [case])
    total, outcomes = _sigint_trials(case, inputs, refs, root, True, seed)
    print(name, total, len(outcomes), outcomes)
    shutil.rmtree(root, ignore_errors=True)


# Writing a Zarr store from HDF5 (``convert``) runs millions of traced Python lines per
# run, too slow for many points: they keep their make-test point and the SIGKILL fuzz.
SIGINT_FUZZ = [c for c in CASES if not c.name.startswith("convert")]


@pytest.mark.fuzz
@pytest.mark.parametrize("case", SIGINT_FUZZ, ids=[c.name for c in SIGINT_FUZZ])
def test_sigint_at_random_lines_fuzz(case, tmp_path):
    seed = 1000 + CASE_IDS.index(case.name)
    done = subprocess.run([sys.executable, __file__, case.name, str(seed)],
                          capture_output=True, text=True, timeout=FUZZ_SECONDS + 200,
                          cwd=Path(__file__).parent)  # fmt: skip
    print(done.stdout.strip())
    assert done.returncode == 0, done.stderr[-3000:]


# -- SIGKILL at a random moment (a child process) --------------------------------------------
KILL_CASES = ["gaussian", "gaussian-zarr", "import", "convert"]


def _child(argv: list[str], **kwargs) -> subprocess.Popen:
    env = dict(os.environ, FASTCT_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "fastct.cli", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # fmt: skip


def _sigkill_trials(case, inputs, refs, root, n, seed):
    before = {"src.h5": _hash_tree(inputs / "src.h5")}
    for out in case.outputs:
        before[out] = _hash_tree(inputs / out) if out in case.existing else "absent"
    rng = np.random.default_rng(seed)
    # an undisturbed child: how long the whole run takes (start-up included)
    t0 = time.perf_counter()
    proc = _child(case.args(_fresh(case, inputs, root), inputs))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    duration = time.perf_counter() - t0
    outcomes = []
    for delay in rng.uniform(0.05, duration, size=n):
        folder = _fresh(case, inputs, root)
        proc = _child(case.args(folder, inputs))
        time.sleep(float(delay))
        proc.kill()
        _, err = proc.communicate(timeout=120)
        assert _hash_tree(inputs / "src.h5") == before["src.h5"], "the input changed"
        states = []
        for out in case.outputs:
            path = folder / out
            if _hash_tree(path) == before[out] or (
                path.is_dir() and _hash_tree(_without_empty_groups(path)) == before[out]
            ):  # a killed Zarr writer's hidden temporaries: removed by the next writer
                states.append("before")
            else:
                assert _content(folder / out) == refs[case.name][out], err.decode()
                states.append("complete")
        outcomes.append((round(float(delay), 2), proc.returncode, states))
        # the next run succeeds and removes what the killed one left
        argv = case.args(folder, inputs)
        if "complete" in states and "--overwrite" not in argv:
            argv.append("--overwrite")
        assert main(argv) == 0
        for out in case.outputs:
            assert _content(folder / out) == refs[case.name][out]
        assert _visible_leftovers(folder) == []
    return outcomes


@pytest.mark.parametrize(
    "name", [n if n == "gaussian" else pytest.param(n, marks=pytest.mark.slow) for n in KILL_CASES]
)
def test_sigkill_at_a_random_moment(name, inputs, references, tmp_path):
    case = CASES[CASE_IDS.index(name)]
    print(name, _sigkill_trials(case, inputs, references, tmp_path, 1, CASE_IDS.index(name)))


@pytest.mark.fuzz
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_sigkill_at_random_moments_fuzz(case, inputs, references, tmp_path):
    print(case.name, _sigkill_trials(case, inputs, references, tmp_path, 8, 100 + len(case.name)))


# -- a full disk ---------------------------------------------------------------------------
def _one_line_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("fastct: error: "), (code, err)
    assert "Traceback" not in err
    return lines[0]


HDF5_SEGFAULT = pytest.mark.xfail(
    strict=True,
    reason="HDF5 past a file size limit (EFBIG): Archive.close's failed flush leaves the "
    "h5py file half-closed and HDF5 segfaults when its objects are freed (reproduced with "
    "h5py alone); on a full disk, emptying the discarded temporary file first avoids it, "
    "but past a size limit the close's own writes fail again",
)


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("big")
    image = np.random.default_rng(1).normal(size=(40, 128, 128)).astype(np.float32)  # 2.5 MB
    with fastct.open(folder / "big.h5", "w") as ar:
        ar.create_volume("scans/a/image", image, chunks=(8, 64, 64))
    return folder / "big.h5"


@pytest.mark.parametrize(
    "dest",
    [
        pytest.param("dst.h5:/scans/new/out", marks=[HDF5_SEGFAULT, pytest.mark.slow]),
        "out.npy",
        pytest.param("out.nii", marks=pytest.mark.slow),
    ],
)
def test_file_size_limit_gives_one_line_and_changes_nothing(dest, inputs, big_input, tmp_path):
    """The real write path failing with EFBIG (RLIMIT_FSIZE in a child; Python ignores
    SIGXFSZ): exit 2, one line, the destination archive unchanged, nothing left."""
    shutil.copy2(inputs / "dst.h5", tmp_path / "dst.h5")
    before = _hash_tree(tmp_path / "dst.h5")
    limit = (tmp_path / "dst.h5").stat().st_size + 200_000  # the output needs 2.5 MB

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = _child(["gaussian", f"{big_input}:/scans/a/image", f"{tmp_path}/{dest}", "--sigma",
                   "1", "--quiet"], preexec_fn=small_files)  # fmt: skip
    _, err = proc.communicate(timeout=120)
    message = _one_line_error(proc.returncode, err.decode())
    assert "cannot write" in message and tmp_path.name in message, message
    assert "large" in message.lower() or "size limit" in message, message
    assert _hash_tree(tmp_path / "dst.h5") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst.h5"]


@contextlib.contextmanager
def _tmpfs(size: str) -> Iterator[Path]:
    """A small tmpfs (root with CAP_SYS_ADMIN only: skipped elsewhere)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    folder = Path(tempfile.mkdtemp())
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.rmdir()


@pytest.mark.parametrize(
    "dest",
    [
        pytest.param("dst.h5:/scans/new/out", marks=pytest.mark.slow),
        "dst.zarr:/scans/new/out",
        pytest.param("out.nii", marks=pytest.mark.slow),
        pytest.param("out.npy", marks=pytest.mark.slow),
    ],
)
def test_full_disk_gives_one_line_and_changes_nothing(dest, inputs, big_input):
    """A real ENOSPC: a 2 MiB tmpfs holding the destination; the output needs 2.5 MB.
    In a child process (HDF5 may crash the interpreter)."""
    with _tmpfs("2m") as disk:
        shutil.copy2(inputs / "dst.h5", disk / "dst.h5")
        shutil.copytree(inputs / "dst.zarr", disk / "dst.zarr")
        before = {p: _hash_tree(disk / p) for p in ("dst.h5", "dst.zarr")}
        argv = ["gaussian", f"{big_input}:/scans/a/image", f"{disk}/{dest}", "--sigma", "1"]
        proc = _child(argv)
        _, err = proc.communicate(timeout=120)
        message = _one_line_error(proc.returncode, err.decode())
        # refused before writing when the output's size is known (uncompressed HDF5,
        # NIfTI, .npy: fastct.io.check_disk_space), else the real ENOSPC (Zarr)
        refused = "needs" in message and "of disk" in message
        written = "cannot write" in message and (
            "No space left on device" in message or "disk full" in message
        )
        assert refused or written, message
        assert dest.split(":")[-1 if refused and ".h5" in dest else 0] in message, message
        assert sorted(p.name for p in disk.iterdir()) == ["dst.h5", "dst.zarr"]
        if _visible_leftovers(disk):
            # The Zarr writer leaves its hidden temporary volume (reported); the next
            # writer of the store removes it, and the data was never touched.
            assert all(n.startswith("dst.zarr/" + _atomic.TMP_PREFIX)
                       for n in (f"dst.zarr/{x}" for x in _visible_leftovers(disk / "dst.zarr"))
                       ), _visible_leftovers(disk)  # fmt: skip
            small = f"{inputs}/src.h5:/scans/a/image"
            assert main(["gaussian", small, f"{disk}/dst.zarr:/scans/ok", "--sigma", "1"]) == 0
            with fastct.open(disk / "dst.zarr", "a") as ar:
                ar.delete("scans/ok")
        assert _visible_leftovers(disk) == []
        assert {p: _content(disk / p) for p in before} == {p: _content(inputs / p) for p in before}
        if dest.startswith("dst.h5"):
            assert _hash_tree(disk / "dst.h5") == before["dst.h5"]


# -- a read-only output ------------------------------------------------------------------------
@contextlib.contextmanager
def _read_only_folder(inputs: Path) -> Iterator[Path]:
    """A folder holding dst.h5 and dst.zarr that this process cannot write: chmod a-w
    for an ordinary user; for root (who ignores permissions) a tmpfs remounted read-only."""
    if os.geteuid() != 0:
        folder = Path(tempfile.mkdtemp())
        shutil.copy2(inputs / "dst.h5", folder / "dst.h5")
        shutil.copytree(inputs / "dst.zarr", folder / "dst.zarr")
        paths = [folder, *folder.rglob("*")]
        for p in paths:
            p.chmod(p.stat().st_mode & ~0o222)
        try:
            yield folder
        finally:
            for p in paths:
                p.chmod(p.stat().st_mode | 0o200)
            shutil.rmtree(folder)
        return
    with _tmpfs("4m") as folder:
        shutil.copy2(inputs / "dst.h5", folder / "dst.h5")
        shutil.copytree(inputs / "dst.zarr", folder / "dst.zarr")
        done = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only: {done.stderr.decode().strip()}")
        yield folder


@pytest.mark.parametrize(
    "dest", ["dst.h5:/scans/new/out", "dst.zarr:/scans/new/out", "out.nii.gz", "new.h5:/v"]
)
def test_read_only_output_gives_one_line_and_changes_nothing(dest, inputs, capsys):
    with _read_only_folder(inputs) as folder:
        before = {p: _hash_tree(folder / p) for p in ("dst.h5", "dst.zarr")}
        argv = ["gaussian", f"{inputs}/src.h5:/scans/a/image", f"{folder}/{dest}", "--sigma", "1"]
        message = _one_line_error(main(argv), capsys.readouterr().err)
        assert "read-only" in message.lower() or "permission" in message.lower(), message
        assert {p: _hash_tree(folder / p) for p in before} == before
        assert sorted(p.name for p in folder.iterdir()) == ["dst.h5", "dst.zarr"]


if __name__ == "__main__":
    _fuzz_child(sys.argv[1], int(sys.argv[2]))


# -- the pipeline --------------------------------------------------------------------------
@pytest.mark.slow  # a tiny pair through the whole pipeline ~9 times: about 2 minutes warm
def test_pipeline_killed_at_random_moments_loses_nothing(tmp_path):
    """``fastct pipeline`` (results into the scans' archive, the report into ``--out``)
    killed by SIGKILL or SIGINT at seeded moments: the archive is its old bytes or holds
    the complete run, ``--out`` is absent or complete, nothing temporary is left behind
    (after SIGKILL: once the next run has cleaned up), and a rerun succeeds."""
    pristine = tmp_path / "pair.h5"
    assert main(["--quiet", "phantom", str(pristine), "--size", "tiny", "--seed", "3"]) == 0
    work, out = tmp_path / "work.h5", tmp_path / "report"

    def argv(*extra: str) -> list[str]:
        return ["pipeline", str(work), "--baseline", "/scans/phantom/baseline", "--followup",
                "/scans/phantom/followup", "--out", str(out), "--quiet", *extra]  # fmt: skip

    # an undisturbed run: its duration and what a complete run leaves
    shutil.copy2(pristine, work)
    t0 = time.perf_counter()
    done = _child(argv())
    _, err = done.communicate(timeout=600)
    assert done.returncode == 0, err.decode()
    duration = time.perf_counter() - t0
    complete_archive = _content(work)
    complete_out = sorted(p.name for p in out.iterdir())
    assert "report.html" in complete_out and "summary.json" in complete_out
    before = _hash_tree(pristine)
    rng = np.random.default_rng(19)
    outcomes = []
    for trial, sig in enumerate([signal.SIGKILL] * 5 + [signal.SIGINT] * 3):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copy2(pristine, work)
        proc = _child(argv())
        time.sleep(float(rng.uniform(0.05, 1.0)) * duration)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=600)
        text = err.decode()
        assert "Traceback" not in text, text
        if sig == signal.SIGINT and proc.returncode != 0:
            lines = text.strip().splitlines()
            assert proc.returncode == 130 and len(lines) == 1 and "interrupted" in lines[0], text
        archive_state = "old" if _hash_tree(work) == before else _content(work)
        assert archive_state in ("old", complete_archive), trial
        assert not out.exists() or sorted(p.name for p in out.iterdir()) == complete_out
        if sig == signal.SIGINT:
            assert _visible_leftovers(tmp_path) == [], _visible_leftovers(tmp_path)
        outcomes.append((sig.name, archive_state == "old", out.exists()))
        # the rerun (cleaning up after a SIGKILL) succeeds and leaves nothing behind
        rerun = _child(argv("--overwrite"))
        _, err = rerun.communicate(timeout=600)
        assert rerun.returncode == 0, err.decode()
        assert _content(work) == complete_archive
        assert _visible_leftovers(tmp_path) == [], _visible_leftovers(tmp_path)
    print("pipeline kill trials (signal, archive untouched, report present):", outcomes)

"""The streaming engine is the only door to volume storage.

Only ``fastct.volume`` (the storage layer) and ``fastct.streaming`` (the engine) may
call a Volume's region methods; every operation reads and writes through the engine's
access patterns, so block sizes, read-ahead, progress and storage backends are
decided in one place. Checked twice: statically (no other module names the region
methods) and at run time (every operation, streamed from an archive, is watched).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import fastct
from fastct.volume import Volume

PACKAGE = Path(fastct.__file__).resolve().parent
ALLOWED = {"fastct.volume", "fastct.streaming"}
REGION_METHODS = ("read_region", "write_region", "__getitem__", "__setitem__", "read")


def test_no_module_outside_the_engine_names_the_region_methods():
    pattern = re.compile(r"\.(read_region|write_region)\(|\._ds\b")
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("fastct", *path.relative_to(PACKAGE).with_suffix("").parts))
        if module in ALLOWED:
            continue
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{module}:{no}: {line.strip()}")
    assert not offenders, "storage access outside the engine:\n" + "\n".join(offenders)


@pytest.fixture
def watched(monkeypatch):
    """Record the module of every caller of a Volume region method."""
    callers: list[tuple[str, str]] = []
    for name in REGION_METHODS:
        original = getattr(Volume, name)

        def spy(self, *args, __original=original, __name=name, **kwargs):
            callers.append((sys._getframe(1).f_globals.get("__name__", "?"), __name))
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(Volume, name, spy)
    return callers


def _operations():
    rng = np.random.default_rng(7)
    image = (rng.random((14, 17, 15)) * 400 - 900).astype(np.float32)
    image[3:11, 4:13, 3:12] = -850
    labels = (np.arange(image.size).reshape(image.shape) // 97 % 9).astype(np.int32)
    shift = fastct.RigidTransform(3, translation=(0.5, -0.3, 0.2))

    def lung(img, out):
        from fastct.lungs import lung_mask

        return lung_mask(img, spacing=(2.0, 2.0, 2.0), out=out)

    def difference(img, out):
        from fastct.pipeline import difference_map

        return difference_map(img, img, out)

    return (
        image,
        labels,
        {
            "gaussian": (lambda img, out: fastct.gaussian(img, 1.5, out=out), np.float32),
            "gaussian-recursive": (
                lambda img, out: fastct.gaussian(img, 4.0, method="recursive", out=out),
                np.float32,
            ),
            "median": (lambda img, out: fastct.median(img, 3, out=out), np.float32),
            "unsharp_mask": (lambda img, out: fastct.unsharp_mask(img, 1.0, out=out), np.float32),
            "slic": (
                lambda img, out: fastct.slic(img, n_segments=20, compactness=0.1, out=out),
                np.int32,
            ),
            "resample": (
                lambda img, out: fastct.resample(img, shift, shape=img.shape, out=out),
                np.float32,
            ),
            "lung_mask": (lung, np.uint8),
            "difference_map": (difference, np.float32),
        },
    )


@pytest.mark.parametrize("name", list(_operations()[2]))
def test_streamed_operations_touch_storage_only_through_the_engine(name, tmp_path, watched):
    image, _, ops = _operations()
    run, out_dtype = ops[name]
    with fastct.open(tmp_path / "a.h5", "w") as ar:
        src = ar.create_volume("image", image, chunks=(4, 5, 6))
        out = ar.create_volume("out", shape=image.shape, dtype=out_dtype, chunks=(5, 4, 7))
        watched.clear()
        run(src, out)
    assert watched, "the operation never touched the archive"
    outside = sorted({c for c in watched if c[0] not in ALLOWED})
    assert not outside, f"{name}: region methods called from {outside}"


def test_features_touch_storage_only_through_the_engine(tmp_path, watched):
    image, labels, _ = _operations()
    with fastct.open(tmp_path / "a.h5", "w") as ar:
        lv = ar.create_volume("labels", labels, chunks=(4, 5, 6))
        iv = ar.create_volume("image", image, chunks=(3, 7, 4))
        watched.clear()
        fastct.region_features(lv, iv)
        fastct.region_adjacency(lv)
    assert watched
    outside = sorted({c for c in watched if c[0] not in ALLOWED})
    assert not outside, f"region methods called from {outside}"

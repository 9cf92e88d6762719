"""Masked SLIC at clinical size: the lung-CT pipeline's supervoxels stage (issue 19).

``NoduleDetector.segment`` runs ``fastct.slic`` on the float32 scan inside the lung mask
(~38,000 segments, compactness 0.05 after the detector's HU window, the scan's spacing):
maskSLIC's k-means seeding (``_mask_centroids``: five exact Lloyd iterations over every
mask voxel) and then two k-means passes of assignment and update. This script times the
whole call and the seeding alone, wall and CPU seconds (``time.process_time``: the
machine is shared, wall time depends on the other load), on the chest phantom of a size
preset and its lung mask, and can save the labels and compare them with a saved run
(the labels must stay bit-identical when the kernels change).

Run (a warm-up call compiles the kernels first, on the same preset)::

    python benchmarks/bench_slic_masked.py --size large
    python benchmarks/bench_slic_masked.py --size clinical --save /tmp/labels.npy
    python benchmarks/bench_slic_masked.py --size clinical --compare /tmp/labels.npy
    python benchmarks/bench_slic_masked.py --size clinical --vq   # the seeding's search only

``--vq`` times one Lloyd iteration's nearest-code search of the seeding (all mask voxels
against the seeds ``_mask_centroids`` draws) with the per-voxel grid search
(``vq_grid``) and with the block search (``vq_blocks``), and checks they agree.

Not a pytest suite: one clinical call takes tens of seconds and ~2.5 GB.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import time
from pathlib import Path

import numpy as np


def _phantom(size: str, cache: Path | None):
    """(int16 image, bool lung mask, spacing) of the chest phantom, cached as .npz."""
    if cache is not None:
        f = cache / f"fastct_phantom_{size}.npz"
        if f.exists():
            z = np.load(f)
            return z["image"], z["mask"], tuple(z["spacing"].tolist())
    from fastct.datasets import chest_phantom

    ph = chest_phantom(size=size, seed=0)
    image, mask, spacing = ph.image, ph.lung_mask.astype(bool), tuple(ph.spacing)
    if cache is not None:
        np.savez(f, image=image, mask=mask, spacing=np.asarray(spacing))
    return image, mask, spacing


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="large", help="chest_phantom preset (default large)")
    ap.add_argument("--repeat", type=int, default=1, help="timed calls after the warm-up")
    ap.add_argument("--cache", default="/tmp", help="folder for the phantom .npz ('' for none)")
    ap.add_argument("--save", help="write the labels to this .npy")
    ap.add_argument("--compare", help="check the labels equal this .npy")
    ap.add_argument("--no-warmup", action="store_true", help="time the first call too")
    ap.add_argument("--vq", action="store_true", help="time the seeding's search only")
    args = ap.parse_args(argv)
    if args.vq:
        _bench_vq(args.size, Path(args.cache) if args.cache else None)
        return

    import fastct
    from fastct.classify import default_detector
    from fastct.segmentation import _slic

    image, mask, spacing = _phantom(args.size, Path(args.cache) if args.cache else None)
    det = default_detector()
    seeding = {"wall": 0.0, "cpu": 0.0}
    inner = _slic._mask_centroids

    @functools.wraps(inner)
    def timed(*a, **k):
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            return inner(*a, **k)
        finally:
            seeding["wall"] += time.perf_counter() - w0
            seeding["cpu"] += time.process_time() - c0

    _slic._mask_centroids = timed
    print(
        f"size={args.size} shape={image.shape} spacing={spacing} mask voxels={int(mask.sum())} "
        f"({100 * mask.mean():.1f}%) threads={fastct.get_num_threads()}"
    )
    if not args.no_warmup:
        det.segment(image, spacing=spacing, lung_mask=mask)
    labels = None
    for _ in range(args.repeat):
        seeding["wall"] = seeding["cpu"] = 0.0
        w0, c0 = time.perf_counter(), time.process_time()
        labels = det.segment(image, spacing=spacing, lung_mask=mask)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        print(
            f"segment: wall {wall:.2f} s  cpu {cpu:.2f} s | seeding: wall {seeding['wall']:.2f} s"
            f"  cpu {seeding['cpu']:.2f} s | segments {int(labels.max())}"
        )
    assert labels is not None
    print("labels sha1", hashlib.sha1(labels.tobytes()).hexdigest())
    if args.save:
        np.save(args.save, labels)
    if args.compare:
        ref = np.load(args.compare)
        same = ref.shape == labels.shape and bool(np.array_equal(ref, labels))
        print("labels identical to", args.compare, ":", same)
        if not same:
            raise SystemExit(1)


def _bench_vq(size: str, cache: Path | None) -> None:
    import math

    from fastct.classify import default_detector
    from fastct.segmentation import _seeds

    _, mask, spacing = _phantom(size, cache)
    n_mask = int(mask.sum())
    litres = n_mask * math.prod(spacing) / 1e6
    n_seg = max(1, int(round(float(default_detector().n_segments_per_litre) * litres)))
    data = np.argwhere(mask).astype(np.int32)  # the mask voxels in C order
    rng = np.random.RandomState(123)  # the seeds _mask_centroids draws
    codes = data[np.sort(rng.permutation(n_mask)[:n_seg])].astype(np.float64)
    print(f"size={size} mask voxels={n_mask} codes={len(codes)}")
    _seeds._vq(data[:1000], codes[:10])  # compile
    _seeds._vq(data[:1000], codes[:10], method="grid")
    w0, c0 = time.perf_counter(), time.process_time()
    plan = _seeds._VqPlan(data, len(codes))
    print(f"blocks plan (once): wall {time.perf_counter() - w0:.2f} s  "
          f"cpu {time.process_time() - c0:.2f} s  blocks {len(plan.box)} of {plan.bs}")  # fmt: skip
    got = {}
    for method in ("blocks", "grid"):
        w0, c0 = time.perf_counter(), time.process_time()
        got[method] = _seeds._vq(data, codes, plan, method=method)
        print(f"{method}: wall {time.perf_counter() - w0:.2f} s  "
              f"cpu {time.process_time() - c0:.2f} s")  # fmt: skip
    print("same labels:", bool(np.array_equal(got["blocks"], got["grid"])))


if __name__ == "__main__":
    main()

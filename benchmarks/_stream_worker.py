"""One measured streaming run in a fresh process (so peak RSS is its own).

python benchmarks/_stream_worker.py CASE SRC.h5 DST.h5  -> prints JSON
CASE: h5py (plain chunk-row read + write loop) | fastct (map_overlap pass-through)
"""

import json
import resource
import sys
import time

import h5py
import numpy as np


def plain_h5py(src_path: str, dst_path: str) -> None:
    with h5py.File(src_path, "r") as fs, h5py.File(dst_path, "w") as fd:
        src = fs["scans/big/image"]
        dst = fd.create_dataset(
            "scans/big/copy", shape=src.shape, dtype=src.dtype, chunks=src.chunks
        )
        step = src.chunks[0]
        buf = np.empty((step,) + src.shape[1:], dtype=src.dtype)
        for z in range(0, src.shape[0], step):
            n = min(step, src.shape[0] - z)
            src.read_direct(buf, np.s_[z : z + n], np.s_[:n])
            dst.write_direct(buf, np.s_[:n], np.s_[z : z + n])


def fastct_stream(src_path: str, dst_path: str) -> None:
    import fastct
    from fastct.streaming import map_overlap

    def passthrough(data, info):
        return data

    with fastct.open(src_path) as sa, fastct.open(dst_path, "w") as da:
        src = sa["scans/big/image"]
        dst = da.create_volume_like("scans/big/copy", src)
        map_overlap(passthrough, src, out=dst, progress=False)


def peak_rss_bytes() -> int:
    """This process's own high-water RSS.

    ``ru_maxrss`` is not used: on Linux it carries over the parent's peak across
    fork + exec, so it would report pytest's memory, not ours. ``VmHWM`` belongs to
    the address space created by exec.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    case, src, dst = sys.argv[1:4]
    t0 = time.perf_counter()
    {"h5py": plain_h5py, "fastct": fastct_stream}[case](src, dst)
    seconds = time.perf_counter() - t0
    peak = peak_rss_bytes()
    print(json.dumps({"case": case, "seconds": seconds, "peak_rss": peak}))


if __name__ == "__main__":
    main()

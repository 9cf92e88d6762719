"""Child process for the crash-safety test: streams a volume into an existing archive.

Usage: python slow_writer.py SRC.h5 DST.h5 SECONDS_PER_BLOCK
Prints "started" once the destination transaction is open.
"""

import sys
import time

import numpy as np

import fastct
from fastct.streaming import map_overlap


def main() -> None:
    src_path, dst_path, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])

    def slow_negate(data, info):
        time.sleep(pause)
        return -data[info.core]

    with fastct.open(src_path) as src_ar, fastct.open(dst_path, "a") as dst_ar:
        print("started", flush=True)
        src = src_ar["scans/a/image"]
        dst = dst_ar.create_volume_like("scans/new/image", src, overwrite=True)
        map_overlap(slow_negate, src, depth=1, out=dst, block_shape=(4, 32, 32))
        # Also modify an existing dataset: must never be seen half-done either.
        dst_ar["scans/b/image"][...] = np.int16(7)
    print("committed", flush=True)


if __name__ == "__main__":
    main()

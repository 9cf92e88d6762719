"""Machine-state helpers shared by the benchmark suites."""

import os
import time


class OtherLoad:
    """Average number of cores busy with *other* processes over an interval.

    All CPU time the kernel accounts (``/proc/stat``) minus this process's own and
    its finished children's (``os.times``), over wall time.
    """

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            busy = float("nan")
        t = os.times()
        return time.perf_counter(), busy, t.user + t.system + t.children_user + t.children_system

    def cores(self) -> float:
        wall0, busy0, own0 = self.start
        wall1, busy1, own1 = self._sample()
        return max(0.0, ((busy1 - busy0) - (own1 - own0)) / max(wall1 - wall0, 1e-9))


def vm_kib(key: str) -> int:
    """A ``/proc/self/status`` memory line (``VmRSS``, ``VmHWM``...) in KiB; 0 where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak() -> None:
    """Reset the process's peak RSS (``VmHWM``); Linux >= 4.0, a no-op elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass

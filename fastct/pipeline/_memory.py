"""Whether a scan's detector stages run on in-memory arrays or stream through the archive.

Both give the same result bit for bit (every fastct operation equals its streamed
form); in memory each volume is read once and the supervoxels and features skip the
scratch files and slab bookkeeping of streaming, about 2.5x less CPU time on a
clinical scan. The price is memory: the scan, its denoised copy, the lung mask, the
labels and SLIC's working arrays, measured at :data:`BYTES_PER_VOXEL` at most.
"""

from __future__ import annotations

import math
import os
import re

#: Peak bytes per voxel of a scan's per-scan stages in memory (int16 scan, measured
#: on the clinical phantom, 400 x 512 x 512: the image and its denoised copy, 2 bytes
#: each; the lung mask, 1; the labels, 4; SLIC's float32 input, distances and labels,
#: ~12; the feature stage's temporaries stay below that peak) rounded up.
BYTES_PER_VOXEL = 24

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation without swapping (Linux
    ``MemAvailable``; elsewhere the free physical pages), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def parse_memory(value: object, name: str = "max_memory") -> int | None:
    """``None``/``'auto'`` -> None; an int (bytes) or a string such as ``'3G'``,
    ``'512M'``, ``'2.5GiB'`` -> bytes (> 0)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number of bytes, a size such as '3G', or 'auto'")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(?:i?b)?\s*", value.lower())
        if m is None:
            raise ValueError(
                f"{name} must be a number of bytes, a size such as '3G' or '512M', or "
                f"'auto', got {value!r}"
            )
        n = int(float(m.group(1)) * _UNITS[m.group(2)])
    else:
        raise TypeError(
            f"{name} must be a number of bytes, a size such as '3G', or 'auto', "
            f"got {type(value).__name__}"
        )
    if n <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return n


def memory_limit(max_memory: int | None) -> int:
    """The byte limit in force: ``max_memory``, or half the available memory (2 GiB
    when that is unknown)."""
    if max_memory is not None:
        return max_memory
    avail = available_memory()
    return 2 * 1024**3 if avail is None else avail // 2


def fits_in_memory(shape: tuple[int, ...], max_memory: int | None) -> bool:
    """Whether a scan of ``shape`` runs its per-scan stages in memory."""
    return math.prod(shape) * BYTES_PER_VOXEL <= memory_limit(max_memory)

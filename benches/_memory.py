"""Resident-memory probes for the loader benchmark (Linux; the figures are MiB).

Each workload runs in a process of its own, so the process's high-water mark is the
workload's. ``reset_peak()`` (``echo 5 > /proc/self/clear_refs``, Linux 4.0+) restarts the
high-water mark after set-up, so that the epoch's own peak can be told apart from the peak
of building the data (numpy arrays, the Arrow copy handed to the table, ...).
"""

from __future__ import annotations

import resource
import sys

MIB = 2**20


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mib() -> float | None:
    """Resident memory now."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def hwm_mib() -> float | None:
    """Peak resident memory since the process started or since the last ``reset_peak()``."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib / 1024


def reset_peak() -> bool:
    """Restart the peak (VmHWM) at the current resident size; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_mib(who: int) -> float:
    kib = resource.getrusage(who).ru_maxrss  # KiB on Linux, bytes on macOS
    return kib / MIB if sys.platform == "darwin" else kib / 1024


def self_peak_mib() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss``: the process's peak resident memory."""
    return _maxrss_mib(resource.RUSAGE_SELF)


def children_peak_mib() -> float:
    """``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the peak of the largest child process that has
    ended and been waited for (DataLoader workers, once shut down). It counts the shared-memory
    pages a worker touched, so a table mapped from shared memory shows in every worker."""
    return _maxrss_mib(resource.RUSAGE_CHILDREN)

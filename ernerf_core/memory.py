"""Resident memory of this process, for stage manifests (does a long render stay flat?)."""

from __future__ import annotations

import os
import resource
import sys


def current_rss_mb() -> float | None:
    """Resident set size now, in MB (None where /proc is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MB (ru_maxrss: KB on Linux, bytes on macOS).

    Never below :func:`current_rss_mb`: ru_maxrss and /proc/self/statm come from the kernel's
    approximate per-CPU counters, read at different times; a peak 0.2 MB below an earlier
    sample of the current size was seen.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10
    return max(peak_mb, current_rss_mb() or 0.0)

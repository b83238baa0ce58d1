"""Resident memory of this process: now, its peak, resetting the peak (Linux /proc), and
the peak a block of code adds (`peak_during`, what every memory row measures)."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass

MB = 1024 * 1024


def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss() -> int:
    """Resident set size of this process in bytes (0 where /proc is unavailable)."""
    kb = _status_kb("VmRSS")
    return (kb or 0) * 1024


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (VmHWM, else getrusage)."""
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb * 1024
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


@dataclass
class Peak:
    """Resident memory around a block of code, in bytes."""

    base: int = 0  # RSS when the block started
    peak: int = 0  # peak RSS while it ran
    exact: bool = False  # False where the peak could not be reset (it may hold older spikes)

    @property
    def added(self) -> int:
        return self.peak - self.base


@contextlib.contextmanager
def peak_during() -> Iterator[Peak]:
    """`with peak_during() as mem: work()`: mem.added is the memory work() added at its
    peak. Run it in a fresh process (`peak_rss_subprocess`), after the set-up that must
    not count (imports, inputs, a warm-up call)."""
    mem = Peak(exact=reset_peak_rss())
    mem.base = current_rss()
    yield mem
    mem.peak = peak_rss()

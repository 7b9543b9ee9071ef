"""How much memory and CPU a process uses: one sampler, read with psutil at most once per
interval, by one thread (the loop thread, or the watchdog's)."""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

__all__ = ["ProcessSampler", "Usage"]


class Usage(NamedTuple):
    """A process's memory (bytes of RSS) and CPU (percent of one core), as last sampled."""

    rss: int | None = None
    cpu: float | None = None


class ProcessSampler:
    """Samples the RSS and CPU of process ``pid`` (default: this one), at most once per
    ``every`` seconds; with ``tree=True`` the RSS is that of the process and all its
    descendants (the CPU stays the process's own).

    Not thread-safe: one thread samples. A failed read gives ``Usage()`` and is never raised.
    """

    def __init__(self, pid: int | None = None, *, tree: bool = False, every: float = 1.0) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.tree = tree
        self.every = every
        #: The ``psutil.Process`` read, made on first use (tests may put a stand-in here).
        self.process: Any = None
        #: The largest RSS sampled so far, or ``None``.
        self.peak: int | None = None
        self._at = float("-inf")
        self._last = Usage()
        self._cpu_started = False

    def attach(self) -> bool:
        """Find the process now; whether it exists (and may be read)."""
        if self.process is None:
            try:
                import psutil

                self.process = psutil.Process(self.pid)
            except Exception:
                return False
        return True

    def sample(self, now: float | None = None) -> Usage:
        """The usage read now, or the last one when read less than ``every`` seconds before
        ``now`` (default: ``time.monotonic()``, the clock the interval is told by)."""
        if now is None:
            now = time.monotonic()
        if now - self._at < self.every:
            return self._last
        self._at = now
        try:
            self._last = self._read()
        except Exception:
            self._last = Usage()
        rss = self._last.rss
        if rss is not None and (self.peak is None or rss > self.peak):
            self.peak = rss
        return self._last

    def rss(self, now: float | None = None) -> int | None:
        """The RSS of :meth:`sample`."""
        return self.sample(now).rss

    def _read(self) -> Usage:
        if not self.attach():
            return Usage()
        process = self.process
        rss = int(process.memory_info().rss)
        if self.tree:
            rss += _descendants_rss(process)
        cpu: float | None = None
        try:
            if self._cpu_started:
                cpu = float(process.cpu_percent(None))
            else:
                self._cpu_started = True
                process.cpu_percent(None)  # the first call only starts the count
        except Exception:  # memory without CPU is still worth showing
            cpu = None
        return Usage(rss, cpu)


def _descendants_rss(process: Any) -> int:
    """The RSS of ``process``'s descendants (those that vanish meanwhile count nothing)."""
    total = 0
    for child in process.children(recursive=True):
        try:
            total += int(child.memory_info().rss)
        except Exception:
            continue
    return total

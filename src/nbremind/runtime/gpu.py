"""The GPUs this process uses, through NVIDIA's management library (NVML).

The library is the ``pynvml`` module of ``nvidia-ml-py`` (the optional extra ``gpu``),
imported on the first reading (never by ``import nbremind``) on the loop thread, which is
the only thread that reads a session's sampler. NVML is initialised once; when that fails
(no library, no driver, no GPU) the sampler says why (:meth:`GpuSampler.why_not`) and
reads nothing more: ``--gpu-mem`` and GPU-idle stalls then do nothing.

*This process's devices* are those on which NVML lists this process's id (``os.getpid()``)
among the compute or graphics processes. On them ``used`` is the memory NVML gives for this
process (once per device: the larger of its compute and graphics entries), ``total`` their
memory, and ``util`` the highest utilisation among them: a GPU-idle stall needs every device
this process uses to be idle. A process that uses no device has a reading with no figures
(``GpuReading(None, None, None, 0)``), so a GPU that is not this process's never counts as
idle work. A sampler given ``pids`` counts those processes instead (a command's process
tree: the command, not nbremind's own process, uses the GPU). Limitation: NVML lists process ids as
the host sees them, so in a container with its own process-id namespace this process is
usually not found (no device).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol, cast

from ..core.log import logger
from ..core.notice import format_size
from ..core.thresholds import GpuReading

__all__ = ["NO_LIBRARY", "GpuSampler", "Nvml"]

#: Why there is no reading when ``pynvml`` cannot be imported.
NO_LIBRARY = "no NVIDIA management library: pip install 'nbremind[gpu]'"
_NONE_HERE = "--gpu-mem and GPU-idle stalls do nothing here"


class Nvml(Protocol):
    """The functions of ``pynvml`` nbremind calls (the module itself, or a fake in tests)."""

    def nvmlInit(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> Sequence[Any]: ...
    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Any) -> Sequence[Any]: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...


class GpuSampler:
    """Reads this process's GPUs at most once per ``every`` seconds (loop thread only).

    ``backend`` is ``pynvml`` (imported on the first reading) or an object with the same
    functions; ``pids`` gives the process ids whose GPU use counts (default: this process's).
    Never raises: a reading that fails is ``None`` (logged once).
    """

    def __init__(
        self,
        backend: Nvml | None = None,
        every: float = 1.0,
        pids: Callable[[], Collection[int]] | None = None,
    ) -> None:
        self.every = every
        self.pids = pids
        #: How many devices NVML sees on this machine (``None``: not initialised, or failed).
        self.devices_here: int | None = None
        self._nvml = backend
        self._handles: list[Any] = []
        self._totals: dict[int, int] = {}
        self._started = False
        self._why: str | None = None
        self._failing: str | None = None
        self._logged = False
        self._at: float | None = None
        self._last: GpuReading | None = None

    def reading(self, now: float) -> GpuReading | None:
        """The memory and utilisation of this process's devices at ``now`` (monotonic
        seconds; within ``every`` of the last reading: that one), or ``None`` where none
        answers."""
        at = self._at
        if at is not None and 0 <= now - at < self.every:
            return self._last
        self._at = now
        nvml = self._start()
        self._last = None if nvml is None else self._read(nvml)
        return self._last

    def why_not(self) -> str | None:
        """Why there is no reading (``None``: readings work, or none was asked yet)."""
        return self._why or self._failing

    def describe(self, now: float) -> str:
        """One line for ``%remind status``: ``1 device, 7.5 GB of 24.0 GB used by this
        process``, or ``none (why): --gpu-mem and GPU-idle stalls do nothing here``."""
        gpu = self.reading(now)
        why = self.why_not()
        if gpu is None:
            return f"none ({why or 'no reading'}): {_NONE_HERE}"
        if not gpu.devices:
            here = self.devices_here or 0
            return (
                f"{here} device{'s' if here != 1 else ''} here, none used by this process "
                "(yet): --gpu-mem and GPU-idle stalls apply once it uses one"
            )
        devices = f"{gpu.devices} device{'s' if gpu.devices != 1 else ''}"
        total = format_size(gpu.total or 0)
        if gpu.used is None:
            return f"{devices} ({total}); NVML does not tell the memory this process uses"
        return f"{devices}, {format_size(gpu.used)} of {total} used by this process"

    # -- NVML ---------------------------------------------------------------------------------
    def _start(self) -> Nvml | None:
        """NVML, initialised once; ``None`` (and :attr:`_why`) once that failed."""
        if self._started:
            return None if self._why is not None else self._nvml
        self._started = True
        try:
            nvml = self._nvml
            if nvml is None:
                nvml = self._nvml = cast(Nvml, importlib.import_module("pynvml"))
            nvml.nvmlInit()
            count = int(nvml.nvmlDeviceGetCount())
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except ImportError:
            self._why = NO_LIBRARY
            return None
        except Exception as exc:
            self._why = f"NVML: {_text(exc)}"
            return None
        self.devices_here = count
        if not count:
            self._why = "no GPU found"
            return None
        return nvml

    def _read(self, nvml: Nvml) -> GpuReading | None:
        used: int | None = None
        total = 0
        util: float | None = None
        devices = 0
        try:
            wanted = {os.getpid()} if self.pids is None else set(self.pids())
            for index, handle in enumerate(self._handles):
                mine = [
                    p
                    for p in (
                        *nvml.nvmlDeviceGetComputeRunningProcesses(handle),
                        *nvml.nvmlDeviceGetGraphicsRunningProcesses(handle),
                    )
                    if p.pid in wanted
                ]
                if not mine:
                    continue
                devices += 1
                known: dict[int, int] = {}  # a process in both lists is counted once
                for p in mine:
                    if p.usedGpuMemory is not None:
                        known[p.pid] = max(known.get(p.pid, 0), int(p.usedGpuMemory))
                if known:
                    used = (used or 0) + sum(known.values())
                size = self._totals.get(index)
                if size is None:
                    size = self._totals[index] = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
                total += size
                busy = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                util = busy if util is None else max(util, busy)
        except Exception as exc:
            self._failing = f"NVML: {_text(exc)}"
            if not self._logged:
                self._logged = True
                logger().warning("reading the GPUs failed (%s); later readings may too", exc)
            return None
        self._failing = None
        if not devices:
            return GpuReading(None, None, None, 0)
        return GpuReading(used, total, util, devices)


def _text(exc: BaseException) -> str:
    """An exception's words, never raising (NVML's errors are worded by their code)."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    return text or type(exc).__name__

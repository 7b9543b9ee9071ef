"""The GPU sampler with a fake of the NVML functions it calls, then in a session on a fake
clock: ``gpu_mem`` crossings and GPU-idle stalls; and the real ``pynvml`` where installed."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from _captured import run_for
from nbremind import remind
from nbremind.core.thresholds import GpuReading
from nbremind.runtime.gpu import NO_LIBRARY, GpuSampler
from nbremind.testing import CapturedNotices, FakeClock

PID = os.getpid()
OTHER = PID + 100_000
GB = 10**9


class NVMLError(Exception):
    """What pynvml raises (its text is the error's name)."""


@dataclass
class FakeNvml:
    """The pynvml functions nbremind calls, recording each call and its arguments.

    ``processes[i]`` are device i's compute processes ``(pid, used bytes)``, ``graphics[i]``
    its graphics ones; ``util[i]`` its utilisation; ``totals[i]`` its memory."""

    totals: list[int] = field(default_factory=lambda: [24 * GB])
    processes: dict[int, list[tuple[int, int | None]]] = field(default_factory=dict)
    graphics: dict[int, list[tuple[int, int | None]]] = field(default_factory=dict)
    util: dict[int, float] = field(default_factory=dict)
    init_error: BaseException | None = None
    fail: BaseException | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def nvmlInit(self) -> None:
        self.calls.append(("nvmlInit",))
        if self.init_error is not None:
            raise self.init_error

    def nvmlDeviceGetCount(self) -> int:
        self.calls.append(("nvmlDeviceGetCount",))
        return len(self.totals)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self.calls.append(("nvmlDeviceGetHandleByIndex", index))
        return f"handle-{index}"

    def _procs(self, table: dict[int, list[tuple[int, int | None]]], handle: str) -> list[Any]:
        if self.fail is not None:
            raise self.fail
        index = int(handle.split("-")[1])
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in table.get(index, [])]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[Any]:
        self.calls.append(("nvmlDeviceGetComputeRunningProcesses", handle))
        return self._procs(self.processes, handle)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: str) -> list[Any]:
        self.calls.append(("nvmlDeviceGetGraphicsRunningProcesses", handle))
        return self._procs(self.graphics, handle)

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        self.calls.append(("nvmlDeviceGetMemoryInfo", handle))
        index = int(handle.split("-")[1])
        total = self.totals[index]
        return SimpleNamespace(total=total, used=total // 2, free=total - total // 2)

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Any:
        self.calls.append(("nvmlDeviceGetUtilizationRates", handle))
        index = int(handle.split("-")[1])
        return SimpleNamespace(gpu=self.util.get(index, 0), memory=0)

    def own(self, used: int, util: float, device: int = 0) -> None:
        """This process uses ``used`` bytes on ``device``, which is ``util`` % busy."""
        self.processes[device] = [(OTHER, 3 * GB), (PID, used)]
        self.util[device] = util


def two_devices() -> FakeNvml:
    nvml = FakeNvml(totals=[24 * GB, 16 * GB])
    nvml.processes = {0: [(OTHER, 3 * GB)], 1: [(PID, int(7.5 * GB))]}
    nvml.util = {0: 99, 1: 87}
    return nvml


# -- readings ------------------------------------------------------------------------------------


def test_a_reading_covers_the_devices_this_process_uses_with_these_calls() -> None:
    nvml = two_devices()
    sampler = GpuSampler(nvml)

    assert sampler.reading(100.0) == GpuReading(int(7.5 * GB), 16 * GB, 87.0, 1)
    assert nvml.calls == [
        ("nvmlInit",),
        ("nvmlDeviceGetCount",),
        ("nvmlDeviceGetHandleByIndex", 0),
        ("nvmlDeviceGetHandleByIndex", 1),
        ("nvmlDeviceGetComputeRunningProcesses", "handle-0"),
        ("nvmlDeviceGetGraphicsRunningProcesses", "handle-0"),
        ("nvmlDeviceGetComputeRunningProcesses", "handle-1"),
        ("nvmlDeviceGetGraphicsRunningProcesses", "handle-1"),
        ("nvmlDeviceGetMemoryInfo", "handle-1"),
        ("nvmlDeviceGetUtilizationRates", "handle-1"),
    ]
    assert sampler.why_not() is None and sampler.devices_here == 2


def test_readings_come_at_most_once_per_every_seconds_on_the_callers_clock() -> None:
    nvml = two_devices()
    sampler = GpuSampler(nvml, every=1.0)
    first = sampler.reading(100.0)
    calls = len(nvml.calls)

    nvml.util[1] = 12
    assert sampler.reading(100.9) is first  # within a second: the last reading, no call
    assert len(nvml.calls) == calls
    again = sampler.reading(101.0)
    assert again is not None and again.util == 12.0
    # init and each device's total are read once; the processes and utilisation each time
    assert nvml.calls[calls:] == [
        ("nvmlDeviceGetComputeRunningProcesses", "handle-0"),
        ("nvmlDeviceGetGraphicsRunningProcesses", "handle-0"),
        ("nvmlDeviceGetComputeRunningProcesses", "handle-1"),
        ("nvmlDeviceGetGraphicsRunningProcesses", "handle-1"),
        ("nvmlDeviceGetUtilizationRates", "handle-1"),
    ]


def test_several_devices_add_up_and_the_busiest_tells_the_utilisation() -> None:
    nvml = FakeNvml(totals=[24 * GB, 16 * GB, 8 * GB])
    nvml.processes = {0: [(PID, 2 * GB)], 2: [(PID, 1 * GB)]}
    nvml.graphics = {0: [(PID, 2 * GB)]}  # the same memory, seen from both kinds of context
    nvml.util = {0: 3, 1: 100, 2: 40}

    assert GpuSampler(nvml).reading(0.0) == GpuReading(3 * GB, 32 * GB, 40.0, 2)


def test_given_pids_their_use_adds_up_each_process_counted_once_per_device() -> None:
    nvml = FakeNvml(totals=[24 * GB, 16 * GB])
    nvml.processes = {0: [(101, 2 * GB), (102, 1 * GB), (PID, 5 * GB)], 1: [(OTHER, GB)]}
    nvml.graphics = {0: [(101, 2 * GB)]}
    nvml.util = {0: 30, 1: 100}
    sampler = GpuSampler(nvml, pids=lambda: [101, 102])  # a command's process tree

    assert sampler.reading(0.0) == GpuReading(3 * GB, 24 * GB, 30.0, 1)


def test_a_process_on_no_device_has_a_reading_without_figures() -> None:
    nvml = FakeNvml()
    nvml.processes = {0: [(OTHER, 3 * GB)]}
    nvml.util = {0: 0}  # another process's idle GPU is not this one's idle work
    sampler = GpuSampler(nvml)

    assert sampler.reading(0.0) == GpuReading(None, None, None, 0)
    assert sampler.why_not() is None
    assert sampler.describe(5.0) == (
        "1 device here, none used by this process (yet): "
        "--gpu-mem and GPU-idle stalls apply once it uses one"
    )


def test_memory_nvml_does_not_tell_is_none_and_the_rest_is_given() -> None:
    nvml = FakeNvml()
    nvml.processes = {0: [(PID, None)]}  # as on Windows (WDDM)
    nvml.util = {0: 55}

    sampler = GpuSampler(nvml)
    assert sampler.reading(0.0) == GpuReading(None, 24 * GB, 55.0, 1)
    assert (
        sampler.describe(0.5)
        == "1 device (24.0 GB); NVML does not tell the memory this process uses"
    )


def test_describe_says_what_this_process_uses() -> None:
    nvml = FakeNvml()
    nvml.own(int(7.5 * GB), 87)
    assert GpuSampler(nvml).describe(0.0) == "1 device, 7.5 GB of 24.0 GB used by this process"


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (ImportError("No module named 'pynvml'"), NO_LIBRARY),
        (NVMLError("Driver Not Loaded"), "NVML: Driver Not Loaded"),
        (NVMLError(), "NVML: NVMLError"),
    ],
)
def test_a_failed_init_is_remembered_and_never_retried(error: BaseException, why: str) -> None:
    nvml = FakeNvml(init_error=error)
    sampler = GpuSampler(nvml)

    for second in range(10):
        assert sampler.reading(float(second)) is None
    assert nvml.calls == [("nvmlInit",)]
    assert sampler.why_not() == why
    assert sampler.describe(20.0) == f"none ({why}): --gpu-mem and GPU-idle stalls do nothing here"


def test_no_device_at_all_is_said() -> None:
    nvml = FakeNvml(totals=[])
    sampler = GpuSampler(nvml)
    assert sampler.reading(0.0) is None
    assert sampler.reading(5.0) is None
    assert nvml.calls == [("nvmlInit",), ("nvmlDeviceGetCount",)]
    assert sampler.why_not() == "no GPU found"


def test_without_the_library_the_default_backend_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # an import of it raises ImportError
    sampler = GpuSampler()
    assert sampler.reading(0.0) is None
    assert sampler.why_not() == "no NVIDIA management library: pip install 'nbremind[gpu]'"


def test_a_call_failing_mid_run_gives_none_is_logged_once_and_readings_resume(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nvml = FakeNvml()
    nvml.own(2 * GB, 50)
    sampler = GpuSampler(nvml)
    assert sampler.reading(0.0) is not None

    nvml.fail = NVMLError("GPU is lost")
    with caplog.at_level(logging.WARNING, logger="nbremind"):
        assert sampler.reading(1.0) is None
        assert sampler.reading(2.0) is None
    assert sampler.why_not() == "NVML: GPU is lost"
    assert [r.getMessage() for r in caplog.records] == [
        "reading the GPUs failed (GPU is lost); later readings may too"
    ]
    nvml.fail = None
    assert sampler.reading(3.0) == GpuReading(2 * GB, 24 * GB, 50.0, 1)
    assert sampler.why_not() is None


def test_an_odd_process_entry_gives_none_and_never_raises() -> None:
    class Broken(FakeNvml):
        def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[Any]:
            return [object()]  # no pid

    assert GpuSampler(Broken()).reading(0.0) is None


# -- a session on a fake clock -------------------------------------------------------------------


def gpu_session(cap: CapturedNotices, nvml: FakeNvml) -> None:
    cap.session.readings.gpu_sampler = GpuSampler(nvml, every=1.0)


def test_gpu_mem_size_notifies_once_per_crossing(cap: CapturedNotices, clock: FakeClock) -> None:
    nvml = FakeNvml()
    nvml.own(3 * GB, 90)
    gpu_session(cap, nvml)
    with remind("train", gpu_mem="4GB") as task:
        run_for(cap, clock, 30)
        assert cap.titles() == []
        assert (task.gpu_mem, task.gpu_util) == (3 * GB, 90.0)
        nvml.own(int(7.5 * GB), 90)
        run_for(cap, clock, 30)
        assert cap.titles() == ["⚠ train GPU memory 7.5 GB"]
        nvml.own(2 * GB, 90)  # back below, then above again: a second crossing
        run_for(cap, clock, 10)
        nvml.own(5 * GB, 90)
        run_for(cap, clock, 30)
    assert cap.titles() == [
        "⚠ train GPU memory 7.5 GB",
        "⚠ train GPU memory 5.0 GB",
        "✓ train finished",
    ]
    assert [n.event for n in cap.notices] == ["memory", "memory", "success"]


def test_gpu_mem_percent_is_of_the_devices_memory(cap: CapturedNotices, clock: FakeClock) -> None:
    nvml = FakeNvml()  # 24 GB: 50% is 12 GB
    nvml.own(11 * GB, 90)
    gpu_session(cap, nvml)
    with remind("train", gpu_mem="50%"):
        run_for(cap, clock, 30)
        assert cap.titles() == []
        nvml.own(13 * GB, 90)
        run_for(cap, clock, 30)
    assert cap.titles() == ["⚠ train GPU memory 13.0 GB", "✓ train finished"]


def test_the_sampler_follows_the_ticks_clock(cap: CapturedNotices, clock: FakeClock) -> None:
    nvml = FakeNvml()
    nvml.own(3 * GB, 90)
    gpu_session(cap, nvml)
    with remind("train", gpu_mem="4GB"):
        run_for(cap, clock, 10, step=0.25)  # 40 ticks in 10 s of the fake clock
    reads = [c for c in nvml.calls if c[0] == "nvmlDeviceGetUtilizationRates"]
    assert 10 <= len(reads) <= 11  # once a second of that clock, not once a tick


def test_gpu_idle_for_the_stall_time_is_a_stall_then_moving_again(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    nvml = FakeNvml()
    nvml.own(6 * GB, 2)  # below 5 %
    gpu_session(cap, nvml)
    with remind("train", stall="10m"):
        run_for(cap, clock, 590)
        assert cap.titles() == []
        run_for(cap, clock, 10)
        assert cap.titles() == ["⏸ train stalled: GPU idle (< 5 %) for 10 min"]
        run_for(cap, clock, 240)
        nvml.own(6 * GB, 80)
        run_for(cap, clock, 10)
        assert cap.titles()[1:] == ["▶ train moving again after 14 min"]
        run_for(cap, clock, 120)
    assert cap.events() == ["stall", "stall", "success"]


def test_a_gpu_that_stays_busy_never_stalls(cap: CapturedNotices, clock: FakeClock) -> None:
    nvml = FakeNvml()
    nvml.own(6 * GB, 5)  # 5 % is not idle
    gpu_session(cap, nvml)
    with remind("train", stall="10m"):
        run_for(cap, clock, 1800)
    assert cap.titles() == ["✓ train finished"]


def test_a_gpu_this_process_does_not_use_is_not_its_idle_work(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    nvml = FakeNvml()
    nvml.processes = {0: [(OTHER, 3 * GB)]}
    nvml.util = {0: 0}
    gpu_session(cap, nvml)
    with remind("train", stall="10m", gpu_mem="1GB"):
        run_for(cap, clock, 1800)
    assert cap.titles() == ["✓ train finished"]


def test_without_a_gpu_the_options_are_accepted_and_nothing_fires(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    nvml = FakeNvml(init_error=NVMLError("NVML Shared Library Not Found"))
    gpu_session(cap, nvml)
    with remind("train", stall="10m", gpu_mem="50%") as task:
        run_for(cap, clock, 1800)
        assert (task.gpu_mem, task.gpu_util) == (None, None)
    assert nvml.calls == [("nvmlInit",)]
    (end,) = cap.notices
    assert end.title == "✓ train finished"
    assert (
        "stall never applied: no progress to watch (advance(), track(), a tqdm bar) and no GPU"
        in end.body
    )


# -- the real library, where it is installed -----------------------------------------------------


def test_the_real_pynvml_answers_or_says_why() -> None:
    if importlib.util.find_spec("pynvml") is None:
        pytest.skip("pynvml is not installed (pip install 'nbremind[gpu]')")
    import pynvml

    try:
        pynvml.nvmlInit()
        expected = None
    except pynvml.NVMLError as exc:
        expected = f"NVML: {exc}"  # the library is here, the driver or GPU is not
    sampler = GpuSampler()
    reading = sampler.reading(0.0)
    if expected is None:  # a machine with a GPU and its driver
        assert sampler.devices_here is not None
        assert sampler.why_not() in (None, "no GPU found")
        assert reading is None or reading.devices >= 0
    else:
        assert reading is None
        assert sampler.why_not() == expected
        assert sampler.describe(1.0).startswith(f"none ({expected}): ")


def test_pynvml_is_imported_only_by_a_reading() -> None:
    if importlib.util.find_spec("pynvml") is None:
        pytest.skip("pynvml is not installed (pip install 'nbremind[gpu]')")
    code = (
        "import sys, nbremind\n"
        "from nbremind.runtime.gpu import GpuSampler\n"
        "sampler = GpuSampler()\n"
        "before = 'pynvml' in sys.modules\n"
        "sampler.reading(0.0)\n"
        "print(before, 'pynvml' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["False", "True"]


# -- nbremind doctor -----------------------------------------------------------------------------


def test_doctor_says_whether_nvml_answers_here() -> None:
    from nbremind.doctor import check_gpu

    none = check_gpu(GpuSampler(FakeNvml(init_error=NVMLError("Driver Not Loaded"))))
    assert (none.name, none.ok) == ("gpu", None)
    assert none.summary == (
        "none (NVML: Driver Not Loaded): --gpu-mem and GPU-idle stalls do nothing here"
    )
    two = check_gpu(GpuSampler(two_devices()))
    assert two.summary == (
        "NVML answers, 2 devices: --gpu-mem and GPU-idle stalls watch the devices a task's "
        "process uses"
    )
    # with no sampler given: this machine's own answer
    here = GpuSampler()
    here.reading(0.0)
    summary = check_gpu().summary
    why = here.why_not()
    assert summary.startswith(f"none ({why}): " if why else "NVML answers, ")

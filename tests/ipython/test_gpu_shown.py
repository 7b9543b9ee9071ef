"""The GPU figures where people look: a running task's snapshot, panel row and status line
(an injected sampler), the panel's GPU column in Chromium, and ``%remind status`` in a real
kernel (this machine's own answer, then an injected sampler's)."""

from __future__ import annotations

import time
from importlib.resources import files
from typing import Any

import pytest

from _kernel import Kernel, KernelFactory
from _widgets import comm_tap, running_row
from nbremind import Session, remind
from nbremind.core.config import Config
from nbremind.core.thresholds import GpuReading
from nbremind.ipython.panel_rows import ROW_FIELDS, RowBuilder, gpu_text, listed_tasks
from nbremind.ipython.status_line import line_text
from nbremind.runtime.gpu import GpuSampler
from nbremind.testing import FakeClock

GB = 10**9
AT = {name: i for i, name in enumerate(ROW_FIELDS)}


class FakeSampler:
    """Gives the reading a test sets, and counts the times it is asked."""

    def __init__(self, reading: GpuReading | None) -> None:
        self.value = reading
        self.asked: list[float] = []

    def reading(self, now: float) -> GpuReading | None:
        self.asked.append(now)
        return self.value

    def why_not(self) -> str | None:
        return None if self.value is not None else "NVML: Driver Not Loaded"


def gpu_row(session: Session) -> list[str]:
    rows = RowBuilder(session.last_notice).rows(listed_tasks(session.tasks(), 10))
    return [row[AT["gpu"]] for row in rows]


def test_a_running_tasks_snapshot_row_and_line_show_the_gpu_figures() -> None:
    clock = FakeClock()
    session = Session(Config(channels=("null",)), clock=clock, tick_interval=None)
    sampler = FakeSampler(GpuReading(int(7.5 * GB), 24 * GB, 87.0, 1))
    session.readings.gpu_sampler = sampler
    start = clock.monotonic()
    try:
        with remind("train", session=session) as task:
            assert gpu_text(task) == "" and gpu_row(session) == [""]  # not read yet
            clock.advance(1.0)
            session.tick()
            snapshot = task.snapshot()
            assert (snapshot.gpu_mem, snapshot.gpu_util) == (int(7.5 * GB), 87.0)
            assert gpu_row(session) == ["7.5 GB · 87 %"]
            assert line_text(task) == "▶ train · 1.0 s · GPU 7.5 GB · 87 %"
            # a new reading rebuilds the row
            sampler.value = GpuReading(int(9.1 * GB), 24 * GB, 40.0, 1)
            clock.advance(1.0)
            session.tick()
            assert gpu_row(session) == ["9.1 GB · 40 %"]
            assert sampler.asked == [start + 1, start + 2]  # once a tick, on its clock
        # an ended task shows no GPU figures: they were the running process's
        assert gpu_row(session) == [""]
        assert "GPU" not in line_text(task)
    finally:
        session.close()


def test_a_process_on_no_device_shows_no_gpu_figures() -> None:
    clock = FakeClock()
    session = Session(Config(channels=("null",)), clock=clock, tick_interval=None)
    session.readings.gpu_sampler = FakeSampler(GpuReading(None, None, None, 0))
    try:
        with remind("train", session=session) as task:
            clock.advance(1.0)
            session.tick()
            assert (task.snapshot().gpu_mem, task.snapshot().gpu_util) == (None, None)
            assert gpu_row(session) == [""]
            assert line_text(task) == "▶ train · 1.0 s"
    finally:
        session.close()


# -- the panel's GPU column in Chromium -----------------------------------------------------------


def panel_row(task_id: str, gpu: str) -> list[Any]:
    return running_row(task_id, elapsed="2.0 s", gpu=gpu)


#: The GPU column's cells: their tag, text and whether they are shown.
GPU_CELLS = """() => [...document.querySelectorAll('.nbremind-tasks .nbremind-col-gpu')].map(
  (c) => [c.tagName, c.textContent, getComputedStyle(c).display !== 'none'])"""


@pytest.mark.browser
def test_the_panel_shows_a_gpu_column_only_while_a_row_has_gpu_figures(widget_page: Any) -> None:
    page = widget_page
    page.add_style_tag(content=(files("nbremind.ipython") / "static" / "nbremind.css").read_text())
    state = {
        "view": "panel",
        "fields": list(ROW_FIELDS),
        "rows": [panel_row("t-1", "7.5 GB · 87 %"), panel_row("t-2", "")],
        "channels": [],
        "usage": ["1.2 GB", "97%"],
    }
    page.evaluate("(state) => { window.m = openModel(state); renderView(window.m); }", state)
    assert page.evaluate(GPU_CELLS) == [
        ["TH", "GPU", True],
        ["TD", "7.5 GB · 87 %", True],
        ["TD", "", True],
    ]
    page.evaluate(
        "(rows) => window.__models[window.m].update({ rows })",
        [panel_row("t-1", ""), panel_row("t-2", "")],
    )
    assert page.evaluate(GPU_CELLS) == [["TH", "GPU", False], ["TD", "", False], ["TD", "", False]]


# -- %remind status and the live status line in a real kernel --------------------------------------

LOAD = "%load_ext nbremind\nimport nbremind\nnbremind.configure(channels=['memory'])\n"

#: A fake of the pynvml functions nbremind calls, in the kernel: this process uses 7.5 GB of
#: device 0's 24 GB, at 87 %.
INJECT = """
import os
from types import SimpleNamespace
from nbremind.runtime.gpu import GpuSampler

class FakeNvml:
    def nvmlInit(self): pass
    def nvmlDeviceGetCount(self): return 1
    def nvmlDeviceGetHandleByIndex(self, i): return i
    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=os.getpid(), usedGpuMemory=7_500_000_000)]
    def nvmlDeviceGetGraphicsRunningProcesses(self, h): return []
    def nvmlDeviceGetMemoryInfo(self, h): return SimpleNamespace(total=24_000_000_000)
    def nvmlDeviceGetUtilizationRates(self, h): return SimpleNamespace(gpu=87)

nbremind.get_session().readings.gpu_sampler = GpuSampler(FakeNvml())
"""


def gpu_lines(k: Kernel) -> list[str]:
    return [line for line in k.ok("%remind status").stdout.splitlines() if "GPU" in line]


@pytest.mark.kernel
def test_remind_status_says_what_the_gpu_options_do_on_this_machine(
    kernel_factory: KernelFactory,
) -> None:
    here = GpuSampler()  # the same interpreter and environment as the kernel's
    expected = here.describe(time.monotonic())
    why = here.why_not()
    k = kernel_factory()
    k.ok(LOAD)

    assert gpu_lines(k) == [f"  GPU: {expected}"]
    if why is not None:  # no GPU here (no library, no driver): the true reason, and what it means
        assert expected == f"none ({why}): --gpu-mem and GPU-idle stalls do nothing here"
        assert why.startswith(("no NVIDIA management library", "NVML: ")) or why == "no GPU found"
    # the options are accepted all the same, and the cell runs as a plain one
    r = k.ok("%%remind train --gpu-mem 50% --stall 10m\n40 + 2")
    assert r.result == "42"


@pytest.mark.kernel
def test_remind_status_and_the_live_line_show_this_processs_gpu(
    kernel_factory: KernelFactory,
) -> None:
    k = kernel_factory()
    k.ok(LOAD + INJECT)
    assert gpu_lines(k) == ["  GPU: 1 device, 7.5 GB of 24.0 GB used by this process"]

    with comm_tap(k) as tap:
        k.ok("%%remind train\nimport time\ntime.sleep(2.0)")
        tap.pump(1.0)
    [line] = [c for c, state in tap.opened().items() if state.get("view") == "status"]
    texts = [u["text"] for u in tap.updates(line) if "text" in u]
    running = [t for t in texts if t.startswith("▶ train")]
    assert running and running[-1].endswith(" · GPU 7.5 GB · 87 %"), texts
    assert texts[-1].startswith("✓ train finished in ") and "GPU" not in texts[-1]

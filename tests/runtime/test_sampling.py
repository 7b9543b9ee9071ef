"""The one process sampler: this process or another, alone or with its descendants, read at
most once per interval, never raising."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import psutil

from nbremind.runtime.sampling import ProcessSampler, Usage


class FakeProcess:
    def __init__(self, rss: int) -> None:
        self.rss = rss
        self.reads = 0
        self.fail = False

    def memory_info(self) -> SimpleNamespace:
        self.reads += 1
        if self.fail:
            raise OSError("process table unreadable")
        return SimpleNamespace(rss=self.rss)

    def cpu_percent(self, interval: object) -> float:
        return 12.5


def test_this_process_is_read_at_most_once_per_interval() -> None:
    sampler = ProcessSampler(every=1.0)
    first = sampler.sample(100.0)
    assert sampler.pid == os.getpid()
    assert first.rss is not None and first.rss > 0
    assert first.cpu is None  # the first read only starts the CPU count
    assert sampler.sample(100.5) is first
    second = sampler.sample(101.0)
    assert second.cpu is not None and second.cpu >= 0
    assert sampler.peak is not None and sampler.peak >= first.rss


def test_a_failed_read_gives_nothing_and_is_not_raised() -> None:
    sampler = ProcessSampler(every=1.0)
    process = sampler.process = FakeProcess(rss=2_000)
    assert sampler.sample(0.0) == Usage(2_000, None)
    assert sampler.sample(1.0) == Usage(2_000, 12.5)
    process.fail = True
    assert sampler.sample(2.0) == Usage()
    assert process.reads == 3
    assert sampler.peak == 2_000


def test_a_process_that_does_not_exist_is_not_found() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    sampler = ProcessSampler(child.pid)
    assert not sampler.attach()
    assert sampler.sample() == Usage()


def test_a_tree_counts_the_descendants() -> None:
    code = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
        "time.sleep(30)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        process = psutil.Process(parent.pid)
        for _ in range(100):
            if process.children(recursive=True):
                break
            time.sleep(0.05)
        alone = ProcessSampler(parent.pid).rss()
        tree = ProcessSampler(parent.pid, tree=True).rss()
        assert alone is not None and tree is not None
        assert tree > alone
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()

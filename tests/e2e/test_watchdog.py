"""The kernel-death watchdog, with real kernels, a real dunst, real scripts and a real HTTP
server: a process killed while a task runs gets that task recorded ``failed`` / ``process
died`` and notified within 5 s; a clean exit, or a death with nothing running, is silent;
the watchdog leaves with its process and costs next to no CPU."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from _desktop_bus import DesktopBus, poll
from _kernel import KernelFactory
from _processes import gone
from _servers import ScriptedHTTPServer

#: The issue's promise: from the kill to the notice.
NOTICE_WITHIN = 5.0


def _history() -> Any:
    from nbremind.store.runs import History

    history = History.open()
    assert history is not None, "the run history could not be opened"
    return history


def _runs(name: str) -> list[dict[str, Any]]:
    history = _history()
    try:
        rows: list[dict[str, Any]] = history.query(name=name)
        return rows
    finally:
        history.close()


def _watchdog_of(pid: int) -> psutil.Process | None:
    """The watchdog child of process ``pid``, once it runs."""
    try:
        children = psutil.Process(pid).children()
    except psutil.Error:
        return None
    for child in children:
        try:
            if "nbremind.watchdog" in child.cmdline():
                return child
        except psutil.Error:
            continue
    return None


def _watching(watchdog: psutil.Process) -> bool:
    """Whether the watchdog holds its pidfd (Linux): it has sampled the memory by then."""
    folder = Path(f"/proc/{watchdog.pid}/fd")
    for fd in folder.iterdir() if folder.is_dir() else ():
        try:
            if os.readlink(fd) == "anon_inode:[pidfd]":
                return True
        except OSError:
            continue
    return False


def _toast(bus: DesktopBus, seen: int, title: str, timeout: float) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next((n for n in bus.notifications()[seen:] if n["summary"] == title), None)

    try:
        return poll(find, timeout, f"a notification titled {title!r}")
    except TimeoutError:
        titles = [n["summary"] for n in bus.notifications()[seen:]]
        raise AssertionError(f"no toast {title!r} within {timeout:g} s; saw {titles}") from None


def _running_row(name: str, pid: int) -> dict[str, Any] | None:
    return next((r for r in _runs(name) if r["state"] == "running" and r["pid"] == pid), None)


@pytest.mark.kernel
@pytest.mark.desktop
def test_sigkilled_kernel_reports_its_running_cell(
    desktop_bus: DesktopBus, kernel_factory: KernelFactory
) -> None:
    k = kernel_factory(env=desktop_bus.extra_env)
    k.ok("%load_ext nbremind\nimport nbremind\nnbremind.configure(channels=['desktop'])")
    pid = k.query("import os\nresult = os.getpid()")
    msg = k.execute("%%remind doomed\nimport time\nprint('started', flush=True)\ntime.sleep(120)")
    k.wait_for_output(msg, "started")
    watchdog = poll(lambda: _watchdog_of(pid), 15, "the kernel's watchdog to start")
    poll(lambda: _watching(watchdog), 15, "the watchdog to watch its kernel")
    poll(lambda: _running_row("doomed", pid), 15, "the running cell in the history")
    seen = len(desktop_bus.notifications())

    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    toast = _toast(desktop_bus, seen, "✗ doomed failed", NOTICE_WITHIN)
    assert time.monotonic() - killed <= NOTICE_WITHIN
    first = toast["body"].splitlines()[0]
    assert first.startswith("process died (SIGKILL)"), toast["body"]
    assert "last sampled RSS" in first, toast["body"]

    (run,) = [r for r in _runs("doomed") if r["pid"] == pid]
    assert run["state"] == "failed", run
    assert run["reason"].startswith("process died (SIGKILL)"), run
    assert run["end"] is not None and run["end"] >= run["start"], run
    poll(lambda: gone(watchdog.pid), 10, "the watchdog to exit after reporting")
    (run,) = [r for r in _runs("doomed") if r["pid"] == pid]
    assert run["notices"] == 1, run  # the watchdog's notice, counted once delivered


@pytest.mark.kernel
@pytest.mark.desktop
def test_clean_kernel_shutdown_is_silent_and_leaves_nothing(
    desktop_bus: DesktopBus, kernel_factory: KernelFactory
) -> None:
    k = kernel_factory(env=desktop_bus.extra_env)
    k.ok("%load_ext nbremind\nimport nbremind\nnbremind.configure(channels=['desktop'])")
    seen = len(desktop_bus.notifications())
    k.ok("%%remind quick\nx = 1")
    _toast(desktop_bus, seen, "✓ quick finished", 15)
    query = "import nbremind\nresult = nbremind.get_session().watchdog_pid"
    wd_pid = poll(lambda: k.query(query), 15, "the session to record its watchdog's pid")
    watchdog = psutil.Process(wd_pid)
    assert "nbremind.watchdog" in watchdog.cmdline()
    poll(lambda: _watching(watchdog), 15, "the watchdog to watch its kernel")

    # negligible CPU: a few seconds of watching a kernel that does nothing (after start-up)
    before = watchdog.cpu_times()
    time.sleep(3.0)  # the measured window, not a wait for a condition
    after = watchdog.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    assert used < 0.03, f"the watchdog used {used:.3f} s of CPU in 3 s (1 %: 0.03 s)"

    seen = len(desktop_bus.notifications())
    k.kc.stop_channels()
    k.km.shutdown_kernel()  # a shutdown request: the kernel exits cleanly
    poll(lambda: gone(wd_pid), 15, "the watchdog to exit with its kernel")
    late = [
        n
        for n in desktop_bus.notifications()[seen:]
        if "quick" in n["summary"] or "process died" in n["body"]
    ]
    assert late == []
    runs = _runs("quick")
    assert [r["state"] for r in runs] == ["succeeded"], runs


_SCRIPT = """
import sys, time
import nbremind
from nbremind import remind

nbremind.configure(channels=[sys.argv[1]])
with remind("etl", watchdog=True):
    session = nbremind.get_session()
    deadline = time.monotonic() + 30
    while session.watchdog_pid is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if sys.argv[2] == "finish":
        pass
    else:
        print("ready", session.watchdog_pid, flush=True)
        time.sleep(120)
print("ready", session.watchdog_pid, flush=True)
time.sleep(120)
"""


def _start_script(tmp_path: Path, url: str, mode: str) -> tuple[subprocess.Popen[bytes], int]:
    script = tmp_path / "etl.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    proc = subprocess.Popen(
        [sys.executable, str(script), url, mode], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(60)
    line = proc.stdout.readline().decode().split() if ready else []
    if line[:1] != ["ready"] or line[1:] == ["None"]:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"the script did not start its watchdog: {line}")
    return proc, int(line[1])


def test_script_opted_in_is_reported_when_killed(
    tmp_path: Path,
    http_server: ScriptedHTTPServer,
) -> None:
    proc, wd_pid = _start_script(tmp_path, http_server.url(), "kill")
    try:
        poll(lambda: _running_row("etl", proc.pid), 15, "the running block in the history")
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        (request,) = http_server.wait_for(1, NOTICE_WITHIN)
        assert time.monotonic() - killed <= NOTICE_WITHIN
    finally:
        proc.kill()
        proc.wait(10)
    body = request.body.decode()
    assert "✗ etl failed" in body, body
    assert "process died" in body, body
    (run,) = [r for r in _runs("etl") if r["pid"] == proc.pid]
    assert (run["state"], run["reason"].split(" (")[0]) == ("failed", "process died"), run
    poll(lambda: gone(wd_pid), 10, "the watchdog to exit after reporting")


def test_death_with_nothing_running_is_silent(
    tmp_path: Path,
    http_server: ScriptedHTTPServer,
) -> None:
    proc, wd_pid = _start_script(tmp_path, http_server.url(), "finish")
    try:
        poll(
            lambda: [r for r in _runs("etl") if r["state"] == "succeeded"],
            15,
            "the finished block in the history",
        )
        (finished,) = http_server.wait_for(1)  # the block's own notice
        assert "✓ etl finished" in finished.body.decode()
        sent = len(http_server.requests)
        proc.send_signal(signal.SIGKILL)
        poll(lambda: gone(wd_pid), 10, "the watchdog to exit with its process")
    finally:
        proc.kill()
        proc.wait(10)
    assert http_server.requests[sent:] == []
    assert [r["state"] for r in _runs("etl")] == ["succeeded"]


def test_watchdog_bad_arguments_exit_nonzero() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "nbremind.watchdog", "--pid", "x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "--pid" in run.stderr and "'x'" in run.stderr


@pytest.mark.kernel
def test_kernel_without_watchdog_when_turned_off(kernel_factory: KernelFactory) -> None:
    k = kernel_factory()
    k.ok(
        "%load_ext nbremind\nimport nbremind\n"
        "nbremind.configure(channels=['memory'], watchdog=False)"
    )
    pid = k.query("import os\nresult = os.getpid()")
    k.ok("%%remind quick\nx = 1")
    assert k.titles() == ["✓ quick finished"]  # the loop thread has run since the start
    assert k.query("import nbremind\nresult = nbremind.get_session().watchdog_pid") is None
    assert _watchdog_of(pid) is None


def test_remind_watchdog_must_be_a_bool() -> None:
    from nbremind import remind

    with pytest.raises(ValueError, match=r"remind\(\): watchdog 'yes' is not True or False"):
        remind("x", watchdog="yes")  # type: ignore[arg-type]

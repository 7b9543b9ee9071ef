"""The desktop channel against a real D-Bus session bus and a real notification daemon (dunst).

The channel's coroutines run on a private thread with its own asyncio loop, as in nbremind's
session. The script tests run nbremind the way a user's cron job would: a plain ``python``
process with the fixture's bus and display in its environment.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from _desktop_bus import DesktopBus, LoopThread, private_bus
from nbremind.channels import ChannelError, make_channel
from nbremind.channels.desktop import DesktopChannel
from nbremind.core.clock import SystemClock
from nbremind.core.notice import Notice
from nbremind.core.task import Task

pytestmark = pytest.mark.desktop

SEND_TIMEOUT = 10.0


def notice(title: str, body: str = "", urgency: str = "normal") -> Notice:
    task = Task("desktop-test", clock=SystemClock()).snapshot()
    event = "failure" if urgency == "critical" else "success"
    return Notice(f"{task.id}:{event}:0", event, title, body, urgency, time.time(), task)


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def on_desktop(desktop_bus: DesktopBus, monkeypatch: pytest.MonkeyPatch) -> DesktopBus:
    """This process talks to the fixture's bus and display, never the caller's."""
    for key, value in desktop_bus.extra_env.items():
        monkeypatch.setenv(key, value)
    return desktop_bus


def send(loop_thread: LoopThread, channel: DesktopChannel, n: Notice) -> None:
    loop_thread.run(asyncio.wait_for(channel.send(n), SEND_TIMEOUT), SEND_TIMEOUT + 5)


def test_registry_builds_the_desktop_channel() -> None:
    channel = make_channel("desktop")
    assert isinstance(channel, DesktopChannel)
    assert channel.name == "desktop"


def test_available_with_a_notification_daemon(
    on_desktop: DesktopBus, loop_thread: LoopThread
) -> None:
    channel = DesktopChannel()
    availability = loop_thread.run(channel.availability())
    assert availability.ok, availability.reason
    assert availability.reason == ""
    loop_thread.run(channel.close())


def test_delivers_title_body_and_normal_urgency(
    on_desktop: DesktopBus, loop_thread: LoopThread
) -> None:
    channel = DesktopChannel()
    title = unique("✓ train finished")
    body = 'Took 41 min\nloss=0.0312, "quoted" & <tagged>'
    send(loop_thread, channel, notice(title, body))

    seen = on_desktop.wait_for_notification(title)
    assert seen["body"] == body
    assert seen["app_name"] == "nbremind"
    assert seen["urgency"] == 1  # the spec's "normal" byte
    shown = on_desktop.wait_in_history(title)  # dunst itself received and displayed it
    assert shown["body"] == body
    assert shown["appname"] == "nbremind"
    loop_thread.run(channel.close())


def test_critical_urgency_is_byte_2_on_the_bus(
    on_desktop: DesktopBus, loop_thread: LoopThread
) -> None:
    channel = DesktopChannel()
    title = unique("✗ train failed")
    send(loop_thread, channel, notice(title, "ValueError: bad row 42", urgency="critical"))
    seen = on_desktop.wait_for_notification(title)
    assert seen["urgency"] == 2
    assert seen["body"] == "ValueError: bad row 42"
    loop_thread.run(channel.close())


def test_one_connection_is_reused_for_every_send(
    on_desktop: DesktopBus, loop_thread: LoopThread
) -> None:
    channel = DesktopChannel()
    assert loop_thread.run(channel.availability()).ok
    first, second = unique("first"), unique("second")
    send(loop_thread, channel, notice(first))
    send(loop_thread, channel, notice(second))
    senders = {on_desktop.wait_for_notification(t)["sender"] for t in (first, second)}
    assert len(senders) == 1, senders  # one DesktopNotifier, one D-Bus connection
    loop_thread.run(channel.close())


def test_no_session_bus_is_reported_quickly(
    monkeypatch: pytest.MonkeyPatch, loop_thread: LoopThread
) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    channel = DesktopChannel()
    started = time.monotonic()
    availability = loop_thread.run(channel.availability())
    assert time.monotonic() - started < 3
    assert not availability.ok
    assert availability.reason == "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"


def test_dead_bus_socket_is_reported_quickly(
    monkeypatch: pytest.MonkeyPatch, loop_thread: LoopThread, tmp_path: Path
) -> None:
    address = f"unix:path={tmp_path / 'no-bus-here'}"
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    channel = DesktopChannel()
    started = time.monotonic()
    availability = loop_thread.run(channel.availability())
    assert time.monotonic() - started < 3
    assert not availability.ok
    assert availability.reason.startswith(f"D-Bus session bus unreachable at {address}")
    assert "FileNotFoundError" in availability.reason


def test_bus_without_notification_daemon(
    bare_bus: str, monkeypatch: pytest.MonkeyPatch, loop_thread: LoopThread
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bare_bus)
    channel = DesktopChannel()
    started = time.monotonic()
    availability = loop_thread.run(channel.availability())
    assert time.monotonic() - started < 3
    assert not availability.ok
    assert availability.reason.startswith("no notification service on the session bus")


def test_activatable_notification_service_counts_as_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop_thread: LoopThread
) -> None:
    """Desktops may start their notification daemon on the first Notify (D-Bus activation)."""
    with private_bus(tmp_path / "bus", activatable=("org.freedesktop.Notifications",)) as address:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
        availability = loop_thread.run(DesktopChannel().availability())
    assert availability.ok, availability.reason


def test_failed_send_raises_the_real_reason_and_logs_nothing(
    bare_bus: str,
    monkeypatch: pytest.MonkeyPatch,
    loop_thread: LoopThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bare_bus)
    channel = DesktopChannel()
    # what earlier tests left for the garbage collector (a bus connection whose daemon went
    # away logs "Future exception was never retrieved" when collected) is not this send's
    gc.collect()
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="desktop_notifier")
    with pytest.raises(ChannelError) as info:
        send(loop_thread, channel, notice("nobody listens"))
    assert "org.freedesktop.DBus.Error.ServiceUnknown" in str(info.value)
    assert info.value.retryable  # a daemon may start later
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []  # desktop-notifier's "Notification failed" stayed quiet


def test_failed_send_prints_nothing_in_a_plain_process(tmp_path: Path) -> None:
    """Without pytest's log handlers, Python's last-resort handler would print the warning."""
    script = textwrap.dedent(
        """
        import asyncio, time
        from nbremind.channels import ChannelError
        from nbremind.channels.desktop import DesktopChannel
        from nbremind.core.notice import Notice
        from nbremind.core.task import Task
        from nbremind.core.clock import SystemClock

        async def main():
            task = Task("t", clock=SystemClock()).snapshot()
            n = Notice("x", "success", "t", "b", "normal", time.time(), task)
            try:
                await DesktopChannel().send(n)
            except ChannelError as exc:
                print("ChannelError:", exc)
        asyncio.run(main())
        """
    )
    env = {"DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path / 'gone'}", "PATH": "/usr/bin"}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ChannelError: desktop notification failed: ")
    assert "FileNotFoundError" in result.stdout
    assert result.stderr == ""


# -- nbremind end to end, from a plain script --------------------------------------------------


def run_script(bus: DesktopBus, tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(path)], env=bus.env, capture_output=True, text=True, timeout=60
    )


def test_script_success_shows_a_toast(desktop_bus: DesktopBus, tmp_path: Path) -> None:
    result = run_script(
        desktop_bus,
        tmp_path,
        """
        import sys
        import nbremind
        nbremind.configure(channels=["desktop"])
        with nbremind.remind("etl-script"):
            pass
        assert "IPython" not in sys.modules
        """,
    )
    assert result.returncode == 0, result.stderr
    seen = desktop_bus.wait_for_notification("✓ etl-script finished")
    assert seen["urgency"] == 1
    assert seen["app_name"] == "nbremind"
    assert "Took" in seen["body"]


def test_script_failure_keeps_traceback_and_shows_a_toast(
    desktop_bus: DesktopBus, tmp_path: Path
) -> None:
    result = run_script(
        desktop_bus,
        tmp_path,
        """
        import nbremind
        nbremind.configure(channels=["desktop"])

        def load_rows():
            raise ValueError("bad row 42")

        with nbremind.remind("etl-broken"):
            load_rows()
        """,
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    start = lines.index("Traceback (most recent call last):")
    end = lines.index("ValueError: bad row 42", start)
    traceback = lines[start : end + 1]
    assert any("in load_rows" in line for line in traceback)
    assert any('raise ValueError("bad row 42")' in line for line in traceback)
    assert not any("nbremind/" in line for line in traceback), traceback  # only user frames
    seen = desktop_bus.wait_for_notification("✗ etl-broken failed")
    assert "ValueError: bad row 42" in seen["body"]
    assert seen["urgency"] == 2

"""Toasts that lead back to the work, against real dunst: the click (the default action),
the **Interrupt** and **Snooze 1 h** buttons, the sound hint; and a notification server
without the ``actions`` capability (a fake one on a private bus), which gets no buttons.

The channel is given a recorder of :class:`ToastActions`; dunst's context menu (its
``dmenu``, see ``_desktop_bus``) picks the action, as a user does. What the actions
themselves do is in ``tests/runtime/test_toast_actions.py`` and the kernel tests.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from _desktop_bus import DesktopBus, FakeNotificationServer, LoopThread, poll
from nbremind.channels.desktop import NO_BUTTONS, SNOOZE_SECONDS, DesktopChannel
from nbremind.core.clock import SystemClock
from nbremind.core.notice import Notice
from nbremind.core.task import Task, TaskState

pytestmark = pytest.mark.desktop

SEND_TIMEOUT = 10.0


class Recorder:
    """Records what the toasts ask for; ``sound`` is what :meth:`sound` answers."""

    def __init__(self, sound: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.wants_sound = sound

    def interrupt(self, task_id: str) -> None:
        self.calls.append(("interrupt", task_id))

    def snooze(self, task_id: str, seconds: float) -> None:
        self.calls.append(("snooze", task_id, seconds))

    def open(self, notice: Notice) -> None:
        self.calls.append(("open", notice.id))

    def sound(self, notice: Notice) -> bool:
        return self.wants_sound


def notice(event: str, title: str, running: bool = True, urgency: str = "normal") -> Notice:
    task = Task("desktop-actions", clock=SystemClock())
    task.mark_started()
    if not running:
        task.mark_ended(TaskState.SUCCEEDED)
    snap = task.snapshot()
    return Notice(f"{snap.id}:{event}:1", event, title, "body", urgency, time.time(), snap)


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.stop()


@pytest.fixture
def on_desktop(desktop_bus: DesktopBus, monkeypatch: pytest.MonkeyPatch) -> DesktopBus:
    for key, value in desktop_bus.extra_env.items():
        monkeypatch.setenv(key, value)
    desktop_bus.dunstctl("close-all")  # the context menu lists what is on screen
    return desktop_bus


def send(loop_thread: LoopThread, channel: DesktopChannel, n: Notice) -> None:
    loop_thread.run(asyncio.wait_for(channel.send(n), SEND_TIMEOUT), SEND_TIMEOUT + 5)


def test_a_click_on_a_toast_calls_open(on_desktop: DesktopBus, loop_thread: LoopThread) -> None:
    actions = Recorder()
    channel = DesktopChannel(actions)
    title = unique("✓ click")
    n = notice("success", title, running=False)
    send(loop_thread, channel, n)
    toast = on_desktop.wait_for_notification(title)
    assert toast["actions"] == ["default", ""]  # an end notice: a click, no buttons

    on_desktop.choose(f"# ({title}) [")
    poll(lambda: actions.calls, 10, "the click to reach the channel")
    assert actions.calls == [("open", n.id)]
    loop_thread.run(channel.close())


def test_running_task_toasts_carry_interrupt_and_snooze(
    on_desktop: DesktopBus, loop_thread: LoopThread
) -> None:
    actions = Recorder()
    channel = DesktopChannel(actions)
    after, progress = unique("⏱ every"), unique("half")
    n_after, n_progress = notice("after", after), notice("progress", progress)
    send(loop_thread, channel, n_after)
    send(loop_thread, channel, n_progress)
    assert on_desktop.wait_for_notification(after)["actions"] == [
        "default",
        "",
        "interrupt",
        "Interrupt",
        "snooze",
        "Snooze 1 h",
    ]
    assert on_desktop.wait_for_notification(progress)["actions"] == [
        "default",
        "",
        "interrupt",
        "Interrupt",
    ]
    poll(lambda: on_desktop.displayed() >= 2, 10, "both toasts on screen")

    on_desktop.choose(f"#Snooze 1 h ({after}) [")
    poll(lambda: actions.calls, 10, "the snooze button to reach the channel")
    on_desktop.choose(f"#Interrupt ({progress}) [")
    poll(lambda: len(actions.calls) == 2, 10, "the interrupt button to reach the channel")
    assert actions.calls == [
        ("snooze", n_after.task.id, SNOOZE_SECONDS),
        ("interrupt", n_progress.task.id),
    ]
    loop_thread.run(channel.close())


def test_no_buttons_on_end_notices_nor_without_actions(
    on_desktop: DesktopBus, loop_thread: LoopThread
) -> None:
    ended, quiet = unique("✓ ended"), unique("⏱ no actions")
    channel = DesktopChannel(Recorder())
    send(loop_thread, channel, notice("after", ended, running=False))  # the task ended since
    bare = DesktopChannel()  # nothing handed in: no buttons (a click does nothing)
    send(loop_thread, bare, notice("after", quiet))
    assert on_desktop.wait_for_notification(ended)["actions"] == ["default", ""]
    assert on_desktop.wait_for_notification(quiet)["actions"] == ["default", ""]
    for c in (channel, bare):
        loop_thread.run(c.close())


@pytest.mark.parametrize(("wanted", "hint"), [(True, "default"), (False, None)])
def test_the_sound_hint_follows_the_actions_answer(
    on_desktop: DesktopBus, loop_thread: LoopThread, wanted: bool, hint: str | None
) -> None:
    channel = DesktopChannel(Recorder(sound=wanted))
    title = unique("✗ sound")
    send(loop_thread, channel, notice("failure", title, running=False, urgency="critical"))
    assert on_desktop.wait_for_notification(title)["hints"].get("sound-name") == hint
    loop_thread.run(channel.close())


def test_a_server_without_actions_gets_no_buttons_and_it_is_said(
    buttonless_bus: FakeNotificationServer,
    loop_thread: LoopThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", buttonless_bus.address)
    channel = DesktopChannel(Recorder())
    assert channel.notes() == []  # not asked yet
    assert loop_thread.run(channel.availability()).ok
    assert channel.notes() == [NO_BUTTONS]
    send(loop_thread, channel, notice("after", "⏱ train still running (1 h)"))
    poll(lambda: buttonless_bus.calls, 10, "the fake server to get the toast")
    assert buttonless_bus.calls[0]["actions"] == ["default", ""]  # the click only
    loop_thread.run(channel.close())

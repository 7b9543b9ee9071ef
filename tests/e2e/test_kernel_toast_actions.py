"""Toasts that lead back to the work, from a real kernel through real dunst: **Snooze 1 h**
and **Interrupt** pressed in dunst's context menu while the cell is busy, a click opening
the notebook through ``$BROWSER``, the ``sound`` setting's hint; and ``%remind status`` on
a notification server that shows no buttons.

A ``jpserver-*.json`` in the kernel's ``JUPYTER_RUNTIME_DIR`` stands in for the running
Jupyter server; ``$BROWSER`` is a script that writes the URL it is given to a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from _desktop_bus import DesktopBus, FakeNotificationServer, poll
from _kernel import KernelFactory

pytestmark = [pytest.mark.kernel, pytest.mark.desktop]

INTERRUPTED = "interrupted from the notification"


def toasts(bus: DesktopBus, seen: int, prefix: str) -> list[dict[str, Any]]:
    return [n for n in bus.notifications()[seen:] if n["summary"].startswith(prefix)]


def first_toast(bus: DesktopBus, seen: int, prefix: str, timeout: float = 20) -> dict[str, Any]:
    found = poll(lambda: toasts(bus, seen, prefix), timeout, f"a toast {prefix!r}")
    return found[0]


@pytest.fixture
def lab(tmp_path: Path, desktop_bus: DesktopBus) -> dict[str, Any]:
    """The kernel's environment: the desktop, a server's runtime info, a recording browser."""
    root, runtime = tmp_path / "lab", tmp_path / "runtime"
    (root / "runs").mkdir(parents=True)
    runtime.mkdir()
    info = {"url": "http://127.0.0.1:8888/", "root_dir": str(root), "token": "s3cret"}
    (runtime / "jpserver-4242.json").write_text(json.dumps({**info, "pid": os.getpid()}))
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{opened}'\n")
    browser.chmod(0o755)
    env = {
        **desktop_bus.extra_env,
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "BROWSER": str(browser),
        "JPY_SESSION_NAME": str(root / "runs" / "my analysis.ipynb"),
    }
    desktop_bus.dunstctl("close-all")  # the context menu lists what is on screen
    return {"env": env, "opened": opened}


SNOOZY = """%%remind snoozy --every 1s
import time, nbremind
s = nbremind.get_session()
task = s.current()
deadline = time.monotonic() + 30
while task.id not in s.dispatcher.rule_state.snoozed and time.monotonic() < deadline:
    time.sleep(0.02)
round(s.dispatcher.rule_state.snoozed.get(task.id, 0) - time.time())
"""

TRAIN = """%%remind train --every 1s
import time
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.01)
"""


def test_snooze_interrupt_and_click_from_dunst(
    desktop_bus: DesktopBus, kernel_factory: KernelFactory, lab: dict[str, Any]
) -> None:
    k = kernel_factory(env=lab["env"])
    k.ok("%load_ext nbremind")
    seen = len(desktop_bus.notifications())

    snoozy = k.execute(SNOOZY)
    toast = first_toast(desktop_bus, seen, "⏱ snoozy still running")
    assert toast["actions"][2:] == ["interrupt", "Interrupt", "snooze", "Snooze 1 h"]
    desktop_bus.choose("#Snooze 1 h (⏱ snoozy still running")
    held = k.result(snoozy)
    assert held.status == "ok", held.describe()
    assert held.result is not None and 3590 <= int(held.result) <= 3600  # an hour from now
    desktop_bus.dunstctl("close-all")

    seen = len(desktop_bus.notifications())
    train = k.execute(TRAIN)
    toast = first_toast(desktop_bus, seen, "⏱ train still running")
    assert toast["actions"][2:4] == ["interrupt", "Interrupt"]
    desktop_bus.choose("#Interrupt (⏱ train still running")
    stopped = k.result(train, timeout=30)
    assert (stopped.status, stopped.ename) == ("error", "KeyboardInterrupt"), stopped.describe()
    state = k.query(
        "import nbremind\n"
        "result = [(t.state.value, list(t.snapshot().notes))\n"
        "          for t in nbremind.get_session().tasks() if t.name == 'train']"
    )
    assert state == [["cancelled", [INTERRUPTED]]]
    end = first_toast(desktop_bus, seen, "■ train cancelled")
    assert INTERRUPTED in end["body"]
    assert end["actions"] == ["default", ""]  # an end notice: no buttons

    desktop_bus.choose("# (■ train cancelled")  # a click on the toast
    url = poll(lambda: lab["opened"].exists() and lab["opened"].read_text(), 15, "the browser")
    assert url == "http://127.0.0.1:8888/lab/tree/runs/my%20analysis.ipynb?token=s3cret\n"


def test_sound_failure_plays_only_on_failures(
    desktop_bus: DesktopBus, kernel_factory: KernelFactory, lab: dict[str, Any]
) -> None:
    k = kernel_factory(env=lab["env"])
    k.ok("%load_ext nbremind\nimport nbremind\nnbremind.configure(sound='failure')")
    seen = len(desktop_bus.notifications())
    k.ok("%%remind calm\n1")
    k.run("%%remind shaky\nraise ValueError('bad batch')")
    assert "sound-name" not in first_toast(desktop_bus, seen, "✓ calm finished")["hints"]
    assert first_toast(desktop_bus, seen, "✗ shaky failed")["hints"]["sound-name"] == "default"

    k.ok("nbremind.configure(sound=True)")
    k.ok("%%remind loud\n1")
    assert first_toast(desktop_bus, seen, "✓ loud finished")["hints"]["sound-name"] == "default"


def test_status_says_when_the_server_shows_no_buttons(
    buttonless_bus: FakeNotificationServer, kernel_factory: KernelFactory
) -> None:
    k = kernel_factory(env={"DBUS_SESSION_BUS_ADDRESS": buttonless_bus.address})
    k.ok("%load_ext nbremind")
    status = k.ok("%remind status").stdout.splitlines()
    assert "  channel desktop: available" in status
    assert "  desktop: this notification server shows no buttons" in status

    k.ok(
        "%%remind plain --every 0.2s\nimport time, nbremind\n"
        "s, t = nbremind.get_session(), nbremind.get_session().current()\n"
        "deadline = time.monotonic() + 20\n"
        "while not (s.last_notice(t) or '').startswith('⏱') and time.monotonic() < deadline:\n"
        "    time.sleep(0.02)"
    )
    after = poll(
        lambda: [c for c in buttonless_bus.calls if c["summary"].startswith("⏱ plain")],
        15,
        "the every notice at the fake server",
    )
    assert after[0]["actions"] == ["default", ""]  # no Interrupt, no Snooze

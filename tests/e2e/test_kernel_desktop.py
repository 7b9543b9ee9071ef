"""``%%remind`` in a real ipykernel reaching a real notification daemon (dunst under Xvfb).

The kernel gets the fixture's private session bus and display in its environment and keeps
nbremind's default channels, as a user's notebook would.
"""

from __future__ import annotations

from typing import Any

import pytest

from _desktop_bus import DesktopBus, poll
from _kernel import NOTEBOOK, KernelFactory

pytestmark = [pytest.mark.kernel, pytest.mark.desktop]

URGENCY_NORMAL, URGENCY_CRITICAL = 1, 2


def next_toast(bus: DesktopBus, seen: int, title: str, timeout: float = 15) -> dict[str, Any]:
    """The first ``Notify`` titled ``title`` among those after the first ``seen`` ones."""

    def find() -> dict[str, Any] | None:
        return next((n for n in bus.notifications()[seen:] if n["summary"] == title), None)

    try:
        return poll(find, timeout, f"a notification titled {title!r}")
    except TimeoutError:
        titles = [n["summary"] for n in bus.notifications()[seen:]]
        raise AssertionError(f"no toast {title!r} within {timeout} s; saw {titles}") from None


def test_remind_cells_reach_dunst(desktop_bus: DesktopBus, kernel_factory: KernelFactory) -> None:
    k = kernel_factory(env=desktop_bus.extra_env)
    seen = len(desktop_bus.notifications())
    loaded = k.ok("%load_ext nbremind")
    status = k.ok("%remind status")
    assert "  channel desktop: available" in status.stdout.splitlines()

    done = k.ok("%%remind train\nloss = 0.25\nloss")
    toast = next_toast(desktop_bus, seen, "✓ train finished")
    assert done.result == "0.25"
    assert toast["app_name"] == "nbremind"
    assert NOTEBOOK in toast["body"]
    assert toast["urgency"] == URGENCY_NORMAL
    assert desktop_bus.wait_in_history("✓ train finished")["body"] == toast["body"]

    failed = k.run("%%remind train\nraise RuntimeError('CUDA out of memory')")
    toast = next_toast(desktop_bus, seen, "✗ train failed")
    assert (failed.status, failed.ename) == ("error", "RuntimeError")
    assert toast["body"].splitlines()[0] == "RuntimeError: CUDA out of memory"
    assert NOTEBOOK in toast["body"]
    assert toast["urgency"] == URGENCY_CRITICAL

    for r in (loaded, status, done):
        assert r.stderr == "", r.describe()
    delivered = k.query(
        "import nbremind\ns = nbremind.get_session()\ns.flush()\n"
        "result = [(d.title, d.channel, d.ok, d.error) for d in s.dispatcher.deliveries]"
    )
    assert delivered == [
        ["✓ train finished", "desktop", True, ""],
        ["✗ train failed", "desktop", True, ""],
    ]


def test_bus_without_notification_service_is_reported_and_cells_stay_quiet(
    bare_bus: str, kernel_factory: KernelFactory
) -> None:
    k = kernel_factory(env={"DBUS_SESSION_BUS_ADDRESS": bare_bus})
    k.ok("%load_ext nbremind")
    status = k.ok("%remind status")
    cell = k.ok("%%remind etl\nvalue = 3\nvalue")
    k.query("import nbremind\nnbremind.get_session().flush()\nresult = None")
    after = k.ok("'next cell'")

    assert "  channel desktop: unavailable: no notification service" in status.stdout
    assert cell.result == "3"
    for r in (status, cell, after):
        assert r.stderr == "", r.describe()

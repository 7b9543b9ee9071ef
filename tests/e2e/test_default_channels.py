"""Default channels: chosen when a notice is sent if neither its task nor the settings chose.

``desktop`` where the local desktop can show toasts; else ``browser`` when a notebook front
end is connected; else ``desktop`` anyway (recorded unavailable). ``%remind status`` says
which and why. Explicit channels always win. In-process with stand-in channels, then in
real kernels: no desktop and no browser, no desktop and a browser, and a real desktop
(dunst on a private D-Bus session bus).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

import pytest

from _config_lines import setting
from _desktop_bus import DesktopBus
from _kernel import Kernel, KernelFactory
from _widgets import comm_tap, say_hello
from nbremind import Config, Session
from nbremind.channels import Availability, Channel
from nbremind.channels.browser import NO_FRONT_END, BrowserChannel
from nbremind.channels.memory import MemoryChannel
from nbremind.core.browser_views import BrowserConnection
from nbremind.core.config import AUTO
from nbremind.core.notice import Notice
from nbremind.delivery.dispatcher import DEFAULT_CANDIDATES, Dispatcher
from nbremind.testing import capture_notices

NO_BUS = "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)"


class Desktop(MemoryChannel):
    """A desktop channel whose availability the test decides."""

    name = "desktop"

    def __init__(self, ok: bool, reason: str = "") -> None:
        super().__init__()
        self.ok, self.reason = ok, reason

    async def _check(self) -> Availability:
        return Availability(self.ok, self.reason)


class Browser(BrowserChannel):
    """The real browser channel, remembering what it delivered."""

    def __init__(self, connection: BrowserConnection) -> None:
        super().__init__(connection)
        self.notices: list[Notice] = []

    async def _send(self, notice: Notice) -> None:
        await super()._send(notice)
        self.notices.append(notice)


class View:
    def send(self, content: dict[str, Any]) -> None:
        pass


def run(coro: Any) -> Any:
    """Run ``coro`` to its end on a fresh loop (in a thread of its own, whatever runs here)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def session_with(desktop: Channel, connection: BrowserConnection, **config: Any) -> Session:
    channels: dict[str, Channel] = {
        "desktop": desktop,
        "browser": Browser(connection),
        "memory": MemoryChannel(),
    }
    return Session(Config(**config), channels=channels, tick_interval=None)


def delivered(session: Session) -> list[tuple[str, bool, str]]:
    session.flush()
    return [(d.channel, d.ok, d.error) for d in session.dispatcher.deliveries]


def finish_one(session: Session, **options: Any) -> None:
    from nbremind import remind

    with remind("etl", session=session, **options):
        pass


# -- in-process --------------------------------------------------------------------------------


def test_desktop_when_it_can_show_toasts() -> None:
    connection = BrowserConnection()
    connection.hello(View(), "v1")  # a browser is there too: the desktop still comes first
    session = session_with(Desktop(True), connection)
    try:
        choice = run(session.dispatcher.default_channels())
        finish_one(session)
        assert (choice.channels, choice.reason) == (("desktop",), "a local desktop can show toasts")
        assert delivered(session) == [("desktop", True, "")]
    finally:
        session.close()


def test_browser_when_the_desktop_cannot_and_a_front_end_is_connected() -> None:
    connection = BrowserConnection()
    connection.hello(View(), "v1")
    session = session_with(Desktop(False, NO_BUS), connection)
    try:
        choice = run(session.dispatcher.default_channels())
        finish_one(session)
        assert choice.channels == ("browser",)
        assert str(choice) == (
            f"browser — desktop unavailable: {NO_BUS}; a browser front end is connected"
        )
        assert delivered(session) == [("browser", True, "")]
    finally:
        session.close()


def test_desktop_recorded_unavailable_when_there_is_neither() -> None:
    session = session_with(Desktop(False, NO_BUS), BrowserConnection())
    try:
        choice = run(session.dispatcher.default_channels())
        finish_one(session)
        assert choice.channels == ("desktop",)
        assert str(choice) == f"desktop — desktop unavailable: {NO_BUS}; {NO_FRONT_END}"
        assert delivered(session) == [("desktop", False, f"unavailable: {NO_BUS}")]
    finally:
        session.close()


def test_explicit_channels_always_win() -> None:
    connection = BrowserConnection()
    connection.hello(View(), "v1")
    session = session_with(Desktop(True), connection, channels=("memory",))
    try:
        finish_one(session)  # the settings chose memory
        finish_one(session, channels=["browser"])  # the task chose browser
        session.configure(channels=AUTO)
        finish_one(session, channels=["memory"])  # the task chose, with automatic settings
        assert delivered(session) == [
            ("memory", True, ""),
            ("browser", True, ""),
            ("memory", True, ""),
        ]
    finally:
        session.close()


def test_a_front_end_about_to_connect_is_waited_for() -> None:
    connection = BrowserConnection()
    session = session_with(Desktop(False, NO_BUS), connection)
    connection.displayed()  # a %%remind status line was just shown; its hello comes next
    timer = threading.Timer(0.3, connection.hello, (View(), "v1"))
    try:
        timer.start()
        finish_one(session)
        assert delivered(session) == [("browser", True, "")]
        # asking (for %remind status) never waits: it runs on the thread a hello would need
        connection.bye(View(), "v1")
    finally:
        timer.join()
        session.close()


def test_status_question_does_not_wait_for_a_hello() -> None:
    connection = BrowserConnection()
    dispatcher = Dispatcher(
        channels={"desktop": Desktop(False, NO_BUS), "browser": BrowserChannel(connection)}
    )
    connection.displayed()
    choice = run(asyncio.wait_for(dispatcher.default_channels(wait=False), 0.5))
    assert choice.channels == ("desktop",) and connection.expects_hello()


def test_availability_without_names_reports_the_candidates() -> None:
    dispatcher = Dispatcher(
        channels={"desktop": Desktop(False, NO_BUS), "browser": BrowserChannel(BrowserConnection())}
    )
    states = run(dispatcher.availability(()))
    assert tuple(states) == DEFAULT_CANDIDATES == ("desktop", "browser")
    assert states == {
        "desktop": f"unavailable: {NO_BUS}",
        "browser": f"unavailable: {NO_FRONT_END}",
    }


@pytest.mark.parametrize("value", [AUTO, None, [], ""])
def test_configure_channels_auto_lets_nbremind_choose(value: object) -> None:
    with capture_notices() as cap:
        assert cap.session.configure(channels=value).channels == ()
    assert Config().channels == ()


@pytest.mark.parametrize("value", [-1, 2.5, True, "many", None])
def test_panel_keep_must_be_a_whole_number(value: object) -> None:
    with pytest.raises(ValueError, match="panel_keep"):
        Config().updated(panel_keep=value)
    assert Config().updated(panel_keep="20").panel_keep == 20
    assert Config().panel_keep == 50


# -- real kernels ------------------------------------------------------------------------------


def status_lines(k: Kernel) -> list[str]:
    return k.ok("%remind status").stdout.splitlines()


def deliveries(k: Kernel) -> list[list[Any]]:
    result: list[list[Any]] = k.query(
        "import nbremind\ns = nbremind.get_session()\ns.flush()\n"
        "result = [(d.title, d.channel, d.ok, d.error) for d in s.dispatcher.deliveries]"
    )
    return result


@pytest.mark.kernel
def test_kernel_without_desktop_or_browser(kernel_factory: KernelFactory) -> None:
    k = kernel_factory()  # no DBUS_SESSION_BUS_ADDRESS in its environment
    k.ok("%load_ext nbremind")
    status = status_lines(k)
    k.ok("%%remind --quiet etl\npass")

    assert status[:4] == [
        "nbremind status",
        f"  channel desktop: unavailable: {NO_BUS}",
        f"  channel browser: unavailable: {NO_FRONT_END}",
        f"  default channels: desktop — desktop unavailable: {NO_BUS}; {NO_FRONT_END}",
    ]
    assert deliveries(k) == [["✓ etl finished", "desktop", False, f"unavailable: {NO_BUS}"]]
    config = k.ok("%remind config").stdout.splitlines()
    assert setting(config, "channels") == ("auto", "default")


@pytest.mark.kernel
def test_kernel_without_desktop_with_a_browser_connected(kernel_factory: KernelFactory) -> None:
    k = kernel_factory()
    k.ok("%load_ext nbremind\nfrom nbremind.ipython.panel import panel\npanel()")
    comm: str = k.query("from nbremind.ipython.panel import panel\nresult = panel().model_id")
    with comm_tap(k) as tap:
        say_hello(k, comm)
        status = status_lines(k)
        k.ok("%%remind train\npass")
        found = deliveries(k)
        tap.pump(0.5)

    assert status[:4] == [
        "nbremind status",
        f"  channel desktop: unavailable: {NO_BUS}",
        "  channel browser: available",
        f"  default channels: browser — desktop unavailable: {NO_BUS}; "
        "a browser front end is connected",
    ]
    assert found == [["✓ train finished", "browser", True, ""]]
    assert [m["title"] for m in tap.custom(comm)] == ["✓ train finished"]


@pytest.mark.kernel
def test_kernel_whose_first_status_line_connects_the_browser(
    kernel_factory: KernelFactory,
) -> None:
    """No panel: the first %%remind cell's status line says hello once the cell ended (as
    JupyterLab's does), and the cell's own end notice goes to the browser."""
    k = kernel_factory()
    k.ok("%load_ext nbremind")
    with comm_tap(k) as tap:
        msg_id = k.execute("%%remind first\nimport time\ntime.sleep(0.5)")
        lines: list[str] = []
        deadline = time.monotonic() + 10
        while not lines and time.monotonic() < deadline:
            tap.pump(0.05)
            lines = [c for c, state in tap.opened().items() if state.get("view") == "status"]
        [line] = lines
        say_hello(k, line)  # rendered at once; the kernel reads it after the cell
        k.result(msg_id)
        found = deliveries(k)
        tap.pump(0.5)

    assert found == [["✓ first finished", "browser", True, ""]]
    assert [m["title"] for m in tap.custom(line)] == ["✓ first finished"]


@pytest.mark.kernel
@pytest.mark.desktop
def test_kernel_with_a_desktop(desktop_bus: DesktopBus, kernel_factory: KernelFactory) -> None:
    k = kernel_factory(env=desktop_bus.extra_env)
    k.ok("%load_ext nbremind")
    status = status_lines(k)

    assert status[1] == "  channel desktop: available"
    assert status[3] == "  default channels: desktop — a local desktop can show toasts"

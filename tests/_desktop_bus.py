"""A real Linux desktop for toast tests: a private D-Bus session bus, Xvfb and dunst.

``desktop_bus`` (session-scoped) starts all three plus a ``dbus-monitor --pcap`` recording
every ``org.freedesktop.Notifications`` call, so a test can see exactly what reached the
notification daemon (summary, body, urgency hint). ``bare_bus`` is a private session bus on
which nobody provides notifications. Nothing reads the user's own bus, display or dunstrc,
and nothing is D-Bus-activated: the buses are started from their own config without service
directories. Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import selectors
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from _require import missing

__all__ = [
    "DesktopBus",
    "FakeNotificationServer",
    "LoopThread",
    "bare_bus",
    "buttonless_bus",
    "desktop_bus",
    "poll",
    "private_bus",
    "running_desktop",
]

T = TypeVar("T")

NOTIFICATIONS = "org.freedesktop.Notifications"
STARTUP_TIMEOUT = 15.0

# A session bus that listens on a socket in our own directory and can activate nothing.
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  {servicedir}
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

# Keep every toast in history and on screen until closed, so tests can read them back.
_DUNSTRC = """[global]
    monitor = 0
    follow = none
    history_length = 1000
    idle_threshold = 0
    show_indicators = no
    dmenu = "{dmenu}"
[urgency_low]
    timeout = 0
[urgency_normal]
    timeout = 0
[urgency_critical]
    timeout = 0
"""


# dunst's context menu (``dunstctl context``) runs this as its dmenu: it records the menu
# dunst offers and picks the first line containing the text of ``dmenu-choice``.
_DMENU = """#!/bin/sh
cat > '{workdir}/dmenu-menu'
choice=$(cat '{workdir}/dmenu-choice' 2>/dev/null)
[ -n "$choice" ] && grep -F -m1 -- "$choice" '{workdir}/dmenu-menu'
echo done >> '{workdir}/dmenu-runs'
"""


def poll(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Call ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class LoopThread:
    """A daemon thread running its own asyncio loop, like nbremind's ticker thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def _read_line(proc: subprocess.Popen[bytes], timeout: float, what: str) -> str:
    """The first line ``proc`` writes to stdout, within ``timeout`` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise TimeoutError(f"{what} printed nothing within {timeout:g} s")
    line = proc.stdout.readline().decode().strip()
    if not line:
        raise RuntimeError(f"{what} exited (code {proc.wait(5)}) before it was ready")
    return line


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _start(
    stack: contextlib.ExitStack, args: list[str], log: Path, **kw: Any
) -> subprocess.Popen[bytes]:
    out = stack.enter_context(log.open("wb"))
    kw.setdefault("stdout", out)
    proc = subprocess.Popen(args, stderr=out, stdin=subprocess.DEVNULL, **kw)
    stack.callback(_stop, proc)
    return proc


def _need(*binaries: str) -> None:
    absent = [b for b in binaries if shutil.which(b) is None]
    if absent:
        missing(f"desktop toast tests need {', '.join(absent)} (Debian: dunst xvfb dbus-x11)")


@contextlib.contextmanager
def private_bus(workdir: Path, activatable: tuple[str, ...] = ()) -> Iterator[str]:
    """Run a private session bus; yield its address. The bus can activate only the names in
    ``activatable``, and starting any of them fails (their ``Exec`` is ``/bin/false``)."""
    _need("dbus-daemon")
    workdir.mkdir(parents=True, exist_ok=True)
    servicedir = ""
    if activatable:
        services = workdir / "services"
        services.mkdir(exist_ok=True)
        for name in activatable:
            (services / f"{name}.service").write_text(
                f"[D-BUS Service]\nName={name}\nExec=/bin/false\n"
            )
        servicedir = f"<servicedir>{services}</servicedir>"
    config = workdir / "bus.conf"
    config.write_text(_BUS_CONFIG.format(dir=workdir, servicedir=servicedir))
    with contextlib.ExitStack() as stack:
        proc = _start(
            stack,
            ["dbus-daemon", "--nofork", f"--config-file={config}", "--print-address=1"],
            workdir / "dbus-daemon.log",
            stdout=subprocess.PIPE,
        )
        yield _read_line(proc, STARTUP_TIMEOUT, "dbus-daemon")


def _unwrap(value: Any) -> Any:
    """dbus_fast Variants to plain Python values."""
    inner = getattr(value, "value", value)
    if isinstance(inner, dict):
        return {k: _unwrap(v) for k, v in inner.items()}
    if isinstance(inner, list):
        return [_unwrap(v) for v in inner]
    return inner


def _read_pcap(path: Path) -> list[Any]:
    """The complete D-Bus messages recorded so far by ``dbus-monitor --pcap``."""
    from dbus_fast._private.unmarshaller import Unmarshaller  # parses one raw message

    data = path.read_bytes() if path.exists() else b""
    messages, pos = [], 24  # after the pcap global header
    while pos + 16 <= len(data):
        size = struct.unpack_from("<I", data, pos + 8)[0]
        if pos + 16 + size > len(data):
            break  # still being written
        raw = data[pos + 16 : pos + 16 + size]
        pos += 16 + size
        message = Unmarshaller(io.BytesIO(raw)).unmarshall()
        if message is not None:
            messages.append(message)
    return messages


@dataclass
class DesktopBus:
    """A running bus + Xvfb + dunst. ``env`` is a full environment for subprocesses."""

    address: str
    display: str
    env: dict[str, str]
    workdir: Path
    monitor_file: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def messages(self) -> list[Any]:
        """Every Notifications-interface message seen on the bus (dbus_fast ``Message``)."""
        return _read_pcap(self.monitor_file)

    def notifications(self) -> list[dict[str, Any]]:
        """Each ``Notify`` call seen on the bus, oldest first."""
        found = []
        for m in self.messages():
            if m.member != "Notify" or m.interface != NOTIFICATIONS or len(m.body) != 8:
                continue
            app, replaces, icon, summary, body, actions, hints, expire = m.body
            hints = _unwrap(hints)
            found.append(
                {
                    "app_name": app,
                    "replaces_id": replaces,
                    "icon": icon,
                    "summary": summary,
                    "body": body,
                    "actions": list(actions),
                    "hints": hints,
                    "urgency": hints.get("urgency"),
                    "expire_timeout": expire,
                    "sender": m.sender,
                }
            )
        return found

    def wait_for_notification(self, title: str, timeout: float = 10) -> dict[str, Any]:
        """The latest ``Notify`` call whose summary is ``title``, waiting up to ``timeout``."""

        def find() -> dict[str, Any] | None:
            hits = [n for n in self.notifications() if n["summary"] == title]
            return hits[-1] if hits else None

        try:
            return poll(find, timeout, f"a notification titled {title!r}")
        except TimeoutError:
            seen = [n["summary"] for n in self.notifications()]
            raise AssertionError(
                f"no notification {title!r} within {timeout} s; saw {seen}"
            ) from None

    def dunstctl(self, *args: str) -> str:
        run = subprocess.run(
            ["dunstctl", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return run.stdout

    def history(self) -> list[dict[str, Any]]:
        """What dunst has shown, newest first (closes open toasts: history lists closed ones)."""
        self.dunstctl("close-all")
        data = json.loads(self.dunstctl("history"))["data"]
        entries = data[0] if data else []
        return [{k: v["data"] for k, v in e.items()} for e in entries]

    def displayed(self) -> int:
        """How many toasts dunst shows now."""
        return int(self.dunstctl("count", "displayed").strip() or 0)

    def choose(self, text: str, timeout: float = 10) -> str:
        """Open dunst's context menu (its ``dmenu``) and pick the first entry containing
        ``text``, as a user picks a toast's action; returns the menu dunst offered. Entries
        read ``#<button> (<summary>) [<id>,<action>]``; a click is ``# (<summary>) [``."""
        runs = self.workdir / "dmenu-runs"

        def count() -> int:
            return len(runs.read_text().splitlines()) if runs.exists() else 0

        before = count()
        (self.workdir / "dmenu-choice").write_text(text)
        poll(self.displayed, timeout, "a toast on screen")
        self.dunstctl("context")
        poll(lambda: count() > before, timeout, "dunst's context menu to run")
        menu = (self.workdir / "dmenu-menu").read_text()
        assert text in menu, f"{text!r} is not in dunst's menu:\n{menu}"
        return menu

    def wait_in_history(self, title: str, timeout: float = 10) -> dict[str, Any]:
        """The newest dunst history entry titled ``title``, waiting up to ``timeout``."""

        def find() -> dict[str, Any] | None:
            return next((e for e in self.history() if e.get("summary") == title), None)

        return poll(find, timeout, f"{title!r} in dunst's history", interval=0.1)


def _server_information(env: dict[str, str]) -> bool:
    result = subprocess.run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            "--reply-timeout=1000",
            f"--dest={NOTIFICATIONS}",
            "/org/freedesktop/Notifications",
            f"{NOTIFICATIONS}.GetServerInformation",
        ],
        env=env,
        capture_output=True,
        timeout=10,
    )
    return result.returncode == 0


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@contextlib.contextmanager
def running_desktop(workdir: Path) -> Iterator[DesktopBus]:
    """Start bus, Xvfb, dunst and the monitor in ``workdir``; stop them all on exit."""
    _need("dbus-daemon", "Xvfb", "dunst", "dunstctl", "dbus-monitor", "dbus-send")
    try:
        import dbus_fast  # noqa: F401  (reads the recorded messages)
    except ImportError:
        missing("desktop toast tests need dbus-fast")
    with contextlib.ExitStack() as stack:
        address = stack.enter_context(private_bus(workdir / "bus"))

        # Xvfb picks a free display itself and writes its number once it accepts clients.
        read_fd, write_fd = os.pipe()
        stack.callback(os.close, read_fd)
        try:
            xvfb = _start(
                stack,
                [
                    "Xvfb",
                    "-displayfd",
                    str(write_fd),
                    "-screen",
                    "0",
                    "1024x768x24",
                    "-nolisten",
                    "tcp",
                ],
                workdir / "xvfb.log",
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)
        with selectors.DefaultSelector() as sel:
            sel.register(read_fd, selectors.EVENT_READ)
            number = os.read(read_fd, 64).decode().strip() if sel.select(STARTUP_TIMEOUT) else ""
        if not number:
            raise RuntimeError(f"Xvfb did not start: {_tail(workdir / 'xvfb.log')}")
        display = f":{number}"
        poll(
            lambda: Path(f"/tmp/.X11-unix/X{number}").exists() or xvfb.poll() is not None,
            STARTUP_TIMEOUT,
            "the X socket",
        )
        if xvfb.poll() is not None:
            raise RuntimeError(f"Xvfb exited: {_tail(workdir / 'xvfb.log')}")

        extra = {"DBUS_SESSION_BUS_ADDRESS": address, "DISPLAY": display}
        env = {**os.environ, **extra}
        env.pop("WAYLAND_DISPLAY", None)

        dunstrc = workdir / "dunstrc"
        dmenu = workdir / "dmenu"
        dmenu.write_text(_DMENU.format(workdir=workdir))
        dmenu.chmod(0o755)
        dunstrc.write_text(_DUNSTRC.replace("{dmenu}", str(dmenu)))
        dunst_env = {**env, "XDG_CONFIG_HOME": str(workdir / "config")}
        dunst = _start(
            stack, ["dunst", "-config", str(dunstrc)], workdir / "dunst.log", env=dunst_env
        )
        poll(
            lambda: dunst.poll() is not None or _server_information(env),
            STARTUP_TIMEOUT,
            "dunst to answer GetServerInformation",
        )
        if dunst.poll() is not None:
            raise RuntimeError(f"dunst exited: {_tail(workdir / 'dunst.log')}")

        monitor_file = workdir / "monitor.pcap"
        monitor = _start(
            stack,
            ["dbus-monitor", "--session", "--pcap", f"interface='{NOTIFICATIONS}'"],
            workdir / "dbus-monitor.err",
            stdout=stack.enter_context(monitor_file.open("wb")),
            env=env,
        )
        bus = DesktopBus(address, display, env, workdir, monitor_file, extra)

        def monitor_sees_probe() -> bool:  # the monitor records calls once it is attached
            _server_information(env)
            return monitor.poll() is not None or any(
                m.member == "GetServerInformation" for m in bus.messages()
            )

        poll(monitor_sees_probe, STARTUP_TIMEOUT, "dbus-monitor to record calls", interval=0.05)
        if monitor.poll() is not None:
            raise RuntimeError(f"dbus-monitor exited: {_tail(workdir / 'dbus-monitor.err')}")
        yield bus


@pytest.fixture(scope="session")
def desktop_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DesktopBus]:
    """A private D-Bus session bus with dunst under Xvfb, and a record of every Notify."""
    with running_desktop(tmp_path_factory.mktemp("desktop")) as bus:
        yield bus


@pytest.fixture
def bare_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a private session bus on which no notification service runs."""
    with private_bus(tmp_path_factory.mktemp("bare-bus")) as address:
        yield address


# What the fake server says it offers when asked to introspect itself.
_INTROSPECTION = """<node>
 <interface name="org.freedesktop.Notifications">
  <method name="GetCapabilities"><arg direction="out" type="as"/></method>
  <method name="Notify">
   <arg direction="in" type="s"/><arg direction="in" type="u"/><arg direction="in" type="s"/>
   <arg direction="in" type="s"/><arg direction="in" type="s"/><arg direction="in" type="as"/>
   <arg direction="in" type="a{sv}"/><arg direction="in" type="i"/>
   <arg direction="out" type="u"/>
  </method>
  <method name="CloseNotification"><arg direction="in" type="u"/></method>
  <method name="GetServerInformation">
   <arg direction="out" type="s"/><arg direction="out" type="s"/>
   <arg direction="out" type="s"/><arg direction="out" type="s"/>
  </method>
  <signal name="NotificationClosed"><arg type="u"/><arg type="u"/></signal>
  <signal name="ActionInvoked"><arg type="u"/><arg type="s"/></signal>
 </interface>
</node>"""


class FakeNotificationServer:
    """A notification server on a private bus that shows no buttons: its capabilities lack
    ``actions``. It keeps every ``Notify`` call (``calls``: summary, actions, hints)."""

    def __init__(self, address: str, capabilities: tuple[str, ...] = ("body",)) -> None:
        self.address = address
        self.capabilities = capabilities
        self.calls: list[dict[str, Any]] = []
        self._thread = LoopThread()
        self._bus: Any = None

    def start(self) -> None:
        from dbus_fast import Message, MessageType
        from dbus_fast.aio import MessageBus

        replies: dict[str, Callable[[Any], tuple[str, list[Any]]]] = {
            "Introspect": lambda m: ("s", [_INTROSPECTION]),
            "GetCapabilities": lambda m: ("as", [list(self.capabilities)]),
            "GetServerInformation": lambda m: ("ssss", ["fake-server", "tests", "1.0", "1.2"]),
            "Notify": self._notify,
            "CloseNotification": lambda m: ("", []),
        }

        def handle(message: Any) -> Any:
            if message.message_type != MessageType.METHOD_CALL or message.member not in replies:
                return None
            signature, body = replies[message.member](message)
            return Message.new_method_return(message, signature, body)

        async def serve() -> Any:
            bus = await MessageBus(bus_address=self.address).connect()
            bus.add_message_handler(handle)
            await bus.request_name(NOTIFICATIONS)
            return bus

        self._bus = self._thread.run(serve())

    def _notify(self, message: Any) -> tuple[str, list[Any]]:
        summary, actions, hints = message.body[3], message.body[5], message.body[6]
        self.calls.append({"summary": summary, "actions": list(actions), "hints": _unwrap(hints)})
        return "u", [len(self.calls)]

    def stop(self) -> None:
        if self._bus is not None:
            self._thread.loop.call_soon_threadsafe(self._bus.disconnect)
        self._thread.stop()


@pytest.fixture
def buttonless_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeNotificationServer]:
    """A private session bus whose notification server has no ``actions`` capability."""
    with private_bus(tmp_path_factory.mktemp("buttonless-bus")) as address:
        server = FakeNotificationServer(address)
        server.start()
        try:
            yield server
        finally:
            server.stop()

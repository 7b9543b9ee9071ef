"""The ``browser`` channel: a notice becomes one custom widget message to the views a browser
has open, and the page raises one Web Notification per notice id.

The channel and its connection registry in-process; then a real kernel whose IOPub traffic
is read, with the browser's hello/bye played by the test client over the shell channel;
then the front-end module in headless Chromium, where the notifications are raised.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import time
from typing import Any

import pytest

from _kernel import Kernel, KernelFactory
from _widgets import comm_tap, say_bye, say_hello, send_to_widget, widget_views
from nbremind import Config, Session
from nbremind.channels import ChannelError, make_channel
from nbremind.channels.browser import (
    NO_FRONT_END,
    BrowserChannel,
    notify_message,
)
from nbremind.channels.null import NullChannel
from nbremind.core.browser_views import PERMISSION_PROBLEMS, BrowserConnection
from nbremind.core.notice import Notice, make_notice
from nbremind.delivery.channel import Availability
from nbremind.ipython.magics import CONFIRMED, SENT_WAITING
from nbremind.ipython.status_line import LIVE_AFTER
from nbremind.testing import FakeClock

EVIL = "<img src=x onerror=alert(1)>"


class Widget:
    """Stands in for a widget: records the custom messages it is asked to send."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail

    def send(self, content: dict[str, Any]) -> None:
        if self.fail:
            raise RuntimeError("comm closed")
        self.sent.append(content)


def a_notice(name: str = "train") -> Notice:
    session = Session(Config(channels=("null",)), clock=FakeClock(), tick_interval=None)
    task = session.new_task(name)
    session.start(task)
    session.finish(task)
    session.close()
    return make_notice("success", task.snapshot(), created=0.0, key="end")


def run(coro: Any) -> Any:
    """Run ``coro`` to its end on a fresh loop (in a thread of its own, whatever runs here)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# -- in-process ---------------------------------------------------------------------------------


def test_browser_is_a_registered_channel_that_imports_no_widget_library() -> None:
    channel = make_channel("browser")
    assert isinstance(channel, BrowserChannel) and channel.name == "browser"


def test_available_while_a_view_is_open() -> None:
    connection = BrowserConnection()
    channel = BrowserChannel(connection)
    panel, line = Widget(), Widget()

    before = run(channel.availability())
    connection.hello(panel, "v1", "granted")
    connection.hello(line, "v2", "default")
    connection.hello(panel, "v3", "granted")  # a second view of the panel (another tab)
    during = run(channel.availability())
    connection.bye(panel, "v1")
    connection.bye(line, "v2")
    still = run(channel.availability())
    connection.bye(panel, "v3")
    after = run(channel.availability())

    assert (before.ok, before.reason) == (False, NO_FRONT_END)
    assert during.ok and still.ok
    assert (after.ok, after.reason) == (False, NO_FRONT_END)
    assert connection.views() == 0 and connection.receivers() == []


def test_a_notice_is_one_message_to_each_widget_with_an_open_view() -> None:
    connection = BrowserConnection()
    channel = BrowserChannel(connection)
    panel, line, closed = Widget(), Widget(), Widget()
    connection.hello(panel, "v1")
    connection.hello(panel, "v2")
    connection.hello(line, "v3")
    connection.hello(closed, "v4")
    connection.forget(closed)
    notice = a_notice(EVIL)

    run(channel.send(notice))

    expected = {
        "type": "notify",
        "id": notice.id,
        "title": f"✓ {EVIL} finished",
        "body": notice.body,
        "urgency": "normal",
        "task_id": notice.task.id,
        "parent_id": None,
        "when_watching": "quiet",
    }
    assert panel.sent == [expected] and line.sent == [expected]
    assert closed.sent == []
    assert notify_message(notice) == expected


def test_sending_fails_only_when_no_widget_can_take_it() -> None:
    connection = BrowserConnection()
    channel = BrowserChannel(connection)
    with pytest.raises(ChannelError, match="no browser front end connected"):
        run(channel.send(a_notice()))

    broken, working = Widget(fail=True), Widget()
    connection.hello(broken, "v1")
    connection.hello(working, "v2")
    run(channel.send(a_notice()))  # one broken widget is not a failure
    assert len(working.sent) == 1

    connection.bye(working, "v2")
    with pytest.raises(ChannelError, match="comm closed"):
        run(channel.send(a_notice()))


def test_waits_for_the_hello_of_a_widget_just_displayed() -> None:
    connection = BrowserConnection()
    channel = BrowserChannel(connection)
    widget = Widget()
    connection.displayed()  # e.g. a %%remind status line; its hello comes after the cell
    assert connection.expects_hello()
    timer = threading.Timer(0.3, connection.hello, (widget, "v1"))
    timer.start()
    started = time.monotonic()
    state = run(channel.wait_available(timeout=5))
    took = time.monotonic() - started
    timer.join()

    assert state.ok and 0.2 < took < 3


def test_a_front_end_that_never_says_hello_is_waited_for_once() -> None:
    connection = BrowserConnection()
    channel = BrowserChannel(connection)
    connection.displayed()  # a front end without widgets (nbclient): no hello ever

    started = time.monotonic()
    first = run(channel.wait_available(timeout=0.4))
    waited = time.monotonic() - started
    connection.displayed()  # the next cell's status line
    started = time.monotonic()
    second = run(channel.wait_available(timeout=0.4))
    again = time.monotonic() - started

    assert not first.ok and waited >= 0.4
    assert not second.ok and again < 0.1 and not connection.expects_hello()
    # a view that does say hello later makes it wait again for the next ones
    widget = Widget()
    connection.hello(widget, "v1")
    connection.bye(widget, "v1")
    connection.displayed()
    assert connection.expects_hello()


def test_the_pages_answer_about_the_last_notice() -> None:
    connection = BrowserConnection()
    assert connection.last_answer() is None
    connection.sent("n1")
    waiting = connection.last_answer()
    connection.shown("n1", True)
    shown = connection.last_answer()
    connection.sent("n2")
    connection.shown("n2", False, "denied")
    connection.shown(7, True)  # not an id: ignored

    assert waiting == "sent, not confirmed yet" and shown == "shown in the page"
    assert connection.last_answer() == f"not shown: {PERMISSION_PROBLEMS['denied']}"


def test_permission_reported_by_the_views() -> None:
    connection = BrowserConnection()
    widget = Widget()
    connection.hello(widget, "v1", "default")
    connection.hello(widget, "v2", "default")
    connection.permission("v1", "granted")
    connection.permission("gone", "denied")  # a view it does not know: ignored
    assert connection.permissions() == ["default", "granted"]
    connection.bye(widget, "v2")
    assert connection.permissions() == ["granted"]


def test_unavailable_while_the_pages_do_not_allow_notifications() -> None:
    connection = BrowserConnection()
    channel = BrowserChannel(connection)
    widget = Widget()
    connection.hello(widget, "v1", "denied")
    blocked = run(channel.availability())
    with pytest.raises(ChannelError, match="blocked in the browser's site settings"):
        run(channel.send(a_notice()))
    connection.hello(widget, "v2", "default")  # another page that was never asked
    not_asked = run(channel.availability())
    connection.permission("v2", "granted")
    allowed = run(channel.availability())
    run(channel.send(a_notice()))

    assert (blocked.ok, blocked.reason) == (False, PERMISSION_PROBLEMS["denied"])
    assert (not_asked.ok, not_asked.reason) == (False, PERMISSION_PROBLEMS["default"])
    assert allowed.ok and len(widget.sent) == 1


class NoDesktop(NullChannel):
    name = "desktop"

    async def availability(self, *, refresh: bool = False) -> Availability:
        return Availability(False, "no D-Bus session bus")


def test_the_default_choice_skips_a_browser_that_blocks_notifications() -> None:
    connection = BrowserConnection()
    session = Session(
        Config(),
        clock=FakeClock(),
        tick_interval=None,
        channels={"desktop": NoDesktop(), "browser": BrowserChannel(connection)},
    )
    widget = Widget()
    try:
        connection.hello(widget, "v1", "denied")
        blocked = run(session.dispatcher.default_channels(wait=False))
        connection.permission("v1", "granted")
        allowed = run(session.dispatcher.default_channels(wait=False))
    finally:
        session.close()

    assert blocked.channels == ("desktop",) and PERMISSION_PROBLEMS["denied"] in str(blocked)
    assert allowed.channels == ("browser",)


# -- a real kernel --------------------------------------------------------------------------------

LOAD = "%load_ext nbremind\nimport nbremind\nfrom nbremind.ipython.panel import panel\n"


def panel_id(k: Kernel) -> str:
    result: str = k.query("from nbremind.ipython.panel import panel\nresult = panel().model_id")
    return result


def browser_line(status: str) -> str:
    return next(line for line in status.splitlines() if line.startswith("  channel browser:"))


@pytest.mark.kernel
def test_browser_channel_sends_a_one_shot_notify_message_to_greeted_views(
    kernel_factory: KernelFactory,
) -> None:
    k = kernel_factory()
    k.ok(LOAD + "panel()")
    comm = panel_id(k)
    before = k.ok("%remind status").stdout

    with comm_tap(k) as tap:
        say_hello(k, comm, view="tab-1")
        connected = k.ok("%remind status").stdout
        # a cell that runs long enough for its status line to become a live widget
        work = f"import time\ntime.sleep({3 * LIVE_AFTER})\n21 * 2"
        cell = k.ok(f"%%remind --channels browser {EVIL}\n{work}")
        line = widget_views(cell.messages)[0]  # this cell's status line: shown, no hello
        tap.pump(1.0)
        deliveries = k.query(
            "import nbremind\ns = nbremind.get_session()\ns.flush()\n"
            "result = [(d.title, d.channel, d.ok, d.error) for d in s.dispatcher.deliveries]"
        )
        notifies = tap.custom(comm)
        updates = tap.updates(comm) + tap.updates(line)

    assert browser_line(before) == f"  channel browser: unavailable: {NO_FRONT_END}"
    assert browser_line(connected) == "  channel browser: available"
    assert "  browser notification permission: granted" in connected.splitlines()
    assert cell.result == "42"
    [notify] = notifies
    assert notify["type"] == "notify" and notify["title"] == f"✓ {EVIL} finished"
    assert notify["urgency"] == "normal" and "analysis.ipynb" in notify["body"]
    assert notify["id"].endswith(":success:end")
    assert set(notify) == {
        "type",
        "id",
        "title",
        "body",
        "urgency",
        "task_id",
        "parent_id",
        "when_watching",
    }
    assert notify["id"].startswith(f"{notify['task_id']}:") and notify["when_watching"] == "quiet"
    assert tap.custom(line) == []  # a view that never said hello is sent nothing
    assert deliveries == [[f"✓ {EVIL} finished", "browser", True, ""]]
    # one-shot: nothing about the notice is kept in any widget's state
    assert '"notify"' not in json.dumps(updates) and notify["id"] not in json.dumps(updates)
    state = k.query("from nbremind.ipython.panel import panel\nresult = sorted(panel().keys)")
    assert not [key for key in state if "notif" in key]


@pytest.mark.kernel
def test_after_bye_the_browser_is_unavailable_again(kernel_factory: KernelFactory) -> None:
    k = kernel_factory()
    k.ok(LOAD + "panel()")
    comm = panel_id(k)
    say_hello(k, comm, view="tab-1")
    say_hello(k, comm, view="tab-2")
    say_bye(k, comm, view="tab-1")
    one_left = k.ok("%remind status").stdout
    say_bye(k, comm, view="tab-2")
    none_left = k.ok("%remind status").stdout
    k.ok("%%remind --quiet --channels browser lonely\npass")
    deliveries = k.query(
        "import nbremind\ns = nbremind.get_session()\ns.flush()\n"
        "result = [(d.channel, d.ok, d.error) for d in s.dispatcher.deliveries]"
    )

    assert browser_line(one_left) == "  channel browser: available"
    assert browser_line(none_left) == f"  channel browser: unavailable: {NO_FRONT_END}"
    assert deliveries == [["browser", False, f"unavailable: {NO_FRONT_END}"]]


def updated_lines(messages: list[dict[str, Any]]) -> list[str]:
    """The ``text/plain`` of every ``update_display_data`` among ``messages``."""
    return [
        m["content"]["data"].get("text/plain", "")
        for m in messages
        if m["msg_type"] == "update_display_data"
    ]


@pytest.mark.kernel
@pytest.mark.parametrize("answer", ["shown", "blocked"])
def test_remind_test_browser_says_delivered_only_once_the_page_confirms(
    kernel_factory: KernelFactory, answer: str
) -> None:
    k = kernel_factory()
    k.ok(LOAD + "panel()")
    comm = panel_id(k)
    with comm_tap(k) as tap:
        say_hello(k, comm)
        tried = k.ok("%remind test browser")
        tap.pump(0.5)
        unconfirmed = k.ok("%remind status").stdout
        [sent] = tap.custom(comm)
        before = updated_lines(tap.messages)
        reply = {"type": "shown", "id": sent["id"], "ok": True, "view": "view-1"}
        if answer == "blocked":  # the site's permission was revoked meanwhile
            reply.update(ok=False, permission="denied")
        send_to_widget(k, comm, {"method": "custom", "content": reply})
        confirmed = k.ok("%remind status").stdout
        after = updated_lines(tap.messages)

    # "delivered" is not claimed before the page says it showed the notification; its
    # answer then replaces the line the cell showed
    assert tried.displays == [f"browser: {SENT_WAITING}"] and tried.stdout == ""
    assert sent["title"] == "nbremind test notice"
    assert before == []
    assert "  last browser notification: sent, not confirmed yet" in unconfirmed.splitlines()
    if answer == "shown":
        assert after == [f"browser: {CONFIRMED}"]
        assert "  last browser notification: shown in the page" in confirmed.splitlines()
    else:
        assert after == [f"browser: not shown: {PERMISSION_PROBLEMS['denied']}"]


@pytest.mark.kernel
def test_remind_test_browser_gives_the_reason_when_notifications_are_blocked(
    kernel_factory: KernelFactory,
) -> None:
    k = kernel_factory()
    k.ok(LOAD + "panel()")
    comm = panel_id(k)
    with comm_tap(k) as tap:
        say_hello(k, comm, permission="denied")
        tried = k.ok("%remind test browser")
        status = k.ok("%remind status").stdout
        tap.pump(0.5)

    reason = PERMISSION_PROBLEMS["denied"]
    assert tried.stdout.splitlines() == [f"browser: unavailable: {reason}"]
    assert browser_line(status) == f"  channel browser: unavailable: {reason}"
    assert "  browser notification permission: blocked in the browser's site settings" in (
        status.splitlines()
    )
    assert "default channels: desktop" in status and reason in status
    assert tap.custom(comm) == []  # nothing was sent to a page that cannot show it

    # allowed with the panel's button (its view reports with a key of its own)
    send_to_widget(
        k,
        comm,
        {
            "method": "custom",
            "content": {"type": "permission", "view": "button-view", "permission": "granted"},
        },
    )
    allowed = k.ok("%remind test browser")
    assert allowed.displays == [f"browser: {SENT_WAITING}"]


# -- the page: one notification per notice id ------------------------------------------------------

NOTIFY = {
    "type": "notify",
    "id": "123-4:success:end",
    "title": "✓ train finished",
    "body": "Took 4.0 s\nanalysis.ipynb on host",
    "urgency": "normal",
}


@pytest.mark.browser
def test_two_views_of_one_notebook_raise_one_notification(widget_page: Any) -> None:
    page = widget_page
    page.evaluate("""() => {
      // the panel (two views: two tabs of the notebook in one page) and a status line
      window.p = openModel({ view: 'panel', fields: [], rows: [], channels: [] });
      window.s = openModel({ view: 'status', text: 'x', state: 'running' });
      renderView(window.p); renderView(window.p); renderView(window.s);
    }""")
    # the kernel sends the notice to every widget with a view: each model gets it
    page.evaluate("(msg) => { for (const m of window.__models) m.custom(msg); }", NOTIFY)
    page.evaluate("(msg) => { window.__models[window.p].custom(msg); }", NOTIFY)  # a repeat

    made = page.evaluate("() => window.__notifications")
    assert made == [
        {"title": "✓ train finished", "options": {"body": NOTIFY["body"], "tag": NOTIFY["id"]}}
    ]

    page.evaluate(
        "(msg) => window.__models[window.s].custom(msg)",
        {**NOTIFY, "id": "123-5:failure:end", "title": "✗ load failed"},
    )
    assert [n["title"] for n in page.evaluate("() => window.__notifications")] == [
        "✓ train finished",
        "✗ load failed",
    ]
    assert page.evaluate("() => [...window.__nbremindSeen]") == [NOTIFY["id"], "123-5:failure:end"]
    # the model that raised each one tells the kernel it was shown (once per id in the page)
    answers = page.evaluate("""() => window.__models.map(
      (m) => m.sent.filter((x) => x.type === 'shown').map((x) => [x.id, x.ok]))""")
    assert answers == [[[NOTIFY["id"], True]], [["123-5:failure:end", True]]]


@pytest.mark.browser
def test_no_notification_without_permission_and_other_messages_ignored(widget_page: Any) -> None:
    page = widget_page
    page.evaluate("""() => { window.__permission = 'default';
      window.p = openModel({ view: 'status', text: '', state: 'running' }); }""")
    page.evaluate("(msg) => window.__models[window.p].custom(msg)", NOTIFY)
    page.evaluate("""() => { window.__permission = 'granted';
      const m = window.__models[window.p];
      m.custom({ type: 'hello' }); m.custom(null); m.custom({ type: 'notify', id: 7 }); }""")
    # seen while not allowed: the page does not raise it later either
    page.evaluate("(msg) => window.__models[window.p].custom(msg)", NOTIFY)

    assert page.evaluate("() => window.__notifications") == []
    answers = page.evaluate("""() => window.__models[window.p].sent
      .filter((x) => x.type === 'shown')""")
    assert [(a["id"], a["ok"], a["permission"]) for a in answers] == [
        (NOTIFY["id"], False, "default")
    ]


@pytest.mark.browser
def test_every_model_says_hello_once_and_bye_when_it_goes(widget_page: Any) -> None:
    page = widget_page
    sent = page.evaluate("""() => {
      const p = openModel({ view: 'panel', fields: [], rows: [], channels: [] });
      const s = openModel({ view: 'status', text: 'x', state: 'running' });
      const a = renderView(p), b = renderView(p), c = renderView(s);
      closeView(a); closeView(c);  // e.g. the status line left as plain text at its cell's end
      const during = window.__models.map((m) => m.sent.map((x) => x.type));
      window.__models[p].cleanup();  // the model closed
      return { during, panel: window.__models[p].sent, status: window.__models[s].sent };
    }""")

    assert sent["during"] == [["hello"], ["hello"]]  # views come and go: the models stay
    assert [m["type"] for m in sent["panel"]] == ["hello", "bye"]
    hello, bye = sent["panel"]
    assert bye["view"] == hello["view"] != sent["status"][0]["view"]
    assert {m["page"] for m in sent["panel"] + sent["status"]} == {hello["page"]}
    assert hello["permission"] == "granted"


@pytest.mark.browser
def test_a_status_line_without_a_view_still_raises_notifications(widget_page: Any) -> None:
    page = widget_page
    page.evaluate("""() => {
      window.s = openModel({ view: 'status', text: 'x', state: 'running' });
      closeView(renderView(window.s));
    }""")
    page.evaluate("(msg) => window.__models[window.s].custom(msg)", NOTIFY)

    assert [n["title"] for n in page.evaluate("() => window.__notifications")] == [NOTIFY["title"]]

"""Browser notices that lead back to the work: a click on a notification brings the tab
forward and scrolls to the task's status line (or its parent's, or the panel), and no
notification is raised while the user watches the page (``when_watching``).

The front-end module runs in headless Chromium (``_frontend_js``: the module and a stand-in
model); ``window.Notification`` is replaced by a recorder that is an ``EventTarget``, so a
test clicks a notification the way the browser does (a ``click`` event). Whether the user
watches the page is emulated by overriding ``document.hasFocus`` and
``document.visibilityState`` in the page (a headless page is always visible and focused).
Then the kernel's side in-process: the message the channel sends, the setting it follows,
and the page's answer as the widget hands it to the connection registry.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from typing import Any

import pytest

from _frontend_js import SPACER, WATCH, WHERE, clicking_page
from nbremind import Config, Session
from nbremind.channels.browser import BrowserChannel
from nbremind.core.browser_views import SHOWN, SHOWN_WATCHING, BrowserConnection
from nbremind.core.notice import Notice, make_notice
from nbremind.ipython.panel_rows import ROW_FIELDS
from nbremind.ipython.status_line import final_bundle, follow_settings
from nbremind.testing import FakeClock

NOTIFY = {
    "type": "notify",
    "id": "9-1:success:end",
    "title": "✓ train finished",
    "body": "Took 4.0 s",
    "urgency": "normal",
    "task_id": "9-1",
    "parent_id": None,
    "when_watching": "quiet",
}


def status_state(task_id: str) -> dict[str, Any]:
    return {
        "view": "status",
        "text": f"{task_id}: ✓ succeeded",
        "state": "succeeded",
        "task_id": task_id,
    }


def row(task_id: str, depth: int, name: str) -> list[Any]:
    values = {"id": task_id, "depth": depth, "name": name, "state": "running"}
    return [values.get(field, "") for field in ROW_FIELDS]


def notify(page: Any, model: int, **changes: Any) -> dict[str, Any]:
    """Send a notify message to model ``model``; returns what the page answered and made."""
    msg = {**NOTIFY, **changes}
    return page.evaluate(  # type: ignore[no-any-return]
        """([i, msg]) => {
          const model = window.__models[i];
          model.custom(msg);
          const answers = model.sent.filter((x) => x.type === "shown" && x.id === msg.id);
          return { answers, made: window.__made.length,
                   onclick: window.__made.length ? typeof window.__made.at(-1).onclick : null };
        }""",
        [model, msg],
    )


def click_last(page: Any) -> dict[str, Any]:
    """Click the last notification made, as the browser does; returns the window's scroll
    position and what was focused and closed."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => {
          const note = window.__made.at(-1);
          note.dispatchEvent(new Event("click"));
          return { focused: window.__focused, closed: note.closed, scrollY: window.scrollY };
        }"""
    )


@pytest.fixture
def page(widget_page: Any) -> Any:
    """The module's page, with the recorder, a tall page and the user not watching it."""
    return clicking_page(widget_page)


# -- a click leads to the task -----------------------------------------------------------------


@pytest.mark.browser
def test_a_click_scrolls_to_the_tasks_status_line_highlights_it_and_focuses(page: Any) -> None:
    line = page.evaluate(
        "(state) => { const m = openModel(state); renderView(m); return m; }", status_state("9-1")
    )
    page.evaluate(SPACER, 2)
    sel = '.nbremind-status[data-task-id="9-1"]'
    before = page.evaluate(WHERE, sel)

    sent = notify(page, line)
    clicked = click_last(page)
    after = page.evaluate(WHERE, sel)

    assert sent["made"] == 1 and sent["onclick"] == "function"
    assert sent["answers"] == [
        {
            "type": "shown",
            "id": NOTIFY["id"],
            "ok": True,
            "view": sent["answers"][0]["view"],
            "page": sent["answers"][0]["page"],
        }
    ]
    assert before == {"inView": False, "highlighted": False}
    assert after == {"inView": True, "highlighted": True}
    assert clicked["focused"] == 1 and clicked["closed"] == 1 and clicked["scrollY"] > 0
    # the highlight is brief: it goes by itself
    page.wait_for_function(
        "(sel) => !document.querySelector(sel).classList.contains('nbremind-highlight')",
        arg=sel,
        timeout=5000,
    )


@pytest.mark.browser
def test_a_nested_loops_notice_finds_its_parents_line_even_as_plain_text(page: Any) -> None:
    # the cell's live view is gone: its end left the plain line the kernel publishes
    page.evaluate(
        """(markup) => {
          const out = document.createElement("div");
          out.className = "output";
          out.insertAdjacentHTML("beforeend", markup);  // the test plays the notebook's output
          document.body.appendChild(out);
        }""",
        final_bundle("cell: ✓ succeeded", "succeeded", "9-1")["text/html"],
    )
    page.evaluate(SPACER, 2)
    listener = page.evaluate("(state) => openModel(state)", status_state("9-7"))  # no view
    sel = '.nbremind-status[data-task-id="9-1"]'
    before = page.evaluate(WHERE, sel)

    notify(page, listener, id="9-2:success:end", task_id="9-2", parent_id="9-1")
    click_last(page)

    assert before["inView"] is False
    assert page.evaluate(WHERE, sel) == {"inView": True, "highlighted": True}


@pytest.mark.browser
def test_a_task_deeper_down_finds_the_line_of_an_ancestor_the_panel_lists(page: Any) -> None:
    # cell 9-1 > block 9-2 > loop 9-3: the loop's notice names its parent only
    panel = page.evaluate(
        "(state) => { const m = openModel(state); renderView(m); return m; }",
        {
            "view": "panel",
            "fields": list(ROW_FIELDS),
            "channels": [],
            "rows": [
                row("9-1", 0, "cell"),
                row("9-2", 1, "block"),
                row("9-3", 2, "loop"),
                row("9-4", 0, "other"),
            ],
        },
    )
    page.evaluate(SPACER, 2)
    page.evaluate("(state) => renderView(openModel(state))", status_state("9-1"))
    page.evaluate(SPACER, 2)
    sel = '.nbremind-status[data-task-id="9-1"]'
    before = page.evaluate(WHERE, sel)

    notify(page, panel, id="9-3:success:end", task_id="9-3", parent_id="9-2")
    click_last(page)

    assert before["inView"] is False
    assert page.evaluate(WHERE, sel) == {"inView": True, "highlighted": True}
    assert page.evaluate(WHERE, ".nbremind-panel")["highlighted"] is False


@pytest.mark.browser
def test_without_a_status_line_the_click_leads_to_the_panel(page: Any) -> None:
    panel = page.evaluate(
        "(state) => { const m = openModel(state); renderView(m); return m; }",
        {"view": "panel", "fields": list(ROW_FIELDS), "rows": [], "channels": []},
    )
    page.evaluate(SPACER, 2)
    before = page.evaluate(WHERE, ".nbremind-panel")

    notify(page, panel, id="9-5:success:end", task_id="9-5", parent_id=None)  # a script block
    clicked = click_last(page)

    assert before == {"inView": False, "highlighted": False}
    assert page.evaluate(WHERE, ".nbremind-panel") == {"inView": True, "highlighted": True}
    assert clicked["focused"] == 1 and clicked["closed"] == 1


@pytest.mark.browser
def test_with_neither_the_click_only_focuses_the_tab(page: Any) -> None:
    listener = page.evaluate("(state) => openModel(state)", status_state("9-7"))  # no view
    page.evaluate("() => window.scrollTo(0, 100)")

    notify(page, listener, id="9-6:success:end", task_id="9-6", parent_id=None)
    clicked = click_last(page)

    assert clicked == {"focused": 1, "closed": 1, "scrollY": 100}
    assert page.evaluate("() => document.querySelectorAll('.nbremind-highlight').length") == 0


@pytest.mark.browser
def test_the_status_lines_own_module_leads_to_a_panel_of_the_panels_module(page: Any) -> None:
    """In a notebook each widget loads its own copy of the module, and a status line's leaves
    the panel's part out: the page-wide registry joins them."""
    from nbremind.ipython.widgets import StatusWidget

    status_esm = StatusWidget.class_traits()["_esm"].default_value
    page.evaluate(
        """async (source) => {
          const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
          window.__statusWidget = (await import(url)).default;
        }""",
        status_esm,
    )
    page.evaluate(
        "(state) => renderView(openModel(state))",
        {"view": "panel", "fields": list(ROW_FIELDS), "rows": [], "channels": []},
    )
    page.evaluate(SPACER, 2)
    # a status line's model, opened by its own copy of the module, gets the notice
    page.evaluate(
        """(state) => {
          const model = new FakeModel(state);
          model.cleanup = window.__statusWidget.initialize({ model });
          window.__models.push(model);
        }""",
        status_state("9-8"),
    )
    last = page.evaluate("() => window.__models.length - 1")
    before = page.evaluate(WHERE, ".nbremind-panel")

    notify(page, last, id="9-9:success:end", task_id="9-9", parent_id=None)
    click_last(page)

    assert before["inView"] is False
    assert page.evaluate(WHERE, ".nbremind-panel") == {"inView": True, "highlighted": True}


# -- no notification while the user watches -----------------------------------------------------


@pytest.mark.browser
@pytest.mark.parametrize(
    ("watching", "when", "raised"),
    [
        (True, "quiet", False),
        (True, "notify", True),
        (False, "quiet", True),
        (True, None, True),  # a message that does not say: raised, as before the setting
    ],
)
def test_a_watched_page_raises_nothing_and_says_so(
    page: Any, watching: bool, when: str | None, raised: bool
) -> None:
    page.evaluate(WATCH, watching)
    model = page.evaluate("(state) => renderView(openModel(state))", status_state("9-1"))
    changes: dict[str, Any] = {"when_watching": when}
    answer = notify(page, model, **changes)

    [shown] = answer["answers"]
    assert answer["made"] == (1 if raised else 0)
    assert shown["ok"] is True
    assert shown.get("watching") is (None if raised else True)


# -- the kernel's side ----------------------------------------------------------------------------


class Widget:
    """Stands in for a widget: records the custom messages it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, content: dict[str, Any]) -> None:
        self.sent.append(content)


def run(coro: Any) -> Any:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def session() -> Iterator[Session]:
    s = Session(Config(channels=("null",)), clock=FakeClock(), tick_interval=None)
    yield s
    s.close()


def notice_of(session: Session, event: str = "success") -> Notice:
    outer = session.new_task("cell", kind="cell")
    session.start(outer)
    loop = session.new_task("loop", parent=outer, total=3)
    session.start(loop)
    session.finish(loop)
    session.finish(outer)
    return make_notice(event, loop.snapshot(), created=0.0, key="end")


def test_the_message_carries_the_task_its_parent_and_the_setting_in_force(
    session: Session,
) -> None:
    connection = BrowserConnection()
    channel = BrowserChannel(connection)
    widget = Widget()
    connection.hello(widget, "v1", "granted")
    notice = notice_of(session)

    run(channel.send(notice))  # before any front end hands in a setting: the default
    follow_settings(session, connection)  # what a status line or the panel does when shown
    session.configure(when_watching="notify")
    run(channel.send(notice))
    session.configure(when_watching="quiet")
    run(channel.send(notice_of(session, "test")))  # %remind test: always raised

    assert [m["when_watching"] for m in widget.sent] == ["quiet", "notify", "notify"]
    first = widget.sent[0]
    assert first["task_id"] == notice.task.id and first["parent_id"] == notice.task.parent_id
    assert first["parent_id"] is not None and first["parent_id"] != first["task_id"]


def page_says(widget: Any, content: dict[str, Any]) -> None:
    """What a page's ``model.send(content)`` becomes in the kernel (ipywidgets' handler)."""
    message = {"method": "custom", "content": {**content, "view": "v1", "page": "p1"}}
    widget._handle_msg({"content": {"data": message}, "buffers": []})


def test_the_pages_answer_while_watching_counts_as_shown_and_says_so() -> None:
    from nbremind.ipython.widgets import StatusWidget

    connection = BrowserConnection()
    widget = StatusWidget(connection=connection, task_id="9-1")
    answered: list[str | None] = []
    try:
        connection.sent("n1")
        connection.when_answered("n1", answered.append)
        page_says(widget, {"type": "shown", "id": "n1", "ok": True, "watching": True})
        watched = connection.last_answer()
        connection.sent("n2")
        page_says(widget, {"type": "shown", "id": "n2", "ok": True})
        raised = connection.last_answer()
    finally:
        widget.close()

    assert answered == [None]  # shown: what %remind test browser calls delivered
    assert watched == SHOWN_WATCHING and raised == SHOWN

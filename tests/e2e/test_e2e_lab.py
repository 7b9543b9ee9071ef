"""End to end in JupyterLab under headless Chromium: the live status line, the panel, escaping,
and browser notifications, as a user sees them.

The panel's DOM contract: root ``.nbremind-panel``; channels ``.nbremind-channels`` with
``.nbremind-channel`` items; mute switch ``input.nbremind-mute[type=checkbox]``; permission
button ``button.nbremind-permission``; one ``.nbremind-task`` row per task with
``data-task-id``, ``data-state`` and ``data-depth``, holding ``.nbremind-name``,
``.nbremind-state``, ``progress.nbremind-progress``, ``.nbremind-count``, ``.nbremind-rate``,
``.nbremind-elapsed``, ``.nbremind-eta``, ``.nbremind-rss``, ``.nbremind-cpu`` and
``.nbremind-notice``. A ``%%remind`` cell shows ``.nbremind-status`` under it, with its
task's id in ``data-task-id``; a click on a browser notification outlines what it led to
with ``.nbremind-highlight``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from _jupyterlab import CELLS, Lab, Notebook, screenshot, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

SETUP = "%load_ext nbremind\nimport nbremind\nnbremind.configure(channels=['memory'])"
ROW_PARTS = (
    ".nbremind-name",
    ".nbremind-state",
    "progress.nbremind-progress",
    ".nbremind-count",
    ".nbremind-rate",
    ".nbremind-elapsed",
    ".nbremind-eta",
    ".nbremind-rss",
    ".nbremind-cpu",
    ".nbremind-notice",
)

#: Every task row of the first panel in the page, as plain data.
ROWS = """() => {
  const panel = document.querySelector('.nbremind-panel');
  if (!panel) return null;
  const text = (r, sel) => { const e = r.querySelector(sel); return e ? e.textContent : null; };
  return [...panel.querySelectorAll('.nbremind-task')].map(r => ({
    id: r.getAttribute('data-task-id'), state: r.getAttribute('data-state'),
    depth: r.getAttribute('data-depth'),
    name: text(r, '.nbremind-name'), notice: text(r, '.nbremind-notice'),
    missing: PARTS.filter(s => !r.querySelector(s)),
  }));
}"""


@pytest.fixture(autouse=True)
def _no_errors_in_the_page(lab: Lab) -> Iterator[None]:
    """No test may leave an uncaught error, or an nbremind warning, in the browser's console."""
    yield
    assert lab.page_errors == [], f"uncaught errors in the page: {lab.page_errors}"
    ours = [m for m in lab.console if "nbremind" in m[1].lower()]
    assert ours == [], f"nbremind complained in the console: {ours}"


def rows_js() -> str:
    return ROWS.replace("PARTS", repr(list(ROW_PARTS)))


def wait_rows(page: Any, expected: dict[str, str], what: str) -> list[dict[str, Any]]:
    """Wait until the panel has a row named ``name`` in state ``state`` for each item of
    ``expected``; return all rows."""
    check = (
        "([expected]) => { const rows = (" + rows_js() + ")(); if (!rows) return null;"
        " return Object.entries(expected).every(([n, s]) =>"
        " rows.some(r => r.name === n && r.state === s)) ? rows : null; }"
    )
    rows: list[dict[str, Any]] = wait_until(page, check, [expected], what=what, shot="panel")
    return rows


# -- 1. the %%remind status line is live ----------------------------------------------------


def test_remind_status_line_updates_while_the_cell_runs(lab: Lab) -> None:
    nb = lab.notebook(
        "status-line.ipynb",
        [
            SETUP,
            "%%remind loop30\nimport time\n"
            "task = nbremind.get_session().current()\ntask.total = 30\n"
            "for i in range(30):\n    time.sleep(0.1)\n    task.advance()\n",
            "%%remind hushed --quiet\nsum(range(10))",
        ],
    )
    nb.run_ok(0)

    nb.run(1)
    sample = """([sel, i]) => { const c = document.querySelectorAll(sel)[i];
      const s = c.querySelector('.nbremind-status');
      return {prompt: c.querySelector('.jp-InputPrompt').textContent.trim(),
              status: s ? s.textContent : null,
              count: c.querySelectorAll('.nbremind-status').length}; }"""
    busy_texts: list[str] = []
    busy_counts: set[int] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # sample the DOM as a user's eye would, ~10 times a second
        st = nb.page.evaluate(sample, [CELLS, 1])
        if st["prompt"] != "[*]:":
            break
        busy_counts.add(st["count"])
        if st["status"] is not None and st["status"] not in busy_texts:
            busy_texts.append(st["status"])
        time.sleep(0.1)
    final = nb.wait_done(1)
    screenshot(nb.cell(1), "status-line")

    assert len(busy_texts) >= 5, (
        f"the status line changed {len(busy_texts)} times while the cell was busy: {busy_texts}"
    )
    assert max(busy_counts) == 1, f"a cell showed {max(busy_counts)} status lines at once"
    assert all("loop30" in text for text in busy_texts), busy_texts
    counts = [int(m.group(1)) for t in busy_texts if (m := re.search(r"\b(\d+)/30\b", t))]
    assert len(set(counts)) >= 3 and counts == sorted(counts), f"progress shown: {busy_texts}"
    assert nb.cell(1).locator(".nbremind-status").count() <= 1, final

    assert "45" in nb.run_ok(2)["output"]
    assert nb.cell(2).locator(".nbremind-status").count() == 0, "--quiet still showed a status"


# -- 2. the panel lists finished, failed and running tasks, live ----------------------------


def test_panel_lists_succeeded_failed_and_running_tasks(lab: Lab) -> None:
    nb = lab.notebook(
        "panel.ipynb",
        [
            SETUP,
            "with nbremind.remind('ok-task'):\n    with nbremind.remind('ok-child'):\n        pass",
            "with nbremind.remind('bad-task'):\n    raise ValueError('boom')",
            "import threading\nstop = threading.Event()\n"
            "def long():\n    with nbremind.remind('long-task'):\n        stop.wait(60)\n"
            "threading.Thread(target=long, daemon=True).start()",
            "nbremind.panel()",
            "stop.set()",
            "print('muted:', nbremind.get_session().config.muted)",
        ],
    )
    nb.run_ok(0)
    nb.run_ok(1)
    assert "ValueError: boom" in nb.run_and_wait(2)["output"]
    nb.run_ok(3)
    nb.run_ok(4)
    expected = {
        "ok-task": "succeeded",
        "ok-child": "succeeded",
        "bad-task": "failed",
        "long-task": "running",
    }
    rows = wait_rows(nb.page, expected, "the panel to list the four tasks")
    panel = nb.page.locator(".nbremind-panel").first
    screenshot(panel, "panel")

    assert sorted((r["name"], r["state"]) for r in rows) == sorted(expected.items()), rows
    by_name = {r["name"]: r for r in rows}
    assert len({r["id"] for r in rows}) == len(rows), f"task ids not unique: {rows}"
    assert all(r["id"] for r in rows), rows
    assert by_name["ok-child"]["depth"] == "1", rows
    assert {by_name[n]["depth"] for n in ("ok-task", "bad-task", "long-task")} == {"0"}, rows
    assert all(not r["missing"] for r in rows), f"rows lack parts of the contract: {rows}"
    assert "boom" in by_name["bad-task"]["notice"] or "failed" in by_name["bad-task"]["notice"]
    channels = panel.locator(".nbremind-channels .nbremind-channel").all_text_contents()
    assert any("memory" in text for text in channels), channels
    assert panel.locator("button.nbremind-permission").count() == 1

    # the panel updates live: the running task finishes without a new display
    nb.run_ok(5)
    wait_rows(nb.page, {"long-task": "succeeded"}, "long-task to show as succeeded")

    # the mute switch reaches the kernel
    mute = panel.locator("input.nbremind-mute[type=checkbox]")
    assert not mute.is_checked()
    mute.check()
    deadline = time.monotonic() + 10
    while "muted: True" not in nb.run_and_wait(6)["output"]:
        assert time.monotonic() < deadline, "checking the mute switch did not mute the kernel"
    screenshot(panel, "panel-muted")


_PANEL_VIEW = """([more, count]) => {
  const panel = document.querySelector('.nbremind-panel');
  if (!panel) return null;
  const rows = [...panel.querySelectorAll('.nbremind-task')];
  const shown = panel.querySelector('.nbremind-more');
  const line = shown && !shown.hidden ? shown.textContent : '';
  const first = rows.length ? rows[0].querySelector('.nbremind-count').textContent : '';
  return line === more && first === count ? {rows: rows.length, line, first} : null;
}"""


def test_panel_with_many_tasks_follows_deltas_in_two_pages(lab: Lab) -> None:
    nb = lab.notebook(
        "many-tasks.ipynb",
        [
            SETUP,
            "import contextvars\ns = nbremind.get_session()\n"
            "def top(i):\n    t = s.new_task(f'task {i}', total=10)\n    s.start(t)\n"
            "    return t\n"
            "tasks = [contextvars.Context().run(top, i) for i in range(600)]",
            "nbremind.panel()",
            "tasks[0].advance(5)",
            "for t in tasks:\n    s.finish(t)",
        ],
    )
    for index in range(3):
        nb.run_ok(index)
    more = "… and 100 more (the first 500 are shown)"
    first = wait_until(
        nb.page, _PANEL_VIEW, [more, "0/10"], what="500 of the 600 rows drawn", shot="panel"
    )
    assert first["rows"] == 500, first

    # a second page connects to the running kernel: its widget manager asks for the state
    # and gets every row at once (shown by a new display there); then both follow the deltas
    other = lab.open("many-tasks.ipynb")
    other.run_ok(2)
    wait_until(other.page, _PANEL_VIEW, [more, "0/10"], what="the full state in a new page")
    nb.run_ok(3)
    for page in (nb.page, other.page):
        wait_until(page, _PANEL_VIEW, [more, "5/10"], what="task 0 advanced", shot="panel")
    nb.run_ok(4)
    for page in (nb.page, other.page):
        done = wait_until(page, _PANEL_VIEW, ["", "0/10"], what="the tasks ended", shot="panel")
        assert done["rows"] == 50, done  # the last 50 finished stay listed
        first_name = page.text_content(".nbremind-panel .nbremind-task .nbremind-name")
        assert first_name == "task 550", first_name
        summary = page.text_content(".nbremind-summary")
        assert summary == "0 running · 600 finished (the last 50 shown)", summary


# -- 3. every text is escaped -----------------------------------------------------------------

XSS_NAME = '<img src=x onerror="window.__xss=1">'
XSS_ERROR = '<img src=y onerror="window.__xss=2"><script>window.__xss=3</script>'


def test_panel_renders_html_in_names_and_errors_as_text(lab: Lab) -> None:
    page = lab.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    nb = lab.notebook(
        "escape.ipynb",
        [
            SETUP,
            f"with nbremind.remind({XSS_NAME!r}):\n    pass",
            f"with nbremind.remind('<b>bold</b>'):\n    raise RuntimeError({XSS_ERROR!r})",
            "nbremind.panel()",
            f"%%remind esc-cell\nraise RuntimeError({XSS_ERROR!r})",
        ],
        page,
    )
    nb.run_ok(0)
    nb.run_ok(1)
    assert "RuntimeError" in nb.run_and_wait(2)["output"]
    nb.run_ok(3)
    rows = wait_rows(
        page,
        {XSS_NAME: "succeeded", "<b>bold</b>": "failed"},
        "the panel to list the tasks with HTML in their names",
    )
    screenshot(page.locator(".nbremind-panel").first, "panel-escaped")

    assert sorted(r["name"] for r in rows) == sorted([XSS_NAME, "<b>bold</b>"]), rows
    [bold] = [r for r in rows if r["name"] == "<b>bold</b>"]
    assert "<b>bold</b>" in bold["notice"], bold
    panel = page.locator(".nbremind-panel").first
    assert panel.locator("img, script, b").count() == 0, panel.inner_html()

    # the status line of a %%remind cell whose error message is markup
    assert "RuntimeError" in nb.run_and_wait(4)["output"]
    status = nb.cell(4).locator(".nbremind-status")
    wait_until(
        page,
        "([sel]) => { const s = document.querySelectorAll(sel)[4]"
        ".querySelector('.nbremind-status');"
        " return s && s.textContent.includes('failed'); }",
        [CELLS],
        what="the failed status line",
    )
    assert '<img src=y onerror="window.__xss=2">' in status.text_content(), status.inner_html()
    assert status.locator("img, script").count() == 0, status.inner_html()
    screenshot(nb.cell(4), "status-escaped")
    assert page.evaluate("() => window.__xss") is None
    assert dialogs == []


# -- 4. browser notifications ----------------------------------------------------------------

#: Records every Notification the page constructs (and still constructs it for real).
RECORD_NOTIFICATIONS = """(() => {
  const Real = window.Notification;
  window.__notes = [];
  if (!Real) return;
  class Recorded extends Real {
    constructor(title, options) {
      window.__notes.push({title: String(title), options: Object.assign({}, options || {})});
      super(title, options);
    }
  }
  window.Notification = Recorded;   // permission and requestPermission are inherited
})();"""


def titles(page: Any) -> list[str]:
    return [n["title"] for n in page.evaluate("() => window.__notes || []")]


def wait_note(page: Any, title: str, what: str) -> None:
    wait_until(
        page,
        "([t]) => (window.__notes || []).some(n => n.title === t)",
        [title],
        what=what,
        shot="notification",
    )


def test_finished_task_raises_one_browser_notification(lab: Lab) -> None:
    context = lab.new_context()
    context.grant_permissions(["notifications"], origin=lab.base)
    context.add_init_script(RECORD_NOTIFICATIONS)
    page = lab.new_page(context)
    nb = lab.notebook(
        "notify.ipynb",
        [
            SETUP + "\nnbremind.configure(when_watching='notify')",  # the page has the focus
            "nbremind.panel()",
            "%remind panel",
            "%%remind note-task --channels browser\nsum(range(10))",
            "with nbremind.remind('marker-1', channels=['browser']):\n    pass",
            "with nbremind.remind('after-reload', channels=['browser']):\n    pass",
        ],
        page,
    )
    assert page.evaluate("() => Notification.permission") == "granted"
    for i in range(3):
        nb.run_ok(i)
    wait_until(
        page,
        "() => document.querySelectorAll('.nbremind-panel').length >= 2",
        what="two views of the panel",
    )

    nb.run_ok(3)
    wait_note(page, "✓ note-task finished", "a Notification for note-task")
    nb.run_ok(4)
    wait_note(page, "✓ marker-1 finished", "a Notification for marker-1")
    # every view has seen both notices by now (they arrive in order): one Notification each
    assert titles(page) == ["✓ note-task finished", "✓ marker-1 finished"]
    [note] = [n for n in page.evaluate("() => window.__notes") if n["title"].startswith("✓ note")]
    assert note["options"].get("body") and note["options"].get("tag"), note
    wait_rows(page, {"note-task": "succeeded", "marker-1": "succeeded"}, "both tasks listed")
    screenshot(page.locator(".nbremind-panel").first, "panel-notified")

    # reopen the notebook (saved with its panel views): old notices raise nothing
    saved = lab.save(nb)
    assert saved.count("application/vnd.jupyter.widget-view+json") >= 2, "panels not saved"
    page.reload()
    nb = Notebook(page, nb.path)
    nb.wait_idle()
    nb.run_ok(1)
    wait_until(
        page, "() => document.querySelector('.nbremind-panel')", what="the panel after reopening"
    )
    nb.run_ok(5)
    wait_note(page, "✓ after-reload finished", "a Notification for after-reload")
    assert titles(page) == ["✓ after-reload finished"]


def test_blocked_notifications_are_reported_and_browser_is_chosen_once_allowed(
    lab: Lab,
) -> None:
    from nbremind.core.browser_views import PERMISSION_PROBLEMS
    from nbremind.ipython.magics import CONFIRMED, SENT_WAITING

    context = lab.new_context()  # not granted: the page is refused or never asked
    page = lab.new_page(context)
    nb = lab.notebook(
        "permission.ipynb",
        [
            "%load_ext nbremind\nimport nbremind",
            "%remind panel",
            "%remind status",
            "%remind test browser",
        ],
        page,
    )
    button = "button.nbremind-permission"
    nb.run_ok(0)
    nb.run_ok(1)
    wait_until(page, "([sel]) => document.querySelector(sel)", [button], what="the panel")
    before = page.evaluate("() => Notification.permission")
    assert before in ("default", "denied")

    status = nb.run_ok(2)["output"]
    tried = nb.run_ok(3)["output"]
    assert f"channel browser: unavailable: {PERMISSION_PROBLEMS[before]}" in status, status
    assert "default channels: desktop" in status, status
    assert f"browser: unavailable: {PERMISSION_PROBLEMS[before]}" in tried, tried

    # allowed (as the site settings would): the button follows without a click or a cell
    context.grant_permissions(["notifications"], origin=lab.base)
    wait_until(
        page,
        "([sel]) => document.querySelector(sel).dataset.permission === 'granted'",
        [button],
        what="the button to show the permission",
    )
    assert page.text_content(button) == "Browser notifications: allowed"
    status = nb.run_ok(2)["output"]
    assert "channel browser: available" in status, status
    assert "default channels: browser" in status, status
    # the line says "waiting" until the page's answer replaces it, once the cell ended (the
    # answer may already be in by the time the output is read)
    tested = nb.run_ok(3)["output"]
    assert f"browser: {SENT_WAITING}" in tested or f"browser: {CONFIRMED}" in tested, tested
    wait_until(
        page,
        "([sel, text]) => [...document.querySelectorAll(sel)][3].textContent.includes(text)",
        [CELLS, f"browser: {CONFIRMED}"],
        what="the test line to say the page showed it",
    )
    # the page answered once the cell ended: it showed the notification
    assert "last browser notification: shown in the page" in nb.run_ok(2)["output"]


#: Also keeps every Notification the page constructs (``window.__noteObjects``), to click it.
KEEP_NOTIFICATIONS = RECORD_NOTIFICATIONS.replace(
    "super(title, options);",
    "super(title, options);\n      (window.__noteObjects ||= []).push(this);",
)

#: Whether the status line of cell ``i`` is inside the window and the notebook's scroller.
LINE_IN_VIEW = """([sel, i]) => {
  const line = document.querySelectorAll(sel)[i].querySelector('.nbremind-status');
  if (!line) return null;
  const r = line.getBoundingClientRect();
  const box = line.closest('.jp-WindowedPanel-outer') || document.documentElement;
  const b = box.getBoundingClientRect();
  return r.height > 0 && r.top >= Math.max(0, b.top) && r.bottom <= Math.min(innerHeight, b.bottom);
}"""


def test_a_click_on_a_notification_scrolls_to_its_cell_and_none_while_watching(lab: Lab) -> None:
    from nbremind.core.browser_views import SHOWN_WATCHING

    context = lab.new_context()
    context.grant_permissions(["notifications"], origin=lab.base)
    context.add_init_script(KEEP_NOTIFICATIONS)
    page = lab.new_page(context)
    filler = "\n".join(f"# filler line {i}" for i in range(60))
    work = "import time\ntime.sleep(3 * LIVE_AFTER)"  # long enough for a live status line
    nb = lab.notebook(
        "click-back.ipynb",
        [
            "%load_ext nbremind\nimport nbremind\n"
            "from nbremind.ipython.status_line import LIVE_AFTER",
            "nbremind.panel()",  # a front end connected before the first notice
            f"%%remind watched --channels browser\n{work}",
            "%remind status",
            "nbremind.configure(when_watching='notify')",
            filler,
            filler,
            f"%%remind far-cell --channels browser\n{work}",
        ],
        page,
    )
    far = 7
    nb.run_ok(0)
    nb.run_ok(1)
    wait_until(page, "() => document.querySelector('.nbremind-panel')", what="the panel")
    # the tab is visible and focused (a headless page always is): no notification, and the
    # page's answer, which reaches the kernel after the cell, says it was shown in the page
    nb.run_ok(2)
    deadline = time.monotonic() + 20
    while f"last browser notification: {SHOWN_WATCHING}" not in nb.run_ok(3)["output"]:
        assert time.monotonic() < deadline, nb.state(3)["output"]
    assert titles(page) == []

    nb.run_ok(4)
    nb.run_ok(far)
    wait_note(page, "✓ far-cell finished", "a Notification for far-cell")
    assert titles(page) == ["✓ far-cell finished"]
    nb.cell(0).locator(".cm-content").click()  # back at the top: the far cell out of view
    wait_until(
        page,
        "(args) => (" + LINE_IN_VIEW + ")(args) === false",
        [CELLS, far],
        what="the far cell's status line out of view",
    )

    page.evaluate("() => window.__noteObjects.at(-1).dispatchEvent(new Event('click'))")

    wait_until(page, LINE_IN_VIEW, [CELLS, far], what="the far cell's line in view", shot="click")
    line = nb.cell(far).locator(".nbremind-status")
    assert "far-cell" in line.text_content(), line.text_content()
    assert "nbremind-highlight" in (line.get_attribute("class") or "")
    panel = page.locator(".nbremind-panel").first  # the line, not the panel, was shown
    assert "nbremind-highlight" not in (panel.get_attribute("class") or "")
    screenshot(nb.cell(far), "notification-click")

"""A click on a desktop toast, in the notebook page: the kernel sends each connected widget
a ``focus`` message (:func:`nbremind.runtime.toast_actions.focus_message`) and the page
scrolls to the task's status line with the highlight, as a click on a browser notification
does, once per toast however many widgets the page has. Headless Chromium (``_frontend_js``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from _frontend_js import SPACER, WHERE, clicking_page
from nbremind.core.clock import SystemClock
from nbremind.core.notice import make_notice
from nbremind.core.task import Task
from nbremind.runtime.toast_actions import focus_message

pytestmark = pytest.mark.browser


def status_state(task_id: str) -> dict[str, Any]:
    return {"view": "status", "text": f"{task_id}: running", "state": "running", "task_id": task_id}


@pytest.fixture
def page(widget_page: Any) -> Any:
    return clicking_page(widget_page)


def test_a_focus_message_scrolls_to_the_task_once(page: Any) -> None:
    task = Task("train", clock=SystemClock())
    task.mark_started()
    message = focus_message(make_notice("after", task.snapshot(), created=time.time(), key=1))
    line = page.evaluate(
        "(state) => { const m = openModel(state); renderView(m); return m; }",
        status_state(task.id),
    )
    other = page.evaluate("(state) => openModel(state)", status_state("elsewhere"))
    page.evaluate(SPACER, 2)
    sel = f'.nbremind-status[data-task-id="{task.id}"]'
    before = page.evaluate(WHERE, sel)

    result = page.evaluate(
        """([models, msg]) => {
          for (const i of models) window.__models[i].custom(msg);
          return { focused: window.__focused, made: window.__made.length,
                   said: window.__models.flatMap((m) => m.sent).filter((x) => x.type === "shown") };
        }""",
        [[line, other], message],
    )

    assert before == {"inView": False, "highlighted": False}
    assert page.evaluate(WHERE, sel) == {"inView": True, "highlighted": True}
    assert result == {"focused": 1, "made": 0, "said": []}  # no notification, no answer

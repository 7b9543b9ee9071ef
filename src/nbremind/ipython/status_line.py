"""The one-line live status under a ``%%remind`` cell.

Shown from ``pre_run_cell``, so it is the first output of the cell and the cell's own
displays and result follow it unchanged: first as plain text and HTML (one message, no
widget), which a cell that ends within ``LIVE_AFTER`` seconds keeps; once the cell has run
that long, the loop thread puts the live widget in its place (same display id) and updates
it (at most four times a second) until the task ends. When the cell ends, its output is
replaced (same display id) by the final line as plain text and HTML, so a saved, reopened or
converted notebook shows how the cell ended and no widget. In a shell without a kernel
(plain terminal IPython) nothing is shown.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import itertools
import threading
import uuid
from typing import TYPE_CHECKING, Any

from ..core.browser_views import BrowserConnection, get_connection
from ..core.log import logger
from ..core.task import Task
from ..runtime.session import Session
from .live import live_refresh
from .panel_rows import gpu_text, usual_text
from .texts import status_text

if TYPE_CHECKING:
    from .widgets import StatusWidget

__all__ = [
    "LIVE_AFTER",
    "StatusLine",
    "can_show_widgets",
    "final_bundle",
    "follow_settings",
    "line_text",
    "publish",
    "show_status_line",
]

log = logger()

#: Display ids: unique to this process (a kernel restarted in the same notebook makes new
#: ones), counted instead of drawn anew per cell.
_DISPLAY_PREFIX = f"nbremind-{uuid.uuid4().hex[:12]}-"
_display_count = itertools.count(1)

#: Seconds a cell runs before its line becomes a live widget (a shorter cell never opens one:
#: making and opening a widget costs a cell more than everything else nbremind does for it).
LIVE_AFTER = 0.25

#: The colour of each final state in static renderers (JupyterLab's theme, else a fallback).
_COLOURS = {
    "succeeded": "var(--jp-success-color1, #388e3c)",
    "failed": "var(--jp-error-color1, #d32f2f)",
    "cancelled": "var(--jp-ui-font-color2, #757575)",
    "timed_out": "var(--jp-warn-color1, #f57c00)",
}


class StatusLine:
    """One task's status line: its output, then its live widget, and their refreshes."""

    def __init__(
        self,
        task: Task,
        widget: StatusWidget | None = None,
        session: Session | None = None,
        shell: Any = None,
        display_id: str | None = None,
        parent: dict[str, Any] | None = None,
    ) -> None:
        self.task = task
        #: The live widget, once the cell has run ``LIVE_AFTER`` seconds (or given).
        self.widget = widget
        self.session = session
        self.shell = shell
        #: The display id of the line's output, replaced by :meth:`leave_final_state`.
        self.display_id = display_id
        #: The header of the cell's request: the loop thread's messages belong to the cell.
        self.parent = parent
        self._shown = (widget.text, widget.state) if widget is not None else (None, None)
        self._final = False
        self._ended = False
        self._lock = threading.Lock()
        #: Updates sent to the front end by refreshes.
        self.updates = 0

    @property
    def busy(self) -> bool:
        return not self._final

    @property
    def done(self) -> bool:
        return self._final or (self.widget is not None and self.widget.comm is None)

    def refresh(self, now: float) -> bool:
        """Send the line when it changed (loop thread); the last send is the final state."""
        task = self.task
        final = task.done  # read first: the text made after it is at least as recent
        if self.widget is None:
            if final or self._ended:
                self._final = True  # the cell's end leaves the final text: no widget
                return False
            if task.elapsed < LIVE_AFTER or not self._go_live():
                return False
        widget = self.widget
        assert widget is not None
        inner = None if final or task.total else self._inner_progress()
        shown = (line_text(task, inner), task.state.value)
        if shown == self._shown:
            self._final = final
            return False
        with widget.hold_sync():
            widget.text, widget.state = shown
        self._shown = shown
        self._final = final
        self.updates += 1
        return True

    def _go_live(self) -> bool:
        """Put the live widget in the line's place (loop thread), unless the cell ended."""
        from .widgets import StatusWidget

        with self._lock:
            if self._ended:
                return False
            task = self.task
            widget = StatusWidget(text=line_text(task), state=task.state.value, task_id=task.id)
            self._shown = (widget.text, widget.state)
            publish(self.shell, widget.mimebundle(), self.display_id, True, self.parent)
            self.widget = widget
        return True

    def leave_final_state(self) -> None:
        """Replace the line in the cell's output by its final text (kernel thread, as the
        cell ends): no widget view is left in the output, so nothing shows "running" or a
        missing widget once the notebook is saved, reopened or converted."""
        with self._lock:
            self._ended = True
        if self.shell is None or self.display_id is None:
            return
        task = self.task
        publish(
            self.shell,
            final_bundle(line_text(task), task.state.value, task.id),
            self.display_id,
            update=True,
        )

    def _inner_progress(self) -> Task | None:
        """The latest running task inside this one that knows its total (a ``track()`` loop
        in the cell), whose progress the line shows while the cell's own is unknown."""
        if self.session is None:
            return None
        inside = {self.task.id}
        found = None
        for other in self.session.tasks():  # oldest first: a parent comes before its children
            parent = other.parent
            if parent is None or parent.id not in inside:
                continue
            inside.add(other.id)
            if other.total and not other.done:
                found = other
        return found


def line_text(task: Task, inner: Task | None = None) -> str:
    """The line's text: :func:`~nbremind.ipython.texts.status_text`, and while the task runs
    with a usual duration, that duration (``▶ etl · 3 min · ETA 22 min · usually 25 min``:
    the ETA is what is left of it until the task's progress gives one); then the GPU figures
    where there are some (``… · GPU 7.5 GB · 87 %``)."""
    text = status_text(task, inner)
    usual = usual_text(task)  # "" unless running with a usual duration
    if usual:
        text = f"{text} · {usual}"
    gpu = gpu_text(task)
    return f"{text} · GPU {gpu}" if gpu else text


@functools.lru_cache(maxsize=1)
def _anywidget_installed() -> bool:
    return importlib.util.find_spec("anywidget") is not None


def can_show_widgets(shell: Any) -> bool:
    """Whether ``shell`` talks to a notebook front end (an ipykernel), and anywidget is here."""
    return getattr(shell, "kernel", None) is not None and _anywidget_installed()


def follow_settings(session: Session, connection: BrowserConnection | None = None) -> None:
    """Have the ``browser`` channel read ``when_watching`` from ``session`` (whose tasks the
    notebook's status lines and panel show) through ``connection`` (default: the process's)."""
    (connection or get_connection()).follow_when_watching(lambda: session.config.when_watching)


def final_bundle(text: str, state: str, task_id: str = "") -> dict[str, Any]:
    """A status line as plain output: ``text/plain`` and escaped ``text/html`` (whose
    ``data-task-id`` a click on a browser notification of the task looks for)."""
    colour = _COLOURS.get(state)
    style = f' style="color: {colour}"' if colour else ""
    task = f' data-task-id="{html.escape(task_id)}"' if task_id else ""
    markup = (
        f'<div class="nbremind-status" data-state="{html.escape(state)}"{task}{style}>'
        f"{html.escape(text)}</div>"
    )
    return {"text/plain": text, "text/html": markup}


def publish(
    shell: Any,
    data: dict[str, Any],
    display_id: str | None = None,
    update: bool = False,
    parent: dict[str, Any] | None = None,
) -> None:
    """Send ``data`` as a ``display_data`` of the running cell (``update``: an
    ``update_display_data`` of the output shown with ``display_id``; ``parent``: the header
    of the cell's request, for a message sent from another thread).

    ``pre_run_cell`` runs before the cell has printed anything, so this skips what
    ``display()`` adds for ordinary outputs (formatters, and flushing stdout/stderr, which
    waits twice on ipykernel's I/O thread): it would cost a cell more than everything else
    nbremind does for it. Falls back on ``display()`` where ipykernel's publisher differs.
    """
    pub: Any = getattr(shell, "display_pub", None)
    session = getattr(pub, "session", None)
    socket = getattr(pub, "pub_socket", None)
    transient = {} if display_id is None else {"display_id": display_id}
    if pub is None or session is None or socket is None:
        from IPython.display import publish_display_data

        publish_display_data(  # type: ignore[no-untyped-call]
            data, transient=transient, update=update
        )
        return
    content = {"data": data, "metadata": {}, "transient": transient}
    kind = "update_display_data" if update else "display_data"
    message = session.msg(kind, content, parent=pub.parent_header if parent is None else parent)
    session.send(socket, message, ident=getattr(pub, "topic", None))


def show_status_line(shell: Any, session: Session, task: Task) -> StatusLine | None:
    """Show ``task``'s status line in the running cell's output and keep it live."""
    if not can_show_widgets(shell):
        return None
    display_id = f"{_DISPLAY_PREFIX}{next(_display_count)}"
    publish(shell, final_bundle(line_text(task), task.state.value, task.id), display_id)
    follow_settings(session)
    parent = getattr(getattr(shell, "display_pub", None), "parent_header", None)
    line = StatusLine(task, None, session, shell, display_id, parent)
    live_refresh(session).add(line, kick=False)  # nothing to send before LIVE_AFTER
    return line

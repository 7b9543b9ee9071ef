"""nbremind's two widgets (anywidget): the live panel and a ``%%remind`` cell's status line.

Both run the same front-end module, ``static/nbremind.js``, which draws with DOM APIs and
``textContent`` only, says hello/bye to the kernel for each widget a page loads (see
:mod:`nbremind.core.browser_views`) and raises the ``browser`` channel's notifications.
Imported only when a panel or status line is made: ``import nbremind`` never loads it.
"""

from __future__ import annotations

import contextlib
import html
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets
import traitlets

from ..core.browser_views import BrowserConnection, get_connection
from .panel_rows import ROW_FIELDS

__all__ = [
    "PANEL_CSS",
    "PANEL_JS",
    "SNAPSHOT_NOTE",
    "NbremindWidget",
    "PanelWidget",
    "StatusWidget",
    "compact",
]

_STATIC = Path(__file__).with_name("static")
#: Where the panel's part of the front end begins and ends (the status line leaves it out).
PANEL_JS = ("// -- the panel --", "// -- anywidget entry points --")
PANEL_CSS = "/* -- the panel -- */"


def compact(source: str) -> str:
    """``source`` (JavaScript or CSS) without its comment lines and indentation: what every
    widget sends to the page when it opens, so each ``%%remind`` cell sends less."""
    kept = []
    in_comment = False  # inside a /* ... */ comment of several lines
    for line in source.splitlines():
        text = line.strip()
        if in_comment or text.startswith("/*"):
            in_comment = "*/" not in text
        elif text and not text.startswith(("//", "*")):
            kept.append(text)
    return "\n".join(kept) + "\n"


def _without(source: str, begin: str, end: str | None) -> str:
    start = source.index(begin)
    return source[:start] + (source[source.index(end) :] if end is not None else "")


_JS = (_STATIC / "nbremind.js").read_text(encoding="utf-8")
_CSS_ALL = (_STATIC / "nbremind.css").read_text(encoding="utf-8")
_ESM = compact(_JS)
_CSS = compact(_CSS_ALL)
#: The status line's front end: the same module without the panel's part.
_STATUS_ESM = compact(_without(_JS, *PANEL_JS))
_STATUS_CSS = compact(_without(_CSS_ALL, PANEL_CSS, None))
#: What a panel's static snapshot (shown where widgets are not) says under it.
SNAPSHOT_NOTE = "A snapshot: the live panel needs a running kernel."


class NbremindWidget(anywidget.AnyWidget):
    """What the panel and the status line share: the front end and its hello/bye."""

    _esm = traitlets.Unicode(_ESM).tag(sync=True)
    _css = traitlets.Unicode(_CSS).tag(sync=True)
    #: anywidget's name for the class (its CSS is shared by id); declared here, not added
    #: per instance.
    _anywidget_id = traitlets.Unicode().tag(sync=True)
    #: Which of the two the front end draws.
    view = traitlets.Unicode("status").tag(sync=True)

    def __init__(self, connection: BrowserConnection | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._connection = connection or get_connection()
        self.on_msg(self._on_front_end_message)

    @traitlets.default("_anywidget_id")
    def _class_id(self) -> str:
        return f"{type(self).__module__}.{type(self).__name__}"

    def add_traits(self, **traits: Any) -> None:
        """Add only traits the class does not declare already.

        anywidget adds ``_anywidget_id`` (and ``_esm``/``_css`` when they are plain
        attributes) to every instance, which makes a new class each time; these are declared
        on the class, so a status line, one per ``%%remind`` cell, skips that cost.
        """
        fresh = {name: trait for name, trait in traits.items() if not self.has_trait(name)}
        if fresh:
            super().add_traits(**fresh)

    def _on_front_end_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind, view = content.get("type"), str(content.get("view", ""))
        if kind == "hello":
            self._connection.hello(self, view, content.get("permission"))
        elif kind == "bye":
            self._connection.bye(self, view)
        elif kind == "permission":
            self._connection.permission_of(self, content.get("permission"))
        elif kind == "shown":
            why = content.get("permission") or content.get("error")
            watching = content.get("watching")
            self._connection.shown(content.get("id"), content.get("ok"), why, watching)

    def plain_text(self) -> str:
        """What a front end without widgets shows instead (``text/plain``)."""
        return "nbremind"

    def snapshot_html(self) -> str:
        """The same as escaped HTML, for viewers without widgets (``""``: none)."""
        return ""

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        self._connection.displayed()
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/plain"] = self.plain_text()
            markup = self.snapshot_html()
            if markup:
                data["text/html"] = markup
        return bundle

    def close(self) -> None:
        connection = getattr(self, "_connection", None)  # None: closed while being made
        if connection is not None:
            connection.forget(self)
        super().close()


class PanelWidget(NbremindWidget):
    """The live panel: tasks, channels, the mute switch and the permission button."""

    view = traitlets.Unicode("panel").tag(sync=True)
    #: The meaning of each position in a row (``panel_rows.ROW_FIELDS``).
    fields = traitlets.List(traitlets.Unicode(), list(ROW_FIELDS)).tag(sync=True)
    #: One list per task, in display order: sent whole only in a full state (a page
    #: connects); refreshes send ``delta`` and the page applies it to its copy in place.
    rows: traitlets.List[Any] = traitlets.List().tag(sync=True)
    #: Which delta ``rows`` is at (``panel_rows.RowSync``).
    rows_seq = traitlets.Int(0).tag(sync=True)
    #: What changed in ``rows`` since the update before (``panel_rows.RowSync.delta``).
    delta: traitlets.Dict[str, Any] = traitlets.Dict().tag(sync=True)
    #: The kernel's clock (seconds since the epoch) when ``rows`` was last updated: a page
    #: counts running tasks' time on from their ``started``.
    clock = traitlets.Float(0.0).tag(sync=True)
    #: ``[rss, cpu]`` of the process, shown in every running task's row.
    usage: traitlets.List[Any] = traitlets.List().tag(sync=True)
    #: ``[name, "available" | "unavailable: why", ok]`` per channel.
    channels: traitlets.List[Any] = traitlets.List().tag(sync=True)
    #: Which channels notices without channels of their own go to, and why.
    default_note = traitlets.Unicode("").tag(sync=True)
    #: ``"2 running · 14 finished"``.
    summary = traitlets.Unicode("").tag(sync=True)
    #: The upcoming jobs of the settings files: ``{"rows": [...], "more": N}`` (see
    #: :mod:`.panel_jobs`), ``{}`` when there are none.
    jobs: traitlets.Dict[str, Any] = traitlets.Dict().tag(sync=True)
    #: The mute switch; the user may flip it in the browser.
    muted = traitlets.Bool(False).tag(sync=True)
    #: The kernel's heartbeat (its clock, bumped every ``panel.BEAT_EVERY`` seconds): a page
    #: drawing the panel from a saved state, with no kernel behind it, shows ``stale_note``.
    beat = traitlets.Float(0.0).tag(sync=True)
    stale_note = traitlets.Unicode(SNAPSHOT_NOTE).tag(sync=True)

    def __init__(self, connection: BrowserConnection | None = None, **kwargs: Any) -> None:
        #: Held while the rows change and while a full state is made and sent.
        self.lock = threading.RLock()
        #: Makes ``rows`` the latest, whole (set by the panel; called holding ``lock``).
        self.full_state: Callable[[], None] | None = None
        self._quiet: int | None = None
        super().__init__(connection, **kwargs)
        #: The display ids of the outputs showing it (``%remind panel``), which closing it
        #: replaces by a static snapshot.
        self.display_ids: list[str] = []

    @contextlib.contextmanager
    def quietly(self) -> Iterator[None]:
        """Set traits here without sending them (this thread only)."""
        self._quiet = threading.get_ident()
        try:
            yield
        finally:
            self._quiet = None

    def _should_send_property(self, key: Any, value: Any) -> bool:
        if self._quiet is not None and self._quiet == threading.get_ident():
            return False
        return bool(super()._should_send_property(key, value))

    def _on_front_end_message(self, widget: Any, content: Any, buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "resync":
            self.send_state()  # the page missed a delta: a full state
            return
        super()._on_front_end_message(widget, content, buffers)

    def _bring_up_to_date(self) -> None:
        if self.full_state is not None:
            self.full_state()

    def close(self) -> None:
        """Close the panel, leaving a static snapshot in the outputs that showed it."""
        ids, self.display_ids = getattr(self, "display_ids", []), []
        if ids and self.comm is not None:
            with contextlib.suppress(Exception), self.lock:
                self._bring_up_to_date()
            try:
                from IPython.display import publish_display_data

                bundle = {"text/plain": self.plain_text(), "text/html": self.snapshot_html()}
                for display_id in ids:
                    publish_display_data(  # type: ignore[no-untyped-call]
                        bundle, transient={"display_id": display_id}, update=True
                    )
            except Exception:  # no kernel to tell any more (the process is ending)
                pass
        super().close()

    def send_state(self, key: Any = None) -> None:
        """ipywidgets' ``send_state`` without its walk of the whole state looking for binary
        buffers: the panel's state is plain JSON data, and with 1,000 rows that walk is a
        quarter of a refresh. ``key=None`` (a page connects, or asks): the full state, its
        rows whole and up to date."""
        if key is None:
            with self.lock:
                self._bring_up_to_date()
                self._send_state(None)
            return
        self._send_state(key)

    def _send_state(self, key: Any) -> None:
        state = self.get_state(key=key)
        if not state:
            return
        if self._property_lock:  # keep ipywidgets' echo bookkeeping
            for name, value in state.items():
                if name in self._property_lock:
                    self._property_lock[name] = value
        self._send({"method": "update", "state": state, "buffer_paths": []}, buffers=[])

    def plain_text(self) -> str:
        lines = [f"nbremind panel: {self.summary}".rstrip(": ")]
        for depth, name, state, count, elapsed, _notice in self._snapshot_rows():
            lines.append(f"  {'  ' * depth}{name}: {state} {count} {elapsed}".rstrip())
        lines.append(SNAPSHOT_NOTE)
        return "\n".join(lines)

    def snapshot_html(self) -> str:
        """The panel's rows as a plain table, with a note that it is not live."""
        cells = "".join(
            f"<th>{label}</th>" for label in ("task", "state", "done", "elapsed", "last notice")
        )
        body = []
        for depth, name, state, count, elapsed, notice in self._snapshot_rows():
            texts = (name, state, count, elapsed, notice)
            tds = "".join(f"<td>{html.escape(text)}</td>" for text in texts)
            pad = f' style="padding-left: {depth * 1.2:g}em"' if depth else ""
            body.append(f"<tr{pad}>{tds}</tr>")
        summary = html.escape(f"nbremind panel: {self.summary}".rstrip(": "))
        return (
            f'<div class="nbremind-snapshot"><div><b>{summary}</b></div>'
            f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"<div><i>{html.escape(SNAPSHOT_NOTE)}</i></div></div>"
        )

    def _snapshot_rows(self) -> list[tuple[int, str, str, str, str, str]]:
        index = {name: i for i, name in enumerate(self.fields)}
        return [
            (
                int(row[index["depth"]]),
                str(row[index["name"]]),
                str(row[index["state_text"]]),
                str(row[index["count"]]),
                str(row[index["elapsed"]]),
                str(row[index["notice"]] or ""),
            )
            for row in self.rows[:20]
        ]


class StatusWidget(NbremindWidget):
    """The one line under a ``%%remind`` cell."""

    view = traitlets.Unicode("status").tag(sync=True)
    _esm = traitlets.Unicode(_STATUS_ESM).tag(sync=True)
    _css = traitlets.Unicode(_STATUS_CSS).tag(sync=True)
    text = traitlets.Unicode("").tag(sync=True)
    #: The task's state (``running``, ``succeeded``, ...), for the colour.
    state = traitlets.Unicode("running").tag(sync=True)
    #: The task's id: a click on a browser notification of the task (or of a task inside
    #: it) scrolls to the line.
    task_id = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        # Status lines are never styled, so they share one layout model instead of each
        # opening a second comm for its own (a %%remind cell starts one status line).
        kwargs.setdefault("layout", _shared_layout())
        super().__init__(**kwargs)

    def plain_text(self) -> str:
        return self.text

    def mimebundle(self) -> dict[str, Any]:
        """What displaying the line sends: the widget view, and its text for front ends
        without widgets."""
        self._connection.displayed()
        return {
            "text/plain": self.text,
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2,
                "version_minor": 1,
                "model_id": self.model_id,
            },
        }


_layout: ipywidgets.Layout | None = None


def _shared_layout() -> ipywidgets.Layout:
    global _layout
    if _layout is None or _layout.comm is None:
        _layout = ipywidgets.Layout()
    return _layout

"""``nbremind.panel()`` / ``%remind panel``: one live widget listing this kernel's tasks.

The widget is made once per session; displaying it again shows another view of the same
model, so updates cost one message whatever the number of views. The loop thread refreshes
it (:mod:`nbremind.ipython.live`): one coalesced state update per pass, only when something
changed, so at most four messages a second whatever the number of tasks. An update carries
what changed in the rows since the one before (``PanelWidget.delta``, see
:class:`~nbremind.ipython.panel_rows.RowSync`), at most ``UPDATE_BYTES`` of them; the whole
list goes only in a full state: when the panel is first shown, when a page (re)connects to
the widget, or when a page asks for it after missing a delta.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import math
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from ..core.channel_names import DEFAULT_CANDIDATES
from ..core.log import logger
from ..core.task import Task
from ..runtime.sampling import ProcessSampler, Usage
from ..runtime.session import Session, get_session
from .live import live_refresh
from .panel_jobs import UpcomingJobs
from .panel_rows import Row, RowBuilder, RowSync, listed_tasks, usage_texts
from .status_line import follow_settings

if TYPE_CHECKING:
    from .widgets import PanelWidget

__all__ = [
    "BEAT_EVERY",
    "Panel",
    "channel_rows",
    "close_panels",
    "panel",
    "panel_of",
    "show_panel",
]

log = logger()

#: Seconds between two looks at the channels' availability.
CHANNELS_EVERY = 1.0
#: Seconds between two heartbeats (``PanelWidget.beat``) while the kernel lives.
BEAT_EVERY = 5.0
#: Seconds ``panel()`` waits for the channels' availability before showing the panel.
PRIME_WAIT = 1.0
#: Rows of changed tasks rebuilt per refresh at most (one update carries fewer changes than
#: that): with 10,000 tasks all advancing a pass rebuilds 1,000 rows.
REBUILD_LIMIT = 1000


class Panel:
    """A session's panel widget and how the loop thread keeps it up to date."""

    def __init__(self, session: Session, widget: PanelWidget | None = None) -> None:
        if widget is None:
            from .widgets import PanelWidget

            widget = PanelWidget(muted=session.config.muted)
        self.session = session
        self.widget = widget
        self._rows = RowBuilder(session.last_notice)
        self._sync = RowSync()
        #: The rows of the last pass, complete (the front end may not have all of them yet).
        self._latest: list[Row] = []
        self._listing: tuple[int, list[Task], list[bool], list[tuple[Task, int]]] | None = None
        self._sampler = ProcessSampler()
        self._channels: list[list[Any]] = []
        self._default_note = ""
        self._channels_at = float("-inf")
        self._channels_job: asyncio.Future[None] | None = None
        self._busy = True
        #: The "Upcoming jobs" section (read on the loop, at most every 30 s).
        self.jobs = UpcomingJobs(session)
        self._jobs_job: asyncio.Future[None] | None = None
        #: State updates sent to the front end by refreshes, and when the recent ones were.
        self.updates = 0
        self.sent_at: collections.deque[float] = collections.deque(maxlen=1000)
        widget.observe(self._on_mute_switch, names="muted")
        widget.full_state = self._full_state
        follow_settings(session)

    # -- LiveView -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def done(self) -> bool:
        return self.widget.comm is None  # closed

    def refresh(self, now: float) -> bool:
        """Send what changed since the last refresh as one update (loop thread)."""
        self._look_at_channels(now)
        self._look_at_jobs(now)
        widget = self.widget
        with widget.lock:  # a full state (the kernel's thread) goes before or after, whole
            state = self.state(now)
            self._latest = latest = state.pop("rows")
            changed = {key: value for key, value in state.items() if getattr(widget, key) != value}
            delta = self._sync.delta(latest)
            if delta is not None:
                changed["delta"] = delta
                changed["clock"] = self.session.clock.time()
                with widget.quietly():  # what a page that connects now is sent
                    widget.rows = self._sync.listed()
                    widget.rows_seq = self._sync.seq
            if not changed:
                return False
            with widget.hold_sync():
                for key, value in changed.items():
                    setattr(widget, key, value)
        self.updates += 1
        self.sent_at.append(now)
        return True

    def _full_state(self) -> None:
        """Make the widget's ``rows`` the latest, whole, as a new base for the deltas (under
        ``widget.lock``; a full state or a snapshot is about to be made of it)."""
        widget = self.widget
        if self._listing is not None:  # every row up to date, not only the most changed
            self._latest = self._rows.rows(self._listing[3])
        self._rows.refresh_elapsed()
        seq = self._sync.reset(self._latest)
        with widget.quietly():
            widget.rows = list(self._latest)
            widget.rows_seq = seq
            widget.clock = self.session.clock.time()

    def prime(self, wait: float = PRIME_WAIT) -> None:
        """Fill the widget before its first display (caller's thread, before the loop
        refreshes it), so the first view already lists the tasks and, unless the loop takes
        longer than ``wait`` seconds to say, the channels."""
        began = time.monotonic()
        future = self.session.ticker.submit(channel_rows(self.session))
        jobs = self.session.ticker.submit(self._update_jobs()) if self.jobs.due(0.0) else None
        try:
            self._channels, self._default_note = future.result(timeout=wait)
            self._channels_at = time.monotonic()
        except Exception:  # not known in time (a slow desktop probe): the loop fills it in
            log.debug("channel availability not known yet", exc_info=True)
        if jobs is not None:  # read on the loop: the kernel's thread only waits, a little
            try:
                jobs.result(timeout=max(0.0, wait - (time.monotonic() - began)))
            except Exception:
                log.debug("the jobs are not read yet", exc_info=True)
        widget = self.widget
        with widget.lock:
            state = self.state(time.monotonic(), sample=False)
            self._latest = state["rows"]
            state["rows_seq"] = self._sync.reset(self._latest)
            state["clock"] = self.session.clock.time()
            with widget.hold_sync():
                for key, value in state.items():
                    setattr(widget, key, value)

    def state(self, now: float, sample: bool = True) -> dict[str, Any]:
        """Everything the panel shows, as plain data; ``sample``: read the process's memory
        and CPU (loop thread only)."""
        session = self.session
        tasks = session.tasks()
        done = [t.done for t in tasks]
        keep = session.config.panel_keep
        cached = self._listing
        if cached is not None and cached[0] == keep and cached[1] == tasks and cached[2] == done:
            listed = cached[3]  # the same tasks, none ended since: the same listing
        else:
            listed = listed_tasks(tasks, keep)
            self._listing = (keep, tasks, done, listed)
        running = done.count(False)
        self._busy = running > 0 or self._channels_job is not None
        resources = self._sampler.sample(now) if running and sample else Usage()
        finished = len(tasks) - running
        shown = len(listed) - running
        summary = f"{running} running · {finished} finished"
        if shown < finished:
            summary += f" (the last {shown} shown)"
        return {
            "rows": self._rows.rows(listed, limit=REBUILD_LIMIT if sample else None),
            "usage": usage_texts(resources) if running else ["", ""],
            "channels": self._channels,
            "default_note": self._default_note,
            "summary": summary,
            "muted": session.config.muted,
            "jobs": self.jobs.model,
            "beat": math.floor(time.time() / BEAT_EVERY) * BEAT_EVERY,
        }

    # -- channels (availability is asked on the loop, never blocking it) -------------------------
    def _look_at_channels(self, now: float) -> None:
        if self._channels_job is not None or now - self._channels_at < CHANNELS_EVERY:
            return
        self._channels_at = now
        self._channels_job = asyncio.ensure_future(self._update_channels())

    async def _update_channels(self) -> None:
        try:
            self._channels, self._default_note = await channel_rows(self.session)
        except Exception:
            log.debug("reading channel availability failed", exc_info=True)
        finally:
            self._channels_job = None

    # -- upcoming jobs (read on the loop: files and the history, at most every 30 s) --------------
    def _look_at_jobs(self, now: float) -> None:
        if self._jobs_job is None and self.jobs.due(now):
            self._jobs_job = asyncio.ensure_future(self._update_jobs())

    async def _update_jobs(self) -> None:
        try:
            self.jobs.update()
        finally:
            self._jobs_job = None

    # -- the mute switch (flipped in the browser; runs on the kernel's thread) -----------------
    def _on_mute_switch(self, change: dict[str, Any]) -> None:
        muted = bool(change["new"])
        if muted != self.session.config.muted:
            self.session.configure("panel mute switch", muted=muted)


async def channel_rows(session: Session) -> tuple[list[list[Any]], str]:
    """``[[name, state, ok], ...]`` for the channels in use, and a line saying which channels
    notices go to and why (loop thread)."""
    dispatcher = session.dispatcher
    chosen = session.config.channels
    states = await dispatcher.availability(chosen or DEFAULT_CANDIDATES)
    from ..core.secrets import redact  # a channel URL may hold a ${ENV} secret

    rows = [[redact(name), redact(state), state == "available"] for name, state in states.items()]
    if chosen:
        source = session.config_sources.get("channels", "the settings")
        return rows, redact(f"channels: {', '.join(chosen)} (chosen by {source})")
    choice = await dispatcher.default_channels(wait=False)
    return rows, f"default channels: {choice}"


_panels: dict[int, Panel] = {}
_panels_lock = threading.Lock()


def close_panels() -> None:
    """Close every open panel (at the kernel's exit): each output that showed one gets its
    static snapshot, so a page still open, and the notebook it saves, keep readable rows."""
    with _panels_lock:
        panels = list(_panels.values())
        _panels.clear()
    for current in panels:
        try:
            current.widget.close()
        except Exception:  # the kernel's channels may be gone already
            log.debug("closing a panel failed", exc_info=True)


_closing_at_exit = False


def panel_of(session: Session) -> Panel | None:
    """The panel made for ``session`` so far, if any (and still open)."""
    with _panels_lock:
        current = _panels.get(id(session))
    if current is None or current.done or current.session is not session:
        return None
    return current


def panel(session: Session | None = None) -> PanelWidget:
    """The live panel of ``session`` (default: the process's), made on first use.

    Display it (or make it a cell's last expression); every display is a view of the same
    widget. A closed panel is replaced by a new one.
    """
    session = session or get_session()
    with _panels_lock:
        current = _panels.get(id(session))
        if current is None or current.done or current.session is not session:
            current = _panels[id(session)] = Panel(session)
            fresh = True
            global _closing_at_exit
            if not _closing_at_exit:
                _closing_at_exit = True
                atexit.register(close_panels)
        else:
            fresh = False
    refresher = live_refresh(session)
    if fresh:
        current.prime()
        refresher.add(current)
    else:
        refresher.kick()
    return current.widget


def show_panel(session: Session | None = None) -> None:
    """Display the live panel (``%remind panel``) in an output that closing the panel
    replaces by a static snapshot of its rows."""
    from IPython.display import display

    widget = panel(session)
    display_id = f"nbremind-panel-{uuid.uuid4().hex}"
    widget.display_ids.append(display_id)
    display(widget, display_id=display_id)  # type: ignore[no-untyped-call]

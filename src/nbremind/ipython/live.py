"""Live widgets refreshed from the session's loop thread, at most once per 0.25 s each.

One :class:`LiveRefresh` per session runs a coroutine on the session's loop (the ticker
thread) while it has views: each pass asks every view to refresh, and a view sends at most
one coalesced message per pass, only when something it shows changed. Passes are at least
``INTERVAL`` apart, so no widget sends more than four messages a second whatever the number
of tasks; with nothing running, passes slow down to one a second.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
import weakref
from typing import Protocol

from ..core.log import logger
from ..runtime.session import Session

__all__ = ["INTERVAL", "LINGER", "LiveRefresh", "LiveView", "live_refresh"]

log = logger()

#: Seconds between two refresh passes while something changes (4 a second at most).
INTERVAL = 0.25
#: Seconds between passes while nothing runs (a task started elsewhere is seen this late).
IDLE_INTERVAL = 1.0
#: Idle passes with no view left before the refresher stops (a %%remind cell after another
#: finds it running instead of waking the loop thread to start it again).
LINGER = 60


class LiveView(Protocol):
    """A widget the loop thread keeps up to date."""

    @property
    def busy(self) -> bool:
        """Whether what it shows is changing (refresh at full rate)."""

    @property
    def done(self) -> bool:
        """Whether it needs no more refreshes (closed, or showing its final state)."""

    def refresh(self, now: float) -> bool:
        """Bring the widget up to date (loop thread); return whether a message was sent."""


class LiveRefresh:
    """Refreshes one session's live views from its loop thread."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._lock = threading.Lock()
        self._views: list[LiveView] = []
        self._running = False
        self._idle = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Refresh passes made, and the loop thread's CPU seconds for each recent one (and
        #: when it started, ``time.monotonic()``).
        self.passes = 0
        self.pass_cpu: collections.deque[float] = collections.deque(maxlen=2000)
        self.pass_at: collections.deque[float] = collections.deque(maxlen=2000)

    def add(self, view: LiveView, kick: bool = True) -> None:
        """Start refreshing ``view`` (and the loop's refresh coroutine, if needed);
        ``kick=False``: at the next pass, not sooner (within ``IDLE_INTERVAL``)."""
        with self._lock:
            self._views.append(view)
            start = not self._running
            self._running = True
        if start:
            self.session.ticker.submit(self._run())
        elif kick:
            self.kick()

    def kick(self) -> None:
        """Refresh soon (a cell started or ended) when the refresher is idling; still no
        sooner than ``INTERVAL`` after the last pass. While it is busy the next pass is at
        most ``INTERVAL`` away anyway, so the loop thread is not woken for nothing."""
        loop, wake = self._loop, self._wake
        if self._idle and loop is not None and wake is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop stopped in between
                loop.call_soon_threadsafe(wake.set)

    def views(self) -> list[LiveView]:
        """The views still being refreshed."""
        with self._lock:
            return list(self._views)

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        last = float("-inf")
        empty = 0
        while True:
            with self._lock:
                empty = 0 if self._views else empty + 1
                if empty > LINGER:
                    self._running = False
                    return
                views = list(self._views)
            while (gap := last + INTERVAL - time.monotonic()) > 0:  # timers may fire early
                await asyncio.sleep(gap)
            started = time.thread_time()
            last = time.monotonic()
            busy = self._pass(views, last)
            self.pass_cpu.append(time.thread_time() - started)
            self.pass_at.append(last)
            self.passes += 1
            wake.clear()
            self._idle = not busy
            # busy: the next pass starts INTERVAL after this one started (the gap check above
            # waits out the rest if woken early); idle: until woken, or IDLE_INTERVAL
            pause = last + INTERVAL - time.monotonic() if busy else IDLE_INTERVAL
            if pause > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), pause)
            self._idle = False

    def _pass(self, views: list[LiveView], now: float) -> bool:
        busy = False
        finished: list[LiveView] = []
        for view in views:
            try:
                view.refresh(now)
                if view.done:
                    finished.append(view)
                elif view.busy:
                    busy = True
            except Exception:  # one broken view must not stop the others
                log.debug("refreshing %r failed", view, exc_info=True)
                finished.append(view)
        if finished:
            with self._lock:
                self._views = [v for v in self._views if v not in finished]
        return busy


_refreshers: weakref.WeakKeyDictionary[Session, LiveRefresh] = weakref.WeakKeyDictionary()
_refreshers_lock = threading.Lock()


def live_refresh(session: Session) -> LiveRefresh:
    """The session's refresher, made on first use."""
    with _refreshers_lock:
        refresher = _refreshers.get(session)
        if refresher is None:
            refresher = _refreshers[session] = LiveRefresh(session)
        return refresher

"""A session's durable outbox: opened on first use, the leftovers of ended processes replayed
once its loop thread starts, and what the loop thread prepares first."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.log import log_exception
from ..core.task import process_tag

if TYPE_CHECKING:
    import concurrent.futures

    from ..core.clock import Clock
    from ..core.config import Config
    from ..core.ticker import Ticker
    from ..delivery.dispatcher import Dispatcher
    from ..store.outbox import Outbox, Replay

__all__ = ["OutboxLink"]

#: Seconds after the loop thread starts at which it imports psutil (before the first tick).
_PSUTIL_AFTER = 0.1


def _import_psutil() -> None:
    try:
        import psutil  # noqa: F401
    except Exception:
        log_exception("importing psutil failed")


class OutboxLink:
    """Where a session's notices wait until delivered, and the replay of what others left.

    ``config`` gives the settings in force and ``closed`` whether the session closed;
    ``hold`` counts a delivery's future as pending; ``prepare`` is run first thing on the
    loop thread (opening the history file).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        ticker: Ticker,
        clock: Clock,
        *,
        config: Callable[[], Config],
        closed: Callable[[], bool],
        hold: Callable[[concurrent.futures.Future[Any]], None],
        prepare: Callable[[], object],
    ) -> None:
        self.dispatcher = dispatcher
        self.ticker = ticker
        self.clock = clock
        self._config = config
        self._closed = closed
        self._hold = hold
        self._prepare = prepare
        self._held: tuple[tuple[object, ...], Outbox | None] | None = None
        self._replayed = False
        self._lock = threading.Lock()
        #: What the last look for notices left by ended processes found.
        self.last_replay: Replay | None = None
        dispatcher.outbox_source = lambda: self.outbox
        dispatcher.already_sent = self._sent_earlier
        ticker.on_start = self.loop_started

    @property
    def outbox(self) -> Outbox | None:
        """The outbox, opened on first use (again when ``outbox`` or ``data_dir`` change);
        ``None`` when turned off or unusable (delivery is in memory)."""
        config = self._config()
        if not config.outbox:
            return None
        # a forked child opens its own (a SQLite connection must not cross a fork)
        key = (config.data_dir, os.environ.get("NBREMIND_DATA_DIR"), os.getpid())
        with self._lock:
            held = self._held
            if held is not None and held[0] == key:
                return held[1]
            if self._closed():
                return None
            from ..store.outbox import open_outbox

            self._held = (key, open_outbox(config, self.clock))
            if held is not None and held[1] is not None and held[0][2] == key[2]:
                held[1].close()
            return self._held[1]

    def replay(self) -> concurrent.futures.Future[None] | None:
        """Deliver what ended processes left undelivered in the outbox, once."""
        with self._lock:
            if self._replayed or self._closed() or not self._config().outbox:
                return None
            self._replayed = True
        future = self.ticker.submit(self._replay())  # may start the loop (and call us again)
        self._hold(future)
        return future

    def loop_started(self) -> None:
        """The loop thread started: prepare it, then replay the leftovers."""
        self.ticker.call_soon(self._warm_up)
        self.replay()

    def already_sent(self, notice_id: str) -> bool:
        """Whether the outbox says ``notice_id`` was delivered (by this or an earlier
        process). A notice of this process that every channel took at once is only counted
        there, not stored: for it this says ``False`` (the dispatcher knows it was sent)."""
        outbox = self.outbox
        return outbox is not None and outbox.delivered(notice_id)

    def _sent_earlier(self, notice_id: str) -> bool:
        """For the de-duplication rule: whether an earlier process delivered ``notice_id``.
        A notice about a task of this process cannot have been sent by an earlier one (its
        id starts with this process's tag; this process's own sends are known in memory):
        the file is not asked (a read would first write every queued record)."""
        if notice_id.startswith(f"{process_tag()}-"):
            return False
        return self.already_sent(notice_id)

    def close(self) -> None:
        """Close the outbox (after the loop thread stopped)."""
        with self._lock:
            held, self._held = self._held, None
        if held is not None and held[1] is not None and held[0][2] == os.getpid():
            held[1].close()

    def _warm_up(self) -> None:
        """Open the history file and import what the loop thread needs, first thing.

        Done lazily in the middle of busy user code instead, each file read of an import
        gives the GIL away and waits up to a switch interval to get it back: seconds during
        which the loop thread delivers and refreshes nothing.
        """
        config = self._config()
        if not config.outbox or not config.history_keep:
            return
        try:
            self._prepare()
            # psutil (memory sampling, from a task's first tick on) a little later: a short
            # script's exit, which waits for the history rows queued after this, skips it
            self.ticker.loop.call_later(_PSUTIL_AFTER, _import_psutil)
        except Exception:
            log_exception("preparing the loop thread failed")

    async def _replay(self) -> None:
        outbox = self.outbox
        if outbox is not None:
            from ..delivery.replay import deliver_leftovers

            self.last_replay = await deliver_leftovers(outbox, self.dispatcher, self._config())

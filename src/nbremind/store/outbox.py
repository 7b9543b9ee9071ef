"""The durable outbox: every notice is written to a SQLite file as it is delivered.

Each notice is stored with the process that owns its delivery (pid, process start time,
host) and one row per channel: ``pending`` until the channel's final outcome, then
``delivered``, ``failed`` or ``dropped``. A process that dies with deliveries still pending
leaves them here; the next nbremind process of the same user claims them (one atomic update
per notice, so exactly one process wins) and delivers them (see :mod:`nbremind.delivery.replay`).
Notices older than ``outbox_max_age`` are not delivered late: they are marked ``dropped``
with a record saying so, and a log line.

The dispatcher queues its writes (``queue_record``, ``queue_mark``, ``queue_drop``) and
has them written by :meth:`Outbox.flush` a few milliseconds later, in one transaction with
whatever else was queued by then: a burst of notices costs one commit, not one per notice
and outcome. A notice of this process delivered on every channel by then gets no rows: it
is counted, by day, in the table ``delivered_counts`` (nothing replays it, and only other
processes' notices are looked up for de-duplication). Every read writes what is queued
first; the other methods write at once.

The file lives in ``data_dir`` (setting), else ``$NBREMIND_DATA_DIR``, else the platform
user-data folder (``platformdirs.user_data_dir("nbremind")``). It is opened in WAL mode with
a busy timeout, so several processes share it. Every method is short and never raises a
database error: the first failure of each kind is logged and delivery goes on in memory.
Error texts, channel names and payloads are passed through :func:`nbremind.core.secrets.redact`
(channel names also have a URL's credentials masked) before they are stored. Notices are
stored as JSON by :mod:`nbremind.store.notice_json`; owners are told apart by
:mod:`nbremind.store.process`.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.clock import Clock
from ..core.notice import Notice, format_duration
from ..core.secrets import redact
from ..core.task import process_tag
from .notice_json import notice_from_dict, notice_to_dict, stored_channel_name
from .process import Owner, owner_alive
from .sqlite import Database

if TYPE_CHECKING:
    from ..core.config import Config

__all__ = [
    "ENV_DATA_DIR",
    "FILE_NAME",
    "SCHEMA_VERSION",
    "Claimed",
    "Dropped",
    "Outbox",
    "OutboxRecord",
    "Owner",
    "Replay",
    "data_dir",
    "notice_from_dict",
    "notice_to_dict",
    "open_outbox",
    "owner_alive",
    "stored_channel_name",
]

log = logging.getLogger("nbremind")

#: The version of the tables below; a file written by a newer nbremind is left alone.
SCHEMA_VERSION = 2
FILE_NAME = "outbox.sqlite3"
#: Environment variable naming the folder of the outbox file (when ``data_dir`` is unset).
ENV_DATA_DIR = "NBREMIND_DATA_DIR"
#: How long a write waits for another process's write to finish, in milliseconds.
BUSY_TIMEOUT_MS = 2000
#: Finished notices (nothing pending), and the daily counts of those not stored, are
#: deleted this many seconds after they were made.
KEEP_FINISHED = 30 * 86400.0
#: Claimed per start-up at most (the oldest first); the rest wait for the next process.
CLAIM_LIMIT = 500
STATES = ("pending", "delivered", "failed", "dropped")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS notices (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        payload TEXT NOT NULL,
        owner_pid INTEGER NOT NULL,
        owner_start REAL NOT NULL,
        host TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS deliveries (
        notice_id TEXT NOT NULL REFERENCES notices(id) ON DELETE CASCADE,
        channel TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'delivered', 'failed', 'dropped')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        updated REAL NOT NULL,
        PRIMARY KEY (notice_id, channel)
    )""",
    "CREATE INDEX IF NOT EXISTS deliveries_by_state ON deliveries (state, notice_id)",
    "CREATE INDEX IF NOT EXISTS notices_by_created ON notices (created)",
)
#: Version 2: notices of this process delivered on every channel at once are counted by
#: day (the day of their ``created`` time, in days since the epoch), not stored as rows.
_COUNTS = (
    """CREATE TABLE IF NOT EXISTS delivered_counts (
        day INTEGER PRIMARY KEY,
        deliveries INTEGER NOT NULL DEFAULT 0,
        notices INTEGER NOT NULL DEFAULT 0
    )""",
)
_ADD_COUNTS = (
    "INSERT INTO delivered_counts (day, deliveries, notices) VALUES (?, ?, ?)"
    " ON CONFLICT (day) DO UPDATE SET deliveries = deliveries + excluded.deliveries,"
    " notices = notices + excluded.notices"
)
_INSERT_NOTICE = (
    "INSERT OR IGNORE INTO notices (id, created, payload, owner_pid, owner_start, host)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_DELIVERY = (
    "INSERT OR IGNORE INTO deliveries (notice_id, channel, state, updated)"
    " VALUES (?, ?, 'pending', ?)"
)
#: A delivery queued with its outcome (both in the same batch): one row written, not two.
#: A notice stored already (a replay) keeps its row unless the outcome is final.
_UPSERT_DELIVERY = (
    "INSERT INTO deliveries (notice_id, channel, state, attempts, last_error, updated)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (notice_id, channel) DO UPDATE SET"
    " state = excluded.state, attempts = excluded.attempts,"
    " last_error = excluded.last_error, updated = excluded.updated"
    " WHERE excluded.state != 'pending'"
)
_UPDATE_DELIVERY = (
    "UPDATE deliveries SET state = ?, last_error = ?, updated = ?,"
    " attempts = COALESCE(?, attempts + 1) WHERE notice_id = ? AND channel = ?"
)
#: Statements that bring the tables from version ``key - 1`` to ``key``.
_MIGRATIONS: dict[int, tuple[str, ...]] = {1: _SCHEMA, 2: _COUNTS}


# -- where the file lives -----------------------------------------------------------------------
def data_dir(setting: str | None = None) -> Path:
    """The folder of the outbox: ``setting``, else ``$NBREMIND_DATA_DIR``, else the platform
    user-data folder (``~/.local/share/nbremind``, ``%LOCALAPPDATA%\\nbremind``, ...)."""
    if setting:
        return Path(setting).expanduser()
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs  # only when the outbox is first opened

    return Path(platformdirs.user_data_dir("nbremind", appauthor=False))


def open_outbox(config: Config, clock: Clock | None = None) -> Outbox | None:
    """The outbox ``config`` asks for; ``None`` when it is turned off or cannot be opened
    (then why is logged once, and notices are delivered from memory only)."""
    if not config.outbox:
        return None
    try:
        return Outbox(data_dir(config.data_dir) / FILE_NAME, clock=clock)
    except Exception as exc:
        log.warning(
            "nbremind outbox unavailable, notices are kept in memory only: %s",
            redact(f"{type(exc).__name__}: {exc}"),
        )
        return None


# -- what the outbox answers ---------------------------------------------------------------------
@dataclass(frozen=True)
class OutboxRecord:
    """One notice on one channel, as stored."""

    notice_id: str
    channel: str
    state: str
    attempts: int
    last_error: str
    updated: float
    created: float
    title: str
    event: str
    task_name: str
    owner_pid: int
    host: str


@dataclass(frozen=True)
class Claimed:
    """A notice taken over from a dead process, and its channels still to deliver."""

    notice: Notice
    #: Channel names as stored (secrets in them redacted).
    channels: tuple[str, ...]


@dataclass(frozen=True)
class Dropped:
    """A delivery given up at start-up, and why."""

    notice_id: str
    title: str
    channel: str
    reason: str


@dataclass(frozen=True)
class Replay:
    """What :meth:`Outbox.claim` found: notices to deliver now, and deliveries given up."""

    claimed: tuple[Claimed, ...] = ()
    dropped: tuple[Dropped, ...] = ()


class Outbox(Database):
    """One process's connection to the outbox file.

    ``clock`` (wall time of records and ages), ``owner`` (this process) and ``alive`` (is an
    owner still running) can be replaced in tests. Thread-safe; meant to be called on the
    session's loop thread, where each call is one short transaction.
    """

    kind = "outbox"
    fallback = ", delivery goes on in memory"
    busy_timeout = BUSY_TIMEOUT_MS / 1000
    pragmas = ("foreign_keys = ON",)
    schema = SCHEMA_VERSION
    migrations = _MIGRATIONS
    version_table = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        owner: Owner | None = None,
        alive: Callable[[Owner], bool] = owner_alive,
    ) -> None:
        self.owner = owner or Owner.current()
        self._alive = alive
        self._queue_lock = threading.Lock()
        #: Notices queued, by id, in the order queued (with their deliveries).
        self._queued_notices: dict[str, _Queued] = {}
        #: ``(only while pending, parameters of _UPDATE_DELIVERY)``, in the order queued.
        self._queued_updates: list[tuple[bool, tuple[object, ...]]] = []
        #: Notices that have rows already (taken over from an ended process, or written by
        #: :meth:`record`): queued again, they are never only counted.
        self._with_rows: set[str] = set()
        super().__init__(path, clock=clock)

    def close(self) -> None:
        """Write what is queued, then close the file."""
        self.flush()
        super().close()

    def _stored_version(self) -> int | None:
        found = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
        return None if found is None else int(found)

    def _store_version(self, version: int) -> None:
        self._db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    # -- delivery, written later in batches (the dispatcher's way) -----------------------------
    def queue_record(self, notice: Notice, channels: Iterable[str]) -> bool:
        """Like :meth:`record`, written by the next :meth:`flush` (with whatever else was
        queued by then, in one transaction). Returns whether it was queued."""
        now = self.clock.time()
        with self._queue_lock:
            if self._closed:
                return False
            queued = self._queued_notices.get(notice.id)
            if queued is None:
                self._queued_notices[notice.id] = _Queued(notice, channels, now)
            else:  # queued twice in one batch: its first queuing stands, with any new channel
                queued.add(channels)
        return True

    def queue_mark(
        self, notice_id: str, channel: str, ok: bool, error: str = "", *, attempts: int | None
    ) -> None:
        """Like :meth:`mark`, written by the next :meth:`flush`."""
        if ok:
            with self._queue_lock:
                queued = self._queued_notices.get(notice_id)
                if queued is not None and queued.settle(channel, attempts, self.clock.time()):
                    return
        state = "delivered" if ok else "failed"
        self._queue_set(notice_id, channel, state, "" if ok else error, attempts, False)

    def queue_drop(self, notice_id: str, channel: str, reason: str) -> None:
        """Like :meth:`drop`, written by the next :meth:`flush`."""
        self._queue_set(notice_id, channel, "dropped", reason, None, True)

    def _queue_set(
        self,
        notice_id: str,
        channel: str,
        state: str,
        error: str,
        attempts: int | None,
        only_pending: bool,
    ) -> None:
        row = (state, redact(error), self.clock.time(), attempts, notice_id)
        with self._queue_lock:
            self._queued_updates.append((only_pending, (*row, stored_channel_name(channel))))

    @property
    def queued(self) -> int:
        """Writes queued and not flushed yet."""
        with self._queue_lock:
            return len(self._queued_notices) + len(self._queued_updates)

    def flush(self) -> bool:
        """Write everything queued, in one transaction; ``False`` when that failed (then
        it is logged once, and the queued writes are given up: delivery goes on)."""

        def action(db: sqlite3.Connection) -> bool:
            with self._queue_lock:  # taken under the connection's lock: writes stay in order
                queued, self._queued_notices = self._queued_notices, {}
                updates, self._queued_updates = self._queued_updates, []
            if not (queued or updates):
                return True
            counts, notices, deliveries = self._rows(queued.values(), updates)
            with self._write():
                if counts:
                    db.executemany(_ADD_COUNTS, counts)
                if notices:
                    db.executemany(_INSERT_NOTICE, notices)
                if deliveries:
                    db.executemany(_UPSERT_DELIVERY, deliveries)
                start = 0
                while start < len(updates):  # runs of the same statement, in their order
                    only = updates[start][0]
                    end = start
                    while end < len(updates) and updates[end][0] is only:
                        end += 1
                    sql = _UPDATE_DELIVERY + (" AND state = 'pending'" if only else "")
                    db.executemany(sql, [params for _, params in updates[start:end]])
                    start = end
            return True

        with self._queue_lock:
            if not (self._queued_notices or self._queued_updates):
                return True
        return self._run("write", False, action)

    def _rows(
        self, queued: Iterable[_Queued], updates: list[tuple[bool, tuple[object, ...]]]
    ) -> tuple[list[tuple[int, int, int]], list[tuple[object, ...]], list[tuple[object, ...]]]:
        """What the queued notices write: ``(day, deliveries, notices)`` to add to the
        counts, the rows of ``notices`` and those of ``deliveries`` (each with the outcome
        it was given in the same batch, if any).

        A notice about a task of this process that was delivered on every channel in the
        same batch gets no row, it is only counted (by the day it was made): it is never
        replayed, and no other process can make a notice with its id (the de-duplication
        rule asks the file only about other processes' notices; this process knows its
        own). One stored already (taken over from an ended process) keeps its rows.
        A notice whose every delivery is final in the batch is never read back whole (only
        a dead process's pending notices are): it is stored as its summary (id, event,
        title, task name); the others whole.
        """
        mine = f"{process_tag()}-"
        final = {(params[4], params[5]) for _, params in updates if params[0] != "pending"}
        me = self.owner
        days: dict[int, list[int]] = {}
        notices: list[tuple[object, ...]] = []
        deliveries: list[tuple[object, ...]] = []
        for entry in queued:
            notice, outcomes = entry.notice, entry.outcomes
            nid = notice.id
            if (
                outcomes
                and entry.delivered == len(outcomes)
                and nid.startswith(mine)
                and nid not in self._with_rows
            ):
                day = days.setdefault(int(notice.created // 86400), [0, 0])
                day[0] += len(outcomes)
                day[1] += 1
                continue
            done = bool(outcomes)
            for channel, outcome in outcomes.items():
                name = stored_channel_name(channel)
                if outcome is None:
                    done = done and (nid, name) in final
                    deliveries.append((nid, name, "pending", 0, "", entry.at))
                else:
                    deliveries.append((nid, name, "delivered", *outcome))
            data = _summary(notice) if done else notice_to_dict(notice)
            payload = json.dumps(data, ensure_ascii=False)
            notices.append((nid, notice.created, payload, me.pid, me.start, me.host))
        return [(day, n[0], n[1]) for day, n in days.items()], notices, deliveries

    # -- delivery ------------------------------------------------------------------------------
    def record(self, notice: Notice, channels: Iterable[str]) -> bool:
        """Store ``notice`` with one ``pending`` delivery per channel, before delivery.

        A notice already stored (a replay) keeps its rows. Returns whether it is stored.
        """
        payload = json.dumps(notice_to_dict(notice), ensure_ascii=False)
        names = [stored_channel_name(name) for name in channels]
        now = self.clock.time()
        me = self.owner

        def action(db: sqlite3.Connection) -> bool:
            with self._write():
                db.execute(
                    _INSERT_NOTICE, (notice.id, notice.created, payload, me.pid, me.start, me.host)
                )
                db.executemany(_INSERT_DELIVERY, [(notice.id, name, now) for name in names])
            with self._queue_lock:
                self._with_rows.add(notice.id)
            return True

        self.flush()
        return self._run("record", False, action)

    def mark(
        self,
        notice_id: str,
        channel: str,
        ok: bool,
        error: str = "",
        *,
        attempts: int | None = None,
    ) -> bool:
        """Record the final outcome of ``notice_id`` on ``channel``: ``delivered`` when
        ``ok``, else ``failed`` with ``error`` (redacted). ``attempts`` defaults to one more
        than recorded. Returns whether a stored delivery was updated."""
        state = "delivered" if ok else "failed"
        return self._set(notice_id, channel, state, "" if ok else error, attempts)

    def defer(self, notice_id: str, channel: str, error: str, attempts: int) -> bool:
        """Say why a delivery that stays ``pending`` (for the next process) has not succeeded
        yet: ``error`` (redacted) after ``attempts`` tries."""
        return self._set(notice_id, channel, "pending", error, attempts, only_pending=True)

    def drop(self, notice_id: str, channel: str, reason: str) -> bool:
        """Give up the delivery of ``notice_id`` on ``channel`` (``dropped``), saying why."""
        return self._set(notice_id, channel, "dropped", reason, None, only_pending=True)

    def settle(self, notice_id: str, state: str, reason: str = "") -> int:
        """Give every still-pending delivery of ``notice_id`` the final ``state``
        (``delivered``: e.g. sent inside a digest; ``dropped``: e.g. a rule gave it up),
        with ``reason``. Returns how many deliveries changed."""
        if state not in STATES[1:]:
            raise ValueError(f"outbox state: {state!r} is not one of {', '.join(STATES[1:])}")
        now = self.clock.time()
        self.flush()

        def action(db: sqlite3.Connection) -> int:
            with self._write():
                cursor = db.execute(
                    "UPDATE deliveries SET state = ?, last_error = ?, updated = ?"
                    " WHERE notice_id = ? AND state = 'pending'",
                    (state, redact(reason), now, notice_id),
                )
            return int(cursor.rowcount)

        return self._run("settle", 0, action)

    def _set(
        self,
        notice_id: str,
        channel: str,
        state: str,
        error: str,
        attempts: int | None,
        only_pending: bool = False,
    ) -> bool:
        now = self.clock.time()
        only = " AND state = 'pending'" if only_pending else ""

        def action(db: sqlite3.Connection) -> bool:
            with self._write():
                cursor = db.execute(
                    _UPDATE_DELIVERY + only,
                    (state, redact(error), now, attempts, notice_id, stored_channel_name(channel)),
                )
            return bool(cursor.rowcount)

        self.flush()
        return self._run("mark", False, action)

    def delivered(self, notice_id: str, channel: str | None = None) -> bool:
        """Whether ``notice_id`` was delivered: on ``channel``, or (no channel) on at least
        one channel with none still pending. The de-duplication rule asks this so a notice
        is not sent again after a restart."""
        self.flush()

        def action(db: sqlite3.Connection) -> bool:
            if channel is not None:
                row = db.execute(
                    "SELECT state FROM deliveries WHERE notice_id = ? AND channel = ?",
                    (notice_id, stored_channel_name(channel)),
                ).fetchone()
                return row is not None and row[0] == "delivered"
            states = {
                s
                for (s,) in db.execute(
                    "SELECT DISTINCT state FROM deliveries WHERE notice_id = ?", (notice_id,)
                )
            }
            return "delivered" in states and "pending" not in states

        return self._run("delivered", False, action)

    # -- start-up: what dead processes left ----------------------------------------------------
    def claim(self, max_age: float) -> Replay:
        """Take over notices whose owner died with deliveries pending.

        In one write transaction: notices of dead owners younger than ``max_age`` seconds
        become this process's (a compare-and-set on the old owner, so two processes starting
        together never both get one); older ones, and old ones of owners on other hosts, are
        marked ``dropped`` with the reason, and logged. Finished notices older than
        :data:`KEEP_FINISHED` are deleted.
        """
        self.flush()
        now = self.clock.time()
        me = self.owner
        reason = (
            f"dropped: not delivered within outbox_max_age ({format_duration(max_age)})"
            " by the process that made it"
        )

        def action(db: sqlite3.Connection) -> Replay:
            claimed: list[Claimed] = []
            dropped: list[Dropped] = []
            alive: dict[Owner, bool] = {}
            with self._write():
                rows = db.execute(
                    "SELECT id, created, payload, owner_pid, owner_start, host FROM notices n"
                    " WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.notice_id = n.id"
                    " AND d.state = 'pending')"
                    " AND NOT (owner_pid = ? AND owner_start = ? AND host = ?)"
                    " ORDER BY created LIMIT ?",
                    (me.pid, me.start, me.host, CLAIM_LIMIT),
                ).fetchall()
                for notice_id, created, payload, pid, start, host in rows:
                    owner = Owner(int(pid), float(start), str(host))
                    if owner not in alive:
                        alive[owner] = self._alive(owner)
                    old = now - float(created) > max_age
                    if alive[owner] and not (old and owner.host != me.host):
                        continue
                    channels = tuple(
                        c
                        for (c,) in db.execute(
                            "SELECT channel FROM deliveries WHERE notice_id = ?"
                            " AND state = 'pending' ORDER BY channel",
                            (notice_id,),
                        )
                    )
                    title = _title_of(payload)
                    if old:
                        self._give_up(db, notice_id, reason, now)
                        dropped.extend(Dropped(notice_id, title, c, reason) for c in channels)
                        continue
                    taken = db.execute(
                        "UPDATE notices SET owner_pid = ?, owner_start = ?, host = ?"
                        " WHERE id = ? AND owner_pid = ? AND owner_start = ? AND host = ?",
                        (me.pid, me.start, me.host, notice_id, pid, start, host),
                    ).rowcount
                    if not taken:
                        continue
                    try:
                        notice = notice_from_dict(json.loads(payload))
                    except ValueError as exc:  # json.JSONDecodeError is a ValueError
                        why = redact(f"failed: unreadable record ({exc})")
                        self._give_up(db, notice_id, why, now, state="failed")
                        dropped.extend(Dropped(notice_id, title, c, why) for c in channels)
                        continue
                    claimed.append(Claimed(notice, channels))
                    self._with_rows.add(notice_id)
                db.execute(
                    "DELETE FROM notices WHERE created < ? AND NOT EXISTS (SELECT 1 FROM"
                    " deliveries d WHERE d.notice_id = notices.id AND d.state = 'pending')",
                    (now - KEEP_FINISHED,),
                )
                db.execute(
                    "DELETE FROM delivered_counts WHERE day < ?",
                    (int((now - KEEP_FINISHED) // 86400),),
                )
            return Replay(tuple(claimed), tuple(dropped))

        replay = self._run("claim", Replay(), action)
        if replay.dropped:
            first = replay.dropped[0]
            log.warning(
                "nbremind outbox: %d undelivered notice(s) left by ended processes were given"
                " up (first: %r on %s): %s",
                len({d.notice_id for d in replay.dropped}),
                first.title,
                first.channel,
                first.reason,
            )
        return replay

    @staticmethod
    def _give_up(
        db: sqlite3.Connection, notice_id: str, reason: str, now: float, state: str = "dropped"
    ) -> None:
        db.execute(
            "UPDATE deliveries SET state = ?, last_error = ?, updated = ?"
            " WHERE notice_id = ? AND state = 'pending'",
            (state, reason, now, notice_id),
        )

    # -- reading (a CLI, ``%remind``) ----------------------------------------------------------
    def records(
        self, notice_id: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[OutboxRecord]:
        """Stored deliveries, newest notice first; optionally of one notice or one state.

        A notice of this process delivered on every channel within its batch (the common
        case) has no rows here: it is only counted, in :meth:`stats`. The others (pending,
        failed, dropped, slow to deliver, or about another process's task) are listed.
        """
        where, args = [], []
        if notice_id is not None:
            where.append("d.notice_id = ?")
            args.append(notice_id)
        if state is not None:
            where.append("d.state = ?")
            args.append(state)
        sql = (
            "SELECT d.notice_id, d.channel, d.state, d.attempts, d.last_error, d.updated,"
            " n.created, n.payload, n.owner_pid, n.host FROM deliveries d"
            " JOIN notices n ON n.id = d.notice_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY n.created DESC, d.channel LIMIT ?"
        )
        self.flush()

        def action(db: sqlite3.Connection) -> list[OutboxRecord]:
            out = []
            for nid, ch, st, att, err, upd, created, payload, pid, host in db.execute(
                sql, (*args, limit)
            ):
                info = _summary_of(payload)
                out.append(
                    OutboxRecord(
                        nid,
                        ch,
                        st,
                        int(att),
                        err,
                        float(upd),
                        float(created),
                        info[0],
                        info[1],
                        info[2],
                        int(pid),
                        host,
                    )
                )
            return out

        return self._run("records", [], action)

    def pending(self) -> list[OutboxRecord]:
        """Deliveries not finished yet (in flight here, or left by a process)."""
        return self.records(state="pending")

    def stats(self) -> dict[str, int]:
        """How many deliveries are in each state, and how many notices are kept (those
        only counted included, see :meth:`records`)."""
        self.flush()

        def action(db: sqlite3.Connection) -> dict[str, int]:
            counts = dict.fromkeys(STATES, 0)
            for state, count in db.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state"):
                counts[state] = int(count)
            counts["notices"] = int(db.execute("SELECT COUNT(*) FROM notices").fetchone()[0])
            row = db.execute(
                "SELECT SUM(deliveries), SUM(notices) FROM delivered_counts"
            ).fetchone()
            counts["delivered"] += int(row[0] or 0)
            counts["notices"] += int(row[1] or 0)
            return counts

        return self._run("stats", {}, action)


class _Queued:
    """A notice queued for the outbox: its channels (as the dispatcher names them) with the
    outcome each was given before the write, if any, and when it was queued."""

    __slots__ = ("at", "delivered", "notice", "outcomes")

    def __init__(self, notice: Notice, channels: Iterable[str], at: float) -> None:
        self.notice = notice
        self.at = at
        #: Channel -> ``(attempts, last_error, updated)`` once delivered, else ``None``.
        self.outcomes: dict[str, tuple[int, str, float] | None] = dict.fromkeys(channels)
        self.delivered = 0

    def add(self, channels: Iterable[str]) -> None:
        """Queued again: channels not queued yet are added."""
        for channel in channels:
            self.outcomes.setdefault(channel, None)

    def settle(self, channel: str, attempts: int | None, now: float) -> bool:
        """``channel`` delivered it: folded into its row; ``False`` when it cannot be (not
        one of its channels, or it has an outcome already)."""
        outcomes = self.outcomes
        if channel not in outcomes or outcomes[channel] is not None:
            return False
        outcomes[channel] = (1 if attempts is None else attempts, "", now)
        self.delivered += 1
        return True


def _summary(notice: Notice) -> dict[str, object]:
    """What is kept of a notice that was delivered (or failed) for good: what
    :meth:`Outbox.records` shows, secrets masked."""
    return {
        "id": notice.id,
        "event": notice.event,
        "title": redact(notice.title),
        "task": {"id": notice.task.id, "name": redact(notice.task.name)},
        "summary": True,
    }


def _summary_of(payload: str) -> tuple[str, str, str]:
    """``(title, event, task name)`` of a stored payload, ``""`` where unreadable."""
    try:
        data = json.loads(payload)
        return (
            str(data.get("title", "")),
            str(data.get("event", "")),
            str(data.get("task", {}).get("name", "")),
        )
    except (ValueError, AttributeError):
        return ("", "", "")


def _title_of(payload: str) -> str:
    return _summary_of(payload)[0]

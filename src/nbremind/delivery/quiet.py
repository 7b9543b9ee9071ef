"""Quiet hours: when they are, the notices held during them, and the digest sent after.

Times are wall-clock seconds (``time.time()``); the window is read in the user's time zone
(the ``timezone`` setting, else the local zone), so it follows daylight-saving changes: a
night with a DST change is an hour longer or shorter, and quiet hours still end at the same
clock time.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.notice import Notice
from ..core.parse import parse_quiet_hours

if TYPE_CHECKING:
    from ..core.config import Config

__all__ = ["DIGEST_EVENT", "QuietHours", "QuietWindow", "make_digest", "quiet_hours_of"]

#: The event of the notice that sums up what was held during quiet hours.
DIGEST_EVENT = "digest"
#: Held notices listed one per line in a digest; the rest are counted.
DIGEST_LINES = 20


@dataclass(frozen=True)
class QuietWindow:
    """A daily range of clock times (minutes after midnight) in a time zone."""

    start: int
    end: int
    timezone: str | None = None  # None: the local zone

    def _zone(self) -> dt.tzinfo | None:
        if self.timezone is None:
            return None
        import zoneinfo

        return zoneinfo.ZoneInfo(self.timezone)

    def local(self, now: float) -> dt.datetime:
        """``now`` as a date and time in the window's zone (naive for the local zone)."""
        return dt.datetime.fromtimestamp(now, self._zone())

    def contains(self, now: float) -> bool:
        """Whether ``now`` falls in quiet hours."""
        return self.end_after(now) is not None

    def end_after(self, now: float) -> float | None:
        """When the quiet hours around ``now`` end (wall-clock seconds); ``None`` if ``now``
        is not in quiet hours."""
        local = self.local(now)
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            inside = self.start <= minute < self.end
            ends_on = local.date()
        else:  # spans midnight
            inside = minute >= self.start or minute < self.end
            ends_on = local.date() + dt.timedelta(days=1 if minute >= self.start else 0)
        if not inside:
            return None
        end = dt.datetime.combine(
            ends_on, dt.time(self.end // 60, self.end % 60), tzinfo=self._zone()
        )
        return end.timestamp()  # a naive time is read in the local zone, DST included


@functools.lru_cache(maxsize=16)
def _window(quiet: str, timezone: str | None) -> QuietWindow:
    start, end = parse_quiet_hours(quiet)
    return QuietWindow(start, end, timezone)


def quiet_hours_of(config: Config) -> QuietWindow | None:
    """The quiet window the settings describe, or ``None`` when there is none."""
    if not config.quiet_hours:
        return None
    return _window(config.quiet_hours, config.timezone)


@dataclass
class _Held:
    notice: Notice
    channels: tuple[str, ...] | None  # the task's channels; None: the settings' at release


@dataclass
class QuietHours:
    """Notices held during quiet hours, until :attr:`release_at`."""

    held: list[_Held] = field(default_factory=list)
    #: Wall-clock time the held notices are due (the end of the quiet hours they fell in).
    release_at: float | None = None

    def __len__(self) -> int:
        return len(self.held)

    def hold(self, notice: Notice, channels: tuple[str, ...] | None, until: float) -> None:
        """Keep ``notice`` until ``until`` (a notice already held is kept once)."""
        if any(h.notice.id == notice.id for h in self.held):
            return
        self.held.append(_Held(notice, notice.channels or channels))
        if self.release_at is None or until < self.release_at:
            self.release_at = until

    def holds(self, notice_id: str) -> bool:
        """Whether the notice with ``notice_id`` is waiting for the digest."""
        return any(h.notice.id == notice_id for h in self.held)

    def due(self, now: float) -> bool:
        """Whether held notices should go out now."""
        return self.release_at is not None and now >= self.release_at

    def take(self) -> list[tuple[tuple[str, ...] | None, list[Notice]]]:
        """Empty the queue; the held notices grouped by the channels they go to."""
        groups: dict[tuple[str, ...] | None, list[Notice]] = {}
        for held in self.held:
            groups.setdefault(held.channels, []).append(held.notice)
        self.held.clear()
        self.release_at = None
        return list(groups.items())


def make_digest(
    notices: list[Notice],
    now: float,
    window: QuietWindow | None = None,
    channels: tuple[str, ...] | None = None,
) -> Notice:
    """One notice that lists ``notices`` (held during quiet hours), oldest first."""
    notices = sorted(notices, key=lambda n: n.created)
    first, last = notices[0], notices[-1]
    count = len(notices)
    zone = window or QuietWindow(0, 1)
    lines = [f"{zone.local(n.created):%H:%M} {n.title}" for n in notices[:DIGEST_LINES]]
    if count > DIGEST_LINES:
        lines.append(f"… and {count - DIGEST_LINES} more")
    return Notice(
        id=f"{first.task.id}:{DIGEST_EVENT}:{first.id}",
        event=DIGEST_EVENT,
        title=f"nbremind: {count} notice{'s' if count != 1 else ''} during quiet hours",
        body="\n".join(lines),
        urgency="critical" if any(n.urgency == "critical" for n in notices) else "normal",
        created=now,
        task=last.task,
        channels=channels,
    )

"""Delivery: a chain of small rules that may drop a notice, then fan-out to channels.

Runs on the session's loop thread. Channels raise; the dispatcher catches, bounds each send
with a timeout and records the outcome. Nothing here raises into user code.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .channels import Availability, Channel, make_channel
from .config import Config
from .notice import Notice
from .options import TaskOptions

__all__ = [
    "DEFAULT_CANDIDATES",
    "DEFAULT_RULES",
    "DefaultChannels",
    "Delivery",
    "Dispatcher",
    "Rule",
    "RuleContext",
]

log = logging.getLogger("nbremind")

_SENT_KEEP = 10_000
END_EVENTS = frozenset({"success", "failure", "cancel", "timeout"})
#: The channels nbremind chooses from when neither the task nor the settings name any.
DEFAULT_CANDIDATES = ("desktop", "browser")


@dataclass(frozen=True)
class RuleContext:
    """What a rule may look at besides the notice."""

    options: TaskOptions
    config: Config
    sent: Container[str]


#: A rule returns the notice (possibly changed) or ``None`` to drop it.
Rule = Callable[[Notice, RuleContext], "Notice | None"]


def event_filter(notice: Notice, ctx: RuleContext) -> Notice | None:
    """Drop events the task (or the config) did not ask for."""
    if ctx.options.on is None and ctx.config.on is not None:
        wanted = set(ctx.config.on) | (ctx.options.events() - {"success", "failure", "cancel",
                                                                "timeout"})
    else:
        wanted = set(ctx.options.events())
    return notice if notice.event in wanted else None


def min_duration(notice: Notice, ctx: RuleContext) -> Notice | None:
    """Drop the end notice of a task that ended sooner than ``min_duration``."""
    limit = ctx.options.min_duration
    if limit is None:
        limit = ctx.config.min_duration
    ended = notice.event in END_EVENTS and notice.task.state.value != "running"
    if limit is not None and ended and notice.task.elapsed < limit:
        return None
    return notice


def mute(notice: Notice, ctx: RuleContext) -> Notice | None:
    """Drop everything while the session is muted."""
    return None if ctx.config.muted else notice


def dedup(notice: Notice, ctx: RuleContext) -> Notice | None:
    """The same task and event (same notice id) never notify twice."""
    return None if notice.id in ctx.sent else notice


DEFAULT_RULES: tuple[Rule, ...] = (event_filter, min_duration, mute, dedup)


@dataclass(frozen=True)
class Delivery:
    """The outcome of one notice on one channel."""

    notice_id: str
    title: str
    channel: str
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class DefaultChannels:
    """The channels chosen for notices that name none, and why (for ``%remind status``)."""

    channels: tuple[str, ...]
    reason: str

    def __str__(self) -> str:
        return f"{', '.join(self.channels)} — {self.reason}"


@runtime_checkable
class _ConnectsLater(Protocol):
    """A channel that may become available shortly (a front end about to say hello)."""

    async def wait_available(self) -> Availability: ...


class Dispatcher:
    """Applies the rules, then sends to each channel with a timeout; records every outcome."""

    def __init__(
        self,
        rules: Iterable[Rule] = DEFAULT_RULES,
        channels: dict[str, Channel] | None = None,
        history: int = 500,
    ) -> None:
        self.rules = tuple(rules)
        self._channels: dict[str, Channel] = dict(channels or {})
        self._sent: dict[str, None] = {}  # insertion-ordered, trimmed to _SENT_KEEP
        self.deliveries: collections.deque[Delivery] = collections.deque(maxlen=history)
        self.dropped = 0
        self._reported: set[str] = set()

    def channel(self, name: str) -> Channel:
        """The channel called ``name``, made on first use."""
        if name not in self._channels:
            self._channels[name] = make_channel(name)
        return self._channels[name]

    @property
    def channels(self) -> dict[str, Channel]:
        """Channels made so far, by name."""
        return dict(self._channels)

    def apply_rules(self, notice: Notice, options: TaskOptions, config: Config) -> Notice | None:
        """Run the rule chain; ``None`` means the notice was dropped."""
        ctx = RuleContext(options, config, self._sent)
        for rule in self.rules:
            kept = rule(notice, ctx)
            if kept is None:
                self.dropped += 1
                return None
            notice = kept
        return notice

    async def dispatch(self, notice: Notice, options: TaskOptions, config: Config) -> None:
        """Deliver ``notice`` to its channels (after the rules); never raises."""
        kept = self.apply_rules(notice, options, config)
        if kept is None:
            return
        self._sent[kept.id] = None
        if len(self._sent) > _SENT_KEEP:
            for old in list(self._sent)[: len(self._sent) - _SENT_KEEP]:
                del self._sent[old]
        names = kept.channels or options.channels or config.channels
        if not names:
            names = (await self.default_channels()).channels
        await asyncio.gather(*(self._send_one(name, kept, config) for name in names))

    async def _send_one(self, name: str, notice: Notice, config: Config) -> None:
        try:
            channel = self.channel(name)
            available = await channel.availability()
            if not available.ok:
                self._record(notice, name, False, f"unavailable: {available.reason}")
                return
            await asyncio.wait_for(channel.send(notice), config.send_timeout)
        except asyncio.TimeoutError:
            self._record(notice, name, False, f"timed out after {config.send_timeout:g} s")
        except Exception as exc:
            self._record(notice, name, False, f"{type(exc).__name__}: {exc}")
        else:
            self._record(notice, name, True)

    def _record(self, notice: Notice, channel: str, ok: bool, error: str = "") -> None:
        self.deliveries.append(Delivery(notice.id, notice.title, channel, ok, error))
        if not ok:
            # one log line per channel and reason, not one per notice
            key = f"{channel}:{error.split(':', 1)[0]}"
            if key not in self._reported:
                self._reported.add(key)
                log.info("%s channel could not deliver: %s", channel, error)

    async def default_channels(self, *, wait: bool = True) -> DefaultChannels:
        """Choose channels for a notice that names none, when it is sent.

        ``desktop`` where the local desktop can show toasts; else ``browser`` when a notebook
        front end is connected; else ``desktop`` anyway (its delivery is then recorded as
        unavailable). With ``wait``, a front end that is about to connect (a widget was just
        displayed and has not said hello yet) is given a moment to do so.
        """
        desktop = await self._availability_of("desktop")
        if desktop.ok:
            return DefaultChannels(("desktop",), "a local desktop can show toasts")
        browser = await self._availability_of("browser", refresh=True)
        if not browser.ok and wait:
            channel = self._channels.get("browser")
            if isinstance(channel, _ConnectsLater):
                try:
                    browser = await channel.wait_available()
                except Exception as exc:
                    browser = Availability(False, f"{type(exc).__name__}: {exc}")
        no_desktop = f"desktop unavailable: {desktop.reason}"
        if browser.ok:
            return DefaultChannels(("browser",), f"{no_desktop}; a browser front end is connected")
        return DefaultChannels(("desktop",), f"{no_desktop}; {browser.reason}")

    async def _availability_of(self, name: str, refresh: bool = False) -> Availability:
        try:
            return await self.channel(name).availability(refresh=refresh)
        except Exception as exc:  # a channel that cannot even be made is unavailable
            return Availability(False, f"{type(exc).__name__}: {exc}")

    async def availability(self, names: Iterable[str], refresh: bool = False) -> dict[str, str]:
        """``{channel: "available" | "unavailable: why"}`` for each name; no names: for the
        channels nbremind chooses its defaults from."""
        names = tuple(names) or DEFAULT_CANDIDATES
        out: dict[str, str] = {}
        for name in names:
            try:
                state: Availability = await self.channel(name).availability(refresh=refresh)
                out[name] = str(state)
            except Exception as exc:
                out[name] = f"unavailable: {exc}"
        return out

    async def close(self) -> None:
        """Close every channel made."""
        for channel in self._channels.values():
            try:
                await channel.close()
            except Exception:
                log.debug("closing %s failed", channel.name, exc_info=True)

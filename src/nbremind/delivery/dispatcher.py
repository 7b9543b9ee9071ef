"""Delivery: a chain of small rules that may drop a notice, then fan-out to channels.

Runs on the session's loop thread. Channels raise; the dispatcher catches, bounds each send
with a timeout and records the outcome. Nothing here raises into user code.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..core.channel_defs import channel_def, channel_wants
from ..core.channel_names import DEFAULT_CANDIDATES
from ..core.clock import Clock, SystemClock
from ..core.config import Config
from ..core.log import logger
from ..core.notice import Notice
from ..core.options import TaskOptions
from ..core.urls import display_name, hide
from .bounded import bounded
from .channel import Availability, Channel
from .quiet import make_digest, quiet_hours_of
from .retry import Backoff, RetryOutcome, is_retryable, with_retries
from .rules import (  # the rules live in rules.py; these names stay importable from here
    DEFAULT_RULES,
    END_EVENTS,
    Rule,
    RuleContext,
    RuleState,
    dedup,
    event_filter,
    min_duration,
    mute,
)

if TYPE_CHECKING:
    from ..store.outbox import Outbox

__all__ = [
    "DEFAULT_RULES",
    "END_EVENTS",
    "OUTBOX_WRITE_DELAY",
    "DefaultChannels",
    "Delivery",
    "Dispatcher",
    "Rule",
    "RuleContext",
    "RuleState",
    "dedup",
    "event_filter",
    "min_duration",
    "mute",
]

log = logger()

_new = object.__new__
_SENT_KEEP = 10_000
_SENT_TRIM = 1_000
#: Seconds between a notice's first write to the outbox being queued and the write: what
#: is queued meanwhile (a burst of notices, their outcomes) goes in the same transaction.
#: A channel's send starts before its notice is on disk; a process killed in between
#: loses that notice's record (the send may already have delivered it).
OUTBOX_WRITE_DELAY = 0.02
#: Longest real-time wait between two checks for the end of quiet hours (a laptop that
#: slept, a clock that was set, are noticed within this).
_QUIET_CHECK_EVERY = 60.0


@dataclass(frozen=True)
class Delivery:
    """The outcome of one notice on one channel."""

    notice_id: str
    title: str
    channel: str
    ok: bool
    error: str = ""
    #: Tries made (more than 1 when a retryable failure was retried).
    attempts: int = 1


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


#: Builds the channel called ``name`` (settings in ``config``); ``ValueError`` when it is not one.
ChannelMaker = Callable[[str, "Config | None"], Channel]


class Dispatcher:
    """Applies the rules, then sends to each channel with a timeout; records every outcome."""

    def __init__(
        self,
        rules: Iterable[Rule] = DEFAULT_RULES,
        channels: dict[str, Channel] | None = None,
        history: int = 500,
        clock: Clock | None = None,
        already_sent: Callable[[str], bool] | None = None,
        make_channel: ChannelMaker | None = None,
    ) -> None:
        self.rules = tuple(rules)
        #: Builds a channel from its name (the channel registry; ``None``: only the
        #: ``channels`` given here exist).
        self.make_channel = make_channel
        #: Wall clock rules read (quiet hours, rate limit); the session passes its own.
        self.clock: Clock = clock or SystemClock()
        #: Whether a notice id was delivered by an earlier process (set by the outbox).
        self.already_sent = already_sent
        #: What the rules remember between notices (rate limit, held notices).
        self.rule_state = RuleState()
        self._quiet_timer: asyncio.Task[None] | None = None
        self._channels: dict[str, Channel] = dict(channels or {})
        self._sent: dict[str, None] = {}  # insertion-ordered, trimmed to _SENT_KEEP
        #: The most recent outcomes, for ``%remind status`` (bounded: not a record to scan).
        self.deliveries: collections.deque[Delivery] = collections.deque(maxlen=history)
        self._listeners: list[Callable[[Delivery], None]] = []
        self.dropped = 0
        self._reported: set[str] = set()
        #: Waits between retries; tests swap in a fake clock and sleep.
        self.backoff = Backoff()
        self._specs: dict[str, object] = {}  # the named-channel settings each was made from
        #: Gives the durable outbox, or ``None`` (set by the session, which opens it
        #: lazily); ``None`` here: notices are delivered from memory only.
        self.outbox_source: Callable[[], Outbox | None] | None = None
        #: Deliveries written to the outbox and not finished: notice id -> (the outbox it
        #: was written to, {shown: name} of its channels not finished yet).
        self._in_outbox: dict[str, tuple[Outbox, dict[str, str]]] = {}
        #: What each channel must never show, by name (asked once per channel made).
        self._secrets: dict[str, tuple[Channel, list[str]]] = {}
        #: Set when the session closes (``time.monotonic()`` seconds): no try starts or runs
        #: past it and no retry waits past it; a retryable failure is then left ``pending``
        #: in the outbox for the next nbremind process instead of being recorded as final.
        self.deadline: float | None = None
        #: Deliveries left pending that way, in this process.
        self.deferred = 0
        #: The write of what is queued for the outbox, once one is scheduled.
        self._outbox_flush: asyncio.TimerHandle | None = None
        #: The settings and the outbox of the notices queued for that write.
        self._batch: tuple[Config, Outbox] | None = None

    def channel(self, name: str, config: Config | None = None) -> Channel:
        """The channel called ``name``, made on first use (again when its named-channel
        settings in ``config`` changed)."""
        return self._made(name, config, channel_def(name, config))

    def _made(self, name: str, config: Config | None, spec: object) -> Channel:
        """:meth:`channel`, with ``spec`` (``channel_def(name, config)``) looked up already."""
        channel = self._channels.get(name)
        if channel is not None and (spec is None or self._specs.get(name) is spec):
            return channel
        if self.make_channel is None:
            raise ValueError(f"{display_name(name)} is not a channel of this dispatcher")
        channel = self._channels[name] = self.make_channel(name, config)
        if spec is not None:
            self._specs[name] = spec
        return channel

    @property
    def channels(self) -> dict[str, Channel]:
        """Channels made so far, by name."""
        return dict(self._channels)

    def was_sent(self, notice_id: str) -> bool:
        """For the replay: whether the notice ``notice_id`` passed the rules here (it was
        sent, or is being sent, by this dispatcher)."""
        return notice_id in self._sent

    def apply_rules(self, notice: Notice, options: TaskOptions, config: Config) -> Notice | None:
        """Run the rule chain; ``None`` means the notice was dropped."""
        # every field at once: a frozen dataclass's __init__ sets them one by one through
        # object.__setattr__ (a context is made per notice)
        ctx = _new(RuleContext)
        ctx.__dict__.update(
            options=options,
            config=config,
            sent=self._sent,
            now=self.clock.time(),
            state=self.rule_state,
            already_sent=self.already_sent,
        )
        for rule in self.rules:
            kept = rule(notice, ctx)
            if kept is None:
                self.dropped += 1
                return None
            notice = kept
        return notice

    async def dispatch(
        self, notice: Notice, options: TaskOptions, config: Config
    ) -> list[Delivery]:
        """Deliver ``notice`` to its channels (after the rules); never raises. Returns the
        outcome of each channel's delivery (none when a rule dropped or held the notice)."""
        if self.rule_state.quiet.due(notice.created):
            await self.release_due(config)  # the digest goes out before what came after it
        kept = self.apply_rules(notice, options, config)
        if kept is None:
            if self.rule_state.quiet.holds(notice.id):
                # held for the digest: stored first, so a process that ends during quiet
                # hours leaves it to the next one instead of losing it
                names = notice.channels or options.channels or config.channels
                if not names:
                    names = (await self.default_channels(wait=False)).channels
                self._outbox_record(notice, names, config)
                self._in_outbox.pop(notice.id, None)
            if self.rule_state.quiet.held:
                self._arm_quiet_timer(config)
            return []
        seen = self._sent
        seen[kept.id] = None
        if len(seen) > _SENT_KEEP + _SENT_TRIM:  # the oldest forgotten, a batch at a time
            for old in list(itertools.islice(seen, len(seen) - _SENT_KEEP)):
                del seen[old]
        names = kept.channels or options.channels or config.channels
        if not names:
            names = (await self.default_channels()).channels
        self._outbox_record(kept, names, config)
        if len(names) == 1:  # the common case: no gather (and no task per channel)
            sent = [await self._send_one(names[0], kept, config)]
        else:
            sent = await asyncio.gather(*(self._send_one(name, kept, config) for name in names))
        self._outbox_sweep(kept)
        return [delivery for delivery in sent if delivery is not None]

    @property
    def release_at(self) -> float | None:
        """Wall-clock time notices held during quiet hours are due (``None``: none held)."""
        return self.rule_state.quiet.release_at

    async def release_due(self, config: Config) -> None:
        """Send the notices held during quiet hours as one digest, once they are over.

        Called from the session's tick and by a timer armed when a notice is held (so the
        digest goes out even when no task runs). Never raises.
        """
        quiet = self.rule_state.quiet
        now = self.clock.time()
        if not quiet.due(now):
            return
        sends: list[Coroutine[Any, Any, Delivery | None]] = []
        try:
            window = quiet_hours_of(config)
            for channels, notices in quiet.take():
                digest = make_digest(notices, now, window, channels)
                for held in notices:
                    self._sent[held.id] = None
                    self._outbox_settle(held.id, f"sent in the quiet-hours digest {digest.id}")
                names = channels or config.channels
                if not names:
                    names = (await self.default_channels()).channels
                sends.extend(self._send_one(name, digest, config) for name in names)
        except Exception:  # a bug here must not stop the loop; what was taken is logged
            log.exception("sending the quiet-hours digest failed")
        await asyncio.gather(*sends)

    def _arm_quiet_timer(self, config: Config) -> None:
        """Make sure held notices go out even when no tick runs (no task is running)."""
        if self._quiet_timer is None or self._quiet_timer.done():
            self._quiet_timer = asyncio.get_running_loop().create_task(self._release_later(config))

    async def _release_later(self, config: Config) -> None:
        while self.rule_state.quiet.held:
            due = self.rule_state.quiet.release_at
            wait = _QUIET_CHECK_EVERY if due is None else due - self.clock.time()
            await asyncio.sleep(min(max(wait, 0.0), _QUIET_CHECK_EVERY))
            await self.release_due(config)

    async def _send_one(self, name: str, notice: Notice, config: Config) -> Delivery | None:
        """Deliver to one channel: each try bounded by ``send_timeout``, retryable failures
        tried again (``retry_attempts``, ``retry_max_time``, :attr:`backoff`); the outcome is
        recorded in :attr:`deliveries` with secrets masked and returned (``None``: a named
        channel's ``on`` does not take this event)."""
        spec = channel_def(name, config)
        if spec is not None and not channel_wants(name, notice.event, config):
            return None
        shown = display_name(name)
        secrets: list[str] = []
        outcome = RetryOutcome()
        try:
            channel = self._made(name, config, spec)
            known = self._secrets.get(name)
            if known is None or known[0] is not channel:
                known = self._secrets[name] = (channel, _secrets_of(channel))
            secrets = known[1]
            available = channel.known_availability() or await channel.availability()
            if not available.ok:
                why = hide(f"unavailable: {available.reason}", secrets)
                return self._record(notice, shown, False, why)
            if spec is not None and spec.get("templates"):
                from ..core.templates import render_for

                notice = render_for(notice, spec["templates"])
            sending = notice

            async def attempt() -> None:
                limit = config.send_timeout
                if self.deadline is not None:
                    limit = min(limit, self.deadline - time.monotonic())
                    if limit <= 0:
                        raise _Exiting("the process exited before this try")
                await bounded(channel.send(sending), limit)

            # the first try bare (nearly every send succeeds at once; it is attempt()
            # written out); the retries after a failure; a test notice (``%remind test``)
            # reports its first failure, untried
            tries = 1 if notice.event == "test" else config.retry_attempts
            try:
                if self.deadline is None:
                    await bounded(channel.send(sending), config.send_timeout)
                else:
                    await attempt()
                outcome.attempts = 1
            except Exception as first:
                await with_retries(
                    attempt,
                    attempts=tries,
                    max_time=config.retry_max_time,
                    backoff=self.backoff,
                    outcome=outcome,
                    stop_early=self._past_deadline,
                    first_error=first,
                )
        except asyncio.TimeoutError:
            error = f"timed out after {config.send_timeout:g} s"
            retryable = True
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            retryable = is_retryable(exc)
        else:
            return self._record(notice, shown, True, attempts=outcome.attempts)
        if self.deadline is not None and retryable:
            return self._defer(notice, shown, hide(error, secrets), outcome.attempts)
        if outcome.attempts > 1:
            error += f" ({outcome.gave_up or f'after {outcome.attempts} tries'})"
        return self._record(
            notice, shown, False, hide(error, secrets), attempts=max(outcome.attempts, 1)
        )

    def _past_deadline(self, wait: float) -> str:
        """Why retrying stops now that the process is exiting (``""``: it does not)."""
        if self.deadline is not None and time.monotonic() + wait >= self.deadline:
            return "the process is exiting"
        return ""

    def _defer(self, notice: Notice, channel: str, error: str, attempts: int) -> Delivery:
        """The process is exiting and this delivery may still succeed later: its outbox row
        stays ``pending`` (the next nbremind process delivers it), and it is said so."""
        self.deferred += 1
        held = self._stored(notice.id, channel)  # (then not swept as "not sent")
        stored = held is not None
        if held is not None:
            outbox, name = held
            try:
                outbox.defer(notice.id, name, error, max(attempts, 1))
            except Exception:
                log.debug("updating the outbox failed", exc_info=True)
        where = (
            "left pending in the outbox for the next nbremind process"
            if stored
            else "lost: the outbox is off"
        )
        delivery = Delivery(
            notice.id,
            notice.title,
            channel,
            False,
            f"not delivered before exit ({error}); {where}",
            max(attempts, 1),
        )
        self.add_outcome(delivery)
        log.warning(
            "nbremind: %r not delivered to %s before exit (%s); %s",
            notice.title,
            channel,
            error,
            where,
        )
        return delivery

    def listen(self, callback: Callable[[Delivery], None]) -> Callable[[], None]:
        """Call ``callback(delivery)`` (on the loop thread) for each outcome from now on;
        returns the function that stops it. For callers that did not dispatch the notices
        themselves (``dispatch()`` returns its own outcomes)."""
        self._listeners = [*self._listeners, callback]

        def stop() -> None:
            self._listeners = [c for c in self._listeners if c is not callback]

        return stop

    def add_outcome(self, delivery: Delivery) -> Delivery:
        """Record ``delivery`` and tell the listeners (the replay's dropped notices use it)."""
        self.deliveries.append(delivery)
        for callback in self._listeners:
            try:
                callback(delivery)
            except Exception:  # a listener's bug must not stop deliveries
                log.exception("a delivery listener failed")
        return delivery

    def _record(
        self, notice: Notice, channel: str, ok: bool, error: str = "", attempts: int = 1
    ) -> Delivery:
        delivery = _new(Delivery)  # as fast as a tuple (see apply_rules)
        delivery.__dict__.update(
            notice_id=notice.id,
            title=notice.title,
            channel=channel,
            ok=ok,
            error=error,
            attempts=attempts,
        )
        self.add_outcome(delivery)
        self._outbox_mark(delivery)
        if not ok:
            # one log line per channel and reason, not one per notice
            key = f"{channel}:{error.split(':', 1)[0]}"
            if key not in self._reported:
                self._reported.add(key)
                log.info("%s channel could not deliver: %s", channel, error)
        return delivery

    # -- the durable outbox (never raises, never blocks for long: one short transaction) ----
    @property
    def outbox(self) -> Outbox | None:
        """The durable outbox notices are written to as they are delivered, if there is one."""
        source = self.outbox_source
        if source is None:
            return None
        try:
            return source()
        except Exception:
            log.debug("opening the outbox failed", exc_info=True)
            return None

    def _outbox_record(self, notice: Notice, names: Iterable[str], config: Config) -> None:
        """Queue ``notice`` with a pending delivery per channel for the outbox (written with
        what else comes within :data:`OUTBOX_WRITE_DELAY`; its send starts meanwhile).

        While a write is scheduled, notices dispatched with the same settings (``config``,
        the same object) join the outbox it writes, without asking for it again."""
        batch = self._batch
        if batch is not None and batch[0] is config and self._outbox_flush is not None:
            outbox: Outbox | None = batch[1]
        else:
            outbox = self.outbox
        names = tuple(names)
        for _ in range(2):  # (the one of the batch was closed meanwhile: ask again, once)
            if outbox is None:
                return
            try:
                if outbox.queue_record(notice, names):
                    self._in_outbox[notice.id] = (outbox, {display_name(n): n for n in names})
                    self._batch = (config, outbox)
                    self._outbox_later(outbox)
                    return
            except Exception:
                log.debug("writing a notice to the outbox failed", exc_info=True)
                return
            if batch is None or outbox is not batch[1]:
                return  # closed: the session is closing
            outbox, batch = self.outbox, None

    def _outbox_later(self, outbox: Outbox) -> None:
        """Have what was queued for ``outbox`` written :data:`OUTBOX_WRITE_DELAY` seconds
        from now, with what is queued meanwhile (one transaction for a burst of notices)."""
        if self._outbox_flush is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop (a caller of our own in a test): write now
            outbox.flush()
            return
        self._outbox_flush = loop.call_later(OUTBOX_WRITE_DELAY, self._write_outbox, outbox)

    def _write_outbox(self, outbox: Outbox) -> None:
        self._outbox_flush = None
        try:
            outbox.flush()
        except Exception:
            log.debug("writing to the outbox failed", exc_info=True)

    @property
    def outbox_queued(self) -> bool:
        """Whether writes to the outbox wait for their batch (see :meth:`flush_outbox`)."""
        return self._outbox_flush is not None

    def flush_outbox(self) -> None:
        """Write what is queued for the outbox now (the session closes); never raises."""
        handle, self._outbox_flush = self._outbox_flush, None
        if handle is not None:
            handle.cancel()
        outbox = self.outbox
        if outbox is not None:
            self._write_outbox(outbox)

    def _stored(self, notice_id: str, shown: str) -> tuple[Outbox, str] | None:
        """The outbox ``notice_id`` was written to and the name its channel ``shown`` is
        stored under, taken off the deliveries still to finish (``None``: not stored)."""
        held = self._in_outbox.get(notice_id)
        name = None if held is None else held[1].pop(shown, None)
        return None if name is None or held is None else (held[0], name)

    def _outbox_mark(self, delivery: Delivery) -> None:
        """Write a channel's final outcome (from :meth:`_record`) to the outbox."""
        held = self._stored(delivery.notice_id, delivery.channel)
        if held is None:
            return
        outbox, name = held
        try:
            outbox.queue_mark(
                delivery.notice_id,
                name,
                delivery.ok,
                delivery.error,
                attempts=getattr(delivery, "attempts", None),
            )
            self._outbox_later(outbox)
        except Exception:
            log.debug("marking a delivery in the outbox failed", exc_info=True)

    def _outbox_settle(self, notice_id: str, reason: str) -> None:
        """A stored notice went out another way (inside a digest): no longer pending."""
        outbox = self.outbox
        if outbox is None:
            return
        try:
            outbox.settle(notice_id, "delivered", reason)
        except Exception:
            log.debug("updating the outbox failed", exc_info=True)

    def _outbox_sweep(self, notice: Notice) -> None:
        """Channels the fan-out finished without sending to (their ``on`` does not take the
        event) are no longer pending."""
        held = self._in_outbox.pop(notice.id, None)
        if held is None or not held[1]:
            return
        outbox, names = held
        try:
            for name in names.values():
                outbox.queue_drop(notice.id, name, "not sent: the channel does not take this event")
            self._outbox_later(outbox)
        except Exception:
            log.debug("updating the outbox failed", exc_info=True)

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

    async def availability(
        self, names: Iterable[str], refresh: bool = False, config: Config | None = None
    ) -> dict[str, str]:
        """``{channel: "available" | "unavailable: why"}`` for each name (URLs with their
        secrets masked); no names: for the channels nbremind chooses its defaults from."""
        names = tuple(names) or DEFAULT_CANDIDATES
        out: dict[str, str] = {}
        for name in names:
            shown = display_name(name)
            try:
                channel = self.channel(name, config)
                state: Availability = await channel.availability(refresh=refresh)
                out[shown] = hide(str(state), _secrets_of(channel))
            except Exception as exc:
                out[shown] = f"unavailable: {hide(str(exc), [name])}"
        return out

    async def close(self) -> None:
        """Write what is queued for the outbox, then close every channel made."""
        self.flush_outbox()
        held = len(self.rule_state.quiet)
        if held:  # never lost silently: the outbox keeps them for the next process
            where = (
                "left in the outbox for the next nbremind process"
                if self.outbox is not None
                else "lost: the outbox is off"
            )
            log.warning(
                "%d notice%s held for quiet hours not sent yet: %s",
                held,
                "s" if held != 1 else "",
                where,
            )
        for channel in self._channels.values():
            try:
                await channel.close()
            except Exception:
                log.debug("closing %s failed", channel.name, exc_info=True)


class _Exiting(Exception):
    """No time is left for another try: the session is closing."""

    retryable = True


def _secrets_of(channel: Channel) -> list[str]:
    """What a remote channel must never show (its URL's password, tokens, keys)."""
    secrets = getattr(channel, "secrets", None)
    try:
        return list(secrets()) if callable(secrets) else []
    except Exception:
        return []

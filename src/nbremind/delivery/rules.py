"""The dispatcher's rule chain: small callables that may drop, hold or rewrite a notice.

A rule is ``(notice, ctx) -> Notice | None``: it returns the notice (possibly changed) or
``None`` to drop it. Rules run on the session's loop thread, in order; whatever state they
keep between notices lives in :class:`RuleState`, owned by the dispatcher and handed to them
in the :class:`RuleContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass, field

from ..core.config import Config
from ..core.notice import Notice
from ..core.options import TaskOptions
from ..core.templates import render_for
from .quiet import QuietHours, quiet_hours_of

__all__ = [
    "DEFAULT_RULES",
    "END_EVENTS",
    "REPEATING_EVENTS",
    "SNOOZED_EVENTS",
    "Rule",
    "RuleContext",
    "RuleState",
    "apply_templates",
    "dedup",
    "event_filter",
    "min_duration",
    "mute",
    "quiet_hours",
    "rate_limit",
    "snooze",
]

END_EVENTS = frozenset({"success", "failure", "cancel", "timeout"})
#: Events a task can raise many times; ``rate_limit`` spaces them out.
REPEATING_EVENTS = frozenset({"after", "memory", "progress"})
#: Events a snoozed task does not notify (its ``after``/``every`` and ``memory`` notices).
SNOOZED_EVENTS = frozenset({"after", "memory"})
_RATE_KEEP = 10_000


@dataclass
class RuleState:
    """What rules remember between notices (one per dispatcher, used on its loop thread)."""

    #: ``(task id, event)`` -> wall-clock time of the last repeating notice let through.
    last_repeat: dict[tuple[str, str], float] = field(default_factory=dict)
    #: Notices held during quiet hours, with the channels they were meant for.
    quiet: QuietHours = field(default_factory=QuietHours)
    #: task id -> wall-clock time until which its repeating notices are held (snoozed).
    snoozed: dict[str, float] = field(default_factory=dict)

    def snooze(self, task_id: str, until: float) -> None:
        """Hold the repeating notices of task ``task_id`` that happen before ``until``."""
        self.snoozed.pop(task_id, None)
        self.snoozed[task_id] = until
        if len(self.snoozed) > _RATE_KEEP:
            del self.snoozed[next(iter(self.snoozed))]


@dataclass(frozen=True)
class RuleContext:
    """What a rule may look at besides the notice."""

    options: TaskOptions
    config: Config
    sent: Container[str]
    #: Wall-clock seconds when the rules run, from the session's clock. Rules about when an
    #: event happened (quiet hours, rate limit) read ``notice.created`` instead.
    now: float | None = None
    state: RuleState = field(default_factory=RuleState)
    #: Whether a notice id was delivered before, by an earlier process (the outbox).
    already_sent: Callable[[str], bool] | None = None


#: A rule returns the notice (possibly changed) or ``None`` to drop it.
Rule = Callable[[Notice, RuleContext], "Notice | None"]


def event_filter(notice: Notice, ctx: RuleContext) -> Notice | None:
    """Drop events the task (or the config) did not ask for."""
    if ctx.options.on is None and ctx.config.on is not None:
        wanted = set(ctx.config.on) | (ctx.options.events() - END_EVENTS)
    else:
        wanted = set(ctx.options.events())
    return notice if notice.event in wanted else None


def min_duration(notice: Notice, ctx: RuleContext) -> Notice | None:
    """Drop the end notice of a task that ended sooner than ``min_duration``."""
    limit = ctx.options.min_duration
    if limit is None:
        limit = ctx.config.min_duration
    ended = notice.event in END_EVENTS and notice.task.state != "running"
    if limit is not None and ended and notice.task.elapsed < limit:
        return None
    return notice


def mute(notice: Notice, ctx: RuleContext) -> Notice | None:
    """Drop everything while the session is muted."""
    return None if ctx.config.muted else notice


def snooze(notice: Notice, ctx: RuleContext) -> Notice | None:
    """Drop an ``after``/``every`` or ``memory`` notice of a task snoozed at that time
    (a toast's **Snooze 1 h**); its other notices go on."""
    if notice.event not in SNOOZED_EVENTS or not ctx.state.snoozed:
        return notice
    until = ctx.state.snoozed.get(notice.task.id)
    return None if until is not None and notice.created < until else notice


def dedup(notice: Notice, ctx: RuleContext) -> Notice | None:
    """The same task and event (same notice id) never notify twice: not in this process
    (``ctx.sent``), and not after a restart (``ctx.already_sent``, backed by the outbox)."""
    if notice.id in ctx.sent:
        return None
    if ctx.already_sent is not None:
        try:
            if ctx.already_sent(notice.id):
                return None
        except Exception:  # a broken store must not stop delivery
            pass
    return notice


def rate_limit(notice: Notice, ctx: RuleContext) -> Notice | None:
    """Drop a repeating event (``after``, ``memory``, ``progress``) of a task that sent the
    same event less than ``rate_limit`` seconds ago. End events are never limited."""
    limit = ctx.config.rate_limit
    if limit is None or notice.event not in REPEATING_EVENTS:
        return notice
    now = notice.created  # when the event happened, not when the loop got to it
    key = (notice.task.id, notice.event)
    last = ctx.state.last_repeat.get(key)
    if last is not None and now - last < limit:
        return None
    ctx.state.last_repeat[key] = now
    if len(ctx.state.last_repeat) > _RATE_KEEP:
        del ctx.state.last_repeat[next(iter(ctx.state.last_repeat))]
    return notice


def quiet_hours(notice: Notice, ctx: RuleContext) -> Notice | None:
    """Hold a notice that falls in quiet hours, unless its event is in ``quiet_allow``.

    Held notices go out as one digest when quiet hours end
    (:meth:`~nbremind.delivery.dispatcher.Dispatcher.release_due`).
    """
    window = quiet_hours_of(ctx.config)
    if window is None or notice.event in ctx.config.quiet_allow or notice.event == "test":
        return notice  # a test notice (``%remind test``) is asked for now: never held
    ends = window.end_after(notice.created)  # when the event happened
    if ends is None or (ctx.now is not None and ends <= ctx.now):
        return notice  # not quiet then, or those quiet hours are over (a late or replayed one)
    ctx.state.quiet.hold(notice, ctx.options.channels, ends)
    return None


def apply_templates(notice: Notice, ctx: RuleContext) -> Notice | None:
    """Replace the title and body by the settings' template for the notice's event."""
    return render_for(notice, ctx.config.templates)


DEFAULT_RULES: tuple[Rule, ...] = (
    event_filter,
    min_duration,
    mute,
    snooze,
    dedup,
    rate_limit,
    quiet_hours,
    apply_templates,
)

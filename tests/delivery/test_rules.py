"""Each rule of the dispatcher's chain alone, and the settings that drive them."""

from __future__ import annotations

import asyncio

import pytest

from nbremind import Config, remind
from nbremind.channels.memory import MemoryChannel
from nbremind.core.notice import Notice, make_notice
from nbremind.core.options import TaskOptions
from nbremind.core.task import Task, TaskState
from nbremind.delivery.dispatcher import Dispatcher
from nbremind.delivery.rules import (
    DEFAULT_RULES,
    RuleContext,
    RuleState,
    apply_templates,
    dedup,
    event_filter,
    min_duration,
    mute,
    quiet_hours,
    rate_limit,
    snooze,
)
from nbremind.testing import FakeClock, capture_notices

# 2026-11-27 12:00 UTC
NOON_UTC = 1_795_780_800.0


def _task(name: str = "etl", elapsed: float = 5.0, end: bool = True) -> Task:
    clock = FakeClock()
    task = Task(name, clock=clock)
    task.mark_started()
    clock.advance(elapsed)
    if end:
        task.mark_ended(TaskState.SUCCEEDED)
    return task


def _notice(
    event: str = "success", key: object = 0, task: Task | None = None, created: float = NOON_UTC
) -> Notice:
    task = task or _task(end=event in ("success", "failure", "cancel", "timeout"))
    return make_notice(event, task.snapshot(), created=created, key=key)


def _ctx(
    config: Config | None = None,
    options: TaskOptions | None = None,
    sent: set[str] | None = None,
    now: float | None = NOON_UTC,
    state: RuleState | None = None,
    **extra: object,
) -> RuleContext:
    return RuleContext(
        options or TaskOptions(),
        config or Config(),
        sent or set(),
        now,
        state or RuleState(),
        **extra,
    )  # type: ignore[arg-type]


def test_the_chain_order() -> None:
    chain = (
        event_filter,
        min_duration,
        mute,
        snooze,
        dedup,
        rate_limit,
        quiet_hours,
        apply_templates,
    )
    assert chain == DEFAULT_RULES


def test_rules_stay_importable_from_the_dispatcher() -> None:
    from nbremind.delivery import dispatcher

    assert dispatcher.dedup is dedup and dispatcher.RuleContext is RuleContext


def test_event_filter_alone() -> None:
    assert event_filter(_notice("success"), _ctx()) is not None
    assert event_filter(_notice("start"), _ctx()) is None
    assert event_filter(_notice("start"), _ctx(options=TaskOptions.parse(on="start"))) is not None


def test_min_duration_and_mute_alone() -> None:
    short = _notice()
    assert min_duration(short, _ctx(Config(min_duration=60))) is None
    assert min_duration(short, _ctx(Config(min_duration=1))) is short
    assert mute(short, _ctx(Config(muted=True))) is None
    assert mute(short, _ctx()) is short


def test_dedup_consults_this_process_and_the_outbox() -> None:
    notice = _notice()
    asked: list[str] = []

    def delivered_before(notice_id: str) -> bool:
        asked.append(notice_id)
        return notice_id == notice.id

    assert dedup(notice, _ctx(sent={notice.id})) is None
    assert asked == []  # known in this process: the store is not asked
    assert dedup(notice, _ctx(already_sent=delivered_before)) is None
    other = _notice(key=1)
    assert dedup(other, _ctx(already_sent=delivered_before)) is other
    assert asked == [notice.id, other.id]


def test_dedup_survives_a_broken_store() -> None:
    def broken(notice_id: str) -> bool:
        raise OSError("disk gone")

    notice = _notice()
    assert dedup(notice, _ctx(already_sent=broken)) is notice


def test_rate_limit_spaces_repeating_events_of_one_task() -> None:
    task = _task(end=False)
    ctx = _ctx(Config(rate_limit=600))

    def at(event: str, key: int, seconds: float, of: Task = task) -> Notice:
        return _notice(event, key, of, created=NOON_UTC + seconds)

    first = at("after", 1, 0)
    assert rate_limit(first, ctx) is first
    assert rate_limit(at("after", 2, 599), ctx) is None
    # another event of the same task, and the same event of another task, are separate
    progress = at("progress", 1, 599)
    assert rate_limit(progress, ctx) is progress
    other = at("after", 1, 599, _task("other", end=False))
    assert rate_limit(other, ctx) is other
    third = at("after", 3, 600)
    assert rate_limit(third, ctx) is third
    # a dropped notice does not restart the wait: 600 s after the last one let through
    assert rate_limit(at("after", 4, 1199), ctx) is None
    assert rate_limit(at("after", 5, 1200), ctx) is not None


def test_rate_limit_never_holds_back_end_events_and_is_off_by_default() -> None:
    ctx = _ctx(Config(rate_limit=600))
    task = _task(end=False)
    assert rate_limit(_notice("memory", 1, task), ctx) is not None
    end = _notice("failure", "end", task)
    assert rate_limit(end, ctx) is end
    repeat = _notice("memory", 2, task)
    assert rate_limit(repeat, _ctx(state=ctx.state)) is repeat  # no rate_limit set
    assert rate_limit(repeat, ctx) is None


def test_rate_limit_in_a_session_with_every() -> None:
    clock = FakeClock()
    with capture_notices(clock) as cap:
        cap.session.configure(rate_limit="5m")
        with remind("etl", every="1m"):
            for _ in range(11):
                clock.advance(60)
                cap.session.tick()
        # after 1, 2, ... 11 minutes: only those at least 5 minutes apart go out
        assert cap.titles() == [
            "⏱ etl still running (1 min)",
            "⏱ etl still running (6 min)",
            "⏱ etl still running (11 min)",
            "✓ etl finished",
        ]


def test_quiet_hours_rule_alone_holds_or_passes() -> None:
    state = RuleState()
    config = Config(quiet_hours="11:00-13:00", timezone="UTC", quiet_allow=("failure",))
    held = _notice("success")
    assert quiet_hours(held, _ctx(config, state=state)) is None
    assert [h.notice for h in state.quiet.held] == [held]
    assert state.quiet.release_at == NOON_UTC + 3600
    allowed = _notice("failure")
    assert quiet_hours(allowed, _ctx(config, state=state)) is allowed
    outside = _notice("success", created=NOON_UTC + 3600)
    assert quiet_hours(outside, _ctx(config, state=state)) is outside
    assert quiet_hours(outside, _ctx(Config(), state=state)) is outside  # no quiet hours
    # an event of last night's quiet hours handled after they ended (replayed after a
    # restart) is not held again
    late = _notice("success", created=NOON_UTC - 86400)
    assert quiet_hours(late, _ctx(config, state=state)) is late
    assert len(state.quiet) == 1


def test_apply_templates_alone() -> None:
    notice = _notice()
    config = Config().updated(templates={"success": {"title": "done: {name}"}})
    out = apply_templates(notice, _ctx(config))
    assert out is not None and out.title == "done: etl" and out.body == notice.body
    assert apply_templates(notice, _ctx()) is notice


@pytest.mark.parametrize(
    ("key", "value", "stored"),
    [
        ("quiet_hours", "22:00-07:00", "22:00-07:00"),
        ("quiet_hours", " 7-9 ", "07:00-09:00"),
        ("quiet_hours", "20:30-24:00", "20:30-00:00"),
        ("quiet_hours", None, None),
        ("quiet_hours", "off", None),
        ("quiet_allow", ["failure", "timeout"], ("failure", "timeout")),
        ("quiet_allow", "failure", ("failure",)),
        ("timezone", "Europe/Berlin", "Europe/Berlin"),
        ("timezone", "local", None),
        ("rate_limit", "10m", 600.0),
        ("rate_limit", None, None),
    ],
)
def test_rule_settings(key: str, value: object, stored: object) -> None:
    assert getattr(Config().updated(**{key: value}), key) == stored


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("quiet_hours", "22:00"),
        ("quiet_hours", "25:00-07:00"),
        ("quiet_hours", "22:60-07:00"),
        ("quiet_hours", "07:00-07:00"),
        ("quiet_hours", 22),
        ("quiet_allow", ["failure", "lunch"]),
        ("timezone", "Mars/Olympus"),
        ("timezone", "../../etc/passwd"),
        ("rate_limit", "soon"),
        ("rate_limit", 0),
    ],
)
def test_bad_rule_settings_name_the_setting_and_value(key: str, value: object) -> None:
    with pytest.raises(ValueError) as info:
        Config().updated("config.toml", **{key: value})
    message = str(info.value)
    assert message.startswith(f"config.toml: {key}")
    shown = value[1] if key == "quiet_allow" else value  # type: ignore[index]
    assert repr(shown) in message


def test_held_notices_are_not_sent_twice() -> None:
    """A notice held during quiet hours and dispatched again (a retry) is held once."""
    memory = MemoryChannel()
    clock = FakeClock(wall=NOON_UTC)
    dispatcher = Dispatcher(channels={"memory": memory}, clock=clock)
    config = Config(channels=("memory",), quiet_hours="11:00-13:00", timezone="UTC")
    notice = _notice()

    async def run() -> None:
        await dispatcher.dispatch(notice, TaskOptions(), config)
        await dispatcher.dispatch(notice, TaskOptions(), config)
        assert memory.notices == []
        clock.advance(3600)
        await dispatcher.release_due(config)
        await dispatcher.dispatch(notice, TaskOptions(), config)  # sent in the digest

    asyncio.run(run())
    assert [n.title for n in memory.notices] == ["nbremind: 1 notice during quiet hours"]
    assert memory.notices[0].body == "12:00 ✓ etl finished"

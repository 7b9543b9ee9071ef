"""Option values as users type them: durations, sizes, progress marks, events and channels."""

from __future__ import annotations

import re

import pytest

from nbremind import Config, configure, remind
from nbremind.core.options import DEFAULT_ON, TaskOptions
from nbremind.core.parse import (
    EVENTS,
    parse_channels,
    parse_duration,
    parse_events,
    parse_percents,
    parse_size,
)
from nbremind.testing import capture_notices


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2d", 172800.0),
        ("1d2h3m4s", 86400 + 7200 + 180 + 4),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("10M", 600.0),
        (" 45s ", 45.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value, "after") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["ten minutes", "", "   ", "10x", "m", "10m5", "5s10", "0", "0s", -5, 0, True, "1h-30m", [10]],
)
def test_bad_durations_name_option_and_value(value: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value, "every")
    message = str(info.value)
    assert message.startswith("every:")
    assert repr(value) in message


def test_infinite_duration_is_rejected() -> None:
    with pytest.raises(ValueError, match="timeout"):
        parse_duration(float("inf"), "timeout")


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("512MB", 512_000_000),
        ("8GB", 8_000_000_000),
        ("8GiB", 8 * 2**30),
        ("8 GiB", 8 * 2**30),
        ("8gb", 8_000_000_000),
        ("1.5GB", 1_500_000_000),
        ("100k", 100_000),
        ("2TB", 2 * 10**12),
        ("512MiB", 512 * 2**20),
        (4096, 4096),
        ("4096", 4096),
    ],
)
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value, "mem") == size


@pytest.mark.parametrize("value", ["8 gigs", "GB", "-1GB", "0", 0, -5, "", False, "8XB"])
def test_bad_sizes_name_option_and_value(value: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_size(value, "mem")
    assert str(info.value).startswith("mem:")
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("value", "marks"),
    [
        (0.5, (0.5,)),
        ("0.5", (0.5,)),
        ("50%", (0.5,)),
        (1, (1.0,)),
        ("100%", (1.0,)),
        ("25%,50%", (0.25, 0.5)),
        ("75%, 25%", (0.25, 0.75)),
        ([0.75, "25%", 0.5], (0.25, 0.5, 0.75)),
        (("50%", 0.5), (0.5,)),
        (None, ()),
        ([], ()),
    ],
)
def test_percents(value: object, marks: tuple[float, ...]) -> None:
    assert parse_percents(value, "progress") == pytest.approx(marks)


@pytest.mark.parametrize("value", [0, 1.5, "150%", "0%", "half", "%", ",", True, [0.5, "x"]])
def test_bad_percents_name_option(value: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_percents(value, "progress")
    assert str(info.value).startswith("progress:")


def test_bad_percent_names_the_offending_item() -> None:
    with pytest.raises(ValueError, match=r"progress: 'x'"):
        parse_percents([0.5, "x"], "progress")


def test_events() -> None:
    assert parse_events("success,failure") == ("success", "failure")
    assert parse_events(["after", "memory"]) == ("after", "memory")
    assert parse_events("start, start ,success") == ("start", "success")
    assert set(EVENTS) == {
        "start",
        "success",
        "failure",
        "cancel",
        "timeout",
        "progress",
        "after",
        "memory",
        "condition",
        "input",
        "stall",
        "slower",
        "missed",
        "requeue",
        "worker",
    }


@pytest.mark.parametrize("value", ["none", [], (), ""])
def test_no_events(value: object) -> None:
    assert parse_events(value) == ()
    options = TaskOptions.parse(on=value)
    assert options.on == ()
    assert options.events() == frozenset()


def test_unknown_event_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError) as info:
        parse_events("success,finish", "on")
    message = str(info.value)
    assert "on:" in message
    assert "'finish'" in message
    for event in EVENTS:
        assert event in message
    assert "none" in message


def test_channels_are_split_and_deduplicated() -> None:
    assert parse_channels("desktop, memory,desktop") == ("desktop", "memory")
    assert parse_channels(["memory"]) == ("memory",)
    with pytest.raises(ValueError, match="channels"):
        parse_channels(42, "channels")
    with pytest.raises(ValueError, match="channels"):
        parse_channels(["memory", ""], "channels")


def test_unknown_channel_in_remind_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        remind("etl", channels=["memory", "pager"])
    message = str(info.value)
    assert "channels" in message
    assert "'pager'" in message
    for known in ("desktop", "memory", "null"):
        assert known in message


def test_unknown_channel_in_configure_is_rejected_and_config_kept() -> None:
    with capture_notices() as cap:
        with pytest.raises(ValueError, match=r"channels: 'pager' is not a channel.*desktop"):
            configure(channels="pager")
        assert cap.session.config.channels == ("memory",)


def test_unknown_setting_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        Config().updated(chanels=["memory"])
    message = str(info.value)
    assert "'chanels'" in message
    assert "channels" in message
    assert "send_timeout" in message


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("after", "ten minutes"),
        ("every", "soon"),
        ("progress", "half"),
        ("mem", "lots"),
        ("timeout", "never"),
        ("min_duration", "short"),
        ("on", "finish"),
        ("channels", "pager"),
        ("when", 42),
    ],
)
def test_remind_rejects_bad_values_naming_option_and_value(option: str, value: object) -> None:
    with pytest.raises(ValueError) as info:
        remind("etl", **{option: value})  # type: ignore[arg-type]
    message = str(info.value)
    assert re.search(rf"\b{option}\b", message), message
    assert repr(value) in message


def test_remind_after_message() -> None:
    with pytest.raises(ValueError) as info:
        remind(after="ten minutes")
    assert "after" in str(info.value)
    assert "'ten minutes'" in str(info.value)


@pytest.mark.parametrize("total", [-1, "10", 2.5, True])
def test_remind_rejects_bad_total(total: object) -> None:
    with pytest.raises(ValueError, match="total"):
        remind("etl", total=total)  # type: ignore[arg-type]


def test_interrupt_needs_a_timeout() -> None:
    with pytest.raises(ValueError, match="interrupt"):
        remind("etl", interrupt=True)


def test_remind_name_must_be_a_string() -> None:
    with pytest.raises(ValueError, match="name"):
        remind(42)  # type: ignore[call-overload]


def test_options_parse_all_forms() -> None:
    opts = TaskOptions.parse(
        after="1h30m",
        every="10m",
        progress="25%,50%",
        mem="8GiB",
        timeout="2d",
        interrupt=True,
        on="success,after",
        channels="memory",
        min_duration=90,
    )
    assert opts.after == 5400
    assert opts.every == 600
    assert opts.progress == (0.25, 0.5)
    assert opts.mem == 8 * 2**30
    assert opts.timeout == 172800
    assert opts.interrupt is True
    assert opts.on == ("success", "after")
    assert opts.channels == ("memory",)
    assert opts.min_duration == 90
    assert opts.events() == {"success", "after"}


def test_default_events_add_the_thresholds_set() -> None:
    # a wait for input, a requeued cluster job, a lost worker notify unless on leaves them out
    default = set(DEFAULT_ON) | {"input", "requeue", "worker"}
    assert TaskOptions().events() == default
    assert set(DEFAULT_ON) == {"success", "failure", "cancel", "timeout"}
    assert TaskOptions.parse(after="1m").events() == default | {"after"}
    assert TaskOptions.parse(every="1m").events() == default | {"after"}
    assert TaskOptions.parse(progress=0.5).events() == default | {"progress"}
    assert TaskOptions.parse(mem="1GB").events() == default | {"memory"}
    assert TaskOptions.parse(when=bool).events() == default | {"condition"}
    assert TaskOptions.parse(on="failure").events() == {"failure"}
    assert "input" not in TaskOptions.parse(after="1m").thresholds_only().events()
    assert TaskOptions().thresholds_only().on == ()  # a loop in a task: nothing at all
    assert "start" not in TaskOptions.parse(after="1m", progress=0.5).events()


def test_limits_are_sizes_or_percents() -> None:
    from nbremind.core.parse import Percent, parse_limit

    assert parse_limit("30GB", "mem_limit") == 30_000_000_000
    assert parse_limit(" 90 % ", "mem_limit") == Percent(0.9)
    assert isinstance(parse_limit("90%", "mem_limit"), Percent)
    assert type(parse_limit(1024, "mem_limit")) is int
    assert repr(Percent(0.9)) == "90%"
    assert parse_limit(repr(Percent(1 / 3)), "x") == Percent(1 / 3)  # read back exactly
    import pickle

    assert pickle.loads(pickle.dumps(Percent(0.25))) == 0.25
    for bad, why in (
        ("0%", "a percent above 0% and at most 100%"),
        ("150%", "a percent above 0% and at most 100%"),
        ("-5%", "a size such as 30GB or a percent such as 90%"),
        ("lots", "a size such as 30GB or a percent such as 90%"),
        (True, "a size such as 30GB or a percent such as 90%"),
        (0, "a positive size of at least one byte"),
    ):
        with pytest.raises(ValueError) as info:
            parse_limit(bad, "--mem-limit")
        assert str(info.value) == f"--mem-limit: {bad!r} is not {why}"


def test_factors_are_above_one() -> None:
    from nbremind.core.parse import DEFAULT_SLOWER, parse_factor

    assert parse_factor(True, "slower") == DEFAULT_SLOWER == 1.5
    assert parse_factor("2x", "slower") == 2.0
    assert parse_factor("150%", "slower") == 1.5
    assert parse_factor(3, "slower") == 3.0
    for bad in (1, 0.5, "1", "fast", False, float("inf"), float("nan"), "x2", [2]):
        with pytest.raises(ValueError, match=r"^slower: .* is not a factor above 1"):
            parse_factor(bad, "slower")

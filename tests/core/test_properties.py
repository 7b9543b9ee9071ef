"""Property tests: every input either parses or raises ValueError showing the offending text.

Nothing else (TypeError, OverflowError, KeyError, ...) may escape the parsers of durations,
sizes, progress marks, counts, events, channel lists, channel URLs, quiet-hour ranges, time
zones and templates, nor the keyword options of ``remind()`` and ``track()``; and no call
may hang (each example runs under a deadline).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import nbremind.channels
from _deadline import within
from nbremind import remind, track
from nbremind.core.notice import make_notice
from nbremind.core.options import MIN_TASK_DURATION, OPTIONS
from nbremind.core.parse import (
    Percent,
    format_quiet_hours,
    parse_channels,
    parse_count,
    parse_duration,
    parse_events,
    parse_factor,
    parse_limit,
    parse_percents,
    parse_quiet_hours,
    parse_size,
    parse_timezone,
    printable,
    quoted,
    safe_repr,
)
from nbremind.core.task import Task, TaskError, TaskState
from nbremind.core.templates import check_template, render_for
from nbremind.core.urls import check_url, redact_url, scheme_of
from nbremind.testing import FakeClock

settings.register_profile(
    "nbremind", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("nbremind")

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),  # too large for a float
    st.floats(allow_nan=True, allow_infinity=True),
)
duration_text = st.from_regex(
    r"\s*(\d{1,4}(\.\d{0,2})?\s*(ms|d|h|m|s|D|H|M|S|x)?){1,4}\s*", fullmatch=True
)
size_text = st.from_regex(
    r"\s*\d{1,25}(\.\d{0,3})?\s*([kKmMgGtT]i?[bB]?|b|B|x)?\s*", fullmatch=True
)
percent_text = st.from_regex(r"\s*-?\d{0,4}(\.\d{0,3})?%?(,\s*\d{0,3}%?){0,3}\s*", fullmatch=True)
range_text = st.from_regex(r"\s*\d{1,3}(:\d{1,3})?\s*-\s*\d{1,3}(:\d{1,3})?\s*", fullmatch=True)
template_text = st.text(alphabet=st.sampled_from(list("{}:!.[]_0aenmrstx%>,2 ")), max_size=20)
field_template = st.builds(
    lambda name, spec: "{" + name + spec + "}",
    st.sampled_from(["name", "elapsed", "metrics.loss", "nmae", "name.__class__", "0", ""]),
    st.sampled_from(["", ":>8", ":.2f", ":{x}", "!r", "!z", ":,", ":%", ":x"]),
)
anything = st.one_of(
    st.none(), st.booleans(), st.lists(st.integers(), max_size=2), numbers, st.text()
)


def parses_or_names_the_value(parse: Callable[[object], object], value: object) -> object:
    """Call ``parse``; only ``ValueError`` showing ``value`` may escape."""
    try:
        return parse(value)
    except ValueError as exc:
        assert repr(value) in str(exc), (value, str(exc))
        return None


@given(st.one_of(anything, duration_text))
@example("1" * 400 + "d")
@example(10**400)
def test_durations(value: object) -> None:
    seconds = parses_or_names_the_value(lambda v: parse_duration(v, "after"), value)
    if seconds is not None:
        assert isinstance(seconds, float) and 0 < seconds < math.inf


@given(st.one_of(anything, size_text))
@example(10**400)
def test_sizes(value: object) -> None:
    size = parses_or_names_the_value(lambda v: parse_size(v, "mem"), value)
    if size is not None:
        assert isinstance(size, int) and size > 0


@given(st.one_of(anything, percent_text))
def test_percents(value: object) -> None:
    try:
        marks = parse_percents(value, "progress")
    except ValueError as exc:
        # the offending item is shown; for a list of marks it may be one of them
        assert "progress:" in str(exc)
        if isinstance(value, str):
            assert any(repr(part) in str(exc) for part in [value, *value.split(",")]), str(exc)
        return
    assert list(marks) == sorted(set(marks))
    assert all(0 < m <= 1 for m in marks)


@given(st.one_of(anything, range_text))
@example("22:00-07:00")
@example("24:00-07:00")
def test_quiet_hour_ranges(value: object) -> None:
    parsed = parses_or_names_the_value(lambda v: parse_quiet_hours(v, "quiet_hours"), value)
    if parsed is not None:
        start, end = parsed  # type: ignore[misc]
        assert 0 <= start < 1440 and 0 <= end < 1440 and start != end
        assert parse_quiet_hours(format_quiet_hours(start, end)) == (start, end)


@given(st.one_of(anything, st.sampled_from(["UTC", "Europe/Berlin", "../x", "Mars/Base"])))
def test_time_zones(value: object) -> None:
    parses_or_names_the_value(lambda v: parse_timezone(v, "timezone"), value)


def _notice(event: str = "failure") -> object:
    clock = FakeClock()
    task = Task("etl", clock=clock, total=10)
    task.mark_started()
    task.metric(loss=0.25, tag="x")
    task.mark_ended(TaskState.FAILED, TaskError("ValueError", "bad"))
    return make_notice(event, task.snapshot(), created=clock.time())


NOTICE = _notice()


@given(st.one_of(template_text, field_template, st.lists(field_template, max_size=3).map("".join)))
@example("{name.__class__.__mro__}")
@example("{error.__init__.__globals__}")
@example("{0}")
def test_templates(text: str) -> None:
    try:
        checked = check_template(text, "templates.failure.title")
    except ValueError as exc:
        message = str(exc)
        assert message.startswith("templates.failure.title: ")
        assert repr(text) in message
        return
    assert checked == text
    rendered = render_for(NOTICE, {"failure": {"title": text}})  # type: ignore[arg-type]
    assert isinstance(rendered.title, str)
    assert "<class" not in rendered.title and "function" not in rendered.title


@pytest.mark.parametrize("value", [10**400, -(10**400)])
def test_huge_integers_are_value_errors(value: int) -> None:
    for parse in (parse_duration, parse_size):
        with pytest.raises(ValueError, match=repr(value)[:20]):
            parse(value)


# -- hostile input: control characters, huge and negative numbers, unicode digits, URLs ----------

#: Seconds one example may take before it counts as a hang.
DEADLINE = 20.0
CONTROLS = "\x00\x07\x08\t\n\r\x1b\x7f\x85\x9b\u2028\u202e"
UNICODE_DIGITS = "٠١٢٣٤٥٦٧٨٩０１２۳߀৪¹²³"
PASSWORD = "ZpwZ"  # no other part of a generated URL can spell it
LEAK = f"u:{PASSWORD}@"  # the password where a URL holds it, unmasked

control_text = st.text(
    alphabet=st.one_of(st.sampled_from(list(CONTROLS)), st.characters(exclude_categories=["Cs"])),
    max_size=24,
)
unicode_numbers = st.builds(
    lambda sign, digits, unit: sign + digits + unit,
    st.sampled_from(["", "-"]),
    st.text(alphabet=UNICODE_DIGITS, min_size=1, max_size=6),
    st.sampled_from(["", "s", "m", "ms", "GB", "GiB", "%", "d"]),
)
huge = st.sampled_from(
    [
        10**5000,
        -(10**5000),
        10**400,
        "1e309s",
        "1e309",
        "1" * 5000,
        "1" * 400 + "d",
        "9" * 30 + "d",
        "1" + "0" * 5000,
        float("inf"),
        float("-inf"),
        float("nan"),
        1e308,
        "0.000000000000000000001s",
        1e-21,
        "1" + "0" * 4400,
    ]
)
negative = st.one_of(
    st.integers(max_value=-1),
    st.floats(max_value=-1e-300, allow_nan=False),
    st.from_regex(r"-\d{1,6}(\.\d{1,3})?(ms|s|m|h|d|GB|%)?", fullmatch=True),
)
url_text = st.builds(
    lambda scheme, user, rest: f"{scheme}://{user}{rest}",
    st.sampled_from(["http", "https", "smtp", "smtps", "HTTP", "ntfy", "tgram", "json"]),
    st.sampled_from(["", "u@", f"u:{PASSWORD}@"]),
    st.text(alphabet="[]:.0123456789abcdef/?#@% =\x1b\x00-", max_size=24),
)
hostile = st.one_of(
    anything,
    control_text,
    unicode_numbers,
    huge,
    negative,
    url_text,
    duration_text,
    size_text,
    percent_text,
)
option_values = st.one_of(
    hostile, st.lists(hostile, max_size=3), st.lists(url_text, min_size=1, max_size=2)
)


def bounded(call: Callable[[], Any]) -> Any:
    """``call()`` on a thread; a test failure when it has not returned by :data:`DEADLINE`."""
    return within(DEADLINE, call)


def _forms(value: object) -> set[str]:
    """Every way an error message may show ``value`` or one of its items."""
    forms = {safe_repr(value), quoted(value)}
    items: list[object] = []
    if isinstance(value, str):
        items = [value, *value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    for item in items:
        forms |= {safe_repr(item), quoted(item)}
        if isinstance(item, str):
            text = item.strip()
            forms |= {safe_repr(text), quoted(text), printable(redact_url(text))}
            masked = getattr(nbremind.channels, "shown", None)  # quoted with URLs masked
            if callable(masked):
                forms.add(masked(text))
    return forms


def leaks(message: str, value: object) -> bool:
    """Whether ``message`` shows the password of a URL in ``value`` (and ``value`` does not
    hold the same text outside a URL, where it would rightly be quoted)."""
    items = (
        value.split(",")
        if isinstance(value, str)
        else (list(value) if isinstance(value, (list, tuple)) else [])
    )
    plain = [i for i in items if isinstance(i, str) and scheme_of(i.strip()) is None]
    return LEAK in message and not any(LEAK in item for item in plain)


def names_value(message: str, value: object) -> bool:
    """Whether ``message`` shows ``value`` (or the item of it that is wrong)."""
    return any(form in message for form in _forms(value))


PARSERS: dict[str, Callable[[object], object]] = {
    "duration": lambda v: parse_duration(v, "after"),
    "size": lambda v: parse_size(v, "mem"),
    "progress": lambda v: parse_percents(v, "progress"),
    "events": lambda v: parse_events(v, "on"),
    "channels": lambda v: parse_channels(v, "channels"),
    "count": lambda v: parse_count(v, "--limit"),
    "limit": lambda v: parse_limit(v, "mem_limit"),
    "factor": lambda v: parse_factor(v, "slower"),
}


@given(share=st.floats(min_value=0, max_value=1, exclude_min=True, allow_subnormal=True))
def test_a_percent_reads_back_as_itself(share: float) -> None:
    assert parse_limit(repr(Percent(share)), "mem_limit") == share


@pytest.mark.parametrize("parser", sorted(PARSERS))
@given(value=option_values)
@example(value="0.000000000000000000001s")
@example(value=10**5000)
@example(value="1e309s")
@example(value="²")
@example(value="٣s")
def test_parsers_parse_or_name_the_value(parser: str, value: object) -> None:
    try:
        bounded(lambda: PARSERS[parser](value))
    except ValueError as exc:
        assert names_value(str(exc), value), (value, str(exc))


@given(
    url=st.one_of(
        url_text,
        control_text,
        st.sampled_from(
            [
                "http://[::1",
                "http://",
                "http://example.org:99999",
                "http://h:0",
                "https:///x",
                f"http://u:{PASSWORD}@[::1/x",
                f"smtp://u:{PASSWORD}@h:99999?to=a@b",
            ]
        ),
    )
)
def test_urls_are_accepted_or_named_with_secrets_masked(url: str) -> None:
    try:
        bounded(lambda: check_url(url, "channels"))
    except ValueError as exc:
        message = str(exc)
        assert message.startswith("channels: ") and printable(redact_url(url)) in message
        assert not leaks(message, url), message
        assert "\x1b" not in message and "\x00" not in message
        return
    assert not leaks(redact_url(url), url)


KEYWORDS = [spec.name for spec in OPTIONS] + ["total"]


@pytest.mark.parametrize("keyword", KEYWORDS)
@given(value=option_values)
@example(value="0.000000000000000000001s")
@example(value=10**5000)
@example(value=-(10**5000))
@example(value="1e309s")
@example(value="http://[::1")
@example(value=["memory", "http://u:ZpwZ@host:99999/x"])
def test_remind_and_track_options_parse_or_name_the_value(keyword: str, value: object) -> None:
    kwargs: dict[str, Any] = {keyword: value}
    for where, call in (
        ("remind()", lambda: remind("p", **kwargs)),
        ("track()", lambda: track(range(2), **kwargs)),
    ):
        try:
            made = bounded(call)
        except ValueError as exc:
            message = str(exc)
            assert message.startswith(where) and keyword in message, message
            assert names_value(message, value), (value, message)
            if keyword == "channels":  # URLs are masked where they are expected
                assert not leaks(message, value), message
            continue
        options = made.options
        for spec in OPTIONS:
            chosen = getattr(options, spec.name)
            if spec.metavar == "DUR" and chosen is not None:
                assert MIN_TASK_DURATION <= chosen < math.inf

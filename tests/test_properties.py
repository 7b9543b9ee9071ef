"""Property tests: every input either parses or raises ValueError showing the offending text.

Nothing else (TypeError, OverflowError, KeyError, ...) may escape the parsers of durations,
sizes, progress marks, quiet-hour ranges, time zones and templates.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nbremind._clock import FakeClock
from nbremind._parse import (
    format_quiet_hours,
    parse_duration,
    parse_percents,
    parse_quiet_hours,
    parse_size,
    parse_timezone,
)
from nbremind.notice import make_notice
from nbremind.task import Task, TaskError, TaskState
from nbremind.templates import check_template, render_for

settings.register_profile("nbremind", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("nbremind")

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),  # too large for a float
    st.floats(allow_nan=True, allow_infinity=True),
)
duration_text = st.from_regex(r"\s*(\d{1,4}(\.\d{0,2})?\s*(ms|d|h|m|s|D|H|M|S|x)?){1,4}\s*",
                              fullmatch=True)
size_text = st.from_regex(r"\s*\d{1,25}(\.\d{0,3})?\s*([kKmMgGtT]i?[bB]?|b|B|x)?\s*",
                          fullmatch=True)
percent_text = st.from_regex(r"\s*-?\d{0,4}(\.\d{0,3})?%?(,\s*\d{0,3}%?){0,3}\s*", fullmatch=True)
range_text = st.from_regex(r"\s*\d{1,3}(:\d{1,3})?\s*-\s*\d{1,3}(:\d{1,3})?\s*", fullmatch=True)
template_text = st.text(alphabet=st.sampled_from(list("{}:!.[]_0aenmrstx%>,2 ")), max_size=20)
field_template = st.builds(
    lambda name, spec: "{" + name + spec + "}",
    st.sampled_from(["name", "elapsed", "metrics.loss", "nmae", "name.__class__", "0", ""]),
    st.sampled_from(["", ":>8", ":.2f", ":{x}", "!r", "!z", ":,", ":%", ":x"]),
)
anything = st.one_of(st.none(), st.booleans(), st.lists(st.integers(), max_size=2), numbers,
                     st.text())


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
    task._start()
    task.metric(loss=0.25, tag="x")
    task._finish(TaskState.FAILED, TaskError("ValueError", "bad"))
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

"""Parsing of the option values users type (durations, sizes, percents, counts, event
lists), and :func:`printable`, which makes user-provided text safe to print."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .text import printable

if TYPE_CHECKING:
    import argparse

__all__ = [
    "DEFAULT_SLOWER",
    "EVENTS",
    "MAX_COUNT",
    "MIN_DURATION",
    "Percent",
    "format_quiet_hours",
    "parse_channels",
    "parse_count",
    "parse_duration",
    "parse_events",
    "parse_factor",
    "parse_limit",
    "parse_percents",
    "parse_quiet_hours",
    "parse_size",
    "parse_timezone",
    "printable",
    "quoted",
    "read_dash_values",
    "safe_repr",
]

#: Every event a task can notify about, in the order they are documented.
EVENTS = (
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
)

_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|d|h|m|s)", re.IGNORECASE)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}


#: The shortest duration any option takes: 1 ms, the smallest unit written. Anything shorter
#: means nothing to a clock read a few times a second, and a repeating one would spin.
MIN_DURATION = 0.001
#: The largest count (``--limit``, ``%remind history N``): SQLite's largest integer.
MAX_COUNT = 2**63 - 1


def safe_repr(value: object) -> str:
    """``repr(value)``; an integer too long for ``repr`` is described by its length."""
    try:
        return repr(value)
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        if isinstance(value, int):
            digits = int(abs(value).bit_length() * 0.30103) + 1
            return f"<an integer of about {digits} digits>"
        return f"<a {type(value).__name__} that cannot be shown>"


def _fail(option: str, value: object, expected: str) -> ValueError:
    return ValueError(f"{option}: {quoted(value)} is not {expected}")


def quoted(value: object) -> str:
    """``value`` as an error quotes it: :func:`safe_repr`, with known secrets and the
    credentials of any URL in it masked."""
    from .secrets import redact
    from .urls import hide_urls

    return redact(hide_urls(safe_repr(value)))


def _float(value: int | float, option: str, expected: str) -> float:
    """``float(value)``; an int too large for a float raises ``ValueError``, not OverflowError."""
    try:
        return float(value)
    except OverflowError:
        raise _fail(option, value, expected) from None


def parse_duration(
    value: object, option: str = "duration", *, minimum: float = MIN_DURATION
) -> float:
    """Return seconds for ``90``, ``"90s"``, ``"10m"``, ``"1h30m"``, ``"2d"`` or ``"250ms"``.

    Raises ``ValueError`` naming ``option`` and the value when it is not a finite duration of
    at least ``minimum`` seconds.
    """
    expected = "a duration such as 90, 90s, 10m, 1h30m or 2d"
    if isinstance(value, bool):
        raise _fail(option, value, expected)
    if isinstance(value, (int, float)):
        seconds = _float(value, option, expected)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            compact = text.replace(" ", "")
            if not compact:
                raise _fail(option, value, expected)
            for match in _DURATION_PART.finditer(compact):
                if match.start() != pos:
                    raise _fail(option, value, expected)
                seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
                pos = match.end()
            if pos != len(compact):
                raise _fail(option, value, expected)
    else:
        raise _fail(option, value, expected)
    if not seconds > 0 or seconds == float("inf"):
        raise _fail(option, value, "a positive, finite duration")
    if seconds < minimum:
        raise ValueError(
            f"{option}: {quoted(value)} is shorter than {minimum:g} s, the shortest it may be"
        )
    return seconds


def parse_count(value: object, option: str, maximum: int = MAX_COUNT) -> int:
    """Return the whole number ``value`` (``20``, ``"20"``) when it is from 0 to ``maximum``.

    Anything else raises ``ValueError`` naming ``option`` and the value.
    """
    expected = f"a whole number from 0 to {maximum}"
    if isinstance(value, str):
        text = value.strip()
        if not text.isdecimal() or len(text) > len(str(maximum)):
            raise _fail(option, value, expected)
        count = int(text)
    elif isinstance(value, int) and not isinstance(value, bool):
        count = value
    else:
        raise _fail(option, value, expected)
    if not 0 <= count <= maximum:
        raise _fail(option, value, expected)
    return count


def parse_size(value: object, option: str = "size") -> int:
    """Return bytes for ``"512MB"``, ``"8GB"``, ``"8GiB"`` or a plain number of bytes."""
    expected = "a size such as 512MB, 8GB or 8GiB"
    if isinstance(value, bool):
        raise _fail(option, value, expected)
    if isinstance(value, (int, float)):
        size = _float(value, option, expected)
    elif isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise _fail(option, value, expected)
        size = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]
    else:
        raise _fail(option, value, expected)
    if not size >= 1 or size == float("inf"):  # below one byte rounds to nothing
        raise _fail(option, value, "a positive size of at least one byte")
    return int(size)


class Percent(float):
    """A share of a limit (``Percent(0.9)`` is ``90%``): what :func:`parse_limit` gives for
    ``"90%"``, told apart from a size in bytes (an ``int``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        share = float(self)
        text = f"{share * 100:g}"
        if _percent_share(text) != share:  # six digits do not read back as this share
            from decimal import Decimal  # (rare: only a share typed with many digits)

            text = str(Decimal(repr(share)).scaleb(2).normalize())
        return f"{text}%"

    def __reduce__(self) -> tuple[type[Percent], tuple[float]]:
        return (Percent, (float(self),))


def _percent_share(text: str) -> float:
    """The share a percent written as ``text`` (digits, maybe an exponent) stands for,
    rounded once: ``"33.3"`` is the float nearest to 0.333, not ``33.3 / 100``."""
    mantissa, _, exponent = text.lower().partition("e")
    return float(f"{mantissa}e{int(exponent or 0) - 2}")


def parse_limit(value: object, option: str = "limit") -> int | Percent:
    """Return bytes for a size (``"30GB"``, as :func:`parse_size`) or a :class:`Percent` for
    ``"90%"`` (of the memory limit that applies: a container's, else the machine's RAM)."""
    if isinstance(value, Percent):
        share = float(value)
    elif isinstance(value, str) and value.strip().endswith("%"):
        text = value.strip()[:-1].strip()
        if not re.fullmatch(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", text):
            raise _fail(option, value, "a size such as 30GB or a percent such as 90%")
        share = _percent_share(text)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return parse_size(value, option)  # its reason: "a positive size of at least one byte"
    else:
        try:
            return parse_size(value, option)
        except ValueError:
            raise _fail(option, value, "a size such as 30GB or a percent such as 90%") from None
    if not 0 < share <= 1:
        raise _fail(option, value, "a percent above 0% and at most 100%")
    return Percent(share)


#: The factor of ``slower`` given without one (``--slower``, ``slower=True``).
DEFAULT_SLOWER = 1.5


def parse_factor(value: object, option: str = "factor") -> float:
    """Return a factor above 1 for ``1.5``, ``"1.5"``, ``"1.5x"`` or ``"150%"``;
    ``True`` is :data:`DEFAULT_SLOWER`."""
    expected = "a factor above 1 such as 1.5 (or 150%)"
    if value is True:
        return DEFAULT_SLOWER
    if isinstance(value, bool):
        raise _fail(option, value, expected)
    if isinstance(value, (int, float)):
        factor = _float(value, option, expected)
    elif isinstance(value, str):
        text = value.strip().lower()
        scale = 1.0
        if text.endswith("%"):
            text, scale = text[:-1], 0.01
        elif text.endswith("x"):
            text = text[:-1]
        text = text.strip()
        if not re.fullmatch(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", text):
            raise _fail(option, value, expected)
        factor = float(text) * scale
    else:
        raise _fail(option, value, expected)
    if not 1 < factor < float("inf"):
        raise _fail(option, value, expected)
    return factor


def _parse_percent(value: object, option: str) -> float:
    expected = "a fraction such as 0.5 or a percent such as 50%"
    if isinstance(value, bool):
        raise _fail(option, value, expected)
    if isinstance(value, (int, float)):
        frac = _float(value, option, expected)
    elif isinstance(value, str):
        text = value.strip()
        try:
            frac = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise _fail(option, value, expected) from None
    else:
        raise _fail(option, value, expected)
    if not 0 < frac <= 1:
        raise _fail(option, value, "a progress mark above 0 and at most 1 (100%)")
    return frac


def parse_percents(value: object, option: str = "progress") -> tuple[float, ...]:
    """Return sorted fractions for ``0.5``, ``"50%"``, ``"25%,50%"`` or a list of those."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: Iterable[object] = [p for p in value.split(",") if p.strip()]
        if not items:
            raise _fail(option, value, "a list of progress marks such as 25%,50%")
    elif isinstance(value, (int, float)):
        items = [value]
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        raise _fail(option, value, "a progress mark or a list of them")
    return tuple(sorted({_parse_percent(item, option) for item in items}))


def _names(value: object, option: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, Iterable):
        out = []
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise ValueError(
                    f"{option}: {quoted(value)} is not a list of names "
                    f"({safe_repr(item)} is not a non-empty text)"
                )
            out.append(item.strip())
        return tuple(out)
    raise _fail(option, value, "a comma-separated string or a list of names")


def parse_events(value: object, option: str = "on") -> tuple[str, ...]:
    """Return the event names in ``value``; ``"none"`` or ``[]`` mean no event at all."""
    names = _names(value, option)
    if names == ("none",) or names == ("",):
        return ()
    for name in names:
        if name not in EVENTS:
            choices = ", ".join(EVENTS)
            shown = quoted(name)
            raise ValueError(f"{option}: {shown} is not an event; choose from {choices} or none")
    return tuple(dict.fromkeys(names))


def parse_channels(value: object, option: str = "channels") -> tuple[str, ...]:
    """Return the channel names in ``value`` (validated later, against the registry)."""
    names = _names(value, option)
    return tuple(dict.fromkeys(names))


_CLOCK_TIME = re.compile(r"(\d{1,2})(?::(\d{2}))?")


def _minute_of_day(text: str, value: object, option: str, *, end: bool) -> int:
    match = _CLOCK_TIME.fullmatch(text.strip())
    if not match:
        raise _fail(option, value, "a range of clock times such as 22:00-07:00")
    hours, minutes = int(match.group(1)), int(match.group(2) or 0)
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not end)):
        raise _fail(option, value, "a range of clock times between 00:00 and 24:00")
    return hours * 60 + minutes


def parse_quiet_hours(value: object, option: str = "quiet_hours") -> tuple[int, int]:
    """Return ``(start, end)`` in minutes after midnight for ``"22:00-07:00"``.

    The range may span midnight (``start > end``); ``"7-9"`` means ``07:00-09:00``, and
    ``24:00`` may end a range. A range that starts where it ends raises ``ValueError``.
    """
    if not isinstance(value, str) or value.count("-") != 1:
        raise _fail(option, value, "a range of clock times such as 22:00-07:00")
    first, second = value.split("-")
    start = _minute_of_day(first, value, option, end=False)
    stop = _minute_of_day(second, value, option, end=True) % (24 * 60)
    if start == stop:
        raise _fail(option, value, "a range of clock times whose start and end differ")
    return start, stop


def format_quiet_hours(start: int, end: int) -> str:
    """``"22:00-07:00"`` for ``(1320, 420)``."""
    return f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"


def parse_timezone(value: object, option: str = "timezone") -> str:
    """Return ``value`` when it names an IANA time zone (``"Europe/Berlin"``)."""
    expected = "an IANA time zone name such as Europe/Berlin or America/New_York"
    if not isinstance(value, str) or not value.strip():
        raise _fail(option, value, expected)
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value.strip())
    except Exception:  # not found, a bad key, a path: all mean "not a zone"
        raise _fail(option, value, expected) from None
    return value.strip()


#: A word that argparse (3.13 and later, and with this on any version) takes for a value,
#: not an option, when the parser has no option that looks like a number: ``-5s``, ``-.5``.
_DASH_VALUE = re.compile(r"-\.?\d")


def read_dash_values(parser: argparse.ArgumentParser) -> None:
    """Have ``parser`` take ``-5s`` or ``-1GB`` after an option for that option's value
    (then reported by what checks it, naming it), not for an unknown option."""
    parser._negative_number_matcher = _DASH_VALUE

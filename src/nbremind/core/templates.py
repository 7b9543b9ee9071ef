"""Title and body templates per event, with named fields only: they cannot run code.

A template is text with ``{field}`` placeholders (``"{name} done in {elapsed}"``). Only the
documented fields exist: no attribute access, no indexing, no positional fields, no nested
fields in a format spec, and format specs limited to the standard ones for text and numbers.
Every value handed to ``format`` is a ``str``, ``int`` or ``float`` made by nbremind, so a
template never reaches a user object's ``__format__``. Templates are checked when the settings
are loaded (:func:`parse_templates`); rendering (:func:`render_for`) never raises: a part that
cannot be rendered keeps its default text.
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
import types
from collections.abc import Mapping, Sequence
from typing import Any

from .notice import Notice, format_duration, format_size, metric_text
from .parse import EVENTS
from .secrets import redact

__all__ = [
    "FIELDS",
    "PARTS",
    "TemplateMap",
    "check_template",
    "fields_of",
    "parse_templates",
    "render",
    "render_for",
]

#: The fields a template may use, besides ``{metrics.NAME}`` (one metric's value).
FIELDS = (
    "name",
    "event",
    "state",
    "elapsed",
    "progress",
    "eta",
    "error",
    "notebook",
    "host",
    "rss",
    "metrics",
    "title",
    "body",
)
#: The parts of a notice a template may replace.
PARTS = ("title", "body")
#: ``{event: {"title": template, "body": template}}`` (either part may be left out).
TemplateMap = Mapping[str, Mapping[str, str]]

_METRIC = "metrics."
_METRIC_NAME = re.compile(r"[^.\[\]{}]+")
# the standard format spec for text and numbers, with widths and precisions kept small
_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?\d{0,3}[,_]?(?:\.\d{1,3})?[bcdeEfFgGnosxX%]?")
_CONVERSIONS = (None, "s", "r", "a")
_TEXT_CHARS = 200
#: Ints handed to ``format`` as numbers: 64 bits; longer ones are text.
_BIG_INT = 2**63 - 1
_SMALL_INT = -_BIG_INT


class _Formatter(string.Formatter):
    """Looks fields up by their whole name in a flat mapping; nothing else is reachable."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return kwargs.get(field_name, ""), field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        try:
            return format(value, format_spec)
        except (ValueError, TypeError):
            if self.strict:
                raise
            return str(value)  # a metric that is text where a number was expected


_STRICT = _Formatter(strict=True)
_LENIENT = _Formatter(strict=False)


def _fail(where: str, text: object, problem: str) -> ValueError:
    return ValueError(f"{where}: {problem} in template {text!r}")


def _check_field(field: str, where: str, text: str) -> None:
    if field in FIELDS:
        return
    if field.startswith(_METRIC) and _METRIC_NAME.fullmatch(field[len(_METRIC) :]):
        return
    if field == "" or field.isdigit():
        problem = f"positional field {{{field}}}; use a named field such as {{name}}"
    else:
        problem = (
            f"unknown field {{{field}}} (fields: {', '.join(FIELDS)}, or metrics.NAME for one "
            "metric)"
        )
    raise _fail(where, text, problem)


#: Values of the right types for checking a template when it is loaded.
_SAMPLE: dict[str, object] = {
    **dict.fromkeys(FIELDS, "text"),
    "progress": "50%",
}


def check_template(text: object, where: str = "template") -> str:
    """Return ``text`` if it is a valid template; else raise ``ValueError`` naming ``where``
    (e.g. ``templates.success.title``), the offending field and the template."""
    if not isinstance(text, str):
        raise ValueError(f"{where}: {text!r} is not a text")
    try:
        parsed = list(_STRICT.parse(text))
    except ValueError as exc:
        raise _fail(where, text, str(exc).rstrip(".")) from None
    sample = dict(_SAMPLE)
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        _check_field(field, where, text)
        if field.startswith(_METRIC):
            sample[field] = 0.5  # metrics are usually numbers
        if conversion not in _CONVERSIONS:
            raise _fail(where, text, f"conversion !{conversion} in {{{field}}}")
        if spec and ("{" in spec or not _SPEC.fullmatch(spec)):
            raise _fail(where, text, f"format spec {spec!r} in {{{field}}}")
    try:
        _STRICT.vformat(text, (), sample)
    except (ValueError, TypeError) as exc:
        raise _fail(where, text, str(exc)) from None
    return text


def parse_templates(value: object, where: str = "templates") -> TemplateMap:
    """Validate ``{event: {"title": ..., "body": ...}}``; ``None`` means no templates.

    Each error names the template (``templates.success.title``) and what is wrong with it.
    """
    if value is None:
        return types.MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: {value!r} is not a table of event -> {{title, body}}")
    out: dict[str, Mapping[str, str]] = {}
    for event, parts in value.items():
        if event not in EVENTS:
            raise ValueError(
                f"{where}.{event}: {event!r} is not an event; choose from {', '.join(EVENTS)}"
            )
        if not isinstance(parts, Mapping):
            raise ValueError(f"{where}.{event}: {parts!r} is not a table with title and body")
        checked: dict[str, str] = {}
        for part, text in parts.items():
            if part not in PARTS:
                raise ValueError(f"{where}.{event}.{part}: {part!r} is not one of title, body")
            checked[part] = check_template(text, f"{where}.{event}.{part}")
        out[event] = types.MappingProxyType(checked)
    return types.MappingProxyType(out)


def _percent(fraction: float) -> str:
    pct = fraction * 100
    if not math.isfinite(pct):
        return "?%"
    return f"{pct:.0f}%" if abs(pct - round(pct)) < 0.05 else f"{pct:.1f}%"


def _plain(value: object) -> str | int | float:
    """A metric value as something ``format`` handles without user code: int, float or str
    (with known secrets masked before it is cut, so no part of one is left)."""
    if type(value) is float:
        return value
    if type(value) is int:
        # longer than 64 bits: text (format() of a 5,000-digit int raises)
        return value if _SMALL_INT <= value <= _BIG_INT else metric_text(value)
    try:
        text = redact(value)
    except Exception:
        return "?"
    return text if len(text) <= _TEXT_CHARS else text[:_TEXT_CHARS] + "…"


def fields_of(notice: Notice) -> dict[str, object]:
    """Every field a template can use for ``notice``, by name (missing values are ``""``)."""
    t = notice.task
    metrics = {f"{_METRIC}{name}": _plain(value) for name, value in t.metrics.items()}
    error = ""
    if t.error is not None:
        error = f"{t.error.type}: {t.error.message}" if t.error.message else t.error.type
    return {
        "name": t.name,
        "event": notice.event,
        "state": t.state.value,
        "elapsed": format_duration(t.elapsed),
        "progress": "" if t.progress is None else _percent(t.progress),
        "eta": "" if t.eta is None else format_duration(t.eta),
        "error": error,
        "notebook": t.source,
        "host": t.host,
        "rss": "" if not t.rss else format_size(t.rss),
        "metrics": ", ".join(
            f"{key[len(_METRIC) :]}={value:.4g}"
            if isinstance(value, float)
            else f"{key[len(_METRIC) :]}={value}"
            for key, value in metrics.items()  # each a float, a short int or a cut text
        ),
        "title": notice.title,
        "body": notice.body,
        **metrics,
    }


def render(template: str, values: Mapping[str, object]) -> str:
    """Fill ``template`` (checked by :func:`check_template`) with ``values``."""
    return _LENIENT.vformat(template, (), values)


def render_for(notice: Notice, templates: TemplateMap | None) -> Notice:
    """``notice`` with the title and body of ``templates[notice.event]`` applied.

    Used for the settings' ``templates`` and for a named channel's own templates (call it
    per channel). Never raises: a part that fails to render keeps its text.
    """
    chosen = templates.get(notice.event) if templates else None
    if not chosen:
        return notice
    values: dict[str, object] | None = None
    changes: dict[str, Any] = {}
    for part in PARTS:
        text = chosen.get(part)
        if text is None:
            continue
        if values is None:
            values = fields_of(notice)
        try:
            changes[part] = render(text, values)
        except Exception:  # checked at load; a surprise here keeps the default text
            continue
    return dataclasses.replace(notice, **changes) if changes else notice

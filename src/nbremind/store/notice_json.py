"""Notices as JSON for the outbox: a round trip that keeps the task snapshot, with secrets
(known values, a URL's credentials and tokens) masked before anything is stored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, cast

from ..core.notice import Notice, json_value
from ..core.secrets import any_secrets, redact
from ..core.task import MAX_COUNT, TaskError, TaskSnapshot, TaskState
from ..core.urls import display_name

__all__ = ["notice_from_dict", "notice_to_dict", "stored_channel_name"]

_SNAPSHOT_FIELDS = tuple(
    name for name in TaskSnapshot.FIELDS if name not in ("state", "error", "metrics", "notes")
)
_NOTICE_FIELDS = tuple(f.name for f in fields(Notice) if f.name not in ("task", "channels"))
_INT64 = MAX_COUNT


def notice_to_dict(notice: Notice) -> dict[str, Any]:
    """``notice`` (with its task snapshot) as plain JSON values, secrets redacted.

    Strict JSON: a metric that is not finite is ``None``, one JSON cannot carry (an object,
    an int beyond 64 bits) is text (see :func:`nbremind.core.notice.json_value`); never raises.
    """
    task = notice.task
    snap: dict[str, Any] = {}
    for name in _SNAPSHOT_FIELDS:
        value = getattr(task, name)
        kind = type(value)
        # the values a snapshot nearly always holds, kept as they are; the rest converted
        plain = value is None or kind is str or (kind is int and -_INT64 <= value <= _INT64)
        snap[name] = value if plain else json_value(value)
    snap["state"] = task.state.value
    snap["error"] = (
        None if task.error is None else {"type": task.error.type, "message": task.error.message}
    )
    snap["metrics"] = json_value(dict(task.metrics))
    snap["notes"] = json_value(list(task.notes))
    out: dict[str, Any] = {name: getattr(notice, name) for name in _NOTICE_FIELDS}
    out = cast(dict[str, Any], json_value(out, 1))
    out["task"] = snap
    if notice.channels is not None:
        out["channels"] = [stored_channel_name(name) for name in notice.channels]
    if not any_secrets():  # nothing to mask (the common case): no second walk
        return out
    return cast(dict[str, Any], _redacted(out))


def notice_from_dict(data: Mapping[str, Any]) -> Notice:
    """The notice :func:`notice_to_dict` made; a broken record raises ``ValueError``."""
    try:
        raw = dict(data["task"])
        raw["state"] = TaskState(raw["state"])
        error = raw.get("error")
        raw["error"] = (
            None if error is None else TaskError(str(error["type"]), str(error["message"]))
        )
        snap_names = set(TaskSnapshot.FIELDS)
        snap: dict[str, Any] = {
            k: _frozen(v) if k != "metrics" else dict(v) for k, v in raw.items() if k in snap_names
        }
        task = TaskSnapshot(**snap)
        notice_names = {f.name for f in fields(Notice)}
        values = {k: _frozen(v) for k, v in data.items() if k in notice_names and k != "task"}
        return Notice(task=task, **values)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"outbox record: cannot rebuild the notice: {exc!r}") from exc


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {redact(k): _redacted(v) for k, v in value.items()}
    return value


def stored_channel_name(name: str) -> str:
    """``name`` as the outbox stores it: a URL's credentials and tokens, and every known
    secret, masked (as in delivery records)."""
    try:
        return display_name(name)
    except Exception:  # a name no channel understands: mask the known secrets at least
        return redact(name)


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value

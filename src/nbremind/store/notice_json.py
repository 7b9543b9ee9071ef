"""Notices as JSON for the outbox: a round trip that keeps the task snapshot, with secrets
(known values, a URL's credentials and tokens) masked before anything is stored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, cast

from ..core.notice import Notice, json_value
from ..core.secrets import redact
from ..core.task import TaskError, TaskSnapshot, TaskState

__all__ = ["notice_from_dict", "notice_to_dict", "stored_channel_name"]


def notice_to_dict(notice: Notice) -> dict[str, Any]:
    """``notice`` (with its task snapshot) as plain JSON values, secrets redacted.

    Strict JSON: a metric that is not finite is ``None``, one JSON cannot carry (an object,
    an int beyond 64 bits) is text (see :func:`nbremind.core.notice.json_value`); never raises.
    """
    task = notice.task
    snap: dict[str, Any] = {f.name: getattr(task, f.name) for f in fields(task)}
    snap["state"] = task.state.value
    snap["error"] = (
        None if task.error is None else {"type": task.error.type, "message": task.error.message}
    )
    snap["metrics"] = dict(task.metrics)
    snap["notes"] = list(task.notes)
    out: dict[str, Any] = {f.name: getattr(notice, f.name) for f in fields(notice)}
    out["task"] = snap
    if notice.channels is not None:
        out["channels"] = [stored_channel_name(name) for name in notice.channels]
    return cast(dict[str, Any], _redacted(json_value(out)))


def notice_from_dict(data: Mapping[str, Any]) -> Notice:
    """The notice :func:`notice_to_dict` made; a broken record raises ``ValueError``."""
    try:
        raw = dict(data["task"])
        raw["state"] = TaskState(raw["state"])
        error = raw.get("error")
        raw["error"] = (
            None if error is None else TaskError(str(error["type"]), str(error["message"]))
        )
        snap_names = {f.name for f in fields(TaskSnapshot)}
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
        from ..core.urls import display_name

        return display_name(name)
    except Exception:  # a name no channel understands: mask the known secrets at least
        return redact(name)


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value

"""The settings of a session: frozen, validated when made, replaced whole by ``configure()``."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ._parse import parse_channels, parse_duration, parse_events

__all__ = ["AUTO", "Config"]

#: ``configure(channels="auto")`` (or ``None``): let nbremind choose the channels.
AUTO = "auto"


@dataclass(frozen=True)
class Config:
    """Process-wide defaults; each task may override ``channels``, ``on`` and ``min_duration``."""

    #: Channels a notice goes to when its task names none; empty: chosen when each notice is
    #: sent (desktop where it can show toasts, else the browser when one is connected).
    channels: tuple[str, ...] = ()
    #: Events notified when a task sets no ``on`` (``None``: the documented defaults).
    on: tuple[str, ...] | None = None
    #: End events of tasks shorter than this are not notified.
    min_duration: float | None = None
    #: Seconds one channel may take to deliver one notice.
    send_timeout: float = 10.0
    #: Seconds between evaluations of time-based thresholds.
    tick_interval: float = 0.25
    #: Whether notices are held back (tasks are still followed).
    muted: bool = False
    #: Seconds the interpreter waits at exit for notices still being delivered.
    exit_timeout: float = 5.0
    #: Finished tasks the live panel keeps listed (the most recent ones).
    panel_keep: int = 50

    def updated(self, source: str = "configure()", **values: Any) -> Config:
        """A copy with ``values`` validated and applied; an unknown key raises ``ValueError``."""
        known = {f.name for f in fields(self)}
        parsed: dict[str, Any] = {}
        for key, value in values.items():
            where = f"{source}: {key}"
            if key not in known:
                raise ValueError(
                    f"{source}: unknown setting {key!r}; known settings: {', '.join(sorted(known))}"
                )
            if key == "channels":
                if value is None or value == AUTO:
                    parsed[key] = ()
                else:
                    parsed[key] = parse_channels(value, where)
                    _check_channel_names(parsed[key], where)
            elif key == "on":
                parsed[key] = None if value is None else parse_events(value, where)
            elif key in ("min_duration",):
                parsed[key] = None if value is None else parse_duration(value, where)
            elif key in ("send_timeout", "tick_interval", "exit_timeout"):
                parsed[key] = parse_duration(value, where)
            elif key == "muted":
                if not isinstance(value, bool):
                    raise ValueError(f"{where}: {value!r} is not True or False")
                parsed[key] = value
            elif key == "panel_keep":
                parsed[key] = _count(value, where)
        return replace(self, **parsed)

    def as_dict(self) -> dict[str, Any]:
        """Every setting and its value."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _count(value: object, where: str) -> int:
    """A whole number >= 0 (``50``, ``"50"``); anything else raises ``ValueError``."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: {value!r} is not a whole number >= 0")
    return value


def _check_channel_names(names: tuple[str, ...], where: str) -> None:
    from .channels import CHANNELS

    for name in names:
        if name not in CHANNELS:
            raise ValueError(
                f"{where}: {name!r} is not a channel; choose from {', '.join(sorted(CHANNELS))}"
            )

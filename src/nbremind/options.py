"""The options a task takes, parsed and validated once, frozen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._parse import (
    parse_channels,
    parse_duration,
    parse_events,
    parse_percents,
    parse_size,
)

__all__ = ["DEFAULT_ON", "TaskOptions", "check_total", "parse_call_options"]

#: Events notified when a task does not say otherwise (thresholds it sets are added).
DEFAULT_ON = ("success", "failure", "cancel", "timeout")


@dataclass(frozen=True)
class TaskOptions:
    """Thresholds and delivery choices of one task (see ``remind()`` for their meaning)."""

    after: float | None = None
    every: float | None = None
    progress: tuple[float, ...] = ()
    mem: int | None = None
    timeout: float | None = None
    interrupt: bool = False
    on: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    min_duration: float | None = None
    when: Callable[[Any], object] | None = None
    quiet: bool = False

    @classmethod
    def parse(
        cls,
        *,
        after: object = None,
        every: object = None,
        progress: object = None,
        mem: object = None,
        timeout: object = None,
        interrupt: bool = False,
        on: object = None,
        channels: object = None,
        min_duration: object = None,
        when: Callable[[Any], object] | None = None,
        quiet: bool = False,
        source: str = "",
    ) -> TaskOptions:
        """Validate raw values; a bad one raises ``ValueError`` naming the option and value."""
        p = f"{source}" if source else ""

        def opt(name: str) -> str:
            return f"{p}{name}"

        if when is not None and not callable(when):
            raise ValueError(f"{opt('when')}: {when!r} is not callable")
        if interrupt and timeout is None:
            raise ValueError(f"{opt('interrupt')}: needs a timeout to interrupt at")
        return cls(
            after=None if after is None else parse_duration(after, opt("after")),
            every=None if every is None else parse_duration(every, opt("every")),
            progress=parse_percents(progress, opt("progress")),
            mem=None if mem is None else parse_size(mem, opt("mem")),
            timeout=None if timeout is None else parse_duration(timeout, opt("timeout")),
            interrupt=bool(interrupt),
            on=None if on is None else parse_events(on, opt("on")),
            channels=None if channels is None else parse_channels(channels, opt("channels")),
            min_duration=(
                None if min_duration is None else parse_duration(min_duration, opt("min_duration"))
            ),
            when=when,
            quiet=bool(quiet),
        )

    def events(self) -> frozenset[str]:
        """The events this task notifies: ``on`` if given, else the defaults plus thresholds."""
        if self.on is not None:
            return frozenset(self.on)
        events = set(DEFAULT_ON)
        if self.after is not None or self.every is not None:
            events.add("after")
        if self.progress:
            events.add("progress")
        if self.mem is not None:
            events.add("memory")
        if self.when is not None:
            events.add("condition")
        return frozenset(events)


def parse_call_options(source: str, session: object = None, **raw: Any) -> TaskOptions:
    """``remind()``'s and ``track()``'s keyword options, parsed, with their channel names
    checked against the named channels of ``session``'s settings; errors start ``source``."""
    options = TaskOptions.parse(**raw, source=f"{source}: ")
    if options.channels:
        from .config import _check_channel_names

        defs = getattr(getattr(session, "config", None), "channel_defs", None)
        _check_channel_names(options.channels, f"{source}: channels", defs)
    return options


def check_total(total: object, source: str) -> None:
    """Raise ``ValueError`` unless ``total`` is ``None`` or a non-negative integer."""
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise ValueError(f"{source}: total {total!r} is not a non-negative integer")

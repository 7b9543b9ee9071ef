"""The settings of a session: frozen, validated when made, replaced whole by ``configure()``."""

from __future__ import annotations

import os
import re
import types
from collections.abc import Mapping
from typing import Any

from .channel_names import check_channel_names
from .frozen import Frozen, set_field
from .options import OPTIONS
from .parse import Percent, parse_channels, parse_duration, parse_events

__all__ = [
    "AUTO",
    "DEFAULT",
    "TASK_DEFAULTS",
    "WHEN_WATCHING",
    "Config",
    "check_channel_names",
    "format_duration_setting",
    "format_setting",
]

#: ``configure(channels="auto")`` (or ``None``): let nbremind choose the channels.
AUTO = "auto"
#: ``configure(on="default")`` (or ``None``): the events each task notifies by default.
DEFAULT = "default"
#: How a setting that is not set is written (``min_duration``, ``rate_limit``, ``data_dir``).
NONE = "none"
#: The values of ``when_watching``, the default first.
WHEN_WATCHING = ("quiet", "notify")
#: The settings that are defaults of the task options of the same names.
TASK_DEFAULTS = ("stall", "slower", "mem_limit", "gpu_mem")
_OPTION_SPECS = {spec.name: spec for spec in OPTIONS if spec.name in TASK_DEFAULTS}
#: The empty mapping ``templates`` and ``channel_defs`` start as (read-only: one for all).
_EMPTY: Mapping[str, Any] = types.MappingProxyType({})


class Config(Frozen):
    """Process-wide defaults; each task may override ``channels``, ``on`` and ``min_duration``."""

    #: Channels a notice goes to when its task names none; empty: chosen when each notice is
    #: sent (desktop where it can show toasts, else the browser when one is connected).
    channels: tuple[str, ...]
    #: Events notified when a task sets no ``on`` (``None``: the documented defaults).
    on: tuple[str, ...] | None
    #: End events of tasks shorter than this are not notified.
    min_duration: float | None
    #: Seconds one channel may take to deliver one notice.
    send_timeout: float
    #: Seconds between evaluations of time-based thresholds.
    tick_interval: float
    #: Whether notices are held back (tasks are still followed).
    muted: bool
    #: Seconds the interpreter waits at exit for notices still being delivered.
    exit_timeout: float
    #: Finished tasks the live panel keeps listed (the most recent ones).
    panel_keep: int
    #: What a notebook page does with a browser notice while its tab is visible and focused:
    #: ``"quiet"`` (its status line shows it already: no notification) or ``"notify"``.
    when_watching: str
    #: Daily quiet hours (``"22:00-07:00"``): notices are held, then sent as one digest.
    quiet_hours: str | None
    #: Events that still notify during quiet hours (``("failure",)``).
    quiet_allow: tuple[str, ...]
    #: IANA time zone quiet hours are read in (``None``: the local zone).
    timezone: str | None
    #: Minimum seconds between two repeating notices (after, memory, progress) of one task.
    rate_limit: float | None
    #: Title and body templates per event: ``{"success": {"title": "...", "body": "..."}}``.
    templates: Mapping[str, Mapping[str, str]]
    #: Named channels: ``{name: {"url", "on", "templates", "headers", "secret", "to",
    #: "from"}}`` (see ``nbremind.core.channel_defs``); their names may be used in ``channels``.
    channel_defs: Mapping[str, Mapping[str, Any]]
    #: Tries per channel and notice (1: no retry) for failures that may pass.
    retry_attempts: int
    #: Seconds after the first try past which a channel's delivery is not retried.
    retry_max_time: float
    #: Whether a Jupyter kernel starts the kernel-death watchdog with its first task.
    watchdog: bool
    #: Whether notices are written to the durable outbox (a SQLite file) as they are delivered.
    outbox: bool
    #: Seconds after which a notice an ended process left undelivered is dropped (recorded).
    outbox_max_age: float
    #: Folder of the outbox file (``None``: ``$NBREMIND_DATA_DIR``, else the platform
    #: user-data folder).
    data_dir: str | None
    #: Seconds finished runs stay in the run history (``0``: history off). Default 90 days.
    history_keep: float
    #: A nested task that succeeded in less than this many seconds has no history row of its
    #: own: it is counted in its parent's (``0``: every task gets its row).
    history_min: float
    #: Batch mode: one notice when the notebook cells queued together (Run All) have run,
    #: if they took longer than this many seconds (``0``: always); ``None``: off.
    batch: float | None
    #: Seconds a task may wait for ``input()`` / ``getpass()`` before the ``input`` notice
    #: (``0``: never).
    input_wait: float
    #: Whether desktop toasts play the platform's notification sound: ``True``, ``False``,
    #: or ``"failure"`` (only failure and other urgent notices).
    sound: bool | str
    #: Defaults of the task options of the same names for tasks started in no other task
    #: (a cell, a block, a command, a loop of a script) that do not set them; ``None``: off.
    stall: float | None
    slower: float | None
    mem_limit: int | Percent | None
    gpu_mem: int | Percent | None

    def __init__(
        self,
        channels: tuple[str, ...] = (),
        on: tuple[str, ...] | None = None,
        min_duration: float | None = None,
        send_timeout: float = 10.0,
        tick_interval: float = 0.25,
        muted: bool = False,
        exit_timeout: float = 5.0,
        panel_keep: int = 50,
        when_watching: str = "quiet",
        quiet_hours: str | None = None,
        quiet_allow: tuple[str, ...] = (),
        timezone: str | None = None,
        rate_limit: float | None = None,
        templates: Mapping[str, Mapping[str, str]] = _EMPTY,
        channel_defs: Mapping[str, Mapping[str, Any]] = _EMPTY,
        retry_attempts: int = 4,
        retry_max_time: float = 60.0,
        watchdog: bool = True,
        outbox: bool = True,
        outbox_max_age: float = 86400.0,
        data_dir: str | None = None,
        history_keep: float = 90 * 86400.0,
        history_min: float = 1.0,
        batch: float | None = None,
        input_wait: float = 10.0,
        sound: bool | str = False,
        stall: float | None = None,
        slower: float | None = None,
        mem_limit: int | Percent | None = None,
        gpu_mem: int | Percent | None = None,
    ) -> None:
        set_field(self, "channels", channels)
        set_field(self, "on", on)
        set_field(self, "min_duration", min_duration)
        set_field(self, "send_timeout", send_timeout)
        set_field(self, "tick_interval", tick_interval)
        set_field(self, "muted", muted)
        set_field(self, "exit_timeout", exit_timeout)
        set_field(self, "panel_keep", panel_keep)
        set_field(self, "when_watching", when_watching)
        set_field(self, "quiet_hours", quiet_hours)
        set_field(self, "quiet_allow", quiet_allow)
        set_field(self, "timezone", timezone)
        set_field(self, "rate_limit", rate_limit)
        set_field(self, "templates", templates)
        set_field(self, "channel_defs", channel_defs)
        set_field(self, "retry_attempts", retry_attempts)
        set_field(self, "retry_max_time", retry_max_time)
        set_field(self, "watchdog", watchdog)
        set_field(self, "outbox", outbox)
        set_field(self, "outbox_max_age", outbox_max_age)
        set_field(self, "data_dir", data_dir)
        set_field(self, "history_keep", history_keep)
        set_field(self, "history_min", history_min)
        set_field(self, "batch", batch)
        set_field(self, "input_wait", input_wait)
        set_field(self, "sound", sound)
        set_field(self, "stall", stall)
        set_field(self, "slower", slower)
        set_field(self, "mem_limit", mem_limit)
        set_field(self, "gpu_mem", gpu_mem)

    def updated(self, source: str = "configure()", **values: Any) -> Config:
        """A copy with ``values`` validated and applied; a bad key or value raises
        ``ValueError``, whose message has every known secret and the secrets of every URL in
        it masked (:func:`nbremind.core.secrets.redact`, ``redact_url``)."""
        try:
            return self._updated(source, values)
        except ValueError as exc:
            from .secrets import redact
            from .urls import hide_urls

            message = redact(hide_urls(str(exc)))
            if message == str(exc):
                raise
            raise ValueError(message) from None

    def _updated(self, source: str, values: dict[str, Any]) -> Config:
        known = set(self.FIELDS)
        parsed: dict[str, Any] = {}
        # channels last: they are checked against the named channels given with them
        for key in sorted(values, key=lambda name: name == "channels"):
            value = values[key]
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
                    check_channel_names(
                        parsed[key], where, parsed.get("channel_defs", self.channel_defs)
                    )
            elif key == "on":
                unset = value is None or value == DEFAULT
                parsed[key] = None if unset else parse_events(value, where)
            elif key in ("min_duration",):
                parsed[key] = None if _unset(value) else parse_duration(value, where)
            elif key in ("send_timeout", "tick_interval", "exit_timeout"):
                parsed[key] = parse_duration(value, where)
            elif key in ("muted", "watchdog"):
                if not isinstance(value, bool):
                    raise ValueError(f"{where}: {_shown(value)} is not True or False")
                parsed[key] = value
            elif key == "panel_keep":
                parsed[key] = _count(value, where)
            elif key == "when_watching":
                parsed[key] = _when_watching(value, where)
            elif key in ("channel_defs", "retry_attempts", "retry_max_time"):
                parsed[key] = _channel_setting(key, value, where)
            elif key in ("quiet_hours", "quiet_allow", "timezone", "rate_limit", "templates"):
                parsed[key] = _rule_setting(key, value, where)
            elif key in ("outbox", "outbox_max_age", "data_dir"):
                parsed[key] = _outbox_setting(key, value, where)
            elif key == "history_keep":
                parsed[key] = _history_keep(value, where)
            elif key == "history_min":
                parsed[key] = _history_min(value, where)
            elif key == "batch":
                parsed[key] = None if _unset(value) else _duration_or_zero(value, where)
            elif key == "input_wait":
                parsed[key] = 0.0 if _unset(value) else _duration_or_zero(value, where)
            elif key == "sound":
                parsed[key] = _sound(value, where)
            elif key in TASK_DEFAULTS:
                spec = _OPTION_SPECS[key]
                parsed[key] = None if _unset(value) or value is False else spec.read(value, where)
        return self.replace(**parsed)


def _shown(value: object) -> str:
    """``value`` as an error message may quote it (secrets and URL passwords masked)."""
    from .urls import shown

    return shown(value)


def _unset(value: object) -> bool:
    """Whether ``value`` means "not set": ``None``, ``"none"`` or ``"off"``."""
    return value is None or (isinstance(value, str) and value.strip() in (NONE, "off"))


def _count(value: object, where: str) -> int:
    """A whole number >= 0 (``50``, ``"50"``); anything else raises ``ValueError``."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: {_shown(value)} is not a whole number >= 0")
    return value


def _when_watching(value: object, where: str) -> str:
    """One of :data:`WHEN_WATCHING` (any case, spaces around ignored)."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if text not in WHEN_WATCHING:
        choices = " or ".join(repr(choice) for choice in WHEN_WATCHING)
        raise ValueError(f"{where}: {_shown(value)} is not {choices}")
    return text


def _sound(value: object, where: str) -> bool | str:
    """``True``, ``False`` or ``"failure"`` (also as text: ``true``, ``off``, ...)."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text == "failure":
        return text
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{where}: {_shown(value)} is not True, False or 'failure'")


def _rule_setting(key: str, value: Any, where: str) -> Any:
    """Validate a setting of the rule chain (quiet hours, rate limit, templates)."""
    from .parse import format_quiet_hours, parse_quiet_hours, parse_timezone

    if key == "quiet_allow":
        return () if value is None else parse_events(value, where)
    if key == "templates":
        from .templates import parse_templates

        return parse_templates(value, where)
    if value is None or value in ("", "off", NONE):
        return None
    if key == "quiet_hours":
        return format_quiet_hours(*parse_quiet_hours(value, where))
    if key == "timezone":
        return None if value == "local" else parse_timezone(value, where)
    return parse_duration(value, where)  # rate_limit


def _channel_setting(key: str, value: Any, where: str) -> Any:
    """Validate a setting of remote delivery (named channels, retries)."""
    from .channel_defs import parse_attempts, parse_channel_defs

    if key == "channel_defs":
        return parse_channel_defs(value, where)
    if key == "retry_attempts":
        return parse_attempts(value, where)
    return parse_duration(value, where)  # retry_max_time


def _outbox_setting(key: str, value: Any, where: str) -> Any:
    """Validate a setting of the durable outbox."""
    if key == "outbox":
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {_shown(value)} is not True or False")
        return value
    if key == "outbox_max_age":
        age = parse_duration(value, where)
        if age <= 0:
            raise ValueError(f"{where}: {_shown(value)} must be longer than 0 s")
        return age
    if value is None or value in ("", NONE):
        return None  # data_dir: the default folder
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"{where}: {_shown(value)} is not a folder path")
    return os.fspath(value)


def _history_keep(value: Any, where: str) -> float:
    """How long finished runs are kept: a duration (``"90d"``), or ``"off"`` / ``0`` for no
    history."""
    if value is None or value is False or value in ("off", "none", "", 0, "0"):
        return 0.0
    keep = parse_duration(value, where)
    if keep <= 0:
        raise ValueError(f"{where}: {_shown(value)} must be longer than 0 s, or 'off'")
    return keep


#: A duration of zero as text: ``0``, ``0s``, ``0.0``, ``0 ms``.
_ZERO = r"(0+\.?0*|\.0+)\s*(ms|s|m|h|d)?"


def _history_min(value: Any, where: str) -> float:
    """The shortest nested run that gets its own history row: a duration (``"1s"``,
    ``"500ms"``), ``0`` (or ``"off"``) for every run."""
    if value is None or value is False or value in ("off", "none", ""):
        return 0.0
    try:
        return parse_duration(value, where)
    except ValueError:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if (number and value == 0) or (
            isinstance(value, str) and re.fullmatch(_ZERO, value.strip().lower())
        ):
            return 0.0
        raise ValueError(
            f"{where}: {_shown(value)} is not a duration such as 1s or 500ms, or 0"
        ) from None


def _duration_or_zero(value: Any, where: str) -> float:
    """A duration (``"60s"``, ``"500ms"``) or zero (``0``, ``"0s"``)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (number and value == 0) or (
        isinstance(value, str) and re.fullmatch(_ZERO, value.strip().lower())
    ):
        return 0.0
    try:
        return parse_duration(value, where)
    except ValueError:
        raise ValueError(
            f"{where}: {_shown(value)} is not a duration such as 60s or 500ms, or 0"
        ) from None


# -- settings as a user writes them --------------------------------------------------------------
_DURATIONS = frozenset(
    {
        "min_duration",
        "send_timeout",
        "tick_interval",
        "exit_timeout",
        "rate_limit",
        "retry_max_time",
        "outbox_max_age",
        "history_keep",
        "history_min",
        "batch",
        "input_wait",
        "stall",
    }
)
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration_setting(seconds: float) -> str:
    """``seconds`` as a duration setting is written (``90d``, ``1h30m``, ``10s``, ``250ms``);
    read back (:func:`nbremind.core.parse.parse_duration`), the text gives ``seconds`` exactly."""
    text = f"{seconds!r}s"
    if seconds >= 1 and seconds == int(seconds):
        rest, parts = int(seconds), []
        for unit, size in _UNITS:
            count, rest = divmod(rest, size)
            if count:
                parts.append(f"{count}{unit}")
        text = "".join(parts)
    elif 0 < seconds < 1 and seconds * 1000 == round(seconds * 1000):
        text = f"{round(seconds * 1000)}ms"
    try:
        if parse_duration(text, minimum=0) == seconds:
            return text
    except ValueError:
        pass
    return f"{seconds!r}s"


def format_setting(key: str, value: Any) -> str:
    """The value of setting ``key`` as a user writes it (``90d``, ``10s``, ``none``, ``auto``,
    ``failure,timeout``; tables as JSON): given back to :meth:`Config.updated` (or
    ``configure()``, a file, an ``NBREMIND_*`` variable), the text gives the same value.
    Secrets are shown as ``***``."""
    if key == "channels":
        return _names_text(value) if value else AUTO
    if key == "on":
        return DEFAULT if value is None else (_names_text(value) or NONE)
    if key == "quiet_allow":
        return _names_text(value) or NONE
    if key == "history_keep" and not value:
        return "off"
    if key == "history_min" and not value:
        return "0"
    if key == "batch" and value is not None and not value:
        return "0"
    if key == "input_wait" and not value:
        return "off"
    if key == "quiet_hours":
        return _masked_text(value) if value else "off"
    if key == "timezone":
        return _masked_text(value) if value else "local"
    if value is None:
        return NONE
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, Percent):  # mem_limit, gpu_mem
        return repr(value)
    if key in _DURATIONS:
        return format_duration_setting(float(value))
    if isinstance(value, Mapping):
        import json  # not at import: only %remind config shows tables

        return json.dumps(_plain(value), ensure_ascii=False, default=str)
    return _masked_text(value)


def _masked_text(value: object) -> str:
    from .secrets import redact

    return redact(value)


def _names_text(names: tuple[str, ...]) -> str:
    """``desktop,team``; a JSON list when a name holds a comma (a URL)."""
    shown = [_masked_text(name) for name in names]
    if any("," in name for name in shown):
        import json

        return json.dumps(shown, ensure_ascii=False)
    return ",".join(shown)


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data, with every secret masked."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, str):
        return _masked_text(value)
    return value

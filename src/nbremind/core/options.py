"""The options a task takes, parsed and validated once, frozen.

:data:`TASK_OPTIONS` is the one table of a task's options: ``remind()`` and ``track()``
keywords, ``%%remind`` and ``nbremind run`` flags and the keywords pandas calls take for
their task are all read through it. :data:`OPTIONS` are those of them that take a value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .frozen import Frozen, set_field
from .parse import (
    DEFAULT_SLOWER,
    Percent,
    parse_channels,
    parse_duration,
    parse_events,
    parse_factor,
    parse_limit,
    parse_percents,
    parse_size,
    safe_repr,
)

if TYPE_CHECKING:
    import argparse

__all__ = [
    "CALL_OPTIONS",
    "COMMAND_OPTIONS",
    "DEFAULT_ON",
    "MAGIC_OPTIONS",
    "MIN_TASK_DURATION",
    "NO_OPTIONS",
    "OPTIONS",
    "TASK_OPTIONS",
    "OptionSpec",
    "TaskOptions",
    "add_flags",
    "any_set",
    "call_options",
    "check_total",
    "flag_values",
    "parse_call_options",
    "usage",
    "with_defaults",
]

#: Events notified when a task does not say otherwise (thresholds it sets are added).
DEFAULT_ON = ("success", "failure", "cancel", "timeout")

#: The shortest duration a task's option may be. Thresholds are checked on each tick of the
#: loop (every 0.25 s by default), so a shorter one cannot be followed any closer; 0.1 s
#: still takes ``"250ms"`` and a faster tick, and turns ``every="1e-21s"`` into an error.
MIN_TASK_DURATION = 0.1


def _task_duration(value: object, option: str) -> float:
    return parse_duration(value, option, minimum=MIN_TASK_DURATION)


class OptionSpec(Frozen):
    """One option of a task: its keyword (and ``TaskOptions`` field), its flag on a command
    line, how its value is parsed (``parse(value, option)``), and which front ends take it."""

    name: str
    #: Its flag on a command line (``""``: none, a keyword only).
    flag: str
    #: What its value is called in a usage line (``""``: it takes none, a switch).
    metavar: str
    #: How its value is read; ``None`` for a switch or ``when``'s predicate (checked by
    #: :meth:`TaskOptions.parse`).
    parse: Callable[[object, str], Any] | None
    help: str
    #: Whether ``nbremind run`` takes it (a command reports no progress).
    command: bool
    #: Whether ``%%remind`` takes it.
    magic: bool
    #: Whether ``remind()`` and ``track()`` take it as a keyword.
    call: bool
    #: The value of its flag given without one (``--slower``), when it may be; else ``None``.
    const: object

    def __init__(
        self,
        name: str,
        flag: str,
        metavar: str,
        parse: Callable[[object, str], Any] | None,
        help: str,
        command: bool = True,
        magic: bool = True,
        call: bool = True,
        const: object = None,
    ) -> None:
        set_field(self, "name", name)
        set_field(self, "flag", flag)
        set_field(self, "metavar", metavar)
        set_field(self, "parse", parse)
        set_field(self, "help", help)
        set_field(self, "command", command)
        set_field(self, "magic", magic)
        set_field(self, "call", call)
        set_field(self, "const", const)

    def label(self, prefix: str = "", flags: bool = False) -> str:
        """How errors name it: ``prefix`` then the keyword, or the flag when ``flags``."""
        return f"{prefix}{self.flag if flags else self.name}"

    def read(self, value: object, option: str) -> Any:
        """``value`` parsed (errors name ``option``); unchanged when it has no ``parse``."""
        return value if self.parse is None else self.parse(value, option)


#: Every option of a task, in the order they are documented.
TASK_OPTIONS = (
    OptionSpec(
        "after", "--after", "DUR", _task_duration, "notify once when still running after DUR"
    ),
    OptionSpec("every", "--every", "DUR", _task_duration, "then again every DUR"),
    OptionSpec(
        "progress",
        "--progress",
        "P[,P...]",
        parse_percents,
        "notify when progress reaches each mark (0.5 or 50%)",
        command=False,
    ),
    OptionSpec(
        "mem",
        "--mem",
        "SIZE",
        parse_size,
        "notify when memory (a command's: its process tree's) goes above SIZE",
    ),
    OptionSpec(
        "mem_limit",
        "--mem-limit",
        "SIZE|P%",
        parse_limit,
        "stop the task before the OOM killer does: when the memory it is judged by (a "
        "container's, else the process's) passes SIZE or P% of the limit that applies",
    ),
    OptionSpec(
        "gpu_mem",
        "--gpu-mem",
        "SIZE|P%",
        parse_limit,
        "notify when the GPU memory of this process's devices goes above SIZE or P%",
    ),
    OptionSpec(
        "stall",
        "--stall",
        "DUR",
        _task_duration,
        "notify when the progress has not moved for DUR, and when it moves again",
    ),
    OptionSpec(
        "slower",
        "--slower",
        "[FACTOR]",
        parse_factor,
        f"notify once it has run FACTOR (default {DEFAULT_SLOWER:g}) times its usual duration",
        const=str(DEFAULT_SLOWER),
    ),
    OptionSpec(
        "timeout",
        "--timeout",
        "DUR",
        _task_duration,
        "time out after DUR (a command is stopped, with its whole process group)",
    ),
    OptionSpec(
        "interrupt", "--interrupt", "", None, "stop the task when it times out", command=False
    ),
    OptionSpec("on", "--on", "EVENTS", parse_events, "events that notify, comma-separated"),
    OptionSpec("channels", "--channels", "CH[,CH...]", parse_channels, "where notices go"),
    OptionSpec(
        "min_duration", "--min", "DUR", _task_duration, "no end notice when it took less than DUR"
    ),
    OptionSpec(
        "when",
        "",
        "",
        None,
        "a predicate on the task: notify once when it is true",
        command=False,
        magic=False,
    ),
    OptionSpec(
        "quiet",
        "--quiet",
        "",
        None,
        "no live status line under the cell",
        command=False,
        call=False,
    ),
)
#: The options that take a value, each read by its ``parse``.
OPTIONS = tuple(spec for spec in TASK_OPTIONS if spec.parse is not None)
#: The keywords of the task options ``remind()`` and ``track()`` take.
CALL_OPTIONS = tuple(spec.name for spec in TASK_OPTIONS if spec.call)
#: The flags of ``%%remind``.
MAGIC_OPTIONS = tuple(spec for spec in TASK_OPTIONS if spec.magic)
#: The task flags of ``nbremind run``.
COMMAND_OPTIONS = tuple(spec for spec in TASK_OPTIONS if spec.command)
_BY_NAME: Mapping[str, OptionSpec] = {spec.name: spec for spec in OPTIONS}


def add_flags(
    parser: argparse.ArgumentParser, specs: Iterable[OptionSpec], *, with_help: bool = False
) -> None:
    """Add the flags of ``specs`` to ``parser`` (each stored under its keyword; a switch as
    ``True``/``False``), with their help texts when ``with_help``."""
    for spec in specs:
        text = spec.help.replace("%", "%%") if with_help else None  # (argparse formats it)
        if spec.const is not None:  # a value of its own, or the default one
            metavar = spec.metavar.strip("[]")
            parser.add_argument(
                spec.flag, dest=spec.name, metavar=metavar, nargs="?", const=spec.const, help=text
            )
        elif spec.metavar:
            parser.add_argument(spec.flag, dest=spec.name, metavar=spec.metavar, help=text)
        else:
            parser.add_argument(spec.flag, dest=spec.name, action="store_true", help=text)


def flag_values(ns: argparse.Namespace, specs: Iterable[OptionSpec]) -> dict[str, Any]:
    """``{keyword: value}`` of the flags of ``specs`` in ``ns`` (``None``: not given)."""
    return {spec.name: getattr(ns, spec.name) for spec in specs}


def usage(specs: Iterable[OptionSpec]) -> str:
    """The flags of ``specs`` as a usage line writes them: ``[--after DUR] [--interrupt]``."""
    return " ".join(
        f"[{spec.flag} {spec.metavar}]" if spec.metavar else f"[{spec.flag}]" for spec in specs
    )  # (an optional value's metavar has its brackets: ``[--slower [FACTOR]]``)


class TaskOptions(Frozen):
    """Thresholds and delivery choices of one task (see ``remind()`` for their meaning)."""

    after: float | None
    every: float | None
    progress: tuple[float, ...]
    mem: int | None
    #: Bytes, or a :class:`~nbremind.core.parse.Percent` of the memory limit that applies.
    mem_limit: int | Percent | None
    #: Bytes, or a :class:`~nbremind.core.parse.Percent` of the GPUs' memory.
    gpu_mem: int | Percent | None
    stall: float | None
    slower: float | None
    timeout: float | None
    interrupt: bool
    on: tuple[str, ...] | None
    channels: tuple[str, ...] | None
    min_duration: float | None
    when: Callable[[Any], object] | None
    quiet: bool

    def __init__(
        self,
        after: float | None = None,
        every: float | None = None,
        progress: tuple[float, ...] = (),
        mem: int | None = None,
        mem_limit: int | Percent | None = None,
        gpu_mem: int | Percent | None = None,
        stall: float | None = None,
        slower: float | None = None,
        timeout: float | None = None,
        interrupt: bool = False,
        on: tuple[str, ...] | None = None,
        channels: tuple[str, ...] | None = None,
        min_duration: float | None = None,
        when: Callable[[Any], object] | None = None,
        quiet: bool = False,
    ) -> None:
        set_field(self, "after", after)
        set_field(self, "every", every)
        set_field(self, "progress", progress)
        set_field(self, "mem", mem)
        set_field(self, "mem_limit", mem_limit)
        set_field(self, "gpu_mem", gpu_mem)
        set_field(self, "stall", stall)
        set_field(self, "slower", slower)
        set_field(self, "timeout", timeout)
        set_field(self, "interrupt", interrupt)
        set_field(self, "on", on)
        set_field(self, "channels", channels)
        set_field(self, "min_duration", min_duration)
        set_field(self, "when", when)
        set_field(self, "quiet", quiet)

    @classmethod
    def parse(
        cls,
        *,
        interrupt: bool = False,
        when: Callable[[Any], object] | None = None,
        quiet: bool = False,
        source: str = "",
        flags: bool = False,
        **values: object,
    ) -> TaskOptions:
        """Validate raw values of :data:`OPTIONS` (``None``: not set); a bad one raises
        ``ValueError`` naming the option (after ``source``; its flag when ``flags``) and the
        value."""
        unknown = [key for key in values if key not in _BY_NAME]
        if unknown:
            raise TypeError(f"TaskOptions.parse() got an unexpected keyword {unknown[0]!r}")

        def opt(name: str) -> str:
            return f"{source}--{name}" if flags else f"{source}{name}"

        if when is not None and not callable(when):
            raise ValueError(f"{opt('when')}: {when!r} is not callable")
        if interrupt and values.get("timeout") is None:
            raise ValueError(f"{opt('interrupt')}: needs a timeout to interrupt at")
        parsed = {
            spec.name: spec.read(values[spec.name], spec.label(source, flags))
            for spec in OPTIONS
            if values.get(spec.name) is not None
        }
        return cls(**parsed, interrupt=bool(interrupt), when=when, quiet=bool(quiet))

    def events(self) -> frozenset[str]:
        """The events this task notifies: ``on`` if given, else the defaults plus thresholds."""
        try:
            return self.__dict__["_events"]  # type: ignore[no-any-return]
        except KeyError:
            events = self._events()
            set_field(self, "_events", events)  # computed once: the options are frozen
            return events

    def thresholds_only(self) -> TaskOptions:
        """These options without the end events (``on``: only the thresholds they set): a
        task nested in another, whose end the other reports. Made once per options."""
        try:
            return self.__dict__["_thresholds_only"]  # type: ignore[no-any-return]
        except KeyError:
            # (a wait for input is told about the enclosing task: a loop has no answer)
            # (nor a requeued cluster job: its follower asks for that one itself)
            on = tuple(sorted(self.events() - set(DEFAULT_ON) - {"input", "requeue", "worker"}))
            nested = self.replace(on=on)
            set_field(self, "_thresholds_only", nested)
            return nested

    def _events(self) -> frozenset[str]:
        if self.on is not None:
            return frozenset(self.on)
        events = set(DEFAULT_ON)
        events.add("input")  # waiting for an answer: a task's own, told when nested too
        events.add("requeue")  # a cluster job of the task preempted or requeued (told nested too)
        events.add("worker")  # a worker of the cluster running the task's work was lost
        if self.after is not None or self.every is not None:
            events.add("after")
        if self.progress:
            events.add("progress")
        if self.mem is not None or self.gpu_mem is not None:
            events.add("memory")
        if self.stall is not None:
            events.add("stall")
        if self.slower is not None:
            events.add("slower")
        if self.when is not None:
            events.add("condition")
        return frozenset(events)


#: The options of a task that sets none (frozen: one for all of them).
NO_OPTIONS = TaskOptions()


def with_defaults(options: TaskOptions, defaults: Mapping[str, object]) -> TaskOptions:
    """``options`` with each of ``defaults`` (``{keyword: parsed value}``, the settings that
    default task options) it leaves unset; ``options`` itself when it sets them all."""
    missing = {
        name: value
        for name, value in defaults.items()
        if value is not None and getattr(options, name) is None
    }
    return options.replace(**missing) if missing else options


def any_set(*values: object) -> bool:
    """Whether any of a call's option values is given (not ``None``, not ``False``): when
    none is, ``remind()`` and ``track()`` take the options parsed once, without a parse."""
    for value in values:  # noqa: SIM110 -- a loop: any() over a generator costs more
        if value is not None and value is not False:
            return True
    return False


def call_options(
    source: str,
    session: object,
    after: object,
    every: object,
    progress: object,
    mem: object,
    mem_limit: object,
    gpu_mem: object,
    stall: object,
    slower: object,
    timeout: object,
    interrupt: bool,
    on: object,
    channels: object,
    min_duration: object,
    when: Callable[[Any], object] | None,
) -> TaskOptions:
    """The options of a ``remind()`` or ``track()`` call (``source``): the ones shared by
    every call that gives none, else :func:`parse_call_options`'s."""
    if not any_set(
        after,
        every,
        progress,
        mem,
        mem_limit,
        gpu_mem,
        stall,
        slower,
        timeout,
        on,
        channels,
        min_duration,
        when,
        interrupt,
    ):
        return NO_OPTIONS  # the common call (a loop per file): nothing to parse
    return parse_call_options(
        source,
        session,
        after=after,
        every=every,
        progress=progress,
        mem=mem,
        mem_limit=mem_limit,
        gpu_mem=gpu_mem,
        stall=stall,
        slower=None if slower is False else slower,
        timeout=timeout,
        interrupt=interrupt,
        on=on,
        channels=channels,
        min_duration=min_duration,
        when=when,
    )


def parse_call_options(
    source: str, session: object = None, *, flags: bool = False, **raw: Any
) -> TaskOptions:
    """Task options (``remind()``'s, ``track()``'s, a command line's when ``flags``), parsed,
    with their channels checked against the named channels of ``session``'s settings.

    Errors start with ``source`` and name the option: ``remind(): after: ...``, or with
    ``flags`` its flag: ``%%remind --after: ...`` (``source`` may then be empty).
    """
    key = _cache_key(source, flags, raw)
    options = _parsed.get(key) if key is not None else None
    if options is None:
        prefix = (f"{source} " if source else "") if flags else f"{source}: "
        options = TaskOptions.parse(**raw, source=prefix, flags=flags)
        if key is not None:
            if len(_parsed) >= _PARSED_KEEP:
                _parsed.clear()
            _parsed[key] = options
    else:
        prefix = (f"{source} " if source else "") if flags else f"{source}: "
    if options.channels:
        from .channel_names import check_channel_names

        defs = getattr(getattr(session, "config", None), "channel_defs", None)
        check_channel_names(options.channels, _BY_NAME["channels"].label(prefix, flags), defs)
    return options


#: Options already parsed, by what they were parsed from (a loop per file in a task calls
#: ``track()`` with the same options thousands of times: each is parsed once).
_parsed: dict[tuple[object, ...], TaskOptions] = {}
_PARSED_KEEP = 256
#: Types whose values stand for themselves in a cache key (with the type: ``1 != True``).
_KEY_TYPES = frozenset({str, int, float, bool, type(None)})


def _cache_key(source: str, flags: bool, raw: Mapping[str, Any]) -> tuple[object, ...] | None:
    """What identifies a parse of ``raw`` (lists and tuples of plain values included), or
    ``None`` when a value is not plain (a predicate, an object): then it is not cached."""
    key: list[object] = [source, flags]
    for name, value in raw.items():
        if value is None:
            continue
        kind = type(value)
        if kind in _KEY_TYPES:
            key.append((name, kind, value))
        elif kind is list or kind is tuple:
            if not all(type(v) in _KEY_TYPES for v in value):
                return None
            key.append((name, kind, tuple((type(v), v) for v in value)))
        else:
            return None
    return tuple(key)


def check_total(total: object, source: str) -> None:
    """Raise ``ValueError`` unless ``total`` is ``None`` or a non-negative integer."""
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise ValueError(f"{source}: total {safe_repr(total)} is not a non-negative integer")

"""Jobs and expected runs: frozen values, as the settings files define them.

A :class:`Job` is work that ``nbremind schedule`` runs at the times of its
:class:`Schedule`, each run an ``nbremind run`` process; an :class:`Expectation` is work
started by something else that is expected to report through nbremind at such times. Each
value checks its own invariants when made (a bad one raises ``ValueError``); reading them
from the settings files, with errors naming the file, the job and the key, is
``nbremind.settings.jobs``.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from typing import Any

from .config import format_duration_setting
from .frozen import Frozen, set_field

__all__ = [
    "CATCH_UP",
    "DEFAULT_GRACE",
    "DEFAULT_OUTPUT",
    "MAX_ATTEMPTS",
    "MAX_EVERY",
    "MIN_EVERY",
    "NAME_PATTERN",
    "OVERLAP",
    "PYTHON_PATTERN",
    "Expectation",
    "Job",
    "Schedule",
]

#: What a job or expectation may be called: 1 to 64 letters, digits, ``.``, ``_`` or ``-``.
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: The shape of ``python = "package.module:function"``.
PYTHON_PATTERN = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"
)
#: What a fire that comes while the job still runs does, the default first.
OVERLAP = ("skip", "queue")
#: What runs for the fires missed while nothing was scheduling, the default first.
CATCH_UP = ("latest", "none")
#: The most attempts ``retries`` may ask for.
MAX_ATTEMPTS = 20
#: The shortest ``every`` interval, in seconds.
MIN_EVERY = 1.0
#: The longest ``every`` interval, in seconds (366 days: rarer work is a cron line's).
MAX_EVERY = 366 * 86400.0
#: Where a notebook job's executed copy is written (a ``str.format`` template).
DEFAULT_OUTPUT = "runs/{name}-{start:%Y%m%d-%H%M}.ipynb"
#: How long after its expected time a run may start, by default (seconds).
DEFAULT_GRACE = 3600.0

_EMPTY: Mapping[str, Any] = types.MappingProxyType({})


class Schedule(Frozen):
    """When something runs: a cron line or an interval, in a time zone."""

    #: A 5-field cron line (minute hour day-of-month month day-of-week), or ``None``.
    cron: str | None
    #: Seconds between runs (:data:`MIN_EVERY` to :data:`MAX_EVERY`), or ``None``.
    every: float | None
    #: The IANA time zone the cron line is read in (``None``: the machine's local zone).
    timezone: str | None

    def __init__(self, cron: str | None, every: float | None, timezone: str | None = None) -> None:
        if (cron is None) == (every is None):
            raise ValueError("a schedule has exactly one of cron or every")
        if cron is not None and len(cron.split()) != 5:
            raise ValueError(f"{cron!r} is not a cron line of 5 fields")
        if every is not None and not MIN_EVERY <= every <= MAX_EVERY:
            raise ValueError(
                f"every {every!r} is not a number of seconds from {MIN_EVERY:g} to {MAX_EVERY:.0f}"
            )
        set_field(self, "cron", cron)
        set_field(self, "every", every)
        set_field(self, "timezone", timezone)

    def describe(self) -> str:
        """``cron 0 2 * * * (Europe/Berlin)``, ``every 15m``."""
        if self.cron is not None:
            zone = f" ({self.timezone})" if self.timezone else ""
            return f"cron {self.cron}{zone}"
        assert self.every is not None
        return f"every {format_duration_setting(self.every)}"


class Job(Frozen):
    """Work ``nbremind schedule`` runs on a schedule: exactly one of a command, a notebook
    (through papermill) or a Python function."""

    name: str
    #: The command line run (a string in the file: ``("sh", "-c", text)``).
    command: tuple[str, ...] | None
    #: The notebook run with papermill.
    notebook: str | None
    #: ``"package.module:function"``: the function called.
    python: str | None
    #: The notebook's papermill parameters (only with ``notebook``).
    parameters: Mapping[str, Any]
    #: Where the executed notebook is written: a template of ``{name}`` and ``{start}``
    #: (only with ``notebook``: :data:`DEFAULT_OUTPUT` when not given).
    output: str | None
    schedule: Schedule
    #: Seconds a run may take before it is stopped (``None``: no limit).
    timeout: float | None
    #: Attempts in all (1: no retry), at most :data:`MAX_ATTEMPTS`.
    retries: int
    #: One of :data:`OVERLAP`.
    overlap: str
    #: One of :data:`CATCH_UP`.
    catch_up: str
    #: The folder a run starts in (``None``: the scheduler's).
    cwd: str | None
    #: Environment variables set for its runs, over the scheduler's.
    env: Mapping[str, str]
    #: The job's task options as ``nbremind run`` flags: ``("--after", "10m", ...)``.
    flags: tuple[str, ...]
    #: The settings file it came from, as errors name it.
    source: str

    def __init__(
        self,
        name: str,
        command: tuple[str, ...] | None = None,
        notebook: str | None = None,
        python: str | None = None,
        parameters: Mapping[str, Any] = _EMPTY,
        output: str | None = None,
        schedule: Schedule | None = None,
        timeout: float | None = None,
        retries: int = 1,
        overlap: str = OVERLAP[0],
        catch_up: str = CATCH_UP[0],
        cwd: str | None = None,
        env: Mapping[str, str] = _EMPTY,
        flags: tuple[str, ...] = (),
        source: str = "",
    ) -> None:
        """Each field as described on the class (``schedule`` must be given)."""
        _check_name(name)
        if not isinstance(schedule, Schedule):
            raise ValueError(f"job {name}: {schedule!r} is not a Schedule")
        if sum(work is not None for work in (command, notebook, python)) != 1:
            raise ValueError(f"job {name}: give exactly one of command, notebook or python")
        if command is not None and not command:
            raise ValueError(f"job {name}: an empty command")
        if python is not None and not PYTHON_PATTERN.fullmatch(python):
            raise ValueError(f"job {name}: {python!r} is not package.module:function")
        if notebook is None and (parameters or output is not None):
            raise ValueError(f"job {name}: parameters and output go with a notebook")
        if notebook is not None and output is None:
            output = DEFAULT_OUTPUT
        if isinstance(retries, bool) or not 1 <= retries <= MAX_ATTEMPTS:
            raise ValueError(f"job {name}: retries {retries!r} is not from 1 to {MAX_ATTEMPTS}")
        if overlap not in OVERLAP:
            raise ValueError(f"job {name}: overlap {overlap!r} is not one of {OVERLAP}")
        if catch_up not in CATCH_UP:
            raise ValueError(f"job {name}: catch_up {catch_up!r} is not one of {CATCH_UP}")
        if timeout is not None and not 0 < timeout < float("inf"):
            raise ValueError(f"job {name}: timeout {timeout!r} is not a positive duration")
        set_field(self, "name", name)
        set_field(self, "command", command)
        set_field(self, "notebook", notebook)
        set_field(self, "python", python)
        set_field(self, "parameters", _frozen_map(parameters))
        set_field(self, "output", output)
        set_field(self, "schedule", schedule)
        set_field(self, "timeout", timeout)
        set_field(self, "retries", retries)
        set_field(self, "overlap", overlap)
        set_field(self, "catch_up", catch_up)
        set_field(self, "cwd", cwd)
        set_field(self, "env", _frozen_map(env))
        set_field(self, "flags", tuple(flags))
        set_field(self, "source", source)

    @property
    def kind(self) -> str:
        """What it runs: ``"command"``, ``"notebook"`` or ``"python"``."""
        if self.command is not None:
            return "command"
        return "notebook" if self.notebook is not None else "python"


class Expectation(Frozen):
    """Work started by something else (a system cron line, another scheduler, a colleague's
    script) that is expected to report a run of ``name`` through nbremind on a schedule."""

    name: str
    schedule: Schedule
    #: Seconds after an expected time that a run may still start.
    grace: float
    #: Seconds a run that started may take to succeed (``None``: no limit).
    max_duration: float | None
    #: The settings file it came from, as errors name it.
    source: str

    def __init__(
        self,
        name: str,
        schedule: Schedule,
        grace: float = DEFAULT_GRACE,
        max_duration: float | None = None,
        source: str = "",
    ) -> None:
        _check_name(name)
        if not 0 <= grace < float("inf"):
            raise ValueError(f"expectation {name}: grace {grace!r} is not a duration >= 0")
        if max_duration is not None and not 0 < max_duration < float("inf"):
            raise ValueError(
                f"expectation {name}: max_duration {max_duration!r} is not a positive duration"
            )
        set_field(self, "name", name)
        set_field(self, "schedule", schedule)
        set_field(self, "grace", grace)
        set_field(self, "max_duration", max_duration)
        set_field(self, "source", source)


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{name!r} is not a name of 1 to 64 letters, digits, '.', '_' or '-'")


def _frozen_map(values: Mapping[str, Any]) -> Mapping[str, Any]:
    """``values`` as a read-only mapping of its own (one shared when empty)."""
    if not values:
        return _EMPTY
    if isinstance(values, types.MappingProxyType):
        return values
    return types.MappingProxyType(dict(values))

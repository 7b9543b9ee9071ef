"""Jobs (``[jobs.NAME]``) and expected runs (``[expect.NAME]``) from the settings files.

They live in the files the settings are read from (the user file, then the project's
``pyproject.toml`` ``[tool.nbremind.jobs.NAME]`` and ``nbremind.toml`` ``[jobs.NAME]``); a
job (or expectation) of the same name in a file of higher precedence replaces the lower
one whole. Each is validated as a whole: a bad one is left out, with one error per bad key
naming the file, the job and the key and the value. Cron lines are checked with
`cronsim <https://github.com/cuu508/cronsim>`_, which the scheduler runs them with.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cronsim

from ..core.channel_names import check_channel_names
from ..core.config import format_duration_setting
from ..core.jobs import (
    CATCH_UP,
    DEFAULT_GRACE,
    MAX_ATTEMPTS,
    MAX_EVERY,
    MIN_EVERY,
    NAME_PATTERN,
    OVERLAP,
    PYTHON_PATTERN,
    Expectation,
    Job,
    Schedule,
)
from ..core.options import COMMAND_OPTIONS, OptionSpec
from ..core.parse import Percent, parse_duration, parse_timezone
from ..core.secrets import redact
from ..core.urls import shown
from .files import expand, load_settings, raw_tables

__all__ = [
    "CRON_ALIASES",
    "EXPECT_KEYS",
    "JOB_KEYS",
    "TASK_OPTION_KEYS",
    "LoadedJobs",
    "check_cron",
    "job_delivery",
    "load_jobs",
    "parse_expectations",
    "parse_jobs",
]

#: The cron lines a ``@`` word stands for (``@reboot`` is not a time: not taken).
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_RANGES = {
    "minute": range(60),
    "hour": range(24),
    "day-of-month": range(1, 32),
    "month": range(1, 13),
    "day-of-week": range(8),
}

#: A job key -> the ``nbremind run`` option it gives (the task options but ``timeout``,
#: which is the job's own; ``every`` is the schedule, so the task's is ``notify_every``).
TASK_OPTION_KEYS: Mapping[str, OptionSpec] = {
    ("notify_every" if spec.name == "every" else spec.name): spec
    for spec in COMMAND_OPTIONS
    if spec.name != "timeout"
}
_TIMEOUT = next(spec for spec in COMMAND_OPTIONS if spec.name == "timeout")
_SCHEDULE_KEYS = ("cron", "every", "timezone")
#: Every key a job takes (``-`` may stand for ``_``).
JOB_KEYS = (
    "command",
    "notebook",
    "python",
    "parameters",
    "output",
    *_SCHEDULE_KEYS,
    "timeout",
    "retries",
    "overlap",
    "catch_up",
    "cwd",
    "env",
    *TASK_OPTION_KEYS,
)
#: Every key an expectation takes (``-`` may stand for ``_``).
EXPECT_KEYS = (*_SCHEDULE_KEYS, "grace", "max_duration")


@dataclass(frozen=True)
class LoadedJobs:
    """The jobs and expected runs the settings files define."""

    jobs: Mapping[str, Job]
    expectations: Mapping[str, Expectation]
    #: One message per bad key (naming file, job, key and value), file or table.
    errors: tuple[str, ...] = ()
    #: Files read (those that exist), lowest precedence first.
    files: tuple[Path, ...] = ()
    #: Files (and folders) whose appearance, change or removal changes what is defined.
    watch: tuple[Path, ...] = ()


def load_jobs(
    start: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> LoadedJobs:
    """Read the jobs and expected runs of the settings files (the project's found from
    ``start``, default the working directory). Never raises: a bad job is left out (the
    lower files' job of its name too) and its errors are in :attr:`LoadedJobs.errors`."""
    env = os.environ if environ is None else environ
    raw = raw_tables(start, env)
    errors = list(raw.errors)
    defs = load_settings(start, env).config.channel_defs if raw.tables else None
    jobs: dict[str, Job] = {}
    expectations: dict[str, Expectation] = {}
    for label, path, tables in raw.tables:
        table = _table(tables, "jobs", label, errors)
        if table is not None:
            for name in table:
                jobs.pop(name, None)  # replaced whole, by this file's (if it is good)
            folder = path.parent
            parsed = parse_jobs(
                table, label, folder=folder, environ=env, errors=errors, channel_defs=defs
            )
            jobs.update(parsed)
        table = _table(tables, "expect", label, errors)
        if table is not None:
            for name in table:
                expectations.pop(name, None)
            expectations.update(parse_expectations(table, label, errors=errors))
    return LoadedJobs(
        jobs=jobs,
        expectations=expectations,
        errors=tuple(redact(error) for error in errors),
        files=raw.files,
        watch=raw.watch,
    )


_EXAMPLE = {"jobs": "of jobs such as [jobs.nightly]", "expect": "such as [expect.nightly]"}


def _table(
    tables: Mapping[str, Any], key: str, label: str, errors: list[str]
) -> Mapping[str, Any] | None:
    """The ``key`` table of one file, if it has one that is a table (else an error)."""
    table = tables.get(key)
    if table is None or isinstance(table, dict):
        return table
    errors.append(f"{label}: {key}: {shown(table)} is not a table {_EXAMPLE[key]}")
    return None


def parse_jobs(
    table: Mapping[str, Any],
    label: str,
    *,
    folder: Path | None = None,
    environ: Mapping[str, str] | None = None,
    errors: list[str] | None = None,
    channel_defs: Mapping[str, Any] | None = None,
) -> dict[str, Job]:
    """The jobs of one file's ``jobs`` table (``label`` names the file in errors).

    A relative ``cwd`` is taken from ``folder`` (the file's folder); ``${NAME}`` in
    ``command`` and ``env`` is read from ``environ`` (default ``os.environ``); ``channels``
    may name the named channels of ``channel_defs`` (default: the process's settings'). With
    ``errors``, a bad job is left out and its errors appended; without, any error raises
    ``ValueError`` (every error, one per line).
    """
    return _parse_all(table, label, "jobs", _job, folder, environ, errors, channel_defs)


def parse_expectations(
    table: Mapping[str, Any],
    label: str,
    *,
    folder: Path | None = None,
    environ: Mapping[str, str] | None = None,
    errors: list[str] | None = None,
) -> dict[str, Expectation]:
    """The expected runs of one file's ``expect`` table, as :func:`parse_jobs` reads jobs
    (``folder`` and ``environ`` are not used: an expectation has no path nor reference)."""
    return _parse_all(table, label, "expect", _expectation, folder, environ, errors)


def _parse_all(
    table: Mapping[str, Any],
    label: str,
    kind: str,
    parse: Callable[[str, Any, _Context], Any],
    folder: Path | None,
    environ: Mapping[str, str] | None,
    errors: list[str] | None,
    channel_defs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    found: dict[str, Any] = {}
    bad: list[str] = []
    for name, spec in table.items():
        at = f"{label}: {kind}.{_key_text(name)}"
        context = _Context(at, label, folder, env, channel_defs)
        try:
            value = parse(name, spec, context)
        except ValueError as exc:  # (a check of the value type itself: its invariants)
            context.fail(f"{context.at}: {exc}")
            value = None
        if context.errors:
            bad.extend(context.errors)
        elif value is not None:
            found[name] = value
    if errors is not None:
        errors.extend(redact(error) for error in bad)
    elif bad:
        raise ValueError("\n".join(redact(error) for error in bad))
    return found


class _Context:
    """Where one job is read: how its errors start, and the errors found so far."""

    def __init__(
        self,
        at: str,
        label: str,
        folder: Path | None,
        environ: Mapping[str, str],
        channel_defs: Mapping[str, Any] | None,
    ) -> None:
        self.at = at
        self.label = label
        self.folder = folder
        self.environ = environ
        self.channel_defs = channel_defs
        self.errors: list[str] = []

    def fail(self, message: str) -> None:
        self.errors.append(message)

    def read(self, key: str, value: Any, parse: Callable[[Any, str], Any]) -> Any:
        """``parse(value, where)``; its error is recorded (and ``None`` given back)."""
        try:
            return parse(value, f"{self.at}.{key}")
        except ValueError as exc:
            self.fail(str(exc))
            return None

    def get(self, keys: Mapping[str, Any], key: str, parse: Callable[[Any, str], Any]) -> Any:
        """:meth:`read` of ``key`` in ``keys`` (as :func:`_keys` gives them); ``None`` when
        it is not there."""
        if key not in keys:
            return None
        written, value = keys[key]
        return self.read(written, value, parse)


def _key_text(name: object) -> str:
    """A table name as TOML writes it: bare when it may be, else quoted."""
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
        return name
    return json.dumps(str(name), ensure_ascii=False)


def _keys(spec: Any, context: _Context, known: tuple[str, ...], what: str) -> dict[str, Any] | None:
    """The table ``spec`` as ``{key: (as written, value)}`` with ``-`` read as ``_``;
    unknown and doubled keys are recorded as errors (``None``: not a table)."""
    if not isinstance(spec, dict):
        context.fail(f"{context.at}: {shown(spec)} is not a table of {what} keys")
        return None
    out: dict[str, Any] = {}
    for written, value in spec.items():
        key = str(written).replace("-", "_")
        if key not in known:
            context.fail(
                f"{context.at}.{_key_text(written)}: not {_a(what)} key; "
                f"known keys: {', '.join(sorted(known))}"
            )
        elif key in out:
            context.fail(f"{context.at}.{written}: given twice (also as {out[key][0]})")
        else:
            out[key] = (written, value)
    return out


def _a(what: str) -> str:
    return f"an {what}" if what[0] in "aeiou" else f"a {what}"


def _check_name(name: object, context: _Context, what: str) -> bool:
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
        return True
    context.fail(f"{context.at}: not {_a(what)} name (1 to 64 letters, digits, '.', '_' or '-')")
    return False


# -- one job ---------------------------------------------------------------------------------
def _job(name: str, spec: Any, context: _Context) -> Job | None:
    keys = _keys(spec, context, JOB_KEYS, "job")
    named = _check_name(name, context, "job")
    if keys is None:
        return None

    def read(key: str, parse: Callable[[Any, str], Any]) -> Any:
        return context.get(keys, key, parse)

    schedule = _schedule(keys, context)
    works = [key for key in ("command", "notebook", "python") if key in keys]
    if len(works) != 1:
        context.fail(f"{context.at}: give exactly one of command, notebook or python")
    command = read("command", lambda v, w: _command(v, w, context.environ))
    notebook = read("notebook", _notebook)
    python = read("python", _python)
    parameters = read("parameters", _parameters)
    output = read("output", _output)
    for key in ("parameters", "output"):
        if key in keys and "notebook" not in keys and works:
            context.fail(f"{context.at}.{keys[key][0]}: only a notebook job takes {key}")
    timeout = read("timeout", _TIMEOUT.read)
    retries = read("retries", _retries)
    overlap = read("overlap", lambda v, w: _choice(v, w, OVERLAP))
    catch_up = read("catch_up", lambda v, w: _choice(v, w, CATCH_UP))
    cwd = read("cwd", lambda v, w: _cwd(v, w, context.folder))
    env = read("env", lambda v, w: _env(v, w, context.environ))
    flags: list[str] = []
    for key, option in TASK_OPTION_KEYS.items():
        flags.extend(context.get(keys, key, functools.partial(_flag, option, context)) or ())
    if context.errors or not named or schedule is None:
        return None
    return Job(
        name,
        schedule=schedule,
        command=command,
        notebook=notebook,
        python=python,
        parameters=parameters or {},
        output=output if notebook is not None else None,
        timeout=timeout,
        retries=1 if retries is None else retries,
        overlap=overlap or OVERLAP[0],
        catch_up=catch_up or CATCH_UP[0],
        cwd=cwd,
        env=env or {},
        flags=tuple(flags),
        source=context.label,
    )


def _expectation(name: str, spec: Any, context: _Context) -> Expectation | None:
    keys = _keys(spec, context, EXPECT_KEYS, "expectation")
    named = _check_name(name, context, "expectation")
    if keys is None:
        return None
    schedule = _schedule(keys, context)
    grace = context.get(keys, "grace", _duration_or_zero)
    max_duration = context.get(keys, "max_duration", parse_duration)
    if context.errors or not named or schedule is None:
        return None
    return Expectation(
        name,
        schedule=schedule,
        grace=DEFAULT_GRACE if grace is None else grace,
        max_duration=max_duration,
        source=context.label,
    )


def _schedule(keys: Mapping[str, Any], context: _Context) -> Schedule | None:
    """The schedule of ``cron`` or ``every`` (errors recorded: then ``None``)."""
    before = len(context.errors)
    timezone = context.get(keys, "timezone", _timezone)
    zone_ok = len(context.errors) == before
    if ("cron" in keys) == ("every" in keys):
        context.fail(f"{context.at}: give exactly one of cron or every")
        return None
    if "cron" in keys:
        cron = context.get(keys, "cron", lambda v, w: check_cron(v, w, timezone))
        if cron is None or not zone_ok:
            return None
        return Schedule(cron, None, timezone)
    every = context.get(keys, "every", _every)
    if every is None or not zone_ok:
        return None
    return Schedule(None, every, timezone)


def _every(value: Any, where: str) -> float:
    """An interval of :data:`MIN_EVERY` to :data:`MAX_EVERY` seconds."""
    seconds = parse_duration(value, where, minimum=MIN_EVERY)
    if seconds > MAX_EVERY:
        raise ValueError(
            f"{where}: {shown(value)} is longer than {format_duration_setting(MAX_EVERY)}, "
            "the longest it may be (use a cron line)"
        )
    return seconds


def _timezone(value: Any, where: str) -> str | None:
    """An IANA time zone name; ``"local"``: the machine's zone (``None``)."""
    if isinstance(value, str) and value.strip() == "local":
        return None
    return parse_timezone(value, where)


def check_cron(value: object, where: str, timezone: str | None = None) -> str:
    """The cron line ``value`` (5 fields, or ``@daily``, ``@hourly``, ...: see
    :data:`CRON_ALIASES`) with its spaces made single, when cronsim takes it and it fires
    within 50 years (read in ``timezone``, default the local zone); else ``ValueError``
    naming ``where`` and the value and saying why."""

    def fail(why: str) -> ValueError:
        return ValueError(f"{where}: {shown(value)} is not a cron schedule ({why})")

    if not isinstance(value, str):
        raise fail("a cron schedule is a text such as '0 2 * * *'")
    text = " ".join(value.split())
    if text.startswith("@"):
        if text.lower() not in CRON_ALIASES:
            raise fail(f"the @ words are {', '.join(CRON_ALIASES)}")
        text = CRON_ALIASES[text.lower()]
    fields = text.split()
    if len(fields) != 5:
        raise fail(f"it has {len(fields)} fields, not 5: {' '.join(_FIELDS)}")
    import zoneinfo

    zone = zoneinfo.ZoneInfo(timezone) if timezone else None
    now = dt.datetime.now(zone).astimezone(zone)
    try:
        next(cronsim.CronSim(text, now))
    except cronsim.CronSimError as exc:
        raise fail(_cron_reason(str(exc), fields)) from None
    except StopIteration:
        raise fail("it never comes in the next 50 years") from None
    return text


def _cron_reason(message: str, fields: list[str]) -> str:
    """Why cronsim refused a 5-field line, from its ``"Bad minute"``: the number out of
    range, else the field."""
    name = message.removeprefix("Bad ").strip()
    if name not in _FIELDS:
        return message
    field = fields[_FIELDS.index(name)]
    for term in field.upper().split(","):
        base = term.split("/", 1)[0].split("#", 1)[0].removesuffix("L")
        for part in base.split("-"):
            if part.isdigit() and int(part) not in _RANGES[name]:
                return f"{name} {int(part)} is out of range"
    if name == "day-of-month" and all(p.isdigit() for p in field.replace(",", "-").split("-")):
        return f"day-of-month {field} is in none of its months"
    return f"{field!r} is not a {name} field"


# -- the values of a job's keys ----------------------------------------------------------------
def _text(value: Any, where: str, what: str) -> str:
    """``value`` when it is a text that is not blank and has no NUL (which no command line,
    path or environment can hold); else ``ValueError`` saying it is not ``what``."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {shown(value)} is not {what}")
    if "\0" in value:
        raise ValueError(f"{where}: {shown(value)} has a NUL character")
    return value


def _command(value: Any, where: str, environ: Mapping[str, str]) -> tuple[str, ...]:
    """A list of arguments, or a string for the shell (``sh -c``; ``cmd /c`` on Windows)."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(f"{where}: an empty command")
        text = expand(_text(value, where, "a command"), where, environ)
        return ("cmd", "/c", text) if os.name == "nt" else ("sh", "-c", text)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(
            f"{where}: {shown(value)} is not a command: a list of texts such as "
            "['python', 'etl.py'], or a text for the shell"
        )
    if not value or not value[0].strip():
        raise ValueError(f"{where}: an empty command")
    for i, item in enumerate(value):
        if "\0" in item:
            raise ValueError(f"{where}[{i}]: {shown(item)} has a NUL character")
    return tuple(expand(value, where, environ))


def _notebook(value: Any, where: str) -> str:
    return os.path.expanduser(_text(value, where, "a notebook path").strip())


def _python(value: Any, where: str) -> str:
    if not isinstance(value, str) or not PYTHON_PATTERN.fullmatch(value.strip()):
        raise ValueError(
            f"{where}: {shown(value)} is not a function such as 'package.module:function'"
        )
    return value.strip()


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {shown(value)} is not a table of parameters")
    return value


def _output(value: Any, where: str) -> str:
    """A file name template of ``{name}`` and ``{start}`` (a datetime)."""
    template = _text(value, where, "a file name template")
    try:
        for _, field, spec, _ in string.Formatter().parse(template):
            if field != "start" and spec and re.search(r"[0-9]{4}", spec):  # {name:>99999999}
                raise ValueError(f"{{{field}:{spec}}} is too wide")
        made = template.format(name="job", start=dt.datetime(2000, 1, 2, 3, 4, 5))
    except KeyError as exc:
        why = f"{{{exc.args[0]}}} is neither {{name}} nor {{start}}"
    except IndexError:
        why = "a {} field needs a name: {name} or {start}"
    except (ValueError, TypeError, AttributeError) as exc:
        why = str(exc)
    else:
        if made.strip():
            return template
        why = "it makes an empty name"
    raise ValueError(
        f"{where}: {shown(value)} is not a file name template of {{name}} and {{start}} ({why})"
    )


def _retries(value: Any, where: str) -> int:
    """Attempts in all: 1 (no retry) to :data:`MAX_ATTEMPTS`."""
    count = value
    if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) < 4:
        count = int(value.strip())
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_ATTEMPTS:
        raise ValueError(
            f"{where}: {shown(value)} is not a number of attempts from 1 to {MAX_ATTEMPTS}"
        )
    return count


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    text = value.strip().lower() if isinstance(value, str) else ""
    if text not in choices:
        raise ValueError(f"{where}: {shown(value)} is not {' or '.join(map(repr, choices))}")
    return text


def _cwd(value: Any, where: str, folder: Path | None) -> str:
    """A folder: ``~`` is the home folder; a relative one is taken from ``folder``."""
    path = Path(os.path.expanduser(_text(value, where, "a folder path").strip()))
    if not path.is_absolute() and folder is not None:
        path = folder / path
    return str(path)


def _env(value: Any, where: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``{NAME: text}``, each text read for ``${NAME}`` references."""
    if not isinstance(value, dict):
        raise ValueError(f"{where}: {shown(value)} is not a table of variable = text")
    out: dict[str, str] = {}
    for name, text in value.items():
        at = f"{where}.{_key_text(name)}"
        if not name or "=" in name or "\0" in name:
            raise ValueError(f"{at}: not an environment variable name")
        if not isinstance(text, str):
            number = isinstance(text, (int, float)) and not isinstance(text, bool)
            hint = f' (write "{text}")' if number else ""
            raise ValueError(f"{at}: {shown(text)} is not a text{hint}")
        if "\0" in text:
            raise ValueError(f"{at}: {shown(text)} has a NUL character")
        out[name] = expand(text, at, environ)
    return out


def _duration_or_zero(value: Any, where: str) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (number and value == 0) or (isinstance(value, str) and value.strip() in ("0", "0s")):
        return 0.0
    return parse_duration(value, where)


# -- task options as flags of nbremind run -----------------------------------------------------
def job_delivery(job: Job) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """The ``on`` and ``channels`` of ``job`` (``None``: not set), read back from its
    flags: what its expected run's notices follow too."""
    found: dict[str, tuple[str, ...]] = {}
    flags = job.flags
    for i, flag in enumerate(flags[:-1]):
        for name in ("on", "channels"):
            spec = TASK_OPTION_KEYS[name]
            if flag == spec.flag:
                found[name] = spec.read(flags[i + 1], f"jobs.{job.name}.{name}")
    return found.get("on"), found.get("channels")


def _flag(spec: OptionSpec, context: _Context, value: Any, where: str) -> tuple[str, ...]:
    """The flag of ``spec`` with ``value`` checked by its parse (channels: against the named
    channels of the settings) and written back as text the flag reads to the same value
    (``()``: ``slower = false``)."""
    if spec.name == "slower" and value is False:
        return ()
    if spec.name in ("on", "channels") and not isinstance(value, (str, list)):
        raise ValueError(
            f"{where}: {shown(value)} is not a comma-separated string or a list of names"
        )
    parsed = spec.read(value, where)
    if spec.name == "channels":
        if any("," in name or "\0" in name for name in parsed):
            raise ValueError(
                f"{where}: {shown(value)}: a channel name with a comma cannot be passed"
            )
        check_channel_names(parsed, where, context.channel_defs)
    return (spec.flag, _flag_text(spec.name, parsed))


def _flag_text(name: str, parsed: Any) -> str:
    if name in ("on",):
        return ",".join(parsed) or "none"
    if name == "channels":
        return ",".join(parsed)
    if isinstance(parsed, Percent):
        return repr(parsed)
    if isinstance(parsed, int):
        return str(parsed)
    seconds = float(parsed)
    if name != "slower":
        text = format_duration_setting(seconds)
        if parse_duration(text, minimum=0) == seconds:
            return text
    return _decimal(seconds)


def _decimal(number: float) -> str:
    """``number`` as plain digits (no exponent) that read back as it."""
    text = repr(number)
    if "e" in text or "E" in text:
        from decimal import Decimal

        text = format(Decimal(text), "f")
    return text

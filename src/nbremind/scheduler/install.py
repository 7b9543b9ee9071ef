"""What starts ``nbremind schedule`` at login: a systemd user unit (Linux), a launchd agent
(macOS) or a Task Scheduler task (Windows), made by :func:`unit` and written by
:func:`write`.

Each format has its own quoting, and a project folder may be named ``my "project" dir``:

* systemd (``systemd.syntax(7)``, ``systemd.service(5)`` "Command lines"): an argument of
  ``ExecStart=`` with a space, a quote, a backslash or a control character is written in
  double quotes with C escapes (``\\"``, ``\\\\``, ``\\n``); ``%`` (specifiers) is written
  ``%%`` everywhere and ``$`` (variables) ``$$`` in arguments. systemd refuses a program path
  with a quote, a backslash or a control character, and expands ``$`` in it, so such a Python
  is started through ``/bin/sh -c 'exec "$0" "$@"'``, where it is an argument.
  ``WorkingDirectory=`` takes its value as it is (no quotes; ``%%`` for ``%``).
* launchd: a property list written by :mod:`plistlib`, which escapes what XML needs.
* Task Scheduler: ``schtasks`` has no working-folder option, so the task runs
  ``cmd /s /c "cd /d "FOLDER" && "PYTHON" -m nbremind schedule"``; that command is quoted as
  one argument of ``schtasks`` by the C runtime's rules (``\\"``), and what ``cmd`` would
  read as an operator outside quotes (``&``, ``|``, ``<``, ``>``, ``^``, parentheses) gets a
  ``^``. Windows names cannot hold ``"``; ``%`` and ``!`` (which ``cmd`` expands even inside
  quotes) are refused.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

__all__ = [
    "LABEL",
    "SERVICE",
    "TASK_NAME",
    "Unit",
    "UnitExistsError",
    "unit",
    "write",
]

#: The systemd user unit's file name.
SERVICE = "nbremind-schedule.service"
#: The launchd agent's label (its file is ``LABEL.plist``).
LABEL = "org.nbremind.schedule"
#: The Task Scheduler task's name.
TASK_NAME = "nbremind-schedule"
#: The mode a unit file is written with.
FILE_MODE = 0o644

#: systemd refuses these in a program path (``string_is_safe()``); ``$`` would be expanded.
_UNSAFE_PROGRAM = re.compile(r"[\x00-\x1f\x7f\"'\\$]")
#: An ``ExecStart=`` argument with one of these is written in double quotes.
_NEEDS_QUOTES = re.compile(r"[\s\"'\\;\x00-\x1f\x7f]")
_C_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}
#: What ``cmd`` reads as an operator outside quotes.
_CMD_OPERATORS = frozenset("&|<>^()")
#: What ``cmd`` expands even inside quotes (``%VAR%``; ``!VAR!`` with delayed expansion).
_CMD_EXPANDED = re.compile(r"[%!\"\x00-\x1f]")


@dataclass(frozen=True)
class Unit:
    """What starts the scheduler at login: the file to write (``path``; ``None`` on Windows,
    where the task lives in Task Scheduler and is made by a command), its ``text``
    (``""`` without a file), and the command lines that enable it, in order."""

    path: Path | None
    text: str
    enable: tuple[str, ...]


class UnitExistsError(FileExistsError, ValueError):
    """The unit's file exists with other content (also a ``ValueError``: the ``nbremind``
    command reports it as a one-line error)."""


def unit(
    system: str,
    python: str,
    workdir: PurePath,
    args: Sequence[str] = (),
    *,
    home: Path | None = None,
) -> Unit:
    """The unit that runs ``PYTHON -m nbremind schedule ARGS`` in ``workdir`` at login.

    ``system``: ``"linux"`` (a systemd user unit in ``~/.config/systemd/user``, or
    ``$XDG_CONFIG_HOME/systemd/user``), ``"darwin"`` (a launchd agent in
    ``~/Library/LaunchAgents``) or ``"windows"`` (``"win32"`` too: a ``schtasks`` command;
    no file); ``sys.platform`` values are understood. ``python`` and ``workdir`` must be
    absolute paths of that system (``workdir`` may be a ``PureWindowsPath`` elsewhere);
    ``home`` defaults to this user's. A value the format cannot carry raises ``ValueError``
    naming it.
    """
    kind = _system(system)
    command = ["-m", "nbremind", "schedule", *args]
    if kind == "windows":
        return _windows(python, str(workdir), command)
    for what, value in (("python", python), ("workdir", str(workdir))):
        if not PurePosixPath(value).is_absolute():
            raise ValueError(f"{what}: {value!r} is not an absolute path")
    if kind == "darwin":
        return _darwin(python, str(workdir), command, home or Path.home())
    return _linux(python, str(workdir), command, home)


def write(made: Unit, *, force: bool = False) -> Path:
    """Write ``made``'s file (its folders made as needed, mode ``0o644``) and return its
    path. A file already there with the same text is left as it is; one with other text
    raises :class:`UnitExistsError` unless ``force``. A unit without a file (Windows)
    raises ``ValueError`` saying what to run instead."""
    if made.path is None:
        steps = "; ".join(made.enable)
        raise ValueError(f"this unit has no file to write: run {steps}")
    path = made.path
    data = made.text.encode("utf-8")
    try:
        existing: bytes | None = path.read_bytes()
    except FileNotFoundError:
        existing = None
    if existing == data:
        return path
    if existing is not None and not force:
        raise UnitExistsError(f"{path} exists with other content: move it away to write this one")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(partial, "wb") as out:
            out.write(data)
        os.chmod(partial, FILE_MODE)
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()
    return path


def _system(system: str) -> str:
    name = system.lower()
    if name.startswith("linux"):
        return "linux"
    if name in ("darwin", "macos"):
        return "darwin"
    if name in ("windows", "win32", "cygwin"):
        return "windows"
    raise ValueError(f"system: {system!r} is not one of linux, darwin, windows")


# -- systemd ---------------------------------------------------------------------------------
def _linux(python: str, workdir: str, command: list[str], home: Path | None) -> Unit:
    if home is None:
        xdg = os.environ.get("XDG_CONFIG_HOME", "").strip()
        config = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    else:
        config = home / ".config"
    if _UNSAFE_PROGRAM.search(python):  # an argument of the shell, where anything goes
        shell = ["-c", 'exec "$0" "$@"', python]
        words = ["/bin/sh", *(_systemd_word(word, program=False) for word in shell)]
    else:
        words = [_systemd_word(python, program=True)]
    words += [_systemd_word(word, program=False) for word in command]
    text = (
        "[Unit]\n"
        "Description=nbremind scheduler: runs the jobs of the settings files\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"WorkingDirectory={_systemd_path(workdir)}\n"
        f"ExecStart={' '.join(words)}\n"
        "Environment=PYTHONUNBUFFERED=1\n"
        "Restart=on-failure\n"
        "RestartSec=10\n"
        "# SIGTERM to the scheduler alone: it stops its running jobs itself\n"
        "KillMode=mixed\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )
    return Unit(
        config / "systemd" / "user" / SERVICE,
        text,
        ("systemctl --user daemon-reload", f"systemctl --user enable --now {SERVICE}"),
    )


def _systemd_word(word: str, *, program: bool) -> str:
    """``word`` as one item of an ``ExecStart=`` line."""
    text = word.replace("%", "%%")
    if not program:
        text = text.replace("$", "$$")
    if word and not _NEEDS_QUOTES.search(word):
        return text
    escaped = "".join(
        _C_ESCAPES.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch)
        for ch in text
    )
    return f'"{escaped}"'


def _systemd_path(path: str) -> str:
    """``path`` as the value of ``WorkingDirectory=`` (taken as written, ``%`` doubled)."""
    if re.search(r"[\x00-\x1f\x7f]", path) or path != path.strip() or path.endswith("\\"):
        raise ValueError(
            f"workdir: {path!r} cannot be written in a systemd unit (a control character, "
            "a space at an end or a backslash at the end)"
        )
    return path.replace("%", "%%")


# -- launchd ---------------------------------------------------------------------------------
def _darwin(python: str, workdir: str, command: list[str], home: Path) -> Unit:
    log = str(home / "Library" / "Logs" / "nbremind-schedule.log")
    agent = {
        "Label": LABEL,
        "ProgramArguments": [python, *command],
        "WorkingDirectory": workdir,
        "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
        "RunAtLoad": True,
        # started again when it fails, as systemd's Restart=on-failure
        "KeepAlive": {"SuccessfulExit": False},
        "ProcessType": "Background",
        "StandardOutPath": log,
        "StandardErrorPath": log,
    }
    try:
        text = plistlib.dumps(agent, sort_keys=False).decode("utf-8")
    except ValueError as exc:  # control characters XML cannot carry
        raise ValueError(f"the launchd agent cannot hold these values: {exc}") from None
    path = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    return Unit(path, text, (f"launchctl load -w {shlex.quote(str(path))}",))


# -- Task Scheduler --------------------------------------------------------------------------
def _windows(python: str, workdir: str, command: list[str]) -> Unit:
    for what, value in (("python", python), ("workdir", workdir)):
        if not PureWindowsPath(value).is_absolute():
            raise ValueError(f"{what}: {value!r} is not an absolute Windows path")
    for what, value in (("python", python), ("workdir", workdir), *(("args", a) for a in command)):
        if _CMD_EXPANDED.search(value):
            raise ValueError(
                f"{what}: {value!r} cannot be run by Task Scheduler through cmd "
                '(it holds ", %, ! or a control character)'
            )
    words = [f'"{python}"', *(_cmd_word(word) for word in command)]
    inner = f'cd /d "{workdir}" && {" ".join(words)}'
    run = f'cmd /s /c "{inner}"'
    line = subprocess.list2cmdline(
        ["schtasks", "/Create", "/SC", "ONLOGON", "/TN", TASK_NAME, "/TR", run]
    )
    return Unit(None, "", (_cmd_escape(line),))


def _cmd_word(word: str) -> str:
    """An argument of the Python command inside ``cmd``: quoted when it holds a space or an
    operator (a backslash before the closing quote doubled, as the C runtime reads it)."""
    if word and not re.search(r"[\s&|<>^()]", word):
        return word
    trailing = len(word) - len(word.rstrip("\\"))
    return f'"{word}{chr(92) * trailing}"'


def _cmd_escape(line: str) -> str:
    """``line`` as typed at a ``cmd`` prompt: an operator outside quotes (as ``cmd`` sees
    them: every ``"`` toggles) gets a ``^``."""
    out: list[str] = []
    quoted = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in _CMD_OPERATORS:
            out.append("^")
        out.append(ch)
    return "".join(out)

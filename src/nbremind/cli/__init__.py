"""The ``nbremind`` command: ``nbremind run -- CMD``, ``test``, ``history``, ``outbox``,
``doctor``, ``schedule``, ``jobs`` and ``setup``.

Errors end the command with a one-line message on stderr and a non-zero status (2 for a
bad option value, naming the option and the value). Text output has control characters
escaped (:func:`~nbremind.core.parse.printable`), so names cannot reach the terminal raw.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..core.parse import printable, read_dash_values

__all__ = ["main"]

#: Exit status when the command to run could not be started (as a shell does).
EXIT_NOT_STARTED = 127
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse's parser (and so every subcommand's), taking ``--after -5s`` for a value."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        read_dash_values(self)


#: The subcommands, in the order ``nbremind --help`` lists them.
COMMANDS = ("run", "test", "history", "outbox", "doctor", "schedule", "jobs", "setup")


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``nbremind`` parser; with ``only`` (a subcommand's name), with that subcommand
    alone: a command line naming one builds (and imports) nothing for the others."""
    parser = _Parser(
        prog="nbremind",
        description="Tells you when long work needs you: run a command as a task, "
        "or check that notices reach you.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    adders = [_ADDERS[name] for name in (COMMANDS if only is None else (only,))]
    for add in dict.fromkeys(adders):  # history and outbox are added together, once
        add(sub)
    return parser


def _add_run(sub: Any) -> None:
    from ..core.options import COMMAND_OPTIONS, add_flags

    run = sub.add_parser(
        "run",
        help="run a command and notify when it ends or crosses a threshold",
        description="Run CMD as a task: its output passes through unchanged, signals are "
        "forwarded to it, and nbremind exits with its exit status (128+N when a signal N "
        "killed it, 124 when it passed --timeout, 137 when --mem-limit stopped it). When no "
        "channel could deliver its notices, one line on stderr says why.",
        usage="nbremind run [options] -- CMD [ARGS...]",
    )
    named = run.add_mutually_exclusive_group()
    named.add_argument(
        "--name",
        help="the task's name (default: the command line, shortened; "
        "for python SCRIPT, the script's file name)",
    )
    named.add_argument(
        "--job",
        metavar="NAME",
        help="run it as a run of the scheduled job NAME: a task of kind job named NAME "
        "(how nbremind schedule starts each run)",
    )
    run.add_argument(
        "--attempt",
        metavar="N[/M]",
        help="the attempt number of a retried run, shown in its notices ('attempt 2 of 3' for 2/3)",
    )
    add_flags(run, COMMAND_OPTIONS, with_help=True)
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="CMD [ARGS...]")


def _add_test(sub: Any) -> None:
    test = sub.add_parser(
        "test",
        help="send a test notice through each channel and say whether it was delivered",
        description="Send a test notice through each named (or configured) channel and "
        "print, per channel, 'delivered' or the reason it failed. Exits 1 when any failed.",
    )
    test.add_argument("channels", nargs="*", metavar="CHANNEL")


def _add_history(sub: Any) -> None:
    from .history import add_parsers  # history, outbox

    add_parsers(sub)


def _add_doctor(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor",
        help="explain what works on this machine, and why",
        description="Explain what works on this machine and why: the desktop backend "
        "(Linux: the D-Bus session bus and the notification service; Windows: the app id "
        "registration; macOS: the app bundle), the browser, the settings files and their "
        "errors, the default channels, the outbox backlog, the run history file, the GPUs "
        "NVIDIA's library sees and the memory limit mem_limit percents are of. Sends "
        "nothing. Exits 0 when everything the default channels and the settings need works, "
        "1 otherwise.",
    )
    doctor.add_argument(
        "--json",
        action="store_true",
        help='print {"ok": ..., "checks": [{"name", "ok", "required", '
        '"summary", "detail"}, ...], "memory_limit": {...}, ...} instead of text',
    )


def _add_schedule(sub: Any) -> None:
    from .schedule import add_parsers  # schedule, jobs

    add_parsers(sub)


def _add_setup(sub: Any) -> None:
    from .setup import add_parsers  # setup windows

    add_parsers(sub)


_ADDERS: dict[str, Callable[[Any], None]] = {
    "run": _add_run,
    "test": _add_test,
    "history": _add_history,
    "outbox": _add_history,
    "doctor": _add_doctor,
    "schedule": _add_schedule,
    "jobs": _add_schedule,
    "setup": _add_setup,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nbremind`` command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    # the first word names the subcommand (no option comes before it): build that one only
    parser = _parser(args[0] if args and args[0] in COMMANDS else None)
    ns = parser.parse_args(args)
    try:
        if ns.command == "run":
            return _run(ns)
        if ns.command in ("history", "outbox"):
            from .history import run_history, run_outbox

            return run_history(ns) if ns.command == "history" else run_outbox(ns)
        if ns.command == "doctor":
            return _doctor(ns)
        if ns.command in ("schedule", "jobs"):
            from .schedule import run_jobs, run_schedule

            return run_schedule(ns) if ns.command == "schedule" else run_jobs(ns)
        if ns.command == "setup":
            from .setup import run_setup

            return run_setup(ns)
        return _test(ns)
    except ValueError as exc:
        print(printable(f"nbremind {ns.command}: error: {exc}"), file=sys.stderr)
        return EXIT_USAGE


def _run(ns: argparse.Namespace) -> int:
    from .run import attempt_note, run_command

    command = list(ns.argv)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ValueError("no command given; put it after --, e.g. nbremind run -- make all")
    from ..core.options import COMMAND_OPTIONS, flag_values, parse_call_options

    options = {
        key: value for key, value in flag_values(ns, COMMAND_OPTIONS).items() if value is not None
    }
    parse_call_options("", flags=True, **options)  # checked here: errors name the flag
    notes = [] if ns.attempt is None else [attempt_note(ns.attempt)]
    if ns.job is not None and not ns.job.strip():
        raise ValueError("--job: the job's name is empty")
    try:
        if ns.job is not None:
            result = run_command(command, ns.job, kind="job", notes=notes, watchdog=True, **options)
        else:
            result = run_command(command, ns.name, notes=notes, **options)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"nbremind run: cannot run {command[0]!r}: {reason}", file=sys.stderr)
        return EXIT_NOT_STARTED
    if result.stopped:
        print(f"nbremind run: stopped: {result.stopped}", file=sys.stderr)
    if result.undelivered:
        print(printable(f"nbremind run: {result.undelivered}"), file=sys.stderr)
    return result.exit_code


def _test(ns: argparse.Namespace) -> int:
    from ..runtime.session import get_session

    results = get_session().test(ns.channels or None)
    width = max((len(name) for name in results), default=0)
    for name, outcome in results.items():
        print(printable(f"{name:<{width}}  {outcome}"))
    return 0 if results and all(o == "delivered" for o in results.values()) else 1


def _doctor(ns: argparse.Namespace) -> int:
    import json

    from ..doctor import collect

    report = collect()
    if ns.json:
        text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
    else:
        text = "\n".join(printable(line) for line in report.lines())
    try:
        print(text)
    except UnicodeEncodeError:  # a console that cannot show ✓ / ✗: replace what it cannot
        encoding = sys.stdout.encoding or "ascii"
        print(text.encode(encoding, "replace").decode(encoding))
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

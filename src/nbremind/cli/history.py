"""``nbremind history`` and ``nbremind outbox``: what ran, and what waits to be delivered."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..core.parse import parse_count, printable

__all__ = ["add_parsers", "run_history", "run_outbox"]


def add_parsers(sub: Any) -> None:
    """Add the ``history`` and ``outbox`` subcommands to the ``nbremind`` parser."""
    from ..api.history import KINDS

    history = sub.add_parser(
        "history",
        help="list recent runs: what ran, for how long, how it ended",
        description="List the recorded runs of every process (cells, remind() blocks, "
        "track() loops, pandas calls, nbremind run commands, scheduled jobs' runs), newest "
        "first, as a table or as JSON: top-level runs, each with the number of runs nested "
        "in it and of the short ones folded into it (how many, and their time: nested runs "
        "that succeeded faster than the history_min setting have no row of their own); "
        "--all lists every run.",
    )
    history.add_argument(
        "--all",
        action="store_true",
        dest="nested",
        help="list nested runs too (loops and calls inside another task; the short ones "
        "folded into their parent have no row)",
    )
    history.add_argument("--name", help="only runs of the task with this name")
    history.add_argument(
        "--kind",
        choices=KINDS,
        help="only runs of this kind of task (job: the runs of scheduled jobs; command: "
        "nbremind run)",
    )
    history.add_argument(
        "--state",
        choices=("running", "succeeded", "failed", "cancelled", "timed_out"),
        help="only runs that ended (or are) in this state",
    )
    history.add_argument(
        "--since",
        metavar="WHEN",
        help="only runs started since: a duration back from now (2h, 7d) "
        "or a date/time (2026-11-01, 2026-11-01T08:00)",
    )
    history.add_argument(
        "--limit", default="100", metavar="N", help="at most N runs (default 100; 0: all)"
    )
    history.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array of runs (name, state, start, end as "
        "ISO-8601, nested: the runs inside it, folded and folded_duration: the short runs "
        "counted in it and their seconds, and every other field)",
    )

    outbox = sub.add_parser(
        "outbox",
        help="show notices waiting to be delivered; --flush delivers leftovers now",
        description="Show how many deliveries are pending, delivered, failed and dropped, "
        "and list the pending ones. With --flush, take over the notices that ended "
        "processes left undelivered and deliver them now, printing each outcome (exit 1 "
        "when any failed).",
    )
    outbox.add_argument(
        "--flush", action="store_true", help="deliver what ended processes left undelivered, now"
    )


def run_history(ns: argparse.Namespace) -> int:
    """``nbremind history``: print the runs; a bad ``--since`` raises ``ValueError``."""
    from ..api.history import history_rows
    from ..api.history_format import json_row, table_lines
    from ..runtime.session import get_session
    from ..store.runs import History

    limit = parse_count(ns.limit, "--limit")
    config = get_session().config
    import time

    from ..store.runs import parse_since

    parse_since(ns.since, time.time(), "--since")  # a bad value: one line naming the option
    history = History.open(config)  # opened once: the work of opening it is the same at any size
    if history is None:
        from ..store.runs import history_path

        print(
            f"nbremind history: error: the run history is off or cannot be read "
            f"({history_path(config)})",
            file=sys.stderr,
        )
        return 1
    try:
        rows = history_rows(
            ns.name,
            ns.state,
            ns.since,
            limit or None,
            nested=ns.nested,
            kind=ns.kind,
            history=history,
        )
    finally:
        history.close()
    if ns.json:
        print(json.dumps([json_row(row) for row in rows], ensure_ascii=False, indent=1))
        return 0
    lines = table_lines(rows)
    print("\n".join(lines) if lines else "no runs recorded")
    return 0


def run_outbox(ns: argparse.Namespace) -> int:
    """``nbremind outbox [--flush]``."""
    from ..runtime.session import get_session

    session = get_session()
    outbox = session.outbox
    if outbox is None:
        print("nbremind outbox: error: the outbox is off or cannot be opened", file=sys.stderr)
        return 1
    print(printable(f"outbox: {outbox.path}"))
    if ns.flush:
        return _flush(session)
    stats = outbox.stats()
    print(
        "  "
        + ", ".join(
            f"{key}: {stats.get(key, 0)}"
            for key in ("pending", "delivered", "failed", "dropped", "notices")
        )
    )
    for record in outbox.pending():
        print(
            printable(
                f"  pending  {record.channel}  {record.title!r}  (task "
                f"{record.task_name!r}, pid {record.owner_pid} on {record.host}, "
                f"{record.attempts} tries)"
            )
        )
    return 0


def _flush(session: Any) -> int:
    future = session.replay_outbox()
    if future is not None:
        future.result(timeout=session.config.send_timeout * 4 + 30)
    replay = session.last_replay
    outbox = session.outbox
    if replay is None or outbox is None or not (replay.claimed or replay.dropped):
        print("  nothing to deliver: no notice left by an ended process")
        return 0
    failed = False
    for claimed in replay.claimed:
        for record in outbox.records(claimed.notice.id):
            outcome = record.state + (f": {record.last_error}" if record.last_error else "")
            failed = failed or record.state == "failed"
            print(printable(f"  {record.title!r} -> {record.channel}: {outcome}"))
    for dropped in replay.dropped:
        print(printable(f"  {dropped.title!r} -> {dropped.channel}: dropped: {dropped.reason}"))
    return 1 if failed else 0

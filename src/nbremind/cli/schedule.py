"""``nbremind schedule`` (the scheduler, in the foreground) and ``nbremind jobs`` (the jobs
of the settings files: when each runs next, how it ran last; ``jobs run NAME`` runs one now)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.parse import printable

if TYPE_CHECKING:
    from ..core.config import Config
    from ..core.jobs import Job
    from ..scheduler.service import Scheduler
    from ..store.runs import History
    from ..store.schedule import ScheduleStore

__all__ = ["add_parsers", "run_jobs", "run_schedule"]

#: How often the expected runs are judged (seconds).
EXPECT_EVERY = 5.0


def add_parsers(sub: Any) -> None:
    """Add ``schedule`` and ``jobs`` to the ``nbremind`` parser."""
    schedule = sub.add_parser(
        "schedule",
        help="run the jobs of the settings files at their times (in the foreground)",
        description="Run the jobs of the settings files ([jobs.NAME] tables) at their times, "
        "each as an 'nbremind run --job NAME' process, and tell when an expected run "
        "([expect.NAME]) did not come. One scheduler runs per project: a second one refuses "
        "to start. SIGTERM or Ctrl-C stops it (running jobs get SIGTERM, then SIGKILL).",
    )
    schedule.add_argument(
        "--install",
        action="store_true",
        help="print the unit that starts the scheduler at login (systemd, launchd or Task "
        "Scheduler) instead of running it",
    )
    schedule.add_argument("--write", action="store_true", help="with --install: write it")
    schedule.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics of the runs on this port (needs prometheus-client: "
        "pip install 'nbremind[metrics]')",
    )
    schedule.add_argument(
        "--metrics-host",
        metavar="HOST",
        help="with --metrics-port: the address to serve on (default 127.0.0.1)",
    )
    schedule.add_argument(
        "--force", action="store_true", help="with --write: replace a different unit file"
    )
    jobs = sub.add_parser(
        "jobs",
        help="list the jobs: schedule, next run, last run; 'jobs run NAME' runs one now",
        description="List the jobs of the settings files: each one's schedule, its next run "
        "(local time) and its last run (state, duration, when). 'nbremind jobs run NAME' runs "
        "one now, in the foreground, unless a run of it is going.",
    )
    jobs.add_argument("action", nargs="?", choices=["run"], help="run a job now")
    jobs.add_argument("name", nargs="?", metavar="NAME", help="the job to run")
    jobs.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _settings() -> tuple[Config, Path]:
    """The settings in force here and the project folder (the scheduler's scope)."""
    from ..settings.files import load_settings, project_root

    loaded = load_settings()
    for error in loaded.errors:
        print(printable(f"nbremind: settings: {error}"), file=sys.stderr)
    return loaded.config, project_root(Path.cwd()) or Path.cwd()


def _store(config: Config) -> ScheduleStore:
    from ..store.schedule import ScheduleStore

    store = ScheduleStore.open(config)
    if store is None:
        raise ValueError(
            "the scheduler keeps its state in the outbox file, which is off here "
            "(outbox = false, or its file cannot be used)"
        )
    return store


def run_schedule(ns: argparse.Namespace) -> int:
    """``nbremind schedule``: run until SIGTERM / Ctrl-C; the exit status."""
    config, scope = _settings()
    if ns.install:
        return _install(ns, scope)
    if ns.write or ns.force:
        raise ValueError("--write and --force go with --install")
    from ..scheduler.service import Scheduler
    from ..settings.jobs import load_jobs

    store = _store(config)
    served = None
    host = ns.metrics_host or "127.0.0.1"
    if ns.metrics_host is not None and ns.metrics_port is None:
        raise ValueError("--metrics-host goes with --metrics-port")
    if ns.metrics_port is not None:  # (before the lock: a port that cannot be used stops it)
        from .. import __version__
        from ..scheduler.metrics import serve

        served = serve(config, ns.metrics_port, host, __version__)
    from ..runtime.session import get_session

    live = get_session().settings  # the files' watcher: the jobs are read when it reloads
    scheduler = Scheduler(
        lambda: load_jobs(scope),
        store,
        str(scope),
        workdir=str(scope),
        observe=served.metrics.observe if served is not None else None,
        changed=(lambda: live.loads) if live is not None else None,
    )
    refused = scheduler.start()
    if refused is not None:
        print(printable(f"nbremind schedule: {refused}"), file=sys.stderr)
        if served is not None:
            served.close()
        return 1
    if served is not None:
        served.metrics.known(scheduler.slots)
        where = f"http://{f'[{host}]' if ':' in host else host}:{ns.metrics_port}/metrics"
        print(printable(f"nbremind schedule: metrics at {where}"), file=sys.stderr)
    stop = threading.Event()

    def stopping(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, stopping) for s in (signal.SIGTERM, signal.SIGINT)}
    expected = _expected_runs(config, store, scheduler)
    names = ", ".join(sorted(scheduler.slots)) or "none"
    print(printable(f"nbremind schedule: jobs: {names}; Ctrl-C stops"), file=sys.stderr)
    try:
        code = 0
        judged = float("-inf")
        while not stop.is_set():
            wait = scheduler.step()
            if wait is None:
                code = 1
                break
            now = scheduler.clock.time()
            if expected is not None and now - judged >= EXPECT_EVERY:
                judged = now
                verdicts = expected.check(scheduler.expected(), now)
                if served is not None:
                    served.metrics.judged(verdicts)
            stop.wait(wait)
    finally:
        scheduler.stop()
        if served is not None:
            served.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        from ..runtime.session import get_session

        get_session().flush(config.exit_timeout)
    return code


def _expected_runs(config: Config, store: ScheduleStore, scheduler: Scheduler) -> Any:
    """The dead-man's switch of ``scheduler``, telling through the process's session."""
    from ..runtime.session import get_session
    from ..scheduler.expect import ExpectedRuns
    from ..store.runs import History

    history = History.open(config)
    if history is None:
        print(
            "nbremind schedule: the run history is off: expected runs cannot be judged",
            file=sys.stderr,
        )
        return None
    session = get_session()

    def runs(name: str, since: float) -> list[dict[str, Any]]:
        return history.query(name=name, since=since, limit=50)

    def send(name: str, how: str, at: str, seconds: float) -> None:
        from ..core.notice import make_notice
        from ..core.options import TaskOptions

        task = session.new_task(name, kind="expect")
        notice = make_notice(
            "missed",
            task.snapshot(),
            created=session.clock.time(),
            key=f"{how}-{int(session.clock.time())}",
            detail=(how, at, seconds),
        )
        on, channels = scheduler.delivery(name)
        session.send(notice, TaskOptions(on=on, channels=channels))

    return ExpectedRuns(store, runs, send, scope=scheduler.scope)


def _install(ns: argparse.Namespace, scope: Path) -> int:
    from ..scheduler.install import unit, write

    made = unit(sys.platform, sys.executable, scope)
    if made.path is None:  # Windows: a Task Scheduler command, no file
        for line in made.enable:
            print(line)
        return 0
    if ns.write:
        path = write(made, force=ns.force)
        print(f"wrote {path}; to start it now and at each login:")
    else:
        print(made.text, end="" if made.text.endswith("\n") else "\n")
        print(f"# (nbremind schedule --install --write puts it in {made.path}), then:")
    for line in made.enable:
        print(line if ns.write else f"#   {line}")
    return 0


def run_jobs(ns: argparse.Namespace) -> int:
    """``nbremind jobs`` and ``nbremind jobs run NAME``. The listing shows the jobs that
    read well and exits with status 2 when a definition has an error (each said on
    stderr, naming the file, the table and the key)."""
    config, scope = _settings()
    from ..settings.jobs import load_jobs

    loaded = load_jobs(scope)
    for error in loaded.errors:
        print(printable(f"nbremind jobs: {error}"), file=sys.stderr)
    if ns.action == "run":
        if not ns.name:
            raise ValueError("give the job to run: nbremind jobs run NAME")
        job = loaded.jobs.get(ns.name)
        if job is None:
            known = ", ".join(sorted(loaded.jobs)) or "none"
            raise ValueError(f"no job named {ns.name!r}; jobs: {known}")
        return _run_now(job, _store(config), scope)
    from ..store.runs import History

    history = History.open(config)  # (once for every job listed)
    try:
        rows = [_row(job, history) for job in loaded.jobs.values()]
    finally:
        if history is not None:
            history.close()
    listed = 2 if loaded.errors else 0
    if ns.json:
        print(json.dumps(rows, indent=2))
        return listed
    if not rows:
        print("no jobs: add a [jobs.NAME] table to nbremind.toml (see the docs: Jobs)")
        return listed
    header = ("job", "schedule", "next run", "last run")
    table = [header] + [
        (r["name"], r["schedule"], r["next"] or "never", _last_text(r["last"])) for r in rows
    ]
    widths = [max(len(str(line[i])) for line in table) for i in range(4)]
    for line in table:
        print(
            printable(
                "  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
            )
        )
    return listed


def _row(job: Job, history: History | None) -> dict[str, Any]:
    from ..scheduler.timing import describe, next_fire

    now = dt.datetime.now(dt.timezone.utc)
    try:
        upcoming: dt.datetime | None = next_fire(job.schedule, now)
    except ValueError:
        upcoming = None
    return {
        "name": job.name,
        "schedule": describe(job.schedule),
        "next": upcoming.astimezone().strftime(_clock(job)) if upcoming else None,
        "last": _last_run(job.name, history),
        "source": job.source,
    }


def _clock(job: Job) -> str:
    """How a time of ``job`` is written: to the second for a job that runs more than once a
    minute, else to the minute."""
    every = job.schedule.every
    return "%Y-%m-%d %H:%M:%S" if every is not None and every < 60 else "%Y-%m-%d %H:%M"


def _last_run(name: str, history: History | None) -> dict[str, Any] | None:
    if history is None:
        return None
    for row in history.query(name=name, limit=10):
        if row.get("kind") == "job":
            start = row.get("start")
            return {
                "state": row.get("state"),
                "duration": row.get("duration"),
                "start": start,
                "when": dt.datetime.fromtimestamp(start).strftime("%Y-%m-%d %H:%M")
                if isinstance(start, (int, float))
                else None,
            }
    return None


def _last_text(last: dict[str, Any] | None) -> str:
    if last is None:
        return "never"
    from ..core.notice import format_duration

    duration = last.get("duration")
    took = f", {format_duration(duration)}" if isinstance(duration, (int, float)) else ""
    return f"{last.get('state')}{took}, {last.get('when')}"


def _run_now(job: Job, store: ScheduleStore, scope: Path) -> int:
    """Run ``job`` once now, in the foreground, through the run markers of ``scope`` (never
    twice at once: while a run a scheduler started still goes, refused). The marker is
    recorded in this process's name before the run starts, then names the run."""
    from ..scheduler.service import job_argv

    where = str(scope)
    me = store.owner.pid
    refused = store.begin_run(job.name, me, dt.datetime.now().timestamp(), scope=where)
    if refused is not None:
        if refused.error:
            raise ValueError(f"{job.name}: cannot record its run: {refused.error}")
        since = dt.datetime.fromtimestamp(refused.started).strftime("%H:%M:%S")
        raise ValueError(f"{job.name} is running (pid {refused.pid}, since {since})")
    cwd = str(scope / job.cwd) if job.cwd else where
    try:
        process = subprocess.Popen(
            job_argv(job, sys.executable), cwd=cwd, env={**os.environ, **dict(job.env)}
        )
    except BaseException:
        store.end_run(job.name, me, scope=where)
        raise
    store.hand_over(job.name, process.pid, scope=where)

    def forward(signum: int, frame: object) -> None:
        process.send_signal(signum)  # its nbremind run stops the command, recorded cancelled

    stops = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    in_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, forward) for s in stops} if in_main else {}
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        return process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        store.end_run(job.name, process.pid, scope=where)
        store.end_run(job.name, me, scope=where)  # (if it could not be handed over)

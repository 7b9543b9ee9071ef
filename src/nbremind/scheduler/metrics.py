"""Prometheus metrics of ``nbremind schedule`` (``--metrics-port PORT``).

The metrics live in a registry of their own (never the client library's global one) and are
served by ``prometheus_client.start_http_server`` on its own thread. The library is imported
only when the metrics are asked for (this module imports it inside its functions).

The scheduler tells of its runs through its ``observe`` hook (:meth:`SchedulerMetrics.observe`);
the command hands over what the expected runs were judged (:meth:`SchedulerMetrics.judged`).
The notices are sent by the runs' own ``nbremind run`` processes, so their counts come from
the shared outbox file: read when scraped, at most every :data:`NOTICES_EVERY` seconds.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from ..core.config import Config
    from ..store.outbox import Outbox
    from ..store.runs import History
    from .expect import Verdict

__all__ = [
    "ALL_CHANNELS",
    "DURATION_BUCKETS",
    "NOTICES_EVERY",
    "NoticeCounts",
    "SchedulerMetrics",
    "Served",
    "run_state",
    "serve",
]

#: Buckets of ``nbremind_job_run_duration_seconds``: 1 s to 24 h (batch jobs).
DURATION_BUCKETS = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    86400.0,
)
#: The outbox file is read at most this often (seconds), on a scrape.
NOTICES_EVERY = 5.0
#: The ``channel`` of deliveries the outbox keeps only as a count (a notice delivered on
#: every one of its channels at once is not stored with its channels, only counted).
ALL_CHANNELS = "*"
#: A delivery row seen within this many seconds of the last read is looked at again (rows
#: are stamped by other processes' clocks, and written a moment after they are stamped).
_SLACK = 60.0
#: The final outcomes of a delivery, as the outbox names them.
_OUTCOMES = ("delivered", "failed", "dropped")
#: Exit statuses of ``nbremind run`` when the command was stopped by SIGHUP, SIGINT or
#: SIGTERM passed on to it (128 + the signal): its run ends ``cancelled``.
_STOP_SIGNALS = tuple(
    int(getattr(signal, name)) for name in ("SIGHUP", "SIGINT", "SIGTERM") if hasattr(signal, name)
)
_CANCEL_CODES = frozenset({129, 130, 143} | {128 + s for s in _STOP_SIGNALS})
_EXIT_TIMED_OUT = 124
_SIGKILL_CODE = 137


def run_state(code: int, stopping: bool = False) -> str:
    """The end state of a job's run from the exit status of its ``nbremind run`` process
    (negative: the process itself was killed by that signal), as ``nbremind run`` records
    it: 0 ``succeeded``; 124 ``timed_out``; 129, 130, 143 (or killed by SIGHUP, SIGINT,
    SIGTERM) ``cancelled``; 137 (the memory limit) and any other ``failed``. ``stopping``:
    the scheduler was stopping it (SIGTERM, then SIGKILL), so a killed run is ``cancelled``.
    """
    if code == 0:
        return "succeeded"
    if code == _EXIT_TIMED_OUT:
        return "timed_out"
    if code in _CANCEL_CODES or (code < 0 and -code in _STOP_SIGNALS):
        return "cancelled"
    if stopping and (code < 0 or code == _SIGKILL_CODE):
        return "cancelled"
    return "failed"


class NoticeCounts:
    """``nbremind_notices_total{channel,outcome}``, from the shared outbox file.

    Counts the deliveries that reached a final outcome (delivered, failed, dropped) since
    this was made: each stored delivery row once, by its channel; the deliveries the outbox
    keeps only as a daily count by the growth of that count, as :data:`ALL_CHANNELS`. Reads
    the file at most every ``every`` seconds; a registry collector.
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        every: float = NOTICES_EVERY,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox = outbox
        self._every = every
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self.totals: dict[tuple[str, str], int] = {}
        #: Delivery rows counted already, with their ``updated`` time (recent ones only).
        self._seen: dict[tuple[str, str], float] = {}
        self._read_at = clock()
        self._looked = float("-inf")
        self._delivered = self._delivered_now()
        for record in outbox.records():
            if record.state in _OUTCOMES and record.updated > self._read_at - _SLACK:
                self._seen[(record.notice_id, record.channel)] = record.updated

    def _delivered_now(self) -> int | None:
        """The deliveries the file holds as delivered; ``None`` when it could not be read."""
        stats = self._outbox.stats()
        return int(stats["delivered"]) if "delivered" in stats else None

    def refresh(self, force: bool = False) -> None:
        """Read the outbox file, unless it was read less than ``every`` seconds ago."""
        with self._lock:
            if not force and self._monotonic() - self._looked < self._every:
                return
            self._looked = self._monotonic()
            now = self._clock()
            since = self._read_at - _SLACK
            delivered_rows = 0
            for record in self._outbox.records():
                key = (record.notice_id, record.channel)
                if record.state not in _OUTCOMES or record.updated <= since or key in self._seen:
                    continue
                self._seen[key] = record.updated
                self._add(record.channel, record.state, 1)
                delivered_rows += record.state == "delivered"
            delivered = self._delivered_now()
            if delivered is not None and self._delivered is not None:
                # (what grew besides the rows seen: the counted deliveries; old ones pruned
                # from the file make it shrink, which counts nothing)
                self._add(ALL_CHANNELS, "delivered", delivered - self._delivered - delivered_rows)
            if delivered is not None:  # (a file that could not be read: a new start from here)
                self._delivered = delivered
            self._read_at = now
            self._seen = {k: at for k, at in self._seen.items() if at > now - 2 * _SLACK}

    def _add(self, channel: str, outcome: str, count: int) -> None:
        if count > 0:
            key = (channel, outcome)
            self.totals[key] = self.totals.get(key, 0) + count

    def describe(self) -> Iterator[Metric]:
        """The metric family, without reading the file (the registry asks at registration)."""
        yield self._family({})

    def collect(self) -> Iterator[Metric]:
        """The counts, after reading the file if it is due."""
        self.refresh()
        with self._lock:
            totals = dict(self.totals)
        yield self._family(totals)

    @staticmethod
    def _family(totals: Mapping[tuple[str, str], int]) -> Metric:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(
            "nbremind_notices",
            "Deliveries of notices by channel and final outcome, from the outbox file",
            labels=["channel", "outcome"],
        )
        for (channel, outcome), count in sorted(totals.items()):
            family.add_metric([channel, outcome], count)
        return family


class SchedulerMetrics:
    """The scheduler's metrics, in a registry of their own (:attr:`registry`).

    ``last_success(job)`` gives the end time of a job's last succeeded run in the run
    history (``None``: none, or no history), asked once per job; ``outbox`` (optional) is
    read for the notices.
    """

    def __init__(
        self,
        version: str,
        *,
        last_success: Callable[[str], float | None] | None = None,
        outbox: Outbox | None = None,
        clock: Callable[[], float] = time.time,
        notices_every: float = NOTICES_EVERY,
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = CollectorRegistry()
        self._last_success = last_success
        self._clock = clock
        self._lock = threading.Lock()
        self._primed: set[str] = set()
        self._missed: set[tuple[str, float | None]] = set()
        reg = self.registry
        self.runs = Counter(
            "nbremind_job_runs",
            "Runs of each job that ended, by end state",
            ["job", "state"],
            registry=reg,
        )
        self.duration = Histogram(
            "nbremind_job_run_duration_seconds",
            "How long each job's runs took",
            ["job"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.last_success_at = Gauge(
            "nbremind_job_last_success_timestamp_seconds",
            "When each job's last succeeded run ended (Unix time)",
            ["job"],
            registry=reg,
        )
        self.running = Gauge(
            "nbremind_jobs_running", "Runs this scheduler started that are going", registry=reg
        )
        self.skipped = Counter(
            "nbremind_job_skipped",
            "Fires of each job skipped because it was still running (overlap = skip)",
            ["job"],
            registry=reg,
        )
        self.retries = Counter(
            "nbremind_job_retries",
            "Failed runs of each job that are tried again",
            ["job"],
            registry=reg,
        )
        self.missed = Counter(
            "nbremind_expectations_missed",
            "Expected runs that did not come (missed) or did not finish in time (late)",
            ["name"],
            registry=reg,
        )
        info = Gauge(
            "nbremind_scheduler_info", "The scheduler's nbremind version", ["version"], registry=reg
        )
        info.labels(version=version).set(1)
        self.notices = NoticeCounts(outbox, every=notices_every) if outbox is not None else None
        if self.notices is not None:
            reg.register(self.notices)

    def known(self, jobs: Iterable[str]) -> None:
        """Fill the last-success gauge of ``jobs`` from the run history (once per job)."""
        for job in jobs:
            self._prime(job)

    def _prime(self, job: str) -> None:
        with self._lock:
            if job in self._primed:
                return
            self._primed.add(job)
        if self._last_success is None:
            return
        at = self._last_success(job)
        if at is not None:
            self.last_success_at.labels(job=job).set(at)

    def observe(self, event: str, job: str, info: Mapping[str, Any]) -> None:
        """The scheduler's hook: ``"started"``, ``"ended"`` (``code``, ``state``,
        ``duration``), ``"skipped"`` or ``"retry"`` for a run of ``job``."""
        self._prime(job)
        if event == "started":
            self.running.inc()
        elif event == "ended":
            self.running.dec()
            state = str(info.get("state") or run_state(int(info.get("code", 1))))
            duration = info.get("duration")
            if isinstance(duration, (int, float)) and duration >= 0:
                self.duration.labels(job=job).observe(float(duration))
            self.runs.labels(job=job, state=state).inc()
            if state == "succeeded":
                self.last_success_at.labels(job=job).set(self._clock())
        elif event == "skipped":
            self.skipped.labels(job=job).inc()
        elif event == "retry":
            self.retries.labels(job=job).inc()

    def judged(self, verdicts: Iterable[Verdict]) -> None:
        """Count the expected runs found missed or late (each expected start once: a
        verdict is repeated at each look until a good run comes)."""
        for verdict in verdicts:
            if verdict.state not in ("missed", "late"):
                continue
            key = (verdict.name, verdict.expected)
            if key not in self._missed:
                self._missed.add(key)
                self.missed.labels(name=verdict.name).inc()

    def text(self) -> str:
        """The metrics in the text exposition format (as a scrape gets them)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode("utf-8")


class Served:
    """The metrics and their HTTP server (:meth:`close` stops it)."""

    def __init__(self, metrics: SchedulerMetrics, server: Any, closers: Iterable[Any]) -> None:
        self.metrics = metrics
        self._server = server
        self._closers = list(closers)

    def close(self) -> None:
        """Stop serving and close the files read."""
        self._server.shutdown()
        self._server.server_close()
        for closer in self._closers:
            closer.close()


def serve(config: Config, port: int, host: str = "127.0.0.1", version: str = "") -> Served:
    """Start serving the scheduler's metrics on ``host:port`` (``version``: nbremind's, for
    ``nbremind_scheduler_info``); ``ValueError`` (one line, naming the port) when the port
    cannot be used."""
    if not 0 < port < 65536:
        raise ValueError(f"--metrics-port {port}: give a port from 1 to 65535")
    try:
        from prometheus_client import start_http_server
    except ImportError:
        raise ValueError(
            "--metrics-port needs prometheus-client: pip install 'nbremind[metrics]'"
        ) from None
    from ..store.outbox import open_outbox
    from ..store.runs import History

    history = History.open(config)
    outbox = open_outbox(config)

    def last_success(job: str) -> float | None:
        return _last_success(history, job) if history is not None else None

    metrics = SchedulerMetrics(version, last_success=last_success, outbox=outbox)
    closers = [c for c in (history, outbox) if c is not None]
    try:
        server, _thread = start_http_server(port, host, registry=metrics.registry)
    except OSError as exc:
        for closer in closers:
            closer.close()
        why = exc.strerror or str(exc)
        raise ValueError(f"--metrics-port {port}: cannot serve on {host}:{port}: {why}") from None
    return Served(metrics, server, closers)


def _last_success(history: History, job: str) -> float | None:
    """The end of ``job``'s last succeeded run in ``history`` (a job's run, kind ``job``)."""
    for row in history.query(name=job, state="succeeded", limit=20):
        if row.get("kind") != "job":
            continue
        end, start, duration = row.get("end"), row.get("start"), row.get("duration")
        if isinstance(end, (int, float)):
            return float(end)
        if isinstance(start, (int, float)):
            return float(start) + (float(duration) if isinstance(duration, (int, float)) else 0)
    return None

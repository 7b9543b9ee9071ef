"""Expected runs, the dead-man's switch: notice when work that should have run did not.

An expectation (``[expect.NAME]`` in the settings files; every job has one for free) says
when a run of the task NAME should start: ``cron`` or ``every``, give or take ``grace``.
The work may be started by anything -- a system cron line, Airflow, a colleague's script --
as long as it reports through nbremind (``remind("NAME")``, ``nbremind run --name NAME``, a
job): its runs are in the run history. For the latest expected start ``E`` whose grace has
passed, a run counts when it started between ``E - grace`` and ``E + grace`` (and, with
``max_duration``, succeeded within it). When none does, one notice: "✗ nightly-etl did not
run (expected 02:00, grace 1 h)" (event ``missed``, urgent), or "✗ nightly-etl did not
finish (started 02:00, max 30 min)"; at the next good run after that, "✓ nightly-etl is
back". What was told is kept in the scheduler's store (per scope: the project's), so a
restart does not tell it again. The times are written to the second for a schedule that
fires more than once a minute ("expected 10:15:30").
Expected starts from before the scheduler first watched the expectation are not judged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .timing import last_fire, zone

if TYPE_CHECKING:
    from ..core.jobs import Expectation
    from ..store.schedule import ScheduleStore

__all__ = ["ExpectedRuns", "Verdict"]

#: ``send(name, how, expected "02:00", seconds)``: tell of an expectation's run.
Send = Callable[[str, str, str, float], None]
#: ``runs(name, since)``: the history's runs of ``name`` started at or after ``since``.
Runs = Callable[[str, float], list[dict[str, Any]]]


class Verdict:
    """What one look at an expectation found: ``"ok"``, ``"waiting"`` (the grace has not
    passed), ``"missed"``, ``"late"`` (started, did not succeed within ``max_duration``) or
    ``"back"``."""

    def __init__(self, name: str, state: str, expected: float | None) -> None:
        self.name = name
        self.state = state
        self.expected = expected

    def __repr__(self) -> str:
        return f"Verdict({self.name!r}, {self.state!r}, {self.expected!r})"


class ExpectedRuns:
    """Judges expectations against the run history, and tells of what did not come;
    what it remembers is kept in ``store`` under ``scope`` (the scheduler's)."""

    def __init__(self, store: ScheduleStore, runs: Runs, send: Send, scope: str = "") -> None:
        self._store = store
        self._runs = runs
        self._send = send
        self._scope = scope

    def check(self, expectations: Mapping[str, Expectation], now: float) -> list[Verdict]:
        """Judge each expectation at ``now`` (wall seconds); send what is new."""
        return [self._check(expectation, now) for expectation in expectations.values()]

    def _check(self, expectation: Expectation, now: float) -> Verdict:
        name = expectation.name
        state = dict(self._store.expectation_state(name, scope=self._scope) or {})
        if "since" not in state:  # first look: judge only what is expected from now on
            state["since"] = now
            self._store.set_expectation_state(name, state, scope=self._scope)
        grace = expectation.grace
        expected = last_fire(expectation.schedule, _utc(now - grace))
        missing_for = state.get("missing")
        if missing_for is not None and self._good_run_after(name, float(missing_for)):
            state.pop("missing", None)
            self._store.set_expectation_state(name, state, scope=self._scope)
            self._send(name, "back", "", 0.0)
            return Verdict(name, "back", float(missing_for))
        if expected is None:
            return Verdict(name, "waiting", None)
        at = expected.timestamp()
        if at < float(state["since"]) or state.get("told") == at:
            return Verdict(name, "ok" if state.get("told") != at else "missed", at)
        runs = self._runs(name, at - grace)
        started = [r for r in runs if (_start(r) or float("inf")) <= at + grace]
        how = None
        limit = expectation.max_duration
        if not started:
            how = "missed"
        elif limit is not None and not any(_done_within(r, limit) for r in started):
            first = min(_start(r) or at for r in started)
            if now < first + limit:
                return Verdict(name, "waiting", at)
            how = "late"
        if how is None:
            return Verdict(name, "ok", at)
        state["told"] = at
        state["missing"] = at
        self._store.set_expectation_state(name, state, scope=self._scope)
        every = expectation.schedule.every
        clock = "%H:%M:%S" if every is not None and every < 60 else "%H:%M"
        shown = expected.astimezone(zone(expectation.schedule)).strftime(clock)
        if how == "missed":
            self._send(name, "missed", shown, grace)
        else:
            first = min(_start(r) or at for r in started)
            began = _utc(first).astimezone(zone(expectation.schedule)).strftime(clock)
            self._send(name, "late", began, limit or 0.0)
        return Verdict(name, how, at)

    def _good_run_after(self, name: str, since: float) -> bool:
        """Whether a run of ``name`` started after ``since`` succeeded."""
        return any(
            r.get("state") == "succeeded" and (_start(r) or 0) > since
            for r in self._runs(name, since)
        )


def _start(row: Mapping[str, Any]) -> float | None:
    start = row.get("start")
    return float(start) if isinstance(start, (int, float)) else None


def _done_within(row: Mapping[str, Any], limit: float) -> bool:
    start, end = _start(row), row.get("end")
    return (
        row.get("state") == "succeeded"
        and start is not None
        and isinstance(end, (int, float))
        and end - start <= limit
    )


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)

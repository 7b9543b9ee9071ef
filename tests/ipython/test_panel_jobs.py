"""The panel's "Upcoming jobs": the rows read from a project folder's settings files and the
run history (in-process, a session following the folder), what the widget's model gets from
the session's loop thread (and again after an edit), the section drawn in Chromium, and a
real kernel started in a folder whose ``nbremind.toml`` defines a job."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _deadline import eventually
from _kernel import KernelFactory
from nbremind import Config, Session
from nbremind.channels.memory import MemoryChannel
from nbremind.core.task import Task, TaskState
from nbremind.ipython.panel_jobs import UpcomingJobs, job_rows, last_text, next_text
from nbremind.ipython.panel_rows import ROW_FIELDS
from nbremind.settings.live import follow
from nbremind.store.outbox import FILE_NAME
from nbremind.store.runs import History
from nbremind.testing import FakeClock

UTC = dt.timezone.utc
#: 23:50 UTC: the nightly job (02:00 UTC) is 2 h 10 min away, the 15-minute one 10 min.
NOW = dt.datetime(2026, 12, 1, 23, 50, tzinfo=UTC)
TWO_JOBS = """
[jobs.nightly]
command = "true"
cron = "0 2 * * *"
timezone = "UTC"

[jobs.often]
command = ["true"]
every = "15m"
timezone = "UTC"
"""


@pytest.fixture
def utc_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local time zone is UTC for this test (local times are then known)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def a_job_run(data: Path, name: str, state: TaskState, started: float) -> None:
    """A run of job ``name`` (kind ``job``, as ``nbremind run --job`` records one) that
    started at ``started`` (epoch seconds), in the history file of ``data``."""
    clock = FakeClock(wall=started)
    history = History(data / FILE_NAME, clock=clock)
    try:
        task = Task(name, clock=clock, kind="job", host="box")
        task.mark_started()
        clock.advance(60)
        task.mark_ended(state)
        assert history.record_end(task.snapshot())
        block = Task(name, clock=clock, kind="block", host="box")  # newer, not a job's run
        block.mark_started()
        block.mark_ended(TaskState.FAILED)
        assert history.record_end(block.snapshot())
    finally:
        history.close()


def following(folder: Path, tick_interval: float | None = None) -> Session:
    """A session delivering to memory whose settings follow ``folder``'s files (not watched:
    a test reloads them itself)."""
    session = Session(
        Config(channels=("memory",)),
        channels={"memory": MemoryChannel()},
        tick_interval=tick_interval,
    )
    assert follow(session, folder, watch=False) is not None
    return session


# -- the rows ----------------------------------------------------------------------------------


def test_rows_of_a_project_with_two_jobs_soonest_first_with_their_last_runs(
    tmp_path: Path, nbremind_data_dir: Path, utc_clock: None
) -> None:
    (tmp_path / "nbremind.toml").write_text(TWO_JOBS)
    a_job_run(nbremind_data_dir, "nightly", TaskState.SUCCEEDED, NOW.timestamp() - 3 * 3600 - 60)
    session = following(tmp_path)
    try:
        live = session.settings
        assert live is not None
        history = session.history_recorder.history
        model = job_rows(live.start, live.environ, history, now=NOW)
    finally:
        session.close()

    assert model["more"] == 0
    rows = model["rows"]
    assert [r["name"] for r in rows] == ["often", "nightly"]  # by next run
    often, nightly = rows
    assert often["schedule"] == "every 15 min (UTC)"
    assert often["next"] == "in 10 min (00:00)"
    assert (often["last_state"], often["last"]) == (None, "never")
    assert nightly["schedule"] == "0 2 * * * (UTC)"
    assert nightly["next"] == "in 2 h 10 min (02:00)"
    assert nightly["next_at"] == dt.datetime(2026, 12, 2, 2, 0, tzinfo=UTC).timestamp()
    assert nightly["next_clock"] == "02:00"
    # the job's run, not the newer block of the same name
    assert nightly["last_state"] == "succeeded"
    assert nightly["last_at"] == NOW.timestamp() - 3 * 3600 - 60
    assert nightly["last"] == "succeeded 3 h 1 min ago"


def test_at_most_ten_rows_and_how_many_more(tmp_path: Path, utc_clock: None) -> None:
    jobs = "".join(
        f'[jobs.job-{i:02}]\ncommand = "true"\ncron = "{i} 0 * * *"\ntimezone = "UTC"\n'
        for i in range(13)
    )
    (tmp_path / "nbremind.toml").write_text(jobs)

    model = job_rows(tmp_path, now=NOW)

    assert [r["name"] for r in model["rows"]] == [f"job-{i:02}" for i in range(10)]
    assert model["more"] == 3
    assert model["rows"][0]["next"] == "in 10 min (00:00)"


def test_no_jobs_or_a_bad_jobs_file_show_nothing(tmp_path: Path) -> None:
    assert job_rows(tmp_path, now=NOW) == {}
    (tmp_path / "nbremind.toml").write_text("[jobs]\n")
    assert job_rows(tmp_path, now=NOW) == {}
    (tmp_path / "nbremind.toml").write_text(TWO_JOBS + '\n[jobs.bad]\ncommand = "x"\n')
    assert job_rows(tmp_path, now=NOW) == {}  # its errors are for ``nbremind jobs``
    (tmp_path / "nbremind.toml").write_text("[jobs.nightly\n")
    assert job_rows(tmp_path, now=NOW) == {}


def test_texts_of_next_and_last_runs(utc_clock: None) -> None:
    at = NOW + dt.timedelta(hours=2, minutes=10)
    assert next_text(at, NOW) == "in 2 h 10 min (02:00)"
    assert next_text(NOW - dt.timedelta(seconds=5), NOW) == "due (23:49)"
    assert next_text(NOW + dt.timedelta(days=3), NOW) == "in 3 d (Fri 23:50)"
    assert next_text(NOW + dt.timedelta(days=30), NOW) == "in 30 d (2026-12-31 23:50)"
    assert next_text(None, NOW) == "never"
    assert last_text("failed", 1000.0, 1000.0 + 3 * 3600) == "failed 3 h ago"
    assert last_text("running", 1000.0, 1300.0) == "running (started 5 min ago)"
    assert last_text(None, None, 0.0) == "never"


def test_a_folder_without_jobs_reads_no_cron_library(tmp_path: Path) -> None:
    (tmp_path / "nbremind.toml").write_text("min_duration = 5\n")
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from nbremind import Config, Session
        from nbremind.ipython.panel_jobs import UpcomingJobs
        from nbremind.settings.live import follow
        session = Session(Config(channels=("null",)), tick_interval=None)
        follow(session, Path({str(tmp_path)!r}), watch=False)
        jobs = UpcomingJobs(session)
        assert jobs.due(0.0) and jobs.update() == {{}} and jobs.reads == 1
        print("cronsim" in sys.modules)
        session.close()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_session_following_no_settings_files_reads_nothing() -> None:
    session = Session(Config(channels=("memory",)), channels={"memory": MemoryChannel()})
    try:
        jobs = UpcomingJobs(session)
        assert not jobs.due(0.0) and not jobs.due(1e9)
        assert jobs.update() == {} and jobs.reads == 0
    finally:
        session.close()


def test_read_again_every_30_s_and_after_each_reload(tmp_path: Path) -> None:
    session = following(tmp_path)
    try:
        jobs = UpcomingJobs(session)
        assert jobs.due(100.0)
        jobs.update(100.0)
        assert not jobs.due(101.0) and not jobs.due(129.9)
        assert jobs.due(130.0)
        live = session.settings
        assert live is not None
        live.load()  # what the watcher does when a settings file changes
        assert jobs.due(101.0)
    finally:
        session.close()


# -- the widget's model, kept by the loop thread -----------------------------------------------


def test_the_panel_model_gets_the_jobs_from_the_loop_and_follows_an_edit(
    tmp_path: Path, nbremind_data_dir: Path
) -> None:
    from nbremind.ipython.panel import panel, panel_of

    (tmp_path / "nbremind.toml").write_text(TWO_JOBS)
    a_job_run(nbremind_data_dir, "nightly", TaskState.FAILED, time.time() - 600)
    session = following(tmp_path, tick_interval=0.1)
    try:
        widget = panel(session)
        current = panel_of(session)
        assert current is not None
        # the first view already has them (read on the loop while the panel was primed)
        assert [r["name"] for r in widget.jobs["rows"]] in (
            ["often", "nightly"],
            ["nightly", "often"],
        )
        assert "jobs" in widget.keys  # synced to the front end
        assert current.state(time.monotonic(), sample=False)["jobs"] == widget.jobs
        nightly = next(r for r in widget.jobs["rows"] if r["name"] == "nightly")
        assert nightly["last_state"] == "failed" and nightly["last"] == "failed 10 min ago"
        assert nightly["next"].startswith("in ")
        reads = current.jobs.reads

        with (tmp_path / "nbremind.toml").open("a") as handle:
            handle.write('\n[jobs.weekly]\ncommand = "true"\ncron = "@weekly"\n')
        live = session.settings
        assert live is not None
        live.load()  # the watcher's reload
        eventually(lambda: len(widget.jobs.get("rows", [])) == 3, 10, "the edit in the panel")
        assert current.jobs.reads == reads + 1
        assert "weekly" in {r["name"] for r in widget.jobs["rows"]}

        (tmp_path / "nbremind.toml").write_text("")
        live.load()
        eventually(lambda: widget.jobs == {}, 10, "the jobs to go")
    finally:
        session.close()


# -- the front end in Chromium -----------------------------------------------------------------

JOB_ROWS = [
    {
        "name": "often",
        "schedule": "every 15 min",
        "next_at": None,
        "next_clock": "00:00",
        "next": "in 10 min (00:00)",
        "last_state": None,
        "last_at": None,
        "last": "never",
    },
    {
        "name": "<b>nightly</b>",
        "schedule": "0 2 * * * (UTC)",
        "next_at": None,
        "next_clock": "02:00",
        "next": "in 2 h 10 min (02:00)",
        "last_state": "failed",
        "last_at": None,
        "last": "failed 3 h ago",
    },
]
PANEL = {
    "view": "panel",
    "fields": list(ROW_FIELDS),
    "rows": [],
    "channels": [],
    "default_note": "",
    "summary": "0 running · 0 finished",
    "muted": False,
    "jobs": {},
}
JOBS_JS = """() => {
  const section = document.querySelector('.nbremind-panel .nbremind-jobs');
  return {
    hidden: section.hidden,
    shown: section.getClientRects().length > 0,
    title: section.querySelector('.nbremind-jobs-title').textContent,
    rows: [...section.querySelectorAll('tr.nbremind-job')].map((tr) =>
      [...tr.querySelectorAll('td')].map((td) => td.textContent)),
    states: [...section.querySelectorAll('tr.nbremind-job')].map((tr) => tr.dataset.lastState),
    more: section.querySelector('.nbremind-jobs-more').hidden
      ? null : section.querySelector('.nbremind-jobs-more').textContent,
    markup: section.querySelectorAll('b').length,
  };
}"""


@pytest.mark.browser
def test_the_jobs_section_is_hidden_without_jobs_and_lists_two(widget_page: Any) -> None:
    page = widget_page
    page.evaluate("(state) => { window.m = openModel(state); renderView(window.m); }", PANEL)

    drawn = page.evaluate(JOBS_JS)
    assert drawn["hidden"] is True and drawn["shown"] is False and drawn["rows"] == []

    page.evaluate("(jobs) => window.__models[window.m].update({ jobs })", {"rows": JOB_ROWS})
    drawn = page.evaluate(JOBS_JS)
    assert drawn["hidden"] is False and drawn["shown"] is True
    assert drawn["title"] == "Upcoming jobs"
    assert drawn["rows"] == [
        ["often", "every 15 min", "in 10 min (00:00)", "never"],
        ["<b>nightly</b>", "0 2 * * * (UTC)", "in 2 h 10 min (02:00)", "failed 3 h ago"],
    ]
    assert drawn["states"] == ["", "failed"]
    assert drawn["markup"] == 0 and drawn["more"] is None  # names are text

    page.evaluate(
        "(jobs) => window.__models[window.m].update({ jobs })", {"rows": JOB_ROWS[:1], "more": 12}
    )
    drawn = page.evaluate(JOBS_JS)
    assert [r[0] for r in drawn["rows"]] == ["often"] and drawn["more"] == "… and 12 more"

    page.evaluate("() => window.__models[window.m].update({ jobs: {} })")
    assert page.evaluate(JOBS_JS)["hidden"] is True


@pytest.mark.browser
def test_a_live_panel_counts_the_next_and_last_runs_on(widget_page: Any) -> None:
    page = widget_page
    now = time.time()
    rows = [
        {**JOB_ROWS[1], "next_at": now + 7830, "last_state": "succeeded", "last_at": now - 3 * 3600}
    ]
    state = {**PANEL, "beat": now, "clock": now, "jobs": {"rows": rows}}
    page.evaluate("(state) => { window.m = openModel(state); renderView(window.m); }", state)

    drawn = page.evaluate(JOBS_JS)
    assert drawn["rows"][0][2] == "in 2 h 10 min (02:00)"
    assert drawn["rows"][0][3] == "succeeded 3 h ago"
    # a run that came due: the page says so without waiting for the kernel's next read
    due = [{**rows[0], "next_at": now - 1}]
    page.evaluate("(jobs) => window.__models[window.m].update({ jobs })", {"rows": due})
    assert page.evaluate(JOBS_JS)["rows"][0][2] == "due (02:00)"


# -- a real kernel -----------------------------------------------------------------------------


@pytest.mark.kernel
def test_remind_panel_in_a_kernel_lists_the_projects_job(kernel_factory: KernelFactory) -> None:
    k = kernel_factory()
    (k.workdir / "nbremind.toml").write_text(
        '[jobs.nightly-etl]\ncommand = "true"\ncron = "30 2 * * *"\n'
    )
    k.ok("%load_ext nbremind\nimport nbremind\nnbremind.configure(channels=['memory'])")
    shown = k.ok("%remind panel")

    def jobs() -> Any:
        found = k.query("from nbremind.ipython.panel import panel\nresult = panel().jobs")
        return found if found and found.get("rows") else None

    model = eventually(jobs, 30, "the job in the kernel's panel")
    assert [r["name"] for r in model["rows"]] == ["nightly-etl"]
    row = model["rows"][0]
    assert row["schedule"] == "30 2 * * * (local)"
    assert row["next"].startswith("in ") and row["next"].endswith(":30)")
    assert row["last"] == "never"
    # what the front end was sent: the widget's state carries the same rows
    sent = [
        m["content"]["data"].get("state", {}).get("jobs")
        for m in shown.messages
        if m["header"]["msg_type"] in ("comm_open", "comm_msg")
    ]
    assert any(j and [r["name"] for r in j.get("rows", [])] == ["nightly-etl"] for j in sent)

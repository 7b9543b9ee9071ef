"""A running task with a usual duration shows it ("usually 25 min") and an ETA from it in
its status line and its panel row, with or without ``--slower``; an unnamed cell's usual
duration is that of earlier runs of the same code, in a real kernel with a real history."""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _kernel import KernelFactory
from _widgets import comm_tap, running_row, send_to_widget
from nbremind import Config, Session
from nbremind.channels.memory import MemoryChannel
from nbremind.core.notice import format_duration
from nbremind.core.task import Task
from nbremind.ipython.frontend import code_key
from nbremind.ipython.panel_rows import ROW_FIELDS, RowBuilder, listed_tasks
from nbremind.ipython.status_line import line_text
from nbremind.store.outbox import FILE_NAME
from nbremind.testing import FakeClock

AT = {name: i for i, name in enumerate(ROW_FIELDS)}


@pytest.fixture
def session(clock: FakeClock) -> Iterator[Session]:
    s = Session(
        Config(channels=("memory",), outbox=False),
        clock=clock,
        channels={"memory": MemoryChannel()},
        tick_interval=None,
    )
    yield s
    s.close()


def started(session: Session, name: str, total: int | None = None) -> Task:
    task = session.new_task(name, total=total)
    session.start(task)
    return task


def row_of(builder: RowBuilder, session: Session, task: Task) -> dict[str, Any]:
    rows = builder.rows(listed_tasks(session.tasks(), 50))
    [row] = [r for r in rows if r[AT["id"]] == task.id]
    return dict(zip(ROW_FIELDS, row, strict=True))


# -- in-process: the texts ---------------------------------------------------------------------
def test_status_line_shows_the_usual_duration_and_the_eta_from_it(
    session: Session, clock: FakeClock
) -> None:
    task = started(session, "etl")
    clock.advance(180)
    assert line_text(task) == "▶ etl · 3 min"  # no usual duration (yet): nothing said
    task.usual = 1500.0  # what the history gave it
    assert line_text(task) == "▶ etl · 3 min · ETA 22 min · usually 25 min"
    clock.advance(1500)
    assert line_text(task) == "▶ etl · 28 min · usually 25 min"  # past it: no ETA from it
    session.finish(task)
    assert line_text(task).startswith("✓ etl finished in ")
    assert "usually" not in line_text(task)


def test_status_line_eta_from_progress_once_there_is_some(
    session: Session, clock: FakeClock
) -> None:
    task = started(session, "etl", total=100)
    task.usual = 1500.0
    clock.advance(60)
    assert line_text(task) == "▶ etl 0% (0/100) · 1 min · ETA 24 min · usually 25 min"
    task.advance(50)
    task.sample_rate(clock.monotonic())
    assert task.eta == pytest.approx(60)
    assert line_text(task) == "▶ etl 50% (50/100) · 1 min · ETA 1 min · usually 25 min"


def test_panel_row_shows_the_usual_duration_and_counts_its_eta_down(
    session: Session, clock: FakeClock
) -> None:
    builder = RowBuilder(session.last_notice)
    task = started(session, "etl")
    clock.advance(180)
    first = row_of(builder, session, task)
    assert (first["eta"], first["usual"]) == ("", "")
    task.usual = 1500.0  # set after the row was made: the row is made again
    row = row_of(builder, session, task)
    assert (row["eta"], row["usual"]) == ("22 min", "usually 25 min")
    clock.advance(120)
    assert row_of(builder, session, task)["eta"] == "20 min"  # the ETA counts down
    clock.advance(1)
    same = builder.rows(listed_tasks(session.tasks(), 50))
    assert same[0] is builder.rows(listed_tasks(session.tasks(), 50))[0]  # unchanged: reused
    session.finish(task)
    done = row_of(builder, session, task)
    assert (done["eta"], done["usual"]) == ("", "")


# -- the front end in Chromium -------------------------------------------------------------------
@pytest.mark.browser
def test_panel_front_end_shows_the_usual_duration_in_the_eta_cell(widget_page: Any) -> None:
    page = widget_page
    fields = list(ROW_FIELDS)

    def row(task_id: str, eta: str, usual: str) -> list[Any]:
        return running_row(task_id, elapsed="3 min", eta=eta, usual=usual)

    state = {
        "view": "panel",
        "fields": fields,
        "rows": [
            row("a", "22 min", "usually 25 min"),
            row("b", "", "usually 25 min"),
            row("c", "5 s", ""),
        ],
        "channels": [],
        "summary": "3 running",
        "muted": False,
    }
    page.evaluate("(state) => { window.m = openModel(state); renderView(window.m); }", state)
    etas = page.evaluate(
        "() => [...document.querySelectorAll('.nbremind-task .nbremind-eta')]"
        ".map((td) => td.textContent)"
    )
    assert etas == ["22 min · usually 25 min", "usually 25 min", "5 s"]


# -- a real kernel ---------------------------------------------------------------------------------
SYNC = "import nbremind\nresult = nbremind.get_session().history_recorder.sync()"
LOAD = "%load_ext nbremind\nimport nbremind\nnbremind.configure(channels=['memory'])\n"
#: The same code, run unnamed: its runs are one work whatever its options.
CODE = "import time\ntime.sleep(pause)"
#: Other code with the same default name (``time.sleep(pause)``): other work, here faster
#: (its usual duration would make ``--slower 2`` fire at once, and say so).
OTHER = "import time\n# other\ntime.sleep(pause)"


def _succeeded(path: Path) -> dict[str, list[float]]:
    db = sqlite3.connect(path)
    rows = db.execute(
        "SELECT usual_key, duration FROM runs WHERE state = 'succeeded' ORDER BY start"
    ).fetchall()
    db.close()
    found: dict[str, list[float]] = {}
    for key, duration in rows:
        found.setdefault(key, []).append(duration)
    return found


@pytest.mark.kernel
def test_an_unnamed_cell_gets_its_usual_duration_from_runs_of_the_same_code(
    kernel_factory: KernelFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    k = kernel_factory(env={"NBREMIND_DATA_DIR": str(data)})
    k.ok(LOAD + "pause = 1.5")
    for _ in range(3):
        k.ok(f"%%remind --quiet\n{CODE}")
    k.ok("pause = 0.1")
    for _ in range(3):
        k.ok(f"%%remind --quiet\n{OTHER}")
    assert k.query(SYNC)
    runs = _succeeded(data / FILE_NAME)
    same, other = code_key(CODE), code_key(OTHER)
    assert len(runs[same]) == 3 and len(runs[other]) == 3
    usual = statistics.median(runs[same])
    assert statistics.median(runs[other]) < 1.0 < usual
    k.ok("pause = 3.5\nfrom nbremind.ipython.panel import panel\npanel()")
    comm = k.query("from nbremind.ipython.panel import panel\nresult = panel().model_id")
    with comm_tap(k) as tap:
        send_to_widget(k, comm, {"method": "request_state"})  # a page shows the panel
        tap.pump(0.5)
        r = k.ok(f"%%remind --slower 2\n{CODE}")
        tap.pump(0.5)
    shown = f"usually {format_duration(usual)}"
    # the live status line said it while the cell ran, with the ETA from it at first
    [line] = [i for i, s in tap.opened().items() if s.get("view") == "status"]
    texts = [s["text"] for s in [tap.opened()[line], *tap.updates(line)] if "text" in s]
    running = [t for t in texts if t.startswith("▶")]
    assert running and running[-1].endswith(f" · {shown}"), texts
    assert any(" · ETA " in t and t.endswith(f" · {shown}") for t in running), texts
    # the panel row too (its "usual" field, drawn in the ETA cell)
    sent = json.dumps([u for u in tap.updates(comm) if "rows" in u or "delta" in u])
    assert json.dumps(shown) in sent
    # the slower notice compared it with the runs of the same code, not with the other's
    titles = [t for t in k.titles() if "slower" in t]
    assert len(titles) == 1, k.titles()
    assert re.fullmatch(
        rf"🐢 time\.sleep\(pause\) slower than usual: .+ so far, {re.escape(shown)}", titles[0]
    )
    tasks = k.query(
        "import nbremind\n"
        "result = [t.usual for t in nbremind.get_session().tasks() if t.kind == 'cell']"
    )
    assert tasks[-1] == pytest.approx(usual)
    assert r.status == "ok"
    # the run is counted for the next one (its key is the code's, whatever its options), so
    # is the same code run as an auto cell; a named cell's key is its kind and name
    k.ok("pause = 0.01")
    k.ok("%remind auto 1s")
    k.ok(CODE)
    k.ok("%remind auto off")
    k.ok("%%remind named --quiet\npass")
    assert k.query(SYNC)
    runs = _succeeded(data / FILE_NAME)
    assert len(runs[same]) == 5 and len(runs["cell:named"]) == 1
    db = sqlite3.connect(data / FILE_NAME)
    kinds = [kind for (kind,) in db.execute("SELECT kind FROM runs WHERE usual_key = ?", (same,))]
    db.close()
    assert sorted(kinds) == ["auto", "cell", "cell", "cell", "cell"]

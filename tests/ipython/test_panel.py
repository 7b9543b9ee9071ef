"""The live panel and the ``%%remind`` status line: their data, their refresh budget (at most
four front-end messages a second whatever the number of tasks), the mute switch, and the
front end drawing them (text only).

Three levels: the rows as plain data (in-process), the widgets refreshed by a session's real
loop thread with their comm sends counted (in-process), and a real ipykernel whose IOPub
traffic is read as a notebook front end reads it. The front-end module itself is exercised
in headless Chromium at the end of the file.
"""

from __future__ import annotations

import contextvars
import json
import re
import threading
import time
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pytest

from _frontend_js import ESM
from _kernel import Kernel, KernelFactory, strip_ansi
from _widgets import WIDGET_VIEW, comm_tap, send_to_widget, widget_views
from nbremind import Config, Session
from nbremind.channels.memory import MemoryChannel
from nbremind.core.task import Task, TaskError
from nbremind.ipython.panel_rows import ROW_FIELDS, UPDATE_BYTES, RowBuilder, RowSync, listed_tasks
from nbremind.ipython.texts import status_text
from nbremind.testing import FakeClock

EVIL = "<img src=x onerror=alert(1)>"
AT = {name: i for i, name in enumerate(ROW_FIELDS)}


def make_session(clock: FakeClock | None = None, **config: Any) -> Session:
    channel = MemoryChannel()
    return Session(
        Config(channels=("memory",), **config),
        clock=clock,
        channels={"memory": channel},
        tick_interval=None,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def session(clock: FakeClock) -> Iterator[Session]:
    s = make_session(clock)
    yield s
    s.close()


def start(
    session: Session, name: str, parent: Task | None = None, total: int | None = None
) -> Task:
    """Start a task under ``parent``, else at the top level (in a context of its own, as each
    of many worker threads would start one)."""

    def make() -> Task:
        task = session.new_task(name, total=total, parent=parent)
        session.start(task)
        return task

    return contextvars.Context().run(make)


def rows_of(session: Session, keep: int = 50) -> list[dict[str, Any]]:
    rows = RowBuilder(session.last_notice).rows(
        listed_tasks(session.tasks(), keep), _no_resources()
    )
    return [dict(zip(ROW_FIELDS, row, strict=True)) for row in rows]


def _no_resources() -> Any:
    from nbremind.runtime.sampling import Usage

    return Usage()


# -- rows: which tasks, in which order, with which texts -------------------------------------


def test_rows_are_in_tree_order_with_the_nesting_depth(session: Session) -> None:
    outer = start(session, "outer")
    load = start(session, "load", parent=outer, total=10)
    chunk = start(session, "chunk", parent=load)
    session.finish(chunk)
    other = start(session, "other")
    save = start(session, "save", parent=outer)

    rows = rows_of(session)

    assert [(r["name"], r["depth"]) for r in rows] == [
        ("outer", 0),
        ("load", 1),
        ("chunk", 2),
        ("save", 1),
        ("other", 0),
    ]
    assert [r["id"] for r in rows] == [outer.id, load.id, chunk.id, save.id, other.id]
    assert {r["name"]: r["state"] for r in rows}["chunk"] == "succeeded"


def test_running_tasks_always_listed_finished_ones_up_to_panel_keep(
    session: Session, clock: FakeClock
) -> None:
    running = start(session, "still going")
    for i in range(60):
        session.finish(start(session, f"done {i}"))
        clock.advance(0.1)

    names = [r["name"] for r in rows_of(session, keep=50)]

    assert names[0] == "still going" and len(names) == 51
    assert names[1:] == [f"done {i}" for i in range(10, 60)]
    assert [r["name"] for r in rows_of(session, keep=0)] == ["still going"]
    session.finish(running)


def test_a_child_whose_parent_is_not_listed_moves_up_to_its_listed_ancestor(
    session: Session, clock: FakeClock
) -> None:
    root = start(session, "root")
    middle = start(session, "middle", parent=root)
    leaf = start(session, "leaf", parent=middle)  # e.g. a worker thread's task
    session.finish(middle)
    clock.advance(1)
    session.finish(leaf)
    # only the most recently finished task is kept: "leaf", not its parent "middle"
    assert [(r["name"], r["depth"]) for r in rows_of(session, keep=1)] == [
        ("root", 0),
        ("leaf", 1),
    ]
    session.finish(root)


def test_row_texts_for_running_and_finished_tasks(session: Session, clock: FakeClock) -> None:
    task = start(session, "train", total=100)
    task.advance(40)
    clock.advance(2.0)
    unknown = start(session, "stream")
    unknown.advance(7)

    train, stream = rows_of(session)

    assert train["state"] == "running" and train["state_text"] == "▶ running"
    assert (train["value"], train["max"], train["count"]) == (40, 100, "40/100")
    assert train["rate"] == "20.0/s" and train["elapsed"] == "2.0 s" and train["eta"] == "3.0 s"
    assert (stream["value"], stream["max"], stream["count"]) == (None, None, "7")

    task.advance(60)
    session.finish(task)
    session.finish(unknown, ValueError("bad row"))
    session.flush()
    train, stream = rows_of(session)
    assert (train["state"], train["state_text"], train["eta"]) == ("succeeded", "✓ succeeded", "")
    assert (train["value"], train["max"]) == (100, 100)
    assert train["notice"] == "✓ train finished"
    assert (stream["state"], stream["state_text"]) == ("failed", "✗ failed")
    assert stream["notice"] == "✗ stream failed"


def test_a_task_counting_bytes_shows_sizes(session: Session, clock: FakeClock) -> None:
    task = start(session, "read", total=1_294_511)
    task.unit = "B"  # as track() sets it for a chunked pandas reader
    task.advance(647_000)
    clock.advance(2.0)

    [row] = rows_of(session)
    assert (row["count"], row["rate"]) == ("647 kB / 1.3 MB", "324 kB/s")
    assert (row["value"], row["max"]) == (647_000, 1_294_511)  # the bar keeps the numbers
    task.set(1_294_511)
    session.finish(task)
    [row] = rows_of(session)
    assert row["count"] == "1.3 MB / 1.3 MB"


def test_a_chunked_pandas_reader_shows_its_bytes(session: Session, tmp_path: Any) -> None:
    pd = pytest.importorskip("pandas")
    from nbremind import track

    path = tmp_path / "rows.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(50_000)))
    for _chunk in track(pd.read_csv(path, chunksize=10_000), "rows", session=session):
        pass

    [row] = rows_of(session)
    size = path.stat().st_size
    assert 100_000 < size < 1_000_000
    assert row["name"] == "rows" and row["count"] == f"{size / 1e3:.0f} kB / {size / 1e3:.0f} kB"


def test_names_are_plain_data_in_the_state_sent(session: Session) -> None:
    session.finish(start(session, EVIL))
    session.flush()

    [row] = rows_of(session)
    wire = json.loads(json.dumps(row))

    # the exact characters the user typed, as a JSON string: no markup added or interpreted
    assert wire["name"] == EVIL
    assert wire["notice"] == f"✓ {EVIL} finished"
    assert all(isinstance(v, (str, int, type(None))) for v in wire.values())


def test_the_front_end_builds_no_markup_from_data() -> None:
    source = ESM.read_text(encoding="utf-8")
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("//"))
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "srcdoc",
        "DOMParser",
    ):
        assert sink not in code, f"nbremind.js uses {sink}"
    assert "textContent" in code


# -- the status line's text ----------------------------------------------------------------------


def test_status_text_while_running_and_at_each_end(session: Session, clock: FakeClock) -> None:
    task = start(session, "train", total=100)
    task.advance(40)
    clock.advance(2.0)
    assert status_text(task) == "▶ train 40% (40/100) · 2.0 s · ETA 3.0 s"

    session.finish(task)
    assert status_text(task) == "✓ train finished in 2.0 s"

    failed = start(session, "load")
    clock.advance(4)
    session.finish(failed, ValueError("bad row 2"))
    assert status_text(failed) == "✗ load failed after 4.0 s: ValueError: bad row 2"

    cancelled = start(session, "wait")
    session.finish(cancelled, KeyboardInterrupt())
    assert status_text(cancelled).startswith("■ wait cancelled after ")

    bare = start(session, "cell")
    assert status_text(bare) == "▶ cell · 0.0 s"
    bare.advance(3)
    assert status_text(bare) == "▶ cell 3 · 0.0 s"
    inner = start(session, "rows", parent=bare, total=8)
    inner.advance(2)
    assert status_text(bare, inner) == "▶ cell · rows 25% (2/8) · 0.0 s"


def test_status_text_of_a_task_counting_bytes_shows_sizes(
    session: Session, clock: FakeClock
) -> None:
    task = start(session, "load", total=1_294_511)
    task.unit = "B"
    task.advance(647_000)
    clock.advance(1.0)
    assert status_text(task).startswith("▶ load 50% (647 kB / 1.3 MB) · 1.0 s")


def test_status_text_shortens_long_errors(session: Session) -> None:
    task = start(session, "t")
    session.finish(task, RuntimeError("x" * 300))
    assert task.error == TaskError("RuntimeError", "x" * 200 + "…")
    assert len(status_text(task)) < 160 and status_text(task).endswith("…")


# -- in-process widgets on a real loop thread: what is sent, how often ----------------------------


class Sent:
    """Counts the messages a widget hands to its comm (what would reach the front end)."""

    def __init__(self, widget: Any) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        original = widget._send

        def send(msg: dict[str, Any], buffers: Any = None) -> None:
            with self._lock:
                self.messages.append(msg)
            original(msg, buffers)

        widget._send = send

    def updates(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m["state"] for m in self.messages if m.get("method") == "update"]


def apply_delta(rows: list[list[Any]], seq: int, delta: dict[str, Any]) -> int:
    """What the page does with a delta (``nbremind.js`` ``applyDelta``), on ``rows`` in
    place; returns the new seq. A delta must follow the one before: no gap."""
    if "reset" in delta:
        rows[:] = [list(r) for r in delta["reset"]]
        return int(delta["seq"])
    assert delta["base"] == seq, f"a gap: delta {delta['seq']} on {delta['base']}, rows at {seq}"
    adds = delta.get("add", [])
    gone = set(delta.get("remove", [])) | {row[0] for _after, row in adds}
    following: dict[Any, list[list[Any]]] = {}
    for after, row in adds:  # each right after the row of task ``after`` (None: first)
        following.setdefault(after, []).append(list(row))
    out: list[list[Any]] = []

    def put(row: list[Any]) -> None:
        out.append(row)
        for nxt in following.get(row[0], []):
            put(nxt)

    for row in following.get(None, []):
        put(row)
    for row in rows:
        if row[0] not in gone:
            put(row)
    rows[:] = out
    by_id = {r[0]: r for r in rows}
    for entry in delta.get("change", []):
        row = by_id[entry[0]]
        for k in range(1, len(entry), 2):
            row[entry[k]] = entry[k + 1]
    return int(delta["seq"])


def replay(updates: list[dict[str, Any]]) -> tuple[list[list[Any]], int]:
    """The rows a page has after ``updates`` (state updates, the first a full state)."""
    rows: list[list[Any]] = []
    seq = -1
    for state in updates:
        if "rows" in state:  # a full state
            rows, seq = [list(r) for r in state["rows"]], int(state["rows_seq"])
        elif state.get("delta") and seq >= 0:
            seq = apply_delta(rows, seq, state["delta"])
    return rows, seq


def without_elapsed(rows: list[list[Any]]) -> list[list[Any]]:
    """Rows without the running time of running tasks (the page counts it on itself)."""
    return [
        [v for k, v in enumerate(r) if not (k == AT["elapsed"] and r[AT["state"]] == "running")]
        for r in rows
    ]


def caught_up(widget: Any, shown: list[dict[str, Any]], sent: Sent) -> bool:
    """Whether the rows a page rebuilt from ``shown`` and the updates sent since are the
    kernel's latest rows (``widget.rows`` is what the kernel takes the page to have)."""
    with widget.lock:
        rows, seq = replay(shown + sent.updates())
        return bool(seq == widget.rows_seq and rows == widget.rows)


@pytest.fixture
def live_session() -> Iterator[Session]:
    """A session whose loop thread runs (as in a kernel), delivering to memory."""
    s = Session(Config(channels=("memory",)), channels={"memory": MemoryChannel()})
    yield s
    s.close()


def wait_for(condition: Any, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def test_panel_sends_at_most_four_updates_a_second_with_1000_live_tasks(
    live_session: Session,
) -> None:
    from nbremind.ipython.panel import panel

    tasks = [start(live_session, f"task {i}", total=10**9) for i in range(1000)]
    stop = threading.Event()

    def advance() -> None:
        while not stop.is_set():
            for task in tasks:
                task.advance()

    worker = threading.Thread(target=advance, daemon=True)
    widget = panel(live_session)
    sent = Sent(widget)
    with widget.lock:  # the full state a page got when it showed the panel
        shown = [{"rows": [list(r) for r in widget.rows], "rows_seq": widget.rows_seq}]
    worker.start()
    try:
        time.sleep(0.3)  # let the first refresh pass through
        before, started = len(sent.updates()), time.monotonic()
        time.sleep(3.0)
        updates = sent.updates()[before:]
        seconds = time.monotonic() - started
    finally:
        stop.set()
        worker.join()
        for task in tasks:
            live_session.finish(task)

    rate = len(updates) / seconds
    assert rate <= 4.0 + 1 / seconds, f"{len(updates)} updates in {seconds:.2f} s"
    assert len(updates) >= 6, f"the panel was not live: {len(updates)} updates in 3 s"
    deltas = [u["delta"] for u in updates if "delta" in u]
    assert len(deltas) >= 6
    # one update carries many tasks' changes (only their changed fields), within the bound
    assert max(len(d.get("change", [])) for d in deltas) > 100
    assert all(len(json.dumps(d, ensure_ascii=False)) <= 1.1 * UPDATE_BYTES for d in deltas)
    # what a page rebuilds from them is the kernel's state, row for row
    wait_for(lambda: "1000 finished" in widget.summary, what="the tasks' ends")
    wait_for(lambda: caught_up(widget, shown, sent), what="the page to have every row")
    rows, _ = replay(shown + sent.updates())
    assert [r[AT["name"]] for r in rows] == [f"task {i}" for i in range(950, 1000)]
    assert {r[AT["state"]] for r in rows} == {"succeeded"}


def test_panel_sends_nothing_while_nothing_changes(live_session: Session) -> None:
    from nbremind.ipython.panel import panel

    for i in range(5):
        live_session.finish(start(live_session, f"done {i}"))
    live_session.flush()
    widget = panel(live_session)
    sent = Sent(widget)
    wait_for(lambda: widget.channels != [], what="the channel states")
    time.sleep(1.2)
    quiet_from = len(sent.messages)
    time.sleep(2.5)

    # nothing but the kernel's heartbeat (which tells a page the panel is live), at most one
    quiet = [m.get("state", {}) for m in sent.messages[quiet_from:]]
    assert len(quiet) <= 1 and all(set(state) == {"beat"} for state in quiet), quiet
    assert [row[AT["name"]] for row in widget.rows] == [f"done {i}" for i in range(5)]


def test_the_panel_beats_while_the_kernel_lives(live_session: Session) -> None:
    from nbremind.ipython.panel import BEAT_EVERY, panel

    widget = panel(live_session)
    first = widget.beat
    assert abs(first - time.time()) <= BEAT_EVERY + 1  # a page reads its age
    wait_for(lambda: widget.beat > first, timeout=2 * BEAT_EVERY + 2, what="the next beat")
    assert widget.beat - first == BEAT_EVERY


def test_panel_is_one_widget_per_session(live_session: Session) -> None:
    from nbremind.ipython.panel import panel

    first = panel(live_session)
    assert panel(live_session) is first
    first.close()
    assert panel(live_session) is not first


def test_mute_switch_round_trip(live_session: Session) -> None:
    from nbremind.ipython.panel import panel

    widget = panel(live_session)
    sent = Sent(widget)
    # the browser flips the switch: a state update from the front end
    widget._handle_msg(
        {
            "content": {"data": {"method": "update", "state": {"muted": True}, "buffer_paths": []}},
            "buffers": [],
        }
    )
    assert live_session.config.muted is True
    assert live_session.config_sources["muted"] == "panel mute switch"

    # muted elsewhere (%remind unmute, configure()): the switch follows
    live_session.configure(muted=False)
    wait_for(
        lambda: any(u.get("muted") is False for u in sent.updates()), what="the switch to follow"
    )
    assert widget.muted is False


def test_channel_states_reach_the_panel_without_blocking_the_loop(live_session: Session) -> None:
    from nbremind.ipython.panel import panel

    widget = panel(live_session)
    wait_for(lambda: widget.channels != [], what="the channel states")

    assert widget.channels == [["memory", "available", True]]
    assert widget.default_note == "channels: memory (chosen by the settings)"


def test_status_line_follows_its_task_and_then_stops(live_session: Session) -> None:
    from nbremind.ipython.live import live_refresh
    from nbremind.ipython.status_line import StatusLine
    from nbremind.ipython.widgets import StatusWidget

    task = start(live_session, "train", total=4)
    widget = StatusWidget(text=status_text(task))
    sent = Sent(widget)
    line = StatusLine(task, widget, live_session)
    live_refresh(live_session).add(line)
    for _ in range(4):
        time.sleep(0.3)
        task.advance()
    live_session.finish(task)
    wait_for(lambda: line.done, what="the final line")
    time.sleep(0.6)

    texts = [u["text"] for u in sent.updates()]
    assert texts[-1].startswith("✓ train finished in ")
    assert any("(2/4)" in t for t in texts) and any("(3/4)" in t for t in texts)
    assert widget.state == "succeeded"
    assert line not in live_refresh(live_session).views()
    times = len(texts)
    time.sleep(0.6)
    assert len(sent.updates()) == times  # nothing after the final line


def test_row_deltas_rebuild_the_rows_and_stay_within_the_bound() -> None:
    import random

    rng = random.Random(7)
    sync = RowSync(budget=20_000)
    latest: list[list[Any]] = [[f"t-{i}", 0, "running", f"{i}/100", ""] for i in range(3000)]
    page: list[list[Any]] = []
    seq = sync.reset([])
    made = len(latest)
    sizes = []
    for step in range(80):
        latest = [list(r) for r in latest]
        if step < 40:  # tasks come, go, move, change; then nothing but catching up
            for row in rng.sample(latest, 300):
                row[3] = f"{rng.randrange(100)}/100"
            for _ in range(20):
                latest.pop(rng.randrange(len(latest)))
            for _ in range(20):
                latest.insert(rng.randrange(len(latest) + 1), [f"t-{made}", 1, "running", "", ""])
                made += 1
            if step % 10 == 3:  # a few rows change places (a listed parent went away)
                for _ in range(3):
                    row = latest.pop(rng.randrange(len(latest)))
                    latest.insert(rng.randrange(len(latest)), row)
        delta = sync.delta(latest)
        if delta is None:
            continue
        sizes.append(len(json.dumps(delta, ensure_ascii=False)))
        seq = apply_delta(page, seq, delta)
        assert page == sync.listed()  # what the kernel takes the page to have, it has

    assert page == latest  # caught up once things calm down
    assert sync.delta(latest) is None
    assert max(sizes) <= 1.1 * 20_000, max(sizes)
    # one field of one row changed: only that field goes
    latest[5] = [*latest[5][:3], "done", latest[5][4]]
    assert sync.delta(latest) == {
        "seq": seq + 1,
        "base": seq,
        "change": [[latest[5][0], 3, "done"]],
    }


def test_panel_with_10000_live_tasks_sends_what_changed(live_session: Session) -> None:
    from nbremind.ipython.panel import panel

    widget = panel(live_session)
    sent = Sent(widget)
    with widget.lock:
        shown = [{"rows": [list(r) for r in widget.rows], "rows_seq": widget.rows_seq}]
    tasks = [start(live_session, f"task {i}", total=100) for i in range(10_000)]
    wait_for(lambda: caught_up(widget, shown, sent) and len(widget.rows) == 10_000, timeout=60)
    listed = len(sent.updates())
    moving = tasks[::1000]
    ids = {t.id for t in moving}
    for done in range(1, 4):

        def shows(done: int = done) -> bool:
            rows, _ = replay(shown + sent.updates())
            return {r[AT["count"]] for r in rows if r[0] in ids} == {f"{done}/100"}

        for task in moving:
            task.advance()
        wait_for(shows, what="the advances to reach the page")
    updates = sent.updates()
    for task in tasks:
        live_session.finish(task)

    sizes = [len(json.dumps(u, ensure_ascii=False)) for u in updates]
    # listing 10,000 new tasks took several updates, each within the bound
    assert listed >= 10 and max(sizes) <= 1.2 * UPDATE_BYTES, (listed, max(sizes))
    # then each update carried the few rows that changed, a few fields of each
    later = [u["delta"] for u in updates[listed:] if "delta" in u]
    assert later and all(len(d.get("change", [])) <= len(moving) for d in later), later
    assert {entry[0] for d in later for entry in d.get("change", [])} == ids
    assert all(len(json.dumps(d)) < 4000 for d in later)
    # running rows leave memory and CPU to the panel's usage (one value for all of them)
    assert widget.usage and widget.usage[0].endswith("B")


# -- a real kernel ---------------------------------------------------------------------------------

LOAD = (
    "%load_ext nbremind\nimport nbremind\nnbremind.configure(channels=['memory'])\n"
    "from nbremind.ipython.panel import panel\n"
)


def panel_id(k: Kernel) -> str:
    result: str = k.query("from nbremind.ipython.panel import panel\nresult = panel().model_id")
    return result


@pytest.mark.kernel
def test_remind_panel_displays_the_one_panel_widget(kernel_factory: KernelFactory) -> None:
    k = kernel_factory()
    k.ok(LOAD)
    k.ok("with nbremind.remind('loaded', total=3) as t:\n    t.advance(3)")
    first = k.ok("%remind panel")
    again = k.ok("panel()")
    comm = panel_id(k)

    assert widget_views(first.messages) == [comm]
    assert again.results and widget_views(again.messages) == [comm]
    state = k.query(
        "from nbremind.ipython.panel import panel\nw = panel()\n"
        "result = [w.fields, w.rows, w.summary]"
    )
    fields, rows, summary = state
    assert fields == list(ROW_FIELDS)
    assert [r[AT["name"]] for r in rows] == ["loaded"]
    assert rows[0][AT["count"]] == "3/3" and summary == "0 running · 1 finished"


@pytest.mark.kernel
def test_panel_updates_reach_the_front_end_at_most_four_a_second(
    kernel_factory: KernelFactory,
) -> None:
    k = kernel_factory()
    k.ok(LOAD + "panel()")
    comm = panel_id(k)
    with comm_tap(k) as tap:
        # a page connects to the widget as JupyterLab's manager does: it asks for the state
        send_to_widget(k, comm, {"method": "request_state"})
        deadline = time.monotonic() + 30
        while not [u for u in tap.updates(comm) if "rows" in u]:
            assert time.monotonic() < deadline, "no full state came"
            tap.pump(0.1)
        msg_id = k.execute(
            "import contextvars, time\n"
            "s = nbremind.get_session()\n"
            "def top(i):  # each in a context of its own: 1,000 top-level tasks\n"
            "    t = s.new_task(f'task {i}', total=10**9)\n"
            "    s.start(t)\n"
            "    return t\n"
            "tasks = [contextvars.Context().run(top, i) for i in range(1000)]\n"
            "end = time.monotonic() + 4\n"
            "while time.monotonic() < end:\n"
            "    for t in tasks:\n"
            "        t.advance()\n"
            "for t in tasks:\n"
            "    s.finish(t)\n"
        )
        tap.pump(1.0)  # the cell has started and its tasks are listed
        first = len(tap.updates(comm))
        started = time.monotonic()
        tap.pump(2.5)
        seconds = time.monotonic() - started
        during = tap.updates(comm)[first:]
        k.result(msg_id, timeout=60)
        tap.pump(1.0)
        sizes = [len(json.dumps(m["content"])) for m in tap.messages if m["msg_type"] == "comm_msg"]
        updates = tap.updates(comm)

    assert len(during) / seconds <= 4.0 + 1 / seconds, f"{len(during)} in {seconds:.2f} s"
    assert len(during) >= 5, f"the panel was not live: {len(during)} updates in {seconds:.1f} s"
    # deltas, not every row: 1,000 rows whole are some 150 kB
    assert all("rows" not in u for u in during)
    assert max(sizes) <= 1.2 * UPDATE_BYTES, max(sizes)
    # the page rebuilds the kernel's rows from the full state and the deltas after it
    rows, seq = replay(updates)
    state = k.query(
        "from nbremind.ipython.panel import panel\nw = panel()\nresult = [w.rows_seq, w.rows]"
    )
    assert [seq, rows] == state
    assert len(rows) == 50  # all finished now: the last 50 stay listed
    assert {r[AT["state"]] for r in rows} == {"succeeded"}


@pytest.mark.kernel
def test_mute_switch_flipped_in_the_browser_mutes_the_kernel(
    kernel_factory: KernelFactory,
) -> None:
    k = kernel_factory()
    k.ok(LOAD + "panel()")
    comm = panel_id(k)
    with comm_tap(k) as tap:
        send_to_widget(k, comm, {"method": "update", "state": {"muted": True}, "buffer_paths": []})
        status = k.ok("%remind status").stdout
        k.ok("%%remind hushed --quiet\npass")
        hushed = k.notices()
        k.ok("%remind unmute")
        tap.pump(1.5)

    assert "  muted: yes" in status.splitlines()
    assert hushed == []
    assert {"muted": False} in [{"muted": u["muted"]} for u in tap.updates(comm) if "muted" in u]
    assert re.search(
        r"^muted\s*=\s*False\s*\(%remind unmute\)$", k.ok("%remind config").stdout, re.MULTILINE
    )


@pytest.mark.kernel
def test_remind_cell_shows_a_live_status_line_first_and_keeps_its_result(
    kernel_factory: KernelFactory,
) -> None:
    k = kernel_factory()
    k.ok(LOAD)
    with comm_tap(k) as tap:
        r = k.ok(
            "%%remind train\nimport time\nfor i in range(6):\n    time.sleep(0.25)\n"
            "print('epoch', i)\n40 + 2"
        )
        tap.pump(1.0)

    outputs = [
        m for m in r.messages if m["msg_type"] in ("display_data", "stream", "execute_result")
    ]
    assert outputs[0]["msg_type"] == "display_data"  # the line comes before the cell's output
    assert outputs[0]["content"]["data"]["text/plain"].startswith("▶ train")
    assert 'data-state="running"' in outputs[0]["content"]["data"]["text/html"]
    assert r.result == "42" and r.stdout.splitlines()[-1] == "epoch 5"
    # once the cell ran a while, the live widget took the line's place (same output)
    display_id = outputs[0]["content"]["transient"]["display_id"]
    live, update = [m["content"] for m in r.messages if m["msg_type"] == "update_display_data"]
    assert live["transient"] == {"display_id": display_id}
    [line] = [live["data"][WIDGET_VIEW]["model_id"]]
    opened = tap.opened()
    assert opened[line]["view"] == "status" and opened[line]["text"].startswith("▶ train")
    texts = [u["text"] for u in tap.updates(line) if "text" in u]
    running = [t for t in texts if t.startswith("▶")]
    assert len(running) >= 3, texts  # live while the cell ran
    assert texts[-1].startswith("✓ train finished in ")
    assert k.titles() == ["✓ train finished"]
    # the cell's end leaves the final line as plain output in place of the widget view
    assert update["transient"] == {"display_id": display_id}
    assert set(update["data"]) == {"text/plain", "text/html"}
    assert re.fullmatch(r"✓ train finished in \d+\.\d s", update["data"]["text/plain"])
    assert update["data"]["text/plain"] in update["data"]["text/html"]


@pytest.mark.kernel
def test_status_line_of_a_failing_cell_and_quiet_cells(kernel_factory: KernelFactory) -> None:
    k = kernel_factory()
    k.ok(LOAD)
    with comm_tap(k) as tap:
        failed = k.run("%%remind load\nraise ValueError('bad row 2')")
        quiet = k.ok("%%remind --quiet quiet one\n'still' + ' shown'")
        tap.pump(1.0)

    assert (failed.status, failed.ename, failed.evalue) == ("error", "ValueError", "bad row 2")
    # a cell that ends at once shows its line as text, then its final text: no widget
    [shown] = [m["content"] for m in failed.messages if m["msg_type"] == "display_data"]
    assert shown["data"]["text/plain"].startswith("▶ load")
    [update] = [m["content"] for m in failed.messages if m["msg_type"] == "update_display_data"]
    assert update["transient"] == shown["transient"]
    final = update["data"]["text/plain"]
    assert re.fullmatch(r"✗ load failed after \d+\.\d s: ValueError: bad row 2", final)
    assert 'data-state="failed"' in update["data"]["text/html"]
    assert widget_views(failed.messages) == [] and tap.opened() == {}
    assert widget_views(quiet.messages) == [] and quiet.displays == []
    assert quiet.result == "'still shown'"
    assert k.titles() == ["✗ load failed", "✓ quiet one finished"]


@pytest.mark.kernel
def test_traceback_of_a_remind_cell_shows_the_magic_line_as_typed(
    kernel_factory: KernelFactory,
) -> None:
    k = kernel_factory()
    k.ok(LOAD)
    r = k.run("%%remind load --after 1h\nrows = [1, 2]\nraise ValueError('bad row 2')")
    lines = [strip_ansi(line) for line in r.traceback_text.splitlines()]

    assert (r.status, r.ename) == ("error", "ValueError")
    assert f"Cell In[{r.execution_count}], line 3" in lines
    numbered = [line.strip() for line in lines if re.match(r"\s*(---->)?\s*\d+ ", line)]
    assert numbered == [
        "1 # %%remind load --after 1h",
        "2 rows = [1, 2]",
        "----> 3 raise ValueError('bad row 2')",
    ]


def test_no_status_line_without_a_kernel_front_end() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from nbremind.ipython.status_line import can_show_widgets

    shell = InteractiveShell.instance()
    assert can_show_widgets(shell) is False


# -- the front end in Chromium (no JupyterLab: the module and a stand-in model) ------------------

PANEL_STATE = {
    "view": "panel",
    "fields": list(ROW_FIELDS),
    "rows": [
        [
            "1-1",
            0,
            "running",
            "▶ running",
            "outer",
            None,
            None,
            "0",
            "",
            "2.0 s",
            "",
            "80 MB",
            "97%",
            "",
        ],
        [
            "1-2",
            1,
            "running",
            "▶ running",
            "load",
            4,
            10,
            "4/10",
            "2.0/s",
            "2.0 s",
            "3.0 s",
            "80 MB",
            "97%",
            "",
        ],
        [
            "1-3",
            0,
            "failed",
            "✗ failed",
            EVIL,
            None,
            None,
            "0",
            "",
            "0.1 s",
            "",
            "",
            "",
            f"✗ {EVIL} failed",
        ],
    ],
    "channels": [
        ["desktop", "unavailable: no D-Bus session bus", False],
        ["browser", "available", True],
    ],
    "default_note": "default channels: browser — desktop unavailable: no D-Bus session bus",
    "summary": "2 running · 1 finished",
    "muted": False,
}

ROWS_JS = """() => [...document.querySelectorAll('.nbremind-panel .nbremind-task')].map((r) => ({
  id: r.dataset.taskId, state: r.dataset.state, depth: r.dataset.depth,
  name: r.querySelector('.nbremind-name').textContent,
  stateText: r.querySelector('.nbremind-state').textContent,
  value: r.querySelector('progress.nbremind-progress').getAttribute('value'),
  max: r.querySelector('progress.nbremind-progress').getAttribute('max'),
  count: r.querySelector('.nbremind-count').textContent,
  rate: r.querySelector('.nbremind-rate').textContent,
  elapsed: r.querySelector('.nbremind-elapsed').textContent,
  eta: r.querySelector('.nbremind-eta').textContent,
  rss: r.querySelector('.nbremind-rss').textContent,
  cpu: r.querySelector('.nbremind-cpu').textContent,
  notice: r.querySelector('.nbremind-notice').textContent,
}))"""


@pytest.mark.browser
def test_panel_front_end_draws_rows_channels_and_controls_as_text(widget_page: Any) -> None:
    page = widget_page
    page.evaluate("(state) => { window.m = openModel(state); renderView(window.m); }", PANEL_STATE)

    rows = page.evaluate(ROWS_JS)
    assert [(r["id"], r["state"], r["depth"], r["name"]) for r in rows] == [
        ("1-1", "running", "0", "outer"),
        ("1-2", "running", "1", "load"),
        ("1-3", "failed", "0", EVIL),
    ]
    assert (rows[1]["value"], rows[1]["max"]) == ("4", "10")
    assert (rows[0]["value"], rows[0]["max"]) == (None, None)  # unknown total: no value
    assert (rows[1]["count"], rows[1]["rate"], rows[1]["eta"], rows[1]["cpu"]) == (
        "4/10",
        "2.0/s",
        "3.0 s",
        "97%",
    )
    assert rows[2]["notice"] == f"✗ {EVIL} failed"
    # the name was drawn as text: no element came out of it, no handler ran
    assert page.evaluate("() => document.querySelectorAll('.nbremind-panel img').length") == 0
    channels = page.evaluate(
        "() => [...document.querySelectorAll('.nbremind-channels .nbremind-channel')]"
        ".map((c) => c.textContent)"
    )
    assert channels == ["desktop: unavailable: no D-Bus session bus", "browser: available"]
    assert page.text_content(".nbremind-summary") == "2 running · 1 finished"
    assert page.is_checked("input.nbremind-mute[type=checkbox]") is False
    assert page.text_content("button.nbremind-permission") == "Browser notifications: allowed"
    # the view said hello, with the page's notification permission
    hello = page.evaluate("() => window.__models[window.m].sent")
    assert [(m["type"], m["permission"]) for m in hello] == [("hello", "granted")]


@pytest.mark.browser
def test_panel_front_end_updates_rows_in_place_by_task_id(widget_page: Any) -> None:
    page = widget_page
    page.evaluate("(state) => { window.m = openModel(state); renderView(window.m); }", PANEL_STATE)
    page.evaluate("""() => {
      window.marked = [...document.querySelectorAll('.nbremind-task')];
      window.marked.forEach((tr, i) => { tr.__mark = i; });
      window.nameNodes = window.marked.map((tr) => tr.querySelector('.nbremind-name').firstChild);
    }""")
    rows = [list(r) for r in PANEL_STATE["rows"]]
    rows[1][AT["value"]], rows[1][AT["count"]] = 5, "5/10"
    new = ["1-4", 2, "running", "▶ running", "chunk", None, None, "1", "", "0.1 s", "", "", "", ""]
    rows.insert(2, new)
    del rows[0]
    page.evaluate("(rows) => window.__models[window.m].update({ rows })", rows)

    after = page.evaluate(ROWS_JS)
    assert [r["id"] for r in after] == ["1-2", "1-4", "1-3"]
    assert (after[0]["count"], after[0]["value"]) == ("5/10", "5")
    kept = page.evaluate("""() => [...document.querySelectorAll('.nbremind-task')].map(
      (tr) => [tr.__mark ?? null, window.nameNodes.includes(tr.querySelector('.nbremind-name')
        .firstChild)])""")
    # the same row elements (and untouched name text nodes) were kept; only "chunk" is new
    assert kept == [[1, True], [None, False], [2, True]]
    assert page.evaluate("() => document.querySelectorAll('.nbremind-task').length") == 3


def running_row(i: int, count: str = "0/10", started: float | None = None) -> list[Any]:
    row: list[Any] = ["", 0, "running", "▶ running", "", 0, 10, "", "", "0.0 s", "", "", "", ""]
    row[0], row[4], row[7] = f"t-{i}", f"task {i}", count
    return [*row, started]


DRAWN_IDS = "() => [...document.querySelectorAll('.nbremind-task')].map((tr) => tr.dataset.taskId)"


@pytest.mark.browser
def test_panel_front_end_applies_the_kernels_deltas_in_place(widget_page: Any) -> None:
    import random

    page = widget_page
    rng = random.Random(3)
    sync = RowSync(budget=6_000)
    latest = [running_row(i) for i in range(40)]
    state = {**PANEL_STATE, "rows": latest, "rows_seq": sync.reset(latest), "delta": {}}
    page.evaluate("(state) => { window.m = openModel(state); renderView(window.m); }", state)
    made = len(latest)
    for step in range(30):
        latest = [list(r) for r in latest]
        if step < 20:
            for row in rng.sample(latest, 10):
                row[AT["count"]] = f"{rng.randrange(10)}/10"
            for _ in range(rng.randrange(4)):
                latest.pop(rng.randrange(len(latest)))
            for _ in range(rng.randrange(60)):
                latest.insert(rng.randrange(len(latest) + 1), running_row(made))
                made += 1
            if step % 5 == 2:
                latest.insert(rng.randrange(len(latest)), latest.pop(rng.randrange(len(latest))))
        delta = sync.delta(latest)
        if delta is None:
            continue
        page.evaluate("(delta) => window.__models[window.m].update({ delta })", delta)
        # the model's own rows array holds what the kernel takes the page to have
        assert page.evaluate("() => window.__models[window.m].get('rows')") == sync.listed()
        assert page.evaluate(DRAWN_IDS) == [r[0] for r in sync.listed()][:500]

    assert sync.listed() == latest and len(latest) > 500
    # only the first 500 rows are drawn; a line says how many more there are
    assert page.text_content(".nbremind-more") == (
        f"… and {len(latest) - 500} more (the first 500 are shown)"
    )
    # nothing asked back: no delta was missed
    assert [m["type"] for m in page.evaluate("() => window.__models[window.m].sent")] == ["hello"]


@pytest.mark.browser
def test_panel_front_end_asks_for_a_full_state_after_a_missed_delta(widget_page: Any) -> None:
    page = widget_page
    sync = RowSync()
    rows = [running_row(i) for i in range(3)]
    state = {**PANEL_STATE, "rows": rows, "rows_seq": sync.reset(rows), "delta": {}}
    page.evaluate("(state) => { window.m = openModel(state); renderView(window.m); }", state)
    sync.delta([*rows, running_row(3)])  # this one never reaches the page
    missed = sync.delta([*rows, running_row(3), running_row(4)])
    page.evaluate("(delta) => window.__models[window.m].update({ delta })", missed)

    sent = page.evaluate("() => window.__models[window.m].sent")
    assert [m["type"] for m in sent] == ["hello", "resync"]
    assert page.evaluate(DRAWN_IDS) == ["t-0", "t-1", "t-2"]  # not applied on the wrong rows
    # the kernel answers with a full state; the deltas after it apply again
    full = [running_row(i) for i in range(5)]
    page.evaluate(
        "(s) => window.__models[window.m].update(s)", {"rows": full, "rows_seq": sync.reset(full)}
    )
    page.evaluate(
        "(delta) => window.__models[window.m].update({ delta })",
        sync.delta([*full, running_row(5)]),
    )
    assert page.evaluate(DRAWN_IDS) == [f"t-{i}" for i in range(6)]


@pytest.mark.browser
def test_panel_front_end_counts_running_time_on_and_shows_the_process_usage(
    widget_page: Any,
) -> None:
    page = widget_page
    now = page.evaluate("() => Date.now() / 1000")
    finished = [*PANEL_STATE["rows"][2], None]
    finished[AT["rss"]] = "peak 90 MB"
    rows = [running_row(0, started=now - 65), finished]
    state = {
        **PANEL_STATE,
        "rows": rows,
        "clock": now,
        "beat": now,
        "usage": ["1.2 GB", "97%"],
    }
    page.evaluate("(state) => { window.m = openModel(state); renderView(window.m); }", state)

    drawn = page.evaluate(ROWS_JS)
    assert drawn[0]["elapsed"] in ("1 min 5 s", "1 min 6 s")  # counted from `started`
    assert (drawn[0]["rss"], drawn[0]["cpu"]) == ("1.2 GB", "97%")  # the process's
    assert (drawn[1]["elapsed"], drawn[1]["rss"], drawn[1]["cpu"]) == ("0.1 s", "peak 90 MB", "")
    # the page writes the time it shows into the rows, so a saved state keeps it
    assert page.evaluate("() => window.__models[window.m].get('rows')[0][9]") == drawn[0]["elapsed"]
    # a saved state with no kernel behind it: the running time is the one saved
    stale = {**state, "beat": now - 3600, "clock": now - 3600}
    page.evaluate("(state) => { window.s = openModel(state); renderView(window.s); }", stale)
    assert (
        page.evaluate(
            "() => document.querySelectorAll('.view')[1].querySelector('.nbremind-elapsed')"
            ".textContent"
        )
        == "0.0 s"
    )


@pytest.mark.browser
def test_panel_model_follows_deltas_with_no_view_shown(widget_page: Any) -> None:
    page = widget_page
    sync = RowSync()
    rows = [running_row(i) for i in range(2)]
    state = {**PANEL_STATE, "rows": rows, "rows_seq": sync.reset(rows), "delta": {}}
    page.evaluate("(state) => { window.m = openModel(state); }", state)  # initialize() only
    latest = [running_row(0, count="5/10"), running_row(2)]
    page.evaluate("(delta) => window.__models[window.m].update({ delta })", sync.delta(latest))

    # what a page saving its widget state writes: the rows as they are now
    assert page.evaluate("() => window.__models[window.m].get('rows')") == latest
    # a view shown later draws them
    page.evaluate("() => renderView(window.m)")
    assert page.evaluate(DRAWN_IDS) == ["t-0", "t-2"]


@pytest.mark.browser
def test_panel_front_end_mute_switch_and_permission_button(widget_page: Any) -> None:
    page = widget_page
    page.evaluate(
        """(state) => { window.__permission = 'default';
      window.m = openModel(state); renderView(window.m); }""",
        PANEL_STATE,
    )
    assert page.text_content("button.nbremind-permission") == "Allow browser notifications"

    page.click("input.nbremind-mute[type=checkbox]")
    model = page.evaluate(
        "() => ({ muted: window.__models[window.m].state.muted, "
        "saved: window.__models[window.m].saved })"
    )
    assert model == {"muted": True, "saved": 1}

    page.evaluate("() => { window.__permission = 'granted'; }")
    page.click("button.nbremind-permission")
    page.wait_for_function("() => window.__models[window.m].sent.length === 2")
    sent = page.evaluate("() => window.__models[window.m].sent")
    assert page.evaluate("() => window.__asked") == 1
    assert sent[1]["type"] == "permission" and sent[1]["permission"] == "granted"
    assert page.text_content("button.nbremind-permission") == "Browser notifications: allowed"

    # muted from the kernel's side: the switch follows
    page.evaluate("() => window.__models[window.m].update({ muted: false })")
    assert page.is_checked("input.nbremind-mute") is False


@pytest.mark.browser
def test_status_line_front_end_shows_live_text_and_leaves_no_listener(widget_page: Any) -> None:
    page = widget_page
    page.evaluate("""() => { window.m = openModel({ view: 'status', text: '▶ train · 0.1 s',
      state: 'running' }); window.v = renderView(window.m); }""")
    assert page.text_content(".nbremind-status") == "▶ train · 0.1 s"

    page.evaluate(f"""() => window.__models[window.m].update({{ text: {json.dumps(EVIL)},
      state: 'failed' }})""")
    assert page.text_content(".nbremind-status") == EVIL
    assert page.get_attribute(".nbremind-status", "data-state") == "failed"
    assert page.evaluate("() => document.querySelectorAll('img').length") == 0

    page.evaluate("() => closeView(window.v)")
    sent = page.evaluate("() => window.__models[window.m].sent.map((m) => m.type)")
    assert sent == ["hello"]  # the model stays (and can still raise notifications)
    # only initialize()'s custom-message listener is left once the view is gone
    assert page.evaluate("() => window.__models[window.m].listeners()") == 1
    page.evaluate("() => window.__models[window.m].cleanup()")
    assert page.evaluate("() => window.__models[window.m].listeners()") == 0
    sent = page.evaluate("() => window.__models[window.m].sent.map((m) => m.type)")
    assert sent == ["hello", "bye"]


CSS = files("nbremind.ipython") / "static" / "nbremind.css"
LONG_NAME = "load every shard of the 2024 click logs " * 6

#: Where the name and last-notice cells of the first row sit, in a 900 px wide output area.
LAYOUT_JS = """() => {
  const row = document.querySelector('.nbremind-task');
  const area = document.querySelector('.view').getBoundingClientRect();
  const name = row.querySelector('.nbremind-name'), notice = row.querySelector('.nbremind-notice');
  return { nameCut: name.scrollWidth > name.clientWidth,
           ellipsis: getComputedStyle(name).textOverflow, title: name.title,
           text: name.textContent, noticeRight: notice.getBoundingClientRect().right,
           noticeWidth: notice.getBoundingClientRect().width, areaRight: area.right };
}"""


@pytest.mark.browser
def test_a_long_task_name_is_cut_with_an_ellipsis_and_keeps_last_notice_in_view(
    widget_page: Any,
) -> None:
    page = widget_page
    page.add_style_tag(content=CSS.read_text(encoding="utf-8") + "\n.view { width: 900px; }")
    row = [
        "1-9",
        0,
        "succeeded",
        "✓ succeeded",
        LONG_NAME,
        10,
        10,
        "10/10",
        "",
        "8.0 s",
        "",
        "peak 80 MB",
        "",
        "✓ done",
    ]
    state = {**PANEL_STATE, "rows": [row]}
    page.evaluate("(state) => { window.m = openModel(state); renderView(window.m); }", state)

    layout = page.evaluate(LAYOUT_JS)
    assert layout["nameCut"] and layout["ellipsis"] == "ellipsis", layout
    assert layout["title"] == layout["text"] == LONG_NAME  # the whole name on hover
    assert layout["noticeWidth"] > 20 and layout["noticeRight"] <= layout["areaRight"], layout


@pytest.mark.browser
def test_permission_button_shows_the_answer_as_soon_as_the_browser_gives_it(
    widget_page: Any,
) -> None:
    page = widget_page
    page.evaluate(
        """(state) => { window.__permission = 'default';
      window.Notification.requestPermission = () => new Promise((resolve) => {
        window.__answer = (value) => { window.__permission = value; resolve(value); };
      });
      window.m = openModel(state); renderView(window.m); }""",
        PANEL_STATE,
    )
    button = "button.nbremind-permission"

    page.click(button)
    assert page.text_content(button) == "Waiting for the browser's answer…"
    page.evaluate("() => window.__answer('denied')")
    page.wait_for_function(
        """(sel) => document.querySelector(sel).dataset.permission
      !== 'asking'""",
        arg=button,
    )

    assert page.text_content(button) == (
        "Browser notifications: blocked (allow them in the site settings)"
    )
    sent = page.evaluate("() => window.__models[window.m].sent")
    assert [(m["type"], m.get("permission")) for m in sent] == [
        ("hello", "default"),
        ("permission", "denied"),
    ]


def test_panel_snapshot_shows_names_as_text(live_session: Session) -> None:
    import html

    from nbremind.ipython.panel import panel
    from nbremind.ipython.widgets import SNAPSHOT_NOTE

    live_session.finish(start(live_session, EVIL), RuntimeError(EVIL))
    widget = panel(live_session)
    markup = widget.snapshot_html()

    assert "<img" not in markup and f"<td>{html.escape(EVIL)}</td>" in markup
    assert EVIL in widget.plain_text() and widget.plain_text().endswith(SNAPSHOT_NOTE)


def test_a_status_line_sends_the_front_end_without_the_panel() -> None:
    from nbremind.ipython import widgets

    status = widgets.StatusWidget._esm.default_value
    panel_esm = widgets.PanelWidget._esm.default_value
    assert "function renderStatus" in status and "function renderPanel" not in status
    assert "function renderPanel" in panel_esm and "function initialize" in status
    assert len(status) < len(panel_esm) / 2  # what every %%remind cell sends when it opens
    assert ".nbremind-status" in widgets.StatusWidget._css.default_value
    assert ".nbremind-tasks" not in widgets.StatusWidget._css.default_value

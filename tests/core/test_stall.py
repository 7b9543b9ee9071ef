"""``stall``: one notice when the progress stops moving for DUR, one when it moves again."""

from __future__ import annotations

from collections.abc import Iterator

from _captured import run_for as ticking
from nbremind import remind, track
from nbremind.ipython.texts import status_text
from nbremind.testing import CapturedNotices, FakeClock


def run_for(cap: CapturedNotices, clock: FakeClock, seconds: float, step: float = 30) -> None:
    """:func:`_captured.run_for` with a tick every 30 s."""
    ticking(cap, clock, seconds, step)


def stall_titles(cap: CapturedNotices) -> list[str]:
    return [n.title for n in cap.notices if n.event == "stall"]


def test_a_stall_notifies_once_then_once_when_it_moves_again(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    with remind("train", total=100, stall="10m") as task:
        for _ in range(4):
            task.advance(10)
            run_for(cap, clock, 60)
        assert stall_titles(cap) == []
        # the last step was seen by the tick at 3.5 min: 9.5 min since then
        run_for(cap, clock, 540)
        assert stall_titles(cap) == []
        run_for(cap, clock, 30)
        assert stall_titles(cap) == ["⏸ train stalled: no progress for 10 min (at 40%, 40/100)"]
        run_for(cap, clock, 240)  # still stalled: nothing more
        assert len(stall_titles(cap)) == 1
        task.advance(1)
        run_for(cap, clock, 30)
        assert stall_titles(cap)[1:] == ["▶ train moving again after 14 min"]
        task.advance(1)
        run_for(cap, clock, 30)
    assert cap.events() == ["stall", "stall", "success"]
    stalled, moving = (n for n in cap.notices if n.event == "stall")
    assert stalled.id != moving.id  # two notices, neither taken for a repeat of the other


def test_a_second_stall_is_a_new_notice(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("train", total=10, stall="5m") as task:
        for _ in range(2):
            run_for(cap, clock, 300)
            task.advance()
            run_for(cap, clock, 30)
    assert [t.split(":")[0] for t in stall_titles(cap)] == [
        "⏸ train stalled",
        "▶ train moving again after 5 min 30 s",  # (the step is seen by the next tick)
        "⏸ train stalled",
        "▶ train moving again after 5 min 30 s",
    ]
    assert len({n.id for n in cap.notices}) == len(cap.notices)


def test_a_count_without_a_total_stalls_too(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("crawl", stall="2m") as task:
        task.advance(7)
        run_for(cap, clock, 150)  # the count is seen moving at the first tick, 30 s in
    assert stall_titles(cap) == ["⏸ crawl stalled: no progress for 2 min (at 7)"]


def test_a_total_with_nothing_done_yet_stalls_from_the_start(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    with remind("load", total=5, stall="2m"):
        run_for(cap, clock, 120)
    assert stall_titles(cap) == ["⏸ load stalled: no progress for 2 min (at 0%, 0/5)"]


def test_a_track_loop_stalls(cap: CapturedNotices, clock: FakeClock) -> None:
    def rows() -> Iterator[int]:
        yield 1
        run_for(cap, clock, 180)  # the source hangs between two rows
        yield 2

    for _ in track(rows(), name="rows", total=2, stall="2m"):
        cap.session.tick()
    assert stall_titles(cap)[0] == "⏸ rows stalled: no progress for 2 min (at 50%, 1/2)"
    assert stall_titles(cap)[1] == "▶ rows moving again after 3 min"


def test_a_block_fed_by_its_loop_stalls_on_the_loops_progress(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    with remind("etl", stall="3m"):
        for i in track(range(4)):
            run_for(cap, clock, 30 if i < 2 else 240)
    titles = stall_titles(cap)
    assert titles[0].startswith("⏸ etl stalled: no progress for 3 min (at 75%, 3/4)")


def test_no_progress_at_all_never_stalls_and_the_end_says_so(
    cap: CapturedNotices, clock: FakeClock, monkeypatch: object
) -> None:
    with remind("wait", stall="1m"):
        run_for(cap, clock, 600)
    assert stall_titles(cap) == []
    (end,) = cap.notices
    assert end.event == "success"
    assert "stall never applied: no progress to watch" in end.body


def test_no_progress_is_said_on_the_status_line_once_the_stall_time_passed(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    with remind("wait", stall="1m") as task:
        ticking(cap, clock, 50)  # (a tick every 10 s)
        assert task.unwatched is None  # (not yet: progress may still come)
        assert "cannot apply" not in status_text(task)
        ticking(cap, clock, 20)
        assert status_text(task).endswith(
            " · stall 1 min cannot apply: no progress to watch (advance(), track(), a tqdm "
            "bar) and no GPU"
        ), status_text(task)
        task.total = 10  # progress after all: watched from now on, the line says no more
        run_for(cap, clock, 1)
        assert task.unwatched is None
        assert "cannot apply" not in status_text(task)


def test_progress_that_comes_late_is_watched_from_then_on(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    with remind("late", stall="5m") as task:
        run_for(cap, clock, 900)  # no progress source for 15 min: nothing to watch yet
        task.total = 10
        run_for(cap, clock, 240)
        assert stall_titles(cap) == []  # 4 min since it started counting: not stalled
        run_for(cap, clock, 60)
    assert stall_titles(cap) == ["⏸ late stalled: no progress for 5 min (at 0%, 0/10)"]
    assert "never applied" not in cap.notices[-1].body


def test_stall_is_an_event_that_on_can_leave_out(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("quiet", total=3, stall="1m", on=["success"]):
        run_for(cap, clock, 300)
    assert cap.events() == ["success"]


def test_a_stall_inside_a_cell_or_block_is_told_by_the_nested_loop(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    with remind("outer", total=2) as outer:
        outer.advance()
        for _ in track(range(3), name="inner", stall="1m"):
            run_for(cap, clock, 90)
    assert stall_titles(cap)[0] == "⏸ inner stalled: no progress for 1 min (at 33.3%, 1/3)"

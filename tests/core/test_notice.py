"""The text of notices: titles, bodies, urgency, ids."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from nbremind import remind
from nbremind.core.notice import Notice, format_duration, format_size, make_notice
from nbremind.core.task import Task, TaskError, TaskState
from nbremind.testing import CapturedNotices, FakeClock, capture_notices


@pytest.fixture
def cap(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[CapturedNotices]:
    with capture_notices(clock) as captured:
        captured.session.source = "etl.py"
        captured.session.host = "box"
        monkeypatch.setattr(captured.session.sampler, "rss", lambda now: 8_200_000_000)
        yield captured


def only(cap: CapturedNotices, event: str) -> Notice:
    found = [n for n in cap.notices if n.event == event]
    assert len(found) == 1, cap.titles()
    return found[0]


def test_success(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl", total=1000) as task:
        task.advance(1000)
        clock.advance(41 * 60)
    notice = only(cap, "success")
    assert notice.title == "✓ etl finished"
    assert notice.urgency == "normal"
    assert notice.body.splitlines() == [
        "Took 41 min",
        "Progress: 100% (1,000/1,000)",
        "etl.py on box",
    ]
    assert notice.task.state is TaskState.SUCCEEDED
    assert notice.id == f"{task.id}:success:end"
    assert notice.created == clock.time()


def test_failure(cap: CapturedNotices, clock: FakeClock) -> None:
    with pytest.raises(MemoryError), remind("etl", total=100) as task:
        task.advance(40)
        clock.advance(90)
        raise MemoryError("CUDA out of memory")
    notice = only(cap, "failure")
    assert notice.title == "✗ etl failed"
    assert notice.urgency == "critical"
    lines = notice.body.splitlines()
    assert lines[0] == "MemoryError: CUDA out of memory"
    assert "After 1 min 30 s" in lines
    assert "Progress: 40% (40/100)" in lines
    assert lines[-1] == "etl.py on box"


def test_failure_message_is_cut_at_200_characters(cap: CapturedNotices) -> None:
    message = "".join(chr(ord("a") + i % 26) for i in range(1000))
    with pytest.raises(ValueError), remind("etl"):
        raise ValueError(message)
    first = only(cap, "failure").body.splitlines()[0]
    assert first.startswith("ValueError: " + message[:200])
    assert message[:201] not in first
    assert len(first) <= len("ValueError: ") + 201  # 200 characters and an ellipsis


def test_failure_without_a_message(cap: CapturedNotices) -> None:
    with pytest.raises(ValueError), remind("etl"):
        raise ValueError
    assert only(cap, "failure").body.splitlines()[0] == "ValueError"


def test_short_messages_are_kept_whole() -> None:
    error = TaskError.from_exception(OSError("x" * 200))
    assert error == TaskError("OSError", "x" * 200)


def test_cancel(cap: CapturedNotices, clock: FakeClock) -> None:
    with pytest.raises(KeyboardInterrupt), remind("etl"):
        clock.advance(5)
        raise KeyboardInterrupt
    notice = only(cap, "cancel")
    assert notice.title == "■ etl cancelled"
    assert notice.urgency == "normal"
    assert notice.body.splitlines()[:2] == ["KeyboardInterrupt", "After 5.0 s"]


def test_still_running(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl", after="10m", total=100) as task:
        cap.session.tick()
        task.advance(50)
        clock.advance(600)
        cap.session.tick()
    notice = only(cap, "after")
    assert notice.title == "⏱ etl still running (10 min)"
    lines = notice.body.splitlines()
    assert lines[0] == "Running for 10 min"
    assert "Progress: 50% (50/100)" in lines
    assert "ETA: 10 min" in lines


def test_progress(cap: CapturedNotices) -> None:
    with remind("etl", total=8, progress="50%") as task:
        task.advance(5)
        cap.session.tick()
    assert only(cap, "progress").title == "etl reached 50%"


def test_odd_progress_mark(cap: CapturedNotices) -> None:
    with remind("etl", total=1000, progress=0.125) as task:
        task.advance(200)
        cap.session.tick()
    assert only(cap, "progress").title == "etl reached 12.5%"


def test_memory(cap: CapturedNotices) -> None:
    with remind("etl", mem="8GB") as task:
        cap.session.tick()
    assert only(cap, "memory").title == "⚠ etl memory 8.2 GB"
    assert task.peak_rss == 8_200_000_000


def test_condition_and_start(cap: CapturedNotices) -> None:
    with remind("train", when=lambda t: True, on="start,condition"):
        cap.session.tick()
    assert cap.titles() == ["▶ train started", "train: condition met"]


def test_timeout_titles(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl", timeout="1h"):
        clock.advance(3600)
        cap.session.tick()
        clock.advance(300)
    assert cap.titles() == ["⏱ etl passed its timeout (1 h)", "⏱ etl timed out (1 h 5 min)"]


def test_metrics_and_last_note_are_in_the_body(cap: CapturedNotices) -> None:
    with remind("train") as task:
        task.metric(loss=0.123456, epoch=3)
        task.note("first")
        task.note("checkpoint saved")
    body = only(cap, "success").body.splitlines()
    assert "loss=0.1235, epoch=3" in body
    assert "checkpoint saved" in body
    assert "first" not in body


def test_count_without_a_total(cap: CapturedNotices) -> None:
    with remind("etl") as task:
        task.advance(12345)
    assert "Done: 12,345" in only(cap, "success").body.splitlines()


def test_make_notice(clock: FakeClock) -> None:
    task = Task("etl", clock=clock, source="job.py", host="h1")
    task.mark_started()
    snap = task.snapshot()
    notice = make_notice("after", snap, created=12.5, key=3, channels=("memory",))
    assert notice.id == f"{task.id}:after:3"
    assert notice.created == 12.5
    assert notice.task is snap
    assert notice.channels == ("memory",)
    assert notice.body.splitlines() == ["Running for 0.0 s", "job.py on h1"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        notice.title = "x"  # type: ignore[misc]
    assert make_notice("other", snap, created=0).title == "etl: other"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0.0 s"),
        (3.24, "3.2 s"),
        (41, "41 s"),
        (59.4, "59 s"),
        (60, "1 min"),
        (90, "1 min 30 s"),
        (600, "10 min"),
        (12 * 60 + 30, "12 min"),
        (3600, "1 h"),
        (3900, "1 h 5 min"),
        (86400, "1 d"),
        (2 * 86400 + 3 * 3600, "2 d 3 h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1500, "1.5 kB"),
        (512_000_000, "512 MB"),
        (8_200_000_000, "8.2 GB"),
        (8 * 2**30, "8.6 GB"),
        (99_900_000, "99.9 MB"),
        (1.2e12, "1.2 TB"),
    ],
)
def test_format_size(size: float, text: str) -> None:
    assert format_size(size) == text

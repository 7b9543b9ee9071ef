"""The batch watch and the input watch with a clock moved by hand: the debounce, the
failure that ends a batch, and one ``input`` notice per wait."""

from __future__ import annotations

import builtins
import getpass

import pytest

from nbremind import remind
from nbremind.core.clock import FakeClock
from nbremind.runtime.batch import BATCH_DEBOUNCE, BatchWatch
from nbremind.runtime.input_wait import unwrap_input, wrap_input
from nbremind.testing import CapturedNotices


def _cells(batch: BatchWatch, clock: FakeClock, count: int, seconds: float) -> None:
    for _ in range(count):
        batch.cell_started(0.0)
        clock.advance(seconds)
        batch.cell_ended(None, None)
        clock.advance(BATCH_DEBOUNCE / 10)  # the gap before the next cell


def test_a_batch_ends_only_after_the_debounce(cap: CapturedNotices, clock: FakeClock) -> None:
    batch = BatchWatch(cap.session)
    _cells(batch, clock, 3, 2.0)
    batch.tick()
    assert cap.session.flush() and cap.titles() == []
    clock.advance(BATCH_DEBOUNCE)
    batch.tick()
    assert cap.session.flush()
    # ended when its last cell did: 3 cells of 2 s, two gaps of a tenth of the debounce
    assert cap.titles() == [f"✓ 3 cells finished in {6 + 2 * BATCH_DEBOUNCE / 10:.1f} s"]
    assert batch.task is None


def test_a_running_cell_holds_the_batch_open(cap: CapturedNotices, clock: FakeClock) -> None:
    batch = BatchWatch(cap.session)
    batch.cell_started(0.0)
    clock.advance(BATCH_DEBOUNCE * 5)
    batch.tick()
    assert batch.task is not None and not batch.task.done


def test_a_failure_ends_the_batch_at_once_but_only_a_long_one_notifies(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    batch = BatchWatch(cap.session)
    batch.cell_started(5.0)
    clock.advance(1.0)
    batch.cell_ended(ValueError("quick"), 3)
    batch.cell_started(5.0)
    clock.advance(6.0)
    batch.cell_ended(ValueError("bad row"), 4)
    assert cap.session.flush()
    assert cap.titles() == ["✗ cell [4] failed after 6.0 s: ValueError: bad row"]


def test_stop_ends_the_batch_silently(cap: CapturedNotices, clock: FakeClock) -> None:
    batch = BatchWatch(cap.session)
    _cells(batch, clock, 2, 1.0)
    batch.stop()
    assert cap.session.flush() and cap.titles() == []
    assert [t.state.value for t in cap.session.tasks() if t.kind == "batch"] == ["succeeded"]


def test_a_wait_for_input_notifies_once_after_input_wait(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    cap.session.configure(input_wait="2s")
    watch = cap.session.input_watch
    answers = iter(["first", "second"])

    def ask(prompt: str = "") -> str:
        clock.advance(1.0)
        cap.session.tick()  # 1 s in: nothing yet
        clock.advance(1.5)
        cap.session.tick()  # 2.5 s in: the notice
        cap.session.tick()  # and not again
        return next(answers)

    original = builtins.input
    builtins.input = ask
    try:
        wrapped = wrap_input(watch)
        assert wrap_input(watch) is None  # already wrapped: not twice
        with remind("train"):
            assert input("go? ") == "first"
            assert input() == "second"
        unwrap_input(wrapped)
        assert builtins.input is ask
    finally:
        builtins.input = original
    assert cap.session.flush()
    assert cap.titles() == ["⌨ train is waiting for your input"] * 2 + ["✓ train finished"]
    assert watch.waiting() == []


def test_a_top_level_block_wraps_input_and_getpass_and_puts_them_back(
    cap: CapturedNotices,
) -> None:
    before = (builtins.input, getpass.getpass)
    with remind("outer"):
        inside = (builtins.input, getpass.getpass)
        with remind("inner"):
            assert (builtins.input, getpass.getpass) == inside
    assert inside[0] is not before[0] and inside[0].__wrapped__ is before[0]
    assert (builtins.input, getpass.getpass) == before


def test_what_input_raises_passes_through(cap: CapturedNotices) -> None:
    def broken(prompt: str = "") -> str:
        raise EOFError("no more input")

    original = builtins.input
    builtins.input = broken
    try:
        with pytest.raises(EOFError, match="no more input"), remind("reader"):
            input()
    finally:
        builtins.input = original
    assert cap.session.input_watch.waiting() == []


def test_the_settings_and_the_event_are_known() -> None:
    from nbremind.core.config import Config, format_setting
    from nbremind.core.templates import parse_templates

    config = Config()
    assert (config.batch, config.input_wait) == (None, 10.0)
    assert config.updated(batch="10m").batch == 600.0
    assert config.updated(batch="0").batch == 0.0
    assert config.updated(batch="off").batch is None
    assert config.updated(input_wait="off").input_wait == 0.0
    assert config.updated(input_wait="300ms").input_wait == 0.3
    assert format_setting("batch", 0.0) == "0"
    assert format_setting("batch", None) == "none"
    assert format_setting("input_wait", 0.0) == "off"
    with pytest.raises(ValueError, match=r"NBREMIND_BATCH: batch: 'soon' is not a duration"):
        config.updated("NBREMIND_BATCH", batch="soon")
    with pytest.raises(ValueError, match=r"input_wait: -1 is not a duration"):
        config.updated(input_wait=-1)
    assert config.updated(on="input,failure").on == ("input", "failure")
    templates = parse_templates({"input": {"title": "{name} asks"}})
    assert templates["input"]["title"] == "{name} asks"

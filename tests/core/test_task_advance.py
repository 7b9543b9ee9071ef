"""``Task.advance()``'s lock-free paths: exact from several threads, whatever the amounts
(one, small, past the lock-free bound, negative), and ``n`` read while they run."""

from __future__ import annotations

import threading

import pytest

from nbremind import Task
from nbremind.core.clock import FakeClock

#: Amounts on each side of the bound of the lock-free path (2**30 - 1).
AMOUNTS = [1, 5, 256, -3, 2**30 - 1, 2**30, -(2**30) + 1, -(2**30), 3 * 2**31]


def test_advance_is_exact_from_several_threads() -> None:
    task = Task("t", clock=FakeClock())
    rounds, threads = 2_000, 4
    seen: list[int] = []

    def work() -> None:
        for _ in range(rounds):
            for amount in AMOUNTS:
                task.advance(amount)
            task.advance()

    stop = threading.Event()

    def read() -> None:  # as the ticker does, on its own thread
        while True:
            last = stop.is_set()
            seen.append(task.n)
            if last:  # read once more after the workers ended
                return

    workers = [threading.Thread(target=work) for _ in range(threads)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    reader.join()
    assert task.n == threads * rounds * (sum(AMOUNTS) + 1)
    assert seen[-1] == task.n  # read while advancing, without an error


@pytest.mark.parametrize("amount", AMOUNTS)
def test_each_amount_counts_exactly_with_set_in_between(amount: int) -> None:
    task = Task("t", clock=FakeClock())
    for _ in range(300):  # past the fold of the appended amounts
        task.advance(amount)
    assert task.n == 300 * amount
    task.set(7)
    task.advance(amount)
    task.advance()
    assert task.n == 7 + amount + 1


@pytest.mark.parametrize("bad", [True, 0.5, float("nan"), "3", None])
def test_advance_rejects_what_is_not_a_whole_number(bad: object) -> None:
    task = Task("t", clock=FakeClock())
    with pytest.raises(ValueError):
        task.advance(bad)  # type: ignore[arg-type]
    assert task.n == 0

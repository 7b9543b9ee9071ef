"""What the engines' followers share: starting the task that follows the handles, and
handing them out in the order they end."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..core.options import TaskOptions
from ..core.task import Task
from ..runtime.session import Session

__all__ = ["in_completion_order", "start_followed"]


def start_followed(
    session: Session,
    name: str,
    count: int,
    total: int | None,
    options: TaskOptions,
    kind: str,
    nested_on: tuple[str, ...] = (),
) -> Task:
    """Start a task of ``kind`` following ``count`` handles (its total, unless ``total``)
    aside in the running task (:meth:`Session.start_aside`): the caller's code goes on.

    Nested in a task with ``on=`` not given, it notifies only the thresholds its options set
    (its end is the enclosing task's to report) and the events ``nested_on`` (a requeued
    Slurm job: the follower's own to tell)."""
    if session.current() is not None and options.on is None:
        options = options.thresholds_only()
        if nested_on:
            options = options.replace(on=(*(options.on or ()), *nested_on))
    task = session.new_task(
        name, options=options, total=count if total is None else total, kind=kind
    )
    session.start_aside(task)
    return task


def in_completion_order(
    ended: list[Any],
    count: int,
    cond: threading.Condition,
    poll: Callable[[], None],
    wait: float,
    broken: Callable[[], BaseException | None] = lambda: None,
) -> Iterator[Any]:
    """The first ``count`` handles of ``ended`` (a list the follower appends to holding
    ``cond``, which it notifies), each as soon as it is there. A wait of ``wait`` seconds
    with none coming polls from the waiting thread (the loop thread may be idle: the task
    ended at an error, no other task runs); ``broken()``, if it returns an exception, is
    raised instead of waiting on."""
    index = 0
    while index < count:
        with cond:
            while len(ended) <= index:
                failure = broken()
                if failure is not None:
                    raise failure
                if not cond.wait(wait):
                    cond.release()
                    try:
                        poll()
                    finally:
                        cond.acquire()
            handle = ended[index]
        index += 1
        yield handle

"""track() of Dask futures on a real LocalCluster (two worker processes): progress as they
complete, the end at the first error or cancellation, iteration in completion order,
nesting in a remind() block, futures done before the call."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from _dask_cluster import BAD, gate, held, local_cluster, work
from _deadline import eventually
from _require import missing
from nbremind import TaskState, remind, track
from nbremind.testing import capture_notices

try:
    import distributed
except ImportError:  # the extra is not installed: every test here says so
    distributed = None

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    if distributed is None:
        missing("distributed is not installed (pip install 'nbremind[dask]')")
    with local_cluster() as cluster, distributed.Client(cluster) as client:
        yield client


def graph(client: Any, n: int = 200) -> list[Any]:
    """``n`` small tasks of fresh keys; the one at ``BAD`` raises KeyError('x')."""
    return client.map(work, range(n), pure=False)


def test_a_graph_alone_fails_at_its_error_with_the_key_and_the_count(client: Any) -> None:
    with capture_notices() as cap:
        futures = graph(client)
        followed = track(futures)
        task = followed.task
        assert len(followed) == 200
        assert (task.kind, task.name, task.total, task.parent) == (
            "dask",
            "dask: 200 futures",
            200,
            None,
        )
        eventually(lambda: task.done, 60, "the dask task's end")
        distributed.wait(futures)
        notices = cap.notices
    assert task.state is TaskState.FAILED
    assert task.error is not None
    assert (task.error.type, task.error.message) == ("KeyError", "'x'")
    assert [n.event for n in notices] == ["failure"]
    body = notices[0].body
    assert "KeyError: 'x'" in body
    assert f"key {futures[BAD].key!r} erred" in body
    done = re.search(r"(\d+) of 200 done", body)
    assert done is not None, body
    assert int(done.group(1)) == task.n < 200
    assert notices[0].title.startswith("✗ dask: 200 futures failed")


def test_a_graph_that_succeeds_notifies_its_end_alone(client: Any) -> None:
    with capture_notices() as cap:
        futures = client.map(work, range(BAD), pure=False)  # (all below the bad one)
        task = track(futures, name="load").task
        eventually(lambda: task.done, 60, "the dask task's end")
        assert cap.titles() == [cap.notices[0].title]
    assert task.state is TaskState.SUCCEEDED
    assert (task.n, task.total) == (BAD, BAD)
    assert cap.notices[0].event == "success"
    assert cap.notices[0].title.startswith("✓ load finished")


def test_a_loop_yields_every_future_done_as_it_completes(client: Any) -> None:
    with capture_notices():
        futures = graph(client)
        followed = track(futures)
        got = []
        for f in followed:
            assert f.done()
            got.append(f)
        eventually(lambda: followed.task.done, 60, "the dask task's end")
    assert len(got) == 200
    assert {f.key for f in got} == {f.key for f in futures}
    assert followed.task.state is TaskState.FAILED
    with pytest.raises(KeyError):
        futures[BAD].result()


def test_as_completed_is_followed_and_iterated_itself(client: Any) -> None:
    with capture_notices() as cap:
        futures = graph(client)
        completed = distributed.as_completed(futures)
        followed = track(completed)
        assert len(followed) == 200
        got = list(followed)
        eventually(lambda: followed.task.done, 60, "the dask task's end")
        notices = cap.notices
    assert len(got) == 200 and all(f.done() for f in got)
    assert {f.key for f in got} == {f.key for f in futures}
    assert completed.is_empty()  # the very object handed in was consumed
    assert followed.task.state is TaskState.FAILED
    assert [n.event for n in notices] == ["failure"]
    assert f"key {futures[BAD].key!r} erred" in notices[0].body


def test_progress_is_seen_while_futures_are_held(client: Any) -> None:
    event = gate(client)
    with capture_notices() as cap:
        quick = client.map(work, range(10), pure=False)
        waiting = client.map(held, range(10), name=event.name, pure=False)
        followed = track(quick + waiting, name="held")
        task = followed.task
        eventually(lambda: task.snapshot().n == 10, 60, "the quick half counted")
        snap = task.snapshot()
        assert (snap.state, snap.n, snap.total) == (TaskState.RUNNING, 10, 20)
        assert cap.notices == []  # nothing to tell yet
        event.set()
        eventually(lambda: task.done, 60, "the dask task's end")
        assert cap.events() == ["success"]
    assert (task.state, task.n) == (TaskState.SUCCEEDED, 20)


def test_a_progress_mark_fires_from_the_futures_done(client: Any) -> None:
    event = gate(client)
    with capture_notices() as cap:
        quick = client.map(work, range(10), pure=False)
        waiting = client.map(held, range(10), name=event.name, pure=False)
        task = track(quick + waiting, name="half", progress=[0.5]).task
        eventually(lambda: task.n == 10, 60, "the quick half counted")
        cap.session.tick()  # (what the loop thread does every 0.25 s)
        assert cap.events() == ["progress"]
        assert cap.notices[0].body.startswith("Reached 50% (10/20)")
        event.set()
        eventually(lambda: task.done, 60, "the dask task's end")
        assert cap.events() == ["progress", "success"]


def test_a_cancelled_future_ends_the_task_cancelled(client: Any) -> None:
    event = gate(client)
    with capture_notices() as cap:
        futures = client.map(held, range(6), name=event.name, pure=False)
        task = track(futures).task
        futures[3].cancel()
        eventually(lambda: task.done, 60, "the dask task's end")
        event.set()
        distributed.wait(futures[:3] + futures[4:])
        notices = cap.notices
    assert task.state is TaskState.CANCELLED
    assert task.error is not None and task.error.type == "CancelledError"
    assert task.error.message == f"{futures[3].key} cancelled for reason: unknown."
    assert [n.event for n in notices] == ["cancel"]
    assert f"key {futures[3].key!r} was cancelled: 0 of 6 done" in notices[0].body


def test_a_client_closed_while_its_futures_run_ends_the_task_cancelled(client: Any) -> None:
    event = gate(client)
    other = distributed.Client(client.scheduler.address, set_as_default=False)
    try:
        with capture_notices() as cap:
            futures = other.map(held, range(6), name=event.name, pure=False)
            task = track(futures).task
            other.close()
            eventually(lambda: task.done, 60, "the dask task's end")
            events = cap.events()
    finally:
        other.close()
        event.set()
    assert task.state is TaskState.CANCELLED
    assert events == ["cancel"]
    assert task.snapshot().notes[-1].endswith("was cancelled: 0 of 6 done")


def test_in_a_block_the_block_tells_the_end(client: Any) -> None:
    with capture_notices() as cap:
        with remind("etl") as block:
            futures = client.map(work, range(50), pure=False)
            followed = track(futures)
            assert followed.task.parent is block
            total = sum(f.result() for f in followed)
        eventually(lambda: followed.task.done, 60, "the dask task's end")
        notices = cap.notices
    assert total == sum(2 * i for i in range(50))
    assert followed.task.state is TaskState.SUCCEEDED
    assert [n.title for n in notices] == [notices[0].title]
    assert notices[0].title.startswith("✓ etl finished")


def test_in_a_block_a_failure_is_the_blocks_to_tell(client: Any) -> None:
    with capture_notices() as cap:
        with pytest.raises(KeyError), remind("etl"):
            followed = track(graph(client))
            for f in followed:
                f.result()
        eventually(lambda: followed.task.done, 60, "the dask task's end")
        notices = cap.notices
    assert followed.task.state is TaskState.FAILED
    # the block tells its end; before it, the cluster's first erred task unless the block
    # ended first (see test_dask_span.py)
    *told, end = notices
    assert [n.event for n in notices] == ["failure"] * len(notices) and len(told) <= 1
    assert end.title.startswith("✗ etl failed")
    assert all(n.title.startswith("✗ etl: task ") for n in told)


def test_futures_done_before_the_call_count_at_once(client: Any) -> None:
    with capture_notices() as cap:
        futures = client.map(work, range(40), pure=False)
        distributed.wait(futures)
        task = track(futures).task
        assert (task.state, task.n) == (TaskState.SUCCEEDED, 40)  # at the call itself
        assert cap.events() == ["success"]

        erred = graph(client)
        distributed.wait(erred)
        task = track(erred).task
        assert task.state is TaskState.FAILED
        assert task.error is not None and task.error.type == "KeyError"
        assert cap.events() == ["success", "failure"]


def test_a_list_of_other_distributed_objects_is_a_plain_loop() -> None:
    if distributed is None:
        missing("distributed is not installed (pip install 'nbremind[dask]')")
    from distributed.core import Status

    with capture_notices():
        followed = track([Status.running, Status.closed])
        assert list(followed) == [Status.running, Status.closed]
        assert followed.task is not None and followed.task.kind == "loop"

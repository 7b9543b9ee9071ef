"""A ``remind()`` block with an active Client follows its work on the cluster through
nbremind's scheduler plugin, on a real LocalCluster of two worker processes: the block's
progress and total are the cluster's (the panel shows them, ``stall=`` watches them), the
first erred task is told before the block ends, a worker killed mid-graph is told, and the
plugin is registered once per cluster."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from _dask_cluster import BAD, gate, held, local_cluster, work
from _deadline import eventually
from _require import missing
from nbremind import TaskState, get_session, remind
from nbremind.testing import capture_notices

try:
    import distributed
except ImportError:  # the extra is not installed: every test here says so
    distributed = None

pytestmark = pytest.mark.timeout(180)

WORKER = r"tcp://127\.0\.0\.1:\d+"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    if distributed is None:
        missing("distributed is not installed (pip install 'nbremind[dask]')")
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture
def client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as client:
        yield client


def plugin(cluster: Any) -> Any:
    return cluster.scheduler.plugins["nbremind"]


def titles(cap: Any) -> list[str]:
    return [n.title for n in cap.notices]


def test_the_first_erred_task_is_told_while_the_block_runs(client: Any) -> None:
    with capture_notices() as cap:
        with remind("etl") as task:
            futures = client.map(work, range(200), pure=False)
            distributed.wait(futures)
            [notice] = eventually(
                lambda: [n for n in cap.notices if n.title.startswith("✗ etl:")],
                what="the failure notice",
            )
            assert not task.done  # told before the block ends, without ending it
        get_session().flush()

    key = re.escape(repr(futures[BAD].key))
    assert re.fullmatch(f"✗ etl: task {key} failed on worker {WORKER}: KeyError: 'x'", notice.title)
    assert (notice.event, notice.urgency, notice.task.state) == ("failure", "critical", "running")
    assert task.state is TaskState.SUCCEEDED  # the block itself did not raise
    assert (task.n, task.total) == (199, 200)  # the cluster's count, to its last task
    assert titles(cap) == [notice.title, "✓ etl finished"]
    assert re.search(f"task {key} erred on worker {WORKER}", cap.notices[-1].body)


def test_an_error_read_in_the_block_ends_it_failed_naming_the_task(client: Any) -> None:
    with capture_notices() as cap:
        with pytest.raises(KeyError), remind("etl"):
            futures = client.map(work, range(200), pure=False)
            for future in futures:
                future.result()
        get_session().flush()

    *told, end = cap.notices
    # (the cluster's notice comes first unless the block ended before it could be sent)
    assert all(n.title.startswith("✗ etl: task ") for n in told) and len(told) <= 1
    assert end.title == "✗ etl failed"
    key = re.escape(repr(futures[BAD].key))
    assert re.search(f"KeyError: 'x'\n.*task {key} erred on worker {WORKER}", end.body, re.S)


def test_progress_and_total_are_the_clusters_and_the_panel_shows_them(client: Any) -> None:
    from nbremind.ipython.panel import Panel
    from nbremind.ipython.panel_rows import ROW_FIELDS

    held_back = gate(client)

    def row(task_id: str) -> dict[str, Any] | None:
        for found in panel.state(time.monotonic(), sample=False)["rows"]:
            if found[0] == task_id:
                return dict(zip(ROW_FIELDS, found, strict=True))
        return None

    with capture_notices() as cap, remind("load") as task:
        panel = Panel(cap.session)  # (the panel of the session the block runs in)
        quick = client.map(work, range(30), pure=False)
        slow = client.map(held, range(20), name=held_back.name, pure=False)
        shown = eventually(
            lambda: (r := row(task.id)) is not None and r["count"] == "30/50" and r,
            what="the panel showing 30/50",
        )
        assert (task.n, task.total) == (30, 50)
        assert shown["max"] == 50 and shown["value"] == 30
        held_back.set()
        distributed.wait(quick + slow)
        eventually(lambda: task.n == 50, what="the count reaching 50")
    assert task.state is TaskState.SUCCEEDED


def test_a_block_with_its_own_total_keeps_it(client: Any) -> None:
    with capture_notices(), remind("own", total=3) as task:
        task.advance(2)
        # the plugin's last count comes before the client learns of the last result: by the
        # end of the wait, a count it sent would be here
        distributed.wait(client.map(work, range(20), pure=False))
        assert (task.n, task.total) == (2, 3)


def test_a_stall_is_told_from_the_clusters_progress(client: Any) -> None:
    held_back = gate(client)
    with capture_notices(tick=True) as cap:  # (thresholds are checked by the ticker)
        with remind("train", stall="1s") as task:
            quick = client.map(work, range(10), pure=False)
            slow = client.map(held, range(5), name=held_back.name, pure=False)
            eventually(lambda: any("stalled" in t for t in titles(cap)), 15, "the stall notice")
            held_back.set()
            distributed.wait(quick + slow)
            eventually(lambda: any("moving again" in t for t in titles(cap)), 15, "the resume")
        get_session().flush()

    stalled = next(t for t in titles(cap) if "stalled" in t)
    assert stalled == "⏸ train stalled: no progress for 1.0 s (at 66.7%, 10/15)"
    assert task.n == 15


def test_a_worker_killed_mid_graph_is_told(client: Any) -> None:
    held_back = gate(client)
    with capture_notices() as cap:
        with remind("etl") as task:
            slow = client.map(held, range(6), name=held_back.name, pure=False)
            eventually(
                lambda: sum(map(len, client.processing().values())) == len(slow), what="all held"
            )
            address, pid = next(iter(client.run(os.getpid).items()))
            os.kill(pid, signal.SIGKILL)
            [notice] = eventually(
                lambda: [n for n in cap.notices if n.event == "worker"], 30, "the lost worker"
            )
            assert not task.done
            held_back.set()
            distributed.wait(slow, timeout=60)  # (computed again on the workers left)
        get_session().flush()

    assert notice.title == f"⚠ etl lost worker {address} (1 left)"
    assert notice.task.state == "running"
    assert task.state is TaskState.SUCCEEDED
    assert titles(cap) == [notice.title, "✓ etl finished"]
    client.wait_for_workers(2, timeout=60)  # the nanny started a new one


def test_blocks_nest_and_the_plugin_is_registered_once(cluster: Any, client: Any) -> None:
    with capture_notices():
        with remind("outer") as outer:
            distributed.wait(client.map(work, range(10), pure=False))
            with remind("inner") as inner:
                distributed.wait(client.map(work, range(5), pure=False))
                eventually(lambda: inner.n == 5, what="the inner count")
            eventually(lambda: outer.n == 15, what="the outer count")
        assert (outer.total, inner.total) == (15, 5)
        with distributed.Client(cluster) as other, remind("other") as third:
            distributed.wait(other.map(work, range(4), pure=False))
            eventually(lambda: third.n == 4, what="the second client's count")

    assert list(cluster.scheduler.plugins).count("nbremind") == 1
    assert plugin(cluster).starts == 1
    eventually(lambda: not plugin(cluster).spans, what="the spans forgotten")
    assert not plugin(cluster).pending


def test_a_span_is_opened_only_while_a_client_is_active(cluster: Any) -> None:
    import dask

    with capture_notices(), remind("local"):
        assert "span" not in dask.get_annotations()
    with distributed.Client(cluster), capture_notices(), remind("remote"):
        assert dask.get_annotations()["span"]["name"] == ("remote",)
    assert "span" not in dask.get_annotations()  # closed with the block


_SCRIPT = """
import sys
from distributed import Client, LocalCluster, wait
from nbremind import remind


def work(i):
    if i == 3:
        raise KeyError("x")
    return sum(range(20_000 * i))  # (a few ms each: the block outlasts the first error)


if __name__ == "__main__":  # (the workers are processes that import this script)
    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as cluster, Client(cluster) as client:
        with remind("etl", channels=[sys.argv[1]]):
            wait(client.map(work, range(200), pure=False))
"""


def test_a_script_ending_right_after_its_block_delivers_both_notices(
    http_server: Any, nbremind_data_dir: Any, tmp_path: Any
) -> None:
    if distributed is None:
        missing("distributed is not installed (pip install 'nbremind[dask]')")
    from _pythons import run_in

    script = tmp_path / "etl.py"
    script.write_text(_SCRIPT)

    done = run_in(tmp_path, sys.executable, str(script), http_server.url("/hook"), timeout=120)

    assert done.returncode == 0, done.stderr
    first, end = (r.json() for r in http_server.wait_for(2))
    assert re.fullmatch(
        f"✗ etl: task 'work-[0-9a-f-]+-3' failed on worker {WORKER}: KeyError: 'x'", first["title"]
    ), first
    assert (first["event"], first["state"]) == ("failure", "running")
    assert (end["event"], end["title"]) == ("success", "✓ etl finished")
    assert "Progress: 99.5% (199/200)" in end["body"]

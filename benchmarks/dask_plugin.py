"""What following a block's work on a Dask cluster costs: the scheduler's throughput with
nbremind's plugin (tasks per second, against the same cluster code without it, same run),
the plugin's own time per task, and what a ``remind()`` block costs the user's thread when
a client is active (its span opened and closed).

Arms of the throughput table, each a graph of N trivial tasks (``client.map(inc, ...)``,
fresh keys) submitted and waited for, rounds alternating, on in-process LocalClusters
(2 workers of 2 threads; in-process so that the scheduler's work, not the pickling to
worker processes, is what is measured):

* ``no plugin`` -- a cluster nbremind never touched: the peer;
* ``plugin, outside any block`` -- the plugin registered, the tasks in no block: what
  every other user of the cluster pays (one dictionary look-up per transition);
* ``plugin, in a remind() block`` -- the tasks in a block's span, counted and reported
  (progress events every 0.25 s).

    .venv/bin/python benchmarks/dask_plugin.py [--tasks N] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import machine, print_table, ratio, verdict

#: Budget: the plugin keeps the scheduler's throughput within this factor of none.
THROUGHPUT_BUDGET = 1.10
#: Blocks per sample of the user's-thread arms.
BLOCKS = 2000


def inc(x: int) -> int:
    return x + 1


def _graph_seconds(client: Any, tasks: int) -> float:
    from distributed import wait

    started = time.perf_counter()
    wait(client.map(inc, range(tasks), pure=False))
    return time.perf_counter() - started


def throughput(tasks: int, rounds: int) -> list[list[object]]:
    from distributed import Client, LocalCluster

    from nbremind import remind
    from nbremind.testing import capture_notices

    options = {"n_workers": 2, "threads_per_worker": 2, "processes": False}
    with (
        LocalCluster(**options, dashboard_address=None) as bare,
        LocalCluster(**options, dashboard_address=None) as followed,
        Client(bare, set_as_default=False) as peer,
        Client(followed) as client,
    ):
        with capture_notices(), remind("warm-up"):  # registers the plugin on `followed`
            _graph_seconds(client, 100)
        _graph_seconds(peer, 100)
        times: dict[str, list[float]] = {"peer": [], "outside": [], "block": []}
        for _ in range(rounds):
            times["peer"].append(_graph_seconds(peer, tasks))
            times["outside"].append(_graph_seconds(client, tasks))
            with capture_notices(), remind("etl") as task:
                times["block"].append(_graph_seconds(client, tasks))
            assert task.total == tasks, task.total  # the plugin did count them
        assert "nbremind" in followed.scheduler.plugins
        assert "nbremind" not in bare.scheduler.plugins
    rate = {arm: tasks / statistics.median(values) for arm, values in times.items()}
    rows = []
    for arm, label in (
        ("peer", "no plugin (peer)"),
        ("outside", "plugin, outside any block"),
        ("block", "plugin, in a remind() block"),
    ):
        slower = rate["peer"] / rate[arm]
        budget = "peer" if arm == "peer" else verdict(slower <= THROUGHPUT_BUDGET)
        rows.append([label, f"{rate[arm]:,.0f}", ratio(rate[arm], rate["peer"]), budget])
    return rows


class _Task:
    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = "released"


class _Scheduler:
    """What the plugin reads of a scheduler, without one (its own time alone)."""

    def __init__(self) -> None:
        self.tasks: dict[str, _Task] = {}
        self.workers: dict[str, object] = {}
        self.events = 0

        class _Loop:
            def call_later(self, delay: float, callback: Any) -> None:
                pass

        self.loop = _Loop()

    def log_event(self, topic: str, message: object) -> None:
        self.events += 1


def plugin_time(tasks: int, rounds: int) -> list[list[object]]:
    """µs of the plugin per task: learning it (``update_graph``) and its five transitions."""
    import asyncio

    from nbremind.integrations.dask_plugin import RemindPlugin

    watched, unwatched = [], []
    steps = (
        ("released", "waiting"),
        ("waiting", "processing"),
        ("processing", "memory"),
        ("memory", "released"),
        ("released", "forgotten"),
    )
    for _ in range(rounds):
        for arm in ("watched", "unwatched"):
            scheduler = _Scheduler()
            plugin = RemindPlugin()
            asyncio.run(plugin.start(scheduler))
            keys = [f"inc-{i}" for i in range(tasks)]
            marks = {key: ["topic", ["span"]] for key in keys} if arm == "watched" else {}
            started = time.perf_counter()
            plugin.update_graph(scheduler, client="c", tasks=keys, annotations={"nbremind": marks})
            transition = plugin.transition
            for key in keys:
                for start, finish in steps:
                    transition(key, start, finish, stimulus_id="s")
            took = time.perf_counter() - started
            (watched if arm == "watched" else unwatched).append(took / tasks * 1e6)
    return [
        ["tasks of no watched span", f"{statistics.median(unwatched):.2f}"],
        ["tasks of a block's span", f"{statistics.median(watched):.2f}"],
    ]


def _per_block(calls: int) -> float:
    """µs of the user's thread per ``with remind("b", on=[]):`` block, in the session now."""
    from nbremind import remind

    started = time.thread_time()
    for _ in range(calls):
        with remind("b", on=[]):
            pass
    return (time.thread_time() - started) / calls * 1e6


def block_floor(calls: int, rounds: int) -> float:
    """The block's cost before anything imported ``distributed`` (run first)."""
    from nbremind.testing import capture_notices

    assert "distributed" not in sys.modules
    with capture_notices():
        return statistics.median(_per_block(calls) for _ in range(rounds))


def block_cost(calls: int, rounds: int, floor: float) -> list[list[object]]:
    """µs of the user's thread per block once ``distributed`` is imported, with and
    without a client."""
    from distributed import Client, LocalCluster

    from nbremind.testing import capture_notices

    samples: dict[str, list[float]] = {"none": [], "client": []}
    with capture_notices():
        for _ in range(rounds):
            samples["none"].append(_per_block(calls))
        with (
            LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster,
            Client(cluster),
        ):
            _per_block(calls)  # (the plugin's registration, once)
            for _ in range(rounds):
                samples["client"].append(_per_block(calls))
    none = statistics.median(samples["none"])
    active = statistics.median(samples["client"])
    return [
        ["distributed not imported (floor)", f"{floor:.1f}", "1.00x"],
        ["distributed imported, no client", f"{none:.1f}", ratio(none, floor)],
        ["a client active: span opened and closed", f"{active:.1f}", ratio(active, floor)],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer tasks and rounds")
    args = parser.parse_args()
    tasks, rounds = (1000, 2) if args.quick else (args.tasks, args.rounds)
    print(machine())
    floor = block_floor(BLOCKS, rounds)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    rows = throughput(tasks, rounds)
    print_table(
        f"Scheduler throughput, {tasks:,} tasks a graph, median of {rounds} rounds",
        ["arm", "tasks/s", "vs no plugin", f"budget >= 1/{THROUGHPUT_BUDGET:g}x"],
        rows,
    )
    print_table(
        f"The plugin's own time on the scheduler, {tasks:,} tasks",
        ["tasks", "µs per task (graph + 5 transitions)"],
        plugin_time(tasks, rounds),
    )
    print_table(
        f"A remind() block on the user's thread (on=[]), {BLOCKS:,} blocks a sample",
        ["case", "µs per block", "vs floor"],
        block_cost(BLOCKS, rounds, floor),
    )


if __name__ == "__main__":
    main()

"""What a ``with remind(...)`` block and a ``track()`` loop nested in a task cost the user's
thread, against ``contextlib.nullcontext()`` and tqdm.

Each arm runs K times in a row per sample (an empty block, or a loop over three items), in
the process's own session (outbox and run history on, in a fresh data folder;
``channels=["null"]``, a channel that accepts every notice). Arms rotate within each round;
the table shows the median over rounds of the main thread's CPU time per call
(``time.thread_time``: the work done on the user's thread, whatever the loop thread does
meanwhile) and of the wall time.

* ``nullcontext()`` -- the floor of a ``with`` statement;
* ``tqdm(range(3))`` -- creating, running and closing a tqdm bar (null file): the peer of
  "a task", as the first-hour issue measured it;
* ``remind()`` -- ``with remind("step"):``, default options: its success notice is made,
  handed to the loop thread and delivered (the loop thread's own work is measured by
  ``notice_throughput.py``);
* ``remind(on=[])`` -- the same without a notice;
* ``track([1, 2, 3]) in a task`` -- a loop per file inside ``with remind("etl"):``, the
  common nested case, against ``tqdm([1, 2, 3])`` in the same place.

Budgets (DESIGN §4): ``with remind(...)`` <= 20 us on the user's thread; a ``track()`` call
nested in a task <= 10 us.

    .venv/bin/python benchmarks/block_overhead.py [--calls K] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable

BLOCK_BUDGET_US = 20.0
NESTED_BUDGET_US = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per sample")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds = 500, 5
    os.environ["NBREMIND_DATA_DIR"] = tempfile.mkdtemp(prefix="nbremind-bench-")
    sys.path.insert(0, os.path.dirname(__file__))
    from tqdm import tqdm

    import nbremind
    from _bench import machine, median, print_table, ratio, verdict
    from nbremind import remind, track

    nbremind.configure(channels=["null"])
    session = nbremind.get_session()
    null = open(os.devnull, "w")  # noqa: SIM115 -- the bars' file for the whole run
    items = [1, 2, 3]
    k = args.calls

    def nullcontext() -> None:
        for _ in range(k):
            with contextlib.nullcontext():
                pass

    def bar() -> None:
        for _ in range(k):
            for _ in tqdm(range(3), file=null):
                pass

    def block() -> None:
        for _ in range(k):
            with remind("step"):
                pass

    def quiet_block() -> None:
        for _ in range(k):
            with remind("step", on=[]):
                pass

    def nested_track() -> None:
        with remind("etl"):
            for _ in range(k):
                for _ in track(items):
                    pass

    def nested_tqdm() -> None:
        with remind("etl"):
            for _ in range(k):
                for _ in tqdm(items, file=null):
                    pass

    arms: dict[str, Callable[[], None]] = {
        "nullcontext()": nullcontext,
        "tqdm(range(3))": bar,
        "remind()": block,
        "remind(on=[])": quiet_block,
        "track([1, 2, 3]) in a task": nested_track,
        "tqdm([1, 2, 3]) in a task": nested_tqdm,
    }
    cpu: dict[str, list[float]] = {name: [] for name in arms}
    wall: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for round_ in range(args.rounds + 1):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            session.flush(30)  # each sample starts with nothing waiting for the loop thread
            session.history_recorder.sync(30)
            c0, w0 = time.thread_time(), time.perf_counter()
            arms[name]()
            c1, w1 = time.thread_time(), time.perf_counter()
            if round_:  # the first round warms up
                cpu[name].append((c1 - c0) / k * 1e6)
                wall[name].append((w1 - w0) / k * 1e6)
    session.flush(30)
    med_cpu = {name: median(values) for name, values in cpu.items()}
    med_wall = {name: median(values) for name, values in wall.items()}
    block_ok = med_cpu["remind()"] <= BLOCK_BUDGET_US
    quiet_ok = med_cpu["remind(on=[])"] <= BLOCK_BUDGET_US
    nested_ok = med_cpu["track([1, 2, 3]) in a task"] <= NESTED_BUDGET_US
    budgets = {
        "remind()": f"<= {BLOCK_BUDGET_US:g} us: {verdict(block_ok)}",
        "remind(on=[])": f"<= {BLOCK_BUDGET_US:g} us: {verdict(quiet_ok)}",
        "track([1, 2, 3]) in a task": f"<= {NESTED_BUDGET_US:g} us: {verdict(nested_ok)}",
        "nullcontext()": "floor",
        "tqdm(range(3))": "peer",
        "tqdm([1, 2, 3]) in a task": "peer",
    }
    print(f"block_overhead: {machine()}")
    print_table(
        f"User-thread cost per call ({k:,} calls a sample, median of {args.rounds} rounds)",
        ["arm", "CPU us/call", "wall us/call", "vs tqdm(range(3))", "budget"],
        [
            [
                name,
                f"{med_cpu[name]:.2f}",
                f"{med_wall[name]:.2f}",
                ratio(med_cpu[name], med_cpu["tqdm(range(3))"]),
                budgets[name],
            ]
            for name in names
        ],
    )
    null.close()
    return 0 if block_ok and quiet_ok and nested_ok else 1


if __name__ == "__main__":
    sys.exit(main())

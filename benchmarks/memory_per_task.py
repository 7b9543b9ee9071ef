"""Memory left behind per task: RSS, context variables and the history backlog over 100,000
blocks, each arm in a fresh process.

Arms (each one loop on the main thread, nothing else running):

* ``with remind("b", channels=["null"]): pass`` -- a success notice per block, handed to the
  loop thread (the null channel drops it), a history row per block;
* the same with ``on=[]`` -- no notice: the task and its history row only;
* a function decorated with ``@remind("f", channels=["null"], on=[])``, called in a loop.

After 10,000 and 100,000 blocks the child reports its RSS (psutil), the variables set in the
main thread's context (``len(contextvars.copy_context())``: a variable stays there, as a key
of the context's mapping, once set; ``ContextVar`` objects are not tracked by the garbage
collector, so ``gc.get_objects()`` cannot count them), the ``Task`` objects alive, the
history recorder's backlog (tasks waiting to be written: the largest seen, sampled every 100
blocks, and the current one) and the notices still waiting for the loop thread. The data
folder is a fresh temporary one per arm.

Budget: nothing grows with the number of blocks -- the same context variables after 100,000
blocks as after 10,000, a backlog at most ``history_recorder.MAX_QUEUED``, and RSS within
5 MB between 10,000 and 100,000 blocks for every arm. The arm with notices is flat because
the notices queued for the loop thread are bounded (``session.MAX_QUEUED``): a flood of
notifying blocks runs at the loop thread's pace, which its ``µs/block`` column shows.

    .venv/bin/python benchmarks/memory_per_task.py [--blocks N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from _bench import machine, print_table, verdict

RSS_BUDGET_MB = 5.0
ARMS = {
    "block": 'with remind("b", channels=["null"]): pass',
    "block, on=[]": 'with remind("b", channels=["null"], on=[]): pass',
    "decorated, on=[]": '@remind("f", channels=["null"], on=[]) def f(); f()',
}


def child(arm: str, blocks: int) -> dict[str, Any]:
    import contextvars
    import gc

    import psutil

    import nbremind
    import nbremind.runtime.run_recorder
    from nbremind.core.task import Task

    session = nbremind.get_session()
    recorder = session.history_recorder
    process = psutil.Process()
    remind = nbremind.remind

    if arm == "block":

        def one() -> None:
            with remind("b", channels=["null"]):
                pass
    elif arm == "block, on=[]":

        def one() -> None:
            with remind("b", channels=["null"], on=[]):
                pass
    elif arm == "decorated, on=[]":

        @remind("f", channels=["null"], on=[])
        def one() -> None:
            pass
    else:
        raise ValueError(arm)

    marks = sorted({min(10_000, blocks), blocks})
    # a tree without a bound (to compare with) reports none, and fails the budget
    bound = getattr(nbremind.runtime.run_recorder, "MAX_QUEUED", None)
    out: dict[str, Any] = {"max_queued": bound, "marks": {}}
    largest = 0
    start = time.perf_counter()
    done = 0
    for mark in marks:
        while done < mark:
            step = min(100, mark - done)
            for _ in range(step):
                one()
            done += step
            largest = max(largest, len(recorder._queue))
        elapsed = time.perf_counter() - start
        gc.collect()
        out["marks"][str(mark)] = {
            "rss_mb": process.memory_info().rss / 1e6,
            "context_vars": len(contextvars.copy_context()),
            "tasks_alive": sum(1 for o in gc.get_objects() if type(o) is Task),
            "backlog_max": largest,
            "backlog_now": len(recorder._queue),
            "notices_waiting": session.notifier.in_flight,
            "us_per_block": elapsed / mark * 1e6,
        }
    return out


def run_arm(arm: str, blocks: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nbremind-bench-") as data:
        env = {**os.environ, "NBREMIND_DATA_DIR": data}
        done = subprocess.run(
            [sys.executable, __file__, "--child", arm, "--blocks", str(blocks)],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{arm}: the child failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=100_000, help="blocks per arm")
    parser.add_argument("--quick", action="store_true", help="20,000 blocks per arm")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args.blocks)
        print(json.dumps(result), flush=True)
        os._exit(0)  # skip delivering the notices still waiting: nobody reads them
    blocks = 20_000 if args.quick else args.blocks

    print(f"memory_per_task: {machine()}")
    for arm, code in ARMS.items():
        print(f"  {arm}: {code}")
    results = {arm: run_arm(arm, blocks) for arm in ARMS}
    failed = False
    rows = []
    for arm, result in results.items():
        marks = result["marks"]
        first, last = marks[min(marks, key=int)], marks[max(marks, key=int)]
        growth = last["rss_mb"] - first["rss_mb"]
        flat_vars = last["context_vars"] == first["context_vars"]
        bounded = result["max_queued"] is not None and last["backlog_max"] <= result["max_queued"]
        rss_ok = growth <= RSS_BUDGET_MB
        ok = flat_vars and bounded and rss_ok
        failed |= not ok
        for mark, m in sorted(marks.items(), key=lambda kv: int(kv[0])):
            rows.append(
                [
                    arm,
                    f"{int(mark):,}",
                    f"{m['rss_mb']:.1f}",
                    m["context_vars"],
                    f"{m['tasks_alive']:,}",
                    f"{m['backlog_max']:,} / {m['backlog_now']:,}",
                    f"{m['notices_waiting']:,}",
                    f"{m['us_per_block']:.1f}",
                    verdict(ok) if m is last else "",
                ]
            )
    print_table(
        f"After N blocks, each arm in a fresh process (backlog bound: "
        f"{results['block']['max_queued'] or 'none'} tasks)",
        [
            "arm",
            "blocks",
            "RSS MB",
            "context vars",
            "Task objects",
            "history backlog max / now",
            "notices waiting",
            "µs/block",
            "flat",
        ],
        rows,
    )
    for arm, result in results.items():
        marks = result["marks"]
        first, last = marks[min(marks, key=int)], marks[max(marks, key=int)]
        print(
            f"{arm}: RSS {last['rss_mb'] - first['rss_mb']:+.1f} MB from "
            f"{int(min(marks, key=int)):,} to {int(max(marks, key=int)):,} blocks"
        )
    print(
        f"budget: context vars constant, backlog <= the bound, RSS growth <= "
        f"{RSS_BUDGET_MB:g} MB -> {verdict(not failed)}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU used by nbremind's ticker while a task runs and nothing changes, against tqdm's monitor.

Each arm runs in a fresh process whose main thread only waits on a ``threading.Event``:

* ``no task`` -- ``import nbremind`` and nothing else: the floor;
* ``nbremind`` -- inside ``with remind("idle", after="1h"):``, so the ticker thread ticks
  (every 0.25 s by default, with a memory sample at most every second);
* ``nbremind, every threshold`` -- the same with every threshold a task can set: ``after``,
  ``progress``, ``mem``, ``mem_limit`` (read each tick: the process's RSS, or the cgroup's
  working set), ``gpu_mem``, ``stall`` (the GPU asked too where a task has no progress; here
  it has) and ``slower`` (with a usual duration to compare with);
* ``tqdm`` -- a ``tqdm(total=10**9, file=devnull, mininterval=0.1)`` bar that is never
  updated, with tqdm's monitor thread alive: the peer;
* ``asyncio`` -- a thread whose asyncio loop only does ``await asyncio.sleep(0.25)`` forever:
  what waking up four times a second costs on this machine, with no work at all.

After a 1 s settle (thread start, first memory sample, lazy imports) the process CPU time
(``time.process_time()``) and the background thread's own CPU clock are read over the
window (10 s by default) and shown as % of one core.

Budget (DESIGN §4): ticker while a task runs and nothing changes <= 0.5 % of one core.

    .venv/bin/python benchmarks/ticker_idle_cpu.py [--seconds S] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

from _bench import machine, print_table, ratio, verdict

BUDGET_PCT = 0.5
SETTLE = 1.0


def thread_cpu(thread: threading.Thread | None) -> float:
    """CPU seconds used so far by ``thread`` (0.0 when there is none)."""
    if thread is None or thread.ident is None:
        return 0.0
    if hasattr(time, "pthread_getcpuclockid"):
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    import psutil  # pragma: no cover - platforms without per-thread clocks

    for t in psutil.Process().threads():
        if t.id == thread.native_id:
            return float(t.user_time + t.system_time)
    return 0.0


def window(seconds: float, thread: threading.Thread | None) -> dict[str, float]:
    """Wait ``seconds`` on an Event and return the CPU spent meanwhile."""
    stop = threading.Event()
    stop.wait(SETTLE)
    wall0, cpu0, th0 = time.perf_counter(), time.process_time(), thread_cpu(thread)
    stop.wait(seconds)
    wall1, cpu1, th1 = time.perf_counter(), time.process_time(), thread_cpu(thread)
    return {"wall": wall1 - wall0, "cpu": cpu1 - cpu0, "thread": th1 - th0}


def child(arm: str, seconds: float) -> dict[str, float]:
    import nbremind

    if arm == "none":
        return {**window(seconds, None), "wakeups": 0}
    if arm in ("nbremind", "nbremind-all"):
        session = nbremind.get_session()
        ticks = [0]
        ticker = session.ticker
        tick = ticker._tick

        def counting() -> bool:
            ticks[0] += 1
            return tick()

        ticker._tick = counting
        options: dict[str, object] = {"after": "1h"}
        if arm == "nbremind-all":
            options.update(
                total=10**9,
                progress="50%",
                mem="1TB",
                mem_limit="99%",
                gpu_mem="99%",
                stall="1h",
                slower=1.5,
            )
        with nbremind.remind("idle", **options) as task:  # type: ignore[arg-type]
            if arm == "nbremind-all":
                task.advance()
                task.usual = 3600.0  # as the run history would give it
            thread = ticker._thread
            result = window(seconds, thread)
            before = ticks[0]
        result["wakeups"] = before  # ticks since start, the settle second included
        return result
    if arm == "tqdm":
        from tqdm import tqdm

        with open(os.devnull, "w") as devnull:
            bar = tqdm(total=10**9, file=devnull, mininterval=0.1)
            try:
                monitor = tqdm.monitor
                if monitor is None or not monitor.is_alive():
                    raise RuntimeError("tqdm's monitor thread is not running")
                result = window(seconds, monitor)
            finally:
                bar.close()
        return {**result, "wakeups": -1}
    if arm == "asyncio":
        import asyncio

        loop = asyncio.new_event_loop()

        async def sleeping() -> None:
            while True:
                await asyncio.sleep(0.25)

        def run() -> None:
            task = loop.create_task(sleeping())
            loop.run_forever()
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            result = window(seconds, thread)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(2)
        return {**result, "wakeups": -1}
    raise ValueError(arm)


def run_arm(arm: str, seconds: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", arm, "--seconds", str(seconds)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per arm")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    # nbremind's files (and a kernel's, which inherits it) in a fresh folder, never the user's
    os.environ["NBREMIND_DATA_DIR"] = tempfile.mkdtemp(prefix="nbremind-bench-")
    if args.child:
        print(json.dumps(child(args.child, args.seconds)))
        return 0
    seconds = 1.0 if args.quick else args.seconds

    print(f"ticker_idle_cpu: {machine()}")
    labels = {
        "none": "no task (floor)",
        "nbremind": 'nbremind: remind("idle", after="1h")',
        "nbremind-all": "nbremind, every threshold set",
        "tqdm": "tqdm bar + monitor thread (peer)",
        "asyncio": "bare asyncio loop, sleep(0.25) forever",
    }
    results = {arm: run_arm(arm, seconds) for arm in labels}

    def pct(r: dict[str, float], key: str) -> float:
        return 100.0 * r[key] / r["wall"]

    peer = pct(results["tqdm"], "cpu")
    nb = pct(results["nbremind"], "cpu")
    ok = nb <= BUDGET_PCT
    every = pct(results["nbremind-all"], "cpu")
    budget = {
        "nbremind": f"<= {BUDGET_PCT:g} %: {verdict(ok)}",
        "nbremind-all": f"<= {BUDGET_PCT:g} %: {verdict(every <= BUDGET_PCT)}",
        "tqdm": "peer",
    }
    rows = []
    for arm, label in labels.items():
        r = results[arm]
        rows.append(
            [
                label,
                f"{r['wall']:.2f}",
                f"{r['cpu'] * 1e3:.2f}",
                f"{pct(r, 'cpu'):.3f}",
                "-" if arm == "none" else f"{r['thread'] * 1e3:.2f}",
                "-" if arm == "none" else f"{pct(r, 'thread'):.3f}",
                ratio(pct(r, "cpu"), peer),
                budget.get(arm, "-"),
            ]
        )
    print_table(
        f"CPU while nothing changes, {seconds:g} s window after a {SETTLE:g} s settle",
        [
            "arm",
            "wall s",
            "process CPU ms",
            "process % core",
            "bg thread CPU ms",
            "bg thread % core",
            "vs tqdm",
            "budget",
        ],
        rows,
    )
    wakeups = int(results["nbremind"]["wakeups"])
    print(f"nbremind ticks in the {seconds + SETTLE:g} s the task ran: {wakeups}")
    print(
        f"added by the running task over the floor: "
        f"{nb - pct(results['none'], 'cpu'):+.3f} % of one core"
    )
    print(
        f"nbremind against the bare 4 Hz asyncio loop: {ratio(nb, pct(results['asyncio'], 'cpu'))}"
    )
    print(f"budget: ticker <= {BUDGET_PCT:g} % of one core: {nb:.3f} % -> {verdict(ok)}")
    print(
        f"budget: ticker with every threshold set <= {BUDGET_PCT:g} %: {every:.3f} % -> "
        f"{verdict(every <= BUDGET_PCT)}"
    )
    return 0 if ok and every <= BUDGET_PCT else 1


if __name__ == "__main__":
    sys.exit(main())

"""Panel at scale: 10,000 live tasks in a real kernel, all advancing, then 10 of them.

A real ipykernel is started through jupyter_client; ``%load_ext nbremind`` runs and the panel
is displayed (``%remind panel``). Each arm then starts ``--tasks`` top-level tasks (each in a
context of its own, as worker threads would) from a cell that returns at once, and a thread
in the kernel advances them in a tight loop for ``--seconds``: in the first arm every task,
in the second only 10 of them (spread over the list). The kernel stays idle meanwhile, as
it does while worker threads run, so a page can (re)connect: halfway through the second arm
the client asks for the widget's state as JupyterLab's widget manager does
(``request_state``) and measures the full state it gets.

The client reads IOPub as a notebook front end does and counts the ``comm_msg`` messages
addressed to the panel's widget and their size (the JSON of the message content). It also
replays the deltas on the rows as the page does, to tell when the page listed every task.
In the kernel, nbremind's refresher records the loop thread's CPU time of each refresh pass.

The peer is the usual per-task widget: one ``tqdm.notebook`` bar per task, advanced the same
way (see ``panel_refresh.py``), at ``--peer-tasks`` bars: 10,000 bars open some 60,000 widget
models and take minutes to make, so the default is 1,000.

Budgets (DESIGN §4): the panel sends <= 4 messages/s whatever the task count, and its bytes
per update are bounded: <= 64 kB per update (``panel_rows.UPDATE_BYTES`` of row data plus
the message's own fields), which at 4 updates a second keeps the panel to a quarter of
jupyter_server's default IOPub data rate limit (1 MB/s over 3 s; above it the server drops
messages and warns "IOPub data rate exceeded").

    .venv/bin/python benchmarks/panel_scale.py [--tasks N] [--seconds S] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

from _bench import machine, median, percentile, print_table, verdict
from panel_refresh import SETUP, Client, busiest_second, measure_tqdm, stats_of

RATE_BUDGET = 4.0
BYTES_BUDGET = 64_000
MOVING = 10

START = """
import contextvars, threading, time
from nbremind.ipython.live import live_refresh
from nbremind.ipython.panel import panel_of
_s = nbremind.get_session()
_r = live_refresh(_s)

def _top(i):
    task = _s.new_task(f"task {{i}}", total=10**9)
    _s.start(task)
    return task

_first, _p0 = len(_r.pass_cpu), _r.passes
_t0 = time.monotonic()
_tasks = [contextvars.Context().run(_top, i) for i in range({tasks})]
_step = len(_tasks) // {moving} if {moving} else 1
_moving = _tasks[::_step][:{moving}] if {moving} else _tasks
_stop = threading.Event()
_rounds = [0]

def _advance():
    while not _stop.is_set():
        for _t in _moving:
            _t.advance()
        _rounds[0] += 1

threading.Thread(target=_advance, daemon=True).start()
print("@@ready", time.monotonic() - _t0, flush=True)
"""
STOP = """
import json
_stop.set()
_wall = time.monotonic() - _t0
_cpu = list(_r.pass_cpu)[_first:]
_at = list(getattr(_r, "pass_at", []))[-len(_cpu):] if _cpu else []
_sent = [t for t in panel_of(_s).sent_at if t >= _t0]
_stats = dict(passes=_r.passes - _p0, pass_cpu=_cpu, pass_at=_at, rounds=_rounds[0], wall=_wall,
              sent_at=_sent)
for _t in _tasks:
    _s.finish(_t)
_s.flush()
print("@@stats", json.dumps(_stats))
"""


def apply_delta(rows: list[list[Any]], seq: int, delta: dict[str, Any]) -> int:
    """What the page does with a delta (``nbremind.js``); ``-1``: it does not follow."""
    if "reset" in delta:
        rows[:] = delta["reset"]
        return int(delta["seq"])
    if delta.get("base") != seq:
        return -1
    adds = delta.get("add", [])
    gone = set(delta.get("remove", [])) | {row[0] for _after, row in adds}
    following: dict[Any, list[list[Any]]] = {}
    for after, row in adds:  # each right after the row of task ``after`` (None: first)
        following.setdefault(after, []).append(row)
    out: list[list[Any]] = []
    stack = list(reversed(following.get(None, [])))
    rest = iter([r for r in rows if r[0] not in gone])
    while stack or (row := next(rest, None)) is not None:
        if stack:
            row = stack.pop()
        out.append(row)
        stack.extend(reversed(following.get(row[0], [])))
    rows[:] = out
    by_id = {r[0]: r for r in rows}
    for entry in delta.get("change", []):
        row = by_id[entry[0]]
        for k in range(1, len(entry), 2):
            row[entry[k]] = entry[k + 1]
    return int(delta["seq"])


def listed_after(
    received: list[tuple[float, dict[str, Any]]],
    comm: str,
    rows: list[list[Any]],
    seq: int,
    count: int,
) -> float | None:
    """When the page, replaying the panel's updates from ``rows`` at ``seq``, listed
    ``count`` rows (``None``: never, or the updates are not deltas)."""
    for at, msg in received:
        content = msg["content"]
        if msg["msg_type"] != "comm_msg" or content.get("comm_id") != comm:
            continue
        state = content["data"].get("state", {})
        if "rows" in state:
            rows, seq = list(state["rows"]), int(state.get("rows_seq", 0))
        elif state.get("delta") and seq >= 0:
            seq = apply_delta(rows, seq, state["delta"])
        if seq >= 0 and len(rows) >= count and ("rows" in state or "delta" in state):
            return at
    return None


def measure_arm(
    client: Client, comm: str, tasks: int, moving: int, seconds: float, reconnect: bool
) -> dict[str, Any]:
    base = client.run(
        "from nbremind.ipython.panel import panel\nimport contextlib, json\n_w = panel()\n"
        "with getattr(_w, 'lock', contextlib.nullcontext()):\n"
        "    print(json.dumps([getattr(_w, 'rows_seq', -1), _w.rows]))"
    )
    seq, rows = json.loads(base)
    client.received.clear()
    started = time.monotonic()
    client.run(START.format(tasks=tasks, moving=moving))
    if reconnect:
        client.drain(seconds / 2)
        data = {"comm_id": comm, "data": {"method": "request_state"}}
        client.kc.shell_channel.send(client.kc.session.msg("comm_msg", data))
        client.drain(seconds / 2)
    else:
        client.drain(seconds)
    ended = time.monotonic()
    stats = stats_of(client.run(STOP))
    times, updates, full = [], [], []
    for at, msg in client.received:
        content = msg["content"]
        if msg["msg_type"] != "comm_msg" or content.get("comm_id") != comm:
            continue
        if not started <= at < ended:
            continue
        state = content["data"].get("state", {})
        size = len(json.dumps(content))
        if "rows" in state and "rows_seq" in state:  # a full state (a page connected)
            full.append(size)
        else:
            times.append(at)
            updates.append(size)
    listed = listed_after(client.received, comm, rows, seq, tasks)
    steady = [size for at, size in zip(times, updates, strict=True) if listed and at > listed]
    steady_cpu = [
        cpu
        for at, cpu in zip(stats["pass_at"], stats["pass_cpu"], strict=False)
        if listed and at > listed
    ]
    return {
        "times": times,
        "sizes": updates,
        "steady": steady,
        "steady_cpu": steady_cpu,
        "full": full,
        "seconds": ended - started,
        "listed": None if listed is None else listed - started,
        **stats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="live tasks")
    parser.add_argument("--seconds", type=float, default=12.0, help="window per arm")
    parser.add_argument("--peer-tasks", type=int, default=1000, help="tqdm.notebook bars")
    parser.add_argument("--peer-seconds", type=float, default=5.0, help="0: skip the peer")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    # nbremind's files (and a kernel's, which inherits it) in a fresh folder, never the user's
    os.environ["NBREMIND_DATA_DIR"] = tempfile.mkdtemp(prefix="nbremind-bench-")
    if args.quick:
        args.tasks, args.seconds, args.peer_tasks, args.peer_seconds = 2000, 4.0, 200, 2.0

    print(f"panel_scale: {machine()}")
    client = Client()
    try:
        client.run(SETUP)
        client.run("%remind panel")
        comm = client.run("print(panel().model_id)").strip()
        every = measure_arm(client, comm, args.tasks, 0, args.seconds, reconnect=False)
        few = measure_arm(client, comm, args.tasks, MOVING, args.seconds, reconnect=True)
        peer = None
        if args.peer_seconds > 0:
            try:
                peer = measure_tqdm(client, args.peer_tasks, args.peer_seconds)
            except (StopIteration, RuntimeError) as exc:  # the peer's cell lost its output
                print(f"the tqdm.notebook peer did not report: {exc!r}")
    finally:
        client.close()

    ok = True
    rows = []
    cpu_rows = []

    def kb(values: list[int], how: Any) -> str:
        return f"{how(values) / 1e3:.1f}" if values else "-"

    for name, arm, moved in (
        (f"nbremind panel, {args.tasks} live tasks, all advancing", every, args.tasks),
        (f"nbremind panel, {args.tasks} live tasks, {MOVING} advancing", few, MOVING),
    ):
        times, sizes, seconds = arm["times"], arm["sizes"], arm["seconds"]
        rate = len(times) / seconds
        biggest = max(sizes) if sizes else 0
        rate_ok, bytes_ok = rate <= RATE_BUDGET, biggest <= BYTES_BUDGET
        ok = ok and rate_ok and bytes_ok
        rows.append(
            [
                name,
                f"{len(times)}",
                f"{seconds:.1f}",
                f"{rate:.2f}",
                f"{busiest_second(times)}",
                "-" if arm["listed"] is None else f"{arm['listed']:.1f}",
                kb(sizes, median),
                kb(sizes, max),
                kb(arm["steady"], median),
                kb(arm["steady"], max),
                f"{sum(sizes) / seconds / 1e3:.0f}" if sizes else "-",
                f"<= {RATE_BUDGET:g}/s: {verdict(rate_ok)}; "
                f"<= {BYTES_BUDGET / 1e3:g} kB: {verdict(bytes_ok)}",
            ]
        )
        cpu, steady = arm["pass_cpu"], arm["steady_cpu"]
        cpu_rows.append(
            [
                name,
                len(cpu),
                f"{median(cpu) * 1e3:.2f}" if cpu else "-",
                f"{max(cpu) * 1e3:.2f}" if cpu else "-",
                len(steady),
                f"{median(steady) * 1e3:.2f}" if steady else "-",
                f"{percentile(steady, 95) * 1e3:.2f}" if steady else "-",
                f"{sum(cpu) / arm['wall'] * 100:.1f}",
                f"{arm['rounds'] * moved / arm['wall'] / 1e6:.2f}",
            ]
        )
    if peer is not None:
        times, sizes, seconds = peer["times"], peer["sizes"], peer["seconds"]
        rows.append(
            [
                f"tqdm.notebook, {args.peer_tasks} bars, all advancing (peer)",
                f"{len(times)}",
                f"{seconds:.1f}",
                f"{len(times) / seconds:.2f}",
                f"{busiest_second(times)}",
                "-",
                kb(sizes, median),
                kb(sizes, max),
                "-",
                "-",
                f"{sum(sizes) / seconds / 1e3:.0f}" if sizes else "-",
                "peer",
            ]
        )
    print(
        f"{args.tasks} tasks started at once while the panel is shown, advanced by a thread in "
        f"the kernel; messages counted as the client received them; 'listed': when the page, "
        f"replaying the updates, had every task's row; 'then': the updates after that"
    )
    print_table(
        "Front-end (comm_msg) messages to the panel (a full state at a reconnect left out)",
        [
            "widget(s)",
            "messages",
            "window s",
            "msgs/s",
            "max received in 1 s",
            "s until listed",
            "median kB/update",
            "max kB/update",
            "then median kB",
            "then max kB",
            "kB/s",
            "budget",
        ],
        rows,
    )
    print_table(
        "nbremind loop thread, one refresh pass (ms of thread CPU)",
        [
            "arm",
            "passes",
            "median",
            "max",
            "passes once listed",
            "then median",
            "then p95",
            "loop-thread CPU % of 1 core",
            "M advances/s",
        ],
        cpu_rows,
    )
    if few["full"]:
        print(
            f"full state sent when a page (re)connected with {args.tasks} live tasks: "
            f"{max(few['full']) / 1e3:.0f} kB, once"
        )
    else:
        print("full state at a reconnect: none received (the panel sends every row each time)")
    if peer is not None:
        print(
            f"the tqdm.notebook peer runs {args.peer_tasks} bars, not {args.tasks}: 10,000 bars "
            f"open some 60,000 widget models and take minutes to make"
        )
    print(
        f"budget: <= {RATE_BUDGET:g} messages/s and <= {BYTES_BUDGET / 1e3:g} kB per update: "
        f"{verdict(ok)}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Panel refresh: front-end messages per second with 1,000 live tasks all advancing.

A real ipykernel is started through jupyter_client; ``%load_ext nbremind`` runs, the panel
is displayed (``%remind panel``) and a cell starts 1,000 top-level tasks (each in a context
of its own, as worker threads would) and advances every one of them in a tight loop for
``--seconds``. Meanwhile the client reads IOPub as a notebook front end does and counts the
``comm_msg`` messages addressed to the panel's widget (their size too). In the kernel,
nbremind's refresher records the loop thread's CPU time for each refresh pass.

The same is then measured for a running ``%%remind`` cell's status line, and, as the peer,
for what the usual per-task widget costs: one ``tqdm.notebook`` bar per task (tqdm's
default ``mininterval`` of 0.1 s per bar), all advancing the same way, counting every
widget message of the bars.

Budget (DESIGN §4): panel refresh <= 4 messages/s to the front end whatever the task count;
1,000 live tasks stay usable.

    .venv/bin/python benchmarks/panel_refresh.py [--tasks N] [--seconds S] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from _bench import machine, median, percentile, print_table, verdict

BUDGET = 4.0
SETUP = (
    "%load_ext nbremind\nimport nbremind\nnbremind.configure(channels=['null'])\n"
    "from nbremind.ipython.panel import panel\n"
)
ADVANCE = """
import contextvars, json, time
from nbremind.ipython.live import live_refresh
from nbremind.ipython.panel import panel_of
_s = nbremind.get_session()
_r = live_refresh(_s)

def _top(i):
    task = _s.new_task(f"task {{i}}", total=10**9)
    _s.start(task)
    return task

_tasks = [contextvars.Context().run(_top, i) for i in range({tasks})]
_first = len(_r.pass_cpu)
_p0, _c0, _t0 = _r.passes, time.process_time(), time.monotonic()
_end = time.monotonic() + {seconds}
_rounds = 0
while time.monotonic() < _end:
    for _t in _tasks:
        _t.advance()
    _rounds += 1
_wall = time.monotonic() - _t0
_cpu = [c for c in list(_r.pass_cpu)[_first:]]
_sent = [t for t in panel_of(_s).sent_at if t >= _t0]
for _t in _tasks:
    _s.finish(_t)
print("@@stats", json.dumps(dict(passes=_r.passes - _p0, pass_cpu=_cpu, rounds=_rounds,
      wall=_wall, process_cpu=time.process_time() - _c0, sent_at=_sent)))
"""
STATUS = """%%remind status-bench
import time
_end = time.monotonic() + {seconds}
while time.monotonic() < _end:
    time.sleep(0.01)
"""
TQDM = """
import json, time
from tqdm.notebook import tqdm as _tqdm
_bars = [_tqdm(total=10**9, desc=f"task {{i}}") for i in range({tasks})]
print("@@ready", flush=True)
_end = time.monotonic() + {seconds}
_rounds = 0
while time.monotonic() < _end:
    for _b in _bars:
        _b.update(1)
    _rounds += 1
for _b in _bars:
    _b.close()
print("@@stats", json.dumps(dict(rounds=_rounds)))
"""


class Client:
    """A kernel and its client; reads IOPub the way a front end does."""

    def __init__(self) -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
        self.received: list[tuple[float, dict[str, Any]]] = []

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    def run(
        self, code: str, on_stdout: Callable[[str], None] | None = None, timeout: float = 300.0
    ) -> str:
        """Execute ``code``, recording every IOPub message until the kernel is idle again."""
        msg_id = self.kc.execute(code)
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(1.0, deadline - time.monotonic()))
            self.received.append((time.monotonic(), msg))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
                if on_stdout is not None:
                    on_stdout(msg["content"]["text"])
            elif kind == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)

    def drain(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                self.received.append((time.monotonic(), self.kc.get_iopub_msg(timeout=left)))
            except Exception:
                return


def stats_of(text: str, mark: str = "@@stats ") -> dict[str, Any]:
    line = next(ln for ln in text.splitlines() if ln.startswith(mark))
    result: dict[str, Any] = json.loads(line[len(mark) :])
    return result


def comm_traffic(
    received: list[tuple[float, dict[str, Any]]],
    comm_ids: set[str] | None,
    start: float,
    end: float,
) -> tuple[list[float], list[int]]:
    """Receive times and sizes of the ``comm_msg`` messages to ``comm_ids`` (all when None)
    received within [start, end)."""
    times, sizes = [], []
    for at, msg in received:
        if msg["msg_type"] != "comm_msg" or not start <= at < end:
            continue
        if comm_ids is None or msg["content"]["comm_id"] in comm_ids:
            times.append(at)
            sizes.append(len(json.dumps(msg["content"])))
    return times, sizes


def busiest_second(times: list[float]) -> int:
    """The most messages received within any one-second window."""
    best, j = 0, 0
    for i, at in enumerate(times):
        while times[j] <= at - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def measure_panel(client: Client, tasks: int, seconds: float) -> dict[str, Any]:
    client.run(SETUP)
    client.run("%remind panel")
    comm = client.run("print(panel().model_id)").strip()
    client.received.clear()
    started = time.monotonic()
    out = client.run(ADVANCE.format(tasks=tasks, seconds=seconds))
    stats = stats_of(out)
    warm = 1.0  # the first second: the tasks are being made and listed
    window = (started + warm, started + warm + stats["wall"] - warm)
    times, sizes = comm_traffic(client.received, {comm}, *window)
    return {"times": times, "sizes": sizes, "seconds": window[1] - window[0], **stats}


def measure_status(client: Client, seconds: float) -> dict[str, Any]:
    client.received.clear()
    started = time.monotonic()
    client.run(STATUS.format(seconds=seconds))
    lines = {
        m["content"]["comm_id"]
        for _, m in client.received
        if m["msg_type"] == "comm_open" and m["content"]["data"]["state"].get("view") == "status"
    }
    window = (started + 0.5, started + seconds)
    times, sizes = comm_traffic(client.received, lines, *window)
    return {"times": times, "sizes": sizes, "seconds": window[1] - window[0]}


def measure_tqdm(client: Client, tasks: int, seconds: float) -> dict[str, Any]:
    client.received.clear()
    ready: list[float] = []
    out = client.run(
        TQDM.format(tasks=tasks, seconds=seconds),
        on_stdout=lambda text: ready.append(time.monotonic()) if "@@ready" in text else None,
    )
    stats = stats_of(out)
    start = ready[0] + 0.5 if ready else client.received[0][0]
    times, sizes = comm_traffic(client.received, None, start, start + seconds - 0.5)
    return {"times": times, "sizes": sizes, "seconds": seconds - 0.5, **stats}


def row(name: str, m: dict[str, Any], budget: str) -> list[object]:
    times, sizes, seconds = m["times"], m["sizes"], m["seconds"]
    rate = len(times) / seconds if seconds > 0 else 0.0
    return [
        name,
        f"{len(times)}",
        f"{seconds:.1f}",
        f"{rate:.2f}",
        f"{busiest_second(times)}",
        f"{median(sizes) / 1e3:.1f}" if sizes else "-",
        f"{sum(sizes) / seconds / 1e3:.0f}" if sizes else "-",
        budget,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="live tasks")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per arm")
    parser.add_argument(
        "--peer-seconds",
        type=float,
        default=5.0,
        help="window for the tqdm.notebook peer (0: skip it)",
    )
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    # nbremind's files (and a kernel's, which inherits it) in a fresh folder, never the user's
    os.environ["NBREMIND_DATA_DIR"] = tempfile.mkdtemp(prefix="nbremind-bench-")
    if args.quick:
        args.tasks, args.seconds, args.peer_seconds = 200, 3.0, 2.0

    print(f"panel_refresh: {machine()}")
    client = Client()
    try:
        panel = measure_panel(client, args.tasks, args.seconds)
        status = measure_status(client, min(args.seconds, 5.0))
        peer = (
            measure_tqdm(client, args.tasks, args.peer_seconds) if args.peer_seconds > 0 else None
        )
    finally:
        client.close()

    panel_rate = len(panel["times"]) / panel["seconds"]
    status_rate = len(status["times"]) / status["seconds"]
    ok = panel_rate <= BUDGET and status_rate <= BUDGET
    rows = [
        row(
            f"nbremind panel, {args.tasks} live tasks",
            panel,
            f"<= {BUDGET:g}/s: {verdict(panel_rate <= BUDGET)}",
        ),
        row(
            "nbremind %%remind status line",
            status,
            f"<= {BUDGET:g}/s: {verdict(status_rate <= BUDGET)}",
        ),
    ]
    if peer is not None:
        rows.append(row(f"tqdm.notebook, {args.tasks} bars (peer)", peer, "peer"))
    print(
        f"{args.tasks} tasks advanced in a tight loop; messages counted as the client "
        f"received them, after a warm-up"
    )
    print_table(
        "Front-end (comm_msg) messages while every task advances",
        [
            "widget(s)",
            "messages",
            "window s",
            "msgs/s",
            "max received in 1 s",
            "median kB/msg",
            "kB/s",
            "budget",
        ],
        rows,
    )

    cpu = panel["pass_cpu"]
    if cpu:
        print_table(
            "nbremind loop thread, one refresh pass (rows of all tasks, diff, one update)",
            ["passes", "median ms CPU", "p95 ms CPU", "max ms CPU", "loop-thread CPU % of 1 core"],
            [
                [
                    len(cpu),
                    f"{median(cpu) * 1e3:.2f}",
                    f"{percentile(cpu, 95) * 1e3:.2f}",
                    f"{max(cpu) * 1e3:.2f}",
                    f"{sum(cpu) / panel['wall'] * 100:.1f}",
                ]
            ],
        )
    sent = panel["sent_at"]
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    if gaps:
        print(
            f"panel updates sent by the kernel in the cell: {len(sent)}; smallest gap between "
            f"two: {min(gaps) * 1e3:.1f} ms, median {median(gaps) * 1e3:.1f} ms; most in any "
            f"1 s: {busiest_second(sent)}"
        )
    rounds = panel["rounds"]
    print(
        f"the cell advanced all {args.tasks} tasks {rounds} times "
        f"({rounds * args.tasks / panel['wall'] / 1e6:.2f} M advances/s)"
        + (
            f"; with tqdm.notebook bars: {peer['rounds']} times in {args.peer_seconds:g} s"
            if peer
            else ""
        )
    )
    print(
        f"budget: panel <= {BUDGET:g} messages/s: {panel_rate:.2f}/s -> "
        f"{verdict(panel_rate <= BUDGET)}; status line {status_rate:.2f}/s -> "
        f"{verdict(status_rate <= BUDGET)}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

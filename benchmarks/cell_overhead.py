"""What ``%%remind`` adds to a cell: execute round trips on a real ipykernel, with and without.

A kernel is started through jupyter_client, ``%load_ext nbremind`` and
``nbremind.configure(channels=["null"])`` are run, then empty cells (``pass``) and the same
cell with ``%%remind`` on top are executed in turn (the order rotates each round, to cancel
drift). A round trip is ``execute_request`` sent -> ``execute_reply`` received, so it covers
the input transformer, the ``pre_run_cell`` / ``post_run_cell`` hooks and the hand-over of
the end notice; the null channel's delivery happens on nbremind's own thread. A second plain
``pass`` arm shows how much two identical arms differ on this machine (the noise floor).

The peer is ``%%time``, IPython's own cell magic that wraps a cell (it times it and prints
two lines), in the same rotation; ``%%remind --quiet`` (no status line) shows what the line
itself costs.

Budget (DESIGN §4): ``%%remind`` on an empty cell adds <= 1 ms, median, real kernel (over
``pass``; the table also gives it over ``%%time``).

    .venv/bin/python benchmarks/cell_overhead.py [--runs N] [--quick] [--profile]

``--profile`` runs the same cells in an in-process IPython shell (history stored, as in a
kernel) and prints where the added time goes, by cProfile.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

from _bench import machine, median, percentile, print_table, ratio, verdict

BUDGET_MS = 1.0
SETUP = '%load_ext nbremind\nimport nbremind\nnbremind.configure(channels=["null"])\n'
ARMS = {
    "pass": "pass",
    "pass (again: noise check)": "pass",
    "%%remind + pass": "%%remind\npass",
    "%%remind --quiet + pass": "%%remind --quiet\npass",
    "%%time + pass (peer)": "%%time\npass",
}
CHECK = (
    "%%remind bench-check\npass",
    "_s = nbremind.get_session(); _s.flush()\n"
    "_t = [t for t in _s.tasks() if t.name == 'bench-check'][-1]\n"
    "_d = [d for d in _s.dispatcher.deliveries if d.title == _s.last_notice(_t)]\n"
    "print(_t.kind, _t.state, [(d.channel, d.ok) for d in _d])",
)


def execute(kc: Any, code: str, timeout: float = 60.0) -> tuple[float, dict[str, Any], str]:
    """Run ``code``; (seconds until the execute_reply, the reply content, stdout text)."""
    start = time.perf_counter()
    msg_id = kc.execute(code)
    while True:
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    elapsed = time.perf_counter() - start
    out = []
    while True:  # drain the cell's output up to its idle status, outside the timed part
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    return elapsed, reply["content"], "".join(out)


def run_ok(kc: Any, code: str) -> str:
    _, content, out = execute(kc, code)
    if content["status"] != "ok":
        raise RuntimeError(f"{code!r} failed: {content.get('ename')}: {content.get('evalue')}")
    return out


def profile(runs: int) -> None:
    """The same cells in an in-process shell: timings, then a cProfile of ``%%remind``."""
    import cProfile
    import pstats

    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell(SETUP, silent=True)

    def timed(code: str) -> float:
        values = []
        for _ in range(runs):
            start = time.perf_counter()
            shell.run_cell(code, store_history=True)
            values.append(time.perf_counter() - start)
        return median(values)

    for code in ARMS.values():  # warm up
        timed(code)
    plain, magic = timed("pass"), timed("%%remind\npass")
    print(
        f"in-process run_cell, median: pass {plain * 1e3:.3f} ms, "
        f"%%remind + pass {magic * 1e3:.3f} ms ({(magic - plain) * 1e3:+.3f} ms)"
    )
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(runs):
        shell.run_cell("%%remind\npass", store_history=True)
    prof.disable()
    print(f"cProfile of {runs} `%%remind` cells, by cumulative time (profiler overhead included):")
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="timed cells per arm")
    parser.add_argument("--warmup", type=int, default=50, help="untimed cells per arm first")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument(
        "--profile", action="store_true", help="profile the cells in an in-process shell instead"
    )
    args = parser.parse_args()
    # nbremind's files (and a kernel's, which inherits it) in a fresh folder, never the user's
    os.environ["NBREMIND_DATA_DIR"] = tempfile.mkdtemp(prefix="nbremind-bench-")
    runs, warmup = (30, 5) if args.quick else (args.runs, args.warmup)
    if args.profile:
        profile(runs)
        return 0

    from jupyter_client.manager import start_new_kernel

    print(f"cell_overhead: {machine()}")
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        version = run_ok(
            kc,
            "import sys, ipykernel, IPython; "
            f"print(sys.executable == {sys.executable!r}, ipykernel.__version__, "
            "IPython.__version__)",
        ).split()
        print(
            f"kernel: same interpreter {version[0]}, ipykernel {version[1]}, IPython {version[2]}"
        )
        run_ok(kc, SETUP)
        names = list(ARMS)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for i in range(warmup + runs):
            turn = i % len(names)
            for name in names[turn:] + names[:turn]:
                elapsed, content, _ = execute(kc, ARMS[name])
                if content["status"] != "ok":
                    raise RuntimeError(f"{name}: {content}")
                if i >= warmup:
                    samples[name].append(elapsed)
        check = run_ok(kc, CHECK[0]) + run_ok(kc, CHECK[1])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

    print(f"{runs} timed execute round trips per arm after {warmup} warm-up ones, interleaved")
    print(f"sanity check, a %%remind cell's task and its end notice: {check.strip()}")
    base = median(samples["pass"])
    added = (median(samples["%%remind + pass"]) - base) * 1e3
    ok = added <= BUDGET_MS
    budget = {
        "pass": "base",
        "%%remind + pass": f"<= +{BUDGET_MS:g} ms: {verdict(ok)}",
        "%%time + pass (peer)": "peer",
    }
    rows = []
    for name in names:
        med = median(samples[name])
        rows.append(
            [
                name,
                f"{med * 1e3:.3f}",
                f"{percentile(samples[name], 95) * 1e3:.3f}",
                f"{(med - base) * 1e3:+.3f}",
                ratio(med, base),
                budget.get(name, "-"),
            ]
        )
    print_table(
        "Execute round trip of an empty cell, real ipykernel (ms)",
        ["cell", "median", "p95", "added vs pass", "vs pass", "budget"],
        rows,
    )
    noise = (median(samples["pass (again: noise check)"]) - base) * 1e3
    paired = (
        median([b - a for a, b in zip(samples["pass"], samples["%%remind + pass"], strict=True)])
        * 1e3
    )
    print(f"median of the paired differences (%%remind - pass, same round): {paired:+.3f} ms")
    print(f"noise floor (pass - pass): {noise:+.3f} ms")
    over_time = (median(samples["%%remind + pass"]) - median(samples["%%time + pass (peer)"])) * 1e3
    print(f"%%remind over %%time (the peer): {over_time:+.3f} ms")
    print(f"budget: %%remind adds <= {BUDGET_MS:g} ms (median): {added:+.3f} ms -> {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

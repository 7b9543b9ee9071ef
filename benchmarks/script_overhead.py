"""A script with one ``with remind("x"):`` block, whole process, against ``python -c pass``.

Each sample is a fresh interpreter running a five-line script: import nbremind, one block,
the end. Its wall time (start to exit, the parent's clock) is compared with ``python -c pass``
and ``python -c "import tqdm"`` run in the same rotation. Each script run gets a data folder
of its own: a fresh, empty one (the first run on a machine: the file and its tables are made)
and, in turn, one that earlier runs already filled (the common case).

The exit is timed inside the child: the script notes ``time.monotonic()`` (a clock shared by
every process on the machine) when its block ends, and an ``atexit`` hook registered before
``import nbremind`` (so it runs last) notes when nbremind's exit work is done; the parent
notes when the process has ended (the interpreter's own teardown of every loaded module lies
between the two). The block's notice goes to the ``null`` channel (delivered at once,
whatever the machine). Right after an empty block the loop thread is still starting (it
opens the data file and looks for leftovers), so a third script, whose block lasts 0.3 s,
gives the exit with nothing pending.

Two more peers do nothing but import: every module the script ends up with (found by one
probe run), which is what importing that code and tearing it down at exit costs by itself,
and only ``asyncio`` and ``sqlite3``, the floor of any runtime built on them. nbremind's
loop thread is an asyncio loop because its channels are: desktop-notifier (the default
channel of a script, on every platform) is an asyncio API, and so are the remote channels.
So the budget is out of reach when that floor alone comes near it; the table says how much
of the rest is nbremind's.

Budgets (DESIGN §4): the script <= +60 ms over ``python -c pass``, for the warm and the
fresh data folder; exit with nothing pending (the 0.3 s block's end -> process end) <= 10 ms.

    .venv/bin/python benchmarks/script_overhead.py [--runs N] [--quick]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from _bench import (
    child_env,
    fresh_processes,
    median,
    percentile,
    print_table,
    ratio,
    verdict,
)

SCRIPT_BUDGET_MS = 60.0
EXIT_BUDGET_MS = 10.0

_SCRIPT = """\
import atexit, time
atexit.register(lambda: print("hooks", time.monotonic(), flush=True))  # runs last
from nbremind import remind
with remind("x"):
    {body}
print("block", time.monotonic(), flush=True)
"""

#: Prints the modules loaded when the script ends (the probe run for the imports-only peer).
_PROBE = """\
import atexit, sys
atexit.register(lambda: print("modules", " ".join(sorted(sys.modules)), flush=True))
from nbremind import remind
with remind("x"):
    pass
"""

_IMPORTS_ONLY = """\
import atexit, importlib, time
atexit.register(lambda: print("hooks", time.monotonic(), flush=True))
for name in {names!r}:
    try:
        importlib.import_module(name)
    except Exception:
        pass
print("block", time.monotonic(), flush=True)
"""


_RUNTIME_ONLY = """\
import atexit, time
atexit.register(lambda: print("hooks", time.monotonic(), flush=True))
import asyncio, sqlite3
print("block", time.monotonic(), flush=True)
"""


def run_once(
    argv: list[str], env: dict[str, str], cwd: Path
) -> tuple[float, dict[str, float], float]:
    """(wall seconds, the child's ``name monotonic`` lines, the parent's monotonic at its end)."""
    start = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env, cwd=cwd).stdout
    end = time.monotonic()
    wall = time.perf_counter() - start
    marks = {}
    for line in out.splitlines():
        name, _, value = line.partition(" ")
        if value:
            marks[name] = float(value)
    return wall, marks, end


def main() -> int:
    return fresh_processes("script_overhead", __doc__ or "", 30, _measure)


def _measure(work: Path, runs: int) -> int:
    script = work / "one_block.py"
    script.write_text(_SCRIPT.format(body="pass"))
    longer = work / "one_longer_block.py"
    longer.write_text(_SCRIPT.format(body="time.sleep(0.3)"))
    warm_dir = work / "warm-data"
    py = sys.executable
    probe = subprocess.run(
        [py, "-c", _PROBE],
        check=True,
        capture_output=True,
        text=True,
        env=child_env(work / "probe-data"),
        cwd=work,
    ).stdout
    names = [n for n in probe.split("modules ", 1)[1].split() if not n.startswith("__")]
    imports_only = work / "imports_only.py"
    imports_only.write_text(_IMPORTS_ONLY.format(names=names))
    runtime_only = work / "runtime_only.py"
    runtime_only.write_text(_RUNTIME_ONLY)
    print(f"the script ends with {len(names)} modules loaded")
    arms = ["pass", "tqdm", "runtime", "modules", "warm", "fresh", "idle"]
    timed = ("runtime", "modules", "warm", "fresh", "idle")
    walls: dict[str, list[float]] = {a: [] for a in arms}
    hooks: dict[str, list[float]] = {a: [] for a in timed}
    ends: dict[str, list[float]] = {a: [] for a in timed}
    counter = 0

    def one(arm: str) -> None:
        nonlocal counter
        if arm == "pass":
            wall, _, _ = run_once([py, "-c", "pass"], child_env(None), work)
        elif arm == "tqdm":
            wall, _, _ = run_once([py, "-c", "import tqdm"], child_env(None), work)
        elif arm in ("runtime", "modules"):
            code = runtime_only if arm == "runtime" else imports_only
            wall, marks, end = run_once([py, str(code)], child_env(None), work)
            hooks[arm].append(marks["hooks"] - marks["block"])
            ends[arm].append(end - marks["block"])
        else:
            counter += 1
            data = work / f"fresh-{counter}" if arm == "fresh" else warm_dir
            code = longer if arm == "idle" else script
            wall, marks, end = run_once([py, str(code)], child_env(data), work)
            if arm == "fresh":
                shutil.rmtree(data, ignore_errors=True)
            hooks[arm].append(marks["hooks"] - marks["block"])
            ends[arm].append(end - marks["block"])
        walls[arm].append(wall)

    for _ in range(3):  # byte code caches, page cache, the warm data folder's file
        for arm in arms:
            one(arm)
    for values in (*walls.values(), *hooks.values(), *ends.values()):
        values.clear()
    for i in range(runs):
        k = i % len(arms)
        for arm in arms[k:] + arms[:k]:  # no arm always right after another
            one(arm)

    bare = median(walls["pass"])
    tq = median(walls["tqdm"])
    label = {
        "pass": "python -c pass",
        "tqdm": 'python -c "import tqdm"',
        "runtime": "asyncio + sqlite3, imported only",
        "modules": "the script's modules, imported only",
        "warm": "one block, warm data folder",
        "fresh": "one block, fresh data folder",
        "idle": "one 0.3 s block, warm data folder",
    }
    failed = False
    rows = []
    for arm in arms[:6]:
        over = median(walls[arm]) - bare
        if arm in ("warm", "fresh"):
            ok = over * 1e3 <= SCRIPT_BUDGET_MS
            failed |= not ok
            budget = f"<= +{SCRIPT_BUDGET_MS:.0f} ms: {verdict(ok)}"
        else:
            budget = {"modules": "- (floor of this code)", "runtime": "- (floor of asyncio)"}
            budget = budget.get(arm, "peer")
        rows.append(
            [
                label[arm],
                f"{median(walls[arm]) * 1e3:.1f}",
                f"{percentile(walls[arm], 90) * 1e3:.1f}",
                f"{over * 1e3:+.1f}",
                ratio(median(walls[arm]), bare),
                ratio(median(walls[arm]), tq),
                budget,
            ]
        )
    print_table(
        "Whole process wall time (ms)",
        ["what", "median", "p90", "- pass", "vs pass", "vs tqdm", "budget"],
        rows,
    )
    rows = []
    for arm in timed:
        done = median(ends[arm]) * 1e3
        teardown = median([e - h for e, h in zip(ends[arm], hooks[arm], strict=True)]) * 1e3
        budget = {"modules": "- (teardown floor)", "runtime": "- (asyncio's floor)"}.get(
            arm, "- (start-up still running)"
        )
        if arm == "idle":
            ok = done <= EXIT_BUDGET_MS
            failed |= not ok
            budget = f"<= {EXIT_BUDGET_MS:.0f} ms: {verdict(ok)}"
        rows.append(
            [
                label[arm],
                f"{median(hooks[arm]) * 1e3:.1f}",
                f"{teardown:.1f}",
                f"{done:.1f}",
                f"{percentile(ends[arm], 90) * 1e3:.1f}",
                budget,
            ]
        )
    print_table(
        "Exit (ms after the block's end, medians)",
        [
            "what",
            "-> atexit hooks done",
            "atexit -> process end",
            "-> process end",
            "p90",
            "budget",
        ],
        rows,
    )
    runtime = (median(walls["runtime"]) - bare) * 1e3
    modules = (median(walls["modules"]) - bare) * 1e3
    for arm in ("warm", "fresh"):
        over = (median(walls[arm]) - bare) * 1e3
        print(
            f"budget: {label[arm]} <= +{SCRIPT_BUDGET_MS:.0f} ms over python -c pass: "
            f"{over:+.1f} ms -> {verdict(over <= SCRIPT_BUDGET_MS)} (asyncio + sqlite3 alone: "
            f"{runtime:+.1f} ms; all its modules, imported only: {modules:+.1f} ms; "
            f"nbremind's own work: {over - modules:+.1f} ms)"
        )
    done = median(ends["idle"]) * 1e3
    floor = median(ends["modules"]) * 1e3
    print(
        f"budget: exit with nothing pending <= {EXIT_BUDGET_MS:.0f} ms: {done:.1f} ms -> "
        f"{verdict(done <= EXIT_BUDGET_MS)} (tearing down its modules alone: {floor:.1f} ms; "
        f"asyncio + sqlite3 alone: {median(ends['runtime']) * 1e3:.1f} ms)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

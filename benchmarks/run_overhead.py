"""``nbremind run -- true`` against ``true`` and ``python -c pass``: the command's own cost.

Each sample is a fresh process, the arms in rotation: ``true``; ``python -c pass`` (this
interpreter's start-up, which the console script pays too); the ``nbremind`` console script
next to this interpreter running ``true``, with a data folder that earlier runs filled (the
common case) and with a fresh, empty one per run (the first run on a machine); and
``python -m nbremind run -- true`` (warm folder). The task's notice goes to the ``null``
channel, delivered at once whatever the machine (no desktop or D-Bus probe is timed). A last
peer is the floor of any wrapper built on an asyncio runtime and SQLite, as nbremind's is
(its channels, desktop-notifier first, are asyncio APIs): a Python process that imports
``asyncio`` and ``sqlite3`` and runs ``true`` with :func:`subprocess.run`.

Budget (DESIGN §4): ``nbremind run -- true`` <= +80 ms over ``true``, for the warm and the
fresh data folder.

    .venv/bin/python benchmarks/run_overhead.py [--runs N] [--quick]
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

BUDGET_MS = 80.0

_FLOOR = "import asyncio, sqlite3, subprocess, sys; subprocess.run([sys.argv[1]])"


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env, cwd=cwd)
    return time.perf_counter() - start


def main() -> int:
    return fresh_processes("run_overhead", __doc__ or "", 40, _measure)


def _measure(work: Path, runs: int) -> int:
    true = shutil.which("true") or "/bin/true"
    script = Path(sys.executable).with_name("nbremind")
    if not script.exists():
        print(f"{script} not found: install the project (pip install -e .) first")
        return 1
    warm_dir = work / "warm-data"
    arms = ["true", "pass", "floor", "warm", "fresh", "module"]
    label = {
        "true": "true",
        "pass": "python -c pass",
        "floor": "python: import asyncio, sqlite3; run true",
        "warm": "nbremind run -- true, warm data folder",
        "fresh": "nbremind run -- true, fresh data folder",
        "module": "python -m nbremind run -- true, warm",
    }
    walls: dict[str, list[float]] = {a: [] for a in arms}
    counter = 0

    def one(arm: str) -> None:
        nonlocal counter
        if arm == "true":
            wall = run_once([true], child_env(None), work)
        elif arm == "pass":
            wall = run_once([sys.executable, "-c", "pass"], child_env(None), work)
        elif arm == "floor":
            wall = run_once([sys.executable, "-c", _FLOOR, true], child_env(None), work)
        elif arm == "module":
            argv = [sys.executable, "-m", "nbremind", "run", "--", true]
            wall = run_once(argv, child_env(warm_dir), work)
        else:
            counter += 1
            data = warm_dir if arm == "warm" else work / f"fresh-{counter}"
            wall = run_once([str(script), "run", "--", true], child_env(data), work)
            if arm == "fresh":
                shutil.rmtree(data, ignore_errors=True)
        walls[arm].append(wall)

    for _ in range(3):  # byte code caches, page cache, the warm data folder's file
        for arm in arms:
            one(arm)
    for values in walls.values():
        values.clear()
    n = len(arms)
    for i in range(runs):
        for arm in arms[i % n :] + arms[: i % n]:  # no arm always right after another
            one(arm)

    base, bare = median(walls["true"]), median(walls["pass"])
    failed = False
    rows = []
    for arm in arms:
        over = median(walls[arm]) - base
        if arm in ("warm", "fresh"):
            ok = over * 1e3 <= BUDGET_MS
            failed |= not ok
            budget = f"<= +{BUDGET_MS:.0f} ms: {verdict(ok)}"
        else:
            budget = {"true": "peer", "pass": "peer", "floor": "- (floor of asyncio)"}.get(arm, "-")
        rows.append(
            [
                label[arm],
                f"{median(walls[arm]) * 1e3:.1f}",
                f"{percentile(walls[arm], 90) * 1e3:.1f}",
                f"{over * 1e3:+.1f}",
                f"{(median(walls[arm]) - bare) * 1e3:+.1f}",
                ratio(median(walls[arm]), bare),
                budget,
            ]
        )
    print_table(
        "Whole process wall time (ms)",
        ["what", "median", "p90", "- true", "- python -c pass", "vs python -c pass", "budget"],
        rows,
    )
    floor = (median(walls["floor"]) - base) * 1e3
    for arm in ("warm", "fresh"):
        over = (median(walls[arm]) - base) * 1e3
        print(
            f"budget: {label[arm]} <= +{BUDGET_MS:.0f} ms over true: {over:+.1f} ms "
            f"-> {verdict(over <= BUDGET_MS)} (the asyncio floor: {floor:+.1f} ms; "
            f"nbremind over it: {over - floor:+.1f} ms)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Small helpers shared by the benchmark scripts: statistics, a table printer, the machine."""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "child_env",
    "fresh_processes",
    "machine",
    "median",
    "percentile",
    "print_table",
    "ratio",
    "verdict",
]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (nearest rank, so it is always a measured value)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(value: float, peer: float) -> str:
    if peer <= 0:
        return "n/a"
    return f"{value / peer:.2f}x"


def verdict(ok: bool) -> str:
    return "ok" if ok else "FAIL"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a Markdown table (pastes into the docs as is), columns padded to line up."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    print()
    print(title)
    print()
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print(line(row))
    print()


def machine() -> str:
    """One line naming the machine the numbers come from."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"{now}; {os.cpu_count()} CPUs; Python {platform.python_version()} "
        f"({sys.implementation.name}) on {platform.system()} {platform.release()}"
    )


def child_env(data_dir: Path | None) -> dict[str, str]:
    """The environment of a child: byte code caches written (as for any user), the notices
    to the ``null`` channel, and ``data_dir`` as the data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBREMIND_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["NBREMIND_CHANNELS"] = "null"
    if data_dir is not None:
        env["NBREMIND_DATA_DIR"] = str(data_dir)
    return env


def fresh_processes(
    name: str, doc: str, default_runs: int, measure: Callable[[Path, int], int]
) -> int:
    """The ``main`` of a script timing fresh processes: ``--runs`` / ``--quick`` read, the
    machine said, ``measure(work folder, runs)`` run in a temporary folder removed after."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=default_runs, help="fresh processes per arm")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    runs = 4 if args.quick else args.runs
    print(f"{name}: {machine()}")
    print(f"{runs} fresh processes per arm, rotating, after 3 warm-up rounds")
    work = Path(tempfile.mkdtemp(prefix="nbremind-bench-"))
    try:
        return measure(work, runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

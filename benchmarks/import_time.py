"""``import nbremind`` against ``import tqdm``: wall time in fresh interpreters, and what it pulls.

Each sample is a fresh subprocess of this interpreter that times its own import statement
(``time.perf_counter`` around it), so interpreter start-up does not blur the result; the two
imports alternate so that drift on a noisy machine hits both alike. The whole-process wall
time is printed too, against a process that imports nothing. Then one ``-X importtime`` run
lists the modules ``import nbremind`` loads and checks that none is a front-end module.

Budget (DESIGN §4): ``import nbremind`` <= 0.5x ``import tqdm``, median of many fresh
processes, and no front-end module loaded. Children write byte code caches, as a user's do.

    .venv/bin/python benchmarks/import_time.py [--runs N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from _bench import machine, median, percentile, print_table, ratio, verdict

FORBIDDEN = (
    "IPython",
    "ipykernel",
    "ipywidgets",
    "anywidget",
    "pandas",
    "tqdm",
    "desktop_notifier",
    "psutil",
)

#: The budget: ``import nbremind`` at most this fraction of ``import tqdm``.
BUDGET = 0.5

#: The children's environment: byte code caches written (as for any user).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

_TIMED = (
    "import time\n"
    "t0 = time.perf_counter()\n"
    "import {module}\n"
    "t1 = time.perf_counter()\n"
    "print(t1 - t0)\n"
)


def run_once(module: str | None) -> tuple[float, float]:
    """(seconds spent in the import statement, seconds for the whole process)."""
    code = _TIMED.format(module=module) if module else "pass"
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=ENV
    ).stdout
    wall = time.perf_counter() - start
    return (float(out) if module else 0.0), wall


def importtime(module: str) -> list[tuple[str, int, int]]:
    """``(module, self µs, cumulative µs)`` for each module the import loaded, in load order."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        check=True,
        capture_output=True,
        text=True,
        env=ENV,
    ).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = (part.strip() for part in line[12:].split("|"))
        rows.append((name, int(self_us), int(cumulative)))
    return rows


def new_modules(module: str) -> list[str]:
    """Names added to ``sys.modules`` by the import (a cross-check of ``-X importtime``)."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        f"import {module}\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=ENV
    ).stdout
    return out.split()


def is_forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60, help="fresh processes per import")
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs

    print(f"import_time: {machine()}")
    print(f"{runs} fresh processes per import, alternating, after 3 warm-up rounds")

    arms = {"nbremind": [], "tqdm": [], None: []}
    walls: dict[str | None, list[float]] = {"nbremind": [], "tqdm": [], None: []}
    order: list[str | None] = ["nbremind", "tqdm", None]
    for _ in range(3):  # byte-code caches, page cache
        for module in order:
            run_once(module)
    for i in range(runs):
        # rotate the order so no import always runs right after another
        for module in order[i % 3 :] + order[: i % 3]:
            t_import, wall = run_once(module)
            arms[module].append(t_import)
            walls[module].append(wall)

    nb, tq = median(arms["nbremind"]), median(arms["tqdm"])
    bare = median(walls[None])
    ok = nb <= BUDGET * tq
    rows = []
    for module in ("nbremind", "tqdm"):
        rows.append(
            [
                f"import {module}",
                f"{median(arms[module]) * 1e3:.2f}",
                f"{percentile(arms[module], 90) * 1e3:.2f}",
                ratio(median(arms[module]), tq),
                f"{median(walls[module]) * 1e3:.1f}",
                f"{(median(walls[module]) - bare) * 1e3:+.1f}",
                f"<= {BUDGET:.2f}x: {verdict(ok)}" if module == "nbremind" else "peer",
            ]
        )
    rows.append(["(empty process)", "-", "-", "-", f"{bare * 1e3:.1f}", "+0.0", "-"])
    print_table(
        "Import statement time in a fresh process (ms)",
        ["what", "median", "p90", "vs tqdm", "process wall median", "wall - empty", "budget"],
        rows,
    )
    print(f"budget: import nbremind <= {BUDGET:.2f}x import tqdm: {nb / tq:.2f}x -> {verdict(ok)}")

    cross = new_modules("nbremind")
    added = set(cross)
    # -X importtime also lists what the interpreter loaded at start-up: keep the import's own
    loaded = [row for row in importtime("nbremind") if row[0] in added]
    total = sum(self_us for _, self_us, _ in loaded)
    ours = [r for r in loaded if r[0] == "nbremind" or r[0].startswith("nbremind.")]
    top = sorted(loaded, key=lambda r: r[2], reverse=True)[:15]
    print_table(
        f"-X importtime: {len(loaded)} modules loaded by `import nbremind` "
        f"({len(ours)} of them nbremind's), heaviest by cumulative time",
        ["module", "self µs", "cumulative µs"],
        [[name, self_us, cum] for name, self_us, cum in top],
    )
    print(f"sum of self times: {total / 1e3:.1f} ms (-X importtime's own overhead included)")

    bad = sorted({n for n, _, _ in loaded if is_forbidden(n)} | set(filter(is_forbidden, cross)))
    print_table(
        "Front-end and heavy modules after `import nbremind`",
        ["module", "loaded"],
        [
            [f, "YES" if any(n == f or n.startswith(f + ".") for n in bad) else "no"]
            for f in FORBIDDEN
        ],
    )
    print(f"no forbidden module imported -> {verdict(not bad)}")
    if bad:
        print("forbidden modules loaded: " + ", ".join(bad))
    print("all modules loaded by `import nbremind`, in load order:")
    print("  " + " ".join(name for name, _, _ in loaded))
    return 0 if ok and not bad else 1


if __name__ == "__main__":
    sys.exit(main())

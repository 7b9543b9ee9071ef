"""The run history at scale: file size, history queries and a fresh process's first block
against a history of 10,000, 100,000 and 1,000,000 stored runs.

For each size, a fresh data folder gets its file made by the real ``History`` class (every
migration, every index), then filled straight with ``executemany`` in one transaction, in
start order like a real file: rows that look like real ones -- 12 task names, top-level
cells, blocks and commands with loops and pandas calls nested in them (one run in three is
nested, some at depth 2), 3 % failed, 1 % cancelled, a few hundred processes, starts spread
over the last 89 days (inside the default retention). Then, each the fastest of several
samples (a shared machine's load only ever adds to a time), the sizes interleaved (one
sample of each measurement at each size per round, so that drift hits every size alike):

* ``history`` CLI -- ``python -m nbremind history`` (the default listing: 100 top-level runs
  with their nested and folded counts), a subprocess, whole process;
* ``history --name`` CLI -- ``nbremind history --name train``, whole process;
* ``history()`` -- ``nbremind.history()`` in this process (the DataFrame of the 100 most
  recent top-level runs);
* ``query(state=failed)`` -- ``History.query(state="failed")`` in this process;
* the usual-duration look-up -- ``History.usual_duration("block:train")``, the one query a
  task start costs the loop thread (the median of its last 10 succeeded runs), per call;
* first ``remind()`` -- a fresh process running ``with remind("bench"): pass`` (null
  channel), whole process: opening the file, the schema check, retention, writing one row;
* the same while another process (a kernel, say) holds the file with its last 2,000 rows
  still in the WAL file -- the usual state of a file in use;
* retention -- opening the file with its daily retention due and 1,000 runs (at every size)
  older than ``history_keep``: the delete itself;

and ``python -c pass`` as the floor of the subprocess rows.

Budget (DESIGN §4: history queries and the first ``remind()`` flat or logarithmic from 10 k
to 1 M runs). A query that uses an index walks a B-tree whose depth grows with log(N): 100x
the runs adds one or two levels, so the 1M/10k ratio of the in-process times should stay
near 1-1.5x; a scan of the table is ~100x. The bound is 3x for in-process times (room for a
shared, noisy machine, far below a scan's 100x) and 1.5x for whole processes, whose ~100 ms
of interpreter start dilutes any growth: a part that is linear in the file and costs 1 ms at
10 k costs 100 ms at 1 M, alone more than +50 %.

    .venv/bin/python benchmarks/history_scale.py [--quick] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench import machine, print_table, verdict

NAMES = (
    "etl",
    "train",
    "evaluate",
    "load data",
    "features",
    "report",
    "backfill",
    "sync",
    "cleanup",
    "export",
    "nightly",
    "scoring",
)
DAY = 86400.0
#: Runs older than the retention period, at every size: what the retention delete removes.
EXPIRED = 1000
#: The largest 1M/10k ratio allowed: in-process times, whole processes.
BOUND_IN_PROCESS = 3.0
BOUND_PROCESS = 1.5
PY = sys.executable


def populate(data: Path, count: int, seed: int = 1) -> Path:
    """A history file in ``data`` with ``count`` runs (plus :data:`EXPIRED` old ones)."""
    from nbremind.store.outbox import FILE_NAME
    from nbremind.store.runs import COLUMNS, History

    path = data / FILE_NAME
    History(path).close()  # the real schema, every migration and index
    rng = random.Random(seed)
    now = time.time()
    hosts = ("box", "gpu-1", "laptop")
    processes = [(40_000 + i, now - 89 * DAY + i * 3600.0) for i in range(300)]
    columns = [*COLUMNS, "usual_key"]
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO runs ({names}) VALUES ({marks})"

    def rows() -> Any:
        total = count + EXPIRED
        first = now - 89 * DAY
        step = 89 * DAY / total
        parents: list[str] = []
        for i in range(total):
            # the first EXPIRED runs are older than the default retention (90 days)
            start = now - 200 * DAY + i if i < EXPIRED else first + (i - EXPIRED) * step
            nested = parents and rng.random() < 1 / 3
            parent = rng.choice(parents[-3:]) if nested else None
            kind = (
                rng.choice(("loop", "loop", "pandas"))
                if nested
                else rng.choice(("cell", "cell", "block", "command"))
            )
            pid, pid_start = processes[(i * 7) // max(1, total // 300) % 300]
            roll = rng.random()
            state = "failed" if roll < 0.03 else "cancelled" if roll < 0.04 else "succeeded"
            duration = rng.expovariate(1 / 120.0) + 1.0
            run_id = f"bench{pid}-{i}"
            if not nested:
                parents.append(run_id)
                del parents[:-8]
            name = rng.choice(NAMES)
            values: dict[str, Any] = {
                "id": run_id,
                "parent_id": parent,
                "name": name,
                "kind": kind,
                "source": rng.choice(("etl.py", "analysis.ipynb", "train.py")),
                "host": rng.choice(hosts),
                "pid": pid,
                "pid_start": pid_start,
                "start": start,
                "end": start + duration,
                "state": state,
                "duration": duration,
                "n": rng.randrange(1000),
                "total": 1000 if rng.random() < 0.5 else None,
                "unit": None,
                "peak_rss": rng.randrange(50_000_000, 8_000_000_000),
                "error_type": "ValueError" if state == "failed" else None,
                "error_message": "bad row 7" if state == "failed" else None,
                "reason": None,
                "notices": 1,
                "folded": rng.choice((0, 0, 0, 12, 500)) if not nested else 0,
                "folded_duration": 0.0,
                "usual_key": f"{kind}:{name}",
            }
            yield tuple(values.get(c) for c in columns)

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany(sql, rows())
    # retention last ran a day and a minute ago: the next process to open the file is due
    db.execute(
        "INSERT OR REPLACE INTO history_meta (key, value) VALUES ('pruned_at', ?)",
        (now - DAY - 60,),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path


def mark_pruned(path: Path) -> None:
    """Retention ran just now (the state of a file opened every day)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(
        "INSERT OR REPLACE INTO history_meta (key, value) VALUES ('pruned_at', ?)", (time.time(),)
    )
    db.close()


def timed_process(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=env, timeout=600)
    return time.perf_counter() - start


def timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


_HOLDER = """
import sys
from nbremind.core.clock import SystemClock
from nbremind.core.task import Task, TaskState
from nbremind.store.runs import History

history = History(sys.argv[1])
runs = []
for i in range(2000):
    task = Task(f"held {i % 12}", clock=SystemClock(), kind="block")
    task.mark_started()
    task.mark_ended(TaskState.SUCCEEDED)
    runs.append((task.snapshot(), 0))
history.record_many(runs)
print("ready", flush=True)
sys.stdin.read()  # holds the file, its last writes in the WAL, until told to go
history.close()
"""


class Size:
    """One history file of ``count`` runs and what is measured on it."""

    def __init__(self, count: int, scratch: Path) -> None:
        from nbremind.store.runs import History

        self.count = count
        self.data = scratch / f"data-{count}"
        self.data.mkdir()
        config_dir = scratch / "config"
        config_dir.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        self.path = populate(self.data, count)
        self.built = time.perf_counter() - t0
        self.samples: dict[str, list[float]] = {}
        # retention, due: the first open deletes the EXPIRED old runs
        start = time.perf_counter()
        history = History(self.path)
        self.add("retention", time.perf_counter() - start)
        left = history.count()
        history.close()
        assert left == count, (left, count)
        db = sqlite3.connect(self.path)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        wal = Path(f"{self.path}-wal")
        size = self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        self.add("bytes per 1,000", size / count * 1000)
        mark_pruned(self.path)
        self.env = {
            **os.environ,
            "NBREMIND_DATA_DIR": str(self.data),
            "NBREMIND_CONFIG_DIR": str(config_dir),
            "NBREMIND_CHANNELS": "null",
            "NBREMIND_WATCHDOG": "0",
        }

    def add(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)

    def sample(self) -> None:
        """One sample of every measurement."""
        import nbremind
        from nbremind.store.runs import History

        env = self.env
        cli = [PY, "-m", "nbremind", "history"]
        block = [PY, "-c", 'from nbremind import remind\nwith remind("bench"): pass']
        self.add("history CLI", timed_process(cli, env))
        self.add("history --name CLI", timed_process([*cli, "--name", "train"], env))
        self.add("first remind()", timed_process(block, env))
        # another process (a kernel) holds the file, its last 2,000 rows still in the WAL
        holder = subprocess.Popen(
            [PY, "-c", _HOLDER, str(self.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
            self.add("first remind(), live WAL", timed_process(block, env))
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(60)
        self.add("python -c pass", timed_process([PY, "-c", "pass"], env))
        nbremind.configure(data_dir=str(self.data), channels=["null"])
        self.add("history()", timed(nbremind.history))
        reader = History(self.path)
        try:
            self.add("query(state=failed)", timed(lambda: reader.query(state="failed")))
            looked_up = timed(lambda: [reader.usual_duration("block:train") for _ in range(200)])
            self.add("usual_duration", looked_up / 200)
        finally:
            reader.close()

    def result(self) -> dict[str, float]:
        # the fastest sample: the load of a shared machine only ever adds to a time
        return {key: min(values) for key, values in self.samples.items()}


ROWS = (
    # (label, key, bound of the 1M/10k ratio or None, unit)
    ("file size per 1,000 runs", "bytes per 1,000", None, "kB"),
    ("nbremind history (CLI, whole process)", "history CLI", BOUND_PROCESS, "ms"),
    ("nbremind history --name train (CLI)", "history --name CLI", BOUND_PROCESS, "ms"),
    ("nbremind.history() in-process", "history()", BOUND_IN_PROCESS, "ms"),
    ('History.query(state="failed") in-process', "query(state=failed)", BOUND_IN_PROCESS, "ms"),
    ("first with remind() (fresh process)", "first remind()", BOUND_PROCESS, "ms"),
    (
        "first with remind(), a kernel holding the file",
        "first remind(), live WAL",
        BOUND_PROCESS,
        "ms",
    ),
    (f"retention: open, {EXPIRED:,} runs expired", "retention", BOUND_IN_PROCESS, "ms"),
    ("usual duration of a task start (one look-up)", "usual_duration", BOUND_IN_PROCESS, "µs"),
    ("python -c pass (floor)", "python -c pass", None, "ms"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 k and 100 k runs only")
    parser.add_argument("--runs", type=int, default=7, help="samples per measurement")
    ns = parser.parse_args()
    sizes = (10_000, 100_000) if ns.quick else (10_000, 100_000, 1_000_000)
    print(machine())
    scratch = Path(tempfile.mkdtemp(prefix="nbremind-history-scale-"))
    results: dict[int, dict[str, float]] = {}
    try:
        built = []
        for count in sizes:
            built.append(Size(count, scratch))
            print(f"  {count:>9,} runs: file built in {built[-1].built:.1f} s", flush=True)
        import nbremind

        nbremind.configure(data_dir=str(built[0].data), channels=["null"])
        assert len(nbremind.history()) == 100
        for _ in range(ns.runs):  # sizes interleaved: drift on a noisy machine hits each alike
            for size in built:
                size.sample()
        results = {size.count: size.result() for size in built}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    first, last = sizes[0], sizes[-1]
    failed = False
    table = []
    for label, key, bound, unit in ROWS:
        values = [results[n][key] for n in sizes]
        scale = {"kB": 1 / 1000, "µs": 1e6}.get(unit, 1000)
        ratio = values[-1] / values[0] if values[0] > 0 else float("inf")
        ok = bound is None or ratio <= bound
        failed = failed or not ok
        table.append(
            [
                label,
                *(f"{v * scale:.1f} {unit}" for v in values),
                f"{ratio:.2f}x",
                "-" if bound is None else f"<= {bound:g}x",
                verdict(ok) if bound is not None else "-",
            ]
        )
    print_table(
        f"run history at scale (fastest of {ns.runs} samples each)",
        [
            "measure",
            *(f"{n:,} runs" for n in sizes),
            "1M/10k" if last == 1_000_000 else f"{last // 1000}k/{first // 1000}k",
            "bound",
            "verdict",
        ],
        table,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

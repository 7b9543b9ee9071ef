"""The memory guard on the user's path: a ``%%remind --mem-limit`` cell in a real kernel
that allocates past its limit fails with ``TaskMemoryLimit`` while the kernel and its
variables survive; a cell stuck in a sleep is still stopped; a ``remind(mem_limit=)`` block
in a script's thread; and a real cgroup's limit where this machine lets a test make one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from _cgroup import limited_cgroup
from _kernel import Kernel, KernelFactory
from nbremind.core.notice import format_size

pytestmark = pytest.mark.kernel

#: Bytes the limit is set above what the guard measures before the cell starts.
HEADROOM = 250_000_000
#: 10 MB chunks a growing task allocates at most (2 GB), should the guard not stop it.
CAP = 200
STOPPED = r"stopped at [\d.]+ [kMGT]?B of [\d.]+ [kMGT]?B: memory limit"
TITLE = re.compile(f"■ grow {STOPPED}")
#: What the guard judges now in the kernel: a memory-limited cgroup's working set, else the
#: process's RSS (read where the guard reads it).
_MEASURED = """
import os, psutil, nbremind
scope = nbremind.get_session().readings.memory_scope()
used = scope.working_set() if scope.cgroup else psutil.Process(os.getpid()).memory_info().rss
result = [used, scope.kind, scope.describe()]
"""
_ENDED = """
import nbremind
result = [
    [t.name, t.state.value, None if t.error is None else t.error.type]
    for t in nbremind.get_session().tasks() if t.name == "grow"
]
"""


def _guarded_kernel(kernel_factory: KernelFactory) -> Kernel:
    k = kernel_factory()
    k.ok("%load_ext nbremind")
    k.use_memory_channel()
    k.ok("import nbremind\nnbremind.configure(min_duration=None)", silent=True)
    return k


def _limit_mb(k: Kernel) -> int:
    """A limit (MB) ``HEADROOM`` above what the guard measures in ``k`` now."""
    used, _, _ = k.query(_MEASURED)
    return int((used + HEADROOM) // 1_000_000)


def _end_notice(k: Kernel) -> dict[str, Any]:
    [notice] = k.wait_for_notices(
        lambda found: any(n["event"] == "failure" for n in found), what="the end notice"
    )
    return notice


def test_a_cell_past_its_limit_fails_and_the_kernel_keeps_its_variables(
    kernel_factory: KernelFactory,
) -> None:
    k = _guarded_kernel(kernel_factory)
    k.ok("kept = 42")
    limit = _limit_mb(k)

    r = k.run(
        f"%%remind grow --mem-limit {limit}MB\n"
        "import time\n"
        "chunks = []\n"
        f"while len(chunks) < {CAP}:  # (a guard that failed ends here, not in the OOM killer)\n"
        "    chunks.append(b'\\1' * 10_000_000)\n"
        "    time.sleep(0.01)  # at most 1 GB/s: a guard read each tick cannot see faster\n",
        timeout=60,
    )

    assert (r.status, r.ename) == ("error", "TaskMemoryLimit"), r.describe()
    assert re.fullmatch(STOPPED, r.evalue)
    assert r.evalue.endswith(f" of {format_size(limit * 1_000_000)}: memory limit")
    assert k.ok("kept").result == "42"  # the kernel answers, its variables are there
    assert k.ok("del chunks\n'freed'").result == "'freed'"
    assert k.query(_ENDED) == [["grow", "failed", "TaskMemoryLimit"]]
    notice = _end_notice(k)
    assert TITLE.fullmatch(notice["title"]), notice
    assert notice["title"] == f"■ grow {r.evalue}"
    assert (notice["urgency"], notice["state"]) == ("critical", "failed")
    assert notice["error"] == ["TaskMemoryLimit", r.evalue]


def test_a_cell_stuck_in_a_sleep_is_still_stopped(kernel_factory: KernelFactory) -> None:
    """The memory grows (in a thread the cell started) while the cell's thread waits in a
    sleep, where an exception raised into it cannot arrive: a real SIGINT ends the wait."""
    k = _guarded_kernel(kernel_factory)
    k.ok("kept = 'still here'")
    limit = _limit_mb(k)
    started = time.monotonic()

    r = k.run(
        f"%%remind grow --mem-limit {limit}MB\n"
        "import sys, threading, time\n"
        "held = []\n"
        "cell = threading.main_thread().ident\n"
        "def grow():\n"
        "    sleeps = grow.__code__.co_firstlineno + 6  # the cell's line of time.sleep(60)\n"
        "    while sys._current_frames()[cell].f_lineno != sleeps:  # (until the cell sleeps)\n"
        "        time.sleep(0.01)\n"
        "    held.append(b'\\1' * 400_000_000)\n"
        "threading.Thread(target=grow).start()\n"
        "time.sleep(60)\n",
        timeout=30,
    )
    took = time.monotonic() - started

    # the SIGINT's KeyboardInterrupt ends the sleep (the task says why it was sent)
    assert (r.status, r.ename) == ("error", "KeyboardInterrupt"), r.describe()
    assert took < 10, f"the cell ended after {took:.1f} s"
    assert k.ok("kept").result == "'still here'"
    assert k.query(_ENDED) == [["grow", "failed", "TaskMemoryLimit"]]
    notice = _end_notice(k)
    assert TITLE.fullmatch(notice["title"]), notice
    assert notice["urgency"] == "critical"


def test_remind_status_says_which_limit_applies(kernel_factory: KernelFactory) -> None:
    k = _guarded_kernel(kernel_factory)
    _, kind, described = k.query(_MEASURED)

    status = k.ok("%remind status").stdout.splitlines()

    line = f"  memory limit: {described} — mem_limit percents are of it"
    assert line in status, status
    assert ("of RAM" in described) is (kind == "RAM")


_BLOCK_IN_A_THREAD = """
import json, os, threading, time
import psutil
import nbremind
from nbremind import TaskMemoryLimit, remind

nbremind.configure(channels=["memory"], min_duration=None)
scope = nbremind.get_session().readings.memory_scope()
used = scope.working_set() if scope.cgroup else psutil.Process(os.getpid()).memory_info().rss
limit = used + {headroom}
out = {{"limit": limit}}


def grow():
    chunks = []
    try:
        with remind("grow", mem_limit=limit):
            while len(chunks) < {cap}:
                chunks.append(b"\\1" * 10_000_000)
                time.sleep(0.01)
    except TaskMemoryLimit as exc:
        out["caught"] = [str(exc), exc.used, exc.limit, exc.source, isinstance(exc, MemoryError)]
    out["went on"] = True


worker = threading.Thread(target=grow)
worker.start()
worker.join(60)
session = nbremind.get_session()
session.flush()
out["notices"] = [
    [n.title, n.urgency, n.task.state.value, n.task.error.type if n.task.error else None]
    for n in session.dispatcher.channels["memory"].notices
]
print(json.dumps(out))
"""


def test_a_block_in_a_scripts_thread_is_stopped_and_the_script_goes_on(tmp_path: Path) -> None:
    script = tmp_path / "grow.py"
    script.write_text(_BLOCK_IN_A_THREAD.format(headroom=HEADROOM, cap=CAP))

    run = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        env=_script_env(),
    )

    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout.splitlines()[-1])
    assert "caught" in out, f"the block was not stopped: {out}"
    message, used, limit, source, is_memory_error = out["caught"]
    assert limit == out["limit"] and used >= limit and is_memory_error
    assert source in ("process RSS", "cgroup v2", "cgroup v1")
    assert re.fullmatch(STOPPED, message)
    assert out["went on"] is True
    assert out["notices"] == [[f"■ grow {message}", "critical", "failed", "TaskMemoryLimit"]]


def _script_env() -> dict[str, str]:
    """The environment of a script a test runs: the test's (its own data folder and
    settings), with no session bus."""
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- a real cgroup's limit ----------------------------------------------------------------------
#: The cgroup's limit: what the script needs (about 60 MB) and ~300 MB more below its 80%.
CGROUP_LIMIT = 500_000_000

_IN_A_CGROUP = """
import json, time
import nbremind
from nbremind import TaskMemoryLimit, remind

nbremind.configure(channels=["memory"], min_duration=None)
scope = nbremind.get_session().readings.memory_scope()
out = {"scope": [scope.kind, scope.limit, scope.describe()]}
chunks = []
try:
    with remind("grow", mem_limit="80%"):
        while True:
            chunks.append(b"\\1" * 5_000_000)
            time.sleep(0.02)
except TaskMemoryLimit as exc:
    out["caught"] = [exc.source, exc.used, exc.limit, str(exc)]
out["held"] = len(chunks) * 5_000_000
print(json.dumps(out))
"""


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_in_a_memory_limited_cgroup_80_percent_of_its_limit_stops_the_task(
    version: str, tmp_path: Path
) -> None:
    script = tmp_path / "in_cgroup.py"
    script.write_text(_IN_A_CGROUP)

    with limited_cgroup(version, CGROUP_LIMIT) as cgroup:
        run = subprocess.run(
            cgroup.run_in([sys.executable, str(script)]),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=_script_env(),
        )

    assert run.returncode == 0, f"exit status {run.returncode}\n{run.stdout}{run.stderr}"
    out = json.loads(run.stdout.splitlines()[-1])
    assert "caught" in out, f"the task was not stopped: {out}"
    kind, limit, described = out["scope"]
    assert kind == f"cgroup {version}"
    assert CGROUP_LIMIT - 4096 < limit <= CGROUP_LIMIT  # (v1 rounds it down to pages)
    assert (
        described == f"{format_size(limit)} (cgroup {version} {cgroup.limit_file} of {cgroup.path})"
    )
    source, used, stopped_at, message = out["caught"]
    assert source == f"cgroup {version}"  # the cgroup's working set was judged
    assert stopped_at == int(0.8 * limit) and used >= stopped_at, message
    assert out["held"] < limit

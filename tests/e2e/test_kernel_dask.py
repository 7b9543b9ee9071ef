"""A notebook's Dask work on the user's path: a real kernel with a local cluster, a
``%%remind`` cell whose graph has a failing task (told while the cell runs, the cell's count
the cluster's) and ``%remind status`` naming the client's scheduler and dashboard."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator

import pytest

from _kernel import Kernel
from _require import missing

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(240)]

_CLUSTER = """
from distributed import Client, LocalCluster
cluster = LocalCluster(
    n_workers=1, processes=False, threads_per_worker=2, dashboard_address="127.0.0.1:0"
)
client = Client(cluster)
"""
#: The cell: 100 tasks, the one at 37 raises; it then waits (with a deadline) until the
#: failure notice reached the memory channel, as a cell that goes on working would.
_CELL = """%%remind etl
import time
import nbremind
from distributed import wait

def work(i):
    if i == 37:
        raise KeyError("x")
    return i

futures = client.map(work, range(100), pure=False)
wait(futures)
sink = nbremind.get_session().dispatcher.channels["memory"]
deadline = time.monotonic() + 20
while time.monotonic() < deadline and not any(n.title.startswith("✗ etl:") for n in sink.notices):
    time.sleep(0.02)
"""


@pytest.fixture
def dask_kernel(remind_kernel: Kernel) -> Iterator[Kernel]:
    if not all(importlib.util.find_spec(name) for name in ("distributed", "bokeh")):
        missing("distributed and bokeh are not installed (pip install 'nbremind[dask]' bokeh)")
    remind_kernel.ok(_CLUSTER, timeout=60)
    yield remind_kernel
    remind_kernel.ok("client.close()\ncluster.close()", timeout=60)


def test_a_cells_failing_task_is_told_while_it_runs(dask_kernel: Kernel) -> None:
    k = dask_kernel
    k.ok(_CELL, timeout=60)

    notices = k.wait_for_notices(lambda found: any(n["event"] == "success" for n in found))
    first, end = notices
    assert re.fullmatch(
        r"✗ etl: task 'work-[0-9a-f-]+-37' failed on worker inproc://[^:]+: KeyError: 'x'",
        first["title"],
    ), first
    assert (first["event"], first["state"], first["urgency"]) == ("failure", "running", "critical")
    assert end["title"] == "✓ etl finished"
    assert "Progress: 99% (99/100)" in end["body"]  # the cluster's count, not the cell's own
    assert re.search(r"task 'work-[0-9a-f-]+-37' erred on worker inproc://", end["body"])


def test_remind_status_names_the_scheduler_and_the_dashboard(dask_kernel: Kernel) -> None:
    lines = dask_kernel.ok("%remind status").stdout.splitlines()

    [client_line] = [line for line in lines if line.startswith("  dask: client of ")]
    assert re.fullmatch(
        r"  dask: client of inproc://\S+, dashboard http://[^/\s]+:\d+/status", client_line
    ), client_line
    assert "  dask: cells and blocks " in "\n".join(lines)

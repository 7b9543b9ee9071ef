"""``%remind batch``: one notice for the cells queued together, in a real kernel, with the
cells sent as JupyterLab's Run All sends them (every request before any reply), and as
nbclient and papermill run a notebook (one request at a time)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from _kernel import Kernel, KernelFactory
from _require import missing

pytest_plugins = ["_kernel"]

pytestmark = pytest.mark.kernel


def _batch(notices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in notices if n["kind"] == "batch"]


def _batch_tasks(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tasks if t["kind"] == "batch"]


def _run_all(k: Kernel, cells: list[str]) -> list[Any]:
    """Send every cell's request before waiting for any (as Run All does); their results."""
    ids = [k.execute(code) for code in cells]
    return [k.result(msg_id) for msg_id in ids]


def test_cells_queued_together_make_one_notice_with_their_count(remind_kernel: Kernel) -> None:
    k = remind_kernel
    before = len(k.tasks())
    assert "one notice when the cells" in k.ok("%remind batch 0").stdout
    cells = ["a = 1", "%%remind step\nb = a + 1", "c = b + 1", "d = c + 1", "print(d)"]
    for result in _run_all(k, cells):
        result.assert_ok()

    notices = k.wait_for_notices(lambda found: bool(_batch(found)), what="the batch notice")
    [batch] = _batch(notices)
    assert re.fullmatch(r"✓ 5 cells finished in \d+\.\d s", batch["title"]), batch
    assert (batch["event"], batch["state"], batch["name"]) == ("success", "succeeded", "5 cells")
    assert [n["title"] for n in notices if n["kind"] == "cell"] == ["✓ step finished"]
    tasks = k.tasks()[before:]
    [task] = _batch_tasks(tasks)
    assert task["parent"] is None
    # the cells' own tasks are not nested in the batch
    assert [t["parent"] for t in tasks if t["name"] == "step"] == [None]
    assert "  batch mode: on (every batch)" in k.ok("%remind status").stdout.splitlines()


def test_a_failing_cell_ends_the_batch_with_its_execution_count(remind_kernel: Kernel) -> None:
    k = remind_kernel
    before = len(k.tasks())
    k.ok("%remind batch 0")
    cells = ["x = 1", "y = 2", "raise ValueError('bad row 7')", "z = 3", "w = 4"]
    results = _run_all(k, cells)
    assert [r.status for r in results] == ["ok", "ok", "error", "aborted", "aborted"]
    count = results[2].execution_count
    assert isinstance(count, int)

    notices = k.wait_for_notices(lambda found: bool(_batch(found)), what="the batch notice")
    [batch] = _batch(notices)
    title = batch["title"]
    assert re.fullmatch(
        rf"✗ cell \[{count}\] failed after \d+\.\d s: ValueError: bad row 7", title
    ), title
    assert (batch["event"], batch["urgency"]) == ("failure", "critical")
    # the batch ended there: no other batch, no success notice after it
    assert [t["state"] for t in _batch_tasks(k.tasks()[before:])] == ["failed"]
    assert [n["event"] for n in _batch(k.notices())] == ["failure"]


def test_a_quick_cell_or_a_quick_failure_notifies_nothing(remind_kernel: Kernel) -> None:
    k = remind_kernel
    before = len(k.tasks())
    k.ok("%remind batch 60")
    k.ok("quick = 1")
    k.wait_for_tasks(
        lambda found: [t["state"] for t in _batch_tasks(found[before:])] == ["succeeded"],
        what="the batch to end",
    )
    assert k.run("raise KeyError('by hand')").status == "error"
    ended = k.wait_for_tasks(
        lambda found: (
            len(_batch_tasks(found[before:])) == 2
            and not any(t["state"] == "running" for t in _batch_tasks(found[before:]))
        ),
        what="the second batch to end",
    )
    assert [t["state"] for t in _batch_tasks(ended[before:])] == ["succeeded", "failed"]
    assert _batch(k.notices()) == []
    assert "batch mode off" in k.ok("%remind batch off").stdout
    assert "  batch mode: off" in k.ok("%remind status").stdout.splitlines()


def test_auto_mode_cells_keep_their_notices(remind_kernel: Kernel) -> None:
    k = remind_kernel
    k.ok("%remind batch 0")
    k.ok("%remind auto 0.1s")
    try:
        for result in _run_all(k, ["import time", "time.sleep(0.2)", "done = True"]):
            result.assert_ok()
        notices = k.wait_for_notices(lambda found: bool(_batch(found)), what="the batch notice")
    finally:
        k.ok("%remind auto off")
    assert [n["title"] for n in notices if n["kind"] == "auto"] == ["✓ time.sleep(0.2) finished"]
    [batch] = _batch(notices)
    assert batch["title"].startswith("✓ 3 cells finished in ")


def test_a_bad_batch_value_is_a_usage_error(remind_kernel: Kernel) -> None:
    r = remind_kernel.run("%remind batch soon")
    assert (r.status, r.ename) == ("error", "UsageError")
    assert "'soon'" in r.evalue


def _notebook(cells: list[str]) -> Any:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    return nb


_SETUP = (
    '%load_ext nbremind\nimport nbremind\nnbremind.configure(channels=["memory"])\n%remind batch 0'
)


def test_nbclient_running_a_notebook_makes_one_batch_notice(kernel_factory: KernelFactory) -> None:
    from nbclient import NotebookClient

    k = kernel_factory()
    nb = _notebook([_SETUP, "a = 1", "b = a + 1", "c = b + 1"])
    # the kernel already runs: nbclient talks to it with a client of its own, one request
    # at a time, as it runs any notebook
    NotebookClient(nb, km=k.km, timeout=60).execute()
    k.reconnect()

    notices = k.wait_for_notices(lambda found: bool(_batch(found)), what="the batch notice")
    [batch] = _batch(notices)
    # the first cell counts from its %remind line on: it ends with batch mode on
    assert batch["title"].startswith("✓ 3 cells finished in "), batch
    assert [t["state"] for t in _batch_tasks(k.tasks())] == ["succeeded"]


def test_papermill_running_a_notebook_makes_one_batch_notice(
    kernel_factory: KernelFactory,
) -> None:
    try:
        import papermill
    except ImportError:
        missing("papermill is not installed (pip install -e '.[test]')")
    import nbformat

    k = kernel_factory()
    source = k.workdir / "in.ipynb"
    nbformat.write(_notebook([_SETUP, "a = 1", "b = a + 1", "c = b + 1"]), source)
    papermill.execute_notebook(str(source), str(k.workdir / "out.ipynb"), km=k.km)
    k.reconnect()

    notices = k.wait_for_notices(lambda found: bool(_batch(found)), what="the batch notice")
    [batch] = _batch(notices)
    assert batch["title"].startswith("✓ 3 cells finished in "), batch

"""A notebook task's notices say where it came from: the notebook and the cell, in a real
kernel that gets each cell's id the way JupyterLab sends it."""

from __future__ import annotations

from typing import Any

from _kernel import NOTEBOOK, Kernel

pytest_plugins = ["_kernel"]


def _by_name(notices: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [n for n in notices if n["name"] == name]


def test_a_cell_task_and_what_runs_in_it_carry_the_cell(remind_kernel: Kernel) -> None:
    remind_kernel.ok(
        "%%remind train\nfrom nbremind import track\n"
        "for _ in track(range(3), name='epochs', on=['success']):\n    pass\n",
        cell_id="cell-aaa",
    )
    notices = remind_kernel.notices()
    (cell,) = _by_name(notices, "train")
    (loop,) = _by_name(notices, "epochs")
    assert (cell["notebook"], cell["cell_id"]) == (NOTEBOOK, "cell-aaa")
    assert (loop["notebook"], loop["cell_id"]) == (NOTEBOOK, "cell-aaa")  # nested: its cell's


def test_a_block_in_a_plain_cell_carries_its_cell_and_the_next_cell_its_own(
    remind_kernel: Kernel,
) -> None:
    remind_kernel.ok('from nbremind import remind\nwith remind("load"):\n    pass\n', cell_id="c-1")
    remind_kernel.ok('with remind("save"):\n    pass\n', cell_id="c-2")
    notices = remind_kernel.notices()
    assert [n["cell_id"] for n in _by_name(notices, "load")] == ["c-1"]
    assert [n["cell_id"] for n in _by_name(notices, "save")] == ["c-2"]


def test_without_a_cell_id_or_after_the_cell_there_is_none(remind_kernel: Kernel) -> None:
    remind_kernel.ok('from nbremind import remind\nwith remind("no-id"):\n    pass\n')
    # a thread started by a cell, whose task begins after that cell ended
    remind_kernel.ok(
        "import threading\nstarted = threading.Event()\ngo = threading.Event()\n"
        "def later():\n    go.wait(30)\n    with remind('later'):\n        pass\n"
        "    started.set()\n"
        "threading.Thread(target=later, daemon=True).start()\n",
        cell_id="c-3",
    )
    remind_kernel.ok("go.set()\nassert started.wait(30)\n")
    notices = remind_kernel.notices()
    assert [(n["notebook"], n["cell_id"]) for n in _by_name(notices, "no-id")] == [(NOTEBOOK, None)]
    # started while the last cell (no id) ran: it has the notebook, and no cell
    assert [n["cell_id"] for n in _by_name(notices, "later")] == [None]

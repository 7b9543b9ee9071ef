"""A notebook with ``%%remind`` cells reads right once saved: executed with nbclient and
written with nbformat, converted with nbconvert, and run, saved and reopened in JupyterLab.

Each status line ends as plain output (its final text, as ``text/plain`` and ``text/html``)
in place of its widget view, so no viewer shows a running marker or a missing widget; a
panel carries a static snapshot saying the live panel needs a running kernel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

from _jupyterlab import CELLS, Lab, Notebook, wait_until
from nbremind.ipython.widgets import SNAPSHOT_NOTE

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
SETUP = "%load_ext nbremind\nimport nbremind\nnbremind.configure(channels=['memory'])"
CELLS_SOURCE = [
    SETUP,
    "%%remind train\nimport time\ntime.sleep(0.3)\n'trained'",
    "%%remind broken\nraise ValueError('bad row 2')",
]
TRAIN = re.compile(r"✓ train finished in \d+\.\d s")
BROKEN = re.compile(r"✗ broken failed after \d+\.\d s: ValueError: bad row 2")


def outputs_of(cell: Any) -> list[dict[str, Any]]:
    return [dict(out) for out in cell.get("outputs", [])]


def check_saved(nb: Any) -> None:
    """The saved ``%%remind`` cells hold their final lines and no widget view."""
    train, broken = nb.cells[1], nb.cells[2]
    for cell, final in ((train, TRAIN), (broken, BROKEN)):
        outs = outputs_of(cell)
        assert not [o for o in outs if WIDGET_VIEW in o.get("data", {})], outs
        [line] = [o for o in outs if o.get("output_type") == "display_data"]
        assert final.fullmatch(line["data"]["text/plain"]), line
        assert final.search(line["data"]["text/html"]), line
        assert "▶" not in json.dumps(outs, ensure_ascii=False)
    assert "'trained'" in [
        o["data"]["text/plain"]
        for o in outputs_of(train)
        if o.get("output_type") == "execute_result"
    ]
    assert [o["ename"] for o in outputs_of(broken) if o.get("output_type") == "error"] == [
        "ValueError"
    ]


def execute(folder: Path, sources: list[str]) -> Path:
    """Run a notebook of ``sources`` top to bottom with nbclient, then write it with nbformat."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute()
    path = folder / "executed.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The notebook run by nbclient (its status lines, then a live panel) and saved."""
    return execute(tmp_path_factory.mktemp("saved"), [*CELLS_SOURCE, "%remind panel"])


@pytest.mark.kernel
def test_closing_the_panel_leaves_a_static_snapshot(tmp_path: Path) -> None:
    path = execute(
        tmp_path,
        [
            *CELLS_SOURCE,
            "%remind panel",
            "from nbremind.ipython.panel import panel\npanel().close()",
        ],
    )
    [shown] = outputs_of(nbformat.read(path, as_version=4).cells[3])

    assert WIDGET_VIEW not in shown["data"], shown
    assert SNAPSHOT_NOTE in shown["data"]["text/plain"], shown
    assert "<td>train</td>" in shown["data"]["text/html"]
    assert "<td>✗ failed</td>" in shown["data"]["text/html"]


@pytest.mark.kernel
def test_a_notebook_run_by_nbclient_saves_the_final_lines(executed: Path) -> None:
    nb = nbformat.read(executed, as_version=4)
    check_saved(nb)
    [panel] = outputs_of(nb.cells[3])
    assert WIDGET_VIEW in panel["data"]  # still live while the kernel runs
    snapshot = panel["data"]["text/html"]
    assert SNAPSHOT_NOTE in snapshot and SNAPSHOT_NOTE in panel["data"]["text/plain"]
    assert "<td>train</td>" in snapshot and "<td>broken</td>" in snapshot
    assert "0 running · 2 finished" in snapshot


@pytest.mark.kernel
@pytest.mark.parametrize("exporter", ["markdown", "rst", "html"])
def test_nbconvert_shows_the_final_lines(executed: Path, exporter: str) -> None:
    from nbconvert.exporters import get_exporter

    body, _ = get_exporter(exporter)().from_filename(str(executed))

    assert TRAIN.search(body) and BROKEN.search(body), body[-3000:]
    if exporter != "html":  # HTML embeds the saved widget state and draws the panel itself
        assert SNAPSHOT_NOTE in body
    assert "▶" not in body


# -- JupyterLab --------------------------------------------------------------------------------

_OUTPUT_TEXT = (
    "([sel, i]) => { const c = document.querySelectorAll(sel)[i];"
    " const o = c && c.querySelector('.jp-OutputArea'); return o ? o.textContent : ''; }"
)


def output_text(nb: Notebook, index: int) -> str:
    text: str = nb.page.evaluate(_OUTPUT_TEXT, [CELLS, index])
    return text


def wait_output(nb: Notebook, index: int, pattern: re.Pattern[str], what: str) -> str:
    wait_until(
        nb.page,
        "([sel, i, p]) => { const c = document.querySelectorAll(sel)[i];"
        " const o = c && c.querySelector('.jp-OutputArea');"
        " return o && new RegExp(p).test(o.textContent); }",
        [CELLS, index, pattern.pattern],
        what=what,
        shot="saved",
    )
    return output_text(nb, index)


def assert_no_widget_error(nb: Notebook) -> None:
    text = nb.page.evaluate(
        "([sel]) => [...document.querySelectorAll(sel)].map(c => c.textContent).join('\\n')",
        [CELLS],
    )
    assert "Error displaying widget" not in text and "model not found" not in text, text


@pytest.mark.browser
@pytest.mark.kernel
def test_a_notebook_saved_in_jupyterlab_reopens_with_the_final_lines(lab: Lab) -> None:
    nb = lab.notebook("saved-status.ipynb", CELLS_SOURCE)
    nb.run_ok(0)
    nb.run_ok(1)
    nb.run_and_wait(2)
    wait_output(nb, 1, TRAIN, "the final line of train")
    wait_output(nb, 2, BROKEN, "the final line of broken")
    assert nb.cell(1).locator(".nbremind-status").count() == 1

    saved = nbformat.reads(lab.save(nb), as_version=4)
    check_saved(saved)

    nb.page.reload()
    reopened = Notebook(nb.page, nb.path)
    reopened.wait_idle()
    assert TRAIN.search(wait_output(reopened, 1, TRAIN, "train's line after reopening"))
    assert BROKEN.search(wait_output(reopened, 2, BROKEN, "broken's line after reopening"))
    assert "▶" not in output_text(reopened, 1) + output_text(reopened, 2)
    assert_no_widget_error(reopened)


@pytest.mark.browser
@pytest.mark.kernel
def test_a_notebook_run_by_nbclient_opens_in_jupyterlab_without_widget_errors(
    lab: Lab, executed: Path
) -> None:
    name = "executed-status.ipynb"
    (lab.server.root / name).write_bytes(executed.read_bytes())
    nb = lab.open(name)
    wait_output(nb, 1, TRAIN, "train's saved line")
    wait_output(nb, 2, BROKEN, "broken's saved line")
    assert_no_widget_error(nb)


# -- the live panel ----------------------------------------------------------------------------

WIDGETS_PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"
PANEL_CELLS = [SETUP, "%%remind train\nimport time\ntime.sleep(0.3)", "%remind panel"]
_PANEL = (
    "([live, name]) => { const p = document.querySelector('.nbremind-panel');"
    " return !!p && p.dataset.live === live && p.textContent.includes(name); }"
)


def run_panel_notebook(lab: Lab, name: str) -> Notebook:
    """Open a notebook that runs a task and shows the panel; wait for the panel to list it."""
    nb = lab.notebook(name, PANEL_CELLS)
    for index in range(len(PANEL_CELLS)):
        nb.run_ok(index)
    wait_until(
        nb.page, _PANEL, ["true", "train"], what="the live panel listing train", shot="saved"
    )
    return nb


@pytest.mark.browser
@pytest.mark.kernel
def test_a_live_panel_saved_in_jupyterlab_reopens_as_its_last_rows(lab: Lab) -> None:
    nb = run_panel_notebook(lab, "live-panel.ipynb")
    text = lab.save(nb)  # while the kernel runs: the widget state is saved with it
    saved = nbformat.reads(text, as_version=4)
    [shown] = outputs_of(saved.cells[2])
    model_id = shown["data"][WIDGET_VIEW]["model_id"]
    state = saved.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert state[model_id]["state"]["view"] == "panel"

    # opened where that kernel does not exist (another kernel starts, as after a server
    # restart): the panel is drawn from its saved rows and says it is not live
    (lab.server.root / "live-panel-reopened.ipynb").write_text(text)
    reopened = lab.open("live-panel-reopened.ipynb")
    wait_until(
        reopened.page,
        _PANEL,
        ["false", "train"],
        timeout=60,
        what="the saved panel marked not live",
        shot="saved",
    )
    panel_text = reopened.page.text_content(".nbremind-panel") or ""
    assert SNAPSHOT_NOTE in panel_text and "1 finished" in panel_text, panel_text
    assert_no_widget_error(reopened)


@pytest.mark.browser
@pytest.mark.kernel
def test_a_panel_whose_kernel_shuts_down_is_left_as_its_snapshot(lab: Lab) -> None:
    lab.server.lab_setting(WIDGETS_PLUGIN, {"saveState": False})  # JupyterLab's own default
    try:
        nb = run_panel_notebook(lab, "panel-shutdown.ipynb")
        lab.shutdown_kernels()
        note = re.compile(re.escape(SNAPSHOT_NOTE))
        wait_output(nb, 2, note, "the panel's snapshot once the kernel is gone")
        assert nb.cell(2).locator(".nbremind-panel").count() == 0

        saved = nbformat.reads(lab.save(nb), as_version=4)
        [left] = outputs_of(saved.cells[2])
        assert WIDGET_VIEW not in left["data"], left
        assert "<td>train</td>" in left["data"]["text/html"]
        assert "widgets" not in saved.metadata

        nb.page.reload()
        reopened = Notebook(nb.page, nb.path)
        reopened.wait_idle()
        assert "train" in wait_output(reopened, 2, note, "the snapshot after reopening")
        assert_no_widget_error(reopened)
    finally:
        lab.server.lab_setting(WIDGETS_PLUGIN, {})

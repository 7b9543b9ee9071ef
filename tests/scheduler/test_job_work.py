"""What a notebook job and a Python job run, as ``nbremind schedule`` runs them: the
job's work under a real ``nbremind run --job``, in a real project folder, its failure
notice read at a real webhook and its run in a fresh process's ``nbremind history``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from _projects import history_json
from _servers import ScriptedHTTPServer
from nbremind.scheduler.work import job_work
from nbremind.settings.jobs import load_jobs

PY = sys.executable


def run_job(
    folder: Path, name: str, url: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One run of the job NAME of ``folder``'s settings, as the scheduler starts it."""
    job = load_jobs(folder, environ={}).jobs[name]
    argv = [PY, "-m", "nbremind", "run", "--job", name, "--channels", url, "--"]
    return subprocess.run(
        [*argv, *job_work(job, PY)],
        cwd=folder,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings(folder: Path, text: str) -> Path:
    (folder / "nbremind.toml").write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def failure_of(http_server: ScriptedHTTPServer, name: str) -> tuple[str, dict[str, Any]]:
    """The first line of the failure notice's body, and the run's history row."""
    [request] = http_server.wait_for(1)
    payload = request.json()
    assert (payload["event"], payload["task"]["name"]) == ("failure", name)
    [row] = history_json(None)
    assert (row["name"], row["kind"], row["state"]) == (name, "job", "failed")
    return payload["body"].splitlines()[0], row


# -- notebooks -----------------------------------------------------------------------------
def notebook(path: Path, *cells: str) -> None:
    """A notebook of ``cells``: ``"# ..."`` a markdown cell, ``"@..."`` the parameters cell,
    any other a code cell."""
    import nbformat

    book = nbformat.v4.new_notebook()
    for source in cells:
        if source.startswith("#"):
            book.cells.append(nbformat.v4.new_markdown_cell(source))
        elif source.startswith("@"):
            cell = nbformat.v4.new_code_cell(source[1:])
            cell.metadata["tags"] = ["parameters"]
            book.cells.append(cell)
        else:
            book.cells.append(nbformat.v4.new_code_cell(source))
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    book.metadata["kernelspec"]["language"] = "python"
    nbformat.write(book, path)


@pytest.mark.parametrize(
    ("cells", "parameters"),
    [
        # papermill's injected parameters cell is not the job's
        (("@region = 'none'", "x = 1", "raise ValueError(region)"), "{ region = 'emea' }"),
        # a markdown cell counts, as the notebook shows it
        (("# Report", "region = 'emea'", "raise ValueError(region)"), "{}"),
        (("# Report", "@region = 'none'", "raise ValueError(region)"), "{ region = 'emea' }"),
    ],
    ids=["injected-parameters", "markdown-first", "both"],
)
def test_the_failing_cell_is_its_place_in_the_jobs_notebook(
    http_server: ScriptedHTTPServer, tmp_path: Path, cells: tuple[str, ...], parameters: str
) -> None:
    pytest.importorskip("papermill")
    notebook(tmp_path / "report.ipynb", *cells)
    folder = settings(
        tmp_path,
        f"""
        [jobs.report]
        notebook = "report.ipynb"
        parameters = {parameters}
        output = "runs/report.ipynb"
        every = "1d"
        """,
    )
    run = run_job(folder, "report", http_server.url())
    assert run.returncode == 1
    told = "runs/report.ipynb: cell 3 raised ValueError: emea"
    assert run.stderr.splitlines()[-1] == told, run.stderr
    first, row = failure_of(http_server, "report")
    assert first == row["error_type"] == f"{told} (exit status 1)"


def test_without_papermill_a_notebook_job_says_how_to_install_it(
    http_server: ScriptedHTTPServer, tmp_path: Path
) -> None:
    notebook(tmp_path / "report.ipynb", "x = 1")
    folder = settings(
        tmp_path,
        """
        [jobs.report]
        notebook = "report.ipynb"
        every = "1d"
        """,
    )
    # (a papermill that cannot be imported shadows the installed one)
    shadow = tmp_path / "shadow"
    (shadow / "papermill").mkdir(parents=True)
    (shadow / "papermill" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'papermill'\", name='papermill')\n"
    )
    run = run_job(folder, "report", http_server.url(), {"PYTHONPATH": str(shadow)})
    assert run.returncode == 1
    missing = "notebook jobs need papermill: pip install 'nbremind[papermill]'"
    assert run.stderr.splitlines()[-1] == missing
    first, row = failure_of(http_server, "report")
    assert first == row["error_type"] == f"{missing} (exit status 1)"


# -- Python functions ----------------------------------------------------------------------
FUNCTIONS = """\
import sys


def pid():
    return 4242


def frame():
    import pandas

    return pandas.DataFrame({"a": [1, 2]})


def text():
    return "done"


def broken():
    raise ValueError("bad")


def leaves():
    sys.exit(3)
"""


@pytest.fixture
def functions(tmp_path: Path) -> Path:
    (tmp_path / "etl_jobs.py").write_text(FUNCTIONS, encoding="utf-8")
    jobs = "".join(
        f'[jobs.{name}]\npython = "etl_jobs:{name}"\nevery = "1d"\n\n'
        for name in ("pid", "frame", "text", "broken", "leaves")
    )
    return settings(tmp_path, jobs)


@pytest.mark.parametrize("name", ["pid", "frame", "text"])
def test_a_function_that_returns_anything_succeeded(
    http_server: ScriptedHTTPServer, functions: Path, name: str
) -> None:
    if name == "frame":
        pytest.importorskip("pandas")
    run = run_job(functions, name, http_server.url())
    assert (run.returncode, run.stderr) == (0, "")
    [request] = http_server.wait_for(1)
    assert request.json()["event"] == "success"
    [row] = history_json(None)
    assert (row["name"], row["state"]) == (name, "succeeded")


def test_a_function_that_raises_failed_and_says_what_it_raised(
    http_server: ScriptedHTTPServer, functions: Path
) -> None:
    run = run_job(functions, "broken", http_server.url())
    assert run.returncode == 1
    assert 'raise ValueError("bad")' in run.stderr  # its traceback, for the log
    first, row = failure_of(http_server, "broken")
    assert first == row["error_type"] == "etl_jobs:broken raised ValueError: bad (exit status 1)"


def test_a_function_that_exits_keeps_its_exit_status(
    http_server: ScriptedHTTPServer, functions: Path
) -> None:
    run = run_job(functions, "leaves", http_server.url())
    assert (run.returncode, run.stderr) == (3, "")
    first, row = failure_of(http_server, "leaves")
    assert first == row["error_type"] == "exit status 3"

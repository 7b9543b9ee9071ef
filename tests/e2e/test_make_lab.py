"""``make lab`` installs what its notebooks need: the Makefile's own install step builds a
fresh venv, and every notebook in ``notebooks/`` runs in it, on a kernel of that venv, with
no cell failing and no demo skipped for a missing package."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _require import missing

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "nbremind-lab-venv"
WIDGETS_PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"
#: The setting defaults JupyterLab of a venv reads (its app settings' overrides).
_READ_LAB_DEFAULTS = (
    "import json, os; from jupyterlab.commands import get_app_dir; "
    "from jupyterlab_server.settings_utils import _get_overrides; "
    "print(json.dumps(_get_overrides(os.path.join(get_app_dir(), 'settings'))[0]))"
)
#: What a notebook prints when it leaves a demo out for a package it lacks.
SKIPPED = ("is not installed", "skipping")

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.timeout(300),
    pytest.mark.skipif(os.name != "posix", reason="the Makefile uses a POSIX venv (bin/)"),
]


def _index_reachable(env: dict[str, str], scratch: Path) -> str:
    """``""`` when pip can fetch a package from its index; else pip's last error line."""
    probe = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--timeout",
            "15",
            "--retries",
            "1",
            "--dest",
            str(scratch),
            "jupyterlab>=4",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if probe.returncode == 0:
        return ""
    lines = [line for line in probe.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"pip exited {probe.returncode}"


def _outputs(nb: object) -> str:
    texts = []
    for cell in getattr(nb, "cells", []):
        for out in cell.get("outputs", []):
            texts.append(str(out.get("text", "")))
            texts.append(str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


@pytest.fixture
def lab_venv(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A venv made by ``make install`` (the step ``make lab`` runs), and an environment
    whose caches and settings all live under ``tmp_path``."""
    make = shutil.which("make")
    if make is None:
        missing("make is not installed")
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in (
            "DBUS_SESSION_BUS_ADDRESS",
            "DISPLAY",
            "WAYLAND_DISPLAY",
            "JUPYTER_PATH",
            "JUPYTER_CONFIG_PATH",
            "VIRTUAL_ENV",
            "PYTHONPATH",
        )
    }
    env.update(
        PIP_CACHE_DIR=str(tmp_path / "pip-cache"),
        PIP_NO_INPUT="1",
        IPYTHONDIR=str(tmp_path / "ipython"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),
        JUPYTER_PATH=str(tmp_path / "jupyter"),
    )
    why = _index_reachable(env, tmp_path / "probe")
    if why:
        missing(f"pip cannot reach a package index: {why}")
    venv = tmp_path / "venv"
    built = subprocess.run(
        [make, "-C", str(ROOT), "install", f"VENV={venv}", f"PYTHON={sys.executable}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert built.returncode == 0, f"make install failed:\n{built.stdout}\n{built.stderr}"
    python = venv / "bin" / "python"
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "make lab's venv",
                "language": "python",
            }
        )
    )
    return venv, env


def _execute(
    path: Path, workdir: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> object:
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError:
        missing("nbclient / nbformat are not installed (pip install -e '.[test]')")
    with monkeypatch.context() as patch:  # the kernel is started with this environment
        for key in set(os.environ) - set(env):
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb, timeout=120, kernel_name=KERNEL, resources={"metadata": {"path": str(workdir)}}
        )
        client.execute()  # raises CellExecutionError naming the first cell that failed
    return nb


def test_every_shipped_notebook_runs_in_the_venv_make_lab_installs(
    lab_venv: tuple[Path, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    venv, env = lab_venv
    assert NOTEBOOKS, "no notebook in notebooks/"
    probe = tmp_path / "which.ipynb"
    probe.write_text(
        json.dumps(
            {
                "nbformat": 4,
                "nbformat_minor": 5,
                "metadata": {},
                "cells": [
                    {
                        "cell_type": "code",
                        "id": "which",
                        "metadata": {},
                        "execution_count": None,
                        "outputs": [],
                        "source": "import sys; print(sys.prefix)",
                    }
                ],
            }
        )
    )
    prefix = _outputs(_execute(probe, tmp_path, env, monkeypatch)).strip()
    assert Path(prefix).resolve() == venv.resolve(), "the kernel is not the lab venv's"
    # the venv's JupyterLab saves widget state with notebooks (a live panel reopens as rows)
    read = subprocess.run(
        [str(venv / "bin" / "python"), "-c", _READ_LAB_DEFAULTS],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)[WIDGETS_PLUGIN] == {"saveState": True}, read.stdout
    histories = {}
    for path in NOTEBOOKS:
        data = tmp_path / f"data-{path.stem}"
        env_nb = {**env, "NBREMIND_DATA_DIR": str(data)}
        workdir = tmp_path / f"run-{path.stem}"
        workdir.mkdir()
        text = _outputs(_execute(path, workdir, env_nb, monkeypatch))
        for word in SKIPPED:
            assert word not in text, f"{path.name} left a demo out:\n{text}"
        histories[path.name] = env_nb
        if path.name == "pandas-etl.ipynb":  # %remind history 1: the job, 20 calls inside
            # (each shorter than history_min: folded into the job's row, "20 in 41 ms")
            assert re.search(r"\betl\s+20 in [\d.]+ m?s\s+loop\s+succeeded\b", text), text

    # one run of the chunked ETL: one top-level run in the history, its 20 short pandas
    # calls folded into it (history_min)
    env_etl = histories["pandas-etl.ipynb"]
    listed = subprocess.run(
        [str(venv / "bin" / "nbremind"), "history", "--json"],
        capture_output=True,
        text=True,
        env=env_etl,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    [etl] = json.loads(listed.stdout)
    assert (etl["name"], etl["kind"], etl["state"]) == ("etl", "loop", "succeeded")
    every = subprocess.run(
        [str(venv / "bin" / "nbremind"), "history", "--json", "--all"],
        capture_output=True,
        text=True,
        env=env_etl,
        timeout=60,
    )
    assert (etl["folded"], etl["nested"], len(json.loads(every.stdout))) == (20, 0, 1)

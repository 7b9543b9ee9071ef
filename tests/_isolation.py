"""Keep every test away from the user's real nbremind data folder.

The outbox file goes to ``$NBREMIND_DATA_DIR``: a fresh temporary folder for each test. A
run-wide one is set when this module loads, for processes started by session-wide fixtures
(kernels, JupyterLab) and for sessions still delivering at interpreter exit.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

DATA_DIR = "NBREMIND_DATA_DIR"

os.environ[DATA_DIR] = tempfile.mkdtemp(prefix="nbremind-data-")


@pytest.fixture(autouse=True)
def nbremind_data_dir(
    isolated_settings: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """This test's own data folder (``$NBREMIND_DATA_DIR``); the outbox file lives in it.

    Set after ``isolated_settings``, which clears every ``NBREMIND_<SETTING>`` variable
    (``data_dir`` is a setting)."""
    path = tmp_path_factory.mktemp("nbremind-data")
    monkeypatch.setenv(DATA_DIR, str(path))
    return path

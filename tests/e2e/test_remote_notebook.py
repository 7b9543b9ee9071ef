"""notebooks/remote-channels.ipynb runs top to bottom on a real kernel against the local
HTTP and SMTP servers it starts itself."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from _require import missing

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "remote-channels.ipynb"

pytestmark = pytest.mark.kernel


def _outputs(nb: nbformat.NotebookNode) -> str:
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            texts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def test_remote_channels_notebook(tmp_path: Path) -> None:
    for module in ("aiosmtpd", "apprise"):
        try:
            __import__(module)
        except ImportError:
            missing(f"{module} is not installed (pip install -e '.[test]')")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    text = _outputs(nb)
    assert "answers: [503, 200]" in text
    assert "version 1 | event success | state succeeded" in text
    assert "title: etl done on " in text
    assert "progress: 4 / 4" in text and "header X-Team: ml" in text
    assert "signature verifies: True" in text
    assert "team delivered after 2 tries" in text
    assert "subject: ✓ train finished" in text
    assert "apprise delivered: ✓ fetch finished" in text

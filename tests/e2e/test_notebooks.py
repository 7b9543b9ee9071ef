"""The shipped notebooks run top to bottom on a real kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

pytestmark = pytest.mark.kernel


def _outputs(nb: nbformat.NotebookNode) -> str:
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            texts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def test_quickstart_runs_and_notifies(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    text = _outputs(nb)
    assert "trained 3 epochs" in text
    assert "succeeded 10 10" in text
    assert "144" in text and "fetched" in text
    for title in (
        "✓ train finished",
        "etl reached 50%",
        "✓ etl finished",
        "✓ square finished",
        "✓ fetch finished",
    ):
        assert title in text, f"{title!r} was not handed to a channel"

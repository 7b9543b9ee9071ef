"""``notebooks/pandas-etl.ipynb`` runs top to bottom on a real kernel and notifies at 50 %."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from _require import missing

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "pandas-etl.ipynb"
REGIONS = ("east", "north", "south", "west")

pytestmark = pytest.mark.kernel


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_pandas_etl_runs_and_tells_at_half_way(tmp_path: Path) -> None:
    try:
        import pandas  # noqa: F401
    except ImportError:
        missing("the pandas notebook needs pandas (pip install -e .[test])")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    everything = "\n".join(_text(cell) for cell in code)
    assert "wrote 50,000 orders" in everything

    # the aggregated table: one row per region, every order counted once
    [table] = [_text(c) for c in code if "revenue" in _text(c) and "orders" in _text(c)]
    rows = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s+\d+\s+[\d.]+$", table, re.M)}
    assert sorted(rows) == list(REGIONS)
    assert sum(rows.values()) == 50_000

    # the notebook checks its result against plain pandas on the whole file
    # progress of the chunked read is in bytes of the file, the rows are a metric
    done = re.search(
        r"etl succeeded: 50,000 rows, ([\d,]+) of ([\d,]+) bytes in 10 chunks, "
        r"20 pandas tasks, same totals as plain pandas",
        everything,
    )
    assert done is not None, everything
    assert done[1] == done[2]  # the whole file was read

    sent = _text(code[-1])
    titles = [ln.split("->")[0].strip().strip("'\"") for ln in sent.splitlines() if "->" in ln]
    assert "etl reached 50%" in titles, f"the 50% notice was not handed to a channel:\n{sent}"
    assert titles.index("etl reached 50%") < titles.index("✓ etl finished")
    # the per-chunk pandas tasks asked for failures only
    assert not [t for t in titles if "coupons" in t or "by region" in t], sent

"""What one run of a job runs, as a command line: the job's command, its notebook through
papermill, or its Python function (the part of a run after ``nbremind run --job NAME --``).

A notebook or function that fails says why in one line, in the file ``nbremind run`` names
in ``NBREMIND_REASON_FILE`` (the failure notice gives it): "runs/report.ipynb: cell 3 raised
KeyError: 'region'", "etl.jobs:refresh raised ValueError: bad"."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core.jobs import Job

__all__ = ["PAPERMILL_MISSING", "job_work"]

#: Why a notebook job cannot run where papermill is not installed.
PAPERMILL_MISSING = "notebook jobs need papermill: pip install 'nbremind[papermill]'"

# (the runs' code: a function's and a notebook's, each given its values as arguments)
_TELL = """\
def tell(why):
    told = os.environ.get('NBREMIND_REASON_FILE')
    if told:
        with open(told, 'w', encoding='utf-8') as file:
            file.write(why.replace('\\n', ' ').replace('\\r', ' '))
"""

# any return value is a success; a raise fails the run; SystemExit keeps its code
_FUNCTION = (
    "import importlib, os, sys, traceback\n"
    + _TELL
    + """\
module, function = sys.argv[1], sys.argv[2]
try:
    getattr(importlib.import_module(module), function)()
except Exception as exc:
    traceback.print_exc()
    tell(f'{module}:{function} raised {type(exc).__name__}: {exc}')
    sys.exit(1)
"""
)

# the failing cell is told by its place in the job's own notebook: every cell counted
# (markdown too), the parameters cell papermill injects not (``cell_index`` counts it, in
# the notebook papermill ran: the copy it writes has its error cells added, tagged)
_NOTEBOOK = (
    "import json, os, sys\n"
    + _TELL
    + """\
notebook, out, parameters, missing = sys.argv[1:5]
try:
    import papermill
except ImportError:
    tell(missing)
    sys.exit(missing)
os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
try:
    papermill.execute_notebook(notebook, out, progress_bar=False,
        parameters=json.loads(parameters))
except papermill.PapermillExecutionError as exc:
    cell = exc.cell_index + 1
    try:
        import nbformat
        tags = [c.get('metadata', {}).get('tags', []) for c in nbformat.read(out, 4).cells]
        ran = [t for t in tags if 'papermill-error-cell-tag' not in t][: exc.cell_index]
        cell -= sum('injected-parameters' in t for t in ran)
    except Exception:
        pass
    why = f'{out}: cell {cell} raised {exc.ename}: {exc.evalue}'
    tell(why)
    sys.exit(why)
"""
)


def job_work(job: Job, python: str) -> list[str]:
    """What the run runs: the command, the notebook through papermill, or the function."""
    if job.command is not None:
        return list(job.command)
    if job.python is not None:
        module, _, function = job.python.partition(":")
        return [python, "-c", _FUNCTION, module, function]
    assert job.notebook is not None
    output = (job.output or "").format(name=job.name, start=dt.datetime.now())
    parameters = json.dumps(dict(job.parameters))
    return [python, "-c", _NOTEBOOK, job.notebook, output, parameters, PAPERMILL_MISSING]

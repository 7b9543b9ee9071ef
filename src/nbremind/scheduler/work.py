"""What one run of a job runs, as a command line: the job's command, its notebook through
papermill, or its Python function (the part of a run after ``nbremind run --job NAME --``)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core.jobs import Job

__all__ = ["job_work"]


def job_work(job: Job, python: str) -> list[str]:
    """What the run runs: the command, the notebook through papermill, or the function."""
    if job.command is not None:
        return list(job.command)
    if job.python is not None:
        module, _, function = job.python.partition(":")
        code = (
            "import importlib, sys\n"
            f"result = getattr(importlib.import_module({module!r}), {function!r})()\n"
            "sys.exit(0 if result is None or result is True or result == 0 else 1)\n"
        )
        return [python, "-c", code]
    assert job.notebook is not None
    import json

    output = (job.output or "").format(name=job.name, start=dt.datetime.now())
    code = (
        "import json, os, sys\n"
        "import papermill\n"
        f"out = {output!r}\n"
        "os.makedirs(os.path.dirname(out) or '.', exist_ok=True)\n"
        "try:\n"
        f"    papermill.execute_notebook({job.notebook!r}, out, progress_bar=False,\n"
        f"        parameters=json.loads({json.dumps(dict(job.parameters))!r}))\n"
        "except papermill.PapermillExecutionError as exc:\n"
        "    why = f'{out}: cell {exc.exec_count} raised {exc.ename}: {exc.evalue}'\n"
        "    told = os.environ.get('NBREMIND_REASON_FILE')\n"
        "    if told:\n"
        "        with open(told, 'w', encoding='utf-8') as file:\n"
        "            file.write(why.replace('\\n', ' '))\n"
        "    sys.exit(why)\n"
    )
    return [python, "-c", code]

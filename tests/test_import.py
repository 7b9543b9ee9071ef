"""``import nbremind`` stays light; the import-linter contract holds."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _require import missing

ROOT = Path(__file__).resolve().parent.parent

HEAVY = (
    "IPython",
    "ipykernel",
    "ipywidgets",
    "anywidget",
    "pandas",
    "tqdm",
    "desktop_notifier",
    "psutil",
)


#: Standard-library modules slow to import that ``import nbremind`` leaves out (dataclasses
#: brings inspect, ast and dis: a third of the import), with the heavy ones.
SLOW = (*HEAVY, "dataclasses", "inspect", "asyncio", "sqlite3", "logging")


def _loaded_after(code: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    """Run ``code`` in a fresh interpreter; return the ``heavy`` top-level modules it loaded."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        heavy = {heavy!r}
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set(heavy))))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_the_check_itself_sees_heavy_modules() -> None:
    # the probe must be able to fail: a module we know is installed shows up when imported
    assert _loaded_after("import psutil") == ["psutil"]


def test_import_nbremind_is_light() -> None:
    assert _loaded_after("import nbremind") == []
    # the jobs of the settings files (and their cron parser) load only where they run
    assert _loaded_after("import nbremind", ("cronsim",)) == []


def test_the_check_sees_slow_standard_modules() -> None:
    assert _loaded_after("import dataclasses", SLOW) == ["dataclasses", "inspect"]


def test_import_nbremind_leaves_slow_standard_modules_out() -> None:
    assert _loaded_after("import nbremind", SLOW) == []
    assert _loaded_after("from nbremind import remind, track, Config, TaskState", SLOW) == []


def test_import_public_names_is_light() -> None:
    code = "from nbremind import remind, configure, get_session, Session, Task, TaskState\n"
    assert _loaded_after(code) == []


def test_import_testing_is_light() -> None:
    assert _loaded_after("import nbremind.testing") == []


def test_a_captured_task_stays_light() -> None:
    code = """
    from nbremind import remind
    from nbremind.testing import capture_notices
    with capture_notices() as cap:
        with remind("etl", total=3) as task:
            task.advance(3)
        assert cap.titles() == ["✓ etl finished"], cap.titles()
    """
    assert _loaded_after(code) == []


def test_import_linter_contract_holds() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        missing("lint-imports (import-linter) is not installed next to the interpreter")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "BROKEN" not in output
    assert "5 kept, 0 broken" in output


@pytest.mark.parametrize("module", ["nbremind.channels.null", "nbremind.channels.memory"])
def test_light_channels_import_nothing_heavy(module: str) -> None:
    assert _loaded_after(f"import {module}") == []

"""Other Python versions for the tests that must hold on every supported one (3.10 to 3.13).

``python_for("3.12")`` gives an interpreter of that version with nbremind's dependencies
installed in a virtual environment of its own (nbremind itself comes from ``src/`` through
``PYTHONPATH``). Interpreters are taken from ``$NBREMIND_TEST_PYTHONS`` (paths, separated by
the platform's path separator), then ``pythonX.Y`` on ``PATH``, then pyenv's versions folder.
The environments are kept in the temporary folder between runs, keyed by the dependency
list, so only the first run pays for ``pip install``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from _require import missing

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
SUPPORTED = ("3.10", "3.11", "3.12", "3.13")


def _current() -> str:
    return "{}.{}".format(*sys.version_info[:2])


def _version_of(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('{}.{}'.format(*sys.version_info[:2]))"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _candidates(version: str) -> list[str]:
    listed = os.environ.get("NBREMIND_TEST_PYTHONS", "")
    found = [p for p in listed.split(os.pathsep) if p]
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(on_path)
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if root.is_dir():
        found.extend(
            str(p / "bin" / f"python{version}")
            for p in sorted(root.glob(f"{version}.*"), reverse=True)
        )
    return found


def find_python(version: str) -> str | None:
    """An interpreter of ``version`` (``"3.12"``) on this machine, or ``None``."""
    if _current() == version:
        return sys.executable
    for python in _candidates(version):
        if Path(python).exists() and _version_of(python) == version:
            return python
    return None


def _requirements() -> list[str]:
    with (REPO / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]
    extras = [r for r in project["optional-dependencies"]["apprise"] if "nbremind" not in r]
    return [*project["dependencies"], *extras]


def python_for(version: str) -> str:
    """An interpreter of ``version`` that can run nbremind from ``src/`` (skips, or fails
    under ``NBREMIND_REQUIRE_ALL=1``, when this machine has none)."""
    if _current() == version:
        return sys.executable
    base = find_python(version)
    if base is None:
        missing(
            f"no Python {version} interpreter found (set NBREMIND_TEST_PYTHONS, or "
            f"install python{version})"
        )
        raise AssertionError  # not reached: missing() skips or fails
    requirements = _requirements()
    key = hashlib.sha256("\n".join([base, *requirements]).encode()).hexdigest()[:12]
    home = Path(tempfile.gettempdir()) / "nbremind-test-pythons" / f"{version}-{key}"
    python = home / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if python.exists():
        return str(python)
    home.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{version}-building-", dir=home.parent))
    try:
        subprocess.run(
            [base, "-m", "venv", str(building)], check=True, capture_output=True, timeout=300
        )
        pip = building / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        done = subprocess.run(
            [str(pip), "-m", "pip", "install", "-q", *requirements],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            pytest.fail(
                f"installing nbremind's dependencies for Python {version} failed:\n"
                f"{done.stderr[-2000:]}"
            )
        try:
            building.rename(home)
        except OSError:  # another run made it meanwhile
            shutil.rmtree(building, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return str(python)


def env_for_src(**extra: str) -> dict[str, str]:
    """This process's environment with ``src/`` first on ``PYTHONPATH``, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def run_in(
    cwd: Path, *argv: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """``argv`` run in ``cwd`` as a user runs it, with ``src/`` first on ``PYTHONPATH`` and
    ``env`` added; output captured as text."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env_for_src(**env),
        timeout=timeout,
    )

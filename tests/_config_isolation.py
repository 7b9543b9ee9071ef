"""Keeps every test away from the user's and the repository's nbremind settings.

For each test: ``NBREMIND_CONFIG_DIR`` points at an empty folder of its own (so no user
``config.toml`` is read) and no ``NBREMIND_<SETTING>`` variable is set. Kernels and other
processes started by tests inherit an empty settings folder set when this module loads.
The repository's own ``pyproject.toml`` must have no ``[tool.nbremind]`` table: tests run
from the repository, and would read it as the project file.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from nbremind.core.config import Config
from nbremind.settings.files import CONFIG_DIR_VAR, env_var

_REPO = Path(__file__).resolve().parent.parent

# processes started by session-wide fixtures (kernels) inherit these
os.environ[CONFIG_DIR_VAR] = tempfile.mkdtemp(prefix="nbremind-config-")
for _name in Config.FIELDS:
    os.environ.pop(env_var(_name), None)


def settings_variables() -> list[str]:
    """Every ``NBREMIND_*`` variable that sets a setting."""
    return [env_var(name) for name in Config.FIELDS]


@pytest.fixture(autouse=True)
def isolated_settings(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """An empty user settings folder and no settings variables, for one test."""
    folder = tmp_path_factory.mktemp("user-config")
    monkeypatch.setenv(CONFIG_DIR_VAR, str(folder))
    for name in settings_variables():
        monkeypatch.delenv(name, raising=False)
    yield folder


@pytest.fixture(autouse=True, scope="session")
def _repository_has_no_settings() -> None:
    with (_REPO / "pyproject.toml").open("rb") as handle:
        tool = tomllib.load(handle).get("tool", {})
    if "nbremind" in tool:
        pytest.fail(
            "the repository's pyproject.toml must not have a [tool.nbremind] table: "
            "every test run from the repository would read it"
        )
    assert not (_REPO / "nbremind.toml").exists(), "the repository must not have nbremind.toml"


def isolation_settings() -> set[str]:
    """Settings that other isolation fixtures set through their ``NBREMIND_*`` variable
    (``data_dir``, by ``_isolation``): tests of the settings loader leave them out of their
    comparisons."""
    from _isolation import DATA_DIR

    return {name for name in Config.FIELDS if env_var(name) == DATA_DIR}


def without_isolation(value: Config | dict[str, str]) -> Any:
    """``value`` (a config or a sources map) without what :func:`isolation_settings` set."""
    keys = isolation_settings()
    if isinstance(value, Config):
        defaults = Config()
        return value.replace(**{k: getattr(defaults, k) for k in keys})
    return {k: v for k, v in value.items() if k not in keys}

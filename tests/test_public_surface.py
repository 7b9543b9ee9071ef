"""The public surface is pinned: the names ``nbremind`` exports, the public modules and what
they export, and the layout rules that keep the layers apart."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

import nbremind

PUBLIC = [
    "Config",
    "Session",
    "Task",
    "TaskMemoryLimit",
    "TaskState",
    "TaskTimeout",
    "__version__",
    "configure",
    "current_task",
    "get_session",
    "history",
    "load_ipython_extension",
    "panel",
    "remind",
    "track",
    "unload_ipython_extension",
]

#: Public modules, and the names each must keep.
MODULES = {
    "nbremind.pandas": [],
    "nbremind.testing": ["CapturedNotices", "FakeClock", "capture_notices"],
    "nbremind.secrets": [
        "MASK",
        "MIN_LENGTH",
        "RedactingFilter",
        "Secret",
        "redact",
        "register",
        "reveal",
    ],
    "nbremind.watchdog": ["main"],
    "nbremind.cli": ["main"],
    "nbremind.__main__": [],
}


def test_nbremind_exports_exactly_its_public_names() -> None:
    assert sorted(nbremind.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(nbremind, name), name


@pytest.mark.parametrize("module", sorted(MODULES))
def test_public_modules_keep_their_paths_and_names(module: str) -> None:
    imported = importlib.import_module(module) if module != "nbremind.__main__" else None
    if imported is None:  # running it would start the command; finding it is enough
        assert importlib.util.find_spec(module) is not None
        return
    for name in MODULES[module]:
        assert hasattr(imported, name), f"{module}.{name}"


def test_the_secrets_module_is_the_core_one() -> None:
    from nbremind import secrets
    from nbremind.core import secrets as core

    assert secrets.Secret is core.Secret and secrets.redact is core.redact


def test_the_built_in_channel_names_match_the_registry() -> None:
    from nbremind.channels import CHANNELS
    from nbremind.core.channel_names import BUILT_IN

    assert tuple(sorted(CHANNELS)) == BUILT_IN

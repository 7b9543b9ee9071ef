"""Skip a test whose component is missing, unless NBREMIND_REQUIRE_ALL=1 makes that a failure."""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = os.environ.get("NBREMIND_REQUIRE_ALL", "") not in ("", "0", "false", "no")


def missing(reason: str) -> None:
    """Skip with ``reason``; under NBREMIND_REQUIRE_ALL=1 fail with it instead."""
    if REQUIRE_ALL:
        pytest.fail(f"required component missing (NBREMIND_REQUIRE_ALL=1): {reason}")
    pytest.skip(reason)

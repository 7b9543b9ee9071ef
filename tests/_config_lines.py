"""Reading ``%remind config``'s aligned ``key = value  (source)`` lines in tests."""

from __future__ import annotations

import re

_LINE = re.compile(r"^(\S+)\s*= (.*?)\s+\((.*)\)$")


def setting(lines: list[str], key: str) -> tuple[str, str]:
    """``(value, source)`` of ``key``; fails when no line shows it."""
    for line in lines:
        found = _LINE.match(line)
        if found and found.group(1) == key:
            return found.group(2), found.group(3)
    raise AssertionError(f"no {key} line in {lines}")

"""Text people chose, made safe to print on one line."""

from __future__ import annotations

import re

__all__ = ["printable"]

#: Characters that must not reach a terminal raw: C0 and C1 controls (ESC, NUL, BEL, CR, LF,
#: CSI...), DEL, line and paragraph separators, and the bidirectional overrides and isolates
#: (they reorder what follows them on screen).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    code = ord(char)
    return _NAMED_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: str) -> str:
    """``text`` with every control character written as its escape (``\\x1b``, ``\\n``), so
    names and messages people chose print as one harmless line."""
    return _UNPRINTABLE.sub(_escape, text)

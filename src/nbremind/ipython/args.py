"""Parsing of ``%%remind`` header lines into a task name and options (no IPython needed)."""

from __future__ import annotations

import argparse
import functools
import inspect
import re
import shlex
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..core.options import (
    MAGIC_OPTIONS,
    TaskOptions,
    add_flags,
    flag_values,
    parse_call_options,
    usage,
)
from ..core.parse import read_dash_values

__all__ = [
    "MAGIC",
    "USAGE",
    "CellHeader",
    "default_name",
    "parse_header",
    "split_header",
    "with_usage",
]

MAGIC = "%%remind"
#: The usage line of ``%%remind``.
USAGE = f"{MAGIC} [NAME] {usage(MAGIC_OPTIONS)}"
_NAME_CHARS = 40
F = TypeVar("F", bound=Callable[..., Any])


def with_usage(function: F) -> F:
    """``function`` with :data:`USAGE` put above its docstring (what ``%%remind?`` shows)."""
    kept = re.sub(r"\[[^]]*\]", lambda m: m.group(0).replace(" ", "\xa0"), USAGE)
    lines = textwrap.fill(kept, 90, break_long_words=False).replace("\xa0", " ")
    function.__doc__ = f"{lines}\n\n{inspect.cleandoc(function.__doc__ or '')}"
    return function


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(f"%%remind: {message}")


@functools.lru_cache(maxsize=1)
def _parser() -> _Parser:
    p = _Parser(prog="%%remind", add_help=False)
    read_dash_values(p)
    p.add_argument("name", nargs="*")
    add_flags(p, MAGIC_OPTIONS)
    return p


@dataclass(frozen=True)
class CellHeader:
    """A parsed ``%%remind`` line: the task name (``None``: from the body) and its options."""

    name: str | None
    options: TaskOptions


def split_header(cell: str) -> tuple[str, str] | None:
    """``(options line, body)`` when ``cell`` starts with ``%%remind``, else ``None``."""
    stripped = cell.lstrip("\n")
    first, _, body = stripped.partition("\n")
    if first != MAGIC and not first.startswith((MAGIC + " ", MAGIC + "\t")):
        return None
    return first[len(MAGIC) :].strip(), body


@functools.lru_cache(maxsize=64)  # each cell's header is parsed by the transformer and hook
def parse_header(line: str) -> CellHeader:
    """Parse the options after ``%%remind``; a bad one raises ``ValueError`` naming it."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise ValueError(f"%%remind: cannot read {line!r}: {exc}") from None
    ns = _parser().parse_args(words)
    options = parse_call_options(MAGIC, flags=True, **flag_values(ns, MAGIC_OPTIONS))
    name = " ".join(ns.name) or None
    return CellHeader(name, options)


def default_name(body: str) -> str:
    """The first meaningful line of a cell (no blanks, comments, magics or imports), shortened."""
    lines = [raw.strip() for raw in body.splitlines()]
    code = [line for line in lines if line and not line.startswith(("#", "%"))]
    chosen = next((c for c in code if not c.startswith(("import ", "from "))), None)
    if chosen is None:
        chosen = code[0] if code else "cell"
    return chosen if len(chosen) <= _NAME_CHARS else chosen[: _NAME_CHARS - 1] + "…"

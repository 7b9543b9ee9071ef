"""Parsing of ``%%remind`` header lines into a task name and options (no IPython needed)."""

from __future__ import annotations

import argparse
import functools
import shlex
from dataclasses import dataclass

from ..core.options import OPTIONS, TaskOptions, parse_call_options
from ..core.parse import read_dash_values

__all__ = ["MAGIC", "CellHeader", "default_name", "parse_header", "split_header"]

MAGIC = "%%remind"
_NAME_CHARS = 40


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(f"%%remind: {message}")


@functools.lru_cache(maxsize=1)
def _parser() -> _Parser:
    p = _Parser(prog="%%remind", add_help=False)
    read_dash_values(p)
    p.add_argument("name", nargs="*")
    for spec in OPTIONS:
        p.add_argument(spec.flag, dest=spec.name, metavar=spec.metavar)
    p.add_argument("--interrupt", action="store_true")
    p.add_argument("--quiet", action="store_true")
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
    return first[len(MAGIC):].strip(), body


@functools.lru_cache(maxsize=64)  # each cell's header is parsed by the transformer and hook
def parse_header(line: str) -> CellHeader:
    """Parse the options after ``%%remind``; a bad one raises ``ValueError`` naming it."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise ValueError(f"%%remind: cannot read {line!r}: {exc}") from None
    ns = _parser().parse_args(words)
    options = parse_call_options(
        MAGIC, flags=True, interrupt=ns.interrupt, quiet=ns.quiet,
        **{spec.name: getattr(ns, spec.name) for spec in OPTIONS},
    )
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

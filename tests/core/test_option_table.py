"""Every front end takes exactly the task options of the one table in ``core.options``."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from typing import Any

from nbremind import remind, track
from nbremind.cli import _parser as command_parser
from nbremind.core.options import (
    CALL_OPTIONS,
    COMMAND_OPTIONS,
    MAGIC_OPTIONS,
    OPTIONS,
    TASK_OPTIONS,
    TaskOptions,
)
from nbremind.ipython.args import USAGE
from nbremind.ipython.args import _parser as magic_parser

TASK_NAMES = {spec.name for spec in TASK_OPTIONS}


def _keywords(function: Callable[..., Any]) -> list[str]:
    """The parameters of ``function`` that can be passed by keyword, in order."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(function).parameters.values() if p.kind in kinds]


def _flags(parser: argparse.ArgumentParser, besides: set[str]) -> list[tuple[str, str, bool]]:
    """``(keyword, flag, takes a value)`` of the parser's options but ``besides``, in order."""
    return [
        (a.dest, a.option_strings[0], a.nargs != 0)
        for a in parser._actions
        if a.option_strings and a.dest not in besides
    ]


def _table_flags(specs: tuple[Any, ...]) -> list[tuple[str, str, bool]]:
    return [(spec.name, spec.flag, bool(spec.metavar)) for spec in specs]


def test_the_table_names_every_field_of_a_tasks_options_once() -> None:
    names = [spec.name for spec in TASK_OPTIONS]
    assert len(names) == len(set(names))
    assert names == list(TaskOptions.FIELDS)
    assert [spec.name for spec in OPTIONS] == [s.name for s in TASK_OPTIONS if s.parse]
    assert all(spec.metavar for spec in OPTIONS)


def test_remind_takes_the_call_options_of_the_table_in_its_order() -> None:
    keywords = _keywords(remind)
    assert [k for k in keywords if k in TASK_NAMES] == list(CALL_OPTIONS)
    assert [k for k in keywords if k not in TASK_NAMES] == ["total", "session", "watchdog", "jobs"]


def test_track_takes_the_call_options_of_the_table_in_its_order() -> None:
    keywords = _keywords(track)
    assert [k for k in keywords if k in TASK_NAMES] == list(CALL_OPTIONS)
    assert [k for k in keywords if k not in TASK_NAMES] == ["iterable", "name", "total", "session"]


def test_the_remind_cell_takes_the_magic_options_of_the_table() -> None:
    assert _flags(magic_parser(), {"name"}) == _table_flags(MAGIC_OPTIONS)
    for spec in MAGIC_OPTIONS:
        assert (f"[{spec.flag} {spec.metavar}]" if spec.metavar else f"[{spec.flag}]") in USAGE


def test_nbremind_run_takes_the_command_options_of_the_table() -> None:
    (sub,) = [a for a in command_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    run = sub.choices["run"]
    assert _flags(run, {"help", "name", "job", "attempt"}) == _table_flags(COMMAND_OPTIONS)
    assert all(a.help for a in run._actions if a.dest in {s.name for s in COMMAND_OPTIONS})


def test_pandas_calls_pass_on_the_call_options_and_only_remind_keywords() -> None:
    from nbremind.pandas import OPTIONS as PANDAS_OPTIONS

    assert {"name", "session", *CALL_OPTIONS} == PANDAS_OPTIONS
    assert PANDAS_OPTIONS - {"name"} <= set(_keywords(remind))

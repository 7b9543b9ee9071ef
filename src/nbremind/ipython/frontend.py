"""The IPython front end: ``%%remind`` as an input transformer plus run-cell hooks.

The ``%%remind`` line is removed before IPython compiles the cell, so the body runs exactly
like a plain cell (display, ``await``, other cell magics, tracebacks, error replies); the
``pre_run_cell`` / ``post_run_cell`` hooks start and end the cell's task, and show its live
status line (unless ``--quiet``), which the cell's end leaves as its final text.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any

from ..core.log import logger
from ..core.options import TaskOptions
from ..core.task import Task
from ..runtime.batch import BatchWatch
from ..runtime.input_wait import Wrapped, unwrap_input, wrap_input
from ..runtime.session import Session
from .args import default_name, parse_header, split_header

__all__ = ["CellFrontend", "code_key", "notebook_name", "notebook_path", "strip_remind_line"]

log = logger()


def strip_remind_line(lines: list[str]) -> list[str]:
    """Input transformer: drop a leading ``%%remind ...`` line (pure; IPython may call it often).

    The line becomes a comment (``# %%remind train``), so a traceback's line numbers match
    the cell and its line 1 reads as typed, unless another cell magic follows, which must
    stay first. Bad options become a ``raise``.
    """
    if not lines or not lines[0].startswith("%%remind"):
        return lines
    split = split_header("".join(lines))
    if split is None:
        return lines
    try:
        parse_header(split[0])
    except ValueError as exc:  # shown like a magic's usage error; the cell does not run
        return [f'raise __import__("IPython.core.error").core.error.UsageError({str(exc)!r})\n']
    rest = lines[1:]
    if rest and rest[0].lstrip().startswith("%%"):
        return rest
    return [f"# {lines[0].rstrip()}\n", *rest]


class CellFrontend:
    """Everything ``%load_ext nbremind`` adds to one shell; ``unregister`` removes it all."""

    def __init__(self, shell: Any, session: Session) -> None:
        self.shell = shell
        self.session = session
        self.auto: float | None = None
        self._stack: list[tuple[Task, Any, Any] | None] = []
        #: The batches of cells (``%remind batch``), ended by the session's tick.
        self.batch = BatchWatch(session)
        self._in_batch: list[bool] = []
        #: What each running cell's ``input`` / ``getpass`` wrappers replaced.
        self._inputs: list[Wrapped | None] = []

    # -- registration -----------------------------------------------------------------------
    def register(self) -> None:
        cleanup = self.shell.input_transformers_cleanup
        if strip_remind_line not in cleanup:
            cleanup.append(strip_remind_line)
        self.shell.events.register("pre_run_cell", self.pre_run_cell)
        self.shell.events.register("post_run_cell", self.post_run_cell)
        if self.batch.tick not in self.session.tick_hooks:
            self.session.tick_hooks.append(self.batch.tick)
        self.session.source = notebook_name(self.shell) or self.session.source

    def unregister(self) -> None:
        cleanup = self.shell.input_transformers_cleanup
        while strip_remind_line in cleanup:
            cleanup.remove(strip_remind_line)
        for event, fn in (
            ("pre_run_cell", self.pre_run_cell),
            ("post_run_cell", self.post_run_cell),
        ):
            with contextlib.suppress(ValueError):
                self.shell.events.unregister(event, fn)
        self.auto = None
        with contextlib.suppress(ValueError):
            self.session.tick_hooks.remove(self.batch.tick)
        self.batch.stop()

    # -- hooks ------------------------------------------------------------------------------
    def pre_run_cell(self, info: Any) -> None:
        """Start the cell's task when it has a ``%%remind`` header (or auto mode is on)."""
        task = None
        batches = len(self._in_batch)
        self._inputs.append(self._wrap_input())
        try:
            cell_id = getattr(info, "cell_id", None)
            self.session.origin = (
                notebook_path(self.shell) or None,
                cell_id if isinstance(cell_id, str) and cell_id else None,
            )
            raw = getattr(info, "raw_cell", "") or ""
            self._batch_start(raw)
            task = self._task_for(raw)
        except Exception:  # never break the user's cell
            log.debug("could not start the cell's task", exc_info=True)
            task = None
            if len(self._in_batch) == batches:
                self._in_batch.append(False)
        if task is None:
            self._stack.append(None)
            return
        token = self.session.start(task)
        self.session.fallback_parent = task
        line = None
        if task.kind == "cell" and not task.options.quiet:
            line = show_status_line(self.shell, self.session, task)
        self._stack.append((task, token, line))

    def post_run_cell(self, result: Any) -> None:
        """End the cell's task, and any ``track()`` loop it left pending, with its outcome."""
        exc = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if self._inputs:
            with contextlib.suppress(Exception):  # ipykernel restores its own after the cell
                unwrap_input(self._inputs.pop())
        self.session.origin = None
        self.session.settle_pending(exc)
        if not self._stack:
            self._batch_end(exc, result)
            return
        entry = self._stack.pop()
        if entry is None:
            self._batch_end(exc, result)
            return
        task, token, line = entry
        self.session.finish(task, exc, token)
        self._batch_end(exc, result)
        end_status_line(line)
        if task.interrupted_by_timeout and task.state.value == "timed_out":
            limit = task.options.timeout or 0
            print(f"nbremind: interrupted {task.name!r} at its {limit:g} s timeout")
        if self.session.fallback_parent is task:
            self.session.fallback_parent = task.parent
        refresh_soon(self.session)

    def _wrap_input(self) -> Wrapped | None:
        """Wrap the ``input`` / ``getpass`` ipykernel put in place for this cell, so a wait
        for an answer notifies (see :mod:`nbremind.runtime.input_wait`)."""
        try:
            return wrap_input(self.session.input_watch)
        except Exception:
            log.debug("could not follow input() in the cell", exc_info=True)
            return None

    def _batch_start(self, raw: str) -> None:
        """Count the cell in the open batch (or open one) when batch mode is on."""
        minimum = self.session.config.batch
        counted = minimum is not None and not raw.lstrip().startswith("%remind")
        self._in_batch.append(counted)
        if counted and minimum is not None:
            self.batch.cell_started(minimum)

    def _batch_end(self, exc: BaseException | None, result: Any) -> None:
        """Tell the batch the cell ended (after the cell's own task, whose notice comes
        first); never breaks the cell."""
        try:
            if self._in_batch and self._in_batch.pop():
                self.batch.cell_ended(exc, getattr(result, "execution_count", None))
        except Exception:
            log.debug("could not follow the cell's batch", exc_info=True)

    def _task_for(self, raw: str) -> Task | None:
        split = split_header(raw)
        if split is not None:
            header = parse_header(split[0])
            body = split[1]
            task = self.session.new_task(
                header.name or default_name(body), options=header.options, kind="cell"
            )
            if not header.name:  # the same work is the same code (its options aside)
                task.usual_key = code_key(body)
            return task
        if self.auto is not None and not raw.lstrip().startswith("%remind"):
            options = TaskOptions(min_duration=self.auto)
            task = self.session.new_task(default_name(raw), options=options, kind="auto")
            task.usual_key = code_key(raw)
            return task
        return None


def code_key(body: str) -> str:
    """What identifies an unnamed cell's earlier runs in the history: its code (stripped),
    ``"code:"`` and its SHA-256, the same whether it ran as ``%%remind`` or in auto mode."""
    return "code:" + hashlib.sha256(body.strip().encode("utf-8", "surrogatepass")).hexdigest()


def show_status_line(shell: Any, session: Session, task: Task) -> Any:
    """Show ``task``'s live status line under the running cell; never breaks the cell.

    Returns the :class:`~nbremind.ipython.status_line.StatusLine`, or ``None``."""
    try:
        from .status_line import show_status_line as show

        return show(shell, session, task)
    except Exception:
        log.debug("could not show the status line of %r", task.name, exc_info=True)
        return None


def end_status_line(line: Any) -> None:
    """Leave a status line (from :func:`show_status_line`) as its final text in the output."""
    if line is None:
        return
    try:
        line.leave_final_state()
    except Exception:
        log.debug("could not leave the final status line", exc_info=True)


def refresh_soon(session: Session) -> None:
    """Let a live panel show a task that just ended without waiting for the next pass (a
    status line leaves its final text itself)."""
    import sys

    panel = sys.modules.get(f"{__package__}.panel")  # loaded only once a panel was shown
    if panel is not None and panel.panel_of(session) is not None:
        panel.live_refresh(session).kick()


def notebook_path(shell: Any) -> str:
    """The notebook's path as the front end tells it (VS Code's file, the Jupyter server's
    ``JPY_SESSION_NAME``), else ``""``."""
    ns = getattr(shell, "user_ns", {}) or {}
    for value in (
        ns.get("__vsc_ipynb_file__"),
        os.environ.get("JPY_SESSION_NAME"),
        ns.get("__session__"),
    ):
        if isinstance(value, str) and value:
            return value
    return ""


def notebook_name(shell: Any) -> str:
    """The notebook's file name when the front end tells it, else ``""``."""
    return os.path.basename(notebook_path(shell))

"""``%remind`` (line) and ``%%remind`` (cell) magics: parse, then hand off to the session."""

from __future__ import annotations

import contextlib
import shlex
import sys
import uuid
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ..core.browser_views import get_connection
from ..core.channel_names import DEFAULT_CANDIDATES
from ..core.options import MIN_TASK_DURATION
from ..core.parse import parse_count, parse_duration, printable
from ..runtime.session import Session
from .args import default_name, parse_header, with_usage
from .frontend import CellFrontend, end_status_line, refresh_soon, show_status_line

__all__ = ["CONFIRMED", "SENT_WAITING", "RemindMagics"]

#: What ``%remind test browser`` says once the page has the notice, until the page answers
#: (Jupyter hands the page's answer to the kernel only after the running cell ends; the line
#: is then replaced by ``CONFIRMED`` or ``not shown: why``).
SENT_WAITING = "sent to the page, waiting for it to confirm (it answers once this cell ends)"
#: What it says once the page confirmed it raised the notification.
CONFIRMED = "delivered (the page showed the notification)"

_SUBCOMMANDS = "auto DUR|off, panel, status, test [CHANNEL...], mute, unmute, config"
_SUBCOMMANDS += ", history [N] [--all]"
_SUBCOMMANDS += ", doctor"
_SUBCOMMANDS += ", batch [DUR]|off"
_PERMISSION = {
    "granted": "granted",
    "default": "not asked yet (use the panel's button)",
    "denied": "blocked in the browser's site settings",
    "unsupported": "this browser has no notifications",
}


@magics_class
class RemindMagics(Magics):
    """Implements ``%remind SUBCOMMAND`` and the ``%%remind`` fallback."""

    def __init__(self, shell: Any, frontend: CellFrontend) -> None:
        super().__init__(shell)
        self.frontend = frontend

    @property
    def session(self) -> Session:
        return self.frontend.session

    @line_magic
    def remind(self, line: str) -> None:
        """%remind auto DUR|off | panel | status | test [CHANNEL...] | mute | unmute | config"""
        try:
            words = shlex.split(line)
        except ValueError as exc:  # an unclosed quote, a lone backslash
            raise UsageError(f"%remind: cannot read {line!r}: {exc}") from None
        if not words:
            raise UsageError(f"%remind: choose one of: {_SUBCOMMANDS}")
        command, args = words[0], words[1:]
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            raise UsageError(
                f"%remind: {command!r} is not a command; choose one of: {_SUBCOMMANDS}"
            )
        handler(args)

    @cell_magic("remind")  # type: ignore[arg-type]
    @with_usage
    def remind_cell(self, line: str, cell: str) -> Any:
        """Follow this cell as a task and notify when it ends or crosses a threshold."""
        # Reached only when called directly (run_cell_magic); cells typed with %%remind
        # are handled by the input transformer and never get here.
        try:
            header = parse_header(line)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        task = self.session.new_task(
            header.name or default_name(cell), options=header.options, kind="cell"
        )
        token = self.session.start(task)
        status = None if header.options.quiet else show_status_line(self.shell, self.session, task)
        result = self.shell.run_cell(cell, store_history=False)  # type: ignore[union-attr]
        self.session.finish(task, result.error_in_exec or result.error_before_exec, token)
        end_status_line(status)
        refresh_soon(self.session)
        return None

    # -- subcommands ------------------------------------------------------------------------
    def _cmd_auto(self, args: list[str]) -> None:
        if len(args) != 1:
            raise UsageError("%remind auto: give a duration (e.g. 60s) or off")
        if args[0] == "off":
            self.frontend.auto = None
            print("nbremind: auto mode off")
            return
        try:
            self.frontend.auto = parse_duration(args[0], "%remind auto", minimum=MIN_TASK_DURATION)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        print(f"nbremind: notifying for every cell that runs longer than {printable(args[0])}")

    def _cmd_batch(self, args: list[str]) -> None:
        """One notice when the cells queued together (Run All) have run, if they took
        longer than DUR (default 60 s); ``off``: no more."""
        if len(args) > 1:
            raise UsageError("%remind batch: give a duration (e.g. 60s, 0 for always) or off")
        value = args[0] if args else "60s"
        try:
            config = self.session.configure("%remind batch", batch=value)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if config.batch is None:
            self.frontend.batch.stop()
            print("nbremind: batch mode off")
            return
        print(
            "nbremind: one notice when the cells run together have all run"
            + (f", if they took longer than {printable(value)}" if config.batch else "")
        )

    def _cmd_panel(self, args: list[str]) -> None:
        from .panel import show_panel

        show_panel(self.session)

    def _cmd_status(self, args: list[str]) -> None:
        session = self.session
        print("nbremind status")
        chosen = session.config.channels
        names = chosen or DEFAULT_CANDIDATES
        for name, state in session.channel_status(names, refresh=bool(args)).items():
            print(printable(f"  channel {name}: {state}"))
        for note in session.channel_notes():
            print(printable(f"  {note}"))
        if "desktop" in names:  # Windows and macOS: what the platform says of toasts
            from ..doctor.desktop import status_lines

            for line in status_lines():
                print(printable(f"  {line}"))
        if not chosen:
            print(printable(f"  default channels: {self._default_channels()}"))
        if "browser" in names:
            from ..core.browser_views import get_connection

            for permission in get_connection().permissions():
                print(
                    f"  browser notification permission: {_PERMISSION.get(permission, permission)}"
                )
            answer = get_connection().last_answer()
            if answer is not None:
                print(printable(f"  last browser notification: {answer}"))
        auto = self.frontend.auto
        print(f"  auto mode: {'off' if auto is None else f'cells longer than {auto:g} s'}")
        print(f"  batch mode: {_batch_status(session.config.batch)}")
        print(f"  muted: {'yes' if session.config.muted else 'no'}")
        scope = session.readings.memory_scope()  # the limit the ticks judge mem_limit by
        print(printable(f"  memory limit: {scope.describe()} — mem_limit percents are of it"))
        print(printable(f"  GPU: {self._gpu_status()}"))
        if "distributed" in sys.modules:  # (imported by the user's code, never by nbremind)
            from ..integrations.dask_span import status_lines

            for line in status_lines():
                print(printable(line))
        running = session.running()
        print(f"  running tasks: {len(running)}")
        for task in running:
            print(
                printable(f"    {task.name}: {task.n}/{task.total or '?'} for {task.elapsed:.0f} s")
            )
        failed = [d for d in session.dispatcher.deliveries if not d.ok]
        if failed:
            last = failed[-1]
            print(printable(f"  last failed delivery: {last.channel}: {last.error}"))

    def _default_channels(self) -> str:
        """Which channels notices without their own go to now, and why (asked on the loop,
        without waiting for a front end: this thread is the one that would receive it)."""
        import concurrent.futures

        session = self.session
        future = session.ticker.submit(session.dispatcher.default_channels(wait=False))
        try:
            return str(future.result(timeout=session.config.send_timeout + 5))
        except concurrent.futures.TimeoutError:
            return "not known yet (the channels did not answer in time)"

    def _gpu_status(self) -> str:
        """What ``--gpu-mem`` and GPU-idle stalls can do here: the GPUs this process uses, or
        why none is read (asked on the loop thread, whose sampler the ticks read)."""
        import concurrent.futures

        from ..runtime.gpu import GpuSampler

        session = self.session
        readings = session.readings

        async def describe() -> str:
            sampler = readings.gpu_sampler
            if sampler is None:
                sampler = readings.gpu_sampler = GpuSampler()
            return sampler.describe(session.clock.monotonic())

        future = session.ticker.submit(describe())
        try:
            return future.result(timeout=5)
        except concurrent.futures.TimeoutError:
            return "not known yet (NVML did not answer in time)"

    def _cmd_test(self, args: list[str]) -> None:
        notice_id = f"nbremind-test:{uuid.uuid4().hex}"
        try:
            results = self.session.test(args or None, notice_id=notice_id)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        for name, outcome in results.items():
            if name == "browser" and outcome == "delivered":  # not until the page confirms
                show_page_answer(notice_id)
            else:
                print(printable(f"{name}: {outcome}"))
        if not results:
            print("no channel answered in time")

    def _cmd_mute(self, args: list[str]) -> None:
        self.session.configure("%remind mute", muted=True)
        print("nbremind: muted (tasks are still followed)")

    def _cmd_unmute(self, args: list[str]) -> None:
        self.session.configure("%remind unmute", muted=False)
        print("nbremind: notifications on")

    def _cmd_history(self, args: list[str]) -> None:
        """The N most recent top-level runs (default 20) of every process, newest first,
        with the number of runs nested in each; ``--all``: every run."""
        from ..api.history import history_rows
        from ..api.history_format import table_lines

        hint = "give the number of runs to show, e.g. 20 (0: all), and --all for nested runs"
        nested = "--all" in args
        args = [arg for arg in args if arg != "--all"]
        if len(args) > 1:
            raise UsageError(f"%remind history: {hint}")
        try:
            limit = parse_count(args[0], "%remind history") if args else 20
        except ValueError as exc:
            raise UsageError(f"{exc}; {hint}") from None
        self.session.history_recorder.sync()  # this kernel's last runs are written first
        rows = history_rows(limit=limit or None, nested=nested, config=self.session.config)
        lines = table_lines(rows)
        if not lines:
            print(
                "nbremind: no runs recorded yet (history is kept when outbox and "
                "history_keep are on)"
            )
        for line in lines:
            print(line)

    def _cmd_doctor(self, args: list[str]) -> None:
        """What works here and why (``nbremind doctor``, with this kernel's settings)."""
        from ..doctor import collect

        if args:
            raise UsageError("%remind doctor: takes no arguments")
        session = self.session
        live = session.settings  # the files this kernel's settings came from, as %remind config
        report = collect(
            in_kernel=True,
            config=session.config,
            sources=session.config_sources,
            loaded=None if live is None else live.loaded,
        )
        print("\n".join(printable(line) for line in report.lines()))

    def _cmd_config(self, args: list[str]) -> None:
        from ..settings.live import describe  # every value with its source, secrets as ***

        for line in describe(self.session):
            print(printable(line))


def _batch_status(minimum: float | None) -> str:
    """How ``%remind status`` tells the batch setting: ``off``, ``on (batches longer than
    60 s)``, ``on (every batch)``."""
    if minimum is None:
        return "off"
    return f"on (batches longer than {minimum:g} s)" if minimum else "on (every batch)"


def show_page_answer(notice_id: str) -> None:
    """Show ``browser: SENT_WAITING`` as a line that becomes ``browser: CONFIRMED`` or
    ``browser: not shown: why`` when the page answers notice ``notice_id``."""
    from IPython.display import display, update_display

    display_id = f"nbremind-test-{uuid.uuid4().hex}"
    display(
        {"text/plain": f"browser: {SENT_WAITING}"},
        raw=True,  # type: ignore[no-untyped-call]
        display_id=display_id,
    )

    def answered(why: str | None) -> None:
        text = f"browser: {CONFIRMED}" if why is None else f"browser: not shown: {why}"
        with contextlib.suppress(Exception):  # the kernel is going away
            update_display(
                {"text/plain": printable(text)},
                raw=True,  # type: ignore[no-untyped-call]
                display_id=display_id,
            )

    get_connection().when_answered(notice_id, answered)

"""``remind()``: a task as a context manager (sync or async) or a decorator; and
``current_task()``, the task the calling code runs in."""

from __future__ import annotations

import contextvars
import functools
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar, cast, overload

from ..core.log import log_exception
from ..core.options import NO_OPTIONS, TaskOptions, call_options, check_total
from ..core.sources import Attacher, attacher_for
from ..core.task import Task, TaskMemoryLimit, TaskTimeout
from ..runtime.input_wait import hold_input, release_input
from ..runtime.session import Session, get_session

__all__ = ["Reminder", "current_task", "remind"]

F = TypeVar("F", bound=Callable[..., Any])
_Token = contextvars.Token["Task | None"]
_Ending = Callable[["BaseException | None"], bool]
_Entry = tuple["Reminder", Task, _Token, "_Ending | None"]

#: The reminders entered and not yet left in this context (thread, asyncio task), innermost
#: last. One variable for every reminder: a variable per reminder would stay in the context
#: (as a key of its mapping) after its block, one more per block, for the context's life.
_entered: contextvars.ContextVar[tuple[_Entry, ...]] = contextvars.ContextVar(
    "nbremind_entered", default=()
)


class Reminder:
    """What ``remind()`` returns: use it with ``with``, ``async with`` or as a decorator."""

    def __init__(
        self,
        name: str | None,
        options: TaskOptions,
        total: int | None,
        session: Session | None,
        kind: str = "block",
        jobs: object = None,
    ) -> None:
        self.name = name
        self.options = options
        self.total = total
        self._session = session
        self._kind = kind
        #: The work elsewhere the block's task follows (``remind(..., jobs=...)``).
        self.jobs = jobs
        self._attach: Attacher | None = None if jobs is None else _attacher(jobs)
        #: Start the process's watchdog when this task starts (``remind(watchdog=True)``).
        self.watchdog = False
        #: The task this reminder started last: what ``__exit__`` ends when it runs in a
        #: context that did not enter it (an async generator finalised elsewhere).
        self._latest: Task | None = None

    @property
    def session(self) -> Session:
        return self._session or get_session()

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> Task:
        return self._begin(self.name or _caller_name())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self._end(exc)
        if (
            task is not None
            and task.interrupted_by_timeout
            and isinstance(exc, KeyboardInterrupt)
            and task.thread_id is not None
        ):
            # our own interrupt: the user sees a timeout, not a Ctrl-C they never pressed
            raise TaskTimeout(
                f"{task.name} passed its timeout of {task.options.timeout:g} s"
            ) from exc
        reason = task.stopped_by if task is not None else None
        if isinstance(reason, TaskMemoryLimit) and isinstance(exc, KeyboardInterrupt):
            # stopped at its memory limit where only a signal reached it: the same exception
            raise TaskMemoryLimit(str(reason), reason.used, reason.limit, reason.source) from exc

    async def __aenter__(self) -> Task:
        return self._begin(self.name or _caller_name())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def _begin(self, name: str) -> Task:
        session = self.session
        task = session.new_task(name, options=self.options, total=self.total, kind=self._kind)
        token = session.start(task)
        if task.parent is None:  # a terminal's input() notifies while top-level blocks run
            hold_input(session.input_watch)
        if self.watchdog:
            session.want_watchdog()
        ending: _Ending | None = None
        if self._attach is not None:
            try:
                ending = self._attach(self.jobs, task, session)
            except Exception:  # nbremind's trouble must not stop the user's code
                log_exception(f"following the jobs of {task.name!r} failed")
        # per context (thread, asyncio task), so one Reminder may be entered concurrently
        _entered.set((*_entered.get(), (self, task, token, ending)))
        self._latest = task
        return task

    def _end(self, exc: BaseException | None) -> Task | None:
        """End the task this context entered last with this reminder; never raises: the
        user's block ends as it would without nbremind."""
        stack = _entered.get()
        token: _Token | None = None
        ending: _Ending | None = None
        if stack and stack[-1][0] is self:
            _, task, token, ending = stack[-1]
            _entered.set(stack[:-1])
        else:
            for at in range(len(stack) - 2, -1, -1):  # left out of order
                if stack[at][0] is self:
                    _, task, token, ending = stack[at]
                    _entered.set(stack[:at] + stack[at + 1 :])
                    break
            else:
                latest = self._latest
                if latest is None or latest.done:
                    return latest
                task = latest
        if self._latest is task:
            self._latest = None  # keep no ended task (nor its metrics) alive
        try:
            if ending is not None and not _ends(ending, exc):
                self.session.leave(task, token)  # its jobs end it, later
            else:
                self.session.finish(task, exc, token)
            if task.parent is None:
                release_input()
        except Exception:
            log_exception(f"nbremind could not end the task {task.name!r}")
        return task

    # -- decorator -------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        import inspect

        if self.jobs is not None:
            raise TypeError(
                "remind(jobs=...) is for a with block, not a decorator: the jobs exist"
                " before the call, a decorated function runs later (maybe many times)"
            )

        name = self.name or getattr(fn, "__qualname__", None) or repr(fn)

        def make() -> Reminder:
            reminder = Reminder(name, self.options, self.total, self._session, "function")
            reminder.watchdog = self.watchdog
            return reminder

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with make():
                    async for item in fn(*args, **kwargs):
                        yield item

            return cast(F, async_gen_wrapper)

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                with make():
                    return (yield from fn(*args, **kwargs))

            return cast(F, gen_wrapper)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with make():
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with make():
                return fn(*args, **kwargs)

        return cast(F, wrapper)


@overload
def remind(name: F, /) -> F: ...


@overload
def remind(
    name: str | None = None,
    /,
    *,
    total: int | None = None,
    after: object = None,
    every: object = None,
    progress: object = None,
    mem: object = None,
    mem_limit: object = None,
    gpu_mem: object = None,
    stall: object = None,
    slower: object = None,
    timeout: object = None,
    interrupt: bool = False,
    on: object = None,
    channels: object = None,
    min_duration: object = None,
    when: Callable[[Task], object] | None = None,
    session: Session | None = None,
    watchdog: bool = False,
    jobs: object = None,
) -> Reminder: ...


def remind(
    name: Any = None,
    /,
    *,
    total: int | None = None,
    after: object = None,
    every: object = None,
    progress: object = None,
    mem: object = None,
    mem_limit: object = None,
    gpu_mem: object = None,
    stall: object = None,
    slower: object = None,
    timeout: object = None,
    interrupt: bool = False,
    on: object = None,
    channels: object = None,
    min_duration: object = None,
    when: Callable[[Task], object] | None = None,
    session: Session | None = None,
    watchdog: bool = False,
    jobs: object = None,
) -> Any:
    """Follow a block or function as a task and notify when it ends or crosses a threshold.

    ``with remind("etl", total=n, after="10m") as task: ...``, ``async with remind(...)``,
    ``@remind("nightly")`` or bare ``@remind``. Options (all optional):

    * ``after`` / ``every`` -- notify once after DUR still running, then every DUR;
    * ``progress`` -- marks such as ``0.5``, ``"50%"`` or ``[0.25, 0.5]`` (needs ``total``);
    * ``mem`` -- notify when process memory goes above SIZE (``"8GB"``);
    * ``mem_limit`` -- stop the task with :class:`~nbremind.TaskMemoryLimit` before the OOM
      killer does, at SIZE or ``"90%"`` of the memory limit that applies (a container's, else
      the RAM);
    * ``gpu_mem`` -- notify when the GPU memory of this process's devices passes SIZE or P%;
    * ``stall`` -- notify when the progress has not moved for DUR (and when it moves again);
    * ``slower`` -- notify once it has run FACTOR (``True``: 1.5) times its usual duration
      (the median of its last 10 succeeded runs, once it has 3);
    * ``timeout`` (+ ``interrupt=True`` to stop the task) -- the task is ``timed_out`` after DUR;
    * ``when`` -- a predicate on the task, checked on each tick; notifies once when true;
    * ``on`` -- the events to notify (``[]`` for none); ``channels`` -- where to send;
    * ``min_duration`` -- no end notice for tasks shorter than DUR;
    * ``watchdog=True`` -- if this process is killed while the task runs, a small watcher
      process records it failed and notifies (always on in a Jupyter kernel);
    * ``jobs`` -- a list of submitit jobs the block's task follows: one unit per job (its
      ``total`` unless given), a job's failure, time-out or requeue told at once; a block
      whose body ends before its jobs leaves at once, and its task ends with the last job
      (failed if one failed; a script waits for them at exit). Not with the decorator form.

    A bad value raises ``ValueError`` naming the option and the value (``TypeError`` for
    ``jobs`` that are not a list of submitit jobs, and for ``jobs`` with the decorator).
    """
    if callable(name) and not isinstance(name, str):
        return Reminder(None, NO_OPTIONS, None, session)(name)
    if name is not None and not isinstance(name, str):
        raise ValueError(f"remind(): name {name!r} is not a string")
    given = (
        after,
        every,
        progress,
        mem,
        mem_limit,
        gpu_mem,
        stall,
        slower,
        timeout,
        interrupt,
        on,
        channels,
        min_duration,
        when,
    )
    options = call_options("remind()", session, *given)
    if total is not None:
        check_total(total, "remind()")
    if watchdog is not False and not isinstance(watchdog, bool):
        raise ValueError(f"remind(): watchdog {watchdog!r} is not True or False")
    reminder = Reminder(name, options, total, session, jobs=jobs)
    reminder.watchdog = watchdog
    return reminder


def current_task(session: Session | None = None) -> Task | None:
    """The innermost running task of the calling context, or ``None`` outside any.

    That is the ``track()`` loop, ``remind()`` block, decorated function or ``%%remind`` cell
    the calling code runs in: ``nbremind.current_task().advance()`` in a ``%%remind`` cell
    reports the cell's progress. ``session`` defaults to the process's session.
    """
    if session is not None and not isinstance(session, Session):
        raise ValueError(f"current_task(): session {session!r} is not a Session")
    return (session or get_session()).current()


def _attacher(jobs: object) -> Attacher:
    """The attacher of ``jobs``; ``TypeError`` naming their type when none knows them."""
    attach = attacher_for(jobs)
    if attach is None:
        raise TypeError(f"remind(jobs=...) takes a list of submitit jobs, not {_type_words(jobs)}")
    return attach


def _type_words(value: object) -> str:
    cls = type(value)
    if (cls is list or cls is tuple) and not value:
        return f"an empty {cls.__name__}"
    if cls is list or cls is tuple:
        inner = type(value[0]).__qualname__  # type: ignore[index]
        return f"a {cls.__name__} of {inner}"
    return cls.__qualname__


def _ends(ending: _Ending, exc: BaseException | None) -> bool:
    """Whether the block's end (``exc`` left it) ends its task; never raises."""
    try:
        return ending(exc)
    except Exception:
        log_exception("ending the jobs of a block failed")
        return True


def _caller_name() -> str:
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "task"
    filename = frame.f_code.co_filename
    base = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    if base.startswith("<"):
        return f"line {frame.f_lineno}"
    return f"{base}:{frame.f_lineno}"

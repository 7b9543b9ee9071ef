"""Ray work followed where it runs: ``track(object_refs)`` and, for Ray Tune, the callback
:class:`RemindCallback`.

``track(refs)``
---------------
``track()`` hands a list or tuple of ``ray.ObjectRef`` to :func:`follow`, which follows them
from the call on, whether or not they are iterated:

* a task of kind ``"ray"`` (named ``"ray: 200 refs"`` unless named), whose total is the
  number of refs, is started aside in the running task (:meth:`Session.start_aside
  <nbremind.Session.start_aside>`): it nests in the cell, block or function that called
  ``track()``, and the code after the call goes on at once;
* each ref advances it when its task finished; refs finished already at the call count at
  once;
* it ends **succeeded** when every ref finished, **failed** at the first ref whose task
  raised -- with the user's exception (``ValueError: bad 3``, not Ray's
  ``RayTaskError(ValueError)`` wrapper) and a note naming the ref and the count done
  (``ref 16310a0f0a45af5c… (bad) erred: 12 of 200 done``) -- or whose object is gone
  (``WorkerCrashedError``, ``ObjectLostError``...: Ray's words), **cancelled** at the first
  ref cancelled (``ray.cancel``).

Nested in a task with ``on=`` not given, the task notifies only the thresholds set on it
(``progress=``, ``after=``, ...), as a nested ``track()`` loop does: the enclosing cell or
block reports the end. At the top level it notifies its end as any task.

What :func:`follow` returns, :class:`FollowedRefs`, iterates the refs in the order they
complete (as a ``ray.wait`` loop does), so ``for ref in track(refs): ray.get(ref)`` reads
each result as soon as it is there; a ref is yielded once it was counted, so the task has
ended when the loop has.

How the refs are read
---------------------
A hook of the session's loop thread asks ``ray.wait(pending, num_returns=len(pending),
timeout=0, fetch_local=False)`` at each tick (0.25 s): it returns at once and moves no
object (about 0.4 µs per pending ref: 0.8 ms for 2,000). The refs it finds ready are read
on a worker thread, in that order (those ready at the call, on the calling thread): whether
a ready ref erred is told by its object's *metadata* (an error's is the number of its error
type), read without the object's data being deserialized or moved:

* ``ray.experimental.get_local_object_locations`` (the driver's own reference table, no
  RPC) tells where each object is: in the driver's memory (objects under 100 KB: every
  task's error but a huge one) or in the object store of which nodes (for a ref owned by
  another process, one a task returned, ``get_object_locations`` asks its owner);
* the metadata of those in the driver's memory or in this node's object store is read
  (Ray's core worker ``get_objects`` with no wait: a shared-memory object is mapped, not
  copied nor deserialized: about 3 µs per ref, under 1 ms for a 100 MB result whose
  ``ray.get`` takes 60 ms), and only an error is read further (``ray.get``, about 0.2 ms);
* an object only on another node, or spilled to disk, is not read (that would move it):
  it is counted done. An error that large (over 100 KB) is not seen there: the user's own
  ``ray.get`` raises it.

A thread iterating the refs polls too when no ref came for half a second (after the
task's end the loop thread may sleep).

Ray Tune
--------
``tune.RunConfig(callbacks=[RemindCallback()])``: the experiment is a task of kind
``"tune"``; see :class:`RemindCallback`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayTaskError, TaskCancelledError

from ..api.tracking import Tracked
from ..core.log import log_exception, logger
from ..core.notice import make_notice, metric_text
from ..core.options import NO_OPTIONS, TaskOptions
from ..core.task import Ended, Task, TaskError, type_name
from ..core.workers import Workers
from ..runtime.session import Session, get_session
from .followed import in_completion_order, start_followed

__all__ = [
    "ERROR_WAIT",
    "POLL_INTERVAL",
    "FollowedRefs",
    "RemindCallback",  # noqa: F822 (made on first use: see __getattr__)
    "follow",
    "read_errors",
]

#: Seconds between two polls of the pending refs (the loop thread's tick is 0.25 s).
POLL_INTERVAL = 0.25
#: Seconds the error of an erred ref is waited for (it is ready: read at once).
ERROR_WAIT = 5.0
#: Milliseconds the owner of a ref owned by another process is given to say where it is.
_OWNER_WAIT_MS = 2000
#: Characters of a ref's id shown in a note.
_REF_CHARS = 16
#: Characters of a trial's config shown in the notice of its failure.
_CONFIG_CHARS = 200

#: One thread (started on first use): the batches of ready refs are read in the order
#: they were found.
_workers = Workers(limit=1, name="nbremind-ray")


def follow(
    handles: Any,
    name: str | None,
    total: int | None,
    options: TaskOptions,
    session: Session | None,
) -> FollowedRefs | Tracked[Any]:
    """Follow Ray object refs (a list or tuple of them) as one task of kind ``"ray"``; see
    the module's documentation. Anything else of Ray's (an ``ObjectRefGenerator``, a list
    of actor handles...) is an ordinary ``track()`` loop."""
    if type(handles) not in (list, tuple) or not all(
        isinstance(item, ray.ObjectRef) for item in handles
    ):
        if name is None:
            name = type(handles).__name__
            with contextlib.suppress(TypeError):
                name = f"{name} of {len(handles)}"
        return Tracked(handles, name, total, options, session)
    refs = list(handles)
    count = len(refs)
    if name is None:
        name = f"ray: {count} ref{'' if count == 1 else 's'}"
    session = session or get_session()
    task = start_followed(session, name, count, total, options, "ray")
    followed = FollowedRefs(refs, task, session)
    followed.start()
    return followed


class FollowedRefs:
    """What ``track(refs)`` returns: the refs are followed from the call on; iterating
    yields them as they complete. ``len()`` is the total, :attr:`task` the task."""

    def __init__(self, refs: Sequence[Any], task: Task, session: Session) -> None:
        #: The refs handed to ``track()``.
        self.refs = list(refs)
        #: The task following the refs (kind ``"ray"``), started at the call.
        self.task = task
        self._session = session
        self._times: dict[Any, int] = {}  # a ref given twice is waited for once
        for ref in self.refs:
            self._times[ref] = self._times.get(ref, 0) + 1
        self._pending = list(self._times)  # (poll only)
        self._polling = threading.Lock()
        self._last_poll = float("-inf")
        self._cond = threading.Condition()
        self._ended: list[Any] = []  # the refs read, in the order they completed
        self._completed = 0
        self._broken: BaseException | None = None

    def __len__(self) -> int:
        return self.task.total or 0  # (the number of refs, unless total= said otherwise)

    def __repr__(self) -> str:
        return f"<FollowedRefs {self.task.name!r}: {len(self._ended)}/{len(self.refs)} done>"

    def __iter__(self) -> Iterator[Any]:
        """The refs in the order they complete (waiting for the next one)."""
        return in_completion_order(
            self._ended,
            len(self.refs),
            self._cond,
            self.poll,
            2 * POLL_INTERVAL,
            lambda: self._broken,
        )

    def start(self) -> None:
        """At the call: read the refs ready already (here), then poll from the loop thread."""
        try:
            ready = self._wait()
            if ready:
                self._read(ready)
            if self._pending:
                self._session.tick_hooks.append(self.poll)
        except Exception as exc:  # nbremind's trouble must not stop the user's code
            log_exception("following Ray object refs failed")
            self._give_up(exc)

    # -- the poll (the loop thread's hook, and an iterating thread's) ------------------------
    def poll(self, force: bool = False) -> None:
        """Find the refs that completed since the last poll (at most every 0.25 s unless
        ``force``) and have a worker thread read them; never raises."""
        try:
            now = time.monotonic()
            if (
                not force and now - self._last_poll < 0.8 * POLL_INTERVAL
            ) or not self._polling.acquire(False):
                return
            try:
                self._last_poll = now
                if not self._pending:
                    return
                ready = self._wait()
                if ready:
                    _workers.submit(self._read, ready)
            finally:
                self._polling.release()
        except Exception as exc:
            log_exception("following Ray object refs failed")
            self._give_up(exc)

    def _wait(self) -> list[Any]:
        """The pending refs that are ready now (taken out of the pending ones)."""
        pending = self._pending
        ready, rest = ray.wait(pending, num_returns=len(pending), timeout=0, fetch_local=False)
        self._pending = rest
        if not rest:
            with contextlib.suppress(ValueError):  # (not added, or removed already)
                self._session.tick_hooks.remove(self.poll)
        return list(ready)

    def _give_up(self, exc: BaseException) -> None:
        """Ray cannot be asked any more (shut down...): the task ends failed, an iteration
        raises ``exc``."""
        with contextlib.suppress(ValueError):
            self._session.tick_hooks.remove(self.poll)
        with self._cond:
            self._broken = exc
            self._cond.notify_all()
            if not self.task.done:
                self._session.finish(
                    self.task, Ended(f"nbremind could not follow the refs ({type_name(exc)})")
                )

    # -- refs that completed (a worker thread; the calling thread at the call) ----------------
    def _read(self, ready: list[Any]) -> None:
        try:
            errors = read_errors(ready, first=True) if not self.task.done else [None] * len(ready)
        except Exception:  # counted done rather than left waiting for ever
            log_exception("reading Ray object refs failed")
            errors = [None] * len(ready)
        with self._cond:
            try:
                for ref, error in zip(ready, errors, strict=True):
                    self._count(ref, error)
            except Exception:
                log_exception("following Ray object refs failed")
            finally:
                for ref in ready:
                    self._ended.extend([ref] * self._times[ref])
                self._cond.notify_all()

    def _count(self, ref: Any, outcome: tuple[BaseException, str] | None) -> None:
        task = self.task
        if task.done:
            return
        times = self._times[ref]
        if outcome is None:
            task.advance(times)
            self._completed += times
            if self._completed == len(self.refs):
                self._session.finish(task)
            return
        error, function = outcome
        if isinstance(error, asyncio.CancelledError):
            what = "was cancelled"
        elif isinstance(error, _Lost):
            what, error = "failed", error.error
        else:
            what = "erred"
        words = f"ref {ref.hex()[:_REF_CHARS]}…" + (f" ({function})" if function else "")
        task.note(f"{words} {what}: {task.n} of {len(self.refs)} done")
        self._session.finish(task, error)


class _Lost(Exception):
    """A ref whose object Ray could not give (the worker died, the object was lost): Ray's
    own error, told as it is."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def read_errors(refs: Sequence[Any], first: bool = False) -> list[tuple[BaseException, str] | None]:
    """For each ready ref of ``refs``: ``None`` (its task succeeded, or its object is not
    read: see the module's documentation) or ``(error, function)``: the user's exception
    its task raised, an ``asyncio.CancelledError`` (it was cancelled) or Ray's own error
    (the worker died, the object was lost), and the name of the task's function (``""``
    when Ray does not tell it). ``first``: only the first error is read (the others are
    ``None``): the one that ends the task."""
    errors: list[tuple[BaseException, str] | None] = [None] * len(refs)
    for index in _erred(refs):
        errors[index] = _error_of(refs[index])
        if first and errors[index] is not None:
            break
    return errors


def _erred(refs: Sequence[Any]) -> list[int]:
    """The indexes of the refs whose object is an error, read from the objects' metadata
    where that moves no data."""
    from ray.experimental import get_local_object_locations, get_object_locations

    where = dict(get_local_object_locations(list(refs)))
    unknown = [ref for ref in refs if (where.get(ref) or {}).get("object_size") is None]
    if unknown:  # a ref owned by another process (one a task returned), or Ray's own error
        try:  # (a lost worker's) put in the owner's memory: the owner is asked
            answers = get_object_locations(unknown, timeout_ms=_OWNER_WAIT_MS)
        except Exception:
            _log_once("the owners of Ray object refs could not be asked where they are")
            answers = {}
        for ref in unknown:
            if ref in answers:
                where[ref] = answers[ref]
            else:
                where.pop(ref, None)
    node = _node_id()
    readable = []
    for index, ref in enumerate(refs):
        place = where.get(ref)
        if place is None:  # its owner did not say where it is: not read
            continue
        nodes = place.get("node_ids") or ()
        if (not nodes and not place.get("did_spill")) or node in nodes:
            readable.append(index)
    if not readable:
        return []
    try:
        worker: Any = ray._private.worker.global_worker
        core = worker.core_worker
        batch = [refs[i] for i in readable]
        try:
            found = core.get_objects(batch, 0)
        except GetTimeoutError:  # a small object of another owner, asked of it
            found = core.get_objects(batch, int(ERROR_WAIT * 1000))
        erred = []
        for index, (_, metadata, *_rest) in zip(readable, found, strict=True):
            kind = bytes(metadata or b"").split(b",")[0]
            if kind.isdigit():  # an ErrorType's number; a value's is PYTHON, XLANG, RAW...
                erred.append(index)
        del found
        return erred
    except Exception:  # Ray's internals changed: ask ray.get, only where nothing is moved
        _log_once("reading Ray objects' metadata failed; reading small objects instead")
        return [
            index
            for index in readable
            if not where[refs[index]].get("node_ids") and _raises(refs[index])
        ]


def _raises(ref: Any) -> bool:
    try:
        ray.get(ref, timeout=0)
    except Exception:
        return True
    return False


def _error_of(ref: Any) -> tuple[BaseException, str] | None:
    """The error of the erred ``ref``, as :func:`read_errors` tells it."""
    try:
        error = _error_value(ref)
    except GetTimeoutError:
        return Ended("the ref erred; its error could not be read in time"), ""
    if isinstance(error, RayTaskError):
        function = str(getattr(error, "function_name", "") or "")
        cause = getattr(error, "cause", None)
        if isinstance(cause, TaskCancelledError):
            return asyncio.CancelledError(str(cause)), function
        if isinstance(cause, Exception):
            return cause, function
        if isinstance(cause, BaseException):  # (KeyboardInterrupt...: failed still)
            told = TaskError.from_exception(cause)
            return Ended(f"{told.type}: {told.message}" if told.message else told.type), function
        return Ended(f"the ref's task raised; its exception could not be read ({error})"), function
    if isinstance(error, TaskCancelledError):
        return asyncio.CancelledError(str(error)), ""
    if isinstance(error, Exception):  # WorkerCrashedError, ObjectLostError...: Ray's words
        return _Lost(error), ""
    return None


def _error_value(ref: Any) -> object:
    """The ready ``ref``'s value or error, the error as Ray made it (``ray.get`` raises a
    copy that lost the name of the task's function)."""
    worker: Any = ray._private.worker.global_worker
    try:
        values, _ = worker.get_objects([ref], timeout=ERROR_WAIT, return_exceptions=True)
        return values[0]
    except GetTimeoutError:
        raise
    except (AttributeError, TypeError, ValueError):  # Ray's internals changed
        pass
    try:
        return ray.get(ref, timeout=ERROR_WAIT)
    except GetTimeoutError:
        raise
    except Exception as error:
        return error


_node: list[str] = []


def _node_id() -> str:
    if not _node:
        _node.append(ray.get_runtime_context().get_node_id())
    return _node[0]


_logged: set[str] = set()


def _log_once(message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        logger().warning(message, exc_info=True)


# -- Ray Tune ------------------------------------------------------------------------------------


class _TuneHooks:
    """What :class:`RemindCallback` does, apart from being a ``ray.tune.Callback`` (that
    class is made on first use: ``ray.tune`` is imported only by those who use it)."""

    def __init__(
        self,
        name: str | None = None,
        *,
        metric: str | None = None,
        mode: str | None = None,
        session: Session | None = None,
    ) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f"RemindCallback: mode={mode!r}: 'min' or 'max'")
        if (metric is None) != (mode is None):
            raise ValueError("RemindCallback: metric= and mode= go together")
        self.name = name
        self.metric = metric
        self.mode = mode
        self._session = session
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        #: The experiment's task (kind ``"tune"``), from its start on.
        self.task: Task | None = None
        self._total: int | None = None
        self._seen: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        # the Tuner pickles its run config: a session or a task does not travel
        return {"name": self.name, "metric": self.metric, "mode": self.mode}

    def __setstate__(self, state: dict[str, Any]) -> None:
        _TuneHooks.__init__(self, state["name"], metric=state["metric"], mode=state["mode"])

    # -- Tune's hooks (the Tune loop's thread: the one that called fit()) ----------------------
    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        try:
            with self._lock:
                task, session = self.task, self._session
                if task is not None and not task.done and session is not None:
                    session.finish(task, Ended("a new experiment started before its end"))
                self._reset()
                if type(total_num_samples) is int and total_num_samples > 0:
                    self._total = total_num_samples
            if self.name is not None:
                self._begin(None)
        except Exception:
            log_exception("following a Tune experiment failed")

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self.task is None and trials:
            self._hook(self._begin, trials[0])

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if self.task is None:
            self._hook(self._begin, trial)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._hook(self._trial_ended, trial, False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._hook(self._trial_ended, trial, True)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._hook(self._unseen_errors, trials)
        self._hook(self._end, trials)

    def _unseen_errors(self, trials: list[Any]) -> None:
        """Trials that erred without ``on_trial_error`` (Tune calls it only for a trial
        that was running or pending): told now, before the end."""
        seen = self._seen
        for trial in trials:
            if _status(trial) == "ERROR" and str(trial.trial_id) not in seen:
                self._trial_ended(trial, True)

    def _hook(self, fn: Any, *args: Any) -> None:
        try:  # a callback that raises would stop the experiment
            fn(*args)
        except Exception:
            log_exception("following a Tune experiment failed")

    # -- the task ------------------------------------------------------------------------------
    def _begin(self, trial: Any) -> Task:
        with self._lock:
            if self.task is not None:
                return self.task
            session = self._session or get_session()
            name = self.name
            if name is None:
                experiment = getattr(trial, "experiment_dir_name", None) if trial else None
                name = f"tune: {experiment or 'experiment'}"
            options = NO_OPTIONS
            parent = session.current()
            if parent is not None:  # its success is the enclosing task's to report, but
                nested = options.thresholds_only()  # a trial's error is told as it comes
                options = nested.replace(on=(*(nested.on or ()), "failure"))
            task = session.new_task(
                name, options=options, total=self._total, kind="tune", parent=parent
            )
            session.start_aside(task)
            self._session = session
            self.task = task
            return task

    def _trial_ended(self, trial: Any, erred: bool) -> None:
        task = self._begin(trial)
        trial_id = str(trial.trial_id)
        with self._lock:
            if trial_id in self._seen or task.done:
                return
            self._seen.add(trial_id)
            task.advance()
        if not erred:
            return
        error = _trial_error(trial)
        words = f"trial {trial_id} failed: {error}"
        session = self._session
        if "failure" in task.options.events() and session is not None:
            config = _config_text(getattr(trial, "config", None))
            notice = make_notice(
                "failure",
                task.snapshot(),
                created=time.time(),
                key=f"trial:{trial_id}",
                detail=(words, f"config: {config}") if config else words,
            )
            session.send(notice, task.options)
        task.note(words)  # (after the notice, whose title says it already)

    def _end(self, trials: list[Any]) -> None:
        task = self._begin(trials[0] if trials else None)
        session = self._session
        if task.done or session is None:
            return
        erred = [t for t in trials if _status(t) == "ERROR"]
        count = len(trials)
        note = f"{count} trial{'' if count == 1 else 's'}, {len(erred)} erred"
        best = self._best([t for t in trials if _status(t) != "ERROR"])
        if best is not None:
            note += f"; best trial {best[0]}: {self.metric}={metric_text(best[1])}"
        task.note(note)
        if trials and len(erred) == count:
            session.finish(task, Ended(f"every trial erred; the last: {_trial_error(erred[-1])}"))
        elif not trials:
            session.finish(task, Ended("no trial ran"))
        else:
            session.finish(task)

    def _best(self, trials: list[Any]) -> tuple[str, Any] | None:
        """``(trial id, value)`` of the trial best by ``metric`` and ``mode`` (its last
        result), or ``None``: none given, or no trial reported the metric."""
        metric = self.metric
        if metric is None:
            return None
        values = []
        for trial in trials:
            result = getattr(trial, "last_result", None) or {}
            value = result.get(metric)
            if isinstance(value, (int, float)) and value == value:  # (nan is no best)
                values.append((value, str(trial.trial_id)))
        if not values:
            return None
        value, trial_id = (min if self.mode == "min" else max)(values)
        return trial_id, value


def _status(trial: Any) -> str:
    return str(getattr(trial, "status", ""))


def _trial_error(trial: Any) -> str:
    """``ValueError: bad x``: the exception an erred trial raised (the user's, not Ray's
    wrapper), read from the file Tune wrote for it; else the last line of its error text."""
    path = getattr(trial, "pickled_error_file", None)
    if path:
        try:
            from ray import cloudpickle

            with open(path, "rb") as file:
                error = cloudpickle.load(file)
            cause = getattr(error, "cause", None)
            told = TaskError.from_exception(cause if isinstance(cause, BaseException) else error)
            return f"{told.type}: {told.message}" if told.message else told.type
        except Exception:
            pass
    path = getattr(trial, "error_file", None)
    if path:
        try:
            with open(path, encoding="utf-8", errors="replace") as file:
                lines = [line.strip() for line in file if line.strip()]
            if lines:
                return lines[-1][:_CONFIG_CHARS]
        except OSError:
            pass
    return "its error could not be read"


def _config_text(value: object) -> str:
    """``x=2, lr=0.01`` for a trial's config (cut to 200 characters); ``""`` for none."""
    if not isinstance(value, dict) or not value:
        return ""
    text = ", ".join(f"{key}={metric_text(item)}" for key, item in value.items())
    return text if len(text) <= _CONFIG_CHARS else text[:_CONFIG_CHARS] + "…"


_callback_class: list[type] = []


def _remind_callback() -> type:
    if not _callback_class:
        from ray.tune import Callback

        class RemindCallback(_TuneHooks, Callback):
            """A Ray Tune callback that tells you how your experiment went:
            ``tune.RunConfig(callbacks=[RemindCallback()])``.

            The experiment is a task of kind ``"tune"`` (named ``name``, else ``"tune:
            <experiment name>"``), started aside at the experiment's start, whose total is
            the number of trials when Tune knows it, advanced as each trial ends:

            * a trial that erred is told at once, the experiment going on: ``✗ tune:
              train_2024: trial 1a2b3_00001 failed: ValueError: bad x``;
            * at the experiment's end the task ends **succeeded** when at least one trial
              ended without error, with a note ``2 trials, 1 erred; best trial
              1a2b3_00000: loss=0.12`` (best by ``metric`` and ``mode``, the last result
              of each trial; left out without them), **failed** when every trial erred.

            Nested in a cell or block, the experiment's success is the enclosing task's to
            tell; a trial's failure, and an experiment whose every trial erred, are told
            still (``tuner.fit()`` does not raise for them).
            """

        RemindCallback.__module__ = __name__
        RemindCallback.__qualname__ = "RemindCallback"
        _callback_class.append(RemindCallback)
        globals()["RemindCallback"] = RemindCallback  # pickled by reference, as any class
    return _callback_class[0]


def __getattr__(name: str) -> Any:
    if name == "RemindCallback":
        return _remind_callback()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""A cell's or block's work on a Dask cluster, as the cluster's scheduler sees it.

A ``%%remind`` cell, a ``remind()`` block or a decorated function that starts while a
``distributed.Client`` is active (``Client.current()``: the last one made, or the one of
``with client.as_current():``) opens a Dask span of its task's name
(``distributed.span``) for as long as it runs, and has nbremind's scheduler plugin
(:mod:`.dask_plugin`, registered once per client, idempotently: once per cluster) follow
the tasks submitted in it. What the plugin sends comes back through Dask's event topics
(``Client.subscribe_topic``), handled on the client's own event-loop thread -- nothing is
asked of the scheduler from the user's thread but the plugin's registration, once:

* the span's progress: the task's count and total become the cluster's (unless the task
  has a ``total=`` of its own), so its ETA, ``progress=`` marks, ``stall=``, the status
  line and the panel follow the cluster's work;
* its first erred task: a notice at once, without ending the task (event ``failure``):
  ``✗ etl: task 'load-3' failed on worker tcp://10.0.0.5:40331: KeyError: 'x'`` (the
  exception is read from the scheduler on a worker thread of nbremind's);
* a worker lost while tasks of the span are still to be done: ``⚠ etl lost worker
  tcp://10.0.0.5:40331 (1 left)`` (event ``worker``, once per worker).

Blocks nest: the tasks of an inner block count for the blocks around it too. An
asynchronous client (``Client(asynchronous=True)``), or one not running, opens nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import dask
from distributed import Client, Future

try:
    from distributed import span
except ImportError:  # distributed older than 2023.10: no spans, cells and blocks open none
    span = None  # type: ignore[assignment]

from ..core.log import log_exception, logger
from ..core.notice import make_notice
from ..core.task import Ended, Task, TaskError
from ..core.workers import Workers
from ..runtime.session import Session
from .dask import UNREAD, error_of
from .dask_plugin import ANNOTATION, CONTROL_TOPIC, NAME, RemindPlugin

__all__ = ["active_client", "open_span", "status_lines"]

_links: weakref.WeakKeyDictionary[Any, _Link] = weakref.WeakKeyDictionary()
_links_lock = threading.Lock()
#: Where an erred task's exception is read (its thread starts on first use).
_workers = Workers(limit=1, name="nbremind-dask")


def active_client() -> Any:
    """The client a cell or block submits to now (``Client.current()``), if it is a running
    synchronous one; else ``None``."""
    try:
        current: Any = Client.current  # (untyped)
        client = current(allow_global=True)
    except ValueError:  # no client
        return None
    if getattr(client, "asynchronous", True) or client.status != "running":
        return None
    return client


def open_span(task: Task, session: Session) -> Callable[[], None] | None:
    """For the session, at ``task``'s start on its thread: open its span while a client is
    active, and return what closes it; ``None``: no client, nothing opened."""
    client = active_client() if span is not None else None
    if client is None:
        return None
    link = _link_of(client)
    if link.reason is not None:
        task.note(f"no cluster progress: {link.reason}")
        return None
    return _Watch(task, session, link).open()


def status_lines() -> list[str]:
    """What ``%remind status`` says of the active client: scheduler, dashboard, plugin."""
    client = active_client()
    if client is None:
        return []
    try:
        address = client.scheduler.address
    except Exception:
        address = "?"
    try:
        dashboard = client.dashboard_link
    except Exception:  # (no dashboard)
        dashboard = None
    lines = [f"  dask: client of {address}" + (f", dashboard {dashboard}" if dashboard else "")]
    link = _links.get(client)
    if link is not None and link.reason is not None:
        lines.append(f"  dask: no cluster progress: {link.reason}")
    elif link is not None:
        lines.append("  dask: cells and blocks follow the cluster's progress (plugin registered)")
    else:
        lines.append("  dask: cells and blocks will follow the cluster's progress")
    return lines


def _link_of(client: Any) -> _Link:
    with _links_lock:
        link = _links.get(client)
        if link is None:
            link = _links[client] = _Link(client)
    return link


class _Link:
    """One client's link with the plugin: its topic and the spans it watches."""

    def __init__(self, client: Any) -> None:
        self.topic = f"nbremind-{client.id}"
        self.client = weakref.ref(client)
        self.watches: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        self._forgotten: list[str] = []
        self._sending = False
        #: Why the cluster's progress cannot be had, if it cannot.
        self.reason: str | None = None
        try:
            client.register_plugin(RemindPlugin(), name=NAME)
            client.subscribe_topic(self.topic, self.on_event)
        except Exception as exc:
            told = TaskError.from_exception(exc)
            why = f"{told.type}: {told.message}" if told.message else told.type
            self.reason = f"the scheduler did not take nbremind's plugin ({why})"
            logger().warning("nbremind: %s", self.reason)

    def on_event(self, event: Any) -> None:
        """What the plugin sent (on the client's event-loop thread); never raises."""
        try:
            _, message = event
            op = message.get("op")
            if op == "progress":
                watch = self.watches.get(message["span"])
                if watch is not None:
                    watch.progress(message["done"], message["total"])
            elif op == "erred":
                watch = self.watches.get(message["span"])
                if watch is not None:
                    watch.erred(message)
            elif op == "worker":
                for span_id in message["spans"]:
                    watch = self.watches.get(span_id)
                    if watch is not None:
                        watch.lost(str(message["worker"]), int(message["left"]))
        except Exception:
            log_exception("an event of nbremind's Dask plugin could not be read")

    def forget(self, span_id: str) -> None:
        """Tell the plugin to forget ``span_id`` (on the client's loop: returns at once; one
        message in flight at a time, with every span forgotten meanwhile)."""
        with self._lock:
            self._forgotten.append(span_id)
            if self._sending:
                return
            self._sending = True
        client = self.client()
        if client is None or client.status != "running":
            with self._lock:
                self._forgotten.clear()
                self._sending = False
            return
        client.loop.add_callback(self._send_forgotten)

    async def _send_forgotten(self) -> None:
        while True:
            with self._lock:
                ids, self._forgotten = self._forgotten, []
                client = self.client()
                if not ids or client is None:
                    self._sending = False
                    return
            try:
                message = {"op": "forget", "spans": ids}
                await client.scheduler.log_event(topic=CONTROL_TOPIC, msg=message)
            except Exception:  # the scheduler went away: it forgot already
                logger().debug("nbremind: the Dask scheduler could not be told to forget %s", ids)


class _Watch:
    """One task's span: opened at the task's start, closed at its end (same thread)."""

    def __init__(self, task: Task, session: Session, link: _Link) -> None:
        self.task = task
        self.session = session
        self.link = link
        #: Whether the cluster's counts are the task's (it has no ``total=`` of its own).
        self.drives = task.total is None
        self.id = ""
        self._contexts: list[Any] = []
        self._told: set[str] = set()

    def open(self) -> Callable[[], None]:
        outer = dask.get_annotations().get(ANNOTATION)  # type: ignore[attr-defined]
        spanned = span(self.task.name)
        self.id = spanned.__enter__()
        self._contexts.append(spanned)
        ids = [self.id]
        if isinstance(outer, (list, tuple)) and len(outer) == 2 and outer[0] == self.link.topic:
            ids = [*outer[1], self.id]  # counted for the blocks around it too
        annotated = dask.annotate(**{ANNOTATION: [self.link.topic, ids]})  # type: ignore[attr-defined]
        annotated.__enter__()
        self._contexts.append(annotated)
        self.link.watches[self.id] = self
        return self.close

    def close(self) -> None:
        for context in reversed(self._contexts):
            # (ended in another context than it started in: there is nothing to reset)
            with contextlib.suppress(ValueError):
                context.__exit__(None, None, None)
        self._contexts.clear()
        if self.link.watches.pop(self.id, None) is not None:
            self.link.forget(self.id)

    # -- on the client's loop thread -------------------------------------------------------
    def progress(self, done: int, total: int) -> None:
        task = self.task
        if self.drives and not task.done:
            task.total = max(int(total), 0)
            task.set(int(done))

    def erred(self, message: dict[str, Any]) -> None:
        task = self.task
        if task.done:
            return
        worker = message.get("worker")
        where = f" on worker {worker}" if worker else ""
        task.note(f"task {message.get('key')} erred{where}")  # (for the end notice too)
        if "failure" in task.options.events():
            _workers.submit(self._tell_error, message, where)

    def lost(self, worker: str, left: int) -> None:
        task = self.task
        if task.done or worker in self._told or "worker" not in task.options.events():
            return
        self._told.add(worker)
        self._send("worker", f"worker:{worker}", f"lost worker {worker} ({left} left)")

    # -- on a worker thread of nbremind's ------------------------------------------------------
    def _tell_error(self, message: dict[str, Any], where: str) -> None:
        """Read the erred task's exception and tell it, unless the task ended meanwhile
        (its end notice tells the error then, with the note)."""
        try:
            shown = str(message.get("key"))
            text = str(message.get("text") or "an error")
            client = self.link.client()
            key = message.get("raw")
            if client is not None and key is not None:
                error = error_of(Future(_key(key), client))
                if not isinstance(error, Ended):
                    told = TaskError.from_exception(error)
                    text = f"{told.type}: {told.message}" if told.message else told.type
                elif not str(error).startswith(UNREAD):
                    text = str(error)  # (a KeyboardInterrupt, a SystemExit: in words)
            if self.task.done:
                return
            self._send("failure", f"dask:{self.id}", f"task {shown} failed{where}: {text}")
        except Exception:
            log_exception("telling of a Dask task's error failed")

    def _send(self, event: str, key: str, words: str) -> None:
        task = self.task
        notice = make_notice(event, task.snapshot(), created=time.time(), key=key, detail=words)
        self.session.send(notice, task.options)


def _key(raw: Any) -> Any:
    """A task's key as the plugin sent it (msgpack makes a tuple's parts a list)."""
    if isinstance(raw, list):
        return tuple(_key(part) for part in raw)
    return raw

"""nbremind's Dask scheduler plugin: it counts the tasks of the spans nbremind's cells and
blocks opened, and tells the client that opened each one -- through Dask's event topics --
its progress, its first erred task and the workers lost while it runs.

It runs on the scheduler, in the scheduler's event loop; it imports nothing of nbremind but
this module (the scheduler needs nbremind installed, as for any plugin of a package), and
sends only plain data (msgpack).

What a client asks for comes with its tasks: each task of a watched span carries the
annotation ``nbremind = [topic, [span id, ...]]`` (the ids of the spans it counts for: a
block's and those of the blocks around it). The plugin learns the tasks in
:meth:`~RemindPlugin.update_graph` and follows them in :meth:`~RemindPlugin.transition`,
where a task of no watched span costs one dictionary lookup. What it sends to ``topic``:

* ``{"op": "progress", "span": id, "done": n, "erred": e, "total": t}``, at most every
  :data:`INTERVAL` seconds while the counts change, and at once when its last task ended
  (before the scheduler tells the client of that task: the client's block, waiting for
  its results, ends with the cluster's last count);
* ``{"op": "erred", "span": id, "key": shown, "raw": key, "worker": address, "text":
  exception text}``,
  at once, for the first task of the span that erred on a worker;
* ``{"op": "worker", "spans": [id, ...], "worker": address, "left": workers}``, when a
  worker leaves while tasks of those spans are still to be done.

A client forgets its span by logging ``{"op": "forget", "spans": [id, ...]}`` under
:data:`CONTROL_TOPIC`; a client that leaves has its spans forgotten too.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

__all__ = ["ANNOTATION", "CONTROL_TOPIC", "INTERVAL", "NAME", "RemindPlugin"]

#: The plugin's name on the scheduler (registered once per cluster: idempotent).
NAME = "nbremind"
#: The annotation a watched task carries: ``[topic, [span id, ...]]``.
ANNOTATION = "nbremind"
#: The topic under which clients send the plugin what they no longer watch.
CONTROL_TOPIC = "nbremind-control"
#: Seconds between two progress events of a span whose counts change.
INTERVAL = 0.25
#: Characters of a task's key and of its exception's text sent at most.
_CHARS = 300


class _Span:
    """The counts of one watched span."""

    __slots__ = ("client", "done", "erred", "id", "told_error", "topic", "total")

    def __init__(self, span_id: str, topic: str, client: str) -> None:
        self.id = span_id
        self.topic = topic
        self.client = client
        self.total = 0
        self.done = 0
        self.erred = 0
        self.told_error = False

    def running(self) -> bool:
        return self.done + self.erred < self.total


class RemindPlugin(SchedulerPlugin):
    """Counts the tasks of watched spans and reports them (see the module's documentation)."""

    name = NAME
    #: Registered once per cluster: a second registration (another block, another kernel)
    #: leaves the running one in place.
    idempotent = True

    def __init__(self) -> None:
        self.spans: dict[str, _Span] = {}
        #: The watched tasks not done yet: ``{key: (span, ...)}``.
        self.pending: dict[Any, tuple[_Span, ...]] = {}
        #: How many times the scheduler started this plugin (once).
        self.starts = 0
        self._scheduler: Any = None
        self._changed: dict[str, _Span] = {}
        self._flush_due = False

    async def start(self, scheduler: Any) -> None:
        self._scheduler = scheduler
        self.starts += 1

    # -- what the scheduler tells ----------------------------------------------------------
    def update_graph(
        self, scheduler: Any, *, client: str, tasks: Any = (), annotations: Any = None, **_: Any
    ) -> None:
        marks = (annotations or {}).get(ANNOTATION)
        if not marks:
            return
        spans = self.spans
        pending = self.pending
        states = scheduler.tasks
        changed = self._changed
        for key, mark in marks.items():
            if key in pending:
                continue  # (submitted again in a later graph: counted once)
            try:
                topic, ids = mark
                of = []
                for span_id in ids:
                    span = spans.get(span_id)
                    if span is None:
                        span = spans[span_id] = _Span(str(span_id), str(topic), client)
                    of.append(span)
            except (TypeError, ValueError):
                continue  # not ours after all
            state = states.get(key)
            done = state is not None and state.state == "memory"
            for span in of:
                span.total += 1
                if done:
                    span.done += 1
                changed[span.id] = span
            if not done:
                pending[key] = tuple(of)
        self._due()

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        of = self.pending.get(key)
        if of is None:
            return
        if finish == "memory":
            del self.pending[key]
            for span in of:
                span.done += 1
                self._changed[span.id] = span
                if not span.running():  # its last task: told now, before the client learns it
                    self._send_progress(self._changed.pop(span.id))
            self._due()
        elif finish == "erred":
            del self.pending[key]
            first = start == "processing"  # (its dependents err after it, blamed on it)
            for span in of:
                span.erred += 1
                self._changed[span.id] = span
                if first and not span.told_error:
                    span.told_error = True
                    self._tell_error(span, key, kwargs)
                if not span.running():
                    self._send_progress(self._changed.pop(span.id))
            self._due()
        elif finish == "forgotten":  # released before it ran: no longer to be done
            del self.pending[key]
            for span in of:
                span.total -= 1
                self._changed[span.id] = span
            self._due()

    def remove_worker(self, scheduler: Any, worker: str, **_: Any) -> None:
        by_topic: dict[str, list[str]] = {}
        for span in self.spans.values():
            if span.running():
                by_topic.setdefault(span.topic, []).append(span.id)
        for topic, ids in by_topic.items():
            message = {"op": "worker", "spans": ids, "worker": worker}
            scheduler.log_event(topic, {**message, "left": len(scheduler.workers)})

    def remove_client(self, scheduler: Any, client: str) -> None:
        self._forget([s.id for s in self.spans.values() if s.client == client])

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == CONTROL_TOPIC and isinstance(msg, dict) and msg.get("op") == "forget":
            self._forget(msg.get("spans") or ())

    # -- what it sends ------------------------------------------------------------------------
    def _tell_error(self, span: _Span, key: Any, told: dict[str, Any]) -> None:
        state = self._scheduler.tasks.get(key) if self._scheduler is not None else None
        text = told.get("exception_text") or getattr(state, "exception_text", "") or ""
        worker = told.get("worker")
        if worker is None and state is not None and state.erred_on:
            worker = next(iter(state.erred_on))
        message = {
            "op": "erred",
            "span": span.id,
            "key": _text(key),
            "raw": key,
            "worker": None if worker is None else str(worker),
            "text": str(text)[:_CHARS],
        }
        self._scheduler.log_event(span.topic, message)

    def _due(self) -> None:
        """Send the changed counts in :data:`INTERVAL` seconds (once for many changes)."""
        if self._flush_due or self._scheduler is None:
            return
        self._flush_due = True
        self._scheduler.loop.call_later(INTERVAL, self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        changed, self._changed = self._changed, {}
        for span in changed.values():
            if span.id in self.spans:  # (not forgotten meanwhile)
                self._send_progress(span)

    def _send_progress(self, span: _Span) -> None:
        message = {
            "op": "progress",
            "span": span.id,
            "done": span.done,
            "erred": span.erred,
            "total": span.total,
        }
        self._scheduler.log_event(span.topic, message)

    def _forget(self, ids: Any) -> None:
        forgotten = {self.spans.pop(str(i), None) for i in ids} - {None}
        if not forgotten:
            return
        for key, of in list(self.pending.items()):
            kept = tuple(s for s in of if s not in forgotten)
            if len(kept) == len(of):
                continue
            if kept:
                self.pending[key] = kept
            else:
                del self.pending[key]


def _text(key: Any) -> str:
    """A task's key as the client shows it (``('load', 3)``, ``'inc-4f2a…'``), cut."""
    text = repr(key)
    return text if len(text) <= _CHARS else text[:_CHARS] + "…"

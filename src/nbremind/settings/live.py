"""Live settings: load a session's settings from files and the environment, and reload them
when a settings file changes.

A valid edit applies at once (values set with ``configure()`` or ``%remind`` keep
precedence); an edit that cannot be used keeps the last good settings and is reported once —
logged as a warning and shown by ``%remind config`` — naming the file, key and value.
Files are watched with ``watchfiles`` on a daemon thread that stops when the session closes.
The process's own session starts watching :data:`WATCH_DELAY` seconds after it loaded its
settings (the watcher reads them again once its watches are in place, so an edit made
meanwhile is not missed): a short script never imports ``watchfiles`` nor waits for its
thread at exit.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.config import Config, format_setting
from ..core.secrets import redact
from .files import LoadedSettings, file_lines, load_settings

if TYPE_CHECKING:
    from ..runtime.session import Session

__all__ = ["WATCH_DELAY", "LiveSettings", "describe", "follow", "overlay"]

log = logging.getLogger("nbremind")

#: Milliseconds the watcher waits in watchfiles before checking back (and, the first time,
#: before it reports itself ready: the watches are in place by then).
_WAKE_MS = 1000
#: Seconds the process's own session waits before it starts watching its settings files.
WATCH_DELAY = 1.0
#: Values of ``%remind config`` up to this long are aligned; longer ones (tables) run on.
_VALUE_WIDTH = 32


class LiveSettings:
    """Keeps one session's settings in step with the settings files and environment.

    ``start`` is the folder the project file is looked up from (default: the working
    directory when this is made); ``environ`` defaults to ``os.environ`` as it is at each
    load.
    """

    def __init__(
        self,
        session: Session,
        start: Path | str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.session = session
        self.start = (Path.cwd() if start is None else Path(start)).resolve()
        #: The environment read (``None``: ``os.environ`` as it is at each load).
        self.environ = environ
        #: The last load (good or not).
        self.loaded: LoadedSettings | None = None
        #: Messages about the settings that could not be used in the last load.
        self.errors: tuple[str, ...] = ()
        #: Loads done, and loads that applied their settings, since this was made.
        self.loads = 0
        self.applied = 0
        self._reported: set[str] = set()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self.ready = threading.Event()
        self._thread: threading.Thread | None = None

    # -- loading ------------------------------------------------------------------------------
    def load(self, *, initial: bool = False) -> bool:
        """Read the settings again and apply them; return whether they were applied.

        The first load applies every layer that can be used. Later loads apply only when
        everything can be used: otherwise the last good settings stay.
        """
        loaded = load_settings(self.start, self.environ)
        with self._changed:
            self.loaded = loaded
            self.loads += 1
            self.errors = loaded.errors
            self._report(loaded.errors)
            applied = initial or not loaded.errors
            if applied:
                self._apply(loaded)
                self.applied += 1
            self._changed.notify_all()
        return applied

    def _report(self, errors: tuple[str, ...]) -> None:
        if not errors:
            self._reported.clear()  # a later error is news again
            return
        for message in errors:
            if message not in self._reported:
                self._reported.add(message)
                log.warning("nbremind settings not used: %s", message)

    def _apply(self, loaded: LoadedSettings) -> None:
        """Replace the session's settings: ``loaded`` under what ``configure()`` set."""
        session = self.session
        for _ in range(5):  # configure() may run meanwhile on another thread: start again
            explicit = dict(session.explicit_settings)
            given = {key: session.config_sources.get(key, "configure()") for key in explicit}
            config, kept = overlay(loaded.config, explicit, given)
            sources = {**loaded.sources, **{key: given[key] for key in kept}}
            now = session.explicit_settings
            if len(now) == len(explicit) and all(now.get(k) is v for k, v in explicit.items()):
                break
        session.config = config
        session.config_sources = sources
        if session.ticker.interval and session.ticker.interval != config.tick_interval:
            session.ticker.interval = config.tick_interval

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` is true, checking after each load; ``False`` on timeout."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    # -- watching -----------------------------------------------------------------------------
    def start_watching(self, delay: float = 0.0) -> bool:
        """Watch the settings files on a daemon thread, from ``delay`` seconds on (a stop
        before then ends the thread at once, having imported nothing); ``False`` when
        watching is impossible (known at once only without a delay: ``watchfiles`` is
        imported by the thread, when it begins watching)."""
        if self._thread is not None:
            return True
        if delay <= 0 and not _watchfiles_found():
            return False
        self._thread = threading.Thread(
            target=self._run, args=(delay,), name="nbremind-settings-watch", daemon=True
        )
        self._thread.start()
        return True

    def stop(self, timeout: float = 2.0) -> None:
        """Stop watching (the session is closing) and wait up to ``timeout`` seconds for the
        watcher thread to end (``0``: only ask it to stop)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and timeout > 0:
            thread.join(timeout)

    def _targets(self) -> tuple[frozenset[Path], frozenset[str]]:
        """Folders to watch (not recursively) and the paths whose changes matter."""
        paths = self.loaded.watch if self.loaded is not None else ()
        interesting: set[str] = set()
        folders: set[Path] = set()
        for path in paths:
            interesting.add(str(path))
            interesting.update(str(parent) for parent in path.parents)
            folder = path.parent
            while not folder.is_dir() and folder != folder.parent:
                folder = folder.parent
            if os.access(folder, os.R_OK | os.X_OK):
                folders.add(folder)
        return frozenset(folders), frozenset(interesting)

    def _run(self, delay: float = 0.0) -> None:
        if delay > 0 and (self._stop.wait(delay) or not _watchfiles_found()):
            return  # stopped before watching began, or nothing to watch with
        import watchfiles

        while not self._stop.is_set():
            folders, interesting = self._targets()
            if not folders:
                self.ready.set()
                return

            def matters(_change: Any, path: str, interesting: frozenset[str] = interesting) -> bool:
                return path in interesting

            armed = False
            try:
                for changes in watchfiles.watch(
                    *folders,
                    watch_filter=matters,
                    stop_event=self._stop,
                    recursive=False,
                    step=50,
                    rust_timeout=_WAKE_MS,
                    yield_on_timeout=True,
                    raise_interrupt=False,
                    ignore_permission_denied=True,
                ):
                    if not changes and armed:
                        continue
                    # the first yield (a timeout) tells the watches are in place: read again
                    # to catch edits made before, then on every change that matters
                    armed = True
                    self._reload()
                    self.ready.set()
                    if self._targets() != (folders, interesting):
                        break  # a folder or file appeared or went away: watch anew
            except Exception as exc:
                log.debug("nbremind: watching settings files failed: %s", redact(str(exc)))
                self._stop.wait(1.0)

    def _reload(self) -> None:
        try:
            self.load()
        except Exception as exc:  # never let the watcher die of one bad load
            log.warning("nbremind: reloading settings failed: %s", redact(str(exc)))


def _watchfiles_found() -> bool:
    try:
        import watchfiles  # noqa: F401 - imported here so ``import nbremind`` stays light
    except ImportError:
        log.info("nbremind: settings files are not watched (watchfiles is not installed)")
        return False
    return True


def overlay(
    base: Config, values: Mapping[str, Any], sources: Mapping[str, str]
) -> tuple[Config, tuple[str, ...]]:
    """``base`` with ``values`` (what ``configure()`` and ``%remind`` set, key -> value; their
    ``sources``, key -> who set it) applied as one update, validated together; and the keys
    applied. When the values clash with ``base`` (a file no longer defines a named channel they
    use), each value that still fits is kept, with the others kept before it, and each one left
    out is logged as a warning."""
    try:
        return base.updated("configure()", **values), tuple(values)
    except ValueError:
        pass
    kept: dict[str, Any] = {}
    config = base
    for key in sorted(values, key=lambda name: name == "channels"):  # after channel_defs
        try:
            config = base.updated(sources.get(key, "configure()"), **kept, **{key: values[key]})
        except ValueError as exc:  # valid before; the new settings clash with it
            log.warning("nbremind: %s", redact(str(exc)))
            continue
        kept[key] = values[key]
    return config, tuple(kept)


def follow(
    session: Session,
    start: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    watch: bool = True,
    delay: float = 0.0,
) -> LiveSettings | None:
    """Load ``session``'s settings from files and the environment, then keep them live
    (watching from ``delay`` seconds on).

    Never raises: settings that cannot be used are reported (log, ``%remind config``) and
    the defaults stay.
    """
    try:
        live = LiveSettings(session, start, environ)
        live.load(initial=True)
        session.settings = live
        if watch:
            live.start_watching(delay)
        return live
    except Exception as exc:
        log.warning("nbremind: settings files not loaded: %s", redact(str(exc)))
        return None


def describe(session: Session) -> list[str]:
    """``%remind config``: every setting, its value as a user writes it and its source, in
    aligned columns; then the settings files and what could not be used. Secrets are shown
    as ``***``."""
    sources = session.config_sources
    rows = [
        (key, format_setting(key, value), sources.get(key, "default"))
        for key, value in session.config.as_dict().items()
    ]
    key_width = max(len(key) for key, _, _ in rows)
    value_width = max((len(value) for _, value, _ in rows if len(value) <= _VALUE_WIDTH), default=0)
    lines = [
        redact(f"{key:<{key_width}} = {value:<{value_width}}  ({source})")
        for key, value, source in rows
    ]
    live = session.settings
    if live is not None and live.loaded is not None:
        lines.extend(file_lines(live.loaded))
    if live is not None and live.errors:
        for message in live.errors:
            lines.append(redact(f"not used (the last good settings stay): {message}"))
    return lines

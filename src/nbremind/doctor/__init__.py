"""``nbremind doctor``: what works on this machine for nbremind, and why.

Each check gives a small frozen :class:`Check` (name, ok, summary, detail) that can be
printed or turned into JSON. Nothing here raises: a check that cannot be made is reported as
failed, saying why. Nothing is sent and nothing is delivered: the outbox is only read.

Checks: ``desktop`` (the backend desktop-notifier would use and the platform facts behind
it), ``browser`` (a notebook front end connected; only meaningful inside a kernel),
``settings`` (the settings files found and what in them cannot be used), ``default
channels`` (where notices go when a task names none, and why), ``outbox`` (its file and the
deliveries waiting in it), ``history`` (the run history file), ``gpu`` (whether NVIDIA's
management library answers, for ``--gpu-mem`` and GPU-idle stalls) and ``memory limit``
(the limit a ``mem_limit`` percent is of, and where it came from; also the report's JSON
key ``memory_limit``).

On Windows and macOS the ``desktop`` check also carries the platform's facts as JSON-ready
values (:attr:`Check.facts`): under ``windows`` the app id's registration, its Start-menu
shortcut, the toast setting and its fix, and Focus Assist (best effort); under ``macos``
the app bundle, whether notifications are authorised for it, and how to allow them.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.config import Config
from ..settings.files import LoadedSettings, file_lines, load_settings

if TYPE_CHECKING:
    from ..runtime.gpu import GpuSampler

__all__ = ["Check", "Report", "collect"]

#: Seconds the checks that talk to the desktop and channels may take together.
ASYNC_TIMEOUT = 15.0
#: Pending deliveries listed one by one at most (the count is always given).
SHOW_PENDING = 10
NOT_IN_KERNEL = (
    "only inside a notebook kernel: a browser front end connects to a kernel, not to this command"
)

T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    """One thing ``nbremind doctor`` looked at.

    ``ok`` is ``True`` (works), ``False`` (does not, ``summary`` says why) or ``None`` (only
    a fact, nothing to judge here). ``required`` checks decide the exit status.
    """

    name: str
    ok: bool | None
    summary: str
    detail: tuple[str, ...] = ()
    required: bool = False
    #: More JSON-ready values under keys of their own (the desktop check's ``windows`` or
    #: ``macos``), added to :meth:`to_dict`.
    facts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mark(self) -> str:
        """``✓``, ``✗`` or ``–`` (a fact only)."""
        return {True: "✓", False: "✗", None: "–"}[self.ok]

    def to_dict(self) -> dict[str, Any]:
        """The check as JSON-ready values."""
        return {
            "name": self.name,
            "ok": self.ok,
            "required": self.required,
            "summary": self.summary,
            "detail": list(self.detail),
            **self.facts,
        }


@dataclass(frozen=True)
class Report:
    """Every check, in order."""

    checks: tuple[Check, ...] = field(default=())
    #: The memory limit that applies here, as JSON-ready values (``bytes``, ``kind``,
    #: ``where``, ``cgroup``, ``summary``, ``notes``); ``None``: not looked at.
    memory_limit: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Whether every required check works (what the default channels need)."""
        return all(check.ok is not False for check in self.checks if check.required)

    def check(self, name: str) -> Check:
        """The check called ``name``; ``KeyError`` when there is none."""
        for found in self.checks:
            if found.name == name:
                return found
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """``{"ok": ..., "checks": [...], "memory_limit": {...}}``, JSON-ready."""
        out: dict[str, Any] = {"ok": self.ok, "checks": [check.to_dict() for check in self.checks]}
        if self.memory_limit is not None:
            out["memory_limit"] = self.memory_limit
        return out

    def lines(self) -> list[str]:
        """The report for people: one section per check, then the verdict."""
        out = []
        for check in self.checks:
            out.append(f"{check.mark} {check.name}: {check.summary}")
            out.extend(f"    {line}" for line in check.detail)
        failed = [c.name for c in self.checks if c.required and c.ok is False]
        if failed:
            out.append(f"Not everything notices need works here: see {', '.join(failed)} above.")
        else:
            out.append("Everything notices need works here.")
        return out


def collect(
    start: Path | None = None,
    *,
    in_kernel: bool | None = None,
    config: Config | None = None,
    sources: Mapping[str, str] | None = None,
    loaded: LoadedSettings | None = None,
) -> Report:
    """Make every check; ``start`` is where the project settings file is looked for (default:
    the working directory); ``in_kernel`` (default: whether ipykernel is loaded) makes the
    browser check meaningful. ``loaded`` is a load already made (a session's: its files and
    errors are reported, not looked up again); ``config`` and ``sources`` (setting -> where
    from) replace what the settings files give, for a process whose settings were changed
    (``configure()``). Never raises."""
    if in_kernel is None:
        in_kernel = "ipykernel" in sys.modules
    if loaded is None:
        loaded = load_settings(start)
    if config is not None:
        loaded = replace(loaded, config=config, sources={**loaded.sources, **(sources or {})})
    config = loaded.config
    checks = [_guarded("settings", lambda: check_settings(loaded))]
    checks.extend(_run_async(_channel_checks(config, loaded, in_kernel), ASYNC_TIMEOUT))
    checks.append(_guarded("outbox", lambda: check_outbox(config, loaded)))
    checks.append(_guarded("history", lambda: check_history(config)))
    checks.append(_guarded("gpu", check_gpu))
    memory_limit: dict[str, Any] = {}
    checks.append(_guarded("memory limit", lambda: check_memory_limit(memory_limit)))
    order = ("desktop", "browser", "default channels", "settings", "outbox", "history", "gpu")
    checks.sort(key=lambda c: order.index(c.name) if c.name in order else len(order))
    return Report(tuple(checks), memory_limit or None)


def _guarded(name: str, make: Callable[[], Check], required: bool = False) -> Check:
    try:
        return make()
    except Exception as exc:
        return Check(
            name, False, f"the check itself failed: {type(exc).__name__}: {exc}", required=required
        )


# -- channels (on a loop of their own) -----------------------------------------------------------
def _run_async(coro: Coroutine[Any, Any, list[Check]], timeout: float) -> list[Check]:
    """Run ``coro`` on a fresh loop in a thread of its own (this thread may already run a
    loop: a kernel), waiting at most ``timeout`` seconds."""
    result: list[list[Check]] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="nbremind-doctor", daemon=True)
    thread.start()
    thread.join(timeout)
    if result:
        return result[0]
    why = f"{type(error[0]).__name__}: {error[0]}" if error else f"no answer within {timeout:g} s"
    return [
        Check(name, False, f"the check itself failed: {why}", required=True)
        for name in ("desktop", "default channels")
    ]


async def _channel_checks(config: Config, loaded: LoadedSettings, in_kernel: bool) -> list[Check]:
    from ..channels.desktop import DesktopChannel
    from ..delivery.dispatcher import Dispatcher
    from ..runtime.channel_check import build_channel

    desktop = DesktopChannel(ask=False)  # the doctor looks: it asks the user nothing
    dispatcher = Dispatcher(channels={"desktop": desktop}, make_channel=build_channel)
    try:
        checks = [await _desktop_check(desktop, config)]
        checks.append(await _browser_check(dispatcher, in_kernel))
        checks.append(await _default_channels_check(dispatcher, config, loaded, in_kernel))
        return checks
    finally:
        await dispatcher.close()


async def _desktop_check(channel: Any, config: Config) -> Check:
    from .desktop import desktop_facts

    try:
        facts = await desktop_facts(channel)
    except Exception as exc:
        return Check(
            "desktop", False, f"the check itself failed: {type(exc).__name__}: {exc}", required=True
        )
    if facts.available.ok:
        server = f", {facts.server}" if facts.server else ""
        summary = f"toasts can be shown ({facts.backend}{server})"
    else:
        summary = f"toasts cannot be shown: {facts.available.reason}"
    # needed when notices go there: automatic channels, or desktop named in the settings
    needed = not config.channels or "desktop" in config.channels
    return Check(
        "desktop",
        facts.available.ok,
        summary,
        (*facts.lines, *facts.notes),
        required=needed,
        facts=facts.details,
    )


async def _browser_check(dispatcher: Any, in_kernel: bool) -> Check:
    if not in_kernel:
        return Check(
            "browser",
            None,
            NOT_IN_KERNEL,
            ("in a notebook, `%remind status` says whether one is connected",),
        )
    state = await dispatcher.availability(["browser"])
    text = state.get("browser", "unavailable: unknown")
    ok = text == "available"
    summary = "a browser front end is connected" if ok else text
    return Check("browser", ok, summary)


async def _default_channels_check(
    dispatcher: Any, config: Config, loaded: LoadedSettings, in_kernel: bool
) -> Check:
    if config.channels:
        source = loaded.sources.get("channels", "the settings")
        states = await dispatcher.availability(config.channels, config=config)
        broken = {name: state for name, state in states.items() if state != "available"}
        detail = tuple(f"{name}: {state}" for name, state in states.items())
        names = ", ".join(states)
        if broken:
            first, why = next(iter(broken.items()))
            return Check(
                "default channels",
                False,
                f"{names} (from {source}) — {first} {why}",
                detail,
                required=True,
            )
        return Check("default channels", True, f"{names} (from {source})", detail, required=True)
    chosen = await dispatcher.default_channels(wait=False)
    states = await dispatcher.availability(chosen.channels)
    ok = all(state == "available" for state in states.values())
    why = [
        "chosen automatically (no `channels` setting): desktop where it can show toasts, "
        "else a connected browser, else desktop anyway"
    ]
    if not in_kernel:
        why.append("in a notebook kernel the browser may be chosen instead")
    return Check("default channels", ok, str(chosen), tuple(why), required=True)


# -- settings files ------------------------------------------------------------------------------
def check_settings(loaded: LoadedSettings) -> Check:
    """The settings files found, the environment variables used, and what cannot be used."""
    detail = file_lines(loaded)
    variables = sorted({s for s in loaded.sources.values() if s.startswith("NBREMIND_")})
    if variables:
        detail.append("environment: " + ", ".join(variables))
    detail.extend(f"not used: {error}" for error in loaded.errors)
    count = len(loaded.files) - len(loaded.empty)
    read = f"{count} file{'s' if count != 1 else ''} read"
    if loaded.errors:
        more = len(loaded.errors) - 1
        summary = f"cannot be used, left out (the rest applies): {loaded.errors[0]}"
        if more:
            summary += f" (and {more} more below)"
        return Check("settings", False, summary, tuple(detail), required=True)
    return Check("settings", True, f"{read}, every value usable", tuple(detail), required=True)


# -- the outbox ----------------------------------------------------------------------------------
def check_outbox(config: Config, loaded: LoadedSettings | None = None) -> Check:
    """The outbox file and its backlog: deliveries still pending, and whose they are."""
    from ..store.outbox import FILE_NAME, Outbox, data_dir

    if not config.outbox:
        return Check(
            "outbox", None, "turned off (setting outbox): notices are delivered from memory only"
        )
    folder = data_dir(config.data_dir)
    path = folder / FILE_NAME
    source = (loaded.sources.get("data_dir") if loaded else None) or "the platform's data folder"
    where = f"file: {path} (folder from {source})"
    if not path.exists():
        return Check(
            "outbox",
            True,
            "no backlog (no outbox file yet: it is made with the first notice)",
            (where,),
        )
    try:
        box = Outbox(path)
    except Exception as exc:
        return Check("outbox", False, f"cannot be opened: {type(exc).__name__}: {exc}", (where,))
    try:
        stats = box.stats()
        pending = box.pending()
    finally:
        box.close()
    counts = ", ".join(f"{state} {n}" for state, n in stats.items() if state != "notices")
    detail = [where, f"deliveries: {counts}; notices stored: {stats.get('notices', 0)}"]
    if not pending:
        return Check("outbox", True, "no backlog: nothing waits for delivery", tuple(detail))
    now = time.time()
    for record in pending[:SHOW_PENDING]:
        detail.append(
            f"{record.title or record.notice_id} → {record.channel} "
            f"({_age(now - record.created)} old; made by process {record.owner_pid} "
            f"on {record.host})"
        )
    if len(pending) > SHOW_PENDING:
        detail.append(f"… and {len(pending) - SHOW_PENDING} more")
    n = len(pending)
    summary = (
        f"backlog: {n} deliver{'ies' if n != 1 else 'y'} pending (what an ended process "
        "left is delivered by the next nbremind process that starts)"
    )
    return Check("outbox", True, summary, tuple(detail))


def _age(seconds: float) -> str:
    from ..core.notice import format_duration

    return format_duration(max(seconds, 0.0))


# -- the run history -----------------------------------------------------------------------------
def check_history(config: Config) -> Check:
    """Where the run history is kept."""
    from ..store.runs import history_path

    path = history_path(config)
    there = "exists" if path.exists() else "not made yet: made with the first task"
    return Check("history", None, f"kept in {path}", (f"file: {path} ({there})",))


# -- the GPUs ------------------------------------------------------------------------------------
def check_gpu(sampler: GpuSampler | None = None) -> Check:
    """Whether NVIDIA's management library answers here (through ``sampler``, default a new
    one), and how many devices it sees."""
    if sampler is None:
        from ..runtime.gpu import GpuSampler

        sampler = GpuSampler()
    sampler.reading(time.monotonic())
    why = sampler.why_not()
    if why is not None:
        return Check("gpu", None, f"none ({why}): --gpu-mem and GPU-idle stalls do nothing here")
    n = sampler.devices_here or 0
    return Check(
        "gpu",
        None,
        f"NVML answers, {n} device{'s' if n != 1 else ''}: --gpu-mem and GPU-idle stalls watch "
        "the devices a task's process uses",
        ("in a notebook, `%remind status` says what its kernel uses",),
    )


# -- the memory limit ----------------------------------------------------------------------------
def check_memory_limit(facts: dict[str, Any] | None = None) -> Check:
    """The memory limit a ``mem_limit`` percent is of here (a memory-limited cgroup's, else
    the RAM), where it came from, and what a ``mem_limit`` is judged by; ``facts`` gets the
    same as JSON-ready values."""
    from ..runtime.memory_limit import find_scope

    scope = find_scope()
    if facts is not None:
        facts.update(scope.to_dict())
    if scope.cgroup:
        judged = "the cgroup's working set (its usage less the file cache it can drop)"
        detail = [f"file: {scope.where}", f"mem_limit is judged by {judged}"]
    else:
        detail = ["mem_limit is judged by the process's RSS (a command's: its process tree's)"]
    detail.extend(scope.notes)
    summary = f"{scope.describe()} — mem_limit percents are of it"
    return Check("memory limit", None, summary, tuple(detail))

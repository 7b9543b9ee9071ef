"""The memory limit that applies to this process: the tightest memory limit of its cgroup
and the cgroup's ancestors (cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``), else
the machine's RAM.

A ``mem_limit`` of ``P%`` is of that limit, and in a memory-limited cgroup the memory it is
judged by is what the kernel compares with the limit before its OOM killer acts: the
cgroup's usage less the file cache it can drop (its *working set*). Where no cgroup limits
memory (or its limit is above the RAM), the process's RSS is judged, against the RAM.

The cgroup is found from ``/proc/self/cgroup``: the ``0::/path`` line (v2) or the line of
the ``memory`` controller (v1). Each directory from that cgroup up to the hierarchy's root
is read, the root included: in a container with its own cgroup namespace the process is in
``/`` and the root *is* the container's cgroup. A directory that is not there (a container
that sees only its own cgroup, mounted at the root) is passed over.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ..core.notice import format_size

__all__ = ["V1_UNLIMITED", "CgroupScope", "MemoryScope", "find_scope", "total_ram"]

#: A cgroup v1 ``memory.limit_in_bytes`` from this value up means "no limit" (the kernel
#: writes its largest page count, about 2**63, there).
V1_UNLIMITED = 2**60
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


class MemoryScope:
    """Where the OOM killer's limit comes from, when no cgroup limits memory: the RAM.

    ``limit`` is the bytes a ``mem_limit`` percent is of (``None``: unknown), ``kind`` says
    what it is (``"RAM"``, ``"cgroup v2"``, ``"cgroup v1"``), ``where`` the file it was read
    from (``"RAM"`` here) and ``notes`` what could not be read on the way, or why a cgroup's
    limit does not apply.
    """

    #: Whether the limit is a cgroup's (then :meth:`working_set` is what is judged).
    cgroup = False

    def __init__(
        self, kind: str, limit: int | None, where: str = "", notes: tuple[str, ...] = ()
    ) -> None:
        self.kind = kind
        self.limit = limit
        self.where = where
        self.notes = notes

    def working_set(self) -> int | None:
        """The cgroup's memory in use, less what the kernel can drop (``None``: no cgroup)."""
        return None

    def describe(self) -> str:
        """One line: ``64 GB of RAM (no container limit)``."""
        why = self.notes[-1] if self.notes else "no container limit"
        if self.limit is None:
            return f"unknown ({why}, and the RAM could not be read)"
        return f"{format_size(self.limit)} of RAM ({why})"

    def to_dict(self) -> dict[str, Any]:
        """The scope as JSON-ready values: ``bytes``, ``kind``, ``where``, ``cgroup`` (its
        path, or ``None``), ``summary`` (:meth:`describe`) and ``notes``."""
        return {
            "bytes": self.limit,
            "kind": self.kind,
            "where": self.where,
            "cgroup": None,
            "summary": self.describe(),
            "notes": list(self.notes),
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class CgroupScope(MemoryScope):
    """A memory-limited cgroup: ``limit`` read from ``where`` (its limit file), ``path`` the
    cgroup (as ``/proc/self/cgroup`` names it), and the two files its working set is read
    from: ``usage`` (``memory.current`` / ``memory.usage_in_bytes``) less the ``stat_key``
    line of ``stat`` (``memory.stat``'s ``inactive_file`` / ``total_inactive_file``)."""

    cgroup = True

    def __init__(
        self,
        kind: str,
        limit: int,
        where: str,
        path: str,
        usage: str,
        stat: str,
        stat_key: str,
        notes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(kind, limit, where, notes)
        self.path = path
        self.usage = usage
        self.stat = stat
        self.stat_key = stat_key
        self._needle = b"\n" + stat_key.encode() + b" "

    def working_set(self) -> int | None:
        """The cgroup's usage less its inactive file cache, read now (two small files);
        ``None`` when either cannot be read or parsed. Never raises."""
        try:
            used = int(_read(self.usage))
            stat = b"\n" + _read(self.stat)
            at = stat.index(self._needle) + len(self._needle)
            end = stat.find(b"\n", at)
            inactive = int(stat[at:] if end < 0 else stat[at:end])
        except (OSError, ValueError):
            return None
        return max(used - inactive, 0)

    def describe(self) -> str:
        """One line: ``30 GB (cgroup v2 memory.max of /docker/abc)``."""
        name = os.path.basename(self.where)
        return f"{format_size(self.limit or 0)} ({self.kind} {name} of {self.path})"

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`MemoryScope.to_dict`, ``cgroup`` being the cgroup's path."""
        return {**super().to_dict(), "cgroup": self.path}


def total_ram() -> int | None:
    """The machine's RAM in bytes (psutil), or ``None`` when it cannot be read."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:
        return None


def find_scope(
    root: Path = CGROUP_ROOT,
    proc_cgroup: Path = PROC_CGROUP,
    ram: Callable[[], int | None] = total_ram,
) -> MemoryScope:
    """The memory limit of this process: the tightest of its cgroup's and its ancestors'
    below the RAM (``ram()``), else the RAM. ``root`` is where the cgroup hierarchies are
    mounted, ``proc_cgroup`` the file naming this process's cgroups. Never raises; reads
    everything anew (the caller keeps the scope)."""
    total = ram()
    notes: list[str] = []
    try:
        return _find(root, proc_cgroup, total, notes)
    except Exception as exc:  # an odd file system: say so, judge by the RAM
        notes.append(f"the cgroups could not be read: {type(exc).__name__}: {exc}")
        return MemoryScope("RAM", total, "RAM", tuple(notes))


def _find(root: Path, proc_cgroup: Path, total: int | None, notes: list[str]) -> MemoryScope:
    try:
        v2_path, v1_path = _own_cgroups(proc_cgroup.read_text(errors="replace"))
    except OSError as exc:
        notes.append(f"{proc_cgroup} unreadable: {_why(exc)}")
        v2_path = v1_path = None
    found: list[_Limit] = []
    if v2_path is not None:
        v2_root = root if (root / "cgroup.controllers").exists() else root / "unified"
        found.extend(_limits(_V2, v2_root, v2_path, notes))
    if v1_path is not None:
        for v1_root in _v1_roots(root):
            found.extend(_limits(_V1, v1_root, v1_path, notes))
    below = [f for f in found if total is None or f.value < total]
    if below:
        best = min(below, key=lambda f: f.value)
        return CgroupScope(
            best.kind.name,
            best.value,
            str(best.folder / best.kind.limit_file),
            best.path,
            str(best.folder / best.kind.usage_file),
            str(best.folder / "memory.stat"),
            best.kind.stat_key,
            tuple(notes),
        )
    if found:
        top = min(found, key=lambda f: f.value)
        notes.append(
            f"the {top.kind.name} {top.kind.limit_file} of {top.path}, "
            f"{format_size(top.value)}, is not below the RAM"
        )
    return MemoryScope("RAM", total, "RAM", tuple(notes))


class _Kind(NamedTuple):
    name: str
    limit_file: str
    usage_file: str
    stat_key: str


_V2 = _Kind("cgroup v2", "memory.max", "memory.current", "inactive_file")
_V1 = _Kind("cgroup v1", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


class _Limit(NamedTuple):
    kind: _Kind
    value: int
    folder: Path
    path: str


def _own_cgroups(text: str) -> tuple[str | None, str | None]:
    """The v2 cgroup (``0::/path``) and the v1 ``memory`` cgroup named by ``text`` (the
    content of ``/proc/self/cgroup``)."""
    v2 = v1 = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        number, controllers, path = parts
        if number == "0" and controllers == "":
            v2 = path.strip()
        elif "memory" in controllers.split(","):
            v1 = path.strip()
    return v2, v1


def _v1_roots(root: Path) -> list[Path]:
    """Where the v1 ``memory`` hierarchy is mounted under ``root`` (``memory``, or a folder
    named for several controllers such as ``cpu,memory``)."""
    named = root / "memory"
    if named.is_dir():
        return [named]
    try:
        return sorted(p for p in root.iterdir() if "memory" in p.name.split(",") and p.is_dir())
    except OSError:
        return []


def _limits(kind: _Kind, top: Path, path: str, notes: list[str]) -> list[_Limit]:
    """The limits of cgroup ``path`` and its ancestors in the hierarchy mounted at ``top``
    (``notes`` gets what could not be read)."""
    parts = [p for p in path.split("/") if p]
    if ".." in parts:  # a cgroup outside this namespace: only its root is seen
        parts = []
    out = []
    for depth in range(len(parts), -1, -1):
        folder = top.joinpath(*parts[:depth])
        cgroup = "/" + "/".join(parts[:depth])
        file = folder / kind.limit_file
        try:
            text = file.read_text().strip()
        except FileNotFoundError:
            continue  # not there (not memory-controlled, or not seen from here)
        except (OSError, UnicodeError) as exc:
            notes.append(f"{file} unreadable: {_why(exc)}")
            continue
        if text == "max":
            continue
        try:
            value = int(text)
        except ValueError:
            notes.append(f"{file} unreadable: {text[:40]!r} is not a number of bytes")
            continue
        if value <= 0 or (kind is _V1 and value >= V1_UNLIMITED):
            continue
        out.append(_Limit(kind, value, folder, cgroup))
    return out


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__

"""A real memory-limited cgroup for a test, where this machine lets one be made (Linux, as
root, a writable hierarchy with the memory controller); the test skips with the reason
otherwise. Such a skip is not counted as a missing component: few machines allow it."""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["CGROUP_ROOT", "LimitedCgroup", "limited_cgroup"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class LimitedCgroup:
    """A cgroup made for a test: its ``version`` (``"v2"``, ``"v1"``), ``folder``, ``path``
    (as /proc/self/cgroup names it) and the file its limit is in."""

    version: str
    folder: Path
    path: str
    limit_file: str

    def run_in(self, argv: list[str]) -> list[str]:
        """``argv`` as a command that moves itself into this cgroup first, then runs: it
        is there from its first allocation."""
        import shlex

        command = " ".join(shlex.quote(arg) for arg in argv)
        return [
            "sh",
            "-c",
            f"echo $$ > {shlex.quote(str(self.folder / 'cgroup.procs'))} && exec {command}",
        ]


def _v2_parent() -> tuple[Path, Path]:
    """The cgroup v2 hierarchy's root and the folder where a memory-limited child may be
    made: the root itself, with ``memory`` among its controllers (enabled for children)."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if not controllers.exists():
        pytest.skip(f"no cgroup v2 hierarchy at {CGROUP_ROOT} (cgroup v1 or hybrid here)")
    if "memory" not in controllers.read_text().split():
        pytest.skip(f"the memory controller is not in {controllers}")
    subtree = CGROUP_ROOT / "cgroup.subtree_control"
    if "memory" not in subtree.read_text().split():
        try:
            subtree.write_text("+memory")
        except OSError as exc:
            pytest.skip(f"cannot enable memory for child cgroups in {subtree}: {exc}")
    return CGROUP_ROOT, CGROUP_ROOT


def _v1_parent() -> tuple[Path, Path]:
    """The cgroup v1 ``memory`` hierarchy's root and this process's own cgroup in it."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            top = CGROUP_ROOT / "memory"
            folder = top / path.lstrip("/")
            if folder.is_dir():
                return top, folder
            pytest.skip(f"this process's memory cgroup {path} is not seen at {folder}")
    pytest.skip("no cgroup v1 memory controller here")


@contextlib.contextmanager
def limited_cgroup(version: str, limit: int) -> Iterator[LimitedCgroup]:
    """A child cgroup of cgroup ``version`` (``"v2"`` or ``"v1"``) whose memory is limited
    to ``limit`` bytes, removed on exit; skips where this machine does not allow one."""
    if sys.platform != "linux":
        pytest.skip("cgroups are Linux's")
    top, parent = _v2_parent() if version == "v2" else _v1_parent()
    folder = parent / f"nbremind-test-{uuid.uuid4().hex[:8]}"
    try:
        folder.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a cgroup in {parent}: {exc}")
    try:
        limit_file = "memory.max" if version == "v2" else "memory.limit_in_bytes"
        try:
            (folder / limit_file).write_text(str(limit))
        except OSError as exc:
            pytest.skip(f"cannot limit the memory of {folder}: {exc}")
        yield LimitedCgroup(version, folder, "/" + folder.relative_to(top).as_posix(), limit_file)
    finally:
        _remove(folder)


def _remove(folder: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # its last process is still leaving
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)

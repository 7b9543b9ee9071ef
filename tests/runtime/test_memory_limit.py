"""The memory limit that applies to a process, found in fake cgroup trees (v2, v1, limits in
an ancestor, none, garbage and unreadable files), and the working set read from them."""

from __future__ import annotations

from pathlib import Path

import psutil

from nbremind.core.clock import SystemClock
from nbremind.core.task import Task
from nbremind.core.thresholds import MemoryReading
from nbremind.runtime.memory_limit import CgroupScope, MemoryScope, find_scope
from nbremind.runtime.readings import TickReadings

RAM = 64_000_000_000
V1_NONE = "9223372036854771712\n"  # what v1 writes when nothing is limited


def _ram() -> int:
    return RAM


def _tree(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (path under ``root`` -> content) and return ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _proc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


def _v2(tmp_path: Path, files: dict[str, str], own: str) -> tuple[Path, Path]:
    root = _tree(tmp_path / "cg", {"cgroup.controllers": "cpu io memory pids\n", **files})
    return root, _proc(tmp_path, f"0::{own}\n")


STAT_V2 = "anon 900000000\nfile 600000000\nkernel 1000\ninactive_file 200000000\nactive_file 4\n"


# -- cgroup v2 ------------------------------------------------------------------------------------
def test_v2_the_tightest_limit_is_an_ancestors_and_its_working_set_is_read(tmp_path: Path) -> None:
    root, proc = _v2(
        tmp_path,
        {
            "docker/memory.max": "3000000000\n",
            "docker/memory.current": "1500000000\n",
            "docker/memory.stat": STAT_V2,
            "docker/abc/memory.max": "4000000000\n",
            "docker/abc/memory.current": "1400000000\n",
            "docker/abc/memory.stat": STAT_V2,
            "docker/abc/inner/memory.max": "max\n",
        },
        "/docker/abc/inner",
    )

    scope = find_scope(root, proc, _ram)

    assert isinstance(scope, CgroupScope) and scope.cgroup
    assert (scope.kind, scope.limit, scope.path) == ("cgroup v2", 3_000_000_000, "/docker")
    assert scope.where == str(root / "docker" / "memory.max")
    assert scope.working_set() == 1_500_000_000 - 200_000_000  # the limiting cgroup's
    assert scope.describe() == "3.0 GB (cgroup v2 memory.max of /docker)"
    assert scope.to_dict() == {
        "bytes": 3_000_000_000,
        "kind": "cgroup v2",
        "where": str(root / "docker" / "memory.max"),
        "cgroup": "/docker",
        "summary": "3.0 GB (cgroup v2 memory.max of /docker)",
        "notes": [],
    }


def test_v2_the_working_set_is_read_anew_each_time(tmp_path: Path) -> None:
    root, proc = _v2(
        tmp_path,
        {"a/memory.max": "2000000000", "a/memory.current": "700", "a/memory.stat": STAT_V2},
        "/a",
    )
    scope = find_scope(root, proc, _ram)
    assert scope.working_set() == 0  # less cache than usage is never below zero

    (root / "a" / "memory.current").write_text("1234567890\n")
    (root / "a" / "memory.stat").write_text("anon 1\ninactive_file 34567890\n")

    assert scope.working_set() == 1_200_000_000


def test_v2_unlimited_is_the_ram(tmp_path: Path) -> None:
    root, proc = _v2(
        tmp_path,
        {"user.slice/memory.max": "max\n", "user.slice/me/memory.max": "max\n"},
        "/user.slice/me",
    )

    scope = find_scope(root, proc, _ram)

    assert type(scope) is MemoryScope and not scope.cgroup
    assert (scope.kind, scope.limit, scope.where, scope.notes) == ("RAM", RAM, "RAM", ())
    assert scope.working_set() is None
    assert scope.describe() == "64.0 GB of RAM (no container limit)"
    assert scope.to_dict()["cgroup"] is None


def test_v2_in_a_container_the_namespace_root_is_its_cgroup(tmp_path: Path) -> None:
    root, proc = _v2(
        tmp_path,
        {"memory.max": "2000000000\n", "memory.current": "5000", "memory.stat": STAT_V2},
        "/",
    )

    scope = find_scope(root, proc, _ram)

    assert (scope.kind, scope.limit, scope.where) == (
        "cgroup v2",
        2_000_000_000,
        str(root / "memory.max"),
    )
    assert scope.describe() == "2.0 GB (cgroup v2 memory.max of /)"


def test_v2_a_cgroup_not_seen_from_here_falls_back_to_the_root(tmp_path: Path) -> None:
    """A container that sees only its own cgroup, mounted at the root, while
    /proc/self/cgroup names its path on the host."""
    root, proc = _v2(
        tmp_path,
        {"memory.max": "1500000000", "memory.current": "1", "memory.stat": STAT_V2},
        "/docker/abc",
    )

    scope = find_scope(root, proc, _ram)

    assert (scope.limit, scope.where) == (1_500_000_000, str(root / "memory.max"))


def test_a_limit_not_below_the_ram_is_no_limit(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, {"big/memory.max": "128000000000\n"}, "/big")

    scope = find_scope(root, proc, _ram)

    assert (scope.cgroup, scope.kind, scope.limit) == (False, "RAM", RAM)
    assert scope.describe() == (
        "64.0 GB of RAM (the cgroup v2 memory.max of /big, 128 GB, is not below the RAM)"
    )


# -- cgroup v1 ------------------------------------------------------------------------------------
STAT_V1 = (
    "cache 500\nrss 600\ninactive_file 11111\nactive_file 2\n"
    "total_cache 5000\ntotal_rss 6000\ntotal_inactive_file 100000000\ntotal_active_file 3\n"
)


def test_v1_reads_the_memory_controllers_cgroup_and_ignores_huge_values(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "cg",
        {
            "memory/memory.limit_in_bytes": V1_NONE,
            "memory/process_api/memory.limit_in_bytes": "1000000000\n",
            "memory/process_api/memory.usage_in_bytes": "900000000\n",
            "memory/process_api/memory.stat": STAT_V1,
            "memory/process_api/x/memory.limit_in_bytes": V1_NONE,
            "unified/cgroup.procs": "",
        },
    )
    proc = _proc(tmp_path, "9:name=systemd:/\n4:memory:/process_api/x\n1:cpu:/\n0::/\n")

    scope = find_scope(root, proc, _ram)

    assert (scope.kind, scope.limit) == ("cgroup v1", 1_000_000_000)
    assert scope.where == str(root / "memory" / "process_api" / "memory.limit_in_bytes")
    assert scope.working_set() == 900_000_000 - 100_000_000  # total_, of the whole subtree
    assert scope.describe() == "1.0 GB (cgroup v1 memory.limit_in_bytes of /process_api)"


def test_v1_with_no_limit_and_a_mount_named_for_two_controllers(tmp_path: Path) -> None:
    root = _tree(
        tmp_path / "cg",
        {
            "cpu,memory/memory.limit_in_bytes": V1_NONE,
            "cpu,memory/a/memory.limit_in_bytes": str(2**60),
        },
    )
    proc = _proc(tmp_path, "3:cpu,memory:/a\n")
    assert find_scope(root, proc, _ram).kind == "RAM"

    (root / "cpu,memory" / "a" / "memory.limit_in_bytes").write_text("500000000\n")
    scope = find_scope(root, proc, _ram)
    assert (scope.kind, scope.limit) == ("cgroup v1", 500_000_000)


# -- what cannot be read ------------------------------------------------------------------------
def test_garbage_and_unreadable_limits_are_passed_over_and_said(tmp_path: Path) -> None:
    root, proc = _v2(
        tmp_path,
        {
            "a/memory.max": "lots of it\n",
            "a/b/memory.max/oops": "",  # a folder where the file should be: unreadable
            "a/b/c/memory.max": "2500000000",
            "a/b/c/memory.current": "garbage",
            "a/b/c/memory.stat": STAT_V2,
        },
        "/a/b/c",
    )

    scope = find_scope(root, proc, _ram)

    assert (scope.limit, scope.path) == (2_500_000_000, "/a/b/c")  # type: ignore[attr-defined]
    assert scope.notes == (
        f"{root / 'a/b/memory.max'} unreadable: Is a directory",
        f"{root / 'a/memory.max'} unreadable: 'lots of it' is not a number of bytes",
    )
    assert scope.working_set() is None  # a usage that is no number
    (root / "a/b/c/memory.current").write_text("3000\n")
    assert scope.working_set() == 0
    (root / "a/b/c/memory.stat").write_text("anon 5\nfile 6\n")  # no inactive_file line
    assert scope.working_set() is None
    (root / "a/b/c/memory.stat").unlink()
    assert scope.working_set() is None


def test_only_garbage_is_the_ram_and_says_why(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, {"a/memory.max": "-\n"}, "/a")

    scope = find_scope(root, proc, _ram)

    assert (scope.kind, scope.limit) == ("RAM", RAM)
    assert scope.describe() == (
        f"64.0 GB of RAM ({root / 'a/memory.max'} unreadable: '-' is not a number of bytes)"
    )


def test_without_proc_self_cgroup_the_ram(tmp_path: Path) -> None:
    root, _ = _v2(tmp_path, {"memory.max": "1000"}, "/")
    gone = tmp_path / "no-such-file"

    scope = find_scope(root, gone, _ram)

    assert (scope.kind, scope.limit, scope.cgroup) == ("RAM", RAM, False)
    assert scope.notes == (f"{gone} unreadable: No such file or directory",)


def test_garbage_in_proc_self_cgroup_is_passed_over_and_never_raises(tmp_path: Path) -> None:
    root, _ = _v2(tmp_path, {"memory.max": "1000000000", "memory.current": "1"}, "/")
    noise = _proc(tmp_path, "garbage\n::\n7\n")
    assert find_scope(root, noise, _ram).kind == "RAM"  # no line names a cgroup

    odd = find_scope(root, _proc(tmp_path, "0::/a\x00b\n"), _ram)  # a path no file has

    assert (odd.kind, odd.limit) == ("RAM", RAM)
    assert odd.notes[-1].startswith("the cgroups could not be read: ValueError"), odd.notes


def test_with_the_ram_unknown_and_no_limit_the_limit_is_unknown(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, {}, "/")

    scope = find_scope(root, proc, lambda: None)

    assert (scope.kind, scope.limit) == ("RAM", None)
    assert scope.describe() == "unknown (no container limit, and the RAM could not be read)"
    limited = _tree(root, {"memory.max": "123456789", "memory.current": "1", "memory.stat": ""})
    assert find_scope(limited, proc, lambda: None).limit == 123_456_789


def test_the_ram_is_psutils_by_default(tmp_path: Path) -> None:
    root, proc = _v2(tmp_path, {}, "/")
    assert find_scope(root, proc).limit == psutil.virtual_memory().total


def test_this_machine_has_a_scope_that_reads(tmp_path: Path) -> None:
    scope = find_scope()
    ram = psutil.virtual_memory().total
    assert scope.limit is not None and 0 < scope.limit <= ram
    if scope.cgroup:
        used = scope.working_set()
        assert used is not None and used > 0
    else:
        assert (scope.kind, scope.limit, scope.working_set()) == ("RAM", ram, None)


# -- what a tick reads -------------------------------------------------------------------------
def test_a_tick_judges_a_cgroup_by_its_working_set_and_else_by_the_rss(tmp_path: Path) -> None:
    root, proc = _v2(
        tmp_path,
        {"memory.max": "2000000000", "memory.current": "800000000", "memory.stat": STAT_V2},
        "/",
    )
    task = Task("t", clock=SystemClock())
    readings = TickReadings(find_scope(root, proc, _ram))
    readings.new_tick(0.0)
    assert readings.memory(task, 5) == MemoryReading(600_000_000, 2_000_000_000, "cgroup v2")

    plain = TickReadings(MemoryScope("RAM", RAM, "RAM"))
    plain.new_tick(0.0)
    reading = plain.memory(task, None)
    assert reading is not None and reading.source == "process RSS" and reading.total == RAM
    assert reading.used is not None and reading.used > 0

"""The memory limit that applies to this process: a memory-limited cgroup's, else the RAM."""

from __future__ import annotations

__all__ = ["MemoryScope", "find_scope"]


class MemoryScope:
    """Where the OOM killer's limit comes from (placeholder: the RAM only)."""

    cgroup = False

    def __init__(self, kind: str, limit: int | None, where: str = "") -> None:
        self.kind = kind
        self.limit = limit
        self.where = where

    def working_set(self) -> int | None:
        """The cgroup's memory in use, less what the kernel can drop (``None``: no cgroup)."""
        return None


def find_scope() -> MemoryScope:
    """The scope of this process."""
    try:
        import psutil

        total: int | None = int(psutil.virtual_memory().total)
    except Exception:
        total = None
    return MemoryScope("RAM", total)

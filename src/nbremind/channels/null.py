"""A channel that delivers nowhere."""

from __future__ import annotations

from ..core.notice import Notice
from ..delivery.channel import Channel

__all__ = ["NullChannel"]


class NullChannel(Channel):
    """Accepts every notice and drops it."""

    name = "null"

    async def _send(self, notice: Notice) -> None:
        return None

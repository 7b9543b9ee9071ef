"""What every channel is: a name, an availability check, and an async ``send`` that raises."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..core.notice import Notice

__all__ = ["Availability", "Channel", "ChannelError"]


class ChannelError(Exception):
    """A channel could not deliver a notice; ``retryable`` says whether trying again may help,
    ``retry_after`` how many seconds the far end asked to wait first (HTTP ``Retry-After``)."""

    def __init__(
        self, message: str, *, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class Availability:
    """Whether a channel can deliver on this machine, and why not when it cannot."""

    ok: bool
    reason: str = ""

    def __str__(self) -> str:
        return "available" if self.ok else f"unavailable: {self.reason}"


class Channel(ABC):
    """A way to reach the user. Subclasses implement :meth:`_send` and may override
    :meth:`_check`. ``send`` is only ever called on the session's loop thread."""

    #: The name users select the channel by.
    name: str = ""

    def __init__(self) -> None:
        self._availability: Availability | None = None

    async def availability(self, *, refresh: bool = False) -> Availability:
        """Find out once (or again with ``refresh``) whether this channel can deliver."""
        if self._availability is None or refresh:
            try:
                self._availability = await self._check()
            except Exception as exc:  # a check must not take the loop down
                self._availability = Availability(False, f"{type(exc).__name__}: {exc}")
        return self._availability

    def known_availability(self) -> Availability | None:
        """What :meth:`availability` would answer without checking again, when a channel
        keeps its first answer (``None``: ask :meth:`availability`)."""
        if type(self).availability is Channel.availability:
            return self._availability
        return None  # a channel that tells it its own way (the browser's front ends)

    async def _check(self) -> Availability:
        return Availability(True)

    def notes(self) -> list[str]:
        """What ``%remind status`` should say of this channel beyond its availability (the
        desktop's: a notification server that shows no buttons); none by default."""
        return []

    async def send(self, notice: Notice) -> None:
        """Deliver ``notice``; raises :class:`ChannelError` (or any error) on failure."""
        await self._send(notice)

    @abstractmethod
    async def _send(self, notice: Notice) -> None: ...

    async def close(self) -> None:  # noqa: B027 - optional hook, most channels hold nothing
        """Release what the channel holds; called when the session stops."""

"""Every other URL scheme goes to apprise: ntfy, Slack, Telegram, Discord, Teams and more.

apprise is an optional extra (``pip install "nbremind[apprise]"``), imported only when such
a channel is made. apprise reports a failed send as ``False`` and logs why; this channel
turns that into a :class:`ChannelError` carrying apprise's warning. apprise does not say
whether a failure is lasting, so its failures are retryable (within the retry bounds).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from ..core.notice import Notice
from ..core.secrets import reveal
from ..core.urls import redact_url, url_secrets
from ..core.workers import run_blocking
from ..delivery.channel import Channel, ChannelError

__all__ = ["AppriseChannel", "apprise_installed"]


def apprise_installed() -> bool:
    """Whether the optional apprise package can be imported."""
    return importlib.util.find_spec("apprise") is not None


def _asset(apprise: Any) -> Any:
    """apprise settings that keep each send on the calling thread.

    apprise 2 hands sends to thread pools of its own (``async_mode``, ``service_timeout``);
    Python refuses new work for such pools once interpreter shutdown begins, so a notice
    sent at exit would fail. nbremind already runs the send on its own worker thread and
    bounds it with ``send_timeout``.
    """
    settings: dict[str, object] = {"async_mode": False}
    if hasattr(apprise.AppriseAsset, "_service_timeout"):  # apprise 2: 0 turns it off
        settings["service_timeout"] = 0
    return apprise.AppriseAsset(**settings)


class AppriseChannel(Channel):
    """Delivers through the apprise service ``url`` names (``ntfy://``, ``slack://``, ...)."""

    def __init__(self, url: str, *, name: str | None = None, source: str = "channels") -> None:
        super().__init__()
        import apprise

        self._url = reveal(url)
        asset = _asset(apprise)
        capture: Any = apprise.LogCapture  # apprise logs a URL it cannot parse, secrets and all
        problem = ""
        try:
            with capture(level=logging.ERROR):
                service: Any = apprise.Apprise.instantiate(self._url, asset=asset)
        except Exception as exc:  # a plugin's parser can fail on a URL it should refuse
            service, problem = None, f": apprise's parser failed ({type(exc).__name__})"
        if not service:
            raise ValueError(
                f"{source}: {redact_url(self._url)} is not a URL apprise understands "
                f"(see apprise's list of services){problem}"
            )
        self._shown = str(service.url(privacy=True))
        self.name = name or self._shown
        self._apprise: Any = apprise.Apprise(asset=asset)
        self._apprise.add(service)

    def describe(self) -> str:
        """apprise's own privacy-masked form of the URL."""
        return f"apprise {self._shown}"

    def secrets(self) -> list[str]:
        """Texts that must never be shown (masked in every recorded error)."""
        return url_secrets(self._url)

    async def _send(self, notice: Notice) -> None:
        await run_blocking(self._notify, notice)

    def _notify(self, notice: Notice) -> None:
        import apprise

        capture: Any = apprise.LogCapture
        with capture(level=logging.WARNING) as captured:
            ok = self._apprise.notify(
                title=notice.title,
                body=notice.body or notice.title,
                notify_type=(
                    apprise.NotifyType.FAILURE
                    if notice.urgency == "critical"
                    else apprise.NotifyType.INFO
                ),
            )
            why = captured.getvalue().strip().splitlines()
        if not ok:
            reason = why[-1] if why else "no reason given"
            raise ChannelError(f"apprise could not deliver: {reason}", retryable=True)

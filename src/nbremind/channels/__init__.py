"""Channels by name. Platform libraries are imported only when their channel is made.

``browser`` reaches the user through the panel and status-line widgets of the notebook
front end, which register the pages that show them with :mod:`nbremind.core.browser_views`;
the channel only reads that registry, so it lives here like the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core.channel_defs import channel_def, channel_wants
from ..core.secrets import reveal
from ..core.urls import (
    check_url,
    display_name,
    hide_urls,
    redact_url,
    remember,
    scheme_of,
    shown,
    url_secrets,
)
from ..delivery.channel import Availability, Channel, ChannelError

if TYPE_CHECKING:
    from ..core.config import Config

__all__ = [
    "CHANNELS",
    "Availability",
    "Channel",
    "ChannelError",
    "channel_def",
    "channel_wants",
    "check_channel_name",
    "display_name",
    "hide_urls",
    "make_channel",
    "shown",
]

#: Channel name -> "module:class", imported on first use so the core stays light.
CHANNELS = {
    "browser": "nbremind.channels.browser:BrowserChannel",
    "desktop": "nbremind.channels.desktop:DesktopChannel",
    "memory": "nbremind.channels.memory:MemoryChannel",
    "null": "nbremind.channels.null:NullChannel",
}


def make_channel(name: str, source: str = "channels", config: Config | None = None) -> Channel:
    """Build the channel called ``name``; an unknown name raises ``ValueError``.

    ``name`` is a built-in channel (:data:`CHANNELS`), a named channel of
    ``config.channel_defs``, or a URL: ``http(s)://`` a webhook, ``smtp://`` / ``smtps://``
    e-mail, any other scheme an apprise service (when apprise is installed).
    """
    if name not in CHANNELS:
        return _make_remote(name, source, config)
    target = CHANNELS[name]
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    channel: Channel = cls()
    return channel


# -- remote channels: URLs and named channels -------------------------------------------------
_WEBHOOK = ("http", "https")
_EMAIL = ("smtp", "smtps")


def check_channel_name(
    name: str, source: str, defs: Mapping[str, Mapping[str, Any]] | None = None
) -> None:
    """Raise ``ValueError`` unless ``name`` is a built-in channel, a key of ``defs`` or a URL
    a channel can be made from (the channel is built, which does no I/O)."""
    if name in CHANNELS or (isinstance(defs, Mapping) and name in defs):
        return
    if scheme_of(name) is None:
        known = sorted(CHANNELS) + sorted(defs or ())
        raise ValueError(
            f"{source}: {shown(name)} is not a channel; choose from {', '.join(known)}, "
            "a channel defined in channel_defs, or a URL (https://, smtp://, smtps://, "
            "or any apprise service)"
        )
    _make_remote(name, source, None)


def _make_remote(name: str, source: str, config: Config | None) -> Channel:
    spec = channel_def(name, config)
    if spec is not None:
        return make_from_def(name, spec, source, config)
    if scheme_of(name) is None:
        known = sorted(CHANNELS) + sorted(config.channel_defs if config is not None else ())
        raise ValueError(
            f"{source}: {shown(name)} is not a channel; choose from {', '.join(known)}, "
            "or a URL (https://, smtp://, smtps://, or any apprise service)"
        )
    return make_from_def(None, {"url": name}, source, config)


def make_from_def(
    name: str | None, spec: Mapping[str, Any], source: str, config: Config | None = None
) -> Channel:
    """Build a remote channel from a named channel's settings (``{"url": ..., ...}``)."""
    url = str(reveal(spec["url"]))
    scheme = scheme_of(url)
    # the URL's password, tokens, the signing secret and header values: masked everywhere
    remember(
        url_secrets(url)[1:]
        + [str(reveal(v)) for v in (spec.get("headers") or {}).values()]
        + ([str(reveal(spec["secret"]))] if spec.get("secret") else [])
    )
    timeout = config.send_timeout if config is not None else 10.0
    where = f"{source}: {name}" if name else source
    check_url(url, where)  # a URL no channel can use is reported now, not at the first notice
    if scheme in _WEBHOOK:
        from .webhook import WebhookChannel

        return WebhookChannel(
            url, name=name, headers=spec.get("headers"), secret=spec.get("secret"), timeout=timeout
        )
    if scheme in _EMAIL:
        from .email import EmailChannel

        return EmailChannel(
            url,
            name=name,
            to=spec.get("to"),
            sender=spec.get("from"),
            timeout=timeout,
            source=where,
        )
    from .apprise_channel import AppriseChannel, apprise_installed

    if scheme is None or not apprise_installed():
        raise ValueError(
            f"{where}: {redact_url(url)} is not an http(s):// webhook or smtp(s):// URL, and "
            'other services need apprise: pip install "nbremind[apprise]"'
        )
    return AppriseChannel(url, name=name, source=where)

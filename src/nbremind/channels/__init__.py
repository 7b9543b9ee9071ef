"""Channels by name. Platform libraries are imported only when their channel is made.

``browser`` lives with the notebook front end (``nbremind.ipython.browser``): it reaches the
user through the panel and status-line widgets, so it belongs to the layer that makes them.
"""

from __future__ import annotations

import importlib

from .base import Availability, Channel, ChannelError

__all__ = ["CHANNELS", "Availability", "Channel", "ChannelError", "make_channel"]

#: Channel name -> "module:class", imported on first use so the core stays light.
CHANNELS = {
    "browser": "nbremind.ipython.browser:BrowserChannel",
    "desktop": "nbremind.channels.desktop:DesktopChannel",
    "memory": "nbremind.channels.memory:MemoryChannel",
    "null": "nbremind.channels.null:NullChannel",
}


def make_channel(name: str, source: str = "channels") -> Channel:
    """Build the channel called ``name``; an unknown name raises ``ValueError``."""
    try:
        target = CHANNELS[name]
    except KeyError:
        raise ValueError(
            f"{source}: {name!r} is not a channel; choose from {', '.join(sorted(CHANNELS))}"
        ) from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    channel: Channel = cls()
    return channel

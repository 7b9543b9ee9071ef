"""The channels layer's answers to :mod:`nbremind.core.channel_names`, installed by the
session module when it is imported. Names a call gives without named channels of its own
are looked up in the process's settings (``process_defs``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..core.channel_names import BUILT_IN

if TYPE_CHECKING:
    from ..channels.desktop import ToastActions
    from ..core.config import Config
    from ..delivery.channel import Channel

__all__ = ["ChannelBuilder", "Registry", "build_channel", "channel_notes"]


class Registry:
    """Checks names and named channels with the channel registry (imported when asked);
    ``process_defs()`` gives the named channels of the process's settings."""

    def __init__(self, process_defs: Callable[[], Mapping[str, Any]]) -> None:
        self.process_defs = process_defs

    def check_names(
        self, names: tuple[str, ...], where: str, defs: Mapping[str, Any] | None
    ) -> None:
        from ..channels import check_channel_name
        from ..core.urls import scheme_of

        if defs is None and any(n not in BUILT_IN and scheme_of(n) is None for n in names):
            defs = self.process_defs()
        for name in names:
            check_channel_name(name, where, defs)

    def check_def(self, name: str, spec: Mapping[str, Any], where: str) -> None:
        from ..channels import make_from_def

        make_from_def(name, spec, where)


def build_channel(name: str, config: Config | None) -> Channel:
    """The dispatcher's channel maker: the registry's ``make_channel`` (imported when the
    first channel is made, so ``import nbremind`` stays light)."""
    from ..channels import make_channel

    return make_channel(name, config=config)


class ChannelBuilder:
    """The dispatcher's channel maker that also hands the desktop channel what its toasts'
    click and buttons do (``actions()``, asked when that channel is made)."""

    def __init__(self, actions: Callable[[], ToastActions]) -> None:
        self.actions = actions

    def __call__(self, name: str, config: Config | None) -> Channel:
        channel = build_channel(name, config)
        if name == "desktop":
            from ..channels.desktop import DesktopChannel

            if isinstance(channel, DesktopChannel) and channel.actions is None:
                channel.actions = self.actions()
        return channel


def channel_notes(channels: Mapping[str, Channel]) -> list[str]:
    """``"<name>: <note>"`` for what the channels made so far say beyond their availability
    (a desktop notification server that shows no buttons)."""
    return [f"{name}: {note}" for name, channel in channels.items() for note in channel.notes()]

"""Which channel names exist: a question only the channels layer can answer.

The settings value (:mod:`nbremind.core.config`) and the option table check channel names
and named channels when they are given, but the registry that knows them lives two layers
up. It fills this port in when it is imported (``import nbremind`` does it); until then,
names are checked for their form only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = [
    "BUILT_IN",
    "DEFAULT_CANDIDATES",
    "ChannelRegistry",
    "check_channel_def",
    "check_channel_names",
    "register_registry",
]

#: The channels known by name alone (the registry says where each one lives).
BUILT_IN = ("browser", "desktop", "memory", "null")
#: The channels notices go to when the settings name none, best first (the first that can
#: deliver here is chosen).
DEFAULT_CANDIDATES = ("desktop", "browser")


class ChannelRegistry(Protocol):
    """What the channels layer answers about names."""

    def check_names(
        self, names: tuple[str, ...], where: str, defs: Mapping[str, Any] | None
    ) -> None:
        """Raise ``ValueError`` naming ``where`` unless each name is a built-in channel, a
        named channel (of ``defs``, else of the process's settings) or a usable URL."""

    def check_def(self, name: str, spec: Mapping[str, Any], where: str) -> None:
        """Raise ``ValueError`` naming ``where`` unless a channel can be built from the
        named channel ``spec`` (building one does no I/O)."""


_registry: ChannelRegistry | None = None


def register_registry(registry: ChannelRegistry) -> None:
    """Install the channels layer's answers (called once, when it is imported)."""
    global _registry
    _registry = registry


def check_channel_names(
    names: tuple[str, ...], where: str, defs: Mapping[str, Any] | None = None
) -> None:
    """Each name must be a built-in channel, a named channel (of ``defs``, else of the
    process's settings) or a URL a channel can be made from."""
    if _registry is not None:
        _registry.check_names(names, where, defs)


def check_channel_def(name: str, spec: Mapping[str, Any], where: str) -> None:
    """A channel can be built from the named channel ``spec``."""
    if _registry is not None:
        _registry.check_def(name, spec, where)

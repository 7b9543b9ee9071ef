"""Shared fixtures; component fixtures live in their own modules and are re-exported here."""

from __future__ import annotations

from _desktop_bus import bare_bus, desktop_bus  # noqa: F401
from _kernel import kernel, kernel_factory, remind_kernel  # noqa: F401

"""``%load_ext`` / ``%unload_ext`` / ``%reload_ext nbremind``: install and remove it all once."""

from __future__ import annotations

from typing import Any

from ..runtime.session import get_session
from .frontend import CellFrontend
from .magics import RemindMagics

__all__ = ["load", "unload"]

_ATTR = "_nbremind_frontend"


def load(shell: Any) -> None:
    """Register the magics, the input transformer and the run-cell hooks (idempotent)."""
    if getattr(shell, _ATTR, None) is not None:
        return
    session = get_session()
    frontend = CellFrontend(shell, session)
    frontend.register()
    shell.register_magics(RemindMagics(shell, frontend))
    setattr(shell, _ATTR, frontend)
    # Find out now, off the kernel's thread, which channels can deliver, so the first
    # notice does not wait on it and a missing desktop is known before it matters.
    session.ticker.submit(session.dispatcher.availability(session.config.channels))
    from ..pandas import install_when_imported  # df.remind: now, or once pandas is imported

    install_when_imported()


def unload(shell: Any) -> None:
    """Remove what :func:`load` installed; running cell tasks are left to end normally."""
    frontend = getattr(shell, _ATTR, None)
    if frontend is None:
        return
    frontend.unregister()
    magics = shell.magics_manager.magics
    magics["line"].pop("remind", None)
    magics["cell"].pop("remind", None)
    delattr(shell, _ATTR)

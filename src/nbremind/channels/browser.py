"""The ``browser`` channel: Web Notifications raised by the notebook page itself.

A notice becomes one custom widget message ``{"type": "notify", "id", "title", "body",
"urgency", "task_id", "parent_id", "when_watching"}`` sent to each nbremind widget that has a
view open. The page raises ``new Notification(title, {body, tag: id})`` when the user granted
the permission, once per id however many views received it; clicking it brings the tab
forward and scrolls to the status line of the task (or of its parent), else to the panel.
While the tab is visible and focused and ``when_watching`` is ``"quiet"``, the page raises
nothing and answers that it showed the notice in the page. While every page reports the
permission refused or not asked yet, the channel is unavailable and says why. Nothing is
kept in widget state, so reopening a notebook raises nothing again.

This module imports no widget library: the widgets register themselves with
:mod:`nbremind.core.browser_views` when a browser renders them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..core.browser_views import BrowserConnection, get_connection
from ..core.notice import Notice
from ..delivery.channel import Availability, Channel, ChannelError

__all__ = ["HELLO_WAIT", "NO_FRONT_END", "BrowserChannel", "notify_message"]

NO_FRONT_END = (
    "no browser front end connected (display nbremind.panel() or run a %%remind cell in JupyterLab)"
)
#: Seconds a notice waits for the hello of a widget just displayed (see ``wait_available``).
HELLO_WAIT = 2.0
_POLL = 0.02


def notify_message(notice: Notice, when_watching: str = "quiet") -> dict[str, str | None]:
    """The one-shot message the page turns into a notification (plain data only).

    ``task_id`` and ``parent_id`` let a click find the task's status line in the page;
    ``when_watching`` is the setting (a test notice, ``%remind test``, always notifies).
    """
    return {
        "type": "notify",
        "id": notice.id,
        "title": notice.title,
        "body": notice.body,
        "urgency": notice.urgency,
        "task_id": notice.task.id,
        "parent_id": notice.task.parent_id,
        "when_watching": "notify" if notice.event == "test" else when_watching,
    }


class BrowserChannel(Channel):
    """Notifies in the browser tab(s) showing this kernel's notebook."""

    name = "browser"

    def __init__(
        self,
        connection: BrowserConnection | None = None,
        when_watching: Callable[[], str] | None = None,
    ) -> None:
        """``when_watching`` gives the setting at each notice (default: what the front end
        handed to ``connection``)."""
        super().__init__()
        self.connection = connection or get_connection()
        self.when_watching = when_watching or self.connection.when_watching

    async def availability(self, *, refresh: bool = False) -> Availability:
        """Available while a widget view is open in a page allowed to show notifications;
        asked afresh every time (it is cheap)."""
        if not self.connection.views():
            return Availability(False, NO_FRONT_END)
        problem = self.connection.permission_problem()
        return Availability(False, problem) if problem else Availability(True)

    async def wait_available(self, timeout: float = HELLO_WAIT) -> Availability:
        """Like :meth:`availability`, but when a widget was just displayed and its hello may be
        on its way (it reaches the kernel only once the running cell ends), wait up to
        ``timeout`` seconds for it. A front end that never says hello (one that does not
        render widgets) is not waited for again until some view does."""
        state = await self.availability()
        if state.ok or not self.connection.expects_hello():
            return state
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(_POLL)
            state = await self.availability()
            if state.ok:
                return state
        self.connection.give_up()
        return state

    async def _send(self, notice: Notice) -> None:
        receivers = self.connection.receivers()
        if not receivers:
            raise ChannelError(NO_FRONT_END)
        problem = self.connection.permission_problem()
        if problem:
            raise ChannelError(problem)
        message = notify_message(notice, self.when_watching())
        self.connection.sent(notice.id)
        errors: list[str] = []
        for receiver in receivers:
            try:
                receiver.send(message)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        if len(errors) == len(receivers):
            raise ChannelError(f"no widget could take the notice: {errors[-1]}")

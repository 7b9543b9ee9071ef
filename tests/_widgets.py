"""Widget traffic of a real kernel, seen and made the way a notebook front end does.

:class:`CommTap` records every IOPub message the test client reads (widget messages from
nbremind's loop thread carry no request of the test's, so ``Kernel.run`` drops them), and
:func:`send_to_widget` plays the browser: it sends a ``comm_msg`` on the shell channel, as
JupyterLab's widget manager does for ``model.send(...)`` and ``model.save_changes()``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from _kernel import Kernel

__all__ = [
    "CommTap",
    "comm_tap",
    "running_row",
    "say_bye",
    "say_hello",
    "send_to_widget",
    "widget_views",
]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class CommTap:
    """Every IOPub message read while the tap is on, with what the test needs from them."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.messages: list[dict[str, Any]] = []

    def pump(self, seconds: float) -> None:
        """Read (and record) whatever the kernel publishes for ``seconds``."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.kernel._pump(min(left, 0.1))

    def comm_msgs(self, comm_id: str, method: str | None = None) -> list[dict[str, Any]]:
        """The ``data`` of each ``comm_msg`` sent to ``comm_id`` (with ``method``, if given)."""
        out = []
        for msg in self.messages:
            content = msg["content"]
            if msg["msg_type"] == "comm_msg" and content.get("comm_id") == comm_id:
                data = content.get("data", {})
                if method is None or data.get("method") == method:
                    out.append(data)
        return out

    def custom(self, comm_id: str) -> list[dict[str, Any]]:
        """The content of each custom (one-shot) message sent to ``comm_id``."""
        return [d["content"] for d in self.comm_msgs(comm_id, "custom")]

    def updates(self, comm_id: str) -> list[dict[str, Any]]:
        """The state of each ``update`` message sent to ``comm_id`` (state changes)."""
        return [d["state"] for d in self.comm_msgs(comm_id, "update")]

    def opened(self, target: str = "jupyter.widget") -> dict[str, dict[str, Any]]:
        """``{comm_id: initial state}`` of the widgets opened while tapping."""
        return {
            m["content"]["comm_id"]: m["content"]["data"].get("state", {})
            for m in self.messages
            if m["msg_type"] == "comm_open" and m["content"].get("target_name") == target
        }

    def clear(self) -> None:
        self.messages.clear()


@contextmanager
def comm_tap(kernel: Kernel) -> Iterator[CommTap]:
    """Record every IOPub message the client reads in the block."""
    channel = kernel.kc.iopub_channel
    tap = CommTap(kernel)
    original = channel.get_msg

    def get_msg(*args: Any, **kwargs: Any) -> dict[str, Any]:
        msg: dict[str, Any] = original(*args, **kwargs)
        tap.messages.append(msg)
        return msg

    channel.get_msg = get_msg
    try:
        yield tap
    finally:
        channel.get_msg = original


def widget_views(messages: list[dict[str, Any]]) -> list[str]:
    """The model ids of the widget views displayed by ``messages`` (``display_data``, a
    cell's ``execute_result``, or an ``update_display_data`` that turns an output into one,
    as a status line becomes live)."""
    return [
        m["content"]["data"][WIDGET_VIEW]["model_id"]
        for m in messages
        if m["msg_type"] in ("display_data", "execute_result", "update_display_data")
        and WIDGET_VIEW in m["content"]["data"]
    ]


def send_to_widget(kernel: Kernel, comm_id: str, data: dict[str, Any]) -> None:
    """Send ``data`` to widget ``comm_id`` as its front end would (no reply comes back)."""
    kc = kernel.kc
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    kc.shell_channel.send(msg)


def say_hello(
    kernel: Kernel, comm_id: str, view: str = "view-1", permission: str = "granted"
) -> None:
    """A view of widget ``comm_id`` rendered in a page (what nbremind.js sends)."""
    send_to_widget(
        kernel,
        comm_id,
        {
            "method": "custom",
            "content": {"type": "hello", "view": view, "page": "page-1", "permission": permission},
        },
    )


def say_bye(kernel: Kernel, comm_id: str, view: str = "view-1") -> None:
    """That view went away."""
    send_to_widget(
        kernel,
        comm_id,
        {"method": "custom", "content": {"type": "bye", "view": view, "page": "page-1"}},
    )


def running_row(task_id: str, **values: Any) -> list[Any]:
    """A panel row of a running task, as the kernel sends it (in ``ROW_FIELDS`` order):
    ``values`` over a plain one (no count, no bar: the numbers ``None``, the texts empty)."""
    from nbremind.ipython.panel_rows import ROW_FIELDS

    row: dict[str, Any] = {
        "id": task_id,
        "depth": 0,
        "state": "running",
        "state_text": "▶ running",
        "name": task_id,
        "count": "0",
        **values,
    }
    return [row.get(f, None if f in ("value", "max", "started") else "") for f in ROW_FIELDS]

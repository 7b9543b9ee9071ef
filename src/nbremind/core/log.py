"""The package's logger, and how a failure nbremind swallows is recorded (stdlib only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

__all__ = ["LOGGER_NAME", "log_exception", "logger"]

#: The name of the logger every nbremind module writes to.
LOGGER_NAME = "nbremind"


def logger() -> logging.Logger:
    """The ``nbremind`` logger (``logging`` is imported on first use)."""
    import logging

    return logging.getLogger(LOGGER_NAME)


def log_exception(message: str) -> None:
    """Log ``message`` with the exception being handled: a failure of nbremind's own that
    must not reach the user's code."""
    logger().exception(message)

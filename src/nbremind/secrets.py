"""Secrets: values that are used but never shown (``${ENV}`` settings, URL credentials).

The public face of :mod:`nbremind.core.secrets`: a :class:`Secret` is a ``str`` whose
``str()``/``repr()`` give ``***``; :func:`redact` masks every secret the process knows in a
text; :class:`RedactingFilter` does it for log records.
"""

from __future__ import annotations

from .core.secrets import MASK, MIN_LENGTH, RedactingFilter, Secret, redact, register, reveal

__all__ = ["MASK", "MIN_LENGTH", "RedactingFilter", "Secret", "redact", "register", "reveal"]

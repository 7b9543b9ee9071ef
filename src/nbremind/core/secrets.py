"""Secrets: values that are used but never shown.

A setting written ``${ENV_VAR}`` in a config file (or in an ``NBREMIND_*`` variable) is read
from the environment when the config loads and wrapped in a :class:`Secret`. A ``Secret`` is
a ``str`` (so code that parses or sends it works on the real text), but ``str()``,
``repr()``, ``format()`` and f-strings give ``***``; :meth:`Secret.reveal` gives the value.

Every secret value is also remembered process-wide, so :func:`redact` can replace it with
``***`` in any text: error messages, delivery records, log lines, ``%remind config``. The
``nbremind`` logger redacts its records through :class:`RedactingFilter`.

>>> token = Secret("s3cr3t-token")
>>> f"token={token}", token.reveal()
('token=***', 's3cr3t-token')
>>> redact("POST failed: https://example.com/hook/s3cr3t-token")
'POST failed: https://example.com/hook/***'
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any, TypeVar, overload
from urllib.parse import quote

__all__ = [
    "MASK",
    "MIN_LENGTH",
    "RedactingFilter",
    "Secret",
    "any_secrets",
    "redact",
    "register",
    "reveal",
    "secrets_known",
]

#: What a secret is shown as.
MASK = "***"
#: Values shorter than this are still :class:`Secret` but not searched for in free text:
#: replacing every "a" or "42" in a message would make it unreadable.
MIN_LENGTH = 4

_T = TypeVar("_T")

_lock = threading.Lock()
_known: set[str] = set()
#: Longest first, so a secret containing another is replaced whole.
_ordered: tuple[str, ...] = ()


class Secret(str):
    """A string whose value is hidden from ``str()``, ``repr()`` and formatting.

    String operations (``startswith``, ``split``, ``encode``, concatenation, ``json.dumps``)
    see the real value, as a plain ``str``; use :meth:`reveal` to say so explicitly.
    Making a ``Secret`` registers its value for :func:`redact` — or only ``parts`` of it
    when given (the values of the ``${NAME}`` references in a longer text, so a URL is
    shown as ``https://example.com/hook/***``).
    """

    __slots__ = ()

    def __new__(cls, value: str, parts: Iterable[str] | None = None) -> Secret:
        text = str.__str__(value) if isinstance(value, str) else str(value)
        for part in (text,) if parts is None else parts:
            register(part)
        return super().__new__(cls, text)

    def reveal(self) -> str:
        """The secret value, as a plain ``str``."""
        return str.__str__(self)

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return format(MASK, spec)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self.reveal(),))


@overload
def reveal(value: str) -> str: ...


@overload
def reveal(value: _T) -> _T: ...


def reveal(value: object) -> object:
    """``value.reveal()`` for a :class:`Secret` (a plain ``str``), else ``value`` unchanged."""
    return value.reveal() if isinstance(value, Secret) else value


def register(value: str) -> None:
    """Remember ``value`` (and its URL-quoted form) so :func:`redact` hides it."""
    global _ordered
    forms = {value, quote(value, safe=""), quote(value, safe="/:@")}
    forms = {f for f in forms if len(f) >= MIN_LENGTH}
    with _lock:
        if forms <= _known:
            return
        _known.update(forms)
        _ordered = tuple(sorted(_known, key=len, reverse=True))
    _install_log_filter()


def any_secrets() -> bool:
    """Whether any secret value is known (when not, :func:`redact` changes nothing)."""
    return bool(_ordered)


def secrets_known() -> int:
    """How many secret values (and forms of them) are known: it only grows, so a text
    redacted when it was ``k`` is redacted the same way while it is still ``k``."""
    return len(_ordered)


def redact(text: object) -> str:
    """``text`` as a string with every known secret value replaced by ``***``."""
    out = text.reveal() if isinstance(text, Secret) else str(text)
    for value in _ordered:
        if value in out:
            out = out.replace(value, MASK)
    return out


class RedactingFilter(logging.Filter):
    """Replaces secret values in a log record's message and traceback with ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _ordered:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def _install_log_filter() -> None:
    logger = logging.getLogger("nbremind")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)

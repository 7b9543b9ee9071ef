"""Channel URLs: which kind of channel a URL names, and how to show one without its secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["hide", "is_url", "redact_url", "remember", "reveal", "scheme_of", "url_secrets"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
#: A path segment this long with a digit in it is taken for a token (chat webhooks put their
#: keys in the path: ``/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX``).
_TOKEN_SEGMENT = re.compile(r"^(?=.*\d)[A-Za-z0-9_\-.~=+]{16,}$")
MASK = "***"
#: Schemes whose host and path are an address, not a token.
_KNOWN_LAYOUT = frozenset({"http", "https", "smtp", "smtps"})
#: Schemes whose query holds settings, not tokens.
_PLAIN_QUERY = frozenset({"smtp", "smtps"})


def scheme_of(name: str) -> str | None:
    """The lower-cased scheme of ``name`` when it is a URL (``scheme://...``), else ``None``."""
    match = _SCHEME.match(name)
    return match.group(1).lower() if match else None


def is_url(name: str) -> bool:
    """Whether ``name`` is written as a URL rather than a channel name."""
    return scheme_of(name) is not None


def reveal(value: object) -> str:
    """The plain text of a configured value, which may be a wrapped secret."""
    revealing = getattr(value, "reveal", None)
    return str(revealing() if callable(revealing) else value)


def redact_url(url: str) -> str:
    """``url`` with its password, query values (but e-mail's), fragment and token-like path
    parts masked.

    ``https://user:pw@host/hook/abc123abc123abc123?token=x`` ->
    ``https://user:***@host/hook/***?token=***``. Any other scheme (apprise services keep
    tokens in the host and path: ``tgram://TOKEN/CHAT``) and text that does not parse are
    masked whole after the scheme.
    """
    url = reveal(url)
    scheme = scheme_of(url)
    if scheme is None:
        return url
    if scheme not in _KNOWN_LAYOUT:  # chat services keep tokens in the host and path
        return f"{url[: len(scheme)]}://{MASK}"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{scheme}://{MASK}"
    if ":" in host:
        host = f"[{host}]"
    user = ""
    if parts.username is not None:
        user = parts.username + (f":{MASK}" if parts.password is not None else "") + "@"
    path = "/".join(MASK if _TOKEN_SEGMENT.match(seg) else seg for seg in parts.path.split("/"))
    query = parts.query  # e-mail parameters (to, from, starttls, cafile) are not secret
    if scheme not in _PLAIN_QUERY:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(key, MASK) for key, _ in pairs], safe="*")
    return urlunsplit((parts.scheme, f"{user}{host}{port}", path, query,
                       MASK if parts.fragment else ""))


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that :func:`redact_url` masks (to mask them in any text too)."""
    url = reveal(url)
    out = [url]
    try:
        parts = urlsplit(url)
        if parts.password:
            out.append(parts.password)
        if (scheme_of(url) or "") not in _PLAIN_QUERY:
            out += [value for _, value in parse_qsl(parts.query) if len(value) >= 4]
        out += [seg for seg in parts.path.split("/") if _TOKEN_SEGMENT.match(seg)]
        if parts.fragment:
            out.append(parts.fragment)
    except ValueError:
        pass
    return out


def hide(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` (and every known config secret) masked."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    try:
        from ..secrets import redact  # the config's own secrets (``${ENV}`` values)
    except ImportError:
        return text
    try:
        return str(redact(text))
    except Exception:
        return text


def remember(secrets: Iterable[str]) -> None:
    """Have the config's redaction (``nbremind.secrets.redact``) mask ``secrets`` everywhere
    too (``%remind config``, history, logs), even when written literally, not as ``${ENV}``."""
    try:
        from ..secrets import register
    except ImportError:
        return
    for secret in secrets:
        if secret:
            register(secret)

"""Channel URLs: which kind of channel a URL names, and how to show one without its secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .secrets import MASK, Secret, redact, register, reveal, secrets_known
from .text import printable

__all__ = [
    "check_url",
    "display_name",
    "hide",
    "hide_urls",
    "redact_url",
    "remember",
    "scheme_of",
    "shown",
    "url_secrets",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
#: A path segment this long with a digit in it is taken for a token (chat webhooks put their
#: keys in the path: ``/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX``).
_TOKEN_SEGMENT = re.compile(r"^(?=.*\d)[A-Za-z0-9_\-.~=+]{16,}$")
#: Schemes whose host and path are an address, not a token.
_KNOWN_LAYOUT = frozenset({"http", "https", "smtp", "smtps"})
#: Schemes whose query holds settings, not tokens.
_PLAIN_QUERY = frozenset({"smtp", "smtps"})


def scheme_of(name: str) -> str | None:
    """The lower-cased scheme of ``name`` when it is a URL (``scheme://...``), else ``None``."""
    match = _SCHEME.match(name)
    return match.group(1).lower() if match else None


def redact_url(url: str) -> str:
    """``url`` with its password, query values (but e-mail's), fragment and token-like path
    parts masked.

    ``https://user:pw@host/hook/abc123abc123abc123?token=x`` ->
    ``https://user:***@host/hook/***?token=***``. Any other scheme (apprise services keep
    tokens in the host and path: ``tgram://TOKEN/CHAT``) is masked whole after the scheme;
    a web or e-mail URL that does not parse keeps its user and host, the rest masked.
    """
    url = reveal(url)
    scheme = scheme_of(url)
    if scheme is None:
        return url
    if scheme not in _KNOWN_LAYOUT:  # chat services keep tokens in the host and path
        return f"{url[: len(scheme)]}://{MASK}"
    try:
        parts = urlsplit(url)
    except ValueError:  # unbalanced brackets around the host
        return _redact_unread(url, scheme)
    host = parts.hostname or ""
    try:
        port = "" if parts.port is None else f":{parts.port}"
    except ValueError:  # not a number or out of range: shown when it is digits
        raw = _raw_port(parts.netloc)
        port = f":{raw if raw.isdigit() else MASK}"
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
    return urlunsplit(
        (parts.scheme, f"{user}{host}{port}", path, query, MASK if parts.fragment else "")
    )


def _raw_port(netloc: str) -> str:
    """The port of ``netloc`` as written (``"99999"`` in ``user:pw@host:99999``)."""
    hostport = netloc.rpartition("@")[2]
    if "]" in hostport:
        hostport = hostport.rpartition("]")[2]
    return hostport.rpartition(":")[2] if ":" in hostport else ""


def _redact_unread(url: str, scheme: str) -> str:
    """A URL ``urlsplit`` refuses (``http://[::1``): its user and host as written, the
    password and everything after the host masked."""
    rest = url[len(scheme) + 3 :]
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    userinfo, at, hostport = rest[:end].rpartition("@")
    user = ""
    if at:
        name, colon, _ = userinfo.partition(":")
        user = name + (f":{MASK}" if colon else "") + "@"
    return f"{url[: len(scheme)]}://{user}{hostport}" + (f"/{MASK}" if rest[end:] else "")


#: Characters no URL may hold; web and e-mail URLs may not hold a space either.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def _url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as a channel, or ``None``."""
    scheme = scheme_of(url)
    if scheme is None:
        return "is not a URL (scheme://...)"
    known = scheme in _KNOWN_LAYOUT
    if (_CONTROL_OR_SPACE if known else _CONTROL).search(url):
        return "holds a space or a control character" if known else "holds a control character"
    if not url[len(scheme) + 3 :]:
        return f"names nothing after {scheme}://"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if not known:
        return None  # apprise reads the rest
    if not parts.hostname:
        return "names no host"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raw = _raw_port(parts.netloc)
        return f"has port {raw if raw.isdigit() else MASK}, not a number from 1 to 65535"
    return None


def check_url(url: str, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` and the URL (secrets masked) unless a channel
    can be made from ``url``: a scheme, no control characters, and for ``http(s)://`` and
    ``smtp(s)://`` no space, a host and a port (if any) from 1 to 65535."""
    text = reveal(url)
    problem = _url_problem(text)
    if problem is not None:
        raise ValueError(f"{where}: {printable(redact_url(text))} {problem}")


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
    return redact(text)  # and the config's own secrets (``${ENV}`` values)


def remember(secrets: Iterable[str]) -> None:
    """Have the config's redaction (``nbremind.core.secrets.redact``) mask ``secrets`` everywhere
    too (``%remind config``, history, logs), even when written literally, not as ``${ENV}``."""
    for secret in secrets:
        if secret:
            register(secret)


#: A URL inside a text: up to a space, a quote, ``<``, ``>`` or a backslash, and not ending
#: in punctuation (``smtp://host: bad``); ``https://,`` (a scheme named in prose) is none.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://(?:[^\s'\"<>\\]*[^\s'\"<>\\:,.;)])?")
#: How deep :func:`shown` looks into nested tables and lists.
_SHOWN_DEPTH = 4


def shown(value: object) -> str:
    """``repr(value)`` as an error message may quote it: a ``Secret`` as ``***``, the
    secrets of every URL in a text masked (:func:`~nbremind.core.urls.redact_url`), and
    every known secret redacted (:func:`nbremind.core.secrets.redact`), in nested tables and
    lists too.

    >>> shown(["https://me:pw@example.com/hook"])
    "['https://me:***@example.com/hook']"
    """
    return redact(_shown(value, _SHOWN_DEPTH))


def hide_urls(text: str) -> str:
    """``text`` with the secrets of every URL in it masked (``redact_url``)."""

    def mask(match: re.Match[str]) -> str:
        url = match.group(0)
        return url if url.endswith("://") else redact_url(url)

    return _URL_IN_TEXT.sub(mask, text)


def _shown(value: object, depth: int) -> str:
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, str):
        return repr(redact(hide_urls(value)))
    if isinstance(value, (Mapping, list, tuple)) and depth <= 0:
        return "..."
    if isinstance(value, Mapping):
        items = (f"{_shown(k, depth - 1)}: {_shown(v, depth - 1)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_shown(item, depth - 1) for item in value)
        if isinstance(value, list):
            return f"[{inner}]"
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    try:
        return hide_urls(repr(value))
    except Exception:  # a user object whose repr fails
        return f"<{type(value).__name__}>"


def display_name(name: str) -> str:
    """``name`` as it may be shown or recorded: a URL has its secrets masked."""
    key = (name, type(name), secrets_known())
    shown = _shown_names.get(key)
    if shown is None:
        shown = redact(redact_url(name) if scheme_of(reveal(name)) else name)
        if len(_shown_names) >= _SHOWN_KEEP:
            _shown_names.clear()
        _shown_names[key] = shown
    return shown


#: ``display_name`` of the channel names seen lately (asked several times per notice), by
#: name and the number of secrets known when it was computed (a new secret: computed again).
_shown_names: dict[tuple[str, type, int], str] = {}
_SHOWN_KEEP = 512

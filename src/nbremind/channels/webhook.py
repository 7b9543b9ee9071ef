"""Webhooks: each notice is POSTed as JSON to an ``http(s)://`` URL.

The body is the versioned payload built by :func:`payload` (``"version": 1``; fields are
only ever added within a version). With a ``secret`` the request carries
``X-Nbremind-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes, keyed by the
secret>``, so the receiver can check who sent it. Requests go through the standard library
(``urllib``) on a worker thread, so no HTTP client is added to nbremind's dependencies and
the loop thread never blocks.

Failures raise :class:`ChannelError`: 5xx, 408, 429 (with its ``Retry-After``), time outs
and connection errors are retryable; every other 4xx is not. A redirect (3xx) is not
followed, since following it would send the body, ``Authorization`` and the signature to
wherever it points: it is a failure naming the ``Location``, not retried.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from ..core.notice import Notice
from ..core.secrets import reveal
from ..core.urls import redact_url, url_secrets
from ..core.workers import run_blocking
from ..delivery.channel import Channel, ChannelError

__all__ = ["PAYLOAD_VERSION", "SIGNATURE_HEADER", "WebhookChannel", "payload", "sign"]

#: The version of the JSON body; it changes only when a field changes meaning or goes away.
PAYLOAD_VERSION = 1
SIGNATURE_HEADER = "X-Nbremind-Signature"
_USER_AGENT = "nbremind-webhook/1"
_RETRYABLE_STATUS = frozenset({408, 425, 429})


def payload(notice: Notice) -> dict[str, Any]:
    """The JSON-ready body describing ``notice`` (see the README for every field)."""
    t = notice.task
    return {
        "version": PAYLOAD_VERSION,
        "id": notice.id,
        "event": notice.event,
        "title": notice.title,
        "body": notice.body,
        "urgency": notice.urgency,
        "created": notice.created,
        "task": {
            "id": t.id,
            "name": t.name,
            "kind": t.kind,
            "state": t.state.value,
            "parent_id": t.parent_id,
            "cell_id": t.cell_id,
        },
        "state": t.state.value,
        "timings": {"start": t.start, "end": t.end, "elapsed": t.elapsed, "eta": t.eta},
        "progress": {
            "n": t.n,
            "total": t.total,
            "fraction": t.progress,
            "rate": t.rate,
            "unit": t.unit,
        },
        "error": None if t.error is None else {"type": t.error.type, "message": t.error.message},
        "metrics": {k: _jsonable(v) for k, v in t.metrics.items()},
        "notes": list(t.notes),
        "memory": {"rss": t.rss, "peak_rss": t.peak_rss},
        "host": t.host,
        "pid": t.pid,
        "notebook": t.source or None,
        "notebook_path": t.notebook,
    }


def _jsonable(value: object) -> object:
    # strict JSON: not-finite floats are null, what JSON cannot carry is text; never raises
    from ..core.notice import json_value

    return json_value(value)


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for ``body``: ``sha256=<hex digest>``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _split_userinfo(url: str) -> tuple[str, str | None]:
    """``url`` without ``user:password@``, and the Basic ``Authorization`` value it gave."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are answers, not detours: the 3xx reaches :meth:`WebhookChannel._post`."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


#: urllib's usual handlers (proxies from the environment, HTTPS) without redirects.
_OPENER = urllib.request.build_opener(_NoRedirects)


class WebhookChannel(Channel):
    """POSTs each notice as JSON to ``url``, signed when a ``secret`` is given."""

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        headers: Mapping[str, object] | None = None,
        secret: object = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__()
        full = reveal(url)
        self._url, self._auth = _split_userinfo(full)
        self._shown = redact_url(full)
        self._url_secrets = url_secrets(full)
        self.name = name or self._shown
        self._headers = {str(k): str(reveal(v)) for k, v in (headers or {}).items()}
        if self._auth:
            self._headers.setdefault("Authorization", self._auth)
        self._secret = None if secret is None else str(reveal(secret))
        self.timeout = timeout

    def describe(self) -> str:
        """The URL with its secrets masked."""
        return f"webhook {self._shown}"

    def secrets(self) -> list[str]:
        """Texts that must never be shown (masked in every recorded error)."""
        out = self._url_secrets + list(self._headers.values())
        return out + ([self._secret] if self._secret else [])

    def request_for(self, notice: Notice) -> urllib.request.Request:
        """The HTTP request that delivers ``notice``."""
        body = json.dumps(payload(notice), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": _USER_AGENT}
        headers.update(self._headers)
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(body, self._secret)
        return urllib.request.Request(self._url, data=body, headers=headers, method="POST")

    async def _send(self, notice: Notice) -> None:
        request = self.request_for(notice)
        await run_blocking(self._post, request)

    def _post(self, request: urllib.request.Request) -> None:
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            if 300 <= status < 400:
                where = redact_url(str(exc.headers.get("Location") or "")) or "nowhere"
                exc.close()
                # not followed: a redirect would carry the body's credentials and signature
                # to wherever it points, and the notice would not be delivered by a 200 there
                raise ChannelError(
                    f"webhook answered HTTP {status} (a redirect to {where}, not followed: "
                    "use the final URL)"
                ) from None
            retry_after = _parse_retry_after(exc.headers.get("Retry-After"), time.time())
            retryable = status >= 500 or status in _RETRYABLE_STATUS
            reason = f"HTTP {status} {exc.reason}".rstrip()
            exc.close()
            raise ChannelError(
                f"webhook answered {reason}",
                retryable=retryable,
                retry_after=retry_after if retryable else None,
            ) from None
        except urllib.error.URLError as exc:
            why = exc.reason
            kind = "timed out" if isinstance(why, TimeoutError) else str(why)
            raise ChannelError(f"webhook unreachable: {kind}", retryable=True) from None
        except TimeoutError:
            raise ChannelError(
                f"webhook timed out after {self.timeout:g} s", retryable=True
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ChannelError(
                f"webhook connection failed: {type(exc).__name__}: {exc}", retryable=True
            ) from None

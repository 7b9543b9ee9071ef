"""E-mail through an SMTP server: ``smtp://`` (STARTTLS) or ``smtps://`` (TLS from the start).

``smtp://USER:PASSWORD@HOST:PORT?to=a@example.org,b@example.org&from=me@example.org``

* ``smtp://`` upgrades the connection with STARTTLS and refuses to go on without it, unless
  ``?starttls=no`` (a local relay that offers none: nothing is encrypted then);
  ``smtps://`` speaks TLS from the first byte (port 465 by default).
* ``USER:PASSWORD`` logs in (after TLS); ``to`` (comma-separated) and ``from`` come from the
  URL's query or from the named channel's ``to`` / ``from``. ``from`` defaults to
  ``nbremind@<this host>``.
* ``?cafile=PATH`` trusts the certificates in PATH (a private CA or a self-signed server);
  otherwise the system's trust store is used and host names are checked.

The subject is the notice's title and the text body its body. Failures raise
:class:`ChannelError`: SMTP 4xx replies, time outs and dropped connections are retryable;
a refused login, a refused address (5xx) and TLS problems are not.
"""

from __future__ import annotations

import email.message
import email.utils
import smtplib
import socket
import ssl
from collections.abc import Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

from ..core.notice import Notice
from ..core.secrets import reveal
from ..core.urls import redact_url, url_secrets
from ..core.workers import run_blocking
from ..delivery.channel import Channel, ChannelError

__all__ = ["EmailChannel"]

_YES = {"yes", "true", "1", "on"}
_NO = {"no", "false", "0", "off"}
_QUERY_KEYS = {"to", "from", "starttls", "cafile"}


def _addresses(value: object, where: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, Sequence):
        raise ValueError(f"{where}: {value!r} is not an address or a list of addresses")
    out = []
    for item in items:
        text = str(reveal(item)).strip()
        if text:
            if "@" not in text or any(c in text for c in "\r\n<>"):
                raise ValueError(f"{where}: {text!r} is not an e-mail address")
            out.append(text)
    return tuple(out)


class EmailChannel(Channel):
    """Sends each notice as a plain-text e-mail; see the module docstring for the URL."""

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        to: object = None,
        sender: object = None,
        timeout: float = 10.0,
        source: str = "channels",
    ) -> None:
        super().__init__()
        self._url = reveal(url)
        shown = redact_url(self._url)
        self.name = name or shown
        where = f"{source}: {shown}"
        parts = urlsplit(self._url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps"):
            raise ValueError(f"{where}: not an smtp:// or smtps:// URL")
        if not parts.hostname:
            raise ValueError(f"{where}: the URL names no host")
        pairs = parse_qsl(parts.query)
        query = dict(pairs)
        query["to"] = ",".join(v for k, v in pairs if k == "to")  # ?to=a&to=b works too
        unknown = set(query) - _QUERY_KEYS
        if unknown:
            raise ValueError(
                f"{where}: unknown parameter {sorted(unknown)[0]!r}; "
                f"known: {', '.join(sorted(_QUERY_KEYS))}"
            )
        self.implicit_tls = scheme == "smtps"
        starttls = query.get("starttls", "yes").lower()
        if starttls not in _YES | _NO:
            raise ValueError(f"{where}: starttls={starttls!r} is not yes or no")
        self.starttls = not self.implicit_tls and starttls in _YES
        self.host = parts.hostname
        try:
            self.port = parts.port or (465 if self.implicit_tls else 25)
        except ValueError:
            raise ValueError(f"{where}: the port is not a number") from None
        self.username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self.to = _addresses(to if to is not None else query.get("to", ""), f"{where}: to")
        if not self.to:
            raise ValueError(f"{where}: no recipient: add ?to=ADDRESS or the channel's 'to'")
        senders = _addresses(
            sender if sender is not None else query.get("from", ""), f"{where}: from"
        )
        self.sender = senders[0] if senders else f"nbremind@{socket.gethostname()}"
        self.cafile = query.get("cafile")
        self.timeout = timeout

    def describe(self) -> str:
        """The URL with its secrets masked."""
        return f"email {redact_url(self._url)}"

    def secrets(self) -> list[str]:
        """Texts that must never be shown (masked in every recorded error)."""
        return url_secrets(self._url) + ([self._password] if self._password else [])

    def message_for(self, notice: Notice) -> email.message.EmailMessage:
        """The e-mail that delivers ``notice``."""
        msg = email.message.EmailMessage()
        msg["Subject"] = notice.title
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Date"] = email.utils.formatdate(notice.created, localtime=True)
        msg["Message-ID"] = email.utils.make_msgid("nbremind")
        msg["X-Nbremind-Notice"] = notice.id
        msg.set_content(notice.body or notice.title)
        return msg

    async def _send(self, notice: Notice) -> None:
        message = self.message_for(notice)
        await run_blocking(self._deliver, message)

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cafile)

    def _deliver(self, message: email.message.EmailMessage) -> None:
        try:
            smtp: smtplib.SMTP
            if self.implicit_tls:
                smtp = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self._tls()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.starttls:
                    smtp.ehlo()
                    if not smtp.has_extn("starttls"):
                        raise ChannelError(
                            f"SMTP server {self.host}:{self.port} offers no STARTTLS "
                            "(add ?starttls=no to send unencrypted)"
                        )
                    smtp.starttls(context=self._tls())
                    smtp.ehlo()
                if self.username is not None:
                    smtp.login(self.username, self._password or "")
                smtp.send_message(message, from_addr=self.sender, to_addrs=list(self.to))
        except ChannelError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise ChannelError(f"SMTP login refused: {exc.smtp_code}", retryable=False) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise ChannelError(
                f"SMTP server refused {', '.join(sorted(exc.recipients))}: {codes}",
                retryable=all(400 <= code < 500 for code in codes),
            ) from None
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode(errors="replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise ChannelError(
                f"SMTP server answered {exc.smtp_code} {text}".strip(),
                retryable=400 <= exc.smtp_code < 500,
            ) from None
        except smtplib.SMTPServerDisconnected as exc:
            raise ChannelError(
                f"SMTP server closed the connection: {exc}", retryable=True
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise ChannelError(f"SMTP server does not support it: {exc}") from None
        except ssl.SSLError as exc:
            raise ChannelError(f"TLS with {self.host}:{self.port} failed: {exc}") from None
        except TimeoutError:
            raise ChannelError(
                f"SMTP server {self.host}:{self.port} timed out", retryable=True
            ) from None
        except OSError as exc:
            raise ChannelError(
                f"SMTP server {self.host}:{self.port} unreachable: {exc}", retryable=True
            ) from None
        except smtplib.SMTPException as exc:
            raise ChannelError(f"SMTP failed: {type(exc).__name__}: {exc}") from None

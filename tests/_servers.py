"""Real local servers for the remote channels: a scripted HTTP server and aiosmtpd.

Both listen on 127.0.0.1 only, record what they receive, and let a test wait for it with a
deadline (no sleeps).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from _require import missing

__all__ = [
    "HANG",
    "Reply",
    "ScriptedHTTPServer",
    "SmtpServer",
    "http_server",
    "smtp_factory",
    "tls_cert",
]


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, headers and body."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


#: A scripted answer that never comes (the handler waits until the server stops).
HANG = Reply(status=-1)


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedHTTPServer:
    """Answers each request with the next scripted :class:`Reply` (then 200), records it."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        #: The answer once the script is used up.
        self.default = Reply()
        self.requests: list[Request] = []
        #: The status each request was answered with (``-1``: it hung), in order.
        self.answers: list[int] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.do_POST()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with owner._cond:
                    owner.requests.append(
                        Request(self.command, self.path, dict(self.headers.items()), body)
                    )
                    reply = owner.script.pop(0) if owner.script else owner.default
                    owner.answers.append(reply.status)
                    owner._cond.notify_all()
                if reply is HANG:
                    owner._release.wait(30)
                    return
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Request]:
        """Block until ``count`` requests arrived (or fail after ``timeout``)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.requests) >= count, timeout)
            assert ok, f"expected {count} requests, got {len(self.requests)}"
            return list(self.requests)

    def answered(self, status: int) -> list[Request]:
        """The requests that were answered with ``status``."""
        with self._cond:
            return [r for r, a in zip(self.requests, self.answers, strict=True) if a == status]

    def wait_answered(self, status: int, count: int, timeout: float = 10.0) -> list[Request]:
        """Block until ``count`` requests were answered with ``status``."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: sum(a == status for a in self.answers) >= count, timeout
            )
            assert ok, f"expected {count} requests answered {status}, got {self.answers}"
        return self.answered(status)

    def release(self) -> None:
        """Let every hanging request end (without an answer)."""
        self._release.set()

    def start(self) -> ScriptedHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def http_server() -> Iterator[ScriptedHTTPServer]:
    server = ScriptedHTTPServer().start()
    try:
        yield server
    finally:
        server.stop()


# -- SMTP ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TlsCert:
    """A self-signed CA, a server certificate for 127.0.0.1 signed by it, and the CA file."""

    server_context: ssl.SSLContext
    cafile: Path


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> TlsCert:
    try:
        import trustme
    except ImportError:
        missing("trustme is not installed (pip install -e '.[test]')")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    cafile = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    return TlsCert(context, cafile)


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.cond = threading.Condition()
        #: Replies to give to RCPT TO before accepting recipients (``"450 busy"``, ...).
        self.rcpt_replies: list[str] = []
        self.rcpt_count = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.cond:
            self.rcpt_count += 1
            if self.rcpt_replies:
                return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.cond:
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.cond.notify_all()
        return "250 OK"


@dataclass
class SmtpServer:
    """A running aiosmtpd server and what it received."""

    host: str
    port: int
    recorder: _Recorder

    @property
    def messages(self) -> list[Message]:
        return self.recorder.messages

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Message]:
        with self.recorder.cond:
            ok = self.recorder.cond.wait_for(lambda: len(self.messages) >= count, timeout)
            assert ok, f"expected {count} messages, got {len(self.messages)}"
            return list(self.messages)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp_factory() -> Iterator[Callable[..., SmtpServer]]:
    """``smtp_factory(starttls=ctx | None, implicit_tls=ctx | None, users={user: pw})``."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        missing("aiosmtpd is not installed (pip install -e '.[test]')")
    from aiosmtpd.smtp import AuthResult, LoginPassword

    controllers: list[Any] = []

    def make(
        *,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
        users: dict[str, str] | None = None,
    ) -> SmtpServer:
        recorder = _Recorder()
        kwargs: dict[str, Any] = {}
        if starttls is not None:
            kwargs.update(tls_context=starttls, require_starttls=True)
        if users is not None:

            def authenticator(
                server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
            ) -> AuthResult:
                ok = (
                    isinstance(auth_data, LoginPassword)
                    and users.get(auth_data.login.decode()) == auth_data.password.decode()
                )
                return AuthResult(success=ok, handled=False)

            # aiosmtpd cannot tell implicit TLS from plain text: it checks STARTTLS only
            kwargs.update(
                authenticator=authenticator,
                auth_required=True,
                auth_require_tls=starttls is not None,
            )
        port = _free_port()
        controller = Controller(
            recorder,
            hostname="127.0.0.1",
            port=port,
            ssl_context=implicit_tls,
            server_hostname="127.0.0.1",
            **kwargs,
        )
        controller.start()
        controllers.append(controller)
        return SmtpServer("127.0.0.1", port, recorder)

    try:
        yield make
    finally:
        for controller in controllers:
            with contextlib.suppress(Exception):
                controller.stop()

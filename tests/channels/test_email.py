"""E-mail against a real SMTP server (aiosmtpd): plain, STARTTLS with a self-signed
certificate, implicit TLS, login; which failures are retried."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from _servers import SmtpServer, TlsCert
from nbremind import Config, TaskState
from nbremind.channels import ChannelError, make_channel
from nbremind.channels.email import EmailChannel
from nbremind.core.notice import Notice, make_notice
from nbremind.core.options import TaskOptions
from nbremind.core.task import Task, TaskError
from nbremind.delivery.dispatcher import Dispatcher
from nbremind.delivery.retry import Backoff
from nbremind.runtime.channel_check import build_channel
from nbremind.testing import FakeClock

Factory = Callable[..., SmtpServer]


def _notice() -> Notice:
    clock = FakeClock()
    task = Task("train", clock=clock, host="box")
    task.mark_started()
    clock.advance(90)
    task.mark_ended(TaskState.FAILED, TaskError("RuntimeError", "CUDA out of memory"))
    return make_notice("failure", task.snapshot(), created=clock.time(), key="end")


def _deliver(config: Config) -> tuple[Dispatcher, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    dispatcher = Dispatcher(make_channel=build_channel)
    dispatcher.backoff = Backoff(sleep=sleep, random=lambda: 1.0)
    asyncio.run(dispatcher.dispatch(_notice(), TaskOptions(), config))
    return dispatcher, slept


def test_plain_smtp_delivers_subject_and_body(smtp_factory: Factory) -> None:
    server = smtp_factory()
    url = f"smtp://{server.host}:{server.port}?starttls=no&to=me@example.org&from=nb@example.org"
    dispatcher, _ = _deliver(Config(channels=(url,)))
    (message,) = server.wait_for(1)
    assert message["Subject"] == "✗ train failed"
    assert message["From"] == "nb@example.org" and message["To"] == "me@example.org"
    body = message.get_payload(decode=True).decode()
    assert "RuntimeError: CUDA out of memory" in body and "After 1 min 30 s" in body
    assert dispatcher.deliveries[-1].ok


def test_starttls_with_a_self_signed_certificate_and_login(
    smtp_factory: Factory,
    tls_cert: TlsCert,
) -> None:
    server = smtp_factory(starttls=tls_cert.server_context, users={"ann": "pa ss"})
    config = Config().updated(
        channels=["mail"],
        channel_defs={
            "mail": {
                "url": f"smtp://ann:pa%20ss@127.0.0.1:{server.port}?cafile={tls_cert.cafile}",
                "to": ["ann@example.org", "ops@example.org"],
                "from": "nbremind@example.org",
                "templates": {"failure": {"title": "[{host}] {name} {state}"}},
            }
        },
    )
    dispatcher, _ = _deliver(config)
    (message,) = server.wait_for(1)
    assert message["Subject"] == "[box] train failed"
    assert server.recorder.envelopes == [
        ("nbremind@example.org", ["ann@example.org", "ops@example.org"])
    ]
    assert "CUDA out of memory" in message.get_payload(decode=True).decode()
    (delivery,) = dispatcher.deliveries
    assert delivery.ok and delivery.channel == "mail"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # it is TLS
def test_implicit_tls(smtp_factory: Factory, tls_cert: TlsCert) -> None:
    server = smtp_factory(implicit_tls=tls_cert.server_context, users={"ann": "secret1"})
    url = f"smtps://ann:secret1@127.0.0.1:{server.port}?to=a@example.org&cafile={tls_cert.cafile}"
    dispatcher, _ = _deliver(Config(channels=(url,)))
    assert dispatcher.deliveries[-1].ok, dispatcher.deliveries[-1].error
    (message,) = server.wait_for(1)
    assert message["Subject"] == "✗ train failed"


def test_an_untrusted_certificate_is_refused_not_retried(
    smtp_factory: Factory,
    tls_cert: TlsCert,
) -> None:
    server = smtp_factory(starttls=tls_cert.server_context)
    dispatcher, slept = _deliver(
        Config(channels=(f"smtp://127.0.0.1:{server.port}?to=a@example.org",))
    )
    (delivery,) = dispatcher.deliveries
    assert (
        not delivery.ok
        and "TLS" in delivery.error
        and "CERTIFICATE_VERIFY_FAILED" in (delivery.error)
    )
    assert delivery.attempts == 1 and slept == [] and server.messages == []


def test_a_refused_login_is_not_retried_and_the_password_never_shows(
    smtp_factory: Factory,
    tls_cert: TlsCert,
) -> None:
    server = smtp_factory(starttls=tls_cert.server_context, users={"ann": "right-pass"})
    url = f"smtp://ann:wrong-pass@127.0.0.1:{server.port}?to=a@example.org&cafile={tls_cert.cafile}"
    dispatcher, slept = _deliver(Config(channels=(url,)))
    (delivery,) = dispatcher.deliveries
    assert not delivery.ok and "SMTP login refused: 535" in delivery.error
    assert delivery.attempts == 1 and slept == []
    assert "wrong-pass" not in delivery.error + delivery.channel
    assert delivery.channel.startswith("smtp://ann:***@127.0.0.1")


def test_server_without_starttls_is_refused_unless_asked(
    smtp_factory: Factory,
) -> None:
    server = smtp_factory()
    dispatcher, _ = _deliver(Config(channels=(f"smtp://127.0.0.1:{server.port}?to=a@x.org",)))
    assert "offers no STARTTLS" in dispatcher.deliveries[-1].error
    assert server.messages == []


def test_smtp_4xx_is_retried_5xx_is_not(smtp_factory: Factory) -> None:
    server = smtp_factory()
    url = f"smtp://127.0.0.1:{server.port}?starttls=no&to=a@example.org"
    server.recorder.rcpt_replies = ["450 4.2.1 mailbox busy"]
    dispatcher, slept = _deliver(Config(channels=(url,)))
    (delivery,) = dispatcher.deliveries
    assert delivery.ok and delivery.attempts == 2 and slept == [0.5]
    assert len(server.wait_for(1)) == 1  # delivered once

    server.recorder.rcpt_replies = ["550 5.1.1 no such user"]
    dispatcher, slept = _deliver(Config(channels=(url,)))
    (delivery,) = dispatcher.deliveries
    assert not delivery.ok and delivery.attempts == 1 and slept == []
    assert "a@example.org" in delivery.error and "550" in delivery.error
    assert len(server.messages) == 1


def test_an_unreachable_server_is_retryable() -> None:
    channel = EmailChannel("smtp://127.0.0.1:1?to=a@x.org&starttls=no", timeout=2)
    with pytest.raises(ChannelError) as info:
        channel._deliver(channel.message_for(_notice()))
    assert info.value.retryable and "unreachable" in str(info.value)


def test_email_urls_are_validated() -> None:
    with pytest.raises(ValueError, match="no recipient"):
        make_channel("smtp://mail.example.org")
    with pytest.raises(ValueError, match="'not-an-address' is not an e-mail address"):
        make_channel("smtp://mail.example.org?to=not-an-address")
    with pytest.raises(ValueError, match="unknown parameter 'tls'"):
        make_channel("smtp://mail.example.org?to=a@x.org&tls=1")
    with pytest.raises(ValueError, match="starttls='maybe'"):
        make_channel("smtp://mail.example.org?to=a@x.org&starttls=maybe")
    assert EmailChannel("smtp://h?to=a@x.org&to=b@x.org,c@x.org").to == (
        "a@x.org",
        "b@x.org",
        "c@x.org",
    )
    channel = make_channel("smtps://u:pw1234@mail.example.org?to=a@x.org")
    assert isinstance(channel, EmailChannel) and channel.port == 465 and channel.implicit_tls
    assert "pw1234" not in channel.name

"""Webhooks against a real local HTTP server: payload, signature, retries, time outs, secrets."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Iterator

import pytest

from _servers import HANG, Reply, ScriptedHTTPServer
from nbremind import Config, Session, TaskState, remind
from nbremind.channels import make_channel
from nbremind.channels.webhook import PAYLOAD_VERSION, SIGNATURE_HEADER
from nbremind.core.notice import Notice, make_notice
from nbremind.core.options import TaskOptions
from nbremind.core.task import Task, TaskError
from nbremind.delivery.dispatcher import Dispatcher
from nbremind.delivery.retry import Backoff
from nbremind.runtime.channel_check import build_channel
from nbremind.testing import FakeClock


class FakeTime:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)

    def backoff(self) -> Backoff:
        return Backoff(
            base=0.5, cap=30, clock=self.clock.monotonic, sleep=self.sleep, random=lambda: 1.0
        )


def _notice(event: str = "success", name: str = "etl") -> Notice:
    clock = FakeClock()
    task = Task(name, clock=clock, total=10, host="box", source="train.ipynb")
    task.mark_started()
    task.set(4)
    clock.advance(12.5)
    if event == "failure":
        task.mark_ended(TaskState.FAILED, TaskError("ValueError", "bad row 2"))
    else:
        task.mark_ended(TaskState.SUCCEEDED)
    return make_notice(event, task.snapshot(), created=clock.time(), key="end")


def _deliver(config: Config, notice: Notice, fake: FakeTime) -> Dispatcher:
    dispatcher = Dispatcher(make_channel=build_channel)
    dispatcher.backoff = fake.backoff()
    asyncio.run(dispatcher.dispatch(notice, TaskOptions(), config))
    return dispatcher


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    made: list[Session] = []
    yield made
    for session in made:
        session.close(timeout=1)


def test_payload_is_versioned_and_signed(http_server: ScriptedHTTPServer) -> None:
    config = Config().updated(
        channels=["team"],
        channel_defs={
            "team": {
                "url": http_server.url("/hook"),
                "secret": "s3cret-key",
                "headers": {"X-Team": "ml"},
            }
        },
    )
    notice = _notice("failure")
    dispatcher = _deliver(config, notice, FakeTime())
    (request,) = http_server.wait_for(1)
    assert request.path == "/hook"
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.headers["X-Team"] == "ml"
    expected = "sha256=" + hmac.new(b"s3cret-key", request.body, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == expected
    wrong = "sha256=" + hmac.new(b"other", request.body, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] != wrong
    body = request.json()
    assert body["version"] == PAYLOAD_VERSION == 1
    assert body["id"] == notice.id and body["event"] == "failure"
    assert body["title"] == "✗ etl failed"
    assert body["task"]["name"] == "etl" and body["state"] == "failed"
    assert body["timings"]["elapsed"] == pytest.approx(12.5)
    assert (body["progress"]["n"], body["progress"]["total"]) == (4, 10)
    assert body["progress"]["fraction"] == pytest.approx(0.4)
    assert body["error"] == {"type": "ValueError", "message": "bad row 2"}
    assert body["host"] == "box" and body["notebook"] == "train.ipynb"
    (delivery,) = dispatcher.deliveries
    assert delivery.ok and delivery.channel == "team" and delivery.attempts == 1


def test_500_then_200_is_delivered_once_after_a_backoff(
    http_server: ScriptedHTTPServer,
) -> None:
    http_server.script = [Reply(500), Reply(200)]
    fake = FakeTime()
    url = http_server.url()
    dispatcher = _deliver(Config(channels=(url,)), _notice(), fake)
    requests = http_server.wait_for(2)
    assert len(requests) == 2
    assert requests[0].body == requests[1].body  # the same notice, tried again
    assert fake.slept == [0.5]  # base * 2**0 * (draw=1.0)
    (delivery,) = dispatcher.deliveries
    assert delivery.ok and delivery.attempts == 2


def test_429_retry_after_is_honoured(http_server: ScriptedHTTPServer) -> None:
    http_server.script = [Reply(429, {"Retry-After": "7"}), Reply(503), Reply(200)]
    fake = FakeTime()
    dispatcher = _deliver(Config(channels=(http_server.url(),), retry_max_time=60), _notice(), fake)
    assert len(http_server.wait_for(3)) == 3
    assert fake.slept == [7.0, 1.0]  # the server's 7 s, then the second backoff window
    assert dispatcher.deliveries[-1].ok and dispatcher.deliveries[-1].attempts == 3


def test_400_is_not_retried_and_recorded(http_server: ScriptedHTTPServer) -> None:
    http_server.script = [Reply(400, body=b"bad payload")]
    fake = FakeTime()
    dispatcher = _deliver(Config(channels=(http_server.url(),)), _notice(), fake)
    assert len(http_server.requests) == 1 and fake.slept == []
    (delivery,) = dispatcher.deliveries
    assert not delivery.ok and delivery.attempts == 1
    assert delivery.error == "ChannelError: webhook answered HTTP 400 Bad Request"


def test_retries_stop_at_the_attempt_bound(http_server: ScriptedHTTPServer) -> None:
    http_server.script = [Reply(502)] * 5
    fake = FakeTime()
    dispatcher = _deliver(Config(channels=(http_server.url(),), retry_attempts=3), _notice(), fake)
    assert len(http_server.requests) == 3 and fake.slept == [0.5, 1.0]
    (delivery,) = dispatcher.deliveries
    assert not delivery.ok and delivery.attempts == 3
    assert "HTTP 502" in delivery.error and "gave up after 3 tries" in delivery.error


def test_a_server_that_never_answers_times_out_without_blocking_user_code(
    http_server: ScriptedHTTPServer,
    sessions: list[Session],
) -> None:
    http_server.script = [HANG, HANG]
    url = http_server.url()
    session = Session(Config(channels=(url,), send_timeout=0.4, retry_attempts=2))
    sessions.append(session)
    session.dispatcher.backoff = Backoff(base=0.01, cap=0.01)
    assert session.ticker.loop is not None  # the loop thread runs before timing
    began = time.monotonic()
    with remind("etl", session=session) as task:
        pass
    assert time.monotonic() - began < 0.2, "the block waited for the webhook"
    assert task.state is TaskState.SUCCEEDED
    assert session.flush(10)
    assert len(http_server.wait_for(2)) == 2
    (delivery,) = session.dispatcher.deliveries
    assert not delivery.ok and delivery.attempts == 2
    assert delivery.error.startswith("timed out after 0.4 s")


def test_secrets_in_urls_never_reach_records_or_logs(
    http_server: ScriptedHTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token, password = "tok-1234567890", "hunter22"
    url = f"http://bob:{password}@127.0.0.1:{http_server.port}/hook?token={token}"
    http_server.script = [Reply(401)]
    with caplog.at_level(logging.INFO, logger="nbremind"):
        dispatcher = _deliver(Config(channels=(url,)), _notice(), FakeTime())
    (request,) = http_server.wait_for(1)
    assert request.path == f"/hook?token={token}"  # the real URL was used
    assert request.headers["Authorization"] == "Basic Ym9iOmh1bnRlcjIy"  # bob:hunter22
    (delivery,) = dispatcher.deliveries
    assert not delivery.ok and "HTTP 401" in delivery.error
    shown = f"{delivery.channel} {delivery.error} {caplog.text}"
    assert token not in shown and password not in shown
    assert delivery.channel == f"http://bob:***@127.0.0.1:{http_server.port}/hook?token=***"

    # a refused connection: the error text is masked too
    closed = f"http://127.0.0.1:1/x?key={token}"
    dispatcher = _deliver(Config(channels=(closed,), retry_attempts=1), _notice(), FakeTime())
    (delivery,) = dispatcher.deliveries
    assert not delivery.ok and "unreachable" in delivery.error and token not in delivery.error
    assert token not in str(make_channel(closed).name)


def test_named_channel_on_filter_and_templates(
    http_server: ScriptedHTTPServer,
) -> None:
    config = Config().updated(
        channels=["memory", "alerts"],
        channel_defs={
            "alerts": {
                "url": http_server.url("/alerts"),
                "on": ["failure"],
                "templates": {"failure": {"title": "ALERT {name}: {error}"}},
            }
        },
    )
    dispatcher = _deliver(config, _notice("success"), FakeTime())
    assert [d.channel for d in dispatcher.deliveries] == ["memory"]  # alerts takes no success
    dispatcher = _deliver(config, _notice("failure", name="train"), FakeTime())
    (request,) = http_server.wait_for(1)
    assert request.path == "/alerts"
    assert request.json()["title"] == "ALERT train: ValueError: bad row 2"
    memory = next(d for d in dispatcher.deliveries if d.channel == "memory")
    assert memory.title == "✗ train failed"  # other channels keep the default text


def test_channel_settings_are_validated() -> None:
    with pytest.raises(ValueError, match=r"channel_defs\.team: unknown key 'uri'"):
        Config().updated(channel_defs={"team": {"uri": "https://x"}})
    with pytest.raises(ValueError, match=r"channel_defs\.team: no url"):
        Config().updated(channel_defs={"team": {"on": ["failure"]}})
    with pytest.raises(ValueError, match=r"channel_defs\.team\.on: .*'finish'"):
        Config().updated(channel_defs={"team": {"url": "https://x", "on": ["finish"]}})
    with pytest.raises(ValueError, match=r"team.templates.failure.title: unknown field .oops"):
        Config().updated(
            channel_defs={
                "team": {"url": "https://x", "templates": {"failure": {"title": "{oops}"}}}
            }
        )
    with pytest.raises(ValueError, match="'desktop' is a built-in channel"):
        Config().updated(channel_defs={"desktop": {"url": "https://x"}})
    with pytest.raises(ValueError, match="channels: 'pager' is not a channel"):
        Config().updated(channels=["pager"])
    # a named channel defined in the same call may be used at once
    config = Config().updated(channels=["team"], channel_defs={"team": {"url": "https://x"}})
    assert config.channels == ("team",)
    assert Config().updated(channels=["https://example.org/hook"]).channels == (
        "https://example.org/hook",
    )


def test_an_unknown_scheme_without_apprise_names_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import nbremind.channels.apprise_channel as module

    monkeypatch.setattr(module, "apprise_installed", lambda: False)
    with pytest.raises(ValueError, match=r"ntfy://\*\*\* is not .*nbremind\[apprise\]") as info:
        Config().updated(channels=["ntfy://user:pw@host/topic1234567890abcdef"])
    assert "pw" not in str(info.value)


def test_literal_secrets_of_channels_are_masked_by_the_config_redaction() -> None:
    from nbremind.core.secrets import redact

    config = Config().updated(
        channels=["https://bob:pw-literal-1@h.example/x?token=tok-literal-2"],
        channel_defs={
            "t": {
                "url": "https://h.example/y",
                "secret": "sig-literal-3",
                "headers": {"Authorization": "Bearer hdr-literal-4"},
            }
        },
    )
    shown = redact(str(config.as_dict()))
    for secret in ("pw-literal-1", "tok-literal-2", "sig-literal-3", "hdr-literal-4"):
        assert secret not in shown
    assert "https://bob:***@h.example/x?token=***" in shown


def test_retry_after_as_seconds_or_http_date() -> None:
    from nbremind.channels.webhook import _parse_retry_after

    now = 1_700_000_000.0
    assert _parse_retry_after("120", now) == 120.0
    assert _parse_retry_after("Tue, 14 Nov 2023 22:13:27 GMT", now) == pytest.approx(7.0)
    assert _parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0  # in the past
    assert _parse_retry_after("soon", now) is None and _parse_retry_after(None, now) is None


def test_remind_takes_a_named_channel_of_its_session(
    http_server: ScriptedHTTPServer,
    sessions: list[Session],
) -> None:
    session = Session(Config().updated(channel_defs={"ops": {"url": http_server.url("/ops")}}))
    sessions.append(session)
    with remind("etl", channels=["ops"], session=session):
        pass
    (request,) = http_server.wait_for(1)
    assert request.path == "/ops" and request.json()["title"] == "✓ etl finished"
    with pytest.raises(ValueError, match="remind\\(\\): channels: 'opz' is not a channel"):
        remind("etl", channels=["opz"], session=session)

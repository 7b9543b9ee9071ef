"""apprise: any other URL scheme is delivered through apprise (here its ``json://`` service
against the real local HTTP server)."""

from __future__ import annotations

import asyncio

import pytest

from _require import missing
from _servers import Reply, ScriptedHTTPServer
from nbremind import Config, TaskState
from nbremind.channels import make_channel
from nbremind.core.notice import Notice, make_notice
from nbremind.core.options import TaskOptions
from nbremind.core.task import Task
from nbremind.delivery.dispatcher import Dispatcher
from nbremind.delivery.retry import Backoff
from nbremind.runtime.channel_check import build_channel
from nbremind.testing import FakeClock


@pytest.fixture(autouse=True)
def _apprise() -> None:
    try:
        import apprise  # noqa: F401
    except ImportError:
        missing("apprise is not installed (pip install -e '.[apprise]')")


def _notice() -> Notice:
    clock = FakeClock()
    task = Task("etl", clock=clock)
    task.mark_started()
    clock.advance(3)
    task.mark_ended(TaskState.SUCCEEDED)
    return make_notice("success", task.snapshot(), created=clock.time(), key="end")


def _deliver(config: Config) -> tuple[Dispatcher, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    dispatcher = Dispatcher(make_channel=build_channel)
    dispatcher.backoff = Backoff(sleep=sleep, random=lambda: 1.0)
    asyncio.run(dispatcher.dispatch(_notice(), TaskOptions(), config))
    return dispatcher, slept


def test_a_json_url_is_delivered_to_the_local_server(
    http_server: ScriptedHTTPServer,
) -> None:
    url = f"json://127.0.0.1:{http_server.port}/apprise"
    dispatcher, _ = _deliver(Config(channels=(url,)))
    (request,) = http_server.wait_for(1)
    assert request.path == "/apprise"
    body = request.json()
    assert body["title"] == "✓ etl finished"
    assert "Took 3.0 s" in body["message"]
    (delivery,) = dispatcher.deliveries
    assert delivery.ok and delivery.channel == "json://***"  # apprise URLs hold tokens


def test_an_apprise_failure_is_retried_and_recorded(
    http_server: ScriptedHTTPServer,
) -> None:
    http_server.script = [Reply(500), Reply(500)]
    url = f"json://127.0.0.1:{http_server.port}/apprise"
    dispatcher, slept = _deliver(Config(channels=(url,), retry_attempts=2))
    assert len(http_server.wait_for(2)) == 2
    (delivery,) = dispatcher.deliveries
    assert not delivery.ok and delivery.attempts == 2 and slept == [0.5]
    assert delivery.error.startswith("ChannelError: apprise could not deliver")
    assert "500" in delivery.error


def test_apprise_urls_show_without_secrets() -> None:
    channel = make_channel("json://user:pass-word-1@127.0.0.1:9/x")
    assert "pass-word-1" not in channel.name
    with pytest.raises(ValueError, match=r"nosuchservice://\*\*\* is not a URL apprise"):
        make_channel("nosuchservice://token123")


def test_a_url_whose_apprise_parser_fails_is_a_clear_error_naming_it() -> None:
    from nbremind import remind

    # apprise's telegram parser raises IndexError on this one instead of refusing it
    with (
        pytest.raises(ValueError, match=r"remind\(\): channels: .*tgram://.* is not a URL apprise"),
        remind("x", channels=["tgram://0:"]),
    ):
        pass

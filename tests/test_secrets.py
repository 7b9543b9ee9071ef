"""Secrets are usable as strings but never shown: str, repr, format, logs, errors, config."""

from __future__ import annotations

import copy
import json
import logging
import pickle
from pathlib import Path

import pytest

from _kernel import KernelFactory
from nbremind.config_files import load_settings
from nbremind.config_live import describe, follow
from nbremind.secrets import MASK, Secret, redact, reveal
from nbremind.session import Session

TOKEN = "tok-5f1c9e2ab7"


def test_a_secret_never_shows_its_value() -> None:
    secret = Secret(TOKEN)
    assert str(secret) == MASK
    assert repr(secret) == MASK
    assert f"{secret}" == MASK
    assert f"[{secret:>5}]" == "[  ***]"
    assert "%s" % secret == MASK  # noqa: UP031 - the old operator must mask too
    assert repr({"secret": secret}) == "{'secret': ***}"
    assert repr([secret]) == "[***]"


def test_a_secret_is_the_real_string_to_code_that_uses_it() -> None:
    secret = Secret(TOKEN)
    assert secret.reveal() == TOKEN and type(secret.reveal()) is str
    assert reveal(secret) == TOKEN and reveal("plain") == "plain"
    assert secret == TOKEN and secret.startswith("tok-")
    assert "Bearer " + secret == f"Bearer {TOKEN}"
    assert secret.encode() == TOKEN.encode()
    assert json.dumps({"k": secret}) == json.dumps({"k": TOKEN})
    for copied in (copy.deepcopy(secret), pickle.loads(pickle.dumps(secret))):
        assert isinstance(copied, Secret) and copied.reveal() == TOKEN and str(copied) == MASK


def test_redact_hides_every_known_value_and_its_url_form() -> None:
    Secret("p@ss word/42")
    Secret(TOKEN)
    text = (f"POST https://example.com/hook/{TOKEN} failed; "
            "smtp://me:p%40ss%20word%2F42@mail.example.com; raw p@ss word/42")
    shown = redact(text)
    assert TOKEN not in shown and "p%40ss" not in shown and "p@ss word" not in shown
    assert shown == ("POST https://example.com/hook/*** failed; "
                     "smtp://me:***@mail.example.com; raw ***")
    assert redact("nothing secret here") == "nothing secret here"
    assert redact(Secret(TOKEN)) == MASK


def test_short_values_are_secrets_but_not_searched_for_in_text() -> None:
    short = Secret("abc")
    assert str(short) == MASK
    assert redact("abcdef") == "abcdef"


def test_the_nbremind_logger_redacts_messages_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = Secret(TOKEN)
    log = logging.getLogger("nbremind")
    with caplog.at_level(logging.INFO, logger="nbremind"):
        log.info("delivering to https://example.com/%s", secret.reveal())
        try:
            raise RuntimeError(f"server refused token {secret.reveal()}")
        except RuntimeError:
            log.exception("send failed")
    text = caplog.text
    assert "delivering to https://example.com/***" in text
    assert "server refused token ***" in text
    assert TOKEN not in text


def test_env_references_in_a_file_become_secrets_and_stay_hidden(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    (isolated_settings / "config.toml").write_text(
        "[channels]\n"
        'default = ["memory"]\n'
        "[channels.team]\n"
        'url = "https://example.com/hook/${HOOK_TOKEN}"\n'
        'headers = {Authorization = "Bearer ${HOOK_TOKEN}"}\n'
    )
    loaded = load_settings(tmp_path)
    assert loaded.errors == ()
    assert loaded.config.channels == ("memory",)
    team = loaded.config.channel_defs["team"]
    assert isinstance(team["url"], Secret)
    assert team["url"].reveal() == f"https://example.com/hook/{TOKEN}"
    assert team["headers"]["Authorization"].reveal() == f"Bearer {TOKEN}"
    assert TOKEN not in repr(loaded.config)

    session = Session(tick_interval=None)
    try:
        follow(session, tmp_path, watch=False)
        shown = "\n".join(describe(session))
        assert "channel_defs = " in shown and TOKEN not in shown
    finally:
        session.close()


def test_an_error_about_a_secret_value_does_not_show_it(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BAD_SECRET", "not-a-duration-9f8e7d")
    config = isolated_settings / "config.toml"
    config.write_text('send_timeout = "${BAD_SECRET}"\n')
    loaded = load_settings(tmp_path)
    (error,) = loaded.errors
    assert str(config) in error and "send_timeout" in error
    assert "not-a-duration-9f8e7d" not in error and MASK in error

    monkeypatch.setenv("NBREMIND_SEND_TIMEOUT", "${BAD_SECRET}")
    config.unlink()
    (error,) = load_settings(tmp_path).errors
    assert "NBREMIND_SEND_TIMEOUT" in error and "not-a-duration-9f8e7d" not in error


def test_a_secret_in_a_channel_url_is_hidden_in_config_panel_and_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("anywidget")
    from nbremind.ipython.panel import channel_rows

    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("NBREMIND_CHANNELS", "memory,http://127.0.0.1:9/hook/${HOOK_TOKEN}")
    monkeypatch.setenv("NBREMIND_SEND_TIMEOUT", "1s")
    session = Session()
    try:
        live = follow(session, tmp_path, watch=False)
        assert live is not None and live.errors == ()
        assert session.config.channels[1].endswith(TOKEN)  # the real URL, for delivery
        shown = "\n".join(describe(session))
        assert "channels = memory,http://127.0.0.1:9/hook/***    (NBREMIND_CHANNELS)" in shown
        rows, line = session.ticker.submit(channel_rows(session)).result(10)
        assert TOKEN not in repr(rows) and TOKEN not in line and "***" in line
        with caplog.at_level(logging.DEBUG, logger="nbremind"):
            results = session.test(timeout=10)
        assert TOKEN not in repr(results) and TOKEN not in caplog.text
        deliveries = list(session.dispatcher.deliveries)
        assert deliveries and TOKEN not in repr(deliveries)
    finally:
        session.close()


@pytest.mark.kernel
def test_remind_config_in_a_real_kernel_shows_sources_and_hides_secrets(
    kernel_factory: KernelFactory, tmp_path: Path
) -> None:
    """A user file and NBREMIND_* variables read by the kernel's session at ``%load_ext``;
    ``%remind config`` names every source and masks the ``${HOOK_TOKEN}`` value."""
    folder = tmp_path / "user-settings"
    folder.mkdir()
    (folder / "config.toml").write_text('min_duration = "45s"\n')
    k = kernel_factory(env={
        "NBREMIND_CONFIG_DIR": str(folder),
        "HOOK_TOKEN": TOKEN,
        "NBREMIND_CHANNELS": "memory,http://127.0.0.1:9/hook/${HOOK_TOKEN}",
    })
    k.ok("%load_ext nbremind")
    k.ok("%remind mute")
    shown = k.ok("%remind config").stdout
    lines = shown.splitlines()
    assert "channels = memory,http://127.0.0.1:9/hook/***    (NBREMIND_CHANNELS)" in lines
    assert f"min_duration = 45.0    ({folder / 'config.toml'})" in lines
    assert "muted = True    (%remind mute)" in lines
    assert "send_timeout = 10.0    (default)" in lines
    assert f"user settings file: {folder / 'config.toml'}" in lines
    assert TOKEN not in shown

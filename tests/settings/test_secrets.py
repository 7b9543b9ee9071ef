"""Secrets are usable as strings but never shown: str, repr, format, logs, errors, config."""

from __future__ import annotations

import copy
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _config_lines import setting
from _kernel import KernelFactory
from nbremind.core.secrets import MASK, Secret, redact, reveal
from nbremind.runtime.session import Session
from nbremind.settings.files import load_settings
from nbremind.settings.live import describe, follow

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
    text = (
        f"POST https://example.com/hook/{TOKEN} failed; "
        "smtp://me:p%40ss%20word%2F42@mail.example.com; raw p@ss word/42"
    )
    shown = redact(text)
    assert TOKEN not in shown and "p%40ss" not in shown and "p@ss word" not in shown
    assert shown == (
        "POST https://example.com/hook/*** failed; smtp://me:***@mail.example.com; raw ***"
    )
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
        assert setting(shown.splitlines(), "channel_defs")[0].startswith("{") and TOKEN not in shown
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
        assert setting(shown.splitlines(), "channels") == (
            "memory,http://127.0.0.1:9/hook/***",
            "NBREMIND_CHANNELS",
        )
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
    k = kernel_factory(
        env={
            "NBREMIND_CONFIG_DIR": str(folder),
            "HOOK_TOKEN": TOKEN,
            "NBREMIND_CHANNELS": "memory,http://127.0.0.1:9/hook/${HOOK_TOKEN}",
        }
    )
    k.ok("%load_ext nbremind")
    k.ok("%remind mute")
    shown = k.ok("%remind config").stdout
    lines = shown.splitlines()
    assert setting(lines, "channels") == ("memory,http://127.0.0.1:9/hook/***", "NBREMIND_CHANNELS")
    assert setting(lines, "min_duration") == ("45s", str(folder / "config.toml"))
    assert setting(lines, "muted") == ("True", "%remind mute")
    assert setting(lines, "send_timeout") == ("10s", "default")
    assert f"user settings file: {folder / 'config.toml'}" in lines
    assert TOKEN not in shown


# -- bad channel_defs shapes: the error names the channel and key, never the secret ----------
PASSWORD = "pw-7c41d0e9b2"
HOOK = f"https://bot:{PASSWORD}@hooks.example.org/hook?token={TOKEN}"

#: (channel_defs given to configure(), what the message must name)
_BAD_DEFS: dict[str, tuple[object, tuple[str, ...]]] = {
    "header value not a text": (
        {
            "team": {
                "url": "https://hooks.example.org/x",
                "headers": {"Authorization": f"Bearer {TOKEN}", "X-Retries": 3},
            }
        },
        ("channel_defs.team.headers.X-Retries", "not a text"),
    ),
    "headers as a list": (
        {
            "team": {
                "url": "https://hooks.example.org/x",
                "headers": [f"Authorization: Bearer {TOKEN}"],
            }
        },
        ("channel_defs.team.headers", "a list, not a table"),
    ),
    "a channel as a bare URL": (
        {"team": HOOK},
        ("channel_defs.team", "https://bot:***@hooks.example.org/hook?token=***", "not a table"),
    ),
    "a list instead of a table": (
        [HOOK],
        ("channel_defs", "https://bot:***@hooks.example.org/hook?token=***", "not a table"),
    ),
    "a channel as a list": ({"team": [HOOK]}, ("channel_defs.team", "not a table")),
    "a url as a list": ({"team": {"url": [HOOK]}}, ("channel_defs.team.url", "not a URL")),
    "a URL as a channel name": ({HOOK: {"url": HOOK}}, ("channel_defs", "not a channel name")),
    "addresses as a table": (
        {"team": {"url": "smtp://mail.example.org", "to": {"ops": HOOK}}},
        ("channel_defs.team.to", "not an address"),
    ),
}


def _leaks(text: str) -> list[str]:
    """The secrets (or a part of one a cut could leave) found in ``text``."""
    return [s for s in (TOKEN, PASSWORD, TOKEN[:8], PASSWORD[:8]) if s in text]


@pytest.mark.parametrize("case", sorted(_BAD_DEFS))
def test_bad_channel_defs_given_to_configure_name_the_key_not_the_secret(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    import nbremind

    value, named = _BAD_DEFS[case]
    with caplog.at_level(logging.DEBUG, logger="nbremind"), pytest.raises(ValueError) as info:
        nbremind.configure(channel_defs=value)
    message = str(info.value)
    assert message.startswith("configure(): channel_defs"), message
    for part in named:
        assert part in message, message
    assert _leaks(message) == [] and _leaks(caplog.text) == [], message


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"channels": [HOOK, 3]}, "configure(): channels: ['https://bot:***@hooks.example.org"),
        (
            {"channel_defs": {"team": {"url": "https://hooks.example.org/x", "on": [HOOK]}}},
            "configure(): channel_defs.team.on: 'https://bot:***@hooks.example.org",
        ),
    ],
)
def test_any_settings_error_masks_the_urls_it_quotes(values: dict[str, Any], named: str) -> None:
    """Checks outside ``channel_defs`` (lists of names, events) quote values too."""
    import nbremind

    with pytest.raises(ValueError) as info:
        nbremind.configure(**values)
    assert named in str(info.value) and _leaks(str(info.value)) == [], str(info.value)


def test_a_bad_channel_defs_variable_does_not_show_the_url_password(tmp_path: Path) -> None:
    (error,) = load_settings(tmp_path, environ={"NBREMIND_CHANNEL_DEFS": HOOK}).errors
    assert error.startswith("NBREMIND_CHANNEL_DEFS: ") and "not a JSON or TOML inline" in error
    assert "https://bot:***@hooks.example.org/hook?token=***" in error
    assert _leaks(error) == []


#: nbremind.toml texts, with the secrets written in them or read from the environment, and
#: what the warning must name.
_BAD_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "header value not a text, from the environment": (
        '[channels.team]\nurl = "https://hooks.example.org/x"\n'
        'headers = { Authorization = "Bearer ${HOOK_TOKEN}", X-Retries = 3 }\n',
        ("channel_defs.team.headers.X-Retries",),
    ),
    "header value not a text, written": (
        '[channels.team]\nurl = "https://hooks.example.org/x"\n'
        f'headers = {{ Authorization = "Bearer {TOKEN}", X-Retries = 3 }}\n',
        ("channel_defs.team.headers.X-Retries",),
    ),
    "headers as a list, written": (
        '[channels.team]\nurl = "https://hooks.example.org/x"\n'
        f'headers = ["Authorization: Bearer {TOKEN}"]\n',
        ("channel_defs.team.headers",),
    ),
    "a channel as a bare URL, from the environment": (
        "[channels]\n"
        'team = "https://bot:${HOOK_PASSWORD}@hooks.example.org/hook?t=${HOOK_TOKEN}"\n',
        ("channels.team", "not a table"),
    ),
    "a channel as a bare URL, written": (
        f'[channels]\nteam = "{HOOK}"\n',
        ("channels.team", "https://bot:***@hooks.example.org/hook?token=***"),
    ),
    "a channel as a list, written": (
        f'[channels]\nteam = ["{HOOK}"]\n',
        ("channels.team", "not a table"),
    ),
    "a list instead of a table, from the environment": (
        'channel_defs = ["https://bot:${HOOK_PASSWORD}@hooks.example.org/hook'
        '?token=${HOOK_TOKEN}"]\n',
        ("channel_defs", "not a table"),
    ),
    "a list instead of a table, written": (
        f'channel_defs = ["{HOOK}"]\n',
        ("channel_defs", "not a table"),
    ),
}

_LOAD_SCRIPT = """
import nbremind
from nbremind.settings.live import describe

with nbremind.remind("x", channels=["null"]):
    pass
print("\\n".join(describe(nbremind.get_session())))
"""


@pytest.mark.parametrize("case", sorted(_BAD_FILES))
def test_bad_channel_defs_in_a_project_file_are_reported_without_the_secret(
    case: str, tmp_path: Path
) -> None:
    """A fresh interpreter loads a project's ``nbremind.toml`` as a user's script does: the
    warning (stderr) and ``%remind config``'s listing name the file, channel and key."""
    text, named = _BAD_FILES[case]
    project = tmp_path / "project"
    project.mkdir()
    (project / "nbremind.toml").write_text(text)
    env = {**os.environ, "HOOK_TOKEN": TOKEN, "HOOK_PASSWORD": PASSWORD}
    run = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    warning = f"nbremind settings not used: {project / 'nbremind.toml'}: "
    assert warning in run.stderr, run.stderr
    listed = [line for line in run.stdout.splitlines() if line.startswith("not used")]
    assert len(listed) == 1, run.stdout
    for part in named:
        assert part in run.stderr and part in listed[0], (run.stderr, listed)
    assert _leaks(run.stdout + run.stderr) == [], run.stdout + run.stderr


def test_a_metric_cut_for_a_template_keeps_no_part_of_a_secret() -> None:
    """Templates cut a long metric at 200 characters: redacted first, so a secret that
    straddles the cut leaves none of its first characters."""
    from nbremind import remind
    from nbremind.testing import capture_notices

    Secret(TOKEN)
    value = "x" * 195 + TOKEN + "y" * 50
    with capture_notices() as cap:
        cap.session.configure(templates={"success": {"body": "{metrics.note}"}})
        with remind("etl") as task:
            task.metric(note=value)
        (notice,) = cap.notices
    assert notice.body == "x" * 195 + MASK + "y" * 2 + "…"
    assert TOKEN[:4] not in notice.body


@pytest.mark.parametrize("option", ["after", "every", "timeout", "mem", "progress", "on"])
def test_a_url_given_to_another_option_is_quoted_with_its_password_masked(option: str) -> None:
    import nbremind

    bad = "https://bot:pa55-in-the-wrong-place@example.org/hook"
    with pytest.raises(ValueError) as raised:
        nbremind.remind("job", **{option: [bad] if option != "mem" else bad})
    message = str(raised.value)
    assert option in message and "example.org" in message
    assert "pa55" not in message

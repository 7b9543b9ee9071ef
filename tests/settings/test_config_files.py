"""Settings from real files and the environment: precedence, sources, errors, discovery."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import nbremind
from _config_isolation import without_isolation
from nbremind.core.config import Config
from nbremind.core.secrets import Secret
from nbremind.runtime.session import Session, get_session, set_session
from nbremind.settings.files import (
    env_var,
    expand,
    find_project_files,
    load_settings,
    project_root,
    user_config_file,
)
from nbremind.settings.live import describe, follow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder (with a pyproject.toml that has no nbremind table yet) and a
    working folder inside it."""
    root = tmp_path / "project"
    (root / "notebooks" / "deep").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    return root


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    made: list[Session] = []
    yield made
    for session in made:
        session.close()


def write_pyproject(root: Path, body: str) -> Path:
    path = root / "pyproject.toml"
    path.write_text('[project]\nname = "demo"\n\n[tool.nbremind]\n' + body)
    return path


def test_every_layer_in_its_place(
    project: Path,
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
    sessions: list[Session],
) -> None:
    user = isolated_settings / "config.toml"
    user.write_text(
        'min_duration = "1m"\nsend_timeout = "20s"\nexit_timeout = 9\n'
        'panel_keep = 10\ntick_interval = "1s"\n'
    )
    pyproject = write_pyproject(
        project, 'send_timeout = "15s"\nexit_timeout = 8\npanel_keep = 20\n'
    )
    local = project / "nbremind.toml"
    local.write_text("exit_timeout = 7\npanel_keep = 30\n")
    monkeypatch.setenv("NBREMIND_PANEL_KEEP", "40")
    monkeypatch.setenv("NBREMIND_MUTED", "yes")

    session = Session(tick_interval=None)
    sessions.append(session)
    follow(session, project / "notebooks" / "deep", watch=False)
    session.configure(muted=False)

    config = session.config
    assert (config.min_duration, config.send_timeout, config.exit_timeout) == (60, 15, 7)
    assert (config.panel_keep, config.muted, config.tick_interval) == (40, False, 1.0)
    assert config.on is None  # untouched: the default
    assert without_isolation(session.config_sources) == {
        "min_duration": str(user),
        "tick_interval": str(user),
        "send_timeout": f"{pyproject} [tool.nbremind]",
        "exit_timeout": str(local),
        "panel_keep": "NBREMIND_PANEL_KEEP",
        "muted": "configure()",
    }
    shown = describe(session)
    rows = {
        line.split(" = ")[0].rstrip(): line.split(" = ", 1)[1].split("  (")
        for line in shown
        if " = " in line
    }
    assert [part.strip() for part in rows["min_duration"]] == ["1m", f"{user})"]
    assert [part.strip() for part in rows["send_timeout"]] == [
        "15s",
        f"{pyproject} [tool.nbremind])",
    ]
    assert [part.strip() for part in rows["panel_keep"]] == ["40", "NBREMIND_PANEL_KEEP)"]
    assert [part.strip() for part in rows["muted"]] == ["False", "configure())"]
    assert [part.strip() for part in rows["on"]] == ["default", "default)"]
    assert f"user settings file: {user}" in shown
    assert (
        f"project settings file: {pyproject}, {local} (looked up from "
        f"{project / 'notebooks' / 'deep'})"
    ) in shown


def test_the_nearest_project_wins_even_without_a_table(project: Path) -> None:
    write_pyproject(project, "panel_keep = 5\n")
    inner = project / "notebooks"
    (inner / "pyproject.toml").write_text('[project]\nname = "inner"\n')
    assert project_root(inner / "deep") == inner
    loaded = load_settings(inner / "deep")
    assert loaded.config.panel_keep == Config().panel_keep
    assert without_isolation(loaded.sources) == {}
    # nbremind.toml alone also marks a project
    (inner / "pyproject.toml").unlink()
    (inner / "nbremind.toml").write_text("panel_keep = 6\n")
    assert find_project_files(inner / "deep") == (inner / "nbremind.toml",)
    assert load_settings(inner / "deep").config.panel_keep == 6


def test_no_project_and_no_user_file_is_the_defaults(tmp_path: Path) -> None:
    loaded = load_settings(tmp_path)
    assert without_isolation(loaded.config) == Config()
    assert without_isolation(loaded.sources) == {} and loaded.errors == ()


def test_the_user_file_is_in_the_config_dir_override(
    isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert user_config_file() == isolated_settings / "config.toml"
    monkeypatch.delenv("NBREMIND_CONFIG_DIR")
    default = user_config_file()
    assert default.name == "config.toml" and default.parent.name == "nbremind"


def test_channels_is_a_list_or_a_table_of_named_channels(project: Path) -> None:
    write_pyproject(project, 'channels = ["memory", "null"]\n')
    assert load_settings(project).config.channels == ("memory", "null")
    write_pyproject(
        project,
        '[tool.nbremind.channels]\ndefault = ["memory"]\n'
        '[tool.nbremind.channels.team]\nurl = "https://example.com/hook"\non = ["failure"]\n',
    )
    loaded = load_settings(project)
    assert loaded.errors == ()
    assert loaded.config.channels == ("memory",)
    assert dict(loaded.config.channel_defs["team"])["url"] == "https://example.com/hook"
    write_pyproject(project, '[tool.nbremind.channels]\nteam = "https://example.com"\n')
    (error,) = load_settings(project).errors
    assert "channels.team" in error and "'https://example.com'" in error


def _toml_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return repr(value) if not isinstance(value, str) else f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{item}"' for item in value) + "]"
    if isinstance(value, Mapping):
        return "{}" if not value else None
    return None


def test_every_setting_loads_from_a_file_and_from_the_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loader is driven by Config's fields: every one with a writable default loads."""
    defaults = Config()
    lines, checked = [], []
    for name in Config.FIELDS:
        text = _toml_value(getattr(defaults, name))
        if text is not None:
            lines.append(f"{name} = {text}")
            checked.append(name)
    assert {"channels", "muted", "send_timeout", "panel_keep"} <= set(checked)
    write_pyproject(project, "\n".join(lines) + "\n")
    loaded = load_settings(project)
    assert loaded.errors == ()
    assert set(without_isolation(loaded.sources)) == set(checked)
    assert without_isolation(loaded.config) == defaults

    write_pyproject(project, "")
    for name in checked:
        value = getattr(defaults, name)
        if isinstance(value, Mapping):
            text = "{}"
        elif isinstance(value, tuple):
            text = ",".join(value) or "[]"
        else:
            text = str(value)
        monkeypatch.setenv(env_var(name), text)
    loaded = load_settings(project)
    assert loaded.errors == ()
    assert without_isolation(loaded.sources) == {name: env_var(name) for name in checked}
    assert without_isolation(loaded.config) == defaults


def test_environment_values_by_kind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NBREMIND_CHANNELS", "memory, null")
    monkeypatch.setenv("NBREMIND_ON", '["failure", "success"]')
    monkeypatch.setenv("NBREMIND_MUTED", "0")
    monkeypatch.setenv("NBREMIND_MIN_DURATION", "1h30m")
    monkeypatch.setenv("NBREMIND_EXIT_TIMEOUT", "")  # empty: not set
    config = load_settings(tmp_path).config
    assert config.channels == ("memory", "null")
    assert config.on == ("failure", "success")
    assert config.muted is False and config.min_duration == 5400
    assert config.exit_timeout == Config().exit_timeout

    monkeypatch.setenv("NBREMIND_MUTED", "perhaps")
    monkeypatch.setenv("NBREMIND_CHANNEL_DEFS", "{not json")
    loaded = load_settings(tmp_path)
    assert sorted(loaded.errors) == [
        "NBREMIND_CHANNEL_DEFS: '{not json' is not a JSON or TOML inline array or table",
        "NBREMIND_MUTED: 'perhaps' is not one of 1, 0, true, false, yes, no",
    ]
    assert loaded.config.channels == ("memory", "null")  # the other variables still apply


def test_errors_name_file_key_and_value(
    project: Path, isolated_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = isolated_settings / "config.toml"
    user.write_text('panel_keep = 12\nsend_timeout = "soon"\n')
    pyproject = write_pyproject(project, "colour = 'red'\n")
    local = project / "nbremind.toml"
    local.write_text("panel_keep = [1,\n")
    loaded = load_settings(project)
    assert loaded.errors[0] == (
        f"{user}: send_timeout: 'soon' is not a duration such as 90, 90s, 10m, 1h30m or 2d"
    )
    assert loaded.errors[1].startswith(f"{pyproject} [tool.nbremind]: unknown setting 'colour'")
    assert loaded.errors[2].startswith(f"{local}: not valid TOML")
    # a layer with an error is left out whole; the others apply
    assert without_isolation(loaded.config) == Config() and loaded.files == (user, pyproject, local)

    monkeypatch.delenv("MISSING_TOKEN", raising=False)
    user.write_text('[channels.team]\nurl = "https://example.com/${MISSING_TOKEN}"\n')
    (first, *_) = load_settings(project).errors
    assert first == (
        f"{user}: channel_defs.team.url: ${{MISSING_TOKEN}} refers to "
        "MISSING_TOKEN, which is not set"
    )
    user.write_text('send_timeout = "${lower case}"\n')
    (first, *_) = load_settings(project).errors
    assert first == f"{user}: send_timeout: '${{lower case}}' is not a reference such as ${{NAME}}"


def test_references_expand_into_secrets_and_dollar_dollar_is_literal() -> None:
    env = {"TOKEN": "value-1234"}
    plain = expand("$${name} done", "f: k", env)
    assert plain == "${name} done" and not isinstance(plain, Secret)
    mixed = expand({"a": ["x-${TOKEN}", 3], "b": "$${TOKEN}"}, "f: k", env)
    assert isinstance(mixed["a"][0], Secret) and mixed["a"][0].reveal() == "x-value-1234"
    assert mixed["a"][1] == 3 and mixed["b"] == "${TOKEN}"
    with pytest.raises(ValueError, match=r"^f: k\.a\[1\]: \$\{NOPE\} refers to NOPE"):
        expand({"a": ["ok", "${NOPE}"]}, "f: k", env)


def test_the_default_session_loads_settings_and_a_made_one_does_not(
    isolated_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (isolated_settings / "config.toml").write_text('min_duration = "45s"\npanel_keep = "x"\n')
    monkeypatch.setenv("NBREMIND_SEND_TIMEOUT", "3s")
    monkeypatch.chdir(tmp_path)
    previous = set_session(None)
    try:
        with caplog.at_level(logging.WARNING, logger="nbremind"):
            session = get_session()
        try:
            # the user file has an error: it is left out, reported, and the rest applies
            assert session.config.min_duration is None
            assert session.config.send_timeout == 3
            assert without_isolation(session.config_sources) == {
                "send_timeout": "NBREMIND_SEND_TIMEOUT"
            }
            assert session.settings is not None and len(session.settings.errors) == 1
            assert "panel_keep: 'x'" in caplog.text
            assert any(
                line.startswith("not used (the last good settings stay): ")
                and "panel_keep: 'x'" in line
                for line in describe(session)
            )
            assert nbremind.configure(panel_keep=3) is None
            assert session.config.panel_keep == 3
        finally:
            set_session(None)
            session.close()
        assert session.settings is not None
        made = Session(Config(), tick_interval=None)
        assert made.settings is None and made.config == Config()
        made.close()
    finally:
        set_session(previous)

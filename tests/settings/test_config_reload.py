"""Live reload: real files edited on disk, watched by watchfiles; waits have deadlines."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from _config_isolation import without_isolation
from nbremind.runtime.session import Session
from nbremind.settings.live import LiveSettings, describe, follow

DEADLINE = 15.0


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    return root


@pytest.fixture
def live(project: Path) -> Iterator[tuple[Session, LiveSettings]]:
    session = Session(tick_interval=None)
    settings = follow(session, project)
    assert settings is not None
    assert settings.ready.wait(DEADLINE), "the watcher did not start"
    yield session, settings
    session.close()


def write(path: Path, text: str) -> None:
    """Write as editors do: a new file renamed over the old one."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    os.replace(temp, path)


def test_a_valid_edit_applies_and_configure_keeps_precedence(
    live: tuple[Session, LiveSettings], project: Path
) -> None:
    session, settings = live
    session.configure(send_timeout="3s")
    local = project / "nbremind.toml"
    write(local, 'min_duration = "30s"\nsend_timeout = "8s"\n')
    assert settings.wait_for(lambda: session.config.min_duration == 30, DEADLINE)
    assert session.config.send_timeout == 3
    assert without_isolation(session.config_sources) == {
        "min_duration": str(local),
        "send_timeout": "configure()",
    }

    write(local, 'min_duration = "2m"\n')
    assert settings.wait_for(lambda: session.config.min_duration == 120, DEADLINE)
    local.unlink()
    assert settings.wait_for(lambda: session.config.min_duration is None, DEADLINE)
    assert without_isolation(session.config_sources) == {"send_timeout": "configure()"}


def test_an_invalid_edit_keeps_the_last_good_settings_and_is_reported_once(
    live: tuple[Session, LiveSettings], project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    session, settings = live
    pyproject = project / "pyproject.toml"
    write(pyproject, "[tool.nbremind]\npanel_keep = 7\n")
    assert settings.wait_for(lambda: session.config.panel_keep == 7, DEADLINE)

    with caplog.at_level(logging.WARNING, logger="nbremind"):
        write(pyproject, '[tool.nbremind]\npanel_keep = 8\nquiet_hours = "25:00-07:00"\n')
        assert settings.wait_for(lambda: bool(settings.errors), DEADLINE)
        loads = settings.loads
        write(pyproject, '[tool.nbremind]\npanel_keep = 9\nquiet_hours = "25:00-07:00"\n')
        assert settings.wait_for(lambda: settings.loads > loads, DEADLINE)
    assert session.config.panel_keep == 7  # the last good settings stay
    (error,) = settings.errors
    assert error.startswith(f"{pyproject} [tool.nbremind]: quiet_hours: '25:00-07:00'")
    warnings = [r for r in caplog.records if "quiet_hours" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert f"not used (the last good settings stay): {error}" in describe(session)

    write(pyproject, '[tool.nbremind]\npanel_keep = 10\nquiet_hours = "22:00-07:00"\n')
    assert settings.wait_for(lambda: session.config.panel_keep == 10, DEADLINE)
    assert settings.errors == ()
    assert not any(line.startswith("not used") for line in describe(session))


def test_a_file_that_appears_is_read(
    live: tuple[Session, LiveSettings], isolated_settings: Path
) -> None:
    session, settings = live
    user = isolated_settings / "config.toml"
    write(user, "panel_keep = 77\n")
    assert settings.wait_for(lambda: session.config.panel_keep == 77, DEADLINE)
    assert session.config_sources["panel_keep"] == str(user)


def test_a_user_folder_made_later_is_watched(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "later" / "nbremind"
    monkeypatch.setenv("NBREMIND_CONFIG_DIR", str(folder))
    session = Session(tick_interval=None)
    try:
        settings = follow(session, project)
        assert settings is not None and settings.ready.wait(DEADLINE)
        # the watcher sees the folders appear, moves into the new one and reads what is
        # there by then (and whatever is written later)
        folder.mkdir(parents=True)
        write(folder / "config.toml", "panel_keep = 5\n")
        assert settings.wait_for(lambda: session.config.panel_keep == 5, DEADLINE)
    finally:
        session.close()


def test_the_watcher_stops_when_the_session_closes(project: Path) -> None:
    session = Session(tick_interval=None)
    settings = follow(session, project)
    assert settings is not None and settings.ready.wait(DEADLINE)
    thread = settings._thread
    assert thread is not None and thread.is_alive()
    session.close()
    assert not thread.is_alive()


def test_a_nearer_project_that_appears_takes_over(project: Path) -> None:
    write(project / "nbremind.toml", "panel_keep = 21\n")
    inner = project / "analysis"
    inner.mkdir()
    session = Session(tick_interval=None)
    try:
        settings = follow(session, inner)
        assert settings is not None and settings.ready.wait(DEADLINE)
        assert session.config.panel_keep == 21
        write(
            inner / "pyproject.toml",
            '[project]\nname = "analysis"\n\n[tool.nbremind]\npanel_keep = 22\n',
        )
        assert settings.wait_for(lambda: session.config.panel_keep == 22, DEADLINE)
        assert session.config_sources["panel_keep"].startswith(str(inner / "pyproject.toml"))
    finally:
        session.close()

"""The ``when_watching`` setting (what a watched notebook page does with a browser notice):
from a settings file, the environment and ``configure()``, and a bad value's error naming the
value and where it came from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from _config_isolation import without_isolation
from nbremind.core.config import Config, format_setting
from nbremind.runtime.session import Session
from nbremind.settings.files import load_settings


@pytest.fixture
def session() -> Iterator[Session]:
    s = Session(Config(channels=("null",)), tick_interval=None)
    yield s
    s.close()


def test_the_default_is_quiet_and_reads_back() -> None:
    config = Config()
    assert config.when_watching == "quiet"
    assert Config().updated("x", when_watching=format_setting("when_watching", "notify")) == (
        Config(when_watching="notify")
    )


def test_from_a_settings_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = tmp_path / "nbremind.toml"
    local.write_text('when_watching = "notify"\n')
    loaded = load_settings(tmp_path)
    assert loaded.errors == ()
    assert loaded.config.when_watching == "notify"
    assert without_isolation(loaded.sources) == {"when_watching": str(local)}

    local.write_text("")
    monkeypatch.setenv("NBREMIND_WHEN_WATCHING", "Notify")
    loaded = load_settings(tmp_path)
    assert loaded.config.when_watching == "notify"
    assert without_isolation(loaded.sources) == {"when_watching": "NBREMIND_WHEN_WATCHING"}


def test_a_bad_value_in_a_file_is_named_with_the_file(tmp_path: Path) -> None:
    local = tmp_path / "nbremind.toml"
    local.write_text('when_watching = "loud"\n')
    loaded = load_settings(tmp_path)
    assert loaded.errors == (f"{local}: when_watching: 'loud' is not 'quiet' or 'notify'",)
    assert loaded.config.when_watching == "quiet"  # the layer with the error is left out


def test_from_configure_and_a_bad_value(session: Session) -> None:
    session.configure(when_watching="notify")
    assert session.config.when_watching == "notify"
    assert session.config_sources["when_watching"] == "configure()"
    with pytest.raises(ValueError) as caught:
        session.configure(when_watching=True)
    assert str(caught.value) == "configure(): when_watching: True is not 'quiet' or 'notify'"
    assert session.config.when_watching == "notify"  # unchanged

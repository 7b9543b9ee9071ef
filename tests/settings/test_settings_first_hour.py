"""A user's first hour with the settings: named channels that survive a live reload, one
project-file lookup for ``%remind config`` and ``%remind doctor``, values shown as written,
and ``configure()`` that echoes nothing. Reloads are waited on with deadlines."""

from __future__ import annotations

import ast
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _kernel import KernelFactory
from _servers import ScriptedHTTPServer
from nbremind.core.config import Config, format_duration_setting
from nbremind.doctor import check_settings
from nbremind.runtime.session import Session
from nbremind.settings.files import file_lines, load_settings
from nbremind.settings.live import LiveSettings, describe, follow

DEADLINE = 15.0


def write(path: Path, text: str) -> None:
    """Write as editors do: a new file renamed over the old one."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    os.replace(temp, path)


def team(url: str) -> dict[str, Any]:
    """The README's named channel, pointed at ``url``."""
    return {
        "url": url,
        "on": ["failure", "timeout"],
        "templates": {"failure": {"title": "{name} broke on {host}"}},
    }


# -- point 2: named channels given to configure() survive a reload -------------------------------
_SCRIPT = """
import sys
from pathlib import Path

import nbremind
from nbremind import remind

nbremind.configure(
    channels=["team"],
    channel_defs={"team": {
        "url": sys.argv[1],
        "on": ["failure", "timeout"],
        "templates": {"failure": {"title": "{name} broke on {host}"}},
    }},
)
session = nbremind.get_session()
live = session.settings
if live is None or not live.ready.wait(15):
    sys.exit("the settings watcher did not start")
applied = live.applied
Path("nbremind.toml").write_text('panel_keep = 11\\n')
if not live.wait_for(lambda: live.applied > applied and session.config.panel_keep == 11, 15):
    sys.exit("the edit of nbremind.toml was not reloaded")
print("channels after the reload:", ",".join(session.config.channels), flush=True)
try:
    with remind("train"):
        raise RuntimeError("CUDA out of memory")
except RuntimeError:
    pass
if not session.flush(15):
    sys.exit("the notice was not delivered in time")
"""


def test_readme_named_channel_still_gets_notices_after_a_live_reload(
    tmp_path: Path, http_server: ScriptedHTTPServer
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "nbremind.toml").write_text("panel_keep = 10\n")
    script = tmp_path / "train.py"
    script.write_text(_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), http_server.url()],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "channels after the reload: team" in done.stdout, done.stdout + done.stderr
    assert "is not a channel" not in done.stderr, done.stderr
    (request,) = http_server.wait_for(1)
    payload = request.json()
    assert payload["event"] == "failure"
    assert payload["title"] == f"train broke on {socket.gethostname()}"  # team's own template


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "nbremind.toml").write_text("panel_keep = 10\n")
    return root


@pytest.fixture
def live(project: Path) -> Iterator[tuple[Session, LiveSettings]]:
    session = Session(tick_interval=None)
    settings = follow(session, project)
    assert settings is not None
    assert settings.ready.wait(DEADLINE), "the watcher did not start"
    yield session, settings
    session.close()


def reload_with(
    settings: LiveSettings, session: Session, path: Path, panel_keep: int, extra: str = ""
) -> None:
    """Edit ``path`` and wait until the watcher applied it."""
    applied = settings.applied
    write(path, f"panel_keep = {panel_keep}\n{extra}")
    assert settings.wait_for(
        lambda: settings.applied > applied and session.config.panel_keep == panel_keep,
        DEADLINE,
    ), f"the edit was not applied: {settings.errors}"


@pytest.mark.parametrize("order", ["channels first", "channel_defs first", "two calls"])
def test_configure_values_are_reapplied_together_whatever_their_order(
    live: tuple[Session, LiveSettings],
    project: Path,
    order: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    session, settings = live
    url = "https://hooks.example.org/team"
    if order == "channels first":
        session.configure(channels=["team"], channel_defs={"team": team(url)})
    elif order == "channel_defs first":
        session.configure(channel_defs={"team": team(url)}, channels=["team"])
    else:
        session.configure(channel_defs={"team": team(url)})
        session.configure(channels=["team"])
    with caplog.at_level(logging.WARNING, logger="nbremind"):
        reload_with(settings, session, project / "nbremind.toml", 11)
    assert session.config.channels == ("team",)
    assert session.config.channel_defs["team"]["url"] == url
    assert session.config_sources["channels"] == "configure()"
    assert not [r for r in caplog.records if "not a channel" in r.getMessage()]


def test_channels_named_first_and_defined_in_a_later_call_survive_the_file_dropping_them(
    live: tuple[Session, LiveSettings], project: Path
) -> None:
    session, settings = live
    local = project / "nbremind.toml"
    reload_with(
        settings,
        session,
        local,
        12,
        '[channels.team]\nurl = "https://hooks.example.org/from-file"\n',
    )
    session.configure(channels=["team"])  # the file's team
    session.configure(channel_defs={"team": team("https://hooks.example.org/mine")})
    reload_with(settings, session, local, 13)  # the file no longer defines team
    assert session.config.channels == ("team",)
    assert session.config.channel_defs["team"]["url"] == "https://hooks.example.org/mine"
    assert session.config_sources["channel_defs"] == "configure()"


def test_a_file_edit_that_drops_a_channel_configure_uses_keeps_the_other_values(
    live: tuple[Session, LiveSettings], project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    session, settings = live
    local = project / "nbremind.toml"
    reload_with(
        settings,
        session,
        local,
        12,
        '[channels.team]\nurl = "https://hooks.example.org/from-file"\n',
    )
    session.configure(channels=["team"], send_timeout="3s")
    with caplog.at_level(logging.WARNING, logger="nbremind"):
        reload_with(settings, session, local, 13)
    assert session.config.channels == ()  # the automatic choice, said in a warning
    assert session.config.send_timeout == 3
    assert "channels" not in session.config_sources
    assert any("'team' is not a channel" in r.getMessage() for r in caplog.records)


def test_channel_defs_that_drop_a_channel_in_use_are_refused() -> None:
    session = Session(tick_interval=None)
    try:
        session.configure(
            channel_defs={"team": team("https://hooks.example.org/a")}, channels=["team"]
        )
        before = session.config
        with pytest.raises(ValueError, match="'team' is not a channel"):
            session.configure(channel_defs={"other": team("https://hooks.example.org/b")})
        assert session.config is before
    finally:
        session.close()


# -- point 7: values shown as a user writes them, aligned, and read back the same ----------------
def rows_of(lines: list[str]) -> dict[str, tuple[str, str]]:
    """``%remind config``'s setting lines: key -> (value, source)."""
    rows = {}
    for line in lines:
        if " = " not in line or not line.endswith(")"):
            continue
        key, rest = line.split(" = ", 1)
        value, _, source = rest.rpartition("  (")
        rows[key.strip()] = (value.strip(), source[:-1])
    return rows


def test_remind_config_shows_values_as_written_aligned_and_they_read_back(
    tmp_path: Path,
) -> None:
    session = Session(tick_interval=None)
    try:
        follow(session, tmp_path, watch=False)
        session.configure(
            channels=["memory", "null"],
            on=["failure"],
            min_duration="90s",
            quiet_hours="22:00-07:00",
            timezone="Europe/Berlin",
            rate_limit="10m",
            templates={"success": {"title": "{name} done"}},
            tick_interval="0.5s",
            channel_defs={"team": {"url": "https://hooks.example.org/x"}},
            retry_max_time="1h30m",
            outbox_max_age="36h",
        )
        lines = describe(session)
    finally:
        session.close()
    rows = rows_of(lines)
    assert set(rows) == set(Config().as_dict())
    assert rows["history_keep"] == ("90d", "default")
    assert rows["send_timeout"] == ("10s", "default")
    assert rows["quiet_allow"] == ("none", "default")
    assert rows["exit_timeout"][0] == "5s" and rows["tick_interval"][0] == "500ms"
    assert rows["retry_max_time"][0] == "1h30m" and rows["outbox_max_age"][0] == "1d12h"
    assert rows["channels"] == ("memory,null", "configure()")
    setting_lines = [line for line in lines if line.split(" = ")[0].strip() in rows]
    assert len({line.index(" = ") for line in setting_lines}) == 1, setting_lines
    short = [line for line in setting_lines if len(rows_of([line]).popitem()[1][0]) <= 12]
    assert len({line.rindex("  (") for line in short}) == 1, short

    # pasted back into configure() (as Python) and into NBREMIND_* variables (as text), each
    # value gives the setting it shows
    expected = session.config
    for key, (text, _) in rows.items():
        try:
            pasted: Any = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            pasted = text
        assert getattr(Config().updated(**{key: pasted}), key) == getattr(expected, key), key
        environ = {"NBREMIND_CONFIG_DIR": str(tmp_path / "none"), f"NBREMIND_{key.upper()}": text}
        loaded = load_settings(tmp_path, environ)
        assert loaded.errors == (), loaded.errors
        assert getattr(loaded.config, key) == getattr(expected, key), key


@pytest.mark.parametrize(
    "seconds",
    [0.001, 0.25, 1.5, 59.0, 90.0, 3600.0, 5400.0, 86400.0, 7776000.0, 123.456, 0.0125, 10.0 / 3],
)
def test_a_duration_is_shown_as_written_and_reads_back_exactly(seconds: float) -> None:
    text = format_duration_setting(seconds)
    assert " " not in text
    assert Config().updated(send_timeout=text).send_timeout == seconds
    if seconds >= 1 and seconds == int(seconds):
        assert "." not in text  # whole seconds in units: 90d, 1h30m, 59s


def test_not_set_is_written_none_off_or_local_and_reads_back() -> None:
    config = Config().updated(
        min_duration="30s",
        rate_limit="1m",
        history_keep="30d",
        quiet_hours="1-2",
        timezone="UTC",
        on=["failure"],
    )
    cleared = config.updated(
        min_duration="none",
        rate_limit="none",
        history_keep="90d",
        quiet_hours="off",
        timezone="local",
        on="default",
        data_dir="none",
    )
    assert cleared == Config(), cleared
    assert Config().updated(history_keep="off").history_keep == 0
    assert Config().updated(on="none").on == ()


# -- point 6: one project-file lookup, the same for %remind config and doctor --------------------
def test_config_and_doctor_report_the_same_lookup_and_where_it_started(tmp_path: Path) -> None:
    project = tmp_path / "project"
    notebooks = project / "notebooks"
    notebooks.mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    session = Session(tick_interval=None)
    try:
        live = follow(session, notebooks, watch=False)
        assert live is not None and live.loaded is not None
        shown = describe(session)
        doctor = check_settings(live.loaded)
    finally:
        session.close()
    (line,) = [line for line in shown if line.startswith("project settings file:")]
    assert line == (
        f"project settings file: none: the project's {project / 'pyproject.toml'} "
        f"has no [tool.nbremind] table (looked up from {notebooks})"
    )
    assert line in doctor.detail
    assert doctor.summary.startswith("0 files read")
    assert file_lines(live.loaded)[-1] == line

    nothing = tmp_path / "elsewhere"
    nothing.mkdir()
    (line,) = [x for x in file_lines(load_settings(nothing)) if x.startswith("project")]
    assert line == f"project settings file: none found from {nothing} upward"


# -- points 6, 7 and 11a in a real kernel --------------------------------------------------------
@pytest.mark.kernel
def test_in_a_kernel_configure_echoes_nothing_and_config_agrees_with_doctor(
    kernel_factory: KernelFactory,
) -> None:
    k = kernel_factory(env={"NBREMIND_DATA_DIR": ""})
    project = k.workdir.parent
    (project / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.nbremind]\nmin_duration = "2m"\n'
    )
    r = k.ok("import nbremind\nnbremind.configure(channels=['memory'], panel_keep=5)")
    assert r.result is None, r.describe()
    k.ok("%load_ext nbremind")
    config = k.ok("%remind config").stdout.splitlines()
    rows = rows_of(config)
    assert rows["min_duration"] == ("2m", f"{project / 'pyproject.toml'} [tool.nbremind]")
    assert rows["history_keep"] == ("90d", "default")
    assert rows["panel_keep"] == ("5", "configure()")
    expected = f"project settings file: {project / 'pyproject.toml'} (looked up from {k.workdir})"
    assert expected in config, config
    doctor = k.ok("%remind doctor", timeout=60).stdout.splitlines()
    assert f"    {expected}" in doctor, doctor

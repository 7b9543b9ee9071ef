"""What following the settings costs a short process: no watcher thread waited for at exit,
no ``watchfiles``, ``tomllib`` or ``platformdirs`` import when nothing needs them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nbremind.runtime.session import Session
from nbremind.settings import files
from nbremind.settings.live import follow


def test_a_stop_before_the_watch_delay_ends_the_watcher_at_once(tmp_path: Path) -> None:
    session = Session(tick_interval=None)
    live = follow(session, tmp_path, delay=30.0)
    assert live is not None and live._thread is not None and live._thread.is_alive()
    started = time.monotonic()
    session.close()
    assert not live._thread.is_alive()
    assert time.monotonic() - started < 1.0
    assert not live.ready.is_set()  # it never watched


def test_a_delayed_watcher_still_sees_an_edit_made_before_it_watched(tmp_path: Path) -> None:
    (tmp_path / "nbremind.toml").write_text("panel_keep = 5\n")
    session = Session(tick_interval=None)
    live = follow(session, tmp_path, delay=0.3)
    try:
        assert live is not None and session.config.panel_keep == 5
        (tmp_path / "nbremind.toml").write_text("panel_keep = 6\n")  # before the watch began
        assert live.wait_for(lambda: session.config.panel_keep == 6, 15)
    finally:
        session.close()


_SCRIPT = """
import sys
from nbremind import remind
with remind("x"):
    pass
session = __import__("nbremind").get_session()
print(session.settings is not None, sorted(
    m for m in ("watchfiles", "tomllib", "platformdirs") if m in sys.modules
))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the platformdirs shortcut is Linux's")
def test_a_short_script_imports_no_settings_machinery_it_does_not_need(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NBREMIND_CONFIG_DIR"}
    env.update(HOME=str(tmp_path), NBREMIND_CHANNELS="null")
    env.pop("XDG_CONFIG_HOME", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "True []", done.stdout + done.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="the platformdirs shortcut is Linux's")
@pytest.mark.parametrize("home", ["/home/someone", "/home/someone/", "/"])
def test_the_user_folder_is_the_one_platformdirs_gives(
    home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import platformdirs

    monkeypatch.delenv("NBREMIND_CONFIG_DIR", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", home)
    expected = Path(platformdirs.user_config_dir("nbremind", appauthor=False))
    assert files.user_config_dir() == expected
    monkeypatch.setenv("XDG_CONFIG_HOME", "/elsewhere")  # left to platformdirs
    assert files.user_config_dir() == Path("/elsewhere/nbremind")

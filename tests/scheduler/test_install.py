"""The units that start ``nbremind schedule`` at login: the exact text for each system, the
quoting of a folder named ``my "project" dir``, a plistlib round trip, ``systemd-analyze
verify`` where it exists, and writing the file."""

from __future__ import annotations

import os
import plistlib
import shutil
import stat
import subprocess
import sys
from pathlib import Path, PureWindowsPath

import pytest

from nbremind.scheduler.install import Unit, UnitExistsError, unit, write

HOME = Path("/home/me")
#: The systemd and launchd units hold POSIX paths, made and compared as this system's paths.
posix = pytest.mark.skipif(os.name != "posix", reason="POSIX paths")
PROJECT = 'my "project" dir'

SYSTEMD_UNIT = """\
[Unit]
Description=nbremind scheduler: runs the jobs of the settings files

[Service]
Type=simple
WorkingDirectory=/home/me/etl
ExecStart=/home/me/etl/.venv/bin/python -m nbremind schedule
Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=10
# SIGTERM to the scheduler alone: it stops its running jobs itself
KillMode=mixed

[Install]
WantedBy=default.target
"""

LAUNCHD_AGENT = """\
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>org.nbremind.schedule</string>
	<key>ProgramArguments</key>
	<array>
		<string>/Users/me/etl/.venv/bin/python</string>
		<string>-m</string>
		<string>nbremind</string>
		<string>schedule</string>
	</array>
	<key>WorkingDirectory</key>
	<string>/Users/me/etl</string>
	<key>EnvironmentVariables</key>
	<dict>
		<key>PYTHONUNBUFFERED</key>
		<string>1</string>
	</dict>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>ProcessType</key>
	<string>Background</string>
	<key>StandardOutPath</key>
	<string>/Users/me/Library/Logs/nbremind-schedule.log</string>
	<key>StandardErrorPath</key>
	<string>/Users/me/Library/Logs/nbremind-schedule.log</string>
</dict>
</plist>
"""


# -- systemd ---------------------------------------------------------------------------------
@posix
def test_the_systemd_user_unit() -> None:
    made = unit("linux", "/home/me/etl/.venv/bin/python", Path("/home/me/etl"), home=HOME)
    assert made.path == HOME / ".config/systemd/user/nbremind-schedule.service"
    assert made.text == SYSTEMD_UNIT
    assert made.enable == (
        "systemctl --user daemon-reload",
        "systemctl --user enable --now nbremind-schedule.service",
    )


@posix
def test_the_systemd_unit_goes_to_xdg_config_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/srv/conf")
    made = unit("linux", "/usr/bin/python3", Path("/srv/etl"))
    assert made.path == Path("/srv/conf/systemd/user/nbremind-schedule.service")
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", "/home/other")
    made = unit("linux", "/usr/bin/python3", Path("/srv/etl"))
    assert made.path == Path("/home/other/.config/systemd/user/nbremind-schedule.service")


def _line(text: str, key: str) -> str:
    [line] = [line for line in text.splitlines() if line.startswith(f"{key}=")]
    return line


@posix
def test_systemd_quoting_of_a_folder_with_quotes_spaces_and_specifiers() -> None:
    folder = Path(f"/home/me/{PROJECT}")
    made = unit(
        "linux",
        "/opt/py 3.11/bin/python",  # a space only: systemd takes it quoted as the program
        folder,
        ["--metrics-port", "9100", "100% $HOME", 'a "b" \\c', "", ";"],
        home=HOME,
    )
    assert _line(made.text, "WorkingDirectory") == f"WorkingDirectory=/home/me/{PROJECT}"
    assert _line(made.text, "ExecStart") == (
        'ExecStart="/opt/py 3.11/bin/python" -m nbremind schedule --metrics-port 9100 '
        '"100%% $$HOME" "a \\"b\\" \\\\c" "" ";"'
    )
    # a program path systemd refuses (a quote) is started through the shell, as an argument
    made = unit("linux", f"{folder}/.venv/bin/python", Path("/srv/50%"), home=HOME)
    assert _line(made.text, "ExecStart") == (
        'ExecStart=/bin/sh -c "exec \\"$$0\\" \\"$$@\\"" '
        '"/home/me/my \\"project\\" dir/.venv/bin/python" -m nbremind schedule'
    )
    assert _line(made.text, "WorkingDirectory") == "WorkingDirectory=/srv/50%%"


@posix
@pytest.mark.parametrize("folder", ["/srv/a\nb", "/srv/ends with space ", "/srv/back\\"])
def test_a_folder_systemd_cannot_carry_is_an_error(folder: str) -> None:
    with pytest.raises(ValueError, match=r"workdir: .* cannot be written in a systemd unit"):
        unit("linux", "/usr/bin/python3", Path(folder), home=HOME)


@posix
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("through_shell", [False, True])
def test_systemd_analyze_verifies_the_unit(tmp_path: Path, through_shell: bool) -> None:
    folder = tmp_path / PROJECT
    bin_dir = (folder if through_shell else tmp_path / "py 3") / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.symlink_to(sys.executable)
    args = ["--metrics-port", "9100", "100% $HOME", 'a "b" \\c', "", ";", "tab\there"]
    made = write(unit("linux", str(python), folder, args, home=tmp_path / "home"))
    assert ("/bin/sh -c" in made.read_text()) is through_shell
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path / "home")}
    out = subprocess.run(
        ["systemd-analyze", "--user", "verify", str(made)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert (out.returncode, out.stderr) == (0, ""), out.stderr


# -- launchd ---------------------------------------------------------------------------------
@posix
def test_the_launchd_agent() -> None:
    home = Path("/Users/me")
    made = unit("darwin", "/Users/me/etl/.venv/bin/python", Path("/Users/me/etl"), home=home)
    assert made.path == home / "Library/LaunchAgents/org.nbremind.schedule.plist"
    assert made.text == LAUNCHD_AGENT
    assert made.enable == (
        "launchctl load -w /Users/me/Library/LaunchAgents/org.nbremind.schedule.plist",
    )


@posix
def test_the_launchd_agent_round_trips_through_plistlib_with_any_folder_name() -> None:
    home = Path("/Users/me & you")
    folder = f"/Users/me & you/{PROJECT} <1>"
    made = unit("darwin", f"{folder}/.venv/bin/python", Path(folder), ["--x", "a'b"], home=home)
    agent = plistlib.loads(made.text.encode())
    assert agent["ProgramArguments"] == [
        f"{folder}/.venv/bin/python",
        "-m",
        "nbremind",
        "schedule",
        "--x",
        "a'b",
    ]
    assert agent["WorkingDirectory"] == folder
    assert (agent["Label"], agent["RunAtLoad"], agent["KeepAlive"]) == (
        "org.nbremind.schedule",
        True,
        {"SuccessfulExit": False},
    )
    assert made.enable == (
        "launchctl load -w '/Users/me & you/Library/LaunchAgents/org.nbremind.schedule.plist'",
    )
    with pytest.raises(ValueError, match="launchd agent cannot hold"):
        unit("darwin", "/usr/bin/python3", Path("/Users/me/a\x01b"), home=home)


# -- Task Scheduler --------------------------------------------------------------------------
def test_the_task_scheduler_command() -> None:
    python = r"C:\Program Files\Python311\python.exe"
    made = unit("windows", python, PureWindowsPath(r"C:\Users\me\my project"))
    assert made == Unit(
        None,
        "",
        (
            r'schtasks /Create /SC ONLOGON /TN nbremind-schedule /TR "cmd /s /c \"cd /d '
            r"\"C:\Users\me\my project\" ^&^& \"C:\Program Files\Python311\python.exe\" "
            r'-m nbremind schedule\""',
        ),
    )
    assert unit("win32", python, PureWindowsPath(r"C:\etl")) == unit(
        "windows",
        python,
        PureWindowsPath(r"C:\etl"),
    )


def test_task_scheduler_quoting_of_cmd_operators_and_trailing_backslashes() -> None:
    made = unit(
        "windows",
        r"C:\Tools (x86) & co\python.exe",
        PureWindowsPath("C:\\"),
        ["--port", "9100", "a b", "x&y"],
    )
    # inside cmd's quotes an operator stays as it is; a backslash before a quote is doubled
    assert made.enable == (
        r'schtasks /Create /SC ONLOGON /TN nbremind-schedule /TR "cmd /s /c \"cd /d '
        r"\"C:\\\" ^&^& \"C:\Tools (x86) & co\python.exe\" -m nbremind schedule --port 9100 "
        r'\"a b\" \"x&y\"\""',
    )


@pytest.mark.parametrize(
    ("python", "folder"),
    [
        (r"C:\py\python.exe", r"C:\100% sure"),
        (r"C:\py!\python.exe", r"C:\etl"),
        (r"C:\py\python.exe", 'C:\\my "project"'),
    ],
)
def test_what_cmd_would_expand_is_refused(python: str, folder: str) -> None:
    with pytest.raises(ValueError, match="cannot be run by Task Scheduler through cmd"):
        unit("windows", python, PureWindowsPath(folder))


def test_a_windows_unit_has_no_file_to_write() -> None:
    made = unit("windows", r"C:\py\python.exe", PureWindowsPath(r"C:\etl"))
    with pytest.raises(ValueError, match="no file to write: run schtasks /Create"):
        write(made)


# -- bad values ------------------------------------------------------------------------------
@posix
def test_relative_paths_and_unknown_systems_are_errors() -> None:
    with pytest.raises(ValueError, match="python: 'python3' is not an absolute path"):
        unit("linux", "python3", Path("/srv/etl"), home=HOME)
    with pytest.raises(ValueError, match="workdir: 'etl' is not an absolute path"):
        unit("darwin", "/usr/bin/python3", Path("etl"), home=HOME)
    with pytest.raises(ValueError, match="workdir: '/srv/etl' is not an absolute Windows path"):
        unit("windows", r"C:\py\python.exe", Path("/srv/etl"))
    with pytest.raises(ValueError, match="system: 'beos' is not one of linux, darwin, windows"):
        unit("beos", "/usr/bin/python3", Path("/srv/etl"))


# -- writing ---------------------------------------------------------------------------------
@posix
def test_write_makes_the_folders_and_a_0o644_file(tmp_path: Path) -> None:
    old = os.umask(0o077)  # the mode is the unit's, whatever the umask
    try:
        made = unit("linux", "/usr/bin/python3", tmp_path / PROJECT, home=tmp_path / "home")
        path = write(made)
    finally:
        os.umask(old)
    assert path == made.path and path.read_text() == made.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


@posix
def test_write_leaves_the_same_file_and_refuses_another_unless_forced(tmp_path: Path) -> None:
    made = unit("linux", "/usr/bin/python3", tmp_path, home=tmp_path / "home")
    path = write(made)
    assert write(made) == path  # the same text: nothing to do
    changed = unit(
        "linux", "/usr/bin/python3", tmp_path, ["--metrics-port", "9100"], home=tmp_path / "home"
    )
    with pytest.raises(UnitExistsError, match="exists with other content") as caught:
        write(changed)
    assert isinstance(caught.value, FileExistsError) and isinstance(caught.value, ValueError)
    assert path.read_text() == made.text  # untouched
    assert write(changed, force=True) == path
    assert path.read_text() == changed.text

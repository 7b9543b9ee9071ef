"""``nbremind setup windows``: as a user runs it here (not Windows: exit 2 and why), and on
a faked Windows through ``main()`` (with the registry fake of ``_windows_registry``)."""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

import pytest

from _projects import nbremind_in
from _windows_registry import fake_windows
from nbremind.channels.shell_link import read_link
from nbremind.channels.windows_identity import AUMID_KEY, SETTINGS_KEY, icon_path
from nbremind.cli import main

HKCU = 0x80000001
REG_SZ, REG_DWORD = 1, 4


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    return fake_windows(monkeypatch, tmp_path)


def _shortcut(tmp_path: Path) -> Path:
    return tmp_path / "AppData/Roaming/Microsoft/Windows/Start Menu/Programs/nbremind.lnk"


# -- as a user runs it, on this (non-Windows) machine ------------------------------------------
needs_not_windows = pytest.mark.skipif(
    platform.system() == "Windows", reason="would change this Windows user's registry"
)


@needs_not_windows
def test_off_windows_it_says_so_and_exits_2() -> None:
    name = {"Darwin": "macOS"}.get(platform.system(), platform.system())
    for args in (["setup", "windows"], ["setup", "windows", "--remove"]):
        done = nbremind_in(None, *args)
        assert (done.returncode, done.stdout) == (2, "")
        assert done.stderr == f"nbremind setup windows: only on Windows (this is {name})\n"


@needs_not_windows
def test_remove_and_enable_together_is_a_usage_error() -> None:
    done = nbremind_in(None, "setup", "windows", "--remove", "--enable")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "usage: nbremind setup windows [-h] [--remove | --enable]",
        "nbremind setup windows: error: argument --enable: not allowed with argument --remove",
    ]


def test_setup_needs_its_platform() -> None:
    done = nbremind_in(None, "setup")
    assert done.returncode == 2
    assert "the following arguments are required: PLATFORM" in done.stderr


# -- on a faked Windows ------------------------------------------------------------------------
def test_setup_windows_prints_what_it_did(
    windows: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["setup", "windows"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines() == [
        rf"registered the app id 'nbremind': HKEY_CURRENT_USER\{AUMID_KEY} (DisplayName "
        f"'nbremind', IconUri {icon_path()})",
        f"created the Start-menu shortcut {_shortcut(tmp_path)} (System.AppUserModel.ID = "
        f"nbremind, starts {tmp_path / 'Python311' / 'pythonw.exe'})",
    ]
    assert read_link(_shortcut(tmp_path)).app_id == "nbremind"
    assert windows.value(AUMID_KEY, "DisplayName") == ("nbremind", REG_SZ)


def test_setup_windows_enable_and_remove(
    windows: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    windows.put(SETTINGS_KEY, "Enabled", 0, REG_DWORD)
    assert main(["setup", "windows", "--enable"]) == 0
    assert "Enabled = 1" in capsys.readouterr().out.splitlines()[-1]
    assert windows.value(SETTINGS_KEY, "Enabled") == (1, REG_DWORD)
    assert main(["setup", "windows", "--remove"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"removed the Start-menu shortcut {_shortcut(tmp_path)}"
    assert not _shortcut(tmp_path).exists()
    assert ("DeleteKey", HKCU, AUMID_KEY) in windows.calls


def test_setup_windows_when_the_registry_refuses(
    windows: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    windows.denied.add(AUMID_KEY.casefold())
    assert main(["setup", "windows"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(
        rf"nbremind setup windows: error: cannot write HKEY_CURRENT_USER\{AUMID_KEY}: "
        "access denied"
    )


def test_the_fake_is_the_one_nbremind_imports(windows: Any) -> None:
    assert sys.modules["winreg"].OpenKey.__self__ is windows

"""nbremind's Windows identity (app id key, Start-menu shortcut, the Settings switch) against
a recording fake of the standard library's ``winreg``, with ``platform.system()`` faked to
"Windows" and ``%APPDATA%`` in a temporary folder. The fake keeps an in-memory registry and
behaves as winreg does where nbremind depends on it: FileNotFoundError for a missing key or
value, PermissionError for a denied key or a write through a key opened for reading."""

from __future__ import annotations

import struct
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from _windows_registry import (
    HKCU,
    REG_DWORD,
    REG_SZ,
    FakeWinreg,
    fake_windows,
)
from nbremind.channels.shell_link import ShellLink, read_link, write_link
from nbremind.channels.windows_identity import (
    APP_ID,
    AUMID_KEY,
    SETTINGS_KEY,
    IdentityState,
    SetupError,
    WindowsOnlyError,
    icon_path,
    identity_state,
    register,
    setup,
    shortcut_path,
)


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeWinreg:
    return fake_windows(monkeypatch, tmp_path)


def _shortcut(tmp_path: Path) -> Path:
    return tmp_path / "AppData/Roaming/Microsoft/Windows/Start Menu/Programs/nbremind.lnk"


# -- the names the rest of nbremind uses -------------------------------------------------------
def test_the_identity_names() -> None:
    assert APP_ID == "nbremind"
    assert AUMID_KEY == r"Software\Classes\AppUserModelId\nbremind"
    assert SETTINGS_KEY == (
        r"Software\Microsoft\Windows\CurrentVersion\Notifications\Settings\nbremind"
    )
    icon = icon_path()
    assert icon.is_absolute() and icon.name == "nbremind.ico"
    data = icon.read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", data)
    assert (reserved, kind) == (0, 1) and count >= 1  # an icon directory
    for n in range(count):  # each entry: 16 bytes, its image's size and offset at the end
        size, offset = struct.unpack_from("<II", data, 6 + 16 * n + 8)
        assert data[offset : offset + 8] == b"\x89PNG\r\n\x1a\n" and offset + size <= len(data)


def test_the_shortcut_is_in_the_users_start_menu(
    windows: FakeWinreg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert shortcut_path() == _shortcut(tmp_path)
    monkeypatch.delenv("APPDATA")
    with pytest.raises(SetupError, match="APPDATA is not set"):
        shortcut_path()


# -- register() --------------------------------------------------------------------------------
def test_register_writes_the_display_name_and_the_icon(windows: FakeWinreg) -> None:
    register()
    assert windows.calls == [
        ("CreateKeyEx", HKCU, AUMID_KEY),
        ("SetValueEx", AUMID_KEY, "DisplayName", 0, REG_SZ, "nbremind"),
        ("SetValueEx", AUMID_KEY, "IconUri", 0, REG_SZ, str(icon_path())),
    ]
    assert windows.value(AUMID_KEY, "DisplayName") == ("nbremind", REG_SZ)


def test_register_keeps_desktop_notifiers_key_and_value_names(
    windows: FakeWinreg, monkeypatch: pytest.MonkeyPatch
) -> None:
    """desktop-notifier registers the app id itself whenever it starts on Windows: its own
    code, run against the same fake, must leave the same key and value names."""

    class Anything:  # any WinRT name the module reads at import; never called here
        def __getattr__(self, name: str) -> Any:
            return self

    class WinrtModule(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            return Anything()

    for name in (
        "winrt",
        "winrt.system",
        "winrt.windows.applicationmodel.core",
        "winrt.windows.data.xml.dom",
        "winrt.windows.ui.notifications",
    ):
        monkeypatch.setitem(sys.modules, name, WinrtModule(name))
    monkeypatch.delitem(sys.modules, "desktop_notifier.backends.winrt", raising=False)
    try:
        from desktop_notifier import Icon
        from desktop_notifier.backends.winrt import register_hkey

        with monkeypatch.context() as windows_platform:
            windows_platform.setattr(sys, "platform", "win32")
            register_hkey(app_id=APP_ID, app_name="nbremind", app_icon=Icon(path=icon_path()))
    finally:
        import desktop_notifier.backends

        sys.modules.pop("desktop_notifier.backends.winrt", None)
        vars(desktop_notifier.backends).pop("winrt", None)
    theirs = dict(windows.keys)
    windows.keys.clear()
    register()
    assert theirs.keys() == windows.keys.keys()  # the same key (names are case-insensitive)
    ours = windows.keys[AUMID_KEY.casefold()]
    assert theirs[AUMID_KEY.casefold()].keys() == ours.keys() == {"displayname", "iconuri"}
    assert theirs[AUMID_KEY.casefold()]["displayname"] == ours["displayname"]
    # the icon: theirs as a file: URI (desktop-notifier's form), ours as the path Microsoft's
    # documentation shows
    assert theirs[AUMID_KEY.casefold()]["iconuri"] == (icon_path().as_uri(), REG_SZ)
    assert ours["iconuri"] == (str(icon_path()), REG_SZ)


def test_register_says_when_the_registry_refuses(windows: FakeWinreg) -> None:
    windows.denied.add(AUMID_KEY.casefold())
    with pytest.raises(SetupError) as raised:
        register()
    assert str(raised.value).startswith(
        rf"cannot write HKEY_CURRENT_USER\{AUMID_KEY}: access denied"
    )


# -- setup() -----------------------------------------------------------------------------------
def test_setup_registers_and_creates_the_shortcut(windows: FakeWinreg, tmp_path: Path) -> None:
    lines = setup()
    pythonw = tmp_path / "Python311" / "pythonw.exe"
    assert read_link(_shortcut(tmp_path)) == ShellLink(
        target=str(pythonw),
        app_id="nbremind",
        description="nbremind",
        working_dir=str(pythonw.parent),
        icon=str(icon_path()),
    )
    assert windows.writes() == [
        ("CreateKeyEx", HKCU, AUMID_KEY),
        ("SetValueEx", AUMID_KEY, "DisplayName", 0, REG_SZ, "nbremind"),
        ("SetValueEx", AUMID_KEY, "IconUri", 0, REG_SZ, str(icon_path())),
    ]
    assert lines == [
        rf"registered the app id 'nbremind': HKEY_CURRENT_USER\{AUMID_KEY} "
        f"(DisplayName 'nbremind', IconUri {icon_path()})",
        f"created the Start-menu shortcut {_shortcut(tmp_path)} "
        f"(System.AppUserModel.ID = nbremind, starts {pythonw})",
    ]
    assert identity_state().problems == ()


def test_setup_replaces_a_shortcut_that_claims_another_app_id(
    windows: FakeWinreg, tmp_path: Path
) -> None:
    write_link(_shortcut(tmp_path), ShellLink(target=r"C:\other.exe", app_id="Other.App"))
    lines = setup()
    assert lines[1].startswith(f"replaced the Start-menu shortcut {_shortcut(tmp_path)} ")
    assert read_link(_shortcut(tmp_path)).app_id == "nbremind"


def test_setup_starts_python_itself_where_there_is_no_pythonw(
    windows: FakeWinreg, tmp_path: Path
) -> None:
    (tmp_path / "Python311" / "pythonw.exe").unlink()
    setup()
    assert read_link(_shortcut(tmp_path)).target == str(tmp_path / "Python311" / "python.exe")


def test_setup_enable_turns_toasts_back_on(windows: FakeWinreg) -> None:
    windows.put(SETTINGS_KEY, "Enabled", 0, REG_DWORD)  # turned off in Settings
    lines = setup(enable=True)
    assert windows.writes()[-2:] == [
        ("CreateKeyEx", HKCU, SETTINGS_KEY),
        ("SetValueEx", SETTINGS_KEY, "Enabled", 0, REG_DWORD, 1),
    ]
    assert windows.value(SETTINGS_KEY, "Enabled") == (1, REG_DWORD)
    assert lines[-1] == (
        rf"turned toasts on for nbremind: HKEY_CURRENT_USER\{SETTINGS_KEY} Enabled = 1 "
        "(a group policy that turns notifications off still wins)"
    )
    assert identity_state().enabled_value == 1


def test_setup_without_enable_leaves_the_settings_alone(windows: FakeWinreg) -> None:
    windows.put(SETTINGS_KEY, "Enabled", 0, REG_DWORD)
    setup()
    assert all(SETTINGS_KEY not in call for call in windows.writes())
    assert windows.value(SETTINGS_KEY, "Enabled") == (0, REG_DWORD)


def test_setup_remove_deletes_the_shortcut_and_the_key(windows: FakeWinreg, tmp_path: Path) -> None:
    setup()
    windows.put(SETTINGS_KEY, "Enabled", 0, REG_DWORD)
    windows.calls.clear()
    lines = setup(remove=True)
    assert not _shortcut(tmp_path).exists()
    assert windows.writes() == [("DeleteKey", HKCU, AUMID_KEY)]
    assert not windows.has(AUMID_KEY)
    assert windows.value(SETTINGS_KEY, "Enabled") == (0, REG_DWORD)  # the user's, kept
    assert lines == [
        f"removed the Start-menu shortcut {_shortcut(tmp_path)}",
        rf"removed HKEY_CURRENT_USER\{AUMID_KEY} (the next desktop toast registers it again)",
        rf"left HKEY_CURRENT_USER\{SETTINGS_KEY} as it is (the user's notification settings)",
    ]


def test_setup_remove_with_nothing_there(windows: FakeWinreg, tmp_path: Path) -> None:
    lines = setup(remove=True)
    assert lines[:2] == [
        f"no Start-menu shortcut to remove ({_shortcut(tmp_path)})",
        rf"no app id key to remove (HKEY_CURRENT_USER\{AUMID_KEY})",
    ]


def test_setup_errors_are_clear(
    windows: FakeWinreg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="do not go together"):
        setup(remove=True, enable=True)
    programs = _shortcut(tmp_path).parent
    programs.rmdir()
    with pytest.raises(SetupError, match=r"the Start-menu folder .* does not exist"):
        setup()
    assert windows.writes() == []  # nothing half done
    programs.mkdir()
    windows.denied.add(SETTINGS_KEY.casefold())
    with pytest.raises(SetupError, match=r"cannot write .*Settings\\nbremind: access denied"):
        setup(enable=True)
    monkeypatch.delenv("APPDATA")
    with pytest.raises(SetupError, match="APPDATA is not set"):
        setup()


@pytest.mark.parametrize(("system", "name"), [("Linux", "Linux"), ("Darwin", "macOS")])
def test_setup_is_only_for_windows(monkeypatch: pytest.MonkeyPatch, system: str, name: str) -> None:
    monkeypatch.setattr("platform.system", lambda: system)
    for call in (setup, register, lambda: setup(remove=True)):
        with pytest.raises(WindowsOnlyError) as raised:
            call()
        assert str(raised.value) == f"only on Windows (this is {name})"
    assert identity_state() == IdentityState(None, None, None, None, None, None, ())


# -- identity_state() --------------------------------------------------------------------------
def _reads_only(fake: FakeWinreg) -> None:
    assert fake.writes() == []
    assert {c[0] for c in fake.calls} <= {"OpenKey", "QueryValueEx"}


def test_state_with_nothing_registered(windows: FakeWinreg, tmp_path: Path) -> None:
    state = identity_state()
    assert state == IdentityState(
        registered=False,
        display_name=None,
        icon=None,
        shortcut=None,
        shortcut_app_id=None,
        enabled_value=None,
        problems=(
            "the app id 'nbremind' is not registered (HKEY_CURRENT_USER"
            rf"\{AUMID_KEY} is missing): run `nbremind setup windows`",
            f"the Start-menu shortcut is missing ({_shortcut(tmp_path)}): "
            "run `nbremind setup windows`",
        ),
    )
    assert windows.calls == [("OpenKey", HKCU, AUMID_KEY), ("OpenKey", HKCU, SETTINGS_KEY)]


def test_state_registered_without_a_shortcut(windows: FakeWinreg, tmp_path: Path) -> None:
    register()  # what the first toast does, through desktop-notifier, less our icon
    windows.calls.clear()
    state = identity_state()
    assert (state.registered, state.display_name, state.icon) == (
        True,
        "nbremind",
        str(icon_path()),
    )
    assert state.shortcut is None and state.shortcut_app_id is None
    assert state.problems == (
        f"the Start-menu shortcut is missing ({_shortcut(tmp_path)}): run `nbremind setup windows`",
    )
    _reads_only(windows)
    assert ("QueryValueEx", AUMID_KEY, "DisplayName") in windows.calls


def test_state_with_a_shortcut_claiming_another_app_id(windows: FakeWinreg, tmp_path: Path) -> None:
    register()
    write_link(_shortcut(tmp_path), ShellLink(target=r"C:\other.exe", app_id="Other.App"))
    state = identity_state()
    assert state.shortcut == _shortcut(tmp_path) and state.shortcut_app_id == "Other.App"
    assert state.problems == (
        f"the Start-menu shortcut {_shortcut(tmp_path)} carries the app id 'Other.App', not "
        "'nbremind': run `nbremind setup windows`",
    )


def test_state_with_a_shortcut_without_app_id_or_unreadable(
    windows: FakeWinreg, tmp_path: Path
) -> None:
    register()
    write_link(_shortcut(tmp_path), ShellLink(target=r"C:\other.exe"))
    assert identity_state().problems == (
        f"the Start-menu shortcut {_shortcut(tmp_path)} carries no app id: "
        "run `nbremind setup windows`",
    )
    _shortcut(tmp_path).write_bytes(b"garbage")
    state = identity_state()
    assert state.shortcut == _shortcut(tmp_path) and state.shortcut_app_id is None
    [problem] = state.problems
    assert problem.startswith(f"the Start-menu shortcut {_shortcut(tmp_path)} cannot be read (")
    assert problem.endswith("): run `nbremind setup windows`")


def test_state_all_good(windows: FakeWinreg, tmp_path: Path) -> None:
    setup()
    windows.put(SETTINGS_KEY, "Enabled", 1, REG_DWORD)
    windows.calls.clear()
    assert identity_state() == IdentityState(
        registered=True,
        display_name="nbremind",
        icon=str(icon_path()),
        shortcut=_shortcut(tmp_path),
        shortcut_app_id="nbremind",
        enabled_value=1,
        problems=(),
    )
    _reads_only(windows)
    assert ("QueryValueEx", SETTINGS_KEY, "Enabled") in windows.calls


def test_state_turned_off_in_settings(windows: FakeWinreg) -> None:
    setup()
    windows.put(SETTINGS_KEY, "Enabled", 0, REG_DWORD)
    state = identity_state()
    assert state.enabled_value == 0
    assert state.problems == (
        "toasts from nbremind are turned off in Settings → System → Notifications: turn them "
        "on there, or run `nbremind setup windows --enable`",
    )


def test_state_when_the_registry_cannot_be_read(windows: FakeWinreg) -> None:
    setup()
    windows.denied.add(AUMID_KEY.casefold())
    state = identity_state()
    assert state.registered is None
    assert state.problems == (
        rf"HKEY_CURRENT_USER\{AUMID_KEY} cannot be read: access denied "
        "([Errno 5] Access is denied)",
    )


def test_state_never_raises(windows: FakeWinreg, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("a registry nobody foresaw")

    monkeypatch.setattr(sys.modules["winreg"], "OpenKey", broken)
    state = identity_state()
    assert state.registered is None
    assert state.problems == ("the app id could not be checked: a registry nobody foresaw",)
    monkeypatch.setitem(sys.modules, "winreg", None)  # no winreg at all: import fails
    state = identity_state()
    assert state.registered is None and state.problems[0].startswith(
        "the registry cannot be read here ("
    )

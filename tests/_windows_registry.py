"""A recording fake of the standard library's ``winreg`` (an in-memory registry) and a faked
Windows around it (``platform.system()``, ``%APPDATA%`` with its Start-menu folder, a Python
with ``pythonw.exe`` beside it), for the tests of nbremind's Windows identity and of
``nbremind setup windows``. It behaves as winreg does where nbremind depends on it:
FileNotFoundError for a missing key or value, PermissionError for a denied key or a write
through a key opened for reading."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "DENIED",
    "HKCU",
    "KEY_READ",
    "KEY_WRITE",
    "NOT_FOUND",
    "REG_DWORD",
    "REG_EXPAND_SZ",
    "REG_SZ",
    "FakeKey",
    "FakeWinreg",
    "fake_windows",
]

HKCU = 0x80000001  # winreg.HKEY_CURRENT_USER
REG_SZ, REG_EXPAND_SZ, REG_DWORD = 1, 2, 4
KEY_READ, KEY_WRITE = 0x20019, 0x20006
NOT_FOUND = (2, "The system cannot find the file specified")
DENIED = (5, "Access is denied")


@dataclass
class FakeKey:
    """An open key handle."""

    path: str
    access: int
    closed: bool = False

    def __enter__(self) -> FakeKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True

    def Close(self) -> None:
        self.closed = True


@dataclass
class FakeWinreg:
    """What nbremind uses of ``winreg``: every call recorded as (name, *arguments), a key
    handle recorded as its path."""

    HKEY_CURRENT_USER: int = HKCU
    REG_SZ: int = REG_SZ
    REG_EXPAND_SZ: int = REG_EXPAND_SZ
    REG_DWORD: int = REG_DWORD
    KEY_READ: int = KEY_READ
    KEY_WRITE: int = KEY_WRITE
    #: key path (case folded) -> value name (case folded) -> (value, type)
    keys: dict[str, dict[str, tuple[Any, int]]] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    #: Keys (case folded) whose opening or creation is denied.
    denied: set[str] = field(default_factory=set)

    # -- the test's side
    def put(self, path: str, name: str, value: Any, kind: int) -> None:
        self.keys.setdefault(path.casefold(), {})[name.casefold()] = (value, kind)

    def value(self, path: str, name: str) -> tuple[Any, int] | None:
        return self.keys.get(path.casefold(), {}).get(name.casefold())

    def has(self, path: str) -> bool:
        return path.casefold() in self.keys

    def writes(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] in ("CreateKeyEx", "SetValueEx", "DeleteKey")]

    # -- winreg's side
    def _root(self, key: Any) -> None:
        assert key == HKCU, f"only HKEY_CURRENT_USER is faked, not {key!r}"

    def ConnectRegistry(self, computer: str | None, key: Any) -> Any:
        self.calls.append(("ConnectRegistry", computer, key))
        assert computer is None, "only this computer's registry is faked"
        self._root(key)
        return key

    def CreateKeyEx(
        self, key: Any, sub_key: str, reserved: int = 0, access: int = KEY_WRITE
    ) -> FakeKey:
        self.calls.append(("CreateKeyEx", key, sub_key, *self._given(reserved, access)))
        self._root(key)
        if sub_key.casefold() in self.denied:
            raise PermissionError(*DENIED)
        parts = sub_key.split("\\")
        for n in range(1, len(parts) + 1):
            self.keys.setdefault("\\".join(parts[:n]).casefold(), {})
        return FakeKey(sub_key, access)

    def OpenKey(self, key: Any, sub_key: str, reserved: int = 0, access: int = KEY_READ) -> FakeKey:
        self.calls.append(("OpenKey", key, sub_key, *self._given(reserved, access, KEY_READ)))
        self._root(key)
        if sub_key.casefold() in self.denied:
            raise PermissionError(*DENIED)
        if not self.has(sub_key):
            raise FileNotFoundError(*NOT_FOUND)
        return FakeKey(sub_key, access)

    def QueryValueEx(self, key: FakeKey, name: str) -> tuple[Any, int]:
        self.calls.append(("QueryValueEx", key.path, name))
        assert not key.closed, "a closed key was read"
        found = self.value(key.path, name)
        if found is None:
            raise FileNotFoundError(*NOT_FOUND)
        return found

    def SetValueEx(self, key: FakeKey, name: str, reserved: int, kind: int, value: Any) -> None:
        self.calls.append(("SetValueEx", key.path, name, reserved, kind, value))
        assert not key.closed, "a closed key was written"
        if not key.access & 0x2:  # KEY_SET_VALUE
            raise PermissionError(*DENIED)
        if kind == REG_DWORD:
            assert isinstance(value, int) and 0 <= value < 2**32, value
        elif kind in (REG_SZ, REG_EXPAND_SZ):
            assert isinstance(value, str), value
        self.put(key.path, name, value, kind)

    def DeleteKey(self, key: Any, sub_key: str) -> None:
        self.calls.append(("DeleteKey", key, sub_key))
        self._root(key)
        path = sub_key.casefold()
        if path not in self.keys:
            raise FileNotFoundError(*NOT_FOUND)
        if path in self.denied or any(k.startswith(path + "\\") for k in self.keys):
            raise PermissionError(*DENIED)  # Windows refuses a key that has subkeys
        del self.keys[path]

    @staticmethod
    def _given(reserved: int, access: int, default: int = KEY_WRITE) -> tuple[int, ...]:
        """The optional arguments, as passed (none when left at winreg's defaults)."""
        return () if (reserved, access) == (0, default) else (reserved, access)


def fake_windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeWinreg:
    """Windows as nbremind sees it: ``platform.system()``, the fake ``winreg`` module,
    ``%APPDATA%`` with its Start-menu folder, and a Python with ``pythonw.exe`` beside it."""
    fake = FakeWinreg()
    module = types.ModuleType("winreg")
    for name in dir(fake):
        if not name.startswith("_") and name[0].isupper():
            setattr(module, name, getattr(fake, name))
    monkeypatch.setattr("platform.system", lambda: "Windows")
    monkeypatch.setitem(sys.modules, "winreg", module)
    appdata = tmp_path / "AppData" / "Roaming"
    (appdata / "Microsoft" / "Windows" / "Start Menu" / "Programs").mkdir(parents=True)
    monkeypatch.setenv("APPDATA", str(appdata))
    python = tmp_path / "Python311" / "python.exe"
    python.parent.mkdir()
    python.write_bytes(b"")
    python.with_name("pythonw.exe").write_bytes(b"")
    monkeypatch.setattr(sys, "executable", str(python))
    return fake

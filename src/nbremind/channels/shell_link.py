"""Windows Shell Link (``.lnk``) files that carry an app id, written and read in pure Python.

A Start-menu shortcut whose property store holds ``System.AppUserModel.ID`` is how Windows
ties toasts to an app that has no package. Making one usually takes COM (``IShellLink``
and ``IPropertyStore`` through pywin32); this module writes the bytes itself, per
[MS-SHLLINK] with its property store per [MS-PROPSTORE] and [MS-OLEPS], so the file is the
same on every platform and can be checked byte for byte anywhere.

What is written, in order:

* the ShellLinkHeader (76 bytes, ``LinkCLSID`` {00021401-0000-0000-C000-000000000046}),
  with ``IsUnicode``, ``ForceNoLinkInfo`` and ``HasExpString`` and a flag per string below;
* StringData, UTF-16LE with a character count each: the description (``NAME_STRING``),
  the working folder, the arguments, the icon;
* ExtraData: an EnvironmentVariableDataBlock (``0xA0000001``) naming the target, the way
  Windows' own Start-menu shortcuts for system programs do (no LinkTargetIDList, no
  LinkInfo); a PropertyStoreDataBlock (``0xA0000009``) with one serialized property
  storage, FMTID {9F4C2855-9F79-4B39-A8D0-E1D42DE1D5F3}, property 5 (the app id) as a
  ``VT_LPWSTR``; the TerminalBlock.

The reader takes such a file apart again, and also reads what it needs (the strings and the
app id) from shortcuts made by Windows; a target held only in a LinkTargetIDList or
LinkInfo reads as ``""``.
"""

from __future__ import annotations

import os
import struct
import tempfile
import uuid
from dataclasses import dataclass
from enum import IntFlag
from pathlib import Path

__all__ = [
    "APP_USER_MODEL_ID",
    "ENVIRONMENT_BLOCK",
    "HEADER_SIZE",
    "LINK_CLSID",
    "PROPERTY_STORE_BLOCK",
    "VT_LPWSTR",
    "LinkFlags",
    "ShellLink",
    "from_bytes",
    "read_link",
    "to_bytes",
    "write_link",
]

#: ShellLinkHeader.HeaderSize: the header is always 76 bytes.
HEADER_SIZE = 0x4C
#: ShellLinkHeader.LinkCLSID.
LINK_CLSID = uuid.UUID("00021401-0000-0000-C000-000000000046")
#: The property key (FMTID, property id) of ``System.AppUserModel.ID``.
APP_USER_MODEL_ID = (uuid.UUID("9F4C2855-9F79-4B39-A8D0-E1D42DE1D5F3"), 5)
#: ExtraData block signatures.
ENVIRONMENT_BLOCK = 0xA0000001
PROPERTY_STORE_BLOCK = 0xA0000009
#: Serialized Property Storage version ("1SPS").
STORAGE_VERSION = 0x53505331
#: The property type of a UTF-16 string ([MS-OLEPS] UnicodeString).
VT_LPWSTR = 0x001F
#: ShowCommand: the window opens as usual.
SW_SHOWNORMAL = 1
#: The fixed size of an EnvironmentVariableDataBlock and of its two path fields.
_ENVIRONMENT_SIZE = 0x314
_ANSI_PATH, _UNICODE_PATH = 260, 520

_HEADER = struct.Struct("<I16sIIQQQIiIHHII")


class LinkFlags(IntFlag):
    """ShellLinkHeader.LinkFlags ([MS-SHLLINK] 2.1.1), the ones this module knows."""

    HAS_LINK_TARGET_ID_LIST = 0x1
    HAS_LINK_INFO = 0x2
    HAS_NAME = 0x4
    HAS_RELATIVE_PATH = 0x8
    HAS_WORKING_DIR = 0x10
    HAS_ARGUMENTS = 0x20
    HAS_ICON_LOCATION = 0x40
    IS_UNICODE = 0x80
    FORCE_NO_LINK_INFO = 0x100
    HAS_EXP_STRING = 0x200


#: The StringData fields in file order, each with the flag that says it is there.
_STRINGS = (
    ("description", LinkFlags.HAS_NAME),
    ("relative_path", LinkFlags.HAS_RELATIVE_PATH),
    ("working_dir", LinkFlags.HAS_WORKING_DIR),
    ("arguments", LinkFlags.HAS_ARGUMENTS),
    ("icon", LinkFlags.HAS_ICON_LOCATION),
)


@dataclass(frozen=True)
class ShellLink:
    """What a shortcut holds (empty strings: not set)."""

    #: The program it starts, an absolute path (environment variables allowed).
    target: str
    #: ``System.AppUserModel.ID`` (``None``: the shortcut claims no app id).
    app_id: str | None = None
    description: str = ""
    arguments: str = ""
    working_dir: str = ""
    #: The icon file (``.ico``, or a program with icons) and which of its icons.
    icon: str = ""
    icon_index: int = 0
    #: The target relative to the shortcut (Windows' own shortcuts often have one).
    relative_path: str = ""


# -- writing -----------------------------------------------------------------------------------
def to_bytes(link: ShellLink) -> bytes:
    """The ``.lnk`` file of ``link``. Raises ValueError for what the format cannot hold (a
    target of 260 characters or more, a string over 65535 UTF-16 units)."""
    if not link.target:
        raise ValueError("a shortcut needs a target")
    flags = LinkFlags.IS_UNICODE | LinkFlags.FORCE_NO_LINK_INFO | LinkFlags.HAS_EXP_STRING
    strings = b""
    for field, flag in _STRINGS:
        text = getattr(link, field)
        if text:
            flags |= flag
            strings += _string_data(text)
    header = _HEADER.pack(
        HEADER_SIZE,
        LINK_CLSID.bytes_le,
        flags,
        0,  # FileAttributes
        0,  # CreationTime
        0,  # AccessTime
        0,  # WriteTime
        0,  # FileSize
        link.icon_index,
        SW_SHOWNORMAL,
        0,  # HotKey
        0,  # Reserved1
        0,  # Reserved2
        0,  # Reserved3
    )
    extra = _environment_block(link.target)
    if link.app_id is not None:
        extra += _property_store_block(APP_USER_MODEL_ID, link.app_id)
    return header + strings + extra + b"\0\0\0\0"  # the TerminalBlock


def write_link(path: Path, link: ShellLink) -> None:
    """Write ``link`` to ``path`` (replacing a file there) in one step: a reader sees the
    old file or the new one, never half of it."""
    data = to_bytes(link)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def _string_data(text: str) -> bytes:
    encoded = _utf16(text)
    units = len(encoded) // 2
    if units > 0xFFFF:
        raise ValueError(f"a shortcut string has at most 65535 characters, not {units}")
    return struct.pack("<H", units) + encoded


def _environment_block(target: str) -> bytes:
    """The EnvironmentVariableDataBlock: the target, NUL-terminated in both fields. The ANSI
    copy has '?' for what ASCII cannot hold: with ``IsUnicode`` Windows reads the other."""
    unicode = _utf16(target) + b"\0\0"
    if len(unicode) > _UNICODE_PATH:
        raise ValueError(f"a shortcut's target has at most 259 characters: {target!r}")
    ansi = target.encode("ascii", "replace") + b"\0"
    return (
        struct.pack("<II", _ENVIRONMENT_SIZE, ENVIRONMENT_BLOCK)
        + ansi.ljust(_ANSI_PATH, b"\0")
        + unicode.ljust(_UNICODE_PATH, b"\0")
    )


def _property_store_block(key: tuple[uuid.UUID, int], text: str) -> bytes:
    """A PropertyStoreDataBlock holding one string property: one Serialized Property
    Storage (its values end with a zero ValueSize), then a zero StorageSize."""
    fmtid, pid = key
    characters = _utf16(text) + b"\0\0"
    length = len(characters) // 2  # [MS-OLEPS] UnicodeString: characters, NUL included
    characters = characters.ljust(-(-len(characters) // 4) * 4, b"\0")  # padded to 4 bytes
    typed = struct.pack("<HHI", VT_LPWSTR, 0, length) + characters
    value = struct.pack("<IIB", 9 + len(typed), pid, 0) + typed
    body = struct.pack("<I", STORAGE_VERSION) + fmtid.bytes_le + value + b"\0\0\0\0"
    storage = struct.pack("<I", 4 + len(body)) + body
    store = storage + b"\0\0\0\0"
    return struct.pack("<II", 8 + len(store), PROPERTY_STORE_BLOCK) + store


# -- reading -----------------------------------------------------------------------------------
def read_link(path: Path) -> ShellLink:
    """The shortcut at ``path``. Raises OSError (cannot read it) or ValueError (not a shell
    link, or a damaged one)."""
    return from_bytes(path.read_bytes())


def from_bytes(data: bytes) -> ShellLink:
    """The shortcut in ``data``; ValueError when it is not one (or is cut short)."""
    try:
        return _parse(data)
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise ValueError(f"not a readable shell link ({exc})") from exc


def _parse(data: bytes) -> ShellLink:
    header = _HEADER.unpack_from(data, 0)
    if header[0] != HEADER_SIZE or header[1] != LINK_CLSID.bytes_le:
        raise ValueError("not a shell link (wrong HeaderSize or LinkCLSID)")
    flags = LinkFlags(header[2] & 0x3FF)
    icon_index = header[8]
    offset = HEADER_SIZE
    if flags & LinkFlags.HAS_LINK_TARGET_ID_LIST:
        (size,) = struct.unpack_from("<H", data, offset)
        offset += 2 + size
    if flags & LinkFlags.HAS_LINK_INFO:
        (size,) = struct.unpack_from("<I", data, offset)
        offset += size
    strings: dict[str, str] = {}
    unicode = bool(flags & LinkFlags.IS_UNICODE)
    for field, flag in _STRINGS:
        if flags & flag:
            (count,) = struct.unpack_from("<H", data, offset)
            width = 2 if unicode else 1
            raw = data[offset + 2 : offset + 2 + count * width]
            if len(raw) != count * width:
                raise ValueError("StringData runs past the end of the file")
            strings[field] = raw.decode("utf-16-le" if unicode else "cp1252", "replace")
            offset += 2 + count * width
    target, app_id = "", None
    for signature, block in _blocks(data, offset):
        if signature == ENVIRONMENT_BLOCK and len(block) >= _ANSI_PATH + _UNICODE_PATH:
            wide = block[_ANSI_PATH : _ANSI_PATH + _UNICODE_PATH].decode("utf-16-le")
            target = wide.split("\0", 1)[0]
        elif signature == PROPERTY_STORE_BLOCK:
            found = _string_property(block, APP_USER_MODEL_ID)
            app_id = found if found is not None else app_id
    return ShellLink(target=target, app_id=app_id, icon_index=icon_index, **strings)


def _blocks(data: bytes, offset: int) -> list[tuple[int, bytes]]:
    """The ExtraData blocks from ``offset``: (signature, the bytes after it), up to the
    TerminalBlock (a BlockSize below 4)."""
    blocks: list[tuple[int, bytes]] = []
    while True:
        (size,) = struct.unpack_from("<I", data, offset)
        if size < 4:
            return blocks
        if size < 8 or offset + size > len(data):
            raise ValueError(f"an ExtraData block of {size} bytes at {offset} does not fit")
        (signature,) = struct.unpack_from("<I", data, offset + 4)
        blocks.append((signature, data[offset + 8 : offset + size]))
        offset += size


def _string_property(store: bytes, key: tuple[uuid.UUID, int]) -> str | None:
    """The ``VT_LPWSTR`` value of ``key`` in a serialized property store, if there."""
    fmtid, pid = key
    offset = 0
    while offset + 4 <= len(store):
        (size,) = struct.unpack_from("<I", store, offset)
        if size == 0:
            return None
        version, storage_fmtid = struct.unpack_from("<I16s", store, offset + 4)
        if version != STORAGE_VERSION:
            raise ValueError(f"a property storage of version {version:#x}")
        if storage_fmtid == fmtid.bytes_le:
            found = _integer_named_value(store[offset + 24 : offset + size], pid)
            if found is not None:
                return found
        offset += size
    return None


def _integer_named_value(values: bytes, pid: int) -> str | None:
    offset = 0
    while offset + 4 <= len(values):
        (size,) = struct.unpack_from("<I", values, offset)
        if size == 0:
            return None
        (value_id,) = struct.unpack_from("<I", values, offset + 4)
        vtype, _padding, length = struct.unpack_from("<HHI", values, offset + 9)
        if value_id == pid and vtype == VT_LPWSTR:
            start = offset + 17
            text = values[start : start + 2 * length].decode("utf-16-le")
            return text.split("\0", 1)[0]
        offset += size
    return None

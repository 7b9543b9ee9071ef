"""The ``.lnk`` writer and reader: the bytes per MS-SHLLINK / MS-PROPSTORE / MS-OLEPS, read
back by our reader and by an independent parser (LnkParse3)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from _require import missing
from nbremind.channels.shell_link import (
    APP_USER_MODEL_ID,
    LinkFlags,
    ShellLink,
    from_bytes,
    read_link,
    to_bytes,
    write_link,
)

TARGET = r"C:\Users\ana\proj\.venv\Scripts\pythonw.exe"
ICON = r"C:\Users\ana\proj\.venv\Lib\site-packages\nbremind\static\nbremind.ico"
LINK = ShellLink(
    target=TARGET,
    app_id="nbremind",
    description="nbremind",
    working_dir=r"C:\Users\ana\proj\.venv\Scripts",
    icon=ICON,
)

#: The header of a link with a description, a working folder and an icon, written out by
#: hand from MS-SHLLINK 2.1 (little-endian).
HEADER = bytes.fromhex(
    "4c000000"  # HeaderSize
    "0114020000000000c000000000000046"  # LinkCLSID 00021401-0000-0000-C000-000000000046
    "d4030000"  # LinkFlags: HasName HasWorkingDir HasIconLocation IsUnicode ForceNoLinkInfo
    # HasExpString
    "00000000"  # FileAttributes
    "000000000000000000000000000000000000000000000000"  # CreationTime, AccessTime, WriteTime
    "00000000"  # FileSize
    "00000000"  # IconIndex
    "01000000"  # ShowCommand SW_SHOWNORMAL
    "0000"  # HotKey
    "0000"  # Reserved1
    "00000000"  # Reserved2
    "00000000"  # Reserved3
)
#: The PropertyStoreDataBlock of System.AppUserModel.ID = "nbremind", by hand.
PROPERTY_STORE = bytes.fromhex(
    "4d000000"  # BlockSize 77
    "090000a0"  # BlockSignature 0xA0000009
    "41000000"  # StorageSize 65
    "31535053"  # Version 0x53505331 ("1SPS")
    "55284c9f799f394ba8d0e1d42de1d5f3"  # FMTID {9F4C2855-9F79-4B39-A8D0-E1D42DE1D5F3}
    "25000000"  # ValueSize 37
    "05000000"  # Id 5
    "00"  # Reserved
    "1f00"  # Type VT_LPWSTR
    "0000"  # Padding
    "09000000"  # Length: 9 characters, the NUL included
    + "nbremind\0".encode("utf-16-le").hex()
    + "0000"  # padded to a multiple of 4 bytes
    "00000000"  # the end of the storage's values
    "00000000"  # the end of the store (a zero StorageSize)
)


def _string(text: str) -> bytes:
    return struct.pack("<H", len(text)) + text.encode("utf-16-le")


def _environment(target: str) -> bytes:
    ansi = target.encode("ascii").ljust(260, b"\0")
    wide = target.encode("utf-16-le").ljust(520, b"\0")
    size_and_signature = bytes.fromhex("14030000010000a0")  # 0x314, 0xA0000001
    return size_and_signature + ansi + wide


def test_the_file_is_the_one_the_specification_describes_byte_for_byte() -> None:
    expected = (
        HEADER
        + _string("nbremind")  # NAME_STRING
        + _string(r"C:\Users\ana\proj\.venv\Scripts")  # WORKING_DIR
        + _string(ICON)  # ICON_LOCATION
        + _environment(TARGET)  # EnvironmentVariableDataBlock
        + PROPERTY_STORE
        + b"\0\0\0\0"  # TerminalBlock
    )
    assert to_bytes(LINK) == expected


def test_the_header_fields() -> None:
    data = to_bytes(LINK)
    size, clsid, flags = struct.unpack_from("<I16sI", data)
    assert size == 0x4C and data[0x4C - 4 : 0x4C] == b"\0" * 4
    assert clsid.hex() == "0114020000000000c000000000000046"
    assert LinkFlags(flags) == (
        LinkFlags.HAS_NAME
        | LinkFlags.HAS_WORKING_DIR
        | LinkFlags.HAS_ICON_LOCATION
        | LinkFlags.IS_UNICODE
        | LinkFlags.FORCE_NO_LINK_INFO
        | LinkFlags.HAS_EXP_STRING
    )
    assert not flags & (LinkFlags.HAS_LINK_TARGET_ID_LIST | LinkFlags.HAS_LINK_INFO)


def test_the_property_store_carries_the_app_id_as_a_unicode_string() -> None:
    data = to_bytes(LINK)
    start = data.index(struct.pack("<I", 0xA0000009)) - 4
    assert data[start : start + len(PROPERTY_STORE)] == PROPERTY_STORE
    fmtid, pid = APP_USER_MODEL_ID
    assert str(fmtid).upper() == "9F4C2855-9F79-4B39-A8D0-E1D42DE1D5F3" and pid == 5
    assert data.endswith(PROPERTY_STORE + b"\0\0\0\0")


def test_it_reads_back_what_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "nbremind.lnk"
    write_link(path, LINK)
    assert read_link(path) == LINK
    other = ShellLink(target=TARGET, arguments="-m nbremind", icon_index=2)
    assert from_bytes(to_bytes(other)) == other  # no app id: no property store block
    assert struct.pack("<I", 0xA0000009) not in to_bytes(other)


def test_writing_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    path = tmp_path / "nbremind.lnk"
    path.write_bytes(b"an older shortcut")
    write_link(path, LINK)
    assert read_link(path).app_id == "nbremind"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nbremind.lnk"]


def test_odd_app_ids_and_targets() -> None:
    for app_id in ("", "a", "Ab.cd", "näme-✓"):  # every padding case, and non-ASCII
        assert from_bytes(to_bytes(ShellLink(target="C:\\x.exe", app_id=app_id))).app_id == app_id
    accented = ShellLink(target=r"C:\Users\José\python.exe")
    data = to_bytes(accented)
    assert rb"C:\Users\Jos?\python.exe" + b"\0" in data  # the ANSI copy
    assert from_bytes(data).target == accented.target  # the Unicode one is read
    with pytest.raises(ValueError, match="259"):
        to_bytes(ShellLink(target="C:\\" + "a" * 257))
    with pytest.raises(ValueError, match="target"):
        to_bytes(ShellLink(target=""))


def test_what_is_not_a_shell_link_is_a_value_error() -> None:
    data = to_bytes(LINK)
    for broken in (b"", b"not a link at all", data[:100], data[:-30], b"\0" * 76):
        with pytest.raises(ValueError):
            from_bytes(broken)


def test_it_reads_links_that_also_have_an_id_list_and_link_info() -> None:
    data = to_bytes(LINK)
    (flags,) = struct.unpack_from("<I", data, 20)
    flags |= LinkFlags.HAS_LINK_TARGET_ID_LIST | LinkFlags.HAS_LINK_INFO
    id_list = struct.pack("<H", 6) + b"\x04\x00\xaa\xbb" + b"\0\0"  # one item, then the end
    link_info = struct.pack("<I", 12) + b"\x1c\0\0\0" + b"\0" * 4
    patched = data[:20] + struct.pack("<I", flags) + data[24:76] + id_list + link_info + data[76:]
    assert from_bytes(patched) == LINK


def test_an_independent_parser_reads_the_app_id_target_and_icon(tmp_path: Path) -> None:
    try:
        import LnkParse3  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        missing("LnkParse3 is not installed (pip install LnkParse3)")
    path = tmp_path / "nbremind.lnk"
    write_link(path, LINK)
    with path.open("rb") as handle:
        parsed = LnkParse3.lnk_file(handle).get_json()
    assert parsed["header"]["guid"].upper() == "00021401-0000-0000-C000-000000000046"
    assert parsed["data"]["description"] == "nbremind"
    assert parsed["data"]["icon_location"] == ICON
    extra = parsed["extra"]
    assert extra["ENVIRONMENTAL_VARIABLES_LOCATION_BLOCK"]["target_unicode"] == TARGET
    [storage] = extra["METADATA_PROPERTIES_BLOCK"]["property_store"]
    assert storage["format_id"].upper() == "9F4C2855-9F79-4B39-A8D0-E1D42DE1D5F3"
    [value] = storage["serialized_property_values"]
    assert (value["id"], value["value_type"], value["value"]) == (5, "VT_LPWSTR", "nbremind")

"""Files only their owner can read: the data folder 0700, every file in it 0600.

Notices and run history name tasks, errors and hosts; on a shared machine (a JupyterHub
server) other users must not read them. Folders and files are created with these modes
whatever the umask, and looser modes found when nbremind opens them (made by an older
version, or by hand) are tightened: group and other permissions are removed. Only what this
user owns is changed, and never a shared sticky folder such as ``/tmp``; a mode that cannot
be changed is left as it is. Windows has no POSIX modes: there folders and files are made as
usual and modes are left alone.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

__all__ = ["FILE_MODE", "FOLDER_MODE", "open_private", "private_file", "private_folder", "tighten"]

#: Mode of the data folder: the owner only.
FOLDER_MODE = 0o700
#: Mode of each file in it: the owner reads and writes.
FILE_MODE = 0o600
_POSIX = os.name != "nt"


def private_folder(path: str | os.PathLike[str]) -> Path:
    """Make the folder ``path`` (and missing parents, with the usual modes) owner-only."""
    folder = Path(path)
    folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    tighten(folder)
    return folder


def private_file(path: str | os.PathLike[str]) -> Path:
    """Make ``path`` an empty file if it is missing (0600 from its creation), else tighten it."""
    file = Path(path)
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        tighten(file)
    else:
        os.close(fd)
    return file


def open_private(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for appending bytes, made 0600 when missing and tightened if not."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    try:
        tighten(path)
        return os.fdopen(fd, "ab")
    except BaseException:
        os.close(fd)
        raise


def tighten(path: str | os.PathLike[str]) -> None:
    """Remove group and other permissions from ``path`` when it exists and this user owns it
    (not from a sticky folder; errors are ignored: a mode is a protection, not a need)."""
    if not _POSIX:
        return
    with contextlib.suppress(OSError):
        st = os.stat(path)
        mode = stat.S_IMODE(st.st_mode)
        if not mode & 0o077 or st.st_uid != os.getuid():
            return
        if stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX:
            return  # a shared folder such as /tmp chosen as data_dir: not ours to close
        os.chmod(path, mode & ~0o077)

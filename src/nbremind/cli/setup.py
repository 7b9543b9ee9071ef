"""``nbremind setup windows``: give nbremind its identity on Windows (the app id toasts are
shown under, and a Start-menu shortcut claiming it), ``--remove`` it, or ``--enable`` its
toasts again where they were turned off in Settings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..core.parse import printable

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "add_parsers", "run_setup"]

#: Exit status for a request that cannot be carried out here (argparse's, for usage errors).
EXIT_USAGE = 2
#: Exit status when the registry or the Start-menu folder refused.
EXIT_FAILED = 1


def add_parsers(sub: Any) -> None:
    """Add ``setup`` (with its one platform, ``windows``) to the ``nbremind`` parser."""
    setup = sub.add_parser(
        "setup",
        help="set nbremind up on this system (Windows: its toast identity)",
        description="Set nbremind up on this system. 'nbremind setup windows' registers the "
        "app id toasts are shown under and creates a Start-menu shortcut that claims it.",
    )
    platforms = setup.add_subparsers(dest="platform", metavar="PLATFORM", required=True)
    windows = platforms.add_parser(
        "windows",
        help="register the app id 'nbremind' and create its Start-menu shortcut",
        description=r"Register the app id 'nbremind' (HKEY_CURRENT_USER\Software\Classes"
        r"\AppUserModelId\nbremind: its display name and icon) and create the Start-menu "
        r"shortcut %APPDATA%\Microsoft\Windows\Start Menu\Programs\nbremind.lnk carrying "
        "System.AppUserModel.ID = nbremind, which some Windows 11 builds need before they show "
        "a toast. Per user: no administrator rights needed. Prints what it did.",
    )
    choice = windows.add_mutually_exclusive_group()
    choice.add_argument(
        "--remove",
        action="store_true",
        help="delete the shortcut and the app id's registry key instead (the notification "
        "settings Windows keeps for nbremind stay)",
    )
    choice.add_argument(
        "--enable",
        action="store_true",
        help="also turn nbremind's toasts back on where they were turned off in Settings > "
        "System > Notifications (a group policy that turns them off still wins)",
    )


def run_setup(ns: argparse.Namespace) -> int:
    """``nbremind setup windows``: print what was done; the exit status."""
    from ..channels.windows_identity import SetupError, WindowsOnlyError, setup

    command = f"nbremind setup {ns.platform}"
    try:
        lines = setup(remove=ns.remove, enable=ns.enable)
    except WindowsOnlyError as exc:
        print(printable(f"{command}: {exc}"), file=sys.stderr)
        return EXIT_USAGE
    except SetupError as exc:
        print(printable(f"{command}: error: {exc}"), file=sys.stderr)
        return EXIT_FAILED
    text = "\n".join(printable(line) for line in lines)
    try:
        print(text)
    except UnicodeEncodeError:  # a console that cannot show a path's characters: replace them
        encoding = sys.stdout.encoding or "ascii"
        print(text.encode(encoding, "replace").decode(encoding))
    return 0

"""Settings from files and the environment, layered, with the source of every value.

Precedence, highest first:

1. ``nbremind.configure(...)`` / ``%remind`` (applied by the session on top of this);
2. ``NBREMIND_<SETTING>`` environment variables (``NBREMIND_QUIET_HOURS=22:00-07:00``);
3. the project file: in the nearest folder upward from the working directory that holds a
   ``pyproject.toml`` or an ``nbremind.toml``, its ``[tool.nbremind]`` table and its
   ``nbremind.toml`` (``nbremind.toml`` wins key by key when both are there);
4. the user file: ``config.toml`` in ``NBREMIND_CONFIG_DIR``, else in the platform's user
   config folder for ``nbremind``;
5. the defaults of :class:`~nbremind.core.config.Config`.

Keys are :class:`~nbremind.core.config.Config`'s fields (``-`` may stand for ``_``), validated by
:meth:`Config.updated` with the file and key as source. ``channels`` is the list of default
channels when it is an array, and the named channels (``channel_defs``) when it is a table,
whose own ``default`` array then gives the list. String values may refer to environment
variables as ``${NAME}`` (``$${`` is a literal ``${``); such values become
:class:`~nbremind.core.secrets.Secret`.

The ``jobs`` and ``expect`` tables of the same files are not settings: they are left out
here, and :func:`raw_tables` gives them as read (``nbremind.settings.jobs`` reads them).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

from ..core.config import Config
from ..core.secrets import Secret, redact
from ..core.urls import display_name, shown

__all__ = [
    "ENV_PREFIX",
    "NOT_SETTINGS",
    "FileTables",
    "LoadedSettings",
    "RawTables",
    "env_var",
    "expand",
    "file_lines",
    "find_project_files",
    "load_settings",
    "raw_tables",
    "user_config_file",
]

ENV_PREFIX = "NBREMIND_"
#: Overrides the folder of the user file (tests, several profiles on one machine).
CONFIG_DIR_VAR = "NBREMIND_CONFIG_DIR"
USER_FILE = "config.toml"
PROJECT_FILES = ("pyproject.toml", "nbremind.toml")
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{[^}]*\}?")
#: Top-level tables of the settings files that are not settings (jobs and expected runs).
NOT_SETTINGS = ("jobs", "expect")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _toml() -> ModuleType:
    """``tomllib`` (3.11+) or its backport ``tomli`` (3.10), which has the same API; imported
    only when there is TOML to read (most processes find no settings file)."""
    return importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "tomli")


@dataclass(frozen=True)
class LoadedSettings:
    """The settings files and environment give, before ``configure()`` is applied."""

    #: Defaults updated with every valid layer.
    config: Config
    #: Setting -> where its value came from (a file path and table, an environment variable).
    sources: dict[str, str]
    #: Each layer that could not be used, as one message naming file, key and value.
    errors: tuple[str, ...] = ()
    #: Files read (those that exist), lowest precedence first.
    files: tuple[Path, ...] = ()
    #: Files (and folders) whose appearance, change or removal changes the settings.
    watch: tuple[Path, ...] = field(default=())
    #: The folder the project file was looked up from (``None``: not recorded).
    start: Path | None = None
    #: The user file looked for (there or not).
    user_file: Path | None = None
    #: The project's files found (see :func:`find_project_files`).
    project_files: tuple[Path, ...] = ()
    #: Files read that hold no nbremind settings (a ``pyproject.toml`` without the table).
    empty: tuple[Path, ...] = ()
    #: Files read that could not be used (their error is in :attr:`errors`).
    unusable: tuple[Path, ...] = ()


def env_var(setting: str) -> str:
    """The environment variable of a setting: ``quiet_hours`` -> ``NBREMIND_QUIET_HOURS``."""
    return ENV_PREFIX + setting.upper()


def user_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$NBREMIND_CONFIG_DIR``, else the platform's user config folder for nbremind."""
    env = os.environ if environ is None else environ
    override = env.get(CONFIG_DIR_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    home = _xdg_default_home()
    if home is not None:
        return Path(home, ".config", "nbremind")
    import platformdirs

    return Path(platformdirs.user_config_dir("nbremind", appauthor=False))


def _xdg_default_home() -> str | None:
    """The home folder when the user config folder is ``$HOME/.config/nbremind``: what
    ``platformdirs`` gives on Linux without ``$XDG_CONFIG_HOME`` and with an absolute
    ``$HOME`` (it reads ``os.environ`` too); ``None`` in every other case, left to
    ``platformdirs``, whose import takes longer than the rest of reading the settings."""
    if sys.platform != "linux" or hasattr(sys, "getandroidapilevel"):
        return None
    if "ANDROID_DATA" in os.environ or "ANDROID_ROOT" in os.environ:
        return None
    if os.environ.get("XDG_CONFIG_HOME", "").strip():
        return None
    home = os.environ.get("HOME", "")
    return home if os.path.isabs(home) else None


def user_config_file(environ: Mapping[str, str] | None = None) -> Path:
    """The user file: ``config.toml`` in :func:`user_config_dir`."""
    return user_config_dir(environ) / USER_FILE


def _present(path: Path) -> bool:
    """Whether ``path`` is there: a file, or something in its place that is reported when
    read (a symbolic link loop or one to nothing, a folder)."""
    return os.path.lexists(path)


def project_root(start: Path) -> Path | None:
    """The nearest folder from ``start`` upward holding ``pyproject.toml`` or ``nbremind.toml``."""
    for folder in (start, *start.parents):
        if any(_present(folder / name) for name in PROJECT_FILES):
            return folder
    return None


def find_project_files(start: Path) -> tuple[Path, ...]:
    """The project's settings files, lowest precedence first (``pyproject.toml`` first)."""
    root = project_root(start)
    if root is None:
        return ()
    return tuple(root / name for name in PROJECT_FILES if _present(root / name))


def _watch_paths(start: Path, user_file: Path) -> tuple[Path, ...]:
    """Every path whose change may change the settings: the candidate project files from
    ``start`` up to the project root (none yet: up to the home folder, or ``start`` alone
    outside it), and the user file with its folders."""
    paths: list[Path] = []
    root = project_root(start)
    if root is None:  # where one may appear: up to the home folder, not the whole disk
        home = Path.home().resolve()
        root = home if start == home or home in start.parents else start
    for folder in (start, *start.parents):
        paths.extend(folder / name for name in PROJECT_FILES)
        if folder == root:
            break
    paths.append(user_file)
    paths.append(user_file.parent)
    return tuple(paths)


def _label(path: Path) -> str:
    return f"{path} [tool.nbremind]" if path.name == "pyproject.toml" else str(path)


def read_file(path: Path) -> dict[str, Any] | None:
    """The raw settings table of one file (``None``: a pyproject with no ``[tool.nbremind]``).

    A file that cannot be read or parsed raises ``ValueError`` naming it.
    """
    tomllib = _toml()
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # binary junk: TOML is UTF-8 text
        raise ValueError(
            f"{path}: not valid TOML: not UTF-8 text (byte {exc.start + 1} "
            f"is 0x{exc.object[exc.start]:02x})"
        ) from None
    except RecursionError:
        raise ValueError(f"{path}: not valid TOML: arrays or tables nested too deep") from None
    except OSError as exc:  # also a symbolic link loop, a folder, a dangling link
        raise ValueError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if path.name != "pyproject.toml":
        return dict(data)
    table = data.get("tool", {}).get("nbremind")
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ValueError(f"{_label(path)}: must be a table, not {shown(table)}")
    return table


def expand(value: Any, where: str, environ: Mapping[str, str]) -> Any:
    """``value`` with ``${NAME}`` references replaced from ``environ``, in every string of
    nested lists and tables. A string with a reference becomes a :class:`Secret`; a missing
    variable raises ``ValueError`` naming ``where`` and the variable."""
    if isinstance(value, str):
        return _expand_text(value, where, environ)
    if isinstance(value, list):
        return [expand(item, f"{where}[{i}]", environ) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: expand(item, f"{where}.{key}", environ) for key, item in value.items()}
    return value


def _expand_text(text: str, where: str, environ: Mapping[str, str]) -> str:
    found: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        name = match.group(1)
        if name is None:
            raise ValueError(f"{where}: {token!r} is not a reference such as ${{NAME}}")
        if name not in environ:
            raise ValueError(f"{where}: ${{{name}}} refers to {name}, which is not set")
        found.append(environ[name])
        return environ[name]

    expanded = _REFERENCE.sub(substitute, text)
    # the whole text hides from str() and repr(); only the variables' values are masked
    # in other texts (the rest was written in the file for anyone to read)
    return Secret(expanded, parts=found) if found else expanded


def _setting_kinds() -> dict[str, str]:
    """Setting -> ``"bool"``, ``"list"``, ``"table"`` or ``"text"``, from Config's fields."""
    kinds: dict[str, str] = {}
    for name in Config.FIELDS:
        spelled = str(Config.__annotations__[name])
        if "Mapping" in spelled or "dict" in spelled:
            kinds[name] = "table"
        elif "tuple" in spelled or "list" in spelled:
            kinds[name] = "list"
        elif spelled == "bool":  # (``bool | str``, e.g. ``sound``: text its setting reads)
            kinds[name] = "bool"
        else:
            kinds[name] = "text"
    return kinds


def _normalise(table: Mapping[str, Any], label: str) -> dict[str, Any]:
    """Top-level keys as setting names: ``-`` -> ``_``; ``channels`` as a table split into
    ``channel_defs`` (its tables) and ``channels`` (its ``default``)."""
    out: dict[str, Any] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        if key in NOT_SETTINGS:
            continue  # (read by raw_tables)
        if key == "channels" and isinstance(value, dict):
            defs = {name: spec for name, spec in value.items() if isinstance(spec, dict)}
            rest = {name: spec for name, spec in value.items() if not isinstance(spec, dict)}
            default = rest.pop("default", None)
            if rest:
                name, spec = next(iter(rest.items()))
                raise ValueError(
                    f"{label}: channels.{display_name(name)}: {shown(spec)} is not a table; "
                    'a named channel is a table such as [channels.team] with url = "...", '
                    "and channels.default lists the default channels"
                )
            if defs:
                out["channel_defs"] = defs
            if default is not None:
                out["channels"] = default
        else:
            out[key] = value
    return out


def _file_layer(path: Path, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The settings of one file (``None``: a ``pyproject.toml`` without nbremind's table)."""
    table = read_file(path)
    if table is None:
        return None
    label = _label(path)
    values = _normalise(table, label)
    return {key: expand(value, f"{label}: {key}", environ) for key, value in values.items()}


def _env_value(name: str, text: str, kind: str) -> Any:
    """The value of one ``NBREMIND_*`` variable, by the kind of its setting."""
    stripped = text.strip()
    if kind == "bool":
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
        raise ValueError(f"{name}: {shown(text)} is not one of 1, 0, true, false, yes, no")
    if stripped[:1] in "[{" and stripped:
        import json

        tomllib = _toml()
        try:
            return json.loads(stripped)
        except ValueError:
            pass
        try:
            return tomllib.loads(f"value = {stripped}")["value"]
        except tomllib.TOMLDecodeError:
            raise ValueError(
                f"{name}: {shown(text)} is not a JSON or TOML inline array or table"
            ) from None
    if kind == "table":
        raise ValueError(f"{name}: {shown(text)} is not a JSON or TOML inline table")
    if kind == "list":
        return [part.strip() for part in stripped.split(",") if part.strip()]
    return stripped


def _env_layer(environ: Mapping[str, str], errors: list[str]) -> dict[str, tuple[str, Any]]:
    """Setting -> (variable, value) for each ``NBREMIND_<SETTING>`` that is set and not empty;
    a variable that cannot be read is reported in ``errors`` and left out."""
    out: dict[str, tuple[str, Any]] = {}
    for setting, kind in _setting_kinds().items():
        name = env_var(setting)
        text = environ.get(name)
        if text is None or not text.strip():
            continue
        try:
            value = expand(_env_value(name, text, kind), name, environ)
        except ValueError as exc:
            errors.append(redact(str(exc)))
            continue
        out[setting] = (name, value)
    return out


def _apply(config: Config, source: str, values: Mapping[str, Any]) -> Config:
    """``config.updated`` with every error message redacted (it may quote a secret)."""
    try:
        return config.updated(source, **values)
    except ValueError as exc:
        raise ValueError(redact(str(exc))) from None


def load_settings(
    start: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
    base: Config | None = None,
) -> LoadedSettings:
    """Read the user file, the project file (found from ``start``, default the working
    directory) and the environment, over ``base`` (default :class:`Config()`).

    Never raises: a layer (one file, one variable) that cannot be used is left out whole
    and reported in :attr:`LoadedSettings.errors`, naming its file, key and value.
    """
    env = os.environ if environ is None else environ
    folder = Path.cwd() if start is None else Path(start)
    folder = folder.resolve()
    config = base or Config()
    sources: dict[str, str] = {}
    errors: list[str] = []
    read: list[Path] = []
    empty: list[Path] = []
    unusable: list[Path] = []
    user_file = user_config_file(env)
    project = find_project_files(folder)
    for path in (user_file, *project):
        if not _present(path):
            continue
        read.append(path)
        try:
            values = _file_layer(path, env)
            if values is None:
                empty.append(path)
                continue
            config = _apply(config, _label(path), values)
        except ValueError as exc:
            errors.append(redact(str(exc)))
            unusable.append(path)
            continue
        sources.update(dict.fromkeys(values, _label(path)))
    for setting, (name, value) in _env_layer(env, errors).items():
        try:
            config = _apply(config, name, {setting: value})
        except ValueError as exc:
            errors.append(redact(str(exc)))
            continue
        sources[setting] = name
    return LoadedSettings(
        config=config,
        sources=sources,
        errors=tuple(errors),
        files=tuple(read),
        watch=_watch_paths(folder, user_file),
        start=folder,
        user_file=user_file,
        project_files=project,
        empty=tuple(empty),
        unusable=tuple(unusable),
    )


class FileTables(NamedTuple):
    """The tables of :data:`NOT_SETTINGS` one settings file has, as read."""

    #: The file as errors name it (``.../pyproject.toml [tool.nbremind]``).
    label: str
    path: Path
    #: ``{"jobs": ..., "expect": ...}``: those of the two the file has, not checked.
    tables: dict[str, Any]


@dataclass(frozen=True)
class RawTables:
    """What :func:`raw_tables` found."""

    #: Each file read that has a ``jobs`` or ``expect`` table, lowest precedence first.
    tables: tuple[FileTables, ...]
    #: Each file that could not be read, as one message naming it.
    errors: tuple[str, ...] = ()
    #: Files read (those that exist), lowest precedence first.
    files: tuple[Path, ...] = ()
    #: Files (and folders) whose appearance, change or removal changes the tables.
    watch: tuple[Path, ...] = ()


def raw_tables(
    start: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> RawTables:
    """The ``jobs`` and ``expect`` tables of the files :func:`load_settings` reads (the user
    file, then the project's ``pyproject.toml [tool.nbremind]`` and ``nbremind.toml``),
    in that order; never raises (a file that cannot be read is in :attr:`RawTables.errors`).
    """
    env = os.environ if environ is None else environ
    folder = (Path.cwd() if start is None else Path(start)).resolve()
    user_file = user_config_file(env)
    found: list[FileTables] = []
    errors: list[str] = []
    read: list[Path] = []
    for path in (user_file, *find_project_files(folder)):
        if not _present(path):
            continue
        read.append(path)
        try:
            table = read_file(path)
        except ValueError as exc:
            errors.append(redact(str(exc)))
            continue
        if table is None:
            continue
        tables = {key: table[key] for key in NOT_SETTINGS if key in table}
        if tables:
            found.append(FileTables(_label(path), path, tables))
    return RawTables(
        tables=tuple(found),
        errors=tuple(errors),
        files=tuple(read),
        watch=_watch_paths(folder, user_file),
    )


def file_lines(loaded: LoadedSettings) -> list[str]:
    """What one load found, for ``%remind config`` and ``nbremind doctor`` alike: the user
    file, then the project file with the folder its lookup started from."""

    def state(path: Path) -> str:
        if path in loaded.unusable:
            return " (cannot be used: see below)"
        return "" if path in loaded.files else " (not there)"

    lines = []
    if loaded.user_file is not None:
        lines.append(f"user settings file: {loaded.user_file}{state(loaded.user_file)}")
    start = "the working directory" if loaded.start is None else str(loaded.start)
    used = [path for path in loaded.project_files if path not in loaded.empty]
    if used:
        shown = ", ".join(f"{path}{state(path)}" for path in used)
        lines.append(f"project settings file: {shown} (looked up from {start})")
    elif loaded.project_files:
        lines.append(
            f"project settings file: none: the project's {loaded.project_files[0]} "
            f"has no [tool.nbremind] table (looked up from {start})"
        )
    else:
        lines.append(f"project settings file: none found from {start} upward")
    return lines

"""Named channels (the ``channel_defs`` setting) and the retry settings, checked on load.

```toml
[tool.nbremind.channel_defs.team]
url = "https://hooks.example.org/nbremind"
on = ["failure", "timeout"]
secret = "${NBREMIND_HOOK_SECRET}"
headers = { Authorization = "Bearer ${HOOK_TOKEN}" }
templates = { failure = { title = "{name} broke on {host}" } }
```
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .channel_names import BUILT_IN, check_channel_def
from .parse import parse_events
from .secrets import reveal
from .urls import display_name, scheme_of, shown

if TYPE_CHECKING:
    from .config import Config

__all__ = [
    "DEF_KEYS",
    "channel_def",
    "channel_wants",
    "no_defs",
    "parse_attempts",
    "parse_channel_defs",
]

#: Keys a named channel may have; ``url`` is required.
DEF_KEYS = ("url", "on", "templates", "headers", "secret", "to", "from")


def no_defs() -> Mapping[str, Mapping[str, Any]]:
    """The empty, read-only ``channel_defs``."""
    return types.MappingProxyType({})


def parse_attempts(value: object, where: str) -> int:
    """A number of tries, 1 (no retry) to 100."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise ValueError(f"{where}: {shown(value)} is not a number of tries from 1 to 100")
    return value


def parse_channel_defs(value: object, where: str) -> Mapping[str, Mapping[str, Any]]:
    """Validate ``{name: {"url": ..., ...}}``; each error names the channel, key and value.

    Each named channel is built once (no I/O) so a bad URL is reported now, not at the
    first notice.
    """
    if value is None:
        return no_defs()
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: {shown(value)} is not a table of channel name -> settings")
    out: dict[str, Mapping[str, Any]] = {}
    for name, spec in value.items():
        if not isinstance(name, str) or not name.strip() or scheme_of(name) or "," in name:
            raise ValueError(f"{where}: {shown(name)} is not a channel name (a word, not a URL)")
        at = f"{where}.{display_name(name)}"
        if name in BUILT_IN:
            raise ValueError(f"{at}: {name!r} is a built-in channel; choose another name")
        if not isinstance(spec, Mapping):
            raise ValueError(f"{at}: {shown(spec)} is not a table with at least a url")
        unknown = [key for key in spec if key not in DEF_KEYS]
        if unknown:
            raise ValueError(f"{at}: unknown key {shown(unknown[0])}; known: {', '.join(DEF_KEYS)}")
        if "url" not in spec:
            raise ValueError(f"{at}: no url")
        url = spec["url"]
        if not isinstance(url, str) or scheme_of(reveal(url)) is None:
            what = display_name(url) if isinstance(url, str) else shown(url)
            raise ValueError(f"{at}.url: {what} is not a URL (https://, smtp://, ...)")
        checked: dict[str, Any] = {"url": url}
        if spec.get("on") is not None:
            checked["on"] = parse_events(spec["on"], f"{at}.on")
        if spec.get("templates") is not None:
            from .templates import parse_templates

            checked["templates"] = parse_templates(spec["templates"], f"{at}.templates")
        headers = spec.get("headers")
        if headers is not None:
            _check_headers(headers, f"{at}.headers")
            checked["headers"] = types.MappingProxyType(dict(headers))
        secret = spec.get("secret")
        if secret is not None:
            if not isinstance(secret, str) or not reveal(secret):
                raise ValueError(f"{at}.secret: is not a non-empty text")
            checked["secret"] = secret
        for key in ("to", "from"):
            item = spec.get(key)
            if item is None:
                continue
            ok = isinstance(item, str) or (
                isinstance(item, Sequence) and all(isinstance(i, str) for i in item)
            )
            if not ok:
                raise ValueError(
                    f"{at}.{key}: {shown(item)} is not an address or list of addresses"
                )
            checked[key] = item if isinstance(item, str) else tuple(item)
        frozen = types.MappingProxyType(checked)
        check_channel_def(name, frozen, where)  # raises ValueError naming what is wrong
        out[name] = frozen
    return types.MappingProxyType(out)


def _check_headers(headers: object, where: str) -> None:
    """Raise ``ValueError`` unless ``headers`` is a table of name -> text. Header values
    carry credentials (``Authorization``), so the message gives names and kinds, never a
    value."""
    hidden = "(header values are not shown)"
    if not isinstance(headers, Mapping):
        raise ValueError(f"{where}: {_kind(headers)}, not a table of name -> text {hidden}")
    for key, item in headers.items():
        if not isinstance(key, str):
            raise ValueError(f"{where}: the name {shown(key)} is not a text")
        if not isinstance(item, str):
            raise ValueError(f"{where}.{display_name(key)}: {_kind(item)}, not a text {hidden}")


def _kind(value: object) -> str:
    """What ``value`` is, in the words of a settings file: ``a text``, ``a list``..."""
    if isinstance(value, str):
        return "a text"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def channel_def(name: str, config: Config | None) -> Mapping[str, Any] | None:
    """The named channel ``name`` of ``config``, or ``None`` when it is not one."""
    defs = config.channel_defs if config is not None else no_defs()
    return defs.get(name)


def channel_wants(name: str, event: str, config: Config | None) -> bool:
    """Whether channel ``name`` takes ``event``: a named channel's ``on`` limits its events
    (test notices always pass)."""
    spec = channel_def(name, config)
    if spec is None or spec.get("on") is None or event == "test":
        return True
    return event in spec["on"]

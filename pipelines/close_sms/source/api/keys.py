"""The `api_key` setting: one Close API key, or several to read with more requests a second."""

from __future__ import annotations

import json
from typing import Any

from ...errors import ConfigError, where_to_set

_SETTING = f"CLOSE_API_KEY, or {where_to_set('api_key', secret=True)}"


def parse_api_keys(value: Any) -> tuple[str, ...]:
    """The keys in `api_key`: one key, keys separated by commas, or a list; none when unset.

    An empty entry or a repeated key is a config error naming the entry by position only.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        if text.startswith("["):
            # dlt hands a TOML list to a `str` setting as its JSON text.
            try:
                value = json.loads(text)
            except ValueError:
                # The parser's message would quote the keys.
                raise ConfigError(f"api_key is not a valid list of keys ({_SETTING})") from None
        else:
            value = text.split(",")
    if not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"api_key must be a key, keys separated by commas, or a list ({_SETTING})"
        )
    keys: list[str] = []
    for position, entry in enumerate(value, start=1):
        if not isinstance(entry, str):
            raise ConfigError(f"api_key: key {position} of {len(value)} is not text ({_SETTING})")
        key = entry.strip()
        if not key:
            raise ConfigError(f"api_key: key {position} of {len(value)} is empty ({_SETTING})")
        if key in keys:
            raise ConfigError(
                f"api_key: key {position} of {len(value)} repeats key {keys.index(key) + 1} "
                f"({_SETTING})"
            )
        keys.append(key)
    return tuple(keys)

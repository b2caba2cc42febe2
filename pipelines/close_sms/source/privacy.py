"""Privacy: phone numbers, SMS and template texts and the names of contacts and leads hashed or
dropped before a row leaves the source.

Rows are changed where raw SMS become rows, so no raw value reaches dlt's extract files, its
state, its trace or the destination. The hash is HMAC-SHA256 under a secret key: phone numbers
are few enough (about 10^10 per country code) that an unkeyed hash is undone by enumeration.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import FULL_RELOAD, ConfigError, where_to_set
from . import settings
from .settings import TextMode

# Every field of Close's SMSActivity that holds a phone number.
PHONE_FIELDS = ("local_phone", "local_phone_formatted", "remote_phone", "remote_phone_formatted")
# Free text Close writes itself, which may quote the number an SMS failed to reach.
PHONE_QUOTING_FIELDS = ("error_message",)
# The fields of a phone number of the organization (`phone_numbers`) that hold a number.
NUMBER_PHONE_FIELDS = ("number", "number_formatted", "forward_to", "forward_to_formatted")
# The keys of an entry of a contact's `phones` that hold a number.
CONTACT_PHONE_KEYS = ("phone", "phone_formatted")
# The fields of contacts and leads that name a person or a company.
NAME_FIELDS = ("name", "display_name")

# What a display form adds to E.164: spaces, dashes, dots, parentheses.
_NOT_E164 = re.compile(r"[^\d+]")
# A phone number in free text: 7 or more digits, with the separators display forms use.
_PHONE_LIKE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d")
_MIN_PHONE_DIGITS = 7
# Data loaded before the mode was recorded was loaded as it came.
_AS_IT_CAME: dict[str, Any] = {"hash_phones": False, "sms_text": TextMode.KEEP, "key_check": None}
# Hashed into the check value the state records instead of the key.
_KEY_CHECK_INPUT = "close-sms hash_key check"


@dataclass(frozen=True)
class Privacy:
    """What the source does to personal data: hash phone numbers; keep, drop or hash the text."""

    hash_phones: bool = False
    sms_text: TextMode = settings.DEFAULT_SMS_TEXT
    key: bytes | None = field(default=None, repr=False)
    # Names and emails of contacts, names of leads: keep, drop or hash, as `sms_text`.
    contact_names: TextMode = settings.DEFAULT_CONTACT_NAMES

    @classmethod
    def configure(
        cls,
        hash_phones: Any,
        sms_text: Any,
        hash_key: Any,
        contact_names: Any = settings.DEFAULT_CONTACT_NAMES,
    ) -> Privacy:
        """Check the settings, naming the one that is wrong (never echoing the key)."""
        if not isinstance(hash_phones, bool):
            raise ConfigError(
                f"setting hash_phones = {hash_phones!r} is not true or false "
                f"({where_to_set('hash_phones')})"
            )
        text_mode = _text_mode("sms_text", sms_text)
        names_mode = _text_mode("contact_names", contact_names)
        hashing = [
            what
            for what, on in (
                ("hash_phones = true", hash_phones),
                ("sms_text = hash", text_mode is TextMode.HASH),
                ("contact_names = hash", names_mode is TextMode.HASH),
            )
            if on
        ]
        if not hashing:
            return cls(hash_phones, text_mode, contact_names=names_mode)
        key = str(hash_key or "").strip()
        what = hashing[0]
        if not key:
            raise ConfigError(
                f"{what} needs the secret hash_key ({where_to_set('hash_key', secret=True)})"
            )
        if len(key) < settings.MIN_HASH_KEY_LENGTH:
            raise ConfigError(
                f"hash_key is shorter than {settings.MIN_HASH_KEY_LENGTH} characters: a short "
                "key can be guessed, and with it every phone number; use a long random value "
                "such as the output of `python -c 'import secrets; print(secrets.token_hex(32))'`"
            )
        return cls(hash_phones, text_mode, key.encode(), names_mode)

    def apply(self, row: dict[str, Any]) -> dict[str, Any]:
        """Hash or drop the row's personal fields in place; returns the row."""
        if self.hash_phones:
            for name in PHONE_FIELDS:
                if row.get(name) is not None:
                    row[name] = self.hash_phone(row[name])
            for name in PHONE_QUOTING_FIELDS:
                if isinstance(row.get(name), str):
                    # Any number it quotes, in whatever format, not only the SMS's own.
                    row[name] = _PHONE_LIKE.sub(self._hash_phone_like, row[name])
        return self.apply_to_text(row)

    def apply_to_text(self, row: dict[str, Any]) -> dict[str, Any]:
        """Hash or drop the row's `text` as `sms_text` says, in place; returns the row.

        SMS templates' texts too: an SMS sent from a template without placeholders has exactly
        the template's text.
        """
        if self.sms_text is TextMode.DROP:
            row["text"] = None
        elif self.sms_text is TextMode.HASH and row.get("text") is not None:
            row["text"] = self._hash(str(row["text"]))
        return row

    def apply_to_number(self, row: dict[str, Any]) -> dict[str, Any]:
        """Hash the numbers of a phone number of the organization in place; returns the row."""
        if self.hash_phones:
            for name in NUMBER_PHONE_FIELDS:
                if row.get(name) is not None:
                    row[name] = self.hash_phone(row[name])
        return row

    def apply_to_person(self, row: dict[str, Any]) -> dict[str, Any]:
        """Hash or drop a contact's or lead's names, emails and phones in place; returns the row."""
        if self.hash_phones and "phones" in row:
            row["phones"] = [
                _replace(entry, CONTACT_PHONE_KEYS, self.hash_phone)
                for entry in _entries(row, "phones")
            ]
        if self.contact_names is TextMode.KEEP:
            return row
        change = self._hash if self.contact_names is TextMode.HASH else _dropped
        for name in NAME_FIELDS:
            if row.get(name) is not None:
                row[name] = change(str(row[name]))
        if "emails" in row:
            row["emails"] = [
                _replace(entry, ("email",), change) for entry in _entries(row, "emails")
            ]
        return row

    def hash_phone(self, phone: Any) -> str:
        """The hash of a phone number; its E.164 and international display forms hash alike."""
        text = str(phone)
        return self._hash(_NOT_E164.sub("", text) or text)

    def _hash_phone_like(self, match: re.Match[str]) -> str:
        text = match.group()
        digits = sum(char.isdigit() for char in text)
        return self.hash_phone(text) if digits >= _MIN_PHONE_DIGITS else text

    def enforce(self, recorded: Mapping[str, Any] | None, loaded_before: bool) -> dict[str, Any]:
        """Refuse a run whose mode differs from the `recorded` one; the mode to record.

        A full refresh starts from an empty state, so it may change the mode.
        """
        mode = self._mode()
        recorded = recorded or (_AS_IT_CAME if loaded_before else None)
        if recorded is not None:
            # Modes recorded before contact_names existed kept the names.
            recorded = {"contact_names": settings.DEFAULT_CONTACT_NAMES, **recorded}
            mode = {"contact_names": settings.DEFAULT_CONTACT_NAMES, **mode}
        if recorded is not None and recorded != mode:
            change = (
                "hash_key is not the key the data was hashed with"
                if _describe(mode) == _describe(recorded)
                else f"the privacy settings ({_describe(mode)}) differ from those the data was "
                f"loaded with ({_describe(recorded)})"
            )
            raise ConfigError(
                f"{change}, and raw and differently hashed values must not mix: load everything "
                f"again with these settings ({FULL_RELOAD})"
            )
        return self._mode()

    def _mode(self) -> dict[str, Any]:
        # The key is recorded as a check value only, so a changed key is refused as well.
        check = self._hash(_KEY_CHECK_INPUT)[:16] if self.key else None
        # The modes as their words: the state keeps plain JSON.
        mode = {
            "hash_phones": self.hash_phones,
            "sms_text": self.sms_text.value,
            "key_check": check,
        }
        if self.contact_names is not settings.DEFAULT_CONTACT_NAMES:
            # Only when set, so modes recorded before the setting existed still compare equal.
            mode["contact_names"] = self.contact_names.value
        return mode

    def _hash(self, value: str) -> str:
        assert self.key is not None, "configure() requires a key whenever something is hashed"
        return hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()


def _text_mode(name: str, value: Any) -> TextMode:
    """The setting `name`'s value as a `TextMode`; a ConfigError names the setting."""
    try:
        return TextMode(value)
    except (ValueError, TypeError):
        raise ConfigError(
            f"setting {name} = {value!r} is not one of {', '.join(TextMode)} ({where_to_set(name)})"
        ) from None


def _describe(mode: Mapping[str, Any]) -> str:
    text = f"hash_phones={str(mode['hash_phones']).lower()}, sms_text={mode['sms_text']}"
    names = mode.get("contact_names", settings.DEFAULT_CONTACT_NAMES)
    return text if names == settings.DEFAULT_CONTACT_NAMES else f"{text}, contact_names={names}"


def _entries(row: Mapping[str, Any], name: str) -> list[Any]:
    value = row.get(name)
    return list(value) if isinstance(value, list) else []


def _replace(entry: Any, keys: tuple[str, ...], change: Callable[[str], Any]) -> Any:
    """A copy of a `phones`/`emails` entry with `keys` changed (other shapes pass unchanged)."""
    if not isinstance(entry, dict):
        return entry
    return {k: change(str(v)) if k in keys and v is not None else v for k, v in entry.items()}


def _dropped(value: str) -> None:
    return None

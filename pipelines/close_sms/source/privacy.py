"""Privacy: phone numbers and SMS text hashed, or the text dropped, before a row leaves the source.

Rows are changed where raw SMS become rows, so no raw value reaches dlt's extract files, its
state, its trace or the destination. The hash is HMAC-SHA256 under a secret key: phone numbers
are few enough (about 10^10 per country code) that an unkeyed hash is undone by enumeration.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import settings
from ..errors import ConfigError, where_to_set

# Every field of Close's SMSActivity that holds a phone number.
PHONE_FIELDS = ("local_phone", "local_phone_formatted", "remote_phone", "remote_phone_formatted")
# Free text Close writes itself, which may quote the number an SMS failed to reach.
PHONE_QUOTING_FIELDS = ("error_message",)

# What a display form adds to E.164: spaces, dashes, dots, parentheses.
_NOT_E164 = re.compile(r"[^\d+]")
# A phone number in free text: 7 or more digits, with the separators display forms use.
_PHONE_LIKE = re.compile(r"\+?\(?\d[\d\s().-]{5,}\d")
_MIN_PHONE_DIGITS = 7
# Data loaded before the mode was recorded was loaded as it came.
_AS_IT_CAME: dict[str, Any] = {
    "hash_phones": False,
    "sms_text": settings.DEFAULT_SMS_TEXT,
    "key_check": None,
}
# Hashed into the check value the state records instead of the key.
_KEY_CHECK_INPUT = "close-sms hash_key check"


@dataclass(frozen=True)
class Privacy:
    """What the source does to personal data: hash phone numbers; keep, drop or hash the text."""

    hash_phones: bool = False
    sms_text: str = settings.DEFAULT_SMS_TEXT
    key: bytes | None = field(default=None, repr=False)

    @classmethod
    def configure(cls, hash_phones: Any, sms_text: Any, hash_key: Any) -> Privacy:
        """Check the settings, naming the one that is wrong (never echoing the key)."""
        if not isinstance(hash_phones, bool):
            raise ConfigError(
                f"setting hash_phones = {hash_phones!r} is not true or false "
                f"({where_to_set('hash_phones')})"
            )
        if sms_text not in settings.SMS_TEXT_MODES:
            raise ConfigError(
                f"setting sms_text = {sms_text!r} is not one of "
                f"{', '.join(settings.SMS_TEXT_MODES)} "
                f"({where_to_set('sms_text')})"
            )
        if not (hash_phones or sms_text == "hash"):
            return cls(hash_phones, sms_text)
        key = str(hash_key or "").strip()
        what = "hash_phones = true" if hash_phones else "sms_text = hash"
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
        return cls(hash_phones, sms_text, key.encode())

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
        if self.sms_text == "drop":
            row["text"] = None
        elif self.sms_text == "hash" and row.get("text") is not None:
            row["text"] = self._hash(str(row["text"]))
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
        if recorded is not None and recorded != mode:
            change = (
                "hash_key is not the key the data was hashed with"
                if _describe(mode) == _describe(recorded)
                else f"the privacy settings ({_describe(mode)}) differ from those the data was "
                f"loaded with ({_describe(recorded)})"
            )
            raise ConfigError(
                f"{change}, and raw and differently hashed values must not mix: run "
                "`close-sms sync --full-refresh` to load everything again with these settings "
                "(a plain pipeline: run(..., refresh='drop_sources'))"
            )
        return mode

    def _mode(self) -> dict[str, Any]:
        # The key is recorded as a check value only, so a changed key is refused as well.
        check = self._hash(_KEY_CHECK_INPUT)[:16] if self.key else None
        return {"hash_phones": self.hash_phones, "sms_text": self.sms_text, "key_check": check}

    def _hash(self, value: str) -> str:
        assert self.key is not None, "configure() requires a key whenever something is hashed"
        return hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()


def _describe(mode: Mapping[str, Any]) -> str:
    return f"hash_phones={str(mode['hash_phones']).lower()}, sms_text={mode['sms_text']}"

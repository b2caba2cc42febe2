"""Close-looking ids (`acti_` + 43 url-safe characters) that encode their row number.

Encoding the row lets a 1M-SMS store find an id without a dict of a million strings.
"""

from __future__ import annotations

import base64
import hashlib

_MASK48 = (1 << 48) - 1
# An odd multiplier is invertible modulo 2**48, which makes the head a bijection of the row.
_MUL = 0x5DEECE66D | 1
_MUL_INV = pow(_MUL, -1, 1 << 48)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


class IdCodec:
    """Maps row numbers to ids of one prefix and back, keyed by a seed."""

    def __init__(self, prefix: str, seed: int | str) -> None:
        self.prefix = prefix
        self._key = hashlib.blake2b(f"{prefix}{seed}".encode(), digest_size=32).digest()
        self._add = int.from_bytes(self._key[:6], "big")
        self._plen = len(prefix)

    def encode(self, row: int) -> str:
        """The id of `row`: 8 characters carrying the row, 35 looking random."""
        perm = (row * _MUL + self._add) & _MASK48
        head = _b64(perm.to_bytes(6, "big"))
        tail = hashlib.blake2b(row.to_bytes(8, "big"), key=self._key, digest_size=27).digest()
        return f"{self.prefix}{head}{_b64(tail)[:35]}"

    def decode(self, value: str) -> int | None:
        """The row of an id made by this codec, or None for anything else."""
        if len(value) != self._plen + 43 or not value.startswith(self.prefix):
            return None
        try:
            perm = int.from_bytes(
                base64.urlsafe_b64decode(value[self._plen : self._plen + 8]), "big"
            )
        except (ValueError, TypeError):
            return None
        row = ((perm - self._add) * _MUL_INV) & _MASK48
        return row if self.encode(row) == value else None


def random_like_id(prefix: str, seed: int | str, n: int, length: int = 43) -> str:
    """A deterministic id of `prefix` for the n-th object of a kind (leads, events, ...)."""
    digest = hashlib.blake2b(f"{prefix}{seed}:{n}".encode(), digest_size=33).digest()
    return f"{prefix}{_b64(digest)[:length]}"

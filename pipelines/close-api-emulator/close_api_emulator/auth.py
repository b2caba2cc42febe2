"""API keys of the emulated account and parsing of the Authorization header."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

# Keys look like Close's (`api_` + random); they are public test values, not secrets.
DEMO_API_KEY = "api_4mQ7dEmoK3yAdm1nXvT9Zp2RbLwS8uYc"
NON_ADMIN_API_KEY = "api_6nR2nonAdm1nKeyHj5TqWc8ZxPvL3sDf"
OTHER_ORG_API_KEY = "api_9pL4otherOrgKeyBn7VxQm2RtYc6WsKe"

ORG_ID = "orga_RbREgmiiwcr1w2b4cOnCMQaQPSIFxMqAD2Dh243uxcH"
OTHER_ORG_ID = "orga_Zq8wOtherOrgnZ3kP1vB6sLmT9cXyR4dFhJ2uQe7nA0W"

UNAUTHORIZED_MESSAGE = (
    "The server could not verify that you are authorized to access the URL requested.  "
    "You either supplied the wrong credentials (e.g. a bad password), or your browser "
    "doesn't understand how to supply the credentials required."
)
FORBIDDEN_MESSAGE = "Forbidden"


@dataclass(frozen=True)
class Principal:
    """Who a key belongs to. `key_id` is what events show; the key itself is never echoed."""

    key_id: str
    organization_id: str
    user_id: str
    user_name: str
    email: str
    is_admin: bool


# Filled by the Emulator once the account's users exist (the key users are fixed ids).
ADMIN_USER_ID = "user_N6KhMpzHRCYQHdn4gRNIFNN5JExnsrprKA6ekxM63XA"
MEMBER_USER_ID = "user_Q2vTm8NonAdminUserXk4Wb7RpLc9ZsYhDf3Ju5Ne1"
OTHER_ORG_USER_ID = "user_H7cXo2OtherOrgUserTm4Zp9RkWb6LsQf1Ve8Ny3Jd"

PRINCIPALS: dict[str, Principal] = {
    DEMO_API_KEY: Principal(
        "apik_0demoAdminKey00000000",
        ORG_ID,
        ADMIN_USER_ID,
        "Tobias Fuenke",
        "tobias@example.com",
        True,
    ),
    NON_ADMIN_API_KEY: Principal(
        "apik_1nonAdminKey000000000",
        ORG_ID,
        MEMBER_USER_ID,
        "Lindsay Bluth",
        "lindsay@example.com",
        False,
    ),
    OTHER_ORG_API_KEY: Principal(
        "apik_2otherOrgKey000000000",
        OTHER_ORG_ID,
        OTHER_ORG_USER_ID,
        "Gob Bluth",
        "gob@example.com",
        True,
    ),
}


def api_key_from_header(header: str | None) -> str | None:
    """The key from `Basic base64(key:)` or `Bearer key`; None when absent or malformed."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        return value or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        username, _, _password = decoded.partition(":")
        return username or None
    return None


def authenticate(header: str | None) -> Principal | None:
    """The principal of a request, or None (answer 401)."""
    key = api_key_from_header(header)
    return PRINCIPALS.get(key) if key else None

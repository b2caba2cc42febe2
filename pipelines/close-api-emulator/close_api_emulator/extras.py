"""Fields of rendered SMS beyond today's: recorded in real answers, or not in the spec at all.

Values derive from a hash of (seed, row), so an account looks the same on every read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .ids import random_like_id

if TYPE_CHECKING:
    from .config import EmulatorConfig

ExtraFields = Callable[[int | str, int, dict[str, Any]], dict[str, Any]]

CALLER_ID_REASONS = ("context", "local_presence", "fallback")
# Sources seen in real answers that the spec's PhoneActivitySource enum does not list.
OFF_SPEC_INBOUND_SOURCES = ("whatsapp", "webform")
AGENT_SOURCE = "ai"
_AGENT_REASONS = (
    "Replied to the customer's question.",
    "Followed up after no reply for 2 days.",
    "Confirmed the appointment time.",
    "Sent the quote the customer asked for.",
)
_AGENT_CONFIGS = 3
# Out of 256: the share of outbound SMS an AI agent sent (about 5%), of inbound SMS that
# came from WhatsApp and from a web form (about 3% each), and of undeclared values that are null.
_AGENT_SHARE, _OFF_SPEC_SHARE, _NULL_SHARE = 13, 8, 40


def extra_fields_renderer(config: EmulatorConfig) -> ExtraFields | None:
    """A function adding the switched-on fields to a rendered SMS; None when all are off."""
    recorded, sources = config.recorded_sms_fields, config.recorded_sources
    undeclared = config.undeclared_fields
    if not (recorded or sources or undeclared):
        return None

    def extra(seed: int | str, row: int, sms: dict[str, Any]) -> dict[str, Any]:
        digest = hashlib.blake2b(f"extra:{seed}:{row}".encode(), digest_size=64).digest()
        outbound = sms["direction"] == "outbound"
        by_agent = outbound and digest[0] < _AGENT_SHARE
        fields: dict[str, Any] = {}
        if recorded:
            fields.update(_recorded_fields(seed, digest, outbound, by_agent))
        if sources:
            if by_agent:
                fields["source"] = AGENT_SOURCE
            elif not outbound and digest[1] < 2 * _OFF_SPEC_SHARE:
                fields["source"] = OFF_SPEC_INBOUND_SOURCES[digest[1] // _OFF_SPEC_SHARE]
        if undeclared:
            fields.update(_undeclared_fields(undeclared, seed, row, digest))
        return fields

    return extra


def _recorded_fields(
    seed: int | str, digest: bytes, outbound: bool, by_agent: bool
) -> dict[str, Any]:
    """caller_id_mode/_reason (outbound SMS pick a caller id) and the agent fields."""
    mode = reason = None
    if outbound:
        mode = "auto" if digest[2] % 3 == 0 else "fixed"
        if mode == "auto":
            reason = CALLER_ID_REASONS[digest[3] % len(CALLER_ID_REASONS)]
    fields: dict[str, Any] = {"caller_id_mode": mode, "caller_id_reason": reason}
    if by_agent:
        config = digest[4] % _AGENT_CONFIGS
        fields["agent_config_id"] = random_like_id("agentcfg_", seed, config, length=22)
        fields["agent_action_reason"] = _AGENT_REASONS[digest[5] % len(_AGENT_REASONS)]
    return fields


def _undeclared_fields(count: int, seed: int | str, row: int, digest: bytes) -> dict[str, Any]:
    """`import_id`, then x_extra_1, x_extra_2, ...: strings, integers and booleans by turns,
    each field one type in every SMS, and about one value in six null."""
    fields: dict[str, Any] = {
        "import_id": (
            random_like_id("import_", seed, digest[6] % 8, length=22)
            if digest[7] < _NULL_SHARE * 2
            else None
        )
    }
    for k in range(1, count):
        byte = digest[(8 + k) % len(digest)]
        if byte < _NULL_SHARE:
            value: Any = None
        elif k % 3 == 1:
            value = f"value {byte} of row {row}"
        elif k % 3 == 2:
            value = byte * 1_000 + row
        else:
            value = byte % 2 == 0
        fields[f"x_extra_{k}"] = value
    return fields

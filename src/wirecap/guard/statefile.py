"""The state file: active blocks and past offenders, kept across restarts. No I/O here.

The kernel set already outlives the guard, with each element's time left; the file
adds what the set cannot hold for sure (the reason, the offence count, offenders
whose block has ended) and puts blocks back if the table itself was lost, e.g. by
a reboot or an ``nft flush ruleset``. Times are wall-clock seconds, JSON::

    {"version": 1,
     "blocks": [{"address": "192.0.2.7", "until": 1700000600.0,
                 "reason": "port-scan", "offence": 1}],
     "offenders": [{"address": "192.0.2.7", "offences": 1, "last": 1700000000.0}]}
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any, NamedTuple

from wirecap.errors import FormatError, LimitExceededError
from wirecap.guard.detectors import Reason

__all__ = [
    "MAX_STATE_BYTES",
    "STATE_VERSION",
    "GuardState",
    "SavedBlock",
    "SavedOffender",
    "decode_state",
    "encode_state",
]

STATE_VERSION = 1
#: Two tables of at most 65536 entries of under 100 bytes each, with room to spare.
MAX_STATE_BYTES = 32 << 20

_NS = 1_000_000_000


class SavedBlock(NamedTuple):
    address: bytes
    until_ns: int
    reason: Reason
    offence: int


class SavedOffender(NamedTuple):
    address: bytes
    offences: int
    last_ns: int


class GuardState(NamedTuple):
    blocks: tuple[SavedBlock, ...] = ()
    offenders: tuple[SavedOffender, ...] = ()


def encode_state(blocks: Iterable[SavedBlock], offenders: Iterable[SavedOffender]) -> bytes:
    document = {
        "version": STATE_VERSION,
        "blocks": [
            {
                "address": str(ipaddress.ip_address(b.address)),
                "until": b.until_ns / _NS,
                "reason": b.reason.value,
                "offence": b.offence,
            }
            for b in blocks
        ],
        "offenders": [
            {
                "address": str(ipaddress.ip_address(o.address)),
                "offences": o.offences,
                "last": o.last_ns / _NS,
            }
            for o in offenders
        ],
    }
    return (json.dumps(document, indent=1) + "\n").encode("utf-8")


def _field(entry: Any, key: str, kinds: type | tuple[type, ...], index: int, table: str) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise FormatError(f"state file: {table}[{index}] has no {key!r}")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise FormatError(f"state file: {table}[{index}].{key} has the wrong type")
    return value


def _address(entry: Any, index: int, table: str) -> bytes:
    text = _field(entry, "address", str, index, table)
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        raise FormatError(f"state file: {table}[{index}].address {text!r} is no address") from None


def _count(entry: Any, key: str, index: int, table: str) -> int:
    value: int = _field(entry, key, int, index, table)
    if value < 1:
        raise FormatError(f"state file: {table}[{index}].{key} must be at least 1")
    return value


def _time(entry: Any, key: str, index: int, table: str) -> int:
    value = _field(entry, key, (int, float), index, table)
    if not 0 <= value < 1e11:  # before the year 5138; catches garbage and infinities
        raise FormatError(f"state file: {table}[{index}].{key} is not a plausible time")
    return int(value * _NS)


def decode_state(data: bytes) -> GuardState:
    """Parse a state file; raise FormatError (or LimitExceededError) saying what is wrong."""
    if len(data) > MAX_STATE_BYTES:
        raise LimitExceededError(f"state file of {len(data)} bytes exceeds {MAX_STATE_BYTES}")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"state file is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        raise FormatError(f"state file is not a version {STATE_VERSION} guard state")
    raw_blocks = document.get("blocks", [])
    raw_offenders = document.get("offenders", [])
    if not isinstance(raw_blocks, list) or not isinstance(raw_offenders, list):
        raise FormatError("state file: blocks and offenders must be lists")
    blocks: list[SavedBlock] = []
    for i, entry in enumerate(raw_blocks):
        reason_text = _field(entry, "reason", str, i, "blocks")
        try:
            reason = Reason(reason_text)
        except ValueError:
            raise FormatError(f"state file: blocks[{i}].reason {reason_text!r} unknown") from None
        blocks.append(
            SavedBlock(
                _address(entry, i, "blocks"),
                _time(entry, "until", i, "blocks"),
                reason,
                _count(entry, "offence", i, "blocks"),
            )
        )
    offenders = [
        SavedOffender(
            _address(entry, i, "offenders"),
            _count(entry, "offences", i, "offenders"),
            _time(entry, "last", i, "offenders"),
        )
        for i, entry in enumerate(raw_offenders)
    ]
    return GuardState(tuple(blocks), tuple(offenders))

"""Tests for wirecap.guard.statefile: the state file codec."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.errors import DecodeError, FormatError, LimitExceededError
from wirecap.guard.detectors import Reason
from wirecap.guard.statefile import (
    MAX_STATE_BYTES,
    GuardState,
    SavedBlock,
    SavedOffender,
    decode_state,
    encode_state,
)

S = 1_000_000_000
V6 = bytes.fromhex("20010db8000000000000000000000007")


def test_round_trip() -> None:
    blocks = [
        SavedBlock(bytes([192, 0, 2, 7]), 1_700_000_600 * S, Reason.PORT_SCAN, 2),
        SavedBlock(V6, 1_700_000_700 * S, Reason.SYN_RATE, 1),
    ]
    offenders = [SavedOffender(bytes([192, 0, 2, 7]), 2, 1_700_000_000 * S)]
    assert decode_state(encode_state(blocks, offenders)) == GuardState(
        tuple(blocks), tuple(offenders)
    )
    document = json.loads(encode_state(blocks, offenders))
    assert document["blocks"][1]["address"] == "2001:db8::7"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"not json", "not JSON"),
        (b"[]", "version 1"),
        (b'{"version": 2}', "version 1"),
        (b'{"version": 1, "blocks": {}}', "must be lists"),
        (b'{"version": 1, "blocks": [{"address": "x"}]}', "no 'reason'"),
        (
            b'{"version": 1, "blocks": [{"address": "1.2.3.4", "reason": "bored", "until": 1,'
            b' "offence": 1}]}',
            "unknown",
        ),
        (
            b'{"version": 1, "blocks": [{"address": "1.2.3", "reason": "manual", "until": 1,'
            b' "offence": 1}]}',
            "no address",
        ),
        (
            b'{"version": 1, "offenders": [{"address": "1.2.3.4", "offences": 0, "last": 1}]}',
            "at least 1",
        ),
        (
            b'{"version": 1, "offenders": [{"address": "1.2.3.4", "offences": 1, "last": 1e300}]}',
            "plausible",
        ),
        (
            b'{"version": 1, "offenders": [{"address": "1.2.3.4", "offences": true, "last": 1}]}',
            "wrong type",
        ),
    ],
)
def test_bad_files_say_what_is_wrong(text: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        decode_state(text)


def test_oversized_file_is_refused_before_parsing() -> None:
    with pytest.raises(LimitExceededError):
        decode_state(b" " * (MAX_STATE_BYTES + 1))


@given(st.binary(max_size=200))
def test_garbage_gives_decode_errors_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_state(data)


@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "version",
                        "blocks",
                        "offenders",
                        "address",
                        "until",
                        "reason",
                        "offence",
                        "offences",
                        "last",
                    ]
                ),
                inner,
                max_size=5,
            )
        ),
        max_leaves=25,
    )
)
def test_garbage_json_gives_format_errors_only(document: object) -> None:
    data = json.dumps({"version": 1, "blocks": document, "offenders": document}).encode()
    with contextlib.suppress(FormatError):
        decode_state(data)

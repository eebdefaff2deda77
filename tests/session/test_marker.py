"""Marker packets: payload, filter clauses, detection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.core.capture.handle import check_filter
from wirecap.core.formats.linktype import LinkType
from wirecap.session.marker import (
    ETHERTYPE_LOCAL_EXPERIMENTAL,
    MARKER_PREFIX,
    TOKEN_LENGTH,
    MarkerKind,
    MarkerRoute,
    capture_filter,
    contains_marker,
    ethernet_marker_frame,
    marker_payload,
)

TOKEN = bytes(range(TOKEN_LENGTH))
LOOPBACK = MarkerRoute(MarkerKind.LOOPBACK_UDP, 40000)
ETHERNET = MarkerRoute(MarkerKind.ETHERNET)
NONE = MarkerRoute(MarkerKind.NONE)


def test_payload_is_prefix_and_token() -> None:
    assert marker_payload(TOKEN) == MARKER_PREFIX + TOKEN


@pytest.mark.parametrize("size", [0, TOKEN_LENGTH - 1, TOKEN_LENGTH + 1])
def test_token_of_wrong_size_is_refused(size: int) -> None:
    with pytest.raises(ValueError):
        marker_payload(bytes(size))


def test_no_user_filter_captures_everything() -> None:
    assert capture_filter("", LOOPBACK) == ""
    assert capture_filter("  ", ETHERNET) == "  "


def test_user_filter_is_widened_by_the_marker_clause() -> None:
    widened = capture_filter("tcp port 443", LOOPBACK)
    assert widened == (
        "(tcp port 443) or (udp and src host 127.0.0.1 and src port 40000 and dst port 40000)"
    )
    assert capture_filter("tcp", ETHERNET) == "(tcp) or (ether proto 0x88b5)"
    assert capture_filter("tcp", NONE) == "tcp"


@pytest.mark.parametrize("route", [LOOPBACK, ETHERNET])
@pytest.mark.parametrize("linktype", [LinkType.ETHERNET, LinkType.LINUX_SLL])
def test_widened_filters_compile_in_libpcap(route: MarkerRoute, linktype: int) -> None:
    check_filter(capture_filter("tcp port 443 or udp port 53", route), linktype)


def test_ethernet_frame_is_addressed_to_itself_and_padded() -> None:
    mac = bytes.fromhex("020000000001")
    frame = ethernet_marker_frame(mac, TOKEN)
    assert frame[:6] == frame[6:12] == mac
    assert int.from_bytes(frame[12:14], "big") == ETHERTYPE_LOCAL_EXPERIMENTAL
    assert len(frame) == 60
    assert contains_marker(frame, TOKEN)
    with pytest.raises(ValueError):
        ethernet_marker_frame(mac[:5], TOKEN)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_marker_found_anywhere_and_only_with_its_token(head: bytes, tail: bytes) -> None:
    assert contains_marker(head + marker_payload(TOKEN) + tail, TOKEN)
    other = bytes(TOKEN_LENGTH)
    if marker_payload(other) not in head + marker_payload(TOKEN) + tail:
        assert not contains_marker(head + marker_payload(TOKEN) + tail, other)

"""ctnetlink decoding: kernel-shaped messages, every truncation, and fuzzed garbage."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from tests.flows.builders import attr, conntrack_message
from wirecap.flows.model import Counters, FlowTuple, TcpState
from wirecap.flows.netlink import (
    CTA_TIMESTAMP_EVENT,
    NLMSG_DONE,
    NLMSG_ERROR,
    Conntrack,
    Done,
    Kind,
    NetlinkError,
    Overrun,
    Undecoded,
    decode_datagram,
    encode_dump_request,
    encode_message,
)

UDP = FlowTuple("10.210.0.1", "10.210.0.2", 17, 40000, 53)
TCP6 = FlowTuple("fd01::1", "fd01::2", 6, 50000, 443)


def _one(data: bytes) -> Conntrack:
    messages = list(decode_datagram(data))
    assert len(messages) == 1
    message = messages[0]
    assert isinstance(message, Conntrack), message
    return message


def test_decode_new_update_destroy_and_dump_kinds() -> None:
    assert _one(conntrack_message("new", 1, UDP)).kind is Kind.NEW
    assert _one(conntrack_message("update", 1, UDP)).kind is Kind.UPDATE
    assert _one(conntrack_message("destroy", 1, UDP)).kind is Kind.DESTROY
    assert _one(conntrack_message("dump", 1, UDP)).kind is Kind.DUMP


def test_decode_destroy_carries_counters_and_times() -> None:
    ct = _one(
        conntrack_message(
            "destroy",
            0xDEADBEEF,
            UDP,
            counters=(Counters(3, 93), Counters(2, 62)),
            start_ns=1_700_000_000_000_000_000,
            stop_ns=1_700_000_003_000_000_000,
            event_ns=1_700_000_004_000_000_000,
            mark=0xFF,
            zone=7,
        )
    )
    assert ct.id == 0xDEADBEEF
    assert ct.orig == UDP
    assert ct.reply == FlowTuple("10.210.0.2", "10.210.0.1", 17, 53, 40000)
    assert ct.counters_orig == Counters(3, 93)
    assert ct.counters_reply == Counters(2, 62)
    assert ct.start_ns == 1_700_000_000_000_000_000
    assert ct.stop_ns == 1_700_000_003_000_000_000
    assert ct.event_ns == 1_700_000_004_000_000_000
    assert ct.mark == 0xFF
    assert ct.zone == 7


def test_decode_ipv6_tcp_state() -> None:
    ct = _one(conntrack_message("update", 9, TCP6, tcp_state=3))
    assert ct.orig.src == "fd01::1"
    assert ct.tcp_state is TcpState.ESTABLISHED
    assert ct.counters_orig is None


def test_decode_skips_unknown_attributes() -> None:
    extra = attr(99, b"\x01\x02\x03") + attr(CTA_TIMESTAMP_EVENT + 10, b"")
    assert _one(conntrack_message("new", 5, UDP, extra=extra)).id == 5


def test_decode_several_messages_in_one_datagram() -> None:
    data = conntrack_message("dump", 1, UDP) + conntrack_message("dump", 2, TCP6)
    data += encode_message(NLMSG_DONE, 2, 77, struct.pack("=i", 0))
    messages = list(decode_datagram(data))
    assert [type(m) for m in messages] == [Conntrack, Conntrack, Done]
    assert messages[2] == Done(77)


def test_decode_error_message() -> None:
    data = encode_message(NLMSG_ERROR, 0, 4, struct.pack("=i", -1) + bytes(16))
    assert list(decode_datagram(data)) == [NetlinkError(4, 1)]


def test_dump_request_layout() -> None:
    request = encode_dump_request(42)
    length, msg_type, flags, seq, pid = struct.unpack_from("=IHHII", request)
    assert (length, msg_type, flags, seq, pid) == (20, 0x101, 0x301, 42, 0)
    assert request[16:] == b"\0\0\0\0"


def test_every_truncation_is_counted_not_raised() -> None:
    data = conntrack_message(
        "destroy",
        3,
        TCP6,
        counters=(Counters(1, 60), Counters(1, 60)),
        start_ns=1,
        stop_ns=2,
        tcp_state=7,
    )
    for cut in range(len(data)):
        messages = list(decode_datagram(data[:cut]))
        # A cut message is never taken for a good one.
        assert not any(isinstance(m, Conntrack) for m in messages), cut


def test_nesting_deeper_than_the_schema_is_refused() -> None:
    # The decoder follows the kernel's fixed schema (tuple → ip/proto → value),
    # so extra levels are malformed values, never recursion.
    inner = attr(1, b"")
    for _ in range(8):
        inner = attr(1, inner, nested=True)
    body = struct.pack("=BBH", 2, 0, 0) + inner
    message = encode_message(0x100, 0, 0, body)
    assert all(isinstance(m, Undecoded) for m in decode_datagram(message))


def test_oversized_length_is_refused() -> None:
    good = conntrack_message("new", 1, UDP)
    claims_more = struct.pack("=I", 1 << 30) + good[4:]
    assert [type(m) for m in decode_datagram(claims_more)] == [Undecoded]


@given(st.binary(max_size=512))
def test_garbage_never_raises(data: bytes) -> None:
    for message in decode_datagram(data):
        assert isinstance(message, Conntrack | Done | NetlinkError | Overrun | Undecoded)


@given(st.data())
def test_mutated_messages_never_raise(data: st.DataObject) -> None:
    good = bytearray(
        conntrack_message(
            "destroy",
            1,
            UDP,
            counters=(Counters(1, 2), Counters(3, 4)),
            start_ns=5,
            stop_ns=6,
            tcp_state=3,
            mark=1,
        )
    )
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(good) - 1))
        good[position] = data.draw(st.integers(0, 255))
    list(decode_datagram(bytes(good)))


@given(st.lists(st.binary(max_size=40), max_size=8))
def test_random_attributes_inside_a_valid_header(chunks: list[bytes]) -> None:
    body = struct.pack("=BBH", 2, 0, 0) + b"".join(
        attr(i % 30, chunk, nested=bool(i % 2)) for i, chunk in enumerate(chunks)
    )
    for command in (0x100, 0x102):
        messages = list(decode_datagram(encode_message(command, 0x600, 0, body)))
        assert len(messages) == 1

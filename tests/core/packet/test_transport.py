"""Tests for wirecap.core.packet.transport: TCP, TCP options and UDP, against dpkt."""

from __future__ import annotations

import struct

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.core.formats.linktype import LinkType
from wirecap.core.packet import (
    SackBlock,
    TCPFlags,
    TCPHeader,
    TCPOptionKind,
    TCPTimestamps,
    decode,
    decode_tcp,
    decode_udp,
    parse_tcp_options,
)
from wirecap.errors import FormatError, TruncatedError


def ipv4(payload: bytes, protocol: int, total: int | None = None) -> bytes:
    length = 20 + len(payload) if total is None else total
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, length, 1, 0x4000, 64, protocol, 0, b"\x0a\0\0\1", b"\x0a\0\0\2"
    )
    return head + payload


def tcp(
    *,
    sport: int = 40000,
    dport: int = 443,
    seq: int = 1,
    ack: int = 0,
    flags: int = 0x02,
    reserved: int = 0,
    window: int = 65535,
    checksum: int = 0,
    urgent: int = 0,
    options: bytes = b"",
    payload: bytes = b"",
    data_offset: int | None = None,
) -> bytes:
    """A TCP segment built field by field (RFC 9293 §3.1); ``options`` padded by the caller."""
    words = 5 + len(options) // 4 if data_offset is None else data_offset
    head = struct.pack(
        "!HHIIBBHHH", sport, dport, seq, ack, words << 4 | reserved, flags, window, checksum, urgent
    )
    return head + options + payload


def udp(payload: bytes, *, length: int | None = None) -> bytes:
    size = 8 + len(payload) if length is None else length
    return struct.pack("!HHHH", 5353, 53, size, 0xBEEF) + payload


def raw(packet: bytes) -> TCPHeader:
    pkt = decode(LinkType.RAW, packet)
    assert pkt.tcp is not None, pkt
    return pkt.tcp


# --- TCP fixed header --------------------------------------------------------------------


@given(
    sport=st.integers(0, 0xFFFF),
    dport=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFFFFFF),
    ack=st.integers(0, 0xFFFFFFFF),
    flags=st.integers(0, 0xFF),
    reserved=st.integers(0, 0x0F),
    window=st.integers(0, 0xFFFF),
    checksum=st.integers(0, 0xFFFF),
    urgent=st.integers(0, 0xFFFF),
    option_words=st.integers(0, 10),
    payload=st.binary(max_size=100),
)
def test_tcp_fields_match_dpkt(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    reserved: int,
    window: int,
    checksum: int,
    urgent: int,
    option_words: int,
    payload: bytes,
) -> None:
    options = b"\x01" * (4 * option_words)
    segment = tcp(
        sport=sport,
        dport=dport,
        seq=seq,
        ack=ack,
        flags=flags,
        reserved=reserved,
        window=window,
        checksum=checksum,
        urgent=urgent,
        options=options,
        payload=payload,
    )
    packet = ipv4(segment, 6)
    ours = raw(packet)
    ref = dpkt.ip.IP(packet).data
    assert isinstance(ref, dpkt.tcp.TCP)
    assert (ours.sport, ours.dport, ours.seq, ours.ack) == (ref.sport, ref.dport, ref.seq, ref.ack)
    assert ours.header_length == ref.off * 4
    assert ours.data_offset == ref.off
    # dpkt's flags are 9 bits (with RFC 3540's NS bit, now reserved); ours are RFC 9293's 8.
    assert ours.flags == ref.flags & 0xFF
    assert isinstance(ours.flags, TCPFlags)
    assert (ours.window, ours.checksum, ours.urgent) == (ref.win, ref.sum, ref.urp)
    assert ours.options_raw == ref.opts
    assert ours.payload_length == len(ref.data) == len(payload)


def test_flags_are_an_int_flag() -> None:
    flags = raw(ipv4(tcp(flags=0x12), 6)).flags
    assert flags == TCPFlags.SYN | TCPFlags.ACK
    assert TCPFlags.SYN in flags and TCPFlags.RST not in flags
    every = raw(ipv4(tcp(flags=0xFF), 6)).flags
    assert set(every) == set(TCPFlags)
    assert [f.value for f in TCPFlags] == [1, 2, 4, 8, 16, 32, 64, 128]


def test_sequence_length_counts_syn_and_fin() -> None:
    assert raw(ipv4(tcp(flags=0x02), 6)).sequence_length == 1
    assert raw(ipv4(tcp(flags=0x11, payload=b"abc"), 6)).sequence_length == 4
    assert raw(ipv4(tcp(flags=0x10, payload=b"abc"), 6)).sequence_length == 3
    assert raw(ipv4(tcp(flags=0x04), 6)).sequence_length == 0


def test_payload_length_comes_from_ip_not_from_the_capture() -> None:
    packet = ipv4(tcp(flags=0x18, payload=b"p" * 1000), 6)
    cut = decode(LinkType.RAW, packet[:96])  # a 96-byte snaplen
    assert cut.tcp is not None and cut.tcp.payload_length == 1000
    assert not cut.truncated  # every header is whole; only payload is missing
    assert cut.payload == b"p" * 56


def test_tcp_header_cut_by_the_capture() -> None:
    packet = ipv4(tcp(), 6)
    with pytest.raises(TruncatedError):
        decode_tcp(packet[:39], 20, 20)
    pkt = decode(LinkType.RAW, packet[:39])
    assert pkt.truncated and pkt.ip is not None and pkt.transport is None


def test_tcp_options_cut_by_the_capture_keep_the_header() -> None:
    options = bytes([2, 4, 5, 180, 1, 1, 8, 10]) + struct.pack("!II", 7, 0) + bytes([1, 1, 1, 0])
    packet = ipv4(tcp(options=options), 6)
    pkt = decode(LinkType.RAW, packet[:50])
    assert pkt.truncated
    assert pkt.tcp is not None and pkt.tcp.header_length == 40
    parsed = pkt.tcp.options
    assert parsed.mss == 1460 and parsed.timestamps is None
    assert parsed.truncated and parsed.malformed is None


@pytest.mark.parametrize(
    ("segment", "announced", "reason"),
    [
        (tcp(data_offset=4), 20, "Data Offset of 16 bytes, below 20"),
        (tcp(data_offset=15) + bytes(20), 40, "TCP header of 60 bytes in a 40-byte segment"),
        (tcp(options=b"\x01" * 8), 24, "TCP header of 28 bytes in a 24-byte segment"),
    ],
)
def test_tcp_impossible_data_offset(segment: bytes, announced: int, reason: str) -> None:
    pkt = decode(LinkType.RAW, ipv4(segment, 6, 20 + announced))
    assert pkt.tcp is None and pkt.ip is not None
    assert pkt.malformed is not None and reason in pkt.malformed
    with pytest.raises(FormatError, match=reason):
        decode_tcp(segment, 0, announced)


# --- TCP options -------------------------------------------------------------------------


def test_linux_syn_options() -> None:
    # What Linux sends on a SYN: MSS, SACK permitted, timestamps, NOP, window scale.
    options = (
        bytes([2, 4, 0x05, 0xB4, 4, 2, 8, 10])
        + struct.pack("!II", 0x01020304, 0)
        + bytes([1, 3, 3, 7])
    )
    segment = tcp(options=options)
    tcp_header = raw(ipv4(segment, 6))
    parsed = tcp_header.options
    assert parsed.mss == 1460
    assert parsed.sack_permitted
    assert parsed.timestamps == TCPTimestamps(0x01020304, 0)
    assert parsed.window_scale == 7
    assert parsed.kinds == (2, 4, 8, 1, 3)
    assert parsed.sack_blocks == ()
    assert not parsed.truncated and parsed.malformed is None
    ref = dict(dpkt.tcp.parse_opts(dpkt.ip.IP(ipv4(segment, 6)).data.opts))
    assert struct.unpack("!H", ref[TCPOptionKind.MSS])[0] == parsed.mss
    assert ref[TCPOptionKind.WINDOW_SCALE][0] == parsed.window_scale
    assert struct.unpack("!II", ref[TCPOptionKind.TIMESTAMPS]) == parsed.timestamps


def test_sack_blocks() -> None:
    options = (
        bytes([1, 1, 8, 10])
        + struct.pack("!II", 5, 6)
        + bytes([1, 1, 5, 18])
        + struct.pack("!IIII", 1000, 2000, 3000, 4000)
    )
    parsed = raw(ipv4(tcp(flags=0x10, options=options), 6)).options
    assert parsed.sack_blocks == (SackBlock(1000, 2000), SackBlock(3000, 4000))
    assert parsed.timestamps == TCPTimestamps(5, 6)
    assert parsed.kinds == (1, 1, 8, 1, 1, 5)


def test_eol_ends_the_list() -> None:
    parsed = parse_tcp_options(bytes([2, 4, 1, 0, 0, 3, 3, 9]))
    assert parsed.mss == 256 and parsed.window_scale is None
    assert parsed.kinds == (2, 0)


def test_window_scale_above_14_is_reported_as_sent() -> None:
    assert parse_tcp_options(bytes([3, 3, 15, 0])).window_scale == 15


def test_unknown_options_are_skipped_by_length() -> None:
    parsed = parse_tcp_options(bytes([30, 6, 1, 2, 3, 4, 2, 4, 0, 100]))
    assert parsed.kinds == (30, 2)
    assert parsed.mss == 100 and parsed.malformed is None


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (bytes([2, 3, 5, 1, 3, 3, 2, 0]), "option 2 has length 3, expected 4"),
        (bytes([8, 1, 0, 0]), "length 1"),
        (bytes([5, 12]) + bytes(10), "not 2 + 8n"),
        (bytes([5, 2, 0, 0]), "not 2 + 8n"),
        (bytes([2, 8, 0, 0]), "runs past"),
        (bytes([1, 1, 1, 2]), "no length byte"),
    ],
)
def test_malformed_options(options: bytes, reason: str) -> None:
    parsed = parse_tcp_options(options)
    assert parsed.malformed is not None and reason in parsed.malformed
    assert not parsed.truncated


def test_wrong_length_option_is_ignored_and_parsing_goes_on() -> None:
    parsed = parse_tcp_options(bytes([2, 3, 5, 3, 3, 7, 0, 0]))
    assert parsed.mss is None and parsed.window_scale == 7


def test_options_in_a_truncated_area() -> None:
    parsed = parse_tcp_options(bytes([1, 8, 10, 0]), declared_length=12)
    assert parsed.truncated and parsed.malformed is None and parsed.timestamps is None
    lone = parse_tcp_options(bytes([1, 8]), declared_length=12)
    assert lone.truncated


@st.composite
def option_lists(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    """Well-formed options that fit the 40-byte option space (RFC 9293 §3.1)."""
    choices = st.one_of(
        st.tuples(st.just(1), st.just(b"")),
        st.tuples(st.just(2), st.binary(min_size=2, max_size=2)),
        st.tuples(st.just(3), st.binary(min_size=1, max_size=1)),
        st.tuples(st.just(4), st.just(b"")),
        st.tuples(
            st.just(5),
            st.integers(1, 4).flatmap(lambda n: st.binary(min_size=8 * n, max_size=8 * n)),
        ),
        st.tuples(st.just(8), st.binary(min_size=8, max_size=8)),
        st.tuples(st.integers(9, 253), st.binary(max_size=6)),
    )
    picked: list[tuple[int, bytes]] = []
    used = 0
    for kind, value in draw(st.lists(choices, max_size=10)):
        size = 1 if kind == 1 else 2 + len(value)
        if used + size <= 40:
            picked.append((kind, value))
            used += size
    return picked


def encode(options: list[tuple[int, bytes]]) -> bytes:
    out = b"".join(bytes([k]) if k == 1 else bytes([k, 2 + len(v)]) + v for k, v in options)
    return out + b"\x00" * (-len(out) % 4)


@given(option_lists())
def test_options_match_dpkt(options: list[tuple[int, bytes]]) -> None:
    packet = ipv4(tcp(options=encode(options)), 6)
    parsed = raw(packet).options
    ref = [opt for opt in dpkt.tcp.parse_opts(dpkt.ip.IP(packet).data.opts)]
    # dpkt reads on past EOL; RFC 9293 §3.2 says the list ends there.
    if (0, b"") in ref:
        ref = ref[: ref.index((0, b"")) + 1]
    assert parsed.kinds == tuple(kind for kind, _ in ref)
    assert parsed.malformed is None and not parsed.truncated
    last = {kind: value for kind, value in ref}
    assert parsed.mss == (struct.unpack("!H", last[2])[0] if 2 in last else None)
    assert parsed.window_scale == (last[3][0] if 3 in last else None)
    assert parsed.sack_permitted == (4 in last)
    assert parsed.timestamps == (
        TCPTimestamps(*struct.unpack("!II", last[8])) if 8 in last else None
    )
    sack = last.get(5, b"")
    assert parsed.sack_blocks == tuple(
        SackBlock(*struct.unpack_from("!II", sack, i)) for i in range(0, len(sack), 8)
    )


@given(st.binary(max_size=40), st.integers(0, 40))
def test_option_parsing_never_raises(options: bytes, declared: int) -> None:
    parsed = parse_tcp_options(options, max(declared, len(options)))
    assert len(parsed.kinds) <= len(options)


# --- UDP ---------------------------------------------------------------------------------


@given(
    sport=st.integers(0, 0xFFFF),
    dport=st.integers(0, 0xFFFF),
    checksum=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=100),
)
def test_udp_fields_match_dpkt(sport: int, dport: int, checksum: int, payload: bytes) -> None:
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(payload), checksum) + payload
    packet = ipv4(datagram, 17)
    pkt = decode(LinkType.RAW, packet)
    ref = dpkt.ip.IP(packet).data
    assert isinstance(ref, dpkt.udp.UDP)
    assert pkt.udp is not None
    ours = pkt.udp
    assert (ours.sport, ours.dport, ours.length, ours.checksum) == (
        ref.sport,
        ref.dport,
        ref.ulen,
        ref.sum,
    )
    assert ours.payload_length == len(ref.data) == len(payload)
    assert pkt.payload == payload


def test_udp_length_zero_uses_ip_length() -> None:
    pkt = decode(LinkType.RAW, ipv4(udp(b"abcdef", length=0), 17))
    assert pkt.udp is not None and pkt.udp.payload_length == 6


def test_udp_padding_is_not_payload() -> None:
    frame = bytes(12) + b"\x08\x00" + ipv4(udp(b"hi"), 17) + bytes(20)
    pkt = decode(LinkType.ETHERNET, frame)
    assert pkt.udp is not None and pkt.udp.payload_length == 2 and pkt.payload == b"hi"


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [(udp(b"abc", length=5), "below its 8-byte header"), (udp(b"abc", length=40), "exceeds")],
)
def test_udp_impossible_length(datagram: bytes, reason: str) -> None:
    pkt = decode(LinkType.RAW, ipv4(datagram, 17))
    assert pkt.udp is None and pkt.malformed is not None and reason in pkt.malformed
    with pytest.raises(FormatError):
        decode_udp(datagram, 0, len(datagram))


def test_udp_header_cut_by_the_capture() -> None:
    with pytest.raises(TruncatedError):
        decode_udp(udp(b""), 1, 8)
    pkt = decode(LinkType.RAW, ipv4(udp(b"abc"), 17)[:27])
    assert pkt.truncated and pkt.udp is None

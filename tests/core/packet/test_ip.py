"""Tests for wirecap.core.packet.ip: IPv4 and IPv6 headers against dpkt, and edge cases."""

from __future__ import annotations

import ipaddress
import struct

import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.core.formats.linktype import LinkType
from wirecap.core.packet import (
    IPProtocol,
    IPv4Header,
    IPv6Header,
    decode,
    decode_ipv4,
    decode_ipv6,
)
from wirecap.core.packet.ip import MAX_IPV6_EXTENSION_HEADERS
from wirecap.errors import FormatError, TruncatedError

V4_SRC = bytes([192, 0, 2, 1])
V4_DST = bytes([198, 51, 100, 7])
V6_SRC = ipaddress.IPv6Address("2001:db8::1").packed
V6_DST = ipaddress.IPv6Address("2001:db8::2").packed
# Protocols whose payload neither we nor dpkt try to decode, so random payloads stay inert.
INERT_PROTOCOLS = st.sampled_from([4, 41, 47, 89, 103, 112, 132, 200])


def ipv4(
    payload: bytes,
    *,
    protocol: int = 6,
    tos: int = 0,
    ident: int = 0x1234,
    df: bool = True,
    mf: bool = False,
    frag_units: int = 0,
    ttl: int = 64,
    options: bytes = b"",
    total: int | None = None,
    src: bytes = V4_SRC,
    dst: bytes = V4_DST,
) -> bytes:
    """An IPv4 packet built field by field (RFC 791 §3.1); checksum left 0."""
    ihl = 5 + len(options) // 4
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | frag_units
    length = ihl * 4 + len(payload) if total is None else total
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, tos, length, ident, flags, ttl, protocol, 0, src, dst
    )
    return head + options + payload


def ipv6(payload: bytes, next_header: int, *, plen: int | None = None, tc: int = 0) -> bytes:
    """An IPv6 packet (RFC 8200 §3); ``payload`` includes any extension headers."""
    length = len(payload) if plen is None else plen
    first = (6 << 28) | (tc << 20) | 0x12345
    return struct.pack("!IHBB16s16s", first, length, next_header, 64, V6_SRC, V6_DST) + payload


def tcp_syn(sport: int = 40000, dport: int = 443) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)


def ext(next_header: int, units: int) -> bytes:
    """A generic extension header (RFC 8200 §4.3 layout) of (units + 1) * 8 bytes, PadN-filled."""
    size = (units + 1) * 8
    return bytes([next_header, units, 1, size - 4]) + bytes(size - 4)


def fragment(next_header: int, offset_bytes: int, more: bool, ident: int) -> bytes:
    """RFC 8200 §4.5 Fragment header."""
    return struct.pack("!BxHI", next_header, offset_bytes | int(more), ident)


def ah(next_header: int, icv_words: int) -> bytes:
    """RFC 4302 §2 AH: Payload Len is the length in 4-octet words minus 2."""
    words = 3 + icv_words
    return (
        bytes([next_header, words - 2, 0, 0]) + struct.pack("!II", 0x100, 1) + bytes(4 * icv_words)
    )


# --- IPv4 --------------------------------------------------------------------------------


@given(
    tos=st.integers(0, 255),
    ident=st.integers(0, 0xFFFF),
    df=st.booleans(),
    mf=st.booleans(),
    frag_units=st.integers(0, 0x1FFF),
    ttl=st.integers(0, 255),
    protocol=INERT_PROTOCOLS,
    option_words=st.integers(0, 10),
    src=st.binary(min_size=4, max_size=4),
    dst=st.binary(min_size=4, max_size=4),
    payload=st.binary(max_size=64),
)
def test_ipv4_fields_match_dpkt(
    tos: int,
    ident: int,
    df: bool,
    mf: bool,
    frag_units: int,
    ttl: int,
    protocol: int,
    option_words: int,
    src: bytes,
    dst: bytes,
    payload: bytes,
) -> None:
    options = b"\x01" * (4 * option_words)  # NOP options
    packet = ipv4(
        payload,
        protocol=protocol,
        tos=tos,
        ident=ident,
        df=df,
        mf=mf,
        frag_units=frag_units,
        ttl=ttl,
        options=options,
        src=src,
        dst=dst,
    )
    ours = decode_ipv4(packet)
    ref = dpkt.ip.IP(packet)
    assert ours.header_length == ref.hl * 4
    assert ours.tos == ref.tos
    assert ours.total_length == ref.len
    assert ours.ident == ref.id
    assert ours.dont_fragment == bool(ref.df)
    assert ours.more_fragments == bool(ref.mf)
    assert ours.fragment_offset == ref.offset * 8  # dpkt gives the raw 8-octet units
    assert ours.ttl == ref.ttl
    assert ours.protocol == ref.p
    assert ours.checksum == ref.sum
    assert (ours.src, ours.dst) == (ref.src, ref.dst)
    # dpkt may parse the payload into a protocol object whose len() differs
    # (VRRP pads to 8): compare against its IP length fields instead.
    assert ours.upper_layer_length == ref.len - ref.hl * 4 == len(payload)
    assert ours.is_fragment == (mf or frag_units != 0)
    assert ours.dscp == tos >> 2 and ours.ecn == tos & 3


def test_ipv4_addresses_and_version() -> None:
    ip = decode_ipv4(ipv4(tcp_syn()))
    assert ip.version == 4
    assert ip.src_ip == ipaddress.IPv4Address("192.0.2.1")
    assert ip.dst_ip == ipaddress.IPv4Address("198.51.100.7")


def test_ipv4_at_an_offset_in_the_frame() -> None:
    frame = bytes(14) + ipv4(tcp_syn())
    assert decode_ipv4(frame, 14).offset == 14


def test_ipv4_ethernet_padding_is_not_payload() -> None:
    # A 40-byte SYN padded to Ethernet's 60-byte minimum (IEEE 802.3 §3.2.8).
    frame = bytes(12) + b"\x08\x00" + ipv4(tcp_syn()) + b"\x00" * 6
    pkt = decode(LinkType.ETHERNET, frame)
    assert pkt.ip is not None and pkt.ip.upper_layer_length == 20
    assert pkt.tcp is not None and pkt.tcp.payload_length == 0
    assert pkt.payload == b""


def test_ipv4_total_length_zero_uses_frame_or_wire_length() -> None:
    # Segmentation offload: the sender's capture holds a super-packet with Total Length 0.
    packet = ipv4(tcp_syn() + b"x" * 100, total=0)
    assert decode_ipv4(packet).upper_layer_length == 120
    assert decode_ipv4(packet[:60], wire_length=70000).upper_layer_length == 70000 - 20
    pkt = decode(LinkType.RAW, packet[:60], orig_len=70000)
    assert pkt.tcp is not None and pkt.tcp.payload_length == 70000 - 40


def test_ipv4_later_fragment_has_no_transport() -> None:
    pkt = decode(LinkType.RAW, ipv4(b"\xff" * 32, mf=True, frag_units=185, df=False))
    assert pkt.ip is not None and pkt.ip.is_fragment
    assert pkt.ip.fragment_offset == 1480
    assert pkt.transport is None and not pkt.truncated and pkt.malformed is None
    assert pkt.payload == b"\xff" * 32


def test_ipv4_first_fragment_has_transport() -> None:
    pkt = decode(LinkType.RAW, ipv4(tcp_syn() + b"d" * 20, mf=True, df=False))
    assert pkt.ip is not None and pkt.ip.is_fragment and pkt.ip.fragment_offset == 0
    assert pkt.tcp is not None and pkt.tcp.payload_length == 20


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x60" + ipv4(tcp_syn())[1:], "version 6"),
        (b"\x44" + ipv4(tcp_syn())[1:], "IHL of 16"),
        (ipv4(tcp_syn(), total=19), "Total Length 19"),
    ],
)
def test_ipv4_impossible_fields(packet: bytes, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        decode_ipv4(packet)
    pkt = decode(LinkType.ETHERNET, bytes(12) + b"\x08\x00" + packet)
    assert pkt.ip is None and pkt.link is not None
    assert pkt.malformed is not None and reason in pkt.malformed
    assert not pkt.truncated


def test_ipv4_truncated_header() -> None:
    packet = ipv4(tcp_syn())
    with pytest.raises(TruncatedError):
        decode_ipv4(packet[:19])
    pkt = decode(LinkType.RAW, packet[:19])
    assert pkt.truncated and pkt.link is not None and pkt.ip is None


def test_ipv4_options_cut_by_the_capture() -> None:
    packet = ipv4(tcp_syn(), options=b"\x01" * 8)
    pkt = decode(LinkType.RAW, packet[:24])
    assert pkt.ip is not None and pkt.ip.header_length == 28
    assert pkt.truncated and pkt.transport is None


def test_ipv4_unknown_protocol_payload() -> None:
    pkt = decode(LinkType.RAW, ipv4(b"gre-ish", protocol=47))
    assert pkt.ip is not None and pkt.transport is None and not pkt.truncated
    assert pkt.payload == b"gre-ish"


def test_ipv4_protocol_58_is_not_icmpv6() -> None:
    pkt = decode(LinkType.RAW, ipv4(bytes(16), protocol=58))
    assert pkt.transport is None


# --- IPv6 --------------------------------------------------------------------------------


@given(
    tc=st.integers(0, 255),
    flow=st.integers(0, 0xFFFFF),
    hlim=st.integers(0, 255),
    nxt=INERT_PROTOCOLS,
    src=st.binary(min_size=16, max_size=16),
    dst=st.binary(min_size=16, max_size=16),
    payload=st.binary(max_size=64),
)
def test_ipv6_fields_match_dpkt(
    tc: int, flow: int, hlim: int, nxt: int, src: bytes, dst: bytes, payload: bytes
) -> None:
    first = (6 << 28) | (tc << 20) | flow
    packet = struct.pack("!IHBB16s16s", first, len(payload), nxt, hlim, src, dst) + payload
    ours = decode_ipv6(packet)
    ref = dpkt.ip6.IP6(packet)
    assert (ours.traffic_class, ours.flow_label) == (ref.fc, ref.flow)
    assert ours.payload_length == ref.plen
    assert ours.next_header == ref.nxt == ours.protocol
    assert ours.hop_limit == ref.hlim == ours.ttl
    assert (ours.src, ours.dst) == (ref.src, ref.dst)
    assert ours.header_length == 40
    assert ours.upper_layer_length == len(payload)
    assert ours.extension_headers == ()
    assert not ours.is_fragment and ours.ident is None
    assert ours.dscp == tc >> 2 and ours.ecn == tc & 3


def test_ipv6_addresses_and_version() -> None:
    ip = decode_ipv6(ipv6(tcp_syn(), 6))
    assert ip.version == 6
    assert ip.src_ip == ipaddress.IPv6Address("2001:db8::1")
    assert ip.dst_ip == ipaddress.IPv6Address("2001:db8::2")
    assert ip.dont_fragment is True


def test_ipv6_extension_chain_matches_dpkt() -> None:
    chain = (
        ext(IPProtocol.IPV6_OPTS, 0)  # Hop-by-Hop, 8 bytes
        + ext(IPProtocol.IPV6_ROUTE, 1)  # Destination Options, 16 bytes
        + ext(IPProtocol.IPV6_FRAG, 2)  # Routing, 24 bytes
        + fragment(IPProtocol.TCP, 0, True, 0xCAFE)  # first fragment
    )
    packet = ipv6(chain + tcp_syn() + b"data", IPProtocol.HOPOPT)
    ours = decode_ipv6(packet)
    ref = dpkt.ip6.IP6(packet)
    assert ours.protocol == ref.p == IPProtocol.TCP
    assert ours.extension_headers == (0, 60, 43, 44)
    assert ours.header_length == 40 + 8 + 16 + 24 + 8
    assert ours.upper_layer_length == 24
    assert ours.ident == ref.extension_hdrs[44].id == 0xCAFE
    assert ours.fragment_offset == ref.extension_hdrs[44].frag_off * 8 == 0
    assert ours.more_fragments is bool(ref.extension_hdrs[44].m_flag) is True
    assert ours.is_fragment
    pkt = decode(LinkType.RAW, packet)
    assert pkt.tcp is not None and isinstance(ref.data, dpkt.tcp.TCP)
    assert (pkt.tcp.sport, pkt.tcp.dport) == (ref.data.sport, ref.data.dport)
    assert pkt.tcp.payload_length == 4


def test_ipv6_authentication_header_length_in_words() -> None:
    packet = ipv6(ah(IPProtocol.UDP, 3) + struct.pack("!HHHH", 1, 2, 8, 0), IPProtocol.AH)
    ours = decode_ipv6(packet)
    ref = dpkt.ip6.IP6(packet)
    assert ours.header_length == 40 + 24
    assert ours.protocol == ref.p == IPProtocol.UDP
    pkt = decode(LinkType.RAW, packet)
    assert pkt.udp is not None and pkt.udp.dport == 2


def test_ipv6_later_fragment_after_hop_by_hop() -> None:
    chain = ext(IPProtocol.IPV6_FRAG, 0) + fragment(IPProtocol.TCP, 1448, False, 7)
    packet = ipv6(chain + tcp_syn(), IPProtocol.HOPOPT)
    pkt = decode(LinkType.RAW, packet)
    assert pkt.ip is not None and pkt.ip.fragment_offset == 1448
    assert pkt.ip.protocol == IPProtocol.TCP
    assert pkt.transport is None and not pkt.truncated
    # dpkt is wrong here: it only skips later fragments when the Fragment header comes
    # first, so it decodes the middle of this datagram as a TCP header.
    assert isinstance(dpkt.ip6.IP6(packet).data, dpkt.tcp.TCP)


def test_ipv6_later_fragment_whose_next_header_is_an_extension() -> None:
    # The fragmentable part may start with Destination Options; a later fragment
    # holds none of it, so this is neither truncation nor a transport header.
    packet = ipv6(fragment(IPProtocol.IPV6_OPTS, 8, True, 1) + bytes(16), IPProtocol.IPV6_FRAG)
    pkt = decode(LinkType.RAW, packet)
    assert pkt.ip is not None and pkt.ip.protocol == IPProtocol.IPV6_OPTS
    assert pkt.transport is None and not pkt.truncated and pkt.malformed is None


def test_ipv6_esp_ends_the_walk() -> None:
    packet = ipv6(struct.pack("!II", 0x1000, 1) + bytes(32), IPProtocol.ESP)
    pkt = decode(LinkType.RAW, packet)
    assert pkt.ip is not None and pkt.ip.protocol == IPProtocol.ESP
    assert pkt.transport is None and not pkt.truncated


def test_ipv6_no_next_header() -> None:
    pkt = decode(LinkType.RAW, ipv6(ext(IPProtocol.IPV6_NONXT, 0), IPProtocol.IPV6_OPTS))
    assert pkt.ip is not None and pkt.ip.protocol == IPProtocol.IPV6_NONXT
    assert pkt.transport is None and not pkt.truncated


@pytest.mark.parametrize("cut", [41, 47, 49, 55])
def test_ipv6_chain_cut_by_the_capture(cut: int) -> None:
    chain = ext(IPProtocol.IPV6_OPTS, 0) + ext(IPProtocol.TCP, 1)
    packet = ipv6(chain + tcp_syn(), IPProtocol.HOPOPT)
    pkt = decode(LinkType.RAW, packet[:cut])
    assert pkt.truncated and pkt.transport is None
    assert isinstance(pkt.ip, IPv6Header)
    assert pkt.ip.src == V6_SRC
    assert pkt.ip.protocol in (IPProtocol.HOPOPT, IPProtocol.IPV6_OPTS, IPProtocol.TCP)


def test_ipv6_fragment_header_cut_by_the_capture() -> None:
    packet = ipv6(fragment(IPProtocol.TCP, 0, True, 1) + tcp_syn(), IPProtocol.IPV6_FRAG)
    pkt = decode(LinkType.RAW, packet[:45])
    assert pkt.truncated and isinstance(pkt.ip, IPv6Header)
    assert pkt.ip.protocol == IPProtocol.IPV6_FRAG and pkt.ip.ident is None


def test_ipv6_too_many_extension_headers() -> None:
    count = MAX_IPV6_EXTENSION_HEADERS + 1
    chain = b"".join(ext(IPProtocol.IPV6_OPTS, 0) for _ in range(count - 1))
    packet = ipv6(chain + ext(IPProtocol.TCP, 0) + tcp_syn(), IPProtocol.HOPOPT)
    with pytest.raises(FormatError, match="more than"):
        decode_ipv6(packet)
    pkt = decode(LinkType.RAW, packet)
    assert pkt.ip is None and pkt.malformed is not None


def test_ipv6_extensions_longer_than_payload_length() -> None:
    packet = ipv6(ext(IPProtocol.TCP, 3) + tcp_syn(), IPProtocol.HOPOPT, plen=16)
    with pytest.raises(FormatError, match="exceed Payload Length"):
        decode_ipv6(packet)


def test_ipv6_payload_length_zero_uses_frame_or_wire_length() -> None:
    packet = ipv6(tcp_syn() + b"x" * 30, IPProtocol.TCP, plen=0)
    assert decode_ipv6(packet).upper_layer_length == 50
    assert decode_ipv6(packet, wire_length=100000).upper_layer_length == 100000 - 40


def test_ipv6_wrong_version() -> None:
    packet = b"\x40" + ipv6(tcp_syn(), 6)[1:]
    with pytest.raises(FormatError, match="version 4"):
        decode_ipv6(packet)
    pkt = decode(LinkType.ETHERNET, bytes(12) + b"\x86\xdd" + packet)
    assert pkt.malformed is not None and pkt.ip is None


def test_ipv6_truncated_fixed_header() -> None:
    with pytest.raises(TruncatedError):
        decode_ipv6(ipv6(b"", 59)[:39])


def test_headers_are_immutable_named_tuples() -> None:
    ip4 = decode_ipv4(ipv4(tcp_syn()))
    ip6 = decode_ipv6(ipv6(tcp_syn(), 6))
    assert isinstance(ip4, IPv4Header) and isinstance(ip6, IPv6Header)
    with pytest.raises(AttributeError):
        ip4.ttl = 1  # type: ignore[misc]
    assert ip4._replace(ttl=1).ttl == 1

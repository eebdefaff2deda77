"""Tests for wirecap.core.packet.icmp: ICMP/ICMPv6 errors, MTUs and quotes, against dpkt."""

from __future__ import annotations

import ipaddress
import struct

import dpkt
import pytest

from wirecap.core.formats.linktype import LinkType
from wirecap.core.packet import (
    Decoded,
    ICMPHeader,
    ICMPType,
    ICMPUnreachableCode,
    ICMPv6Header,
    ICMPv6Type,
    IPv4Header,
    IPv6Header,
    TCPHeader,
    UDPHeader,
    decode,
    decode_icmp,
)
from wirecap.errors import FormatError, TruncatedError

CLIENT = ipaddress.IPv4Address("10.201.0.2").packed
ROUTER = ipaddress.IPv4Address("10.201.0.1").packed
ORIGIN = ipaddress.IPv4Address("10.202.0.2").packed
CLIENT6 = ipaddress.IPv6Address("fd00:201::2").packed
ROUTER6 = ipaddress.IPv6Address("fd00:201::1").packed
ORIGIN6 = ipaddress.IPv6Address("fd00:202::2").packed
MAC = bytes(12)
#: RFC 1812 §4.3.2.3: a router quotes as much as fits in a 576-byte datagram.
ICMPV4_QUOTE_MAX = 576 - 20 - 8
#: RFC 4443 §2.4 (c): as much as fits in the IPv6 minimum MTU.
ICMPV6_QUOTE_MAX = 1280 - 40 - 8


def ethernet(packet: bytes, ethertype: int = 0x0800) -> bytes:
    return MAC + struct.pack("!H", ethertype) + packet


def big_tcp_segment() -> bytes:
    """A full-size DF segment from client to origin, as PMTUD tests send (1500-byte IP)."""
    tcp = dpkt.tcp.TCP(sport=41000, dport=8080, seq=0x10000000, ack=0x20000000, flags=0x18, win=502)
    tcp.opts = struct.pack("!BBBBII", 1, 1, 8, 10, 111, 222)
    tcp.off = 8
    tcp.data = b"u" * (1500 - 20 - 32)
    ip = dpkt.ip.IP(src=CLIENT, dst=ORIGIN, p=6, ttl=63, id=77, df=1, data=tcp)
    return bytes(ip)


def big_tcp_segment6() -> bytes:
    tcp = struct.pack("!HHIIBBHHH", 41000, 8080, 0x10000000, 0x20000000, 5 << 4, 0x18, 502, 0, 0)
    payload = tcp + b"u" * (1500 - 40 - 20)
    head = struct.pack("!IHBB16s16s", 6 << 28, len(payload), 6, 63, CLIENT6, ORIGIN6)
    return head + payload


def icmp4(icmp: dpkt.icmp.ICMP) -> bytes:
    return bytes(dpkt.ip.IP(src=ROUTER, dst=CLIENT, p=1, ttl=64, data=icmp))


def icmp6(message: bytes) -> bytes:
    head = struct.pack("!IHBB16s16s", 6 << 28, len(message), 58, 64, ROUTER6, CLIENT6)
    return head + message


def frag_needed(quote: bytes, mtu: int = 1280) -> bytes:
    unreach = dpkt.icmp.ICMP.Unreach(mtu=mtu, data=quote)
    return icmp4(dpkt.icmp.ICMP(type=3, code=4, data=unreach))


def decoded_icmp(frame: bytes) -> tuple[Decoded, ICMPHeader]:
    pkt = decode(LinkType.ETHERNET, frame)
    assert pkt.icmp is not None, pkt
    return pkt, pkt.icmp


# --- ICMPv4 ------------------------------------------------------------------------------


def test_frag_needed_with_embedded_tcp_matches_dpkt() -> None:
    original = big_tcp_segment()
    frame = ethernet(frag_needed(original[:ICMPV4_QUOTE_MAX]))
    pkt, icmp = decoded_icmp(frame)
    ref = dpkt.ethernet.Ethernet(frame).data.data
    assert isinstance(ref, dpkt.icmp.ICMP)
    assert (icmp.type, icmp.code, icmp.checksum) == (ref.type, ref.code, ref.sum)
    assert icmp.type == ICMPType.DESTINATION_UNREACHABLE
    assert icmp.code == ICMPUnreachableCode.FRAGMENTATION_NEEDED
    assert icmp.is_error
    assert icmp.mtu == ref.data.mtu == 1280
    assert icmp.ident is None and icmp.sequence is None

    quote = icmp.quote
    assert quote is not None and not quote.truncated and quote.malformed is None
    inner_ref = ref.data.data
    assert isinstance(inner_ref, dpkt.ip.IP)
    assert isinstance(quote.ip, IPv4Header)
    assert (quote.ip.src, quote.ip.dst) == (inner_ref.src, inner_ref.dst)
    assert quote.ip.total_length == inner_ref.len == 1500
    assert quote.ip.dont_fragment and quote.ip.ident == inner_ref.id == 77
    assert quote.ip.ttl == inner_ref.ttl
    assert isinstance(quote.transport, TCPHeader)
    tcp_ref = inner_ref.data
    assert isinstance(tcp_ref, dpkt.tcp.TCP)
    assert (quote.transport.sport, quote.transport.dport) == (tcp_ref.sport, tcp_ref.dport)
    assert (quote.transport.seq, quote.transport.ack) == (tcp_ref.seq, tcp_ref.ack)
    assert quote.transport.options.timestamps == (111, 222)
    # The size of the segment that did not fit, from the quoted lengths: dpkt can only
    # count the quoted bytes (548 - 52), which says nothing about the original.
    assert quote.transport.payload_length == 1500 - 52
    assert len(tcp_ref.data) == ICMPV4_QUOTE_MAX - 52
    assert (quote.sport, quote.dport, quote.seq) == (41000, 8080, 0x10000000)

    # The error ties back to the connection that sent the big segment.
    sent = decode(LinkType.ETHERNET, ethernet(original))
    assert quote.five_tuple is not None
    assert quote.five_tuple == sent.five_tuple
    assert pkt.five_tuple is None  # ICMP itself has no ports


def test_frag_needed_quoting_only_64_bits_of_tcp() -> None:
    # RFC 792's minimum quote: the IP header and 8 bytes, i.e. ports and sequence number.
    original = big_tcp_segment()
    _, icmp = decoded_icmp(ethernet(frag_needed(original[:28], mtu=1400)))
    assert icmp.mtu == 1400
    quote = icmp.quote
    assert quote is not None
    assert quote.truncated and quote.transport is None and quote.malformed is None
    assert (quote.sport, quote.dport, quote.seq) == (41000, 8080, 0x10000000)
    sent = decode(LinkType.RAW, original)
    assert quote.five_tuple is not None
    assert quote.five_tuple == sent.five_tuple
    assert quote.five_tuple.reversed() == (ORIGIN, CLIENT, 6, 8080, 41000)


def test_quote_with_ports_only() -> None:
    _, icmp = decoded_icmp(ethernet(frag_needed(big_tcp_segment()[:25])))
    quote = icmp.quote
    assert quote is not None and quote.truncated
    assert (quote.sport, quote.dport, quote.seq) == (41000, 8080, None)


def test_rfc1191_old_router_says_mtu_zero() -> None:
    _, icmp = decoded_icmp(ethernet(frag_needed(big_tcp_segment()[:28], mtu=0)))
    assert icmp.mtu == 0


def test_port_unreachable_with_embedded_udp() -> None:
    udp = dpkt.udp.UDP(sport=5353, dport=53, data=b"q" * 30)
    udp.ulen = 38
    original = bytes(dpkt.ip.IP(src=CLIENT, dst=ORIGIN, p=17, data=udp))
    unreach = dpkt.icmp.ICMP.Unreach(data=original[:28])
    frame = ethernet(icmp4(dpkt.icmp.ICMP(type=3, code=3, data=unreach)))
    _, icmp = decoded_icmp(frame)
    assert icmp.code == ICMPUnreachableCode.PORT
    assert icmp.mtu is None
    quote = icmp.quote
    assert quote is not None and not quote.truncated
    assert isinstance(quote.transport, UDPHeader)
    assert quote.transport.length == 38 and quote.transport.payload_length == 30
    assert quote.five_tuple == (CLIENT, ORIGIN, 17, 5353, 53)
    assert quote.seq is None


def test_time_exceeded_quoting_an_echo_request() -> None:
    echo = dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=0x4242, seq=9, data=b"x" * 56))
    original = bytes(dpkt.ip.IP(src=CLIENT, dst=ORIGIN, p=1, ttl=1, data=echo))
    exceeded = dpkt.icmp.ICMP.TimeExceed(data=original[:28])
    _, icmp = decoded_icmp(ethernet(icmp4(dpkt.icmp.ICMP(type=11, code=0, data=exceeded))))
    quote = icmp.quote
    assert quote is not None and isinstance(quote.transport, ICMPHeader)
    assert quote.transport.type == ICMPType.ECHO_REQUEST
    assert (quote.transport.ident, quote.transport.sequence) == (0x4242, 9)
    assert quote.five_tuple is None and not quote.truncated


def test_echo_matches_dpkt() -> None:
    echo = dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=777, seq=3, data=b"ping" * 14))
    frame = ethernet(icmp4(echo))
    pkt, icmp = decoded_icmp(frame)
    ref = dpkt.ethernet.Ethernet(frame).data.data
    assert (icmp.type, icmp.code, icmp.checksum) == (ref.type, ref.code, ref.sum)
    assert (icmp.ident, icmp.sequence) == (ref.data.id, ref.data.seq) == (777, 3)
    assert not icmp.is_error and icmp.quote is None and icmp.mtu is None
    assert icmp.body == pkt.payload == b"ping" * 14


def test_icmp_body_excludes_ethernet_padding() -> None:
    echo = dpkt.icmp.ICMP(type=0, data=dpkt.icmp.ICMP.Echo(id=1, seq=1, data=b""))
    pkt, icmp = decoded_icmp(ethernet(icmp4(echo)) + bytes(18))
    assert icmp.body == b"" and pkt.payload == b""


def test_quote_is_decoded_lazily_from_the_body() -> None:
    _, icmp = decoded_icmp(ethernet(frag_needed(big_tcp_segment()[:48])))
    assert icmp.body == big_tcp_segment()[:48]
    assert icmp.quote == icmp.quote  # a pure function of the body


def test_quote_that_is_not_ipv4() -> None:
    _, icmp = decoded_icmp(ethernet(frag_needed(big_tcp_segment6()[:48])))
    quote = icmp.quote
    assert quote is not None and quote.ip is None
    assert quote.malformed is not None and "version 6" in quote.malformed


def test_empty_quote_is_truncated() -> None:
    _, icmp = decoded_icmp(ethernet(frag_needed(b"")))
    quote = icmp.quote
    assert quote is not None and quote.truncated and quote.ip is None
    assert quote.five_tuple is None


def test_icmp_header_cut_by_the_capture() -> None:
    frame = ethernet(icmp4(dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=1, seq=1))))
    pkt = decode(LinkType.ETHERNET, frame[: 14 + 20 + 7])
    assert pkt.truncated and pkt.ip is not None and pkt.transport is None
    with pytest.raises(TruncatedError):
        decode_icmp(frame[:41], 34, 8)


def test_icmp_shorter_than_its_header_per_ip() -> None:
    packet = icmp4(dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(id=1, seq=1)))
    shrunk = packet[:2] + struct.pack("!H", 24) + packet[4:]
    pkt = decode(LinkType.RAW, shrunk)
    assert pkt.malformed is not None and "below its 8-byte header" in pkt.malformed
    with pytest.raises(FormatError):
        decode_icmp(packet, 20, 4)


# --- ICMPv6 ------------------------------------------------------------------------------


def test_packet_too_big_with_embedded_tcp_matches_dpkt() -> None:
    original = big_tcp_segment6()
    too_big = dpkt.icmp6.ICMP6(
        type=2, code=0, data=dpkt.icmp6.ICMP6.TooBig(mtu=1280, data=original[:ICMPV6_QUOTE_MAX])
    )
    frame = ethernet(icmp6(bytes(too_big)), 0x86DD)
    pkt = decode(LinkType.ETHERNET, frame)
    icmp = pkt.icmp6
    assert isinstance(icmp, ICMPv6Header) and pkt.icmp is None
    ref = dpkt.ethernet.Ethernet(frame).data.data
    assert isinstance(ref, dpkt.icmp6.ICMP6)
    assert (icmp.type, icmp.code, icmp.checksum) == (ref.type, ref.code, ref.sum)
    assert icmp.type == ICMPv6Type.PACKET_TOO_BIG and icmp.is_error
    assert icmp.mtu == ref.data.mtu == 1280

    quote = icmp.quote
    assert quote is not None and not quote.truncated and quote.malformed is None
    inner_ref = ref.data.data
    assert isinstance(inner_ref, dpkt.ip6.IP6)
    assert isinstance(quote.ip, IPv6Header)
    assert (quote.ip.src, quote.ip.dst) == (inner_ref.src, inner_ref.dst)
    assert quote.ip.payload_length == inner_ref.plen == 1460
    assert isinstance(quote.transport, TCPHeader)
    tcp_ref = inner_ref.data
    assert isinstance(tcp_ref, dpkt.tcp.TCP)
    assert (quote.transport.sport, quote.transport.dport) == (tcp_ref.sport, tcp_ref.dport)
    assert quote.transport.seq == tcp_ref.seq
    assert quote.transport.payload_length == 1440
    sent = decode(LinkType.RAW, original)
    assert quote.five_tuple == sent.five_tuple == (CLIENT6, ORIGIN6, 6, 41000, 8080)


def test_packet_too_big_cut_by_snaplen_still_names_the_connection() -> None:
    original = big_tcp_segment6()
    message = struct.pack("!BBHI", 2, 0, 0, 1400) + original[:ICMPV6_QUOTE_MAX]
    frame = ethernet(icmp6(message), 0x86DD)[: 14 + 40 + 8 + 40 + 8]
    pkt = decode(LinkType.ETHERNET, frame)
    assert pkt.icmp6 is not None and not pkt.truncated
    assert pkt.icmp6.mtu == 1400
    quote = pkt.icmp6.quote
    assert quote is not None and quote.truncated and quote.transport is None
    assert quote.five_tuple == (CLIENT6, ORIGIN6, 6, 41000, 8080)
    assert quote.seq == 0x10000000


def test_icmpv6_echo_matches_dpkt() -> None:
    echo = dpkt.icmp6.ICMP6(type=128, data=dpkt.icmp6.ICMP6.Echo(id=5, seq=6, data=b"abc"))
    frame = ethernet(icmp6(bytes(echo)), 0x86DD)
    pkt = decode(LinkType.ETHERNET, frame)
    icmp = pkt.icmp6
    assert icmp is not None
    ref = dpkt.ethernet.Ethernet(frame).data.data
    assert (icmp.ident, icmp.sequence) == (ref.data.id, ref.data.seq) == (5, 6)
    assert not icmp.is_error and icmp.quote is None and icmp.mtu is None
    assert pkt.payload == icmp.body == b"abc"


def test_icmpv6_unreachable_with_udp_quote() -> None:
    udp = struct.pack("!HHHH", 5353, 53, 12, 0) + b"abcd"
    original = struct.pack("!IHBB16s16s", 6 << 28, 12, 17, 64, CLIENT6, ORIGIN6) + udp
    message = struct.pack("!BBHI", 1, 4, 0, 0) + original
    pkt = decode(LinkType.RAW, icmp6(message))
    icmp = pkt.icmp6
    assert icmp is not None and icmp.mtu is None and icmp.ident is None
    quote = icmp.quote
    assert quote is not None and isinstance(quote.transport, UDPHeader)
    assert quote.five_tuple == (CLIENT6, ORIGIN6, 17, 5353, 53)


def test_icmpv6_informational_has_no_quote() -> None:
    solicitation = struct.pack("!BBHI", 135, 0, 0, 0) + ROUTER6
    icmp = decode(LinkType.RAW, icmp6(solicitation)).icmp6
    assert icmp is not None and not icmp.is_error and icmp.quote is None


def test_icmpv6_quote_that_is_not_ipv6() -> None:
    message = struct.pack("!BBHI", 2, 0, 0, 1280) + big_tcp_segment()[:60]
    icmp = decode(LinkType.RAW, icmp6(message)).icmp6
    assert icmp is not None
    quote = icmp.quote
    assert quote is not None and quote.ip is None and quote.malformed is not None

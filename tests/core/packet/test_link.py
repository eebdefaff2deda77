"""Tests for wirecap.core.packet.link: every link type, built by hand and checked against dpkt."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import dpkt
import pytest

from wirecap.core.formats.linktype import LinkType
from wirecap.core.packet import (
    SUPPORTED_LINKTYPES,
    EtherType,
    LinkHeader,
    SllPacketType,
    VlanTag,
    decode,
    decode_link,
)
from wirecap.errors import FormatError, TruncatedError

SRC_MAC = bytes.fromhex("020000000001")
DST_MAC = bytes.fromhex("020000000002")


def ipv4_tcp() -> bytes:
    """A small IPv4/TCP packet, serialised by dpkt (which fills in lengths and checksums)."""
    tcp = dpkt.tcp.TCP(sport=40000, dport=443, seq=1000, ack=0, flags=dpkt.tcp.TH_SYN)
    ip = dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), p=6, ttl=64, data=tcp)
    return bytes(ip)


def ipv6_udp() -> bytes:
    udp = dpkt.udp.UDP(sport=5353, dport=53, data=b"query")
    udp.ulen = 8 + 5
    ip6 = dpkt.ip6.IP6(
        src=bytes.fromhex("fd00" + "00" * 13 + "01"),
        dst=bytes.fromhex("fd00" + "00" * 13 + "02"),
        nxt=17,
        hlim=64,
        plen=13,
        data=udp,
    )
    return bytes(ip6)


def ethernet(payload: bytes, ethertype: int, tags: Sequence[tuple[int, int]] = ()) -> bytes:
    """An Ethernet II frame; ``tags`` are (TPID, TCI) pairs, outermost first."""
    head = DST_MAC + SRC_MAC
    types = [tpid for tpid, _ in tags] + [ethertype]
    body = b"".join(
        struct.pack("!HH", tci, inner) for (_, tci), inner in zip(tags, types[1:], strict=True)
    )
    return head + struct.pack("!H", types[0]) + body + payload


def sll(payload: bytes, protocol: int, packet_type: int = 0, arphrd: int = 1) -> bytes:
    addr = SRC_MAC + b"\x00\x00"
    return struct.pack("!HHH8sH", packet_type, arphrd, 6, addr, protocol) + payload


def sll2(payload: bytes, protocol: int, ifindex: int = 3, packet_type: int = 4) -> bytes:
    addr = SRC_MAC + b"\x00\x00"
    return struct.pack("!HHiHBB8s", protocol, 0, ifindex, 1, packet_type, 6, addr) + payload


# --- Ethernet ---------------------------------------------------------------------------


def test_ethernet_fields_match_dpkt() -> None:
    frame = ethernet(ipv4_tcp(), EtherType.IPV4)
    ours = decode_link(LinkType.ETHERNET, frame)
    ref = dpkt.ethernet.Ethernet(frame)
    assert (ours.dst, ours.src, ours.ethertype) == (ref.dst, ref.src, ref.type)
    assert ours.length == 14
    assert ours.vlans == ()
    assert (ours.packet_type, ours.arphrd, ours.ifindex, ours.family) == (None,) * 4
    assert ours.outgoing is None
    assert decode(LinkType.ETHERNET, frame).ip is not None


def test_ethernet_one_vlan_tag_matches_dpkt() -> None:
    tci = (5 << 13) | 0x1000 | 100  # PCP 5, DEI set, VID 100
    frame = ethernet(ipv4_tcp(), EtherType.IPV4, [(EtherType.VLAN, tci)])
    ours = decode_link(LinkType.ETHERNET, frame)
    ref = dpkt.ethernet.Ethernet(frame)
    assert ours.length == 18
    assert ours.ethertype == EtherType.IPV4
    assert isinstance(ref.data, dpkt.ip.IP)
    assert [(t.vid, t.pcp, t.dei) for t in ours.vlans] == [
        (t.id, t.pri, bool(t.cfi)) for t in ref.vlan_tags
    ]
    assert ours.vlans == (VlanTag(EtherType.VLAN, tci),)
    pkt = decode(LinkType.ETHERNET, frame)
    assert pkt.tcp is not None and pkt.tcp.dport == 443


def test_ethernet_qinq_two_tags_match_dpkt() -> None:
    frame = ethernet(
        ipv6_udp(), EtherType.IPV6, [(EtherType.QINQ, 200), (EtherType.VLAN, (3 << 13) | 10)]
    )
    ours = decode_link(LinkType.ETHERNET, frame)
    ref = dpkt.ethernet.Ethernet(frame)
    assert ours.length == 22
    assert ours.ethertype == EtherType.IPV6
    assert [t.vid for t in ours.vlans] == [t.id for t in ref.vlan_tags] == [200, 10]
    assert [t.pcp for t in ours.vlans] == [t.pri for t in ref.vlan_tags] == [0, 3]
    assert [t.tpid for t in ours.vlans] == [EtherType.QINQ, EtherType.VLAN]
    pkt = decode(LinkType.ETHERNET, frame)
    assert pkt.udp is not None and pkt.udp.dport == 53


def test_ethernet_legacy_qinq_tpid_is_walked() -> None:
    frame = ethernet(ipv4_tcp(), EtherType.IPV4, [(EtherType.QINQ_LEGACY, 7), (EtherType.VLAN, 8)])
    link = decode_link(LinkType.ETHERNET, frame)
    assert [t.vid for t in link.vlans] == [7, 8]
    assert link.ethertype == EtherType.IPV4


def test_ethernet_third_vlan_tag_is_not_walked() -> None:
    tags = [(EtherType.QINQ, 1), (EtherType.VLAN, 2), (EtherType.VLAN, 3)]
    frame = ethernet(ipv4_tcp(), EtherType.IPV4, tags)
    pkt = decode(LinkType.ETHERNET, frame)
    assert pkt.link is not None
    assert len(pkt.link.vlans) == 2
    assert pkt.link.ethertype == EtherType.VLAN
    assert pkt.link.length == 22
    assert (pkt.ip, pkt.transport, pkt.truncated, pkt.malformed) == (None, None, False, None)


def test_ethernet_frame_cut_inside_vlan_tag_is_truncated() -> None:
    frame = ethernet(b"", EtherType.IPV4, [(EtherType.VLAN, 5)])[:16]
    with pytest.raises(TruncatedError):
        decode_link(LinkType.ETHERNET, frame)
    pkt = decode(LinkType.ETHERNET, frame)
    assert pkt.truncated and pkt.link is None


def test_ieee_802_3_length_field_is_not_a_protocol() -> None:
    llc = b"\x42\x42\x03" + b"\x00" * 35
    frame = DST_MAC + SRC_MAC + struct.pack("!H", len(llc)) + llc
    pkt = decode(LinkType.ETHERNET, frame)
    assert pkt.link is not None and pkt.link.ethertype == len(llc)
    assert pkt.ip is None and not pkt.truncated and pkt.malformed is None
    assert pkt.payload == llc


def test_arp_is_link_only() -> None:
    frame = ethernet(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 20, EtherType.ARP)
    pkt = decode(LinkType.ETHERNET, frame)
    assert pkt.link is not None and pkt.link.ethertype == EtherType.ARP
    assert pkt.ip is None and not pkt.truncated


def test_vlan_tag_properties() -> None:
    tag = VlanTag(EtherType.VLAN, (7 << 13) | 0x1000 | 4094)
    assert (tag.pcp, tag.dei, tag.vid) == (7, True, 4094)
    assert not VlanTag(EtherType.VLAN, 1).dei


# --- Linux cooked captures ---------------------------------------------------------------


def test_sll_fields_match_dpkt() -> None:
    frame = sll(ipv4_tcp(), EtherType.IPV4, packet_type=SllPacketType.OUTGOING, arphrd=1)
    ours = decode_link(LinkType.LINUX_SLL, frame)
    ref = dpkt.sll.SLL(frame)
    assert ours.length == 16
    assert ours.packet_type == ref.type == SllPacketType.OUTGOING
    assert ours.arphrd == ref.hrd == 1
    assert ours.src == ref.hdr[: ref.hlen] == SRC_MAC
    assert ours.ethertype == ref.ethtype == EtherType.IPV4
    assert ours.dst == b""
    assert ours.ifindex is None
    assert ours.outgoing is True
    pkt = decode(LinkType.LINUX_SLL, frame)
    assert pkt.tcp is not None and pkt.tcp.sport == 40000


def test_sll_incoming_and_long_address() -> None:
    # An address longer than 8 bytes keeps its first 8 (tcpdump.org LINKTYPE_LINUX_SLL).
    frame = struct.pack("!HHH8sH", 0, 32, 20, bytes(range(8)), EtherType.IPV4) + ipv4_tcp()
    link = decode_link(LinkType.LINUX_SLL, frame)
    assert link.src == bytes(range(8))
    assert link.packet_type == SllPacketType.HOST
    assert link.outgoing is False


def test_sll_netlink_protocol_is_not_an_ethertype() -> None:
    frame = struct.pack("!HHH8sH", 4, 824, 0, b"", 0x0800) + ipv4_tcp()
    pkt = decode(LinkType.LINUX_SLL, frame)
    assert pkt.link is not None and pkt.link.ethertype is None
    assert pkt.ip is None


def test_sll_with_vlan_tag_reinserted_by_libpcap() -> None:
    frame = sll(struct.pack("!HH", 42, EtherType.IPV4) + ipv4_tcp(), EtherType.VLAN)
    pkt = decode(LinkType.LINUX_SLL, frame)
    assert pkt.link is not None
    assert [t.vid for t in pkt.link.vlans] == [42]
    assert pkt.link.length == 20
    assert pkt.tcp is not None


def test_sll2_fields_match_dpkt() -> None:
    frame = sll2(ipv6_udp(), EtherType.IPV6, ifindex=7, packet_type=SllPacketType.OUTGOING)
    ours = decode_link(LinkType.LINUX_SLL2, frame)
    ref = dpkt.sll2.SLL2(frame)
    assert ours.length == 20
    assert ours.ethertype == ref.ethtype == EtherType.IPV6
    assert ours.ifindex == ref.intindex == 7
    assert ours.arphrd == ref.hrd
    assert ours.packet_type == ref.type == SllPacketType.OUTGOING
    assert ours.src == ref.hdr[: ref.hlen]
    pkt = decode(LinkType.LINUX_SLL2, frame)
    assert pkt.udp is not None and pkt.udp.sport == 5353


def test_sll2_dpkt_test_vector() -> None:
    # The vector from dpkt's own sll2 tests: ifindex 3, ARPHRD 1, to-us, 6-byte address.
    frame = bytes.fromhex(
        "0800 0000 00000003 0001 00 06 000bdb520e08f67f45000034 cc6c4000 40067408 82d9fa8e 82d9fa0d"
    )
    link = decode_link(LinkType.LINUX_SLL2, frame)
    assert (link.ifindex, link.arphrd, link.packet_type) == (3, 1, 0)
    assert link.src == bytes.fromhex("000bdb520e08")
    pkt = decode(LinkType.LINUX_SLL2, frame)
    assert pkt.ip is not None and pkt.ip.src_ip.compressed == "130.217.250.142"
    assert pkt.truncated  # the vector stops after the IP header


# --- RAW, NULL, LOOP ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("packet", "ethertype"),
    [(ipv4_tcp(), EtherType.IPV4), (ipv6_udp(), EtherType.IPV6), (b"\x50" + bytes(30), None)],
)
def test_raw_uses_the_version_nibble(packet: bytes, ethertype: int | None) -> None:
    link = decode_link(LinkType.RAW, packet)
    assert link.length == 0
    assert link.ethertype == ethertype


@pytest.mark.parametrize("family", [2, 10, 24, 28, 30])
@pytest.mark.parametrize("order", ["<", ">"])
def test_null_in_either_byte_order(family: int, order: str) -> None:
    payload = ipv4_tcp() if family == 2 else ipv6_udp()
    frame = struct.pack(order + "I", family) + payload
    link = decode_link(LinkType.NULL, frame)
    assert link.family == family
    assert link.length == 4
    assert link.ethertype == (EtherType.IPV4 if family == 2 else EtherType.IPV6)
    pkt = decode(LinkType.NULL, frame)
    assert pkt.transport is not None
    if family != 10:
        # dpkt's Loopback knows the BSD values only: Linux's AF_INET6 (10) falls through
        # to its Ethernet decoder, a dpkt gap; we follow the Linux value too.
        ref = dpkt.loopback.Loopback(frame)
        assert ref.family == family
        assert isinstance(ref.data, dpkt.ip.IP if family == 2 else dpkt.ip6.IP6)


def test_null_with_unknown_family() -> None:
    link = decode_link(LinkType.NULL, struct.pack("<I", 7) + ipv4_tcp())
    assert link.family == 7 and link.ethertype is None


@pytest.mark.parametrize("family", [2, 24])
def test_loop_is_network_byte_order(family: int) -> None:
    payload = ipv4_tcp() if family == 2 else ipv6_udp()
    link = decode_link(LinkType.LOOP, struct.pack("!I", family) + payload)
    assert link.family == family
    assert link.ethertype == (EtherType.IPV4 if family == 2 else EtherType.IPV6)
    # Host order is not accepted for LOOP: the spec fixes network order.
    swapped = decode_link(LinkType.LOOP, struct.pack("<I", family) + payload)
    assert swapped.ethertype is None


# --- short frames and unknown link types -------------------------------------------------


@pytest.mark.parametrize(
    ("linktype", "header"),
    [
        (LinkType.ETHERNET, 14),
        (LinkType.LINUX_SLL, 16),
        (LinkType.LINUX_SLL2, 20),
        (LinkType.NULL, 4),
        (LinkType.LOOP, 4),
        (LinkType.RAW, 1),
    ],
)
def test_frame_shorter_than_link_header(linktype: int, header: int) -> None:
    short = bytes(header - 1)
    with pytest.raises(TruncatedError):
        decode_link(linktype, short)
    pkt = decode(linktype, short)
    assert pkt.truncated
    assert pkt.link is None and pkt.ip is None and pkt.transport is None
    assert pkt.payload == b""


def test_unsupported_linktype_raises_format_error() -> None:
    assert 127 not in SUPPORTED_LINKTYPES
    with pytest.raises(FormatError, match="unsupported link type 127"):
        decode_link(127, bytes(64))
    with pytest.raises(FormatError):
        decode(127, bytes(64))


def test_supported_linktypes() -> None:
    assert set(LinkType) == SUPPORTED_LINKTYPES


def test_link_header_is_immutable() -> None:
    link = decode_link(LinkType.ETHERNET, ethernet(ipv4_tcp(), EtherType.IPV4))
    assert isinstance(link, LinkHeader)
    with pytest.raises(AttributeError):
        link.length = 0  # type: ignore[misc]

"""Frames built by hand for the guard's tests: Ethernet or SLL2, IPv4 or IPv6, TCP."""

from __future__ import annotations

import struct

V4_REMOTE = bytes([198, 51, 100, 7])
V4_LOCAL = bytes([192, 0, 2, 1])
V6_REMOTE = bytes.fromhex("20010db8000000000000000000000007")
V6_LOCAL = bytes.fromhex("20010db8000000000000000000000001")

SYN, ACK, FIN, ECE, CWR = 0x02, 0x10, 0x01, 0x40, 0x80


def tcp(sport: int = 40000, dport: int = 22, flags: int = SYN, seq: int = 1000) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 64240, 0, 0)


def ipv4(src: bytes, dst: bytes, payload: bytes, *, frag_offset: int = 0) -> bytes:
    return (
        struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, frag_offset // 8, 64, 6, 0, src, dst
        )
        + payload
    )


def ipv6(src: bytes, dst: bytes, payload: bytes, *, next_header: int = 6) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, 64, src, dst) + payload


def hop_by_hop(payload: bytes, next_header: int = 6) -> bytes:
    """A Hop-by-Hop Options header (8 bytes: PadN) in front of ``payload``."""
    return bytes([next_header, 0, 1, 4, 0, 0, 0, 0]) + payload


def fragment(payload: bytes, offset: int, next_header: int = 6, more: bool = False) -> bytes:
    return struct.pack("!BxHI", next_header, offset | int(more), 7) + payload


def ethernet(packet: bytes) -> bytes:
    ethertype = 0x0800 if packet[0] >> 4 == 4 else 0x86DD
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + packet


def sll2(packet: bytes, packet_type: int = 0) -> bytes:
    """LINKTYPE_LINUX_SLL2: packet type 0 to us, 4 outgoing."""
    ethertype = 0x0800 if packet[0] >> 4 == 4 else 0x86DD
    head = struct.pack("!HHIHBB8s", ethertype, 0, 2, 1, packet_type, 6, b"\x02" * 8)
    return head + packet


def syn_v4(
    dport: int = 22, flags: int = SYN, src: bytes = V4_REMOTE, sport: int = 40000, seq: int = 1000
) -> bytes:
    return ethernet(ipv4(src, V4_LOCAL, tcp(sport, dport, flags, seq)))


def syn_v6(dport: int = 22, flags: int = SYN, src: bytes = V6_REMOTE) -> bytes:
    return ethernet(ipv6(src, V6_LOCAL, tcp(40000, dport, flags)))

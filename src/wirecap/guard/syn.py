"""Inbound connection attempts: which captured frames are SYNs to this host.

A connection attempt is a TCP segment with SYN set and ACK clear (RFC 9293 §3.5);
every other flag bit may be set too: ECN setup sets ECE and CWR (RFC 3168 §6.1.1),
scanners add FIN, PSH or URG. SYN-ACKs are answers, never attempts.

Direction comes from the host's own addresses, read from the system: a SYN is
inbound when its destination is one of them and its source is not. A cooked
capture's "outgoing" packet type is honoured too. tcpcap instead skipped one
configured source address and so counted (and blocked) its own host's outbound
connections.

The capture filter keeps the kernel from copying anything else to user space;
:data:`CAPTURE_FILTER` explains what it can and cannot see.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from wirecap.core.packet import IPProtocol, SllPacketType, TCPHeader, decode
from wirecap.core.packet.ip import IPV6_EXTENSION_HEADERS

__all__ = [
    "CAPTURE_FILTER",
    "SYN_SNAPLEN",
    "LocalAddresses",
    "SynObserved",
    "classify",
    "format_address",
]

_SYN = 0x02
_ACK = 0x10
_OUTGOING = SllPacketType.OUTGOING.value
_TCP = IPProtocol.TCP.value

#: The IPv6 extension header numbers as one BPF alternative (``ip6[6]`` is Next Header).
_IPV6_EXTENSIONS_BPF = " or ".join(f"ip6[6] == {n}" for n in sorted(IPV6_EXTENSION_HEADERS))

#: BPF for the capture, in tcpdump's language.
#:
#: - IPv4: ``tcp[tcpflags]`` is libpcap's IPv4-only TCP accessor; it copes with IP
#:   options and skips non-first fragments.
#: - IPv6: libpcap's ``tcp[...]`` does not apply to IPv6, so the flags are read at a
#:   fixed offset: 40 bytes of IPv6 header plus 13 into TCP, valid when Next Header is
#:   TCP (no extension headers). A packet *with* extension headers cannot be walked in
#:   BPF, so every such packet goes to user space, where the decoder walks the chain
#:   (RFC 8200 §4); they are rare outside of ICMPv6 multicast listener reports. RFC 7112
#:   puts the TCP header in the first fragment, so nothing is missed.
#: - Not seen: VLAN-tagged frames on a trunk interface (capture on the VLAN's own
#:   interface, or on ``any``), and IP in IP tunnels, as with any outer-header filter.
CAPTURE_FILTER = (
    "(tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn)"
    " or (ip6 and ip6[6] == 6 and ip6[53] & 0x12 == 0x02)"
    f" or (ip6 and ({_IPV6_EXTENSIONS_BPF}))"
)

#: Bytes kept of each captured frame: a SLL2 header (20), an IPv6 header with a few
#: extension headers and a TCP header with options fit; the payload is never needed.
SYN_SNAPLEN = 256


class SynObserved(NamedTuple):
    """An inbound connection attempt: a fact, with the addresses packed as on the wire."""

    ts_ns: int
    #: 4 or 6.
    version: int
    src: bytes
    dst: bytes
    sport: int
    dport: int
    #: All TCP flag bits of the segment (SYN set, ACK clear, others as sent).
    flags: int
    seq: int


class LocalAddresses:
    """The host's own addresses, packed, for the direction test."""

    __slots__ = ("_addresses",)

    def __init__(self, addresses: Iterable[bytes | str] = ()) -> None:
        self._addresses = frozenset(
            a if isinstance(a, bytes) else ipaddress.ip_address(a).packed for a in addresses
        )

    def __contains__(self, address: object) -> bool:
        return address in self._addresses

    def __len__(self) -> int:
        return len(self._addresses)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._addresses)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalAddresses) and other._addresses == self._addresses

    def __hash__(self) -> int:
        return hash(self._addresses)

    def __repr__(self) -> str:
        shown = ", ".join(sorted(format_address(a) for a in self._addresses))
        return f"LocalAddresses({shown})"

    @property
    def packed(self) -> frozenset[bytes]:
        return self._addresses


def format_address(packed: bytes) -> str:
    """The text form of a packed IPv4 or IPv6 address (RFC 5952 for IPv6)."""
    return str(ipaddress.ip_address(packed))


def classify(linktype: int, data: bytes, ts_ns: int, local: LocalAddresses) -> SynObserved | None:
    """The connection attempt in one captured frame, or None if it holds none.

    Never raises for what the frame holds: truncated or malformed frames hold no
    attempt. The link type must be one of core.packet's ``SUPPORTED_LINKTYPES``.
    """
    decoded = decode(linktype, data)
    tcp = decoded.transport
    if not isinstance(tcp, TCPHeader):
        return None
    bits = int(tcp.flags)
    if bits & (_SYN | _ACK) != _SYN:
        return None
    link = decoded.link
    if link is not None and link.packet_type == _OUTGOING:
        return None
    ip = decoded.ip
    if ip is None or ip.protocol != _TCP:  # pragma: no cover - a TCP header implies both
        return None
    if ip.dst not in local or ip.src in local:
        return None
    return SynObserved(ts_ns, ip.version, ip.src, ip.dst, tcp.sport, tcp.dport, bits, tcp.seq)

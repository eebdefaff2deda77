"""Packet header decoding: from (link type, frame bytes) to the fields diagnostics use.

::

    pkt = decode(LinkType.ETHERNET, frame)
    tcp = pkt.tcp
    if tcp is not None and tcp.flags == TCPFlags.SYN:
        print(pkt.five_tuple, tcp.options.mss)

Modules, bottom up:

- ``link``: Ethernet (with up to two VLAN tags), Linux cooked v1/v2, RAW, NULL, LOOP.
- ``ip``: IPv4 (RFC 791) and IPv6 with its extension header chain (RFC 8200).
- ``transport``: TCP (RFC 9293) with options on demand (RFC 7323, RFC 2018); UDP (RFC 768).
- ``icmp``: ICMP (RFC 792, RFC 1191) and ICMPv6 (RFC 4443), quotes on demand.
- ``frame``: :func:`decode`, which runs them in order, and the :class:`Decoded` result.

:func:`decode` never raises for what a frame holds: a frame cut inside a header gives
``Decoded.truncated``, impossible header fields give ``Decoded.malformed``. The per-layer
``decode_*`` functions raise ``TruncatedError``/``FormatError`` instead.
"""

from wirecap.core.packet.frame import (
    Decoded,
    FiveTuple,
    IPHeader,
    Quoted,
    TransportHeader,
    decode,
    decode_quote,
)
from wirecap.core.packet.icmp import (
    ICMPHeader,
    ICMPType,
    ICMPUnreachableCode,
    ICMPv6Header,
    ICMPv6Type,
    decode_icmp,
    decode_icmpv6,
)
from wirecap.core.packet.ip import (
    IPProtocol,
    IPv4Header,
    IPv6Header,
    decode_ipv4,
    decode_ipv6,
)
from wirecap.core.packet.link import (
    SUPPORTED_LINKTYPES,
    EtherType,
    LinkHeader,
    SllPacketType,
    VlanTag,
    decode_link,
)
from wirecap.core.packet.transport import (
    SackBlock,
    TCPFlags,
    TCPHeader,
    TCPOptionKind,
    TCPOptions,
    TCPTimestamps,
    UDPHeader,
    decode_tcp,
    decode_udp,
    parse_tcp_options,
)

__all__ = [
    "SUPPORTED_LINKTYPES",
    "Decoded",
    "EtherType",
    "FiveTuple",
    "ICMPHeader",
    "ICMPType",
    "ICMPUnreachableCode",
    "ICMPv6Header",
    "ICMPv6Type",
    "IPHeader",
    "IPProtocol",
    "IPv4Header",
    "IPv6Header",
    "LinkHeader",
    "Quoted",
    "SackBlock",
    "SllPacketType",
    "TCPFlags",
    "TCPHeader",
    "TCPOptionKind",
    "TCPOptions",
    "TCPTimestamps",
    "TransportHeader",
    "UDPHeader",
    "VlanTag",
    "decode",
    "decode_icmp",
    "decode_icmpv6",
    "decode_ipv4",
    "decode_ipv6",
    "decode_link",
    "decode_quote",
    "decode_tcp",
    "decode_udp",
    "parse_tcp_options",
]

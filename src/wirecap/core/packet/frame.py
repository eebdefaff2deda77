"""The entry point: ``decode(linktype, frame)`` to link, IP and transport headers in one pass.

:func:`decode` reads each layer's fixed header with one ``struct.unpack_from`` on
the caller's bytes and stops at the transport header; options, ICMP quotes,
``ipaddress`` objects and payload slices are computed only when asked for.

Truncation and malformation are results, not exceptions: a capture is often cut
by its snaplen, and one odd packet must not stop an analysis. :class:`Decoded`
holds every layer that could be read; ``truncated`` says the frame ended inside
a header (the layers from there on are ``None``, except a TCP header whose
options were cut, which is kept); ``malformed`` says why a header with impossible
fields was dropped. The only exception :func:`decode` raises is
:class:`~wirecap.errors.FormatError` for a link type it does not support, a
property of the whole capture that a caller checks once against
``SUPPORTED_LINKTYPES``.

Values are NamedTuples rather than frozen dataclasses because they are built
for every packet: measured here, a 10-field NamedTuple costs 0.2 µs to build and a
frozen slots dataclass 0.8 µs, most of a decode's budget.
"""

from __future__ import annotations

import struct
from typing import NamedTuple, TypeAlias

from wirecap.core.packet.icmp import ICMPHeader, ICMPv6Header, decode_icmp, decode_icmpv6
from wirecap.core.packet.ip import (
    IPV6_EXTENSION_HEADERS,
    IPProtocol,
    IPv4Header,
    IPv6Header,
    decode_ipv4,
    decode_ipv6,
)
from wirecap.core.packet.link import EtherType, LinkHeader, decode_link
from wirecap.core.packet.transport import (
    UDP_HEADER_LENGTH,
    TCPHeader,
    UDPHeader,
    decode_tcp,
    decode_udp,
)
from wirecap.errors import FormatError, TruncatedError

__all__ = [
    "Decoded",
    "FiveTuple",
    "IPHeader",
    "Quoted",
    "TransportHeader",
    "decode",
    "decode_quote",
]

IPHeader: TypeAlias = IPv4Header | IPv6Header
TransportHeader: TypeAlias = TCPHeader | UDPHeader | ICMPHeader | ICMPv6Header

_ETHERTYPE_IPV4 = EtherType.IPV4.value
_ETHERTYPE_IPV6 = EtherType.IPV6.value
_TCP = IPProtocol.TCP.value
_UDP = IPProtocol.UDP.value
_ICMP = IPProtocol.ICMP.value
_ICMPV6 = IPProtocol.ICMPV6.value
#: TCP, UDP (and SCTP, DCCP) put both ports in the first 4 bytes, TCP its sequence
#: number in the next 4: all that an ICMP error's 64-bit quote is sure to hold (RFC 792).
_PORTS = struct.Struct("!HH").unpack_from
_SEQ = struct.Struct("!I").unpack_from
_QUOTE_PORTS_LENGTH = 4
_QUOTE_SEQ_END = 8
#: The per-packet result is built with tuple.__new__, skipping the NamedTuple's
#: keyword-handling __new__ (see link.py).
_new = tuple.__new__


class FiveTuple(NamedTuple):
    """The key of a TCP or UDP flow, addresses packed as in the IP headers."""

    src: bytes
    dst: bytes
    protocol: int
    sport: int
    dport: int

    def reversed(self) -> FiveTuple:
        """The same flow seen from the other end."""
        return FiveTuple(self.dst, self.src, self.protocol, self.dport, self.sport)


class Decoded(NamedTuple):
    """One frame's headers, as far as the captured bytes and their fields allow."""

    linktype: int
    data: bytes
    link: LinkHeader | None
    ip: IPHeader | None
    transport: TransportHeader | None
    #: The frame ended inside a header that decoding reached.
    truncated: bool
    #: Why decoding stopped at a header with impossible fields; ``None`` when it did not.
    malformed: str | None

    @property
    def tcp(self) -> TCPHeader | None:
        transport = self.transport
        return transport if isinstance(transport, TCPHeader) else None

    @property
    def udp(self) -> UDPHeader | None:
        transport = self.transport
        return transport if isinstance(transport, UDPHeader) else None

    @property
    def icmp(self) -> ICMPHeader | None:
        transport = self.transport
        return transport if isinstance(transport, ICMPHeader) else None

    @property
    def icmp6(self) -> ICMPv6Header | None:
        transport = self.transport
        return transport if isinstance(transport, ICMPv6Header) else None

    @property
    def five_tuple(self) -> FiveTuple | None:
        """(src, dst, protocol, sport, dport) of a TCP or UDP packet, else None."""
        transport = self.transport
        ip = self.ip
        if ip is None or not isinstance(transport, TCPHeader | UDPHeader):
            return None
        return FiveTuple(ip.src, ip.dst, ip.protocol, transport.sport, transport.dport)

    @property
    def payload(self) -> bytes:
        """The captured part of the innermost payload decoded.

        TCP or UDP data, an ICMP body, the IP payload of another protocol, or what
        follows the link header. Bounded by the IP lengths, so Ethernet padding is
        never included; shorter than the lengths say when the capture was cut.
        """
        transport = self.transport
        if isinstance(transport, TCPHeader):
            start = transport.offset + transport.header_length
            length = transport.payload_length
        elif isinstance(transport, UDPHeader):
            start = transport.offset + UDP_HEADER_LENGTH
            length = transport.payload_length
        elif transport is not None:
            return transport.body
        elif self.ip is not None:
            start = self.ip.offset + self.ip.header_length
            length = self.ip.upper_layer_length
        elif self.link is not None:
            return self.data[self.link.length :]
        else:
            return b""
        return self.data[start : start + length]


class Quoted(NamedTuple):
    """The start of the packet an ICMP error quotes (RFC 792, RFC 4443 §2.4 (c)).

    An ICMPv4 error is only sure to quote the IP header and 8 bytes (RFC 792), which
    holds TCP's or UDP's ports and TCP's sequence number but not a whole TCP header;
    ``sport``, ``dport`` and ``seq`` are set from those 8 bytes even when
    ``transport`` cannot be decoded. Linux quotes up to 576 bytes (RFC 1812 §4.3.2.3)
    and ICMPv6 up to the minimum MTU, so ``transport`` is usually there too. The
    quoted IP lengths are the original packet's, so ``transport.payload_length`` is
    the size of the segment that, for instance, was too big.
    """

    ip: IPHeader | None
    transport: TransportHeader | None
    sport: int | None
    dport: int | None
    #: TCP sequence number of the quoted segment.
    seq: int | None
    truncated: bool
    malformed: str | None

    @property
    def five_tuple(self) -> FiveTuple | None:
        """The quoted packet's flow key (TCP or UDP with ports quoted), else None."""
        ip = self.ip
        if ip is None or self.sport is None or self.dport is None:
            return None
        return FiveTuple(ip.src, ip.dst, ip.protocol, self.sport, self.dport)


def _transport(data: bytes, ip: IPHeader) -> TransportHeader | None:
    """Decode the header after ``ip``, or None when there is none to decode."""
    if ip.fragment_offset:
        # A later fragment starts mid-datagram: no header here (RFC 791 §2.3, RFC 8200 §4.5).
        return None
    protocol = ip.protocol
    offset = ip.offset + ip.header_length
    if protocol == _TCP:
        return decode_tcp(data, offset, ip.upper_layer_length)
    if protocol == _UDP:
        return decode_udp(data, offset, ip.upper_layer_length)
    if isinstance(ip, IPv4Header):
        if protocol == _ICMP:
            return decode_icmp(data, offset, ip.upper_layer_length)
        return None
    if protocol == _ICMPV6:
        return decode_icmpv6(data, offset, ip.upper_layer_length)
    if protocol in IPV6_EXTENSION_HEADERS:
        # The chain walk only ends on an extension header when the bytes ran out.
        raise TruncatedError(f"frame ends inside IPv6 extension header {protocol}")
    return None


def _options_cut(transport: TransportHeader | None, size: int) -> bool:
    return isinstance(transport, TCPHeader) and transport.offset + transport.header_length > size


def decode(linktype: int, data: bytes, orig_len: int | None = None) -> Decoded:
    """Decode a captured frame's link, IP and transport headers.

    Args:
        linktype: the LINKTYPE_* of the capture (``wirecap.core.formats.LinkType``).
        data: the captured frame.
        orig_len: the frame's length on the wire, when known; only used when an IP
            length field is 0 (segmentation offload, jumbograms).

    Returns:
        The decoded headers; see :class:`Decoded` for ``truncated`` and ``malformed``.

    Raises:
        FormatError: ``linktype`` is not in ``SUPPORTED_LINKTYPES``.
    """
    link: LinkHeader | None = None
    ip: IPHeader | None = None
    transport: TransportHeader | None = None
    try:
        link = decode_link(linktype, data)
        ethertype = link.ethertype
        if ethertype == _ETHERTYPE_IPV4:
            ip = decode_ipv4(data, link.length, orig_len)
        elif ethertype == _ETHERTYPE_IPV6:
            ip = decode_ipv6(data, link.length, orig_len)
        else:
            return Decoded(linktype, data, link, None, None, False, None)
        transport = _transport(data, ip)
    except TruncatedError:
        return Decoded(linktype, data, link, ip, None, True, None)
    except FormatError as exc:
        if link is None:  # decode_link raises FormatError only for an unknown link type
            raise
        return Decoded(linktype, data, link, ip, None, False, str(exc))
    truncated = _options_cut(transport, len(data))
    return _new(Decoded, (linktype, data, link, ip, transport, truncated, None))


def decode_quote(body: bytes, version: int) -> Quoted:
    """Decode the original packet quoted in an ICMP (``version`` 4) or ICMPv6 (6) error.

    Never raises: what cannot be read is reported in ``truncated``/``malformed``.
    """
    ip: IPHeader | None = None
    transport: TransportHeader | None = None
    sport: int | None = None
    dport: int | None = None
    seq: int | None = None
    try:
        ip = decode_ipv4(body) if version == 4 else decode_ipv6(body)
        start = ip.header_length
        if not ip.fragment_offset and ip.protocol in (_TCP, _UDP):
            if len(body) >= start + _QUOTE_PORTS_LENGTH:
                sport, dport = _PORTS(body, start)
            if ip.protocol == _TCP and len(body) >= start + _QUOTE_SEQ_END:
                (seq,) = _SEQ(body, start + _QUOTE_PORTS_LENGTH)
        transport = _transport(body, ip)
    except TruncatedError:
        return Quoted(ip, None, sport, dport, seq, True, None)
    except FormatError as exc:
        return Quoted(ip, None, sport, dport, seq, False, str(exc))
    return Quoted(ip, transport, sport, dport, seq, _options_cut(transport, len(body)), None)

"""IPv4 and IPv6 headers: addresses, lengths, fragmentation, and the upper-layer protocol.

:func:`decode_ipv4` reads the RFC 791 header; :func:`decode_ipv6` reads the RFC 8200
header and walks its extension header chain to the upper-layer protocol. Both give
``header_length`` (IP header bytes up to the upper-layer header) and
``upper_layer_length`` (the upper-layer bytes the length fields announce), so TCP
and UDP payload sizes never depend on how many bytes a capture kept or on
Ethernet padding.

Addresses are kept packed (``bytes``, 4 or 16 long): cheap, hashable, and what a
flow table wants as a key. ``src_ip``/``dst_ip`` build ``ipaddress`` objects on demand.

Rules of this file: a header too short to read raises
:class:`~wirecap.errors.TruncatedError`; a header whose own fields are impossible
(wrong version, IHL below 5, a length shorter than the header) raises
:class:`~wirecap.errors.FormatError`. Nothing else escapes.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from typing import Literal, NamedTuple

from wirecap.errors import FormatError, TruncatedError

__all__ = [
    "IPV4_MIN_HEADER_LENGTH",
    "IPV6_EXTENSION_HEADERS",
    "IPV6_HEADER_LENGTH",
    "MAX_IPV6_EXTENSION_HEADERS",
    "IPProtocol",
    "IPv4Header",
    "IPv6Header",
    "decode_ipv4",
    "decode_ipv6",
]


class IPProtocol(enum.IntEnum):
    """IANA Assigned Internet Protocol Numbers that this package decodes or walks."""

    HOPOPT = 0  # IPv6 Hop-by-Hop Options (RFC 8200 §4.3)
    ICMP = 1
    TCP = 6
    UDP = 17
    IPV6_ROUTE = 43  # RFC 8200 §4.4
    IPV6_FRAG = 44  # RFC 8200 §4.5
    ESP = 50  # RFC 4303: what follows is encrypted, the walk stops here
    AH = 51  # RFC 4302
    ICMPV6 = 58
    IPV6_NONXT = 59  # RFC 8200 §4.7: nothing follows
    IPV6_OPTS = 60  # Destination Options (RFC 8200 §4.6)
    MOBILITY = 135  # RFC 6275 §6.1
    HIP = 139  # RFC 7401
    SHIM6 = 140  # RFC 5533


#: RFC 791 §3.1: IHL counts 32-bit words and is at least 5.
IPV4_MIN_HEADER_LENGTH = 20
#: RFC 8200 §3: the fixed header.
IPV6_HEADER_LENGTH = 40
#: Extension headers the chain walk steps over (IANA "IPv6 Extension Header Types",
#: with 253/254 the RFC 3692 experimental values). ESP is absent: it ends the readable part.
IPV6_EXTENSION_HEADERS = frozenset({0, 43, 44, 51, 60, 135, 139, 140, 253, 254})
#: RFC 8200 §4.1 allows each extension header once (Destination Options twice), so a real
#: chain has at most about 8; a longer one is garbage or an attack on parsers like this one.
MAX_IPV6_EXTENSION_HEADERS = 16

#: RFC 791 §3.1 flags: bit 1 Don't Fragment, bit 2 More Fragments; the offset counts 8 octets.
_IPV4_DF = 0x4000
_IPV4_MF = 0x2000
_IPV4_OFFSET_MASK = 0x1FFF
#: RFC 8200 §4.5: the fragment offset is the high 13 bits (8-octet units), M is bit 0.
_IPV6_FRAGMENT_OFFSET_MASK = 0xFFF8
_IPV6_FRAGMENT_HEADER_LENGTH = 8
#: RFC 4302 §2.2: AH's Payload Len counts 4-octet words minus 2, unlike other
#: extension headers whose Hdr Ext Len counts 8-octet units after the first 8 (RFC 8200 §4.3).
_AH = 51
_FRAGMENT = 44

_IPV4 = struct.Struct("!BBHHHBBH4s4s").unpack_from
_IPV6 = struct.Struct("!IHBB16s16s").unpack_from
_IPV6_FRAGMENT = struct.Struct("!BxHI").unpack_from
_NO_EXTENSIONS: tuple[int, ...] = ()
#: Headers are built with tuple.__new__, skipping the NamedTuple's keyword-handling
#: __new__, which costs about as much again as the unpacking (see link.py).
_new = tuple.__new__


class IPv4Header(NamedTuple):
    """An IPv4 header (RFC 791 §3.1), as found at ``offset`` in the frame."""

    offset: int
    #: IHL in bytes, options included.
    header_length: int
    #: Type of Service byte: DSCP (RFC 2474) and ECN (RFC 3168) bits.
    tos: int
    total_length: int
    #: Identification.
    ident: int
    dont_fragment: bool
    more_fragments: bool
    #: Fragment offset in bytes (the field counts 8-octet units).
    fragment_offset: int
    ttl: int
    protocol: int
    checksum: int
    #: Packed source address (4 bytes).
    src: bytes
    #: Packed destination address (4 bytes).
    dst: bytes
    #: Bytes after the header: ``total_length - header_length``, or, when Total Length is 0
    #: (TCP segmentation offload, Linux BIG TCP), the rest of the frame on the wire.
    upper_layer_length: int

    @property
    def version(self) -> Literal[4]:
        return 4

    @property
    def src_ip(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(self.src)

    @property
    def dst_ip(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(self.dst)

    @property
    def is_fragment(self) -> bool:
        """True for any fragment, first or later (RFC 791 §2.3)."""
        return self.more_fragments or self.fragment_offset != 0

    @property
    def dscp(self) -> int:
        return self.tos >> 2

    @property
    def ecn(self) -> int:
        """ECN codepoint (RFC 3168 §5): 0 not-ECT, 1 ECT(1), 2 ECT(0), 3 CE."""
        return self.tos & 0x03


class IPv6Header(NamedTuple):
    """An IPv6 header (RFC 8200 §3) with its extension header chain walked."""

    offset: int
    traffic_class: int
    flow_label: int
    #: The Payload Length field: extension headers plus upper-layer data.
    payload_length: int
    #: The Next Header field of the fixed header.
    next_header: int
    hop_limit: int
    #: Packed source address (16 bytes).
    src: bytes
    #: Packed destination address (16 bytes).
    dst: bytes
    #: Where the chain walk ended: the upper-layer protocol. It is still an extension
    #: header number when the capture ended inside the chain; for a non-first fragment it
    #: is the Next Header of the Fragment header (the fragmentable part's first header).
    protocol: int
    #: 40 plus the extension headers walked: the upper-layer header's offset from ``offset``.
    header_length: int
    #: Upper-layer bytes: Payload Length minus the extension headers, or, when Payload
    #: Length is 0 (RFC 2675 jumbogram, BIG TCP), the rest of the frame on the wire.
    upper_layer_length: int
    #: Next Header values of the extension headers walked, in order.
    extension_headers: tuple[int, ...]
    #: Fragment header Identification; ``None`` without a Fragment header.
    ident: int | None
    #: Fragment offset in bytes; 0 without a Fragment header.
    fragment_offset: int
    more_fragments: bool

    @property
    def version(self) -> Literal[6]:
        return 6

    @property
    def src_ip(self) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(self.src)

    @property
    def dst_ip(self) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(self.dst)

    @property
    def ttl(self) -> int:
        """The hop limit, under IPv4's name, for code that handles both versions."""
        return self.hop_limit

    @property
    def dont_fragment(self) -> Literal[True]:
        """Always true: IPv6 routers never fragment, only the source does (RFC 8200 §5)."""
        return True

    @property
    def is_fragment(self) -> bool:
        """True when a Fragment header is present (RFC 8200 §4.5)."""
        return self.ident is not None

    @property
    def dscp(self) -> int:
        return self.traffic_class >> 2

    @property
    def ecn(self) -> int:
        """ECN codepoint (RFC 3168 §5): 0 not-ECT, 1 ECT(1), 2 ECT(0), 3 CE."""
        return self.traffic_class & 0x03


def decode_ipv4(data: bytes, offset: int = 0, wire_length: int | None = None) -> IPv4Header:
    """Decode the IPv4 header at ``offset``.

    Args:
        data: captured bytes.
        offset: where the IPv4 header starts.
        wire_length: the frame's length on the wire (a record's ``orig_len``); used only
            when Total Length is 0. Defaults to ``len(data)``.

    Raises:
        TruncatedError: fewer than 20 bytes at ``offset``.
        FormatError: version is not 4, IHL below 5, or Total Length below the IHL.
    """
    if len(data) < offset + IPV4_MIN_HEADER_LENGTH:
        raise TruncatedError(f"frame ends inside the IPv4 header at byte {offset}")
    vihl, tos, total, ident, flags_frag, ttl, proto, csum, src, dst = _IPV4(data, offset)
    if vihl >> 4 != 4:
        raise FormatError(f"IPv4 header with version {vihl >> 4}")
    hlen = (vihl & 0x0F) << 2
    if hlen < IPV4_MIN_HEADER_LENGTH:
        raise FormatError(f"IPv4 IHL of {hlen} bytes, below 20")
    if total >= hlen:
        upper = total - hlen
    elif total == 0:
        # A sending host's capture sees segments before TSO/GSO splits them; Linux leaves
        # Total Length 0 when the super-packet exceeds 64 KiB (BIG TCP for IPv4).
        end = len(data) if wire_length is None else wire_length
        upper = max(0, end - offset - hlen)
    else:
        raise FormatError(f"IPv4 Total Length {total} below its header length {hlen}")
    return _new(
        IPv4Header,
        (
            offset,
            hlen,
            tos,
            total,
            ident,
            (flags_frag & _IPV4_DF) != 0,
            (flags_frag & _IPV4_MF) != 0,
            (flags_frag & _IPV4_OFFSET_MASK) << 3,
            ttl,
            proto,
            csum,
            src,
            dst,
            upper,
        ),
    )


def decode_ipv6(data: bytes, offset: int = 0, wire_length: int | None = None) -> IPv6Header:
    """Decode the IPv6 header at ``offset`` and walk its extension headers.

    The walk stops at the first header that is not an extension header, at ESP (the
    rest is encrypted), after the Fragment header of a non-first fragment (the rest is
    the middle of a datagram), or where the captured bytes end; ``protocol`` and
    ``header_length`` say where it stopped.

    Args:
        data: captured bytes.
        offset: where the IPv6 header starts.
        wire_length: the frame's length on the wire; used only when Payload Length is 0.

    Raises:
        TruncatedError: fewer than 40 bytes at ``offset``.
        FormatError: version is not 6, more than MAX_IPV6_EXTENSION_HEADERS extension
            headers, or extension headers longer than the Payload Length.
    """
    size = len(data)
    if size < offset + IPV6_HEADER_LENGTH:
        raise TruncatedError(f"frame ends inside the IPv6 header at byte {offset}")
    vtf, plen, next_header, hop_limit, src, dst = _IPV6(data, offset)
    if vtf >> 28 != 6:
        raise FormatError(f"IPv6 header with version {vtf >> 28}")
    protocol = next_header
    pos = offset + IPV6_HEADER_LENGTH
    walked = _NO_EXTENSIONS
    ident: int | None = None
    fragment_offset = 0
    more_fragments = False
    if protocol in IPV6_EXTENSION_HEADERS:
        chain: list[int] = []
        while protocol in IPV6_EXTENSION_HEADERS:
            if len(chain) == MAX_IPV6_EXTENSION_HEADERS:
                raise FormatError(f"more than {MAX_IPV6_EXTENSION_HEADERS} IPv6 extension headers")
            if protocol == _FRAGMENT:
                if size < pos + _IPV6_FRAGMENT_HEADER_LENGTH:
                    break
                nxt, offset_flags, ident = _IPV6_FRAGMENT(data, pos)
                fragment_offset = offset_flags & _IPV6_FRAGMENT_OFFSET_MASK
                more_fragments = bool(offset_flags & 1)
                chain.append(protocol)
                pos += _IPV6_FRAGMENT_HEADER_LENGTH
                protocol = nxt
                if fragment_offset:
                    break
                continue
            # Every other extension header starts with Next Header and a length byte.
            if size < pos + 2:
                break
            nxt = data[pos]
            units = data[pos + 1]
            chain.append(protocol)
            pos += (units + 2) * 4 if protocol == _AH else (units + 1) * 8
            protocol = nxt
        walked = tuple(chain)
    extension_length = pos - offset - IPV6_HEADER_LENGTH
    if plen:
        if extension_length > plen:
            raise FormatError(
                f"IPv6 extension headers of {extension_length} bytes exceed Payload Length {plen}"
            )
        upper = plen - extension_length
    else:
        end = size if wire_length is None else wire_length
        upper = max(0, end - pos)
    return _new(
        IPv6Header,
        (
            offset,
            (vtf >> 20) & 0xFF,
            vtf & 0xFFFFF,
            plen,
            next_header,
            hop_limit,
            src,
            dst,
            protocol,
            pos - offset,
            upper,
            walked,
            ident,
            fragment_offset,
            more_fragments,
        ),
    )

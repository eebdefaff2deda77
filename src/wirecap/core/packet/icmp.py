"""ICMP and ICMPv6 headers, and the original packet an ICMP error quotes.

What diagnostics need from ICMP is mostly the errors: "fragmentation needed"
(RFC 1191) and "packet too big" (RFC 4443 §3.2) carry the MTU that PMTUD must
learn, and every error quotes the start of the packet that caused it, so the
error can be tied to a connection. :attr:`ICMPHeader.quote` decodes that quote
into the same header types as a top-level packet, on demand.

Rules of this file: the 8-byte header is read eagerly, everything else lazily.
A header too short to read raises :class:`~wirecap.errors.TruncatedError`.
"""

from __future__ import annotations

import enum
import struct
from typing import TYPE_CHECKING, NamedTuple

from wirecap.errors import FormatError, TruncatedError

if TYPE_CHECKING:
    from wirecap.core.packet.frame import Quoted

__all__ = [
    "ICMPV4_ERROR_TYPES",
    "ICMP_HEADER_LENGTH",
    "ICMPHeader",
    "ICMPType",
    "ICMPUnreachableCode",
    "ICMPv6Header",
    "ICMPv6Type",
    "decode_icmp",
    "decode_icmpv6",
]


class ICMPType(enum.IntEnum):
    """ICMP message types (RFC 792) that diagnostics look at."""

    ECHO_REPLY = 0
    DESTINATION_UNREACHABLE = 3
    SOURCE_QUENCH = 4  # deprecated by RFC 6633, still quotes a packet
    REDIRECT = 5
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11
    PARAMETER_PROBLEM = 12
    TIMESTAMP_REQUEST = 13
    TIMESTAMP_REPLY = 14


class ICMPUnreachableCode(enum.IntEnum):
    """Codes of ICMP Destination Unreachable (RFC 792; 13 from RFC 1812 §5.2.7.1)."""

    NETWORK = 0
    HOST = 1
    PROTOCOL = 2
    PORT = 3
    FRAGMENTATION_NEEDED = 4  # "fragmentation needed and DF set": PMTUD (RFC 1191)
    SOURCE_ROUTE_FAILED = 5
    ADMINISTRATIVELY_PROHIBITED = 13


class ICMPv6Type(enum.IntEnum):
    """ICMPv6 message types (RFC 4443 §2.1) that diagnostics look at."""

    DESTINATION_UNREACHABLE = 1
    PACKET_TOO_BIG = 2
    TIME_EXCEEDED = 3
    PARAMETER_PROBLEM = 4
    ECHO_REQUEST = 128
    ECHO_REPLY = 129


#: RFC 792 and RFC 4443 §2.1: type, code, checksum, then 4 bytes whose use depends on type.
ICMP_HEADER_LENGTH = 8
#: RFC 792: the messages that carry "Internet Header + 64 bits of Original Data Datagram".
ICMPV4_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
#: RFC 792: messages whose second word is an identifier and a sequence number.
_ICMPV4_ID_SEQ_TYPES = frozenset({0, 8, 13, 14})
#: RFC 4443 §2.1: error messages have the high-order bit of the type clear.
_ICMPV6_INFORMATIONAL_MIN = 128
_ICMPV6_ECHO_TYPES = frozenset({128, 129})

_ICMP = struct.Struct("!BBHI").unpack_from


class _ICMPFields(NamedTuple):
    offset: int
    type: int
    code: int
    checksum: int
    #: The header's second word, whose meaning depends on the type.
    rest: int
    #: Captured bytes after the 8-byte header, up to the length the IP layer gives.
    body: bytes


class ICMPHeader(_ICMPFields):
    """An ICMP (IPv4) message header (RFC 792)."""

    __slots__ = ()

    @property
    def is_error(self) -> bool:
        return self.type in ICMPV4_ERROR_TYPES

    @property
    def mtu(self) -> int | None:
        """Next-Hop MTU of a "fragmentation needed" (RFC 1191 §4), else None.

        0 means a router older than RFC 1191 did not say (RFC 1191 §5).
        """
        if self.type == ICMPType.DESTINATION_UNREACHABLE and (
            self.code == ICMPUnreachableCode.FRAGMENTATION_NEEDED
        ):
            return self.rest & 0xFFFF
        return None

    @property
    def ident(self) -> int | None:
        """Identifier of an echo or timestamp message (RFC 792), else None."""
        return self.rest >> 16 if self.type in _ICMPV4_ID_SEQ_TYPES else None

    @property
    def sequence(self) -> int | None:
        """Sequence number of an echo or timestamp message (RFC 792), else None."""
        return self.rest & 0xFFFF if self.type in _ICMPV4_ID_SEQ_TYPES else None

    @property
    def quote(self) -> Quoted | None:
        """The quoted original IPv4 packet of an error message, decoded; else None."""
        if not self.is_error:
            return None
        from wirecap.core.packet.frame import decode_quote  # frame imports this module

        return decode_quote(self.body, 4)


class ICMPv6Header(_ICMPFields):
    """An ICMPv6 message header (RFC 4443 §2.1)."""

    __slots__ = ()

    @property
    def is_error(self) -> bool:
        return self.type < _ICMPV6_INFORMATIONAL_MIN

    @property
    def mtu(self) -> int | None:
        """MTU of a Packet Too Big (RFC 4443 §3.2), else None."""
        return self.rest if self.type == ICMPv6Type.PACKET_TOO_BIG else None

    @property
    def ident(self) -> int | None:
        """Identifier of an echo message (RFC 4443 §4.1), else None."""
        return self.rest >> 16 if self.type in _ICMPV6_ECHO_TYPES else None

    @property
    def sequence(self) -> int | None:
        """Sequence number of an echo message (RFC 4443 §4.1), else None."""
        return self.rest & 0xFFFF if self.type in _ICMPV6_ECHO_TYPES else None

    @property
    def quote(self) -> Quoted | None:
        """The quoted original IPv6 packet of an error message, decoded; else None."""
        if not self.is_error:
            return None
        from wirecap.core.packet.frame import decode_quote  # frame imports this module

        return decode_quote(self.body, 6)


def _fields(data: bytes, offset: int, message_length: int) -> tuple[int, int, int, int, bytes]:
    if len(data) < offset + ICMP_HEADER_LENGTH:
        raise TruncatedError(f"frame ends inside the ICMP header at byte {offset}")
    if message_length < ICMP_HEADER_LENGTH:
        raise FormatError(f"ICMP message of {message_length} bytes, below its 8-byte header")
    icmp_type, code, csum, rest = _ICMP(data, offset)
    body = data[offset + ICMP_HEADER_LENGTH : offset + message_length]
    return icmp_type, code, csum, rest, body


def decode_icmp(data: bytes, offset: int, message_length: int) -> ICMPHeader:
    """Decode the ICMP header at ``offset``; ``message_length`` is what IP says it carries.

    Raises:
        TruncatedError: fewer than 8 bytes at ``offset``.
        FormatError: the IP layer gives the message fewer than 8 bytes.
    """
    return ICMPHeader(offset, *_fields(data, offset, message_length))


def decode_icmpv6(data: bytes, offset: int, message_length: int) -> ICMPv6Header:
    """Decode the ICMPv6 header at ``offset``; ``message_length`` is what IPv6 says it carries.

    Raises:
        TruncatedError: fewer than 8 bytes at ``offset``.
        FormatError: the IP layer gives the message fewer than 8 bytes.
    """
    return ICMPv6Header(offset, *_fields(data, offset, message_length))

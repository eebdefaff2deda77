"""TCP and UDP headers, and TCP options parsed on demand.

:func:`decode_tcp` and :func:`decode_udp` read the fixed headers (RFC 9293 §3.1,
RFC 768) at an offset in the frame. Payload lengths come from the IP layer's
``upper_layer_length``, never from how many bytes were captured: captures are
cut by the snaplen and Ethernet frames carry padding.

TCP options stay raw bytes in :class:`TCPHeader` until someone asks:
``tcp.options`` (or :func:`parse_tcp_options`) parses MSS, window scale, SACK
permitted, SACK blocks and timestamps, and keeps the order of option kinds,
which is what fingerprints a SYN.

Rules of this file: a header too short to read raises
:class:`~wirecap.errors.TruncatedError`; one whose length fields are impossible raises
:class:`~wirecap.errors.FormatError`. Option parsing never raises: it reports.
"""

from __future__ import annotations

import enum
import struct
from typing import NamedTuple

from wirecap.errors import FormatError, TruncatedError

__all__ = [
    "TCP_MIN_HEADER_LENGTH",
    "UDP_HEADER_LENGTH",
    "SackBlock",
    "TCPFlags",
    "TCPHeader",
    "TCPOptionKind",
    "TCPOptions",
    "TCPTimestamps",
    "UDPHeader",
    "decode_tcp",
    "decode_udp",
    "parse_tcp_options",
]


class TCPFlags(enum.IntFlag):
    """TCP control bits (RFC 9293 §3.1; ECE and CWR from RFC 3168 §6.1).

    Test with ``TCPFlags.SYN in tcp.flags`` or compare whole values
    (``tcp.flags == TCPFlags.SYN``); both are cheap, ``&`` builds a new flag object.
    """

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


class TCPOptionKind(enum.IntEnum):
    """TCP option kinds decoded here (IANA TCP Parameters)."""

    EOL = 0  # RFC 9293 §3.2: end of option list
    NOP = 1  # RFC 9293 §3.2: padding between options
    MSS = 2  # RFC 9293 §3.7.1
    WINDOW_SCALE = 3  # RFC 7323 §2
    SACK_PERMITTED = 4  # RFC 2018 §2
    SACK = 5  # RFC 2018 §3
    TIMESTAMPS = 8  # RFC 7323 §3


#: RFC 9293 §3.1: Data Offset counts 32-bit words and is at least 5.
TCP_MIN_HEADER_LENGTH = 20
#: RFC 768: source port, destination port, length, checksum.
UDP_HEADER_LENGTH = 8

#: Each option's exact length, with its section: a different length means the option
#: is malformed and, as Linux's tcp_parse_options does, its value is ignored.
_OPTION_LENGTHS: dict[int, int] = {
    TCPOptionKind.MSS: 4,  # RFC 9293 §3.2
    TCPOptionKind.WINDOW_SCALE: 3,  # RFC 7323 §2.2
    TCPOptionKind.SACK_PERMITTED: 2,  # RFC 2018 §2
    TCPOptionKind.TIMESTAMPS: 10,  # RFC 7323 §3.2
}
#: RFC 2018 §3: a SACK option is 2 bytes then 8 per block.
_SACK_BLOCK_LENGTH = 8

_TCP = struct.Struct("!HHIIBBHHH").unpack_from
_UDP = struct.Struct("!HHHH").unpack_from
_U16 = struct.Struct("!H").unpack_from
_U32_PAIR = struct.Struct("!II").unpack_from
_FIN_BIT = 0x01
_SYN_BIT = 0x02
_DATA_OFFSET_SHIFT = 4  # Data Offset is the high nibble of byte 12

#: Headers are built with tuple.__new__, skipping the NamedTuple's keyword-handling
#: __new__, which costs about as much again as the unpacking (see link.py).
_new = tuple.__new__
#: Building an IntFlag costs far more than indexing a tuple: one member per byte value.
_FLAGS = tuple(TCPFlags(bits) for bits in range(256))


class SackBlock(NamedTuple):
    """One SACK block (RFC 2018 §3): bytes ``left`` up to, not including, ``right``."""

    left: int
    right: int


class TCPTimestamps(NamedTuple):
    """The Timestamps option (RFC 7323 §3.2)."""

    tsval: int
    tsecr: int


class TCPOptions(NamedTuple):
    """TCP options as parsed from a header's option bytes."""

    mss: int | None
    #: Shift count as sent; RFC 7323 §2.3 says a receiver uses 14 for anything larger.
    window_scale: int | None
    sack_permitted: bool
    sack_blocks: tuple[SackBlock, ...]
    timestamps: TCPTimestamps | None
    #: Every option kind in the order it appears, NOP and EOL included.
    kinds: tuple[int, ...]
    #: The capture ended inside the options.
    truncated: bool
    #: Why parsing stopped or ignored an option, when the options are not well formed.
    malformed: str | None


class TCPHeader(NamedTuple):
    """A TCP header (RFC 9293 §3.1), as found at ``offset`` in the frame."""

    offset: int
    sport: int
    dport: int
    seq: int
    ack: int
    #: Data Offset in bytes (header and options).
    header_length: int
    flags: TCPFlags
    #: Window as sent, not yet scaled by the window scale option (RFC 7323 §2.2).
    window: int
    checksum: int
    urgent: int
    #: Option bytes as captured; shorter than ``header_length - 20`` if the capture
    #: ended inside them.
    options_raw: bytes
    #: Segment data length from the IP lengths: ``upper_layer_length - header_length``.
    payload_length: int

    @property
    def data_offset(self) -> int:
        """The Data Offset field: header length in 32-bit words."""
        return self.header_length >> 2

    @property
    def sequence_length(self) -> int:
        """SEG.LEN (RFC 9293 §3.4): sequence space used, counting SYN and FIN as one each."""
        bits = int(self.flags)  # plain int arithmetic: IntFlag operators build flag objects
        return self.payload_length + (bits & _FIN_BIT) + ((bits & _SYN_BIT) >> 1)

    @property
    def options(self) -> TCPOptions:
        """The options, parsed on each access (bind the result if it is used twice)."""
        return parse_tcp_options(self.options_raw, self.header_length - TCP_MIN_HEADER_LENGTH)


class UDPHeader(NamedTuple):
    """A UDP header (RFC 768), as found at ``offset`` in the frame."""

    offset: int
    sport: int
    dport: int
    #: The Length field: header plus data.
    length: int
    checksum: int
    #: Datagram data length: ``length - 8``, or from the IP length when Length is 0
    #: (RFC 2675 §4 jumbograms).
    payload_length: int


def decode_tcp(data: bytes, offset: int, segment_length: int) -> TCPHeader:
    """Decode the TCP header at ``offset``.

    Args:
        data: captured bytes.
        offset: where the TCP header starts.
        segment_length: the TCP segment's length per the IP layer (``upper_layer_length``).

    Raises:
        TruncatedError: fewer than 20 bytes at ``offset``.
        FormatError: Data Offset below 5, or a header longer than the segment.
    """
    if len(data) < offset + TCP_MIN_HEADER_LENGTH:
        raise TruncatedError(f"frame ends inside the TCP header at byte {offset}")
    sport, dport, seq, ack, doff, flags, window, csum, urgent = _TCP(data, offset)
    hlen = (doff >> _DATA_OFFSET_SHIFT) << 2
    if hlen < TCP_MIN_HEADER_LENGTH:
        raise FormatError(f"TCP Data Offset of {hlen} bytes, below 20")
    if hlen > segment_length:
        raise FormatError(f"TCP header of {hlen} bytes in a {segment_length}-byte segment")
    options_raw = (
        data[offset + TCP_MIN_HEADER_LENGTH : offset + hlen]
        if hlen > TCP_MIN_HEADER_LENGTH
        else b""
    )
    return _new(
        TCPHeader,
        (
            offset,
            sport,
            dport,
            seq,
            ack,
            hlen,
            _FLAGS[flags],
            window,
            csum,
            urgent,
            options_raw,
            segment_length - hlen,
        ),
    )


def decode_udp(data: bytes, offset: int, datagram_length: int) -> UDPHeader:
    """Decode the UDP header at ``offset``.

    Args:
        data: captured bytes.
        offset: where the UDP header starts.
        datagram_length: the UDP datagram's length per the IP layer.

    Raises:
        TruncatedError: fewer than 8 bytes at ``offset``.
        FormatError: Length between 1 and 7, or larger than the IP layer says.
    """
    if len(data) < offset + UDP_HEADER_LENGTH:
        raise TruncatedError(f"frame ends inside the UDP header at byte {offset}")
    sport, dport, length, csum = _UDP(data, offset)
    if length == 0:
        payload = max(0, datagram_length - UDP_HEADER_LENGTH)
    elif length < UDP_HEADER_LENGTH:
        raise FormatError(f"UDP Length {length}, below its 8-byte header")
    elif length > datagram_length:
        raise FormatError(f"UDP Length {length} exceeds the {datagram_length} bytes IP carries")
    else:
        payload = length - UDP_HEADER_LENGTH
    return _new(UDPHeader, (offset, sport, dport, length, csum, payload))


def parse_tcp_options(raw: bytes, declared_length: int | None = None) -> TCPOptions:
    """Parse TCP option bytes (RFC 9293 §3.2 layout: kind, length, value).

    Args:
        raw: the option bytes that were captured.
        declared_length: the option area's length per Data Offset; when ``raw`` is
            shorter, an option running past its end is truncation, not malformation.

    Returns:
        The options found. Never raises: an impossible length stops parsing and a
        known option of the wrong length is skipped, both reported in ``malformed``.
    """
    area = len(raw) if declared_length is None else declared_length
    mss: int | None = None
    window_scale: int | None = None
    sack_permitted = False
    sack_blocks: tuple[SackBlock, ...] = ()
    timestamps: TCPTimestamps | None = None
    kinds: list[int] = []
    truncated = False
    malformed: str | None = None
    pos = 0
    end = len(raw)
    while pos < end:
        kind = raw[pos]
        kinds.append(kind)
        if kind == TCPOptionKind.EOL:
            break
        if kind == TCPOptionKind.NOP:
            pos += 1
            continue
        if pos + 1 >= end:
            if end < area:
                truncated = True
            else:
                malformed = f"option {kind} at byte {pos} has no length byte"
            break
        length = raw[pos + 1]
        if length < 2:
            malformed = f"option {kind} at byte {pos} has length {length}"
            break
        if pos + length > end:
            if end < area:
                truncated = True
            else:
                malformed = f"option {kind} at byte {pos} runs past the options"
            break
        expected = _OPTION_LENGTHS.get(kind)
        if expected is not None and length != expected:
            malformed = f"option {kind} has length {length}, expected {expected}"
        elif kind == TCPOptionKind.MSS:
            (mss,) = _U16(raw, pos + 2)
        elif kind == TCPOptionKind.WINDOW_SCALE:
            window_scale = raw[pos + 2]
        elif kind == TCPOptionKind.SACK_PERMITTED:
            sack_permitted = True
        elif kind == TCPOptionKind.TIMESTAMPS:
            timestamps = TCPTimestamps(*_U32_PAIR(raw, pos + 2))
        elif kind == TCPOptionKind.SACK:
            if (length - 2) % _SACK_BLOCK_LENGTH or length == 2:
                malformed = f"SACK option of length {length}, not 2 + 8n"
            else:
                sack_blocks = tuple(
                    SackBlock(*_U32_PAIR(raw, start))
                    for start in range(pos + 2, pos + length, _SACK_BLOCK_LENGTH)
                )
        pos += length
    return TCPOptions(
        mss,
        window_scale,
        sack_permitted,
        sack_blocks,
        timestamps,
        tuple(kinds),
        truncated,
        malformed,
    )

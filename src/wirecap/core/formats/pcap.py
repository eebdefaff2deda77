"""The classic libpcap file format: file header and packet records, pure bytes in and out.

The format is specified in draft-ietf-opsawg-pcap (§4 File Header, §5 Packet
Record). A file is one 24-byte header followed by records of a 16-byte header
and the packet bytes, with no padding. Every number is in the byte order of
the machine that wrote it; the magic number tells which, and whether the
fraction of the timestamp counts microseconds or nanoseconds.

This module holds no I/O: `decode_file_header` and `decode_record_header` read
from a buffer the caller owns (the incremental decoder in `decoder.py`, the
transcoder in `convert.py`), `PcapEncoder` returns bytes for the caller to write.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal, TypeAlias

from wirecap.core.formats.records import Interface, Packet
from wirecap.errors import FormatError, LimitExceededError

__all__ = [
    "FILE_HEADER_LEN",
    "MAGIC_MICROSECONDS",
    "MAGIC_NANOSECONDS",
    "MAX_CAPLEN",
    "RECORD_HEADER_LEN",
    "ByteOrder",
    "PcapEncoder",
    "PcapHeader",
    "decode_file_header",
    "decode_record_header",
]

#: "<" little-endian or ">" big-endian, as `struct` spells them.
ByteOrder: TypeAlias = Literal["<", ">"]

#: §4: seconds + microseconds timestamps.
MAGIC_MICROSECONDS = 0xA1B2C3D4
#: §4: seconds + nanoseconds timestamps.
MAGIC_NANOSECONDS = 0xA1B23C4D

FILE_HEADER_LEN = 24
RECORD_HEADER_LEN = 16

#: §4: the only major version ever written; 2.4 since libpcap 0.4 (1998).
VERSION_MAJOR = 2
VERSION_MINOR = 4

#: Largest captured length a record may claim. libpcap never writes more than its
#: MAXIMUM_SNAPLEN (262144), but other writers (and GRO super-packets captured by
#: them) may; 16 MiB is the block ceiling libpcap's own pcapng reader starts with
#: (INITIAL_MAX_BLOCKSIZE in sf-pcapng.c). A larger claim is corruption, and
#: refusing it stops a 4 GiB length field from turning into a 4 GiB buffer.
MAX_CAPLEN = 16 * 1024 * 1024

#: §4: LinkType is the low 16 bits; bits 26-31 carry FCS information we don't need.
_LINKTYPE_MASK = 0xFFFF

_FILE_HEADER = {order: struct.Struct(order + "IHHiIII") for order in ("<", ">")}
_RECORD_HEADER = {order: struct.Struct(order + "IIII") for order in ("<", ">")}
_U32_LE = struct.Struct("<I")

#: §5: the seconds field is an unsigned 32-bit count, so pcap ends in 2106.
_MAX_TS_NS = (1 << 32) * 1_000_000_000


@dataclass(frozen=True, slots=True)
class PcapHeader:
    """A decoded pcap file header (§4)."""

    byte_order: ByteOrder
    nanosecond: bool
    version: tuple[int, int]
    snaplen: int
    linktype: int

    @property
    def fraction_ns(self) -> int:
        """Nanoseconds per unit of the record's timestamp fraction field."""
        return 1 if self.nanosecond else 1000

    def interface(self) -> Interface:
        """The one interface every record of a pcap file belongs to (id 0)."""
        return Interface(linktype=self.linktype, snaplen=self.snaplen, ts_unit_ns=self.fraction_ns)


def decode_file_header(data: bytes | bytearray | memoryview, offset: int = 0) -> PcapHeader:
    """Decode the 24-byte file header at `offset`.

    The caller guarantees FILE_HEADER_LEN bytes are there.

    Raises:
        FormatError: not a pcap magic, or a major version other than 2.
    """
    (magic,) = _U32_LE.unpack_from(data, offset)
    order: ByteOrder
    # §4: the magic is written in the writer's byte order, so reading it
    # little-endian gives either the value or its byte-swapped twin.
    if magic in (MAGIC_MICROSECONDS, MAGIC_NANOSECONDS):
        order = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        order = ">"
    else:
        raise FormatError(f"not a pcap file: magic 0x{magic:08x}")
    magic, major, minor, _zone, _sigfigs, snaplen, linktype = _FILE_HEADER[order].unpack_from(
        data, offset
    )
    if major != VERSION_MAJOR:
        raise FormatError(f"unsupported pcap version {major}.{minor} (only 2.x exists)")
    return PcapHeader(
        byte_order=order,
        nanosecond=magic == MAGIC_NANOSECONDS,
        version=(major, minor),
        snaplen=snaplen,
        linktype=linktype & _LINKTYPE_MASK,
    )


def decode_record_header(
    header: PcapHeader, data: bytes | bytearray | memoryview, offset: int
) -> tuple[int, int, int]:
    """Decode a 16-byte record header (§5) into (ts_ns, caplen, orig_len).

    The caller guarantees RECORD_HEADER_LEN bytes are there.

    Raises:
        LimitExceededError: the captured length exceeds MAX_CAPLEN.
    """
    sec, frac, caplen, orig_len = _RECORD_HEADER[header.byte_order].unpack_from(data, offset)
    if caplen > MAX_CAPLEN:
        raise LimitExceededError(
            f"pcap record claims {caplen} captured bytes, more than MAX_CAPLEN {MAX_CAPLEN}"
        )
    # Integer arithmetic keeps every nanosecond; an out-of-range fraction (some
    # writers emit 1000000 µs) is carried through rather than rejected, as libpcap does.
    return sec * 1_000_000_000 + frac * header.fraction_ns, caplen, orig_len


class PcapEncoder:
    """Encode one interface's packets as a pcap file (§4, §5).

    Args:
        interface: its linktype and snaplen go into the file header; a pcap file
            has exactly one interface, so every packet is written as if on it.
        nanosecond: write the 0xa1b23c4d magic and nanosecond fractions (the
            default; exact), or 0xa1b2c3d4 and microseconds (timestamps are
            truncated to the microsecond).
        byte_order: "<" (what every x86/ARM host writes) or ">".

    Raises (from `packet`):
        ValueError: a timestamp pcap cannot hold (before 1970 or after 2106).
    """

    __slots__ = ("_divisor", "_header", "_record", "interface", "nanosecond")

    def __init__(
        self, interface: Interface, nanosecond: bool = True, byte_order: ByteOrder = "<"
    ) -> None:
        if not 0 <= interface.linktype <= _LINKTYPE_MASK:
            raise ValueError(f"linktype {interface.linktype} does not fit pcap's 16 bits")
        self.interface = interface
        self.nanosecond = nanosecond
        self._divisor = 1 if nanosecond else 1000
        self._record = _RECORD_HEADER[byte_order]
        self._header = _FILE_HEADER[byte_order].pack(
            MAGIC_NANOSECONDS if nanosecond else MAGIC_MICROSECONDS,
            VERSION_MAJOR,
            VERSION_MINOR,
            0,  # §4 Reserved1 ("thiszone"): SHOULD be 0
            0,  # §4 Reserved2 ("sigfigs"): SHOULD be 0
            interface.snaplen,
            interface.linktype,
        )

    def header(self) -> bytes:
        """The 24-byte file header."""
        return self._header

    def packet(self, packet: Packet) -> bytes:
        """One record: 16-byte header and the packet bytes (pcap has no padding)."""
        ts = packet.ts_ns
        if not 0 <= ts < _MAX_TS_NS:
            raise ValueError(f"timestamp {ts} ns is outside what pcap can hold (1970-2106)")
        sec, frac_ns = divmod(ts, 1_000_000_000)
        data = packet.data
        return self._record.pack(sec, frac_ns // self._divisor, len(data), packet.orig_len) + data

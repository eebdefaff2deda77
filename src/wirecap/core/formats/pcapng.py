"""pcapng blocks: encode the ones wirecap writes, decode the ones any writer may produce.

The format is draft-ietf-opsawg-pcapng. A file is a sequence of blocks (§3.1):
type, total length, a body padded to 32 bits, and the total length again. A
Section Header Block (§4.1) opens each section and fixes its byte order; the
Interface Description Blocks (§4.2) of a section are numbered from 0 in the
order they appear, and packet and statistics blocks refer to those numbers.

Written here: SHB, IDB (always with if_tsresol = 9, so every timestamp we write
is exact nanoseconds), EPB (§4.3), SPB (§4.4), NRB (§4.5), ISB (§4.6) and DSB
(§4.7, e.g. a TLS key log Wireshark decrypts with, no side file needed).

Decoded here: the same blocks from any writer, in either byte order, with
if_tsresol in its power-of-10 and power-of-2 forms and if_tsoffset. Name
Resolution Blocks become `NameResolution` events (records of unknown type
inside them are skipped); the obsolete Packet Block (Appendix A) is read like
an EPB; Custom Blocks (§4.8) and every other block type are skipped whole, as
§3.1 allows.

This module does no I/O and no framing of a stream: `decoder.py` cuts the
stream into blocks and hands each body here.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from wirecap.core.formats.pcap import ByteOrder
from wirecap.core.formats.records import (
    DecryptionSecrets,
    Event,
    Interface,
    InterfaceStatistics,
    NameRecord,
    NameResolution,
    Packet,
    SectionStart,
)
from wirecap.errors import FormatError, LimitExceededError

__all__ = [
    "BLOCK_DSB",
    "BLOCK_EPB",
    "BLOCK_IDB",
    "BLOCK_ISB",
    "BLOCK_NRB",
    "BLOCK_OVERHEAD",
    "BLOCK_PB",
    "BLOCK_SHB",
    "BLOCK_SPB",
    "BYTE_ORDER_MAGIC",
    "MAX_BLOCK_LEN",
    "MAX_INTERFACES",
    "SHB_MIN_LEN",
    "PcapngEncoder",
    "Section",
    "decode_block",
    "decode_enhanced_packet",
    "decode_section_header",
    "section_byte_order",
]

# §3.2 / §11.1 block type codes. The SHB code is a palindrome on purpose, so a
# reader finds it before it knows the byte order (§4.1).
BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 0x00000001
BLOCK_PB = 0x00000002  # obsolete (Appendix A), read only
BLOCK_SPB = 0x00000003
BLOCK_NRB = 0x00000004
BLOCK_ISB = 0x00000005
BLOCK_EPB = 0x00000006
BLOCK_DSB = 0x0000000A

#: §4.1: written as 0x1A2B3C4D in the section's byte order.
BYTE_ORDER_MAGIC = 0x1A2B3C4D
VERSION_MAJOR = 1
VERSION_MINOR = 0

#: Largest block we accept. libpcap's pcapng reader starts from the same 16 MiB
#: ceiling (INITIAL_MAX_BLOCKSIZE in sf-pcapng.c); a 64 KiB GRO super-packet
#: plus options is far below it, a corrupt length field far above it.
MAX_BLOCK_LEN = 16 * 1024 * 1024

#: Interfaces per section. Each IDB costs us a list entry; without a bound, a
#: stream of 20-byte IDBs would grow memory forever. Real captures have a
#: handful; Wireshark's own interface list in a merged file rarely passes 100.
MAX_INTERFACES = 65536

#: §3.1: type + length + trailing length.
BLOCK_OVERHEAD = 12
#: §4.1: an SHB body holds at least magic, major, minor, 64-bit section length.
SHB_MIN_LEN = BLOCK_OVERHEAD + 16

# §3.5 option codes common to every block.
_OPT_ENDOFOPT = 0
_OPT_COMMENT = 1
# §4.1 SHB options.
_SHB_HARDWARE = 2
_SHB_OS = 3
_SHB_USERAPPL = 4
# §4.2 IDB options.
_IF_NAME = 2
_IF_DESCRIPTION = 3
_IF_TSRESOL = 9
_IF_TSOFFSET = 14
# §4.5 NRB record types.
_NRB_END = 0
_NRB_ADDRESS_LEN = {1: 4, 2: 16, 3: 6, 4: 8}  # ipv4, ipv6, eui48, eui64
# §4.6 ISB options.
_ISB_IFRECV = 4
_ISB_IFDROP = 5

#: §4.2: without if_tsresol, timestamps count microseconds.
_DEFAULT_UNITS_PER_SECOND = 1_000_000
_NS_PER_SECOND = 1_000_000_000
#: What we write in if_tsresol: 10^-9 s, so ticks are nanoseconds.
_TSRESOL_NANOSECONDS = 9


def _structs(fmt: str) -> dict[str, struct.Struct]:
    return {order: struct.Struct(order + fmt) for order in ("<", ">")}


_U16 = _structs("H")
_U32 = _structs("I")
_U64 = _structs("Q")
_I64 = _structs("q")
_HH = _structs("HH")
_II = _structs("II")
_SHB_FIXED = _structs("IHHq")
_IDB_FIXED = _structs("HHI")
_EPB_FIXED = _structs("IIIII")
# A whole option-less EPB: the 28 bytes before the data, padding and length after.
_EPB_HEAD = _structs("7I")
_EPB_TAIL = {
    order: tuple(struct.Struct(f"{order}{pad}xI").pack for pad in range(4)) for order in ("<", ">")
}
_EPB_HEAD_AND_TAIL = 32
_PB_FIXED = _structs("HHIIII")
_ISB_FIXED = _structs("III")


def _pad(length: int) -> int:
    """Bytes of zero padding that bring `length` to a multiple of 4 (§3.1)."""
    return -length & 3


# --------------------------------------------------------------------------
# Decoding


@dataclass(slots=True)
class _InterfaceClock:
    """What packet blocks need from their IDB: timestamp scale and snaplen."""

    units_per_second: int
    offset_ns: int
    snaplen: int

    def to_ns(self, ticks: int) -> int:
        # Exact for every power-of-10 resolution down to 1 ns; finer or
        # power-of-2 resolutions are floored to the nanosecond below.
        if self.units_per_second == _NS_PER_SECOND:
            return ticks + self.offset_ns
        return ticks * _NS_PER_SECOND // self.units_per_second + self.offset_ns


@dataclass(slots=True)
class Section:
    """Per-section decoding state: byte order and the interfaces defined so far.

    Mutable and private to one decoder; a new SHB means a new Section (§3.4).
    """

    byte_order: ByteOrder
    clocks: list[_InterfaceClock] = field(default_factory=list)


def _options(body: bytes, start: int, order: ByteOrder) -> list[tuple[int, bytes]]:
    """Parse a §3.5 option list from `start` to the end of the body."""
    options: list[tuple[int, bytes]] = []
    header = _HH[order]
    end = len(body)
    pos = start
    while pos < end:
        if end - pos < 4:
            raise FormatError(f"option header cut short: {end - pos} bytes left in block")
        code, length = header.unpack_from(body, pos)
        pos += 4
        if code == _OPT_ENDOFOPT:
            # §3.5: opt_endofopt ends the list; anything after it is not an option.
            break
        padded = length + _pad(length)
        if padded > end - pos:
            raise FormatError(f"option {code} claims {length} bytes, only {end - pos} left")
        options.append((code, body[pos : pos + length]))
        pos += padded
    return options


def _text(value: bytes) -> str:
    # §3.5: strings are UTF-8, not zero-terminated; some writers add a NUL
    # anyway, and a bad byte must not turn into an exception from a decoder.
    return value.rstrip(b"\0").decode("utf-8", errors="replace")


def _first_text(options: list[tuple[int, bytes]], code: int) -> str | None:
    for option_code, value in options:
        if option_code == code:
            return _text(value)
    return None


def _u64_option(value: bytes, order: ByteOrder, what: str) -> int:
    if len(value) != 8:
        raise FormatError(f"{what} must be 8 bytes, not {len(value)}")
    (number,) = _U64[order].unpack(value)
    return int(number)


def section_byte_order(data: bytes | bytearray | memoryview, offset: int) -> ByteOrder:
    """The byte order of the SHB at `offset`, from its byte-order magic (§4.1).

    The caller guarantees 12 bytes are there: the block type and length are
    read with the order this returns, since the SHB type alone cannot tell.

    Raises:
        FormatError: the magic is neither 0x1A2B3C4D nor its byte swap.
    """
    (magic,) = _U32["<"].unpack_from(data, offset + 8)
    if magic == BYTE_ORDER_MAGIC:
        return "<"
    if magic == 0x4D3C2B1A:
        return ">"
    raise FormatError(f"bad pcapng byte-order magic 0x{magic:08x}")


def decode_section_header(block: bytes) -> tuple[Section, SectionStart]:
    """Decode a whole SHB (§4.1), header and trailer included.

    The caller has checked the total length (>= SHB_MIN_LEN, matching trailer).

    Raises:
        FormatError: bad byte-order magic or an unsupported major version.
    """
    order = section_byte_order(block, 0)
    _magic, major, minor, _section_length = _SHB_FIXED[order].unpack_from(block, 8)
    if major != VERSION_MAJOR:
        # §4.1: a different major version is a format we cannot read.
        raise FormatError(f"unsupported pcapng version {major}.{minor}")
    options = _options(block[: len(block) - 4], 24, order)
    start = SectionStart(
        format="pcapng",
        big_endian=order == ">",
        version=(major, minor),
        comment=_first_text(options, _OPT_COMMENT),
        hardware=_first_text(options, _SHB_HARDWARE),
        os=_first_text(options, _SHB_OS),
        user_application=_first_text(options, _SHB_USERAPPL),
    )
    return Section(byte_order=order), start


def _decode_idb(body: bytes, section: Section) -> Interface:
    order = section.byte_order
    if len(body) < 8:
        raise FormatError(f"IDB body of {len(body)} bytes, need 8")
    if len(section.clocks) >= MAX_INTERFACES:
        raise LimitExceededError(f"more than MAX_INTERFACES {MAX_INTERFACES} IDBs in a section")
    linktype, _reserved, snaplen = _IDB_FIXED[order].unpack_from(body, 0)
    options = _options(body, 8, order)
    units = _DEFAULT_UNITS_PER_SECOND
    offset_s = 0
    for code, value in options:
        if code == _IF_TSRESOL:
            if len(value) != 1:
                raise FormatError(f"if_tsresol must be 1 byte, not {len(value)}")
            # §4.2: MSB clear: 10^-n seconds; MSB set: 2^-n seconds.
            exponent = value[0] & 0x7F
            units = 2**exponent if value[0] & 0x80 else 10**exponent
        elif code == _IF_TSOFFSET:
            if len(value) != 8:
                raise FormatError(f"if_tsoffset must be 8 bytes, not {len(value)}")
            (offset_s,) = _I64[order].unpack(value)
    section.clocks.append(
        _InterfaceClock(
            units_per_second=units, offset_ns=offset_s * _NS_PER_SECOND, snaplen=snaplen
        )
    )
    return Interface(
        linktype=linktype,
        snaplen=snaplen,
        name=_first_text(options, _IF_NAME),
        description=_first_text(options, _IF_DESCRIPTION),
        # Informational: the tick rounded down to whole nanoseconds, at least 1.
        ts_unit_ns=max(1, _NS_PER_SECOND // units),
    )


def _clock(section: Section, interface_id: int, block: str) -> _InterfaceClock:
    if interface_id >= len(section.clocks):
        raise FormatError(
            f"{block} refers to interface {interface_id}, "
            f"but the section has {len(section.clocks)} IDBs"
        )
    return section.clocks[interface_id]


def decode_enhanced_packet(
    buf: bytes | bytearray, start: int, end: int, section: Section
) -> Packet:
    """Decode the EPB body buf[start:end] (§4.3) in place.

    EPBs are nearly every block of a capture, so this reads them where they
    lie instead of copying the body first: only the packet bytes are copied.
    """
    if end - start < 20:
        raise FormatError(f"EPB body of {end - start} bytes, need 20")
    fixed = _EPB_FIXED[section.byte_order].unpack_from(buf, start)
    interface_id, ts_high, ts_low, caplen, orig_len = fixed
    return _packet(buf, start, end, section, "EPB", interface_id, ts_high, ts_low, caplen, orig_len)


def _decode_pb(body: bytes, section: Section) -> Packet:
    # Appendix A: the obsolete Packet Block is an EPB with a 16-bit interface
    # id and a drops count; old files hold only these, so skipping them would
    # silently lose every packet.
    if len(body) < 20:
        raise FormatError(f"Packet Block body of {len(body)} bytes, need 20")
    fixed = _PB_FIXED[section.byte_order].unpack_from(body, 0)
    interface_id, _drops, ts_high, ts_low, caplen, orig_len = fixed
    return _packet(
        body, 0, len(body), section, "Packet Block", interface_id, ts_high, ts_low, caplen, orig_len
    )


def _packet(
    buf: bytes | bytearray,
    start: int,
    end: int,
    section: Section,
    block: str,
    interface_id: int,
    ts_high: int,
    ts_low: int,
    caplen: int,
    orig_len: int,
) -> Packet:
    """The part EPB and PB share: 20 fixed bytes, then data, padding, options."""
    clock = _clock(section, interface_id, block)
    data_start = start + 20
    data_end = data_start + caplen
    options_start = data_end + (-caplen & 3)
    if options_start > end:
        raise FormatError(f"{block} claims {caplen} captured bytes, holds {end - data_start}")
    comment = None
    if options_start < end:
        options = _options(bytes(buf[options_start:end]), 0, section.byte_order)
        comment = _first_text(options, _OPT_COMMENT)
    ticks = ts_high << 32 | ts_low
    return Packet(
        ticks + clock.offset_ns if clock.units_per_second == _NS_PER_SECOND else clock.to_ns(ticks),
        bytes(buf[data_start:data_end]),
        orig_len,
        interface_id,
        comment,
    )


def _decode_epb(body: bytes, section: Section) -> Packet:
    return decode_enhanced_packet(body, 0, len(body), section)


def _decode_spb(body: bytes, section: Section) -> Packet:
    if len(body) < 4:
        raise FormatError(f"SPB body of {len(body)} bytes, need 4")
    (orig_len,) = _U32[section.byte_order].unpack_from(body, 0)
    # §4.4: an SPB belongs to the first interface and has no timestamp (we use
    # 0); its captured length is the original length cut to that IDB's snaplen.
    clock = _clock(section, 0, "SPB")
    caplen = min(orig_len, clock.snaplen) if clock.snaplen else orig_len
    if 4 + caplen > len(body):
        raise FormatError(f"SPB needs {caplen} captured bytes, block holds {len(body) - 4}")
    return Packet(ts_ns=0, data=body[4 : 4 + caplen], orig_len=orig_len, interface_id=0)


def _decode_nrb(body: bytes, section: Section) -> NameResolution:
    header = _HH[section.byte_order]
    records: list[NameRecord] = []
    pos = 0
    end = len(body)
    while True:
        if end - pos < 4:
            raise FormatError("NRB ends without an nrb_record_end")
        record_type, length = header.unpack_from(body, pos)
        pos += 4
        if record_type == _NRB_END:
            break  # §4.5: options may follow; we keep none of them.
        padded = length + _pad(length)
        if padded > end - pos:
            raise FormatError(f"NRB record claims {length} bytes, only {end - pos} left")
        value = body[pos : pos + length]
        pos += padded
        address_len = _NRB_ADDRESS_LEN.get(record_type)
        if address_len is None:
            continue  # a record type from a later draft: skip it, keep the others
        if length < address_len:
            raise FormatError(f"NRB record of type {record_type} too short: {length} bytes")
        names = tuple(_text(name) for name in value[address_len:].split(b"\0") if name)
        records.append(NameRecord(record_type, value[:address_len], names))
    return NameResolution(tuple(records))


def _decode_isb(body: bytes, section: Section) -> InterfaceStatistics:
    order = section.byte_order
    if len(body) < 12:
        raise FormatError(f"ISB body of {len(body)} bytes, need 12")
    interface_id, ts_high, ts_low = _ISB_FIXED[order].unpack_from(body, 0)
    clock = _clock(section, interface_id, "ISB")
    received = dropped = None
    for code, value in _options(body, 12, order):
        if code == _ISB_IFRECV:
            received = _u64_option(value, order, "isb_ifrecv")
        elif code == _ISB_IFDROP:
            dropped = _u64_option(value, order, "isb_ifdrop")
    return InterfaceStatistics(
        interface_id=interface_id,
        ts_ns=clock.to_ns(ts_high << 32 | ts_low),
        received=received,
        dropped=dropped,
    )


def _decode_dsb(body: bytes, section: Section) -> DecryptionSecrets:
    if len(body) < 8:
        raise FormatError(f"DSB body of {len(body)} bytes, need 8")
    secrets_type, length = _II[section.byte_order].unpack_from(body, 0)
    if 8 + length + _pad(length) > len(body):
        raise FormatError(f"DSB claims {length} bytes of secrets, block holds {len(body) - 8}")
    return DecryptionSecrets(secrets_type=secrets_type, data=body[8 : 8 + length])


_BODY_DECODERS: dict[int, Callable[[bytes, Section], Event]] = {
    BLOCK_IDB: _decode_idb,
    BLOCK_EPB: _decode_epb,
    BLOCK_PB: _decode_pb,
    BLOCK_SPB: _decode_spb,
    BLOCK_NRB: _decode_nrb,
    BLOCK_ISB: _decode_isb,
    BLOCK_DSB: _decode_dsb,
}


def decode_block(block_type: int, body: bytes, section: Section) -> Event | None:
    """Decode one non-SHB block body (without type, lengths and trailer).

    Returns None for block types we skip. Updates `section` for IDBs.

    Raises:
        FormatError: a field contradicts the block or the section.
        LimitExceededError: the section defines more than MAX_INTERFACES interfaces.
    """
    decode = _BODY_DECODERS.get(block_type)
    if decode is None:
        return None
    return decode(body, section)


# --------------------------------------------------------------------------
# Encoding


class PcapngEncoder:
    """Encode pcapng blocks in one byte order.

    Every IDB written carries if_tsresol = 9, so EPB and ISB timestamps are
    written as exact nanoseconds. Blocks come out whole; the caller writes an
    SHB first, then an IDB before any block that names its interface.

    Raises (from the block methods):
        ValueError: a timestamp outside 0 .. 2**64 - 1 ns, or an option over 64 KiB.
        struct.error: an id or length too big for its 32-bit field.
    """

    __slots__ = ("_order",)

    def __init__(self, byte_order: ByteOrder = "<") -> None:
        self._order: ByteOrder = byte_order

    def _block(self, block_type: int, body: bytes) -> bytes:
        total = BLOCK_OVERHEAD + len(body)
        trailer = _U32[self._order].pack(total)
        return _II[self._order].pack(block_type, total) + body + trailer

    def _option(self, code: int, value: bytes) -> bytes:
        if len(value) > 0xFFFF:
            raise ValueError(f"option {code} of {len(value)} bytes exceeds 65535")
        return _HH[self._order].pack(code, len(value)) + value + b"\0" * _pad(len(value))

    def _option_list(self, options: Iterable[tuple[int, bytes]]) -> bytes:
        encoded = b"".join(self._option(code, value) for code, value in options)
        # §3.5: the list ends with opt_endofopt; with no options, it is omitted.
        return encoded + _HH[self._order].pack(_OPT_ENDOFOPT, 0) if encoded else b""

    def _text_options(self, *pairs: tuple[int, str | None]) -> list[tuple[int, bytes]]:
        return [(code, text.encode()) for code, text in pairs if text is not None]

    def _timestamp(self, ts_ns: int) -> tuple[int, int]:
        if not 0 <= ts_ns < 1 << 64:
            raise ValueError(f"timestamp {ts_ns} ns does not fit pcapng's 64 bits")
        return ts_ns >> 32, ts_ns & 0xFFFFFFFF

    def section_header(
        self,
        *,
        comment: str | None = None,
        hardware: str | None = None,
        os: str | None = None,
        user_application: str | None = None,
    ) -> bytes:
        """An SHB (§4.1) with section length -1 ("not given": we stream)."""
        body = _SHB_FIXED[self._order].pack(BYTE_ORDER_MAGIC, VERSION_MAJOR, VERSION_MINOR, -1)
        options = self._text_options(
            (_OPT_COMMENT, comment),
            (_SHB_HARDWARE, hardware),
            (_SHB_OS, os),
            (_SHB_USERAPPL, user_application),
        )
        return self._block(BLOCK_SHB, body + self._option_list(options))

    def interface(self, interface: Interface) -> bytes:
        """An IDB (§4.2) with if_name, if_description and if_tsresol = 9."""
        body = _IDB_FIXED[self._order].pack(interface.linktype, 0, interface.snaplen)
        options = self._text_options(
            (_IF_NAME, interface.name), (_IF_DESCRIPTION, interface.description)
        )
        options.append((_IF_TSRESOL, bytes([_TSRESOL_NANOSECONDS])))
        return self._block(BLOCK_IDB, body + self._option_list(options))

    def packet(self, packet: Packet, *, interface_id: int | None = None) -> bytes:
        """An EPB (§4.3), with opt_comment if the packet has one.

        `interface_id` overrides the packet's own (a merge renumbers interfaces)
        without building a new Packet per record.
        """
        high, low = self._timestamp(packet.ts_ns)
        data = packet.data
        caplen = len(data)
        if packet.comment is None:
            # Nearly every packet: head and tail packed whole around the bytes
            # (§4.3 layout: block header, 5 fixed fields, data, padding, length).
            pad = -caplen & 3
            total = _EPB_HEAD_AND_TAIL + caplen + pad
            return (
                _EPB_HEAD[self._order].pack(
                    BLOCK_EPB,
                    total,
                    packet.interface_id if interface_id is None else interface_id,
                    high,
                    low,
                    caplen,
                    packet.orig_len,
                )
                + data
                + _EPB_TAIL[self._order][pad](total)
            )
        fixed = _EPB_FIXED[self._order].pack(
            packet.interface_id if interface_id is None else interface_id,
            high,
            low,
            caplen,
            packet.orig_len,
        )
        options = (
            b""
            if packet.comment is None
            else self._option_list(self._text_options((_OPT_COMMENT, packet.comment)))
        )
        return self._block(BLOCK_EPB, fixed + data + b"\0" * _pad(caplen) + options)

    def simple_packet(self, packet: Packet) -> bytes:
        """An SPB (§4.4): no timestamp, no interface id (it is interface 0).

        The reader derives the captured length as min(orig_len, IDB 0 snaplen),
        so the caller must only pass packets whose data is exactly that long.
        """
        caplen = len(packet.data)
        fixed = _U32[self._order].pack(packet.orig_len)
        return self._block(BLOCK_SPB, fixed + packet.data + b"\0" * _pad(caplen))

    def name_resolution(self, names: NameResolution) -> bytes:
        """An NRB (§4.5): one record per address, names zero-terminated."""
        parts = []
        for record in names.records:
            value = record.address + b"".join(name.encode() + b"\0" for name in record.names)
            parts.append(self._option(record.record_type, value))
        parts.append(_HH[self._order].pack(_NRB_END, 0))
        return self._block(BLOCK_NRB, b"".join(parts))

    def statistics(self, statistics: InterfaceStatistics) -> bytes:
        """An ISB (§4.6) with isb_ifrecv / isb_ifdrop when known."""
        high, low = self._timestamp(statistics.ts_ns)
        fixed = _ISB_FIXED[self._order].pack(statistics.interface_id, high, low)
        u64 = _U64[self._order]
        options = []
        if statistics.received is not None:
            options.append((_ISB_IFRECV, u64.pack(statistics.received)))
        if statistics.dropped is not None:
            options.append((_ISB_IFDROP, u64.pack(statistics.dropped)))
        return self._block(BLOCK_ISB, fixed + self._option_list(options))

    def secrets(self, secrets: DecryptionSecrets) -> bytes:
        """A DSB (§4.7); with SECRETS_TLS_KEY_LOG, Wireshark decrypts TLS with it."""
        data = secrets.data
        fixed = _II[self._order].pack(secrets.secrets_type, len(data))
        return self._block(BLOCK_DSB, fixed + data + b"\0" * _pad(len(data)))

    def event(self, event: Event) -> bytes:
        """The block for any decoded event, so a decoded capture can be written back."""
        if isinstance(event, Packet):
            return self.packet(event)
        if isinstance(event, Interface):
            return self.interface(event)
        if isinstance(event, SectionStart):
            return self.section_header(
                comment=event.comment,
                hardware=event.hardware,
                os=event.os,
                user_application=event.user_application,
            )
        if isinstance(event, DecryptionSecrets):
            return self.secrets(event)
        if isinstance(event, InterfaceStatistics):
            return self.statistics(event)
        return self.name_resolution(event)

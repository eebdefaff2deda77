"""An incremental capture decoder: pcap or pcapng bytes in, events out, no I/O.

The same object decodes a file read in chunks and a live HTTP stream arriving a
few bytes at a time. It follows h11's contract: `feed()` stores bytes,
`next_event()` returns the next event or `NEED_DATA` ("need more data" is a
value, not an exception), and `close()` says the input has ended.

The format is detected from the first four bytes: the pcapng SHB type
0x0A0D0D0A, or one of the four pcap magics (µs/ns × either byte order).
Anything else is refused at once, so an HTML error page served instead of a
capture fails on its first bytes.

Events, in input order:

- `SectionStart`: the pcap file header, or each pcapng SHB (interface ids
  restart from 0 after it);
- `Interface`: one per pcapng IDB; for pcap exactly one (id 0), built from the
  file header right after its `SectionStart`;
- `Packet` (pcap record, pcapng EPB or SPB), `DecryptionSecrets` (DSB),
  `InterfaceStatistics` (ISB), `NameResolution` (NRB).

Timestamps are integer nanoseconds. Errors are always `DecodeError`
subclasses: `FormatError`, `LimitExceededError` (a length field over a named
`MAX_*` limit: refused before anything is allocated for it) and
`TruncatedError` (from `close()`). Once one is raised the decoder stays broken:
every later call raises it again, as h11 does.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Callable, Iterator
from typing import Final, Literal, NoReturn

from wirecap.core.formats import pcapng
from wirecap.core.formats.pcap import (
    FILE_HEADER_LEN,
    MAGIC_MICROSECONDS,
    MAGIC_NANOSECONDS,
    MAX_CAPLEN,
    RECORD_HEADER_LEN,
    PcapHeader,
    decode_file_header,
    decode_record_header,
)
from wirecap.core.formats.records import Event, Packet, SectionStart
from wirecap.errors import DecodeError, FormatError, LimitExceededError, TruncatedError

__all__ = ["NEED_DATA", "CaptureDecoder", "NeedData"]


class NeedData(enum.Enum):
    """The type of `NEED_DATA`: feed more bytes, then ask again."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = NeedData.NEED_DATA

# The magic as it reads little-endian: the four pcap ones (each magic in both
# byte orders) and the pcapng SHB type, which is the same in both orders.
_PCAP_MAGICS = frozenset({MAGIC_MICROSECONDS, MAGIC_NANOSECONDS, 0xD4C3B2A1, 0x4D3CB2A1})
_MAGIC_LEN = 4
#: pcap records decoded per step: enough to amortise the step's overhead,
#: few enough that a consumer interleaving streams gets events promptly.
_PCAP_BATCH = 1024
_PCAP_RECORD = {order: struct.Struct(order + "IIII") for order in ("<", ">")}
# A block's type and first length field (§3.1), enough to know how much to wait for.
_BLOCK_HEADER_LEN = 8
# For an SHB the byte-order magic must be read too before the length means anything.
_SHB_PROBE_LEN = 12


class _State(enum.Enum):
    DETECT = "waiting for the first bytes"
    PCAP = "reading pcap records"
    PCAPNG = "reading pcapng blocks"


class CaptureDecoder:
    """Incremental pcap/pcapng decoder; see the module docstring for the contract."""

    __slots__ = (
        "_buf",
        "_closed",
        "_discarded",
        "_error",
        "_fed_any",
        "_pcap",
        "_pos",
        "_ready",
        "_section",
        "_state",
        "_step",
    )

    def __init__(self) -> None:
        # One growing bytearray and a read offset: feeding is amortised O(1)
        # per byte, and consumed bytes are dropped only once they are at least
        # half the buffer, so compaction is O(n) over the whole stream.
        self._buf = bytearray()
        self._pos = 0
        self._discarded = 0  # bytes dropped by compaction, for error offsets
        self._state = _State.DETECT
        self._step: Callable[[], Event | NeedData | None] = self._detect
        self._pcap: PcapHeader | None = None
        self._section: pcapng.Section | None = None
        self._ready: deque[Event] = deque()
        self._error: DecodeError | None = None
        self._closed = False
        self._fed_any = False

    @property
    def format(self) -> Literal["pcap", "pcapng"] | None:
        """The format the magic named ("pcap" or "pcapng"); None before it is seen."""
        if self._state is _State.DETECT:
            return None
        return "pcap" if self._state is _State.PCAP else "pcapng"

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet decoded."""
        return self._discarded + self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Store more input bytes; nothing is decoded until `next_event()`."""
        if self._closed:
            raise RuntimeError("feed() after close()")
        if not data:
            return
        self._fed_any = True
        pos = self._pos
        if pos and pos * 2 >= len(self._buf):
            del self._buf[:pos]
            self._discarded += pos
            self._pos = 0
        self._buf += data

    def next_event(self) -> Event | NeedData:
        """The next event, or NEED_DATA when the buffered bytes hold no whole one.

        Raises:
            DecodeError: the input is malformed; the decoder stays broken.
        """
        if self._error is not None:
            raise self._error
        return self._decode()

    def events(self) -> Iterator[Event]:
        """Every event ready now, stopping where the decoder needs more data."""
        ready = self._ready
        while True:
            # Events decoded in a batch are handed out straight from the queue.
            while ready:
                yield ready.popleft()
            event = self.next_event()
            if event is NEED_DATA:
                return
            yield event

    def close(self) -> None:
        """Mark the end of input.

        Events that are still buffered stay available from `next_event()`.

        Raises:
            TruncatedError: the input was empty or ended inside a header, record
                or block.
            DecodeError: what decoding the remaining buffered bytes raised.
        """
        if self._error is not None:
            raise self._error
        if self._closed:
            return
        drained = []
        while (event := self._decode()) is not NEED_DATA:
            drained.append(event)
        self._ready.extend(drained)
        self._closed = True
        left = len(self._buf) - self._pos
        if self._state is _State.DETECT:
            if not self._fed_any:
                self._fail(TruncatedError("empty input: no pcap or pcapng header"))
            self._fail(TruncatedError(f"input ended inside the file header after {left} bytes"))
        if left:
            unit = "pcap record" if self._state is _State.PCAP else "pcapng block"
            self._fail(
                TruncatedError(f"input ended inside a {unit}: {left} bytes at byte {self.offset}")
            )

    # ----------------------------------------------------------------------

    def _fail(self, error: DecodeError) -> NoReturn:
        self._error = error
        raise error

    def _decode(self) -> Event | NeedData:
        try:
            while True:
                if self._ready:
                    return self._ready.popleft()
                result = self._step()
                if result is not None:
                    return result
        except DecodeError as error:
            # Same class, with where it happened: the shell adds the file name.
            located = type(error)(f"{error} (at byte {self.offset})")
            self._error = located
            raise located from None

    def _enter(self, state: _State) -> None:
        self._state = state
        self._step = getattr(self, _STEP_NAMES[state])

    def _detect(self) -> Event | NeedData | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < _MAGIC_LEN:
            return NEED_DATA
        magic = int.from_bytes(buf[pos : pos + _MAGIC_LEN], "little")
        if magic == pcapng.BLOCK_SHB:
            self._enter(_State.PCAPNG)
            return None
        if magic not in _PCAP_MAGICS:
            raise FormatError(f"neither pcap nor pcapng: first bytes {bytes(buf[pos : pos + 4])!r}")
        if len(buf) - pos < FILE_HEADER_LEN:
            return NEED_DATA
        header = decode_file_header(buf, pos)
        self._pos = pos + FILE_HEADER_LEN
        self._pcap = header
        self._enter(_State.PCAP)
        start = SectionStart(
            format="pcap", big_endian=header.byte_order == ">", version=header.version
        )
        self._ready.extend((start, header.interface()))
        return None

    def _pcap_record(self) -> Event | NeedData | None:
        """Decode every whole record buffered (up to _PCAP_BATCH) into the ready queue.

        One tight loop per batch instead of a trip through `_decode` per
        record: decoding a pcap file or stream costs about half as much. A
        record with an impossible length ends the batch; it is refused when
        it comes first, so the records before it are delivered before the error.
        """
        buf, pos, header = self._buf, self._pos, self._pcap
        assert header is not None  # set together with _State.PCAP
        size = len(buf)
        if size - pos < RECORD_HEADER_LEN:
            return NEED_DATA
        unpack = _PCAP_RECORD[header.byte_order].unpack_from
        fraction_ns = header.fraction_ns
        ready = self._ready
        append = ready.append
        last_start = size - RECORD_HEADER_LEN
        for _ in range(_PCAP_BATCH):
            if pos > last_start:
                break
            sec, frac, caplen, orig_len = unpack(buf, pos)
            if caplen > MAX_CAPLEN:
                if ready:
                    break
                self._pos = pos
                decode_record_header(header, buf, pos)  # raises LimitExceededError
            start = pos + RECORD_HEADER_LEN
            end = start + caplen
            if end > size:
                break
            # Integer arithmetic keeps every nanosecond (as decode_record_header).
            append(
                Packet(sec * 1_000_000_000 + frac * fraction_ns, bytes(buf[start:end]), orig_len)
            )
            pos = end
        self._pos = pos
        return None if ready else NEED_DATA

    def _pcapng_block(self) -> Event | NeedData | None:
        if self._plain_epbs():
            return None
        buf, pos = self._buf, self._pos
        available = len(buf) - pos
        if available < _BLOCK_HEADER_LEN:
            return NEED_DATA
        # The SHB type is a byte-order palindrome, so any order reads it right.
        (block_type,) = _U32["<"].unpack_from(buf, pos)
        if block_type == pcapng.BLOCK_SHB:
            if available < _SHB_PROBE_LEN:
                return NEED_DATA
            order = pcapng.section_byte_order(buf, pos)
            minimum = pcapng.SHB_MIN_LEN
        else:
            assert self._section is not None  # _detect only enters PCAPNG at an SHB
            order = self._section.byte_order
            (block_type,) = _U32[order].unpack_from(buf, pos)
            minimum = pcapng.BLOCK_OVERHEAD
        (total,) = _U32[order].unpack_from(buf, pos + 4)
        if total > pcapng.MAX_BLOCK_LEN:
            raise LimitExceededError(
                f"pcapng block of {total} bytes exceeds MAX_BLOCK_LEN {pcapng.MAX_BLOCK_LEN}"
            )
        if total < minimum or total % 4:
            # §3.1: the total length counts the 12 framing bytes and is a multiple of 4.
            raise FormatError(f"pcapng block type 0x{block_type:08x} has bad length {total}")
        if available < total:
            return NEED_DATA
        end = pos + total
        (trailer,) = _U32[order].unpack_from(buf, end - 4)
        if trailer != total:
            raise FormatError(f"pcapng block length {total} but trailing length {trailer}")
        event: Event | None
        if block_type == pcapng.BLOCK_EPB:
            assert self._section is not None
            event = pcapng.decode_enhanced_packet(
                buf, pos + _BLOCK_HEADER_LEN, end - 4, self._section
            )
        elif block_type == pcapng.BLOCK_SHB:
            self._section, event = pcapng.decode_section_header(bytes(buf[pos:end]))
        else:
            assert self._section is not None
            body = bytes(buf[pos + _BLOCK_HEADER_LEN : end - 4])
            event = pcapng.decode_block(block_type, body, self._section)
        self._pos = end
        return event

    def _plain_epbs(self) -> bool:
        """Decode a run of plain EPBs (no options) into the ready queue; False if none.

        EPBs are nearly every block of a capture. This loop reads one after
        the other with a single unpack each, as `_pcap_record` does for pcap,
        and leaves everything else (other blocks, EPBs with options, and any
        block a check fails on, so the error is raised where it always was) to
        the general path, one block at a time.
        """
        section = self._section
        if section is None:
            return False
        buf, pos = self._buf, self._pos
        size = len(buf)
        head = _EPB_HEAD[section.byte_order].unpack_from
        trailer_at = _U32[section.byte_order].unpack_from
        clocks = section.clocks
        interfaces = len(clocks)
        append = self._ready.append
        start = pos
        for _ in range(_PCAP_BATCH):
            if pos + _EPB_HEAD_LEN > size:
                break
            block_type, total, interface_id, ts_high, ts_low, caplen, orig_len = head(buf, pos)
            end = pos + total
            data_end = pos + _EPB_HEAD_LEN + caplen
            if (
                block_type != pcapng.BLOCK_EPB
                or total > pcapng.MAX_BLOCK_LEN
                or end > size
                or interface_id >= interfaces
                # whole, no options: data, padding to 32 bits, trailing length
                or data_end + (-caplen & 3) + 4 != end
                or trailer_at(buf, end - 4)[0] != total
            ):
                break
            clock = clocks[interface_id]
            ticks = ts_high << 32 | ts_low
            if clock.units_per_second == _NS_PER_SECOND:
                ts_ns = ticks + clock.offset_ns
            else:
                ts_ns = clock.to_ns(ticks)
            append(
                Packet(ts_ns, bytes(buf[pos + _EPB_HEAD_LEN : data_end]), orig_len, interface_id)
            )
            pos = end
        self._pos = pos
        return pos != start


_U32: Final = {order: struct.Struct(order + "I") for order in ("<", ">")}
# An EPB's block header and fixed body fields (§4.3), read in one unpack.
_EPB_HEAD: Final = {order: struct.Struct(order + "7I") for order in ("<", ">")}
_EPB_HEAD_LEN: Final = 28
_NS_PER_SECOND: Final = 1_000_000_000

# The state table: which step decodes the input in each state.
_STEP_NAMES: Final = {
    _State.DETECT: "_detect",
    _State.PCAP: "_pcap_record",
    _State.PCAPNG: "_pcapng_block",
}

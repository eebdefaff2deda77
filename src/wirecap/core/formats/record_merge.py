"""Merging whole pcap files by copying record bytes: the fast path of `wirecap merge`.

The decoding merge (`merge_packets` + an encoder) turns every record into a
`Packet` and back, about 2 µs of Python per packet. When every source is a
classic pcap file (draft-ietf-opsawg-pcap §4, §5), a merge needs far less:
find where each record starts, read its timestamp and lengths, and copy its
bytes behind a new header. Those per-record loops are C (`_native`, built by
cffi at install from `_native_build.py`); this module decides everything else
(which records may go out, errors, file and interface headers). `NATIVE` says
whether the C loops are built; without them `wirecap merge` uses the decoding
merge, which gives the same output.

Ordering is exactly `merge_packets`': by timestamp, ties lower source index
first, then each source's own order; a source out of order in itself is never
reordered. The sort key of a record is the running maximum of its source's
timestamps (a heap merge treats a record older than its predecessor as if it
had its predecessor's time), so every source is sorted by key and a merge by
key, ties by source, *is* the heap merge.

Blocks: each round scans up to `block_records` records per source. The cutoff
is the smallest last key among sources whose file is not fully scanned; every
record below it, in every source, is final (a source's later keys are at least
its last key) and is written; the rest waits. Equal keys at the cutoff wait
too, so ties across a block boundary keep the tie rule; if nothing is below the
cutoff (a block of one timestamp), the sources holding it scan further.

Pure: buffers in (bytes or an mmap of the file), bytes and events out. Memory
is the blocks being merged, whatever the files' sizes.
"""

from __future__ import annotations

import functools
import importlib
import mmap
import struct
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, NamedTuple

from wirecap.core.formats import pcapng
from wirecap.core.formats.pcap import (
    FILE_HEADER_LEN,
    MAX_CAPLEN,
    RECORD_HEADER_LEN,
    PcapEncoder,
    PcapHeader,
)
from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.records import DEFAULT_SNAPLEN, Interface
from wirecap.errors import DecodeError, FormatError, LimitExceededError, TruncatedError

__all__ = [
    "DEFAULT_BLOCK_RECORDS",
    "MAX_SOURCES",
    "NATIVE",
    "Buffer",
    "PcapFile",
    "PcapngFile",
    "RecordMerge",
    "SourceFailed",
    "SourceStats",
    "pcapng_copyable",
]

_native: ModuleType | None
try:
    _native = importlib.import_module("wirecap.core.formats._native")
except ImportError:  # not built (no compiler at install): callers use the decoding merge
    _native = None

#: Whether the C loops are built, i.e. whether RecordMerge can run.
NATIVE = _native is not None

#: Records scanned per source per round: enough that the Python between two C
#: calls is negligible, few enough that a round's tables and output (a few MiB)
#: come from memory the allocator reuses (with 65,536 each round mapped fresh
#: pages, and page faults tripled the system time of a merge).
DEFAULT_BLOCK_RECORDS = 16_384

#: Most files one RecordMerge takes: the C merge keeps a cursor per file on its
#: stack. More files than this go through the decoding merge.
MAX_SOURCES = 64

#: What a source is read from: the file's bytes, or an mmap of it.
Buffer = bytes | bytearray | mmap.mmap

# §5: the captured length is the third 32-bit field of a record header.
_CAPLEN_AT = 8
_U32 = {"<": struct.Struct("<I").unpack_from, ">": struct.Struct(">I").unpack_from}
_BLOCK_HEAD = struct.Struct("<II").unpack_from
_SHB_TYPE = pcapng.BLOCK_SHB.to_bytes(4, "little")
_LITTLE_ENDIAN_MAGIC = (0x1A2B3C4D).to_bytes(4, "little")
# Blocks a pcapng source passes on as they are (names and TLS secrets).
_PASSED_ON = frozenset({pcapng.BLOCK_NRB, pcapng.BLOCK_DSB})
# Worst-case output bytes per record besides its packet bytes.
_PCAPNG_OVERHEAD = 32 + 3  # EPB head and trailing length, plus padding
_PCAP_OVERHEAD = RECORD_HEADER_LEN


class PcapFile(NamedTuple):
    """A pcap source: the whole file's bytes and its decoded file header."""

    buffer: Buffer
    header: PcapHeader


class PcapngFile(NamedTuple):
    """A pcapng source whose EPBs can be copied (see `pcapng_copyable`)."""

    buffer: Buffer


def pcapng_copyable(buffer: Buffer) -> bool:
    """Whether the record merge can take this pcapng file as it is.

    It copies EPBs whole, so the file must be one little-endian section
    (draft-ietf-opsawg-pcapng §4.1: the byte-order magic) of IDBs, EPBs and
    blocks it can skip or pass on (ISB, NRB, DSB, custom); a second section,
    an SPB or an obsolete PB send the file through the decoding merge.
    """
    if _native is None or len(buffer) < pcapng.SHB_MIN_LEN:
        return False
    if buffer[:4] != _SHB_TYPE or buffer[8:12] != _LITTLE_ENDIAN_MAGIC:
        return False
    (total,) = _U32["<"](buffer, 4)
    if total < pcapng.SHB_MIN_LEN or total % 4 or total > len(buffer):
        return False
    view = _native.ffi.from_buffer("uint8_t[]", buffer)
    try:
        return int(_native.lib.wc_pcapng_unsupported(view, len(buffer), total)) < 0
    finally:
        _native.ffi.release(view)


Source = PcapFile | PcapngFile
#: Turns a source's interface (as its file describes it) into the IDB written.
Rename = Callable[[int, Interface], Interface]


@dataclass(frozen=True, slots=True)
class SourceFailed:
    """Source `source` stopped at a damaged record; its records before it were written."""

    source: int
    error: DecodeError


@dataclass(frozen=True, slots=True)
class SourceStats:
    """Records and captured bytes written from one source."""

    packets: int
    bytes: int


class _Columns:
    """Scanned records not written yet: parallel int64 arrays, consumed from `start`."""

    __slots__ = ("caplen", "key", "offset", "orig_len", "start", "ts")

    def __init__(self) -> None:
        self.offset = array("q")
        self.ts = array("q")
        self.caplen = array("q")
        self.orig_len = array("q")
        self.key = array("q")
        self.start = 0

    def __len__(self) -> int:
        return len(self.key) - self.start

    def all(self) -> tuple[array[int], ...]:
        return (self.offset, self.ts, self.caplen, self.orig_len, self.key)

    def compact(self) -> None:
        """Drop the written records, before appending more."""
        if self.start:
            for column in self.all():
                del column[: self.start]
            self.start = 0


class _Source:
    """One file: where scanning stands and the records scanned but not written."""

    __slots__ = (
        "buffer",
        "bytes",
        "columns",
        "done",
        "error",
        "header",
        "last_key",
        "packets",
        "pos",
        "size",
    )

    #: 0: pcap records; 1: pcapng EPBs (wc_merge_round's `kind`).
    kind = 0

    def __init__(self, buffer: Buffer, start: int, header: PcapHeader | None) -> None:
        self.buffer = buffer
        self.header = header
        self.size = len(buffer)
        self.pos = start
        self.done = self.size <= start
        self.error: DecodeError | None = None
        self.columns = _Columns()
        self.last_key = -1
        self.packets = 0
        self.bytes = 0

    def scan(self, limit: int) -> None:
        """Scan up to `limit` more records onto the pending columns."""
        columns = self.columns
        columns.compact()
        target = len(columns) + limit
        while len(columns) < target and not self.done:
            wanted = target - len(columns)
            if self._scan_native(wanted) < wanted:
                self._stopped_at(self.pos)

    def _scan_native(self, limit: int) -> int:
        """One C scan appending up to `limit` records; returns how many."""
        assert _native is not None
        ffi: Any = _native.ffi
        columns = self.columns
        have = len(columns.key)
        for column in columns.all():
            column.frombytes(bytes(8 * limit))  # room for `limit` more, trimmed below
        stop = ffi.new("int64_t *")
        pointers = [ffi.from_buffer("int64_t[]", c, require_writable=True) for c in columns.all()]
        source = ffi.from_buffer("uint8_t[]", self.buffer)
        try:
            count = int(self._call(ffi, source, limit, [p + have for p in pointers], stop))
        finally:
            # Views pin their buffers (an array cannot resize, an mmap cannot close).
            for view in (*pointers, source):
                ffi.release(view)
        for column in columns.all():
            del column[have + count :]
        if count:
            self.last_key = columns.key[-1]
        self.pos = int(stop[0])
        return count

    def _call(self, ffi: Any, source: Any, limit: int, out: list[Any], stop: Any) -> Any:
        assert _native is not None and self.header is not None
        return _native.lib.wc_scan_pcap(
            source,
            self.size,
            self.pos,
            int(self.header.byte_order == ">"),
            self.header.fraction_ns,
            limit,
            MAX_CAPLEN,
            self.last_key,
            *out,
            stop,
        )

    def _stopped_at(self, pos: int) -> None:
        """Scanning ended early at `pos`: the end of the file, or damage (with its error)."""
        assert self.header is not None
        self.done = True
        size = self.size
        if pos > size - RECORD_HEADER_LEN:
            if pos < size:
                self.error = TruncatedError(
                    f"pcap stream ended inside a record ({size - pos} bytes left)"
                )
            return
        (caplen,) = _U32[self.header.byte_order](self.buffer, pos + _CAPLEN_AT)
        if caplen > MAX_CAPLEN:
            self.error = LimitExceededError(
                f"pcap record claims {caplen} captured bytes, more than MAX_CAPLEN {MAX_CAPLEN}"
            )
        else:
            self.error = TruncatedError(
                f"pcap stream ended inside a record ({size - pos} bytes left)"
            )


class _PcapngSource(_Source):
    """A little-endian pcapng section: EPBs scanned in C, every other block here."""

    __slots__ = ("interface_map", "offset_ns", "on_block", "section", "units")

    kind = 1

    def __init__(self, buffer: Buffer, on_block: Callable[[int, bytes], int]) -> None:
        (shb_len,) = _U32["<"](buffer, 4)
        super().__init__(buffer, shb_len, None)
        self.section = pcapng.Section("<")
        #: Per interface of the section: ticks per second, offset (for the C scan),
        #: and the output interface id its IDB got.
        self.units = array("q")
        self.offset_ns = array("q")
        self.interface_map = array("I")
        #: Called with (interface number, block bytes) for an IDB, (-1, block
        #: bytes) for an NRB or DSB; returns the IDB's output interface id.
        self.on_block = on_block

    def _call(self, ffi: Any, source: Any, limit: int, out: list[Any], stop: Any) -> Any:
        assert _native is not None
        units = ffi.from_buffer("int64_t[]", self.units)
        offsets = ffi.from_buffer("int64_t[]", self.offset_ns)
        try:
            return _native.lib.wc_scan_pcapng(
                source,
                self.size,
                self.pos,
                limit,
                pcapng.MAX_BLOCK_LEN,
                len(self.units),
                units,
                offsets,
                self.last_key,
                *out,
                stop,
            )
        finally:
            ffi.release(units)
            ffi.release(offsets)

    def _stopped_at(self, pos: int) -> None:
        """The C scan stopped at a block that is not a plain EPB: handle it here."""
        size = self.size
        if pos >= size:
            self.done = True
            return
        try:
            self._block(pos)
        except DecodeError as error:
            self.error = error
            self.done = True

    def _block(self, pos: int) -> None:
        buffer, size = self.buffer, self.size
        if pos + pcapng.BLOCK_OVERHEAD > size:
            raise TruncatedError(f"input ended inside a pcapng block: {size - pos} bytes")
        block_type, total = _BLOCK_HEAD(buffer, pos)
        if total > pcapng.MAX_BLOCK_LEN:
            raise LimitExceededError(
                f"pcapng block of {total} bytes exceeds MAX_BLOCK_LEN {pcapng.MAX_BLOCK_LEN}"
            )
        if total < pcapng.BLOCK_OVERHEAD or total % 4:
            raise FormatError(f"pcapng block type 0x{block_type:08x} has bad length {total}")
        if pos + total > size:
            raise TruncatedError(f"input ended inside a pcapng block: {size - pos} bytes")
        block = bytes(buffer[pos : pos + total])
        (trailer,) = _U32["<"](block, total - 4)
        if trailer != total:
            raise FormatError(f"pcapng block length {total} but trailing length {trailer}")
        body = block[8:-4]
        if block_type == pcapng.BLOCK_EPB:
            # The C scan refused it: decoding says why (or it is whole after all).
            pcapng.decode_enhanced_packet(body, 0, len(body), self.section)
            raise FormatError("EPB that the record merge cannot copy")
        if block_type in (pcapng.BLOCK_SHB, pcapng.BLOCK_SPB, pcapng.BLOCK_PB):
            raise FormatError(f"pcapng block type 0x{block_type:08x} in a copied section")
        event = pcapng.decode_block(block_type, body, self.section)
        if isinstance(event, Interface):
            clock = self.section.clocks[-1]
            self.units.append(clock.units_per_second)
            self.offset_ns.append(clock.offset_ns)
            self.interface_map.append(self.on_block(len(self.units) - 1, block))
        elif block_type in _PASSED_ON:
            self.on_block(-1, block)
        # ISBs and custom blocks are left out, as the decoding merge does.
        self.pos = pos + total


class RecordMerge:
    """Merge pcap and pcapng files into one pcap or pcapng stream, copying record bytes.

    Iterate to get the output: byte chunks to write in order, and a
    `SourceFailed` where a source's damage was reached (its earlier records
    are in the output before it, as the decoding merge would have written
    them). `stats` counts what each source has had written so far.

    Args:
        files: the sources, in tie-break order (at most MAX_SOURCES); pcapng
            files only as `pcapng_copyable` allows, and only for pcapng output.
        output: "pcap" (pcap files sharing one link type) or "pcapng".
        rename: for pcapng output, the IDB to write for an interface of a
            source (e.g. naming it after the file); default: as it is.
        snaplen: the pcap output's announced snapshot length.
        block_records: records scanned per source per round.

    pcapng output: a pcap source's one interface gets its IDB (in source
    order) when the source has a record; a pcapng source's IDBs are written
    as they are read, and its NRBs and DSBs passed on before the records
    that follow them. EPBs keep their options; timestamps become nanoseconds
    (every IDB written says if_tsresol 9).

    Raises:
        RuntimeError: the C loops are not built (`NATIVE` is False).
        ValueError: arguments the output cannot honour.
    """

    def __init__(
        self,
        files: Sequence[Source],
        *,
        output: Literal["pcap", "pcapng"],
        rename: Rename | None = None,
        snaplen: int = DEFAULT_SNAPLEN,
        user_application: str | None = "wirecap",
        block_records: int = DEFAULT_BLOCK_RECORDS,
    ) -> None:
        if _native is None:
            raise RuntimeError("the record merge's C loops are not built")
        if block_records < 1:
            raise ValueError("block_records must be at least 1")
        if len(files) > MAX_SOURCES:
            raise ValueError(f"at most {MAX_SOURCES} files")
        pcap_files = [f for f in files if isinstance(f, PcapFile)]
        if output == "pcap":
            if len(pcap_files) != len(files):
                raise ValueError("pcap output takes pcap files only")
            if len({f.header.linktype for f in pcap_files}) > 1:
                raise ValueError("pcap output needs one link type across files")
        self.output = output
        self.rename: Rename = rename if rename is not None else (lambda _index, i: i)
        self.snaplen = snaplen
        self.user_application = user_application
        self.block_records = block_records
        self._encoder = PcapngEncoder("<")
        # Blocks to write before the next records (IDBs, NRBs, DSBs), and the
        # next output interface id: ids follow the order IDBs are written.
        self._side: list[bytes] = []
        self._next_interface = 0
        self._sources: list[_Source] = []
        for index, file in enumerate(files):
            if isinstance(file, PcapFile):
                self._sources.append(_Source(file.buffer, FILE_HEADER_LEN, file.header))
            else:
                on_block = functools.partial(self._pcapng_block, index)
                self._sources.append(_PcapngSource(file.buffer, on_block))
        # pcap output: nanoseconds unless every source counts microseconds, so
        # no timestamp loses precision.
        self.nanosecond = any(f.header.nanosecond for f in pcap_files)
        # Output interface id of each pcap source (pcapng sources map per IDB).
        self._interface_ids = [0] * len(files)

    def _pcapng_block(self, source: int, interface: int, block: bytes) -> int:
        """A pcapng source read an IDB (`interface` >= 0), an NRB or a DSB."""
        if interface < 0:
            self._side.append(block)
            return -1
        section = pcapng.Section("<")
        described = pcapng.decode_block(pcapng.BLOCK_IDB, block[8:-4], section)
        assert isinstance(described, Interface)
        return self._add_interface(self.rename(source, described))

    def _add_interface(self, interface: Interface) -> int:
        self._side.append(self._encoder.interface(interface))
        self._next_interface += 1
        return self._next_interface - 1

    @property
    def stats(self) -> list[SourceStats]:
        """Records and bytes written so far from each source."""
        return [SourceStats(s.packets, s.bytes) for s in self._sources]

    def __iter__(self) -> Iterator[bytes | bytearray | SourceFailed]:
        sources = self._sources
        block = self.block_records
        for source in sources:
            if not source.done:
                source.scan(block)
        yield self._file_start()
        reported: set[int] = set()
        while True:
            for index, source in enumerate(sources):
                if not source.done and len(source.columns) < block:
                    source.scan(block)
                if source.done and not source.columns and index not in reported:
                    reported.add(index)
                    if source.error is not None:
                        yield SourceFailed(index, source.error)
            open_ = [s for s in sources if not s.done]
            if not open_ and not any(s.columns for s in sources):
                break
            if open_:
                cutoff = min(s.last_key for s in open_)
                counts = [
                    bisect_left(s.columns.key, cutoff, s.columns.start) - s.columns.start
                    for s in sources
                ]
                if not any(counts):
                    # Only records at the cutoff are pending: scan past it.
                    for source in open_:
                        if source.last_key == cutoff:
                            source.scan(max(len(source.columns), block))
                    continue
            else:
                counts = [len(s.columns) for s in sources]
            chunk = self._round(counts)
            if chunk:
                yield chunk
        side = self._take_side()  # names or secrets after the last packet
        if side:
            yield side

    def _file_start(self) -> bytes:
        if self.output == "pcap":
            first = self._sources[0].header if self._sources else None
            interface = Interface(linktype=first.linktype if first else 1, snaplen=self.snaplen)
            return PcapEncoder(interface, nanosecond=self.nanosecond).header()
        head = self._encoder.section_header(user_application=self.user_application)
        for index, source in enumerate(self._sources):
            if source.kind == 0 and source.columns:
                assert source.header is not None
                self._interface_ids[index] = self._add_interface(
                    self.rename(index, source.header.interface())
                )
        return head + self._take_side()

    def _take_side(self) -> bytes:
        side = b"".join(self._side)
        self._side.clear()
        return side

    def _round(self, counts: Sequence[int]) -> bytearray:
        """Blocks read since the last round, then the next counts[i] records of each source."""
        assert _native is not None
        ffi: Any = _native.ffi
        sources = self._sources
        as_pcapng = self.output == "pcapng"
        overhead = _PCAPNG_OVERHEAD if as_pcapng else _PCAP_OVERHEAD
        side = self._take_side()
        # Worst case: every record's bytes plus its header and padding; an EPB
        # of a pcapng file is copied whole (its length is in orig_len).
        size = len(side)
        for source, count in zip(sources, counts, strict=True):
            first = source.columns.start
            if source.kind == 1:
                size += sum(source.columns.orig_len[first : first + count])
            else:
                size += sum(source.columns.caplen[first : first + count]) + overhead * count
        out = bytearray(size)
        out[: len(side)] = side
        keep: list[Any] = []  # cdata views must outlive the call

        def pointers(name: str) -> Any:
            views = [ffi.from_buffer("int64_t[]", getattr(s.columns, name)) for s in sources]
            keep.extend(views)
            return ffi.new("int64_t *[]", views)

        buffers = [ffi.from_buffer("uint8_t[]", s.buffer) for s in sources]
        maps = [
            ffi.from_buffer("uint32_t[]", s.interface_map)
            if isinstance(s, _PcapngSource) and s.interface_map
            else ffi.NULL
            for s in sources
        ]
        keep.extend(buffers)
        keep.extend(m for m in maps if m != ffi.NULL)
        target = ffi.from_buffer("uint8_t[]", out, require_writable=True)
        keep.append(target)
        data_bytes = ffi.new("int64_t[]", len(sources))
        written = _native.lib.wc_merge_round(
            target + len(side),
            len(sources),
            ffi.new("uint8_t *[]", buffers),
            ffi.new("int[]", [s.kind for s in sources]),
            ffi.new("uint32_t *[]", maps),
            pointers("offset"),
            pointers("ts"),
            pointers("caplen"),
            pointers("orig_len"),
            pointers("key"),
            ffi.new("int64_t[]", [s.columns.start for s in sources]),
            ffi.new("int64_t[]", list(counts)),
            ffi.new("uint32_t[]", self._interface_ids),
            int(as_pcapng),
            int(self.nanosecond),
            data_bytes,
        )
        for view in keep:  # release the pins before anything is resized or closed
            ffi.release(view)
        for index, (source, count) in enumerate(zip(sources, counts, strict=True)):
            source.columns.start += count
            source.packets += count
            source.bytes += int(data_bytes[index])
        del out[len(side) + written :]
        return out

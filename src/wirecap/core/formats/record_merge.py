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

import importlib
import mmap
import struct
from array import array
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal, NamedTuple

from wirecap.core.formats.pcap import (
    FILE_HEADER_LEN,
    MAX_CAPLEN,
    RECORD_HEADER_LEN,
    PcapEncoder,
    PcapHeader,
)
from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.records import DEFAULT_SNAPLEN, Interface
from wirecap.errors import DecodeError, LimitExceededError, TruncatedError

__all__ = [
    "DEFAULT_BLOCK_RECORDS",
    "MAX_SOURCES",
    "NATIVE",
    "Buffer",
    "PcapFile",
    "RecordMerge",
    "SourceFailed",
    "SourceStats",
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
# Worst-case output bytes per record besides its packet bytes.
_PCAPNG_OVERHEAD = 32 + 3  # EPB head and trailing length, plus padding
_PCAP_OVERHEAD = RECORD_HEADER_LEN


class PcapFile(NamedTuple):
    """One source: the whole file's bytes and its decoded file header."""

    buffer: Buffer
    header: PcapHeader


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

    def __init__(self, file: PcapFile) -> None:
        self.buffer = file.buffer
        self.header = file.header
        self.size = len(file.buffer)
        self.pos = FILE_HEADER_LEN
        self.done = self.size <= FILE_HEADER_LEN
        self.error: DecodeError | None = None
        self.columns = _Columns()
        self.last_key = -1
        self.packets = 0
        self.bytes = 0

    def scan(self, limit: int) -> None:
        """Scan up to `limit` more records onto the pending columns."""
        assert _native is not None
        ffi: Any = _native.ffi
        columns = self.columns
        columns.compact()
        have = len(columns.key)
        for column in columns.all():
            column.frombytes(bytes(8 * limit))  # room for `limit` more, trimmed below
        stop = ffi.new("int64_t *")
        pointers = [ffi.from_buffer("int64_t[]", c, require_writable=True) for c in columns.all()]
        source = ffi.from_buffer("uint8_t[]", self.buffer)
        count = _native.lib.wc_scan_pcap(
            source,
            self.size,
            self.pos,
            int(self.header.byte_order == ">"),
            self.header.fraction_ns,
            limit,
            MAX_CAPLEN,
            self.last_key,
            *(pointer + have for pointer in pointers),
            stop,
        )
        # Views pin their buffers (an array cannot resize, an mmap cannot close).
        for view in (*pointers, source):
            ffi.release(view)
        for column in columns.all():
            del column[have + count :]
        if count:
            self.last_key = columns.key[-1]
        self.pos = int(stop[0])
        if count < limit:
            self._stopped_at(self.pos)

    def _stopped_at(self, pos: int) -> None:
        """Scanning ended early at `pos`: the end of the file, or damage (with its error)."""
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


class RecordMerge:
    """Merge pcap files into one pcap or pcapng stream, copying record bytes.

    Iterate to get the output: byte chunks to write in order, and a
    `SourceFailed` where a source's damage was reached (its earlier records
    are in the output before it, as the decoding merge would have written
    them). `stats` counts what each source has had written so far.

    Args:
        files: the sources, in tie-break order (at most MAX_SOURCES).
        output: "pcap" (every source must share one link type) or "pcapng"
            (one IDB per source that has a record, in source order).
        interfaces: for pcapng, the IDB of each source (name, description).
        snaplen: the pcap output's announced snapshot length.
        block_records: records scanned per source per round.

    Raises:
        RuntimeError: the C loops are not built (`NATIVE` is False).
        ValueError: arguments the output cannot honour.
    """

    def __init__(
        self,
        files: Sequence[PcapFile],
        *,
        output: Literal["pcap", "pcapng"],
        interfaces: Sequence[Interface] | None = None,
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
        if output == "pcapng" and (interfaces is None or len(interfaces) != len(files)):
            raise ValueError("pcapng output needs one Interface per file")
        if output == "pcap" and len({f.header.linktype for f in files}) > 1:
            raise ValueError("pcap output needs one link type across files")
        self.output = output
        self.interfaces = tuple(interfaces) if interfaces is not None else ()
        self.snaplen = snaplen
        self.user_application = user_application
        self.block_records = block_records
        self._sources = [_Source(f) for f in files]
        # pcap output: nanoseconds unless every source counts microseconds, so
        # no timestamp loses precision.
        self.nanosecond = any(f.header.nanosecond for f in files)
        # pcapng output: interface id per source, in source order among the
        # sources with a record.
        self._interface_ids = [0] * len(files)

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

    def _file_start(self) -> bytes:
        if self.output == "pcap":
            first = self._sources[0].header.linktype if self._sources else 1
            interface = Interface(linktype=first, snaplen=self.snaplen)
            return PcapEncoder(interface, nanosecond=self.nanosecond).header()
        encoder = PcapngEncoder("<")
        parts = [encoder.section_header(user_application=self.user_application)]
        written = 0
        for index, source in enumerate(self._sources):
            if source.columns:
                self._interface_ids[index] = written
                written += 1
                parts.append(encoder.interface(self.interfaces[index]))
        return b"".join(parts)

    def _round(self, counts: Sequence[int]) -> bytearray:
        """Merge and write the next counts[i] pending records of each source."""
        assert _native is not None
        ffi: Any = _native.ffi
        sources = self._sources
        pcapng = self.output == "pcapng"
        overhead = _PCAPNG_OVERHEAD if pcapng else _PCAP_OVERHEAD
        # Worst case: every record's bytes plus its header (and padding).
        size = sum(
            sum(s.columns.caplen[s.columns.start : s.columns.start + n]) + overhead * n
            for s, n in zip(sources, counts, strict=True)
        )
        out = bytearray(size)
        keep: list[Any] = []  # cdata views must outlive the call

        def pointers(name: str) -> Any:
            views = [ffi.from_buffer("int64_t[]", getattr(s.columns, name)) for s in sources]
            keep.extend(views)
            return ffi.new("int64_t *[]", views)

        buffers = [ffi.from_buffer("uint8_t[]", s.buffer) for s in sources]
        keep.extend(buffers)
        target = ffi.from_buffer("uint8_t[]", out, require_writable=True)
        keep.append(target)
        data_bytes = ffi.new("int64_t[]", len(sources))
        written = _native.lib.wc_merge_round(
            target,
            len(sources),
            ffi.new("uint8_t *[]", buffers),
            pointers("offset"),
            pointers("ts"),
            pointers("caplen"),
            pointers("orig_len"),
            pointers("key"),
            ffi.new("int64_t[]", [s.columns.start for s in sources]),
            ffi.new("int64_t[]", list(counts)),
            ffi.new("uint32_t[]", self._interface_ids),
            int(pcapng),
            int(self.nanosecond),
            data_bytes,
        )
        for view in keep:  # release the pins before anything is resized or closed
            ffi.release(view)
        for index, (source, count) in enumerate(zip(sources, counts, strict=True)):
            source.columns.start += count
            source.packets += count
            source.bytes += int(data_bytes[index])
        del out[written:]
        return out

"""Merging whole pcap files by copying record bytes: the fast path of `wirecap merge`.

`merge_packets` decodes every record into a `Packet` and the writer encodes it
again, about 2 µs of Python per packet. When every source is a classic pcap
file (draft-ietf-opsawg-pcap §4, §5), the merge needs far less:

1. *Scan*: walk each file's record headers to find where records start. This is
   the only step with Python per record (one `unpack_from` and one append).
2. *Order*: timestamps, lengths and merge order are computed with numpy over a
   block of records at a time: the merge is a stable sort of the blocks'
   keys, cut at a *cutoff* that no unscanned record can undercut.
3. *Copy*: records go out as slices of the input. pcap output copies a run of
   consecutive records of one file in one slice when the file's header format
   matches the output's; pcapng output packs each EPB head (§4.3 of
   draft-ietf-opsawg-pcapng) together with the previous EPB's padding and
   trailing length into one row of a numpy table, so a record costs two
   slices (head, packet bytes).

Ordering is exactly `merge_packets`': by timestamp, ties lower source index
first, then each source's own order; a source out of order in itself is never
reordered. The sort key of a record is the running maximum of its source's
timestamps (a heap merge treats a record older than its predecessor as if it
had its predecessor's time), which sorts each source and keeps it in its own
order, so a stable sort of the concatenated keys *is* the heap merge.

Blocks: each round scans up to `block_records` records per source. The cutoff
is the smallest last key among sources whose file is not fully scanned; every
record below it, in every source, is final (a source's later keys are at least
its last key) and is written; the rest waits. Equal keys at the cutoff wait
too, so ties across a block boundary keep the tie rule; if nothing is below the
cutoff (a block of one timestamp), the sources holding it scan further.

Pure: buffers in (bytes or mmap), bytes and events out. Memory is the blocks
being merged, whatever the files' sizes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from wirecap.core.formats.pcap import (
    FILE_HEADER_LEN,
    MAX_CAPLEN,
    RECORD_HEADER_LEN,
    PcapEncoder,
    PcapHeader,
)
from wirecap.core.formats.pcapng import BLOCK_EPB, PcapngEncoder
from wirecap.core.formats.record_scan import NATIVE, Buffer, gather, scan_offsets
from wirecap.core.formats.records import DEFAULT_SNAPLEN, Interface
from wirecap.errors import DecodeError, LimitExceededError, TruncatedError

__all__ = [
    "DEFAULT_BLOCK_RECORDS",
    "PcapFile",
    "RecordMerge",
    "SourceFailed",
    "SourceStats",
]

#: Records scanned per source per round. Large enough that numpy's per-call
#: cost vanishes; small enough that a round's tables and output (a few MiB)
#: come from memory the allocator reuses: with 65,536 every round mapped fresh
#: pages, and page faults tripled the system time of a merge.
DEFAULT_BLOCK_RECORDS = 16_384

Int64s = npt.NDArray[np.int64]

_NS = 1_000_000_000
# §5: the captured length is the third 32-bit field of a record header.
_CAPLEN_AT = 8
_U32 = {"<": struct.Struct("<I"), ">": struct.Struct(">I")}
# One pcapng output row: [pad word, previous total length | EPB head (7 words)].
_ROW_WORDS = 9
_ROW_BYTES = 4 * _ROW_WORDS
# EPB fixed part: 28-byte head + 4-byte trailing total length.
_EPB_FIXED = 32
_EPB_TAILS = tuple(struct.Struct(f"<{pad}xI").pack for pad in range(4))
_HEAD_BYTES = np.arange(RECORD_HEADER_LEN, dtype=np.int64)
# Rows of a source's pending table.
_KEY, _TS, _OFFSET, _CAPLEN, _ORIG_LEN = range(5)
_COLUMNS = 5


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


class _Source:
    """Scan position and the scanned records not written yet."""

    __slots__ = (
        "array",
        "big_endian",
        "buffer",
        "bytes",
        "caplen_at",
        "columns",
        "done",
        "error",
        "header",
        "last_key",
        "native",
        "packets",
        "pos",
        "size",
        "words",
    )

    def __init__(self, file: PcapFile, native: bool) -> None:
        self.native = native
        self.big_endian = file.header.byte_order == ">"
        self.buffer = file.buffer
        self.header = file.header
        # A view, not a copy: record headers are gathered from it with numpy.
        self.array = np.frombuffer(file.buffer, dtype=np.uint8)
        self.size = len(file.buffer)
        self.pos = FILE_HEADER_LEN
        self.done = self.size <= FILE_HEADER_LEN
        self.error: DecodeError | None = None
        self.caplen_at = _U32[file.header.byte_order].unpack_from
        self.words = np.dtype(file.header.byte_order + "u4")
        #: Pending records, one row each: key, ts, offset, caplen, orig_len.
        self.columns: Int64s = np.empty((_COLUMNS, 0), dtype=np.int64)
        self.last_key = -1
        self.packets = 0
        self.bytes = 0

    @property
    def pending(self) -> int:
        return int(self.columns.shape[1])

    def scan(self, limit: int) -> None:
        """Scan up to `limit` more records and append them to the pending columns."""
        offset, pos = scan_offsets(
            self.buffer, self.pos, big_endian=self.big_endian, limit=limit, native=self.native
        )
        self.pos = pos
        self._classify_stop(pos)
        if not len(offset):
            return
        # (sec, fraction, caplen, orig_len) of every record, gathered at once.
        heads = self.array[offset[:, None] + _HEAD_BYTES]
        fields = heads.view(self.words).astype(np.int64)
        ts = fields[:, 0] * _NS + fields[:, 1] * self.header.fraction_ns
        key = np.maximum.accumulate(np.maximum(ts, self.last_key))
        self.last_key = int(key[-1])
        scanned = np.stack((key, ts, offset, fields[:, 2], fields[:, 3]))
        self.columns = np.concatenate((self.columns, scanned), axis=1)

    def _classify_stop(self, pos: int) -> None:
        """Where scanning stopped: the end, damage (done, with the error), or more to come."""
        size = self.size
        if pos > size - RECORD_HEADER_LEN:
            self.done = True
            if pos < size:
                self.error = TruncatedError(
                    f"pcap stream ended inside a record ({size - pos} bytes left)"
                )
            return
        (caplen,) = self.caplen_at(self.buffer, pos + _CAPLEN_AT)
        if caplen > MAX_CAPLEN:
            self.done = True
            self.error = LimitExceededError(
                f"pcap record claims {caplen} captured bytes, more than MAX_CAPLEN {MAX_CAPLEN}"
            )
        elif pos + RECORD_HEADER_LEN + caplen > size:
            self.done = True
            self.error = TruncatedError(
                f"pcap stream ended inside a record ({size - pos} bytes left)"
            )

    def take(self, count: int) -> Int64s:
        """Remove and return the columns of the first `count` pending records."""
        taken = self.columns[:, :count]
        self.columns = self.columns[:, count:]
        self.packets += count
        self.bytes += int(taken[_CAPLEN].sum())
        return taken


class RecordMerge:
    """Merge pcap files into one pcap or pcapng stream, copying record bytes.

    Iterate to get the output: `bytes` chunks to write in order, and a
    `SourceFailed` where a source's damage was reached (its earlier records
    are in the output before it, as the decoding merge would have written
    them). `stats` counts what each source has had written so far.

    Args:
        files: the sources, in tie-break order.
        output: "pcap" (every source must share one link type: the caller checks)
            or "pcapng" (one IDB per source that has a record).
        interfaces: for pcapng, the IDB of each source (name, description).
        snaplen: the pcap output's announced snapshot length.
        block_records: records scanned per source per round.
        native: use the C loops of `record_scan` (when built; tests turn them off).
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
        native: bool = NATIVE,
    ) -> None:
        if block_records < 1:
            raise ValueError("block_records must be at least 1")
        if output == "pcapng" and (interfaces is None or len(interfaces) != len(files)):
            raise ValueError("pcapng output needs one Interface per file")
        if output == "pcap" and len({f.header.linktype for f in files}) > 1:
            raise ValueError("pcap output needs one link type across files")
        self.output = output
        self.interfaces = tuple(interfaces) if interfaces is not None else ()
        self.snaplen = snaplen
        self.user_application = user_application
        self.block_records = block_records
        self.native = native
        self._sources = [_Source(f, native) for f in files]
        # pcap output: nanoseconds unless every source counts microseconds, so
        # nothing is lost and a matching file's records are copied unchanged.
        self.nanosecond = any(f.header.nanosecond for f in files)
        # pcapng output: interface id per source, given in source order to
        # sources with a record; the previous EPB's (pad, total) still to write.
        self._interface_ids: dict[int, int] = {}
        self._tail: tuple[int, int] | None = None

    @property
    def stats(self) -> list[SourceStats]:
        """Records and bytes written so far from each source."""
        return [SourceStats(s.packets, s.bytes) for s in self._sources]

    def __iter__(self) -> Iterator[bytes | bytearray | SourceFailed]:
        sources = self._sources
        for source in sources:
            if not source.done:
                source.scan(self.block_records)
        yield self._file_start()
        reported: set[int] = set()
        while True:
            for index, source in enumerate(sources):
                if not source.done and source.pending < self.block_records:
                    source.scan(self.block_records)
                if source.done and not source.pending and index not in reported:
                    reported.add(index)
                    if source.error is not None:
                        yield SourceFailed(index, source.error)
            open_ = [s for s in sources if not s.done]
            if not open_ and all(not s.pending for s in sources):
                break
            if open_:
                cutoff = min(s.last_key for s in open_)
                counts = [
                    int(np.searchsorted(s.columns[_KEY], cutoff, side="left")) for s in sources
                ]
                if not any(counts):
                    # Only records at the cutoff are pending: scan past it.
                    for source in open_:
                        if source.last_key == cutoff:
                            source.scan(max(source.pending, self.block_records))
                    continue
            else:
                counts = [s.pending for s in sources]
            chunk = self._round(counts)
            if chunk:
                yield chunk
        tail = self._tail
        if tail is not None:
            self._tail = None
            yield _EPB_TAILS[tail[0]](tail[1])

    def _file_start(self) -> bytes:
        if self.output == "pcap":
            first = self._sources[0].header.linktype if self._sources else 1
            interface = Interface(linktype=first, snaplen=self.snaplen)
            return PcapEncoder(interface, nanosecond=self.nanosecond).header()
        encoder = PcapngEncoder("<")
        parts = [encoder.section_header(user_application=self.user_application)]
        for index, source in enumerate(self._sources):
            if source.pending:
                self._interface_ids[index] = len(self._interface_ids)
                parts.append(encoder.interface(self.interfaces[index]))
        return b"".join(parts)

    def _round(self, counts: Sequence[int]) -> bytes | bytearray:
        """Write the first counts[i] pending records of each source, merged."""
        tables, origins = [], []
        for index, (source, count) in enumerate(zip(self._sources, counts, strict=True)):
            if count:
                tables.append(source.take(count))
                origins.append(np.full(count, index, dtype=np.int64))
        if not tables:
            return b""
        table = np.concatenate(tables, axis=1)
        order = np.argsort(table[_KEY], kind="stable")
        table = table[:, order]
        origin = np.concatenate(origins)[order]
        ts, offset, caplen, orig_len = table[_TS], table[_OFFSET], table[_CAPLEN], table[_ORIG_LEN]
        if self.output == "pcapng":
            return self._pcapng(ts, offset, origin, caplen, orig_len)
        return self._pcap(ts, offset, origin, caplen, orig_len)

    def _pcap(
        self, ts: Int64s, offset: Int64s, origin: Int64s, caplen: Int64s, orig_len: Int64s
    ) -> bytes | bytearray:
        buffers = [s.buffer for s in self._sources]
        verbatim = all(
            s.header.byte_order == "<" and s.header.nanosecond == self.nanosecond
            for s in self._sources
        )
        if verbatim:
            # Records adjacent in one file go out as one range.
            end = offset + RECORD_HEADER_LEN + caplen
            breaks = np.flatnonzero((origin[1:] != origin[:-1]) | (offset[1:] != end[:-1])) + 1
            starts = np.concatenate(([0], breaks))
            stops = np.concatenate((breaks, [len(offset)])) - 1
            first = offset[starts]
            return gather(buffers, origin[starts], first, end[stops] - first, native=self.native)
        divisor = 1 if self.nanosecond else 1000
        sec, frac = np.divmod(ts, _NS)
        heads = np.stack((sec, frac // divisor, caplen, orig_len), axis=1).astype("<u4").tobytes()
        count = len(ts)
        # Ranges: record i's new header from `heads` (buffer 0), then its bytes.
        which = np.empty(2 * count, dtype=np.int64)
        which[0::2] = 0
        which[1::2] = origin + 1
        start = np.empty(2 * count, dtype=np.int64)
        start[0::2] = np.arange(count, dtype=np.int64) * RECORD_HEADER_LEN
        start[1::2] = offset + RECORD_HEADER_LEN
        length = np.empty(2 * count, dtype=np.int64)
        length[0::2] = RECORD_HEADER_LEN
        length[1::2] = caplen
        return gather([heads, *buffers], which, start, length, native=self.native)

    def _pcapng(
        self, ts: Int64s, offset: Int64s, origin: Int64s, caplen: Int64s, orig_len: Int64s
    ) -> bytes | bytearray:
        count = len(ts)
        pad = -caplen & 3
        total = _EPB_FIXED + caplen + pad
        ids = np.zeros(len(self._sources), dtype=np.int64)
        for index, output_id in self._interface_ids.items():
            ids[index] = output_id
        rows = np.zeros((count, _ROW_WORDS), dtype="<u4")
        # Word 0 stays zero: the previous EPB's padding is taken from its end.
        rows[1:, 1] = total[:-1]
        rows[:, 2] = BLOCK_EPB
        rows[:, 3] = total
        rows[:, 4] = ids[origin]
        rows[:, 5] = ts >> 32
        rows[:, 6] = ts & 0xFFFFFFFF
        rows[:, 7] = caplen
        rows[:, 8] = orig_len
        row_start = np.arange(count, dtype=np.int64) * _ROW_BYTES
        head_start = row_start + 4
        head_start[1:] -= pad[:-1]
        if self._tail is not None:
            previous_pad, previous_total = self._tail
            rows[0, 1] = previous_total
            head_start[0] = 4 - previous_pad
        else:
            head_start[0] = 2 * 4  # no previous EPB: start at the head
        self._tail = (int(pad[-1]), int(total[-1]))
        # Ranges: EPB i's head (with EPB i-1's tail) from `rows` (buffer 0), then its bytes.
        which = np.empty(2 * count, dtype=np.int64)
        which[0::2] = 0
        which[1::2] = origin + 1
        start = np.empty(2 * count, dtype=np.int64)
        start[0::2] = head_start
        start[1::2] = offset + RECORD_HEADER_LEN
        length = np.empty(2 * count, dtype=np.int64)
        length[0::2] = row_start + _ROW_BYTES - head_start
        length[1::2] = caplen
        buffers = [s.buffer for s in self._sources]
        return gather([rows.tobytes(), *buffers], which, start, length, native=self.native)

"""Merging captures by timestamp: k-way for files, watermarked for live streams.

Three pieces, all pure (packets and `now` in, packets and bytes out):

- `merge_packets`: a streaming k-way merge of already-sorted packet sources,
  for files. It holds one packet per source in a heap, so memory does not grow
  with the captures.
- `LiveMerger`: the same ordering for streams that arrive over time (the
  `wirecap merge` client of many workers). A packet is released once no live
  source can still send an older one: its timestamp is at or below the
  *watermark*, the minimum over live sources of the newest timestamp each has
  shown (a packet, or a heartbeat from `advance`). A source that stays quiet
  would stall everything, so `max_delay_ns` bounds how long any packet waits,
  and `max_buffered` bounds how many wait at all.
- `PcapngMergeWriter` / `merge_to_pcapng`: write the merged packets as pcapng
  with one IDB per (source, interface), so which host and interface a packet
  came from survives the merge.

Tie-break (both merges): equal timestamps come out lower source index first,
then in the order each source delivered them. This makes every merge
deterministic and stable.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace

from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.records import (
    DecryptionSecrets,
    Event,
    Interface,
    InterfaceStatistics,
    NameResolution,
    Packet,
    SectionStart,
)

__all__ = [
    "DEFAULT_MAX_BUFFERED",
    "LiveMerger",
    "PcapngMergeWriter",
    "PushResult",
    "merge_packets",
    "merge_to_pcapng",
]

#: Packets a LiveMerger holds before it releases the oldest regardless of the
#: watermark. 100 000 full-size (1514-byte) frames are about 150 MB: a second
#: of several busy gigabit workers, and still a bounded amount of memory when
#: one worker's clock runs far behind the others.
DEFAULT_MAX_BUFFERED = 100_000


def merge_packets(sources: Sequence[Iterable[Packet]]) -> Iterator[tuple[int, Packet]]:
    """Merge per-source packet streams by `ts_ns`, yielding (source index, packet).

    Each source should be in timestamp order (a capture file usually is); the
    merge never reorders within a source, so an unsorted source comes out in
    its own order, as mergecap does. Ties: lower source index first, then the
    source's own order. Sources are consumed lazily, one packet ahead each.
    """
    iterators = [iter(source) for source in sources]
    # (ts, source index) is unique in the heap, since each source has at most
    # one packet in it; so the packet itself is never compared.
    heap: list[tuple[int, int, Packet]] = []
    for index, iterator in enumerate(iterators):
        first = next(iterator, None)
        if first is not None:
            heap.append((first.ts_ns, index, first))
    heapq.heapify(heap)
    while heap:
        _ts, index, packet = heap[0]
        yield index, packet
        following = next(iterators[index], None)
        if following is None:
            heapq.heappop(heap)
        else:
            heapq.heapreplace(heap, (following.ts_ns, index, following))


class PushResult(enum.Enum):
    """What `LiveMerger.push` did with a packet."""

    #: Held until the watermark (or max_delay, or the buffer bound) releases it.
    BUFFERED = "buffered"
    #: Older than a packet already released: not buffered, since releasing it
    #: would break the output order. The caller decides (count, log, write anyway).
    LATE = "late"


@dataclass(slots=True)
class _Waiting:
    """A buffered packet; `released` lets the arrival queue skip it lazily."""

    ts_ns: int
    packet: Packet
    arrival_ns: int
    released: bool = False


@dataclass(slots=True)
class _Source:
    #: Newest timestamp the source has shown (packet or heartbeat); None before any.
    horizon: int | None = None
    finished: bool = False


class LiveMerger:
    """Timestamp-ordered merge of live packet streams, driven by the caller.

    The caller adds a source per stream, pushes packets as they are decoded,
    may announce heartbeats with `advance`, calls `finish` when a stream ends,
    and calls `pop_ready(now_ns=...)` after each batch to take what can go out.
    `now_ns` is only compared with the `now_ns` given to `push`, so any
    monotonic clock works (it must not go backwards); the merger never reads one.

    Guarantees:

    - released packets never go back in time: each has ts_ns >= every packet
      released before it (late arrivals are refused, see `PushResult.LATE`);
    - a packet is released when ts_ns <= watermark, the minimum horizon over
      live (unfinished) sources; with no live source left, everything is;
    - with `max_delay_ns`, no packet stays buffered longer than that after
      arriving (`pop_ready` releases it, and every older one with it);
    - after `pop_ready`, at most `max_buffered` packets stay buffered.

    Args:
        max_delay_ns: longest a packet may wait for a quiet source; None: no bound.
        max_buffered: most packets held after `pop_ready` (DEFAULT_MAX_BUFFERED).
    """

    __slots__ = (
        "_arrivals",
        "_heap",
        "_released_ts",
        "_seq",
        "_sources",
        "late_packets",
        "max_buffered",
        "max_delay_ns",
    )

    def __init__(
        self, *, max_delay_ns: int | None = None, max_buffered: int = DEFAULT_MAX_BUFFERED
    ) -> None:
        if max_buffered < 1:
            raise ValueError("max_buffered must be at least 1")
        if max_delay_ns is not None and max_delay_ns < 0:
            raise ValueError("max_delay_ns must not be negative")
        self.max_delay_ns = max_delay_ns
        self.max_buffered = max_buffered
        #: Packets refused because they were older than one already released.
        self.late_packets = 0
        self._sources: list[_Source] = []
        # (ts, source, push sequence, entry): the sequence makes keys unique,
        # so entries are never compared, and keeps each source's own order.
        self._heap: list[tuple[int, int, int, _Waiting]] = []
        self._arrivals: deque[_Waiting] = deque()
        self._seq = 0
        self._released_ts: int | None = None

    @property
    def buffered(self) -> int:
        """Packets pushed and not yet released."""
        return len(self._heap)

    @property
    def watermark(self) -> int | None:
        """Packets at or below this timestamp are ready by ordering alone.

        None while some live source has shown nothing yet, or when no source is
        live (then `pop_ready` releases everything).
        """
        horizons = [state.horizon for state in self._sources if not state.finished]
        if not horizons or None in horizons:
            return None
        return min(h for h in horizons if h is not None)

    @property
    def released_ts(self) -> int | None:
        """Timestamp of the last packet released: pushes older than this are late."""
        return self._released_ts

    def add_source(self) -> int:
        """Register a stream; returns its index (0, 1, ...: the tie-break order)."""
        self._sources.append(_Source())
        return len(self._sources) - 1

    def _live(self, source: int) -> _Source:
        state = self._sources[source]
        if state.finished:
            raise ValueError(f"source {source} is already finished")
        return state

    def push(self, source: int, packet: Packet, *, now_ns: int) -> PushResult:
        """Offer one packet from `source`, arriving at `now_ns`."""
        state = self._live(source)
        ts = packet.ts_ns
        if state.horizon is None or ts > state.horizon:
            state.horizon = ts
        if self._released_ts is not None and ts < self._released_ts:
            self.late_packets += 1
            return PushResult.LATE
        entry = _Waiting(ts, packet, now_ns)
        self._seq += 1
        heapq.heappush(self._heap, (ts, source, self._seq, entry))
        if self.max_delay_ns is not None:
            self._arrivals.append(entry)
        return PushResult.BUFFERED

    def push_many(self, source: int, packets: Sequence[Packet], *, now_ns: int) -> list[Packet]:
        """`push` each of `packets` (in their order); returns the LATE ones.

        The same as pushing them one by one, in one loop: a live merge takes a
        whole decoded chunk of a stream at once.
        """
        state = self._live(source)
        heap, arrivals = self._heap, self._arrivals
        released = self._released_ts
        track = self.max_delay_ns is not None
        horizon = state.horizon
        seq = self._seq
        late: list[Packet] = []
        for packet in packets:
            ts = packet.ts_ns
            if horizon is None or ts > horizon:
                horizon = ts
            if released is not None and ts < released:
                late.append(packet)
                continue
            entry = _Waiting(ts, packet, now_ns)
            seq += 1
            heapq.heappush(heap, (ts, source, seq, entry))
            if track:
                arrivals.append(entry)
        state.horizon = horizon
        self._seq = seq
        self.late_packets += len(late)
        return late

    def advance(self, source: int, ts_ns: int) -> None:
        """Heartbeat: `source` will send nothing older than `ts_ns` from now on."""
        state = self._live(source)
        if state.horizon is None or ts_ns > state.horizon:
            state.horizon = ts_ns

    def finish(self, source: int) -> None:
        """`source` has ended: it no longer holds the watermark back."""
        self._live(source).finished = True

    def pop_ready(self, *, now_ns: int) -> list[tuple[int, Packet]]:
        """Release, in order, every packet that may go out now, as (source, packet)."""
        if all(state.finished for state in self._sources):
            return self.drain()
        limit = self._limit(now_ns)
        heap = self._heap
        released: list[tuple[int, Packet]] = []
        while heap and (
            (limit is not None and heap[0][0] <= limit) or len(heap) > self.max_buffered
        ):
            ts, source, _seq, entry = heapq.heappop(heap)
            entry.released = True
            self._released_ts = ts
            released.append((source, entry.packet))
        return released

    def drain(self) -> list[tuple[int, Packet]]:
        """Release everything still buffered, in order (at shutdown)."""
        released: list[tuple[int, Packet]] = []
        while self._heap:
            ts, source, _seq, entry = heapq.heappop(self._heap)
            entry.released = True
            self._released_ts = ts
            released.append((source, entry.packet))
        self._arrivals.clear()
        return released

    def _limit(self, now_ns: int) -> int | None:
        """The highest timestamp that may be released now."""
        limit = self.watermark
        if self.max_delay_ns is None:
            return limit
        # Packets that arrived max_delay ago or earlier are overdue: the newest
        # timestamp among them is released, and with it everything older, so
        # the output stays in order. Arrivals are in push order, so the overdue
        # ones are a prefix; released ones are dropped from it lazily.
        deadline = now_ns - self.max_delay_ns
        arrivals = self._arrivals
        while arrivals and (arrivals[0].released or arrivals[0].arrival_ns <= deadline):
            entry = arrivals.popleft()
            if not entry.released and (limit is None or entry.ts_ns > limit):
                limit = entry.ts_ns
        return limit


class PcapngMergeWriter:
    """Write packets from several captures as one pcapng section, keeping interfaces apart.

    Each (source, interface) pair gets its own IDB in the output, written just
    before the first block that needs it, and packets and statistics are
    renumbered to it. pcapng numbers interfaces by the order of their IDBs
    (draft-ietf-opsawg-pcapng §4.2), so an output id is given when the IDB is
    written, not when the interface is registered; an interface no block
    ever refers to is not written at all. The SHB is written before the first
    block.

    Args:
        labels: optional per-source labels; a label is put in front of the
            if_description of that source's interfaces ("worker-a: ..."), so a
            reader sees which source an interface came from.
        comment, user_application: SHB options of the output.
    """

    __slots__ = (
        "_encoder",
        "_local_counts",
        "_output_ids",
        "_registered",
        "_started",
        "_written",
        "comment",
        "labels",
        "user_application",
    )

    def __init__(
        self,
        *,
        labels: Sequence[str] | None = None,
        comment: str | None = None,
        user_application: str | None = "wirecap",
    ) -> None:
        self.labels = tuple(labels) if labels is not None else None
        self.comment = comment
        self.user_application = user_application
        self._encoder = PcapngEncoder("<")
        self._started = False
        # (source, local id in the source's current section) -> its interface
        self._registered: dict[tuple[int, int], Interface] = {}
        # (source, local id) -> output id, for interfaces whose IDB is written
        self._output_ids: dict[tuple[int, int], int] = {}
        self._local_counts: dict[int, int] = {}
        self._written = 0

    @property
    def interface_ids(self) -> dict[tuple[int, int], int]:
        """(source, local interface id) -> output interface id, for IDBs written so far."""
        return dict(self._output_ids)

    def start_section(self, source: int) -> None:
        """`source` began a new section: its interface ids count from 0 again."""
        self._local_counts[source] = 0
        for mapping in (self._registered, self._output_ids):
            for key in [key for key in mapping if key[0] == source]:
                del mapping[key]

    def add_interface(self, source: int, interface: Interface) -> None:
        """Register the next interface of `source` (local ids 0, 1, ... per section).

        Nothing is written yet: the IDB goes out before its first packet.
        """
        local = self._local_counts.get(source, 0)
        self._local_counts[source] = local + 1
        if self.labels is not None and source < len(self.labels):
            label = self.labels[source]
            text = label if interface.description is None else f"{label}: {interface.description}"
            interface = replace(interface, description=text)
        self._registered[(source, local)] = interface

    def packet(self, source: int, packet: Packet) -> bytes:
        """EPB for a packet of `source`, preceded by whatever must come first."""
        output_id, prefix = self._resolve(source, packet.interface_id)
        return prefix + self._encoder.packet(packet, interface_id=output_id)

    def statistics(self, source: int, statistics: InterfaceStatistics) -> bytes:
        """ISB for an interface of `source`."""
        output_id, prefix = self._resolve(source, statistics.interface_id)
        return prefix + self._encoder.statistics(replace(statistics, interface_id=output_id))

    def secrets(self, secrets: DecryptionSecrets) -> bytes:
        """DSB: secrets are not tied to an interface."""
        return self._header() + self._encoder.secrets(secrets)

    def name_resolution(self, names: NameResolution) -> bytes:
        """NRB: names are not tied to an interface."""
        return self._header() + self._encoder.name_resolution(names)

    def event(self, source: int, event: Event) -> bytes:
        """Route any decoded event of `source`; returns the bytes to write (maybe none)."""
        if isinstance(event, Packet):
            return self.packet(source, event)
        if isinstance(event, Interface):
            self.add_interface(source, event)
            return b""
        if isinstance(event, SectionStart):
            self.start_section(source)
            return b""
        if isinstance(event, InterfaceStatistics):
            return self.statistics(source, event)
        if isinstance(event, DecryptionSecrets):
            return self.secrets(event)
        return self.name_resolution(event)

    def _header(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._encoder.section_header(
            comment=self.comment, user_application=self.user_application
        )

    def _resolve(self, source: int, local_id: int) -> tuple[int, bytes]:
        key = (source, local_id)
        output_id = self._output_ids.get(key)
        if output_id is not None:
            return output_id, b""
        interface = self._registered.get(key)
        if interface is None:
            raise ValueError(f"source {source} has no interface {local_id}: add_interface first")
        prefix = self._header() + self._encoder.interface(interface)
        output_id = self._written
        self._written += 1
        self._output_ids[key] = output_id
        return output_id, prefix


def merge_to_pcapng(
    sources: Sequence[Iterable[Event]],
    *,
    labels: Sequence[str] | None = None,
    comment: str | None = None,
) -> Iterator[bytes]:
    """Merge decoded captures (e.g. `read_file` of each) into one pcapng byte stream.

    Packets are merged by `merge_packets` (same tie-break); every other event
    is written when its source reaches it: interfaces become IDBs before their
    first packet, secrets and statistics go out in the source's order relative
    to its own packets, so a DSB still precedes the packets it decrypts.
    """
    writer = PcapngMergeWriter(labels=labels, comment=comment)
    side: list[bytes] = []

    def packets_of(index: int, events: Iterable[Event]) -> Iterator[Packet]:
        for event in events:
            if isinstance(event, Packet):
                yield event
            else:
                out = writer.event(index, event)
                if out:
                    side.append(out)

    streams = [packets_of(index, events) for index, events in enumerate(sources)]
    for index, packet in merge_packets(streams):
        if side:
            yield b"".join(side)
            side.clear()
        yield writer.packet(index, packet)
    if side:
        yield b"".join(side)

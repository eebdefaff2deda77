"""Timestamp merges: k-way file merge, live watermark merge, multi-interface pcapng output."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.core.formats.decoder import CaptureDecoder
from wirecap.core.formats.merge import (
    LiveMerger,
    PcapngMergeWriter,
    PushResult,
    merge_packets,
    merge_to_pcapng,
)
from wirecap.core.formats.pcap import PcapEncoder
from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.reader import read_file
from wirecap.core.formats.records import (
    SECRETS_TLS_KEY_LOG,
    DecryptionSecrets,
    Event,
    Interface,
    InterfaceStatistics,
    Packet,
    SectionStart,
)

TS = 1_700_000_000_000_000_000


def _tagged(source: int, index: int, ts: int, interface_id: int = 0) -> Packet:
    """A packet whose bytes say where it came from."""
    return Packet(ts_ns=ts, data=bytes([source, index]), orig_len=2, interface_id=interface_id)


def _tag(packet: Packet) -> tuple[int, int]:
    return packet.data[0], packet.data[1]


# --------------------------------------------------------------------------
# merge_packets

sources_st = st.lists(st.lists(st.integers(0, 20), max_size=12).map(sorted), min_size=0, max_size=5)


@given(timestamps=sources_st)
def test_merge_packets_is_a_sorted_stable_permutation(timestamps: list[list[int]]) -> None:
    sources = [[_tagged(s, i, ts) for i, ts in enumerate(tss)] for s, tss in enumerate(timestamps)]
    merged = list(merge_packets(sources))
    # A permutation of the input, each packet reported with its own source.
    assert sorted(_tag(p) for _, p in merged) == sorted(
        (s, i) for s, tss in enumerate(timestamps) for i in range(len(tss))
    )
    assert all(_tag(p)[0] == source for source, p in merged)
    # Sorted by timestamp; ties by source index, then by order within the source.
    keys = [(p.ts_ns, *_tag(p)) for _, p in merged]
    assert keys == sorted(keys)


def test_merge_packets_keeps_an_unsorted_source_in_its_own_order() -> None:
    unsorted = [_tagged(0, 0, 30), _tagged(0, 1, 10)]
    merged = [_tag(p) for _, p in merge_packets([unsorted, [_tagged(1, 0, 20)]])]
    assert merged == [(1, 0), (0, 0), (0, 1)]


def test_merge_packets_pulls_sources_lazily() -> None:
    pulled: list[int] = []

    def source(index: int) -> Iterator[Packet]:
        for i in range(3):
            pulled.append(index)
            yield _tagged(index, i, TS + i * 10 + index)

    merged = merge_packets([source(0), source(1)])
    assert _tag(next(merged)[1]) == (0, 0)
    assert pulled == [0, 1]  # one packet ahead per source, not the whole input


# --------------------------------------------------------------------------
# LiveMerger


def test_LiveMerger_waits_for_every_live_source() -> None:
    merger = LiveMerger()
    a, b = merger.add_source(), merger.add_source()
    assert merger.push(a, _tagged(a, 0, 10), now_ns=0) is PushResult.BUFFERED
    assert merger.push(a, _tagged(a, 1, 20), now_ns=0) is PushResult.BUFFERED
    assert merger.pop_ready(now_ns=0) == []  # b has said nothing: it may still send ts 5
    assert merger.watermark is None
    merger.advance(b, 15)  # heartbeat: b sends nothing older than 15
    assert merger.watermark == 15
    assert [_tag(p) for _, p in merger.pop_ready(now_ns=0)] == [(a, 0)]
    merger.push(b, _tagged(b, 0, 20), now_ns=0)
    assert [(s, _tag(p)) for s, p in merger.pop_ready(now_ns=0)] == [(a, (a, 1)), (b, (b, 0))]
    merger.finish(a)
    merger.push(b, _tagged(b, 1, 99), now_ns=0)
    assert [_tag(p) for _, p in merger.pop_ready(now_ns=0)] == [(b, 1)]


def test_LiveMerger_refuses_late_packets_instead_of_reordering() -> None:
    merger = LiveMerger()
    a = merger.add_source()
    merger.push(a, _tagged(a, 0, 50), now_ns=0)
    assert len(merger.pop_ready(now_ns=0)) == 1
    assert merger.push(a, _tagged(a, 1, 49), now_ns=0) is PushResult.LATE
    assert merger.push(a, _tagged(a, 2, 50), now_ns=0) is PushResult.BUFFERED  # equal: in order
    assert merger.late_packets == 1
    assert merger.released_ts == 50


def test_LiveMerger_max_delay_releases_what_a_quiet_source_holds_back() -> None:
    merger = LiveMerger(max_delay_ns=1_000)
    a, _quiet = merger.add_source(), merger.add_source()
    merger.push(a, _tagged(a, 0, 10), now_ns=100)
    merger.push(a, _tagged(a, 1, 30), now_ns=600)
    merger.push(a, _tagged(a, 2, 20), now_ns=700)  # a's own disorder is kept sorted
    assert merger.pop_ready(now_ns=1_099) == []
    assert [_tag(p) for _, p in merger.pop_ready(now_ns=1_100)] == [(a, 0)]
    # The packet that arrived at 600 is overdue at 1600; the older one (ts 20) goes with it.
    assert [_tag(p) for _, p in merger.pop_ready(now_ns=1_600)] == [(a, 2), (a, 1)]
    assert merger.buffered == 0


def test_LiveMerger_buffer_bound_releases_the_oldest() -> None:
    merger = LiveMerger(max_buffered=3)
    a, _quiet = merger.add_source(), merger.add_source()
    for i in range(5):
        merger.push(a, _tagged(a, i, 100 - i), now_ns=0)
    assert [_tag(p) for _, p in merger.pop_ready(now_ns=0)] == [(a, 4), (a, 3)]
    assert merger.buffered == 3


def test_LiveMerger_drain_and_finished_sources() -> None:
    merger = LiveMerger()
    a = merger.add_source()
    merger.push(a, _tagged(a, 0, 5), now_ns=0)
    merger.push(a, _tagged(a, 1, 1), now_ns=0)
    assert [_tag(p) for _, p in merger.drain()] == [(a, 1), (a, 0)]
    merger.finish(a)
    with pytest.raises(ValueError, match="finished"):
        merger.push(a, _tagged(a, 2, 9), now_ns=0)
    with pytest.raises(ValueError):
        LiveMerger(max_buffered=0)


ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.integers(0, 2), st.integers(0, 60)),
        st.tuples(st.just("advance"), st.integers(0, 2), st.integers(0, 60)),
        st.tuples(st.just("finish"), st.integers(0, 2), st.just(0)),
        st.tuples(st.just("pop"), st.just(0), st.integers(0, 400)),
    ),
    max_size=60,
)


@given(
    ops=ops_st,
    max_delay=st.none() | st.integers(0, 500),
    max_buffered=st.integers(1, 8) | st.just(1000),
)
def test_LiveMerger_invariants(
    ops: list[tuple[str, int, int]], max_delay: int | None, max_buffered: int
) -> None:
    merger = LiveMerger(max_delay_ns=max_delay, max_buffered=max_buffered)
    sources = [merger.add_source() for _ in range(3)]
    finished: set[int] = set()
    arrival: dict[tuple[int, int], int] = {}
    accepted: list[tuple[int, int]] = []
    released: list[Packet] = []
    now = 0
    counter = 0

    def pop() -> None:
        watermark = merger.watermark
        live = len(finished) < len(sources)
        was_buffered = merger.buffered
        batch = merger.pop_ready(now_ns=now)
        for source, packet in batch:
            assert _tag(packet)[0] == source
            # Never back in time.
            if released:
                assert packet.ts_ns >= released[-1].ts_ns
            released.append(packet)
        if live and max_delay is None and max_buffered >= was_buffered:
            # Only the watermark released these.
            assert all(watermark is not None and p.ts_ns <= watermark for _, p in batch)
        assert merger.buffered <= max_buffered
        if max_delay is not None:
            out = {_tag(p) for p in released}
            for tag, arrived in arrival.items():
                if tag not in out:
                    assert arrived > now - max_delay

    for op, source, value in ops:
        if op == "push" and source not in finished:
            counter += 1
            tag = (source, counter % 256)
            result = merger.push(source, _tagged(source, tag[1], value), now_ns=now)
            if result is PushResult.LATE:
                assert released and value < released[-1].ts_ns
            else:
                accepted.append(tag)
                arrival[tag] = now
        elif op == "advance" and source not in finished:
            merger.advance(source, value)
        elif op == "finish" and source not in finished:
            merger.finish(source)
            finished.add(source)
        elif op == "pop":
            now += value
            pop()
    for source in sources:
        if source not in finished:
            merger.finish(source)
            finished.add(source)
    pop()
    assert merger.buffered == 0
    assert sorted(_tag(p) for p in released) == sorted(accepted)


# --------------------------------------------------------------------------
# Multi-interface pcapng output


def _pcap_events(source: int, timestamps: list[int], name: str) -> list[Event]:
    return [
        SectionStart("pcap", False, (2, 4)),
        Interface(linktype=1, name=name),
        *(_tagged(source, i, ts) for i, ts in enumerate(timestamps)),
    ]


def _decode(data: bytes) -> list[Event]:
    decoder = CaptureDecoder()
    decoder.feed(data)
    events = list(decoder.events())
    decoder.close()
    return events


def test_merge_to_pcapng_gives_each_source_interface_its_own_idb() -> None:
    two_interfaces: list[Event] = [
        SectionStart("pcapng", False, (1, 0)),
        Interface(linktype=1, name="eth0", description="uplink"),
        Interface(linktype=276, name="any"),
        DecryptionSecrets(SECRETS_TLS_KEY_LOG, b"keys\n"),
        _tagged(2, 0, TS + 5, interface_id=1),
        _tagged(2, 1, TS + 6, interface_id=0),
        InterfaceStatistics(1, TS + 7, received=2, dropped=0),
        # A second section: its interface 0 is a new interface.
        SectionStart("pcapng", True, (1, 0)),
        Interface(linktype=101, name="tun0"),
        _tagged(2, 2, TS + 8, interface_id=0),
    ]
    sources = [
        _pcap_events(0, [TS + 1, TS + 6], "eth0"),
        _pcap_events(1, [TS + 2, TS + 9], "eth0"),
        two_interfaces,
    ]
    out = b"".join(merge_to_pcapng(sources, labels=["host-a", "host-b", "host-c"]))
    events = _decode(out)
    interfaces = [e for e in events if isinstance(e, Interface)]
    assert [(i.name, i.description) for i in interfaces] == [
        ("eth0", "host-a"),
        ("eth0", "host-b"),
        ("any", "host-c"),
        ("eth0", "host-c: uplink"),
        ("tun0", "host-c"),
    ]
    packets = [e for e in events if isinstance(e, Packet)]
    assert [p.ts_ns - TS for p in packets] == [1, 2, 5, 6, 6, 8, 9]
    # Each packet's interface is the IDB of the source and interface it came from.
    where = {_tag(p): (interfaces[p.interface_id].name, interfaces[p.interface_id].description)
             for p in packets}  # fmt: skip
    assert where[(2, 0)] == ("any", "host-c")
    assert where[(2, 1)] == ("eth0", "host-c: uplink")
    assert where[(2, 2)] == ("tun0", "host-c")
    assert where[(1, 1)] == ("eth0", "host-b")
    # Tie at TS + 6: source 0 before source 2.
    assert [_tag(p) for p in packets[3:5]] == [(0, 1), (2, 1)]
    # The DSB comes before the packets after it in its source; the ISB is renumbered.
    secrets_at = next(i for i, e in enumerate(events) if isinstance(e, DecryptionSecrets))
    assert secrets_at < events.index(_tagged(2, 0, TS + 5, interface_id=2))
    stats = [e for e in events if isinstance(e, InterfaceStatistics)]
    assert stats == [InterfaceStatistics(2, TS + 7, received=2, dropped=0)]


def test_PcapngMergeWriter_refuses_an_unknown_interface() -> None:
    writer = PcapngMergeWriter()
    writer.add_interface(0, Interface(linktype=1))
    assert writer.interface_ids == {}
    writer.packet(0, _tagged(0, 0, TS))
    assert writer.interface_ids == {(0, 0): 0}
    with pytest.raises(ValueError, match="no interface 1"):
        writer.packet(0, _tagged(0, 0, TS, interface_id=1))
    with pytest.raises(ValueError, match="source 1"):
        writer.packet(1, _tagged(1, 0, TS))


def test_merged_file_matches_mergecap_and_reads_in_tshark(
    tmp_path: Path, run_tool: Callable[..., str]
) -> None:
    paths = []
    for source, step in enumerate((3, 5, 7)):
        encoder = PcapEncoder(Interface(linktype=1))
        packets = [_tagged(source, i, TS + i * step * 1000 + source) for i in range(20)]
        path = tmp_path / f"in{source}.pcap"
        path.write_bytes(encoder.header() + b"".join(encoder.packet(p) for p in packets))
        paths.append(path)
    ours = tmp_path / "ours.pcapng"
    ours.write_bytes(
        b"".join(merge_to_pcapng([read_file(p) for p in paths], labels=["a", "b", "c"]))
    )
    theirs = tmp_path / "mergecap.pcapng"
    run_tool("mergecap", "-w", str(theirs), *map(str, paths))

    def timeline(path: Path) -> list[tuple[int, bytes]]:
        return [(e.ts_ns, e.data) for e in read_file(path) if isinstance(e, Packet)]

    assert timeline(ours) == timeline(theirs)
    assert "Strict time order:   True" in run_tool("capinfos", str(ours))
    fields = run_tool(
        "tshark", "-r", str(ours), "-T", "fields", "-e", "frame.interface_description"
    )
    assert [line for line in fields.splitlines()][:3] == ["a", "b", "c"]
    assert sorted(set(fields.split())) == ["a", "b", "c"]


def test_merge_writer_output_is_a_valid_pcapng_for_PcapngEncoder_round_trip() -> None:
    writer = PcapngMergeWriter(comment="merged")
    writer.start_section(0)
    writer.add_interface(0, Interface(linktype=1, name="x"))
    out = writer.packet(0, _tagged(0, 0, TS)) + writer.packet(0, _tagged(0, 1, TS + 1))
    expected = PcapngEncoder()
    assert out == (
        expected.section_header(comment="merged", user_application="wirecap")
        + expected.interface(Interface(linktype=1, name="x"))
        + expected.packet(_tagged(0, 0, TS))
        + expected.packet(_tagged(0, 1, TS + 1))
    )


@given(
    batches=st.lists(
        st.tuples(st.integers(0, 2), st.lists(st.integers(0, 30), max_size=6)), max_size=12
    ),
    delay=st.sampled_from([None, 0, 5]),
)
def test_push_many_is_pushing_one_by_one(
    batches: list[tuple[int, list[int]]], delay: int | None
) -> None:
    """A run of packets given at once ends the same as given one at a time:
    same late packets, same releases, same counters."""
    one, many = LiveMerger(max_delay_ns=delay), LiveMerger(max_delay_ns=delay)
    for merger in (one, many):
        for _ in range(3):
            merger.add_source()
    released_one: list[tuple[int, Packet]] = []
    released_many: list[tuple[int, Packet]] = []
    for now, (source, stamps) in enumerate(batches):
        packets = [_tagged(source, i, ts) for i, ts in enumerate(stamps)]
        late_one = [p for p in packets if one.push(source, p, now_ns=now) is PushResult.LATE]
        assert many.push_many(source, packets, now_ns=now) == late_one
        released_one += one.pop_ready(now_ns=now)
        released_many += many.pop_ready(now_ns=now)
        assert (one.watermark, one.buffered, one.late_packets) == (
            many.watermark,
            many.buffered,
            many.late_packets,
        )
    assert released_one + one.drain() == released_many + many.drain()

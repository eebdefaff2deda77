"""The record-copying pcap merge must give exactly what decoding + merge_packets gives."""

from __future__ import annotations

import mmap
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.core.formats.decoder import CaptureDecoder
from wirecap.core.formats.merge import merge_packets
from wirecap.core.formats.pcap import MAX_CAPLEN, PcapEncoder, decode_file_header
from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.record_merge import (
    MAX_SOURCES,
    NATIVE,
    PcapFile,
    PcapngFile,
    RecordMerge,
    SourceFailed,
    SourceStats,
    pcapng_copyable,
)
from wirecap.core.formats.records import (
    SECRETS_TLS_KEY_LOG,
    DecryptionSecrets,
    Interface,
    InterfaceStatistics,
    Packet,
    SectionStart,
)
from wirecap.errors import DecodeError, LimitExceededError, TruncatedError

ETH = Interface(linktype=1, snaplen=65535)
BASE = 1_700_000_000_000_000_000


def _encode(packets: list[Packet], *, nanosecond: bool, order: str) -> bytes:
    encoder = PcapEncoder(ETH, nanosecond=nanosecond, byte_order=order)  # type: ignore[arg-type]
    return encoder.header() + b"".join(encoder.packet(p) for p in packets)


def _decode(data: bytes) -> tuple[list[Packet], list[object]]:
    """Packets up to the first damage, and the other events (pcapng: interfaces)."""
    decoder = CaptureDecoder()
    decoder.feed(data)
    packets: list[Packet] = []
    others: list[object] = []
    try:
        decoder.close()
        for event in decoder.events():
            if isinstance(event, Packet):
                packets.append(event)
            else:
                others.append(event)
    except DecodeError:
        pass
    return packets, others


def _prefix(data: bytes) -> list[Packet]:
    """Packets a damaged pcap file holds before its damage (decoded one by one)."""
    decoder = CaptureDecoder()
    decoder.feed(data)
    packets = []
    try:
        for event in decoder.events():
            if isinstance(event, Packet):
                packets.append(event)
    except DecodeError:
        pass
    return packets


def _source(data: bytes) -> PcapFile | PcapngFile:
    return (
        PcapngFile(data)
        if data[:4] == b"\x0a\x0d\x0d\x0a"
        else PcapFile(data, decode_file_header(data))
    )


def _pcapng(per_interface: list[list[Packet]], extra: bytes = b"") -> bytes:
    """A little-endian pcapng file: one IDB per list, then the packets in order of time,
    with `extra` (other blocks) after the first packet."""
    encoder = PcapngEncoder("<")
    out = [encoder.section_header()]
    out += [encoder.interface(Interface(1, name=f"if{i}")) for i in range(len(per_interface))]
    merged = sorted(
        (p._replace(interface_id=i) for i, ps in enumerate(per_interface) for p in ps),
        key=lambda p: p.ts_ns,
    )
    for number, packet in enumerate(merged):
        out.append(encoder.packet(packet))
        if number == 0:
            out.append(extra)
    return b"".join(out)


def _merge(
    files: list[bytes], output: str, block: int
) -> tuple[bytes, list[SourceFailed], list[SourceStats]]:
    merge = RecordMerge(
        [_source(data) for data in files],
        output=output,  # type: ignore[arg-type]
        rename=lambda index, interface: replace(interface, name=f"s{index}"),
        block_records=block,
    )
    chunks: list[bytes | bytearray] = []
    failures: list[SourceFailed] = []
    for item in merge:
        if isinstance(item, SourceFailed):
            failures.append(item)
        else:
            chunks.append(item)
    return b"".join(chunks), failures, merge.stats


# Per source: steps between timestamps (µs; negative = out of order), payload sizes.
source_st = st.lists(
    st.tuples(st.sampled_from([0, 0, 1, 2, 5, -3]), st.integers(0, 9)), max_size=25
)
damage_st = st.sampled_from(["none", "none", "cut", "cut-header", "huge"])


@given(
    sources=st.lists(
        st.tuples(source_st, st.booleans(), st.sampled_from("<>"), damage_st),
        min_size=1,
        max_size=4,
    ),
    output=st.sampled_from(["pcap", "pcapng"]),
    block=st.integers(1, 9),
)
def test_same_packets_and_order_as_the_decoding_merge(
    sources: list[tuple[list[tuple[int, int]], bool, str, str]],
    output: str,
    block: int,
) -> None:
    files: list[bytes] = []
    for index, (steps, nanosecond, order, damage) in enumerate(sources):
        ts, packets = BASE, []
        for number, (step, size) in enumerate(steps):
            ts += step * 1000
            packets.append(Packet(ts, bytes([index, number]) + bytes(size), 60 + size))
        data = _encode(packets, nanosecond=nanosecond, order=order)
        if damage == "cut" and packets:
            data = data[:-1]
        elif damage == "cut-header":
            data += b"\x00" * 7
        elif damage == "huge":
            head = PcapEncoder(ETH, nanosecond=nanosecond, byte_order=order)  # type: ignore[arg-type]
            data += (
                head.packet(Packet(ts, b"x", 1))[:8]
                + (MAX_CAPLEN + 1).to_bytes(4, "little" if order == "<" else "big")
                + bytes(8)
            )
        files.append(data)
    expected = [p for _, p in merge_packets([_prefix(data) for data in files])]
    merged, failures, stats = _merge(files, output, block)
    got, others = _decode(merged)
    assert [(p.ts_ns, p.data, p.orig_len) for p in got] == [
        (p.ts_ns, p.data, p.orig_len) for p in expected
    ]
    # Every damaged source is reported once, with the right kind of error.
    damaged = {
        i
        for i, (steps, _n, _o, damage) in enumerate(sources)
        if damage != "none" and (damage != "cut" or steps)
    }
    assert {f.source for f in failures} == damaged
    for failure in failures:
        kind = sources[failure.source][3]
        assert isinstance(failure.error, LimitExceededError if kind == "huge" else TruncatedError)
    assert [s.packets for s in stats] == [len(_prefix(d)) for d in files]
    if output == "pcapng":
        # One interface per source that had a packet, in source order, and
        # every packet on its own source's interface.
        names = [e.name for e in others if isinstance(e, Interface)]
        having = [f"s{i}" for i, data in enumerate(files) if _prefix(data)]
        assert names == having
        assert all(names[p.interface_id] == f"s{p.data[0]}" for p in got)
    else:
        assert isinstance(others[0], SectionStart)


@given(
    sources=st.lists(
        st.tuples(source_st, st.booleans(), st.booleans(), damage_st),
        min_size=1,
        max_size=4,
    ),
    block=st.integers(1, 9),
)
def test_pcapng_sources_same_as_the_decoding_merge(
    sources: list[tuple[list[tuple[int, int]], bool, bool, str]], block: int
) -> None:
    """pcapng files (two interfaces, comments, NRB/DSB/ISB between packets) mixed
    with pcap files: the same packets, comments and order as decoding them."""
    encoder = PcapngEncoder("<")
    files: list[bytes] = []
    for index, (steps, as_pcapng, commented, damage) in enumerate(sources):
        ts, packets = BASE, []
        for number, (step, size) in enumerate(steps):
            ts += step * 1000
            comment = f"note {number}" if commented and number % 2 else None
            packets.append(Packet(ts, bytes([index, number]) + bytes(size), 60 + size, 0, comment))
        if as_pcapng:
            extra = encoder.secrets(DecryptionSecrets(SECRETS_TLS_KEY_LOG, b"CLIENT_RANDOM x y\n"))
            extra += encoder.statistics(InterfaceStatistics(interface_id=0, ts_ns=BASE))
            data = _pcapng([packets[0::2], packets[1::2]], extra)
            # the decoder sorts nothing: keep each interface's packets in file order
        else:
            data = _encode([p._replace(comment=None) for p in packets], nanosecond=True, order="<")
        if damage == "cut" and packets:
            data = data[:-1]
        elif damage == "cut-header":
            data += b"\x00" * 7
        elif damage == "huge" and as_pcapng:
            data += (6).to_bytes(4, "little") + (1 << 30).to_bytes(4, "little") + bytes(24)
        elif damage == "huge":  # a pcap record header claiming too many bytes
            data += bytes(8) + (MAX_CAPLEN + 1).to_bytes(4, "little") + bytes(8)
        files.append(data)
    expected = [p for _, p in merge_packets([_prefix(data) for data in files])]
    merged, failures, stats = _merge(files, "pcapng", block)
    got, others = _decode(merged)
    assert [(p.ts_ns, p.data, p.orig_len, p.comment) for p in got] == [
        (p.ts_ns, p.data, p.orig_len, p.comment) for p in expected
    ]
    assert {f.source for f in failures} == {
        i
        for i, (steps, _k, _c, damage) in enumerate(sources)
        if damage != "none" and (damage != "cut" or steps)
    }
    assert [s.packets for s in stats] == [len(_prefix(d)) for d in files]
    names = [e.name for e in others if isinstance(e, Interface)]
    assert all(names[p.interface_id] == f"s{p.data[0]}" for p in got)
    secrets = [e for e in others if isinstance(e, DecryptionSecrets)]
    assert len(secrets) == sum(
        1
        for data, (steps, as_pcapng, _c, _d) in zip(files, sources, strict=True)
        if as_pcapng and _prefix(data)
    )


def test_pcapng_timestamps_in_other_units_become_nanoseconds() -> None:
    """An IDB with if_tsresol 6 (µs) and if_tsoffset: EPB ticks are converted."""
    idb_body = (
        (1).to_bytes(2, "little")
        + bytes(2)
        + (65535).to_bytes(4, "little")
        + (9).to_bytes(2, "little")
        + (1).to_bytes(2, "little")
        + b"\x06\x00\x00\x00"
        + (14).to_bytes(2, "little")
        + (8).to_bytes(2, "little")
        + (100).to_bytes(8, "little")
        + bytes(4)
    )
    idb = _block(1, idb_body)
    ticks = 1_700_000_000_123_456
    epb = _block(
        6,
        bytes(4)
        + (ticks >> 32).to_bytes(4, "little")
        + (ticks & 0xFFFFFFFF).to_bytes(4, "little")
        + (4).to_bytes(4, "little")
        + (60).to_bytes(4, "little")
        + b"abcd",
    )
    data = PcapngEncoder("<").section_header() + idb + epb
    merged, failures, _stats = _merge([data], "pcapng", 4)
    got, _ = _decode(merged)
    assert not failures
    assert [p.ts_ns for p in got] == [ticks * 1000 + 100 * 1_000_000_000]
    assert [p.ts_ns for p in got] == [p.ts_ns for p in _prefix(data)]


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    length = total.to_bytes(4, "little")
    return block_type.to_bytes(4, "little") + length + body + length


def test_copyable_pcapng_files() -> None:
    plain = _pcapng([[Packet(BASE, b"x", 1)]])
    assert pcapng_copyable(plain)
    big_endian = PcapngEncoder(">").section_header()
    assert not pcapng_copyable(big_endian)
    two_sections = plain + PcapngEncoder("<").section_header()
    assert not pcapng_copyable(two_sections)
    with_spb = plain + PcapngEncoder("<").simple_packet(Packet(BASE, b"y", 1))
    assert not pcapng_copyable(with_spb)
    assert not pcapng_copyable(b"\x0a\x0d\x0d\x0a")


def test_ties_across_block_boundaries_keep_the_source_order() -> None:
    # Source 0 holds one timestamp for longer than a block: its records must all
    # come before source 1's equal ones, whichever block they were scanned in.
    a = _encode([Packet(BASE, bytes([0, i]), 2) for i in range(10)], nanosecond=True, order="<")
    b = _encode([Packet(BASE, bytes([1, i]), 2) for i in range(3)], nanosecond=True, order="<")
    merged, failures, _stats = _merge([a, b], "pcap", block=2)
    got, _ = _decode(merged)
    assert [p.data for p in got] == [bytes([0, i]) for i in range(10)] + [
        bytes([1, i]) for i in range(3)
    ]
    assert not failures


def test_pcap_output_keeps_microseconds_when_every_source_has_them(tmp_path: Path) -> None:
    micro = _encode([Packet(BASE + 1000, b"a", 1)], nanosecond=False, order="<")
    nano = _encode([Packet(BASE + 1, b"b", 1)], nanosecond=True, order="<")
    only_micro, _, _ = _merge([micro, micro], "pcap", 8)
    assert only_micro[:4] == bytes.fromhex("d4c3b2a1")
    # Same byte order and resolution: records are the input's bytes unchanged.
    assert only_micro[24 : 24 + 17] == micro[24:]
    mixed, _, _ = _merge([micro, nano], "pcap", 8)
    assert mixed[:4] == bytes.fromhex("4d3cb2a1")
    assert [p.ts_ns for p in _decode(mixed)[0]] == [BASE + 1, BASE + 1000]


def test_reads_from_an_mmap(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    path.write_bytes(
        _encode([Packet(BASE + i, bytes([i]), 1) for i in range(5)], nanosecond=True, order="<")
    )
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
        merge = RecordMerge([PcapFile(view, decode_file_header(view[:24]))], output="pcap")
        data = b"".join(c for c in merge if not isinstance(c, SourceFailed))
        del merge
    # The header announces the output's snaplen; every record is copied as it was.
    assert data[24:] == path.read_bytes()[24:]


def test_refuses_what_it_cannot_write() -> None:
    eth = _encode([], nanosecond=True, order="<")
    sll = PcapEncoder(Interface(linktype=113)).header()
    with pytest.raises(ValueError, match="one link type"):
        RecordMerge([PcapFile(d, decode_file_header(d)) for d in (eth, sll)], output="pcap")
    with pytest.raises(ValueError, match="pcap files only"):
        RecordMerge([PcapngFile(_pcapng([[]]))], output="pcap")


def test_the_c_loops_are_built() -> None:
    """`make test` installs the project with its C loops (the decoding merge is the fallback)."""
    assert NATIVE


@given(
    body=st.binary(max_size=400),
    order=st.sampled_from("<>"),
    nanosecond=st.booleans(),
    block=st.integers(1, 5),
)
def test_garbage_records_same_as_the_decoder_and_never_out_of_bounds(
    body: bytes, order: str, nanosecond: bool, block: int
) -> None:
    """Any bytes after a valid file header: the same packets as the decoder, one failure
    at most, and never a read outside the file (the C loop checks every length)."""
    data = _encode([], nanosecond=nanosecond, order=order) + body
    merged, failures, stats = _merge([data, data], "pcapng", block)
    got, _ = _decode(merged)
    expected = [p for _, p in merge_packets([_prefix(data), _prefix(data)])]
    assert [(p.ts_ns, p.data, p.orig_len) for p in got] == [
        (p.ts_ns, p.data, p.orig_len) for p in expected
    ]
    assert len({f.source for f in failures}) == len(failures) <= 2
    assert stats[0].packets == len(_prefix(data))


def test_more_files_than_the_c_merge_takes_are_refused() -> None:
    data = _encode([], nanosecond=True, order="<")
    files = [PcapFile(data, decode_file_header(data))] * (MAX_SOURCES + 1)
    with pytest.raises(ValueError, match=f"at most {MAX_SOURCES}"):
        RecordMerge(files, output="pcap")

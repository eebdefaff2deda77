"""CaptureDecoder: byte-at-a-time equals whole, NEED_DATA and close(), fuzzing, limits."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirecap.core.formats.decoder import NEED_DATA, CaptureDecoder
from wirecap.core.formats.pcap import ByteOrder, PcapEncoder
from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.records import (
    SECRETS_TLS_KEY_LOG,
    DecryptionSecrets,
    Event,
    Interface,
    InterfaceStatistics,
    NameRecord,
    NameResolution,
    Packet,
    SectionStart,
)
from wirecap.errors import DecodeError, LimitExceededError, TruncatedError

TS = 1_700_000_000_123_456_789


def _packets(count: int = 4) -> list[Packet]:
    return [
        Packet(ts_ns=TS + i * 999, data=bytes([i]) * (i * 7 % 13), orig_len=100 + i)
        for i in range(count)
    ]


def _pcap_pieces(order: ByteOrder, nanosecond: bool) -> list[bytes]:
    """A pcap file as its header and records: the boundaries a decoder may stop at."""
    encoder = PcapEncoder(Interface(linktype=113), nanosecond=nanosecond, byte_order=order)
    return [encoder.header(), *(encoder.packet(p) for p in _packets())]


def _pcapng_pieces(order: ByteOrder) -> list[bytes]:
    """A two-section pcapng file with every block type, as its blocks."""
    encoder = PcapngEncoder(order)
    other = PcapngEncoder(">" if order == "<" else "<")
    packets = _packets()
    return [
        encoder.section_header(comment="one", user_application="test"),
        encoder.interface(Interface(linktype=1, name="eth0")),
        encoder.interface(Interface(linktype=276, snaplen=96, description="any")),
        encoder.secrets(DecryptionSecrets(SECRETS_TLS_KEY_LOG, b"CLIENT_RANDOM a b\n")),
        encoder.name_resolution(NameResolution((NameRecord(1, b"\1\2\3\4", ("x",)),))),
        encoder.packet(packets[0]),
        encoder.packet(Packet(TS, b"abc", 3, interface_id=1, comment="c")),
        encoder.simple_packet(Packet(0, b"spb!", 4)),
        encoder.statistics(InterfaceStatistics(1, TS, received=10, dropped=0)),
        other.section_header(comment="two"),
        other.interface(Interface(linktype=101)),
        *(other.packet(p) for p in packets[1:]),
    ]


FILES = {
    "pcap-le-ns": _pcap_pieces("<", True),
    "pcap-be-ns": _pcap_pieces(">", True),
    "pcap-le-us": _pcap_pieces("<", False),
    "pcap-be-us": _pcap_pieces(">", False),
    "pcapng-le": _pcapng_pieces("<"),
    "pcapng-be": _pcapng_pieces(">"),
}


def _decode_chunks(chunks: list[bytes]) -> list[Event]:
    decoder = CaptureDecoder()
    events: list[Event] = []
    for chunk in chunks:
        decoder.feed(chunk)
        events.extend(decoder.events())
    decoder.close()
    events.extend(decoder.events())
    return events


@pytest.mark.parametrize("name", FILES)
def test_one_byte_at_a_time_gives_the_same_events_as_whole(name: str) -> None:
    data = b"".join(FILES[name])
    whole = _decode_chunks([data])
    assert _decode_chunks([data[i : i + 1] for i in range(len(data))]) == whole
    # One event per record/block, plus the pcap Interface made from the header.
    assert len(whole) == len(FILES[name]) + (1 if name.startswith("pcap-") else 0)


@pytest.mark.parametrize("name", FILES)
@given(cuts=st.lists(st.integers(0, 2000), max_size=12))
def test_any_split_gives_the_same_events(name: str, cuts: list[int]) -> None:
    data = b"".join(FILES[name])
    points = sorted({min(cut, len(data)) for cut in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    assert _decode_chunks(chunks) == _decode_chunks([data])


def test_pcapng_file_decodes_to_the_events_written() -> None:
    events = _decode_chunks([b"".join(FILES["pcapng-le"])])
    assert [type(e).__name__ for e in events] == [
        "SectionStart", "Interface", "Interface", "DecryptionSecrets", "NameResolution",
        "Packet", "Packet", "Packet", "InterfaceStatistics",
        "SectionStart", "Interface", "Packet", "Packet", "Packet",
    ]  # fmt: skip
    assert events[9] == SectionStart("pcapng", big_endian=True, version=(1, 0), comment="two")
    assert events[7] == Packet(0, b"spb!", 4)


def test_next_event_returns_NEED_DATA_until_a_whole_record_is_there() -> None:
    header, first, *_ = FILES["pcap-le-ns"]
    decoder = CaptureDecoder()
    assert decoder.next_event() is NEED_DATA
    assert decoder.format is None
    decoder.feed(header[:10])
    assert decoder.next_event() is NEED_DATA
    decoder.feed(header[10:] + first[:-1])
    assert [type(e) for e in decoder.events()] == [SectionStart, Interface]
    assert decoder.format == "pcap"
    assert decoder.next_event() is NEED_DATA
    decoder.feed(first[-1:])
    assert decoder.next_event() == _packets()[0]
    assert decoder.next_event() is NEED_DATA
    assert decoder.offset == len(header) + len(first)
    decoder.close()


def test_close_keeps_undrained_events_available() -> None:
    decoder = CaptureDecoder()
    decoder.feed(b"".join(FILES["pcapng-be"]))
    decoder.close()
    assert len(list(decoder.events())) == 14
    with pytest.raises(RuntimeError):
        decoder.feed(b"more")


def test_close_on_empty_input_raises_TruncatedError() -> None:
    with pytest.raises(TruncatedError, match="empty"):
        CaptureDecoder().close()


@pytest.mark.parametrize("name", FILES)
def test_close_raises_TruncatedError_exactly_when_cut_inside_a_record(name: str) -> None:
    pieces = FILES[name]
    data = b"".join(pieces)
    boundaries = {sum(len(p) for p in pieces[:i]) for i in range(1, len(pieces) + 1)}
    for cut in range(1, len(data) + 1):
        decoder = CaptureDecoder()
        decoder.feed(data[:cut])
        list(decoder.events())
        if cut in boundaries:
            decoder.close()
        else:
            with pytest.raises(TruncatedError):
                decoder.close()
            with pytest.raises(TruncatedError):  # stays broken
                decoder.next_event()


def test_errors_say_where_in_the_stream() -> None:
    header, first, *_ = FILES["pcap-le-ns"]
    bad = struct.pack("<IIII", 0, 0, 0xFFFFFFF0, 0)
    decoder = CaptureDecoder()
    decoder.feed(header + first + bad)
    with pytest.raises(LimitExceededError, match=f"at byte {len(header) + len(first)}"):
        list(decoder.events())


def test_buffer_is_compacted_as_records_are_consumed() -> None:
    encoder = PcapEncoder(Interface(linktype=1))
    data = encoder.header() + encoder.packet(Packet(TS, bytes(1000), 1000)) * 2000
    decoder = CaptureDecoder()
    largest = 0
    for i in range(0, len(data), 4096):
        decoder.feed(data[i : i + 4096])
        for _ in decoder.events():
            pass
        largest = max(largest, len(decoder._buf))
    decoder.close()
    # Never much more than one chunk plus an unfinished record: not the whole file.
    assert largest < 3 * 4096


# --------------------------------------------------------------------------
# Fuzzing: whatever the bytes, the decoder yields events or raises a DecodeError.


def _feed_all(data: bytes, chunk: int) -> None:
    decoder = CaptureDecoder()
    try:
        for i in range(0, len(data), chunk):
            decoder.feed(data[i : i + chunk])
            for _ in decoder.events():
                pass
        decoder.close()
    except DecodeError:
        pass


@given(data=st.binary(max_size=300), chunk=st.integers(1, 64))
def test_arbitrary_bytes_give_events_or_DecodeError(data: bytes, chunk: int) -> None:
    _feed_all(data, chunk)


_MAGICS = [
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x0a\x0d\x0d\x0a",
]


@given(magic=st.sampled_from(_MAGICS), rest=st.binary(max_size=300), chunk=st.integers(1, 64))
def test_bytes_after_a_valid_magic_give_events_or_DecodeError(
    magic: bytes, rest: bytes, chunk: int
) -> None:
    _feed_all(magic + rest, chunk)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(FILES)),
    mutations=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    chunk=st.integers(1, 512),
)
def test_mutated_valid_files_give_events_or_DecodeError(
    name: str, mutations: list[tuple[int, int]], chunk: int
) -> None:
    data = bytearray(b"".join(FILES[name]))
    for position, value in mutations:
        data[position % len(data)] = value
    _feed_all(bytes(data), chunk)


@given(name=st.sampled_from(sorted(FILES)), cut=st.integers(1, 10_000))
def test_truncated_valid_files_raise_TruncatedError_on_close(name: str, cut: int) -> None:
    pieces = FILES[name]
    data = b"".join(pieces)
    cut = cut % len(data)
    if cut in {sum(len(p) for p in pieces[:i]) for i in range(len(pieces) + 1)}:
        cut += 1  # a boundary is a shorter valid file, not a truncated one
    decoder = CaptureDecoder()
    decoder.feed(data[:cut])
    list(decoder.events())
    with pytest.raises(TruncatedError):
        decoder.close()


@given(
    name=st.sampled_from(sorted(FILES)),
    index=st.integers(1, 100),
    quarter=st.integers((1 << 22) + 1, (1 << 30) - 1),
)
def test_oversized_length_fields_raise_LimitExceededError_without_waiting(
    name: str, index: int, quarter: int
) -> None:
    pieces = FILES[name]
    index = index % (len(pieces) - 1) + 1
    piece = bytearray(pieces[index])
    length = quarter * 4  # a multiple of 4 above the 16 MiB limits
    order: ByteOrder
    if name.startswith("pcapng-"):
        # The block total length (§3.1); from block 9 on, the second section's order.
        first_order: ByteOrder = "<" if name.endswith("-le") else ">"
        order = first_order if index < 9 else (">" if first_order == "<" else "<")
        struct.pack_into(order + "I", piece, 4, length)
    else:
        order = "<" if "-le-" in name else ">"
        struct.pack_into(order + "I", piece, 8, length)  # caplen (pcap §5)
    decoder = CaptureDecoder()
    decoder.feed(b"".join(pieces[:index]) + bytes(piece[:16]))
    with pytest.raises(LimitExceededError):
        list(decoder.events())

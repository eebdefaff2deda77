"""Classic pcap: encoder vectors, round trips in both magics and byte orders, real tools."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.core.formats.decoder import CaptureDecoder
from wirecap.core.formats.linktype import LinkType
from wirecap.core.formats.pcap import (
    MAX_CAPLEN,
    PcapEncoder,
    decode_file_header,
    decode_record_header,
)
from wirecap.core.formats.reader import read_packets
from wirecap.core.formats.records import Event, Interface, Packet, SectionStart
from wirecap.errors import FormatError, LimitExceededError

# 2023-11-14T22:13:20.123456789Z: nanoseconds that a float epoch would lose.
TS = 1_700_000_000_123_456_789

packets_st = st.lists(
    st.builds(
        lambda ts, data, extra: Packet(ts_ns=ts, data=data, orig_len=len(data) + extra),
        st.integers(0, (1 << 32) * 1_000_000_000 - 1),
        st.binary(max_size=80),
        st.integers(0, 1500),
    ),
    max_size=8,
)


def _decode(data: bytes) -> list[Event]:
    decoder = CaptureDecoder()
    decoder.feed(data)
    events = list(decoder.events())
    decoder.close()
    return events


def _sample_packets(count: int = 5) -> list[Packet]:
    return [
        Packet(ts_ns=TS + i * 1_000_001, data=bytes([i]) * (60 + i), orig_len=60 + i + 4 * (i % 2))
        for i in range(count)
    ]


def test_PcapEncoder_header_is_the_libpcap_nanosecond_header() -> None:
    encoder = PcapEncoder(Interface(linktype=LinkType.LINUX_SLL2, snaplen=262144))
    expected = "4d3cb2a1 0200 0400 00000000 00000000 00000400 14010000"
    assert encoder.header() == bytes.fromhex(expected)


def test_PcapEncoder_packet_record_vector() -> None:
    encoder = PcapEncoder(Interface(linktype=LinkType.ETHERNET), nanosecond=False)
    record = encoder.packet(Packet(ts_ns=TS, data=b"abc", orig_len=70))
    assert record == struct.pack("<IIII", 1_700_000_000, 123_456, 3, 70) + b"abc"


@pytest.mark.parametrize("nanosecond", [True, False])
@given(packets=packets_st)
def test_PcapEncoder_round_trips_through_CaptureDecoder(
    nanosecond: bool, packets: list[Packet]
) -> None:
    interface = Interface(linktype=LinkType.RAW, snaplen=65535)
    encoder = PcapEncoder(interface, nanosecond=nanosecond)
    data = encoder.header() + b"".join(encoder.packet(p) for p in packets)
    events = _decode(data)
    unit = 1 if nanosecond else 1000
    assert events[0] == SectionStart(format="pcap", big_endian=False, version=(2, 4))
    assert events[1] == Interface(linktype=LinkType.RAW, snaplen=65535, ts_unit_ns=unit)
    # Microsecond files keep the timestamp truncated to the microsecond.
    expected = [Packet(p.ts_ns // unit * unit, p.data, p.orig_len) for p in packets]
    assert events[2:] == expected


@pytest.mark.parametrize(("magic", "unit"), [(0xA1B2C3D4, 1000), (0xA1B23C4D, 1)])
def test_decoder_reads_a_hand_built_big_endian_pcap(magic: int, unit: int) -> None:
    fraction = 123_456 if unit == 1000 else 123_456_789
    data = (
        struct.pack(">IHHiIII", magic, 2, 4, 0, 0, 1600, LinkType.LINUX_SLL)
        + struct.pack(">IIII", 1_700_000_000, fraction, 4, 60)
        + b"\x00\x01\x02\x03"
        + struct.pack(">IIII", 1_700_000_001, 0, 0, 0)
    )
    assert _decode(data) == [
        SectionStart(format="pcap", big_endian=True, version=(2, 4)),
        Interface(linktype=LinkType.LINUX_SLL, snaplen=1600, ts_unit_ns=unit),
        Packet(ts_ns=1_700_000_000_000_000_000 + fraction * unit, data=b"\0\1\2\3", orig_len=60),
        Packet(ts_ns=1_700_000_001_000_000_000, data=b"", orig_len=0),
    ]


def test_PcapEncoder_big_endian_matches_the_hand_built_file() -> None:
    encoder = PcapEncoder(Interface(linktype=LinkType.NULL, snaplen=1600), byte_order=">")
    assert encoder.header() == struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 1600, 0)
    record = encoder.packet(Packet(ts_ns=TS, data=b"xy", orig_len=2))
    assert record == struct.pack(">IIII", 1_700_000_000, 123_456_789, 2, 2) + b"xy"


@pytest.mark.parametrize("linktype", list(LinkType))
def test_linktype_is_carried_through(linktype: LinkType) -> None:
    encoder = PcapEncoder(Interface(linktype=linktype))
    header = decode_file_header(encoder.header())
    assert header.linktype == linktype
    assert header.interface().linktype == linktype


def test_decode_file_header_masks_the_fcs_bits_of_the_linktype_field() -> None:
    # draft-ietf-opsawg-pcap §4: FCS length lives in the top bits of the field.
    data = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, (0b1001 << 28) | 1)
    assert decode_file_header(data).linktype == LinkType.ETHERNET


def test_decode_file_header_refuses_a_bad_magic_and_version() -> None:
    with pytest.raises(FormatError, match="magic"):
        decode_file_header(b"<!DOCTYPE html><html><b>")
    with pytest.raises(FormatError, match="version"):
        decode_file_header(struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 65535, 1))


def test_decode_record_header_refuses_a_caplen_over_MAX_CAPLEN() -> None:
    header = decode_file_header(PcapEncoder(Interface(linktype=1)).header())
    too_big = struct.pack("<IIII", 0, 0, MAX_CAPLEN + 1, MAX_CAPLEN + 1)
    with pytest.raises(LimitExceededError, match="MAX_CAPLEN"):
        decode_record_header(header, too_big, 0)


def test_PcapEncoder_refuses_timestamps_pcap_cannot_hold() -> None:
    encoder = PcapEncoder(Interface(linktype=1))
    with pytest.raises(ValueError, match="1970-2106"):
        encoder.packet(Packet(ts_ns=-1, data=b"", orig_len=0))
    with pytest.raises(ValueError, match="1970-2106"):
        encoder.packet(Packet(ts_ns=(1 << 32) * 1_000_000_000, data=b"", orig_len=0))


# --------------------------------------------------------------------------
# Real tools read what we write, and we read what they write.


def _epoch(ts_ns: int) -> str:
    """frame.time_epoch as tshark prints it: always nine decimals."""
    return f"{ts_ns // 10**9}.{ts_ns % 10**9:09d}"


def _write(path: Path, packets: list[Packet], *, nanosecond: bool = True) -> Path:
    encoder = PcapEncoder(Interface(linktype=LinkType.ETHERNET), nanosecond=nanosecond)
    path.write_bytes(encoder.header() + b"".join(encoder.packet(p) for p in packets))
    return path


@pytest.mark.parametrize(("nanosecond", "kind"), [(True, "nsecpcap"), (False, "pcap")])
def test_capinfos_and_tshark_read_our_pcap(
    tmp_path: Path, run_tool: Callable[..., str], nanosecond: bool, kind: str
) -> None:
    packets = _sample_packets()
    path = _write(tmp_path / "ours.pcap", packets, nanosecond=nanosecond)
    info = run_tool("capinfos", "-T", "-r", "-c", "-E", "-M", "-t", str(path))
    assert info.split() == [str(path), kind, "ether", str(len(packets))]
    fields = run_tool(
        "tshark", "-r", str(path), "-T", "fields",
        "-e", "frame.time_epoch", "-e", "frame.cap_len", "-e", "frame.len",
    )  # fmt: skip
    unit = 1 if nanosecond else 1000
    expected = [f"{_epoch(p.ts_ns // unit * unit)}\t{p.caplen}\t{p.orig_len}" for p in packets]
    assert fields.splitlines() == expected


def test_files_rewritten_by_tcpdump_editcap_mergecap_decode_to_the_same_packets(
    tmp_path: Path, run_tool: Callable[..., str]
) -> None:
    packets = _sample_packets(7)
    ours = _write(tmp_path / "ours.pcap", packets)
    by_tcpdump = tmp_path / "tcpdump.pcap"
    run_tool("tcpdump", "-q", "--time-stamp-precision=nano", "-r", str(ours), "-w", str(by_tcpdump))
    by_editcap = tmp_path / "editcap.pcap"
    run_tool("editcap", "-F", "nsecpcap", str(ours), str(by_editcap))
    by_mergecap = tmp_path / "mergecap.pcapng"
    run_tool("mergecap", "-w", str(by_mergecap), str(ours))
    for path in (by_tcpdump, by_editcap, by_mergecap):
        assert list(read_packets(path)) == packets, path.name
    # tcpdump's default is microsecond files: the same packets, truncated.
    by_tcpdump_us = tmp_path / "tcpdump-us.pcap"
    run_tool("tcpdump", "-q", "-r", str(ours), "-w", str(by_tcpdump_us))
    truncated = [Packet(p.ts_ns // 1000 * 1000, p.data, p.orig_len) for p in packets]
    assert list(read_packets(by_tcpdump_us)) == truncated

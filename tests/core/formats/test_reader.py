"""read_file / read_packets: the I/O shell, chunked reads, the path in every decode error."""

from __future__ import annotations

from pathlib import Path

import pytest

from wirecap.core.formats.pcap import PcapEncoder
from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.reader import read_file, read_packets
from wirecap.core.formats.records import Interface, Packet, SectionStart
from wirecap.errors import FormatError, LimitExceededError, TruncatedError

TS = 1_700_000_000_123_456_789
PACKETS = [Packet(TS + i, bytes([i]) * (20 + i), 100) for i in range(5)]


def _pcap() -> bytes:
    encoder = PcapEncoder(Interface(linktype=1, snaplen=65535))
    return encoder.header() + b"".join(encoder.packet(p) for p in PACKETS)


def _pcapng() -> bytes:
    encoder = PcapngEncoder()
    return (
        encoder.section_header()
        + encoder.interface(Interface(linktype=1, name="eth0"))
        + b"".join(encoder.packet(p) for p in PACKETS)
    )


@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
def test_read_file_yields_every_event_in_order(tmp_path: Path, chunk_size: int) -> None:
    path = tmp_path / "f.pcap"
    path.write_bytes(_pcap())
    events = list(read_file(path, chunk_size=chunk_size))
    assert events == [
        SectionStart("pcap", False, (2, 4)),
        Interface(linktype=1, snaplen=65535),
        *PACKETS,
    ]


def test_read_packets_keeps_only_packets(tmp_path: Path) -> None:
    path = tmp_path / "f.pcapng"
    path.write_bytes(_pcapng())
    assert list(read_packets(path, chunk_size=13)) == PACKETS
    assert list(read_packets(str(path))) == PACKETS


@pytest.mark.parametrize(
    ("content", "error", "match"),
    [
        (b"", TruncatedError, "empty input"),
        (_pcap()[:-3], TruncatedError, "inside a pcap record"),
        (_pcapng()[:-1], TruncatedError, "inside a pcapng block"),
        (_pcap()[:20], TruncatedError, "file header"),
        (b"<html><body>404</body></html>", FormatError, "neither pcap nor pcapng"),
        (_pcap()[:24] + b"\0" * 8 + b"\xff" * 8, LimitExceededError, "MAX_CAPLEN"),
    ],
)
def test_read_file_errors_name_the_file(
    tmp_path: Path, content: bytes, error: type[Exception], match: str
) -> None:
    path = tmp_path / "bad capture.pcap"
    path.write_bytes(content)
    with pytest.raises(error, match=match) as raised:
        list(read_file(path, chunk_size=16))
    assert str(raised.value).startswith(f"{path}: ")


def test_read_file_lets_OSError_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(read_file(tmp_path / "missing.pcap"))

"""Connection tracking: tshark's tcp.stream numbering, packet numbers, file-level counts."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.analysis.frames import (
    ACK,
    CLIENT,
    EPOCH_NS,
    SERVER,
    SYN,
    Script,
    ethernet,
    icmp_error,
    ip_packet,
    write_pcap,
)
from wirecap.analysis import Report, analyze_events, analyze_file, analyze_packets
from wirecap.core.formats import Event, Interface, LinkType, Packet, SectionStart
from wirecap.errors import FormatError


def streams_of(report: Report) -> dict[int, int]:
    """Packet number → connection index, as tshark's frame.number → tcp.stream."""
    streams = {}
    for connection in report.connections:
        for packet in connection.series.packets:
            streams[packet] = connection.index
        for error in connection.icmp_errors:
            streams[error.packet] = connection.index
    return streams


def reuse_capture() -> list[Packet]:
    """Connections that make stream numbering interesting, interleaved."""
    packets: list[Packet] = []
    a = Script(packets=packets)
    a.syn(0)
    a.syn(1000)  # a retransmitted SYN: same connection
    b = Script(client=("10.0.0.3", 1234), packets=packets)
    b.data(SERVER, 100, 1001)  # started before the capture
    a.syn_ack(1010)
    a.ack(CLIENT, 1011)
    a.data(CLIENT, 10, 1012)
    a.ack(SERVER, 1013)
    a.close(1014)
    reused = Script(isn=(900000, 77777), packets=packets)  # same ports, new ISN
    reused.handshake(2000)
    b.data(CLIENT, 5, 2001)
    Script(client=("10.0.0.3", 1234), isn=(424242, 1), packets=packets).syn(2002)
    unknown = Script(client=("10.0.0.9", 5555), packets=packets)
    unknown.icmp("10.0.0.254", unknown.ip(CLIENT, flags=SYN, seq=1), 3, 1, 2003)
    swapped = Script(
        client=("10.0.0.2", 80), server=("10.0.0.1", 40000), isn=(31337, 4), packets=packets
    )
    swapped.syn(2004)  # the old server opens a connection on the same pair
    reused.send(SERVER, 2005, flags=SYN | ACK, seq=99)  # a SYN-ACK never starts one
    reused.data(CLIENT, 3, 2006)
    return packets


def test_connections_are_numbered_as_tshark_tcp_stream(
    tmp_path: Path, run_tool: Callable[..., str]
) -> None:
    path = write_pcap(tmp_path / "reuse.pcap", reuse_capture())
    ours = streams_of(analyze_file(path))
    out = run_tool(
        "tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "tcp.stream"
    )
    theirs = {}
    for line in out.splitlines():
        number, stream = line.split("\t")
        if stream:
            theirs[int(number)] = int(stream)
    assert ours == theirs
    assert max(theirs.values()) == 5


def test_short_icmp_quotes_never_open_a_connection(
    tmp_path: Path, run_tool: Callable[..., str]
) -> None:
    packets: list[Packet] = []
    known = Script(packets=packets)
    syn = known.syn(0)
    known.record(icmp_error("10.0.0.254", "10.0.0.1", 3, 1, syn, quote_bytes=28), 1)
    unknown = Script(client=("10.0.0.9", 5555), packets=packets)
    quoted = unknown.ip(CLIENT, flags=SYN, seq=1)
    for at, size in ((2, 35), (3, 36)):  # 15 and 16 bytes of the TCP header
        unknown.record(icmp_error("10.0.0.254", "10.0.0.9", 3, 1, quoted, quote_bytes=size), at)
    path = write_pcap(tmp_path / "short.pcap", packets)
    report = analyze_file(path)
    assert streams_of(report) == {1: 0, 2: 0, 4: 1}
    out = run_tool("tshark", "-n", "-r", str(path), "-T", "fields", "-e", "tcp.stream")
    # tshark gives the 8-byte quote (packet 2) no stream; the numbering is the same.
    assert out.splitlines() == ["0", "", "", "1"]
    assert report.connections[0].icmp_errors[0].packet == 2


def test_port_reuse_starts_a_new_connection() -> None:
    report = analyze_packets(reuse_capture(), LinkType.ETHERNET)
    first, reused = report.connections[0], report.connections[2]
    assert (first.client.port, reused.client.port) == (40000, 40000)
    assert first.handshake.syns == 2
    assert "completed_normally" in {f.verdict.value for f in first.findings}
    assert reused.first.packet == 11


def other_frames() -> list[Packet]:
    def packet(data: bytes, n: int) -> Packet:
        return Packet(EPOCH_NS + n, data, len(data))

    udp = ethernet(ip_packet("10.0.0.1", "10.0.0.2", 17, struct.pack("!HHHH", 53, 53, 8, 0)))
    echo = ethernet(ip_packet("10.0.0.1", "10.0.0.2", 1, struct.pack("!BBHI", 8, 0, 0, 1)))
    gre = ethernet(ip_packet("10.0.0.1", "10.0.0.2", 47, bytes(8)))
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)
    cut = ethernet(ip_packet("10.0.0.1", "10.0.0.2", 6, bytes(20)))[:24]
    bad = ethernet(b"\x55" + bytes(39))  # IP version 5
    return [packet(f, i) for i, f in enumerate((udp, echo, gre, arp, cut, bad))]


def test_file_level_counts_and_packet_numbers() -> None:
    s = Script(packets=other_frames())
    s.handshake(at_ms=1)
    report = s.analyze()
    assert report.packets == 9
    assert (report.tcp_packets, report.udp_packets, report.icmp_packets) == (3, 1, 1)
    assert (report.icmp_errors_tied, report.other_ip_packets, report.non_ip_packets) == (0, 1, 1)
    assert report.undecodable_packets == 2
    assert report.linktypes == (LinkType.ETHERNET,)
    assert report.start_epoch_ns == EPOCH_NS
    assert report.duration_ns == 11_050_000  # from the UDP packet to the handshake's ACK
    # Packet numbers count every packet, as Wireshark's frame.number.
    assert report.connections[0].handshake.syn is not None
    assert report.connections[0].handshake.syn.packet == 7


def test_unsupported_link_type_is_counted_not_decoded() -> None:
    s = Script()
    s.handshake()
    report = analyze_packets(s.packets, 147)  # LINKTYPE_USER0
    assert report.packets == report.unsupported_linktype_packets == 3
    assert report.connections == ()
    assert report.linktypes == (147,)


def test_events_with_several_interfaces_and_sections() -> None:
    s = Script()
    s.handshake()
    raw_ack = s.packets[2].data[14:]  # the same segment as LINKTYPE_RAW: IP only
    events: list[Event] = [
        SectionStart("pcapng", False, (1, 0)),
        Interface(LinkType.ETHERNET),
        Interface(LinkType.RAW),
        s.packets[0],
        Packet(s.packets[1].ts_ns, s.packets[1].data[14:], len(s.packets[1].data) - 14, 1),
        SectionStart("pcapng", False, (1, 0)),
        Interface(LinkType.RAW),
        Packet(s.packets[2].ts_ns, raw_ack, len(raw_ack), 0),
    ]
    report = analyze_events(events)
    assert report.linktypes == (LinkType.ETHERNET, LinkType.RAW)
    (connection,) = report.connections
    assert connection.packets == 3 and connection.handshake.ack is not None


def test_a_packet_on_an_undescribed_interface_is_a_format_error() -> None:
    s = Script()
    s.syn()
    with pytest.raises(FormatError, match="interface 0"):
        analyze_events([SectionStart("pcapng", False, (1, 0)), s.packets[0]])


def test_timestamps_far_apart_are_clamped_not_fatal() -> None:
    s = Script()
    s.syn()
    late = Packet((1 << 64) - 1, s.packets[0].data, len(s.packets[0].data))
    report = analyze_packets([Packet(0, s.packets[0].data, 60), late], LinkType.ETHERNET)
    assert report.connections[0].handshake.syns == 2
    assert report.connections[0].last.time_ns == (1 << 63) - 1


def test_acks_flag_is_read_per_segment() -> None:
    s = Script()
    s.send(CLIENT, 0, flags=ACK, ack=12345)
    (c,) = s.analyze().connections
    assert list(c.series.acks) == [1]  # numbered from the first ACK seen

"""Per-connection capture: the 4-tuple both ways plus the ICMP errors quoting it."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from wirecap.core.capture.handle import check_filter
from wirecap.core.formats.linktype import LinkType
from wirecap.core.formats.reader import read_packets
from wirecap.core.packet import decode
from wirecap.core.packet.transport import TCPFlags
from wirecap.proxy.recorder import (
    HEADER_SNAPLEN,
    ConnectionRecorder,
    FourTuple,
    connection_filter,
)

V4 = FourTuple(ipaddress.ip_address("192.0.2.10"), 40000, ipaddress.ip_address("198.51.100.7"), 443)
V6 = FourTuple(
    ipaddress.ip_address("2001:db8::10"), 40000, ipaddress.ip_address("2001:db8:1::7"), 443
)


@pytest.mark.parametrize("linktype", [LinkType.ETHERNET, LinkType.LINUX_SLL, LinkType.RAW])
@pytest.mark.parametrize("four_tuple", [V4, V6])
def test_filter_compiles_for_every_link_type(four_tuple: FourTuple, linktype: int) -> None:
    check_filter(connection_filter(four_tuple), linktype)


def test_ipv6_filter_compares_all_four_words_of_each_address() -> None:
    text = connection_filter(V6)
    assert "icmp6[16:4] = 0x20010db8" in text and "icmp6[28:4] = 0x00000010" in text
    assert "icmp6[32:4] = 0x20010db8" in text and "icmp6[44:4] = 0x00000007" in text


def test_mixed_families_are_refused() -> None:
    with pytest.raises(ValueError):
        FourTuple(ipaddress.ip_address("192.0.2.1"), 1, ipaddress.ip_address("::1"), 2)


# -- live, on loopback -------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4_tcp_quote(src: str, dst: str, sport: int, dport: int) -> bytes:
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        1500,
        1,
        0x4000,
        64,
        6,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return ip + struct.pack("!HHI", sport, dport, 12345)


def _send_frag_needed(quote: bytes, mtu: int = 1280) -> None:
    """An ICMP 'fragmentation needed' (type 3 code 4, RFC 1191) to 127.0.0.1."""
    body = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + quote
    body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as raw:
        raw.sendto(body, ("127.0.0.1", 0))


def _send_packet_too_big(src: str, dst: str, sport: int, dport: int) -> None:
    """An ICMPv6 Packet Too Big (RFC 4443 §3.2) to ::1; the kernel fills the checksum."""
    ip6 = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        1460,
        6,
        64,
        socket.inet_pton(socket.AF_INET6, src),
        socket.inet_pton(socket.AF_INET6, dst),
    )
    body = struct.pack("!BBHI", 2, 0, 0, 1280) + ip6 + struct.pack("!HHI", sport, dport, 1)
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as raw:
        raw.sendto(body, ("::1", 0))


async def _tunnel_like_exchange(
    tmp_path: Path, family: int, host: str, payload: int, cap: int, icmp: bool
) -> tuple[Path, bool, int, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data[:10])
        writer.close()

    server = await asyncio.start_server(echo, host, 0)
    origin_port = server.sockets[0].getsockname()[1]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    local_port = sock.getsockname()[1]
    tup = FourTuple(ipaddress.ip_address(host), local_port, ipaddress.ip_address(host), origin_port)
    recorder = ConnectionRecorder("lo", tup, tmp_path / "conn.pcap", size_cap=cap)
    await recorder.start()
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, origin_port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"x" * payload)
    await writer.drain()
    if icmp:
        if family == socket.AF_INET:
            _send_frag_needed(_ipv4_tcp_quote(host, host, local_port, origin_port))
            _send_frag_needed(_ipv4_tcp_quote(host, host, local_port + 1, origin_port))
        else:
            _send_packet_too_big(host, host, local_port, origin_port)
            _send_packet_too_big(host, host, local_port, origin_port + 1)
    writer.write_eof()
    await reader.read()
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.1)
    recording = await recorder.stop()
    return recording.path, recording.truncated, local_port, recording.stats.written


@pytest.mark.root
@pytest.mark.parametrize(
    ("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_records_handshake_data_close_and_matching_icmp_only(
    tmp_path: Path, family: int, host: str
) -> None:
    path, truncated, local_port, written = asyncio.run(
        _tunnel_like_exchange(tmp_path, family, host, 5000, 1 << 20, icmp=True)
    )
    assert not truncated
    decoded = [decode(LinkType.ETHERNET, p.data) for p in read_packets(path)]
    assert len(decoded) == written
    flags = [d.tcp.flags for d in decoded if d.tcp is not None]
    assert flags[0] == TCPFlags.SYN
    assert flags[1] == TCPFlags.SYN | TCPFlags.ACK
    assert any(f & TCPFlags.FIN for f in flags)
    # Only the ICMP error quoting our own 4-tuple, not the one for another port.
    errors = [d for d in decoded if d.icmp is not None or d.icmp6 is not None]
    assert len(errors) == 1
    quote = (errors[0].icmp or errors[0].icmp6).quote  # type: ignore[union-attr]
    assert quote is not None and quote.sport == local_port
    # Nothing of any other connection.
    ports = {(d.tcp.sport, d.tcp.dport) for d in decoded if d.tcp is not None}
    assert all(local_port in pair for pair in ports)


@pytest.mark.root
def test_size_cap_keeps_headers_and_the_close(tmp_path: Path) -> None:
    path, truncated, _, _ = asyncio.run(
        _tunnel_like_exchange(tmp_path, socket.AF_INET, "127.0.0.1", 2_000_000, 100_000, False)
    )
    assert truncated
    packets = list(read_packets(path))
    assert path.stat().st_size < 100_000 + 2_000_000 // 2  # far less than the traffic
    assert any(p.caplen <= HEADER_SNAPLEN < p.orig_len for p in packets)
    last = decode(LinkType.ETHERNET, packets[-1].data)
    assert last.tcp is not None
    tshark = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "tcp.flags.fin == 1"], capture_output=True, text=True
    )
    assert tshark.returncode == 0 and tshark.stdout.strip(), "FIN lost after the cap"

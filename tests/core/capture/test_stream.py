"""Streaming a live capture to a socket: back-pressure, whole-batch drops, no corruption."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from tests.traffic import send_udp, udp_sink
from wirecap.core.capture.live import LiveCapture
from wirecap.core.capture.spec import CaptureSpec
from wirecap.core.capture.stream import StreamOutput

pytestmark = pytest.mark.root

_RECORD_HEADER = struct.Struct("<IIII")


def _walk_pcap(data: bytes) -> int:
    """Count records, asserting every one is whole (lengths consistent to the last byte)."""
    assert data[:4] == b"\x4d\x3c\xb2\xa1"  # nanosecond pcap, little-endian
    offset, records = 24, 0
    while offset < len(data):
        _, _, caplen, wirelen = _RECORD_HEADER.unpack_from(data, offset)
        assert caplen == wirelen == 142  # 14 + 20 + 8 + 100: never a torn record
        offset += 16 + caplen
        records += 1
    assert offset == len(data)
    return records


async def _stream(count: int, reader_delay: float, budget: int) -> tuple[bytes, int, int]:
    left, right = socket.socketpair()
    for sock in (left, right):  # small kernel buffers, so back-pressure starts early
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    _, writer = await asyncio.open_connection(sock=left)
    reader, reader_side = await asyncio.open_connection(sock=right)
    output = StreamOutput(max_buffered_bytes=budget)

    async def write(chunk: bytes) -> None:
        writer.write(chunk)
        await writer.drain()

    with udp_sink() as port:
        capture = LiveCapture(
            CaptureSpec(interface="lo", filter=f"udp dst port {port}", buffer_timeout_ms=10),
            output,
        )
        capture.start()
        pump = asyncio.create_task(output.pump(write))
        for _ in range(count // 100):
            send_udp(port, 100, size=100)
            await asyncio.sleep(0.02)  # let the loop dispatch between bursts
        await asyncio.sleep(reader_delay)  # the consumer has not read anything yet
        stats = await capture.stop()
        received = bytearray()

        async def consume() -> None:
            while chunk := await reader.read(1 << 20):
                received.extend(chunk)

        consumer = asyncio.create_task(consume())
        await pump
        writer.close()
        await writer.wait_closed()
        await consumer
        reader_side.close()
        await reader_side.wait_closed()
    return bytes(received), stats.written, stats.dropped_by_output


def test_fast_consumer_gets_every_record() -> None:
    data, written, dropped = asyncio.run(_stream(1000, 0.0, 64 << 20))
    assert dropped == 0
    assert _walk_pcap(data) == written == 1000


def test_slow_consumer_loses_whole_batches_counted_never_torn_records() -> None:
    # A 40 KB budget against ~316 KB of records and a consumer that reads nothing
    # until the capture ends: batches must be dropped, and counted.
    data, written, dropped = asyncio.run(_stream(2000, 0.2, 40_000))
    assert written == 2000
    assert dropped > 0
    assert _walk_pcap(data) == written - dropped

"""Live captures on loopback through the real libpcap."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.traffic import send_udp, udp_sink
from wirecap.core.capture.live import LiveCapture
from wirecap.core.capture.outputs import BatchOutput, PacketOutput, PcapFileOutput, part_path
from wirecap.core.capture.spec import CaptureSpec
from wirecap.core.formats.records import Packet
from wirecap.errors import (
    BadFilterError,
    CaptureError,
    CaptureWriteError,
    NoSuchInterfaceError,
    OptionError,
)

pytestmark = pytest.mark.root


def _count_records(path: Path) -> int:
    """Count records with tcpdump, the reference reader."""
    out = subprocess.run(
        ["tcpdump", "-n", "-r", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return len(out.splitlines())


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_armed_capture_holds_every_packet_sent_after_start(tmp_path: Path) -> None:
    path = tmp_path / "out.pcap"

    async def scenario() -> int:
        with udp_sink() as port:
            capture = LiveCapture(
                CaptureSpec(interface="lo", filter=f"udp dst port {port}"), PcapFileOutput(path)
            )
            capture.start()  # armed on return: no sleep before sending
            send_udp(port, 137)
            stats = await capture.stop()
        return stats.written

    written = asyncio.run(scenario())
    assert written == 137
    assert _count_records(path) == 137
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not part_path(path).exists()


def test_stop_without_drain_skips_the_buffer_timeout_wait(tmp_path: Path) -> None:
    """drain=False: no wait for the kernel to retire a partly filled block (what a
    caller that saw its marker packet wants); with the default the wait is there."""
    path = tmp_path / "out.pcap"

    async def stop_time(drain: bool) -> float:
        with udp_sink() as port:
            capture = LiveCapture(
                CaptureSpec(interface="lo", filter=f"udp dst port {port}", buffer_timeout_ms=800),
                PcapFileOutput(path),
            )
            capture.start()
            send_udp(port, 3)
            started = time.monotonic()
            await capture.stop(drain=drain)
            return time.monotonic() - started

    assert asyncio.run(stop_time(drain=True)) >= 0.8
    assert asyncio.run(stop_time(drain=False)) < 0.5


def test_count_stops_exactly(tmp_path: Path) -> None:
    path = tmp_path / "out.pcap"

    async def scenario() -> int:
        with udp_sink() as port:
            capture = LiveCapture(
                CaptureSpec(interface="lo", filter=f"udp dst port {port}"),
                PcapFileOutput(path),
                count=25,
            )
            capture.start()
            send_udp(port, 100)
            await asyncio.wait_for(capture.wait(), timeout=5)
            return (await capture.stop()).written

    assert asyncio.run(scenario()) == 25
    assert _count_records(path) == 25


def test_batch_output_receives_valid_pcap_bytes() -> None:
    chunks: list[bytes] = []
    closed: list[bool] = []

    async def scenario() -> int:
        with udp_sink() as port:
            capture = LiveCapture(
                CaptureSpec(interface="lo", filter=f"udp dst port {port}"),
                BatchOutput(chunks.append, lambda: closed.append(True)),
            )
            capture.start()
            send_udp(port, 40, size=100)
            return (await capture.stop()).written

    written = asyncio.run(scenario())
    data = b"".join(chunks)
    assert written == 40
    assert closed == [True]
    assert data[:4] in (b"\x4d\x3c\xb2\xa1", b"\xd4\xc3\xb2\xa1")
    # 24-byte file header, then 40 records of 16-byte header + 128-byte frame on lo
    # (14 Ethernet + 20 IPv4 + 8 UDP + 100 payload = 142 bytes).
    assert len(data) == 24 + 40 * (16 + 142)


def test_stats_are_labelled_and_count_written_records(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, int]:
        with udp_sink() as port:
            capture = LiveCapture(
                CaptureSpec(interface="lo", filter=f"udp dst port {port}"),
                PcapFileOutput(tmp_path / "s.pcap"),
            )
            capture.start()
            send_udp(port, 10)
            stats = await capture.stop()
        return stats.written, stats.received_by_kernel, stats.dropped_by_kernel

    written, received, dropped = asyncio.run(scenario())
    assert written == 10
    # On lo the socket sees each packet twice (out and in), libpcap keeps one.
    assert received >= written
    assert dropped == 0


def test_bad_filter_raises_with_libpcap_message(tmp_path: Path) -> None:
    async def scenario() -> None:
        LiveCapture(
            CaptureSpec(interface="lo", filter="tcp port"), PcapFileOutput(tmp_path / "x.pcap")
        ).start()

    with pytest.raises(BadFilterError, match="syntax error"):
        asyncio.run(scenario())
    assert not (tmp_path / "x.pcap").exists()


def test_missing_interface_raises() -> None:
    async def scenario() -> None:
        LiveCapture(CaptureSpec(interface="wirecap-none0"), BatchOutput(print, print)).start()

    with pytest.raises(NoSuchInterfaceError, match="wirecap-none0"):
        asyncio.run(scenario())


def test_invalid_options_are_rejected() -> None:
    with pytest.raises(OptionError):
        CaptureSpec(snaplen=0)
    with pytest.raises(OptionError):
        LiveCapture(CaptureSpec(), BatchOutput(print, print), count=0)


def test_no_fd_leak_after_200_start_stop_cycles(tmp_path: Path) -> None:
    async def cycles() -> None:
        for i in range(200):
            capture = LiveCapture(
                CaptureSpec(
                    interface="lo", filter="udp port 9", buffer_size=1 << 20, buffer_timeout_ms=1
                ),
                PcapFileOutput(tmp_path / f"c{i % 3}.pcap"),
            )
            capture.start()
            await capture.stop()

    asyncio.run(cycles())  # warm-up: the event loop and libpcap allocate once
    before = _open_fds()
    asyncio.run(cycles())
    assert _open_fds() == before


def test_stop_is_idempotent_and_start_twice_fails(tmp_path: Path) -> None:
    async def scenario() -> None:
        capture = LiveCapture(CaptureSpec(interface="lo"), PcapFileOutput(tmp_path / "i.pcap"))
        capture.start()
        with pytest.raises(CaptureError):
            capture.start()
        first = await capture.stop()
        assert await capture.stop() == first

    asyncio.run(scenario())


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: a real full disk, not a simulated one."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("mount(8) not available")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_is_reported(tiny_disk: Path) -> None:
    async def scenario() -> None:
        with udp_sink() as port:
            capture = LiveCapture(
                CaptureSpec(interface="lo", filter=f"udp dst port {port}"),
                PcapFileOutput(tiny_disk / "full.pcap"),
            )
            capture.start()
            send_udp(port, 200, size=1000)  # 200 KB into 64 KiB
            await asyncio.sleep(0.3)
            await capture.stop()

    with pytest.raises(CaptureWriteError, match="No space left on device"):
        asyncio.run(scenario())
    # What was written before the disk filled is kept, never deleted.
    assert (tiny_disk / "full.pcap.part").exists() or (tiny_disk / "full.pcap").exists()


def test_packet_output_hands_over_decoded_batches() -> None:
    batches: list[list[Packet]] = []

    async def scenario() -> int:
        with udp_sink() as port:
            capture = LiveCapture(
                CaptureSpec(interface="lo", filter=f"udp dst port {port}"),
                PacketOutput(batches.append),
            )
            capture.start()
            before = time.time_ns()
            send_udp(port, 64, size=10)
            after = time.time_ns()
            written = (await capture.stop()).written
        packets = [p for batch in batches for p in batch]
        assert len(packets) == written
        for packet in packets:
            assert before - 10**9 <= packet.ts_ns <= after + 10**9
            assert packet.orig_len == packet.caplen == 14 + 20 + 8 + 10
            assert packet.data.endswith(bytes(10))
        assert [p.ts_ns for p in packets] == sorted(p.ts_ns for p in packets)
        return written

    assert asyncio.run(scenario()) == 64

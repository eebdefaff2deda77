"""The worker served in-process on 127.0.0.1 and driven by an aiohttp client.

Live captures run on ``lo`` for determinism and need root (marked ``root``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.traffic import udp_sink
from wirecap.core.formats.decoder import CaptureDecoder
from wirecap.core.formats.records import (
    Interface,
    InterfaceStatistics,
    Packet,
)
from wirecap.remote.request import ListenAddress
from wirecap.remote.worker import UNIX_SOCKET_MODE, WorkerConfig, WorkerServer

_TIMEOUT = aiohttp.ClientTimeout(total=20)


@asynccontextmanager
async def _worker(**options: Any) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    server = WorkerServer(WorkerConfig(listen=ListenAddress("127.0.0.1", 0), **options))
    bound = await server.start()
    try:
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as session:
            yield f"http://{bound[0]}", session
    finally:
        await server.close()


def _run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())  # type: ignore[arg-type]


async def _events(
    response: aiohttp.ClientResponse,
    until: Callable[[list[Any]], bool],
    timeout: float = 5.0,
    decoder: CaptureDecoder | None = None,
) -> list[Any]:
    decoder = decoder or CaptureDecoder()
    events: list[Any] = []
    deadline = time.monotonic() + timeout
    while not until(events):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; got {events!r:.500}"
        try:
            chunk = await asyncio.wait_for(response.content.readany(), left)
        except TimeoutError:
            raise AssertionError(f"timed out; got {events!r:.500}") from None
        assert chunk, "stream ended"
        decoder.feed(chunk)
        events.extend(decoder.events())
    return events


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def _packet_sockets() -> int:
    with open("/proc/net/packet") as f:
        return len(f.readlines()) - 1


def test_healthz_and_metrics() -> None:
    async def scenario() -> str:
        async with _worker() as (url, session):
            async with session.get(url + "/healthz") as r:
                assert r.status == 200
                assert await r.text() == "ok\n"
            async with session.get(url + "/nowhere") as r:
                assert r.status == 404
            async with session.get(url + "/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain")
                return await r.text()

    text = _run(scenario)
    assert _metric(text, "wirecap_worker_active_captures") == 0
    assert _metric(text, "wirecap_worker_streamed_bytes_total") == 0
    assert _metric(text, "wirecap_worker_dropped_records_total") == 0
    assert 'wirecap_worker_requests_total{status="200"} 1.0' in text
    assert 'wirecap_worker_requests_total{status="404"} 1.0' in text


def test_bad_filter_is_400_with_libpcaps_message_and_no_pcap_body() -> None:
    async def scenario() -> tuple[int, str, str, str]:
        async with _worker() as (url, session):
            async with session.get(url + "/capture", params={"filter": "tcp port"}) as r:
                status, ctype, body = r.status, r.headers["Content-Type"], await r.text()
            async with session.get(url + "/metrics") as r:
                return status, ctype, body, await r.text()

    status, ctype, body, metrics = _run(scenario)
    assert status == 400
    assert ctype.startswith("text/plain")
    assert "syntax error" in body
    assert 'wirecap_worker_requests_total{status="400"} 1.0' in metrics


def test_unknown_parameter_is_400() -> None:
    async def scenario() -> tuple[int, str]:
        async with (
            _worker() as (url, session),
            session.get(url + "/capture", params={"fitler": "tcp"}) as r,
        ):
            return r.status, await r.text()

    status, body = _run(scenario)
    assert status == 400
    assert "fitler" in body


@pytest.mark.root
def test_headers_and_file_header_arrive_within_50_ms() -> None:
    async def scenario() -> tuple[float, bytes, str]:
        async with _worker() as (url, session):
            best = 1.0
            for _ in range(3):  # the best of three: a busy CI box is slow, not wrong
                start = time.monotonic()
                async with session.get(
                    url + "/capture", params={"interface": "lo", "filter": "udp port 9"}
                ) as r:
                    header = await r.content.readexactly(24)
                    best = min(best, time.monotonic() - start)
                    ctype = r.headers["Content-Type"]
            return best, header, ctype

    elapsed, header, ctype = _run(scenario)
    assert ctype == "application/vnd.tcpdump.pcap"
    assert header[:4] in (b"\x4d\x3c\xb2\xa1", b"\xd4\xc3\xb2\xa1")  # ns or µs pcap, LE
    assert struct.unpack_from("<I", header, 20)[0] == 1  # lo: Ethernet
    assert elapsed < 0.05, f"first bytes after {elapsed * 1000:.0f} ms"


@pytest.mark.root
@pytest.mark.parametrize("interface", ["lo", "any"])
def test_udp_packets_appear_with_their_exact_bytes(interface: str) -> None:
    payloads = [bytes([i]) * (20 + i) + b"wirecap" for i in range(5)]

    async def scenario(port: int) -> list[Any]:
        async with _worker() as (url, session):
            params = {"interface": interface, "filter": f"udp dst port {port}"}
            async with session.get(url + "/capture", params=params) as r:
                assert r.status == 200
                decoder = CaptureDecoder()
                head = await _events(r, lambda ev: bool(ev), decoder=decoder)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    for payload in payloads:
                        sock.sendto(payload, ("127.0.0.1", port))
                return head + await _events(
                    r,
                    lambda ev: sum(isinstance(e, Packet) for e in ev) >= len(payloads),
                    decoder=decoder,
                )

    with udp_sink() as port:
        events = _run(lambda: scenario(port))
    (iface,) = [e for e in events if isinstance(e, Interface)]
    assert iface.linktype == (1 if interface == "lo" else 276)
    packets = [e for e in events if isinstance(e, Packet)]
    link_len = 14 if interface == "lo" else 20
    for packet, payload in zip(packets, payloads, strict=True):
        ip = packet.data[link_len:]
        assert ip[0] >> 4 == 4 and ip[9] == 17  # IPv4, UDP
        assert ip[12:20] == socket.inet_aton("127.0.0.1") * 2
        assert struct.unpack_from("!H", ip, 22)[0] == port
        assert ip[28:] == payload
        assert packet.orig_len == len(packet.data)


def _tcp_ports(packet: Packet) -> tuple[int, int] | None:
    ip = packet.data[14:]  # lo: Ethernet
    if len(ip) < 24 or ip[0] >> 4 != 4 or ip[9] != 6:
        return None
    ihl = (ip[0] & 0x0F) * 4
    src, dst = struct.unpack_from("!HH", ip, ihl)
    return int(src), int(dst)


@pytest.mark.root
def test_the_workers_own_stream_is_excluded() -> None:
    async def scenario(sink: int) -> tuple[int, list[Any]]:
        async with _worker() as (url, session):
            worker_port = int(url.rsplit(":", 1)[1])
            async with session.get(url + "/capture", params={"interface": "lo"}) as r:
                decoder = CaptureDecoder()
                await _events(r, lambda ev: bool(ev), decoder=decoder)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    for _ in range(20):
                        sock.sendto(b"x" * 100, ("127.0.0.1", sink))
                        await asyncio.sleep(0.01)
                events = await _events(
                    r, lambda ev: sum(isinstance(e, Packet) for e in ev) >= 20, decoder=decoder
                )
                # Let the stream's own TCP segments (carrying those packets) be captured
                # if the exclusion did not work.
                await asyncio.sleep(0.2)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.sendto(b"end", ("127.0.0.1", sink))
                events += await _events(
                    r,
                    lambda ev: any(isinstance(e, Packet) and e.data.endswith(b"end") for e in ev),
                    decoder=decoder,
                )
                return worker_port, events

    with udp_sink() as sink:
        worker_port, events = _run(lambda: scenario(sink))
    own = [
        p
        for p in events
        if isinstance(p, Packet) and (ports := _tcp_ports(p)) and worker_port in ports
    ]
    assert own == []
    assert sum(isinstance(e, Packet) for e in events) >= 21


@pytest.mark.root
def test_pcapng_stream_sends_isb_heartbeats_while_idle() -> None:
    async def scenario() -> tuple[str, list[Any], int, int]:
        async with _worker() as (url, session):
            params = {"interface": "lo", "filter": "udp port 9", "format": "pcapng"}
            async with session.get(url + "/capture", params=params) as r:
                ctype = r.headers["Content-Type"]
                decoder = CaptureDecoder()
                await _events(
                    r, lambda ev: any(isinstance(e, Interface) for e in ev), decoder=decoder
                )
                before = time.time_ns()
                events: list[Any] = []

                def collect(ev: list[Any]) -> bool:
                    events[:] = ev
                    return False

                with pytest.raises(AssertionError, match="timed out"):
                    await _events(r, collect, timeout=0.5, decoder=decoder)
                return ctype, events, before, time.time_ns()

    ctype, events, before, after = _run(scenario)
    assert ctype == "application/x-pcapng"
    isbs = [e for e in events if isinstance(e, InterfaceStatistics)]
    assert len(isbs) >= 3, events
    assert all(before - 1_000_000_000 < e.ts_ns < after for e in isbs)
    assert [e.ts_ns for e in isbs] == sorted(e.ts_ns for e in isbs)
    assert all(e.received is not None and e.dropped is not None for e in isbs)


@pytest.mark.root
def test_client_disconnects_close_every_capture() -> None:
    async def scenario() -> tuple[int, int, str, int]:
        async with _worker() as (url, session):
            baseline = _packet_sockets()

            async def one() -> None:
                params = {"interface": "lo", "filter": "udp port 9"}
                async with session.get(url + "/capture", params=params) as r:
                    assert r.status == 200
                    await r.content.readexactly(24)
                    r.close()

            peak = 0
            for _ in range(10):
                await asyncio.gather(*(one() for _ in range(10)))
                peak = max(peak, _packet_sockets() - baseline)
            # The packet socket closes in a worker thread a moment before the stream's
            # handler finishes and lowers the gauge: wait for both, bounded.
            deadline = time.monotonic() + 5
            polls = 0
            while True:
                async with session.get(url + "/metrics") as r:
                    metrics = await r.text()
                polls += 1
                idle = _metric(metrics, "wirecap_worker_active_captures") == 0
                if (idle and _packet_sockets() <= baseline) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            return _packet_sockets() - baseline, peak, metrics, polls

    left, _peak, metrics, polls = _run(scenario)
    assert left <= 0  # none of ours left; an earlier test's may also have closed
    assert _metric(metrics, "wirecap_worker_active_captures") == 0
    # 100 captures, plus the /metrics polls answered before the last one.
    assert f'wirecap_worker_requests_total{{status="200"}} {100 + polls - 1}.0' in metrics


@pytest.mark.root
def test_max_captures_answers_503_past_the_limit() -> None:
    async def scenario() -> tuple[int, str, int]:
        async with _worker(max_captures=1) as (url, session):
            params = {"interface": "lo", "filter": "udp port 9"}
            async with session.get(url + "/capture", params=params) as first:
                await first.content.readexactly(24)
                async with session.get(url + "/capture", params=params) as second:
                    status, body = second.status, await second.text()
                first.close()
            for _ in range(100):  # the first capture ends once its client is gone
                async with session.get(url + "/capture", params=params) as third:
                    if third.status == 200:
                        third.close()
                        break
                await asyncio.sleep(0.02)
            return status, body, third.status

    status, body, later = _run(scenario)
    assert status == 503
    assert "busy" in body
    assert later == 200


def test_ddump_worker_accepts_single_dash_listen_and_stops_on_sigterm() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from wirecap.cli.worker import ddump_worker; sys.exit(ddump_worker())",
            "-listen",
            f"127.0.0.1:{port}",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.strip() == f"Listening on 127.0.0.1:{port}"

        async def scenario() -> str:
            async with (
                aiohttp.ClientSession(timeout=_TIMEOUT) as session,
                session.get(f"http://127.0.0.1:{port}/healthz") as r,
            ):
                return await r.text()

        assert _run(scenario) == "ok\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_worker_help_documents_the_reverse_proxy_example() -> None:
    from wirecap.cli.worker import build_parser

    text = build_parser().format_help()
    assert "proxy_buffering off;" in text
    assert "proxy_read_timeout 1h;" in text
    assert "exclude_self" in text


def test_unix_listen_replaces_a_stale_socket_and_removes_its_own(tmp_path: Path) -> None:
    path = tmp_path / "worker.sock"
    with socket.socket(socket.AF_UNIX) as stale:  # a killed worker's leftover file
        stale.bind(str(path))

    async def scenario() -> tuple[list[str], str, int]:
        server = WorkerServer(WorkerConfig(listen=ListenAddress(path=str(path))))
        bound = await server.start()
        try:
            async with (
                aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(path))) as session,
                session.get("http://worker/healthz") as r,
            ):
                text = await r.text()
            return bound, text, path.stat().st_mode
        finally:
            await server.close()

    bound, text, mode = _run(scenario)
    assert bound == [f"unix:{path}"]
    assert text == "ok\n"
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == UNIX_SOCKET_MODE
    assert not path.exists()


def test_unix_listen_refuses_a_path_in_use_or_not_a_socket(tmp_path: Path) -> None:
    live, plain = tmp_path / "live.sock", tmp_path / "plain"
    plain.write_text("keep me")

    async def scenario() -> list[str]:
        first = WorkerServer(WorkerConfig(listen=ListenAddress(path=str(live))))
        await first.start()
        errors = []
        try:
            for path in (live, plain):
                second = WorkerServer(WorkerConfig(listen=ListenAddress(path=str(path))))
                with pytest.raises(OSError) as caught:
                    await second.start()
                errors.append(str(caught.value))
            async with (
                aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(live))) as session,
                session.get("http://worker/healthz") as r,
            ):
                assert r.status == 200  # the first worker still has its socket
        finally:
            await first.close()
        return errors

    in_use, not_socket = _run(scenario)
    assert f"already listening on {live}" in in_use
    assert "in use" in not_socket
    assert plain.read_text() == "keep me"

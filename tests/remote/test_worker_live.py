"""The worker under real conditions: slow clients, Unix sockets, no privileges, many streams.

The slow-client test serves the worker in-process (it needs a small per-stream
buffer); the others run the `wirecap worker` console script as a subprocess, as an
operator would. Traffic is UDP on ``lo`` to bound sinks.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import shutil
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.remote.worker_process import LoggedProcess, wirecap_argv
from tests.traffic import udp_sink
from wirecap.core.formats.decoder import CaptureDecoder
from wirecap.core.formats.records import InterfaceStatistics, Packet
from wirecap.remote.request import ListenAddress
from wirecap.remote.worker import UNIX_SOCKET_MODE, WorkerConfig, WorkerServer

_TIMEOUT = aiohttp.ClientTimeout(total=30)
#: Ethernet + IPv4 + UDP headers of a datagram captured on lo.
_UDP_PAYLOAD_AT = 14 + 20 + 8


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _worker_process(
    tmp_path: Path, listen: str, *wrapper: str, umask: int = -1
) -> Iterator[LoggedProcess]:
    """`wirecap worker --listen LISTEN -v`, optionally under a privilege-dropping wrapper."""
    proc = LoggedProcess(
        [*wrapper, *wirecap_argv(), "worker", "--listen", listen, "-v"],
        tmp_path / "worker.log",
        umask=umask,
    )
    try:
        proc.wait_for("Listening on")
        yield proc
    finally:
        status = proc.stop()
    assert status == 0, proc.text()
    assert "Traceback" not in proc.text()


# -- a slow client ------------------------------------------------------------------

_FLOOD = r"""
import socket, sys, time

flood_port, fast_port, bursts, burst, size = map(int, sys.argv[1:6])
pattern = bytes(range(251)) * (size // 251 + 2)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
seq = fast = 0
for _ in range(bursts):
    for _ in range(burst):
        sock.sendto(seq.to_bytes(4, "big") + pattern[seq % 251 : seq % 251 + size - 4],
                    ("127.0.0.1", flood_port))
        seq += 1
    for _ in range(5):  # the other client's packets, between and during the bursts
        sock.sendto(b"fast %d" % fast, ("127.0.0.1", fast_port))
        fast += 1
        time.sleep(0.01)
"""
_BURSTS, _BURST, _SIZE = 8, 400, 4000  # 12.8 MB, far beyond what the slow client reads
_FAST = _BURSTS * 5
_BUDGET = 256 * 1024  # the worker's per-stream buffer in this test


def _flood_payload(seq: int) -> bytes:
    pattern = bytes(range(251)) * (_SIZE // 251 + 2)
    return seq.to_bytes(4, "big") + pattern[seq % 251 : seq % 251 + _SIZE - 4]


async def _http10_get(port: int, target: str, rcvbuf: int) -> tuple[socket.socket, bytes, bytes]:
    """GET over HTTP/1.0 (body = the raw capture, no chunking) on a socket with a small
    receive buffer, so the client's pace reaches the worker as TCP back-pressure."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET {target} HTTP/1.0\r\nHost: worker\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
        assert chunk, head
        head += chunk
    head, _, body = head.partition(b"\r\n\r\n")
    return sock, head, body


@asynccontextmanager
async def _in_process_worker(**options: Any) -> AsyncIterator[tuple[int, aiohttp.ClientSession]]:
    server = WorkerServer(WorkerConfig(listen=ListenAddress("127.0.0.1", 0), **options))
    bound = await server.start()
    try:
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as session:
            yield int(bound[0].rsplit(":", 1)[1]), session
    finally:
        await server.close()


@pytest.mark.root
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_slow_client_loses_whole_batches_counted_never_torn_and_others_unaffected(
    tmp_path: Path, run_tool: Callable[..., str], fmt: str
) -> None:
    async def scenario(flood_port: int, fast_port: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        async with _in_process_worker(max_buffered_bytes=_BUDGET) as (port, session):
            base = f"http://127.0.0.1:{port}"
            # The fast client: an ordinary aiohttp reader of another filter.
            fast = await session.get(
                base + "/capture",
                params={"interface": "lo", "filter": f"udp dst port {fast_port}"},
            )
            assert fast.status == 200
            fast_arrivals: list[tuple[Packet, int]] = []

            async def read_fast() -> None:
                decoder = CaptureDecoder()
                while len(fast_arrivals) < _FAST:
                    chunk = await fast.content.readany()
                    assert chunk, "fast stream ended"
                    now = time.time_ns()
                    decoder.feed(chunk)
                    fast_arrivals.extend(
                        (e, now) for e in decoder.events() if isinstance(e, Packet)
                    )

            fast_task = asyncio.ensure_future(read_fast())
            sock, head, body = await _http10_get(
                port,
                f"/capture?interface=lo&format={fmt}&filter=udp+dst+port+{flood_port}",
                rcvbuf=4096,
            )
            flood: asyncio.subprocess.Process | None = None
            try:
                assert head.startswith(b"HTTP/1.0 200"), head
                received = bytearray(body)
                decoder = CaptureDecoder()
                decoder.feed(body)
                events: list[Any] = list(decoder.events())

                async def read(pace: float, until: Callable[[], bool], limit: float) -> None:
                    deadline = time.monotonic() + limit
                    while not until():
                        assert time.monotonic() < deadline, f"stalled after {len(events)} events"
                        try:
                            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.05)
                        except TimeoutError:
                            continue  # nothing to read now; look at `until` again
                        assert chunk, "slow stream ended"
                        received.extend(chunk)
                        decoder.feed(chunk)
                        events.extend(decoder.events())
                        if pace:
                            await asyncio.sleep(pace)

                flood = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    _FLOOD,
                    *map(str, (flood_port, fast_port, _BURSTS, _BURST, _SIZE)),
                )
                flooding = asyncio.ensure_future(flood.wait())
                # Read about 0.8 MB/s while the flood goes on at many times that.
                await read(0.005, flooding.done, 30)
                assert flooding.result() == 0
                # Then read at full speed, marking the end with a datagram the slow
                # stream must show: everything captured before it was sent or dropped.
                ends_sent, next_end = 0, 0.0
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:

                    def saw_end() -> bool:
                        nonlocal ends_sent, next_end
                        if any(isinstance(e, Packet) and e.data.endswith(b"END") for e in events):
                            return True
                        if time.monotonic() >= next_end:
                            tx.sendto(b"END", ("127.0.0.1", flood_port))
                            ends_sent += 1
                            next_end = time.monotonic() + 0.05
                        return False

                    await read(0, saw_end, 15)
                settle = time.monotonic() + 0.3

                def settled() -> bool:
                    if fmt == "pcapng" and not isinstance(events[-1], InterfaceStatistics):
                        return False  # an ISB heartbeat follows once the stream is idle
                    return time.monotonic() > settle

                await read(0, settled, 10)
                # Drops are in the metric while the slow stream is still open.
                async with session.get(base + "/metrics") as r:
                    live_metrics = await r.text()
                await asyncio.wait_for(fast_task, 10)
            finally:
                fast_task.cancel()
                fast.close()
                sock.close()
                if flood is not None and flood.returncode is None:
                    flood.kill()
                    await flood.wait()
            await asyncio.sleep(0.3)  # the streams end once their clients are gone
            async with session.get(base + "/metrics") as r:
                final_metrics = await r.text()
            return {
                "body": bytes(received[: decoder.offset]),
                "events": events,
                "ends_sent": ends_sent,
                "fast": fast_arrivals,
                "live_metrics": live_metrics,
                "final_metrics": final_metrics,
            }

    with udp_sink() as flood_port, udp_sink() as fast_port:
        result = asyncio.run(scenario(flood_port, fast_port))

    events: list[Any] = result["events"]
    packets = [e for e in events if isinstance(e, Packet)]
    flood = [p for p in packets if not p.data.endswith(b"END")]
    ends = [p for p in packets if p.data.endswith(b"END")]
    # Every record whole and exactly what was sent, in order, none twice.
    seqs = []
    for p in flood:
        seq = int.from_bytes(p.data[_UDP_PAYLOAD_AT : _UDP_PAYLOAD_AT + 4], "big")
        assert p.data[_UDP_PAYLOAD_AT:] == _flood_payload(seq), f"record {seq} corrupted"
        assert p.orig_len == len(p.data)
        seqs.append(seq)
    assert seqs == sorted(set(seqs))
    sent = _BURSTS * _BURST + result["ends_sent"]
    missing = sent - len(flood) - len(ends)
    runs = 1 + sum(b != a + 1 for a, b in itertools.pairwise(seqs))
    print(
        f"\nslow {fmt} client: {len(flood)} of {_BURSTS * _BURST} flood records "
        f"in {runs} runs, {missing} dropped"
    )
    assert 0 < len(flood) < _BURSTS * _BURST // 2  # it was slow, and it did get some
    # Drops happened. Usually between delivered batches (several runs); on a busy
    # machine the reader may get one run and lose everything after it: both are
    # whole-batch drops, which is what matters.
    assert missing > 0 and runs >= 1
    # Every missing record is counted (the fast client dropped none), live and at the end.
    assert _metric(result["live_metrics"], "wirecap_worker_dropped_records_total") == missing
    assert _metric(result["final_metrics"], "wirecap_worker_dropped_records_total") == missing
    assert _metric(result["final_metrics"], "wirecap_worker_active_captures") == 0
    if fmt == "pcapng":  # the heartbeat after the end marker says the same
        last = events[-1]
        assert isinstance(last, InterfaceStatistics) and last.ts_ns > ends[-1].ts_ns
        assert last.dropped == missing  # by the kernel (none) and for the slow client

    # Independent readers agree the stream is a valid capture.
    path = tmp_path / f"slow.{fmt}"
    path.write_bytes(result["body"])
    assert f"Number of packets:   {len(packets)}" in run_tool("capinfos", "-c", str(path))
    lengths = run_tool("tshark", "-r", str(path), "-T", "fields", "-e", "udp.length").split()
    assert lengths == [str(8 + _SIZE)] * len(flood) + ["11"] * len(ends)

    # The fast client got all its packets, whole and soon.
    fast: list[tuple[Packet, int]] = result["fast"]
    assert [p.data[_UDP_PAYLOAD_AT:] for p, _ in fast] == [b"fast %d" % i for i in range(_FAST)]
    latencies = [(arrived - p.ts_ns) / 1e6 for p, arrived in fast]
    print(
        f"fast client beside it: {len(fast)} packets, latency median "
        f"{statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms"
    )
    assert max(latencies) < 1000


# -- a Unix socket ------------------------------------------------------------------

_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]

_CONNECT = """
import socket, sys
try:
    socket.socket(socket.AF_UNIX).connect(sys.argv[1])
except OSError as exc:
    print(exc.errno)
else:
    print(0)
"""


@pytest.mark.root
def test_unix_socket_streams_pcap_and_only_owner_and_group_may_connect(tmp_path: Path) -> None:
    # A traversable directory of its own, so that only the socket's mode can keep
    # another user out (pytest's temp dirs are 0700).
    directory = Path(tempfile.mkdtemp(prefix="wcw-"))
    directory.chmod(0o755)
    path = directory / "worker.sock"
    try:
        # umask 0: the worst case; the worker must not depend on the caller's umask.
        with _worker_process(tmp_path, f"unix:{path}", umask=0) as worker, udp_sink() as port:
            assert f"Listening on unix:{path}" in worker.text()
            mode = path.stat().st_mode
            assert stat.S_ISSOCK(mode)
            assert stat.S_IMODE(mode) == UNIX_SOCKET_MODE == 0o660
            denied = subprocess.run(
                [*_NOBODY, sys.executable, "-c", _CONNECT, str(path)],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            assert denied.stdout.strip() == str(errno.EACCES)
            # A second worker on the same path is refused; it does not take the socket.
            second = subprocess.run(
                [*wirecap_argv(), "worker", "--listen", f"unix:{path}"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert second.returncode == 3
            assert "already listening" in second.stderr

            async def scenario() -> tuple[str, list[Packet]]:
                connector = aiohttp.UnixConnector(path=str(path))
                async with (
                    aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as session,
                    session.get(
                        "http://worker/capture",
                        params={"interface": "lo", "filter": f"udp dst port {port}"},
                    ) as r,
                ):
                    assert r.status == 200
                    decoder = CaptureDecoder()
                    decoder.feed(await r.content.readexactly(24))  # armed: header is out
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                        for i in range(5):
                            tx.sendto(b"unix %d" % i, ("127.0.0.1", port))
                    packets: list[Packet] = []
                    while len(packets) < 5:
                        chunk = await asyncio.wait_for(r.content.readany(), 10)
                        assert chunk
                        decoder.feed(chunk)
                        packets += [e for e in decoder.events() if isinstance(e, Packet)]
                    return r.headers["Content-Type"], packets

            ctype, packets = asyncio.run(scenario())
        assert ctype == "application/vnd.tcpdump.pcap"
        assert [p.data[_UDP_PAYLOAD_AT:] for p in packets] == [b"unix %d" % i for i in range(5)]
        # No own stream to leave out: a Unix socket's bytes are on no interface.
        assert f"filter 'udp dst port {port}'" in worker.text()
        assert not path.exists()  # removed at exit
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- no capture privilege -----------------------------------------------------------


def _reachable_by_others(path: Path) -> bool:
    """Whether a user other than the owner may traverse every directory above `path`."""
    return all(parent.stat().st_mode & 0o001 for parent in path.absolute().parents)


@pytest.mark.root
@pytest.mark.parametrize(
    "wrapper",
    [
        pytest.param(_NOBODY, id="nobody"),
        pytest.param(
            ["setpriv", "--bounding-set=-net_raw,-net_admin", "--inh-caps=-net_raw,-net_admin"],
            id="root-without-CAP_NET_RAW",
        ),
    ],
)
def test_missing_privilege_is_503_with_libpcaps_reason_before_any_body(
    tmp_path: Path, wrapper: list[str]
) -> None:
    tmp_path.chmod(0o755)  # the unprivileged worker writes nothing, but may look
    if wrapper is _NOBODY and not _reachable_by_others(Path(sys.executable)):
        # A checkout under a private directory (mktemp -d is 0700): nobody cannot
        # even start the venv's Python. The root-without-CAP_NET_RAW case still
        # checks the 503.
        pytest.skip(f"{sys.executable} is not reachable by other users")
    port = _free_port()
    with _worker_process(tmp_path, f"127.0.0.1:{port}", *wrapper) as worker:

        async def scenario() -> list[tuple[int, str, str | None, bytes]]:
            answers = []
            async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
                for params in (
                    {"interface": "lo", "filter": "udp"},
                    {},  # any, no filter
                    {"filter": "udp port"},  # a bad filter is still the client's fault
                ):
                    async with session.get(f"http://127.0.0.1:{port}/capture", params=params) as r:
                        answers.append(
                            (
                                r.status,
                                r.headers["Content-Type"],
                                r.headers.get("Content-Length"),
                                await r.read(),
                            )
                        )
                async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                    answers.append((r.status, "", None, await r.read()))
            return answers

        lo, any_, bad, (_, _, _, metrics) = asyncio.run(scenario())
        log = worker.text()
    for (status, ctype, length, body), device in ((lo, "lo"), (any_, "any")):
        assert status == 503
        assert ctype.startswith("text/plain")
        assert length is not None and int(length) == len(body)  # a whole answer, not a stream
        text = body.decode()
        assert text.startswith(f"{device}: ")
        assert "socket: Operation not permitted" in text  # libpcap's own words
        assert "CAP_NET_RAW" in text
    assert bad[0] == 400 and b"syntax error" in bad[3]
    text = metrics.decode()
    assert 'wirecap_worker_requests_total{status="503"} 2.0' in text
    assert _metric(text, "wirecap_worker_active_captures") == 0
    assert log.count(": 503 ") == 2 and "Operation not permitted" in log  # -v tells why


# -- many streams -------------------------------------------------------------------


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.root
def test_fd_count_is_stable_after_100_streams_of_every_kind(tmp_path: Path) -> None:
    port = _free_port()
    with _worker_process(tmp_path, f"127.0.0.1:{port}") as worker, udp_sink() as sink:
        base = f"http://127.0.0.1:{port}/capture"
        kinds: list[dict[str, str]] = [
            {"interface": "lo", "filter": f"udp dst port {sink}"},
            {"filter": f"udp dst port {sink}", "format": "pcapng"},
            {"filter": f"udp dst port {sink}", "linktype": "sll"},
            {"interface": "lo", "filter": "udp port"},  # 400
            {"interface": "nosuchdev0"},  # 400
        ]

        async def one(session: aiohttp.ClientSession, i: int) -> int:
            async with session.get(base, params=kinds[i % len(kinds)]) as r:
                if r.status == 200:
                    await r.content.readexactly(24)
                    if i % 2:  # half of them leave while packets flow
                        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                            tx.sendto(b"x" * 200, ("127.0.0.1", sink))
                        await asyncio.wait_for(r.content.readany(), 10)
                    r.close()
                return r.status

        async def rounds(count: int) -> list[int]:
            connector = aiohttp.TCPConnector(force_close=True, limit=0)
            async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as session:
                statuses: list[int] = []
                for start in range(0, count, 10):
                    statuses += await asyncio.gather(
                        *(one(session, i) for i in range(start, start + 10))
                    )
                return statuses

        async def settle(session: aiohttp.ClientSession, limit: int | None) -> int:
            # Capture handles close in a worker thread just after the client leaves:
            # wait (bounded) until no capture is active and the count is down.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                    idle = _metric(await r.text(), "wirecap_worker_active_captures") == 0
                if idle and (limit is None or _fds(worker.pid) <= limit):
                    break
                await asyncio.sleep(0.05)
            return _fds(worker.pid)

        async def scenario() -> tuple[int, int, list[int]]:
            async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
                await rounds(10)  # warm-up: thread pool, lazily opened libraries
                baseline = await settle(session, None)
                statuses = await rounds(100)
                return baseline, await settle(session, baseline), statuses

        baseline, after, statuses = asyncio.run(scenario())
    assert statuses.count(200) == 60 and statuses.count(400) == 40
    assert after <= baseline, f"{after - baseline} descriptors leaked over 100 streams"


# -- time to first bytes ------------------------------------------------------------


@pytest.mark.root
def test_headers_and_file_header_arrive_within_50_ms_idle_and_under_load(tmp_path: Path) -> None:
    """The design target is 50 ms from request to the pcap file header; it is
    asserted on the best of the idle samples (a busy CI box is slow, not wrong)
    and with a generous bound under load, and printed like a benchmark."""
    port = _free_port()
    with _worker_process(tmp_path, f"127.0.0.1:{port}") as _worker, udp_sink() as sink:
        base = f"http://127.0.0.1:{port}/capture"

        async def first_bytes(session: aiohttp.ClientSession, params: dict[str, str]) -> float:
            started = time.monotonic()
            async with session.get(base, params=params) as r:
                header = await r.content.readexactly(24)
                elapsed = time.monotonic() - started
                r.close()
            assert r.status == 200 and header[:4] == bytes.fromhex("4d3cb2a1")
            return elapsed

        async def scenario() -> tuple[list[float], list[float]]:
            connector = aiohttp.TCPConnector(force_close=True, limit=0)
            async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as session:
                params = {"filter": "udp port 9"}
                idle = [await first_bytes(session, params) for _ in range(15)]
                # Load: four streams carrying ~5000 packets/s, opened beside the samples.
                load = [
                    await session.get(base, params={"filter": f"udp dst port {sink}"})
                    for _ in range(4)
                ]
                flood = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    "import socket, time\n"
                    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    "end = time.monotonic() + 30\n"
                    "while time.monotonic() < end:\n"
                    f"    for _ in range(50): s.sendto(bytes(300), ('127.0.0.1', {sink}))\n"
                    "    time.sleep(0.01)\n",
                )
                try:
                    busy = [await first_bytes(session, params) for _ in range(15)]
                finally:
                    flood.kill()
                    await flood.wait()
                    for r in load:
                        r.close()
                return idle, busy

        idle, busy = asyncio.run(scenario())

    def ms(samples: list[float]) -> str:
        ordered = sorted(samples)
        return (
            f"best {ordered[0] * 1000:.1f} ms, median {statistics.median(ordered) * 1000:.1f} ms, "
            f"max {ordered[-1] * 1000:.1f} ms"
        )

    print(f"\nfirst bytes (target 50 ms): idle {ms(idle)}; under load {ms(busy)}")
    assert min(idle) < 0.05
    assert statistics.median(busy) < 0.5

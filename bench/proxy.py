"""Proxy benchmark: `wirecap proxy` against socat and a direct connection on loopback.

Method
------
Everything runs on 127.0.0.1 in separate processes: an *origin* (this file run
with ``--origin-server``: one thread per connection, blocking ``sendall`` of a
1 MiB buffer), the relay under test, and the *client* (this process). The
machine's CPUs are shared by all three; on a 2-CPU machine a relay competes with
the client and the origin for CPU time, which the report states.

The origin protocol: the client sends an 8-byte big-endian size N. For N > 0 the
origin sends N bytes and then half-closes; for N = 0 it answers one byte (a
proof that the tunnel works end to end) and holds the connection until the
client closes it.

1. **Bulk download throughput.** One transfer of ``--size`` MiB origin→client
   over each path:

   * *direct*: the client connects to the origin;
   * *socat*: ``socat TCP-LISTEN:P,bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:ORIGIN``
     (a C relay with its default 8 KiB buffer, no authentication);
   * *wirecap, capture on*: the real ``wirecap proxy`` CLI with
     ``--digest-algorithms MD5 -s 102400`` (the default size cap: after 100 KiB
     of capture the kernel cuts each packet to 128 bytes, which is what users
     run). The client does the CONNECT with digest authentication itself on a
     raw socket;
   * *wirecap, capture off*: the same proxy composition (``wirecap.cli.proxy``
     ``run``), started from a small script that replaces
     ``wirecap.proxy.server.ConnectionRecorder`` with a subclass whose start,
     stats and stop do nothing (the capture is never opened). The product has
     no option to switch capture off; this exists only in the benchmark.

   The clock starts when the client sends the size request (after the tunnel is
   established) and stops when the last byte is in; the client reads with
   ``recv_into`` into a preallocated 1 MiB buffer, the same code for every path.
   Each round runs every path once, in an order rotated from round to round,
   after one unmeasured warm-up transfer per path. The report gives the median
   over rounds with the min–max range, in MB/s (10^6 bytes per second).

2. **CONNECT→200 latency.** ``--connects`` sequential tunnels per proxy (capture
   on and off). One 407 round trip fetches a nonce, then every CONNECT answers
   it with the next nonce count (RFC 7616 §3.4), so each measured request is an
   authenticated CONNECT: the time from sending it to having the whole 200
   response head (the proxy answers only after its TCP handshake with the
   origin, and with capture on after arming the capture). The client closes
   each tunnel at once. p50/p90/p99 in ms.

3. **Concurrent tunnels.** A freshly started proxy; ``--tunnels`` authenticated
   tunnels are opened (``--concurrency`` at a time, spread over several users
   because of the default ``--max-per-user 256``), each proven by a one-byte
   answer from the origin, and held open together. Reported: how many opened,
   how long opening them all took, the proxy's memory from /proc/PID/status
   (VmRSS, split into RssAnon and RssFile) and open fds before and while they
   are held and once they are closed, the packet sockets in /proc/net/packet,
   and how long after closing the tunnels the proxy is back to its idle fds
   and packet sockets (captures linger 2 s for late packets). Each capture has its
   own libpcap handle with a 1 MiB TPACKET ring: kernel memory (not swappable,
   not the Python heap) that libpcap maps into the proxy, all of it at once, so
   it is counted in RssFile while the capture is open.

The machine's other work shares the CPUs and the loopback (other programs'
packet sockets filter every loopback packet too), so the report gives the load
average before and after and the packet sockets found at the start.

Targets (exit status 1 when one is missed, 2 when the benchmark cannot run):

* wirecap capture-on median throughput ≥ 1.0 × socat's;
* wirecap capture-on median throughput ≥ 0.8 × capture-off's;
* every one of the ``--tunnels`` concurrent tunnels (capture on) is opened.

Latency and memory are reported without targets (connectcap measured 9–26 ms
from CONNECT to 200).

Needs root (live capture) and socat. ``--quick`` is a smoke check with small
sizes; ``--markdown`` also prints the results as Markdown tables for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from wirecap.proxy.digest import digest_response
from wirecap.proxy.options import DEFAULT_MAX_PER_USER, DEFAULT_SIZE_CAP
from wirecap.proxy.recorder import DEFAULT_RECORDER_BUFFER, HEADER_SNAPLEN

MIB = 1 << 20
#: The client's receive buffer and the origin's send chunk.
CLIENT_BUFFER = 1 * MIB
ORIGIN_CHUNK = 1 * MIB
WARMUP_BYTES = 64 * MIB
#: A transfer that stalls this long fails (SO_RCVTIMEO: no extra syscall per recv).
STALL_TIMEOUT_S = 60
SETUP_TIMEOUT_S = 30.0
PROXY_START_TIMEOUT_S = 30.0
#: SIGTERM makes the proxy finish its captures (at most 30 s) before it exits.
PROXY_STOP_TIMEOUT_S = 45.0
#: After the held tunnels close: wait this long at most for their captures to end.
SETTLE_TIMEOUT_S = 120.0
#: Tunnels per user in the concurrency test: safely below the default --max-per-user.
TUNNELS_PER_USER = DEFAULT_MAX_PER_USER * 3 // 4
#: File descriptors wanted: the proxy holds ~4 per tunnel (client and origin
#: sockets, capture handle, pcap file); it inherits this limit from the benchmark.
WANTED_NOFILE = 16384
ALGORITHM = "MD5"
REALM = "connectcap"
TARGET_VS_SOCAT = 1.0
TARGET_ON_VS_OFF = 0.8

#: The capture-off proxy: the CLI's own composition with the recorder swapped for
#: a no-op (benchmark only; the product always captures).
NO_CAPTURE_PROXY = '''\
import sys

import wirecap.proxy.server
from wirecap.cli.proxy import build_parser, options_from_args, run
from wirecap.core.capture.stats import CaptureStats
from wirecap.proxy.recorder import ConnectionRecorder, Recording

_NOTHING = CaptureStats(0, 0, 0, 0)


class NoCaptureRecorder(ConnectionRecorder):
    """ConnectionRecorder that never opens its capture (benchmark only)."""

    async def start(self):
        pass

    def stats(self):
        return _NOTHING

    async def stop(self):
        return Recording(self.path, _NOTHING, False, 0)


wirecap.proxy.server.ConnectionRecorder = NoCaptureRecorder
sys.exit(run(options_from_args(build_parser("wirecap proxy (no capture)").parse_args())))
'''

DIRECT, SOCAT, CAPTURE_ON, CAPTURE_OFF = "direct", "socat", "capture on", "capture off"
PATH_LABELS = {
    DIRECT: "direct to the origin",
    SOCAT: "socat (C relay, no auth)",
    CAPTURE_ON: "wirecap proxy, capture on",
    CAPTURE_OFF: "wirecap proxy, capture off*",
}


class BenchError(Exception):
    """The benchmark could not run (as opposed to a missed target)."""


# --- the origin (a separate process) -------------------------------------------------


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _origin_connection(conn: socket.socket, chunk: memoryview) -> None:
    with conn:
        try:
            header = _recv_exact(conn, 8)
            if header is None:
                return
            remaining = int.from_bytes(header, "big")
            if remaining == 0:
                conn.sendall(b"\x01")
            else:
                while remaining:
                    n = min(remaining, len(chunk))
                    conn.sendall(chunk[:n])
                    remaining -= n
                conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):  # hold until the client closes
                pass
        except OSError:
            pass


def origin_server() -> int:
    """Serve the origin protocol on 127.0.0.1; print the port; exit when stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the benchmark stops us
    threading.stack_size(256 * 1024)  # up to thousands of mostly idle threads
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    print(listener.getsockname()[1], flush=True)

    def watch_parent() -> None:
        sys.stdin.buffer.read()  # EOF: the benchmark is gone, whatever happened to it
        os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    chunk = memoryview(bytes(ORIGIN_CHUNK))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_origin_connection, args=(conn, chunk), daemon=True).start()


# --- digest client -------------------------------------------------------------------

_AUTH_PARAM = re.compile(r'([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def _status(head: bytes) -> int:
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise BenchError(f"not an HTTP response: {head[:80]!r}")
    return int(parts[1])


@dataclass
class DigestSession:
    """One user's nonce, answered with increasing nonce counts (RFC 7616 §3.4)."""

    user: str
    password: str
    nonce: str = ""
    opaque: str = ""
    nc: int = 0

    def take_challenge(self, head: bytes) -> None:
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() != "proxy-authenticate":
                continue
            scheme, _, rest = value.strip().partition(" ")
            if scheme.lower() != "digest":
                continue
            params = {m[1].lower(): m[2] or m[3] for m in _AUTH_PARAM.finditer(rest)}
            if params.get("algorithm", "MD5").upper() == ALGORITHM:
                self.nonce, self.opaque, self.nc = params["nonce"], params.get("opaque", ""), 0
                return
        raise BenchError(f"no {ALGORITHM} digest challenge in the 407:\n{head.decode()}")

    def authorization(self, uri: str) -> str:
        self.nc += 1
        nc = f"{self.nc:08x}"
        cnonce = secrets.token_hex(8)
        response = digest_response(
            ALGORITHM,
            username=self.user,
            realm=REALM,
            password=self.password,
            method="CONNECT",
            uri=uri,
            nonce=self.nonce,
            nc=nc,
            cnonce=cnonce,
        )
        return (
            f'Digest username="{self.user}", realm="{REALM}", nonce="{self.nonce}", '
            f'uri="{uri}", response="{response}", algorithm={ALGORITHM}, qop=auth, '
            f'nc={nc}, cnonce="{cnonce}", opaque="{self.opaque}"'
        )


def connect_request(uri: str, authorization: str | None) -> bytes:
    auth = f"Proxy-Authorization: {authorization}\r\n" if authorization else ""
    return f"CONNECT {uri} HTTP/1.1\r\nHost: {uri}\r\n{auth}\r\n".encode("ascii")


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise BenchError(f"the proxy closed the connection before answering: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SETUP_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def fetch_challenge(proxy_port: int, uri: str, session: DigestSession) -> None:
    with _connect(proxy_port) as sock:
        sock.sendall(connect_request(uri, None))
        head, _ = read_head(sock)
    if _status(head) != 407:
        raise BenchError(f"expected 407 without credentials, got: {head.decode()}")
    session.take_challenge(head)


def open_tunnel(proxy_port: int, uri: str, session: DigestSession) -> socket.socket:
    """An authenticated tunnel (one retry when the nonce went stale)."""
    for attempt in range(2):
        sock = _connect(proxy_port)
        try:
            sock.sendall(connect_request(uri, session.authorization(uri)))
            head, rest = read_head(sock)
        except BaseException:
            sock.close()
            raise
        status = _status(head)
        if status == 200 and not rest:
            return sock
        sock.close()
        if status == 407 and attempt == 0:
            session.take_challenge(head)
            continue
        raise BenchError(f"CONNECT {uri} answered: {head.decode()}")
    raise AssertionError("unreachable")


# --- processes ------------------------------------------------------------------------


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes], timeout: float, *, group: bool = False) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        process.wait()


@dataclass
class Origin:
    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        _stop(self.process, 5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_origin(stack: contextlib.ExitStack) -> Origin:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--origin-server"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    origin = Origin(process, 0)
    stack.callback(origin.stop)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        raise BenchError(f"the origin did not start (exit {process.poll()})")
    origin.port = int(line)
    return origin


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_socat(stack: contextlib.ExitStack, origin_port: int, log: Path) -> int:
    port = _free_port()
    with log.open("wb") as log_file:
        # A session of its own: the forked children are ended with it.
        process = subprocess.Popen(
            [
                "socat",
                f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                f"TCP:127.0.0.1:{origin_port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,
        )
    stack.callback(_stop, process, 5, group=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"socat did not start:\n{_log_tail(log)}") from None
            time.sleep(0.05)


@dataclass
class Proxy:
    label: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise BenchError(f"{self.label} proxy exited ({code}):\n{_log_tail(self.log)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=PROXY_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wirecap_command() -> list[str]:
    script = Path(sys.executable).with_name("wirecap")
    return [str(script), "proxy"] if script.exists() else [sys.executable, "-m", "wirecap", "proxy"]


def start_proxy(
    stack: contextlib.ExitStack,
    workdir: Path,
    name: str,
    *,
    capture: bool,
    passwd: Path,
    size_cap: int,
) -> Proxy:
    command = _wirecap_command() if capture else [sys.executable, "-c", NO_CAPTURE_PROXY]
    spool = workdir / f"spool-{name}"
    log = workdir / f"proxy-{name}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                *command,
                "-l",
                "127.0.0.1:0",
                "-d",
                str(spool),
                "-p",
                str(passwd),
                "--digest-algorithms",
                ALGORITHM,
                "-s",
                str(size_cap),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    proxy = Proxy(CAPTURE_ON if capture else CAPTURE_OFF, process, 0, log)
    stack.callback(proxy.stop)
    deadline = time.monotonic() + PROXY_START_TIMEOUT_S
    while True:
        match = re.search(r"listening on \S+ port (\d+)", log.read_text(errors="replace"))
        if match:
            proxy.port = int(match[1])
            return proxy
        proxy.check()
        if time.monotonic() > deadline:
            raise BenchError(f"{proxy.label} proxy did not start:\n{_log_tail(log)}")
        time.sleep(0.05)


def write_ccpasswd(path: Path, users: int) -> list[DigestSession]:
    sessions = [DigestSession(f"bench{i}", secrets.token_urlsafe(18)) for i in range(users)]
    path.write_text("".join(f"{s.user}:{s.password}:{s.user}@example.org\n" for s in sessions))
    path.chmod(0o600)
    return sessions


# --- 1. throughput ---------------------------------------------------------------------


def transfer(sock: socket.socket, size: int, buffer: memoryview) -> float:
    """Ask the origin for `size` bytes on `sock` and read them; seconds taken."""
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", STALL_TIMEOUT_S, 0))
    received = 0
    start = time.perf_counter()
    sock.sendall(size.to_bytes(8, "big"))
    while received < size:
        n = sock.recv_into(buffer)
        if n == 0:
            raise BenchError(f"connection closed after {received} of {size} bytes")
        received += n
    elapsed = time.perf_counter() - start
    if received != size:
        raise BenchError(f"received {received} bytes, asked for {size}")
    return elapsed


@dataclass
class Throughput:
    samples: dict[str, list[float]] = field(default_factory=dict)  # MB/s per path

    def median(self, path: str) -> float:
        return statistics.median(self.samples[path])


def measure_throughput(
    openers: dict[str, Callable[[], socket.socket]],
    proxies: Sequence[Proxy],
    size: int,
    rounds: int,
    progress: Callable[[str], None],
) -> Throughput:
    buffer = memoryview(bytearray(CLIENT_BUFFER))
    result = Throughput({path: [] for path in openers})
    order = list(openers)
    for path in order:
        with openers[path]() as sock:
            transfer(sock, min(size, WARMUP_BYTES), buffer)
    for round_no in range(rounds):
        shift = round_no % len(order)
        for path in order[shift:] + order[:shift]:
            for proxy in proxies:
                proxy.check()
            with openers[path]() as sock:
                seconds = transfer(sock, size, buffer)
            result.samples[path].append(size / seconds / 1e6)
            progress(f"round {round_no + 1}/{rounds} {path}: {size / seconds / 1e6:.0f} MB/s")
    return result


# --- 2. latency ------------------------------------------------------------------------


@dataclass
class Latency:
    samples_ms: list[float]
    failures: Counter[str]

    def percentile(self, p: int) -> float:
        if len(self.samples_ms) < 2:
            return self.samples_ms[0] if self.samples_ms else math.nan
        return statistics.quantiles(self.samples_ms, n=100, method="inclusive")[p - 1]


def measure_latency(proxy: Proxy, uri: str, session: DigestSession, count: int) -> Latency:
    fetch_challenge(proxy.port, uri, session)
    result = Latency([], Counter())
    for _ in range(count):
        request = connect_request(uri, session.authorization(uri))
        with _connect(proxy.port) as sock:
            start = time.perf_counter()
            sock.sendall(request)
            head, _ = read_head(sock)
            elapsed = time.perf_counter() - start
        status = _status(head)
        if status == 200:
            result.samples_ms.append(elapsed * 1000)
        else:
            result.failures[f"HTTP {status}"] += 1
            if status == 407:
                session.take_challenge(head)
    proxy.check()
    return result


# --- 3. concurrent tunnels -------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The proxy process and the packet sockets at one moment."""

    rss_kib: int
    anon_kib: int
    file_kib: int
    fds: int
    packet_sockets: int

    def mib(self) -> str:
        return (
            f"VmRSS {self.rss_kib / 1024:.0f} MiB "
            f"(anon {self.anon_kib / 1024:.0f}, file {self.file_kib / 1024:.0f})"
        )


def _packet_sockets() -> int:
    """AF_PACKET sockets in this network namespace (one per open libpcap capture)."""
    return len(Path("/proc/net/packet").read_text().splitlines()) - 1


def snapshot(pid: int) -> Snapshot:
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            values[key] = int(value.split()[0])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return Snapshot(
        values.get("VmRSS", 0),
        values.get("RssAnon", 0),
        values.get("RssFile", 0),
        fds,
        _packet_sockets(),
    )


@dataclass
class Tunnels:
    label: str
    wanted: int
    users: int
    concurrency: int
    opened: int = 0
    seconds: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    before: Snapshot | None = None
    held: Snapshot | None = None
    after: Snapshot | None = None
    #: From closing the tunnels until the proxy is back to its idle fds and packet sockets.
    settle_seconds: float = math.nan


async def _hold_tunnels(
    proxy: Proxy, uri: str, sessions: Sequence[DigestSession], result: Tunnels
) -> None:
    gate = asyncio.Semaphore(result.concurrency)
    writers: list[asyncio.StreamWriter] = []

    async def open_one(index: int) -> bool:
        session = sessions[index % len(sessions)]
        async with gate:
            try:
                async with asyncio.timeout(SETUP_TIMEOUT_S):
                    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                    writers.append(writer)
                    writer.write(connect_request(uri, session.authorization(uri)))
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = _status(head)
                    if status != 200:
                        result.failures[f"HTTP {status}"] += 1
                        return False
                    writer.write(bytes(8))  # size 0: the origin answers one byte and holds
                    await reader.readexactly(1)
                    return True
            except TimeoutError:
                result.failures["timeout"] += 1
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                result.failures[type(exc).__name__] += 1
            return False

    try:
        start = time.perf_counter()
        opened = await asyncio.gather(*(open_one(i) for i in range(result.wanted)))
        result.seconds = time.perf_counter() - start
        result.opened = sum(opened)
        await asyncio.sleep(0.5)  # let the proxy's loop go idle before looking
        result.held = snapshot(proxy.pid)
    finally:
        for writer in writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


def measure_tunnels(
    stack: contextlib.ExitStack,
    workdir: Path,
    *,
    capture: bool,
    origin_port: int,
    count: int,
    concurrency: int,
    size_cap: int,
) -> Tunnels:
    name = "tunnels-" + ("on" if capture else "off")
    users = max(1, math.ceil(count / TUNNELS_PER_USER))
    sessions = write_ccpasswd(workdir / f"ccpasswd-{name}", users)
    with contextlib.ExitStack() as own:
        proxy = start_proxy(
            own,
            workdir,
            name,
            capture=capture,
            passwd=workdir / f"ccpasswd-{name}",
            size_cap=size_cap,
        )
        stack.callback(proxy.stop)  # also on an error that escapes this one
        uri = f"127.0.0.1:{origin_port}"
        for session in sessions:
            fetch_challenge(proxy.port, uri, session)
        result = Tunnels(proxy.label, count, users, concurrency)
        time.sleep(0.5)
        result.before = snapshot(proxy.pid)
        asyncio.run(_hold_tunnels(proxy, uri, sessions, result))
        proxy.check()
        # The captures linger after the close (late FIN/ICMP), then end.
        closed = time.monotonic()
        while True:
            after = snapshot(proxy.pid)
            settled = after.packet_sockets <= result.before.packet_sockets
            if settled and after.fds <= result.before.fds:
                result.settle_seconds = time.monotonic() - closed
                break
            if time.monotonic() > closed + SETTLE_TIMEOUT_S:
                break
            time.sleep(0.1)
        result.after = after
    return result


# --- report ----------------------------------------------------------------------------


@dataclass
class Results:
    size: int
    rounds: int
    size_cap: int
    throughput: Throughput
    latency: dict[str, Latency]
    tunnels: list[Tunnels]
    #: 1-minute load average before and after, and packet sockets of other programs:
    #: anything else running on the machine shares its CPUs and its loopback.
    load: tuple[float, float] = (math.nan, math.nan)
    other_packet_sockets: int = 0
    targets: list[tuple[str, bool, str]] = field(default_factory=list)


def _range(values: Sequence[float]) -> str:
    return f"{min(values):.0f}–{max(values):.0f}"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def evaluate(results: Results) -> None:
    t = results.throughput
    on, off, socat = t.median(CAPTURE_ON), t.median(CAPTURE_OFF), t.median(SOCAT)
    results.targets = [
        (
            f"capture-on throughput ≥ {TARGET_VS_SOCAT:.1f}× socat",
            on >= TARGET_VS_SOCAT * socat,
            f"{on / socat:.2f}× ({on:.0f} vs {socat:.0f} MB/s)",
        ),
        (
            f"capture-on throughput ≥ {TARGET_ON_VS_OFF:.1f}× capture-off",
            on >= TARGET_ON_VS_OFF * off,
            f"{on / off:.2f}× ({on:.0f} vs {off:.0f} MB/s)",
        ),
    ]
    for tunnels in results.tunnels:
        if tunnels.label == CAPTURE_ON:
            results.targets.append(
                (
                    f"{tunnels.wanted} concurrent tunnels all open (capture on)",
                    tunnels.opened == tunnels.wanted,
                    f"{tunnels.opened}/{tunnels.wanted}",
                )
            )


def report(results: Results) -> str:
    cpus = len(os.sched_getaffinity(0))
    t = results.throughput
    socat = t.median(SOCAT)
    lines = [
        f"wirecap proxy benchmark: {cpus} CPUs ({_cpu_model()}), Linux {platform.release()}, "
        f"Python {platform.python_version()}",
        f"client, origin and relay are separate processes sharing {cpus} CPUs"
        + (" (the relay competes with client and origin for CPU)" if cpus <= 2 else ""),
        f"load average (1 min) {results.load[0]:.2f} at start, {results.load[1]:.2f} at end; "
        f"packet sockets of other programs at start: {results.other_packet_sockets}",
        f"proxy -s {results.size_cap} (default size cap: after {results.size_cap // 1024} KiB "
        f"of capture packets are cut to {HEADER_SNAPLEN} bytes); "
        f"capture ring {DEFAULT_RECORDER_BUFFER // MIB} MiB per tunnel",
        "",
        f"1. Bulk download origin→client, {results.size // MIB} MiB per transfer, "
        f"median [min–max] of {results.rounds} rounds, MB/s (10^6 B/s)",
    ]
    for path, label in PATH_LABELS.items():
        values = t.samples[path]
        lines.append(
            f"   {label:<30} {t.median(path):7.0f}  [{_range(values)}]"
            f"  {t.median(path) / socat:5.2f}× socat"
        )
    lines += [
        f"   capture on / capture off: {t.median(CAPTURE_ON) / t.median(CAPTURE_OFF):.2f}",
        "   * capture off: ConnectionRecorder replaced by a no-op in the benchmark "
        "(the product always captures)",
        "",
        "2. Authenticated CONNECT → 200 (sequential, tunnel closed at once), ms",
    ]
    for label, lat in results.latency.items():
        failed = sum(lat.failures.values())
        lines.append(
            f"   {label:<12} n={len(lat.samples_ms)}  p50 {lat.percentile(50):.2f}  "
            f"p90 {lat.percentile(90):.2f}  p99 {lat.percentile(99):.2f}  "
            f"max {max(lat.samples_ms, default=math.nan):.2f}"
            + (f"  failed {failed} {dict(lat.failures)}" if failed else "")
        )
    lines += ["   (connectcap: 9–26 ms)", ""]
    for tun in results.tunnels:
        assert tun.before is not None
        lines.append(
            f"3. {tun.wanted} concurrent tunnels, {tun.label}: "
            f"{tun.users} user{'s' if tun.users > 1 else ''}, "
            f"{tun.concurrency} opening at once"
        )
        lines.append(
            f"   opened {tun.opened}/{tun.wanted} in {tun.seconds:.2f} s"
            + (f"; failures {dict(tun.failures)}" if tun.failures else "")
        )
        for name, snap in (("idle", tun.before), ("held", tun.held), ("closed", tun.after)):
            if snap is None:
                continue
            lines.append(
                f"   {name:<7} proxy {snap.mib()}, {snap.fds} fds; "
                f"packet sockets {snap.packet_sockets}"
            )
        if tun.held is not None and tun.opened:
            per = (tun.held.rss_kib - tun.before.rss_kib) / tun.opened
            lines.append(f"   VmRSS growth {per:.0f} KiB per tunnel")
        if math.isnan(tun.settle_seconds):
            lines.append(
                f"   not back to idle fds and packet sockets {SETTLE_TIMEOUT_S:.0f} s after closing"
            )
        else:
            lines.append(
                f"   back to idle fds and packet sockets {tun.settle_seconds:.1f} s after closing "
                "(captures linger 2 s)"
            )
    lines += ["", "Targets"]
    for name, ok, detail in results.targets:
        lines.append(f"   {'PASS' if ok else 'MISS'}  {name}: {detail}")
    return "\n".join(lines)


def markdown(results: Results) -> str:
    t = results.throughput
    socat = t.median(SOCAT)
    cpus = len(os.sched_getaffinity(0))
    lines = [
        f"Bulk download through a loopback relay, {results.size // MIB} MiB per transfer, "
        f"median of {results.rounds} rounds ({cpus} CPUs shared by client, origin and relay; "
        f"proxy with the default `-s {results.size_cap}`):",
        "",
        "| Path | MB/s (median) | range | vs socat |",
        "|---|---:|---:|---:|",
    ]
    for path, label in PATH_LABELS.items():
        lines.append(
            f"| {label} | {t.median(path):.0f} | {_range(t.samples[path])} "
            f"| {t.median(path) / socat:.2f}× |"
        )
    lines += [
        "",
        "\\* the capture recorder replaced by a no-op in the benchmark; "
        "the product always captures.",
        "",
        "| Authenticated CONNECT → 200 | n | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, lat in results.latency.items():
        lines.append(
            f"| {label} | {len(lat.samples_ms)} | {lat.percentile(50):.2f} "
            f"| {lat.percentile(90):.2f} | {lat.percentile(99):.2f} "
            f"| {max(lat.samples_ms, default=math.nan):.2f} |"
        )
    lines += [
        "",
        "| Concurrent tunnels | opened | time to open | proxy VmRSS idle → held "
        "| packet sockets idle → held | idle again after closing |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for tun in results.tunnels:
        assert tun.before is not None
        held = tun.held or tun.before
        lines.append(
            f"| {tun.label} | {tun.opened}/{tun.wanted} | {tun.seconds:.2f} s "
            f"| {tun.before.rss_kib / 1024:.0f} → {held.rss_kib / 1024:.0f} MiB "
            f"| {tun.before.packet_sockets} → {held.packet_sockets} "
            f"| {tun.settle_seconds:.1f} s |"
        )
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------


def raise_nofile(wanted: int) -> int:
    """Raise RLIMIT_NOFILE (inherited by the proxies and the origin); return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):  # a higher hard limit needs root
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


def run(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> Results:
    def progress(text: str) -> None:
        print(f"  … {text}", file=sys.stderr, flush=True)

    load_start = os.getloadavg()[0]
    other_packet_sockets = _packet_sockets()
    origin = start_origin(stack)
    socat_port = start_socat(stack, origin.port, workdir / "socat.log")
    sessions = write_ccpasswd(workdir / "ccpasswd", 1)
    session_on, session_off = sessions[0], DigestSession(sessions[0].user, sessions[0].password)
    passwd = workdir / "ccpasswd"
    on = start_proxy(stack, workdir, "on", capture=True, passwd=passwd, size_cap=args.size_cap)
    off = start_proxy(stack, workdir, "off", capture=False, passwd=passwd, size_cap=args.size_cap)
    uri = f"127.0.0.1:{origin.port}"
    fetch_challenge(on.port, uri, session_on)
    fetch_challenge(off.port, uri, session_off)
    openers: dict[str, Callable[[], socket.socket]] = {
        DIRECT: lambda: _connect(origin.port),
        SOCAT: lambda: _connect(socat_port),
        CAPTURE_ON: lambda: open_tunnel(on.port, uri, session_on),
        CAPTURE_OFF: lambda: open_tunnel(off.port, uri, session_off),
    }
    progress(f"throughput: {args.size} MiB × {args.rounds} rounds × {len(openers)} paths")
    throughput = measure_throughput(openers, (on, off), args.size * MIB, args.rounds, progress)
    progress(f"latency: {args.connects} CONNECTs per proxy")
    latency = {
        CAPTURE_ON: measure_latency(on, uri, session_on, args.connects),
        CAPTURE_OFF: measure_latency(off, uri, session_off, args.connects),
    }
    on.stop()
    off.stop()
    tunnels = []
    for capture in (True, False):
        progress(f"{args.tunnels} concurrent tunnels, capture {'on' if capture else 'off'}")
        tunnels.append(
            measure_tunnels(
                stack,
                workdir,
                capture=capture,
                origin_port=origin.port,
                count=args.tunnels,
                concurrency=args.concurrency,
                size_cap=args.size_cap,
            )
        )
    return Results(
        args.size * MIB,
        args.rounds,
        args.size_cap,
        throughput,
        latency,
        tunnels,
        load=(load_start, os.getloadavg()[0]),
        other_packet_sockets=other_packet_sockets,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=int, help="MiB per transfer (default 2048; quick 64)")
    parser.add_argument("--rounds", type=int, help="throughput rounds (default 3; quick 2)")
    parser.add_argument("--connects", type=int, help="CONNECTs per proxy (default 200; quick 30)")
    parser.add_argument("--tunnels", type=int, help="concurrent tunnels (default 1000; quick 100)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="tunnels being opened at once (default 32)"
    )
    parser.add_argument(
        "--size-cap",
        type=int,
        default=DEFAULT_SIZE_CAP,
        help=f"the proxy's -s (default: its own default, {DEFAULT_SIZE_CAP})",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke check")
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    parser.add_argument("--origin-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = {"size": (2048, 64), "rounds": (3, 2), "connects": (200, 30), "tunnels": (1000, 100)}
    for name, (normal, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else normal)
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-up


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.origin_server:
        return origin_server()
    if os.geteuid() != 0:
        print("bench/proxy.py: needs root (the proxy captures)", file=sys.stderr)
        return 2
    if shutil.which("socat") is None:
        print("bench/proxy.py: socat not found (Debian package socat)", file=sys.stderr)
        return 2
    nofile = raise_nofile(WANTED_NOFILE)
    # Proxy ~4 fds per tunnel, client and origin 1 each, plus margin.
    if nofile < 4 * args.tunnels + 256:
        print(f"bench/proxy.py: RLIMIT_NOFILE {nofile} is too low", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="wirecap-bench-proxy-"))
    try:
        with contextlib.ExitStack() as stack:
            results = run(args, workdir, stack)
    except BenchError as exc:
        print(f"bench/proxy.py: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    evaluate(results)
    print(report(results))
    if args.markdown:
        print()
        print(markdown(results))
    missed = [name for name, ok, _ in results.targets if not ok]
    if missed:
        print(f"\nMISSED: {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

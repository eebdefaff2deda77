"""Make the TCP-analysis test captures in tests/data/analysis/.

Each scenario builds the proxy — router — origin namespaces of tests/netns.py, runs a
small socket client in the proxy namespace and a server in the origin namespace (both
are this module, started with ``--role``), records the client's veth ``px0`` with
``wirecap record`` and checks the file with tshark: the fault the file is named after
must be in it, or the script fails.

    .venv/bin/python -m tests.data.make_analysis_captures [--out DIR] [--only NAME]...

Needs root, nft and tshark. tc netem does not exist on this kernel, so faults are made
with nftables on the router (drop, reject, drop ICMP), link MTUs and socket options.
Where a scenario needs wire-size segments (one drop = one segment, PMTUD segment sizes)
GSO is turned off with ``ip link set DEV gso_max_segs 1`` on the endpoints' veths, so
ethtool is not needed (veth does no GRO without XDP, so receivers see single segments).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.netns import (
    ORIGIN_V4,
    ORIGIN_V6,
    PROXY_V6,
    ROUTER_NEAR_V6,
    Topology,
    run,
    topology,
)

PORT = 8080
#: Nothing listens here: the client's SYN is answered with RST/ACK.
CLOSED_PORT = 8081
MODULE = "tests.data.make_analysis_captures"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path(__file__).resolve().parent / "analysis"
CAPTURE_FILTER = ("tcp", "or", "icmp", "or", "icmp6")
#: Bytes kept of each packet where the payload does not matter (headers, ICMP quote).
SHORT_SNAPLEN = 200
MAX_FILE_BYTES = 300_000
SMALL_MTU = 1280

NORMAL_SIZE = 50_000
RESET_DECLARED, RESET_SENT = 100_000, 20_000
ABORT_DECLARED, ABORT_CHUNK, ABORT_PAUSE, ABORT_READ = 1_000_000, 16_384, 0.01, 32_768
UPLOAD_SIZE = 200_000
DOWNLOAD_SIZE = 200_000
LOSS_SIZE = 300_000
LOSS_PERCENT = 10
ZERO_WINDOW_SIZE = 150_000
ZERO_WINDOW_RCVBUF = 4096
ZERO_WINDOW_FIRST_READ = 4096
ZERO_WINDOW_STALL = 3.0
SLOW_SIZE = 2_000
STREAM_SIZE, STREAM_CHUNK, STREAM_PAUSE = 300_000, 3_000, 0.02
STREAM_READ_BEFORE_RECORDING = 30_000
TRUNCATED_COUNT = 30

NO_ANSWER_CONNECT_TIMEOUT = 3.5
SENDER_GIVES_UP = 6.0
RECEIVER_GIVES_UP = 5.0
#: The origin's pause before its response: its delayed ACK of the request goes first.
THINK_TIME = 0.5

GET = b"GET /file HTTP/1.0\r\nHost: origin\r\n\r\n"
OK_EMPTY = b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"
_TEXT = b"wirecap analysis test data, line of 64 bytes ..................\n"


class CaptureCheckError(RuntimeError):
    """A capture does not show what its scenario promises."""


# --------------------------------------------------------------------------- peers


@dataclass
class Report:
    """What one peer did, printed as JSON on its last line of output."""

    received: int = 0
    sent: int = 0
    error: str | None = None
    elapsed: float = 0.0


ClientFn = Callable[["Scenario", Report], None]
ServerFn = Callable[[socket.socket, Report], None]


def _body(size: int) -> bytes:
    return (_TEXT * (size // len(_TEXT) + 1))[:size]


def _header(declared: int) -> bytes:
    return f"HTTP/1.0 200 OK\r\nContent-Length: {declared}\r\n\r\n".encode()


def _response(size: int) -> bytes:
    return _header(size) + _body(size)


def _upload(size: int) -> bytes:
    head = f"PUT /upload HTTP/1.0\r\nHost: origin\r\nContent-Length: {size}\r\n\r\n"
    return head.encode() + _body(size)


def _error_name(exc: OSError) -> str:
    if exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return type(exc).__name__


def _send(sock: socket.socket, report: Report, data: bytes) -> None:
    sock.sendall(data)
    report.sent += len(data)


def _read(sock: socket.socket, report: Report, limit: int | None = None) -> None:
    """Read until EOF, or until `limit` bytes have been read in all."""
    while limit is None or report.received < limit:
        data = sock.recv(65536)
        if not data:
            return
        report.received += len(data)


def _read_request(conn: socket.socket, report: Report) -> None:
    """Read a request's header and its Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("request ended early")
        data += chunk
    report.received += len(data)
    head, _, rest = data.partition(b"\r\n\r\n")
    declared = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            declared = int(value)
    _read(conn, report, report.received + declared - len(rest))


def _abort(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _open(
    scenario: Scenario,
    *,
    port: int = PORT,
    timeout: float = 30.0,
    rcvbuf: int | None = None,
) -> socket.socket:
    v6 = scenario.family == 6
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:  # before connect: the window scale is fixed by the SYN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((ORIGIN_V6 if v6 else ORIGIN_V4, port))
    except BaseException:
        sock.close()
        raise
    return sock


# Servers: each gets the accepted connection; the listener is in `_serve`.


def _serve_normal(conn: socket.socket, report: Report) -> None:
    _serve_download(conn, report, NORMAL_SIZE)


def _serve_download(conn: socket.socket, report: Report, size: int, *, think: float = 0.0) -> None:
    """HTTP/1.0 style: request, response, the server closes first, then the client."""
    _read_request(conn, report)
    if think:
        time.sleep(think)
    _send(conn, report, _response(size))
    conn.shutdown(socket.SHUT_WR)
    _read(conn, report)


def _serve_reset(conn: socket.socket, report: Report) -> None:
    _read_request(conn, report)
    _send(conn, report, _header(RESET_DECLARED) + _body(RESET_SENT))
    time.sleep(0.5)  # all of it delivered and ACKed: the RST comes mid-stream, not mid-flight
    _abort(conn)


def _serve_stream(
    conn: socket.socket, report: Report, size: int, chunk: int, pause: float, declared: int
) -> None:
    """A paced response: `chunk` bytes every `pause` seconds."""
    _read_request(conn, report)
    _send(conn, report, _header(declared))
    body = _body(size)
    for start in range(0, size, chunk):
        _send(conn, report, body[start : start + chunk])
        time.sleep(pause)
    conn.shutdown(socket.SHUT_WR)
    _read(conn, report)


def _serve_endless(conn: socket.socket, report: Report) -> None:
    _serve_stream(conn, report, ABORT_DECLARED, ABORT_CHUNK, ABORT_PAUSE, ABORT_DECLARED)


def _serve_truncated(conn: socket.socket, report: Report) -> None:
    _serve_stream(conn, report, STREAM_SIZE, STREAM_CHUNK, STREAM_PAUSE, STREAM_SIZE)


def _serve_upload(conn: socket.socket, report: Report) -> None:
    _read_request(conn, report)
    _send(conn, report, OK_EMPTY)
    conn.shutdown(socket.SHUT_WR)
    _read(conn, report)


def _serve_big_download(conn: socket.socket, report: Report) -> None:
    _serve_download(conn, report, DOWNLOAD_SIZE, think=THINK_TIME)


def _serve_zero_window(conn: socket.socket, report: Report) -> None:
    _serve_download(conn, report, ZERO_WINDOW_SIZE)


def _serve_slow(conn: socket.socket, report: Report) -> None:
    _serve_download(conn, report, SLOW_SIZE)


def _serve_thinking(conn: socket.socket, report: Report) -> None:
    _serve_download(conn, report, SLOW_SIZE, think=THINK_TIME)


def _serve_idle(conn: socket.socket, report: Report) -> None:
    _read(conn, report)


# Clients.


def _client_download(scenario: Scenario, report: Report) -> None:
    with _open(scenario, timeout=60.0) as sock:
        _send(sock, report, GET)
        _read(sock, report)


def _client_refused(scenario: Scenario, report: Report) -> None:
    with _open(scenario, port=CLOSED_PORT, timeout=5.0):
        pass


def _client_no_answer(scenario: Scenario, report: Report) -> None:
    with _open(scenario, timeout=NO_ANSWER_CONNECT_TIMEOUT):
        pass


def _client_unreachable(scenario: Scenario, report: Report) -> None:
    with _open(scenario, timeout=5.0):
        pass


def _client_abort(scenario: Scenario, report: Report) -> None:
    sock = _open(scenario)
    try:
        _send(sock, report, GET)
        _read(sock, report, ABORT_READ)
    finally:
        _abort(sock)
    time.sleep(0.3)  # the process stays while the origin's last segments meet the RST


def _client_upload(scenario: Scenario, report: Report) -> None:
    _put(scenario, report, UPLOAD_SIZE)


def _client_upload_lossy(scenario: Scenario, report: Report) -> None:
    _put(scenario, report, LOSS_SIZE)


def _put(scenario: Scenario, report: Report, size: int) -> None:
    """PUT a body, read the answer; give up (close) when the deadline passes."""
    deadline = time.monotonic() + scenario.give_up
    with _open(scenario) as sock:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        _send(sock, report, _upload(size))
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        _read(sock, report)


def _client_waits(scenario: Scenario, report: Report) -> None:
    """Send the request, wait for the answer; give up (close, FIN) after the deadline."""
    with _open(scenario) as sock:
        _send(sock, report, GET)
        sock.settimeout(scenario.give_up)
        _read(sock, report)


def _client_stalls(scenario: Scenario, report: Report) -> None:
    with _open(scenario, rcvbuf=ZERO_WINDOW_RCVBUF) as sock:
        _send(sock, report, GET)
        _read(sock, report, ZERO_WINDOW_FIRST_READ)
        time.sleep(ZERO_WINDOW_STALL)
        _read(sock, report)


def _client_streaming(scenario: Scenario, report: Report) -> None:
    with _open(scenario) as sock:
        _send(sock, report, GET)
        _read(sock, report, STREAM_READ_BEFORE_RECORDING)
        print("streaming", flush=True)  # the recorder starts now
        _read(sock, report)


def _serve(scenario: Scenario) -> Report:
    assert scenario.server is not None
    report = Report()
    v6 = scenario.family == 6
    family = socket.AF_INET6 if v6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("::" if v6 else "0.0.0.0", PORT))
        listener.listen(1)
        listener.settimeout(60.0)
        print("ready", flush=True)
        started = time.monotonic()
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(60.0)
                scenario.server(conn, report)
        except OSError as exc:
            report.error = _error_name(exc)
        report.elapsed = time.monotonic() - started
    return report


def _connect(scenario: Scenario) -> Report:
    report = Report()
    started = time.monotonic()
    try:
        scenario.client(scenario, report)
    except OSError as exc:
        report.error = _error_name(exc)
    report.elapsed = time.monotonic() - started
    return report


# --------------------------------------------------------------------------- router set-ups


def _no_setup(net: Topology) -> None:
    pass


def _mac(net: Topology, ns: str, dev: str) -> str:
    shown = json.loads(run(*net.exec(ns, "ip", "-j", "link", "show", "dev", dev)))
    return str(shown[0]["address"])


def _quiet_link(net: Topology) -> None:
    """No IPv6 housekeeping on the captured link: only the scenario's packets are recorded.

    The veths come up with link-local addresses whose duplicate address detection sends
    a Neighbor Solicitation within about a second; the proxy would then send Router
    Solicitations for ever, and the neighbour entries the topology primed would be
    re-probed by NS about 5 s later. So: no router solicitations, permanent neighbour
    entries on the proxy — router link, and recording starts once DAD has finished.
    """
    run(*net.exec(net.proxy, "sysctl", "-qw", "net.ipv6.conf.px0.router_solicitations=0"))
    near_mac, far_mac = _mac(net, net.proxy, "px0"), _mac(net, net.router, net.router_near)
    for ns, address, mac, dev in (
        (net.router, PROXY_V6, near_mac, net.router_near),
        (net.proxy, ROUTER_NEAR_V6, far_mac, "px0"),
    ):
        neigh = ["ip", "-6", "neigh", "replace", address, "lladdr", mac, "dev", dev]
        run(*net.exec(ns, *neigh, "nud", "permanent"))
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        tentative = "".join(
            run(*net.exec(ns, "ip", "-6", "addr", "show", "tentative"))
            for ns in (net.proxy, net.router, net.origin)
        )
        if not tentative:
            time.sleep(0.2)
            return
        time.sleep(0.1)
    raise RuntimeError(f"IPv6 addresses still tentative: {tentative}")


def _forward_rules(net: Topology, *rules: str) -> None:
    body = "\n".join(f"        {rule}" for rule in rules)
    net.nft(
        net.router,
        "table inet wirecap_test {\n"
        "    chain forward_rules {\n"
        "        type filter hook forward priority 0;\n"
        f"{body}\n"
        "    }\n"
        "}\n",
    )


def _drop_icmp_errors(net: Topology) -> None:
    """The router's own ICMP errors (frag-needed, packet too big) never leave it."""
    net.nft(
        net.router,
        "table inet wirecap_blackhole {\n"
        "    chain output_rules {\n"
        "        type filter hook output priority 0;\n"
        "        icmp type destination-unreachable drop\n"
        "        icmpv6 type packet-too-big drop\n"
        "    }\n"
        "}\n",
    )


def _wire_size_segments(net: Topology) -> None:
    """No GSO: every captured frame is one wire-size segment (and one drop is one segment)."""
    for ns, dev in (
        (net.proxy, "px0"),
        (net.origin, "or0"),
        (net.router, "rt0"),
        (net.router, "rt1"),
    ):
        run(*net.exec(ns, "ip", "link", "set", "dev", dev, "gso_max_segs", "1"))


_SYN_TO_ORIGIN = f"ip daddr {ORIGIN_V4} tcp dport {PORT} tcp flags & (syn | ack) == syn"


def _setup_no_answer(net: Topology) -> None:
    _forward_rules(net, f"{_SYN_TO_ORIGIN} drop")


def _setup_unreachable(net: Topology) -> None:
    _forward_rules(
        net,
        f"ip daddr {ORIGIN_V4} tcp dport {PORT} reject with icmp type admin-prohibited",
    )


def _setup_blackhole_sender(net: Topology) -> None:
    _wire_size_segments(net)
    net.set_mtu(net.router, net.router_far, SMALL_MTU)
    _drop_icmp_errors(net)


def _setup_blackhole_receiver(net: Topology) -> None:
    _wire_size_segments(net)
    net.set_mtu(net.router, net.router_near, SMALL_MTU)
    _drop_icmp_errors(net)


def _setup_pmtud_working(net: Topology) -> None:
    _wire_size_segments(net)
    net.set_mtu(net.router, net.router_far, SMALL_MTU)


def _setup_loss(net: Topology) -> None:
    _wire_size_segments(net)
    # Every TCP segment but SYN and SYN/ACK, both ways: the handshake itself is clean.
    _forward_rules(net, f"tcp flags ! syn numgen random mod 100 < {LOSS_PERCENT} drop")


def _setup_slow_handshake(net: Topology) -> None:
    # A token bucket holding two tokens that refill once a minute: the first SYN and
    # its first retransmission take them and are dropped; the second retransmission,
    # about 2 s after the first SYN, finds the bucket empty and passes. Two seconds
    # stand clear of the 1 s slow-handshake threshold.
    _forward_rules(net, f"{_SYN_TO_ORIGIN} limit rate 1/minute burst 2 packets drop")


def _setup_lost_ack(net: Topology) -> None:
    # One token, refilled once a minute: the origin's first bare ACK (of the request;
    # the response waits THINK_TIME) is dropped and every later one passes. The client
    # resends its request on a timer; the origin, which has it, answers the duplicate
    # with a D-SACK (RFC 2883 §4): a spurious retransmission, nothing lost on the path
    # of the data.
    _forward_rules(
        net,
        f"ip saddr {ORIGIN_V4} tcp sport {PORT} tcp flags == ack "
        "limit rate 1/minute burst 1 packets drop",
    )


# --------------------------------------------------------------------------- checks

SYN = "tcp.flags.syn == 1 && tcp.flags.ack == 0"
SYNACK = "tcp.flags.syn == 1 && tcp.flags.ack == 1"
FIN = "tcp.flags.fin == 1"
RST = "tcp.flags.reset == 1"
RETRANS = "tcp.analysis.retransmission"
FROM_SERVER = f"tcp.srcport == {PORT}"
TO_SERVER = f"tcp.dstport == {PORT}"
ICMP_ANY = "icmp || icmpv6"


class Check:
    """tshark questions about one capture; each answer goes into `evidence`."""

    def __init__(self, path: Path, client: Report, server: Report | None) -> None:
        self.path = path
        self.client = client
        self.server = server
        self.evidence: list[str] = []

    def fields(self, display_filter: str, *names: str) -> list[list[str]]:
        argv = ["tshark", "-n", "-r", str(self.path)]
        if "tcp" in display_filter and "icmp" not in display_filter:
            # ICMP errors quote a TCP header, which tshark dissects as TCP: a question
            # about TCP segments leaves them out.
            display_filter = f"!icmp && !icmpv6 && ({display_filter})"
        if display_filter:
            argv += ["-Y", display_filter]
        argv += ["-T", "fields", "-E", "separator=\t"]
        for name in names or ("frame.number",):
            argv += ["-e", name]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise CaptureCheckError(f"tshark {display_filter!r}: {done.stderr.strip()}")
        return [line.split("\t") for line in done.stdout.splitlines()]

    def count(self, display_filter: str) -> int:
        return len(self.fields(display_filter))

    def listing(self, display_filter: str = "", limit: int = 80) -> str:
        argv = ["tshark", "-n", "-r", str(self.path)]
        if display_filter:
            argv += ["-Y", display_filter]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
        lines = out.splitlines()
        more = f"\n... {len(lines) - limit} more" if len(lines) > limit else ""
        return "\n".join(lines[:limit]) + more

    def expect(self, what: str, value: object, ok: bool) -> None:
        self.evidence.append(f"{what}: {value}")
        if not ok:
            raise CaptureCheckError(
                f"{self.path.name}: expected {what}, got {value}\n"
                f"client: {self.client}\nserver: {self.server}\n{self.listing()}"
            )

    def exactly(self, n: int, display_filter: str) -> int:
        found = self.count(display_filter)
        self.expect(f"frames [{display_filter}] == {n}", found, found == n)
        return found

    def at_least(self, n: int, display_filter: str) -> int:
        found = self.count(display_filter)
        self.expect(f"frames [{display_filter}] >= {n}", found, found >= n)
        return found

    def none(self, display_filter: str) -> None:
        self.exactly(0, display_filter)

    def note(self, display_filter: str) -> int:
        """Evidence only: how many frames match."""
        found = self.count(display_filter)
        self.evidence.append(f"frames [{display_filter}]: {found}")
        return found

    def times(self, display_filter: str) -> list[float]:
        return [float(row[0]) for row in self.fields(display_filter, "frame.time_relative")]

    def numbers(self, display_filter: str) -> list[int]:
        return [int(row[0]) for row in self.fields(display_filter, "frame.number")]

    def ints(self, display_filter: str, name: str) -> list[int]:
        return [int(row[0]) for row in self.fields(display_filter, name) if row[0]]

    def client_error(self, expected: str | None) -> None:
        self.expect("client error", self.client.error, self.client.error == expected)

    def client_received(self, n: int) -> None:
        got = self.client.received
        self.expect(f"client received == {n} bytes", got, got == n)

    def resent(self, display_filter: str) -> int:
        """Data segments starting below the highest sequence number already seen.

        Wireshark's own labels depend on timing (at this RTT of microseconds it calls
        many retransmissions "Out-Of-Order"); a sequence number seen again is exact.
        """
        highest, again = 0, 0
        for seq, length in self.fields(f"({display_filter}) && tcp.len > 0", "tcp.seq", "tcp.len"):
            if int(seq) < highest:
                again += 1
            highest = max(highest, int(seq) + int(length))
        return again

    def client_port(self) -> int:
        return int(self.fields(TO_SERVER, "tcp.srcport")[0][0])

    def fins_both_ways(self) -> None:
        self.at_least(1, f"{FIN} && {FROM_SERVER}")
        self.at_least(1, f"{FIN} && {TO_SERVER}")


def _verify_normal(c: Check) -> None:
    c.exactly(1, SYN)
    c.exactly(1, SYNACK)
    c.fins_both_ways()
    c.none(RST)
    c.none(RETRANS)
    c.none(ICMP_ANY)
    c.client_error(None)
    c.client_received(len(_response(NORMAL_SIZE)))


def _verify_refused(c: Check) -> None:
    c.exactly(1, SYN)
    c.exactly(1, f"{RST} && tcp.flags.ack == 1 && tcp.srcport == {CLOSED_PORT}")
    c.exactly(1, f"{RST} && tcp.ack == 1")  # it answers the SYN
    c.exactly(2, "")
    c.client_error("ECONNREFUSED")


def _verify_no_answer(c: Check) -> None:
    c.at_least(3, SYN)
    c.at_least(2, f"{SYN} && {RETRANS}")
    c.none(SYNACK)
    c.none(RST)
    c.none(ICMP_ANY)
    ports = {row[0] for row in c.fields(SYN, "tcp.srcport")}
    c.expect("SYNs from one client port", sorted(ports), len(ports) == 1)
    times = c.times(SYN)
    c.expect(
        "first to last SYN >= 2.9 s", round(times[-1] - times[0], 3), times[-1] - times[0] >= 2.9
    )
    c.client_error("TimeoutError")


def _verify_unreachable(c: Check) -> None:
    c.exactly(1, SYN)
    c.exactly(1, "icmp.type == 3 && icmp.code == 13")
    c.none(SYNACK)
    c.none(RST)
    c.client_error("EHOSTUNREACH")


def _verify_reset_by_server(c: Check) -> None:
    c.exactly(1, SYN)
    c.exactly(1, SYNACK)
    c.at_least(1, f"{FROM_SERVER} && tcp.len > 0")
    c.exactly(1, f"{RST} && {FROM_SERVER}")
    c.none(f"{RST} && {TO_SERVER}")
    c.none(FIN)
    c.client_error("ECONNRESET")
    c.client_received(len(_header(RESET_DECLARED)) + RESET_SENT)


def _verify_reset_by_client(c: Check) -> None:
    c.exactly(1, SYNACK)
    c.at_least(1, f"{FROM_SERVER} && tcp.len > 0")
    first_rst = c.fields(RST, "tcp.srcport")[:1]
    c.expect("first RST sent by the client", first_rst, first_rst == [[str(c.client_port())]])
    c.none(FIN)
    c.client_error(None)
    got = c.client.received
    c.expect(f"client read >= {ABORT_READ} then aborted", got, ABORT_READ <= got < ABORT_DECLARED)


def _verify_blackhole_sender(c: Check) -> None:
    c.exactly(1, SYNACK)
    c.none(ICMP_ANY)
    c.at_least(5, f"{TO_SERVER} && {RETRANS}")
    again = c.resent(TO_SERVER)
    c.expect("client data segments sent again", again, again >= 5)
    sizes = c.ints(f"{TO_SERVER} && {RETRANS}", "ip.len")
    c.expect(
        f"retransmissions of IP length > {SMALL_MTU}", sorted(set(sizes)), min(sizes) > SMALL_MTU
    )
    c.none(f"{FROM_SERVER} && tcp.ack > 1")  # not one byte of the upload got through
    last = c.times(f"{TO_SERVER} && {RETRANS}")[-1]
    c.expect("last retransmission at >= 6 s", round(last, 3), last >= 6.0)
    c.client_error("TimeoutError")
    c.expect("client gave up after ~6 s", round(c.client.elapsed, 2), c.client.elapsed >= 5.5)


def _verify_blackhole_receiver(c: Check) -> None:
    c.exactly(1, SYNACK)
    c.exactly(1, f"{TO_SERVER} && tcp.len > 0")  # the request, sent once: it was ACKed
    acks = c.times(f"{FROM_SERVER} && tcp.flags.syn == 0 && tcp.len == 0 && tcp.ack > 1")
    c.expect("the origin ACKed the request", len(acks), len(acks) >= 1)
    c.none(f"{FROM_SERVER} && tcp.len > 0")
    c.none(ICMP_ANY)
    fins = c.times(f"{FIN} && {TO_SERVER}")
    c.expect("client FIN", len(fins), len(fins) >= 1)
    gap = fins[0] - acks[0]
    c.expect("silence from request ACK to client FIN >= 4.5 s", round(gap, 3), gap >= 4.5)
    c.client_error("TimeoutError")
    c.client_received(0)


def _verify_pmtud_working(c: Check) -> None:
    c.at_least(1, f"icmp.type == 3 && icmp.code == 4 && icmp.mtu == {SMALL_MTU}")
    _verify_pmtud_completed(c, "icmp", "ip.len")


def _verify_pmtud_working_v6(c: Check) -> None:
    c.at_least(1, f"icmpv6.type == 2 && icmpv6.mtu == {SMALL_MTU}")
    _verify_pmtud_completed(c, "icmpv6.type == 2", "ipv6.plen")


def _verify_pmtud_completed(c: Check, icmp_filter: str, length_field: str) -> None:
    header = 40 if length_field == "ipv6.plen" else 0
    data = f"{TO_SERVER} && tcp.len > 0"
    first_icmp, last_icmp = c.numbers(icmp_filter)[0], c.numbers(icmp_filter)[-1]
    before = [n + header for n in c.ints(f"{data} && frame.number < {first_icmp}", length_field)]
    after = [n + header for n in c.ints(f"{data} && frame.number > {last_icmp}", length_field)]
    c.expect(f"client packets > {SMALL_MTU} before the ICMP", max(before), max(before) > SMALL_MTU)
    c.expect(f"client packets <= {SMALL_MTU} after it", max(after), max(after) <= SMALL_MTU)
    again = c.resent(TO_SERVER)
    c.expect("client data segments sent again (at the smaller size)", again, again >= 1)
    c.note(f"{TO_SERVER} && {RETRANS}")
    c.fins_both_ways()
    c.none(RST)
    c.client_error(None)
    c.client_received(len(OK_EMPTY))
    got = c.server.received if c.server else 0
    c.expect("origin received the whole upload", got, got == len(_upload(UPLOAD_SIZE)))


def _verify_loss(c: Check) -> None:
    c.exactly(1, SYN)
    again = c.resent(TO_SERVER)
    c.expect("client data segments sent again (sequence seen before)", again, again >= 5)
    c.note(f"{TO_SERVER} && {RETRANS}")
    c.note(f"{TO_SERVER} && tcp.analysis.fast_retransmission")
    c.note(f"{TO_SERVER} && tcp.analysis.out_of_order")
    c.note(f"{FROM_SERVER} && tcp.analysis.duplicate_ack")
    c.none("frame.len > 1514")
    c.fins_both_ways()
    c.none(RST)
    c.client_error(None)
    c.client_received(len(OK_EMPTY))
    got = c.server.received if c.server else 0
    c.expect("origin received the whole upload", got, got == len(_upload(LOSS_SIZE)))


def _verify_zero_window(c: Check) -> None:
    zero = c.times(f"tcp.analysis.zero_window && {TO_SERVER}")
    c.expect("zero-window advertisements by the client", len(zero), len(zero) >= 1)
    c.at_least(
        2,
        f"{FROM_SERVER} && (tcp.analysis.zero_window_probe || tcp.analysis.keep_alive)",
    )
    c.note("tcp.analysis.window_full")
    c.note("tcp.analysis.window_update")
    reopened = [
        float(t)
        for t, window in c.fields(TO_SERVER, "frame.time_relative", "tcp.window_size")
        if float(t) > zero[0] and int(window) > 0
    ]
    shut = reopened[0] - zero[0] if reopened else 0.0
    c.expect("window shut until the client read again, >= 2.5 s", round(shut, 3), shut >= 2.5)
    c.fins_both_ways()
    c.none(RST)
    c.client_error(None)
    c.client_received(len(_response(ZERO_WINDOW_SIZE)))


def _verify_slow_handshake(c: Check) -> None:
    syns = c.fields(SYN, "frame.time_relative", "tcp.srcport")
    c.expect("SYNs (two dropped, second retry answered)", len(syns), len(syns) == 3)
    c.expect("all SYNs from one port", {row[1] for row in syns}, len({r[1] for r in syns}) == 1)
    synack = c.times(SYNACK)
    c.expect("one SYN/ACK", len(synack), len(synack) == 1)
    delay = synack[0] - float(syns[0][0])
    c.expect("first SYN to SYN/ACK >= 1.5 s", round(delay, 6), delay >= 1.5)
    c.fins_both_ways()
    c.client_error(None)
    c.client_received(len(_response(SLOW_SIZE)))


def _verify_spurious_retransmission(c: Check) -> None:
    c.exactly(1, SYN)
    c.exactly(1, f"{TO_SERVER} && {RETRANS}")
    c.exactly(1, f"{FROM_SERVER} && tcp.options.sack.dsack")
    resent = c.numbers(f"{TO_SERVER} && {RETRANS}")[0]
    dsack = c.numbers(f"{FROM_SERVER} && tcp.options.sack.dsack")[0]
    c.expect("the D-SACK follows the resend", (resent, dsack), dsack > resent)
    c.fins_both_ways()
    c.none(RST)
    c.client_error(None)
    c.client_received(len(_response(SLOW_SIZE)))


def _verify_truncated(c: Check) -> None:
    c.exactly(TRUNCATED_COUNT, "")
    c.none("tcp.flags.syn == 1")
    c.none(FIN)
    c.none(RST)
    c.at_least(5, f"{FROM_SERVER} && tcp.len > 0")
    c.client_error(None)
    c.client_received(len(_response(STREAM_SIZE)))  # the transfer went on after the capture


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    client: ClientFn
    server: ServerFn | None
    verify: Callable[[Check], None]
    setup: Callable[[Topology], None] = _no_setup
    family: int = 4
    snaplen: int | None = None
    #: Start recording only when the client prints "streaming"; stop after this many.
    mid_stream_count: int | None = None
    #: Whether the origin's program ends by itself (else it is stopped at the end).
    server_finishes: bool = True
    #: The client's deadline, for scenarios where it gives up.
    give_up: float = 30.0
    #: How long recording goes on once the peers are done.
    linger: float = 0.5


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("normal", _client_download, _serve_normal, _verify_normal),
        Scenario("refused", _client_refused, None, _verify_refused),
        Scenario(
            "no_answer",
            _client_no_answer,
            _serve_idle,
            _verify_no_answer,
            _setup_no_answer,
            server_finishes=False,
        ),
        Scenario(
            "icmp_unreachable",
            _client_unreachable,
            _serve_idle,
            _verify_unreachable,
            _setup_unreachable,
            server_finishes=False,
        ),
        Scenario("reset_by_server", _client_download, _serve_reset, _verify_reset_by_server),
        Scenario(
            "reset_by_client",
            _client_abort,
            _serve_endless,
            _verify_reset_by_client,
            snaplen=SHORT_SNAPLEN,
        ),
        Scenario(
            "pmtud_blackhole_sender",
            _client_upload,
            _serve_upload,
            _verify_blackhole_sender,
            _setup_blackhole_sender,
            snaplen=SHORT_SNAPLEN,
            server_finishes=False,
            give_up=SENDER_GIVES_UP,
            # The kernel retransmits at about 0.2, 0.6, 1.4, 3 and 6.6 s: keep the last one
            # in the file every time (it comes after the client gave up; the next, ~13 s).
            linger=1.5,
        ),
        Scenario(
            "pmtud_blackhole_receiver",
            _client_waits,
            _serve_big_download,
            _verify_blackhole_receiver,
            _setup_blackhole_receiver,
            snaplen=SHORT_SNAPLEN,
            server_finishes=False,
            give_up=RECEIVER_GIVES_UP,
        ),
        Scenario(
            "pmtud_working",
            _client_upload,
            _serve_upload,
            _verify_pmtud_working,
            _setup_pmtud_working,
            snaplen=SHORT_SNAPLEN,
        ),
        Scenario(
            "pmtud_working_v6",
            _client_upload,
            _serve_upload,
            _verify_pmtud_working_v6,
            _setup_pmtud_working,
            family=6,
            snaplen=SHORT_SNAPLEN,
        ),
        Scenario(
            "heavy_loss",
            _client_upload_lossy,
            _serve_upload,
            _verify_loss,
            _setup_loss,
            snaplen=SHORT_SNAPLEN,
        ),
        Scenario(
            "zero_window",
            _client_stalls,
            _serve_zero_window,
            _verify_zero_window,
            snaplen=SHORT_SNAPLEN,
        ),
        Scenario(
            "slow_handshake",
            _client_download,
            _serve_slow,
            _verify_slow_handshake,
            _setup_slow_handshake,
        ),
        Scenario(
            "spurious_retransmission",
            _client_download,
            _serve_thinking,
            _verify_spurious_retransmission,
            _setup_lost_ack,
        ),
        Scenario(
            "truncated",
            _client_streaming,
            _serve_truncated,
            _verify_truncated,
            snaplen=SHORT_SNAPLEN,
            mid_stream_count=TRUNCATED_COUNT,
        ),
    )
}


# --------------------------------------------------------------------------- orchestration


def _role(net: Topology, ns: str, role: str, scenario: Scenario) -> subprocess.Popen[str]:
    argv = net.exec(ns, sys.executable, "-m", MODULE, "--role", role, scenario.name)
    return subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_line(proc: subprocess.Popen[str], stream: str, word: str, timeout: float) -> None:
    """Wait for a line containing `word` on the process's stdout or stderr."""
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([pipe], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            break
        line = pipe.readline()
        if not line:
            break
        seen.append(line)
        if word in line:
            return
    proc.kill()
    _, err = proc.communicate(timeout=10)
    raise RuntimeError(f"{proc.args!r}: no {word!r}: {''.join(seen)}{err}")


def _report_of(proc: subprocess.Popen[str], who: str, timeout: float) -> Report:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        raise RuntimeError(f"{who} did not finish within {timeout} s") from None
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{who} failed ({proc.returncode}): {out}{err}")
    return Report(**json.loads(lines[-1]))


def _start_recorder(net: Topology, path: Path, scenario: Scenario) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "wirecap", "record", "-q", "-i", "px0", "-w", str(path)]
    if scenario.snaplen is not None:
        argv += ["-s", str(scenario.snaplen)]
    if scenario.mid_stream_count is not None:
        argv += ["-c", str(scenario.mid_stream_count)]
    proc = subprocess.Popen(
        net.exec(net.proxy, *argv, *CAPTURE_FILTER),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_line(proc, "stderr", "recording on", 20.0)
    return proc


def _stop_recorder(proc: subprocess.Popen[str], *, linger: float | None) -> None:
    """Stop after `linger` seconds (>= the 100 ms capture block timeout), or wait for -c."""
    if linger is not None:
        time.sleep(linger)
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        raise RuntimeError("wirecap record did not stop") from None
    if proc.returncode != 0:
        raise RuntimeError(f"wirecap record failed ({proc.returncode}): {err}")


@contextmanager
def _reaped(procs: list[subprocess.Popen[str]]) -> Iterator[list[subprocess.Popen[str]]]:
    """Kill whatever is still running at the end (only processes started here)."""
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)


def make(scenario: Scenario, out_dir: Path) -> Check:
    """Record one scenario to OUT_DIR/NAME.pcap and check it; the check's evidence."""
    path = out_dir / f"{scenario.name}.pcap"
    path.unlink(missing_ok=True)
    server_report: Report | None = None
    with topology() as net, _reaped([]) as procs:
        _quiet_link(net)
        scenario.setup(net)
        server = None
        if scenario.server is not None:
            server = _role(net, net.origin, "server", scenario)
            procs.append(server)
            _wait_line(server, "stdout", "ready", 20.0)
        if scenario.mid_stream_count is None:
            recorder = _start_recorder(net, path, scenario)
            procs.append(recorder)
            client = _role(net, net.proxy, "client", scenario)
            procs.append(client)
            client_report = _report_of(client, "client", 90.0)
        else:
            client = _role(net, net.proxy, "client", scenario)
            procs.append(client)
            _wait_line(client, "stdout", "streaming", 20.0)
            recorder = _start_recorder(net, path, scenario)
            procs.append(recorder)
            client_report = _report_of(client, "client", 90.0)
        if server is not None and scenario.server_finishes:
            server_report = _report_of(server, "server", 30.0)
        _stop_recorder(recorder, linger=None if scenario.mid_stream_count else scenario.linger)
    path.chmod(0o644)
    check = Check(path, client_report, server_report)
    size = path.stat().st_size
    check.expect(f"file size <= {MAX_FILE_BYTES}", size, size <= MAX_FILE_BYTES)
    check.note("")
    scenario.verify(check)
    return check


def _require() -> None:
    if os.geteuid() != 0:
        sys.exit("make_analysis_captures: needs root (network namespaces, live capture)")
    for tool in ("ip", "nft", "tshark"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            sys.exit(f"make_analysis_captures: {tool} is not installed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help="make only this capture (repeatable); one of: " + ", ".join(SCENARIOS),
    )
    parser.add_argument("--role", nargs=2, metavar=("ROLE", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role is not None:
        role, name = args.role
        scenario = SCENARIOS[name]
        report = _serve(scenario) if role == "server" else _connect(scenario)
        print(json.dumps(asdict(report)), flush=True)
        return 0
    _require()
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in args.only or list(SCENARIOS):
        print(f"== {name}.pcap", flush=True)
        try:
            check = make(SCENARIOS[name], args.out)
        except (CaptureCheckError, RuntimeError) as exc:
            failed += 1
            print(f"FAILED: {exc}", file=sys.stderr, flush=True)
            continue
        print(f"   {check.path.stat().st_size} bytes; client {check.client}")
        if check.server is not None:
            print(f"   server {check.server}")
        for line in check.evidence:
            print(f"   {line}")
    if failed:
        print(f"{failed} capture(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

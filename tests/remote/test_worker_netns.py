"""Three real workers, each on its own host (network namespace), merged by `wirecap merge`.

The test builds this network and deletes it afterwards::

    A  h0 10.207.1.2 fd07:1::2 ──┐
    B  h0 10.207.2.2 fd07:2::2 ──┼── R  (router: ra/rb/rc = 10.207.N.1, fd07:N::1;
    C  h0 10.207.3.2 fd07:3::2 ──┘        the merger runs here)

Every host runs ``wirecap worker`` (the console script, as a subprocess) on the
default listen address (every address, port 8475); the merger reaches the workers
over IPv4 or IPv6. Each host's ``h0`` has its own ifindex (101, 102, 103), so a
packet's SLL2 header names the host that captured it even in pcap output, where the
merge keeps no interface names; in pcapng output the interface is ``HOST:any``.

Each host sends UDP datagrams and ICMP echo requests (built on a raw socket: no
``ping`` here) with unique payloads to the two others, interleaved in time across
hosts. tshark then reads the merged file: every packet is there exactly once per
worker that saw it (the sender's, outgoing; the receiver's, incoming; echo replies
the other way round), with the payload that was sent, within the time it was sent,
in non-decreasing time order, and no TCP at all: the workers' own streams are
excluded by default even when the user's filter matches them. A worker killed in
the middle of a merge is reported by its URL while the others go on.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.remote.worker_process import LoggedProcess, wirecap_argv

pytestmark = [pytest.mark.netns, pytest.mark.root]

WORKER_PORT = 8475  # the worker's default
SINK_PORT = 7
SOURCE_PORT = 40007
OUTGOING, HOST = 4, 0  # SLL2 packet types (linux/if_packet.h PACKET_OUTGOING, PACKET_HOST)


@dataclass(frozen=True)
class Host:
    name: str  # A, B, C
    ns: str
    address: str
    address6: str
    ifindex: int

    def worker(self, family: int) -> str:
        """The host as a URL names it: its IPv4 address or its bracketed IPv6 one."""
        return self.address if family == 4 else f"[{self.address6}]"


@dataclass(frozen=True)
class Network:
    router: str
    hosts: tuple[Host, ...]


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def _in(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def _build(tag: str, created: list[str]) -> Network:
    """Make the network; every namespace goes into `created` as soon as it exists."""
    net = Network(
        router=f"wcw-{tag}-r",
        hosts=tuple(
            Host(name, f"wcw-{tag}-{name.lower()}", f"10.207.{i}.2", f"fd07:{i}::2", 100 + i)
            for i, name in enumerate("ABC", 1)
        ),
    )
    for ns in (net.router, *(h.ns for h in net.hosts)):
        _run("ip", "netns", "add", ns)
        created.append(ns)
    _run(*_in(net.router, "ip", "link", "set", "lo", "up"))
    _run(*_in(net.router, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
    _run(*_in(net.router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"))
    for i, host in enumerate(net.hosts, 1):
        near = f"r{host.name.lower()}"
        _run(
            "ip", "link", "add", "h0", "netns", host.ns, "index", str(host.ifindex),
            "type", "veth", "peer", "name", near, "netns", net.router,
        )  # fmt: skip
        _run(*_in(net.router, "ip", "addr", "add", f"10.207.{i}.1/24", "dev", near))
        _run(*_in(net.router, "ip", "addr", "add", f"fd07:{i}::1/64", "dev", near, "nodad"))
        _run(*_in(net.router, "ip", "link", "set", near, "up"))
        for command in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", f"{host.address}/24", "dev", "h0"],
            ["ip", "addr", "add", f"{host.address6}/64", "dev", "h0", "nodad"],
            ["ip", "link", "set", "h0", "up"],
            ["ip", "route", "add", "default", "via", f"10.207.{i}.1"],
            ["ip", "route", "add", "default", "via", f"fd07:{i}::1"],
        ):
            _run(*_in(host.ns, *command))
    return net


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Network, Path]]:
    """The network with a worker listening on every host; yields it and a temp dir."""
    directory = tmp_path_factory.mktemp("netns")
    os.chmod(directory, 0o700)
    created: list[str] = []
    workers: list[LoggedProcess] = []
    try:
        net = _build(secrets.token_hex(3), created)
        for host in net.hosts:
            # The default listen address: every address, IPv4 and IPv6, port 8475.
            argv = _in(host.ns, *wirecap_argv(), "worker", "-v")
            workers.append(LoggedProcess(argv, directory / f"worker-{host.name}.log"))
        for worker in workers:
            worker.wait_for("Listening on")
        yield net, directory
    finally:
        codes = [worker.stop() for worker in workers]
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    # Every worker stops cleanly on SIGTERM, with nothing alarming in its log.
    assert codes == [0] * len(workers), [w.text() for w in workers]
    for worker in workers:
        assert "Traceback" not in worker.text() and "WARNING" not in worker.text()


# -- traffic ------------------------------------------------------------------------

_SENDER = r"""
import json, socket, struct, sys, time

start, linger, sink_port, source_port = map(float, sys.argv[1:5])
plan = json.loads(sys.argv[5])
# A bound sink: datagrams from the other hosts get no ICMP port unreachable, whose
# quoted copy of the datagram would be a second packet carrying the same payload.
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(("0.0.0.0", int(sink_port)))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", int(source_port)))
icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)

def checksum(data):  # RFC 1071
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

times = []
for offset, kind, dst, payload_hex, ident, seq in plan:
    delay = start + offset - time.time()
    if delay > 0:
        time.sleep(delay)
    payload = bytes.fromhex(payload_hex)
    if kind == "udp":
        before = time.time_ns()
        udp.sendto(payload, (dst, int(sink_port)))
    else:  # ICMP echo request (RFC 792): type 8, code 0, checksum, identifier, sequence
        head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        packet = struct.pack("!BBHHH", 8, 0, checksum(head + payload), ident, seq) + payload
        before = time.time_ns()
        icmp.sendto(packet, (dst, 0))
    times.append([before, time.time_ns()])
time.sleep(max(0.0, start + linger - time.time()))
print(json.dumps(times))
"""


@dataclass(frozen=True)
class Sent:
    src: Host
    dst: Host
    kind: str  # "udp" or "icmp"
    payload: bytes
    ident: int
    seq: int
    before_ns: int = 0
    after_ns: int = 0


def _plan(net: Network, token: str) -> dict[str, list[Sent]]:
    """Per sending host: 4 UDP datagrams and 2 echo requests to each other host."""
    plans: dict[str, list[Sent]] = {}
    for h, src in enumerate(net.hosts):
        items = []
        for d, dst in enumerate(h for h in net.hosts if h is not src):
            for i in range(6):
                kind = "icmp" if i % 3 == 2 else "udp"
                tag = f"wirecap {token} {src.name}>{dst.name} {kind} {i} "
                payload = tag.encode() + bytes(range(256))[: 13 + 97 * i]
                items.append(Sent(src, dst, kind, payload, 0x5700 + h, 16 * d + i))
        plans[src.name] = items
    return plans


def _send(net: Network, plans: dict[str, list[Sent]]) -> list[Sent]:
    """Every host with a plan sends it at once, 15 ms apart, the hosts 5 ms apart."""
    start, step, linger = time.time() + 0.8, 0.015, 0.6
    procs = []
    for h, host in enumerate(net.hosts):
        if host.name not in plans:
            continue
        plan = [
            [h * 0.005 + n * step, s.kind, s.dst.address, s.payload.hex(), s.ident, s.seq]
            for n, s in enumerate(plans[host.name])
        ]
        duration = linger + step * len(plan)
        argv = _in(host.ns, sys.executable, "-c", _SENDER)
        argv += [repr(start), repr(duration), str(SINK_PORT), str(SOURCE_PORT)]
        argv.append(json.dumps(plan))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append((host, proc))
    sent: list[Sent] = []
    for host, proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        times = json.loads(out)
        for item, (before, after) in zip(plans[host.name], times, strict=True):
            sent.append(dataclasses.replace(item, before_ns=before, after_ns=after))
    return sent


# -- reading the merged file with tshark --------------------------------------------

_FIELDS = (
    "frame.interface_name",
    "sll.ifindex",
    "sll.pkttype",
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "tcp.srcport",
    "icmp.type",
    "icmp.ident",
    "icmp.seq",
    "udp.srcport",
    "udp.dstport",
    "udp.payload",
    "data.data",  # ICMP echo data
)


@dataclass(frozen=True)
class Row:
    interface: str
    ifindex: int
    pkttype: int
    ts_ns: int
    src: str
    dst: str
    proto: str
    tcp: bool
    icmp_type: str
    icmp_ident: str
    icmp_seq: str
    udp_ports: tuple[str, str]
    data: bytes


def _rows(path: Path, run_tool: Callable[..., str]) -> list[Row]:
    argv = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
    for name in _FIELDS:
        argv += ["-e", name]
    rows = []
    for line in run_tool(*argv).splitlines():
        values = line.split("\t")
        assert len(values) == len(_FIELDS), line
        f = dict(zip(_FIELDS, values, strict=True))
        seconds, _, fraction = f["frame.time_epoch"].partition(".")
        rows.append(
            Row(
                interface=f["frame.interface_name"],
                ifindex=int(f["sll.ifindex"] or -1),
                pkttype=int(f["sll.pkttype"] or -1),
                ts_ns=int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9]),
                src=f["ip.src"],
                dst=f["ip.dst"],
                proto=f["ip.proto"],
                tcp=bool(f["tcp.srcport"]),  # over IPv4 or IPv6
                icmp_type=f["icmp.type"],
                icmp_ident=f["icmp.ident"],
                icmp_seq=f["icmp.seq"],
                udp_ports=(f["udp.srcport"], f["udp.dstport"]),
                data=bytes.fromhex((f["udp.payload"] or f["data.data"]).replace(":", "")),
            )
        )
    return rows


def _expected(sent: list[Sent]) -> Counter[tuple[bytes, str, str, int]]:
    """(payload, udp|request|reply, capturing host, SLL2 packet type) → 1 for each copy."""
    want: Counter[tuple[bytes, str, str, int]] = Counter()
    for s in sent:
        first = "udp" if s.kind == "udp" else "request"
        want[(s.payload, first, s.src.name, OUTGOING)] += 1
        want[(s.payload, first, s.dst.name, HOST)] += 1
        if s.kind == "icmp":
            want[(s.payload, "reply", s.dst.name, OUTGOING)] += 1
            want[(s.payload, "reply", s.src.name, HOST)] += 1
    return want


@pytest.mark.parametrize(
    ("output_format", "query", "max_delay", "family"),
    [
        # pcapng streams (with heartbeats), no filter at all: only the exclusion holds
        # the worker's own stream back. Default --max-delay.
        ("pcapng", "format=pcapng", "200", 4),
        # The same with the workers reached over IPv6: the exclusion names IPv6 ends.
        ("pcapng", "format=pcapng", "200", 6),
        # pcap streams merged to pcap, with a user filter that matches the stream too:
        # "(udp or icmp or tcp) and not (SELF)" must not let "or tcp" escape.
        ("pcap", "filter=udp+or+icmp+or+tcp", "1000", 4),
        # pcapng streams (heartbeats) merged to pcap: one link type, so it fits.
        ("pcap", "format=pcapng&filter=not+arp", "200", 4),
    ],
)
def test_three_workers_merged_every_packet_once_per_capturing_worker(
    network: tuple[Network, Path],
    run_tool: Callable[..., str],
    output_format: str,
    query: str,
    max_delay: str,
    family: int,
) -> None:
    net, directory = network
    out = directory / f"merged-{family}.{output_format}"
    # Default port 8475: the merger names each interface HOST:IFACE.
    urls = [f"http://{h.worker(family)}/capture?{query}" for h in net.hosts]
    argv = [*wirecap_argv(), "merge", "--format", output_format, "--max-delay", max_delay]
    merger = LoggedProcess(
        _in(net.router, *argv, "-w", str(out), *urls), directory / f"{out.name}.log"
    )
    try:
        merger.wait_for(": connected (", count=len(urls))
        token = secrets.token_hex(4)
        sent = _send(net, _plan(net, token))
        time.sleep(0.5)  # let the last batches leave the rings (20 ms block timeout)
    finally:
        status = merger.stop()
    log = merger.text()
    assert status == 0, log
    for i, host in enumerate(net.hosts):
        url = f"http://{host.worker(family)}:{WORKER_PORT}/capture?{query}"
        assert f"[{i}] {url}: stopped (the merge ended first);" in log
    assert log.count(" 0 late") == len(urls), log
    assert "error" not in log and "later than --max-delay" not in log, log

    magic = out.read_bytes()[:4]
    assert magic == (b"\n\r\r\n" if output_format == "pcapng" else bytes.fromhex("4d3cb2a1"))
    assert out.stat().st_mode & 0o777 == 0o600

    rows = _rows(out, run_tool)
    # Non-decreasing in time, over every record of the file (ARP, ND and all).
    stamps = [r.ts_ns for r in rows]
    assert all(a <= b for a, b in itertools.pairwise(stamps)), "out of order"
    # No TCP at all: each host's only TCP connection is its worker's own stream.
    assert [r for r in rows if r.tcp] == []

    by_index = {h.ifindex: h for h in net.hosts}
    if output_format == "pcapng":
        names = {r.interface for r in rows}
        assert names == {f"{h.worker(family)}:any" for h in net.hosts}, names
        for r in rows:  # the interface name and the SLL2 ifindex agree
            if r.ifindex in by_index:
                assert r.interface == f"{by_index[r.ifindex].worker(family)}:any"

    ours = [r for r in rows if token.encode() in r.data]
    by_payload = {s.payload: s for s in sent}
    got: Counter[tuple[bytes, str, str, int]] = Counter()
    for r in ours:
        item = by_payload.get(r.data)
        assert item is not None, f"payload changed on the way: {r.data!r}"
        host = by_index[r.ifindex]
        if item.kind == "udp":
            kind = "udp"
            assert (r.src, r.dst, r.proto) == (item.src.address, item.dst.address, "17")
            assert r.udp_ports == (str(SOURCE_PORT), str(SINK_PORT))
        else:
            kind = {"8": "request", "0": "reply"}[r.icmp_type]
            ends = (item.src.address, item.dst.address)
            assert (r.src, r.dst) == (ends if kind == "request" else ends[::-1])
            assert (r.proto, int(r.icmp_ident), int(r.icmp_seq)) == ("1", item.ident, item.seq)
        # Captured while it was sent (or, at the receiver, a moment later).
        assert item.before_ns <= r.ts_ns <= item.after_ns + 1_000_000_000, (r, item)
        got[(r.data, kind, host.name, r.pkttype)] += 1
    want = _expected(sent)
    assert got == want, (
        f"missing {sorted(want - got, key=str)[:5]}; extra {sorted(got - want, key=str)[:5]}"
    )
    # The streams really were interleaved: consecutive packets of ours alternate hosts.
    assert len({(a.ifindex, b.ifindex) for a, b in itertools.pairwise(ours)}) > 3


def test_a_worker_killed_mid_stream_is_reported_and_the_others_go_on(
    network: tuple[Network, Path], run_tool: Callable[..., str]
) -> None:
    net, directory = network
    a, _b, c = net.hosts
    doomed = LoggedProcess(
        _in(c.ns, *wirecap_argv(), "worker", "--listen", f"{c.address}:8476"),
        directory / "worker-doomed.log",
    )
    out = directory / "survivor.pcapng"
    urls = [f"http://{a.address}/capture?filter=udp", f"http://{c.address}:8476/capture?filter=udp"]
    merger: LoggedProcess | None = None
    try:
        doomed.wait_for("Listening on")
        merger = LoggedProcess(
            _in(net.router, *wirecap_argv(), "merge", "-w", str(out), *urls),
            directory / "merge-survivor.log",
        )
        merger.wait_for(": connected (", count=2)
        plan = _plan(net, secrets.token_hex(4))
        before = _send(net, {"A": plan["A"][:6]})  # to B: seen by A's worker only
        doomed.proc.kill()
        doomed.proc.wait()
        merger.wait_for(f"{c.address}:8476/capture?filter=udp: error: ")
        after = _send(net, {"A": plan["A"][6:]})  # to C: C's worker is gone
        time.sleep(0.5)
    finally:
        if merger is not None:
            status = merger.stop()
        doomed.stop()
    log = merger.text()
    assert status == 4, log  # a stream failed: non-zero at the end, not at once
    assert f"[1] http://{c.address}:8476/capture?filter=udp: error: stream dropped" in log
    survivor = f"[0] http://{a.address}:8475/capture?filter=udp: "
    assert f"{survivor}stopped (the merge ended first); 8 packets" in log
    rows = _rows(out, run_tool)
    payloads = [r.data for r in rows]
    for s in before + after:  # every datagram A's worker saw, once (echoes: not udp)
        assert payloads.count(s.payload) == (1 if s.kind == "udp" else 0)

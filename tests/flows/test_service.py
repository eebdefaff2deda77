"""The flow service against the real kernel, in a network namespace the test makes.

The peer is Debian's `conntrack` (conntrack-tools): the records' counters must
equal what `conntrack -L` reports for the same flows (matched by conntrack id),
and for sub-MTU UDP equal the bytes sent plus the IPv4 and UDP headers exactly.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import stat
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.flows.builders import conntrack_message
from tests.flows.conntrack_netns import ConntrackNetns, conntrack_netns
from wirecap.flows.config import FlowsOptions, SinkSpec
from wirecap.flows.curve import NS_PER_S, RateCurve
from wirecap.flows.model import Event, FlowRecord, FlowTuple
from wirecap.flows.service import FlowService, netns_inode
from wirecap.flows.table import FlowTable

NETNS = pytest.mark.netns

S = NS_PER_S
UDP_PAYLOAD, UDP_COUNT, UDP_REPLY, UDP_REPLIES = 100, 5, 50, 2
TCP_UP, TCP_DOWN = 10_000, 5_000

_TRAFFIC = f"""
import json, socket, sys, threading
udp_server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp_server.bind(("127.0.0.1", 0))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range({UDP_COUNT}):
    udp.sendto(bytes({UDP_PAYLOAD}), udp_server.getsockname())
for _ in range({UDP_COUNT}):
    _, peer = udp_server.recvfrom(2048)
for _ in range({UDP_REPLIES}):
    udp_server.sendto(bytes({UDP_REPLY}), peer)
for _ in range({UDP_REPLIES}):
    udp.recvfrom(2048)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
held = []
def serve():
    conn, _ = listener.accept()
    got = 0
    while got < {TCP_UP}:
        got += len(conn.recv(65536))
    conn.sendall(bytes({TCP_DOWN}))
    held.append(conn)
server = threading.Thread(target=serve)
server.start()
tcp = socket.create_connection(listener.getsockname())
tcp.sendall(bytes({TCP_UP}))
got = 0
while got < {TCP_DOWN}:
    got += len(tcp.recv(65536))
server.join()
print(json.dumps({{"udp": udp.getsockname()[1], "tcp": tcp.getsockname()[1]}}), flush=True)
sys.stdin.readline()
tcp.shutdown(socket.SHUT_WR)
held[0].recv(1)
held[0].close()
tcp.recv(1)
tcp.close()
print("closed", flush=True)
sys.stdin.readline()
"""


def _run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def _options(ns: ConntrackNetns, **changes: Any) -> FlowsOptions:
    base = FlowsOptions(
        netns=ns.name,
        dump_interval_ns=S // 4,
        curve=RateCurve.of([(0, S // 2), (2 * S, S)]),
        sinks=(),
    )
    return base.merged(**changes)


async def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _by_id(records: list[FlowRecord], flow_id: int) -> list[FlowRecord]:
    return [r for r in records if r.flow_id == flow_id]


def _counters(record: FlowRecord) -> dict[str, int]:
    return {
        "packets_orig": record.counters_orig.packets,
        "bytes_orig": record.counters_orig.bytes,
        "packets_ret": record.counters_reply.packets,
        "bytes_ret": record.counters_reply.bytes,
    }


def _peer(entry: dict[str, int | str]) -> dict[str, int]:
    return {k: int(entry[k]) for k in ("packets_orig", "bytes_orig", "packets_ret", "bytes_ret")}


@NETNS
def test_records_match_conntrack_and_udp_bytes_exactly(tmp_path: Path) -> None:
    records: list[FlowRecord] = []
    out_file = tmp_path / "records" / "flows.jsonl"

    async def scenario() -> None:
        with conntrack_netns() as ns:
            sink = SinkSpec(
                name="file",
                type="file",
                address=str(out_file),
                batch_size=16,
                flush_interval_ns=S // 10,
            )
            service = FlowService(_options(ns, sinks=(sink,)), on_record=records.append)
            await service.start()
            traffic = subprocess.Popen(
                ["ip", "netns", "exec", ns.name, "python3", "-c", _TRAFFIC],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert traffic.stdout is not None and traffic.stdin is not None
                ports = json.loads(await asyncio.to_thread(traffic.stdout.readline))
                await asyncio.sleep(1.5)  # several dumps past the last packet: quiet now
                quiet = await asyncio.to_thread(ns.conntrack_list)
                ids = {
                    proto: next(
                        i
                        for i, e in quiet.items()
                        if e["proto"] == proto and e["sport"] == ports[proto]
                    )
                    for proto in ("udp", "tcp")
                }
                # Live counters from dumps equal the peer's, for both flows.
                for proto, flow_id in ids.items():
                    updates = [r for r in _by_id(records, flow_id) if r.event is Event.UPDATE]
                    assert updates, f"no update record for the {proto} flow"
                    assert _counters(updates[-1]) == _peer(quiet[flow_id]), proto
                traffic.stdin.write("\n")
                traffic.stdin.flush()
                assert (await asyncio.to_thread(traffic.stdout.readline)).strip() == "closed"
                closed = await asyncio.to_thread(ns.conntrack_list)
                traffic.stdin.write("\n")
                traffic.stdin.close()
                await asyncio.to_thread(traffic.wait, 10)

                def destroyed() -> bool:
                    return all(
                        any(r.event is Event.DESTROY for r in _by_id(records, i))
                        for i in ids.values()
                    )

                await _wait(destroyed, 30, "DESTROY records of both flows")
            finally:
                traffic.kill()
                traffic.wait()
                for pipe in (traffic.stdin, traffic.stdout):
                    if pipe is not None:
                        pipe.close()
                await service.close()
            inode = netns_inode(ns.name)
        for proto, flow_id in ids.items():
            mine = _by_id(records, flow_id)
            assert mine[0].event is Event.NEW, proto
            [final] = [r for r in mine if r.event is Event.DESTROY]
            assert final.complete and final.start_ns and final.stop_ns
            assert final.stop_ns > final.start_ns
            assert final.netns == inode
            peer = closed.get(flow_id, quiet[flow_id])
            assert _counters(final) == _peer(peer), proto
        udp_final = next(r for r in _by_id(records, ids["udp"]) if r.event is Event.DESTROY)
        # IPv4 (20) + UDP (8) headers on every datagram, nothing else.
        assert udp_final.counters_orig.packets == UDP_COUNT
        assert udp_final.counters_orig.bytes == UDP_COUNT * (UDP_PAYLOAD + 28)
        assert udp_final.counters_reply.packets == UDP_REPLIES
        assert udp_final.counters_reply.bytes == UDP_REPLIES * (UDP_REPLY + 28)
        tcp_final = next(r for r in _by_id(records, ids["tcp"]) if r.event is Event.DESTROY)
        assert tcp_final.orig.dport and tcp_final.reply is not None
        assert tcp_final.reply.sport == tcp_final.orig.dport
        # TCP byte counts include headers; GSO/GRO make segment counts vary.
        assert tcp_final.counters_orig.bytes > TCP_UP
        assert tcp_final.counters_reply.bytes > TCP_DOWN

    _run(scenario)
    mode = out_file.stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(out_file.parent.stat().st_mode) == 0o700
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert {line["event"] for line in lines} >= {"new", "update", "destroy"}
    assert all(line["time"].endswith("Z") for line in lines)


_STEADY = """
import socket, sys, time
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 0))
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
print(client.getsockname()[1] if False else "", end="")
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    client.sendto(b"x", server.getsockname())
    time.sleep(0.05)
print(client.getsockname()[1], flush=True)
"""


@NETNS
def test_update_cadence_follows_the_curve() -> None:
    records: list[FlowRecord] = []
    curve = RateCurve.of([(0, S // 2), (2 * S, S + S // 2)])

    async def scenario() -> int:
        with conntrack_netns() as ns:
            service = FlowService(
                _options(ns, curve=curve, dump_interval_ns=S // 10), on_record=records.append
            )
            await service.start()
            try:
                port = await asyncio.to_thread(ns.python, _STEADY, "5.5")
            finally:
                await service.close()
        return int(port)

    port = _run(scenario)
    flow = [r for r in records if r.orig.sport == port]
    assert flow[0].event is Event.NEW
    updates = [r for r in flow if r.event is Event.UPDATE]
    origin = flow[0].time_ns
    # Spacing never below the curve; never much above it (dump interval + load slack).
    for before, after in itertools.pairwise(updates):
        due = curve.interval_ns(before.time_ns - origin)
        gap = after.time_ns - before.time_ns
        assert gap >= due - S // 50, (gap, due)
        assert gap <= due + S, (gap, due)
    # 0..2 s: every 0.5 s (≈4), then every 1.5 s until 5.5 s (≈2).
    assert 4 <= len(updates) <= 8, len(updates)


@NETNS
def test_lost_events_are_counted_and_recovered_by_a_dump() -> None:
    records: list[FlowRecord] = []
    flows = 400
    burst = f"""
import socket
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 0))
for _ in range({flows}):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"x", server.getsockname())
"""

    async def scenario() -> dict[str, Any]:
        with conntrack_netns() as ns:
            # Flows outlive the test, so the dump after the loss can find them all.
            ns.exec("sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=60")
            # A tiny receive buffer, and the loop held busy while the burst runs:
            # the kernel must drop events (ENOBUFS).
            options = _options(ns, buffer_size=4096, dump_interval_ns=60 * S)
            service = FlowService(options, on_record=records.append)
            await service.start()
            try:
                await asyncio.sleep(0.3)
                proc = subprocess.Popen(["ip", "netns", "exec", ns.name, "python3", "-c", burst])
                proc.wait(30)  # blocks the loop on purpose
                await _wait(
                    lambda: service.lost_events > 0 and service.dumps >= 2,
                    20,
                    "an ENOBUFS and the dump it triggers",
                )
                # Each flow is accounted: by its NEW event or, when that was lost, by
                # the dump. (Ports may repeat across the burst: the peer says how many
                # flows there are.)
                peer = set(await asyncio.to_thread(ns.conntrack_list))
                assert len(peer) > flows * 0.9
                await _wait(
                    lambda: peer <= {r.flow_id for r in records}, 20, "every flow accounted"
                )
            finally:
                await service.close()
            return service.stats()

    stats = _run(scenario)
    assert stats["lost_events"] >= 1
    assert stats["undecoded"] == 0


@NETNS
def test_dead_sink_does_not_stop_the_others(tmp_path: Path) -> None:
    out = io.StringIO()
    closed_port = _free_port()

    async def scenario() -> FlowService:
        with conntrack_netns() as ns:
            dead = SinkSpec(
                name="dead",
                type="influxdb",
                address=f"http://127.0.0.1:{closed_port}",
                database="x",
                batch_size=1,
                flush_interval_ns=0,
                queue_size=5,
                timeout_ns=2 * S,
            )
            live = SinkSpec(name="live", type="stdout", batch_size=1, flush_interval_ns=0)
            service = FlowService(_options(ns, sinks=(dead, live)), stdout=out)
            await service.start()
            try:
                await asyncio.to_thread(ns.python, _STEADY, "1.5")
                await asyncio.to_thread(ns.python, _STEADY, "1.5")
                await _wait(lambda: service.sinks[1].sent >= 4, 10, "the live sink")
            finally:
                await service.close()
            return service

    service = _run(scenario)
    dead, live = service.sinks
    assert live.sent >= 4 and live.dropped_full == 0
    assert dead.sent == 0
    assert len(dead.queue) <= dead.spec.queue_size
    assert dead.dropped_full + dead.dropped_failed >= 1
    assert out.getvalue().count("\n") == live.sent
    text = service.registry.get_sample_value(
        "wirecap_flows_sink_dropped_records_total", {"sink": "dead", "reason": "queue_full"}
    )
    assert text == dead.dropped_full


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@NETNS
def test_sysctls_are_managed_in_the_namespace() -> None:
    async def scenario() -> tuple[str, str]:
        with conntrack_netns() as ns:
            ns.exec(
                "sysctl",
                "-qw",
                "net.netfilter.nf_conntrack_acct=0",
                "net.netfilter.nf_conntrack_timestamp=0",
            )
            service = FlowService(_options(ns))
            await service.start()
            await service.close()
            acct = ns.exec("sysctl", "-n", "net.netfilter.nf_conntrack_acct").strip()
            stamp = ns.exec("sysctl", "-n", "net.netfilter.nf_conntrack_timestamp").strip()
            return acct, stamp

    assert _run(scenario) == ("1", "1")
    # The caller's own namespace was not touched by that.
    assert os.path.exists("/proc/sys/net/netfilter/nf_conntrack_acct")


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_garbage_datagrams_are_counted_not_raised(datagrams: list[bytes]) -> None:
    """No kernel needed: the service is fed bytes as its event socket would be."""
    service = FlowService(FlowsOptions(sinks=()))
    service.table = FlowTable(curve=RateCurve.of([(0, S)]), netns=1, started_ns=0)
    good = conntrack_message("new", 1, FlowTuple("10.210.0.1", "10.210.0.2", 17, 1, 2))
    for data in datagrams:
        service.feed(data, 1)
    service.feed(good, 1)
    assert service.events >= 1
    skipped = service.registry.get_sample_value("wirecap_flows_undecoded_messages_total")
    assert skipped == service.undecoded
    if any(len(d) >= 16 for d in datagrams):
        assert service.undecoded + service.events >= 2


def test_a_truncated_event_is_counted() -> None:
    service = FlowService(FlowsOptions(sinks=()))
    service.table = FlowTable(curve=RateCurve.of([(0, S)]), netns=1, started_ns=0)
    good = conntrack_message("new", 1, FlowTuple("10.210.0.1", "10.210.0.2", 17, 1, 2))
    service.feed(good[:-6], 1)
    assert (service.undecoded, service.events) == (1, 0)


_NAT_RULES = """table ip wcfnat {
  chain raw {
    type filter hook output priority -300;
    udp dport 7777 ct zone set 7
  }
  chain out {
    type nat hook output priority -100;
    ip daddr 10.210.9.9 udp dport 7777 dnat to 127.0.0.1:5555
  }
  chain marker {
    type filter hook output priority 0;
    udp dport 5555 ct mark set 42
  }
}
"""
_NAT_TRAFFIC = """
import socket
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 5555))
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
client.sendto(bytes(10), ("10.210.9.9", 7777))
server.settimeout(5)
server.recvfrom(100)
print(client.getsockname()[1])
"""


@NETNS
def test_nat_zone_and_mark_are_visible() -> None:
    records: list[FlowRecord] = []

    async def scenario() -> int:
        with conntrack_netns() as ns:
            ns.exec("ip", "addr", "add", "10.210.9.1/24", "dev", "lo")
            ns.exec("nft", "-f", "-", input=_NAT_RULES)
            service = FlowService(_options(ns), on_record=records.append)
            await service.start()
            try:
                port = int(await asyncio.to_thread(ns.python, _NAT_TRAFFIC))
                await _wait(
                    lambda: any(r.event is Event.DESTROY and r.orig.sport == port for r in records),
                    30,
                    "the DESTROY record",
                )
            finally:
                await service.close()
            return port

    port = _run(scenario)
    final = next(r for r in records if r.event is Event.DESTROY and r.orig.sport == port)
    assert (final.orig.dst, final.orig.dport) == ("10.210.9.9", 7777)
    assert final.reply is not None
    assert (final.reply.src, final.reply.sport) == ("127.0.0.1", 5555)  # the DNAT target
    assert (final.zone, final.mark) == (7, 42)
    assert final.counters_orig.bytes == 10 + 28

"""Path-MTU problems through the proxy, in network namespaces: what each capture shows.

proxy (px0) — (rt0) router (rt1) — (or0) origin. A smaller MTU on the router's
link toward the *receiver* of the big segments makes the router answer them with
ICMP "fragmentation needed" / ICMPv6 "packet too big", sent to their *sender*
(TESTING-NOTES: set on the arriving link, GSO super-packets pass). Dropping that
ICMP on the router makes a PMTUD black hole.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.netns import ORIGIN_V4, ORIGIN_V6, Topology, topology
from tests.proxy.harness import PASSWORD, RunningProxy, proxy

pytestmark = [pytest.mark.root, pytest.mark.netns]

ORIGIN_PORT = 8443
BLACK_HOLE = """
table inet blackhole {
    chain out {
        type filter hook output priority 0;
        icmp type destination-unreachable drop
        icmpv6 type packet-too-big drop
    }
}
"""


@contextmanager
def _origin(net: Topology, *mode: str) -> Iterator[None]:
    process = subprocess.Popen(
        net.exec(
            net.origin, sys.executable, "-m", "tests.proxy.origin_server", str(ORIGIN_PORT), *mode
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    try:
        assert process.stdout.readline().strip() == "ready"
        process.stdout.close()
        yield
    finally:
        process.kill()
        process.wait()


def _client(net: Topology, running: RunningProxy, target: str, *mode: str) -> dict[str, int]:
    done = subprocess.run(
        net.exec(
            net.proxy,
            sys.executable,
            "-m",
            "tests.proxy.tunnel_client",
            str(running.port),
            target,
            "alice",
            PASSWORD,
            *mode,
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, int] = json.loads(done.stdout)
    return result


def _fields(pcap: Path, display_filter: str, *fields: str) -> list[list[str]]:
    argv = ["tshark", "-n", "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    for field in fields or ("frame.number",):
        argv += ["-e", field]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def _capture(running: RunningProxy) -> tuple[dict[str, object], Path]:
    (summary,) = running.summaries(1, timeout=30)
    return summary, running.spool / "alice" / str(summary["capture_file"])


def _target(address: str) -> str:
    return f"[{address}]:{ORIGIN_PORT}" if ":" in address else f"{address}:{ORIGIN_PORT}"


SYN_HOLE = f"""
table inet synhole {{
    chain forward_syn {{
        type filter hook forward priority 0;
        tcp dport {ORIGIN_PORT} drop
    }}
}}
"""

ICMP_TOO_BIG = {4: "icmp.type == 3 && icmp.code == 4", 6: "icmpv6.type == 2"}


@pytest.mark.parametrize("version", [4, 6])
def test_upload_capture_holds_the_routers_too_big_messages(tmp_path: Path, version: int) -> None:
    with topology() as net, _origin(net, "--sink"):
        net.set_mtu(net.router, net.router_far, 1280)
        with proxy(
            tmp_path, "--digest-algorithms", "MD5", "-s", "10000000", prefix=net.exec(net.proxy)
        ) as running:
            address = ORIGIN_V4 if version == 4 else ORIGIN_V6
            result = _client(net, running, _target(address), "--upload", "400000")
            summary, pcap = _capture(running)
    assert result["status"] == 200 and result["sent"] == 400000
    assert result["received"] == 2  # the origin's "ok": PMTUD worked
    assert summary["outcome"] == "established"
    too_big = _fields(pcap, ICMP_TOO_BIG[version])
    assert too_big, "no ICMP too-big message in the proxy's capture"
    mtu_field = "icmp.mtu" if version == 4 else "icmpv6.mtu"
    assert {row[0] for row in _fields(pcap, ICMP_TOO_BIG[version], mtu_field)} == {"1280"}


@pytest.mark.parametrize("version", [4, 6])
def test_upload_into_a_black_hole_shows_retransmitted_full_size_segments(
    tmp_path: Path, version: int
) -> None:
    with topology() as net, _origin(net, "--sink"):
        net.set_mtu(net.router, net.router_far, 1280)
        net.nft(net.router, BLACK_HOLE)
        # Nothing ever closes a black-holed tunnel: the idle timeout ends it. It is
        # long enough for a few retransmission timeouts (RFC 6298: 1 s, then doubling).
        with proxy(
            tmp_path,
            "--digest-algorithms",
            "MD5",
            "-s",
            "10000000",
            "--idle-timeout",
            "6",
            prefix=net.exec(net.proxy),
        ) as running:
            address = ORIGIN_V4 if version == 4 else ORIGIN_V6
            result = _client(net, running, _target(address), "--upload", "400000", "--timeout", "6")
            summary, pcap = _capture(running)
    assert result["status"] == 200
    assert result["received"] == 0  # never got the origin's answer
    assert summary["stop_reason"] == "idle_timeout"
    assert not _fields(pcap, "icmp || icmpv6")
    retransmitted = _fields(pcap, "tcp.analysis.retransmission && tcp.len > 1232", "tcp.len")
    assert retransmitted, "no full-size retransmission seen"
    # The handshake passed: the origin's SYN-ACK is there.
    assert _fields(pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 1")


def test_download_through_a_black_hole_shows_the_receivers_silence(tmp_path: Path) -> None:
    with topology() as net, _origin(net, "--send", "300000"):
        net.set_mtu(net.router, net.router_near, 1280)
        net.nft(net.router, BLACK_HOLE)
        with proxy(
            tmp_path,
            "--digest-algorithms",
            "MD5",
            "--idle-timeout",
            "3",
            prefix=net.exec(net.proxy),
        ) as running:
            result = _client(net, running, _target(ORIGIN_V4), "--download", "--timeout", "3")
            summary, pcap = _capture(running)
    assert result["status"] == 200 and result["received"] == 0
    origin = f"ip.src == {ORIGIN_V4}"
    # Handshake, and the proxy's request acknowledged by the origin ...
    assert _fields(pcap, f"{origin} && tcp.flags.syn == 1 && tcp.flags.ack == 1")
    request = _fields(pcap, f"ip.dst == {ORIGIN_V4} && tcp.len > 0", "tcp.nxtseq")
    assert request
    acks = _fields(pcap, f"{origin} && tcp.flags.ack == 1", "tcp.ack")
    assert max(int(a[0]) for a in acks) >= int(request[0][0])
    # ... then silence: not one byte of data from the origin, and no ICMP.
    assert not _fields(pcap, f"{origin} && tcp.len > 0")
    assert not _fields(pcap, "icmp")
    assert summary["bytes_origin_to_client"] == 0


def test_unanswered_syn_gets_504_after_the_connect_timeout(tmp_path: Path) -> None:
    with topology() as net:
        net.nft(net.router, SYN_HOLE)
        with proxy(
            tmp_path,
            "--digest-algorithms",
            "MD5",
            "--connect-timeout",
            "1.5",
            prefix=net.exec(net.proxy),
        ) as running:
            started = time.monotonic()
            result = _client(net, running, _target(ORIGIN_V4))
            elapsed = time.monotonic() - started
            summary, pcap = _capture(running)
    assert result["status"] == 504
    assert 1.4 < elapsed < 10
    assert summary["outcome"] == "timeout"
    assert _fields(pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 0")
    assert not _fields(pcap, "tcp.flags.ack == 1")

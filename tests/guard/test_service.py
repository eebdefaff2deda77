"""The guard's service: its reactions with an in-memory nftables, then end to end in
network namespaces (attacker — guarded — client).

In the namespaces the guard runs in the guarded namespace (capture on `any`, nftables there); the
attacker scans or floods it, the client connects normally. Blocks are checked in
the kernel with `nft -j list set`, and by the attacker's traffic being dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.guard import frames as f
from tests.guard.harness import (
    Guard,
    blocked,
    connect,
    flood,
    metrics_text,
    sample,
    start_server,
    wait_for,
)
from tests.guard.netns_topology import (
    ATTACKER_V4,
    ATTACKER_V6,
    GUARD_A_V4,
    GUARD_A_V6,
    GUARD_C_V4,
    GUARD_C_V6,
    Topology,
    topology,
)
from wirecap.core.formats.linktype import LinkType
from wirecap.core.formats.records import Packet
from wirecap.errors import OptionError
from wirecap.guard import nft
from wirecap.guard.addresses import HostAddresses
from wirecap.guard.detectors import PortScanSpec
from wirecap.guard.enforcer import MemoryEnforcer
from wirecap.guard.nft import NftLayout
from wirecap.guard.options import GuardOptions
from wirecap.guard.service import GuardService, lock_state
from wirecap.guard.statefile import GuardState, decode_state

SCAN_PORTS = [1001, 1002, 1003, 1004, 1005]


def _service(
    tmp_path: Path, memory: MemoryEnforcer, *, dry_run: bool = False
) -> tuple[GuardService, io.StringIO, io.StringIO]:
    options = GuardOptions(
        port_scan=PortScanSpec(3, 60),
        syn_rate=None,
        state_file=tmp_path / "guard.json",
        dry_run=dry_run,
    )
    out, err = io.StringIO(), io.StringIO()
    service = GuardService(
        options,
        enforcer_factory=lambda: memory,
        out=out,
        err=err,
        read_addresses=lambda: HostAddresses(frozenset({f.V4_LOCAL}), frozenset()),
    )
    return service, out, err


def _scan(service: GuardService, ports: range) -> None:
    now = time.time_ns()
    packets = [Packet(now + i, f.syn_v4(dport=p), 54) for i, p in enumerate(ports)]
    service._on_packets(LinkType.ETHERNET, packets)


def test_failing_nft_queues_blocks_and_a_later_reconcile_applies_them(tmp_path: Path) -> None:
    """nft failing is reported, not fatal; the queued block lands once nft works again."""

    async def scenario() -> None:
        memory = MemoryEnforcer(time.time)
        service, out, err = _service(tmp_path, memory)
        await service._refresh_addresses()
        memory.failure = "nftables: Error: Operation not permitted"
        await service._start_firewall(GuardState())
        assert "Operation not permitted; blocks are queued and retried" in err.getvalue()
        _scan(service, range(1, 4))
        await asyncio.sleep(0.05)
        assert "BLOCK IP: 198.51.100.7 for 600 s (port-scan, offence 1)" in out.getvalue()
        errors = service.metrics.registry.get_sample_value("wirecap_guard_enforcement_errors_total")
        assert errors is not None and errors >= 1
        memory.failure = None
        await service._reconcile()
        assert memory.elements("inet", "wirecap_guard", "blocked_v4") == {"198.51.100.7": 600}
        # Lifted by hand (nft delete element): the guard lets the address go.
        memory.apply(nft.request(nft.unblock_commands(NftLayout(), [f.V4_REMOTE])))
        await service._reconcile()
        assert "UNBLOCK IP: 198.51.100.7 (removed from the nft set)" in out.getvalue()
        assert len(service.policy) == 0
        # The table flushed away: set up again, and the active blocks put back.
        _scan(service, range(10, 13))
        await asyncio.sleep(0.05)
        memory.apply(nft.request(nft.teardown_commands(NftLayout())))
        await service._reconcile()
        assert memory.elements("inet", "wirecap_guard", "blocked_v4") == {"198.51.100.7": 1200}
        service._tick()
        saved = decode_state((tmp_path / "guard.json").read_bytes())
        assert [(b.address, b.offence) for b in saved.blocks] == [(f.V4_REMOTE, 2)]

    asyncio.run(scenario())


def test_dry_run_never_calls_nft(tmp_path: Path) -> None:
    async def scenario() -> None:
        memory = MemoryEnforcer(time.time)
        service, out, _ = _service(tmp_path, memory, dry_run=True)
        await service._refresh_addresses()
        await service._start_firewall(GuardState())
        _scan(service, range(1, 4))
        await asyncio.sleep(0.05)
        service._tick()
        assert "DRY RUN, would block 198.51.100.7" in out.getvalue()
        assert memory.documents == []
        assert not (tmp_path / "guard.json").exists()

    asyncio.run(scenario())


def test_state_file_lock_keeps_a_second_guard_out(tmp_path: Path) -> None:
    state = tmp_path / "state" / "guard.json"
    held = lock_state(state)
    assert held is not None
    try:
        assert lock_state(state) is None
        service, _, _ = _service(tmp_path, MemoryEnforcer(time.time))
        service.options = dataclasses.replace(service.options, state_file=state)
        with pytest.raises(OptionError, match="in use by another running guard"):
            asyncio.run(service.run(asyncio.Event()))
    finally:
        os.close(held)
    again = lock_state(state)
    assert again is not None
    os.close(again)
    assert (state.parent.stat().st_mode & 0o777) == 0o700


def test_a_corrupt_state_file_is_set_aside_not_fatal(tmp_path: Path) -> None:
    service, _, err = _service(tmp_path, MemoryEnforcer(time.time))
    (tmp_path / "guard.json").write_text("{not json")
    assert service._load_saved() == GuardState()
    assert "ignoring the state file: state file is not JSON" in err.getvalue()
    assert (tmp_path / "guard.json.corrupt").read_text() == "{not json"
    assert not (tmp_path / "guard.json").exists()


@pytest.fixture(scope="module")
def net() -> Iterator[Topology]:
    with topology() as made:
        server = start_server(made)
        try:
            yield made
        finally:
            server.kill()
            server.wait()
            if server.stdout is not None:
                server.stdout.close()


@pytest.fixture(autouse=True)
def clean_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if request.node.get_closest_marker("netns") is not None:
        net: Topology = request.getfixturevalue("net")
        net.run(net.guarded, "nft", "delete", "table", "inet", "wirecap_guard", check=False)


@pytest.mark.netns
def test_port_scan_v4_is_blocked_dropped_and_expires(net: Topology) -> None:
    with Guard(
        net, "--port-scan", "4/60", "--syn-rate", "off", "--block-time", "3", "--no-state-file"
    ) as guard:
        assert connect(net, net.attacker, GUARD_A_V4, SCAN_PORTS) == ["refused"] * 5
        element = wait_for(lambda: blocked(net, "blocked_v4").get(ATTACKER_V4), 10, "the block")
        assert element["timeout"] == 3 and element["comment"] == "port-scan #1"
        # Dropped in the kernel: no answer at all, not even a reset.
        assert connect(net, net.attacker, GUARD_A_V4, [8080], timeout=0.5) == ["timeout"]
        assert connect(net, net.client, GUARD_C_V4, [8080, 8080]) == ["ok", "ok"]
        guard.wait_line(f"Port scan detected: {ATTACKER_V4} -> {GUARD_A_V4} on ports")
        assert guard.has(f"BLOCK IP: {ATTACKER_V4} for 3 s (port-scan, offence 1)")
        wait_for(lambda: ATTACKER_V4 not in blocked(net, "blocked_v4"), 10, "the block to expire")
        assert connect(net, net.attacker, GUARD_A_V4, [8080]) == ["ok"]
        guard.wait_line(f"UNBLOCK IP: {ATTACKER_V4}")
    assert not guard.has("Traceback", err=True)


@pytest.mark.netns
def test_syn_flood_v6_is_blocked_and_the_kernel_limit_cuts_it(net: Topology) -> None:
    with Guard(
        net,
        "--port-scan",
        "off",
        "--syn-rate",
        "20/40",
        "--kernel-limit",
        "50/60",
        "--block-time",
        "30",
        "--no-state-file",
        "--metrics",
        "127.0.0.1:9314",
        "--reconcile",
        "1",
    ) as guard:
        flood(net, net.attacker, GUARD_A_V6, 300)
        wait_for(lambda: ATTACKER_V6 in blocked(net, "blocked_v6"), 10, "the IPv6 block")
        assert connect(net, net.attacker, GUARD_A_V6, [8080], timeout=0.5) == ["timeout"]
        assert connect(net, net.client, GUARD_C_V6, [8080]) == ["ok"]
        guard.wait_line(f"SYN flood detected: {ATTACKER_V6}")
        assert blocked(net, "blocked_v4") == {}
        # The meter dropped what came over 50/s per source before user space blocked it.
        rules = json.loads(
            net.run(
                net.guarded, "nft", "-j", "list", "chain", "inet", "wirecap_guard", "prerouting"
            )
        )["nftables"]
        meter_drops = [
            expr["counter"]["packets"]
            for item in rules
            if "rule" in item
            for expr in item["rule"]["expr"]
            if "counter" in expr and any("set" in e for e in item["rule"]["expr"])
        ]
        assert sum(meter_drops) > 0

        def kernel_drops(rule: str) -> float:
            text = metrics_text(net, 9314)
            return sample(text, f'wirecap_guard_kernel_drops_total{{rule="{rule}"}}')

        wait_for(lambda: kernel_drops("syn-limit") > 0, 10, "the meter's drops in the metrics")
        wait_for(lambda: kernel_drops("blocked") > 0, 10, "the block's drops in the metrics")


@pytest.mark.netns
def test_allow_listed_attacker_is_never_blocked(net: Topology) -> None:
    with Guard(
        net,
        "--port-scan",
        "3/60",
        "--allow",
        "10.208.1.0/24",
        "--allow",
        "fd08:1::/64",
        "--no-state-file",
    ) as guard:
        connect(net, net.attacker, GUARD_A_V4, SCAN_PORTS)
        connect(net, net.attacker, GUARD_A_V6, SCAN_PORTS)
        guard.wait_line(f"Not blocking {ATTACKER_V4} (port-scan): allow-listed 10.208.1.0/24")
        guard.wait_line(f"Not blocking {ATTACKER_V6} (port-scan): allow-listed fd08:1::/64")
        assert blocked(net, "blocked_v4") == {} and blocked(net, "blocked_v6") == {}
        assert connect(net, net.attacker, GUARD_A_V4, [8080]) == ["ok"]


@pytest.mark.netns
def test_dry_run_changes_nothing(net: Topology) -> None:
    with Guard(
        net, "--dry-run", "--port-scan", "3/60", "--log-format", "json", "--no-state-file"
    ) as guard:
        connect(net, net.attacker, GUARD_A_V4, SCAN_PORTS)
        guard.wait_line('"event": "block"')
        events = [json.loads(line) for line in guard.stdout]
        block = next(e for e in events if e["event"] == "block")
        assert block["address"] == ATTACKER_V4 and block["dry_run"] is True
        assert any(e["event"] == "connection" and e["dport"] == 1001 for e in events)
        assert connect(net, net.attacker, GUARD_A_V4, [8080]) == ["ok"]
    ruleset = net.run(net.guarded, "nft", "list", "ruleset")
    assert "wirecap_guard" not in ruleset


@pytest.mark.netns
def test_restart_keeps_blocks_and_timeouts(net: Topology, tmp_path: Path) -> None:
    state = tmp_path / "state" / "guard.json"
    args = ("--port-scan", "3/60", "--block-time", "120", "--state-file", str(state))
    with Guard(net, *args):
        connect(net, net.attacker, GUARD_A_V4, SCAN_PORTS[:3])
        wait_for(lambda: ATTACKER_V4 in blocked(net, "blocked_v4"), 10, "the block")
    # Stopped: the kernel keeps dropping, and the state file is private.
    assert connect(net, net.attacker, GUARD_A_V4, [8080], timeout=0.5) == ["timeout"]
    assert state.stat().st_mode & 0o777 == 0o600 and state.parent.stat().st_mode & 0o777 == 0o700
    saved = json.loads(state.read_text())
    assert [b["address"] for b in saved["blocks"]] == [ATTACKER_V4]
    with Guard(net, *args) as guard:
        element = blocked(net, "blocked_v4")[ATTACKER_V4]
        assert element["timeout"] == 120 and element["expires"] <= 120
        guard.wait_line("blocking with nft table inet wirecap_guard")
    # The table lost while the guard is stopped (a reboot): the state file puts it back.
    net.run(net.guarded, "nft", "delete", "table", "inet", "wirecap_guard")
    time.sleep(1.1)
    with Guard(net, *args) as guard:
        guard.wait_line("1 blocks put back")
        element = blocked(net, "blocked_v4")[ATTACKER_V4]
        assert element["timeout"] < 120 and element["comment"] == "port-scan #1"
        assert connect(net, net.attacker, GUARD_A_V4, [8080], timeout=0.5) == ["timeout"]


@pytest.mark.netns
def test_nft_failing_is_reported_and_observation_goes_on(net: Topology) -> None:
    with Guard(
        net,
        "--port-scan",
        "3/60",
        "--nft-backend",
        "command",
        "--nft-command",
        "/nonexistent/nft",
        "--no-state-file",
        "--metrics",
        "127.0.0.1:9312",
        "--reconcile",
        "1",
    ) as guard:
        guard.wait_line("the nft command '/nonexistent/nft' was not found", err=True)
        guard.wait_line("observation goes on", err=True)
        connect(net, net.attacker, GUARD_A_V4, SCAN_PORTS)
        guard.wait_line(f"BLOCK IP: {ATTACKER_V4}")
        text = metrics_text(net, 9312)
        assert sample(text, 'wirecap_guard_syn_total{family="ipv4"}') >= 5
        assert sample(text, "wirecap_guard_enforcement_errors_total") >= 1
        assert guard.proc.poll() is None
    assert guard.proc.returncode == 0


@pytest.mark.netns
def test_half_open_handshakes_from_conntrack_get_blocked(net: Topology) -> None:
    # The attacker's own pure ACKs are dropped: its handshakes stay SYN_RECV at the guard.
    ruleset = (
        "table inet wcg_ack {\n chain out {\n type filter hook output priority 0;\n"
        " tcp flags == ack drop\n }\n}\n"
    )
    subprocess.run(
        net.exec(net.attacker, "nft", "-f", "-"), input=ruleset, text=True, check=True, timeout=10
    )
    try:
        with Guard(
            net, "--port-scan", "off", "--syn-rate", "off", "--half-open", "6", "--no-state-file"
        ) as guard:
            flood(net, net.attacker, GUARD_A_V4, 10, hold_s=6)
            guard.wait_line(f"Half-open flood detected: {ATTACKER_V4}", 10)
            assert blocked(net, "blocked_v4")[ATTACKER_V4]["comment"] == "half-open #1"
    finally:
        net.run(net.attacker, "nft", "delete", "table", "inet", "wcg_ack", check=False)


def _query(net: Topology, port: int, expression: str) -> float | None:
    out = net.run(
        net.guarded,
        "curl",
        "-s",
        "--get",
        "--data-urlencode",
        f"query={expression}",
        f"http://127.0.0.1:{port}/api/v1/query",
    )
    result = json.loads(out)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@pytest.mark.netns
def test_prometheus_scrapes_the_guard(net: Topology, tmp_path: Path) -> None:
    """A real Prometheus 2.42 server scrapes the guard; its query API shows counters move."""
    if subprocess.run(["which", "prometheus"], capture_output=True).returncode != 0:
        pytest.skip("prometheus is not installed")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 900ms}\n"
        "scrape_configs:\n"
        "  - job_name: guard\n"
        "    static_configs: [{targets: ['127.0.0.1:9313']}]\n"
    )
    prometheus = subprocess.Popen(
        net.exec(
            net.guarded,
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            "--web.listen-address=127.0.0.1:9390",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with Guard(
            net,
            "--port-scan",
            "3/60",
            "--metrics",
            "127.0.0.1:9313",
            "--no-state-file",
            "--tcpcap-metrics",
        ):
            connect(net, net.client, GUARD_C_V4, [8080])
            syn = 'sum(wirecap_guard_syn_total{job="guard"})'
            first = wait_for(lambda: _query(net, 9390, syn), 20, "a first scrape with SYNs")
            connect(net, net.attacker, GUARD_A_V4, SCAN_PORTS)
            wait_for(
                lambda: (_query(net, 9390, syn) or 0) >= first + 5, 10, "the SYN count to rise"
            )
            blocks = 'wirecap_guard_blocks_total{reason="port-scan"}'
            wait_for(lambda: _query(net, 9390, blocks) == 1, 10, "the block count")
            assert _query(net, 9390, "wirecap_guard_blocked_addresses") == 1
            assert (_query(net, 9390, "tcpcap_processed_conns_total") or 0) >= first + 5
            assert _query(net, 9390, "tcpcap_processed_blocks_total") == 1
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=15)


@pytest.mark.netns
def test_tcpcap_alias_reads_its_environment(net: Topology) -> None:
    """`tcpcap`: INTERFACE_NAME picks the interface, PUBLIC_IP is only allow-listed,
    metrics on :2112 carry tcpcap's counters, 3 ports in 60 s is a scan."""
    env = ["env", "INTERFACE_NAME=ga0", f"PUBLIC_IP={ATTACKER_V4}"]
    code = "import sys; from wirecap.cli.guard import tcpcap; sys.exit(tcpcap(sys.argv[1:]))"
    proc = subprocess.Popen(
        net.exec(net.guarded, *env, sys.executable, "-c", code, "--no-state-file"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "watching SYNs on ga0; metrics on :2112" in line, line
        connect(net, net.attacker, GUARD_A_V4, SCAN_PORTS[:3])
        connect(net, net.client, GUARD_C_V4, SCAN_PORTS[:3])  # not on ga0: unseen
        text = wait_for(
            lambda: (
                (t := metrics_text(net, 2112)) and "tcpcap_processed_conns_total 3.0" in t and t
            ),
            10,
            "tcpcap's counter",
        )
        assert "tcpcap_processed_blocks_total 0.0" in text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert f"Not blocking {ATTACKER_V4} (port-scan): own address or gateway" not in out
    assert f"Not blocking {ATTACKER_V4} (port-scan): allow-listed {ATTACKER_V4}/32" in out
    assert proc.returncode == 0


@pytest.mark.netns
def test_an_address_added_while_running_is_guarded_too(net: Topology) -> None:
    """Direction comes from the host's addresses, re-read when the kernel announces a change."""
    with Guard(net, "--port-scan", "3/60", "--dry-run", "--no-state-file") as guard:
        net.run(net.guarded, "ip", "addr", "add", "10.208.1.5/24", "dev", "ga0")
        try:
            # The watcher settles for 0.2 s, then re-reads in a thread.
            def scanned() -> bool:
                connect(net, net.attacker, "10.208.1.5", SCAN_PORTS[:3])
                return guard.has(f"Port scan detected: {ATTACKER_V4} -> 10.208.1.5")

            wait_for(scanned, 10, "a scan of the new address to be seen")
        finally:
            net.run(net.guarded, "ip", "addr", "del", "10.208.1.5/24", "dev", "ga0")

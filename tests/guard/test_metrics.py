"""Tests for wirecap.guard.metrics: names, labels and help texts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from wirecap.guard.metrics import GuardMetrics


def test_wirecap_metrics_are_exported_with_help() -> None:
    registry = CollectorRegistry()
    metrics = GuardMetrics(registry)
    metrics.syn_seen(4, new=True)
    metrics.syn_seen(6, new=False)
    metrics.blocked_one("port-scan")
    text = generate_latest(registry).decode()
    for name in (
        'wirecap_guard_syn_total{family="ipv4"} 1.0',
        'wirecap_guard_syn_total{family="ipv6"} 1.0',
        "wirecap_guard_connections_total 1.0",
        'wirecap_guard_blocks_total{reason="port-scan"} 1.0',
        "wirecap_guard_blocked_addresses 0.0",
        "wirecap_guard_unblocks_total 0.0",
        'wirecap_guard_capture_drops_total{where="kernel"} 0.0',
    ):
        assert name in text
    assert "# HELP wirecap_guard_syn_total Inbound TCP connection attempts" in text
    assert "tcpcap_" not in text
    assert registry.get_sample_value("wirecap_guard_blocks_total", {"reason": "port-scan"}) == 1


def test_tcpcap_counters_have_their_names_and_distinct_help() -> None:
    registry = CollectorRegistry()
    metrics = GuardMetrics(registry, tcpcap=True)
    metrics.syn_seen(4, new=True)
    metrics.syn_seen(4, new=False)
    metrics.blocked_one("syn-rate")
    assert registry.get_sample_value("tcpcap_processed_conns_total") == 2
    assert registry.get_sample_value("tcpcap_processed_blocks_total") == 1
    text = generate_latest(registry).decode()
    helps = {
        line.split(" ")[2]: line.split(" ", 3)[3]
        for line in text.splitlines()
        if line.startswith("# HELP tcpcap_processed_")
    }
    conns, blocks = helps["tcpcap_processed_conns_total"], helps["tcpcap_processed_blocks_total"]
    assert conns != blocks

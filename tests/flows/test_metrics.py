"""Pipeline metrics and bounded per-flow aggregates."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from wirecap.flows.metrics import FlowAggregates, PipelineMetrics
from wirecap.flows.model import Counters, Event, FlowRecord, FlowTuple


def _record(event: Event, flow_id: int, dport: int, packets: int, proto: int = 6) -> FlowRecord:
    return FlowRecord(
        event=event,
        flow_id=flow_id,
        time_ns=1,
        start_ns=1,
        stop_ns=None,
        orig=FlowTuple("10.0.0.1", "10.0.0.2", proto, 40000, dport),
        reply=None,
        tcp_state=None,
        zone=0,
        mark=0,
        counters_orig=Counters(packets, packets * 10),
        counters_reply=Counters(0, 0),
        netns=1,
    )


def test_aggregates_count_increases_between_records() -> None:
    registry = CollectorRegistry()
    agg = FlowAggregates(registry)
    for event, packets in (
        (Event.NEW, 0),
        (Event.UPDATE, 4),
        (Event.UPDATE, 6),
        (Event.DESTROY, 7),
    ):
        agg.observe(_record(event, 1, 443, packets))
    labels = {"proto": "tcp", "dst_port": "443", "direction": "orig"}
    assert registry.get_sample_value("wirecap_flows_packets_total", labels) == 7
    assert registry.get_sample_value("wirecap_flows_bytes_total", labels) == 70


def test_aggregate_labels_are_bounded() -> None:
    registry = CollectorRegistry()
    agg = FlowAggregates(registry, ports=(8080,), max_series=3)
    for flow_id, port in enumerate((22, 8080, 40000, 53, 80, 9999)):
        agg.observe(_record(Event.DESTROY, flow_id, port, 1))
    ports = {
        s.labels["dst_port"]
        for m in registry.collect()
        if m.name == "wirecap_flows_packets"
        for s in m.samples
    }
    # 22 and 8080 named, 40000 folded into "other", then the bound: everything else "other".
    assert ports == {"22", "8080", "other"}


def test_sink_series_exist_before_traffic() -> None:
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    metrics.add_sink("influx")
    assert (
        registry.get_sample_value(
            "wirecap_flows_sink_dropped_records_total", {"sink": "influx", "reason": "queue_full"}
        )
        == 0
    )

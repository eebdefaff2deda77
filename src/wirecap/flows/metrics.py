"""Prometheus metrics of the flow pipeline, on a registry passed in (no global).

Pipeline internals (conntracct's roadmap item it never shipped): events by
type, dumps and their duration, lost events (ENOBUFS), undecodable messages,
flows tracked, and per sink: queue depth, records sent, dropped (by reason),
and write latency.

Optional per-flow aggregates (``flow_metrics``): bytes and packets by
(protocol, destination port, direction), from the increase between a flow's
records. Label cardinality is bounded twice: ports above 1023 that are not in
``ports`` are folded into ``other``, and past `MAX_AGGREGATE_SERIES`
(proto, port) pairs further pairs are folded into ``other`` too.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from wirecap.flows.model import Counters, Event, FlowRecord, proto_name

__all__ = ["MAX_AGGREGATE_SERIES", "FlowAggregates", "PipelineMetrics"]

#: 256 (proto, port) pairs × 2 directions × 2 metrics = 1024 series: a scrape of
#: a few tens of KB, well inside what one Prometheus target should cost.
MAX_AGGREGATE_SERIES = 256
_PREFIX = "wirecap_flows"


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            f"{_PREFIX}_events", "conntrack messages handled, by type", ["type"], registry=registry
        )
        self.records = Counter(
            f"{_PREFIX}_records", "flow records emitted, by event", ["event"], registry=registry
        )
        self.dumps = Counter(
            f"{_PREFIX}_dumps", "conntrack table dumps completed", registry=registry
        )
        self.dump_seconds = Histogram(
            f"{_PREFIX}_dump_duration_seconds",
            "time to read one conntrack table dump",
            buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
            registry=registry,
        )
        self.lost = Counter(
            f"{_PREFIX}_lost_events",
            "netlink ENOBUFS overruns (events the kernel dropped)",
            registry=registry,
        )
        self.undecoded = Counter(
            f"{_PREFIX}_undecoded_messages",
            "netlink messages skipped as undecodable",
            registry=registry,
        )
        self.tracked = Gauge(f"{_PREFIX}_tracked", "flows in the flow table", registry=registry)
        self.vanished = Counter(
            f"{_PREFIX}_vanished",
            "flows found gone in a dump without a DESTROY event",
            registry=registry,
        )
        self.queue_depth = Gauge(
            f"{_PREFIX}_sink_queue_depth", "records waiting per sink", ["sink"], registry=registry
        )
        self.sent = Counter(
            f"{_PREFIX}_sink_sent_records", "records a sink delivered", ["sink"], registry=registry
        )
        self.dropped = Counter(
            f"{_PREFIX}_sink_dropped_records",
            "records a sink lost: queue_full or write_failed",
            ["sink", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{_PREFIX}_sink_write_duration_seconds",
            "time per batch write",
            ["sink"],
            buckets=(0.001, 0.005, 0.02, 0.1, 0.5, 2, 10),
            registry=registry,
        )

    def add_sink(self, name: str) -> None:
        """Create a sink's series at zero, so a scrape shows them before any traffic."""
        self.queue_depth.labels(name).set(0)
        self.sent.labels(name)
        for reason in ("queue_full", "write_failed"):
            self.dropped.labels(name, reason)


@dataclass
class FlowAggregates:
    """Byte/packet counters by (proto, dst port, direction) from successive records."""

    registry: CollectorRegistry
    ports: Collection[int] = ()
    max_series: int = MAX_AGGREGATE_SERIES
    _last: dict[tuple[int, int, int], tuple[Counters, Counters]] = field(default_factory=dict)
    _pairs: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.bytes = Counter(
            f"{_PREFIX}_bytes",
            "bytes of tracked flows",
            ["proto", "dst_port", "direction"],
            registry=self.registry,
        )
        self.packets = Counter(
            f"{_PREFIX}_packets",
            "packets of tracked flows",
            ["proto", "dst_port", "direction"],
            registry=self.registry,
        )

    def _labels(self, record: FlowRecord) -> tuple[str, str]:
        proto = proto_name(record.orig.proto)
        port = record.orig.dport
        label = str(port) if port and (port < 1024 or port in self.ports) else "other"
        if (proto, label) not in self._pairs:
            if len(self._pairs) >= self.max_series:
                return "other", "other"
            self._pairs.add((proto, label))
        return proto, label

    def observe(self, record: FlowRecord) -> None:
        key = (record.netns, record.flow_id, record.start_ns or 0)
        before = self._last.get(key, (Counters(), Counters()))
        if record.event is Event.DESTROY:
            self._last.pop(key, None)
        else:
            self._last[key] = (record.counters_orig, record.counters_reply)
        proto, port = self._labels(record)
        for direction, now, then in (
            ("orig", record.counters_orig, before[0]),
            ("reply", record.counters_reply, before[1]),
        ):
            # Counters never go back for one flow; a smaller value means a reset
            # (CTRZERO by another tool), counted from zero.
            bytes_delta = now.bytes - then.bytes if now.bytes >= then.bytes else now.bytes
            packets_delta = (
                now.packets - then.packets if now.packets >= then.packets else now.packets
            )
            if bytes_delta:
                self.bytes.labels(proto, port, direction).inc(bytes_delta)
            if packets_delta:
                self.packets.labels(proto, port, direction).inc(packets_delta)

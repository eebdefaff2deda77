"""Prometheus metrics of the proxy, in a registry the caller owns (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from wirecap.proxy.recorder import Recording

__all__ = ["ProxyMetrics"]


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._connections = Counter(
            "wirecap_proxy_connections",
            "Proxied connections by connect outcome",
            ["outcome"],
            registry=registry,
        )
        self._rejected = Counter(
            "wirecap_proxy_requests_rejected",
            "Requests refused before any connect attempt, by reason",
            ["reason"],
            registry=registry,
        )
        self._auth_failures = Counter(
            "wirecap_proxy_auth_failures", "Digest answers that failed", registry=registry
        )
        self._bytes = Counter(
            "wirecap_proxy_bytes",
            "Bytes relayed, by direction",
            ["direction"],
            registry=registry,
        )
        self._active = Gauge("wirecap_proxy_active_tunnels", "Tunnels open now", registry=registry)
        self._captured = Counter(
            "wirecap_proxy_captured_packets", "Packets written to captures", registry=registry
        )
        self._dropped = Counter(
            "wirecap_proxy_capture_drops",
            "Packets libpcap reported lost, by where",
            ["where"],
            registry=registry,
        )
        self._truncated = Counter(
            "wirecap_proxy_truncated_captures",
            "Captures that reached the size cap",
            registry=registry,
        )

    def rejected(self, reason: str) -> None:
        self._rejected.labels(reason).inc()

    def auth_failure(self) -> None:
        self._auth_failures.inc()

    def tunnel_opened(self) -> None:
        self._active.inc()

    def tunnel_closed(self, client_to_origin: int, origin_to_client: int) -> None:
        self._active.dec()
        self._bytes.labels("client_to_origin").inc(client_to_origin)
        self._bytes.labels("origin_to_client").inc(origin_to_client)

    def connection(self, outcome: str, recording: Recording | None) -> None:
        self._connections.labels(outcome).inc()
        if recording is None:
            return
        self._captured.inc(recording.stats.written)
        self._dropped.labels("kernel").inc(recording.stats.dropped_by_kernel)
        self._dropped.labels("interface").inc(recording.stats.dropped_by_interface)
        if recording.truncated:
            self._truncated.inc()

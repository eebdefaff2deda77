"""Detection policies: connection attempts in, detections out, time passed in, no I/O.

Three policies, each optional, all may run at once:

- :class:`PortScanDetector`: distinct destination ports one source tried within a
  sliding window. tcpcap's rule (3 ports in 60 s) is the compat default; CrowdSec's
  stock port-scan scenario needs about 15 distinct ports in a burst.
- :class:`SynRateDetector`: connection attempts per second from one source, as a
  token bucket (rate and burst), so a flood is caught within ``burst`` SYNs.
- :class:`HalfOpenDetector`: handshakes one source leaves unfinished, counted from
  conntrack's SYN_RECV entries; a capture of SYNs alone cannot see the final ACK.

A detector forgets a source once it has reported it: the block policy decides what
happens next, and a new detection after the block ends needs new evidence.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from wirecap.errors import OptionError
from wirecap.guard.lru import ExpiringLRU
from wirecap.guard.syn import SynObserved

__all__ = [
    "MAX_TRACKED_SOURCES",
    "Detection",
    "HalfOpenDetector",
    "HalfOpenSpec",
    "PortScanDetector",
    "PortScanSpec",
    "Reason",
    "SynRateDetector",
    "SynRateSpec",
]

#: Sources each detector keeps state for. A spoofed flood brings a new source per
#: packet; past this the least recently seen source is forgotten (and counted), so
#: memory stays near 100 bytes × this per detector whatever arrives.
MAX_TRACKED_SOURCES = 65536

_NS = 1_000_000_000


class Reason(enum.StrEnum):
    """Why an address was blocked: the ``reason`` label of the metrics and the logs."""

    PORT_SCAN = "port-scan"
    SYN_RATE = "syn-rate"
    HALF_OPEN = "half-open"
    MANUAL = "manual"


class Detection(NamedTuple):
    """A source crossed a detection threshold at ``ts_ns``."""

    ts_ns: int
    source: bytes
    reason: Reason
    #: Human-readable evidence, e.g. "4 ports in 60 s: 22,80,443,8080".
    detail: str
    #: The local address the last attempt went to (for the log line).
    target: bytes | None = None


@dataclass(frozen=True, slots=True)
class PortScanSpec:
    """Block a source that tries ``ports`` distinct destination ports within ``window_s``."""

    ports: int = 15
    window_s: float = 60.0

    def __post_init__(self) -> None:
        if not 2 <= self.ports <= 65535:
            raise OptionError(f"port-scan ports {self.ports} must be within 2..65535")
        if not 0 < self.window_s <= 86400:
            raise OptionError(f"port-scan window {self.window_s} s must be within (0, 86400]")


@dataclass(frozen=True, slots=True)
class SynRateSpec:
    """Block a source whose attempts exceed ``rate`` per second beyond a ``burst``."""

    rate: float = 50.0
    burst: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.rate <= 10_000_000:
            raise OptionError(f"syn-rate {self.rate}/s must be within (0, 10000000]")
        if not 1 <= self.burst <= 10_000_000:
            raise OptionError(f"syn-rate burst {self.burst} must be within 1..10000000")


@dataclass(frozen=True, slots=True)
class HalfOpenSpec:
    """Block a source holding ``max_half_open`` unfinished handshakes at once."""

    max_half_open: int = 64
    #: How often conntrack is read.
    interval_s: float = 2.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_half_open <= 1_000_000:
            raise OptionError(f"half-open {self.max_half_open} must be within 1..1000000")
        if not 0.1 <= self.interval_s <= 3600:
            raise OptionError(f"half-open interval {self.interval_s} s must be within 0.1..3600")


class PortScanDetector:
    """Distinct destination ports per source in a sliding window.

    A source's state is its ports with the time each was last tried, never more
    than ``ports`` of them: reaching that many is the detection, which resets the
    source. Ports not tried within the window fall out, so a client that used
    three services last week and one now is not a scanner (tcpcap counted every
    port a source had ever tried).
    """

    def __init__(self, spec: PortScanSpec, *, max_sources: int = MAX_TRACKED_SOURCES) -> None:
        self.spec = spec
        self._window_ns = int(spec.window_s * _NS)
        self._sources: ExpiringLRU[bytes, dict[int, int]] = ExpiringLRU(
            max_sources, self._window_ns
        )

    @property
    def tracked(self) -> int:
        return len(self._sources)

    @property
    def evicted(self) -> int:
        return self._sources.evicted

    def observe(self, syn: SynObserved) -> Detection | None:
        now = syn.ts_ns
        ports = self._sources.get(syn.src, now)
        if ports is None:
            ports = {}
        else:
            cutoff = now - self._window_ns
            stale = [port for port, seen in ports.items() if seen <= cutoff]
            for port in stale:
                del ports[port]
        ports[syn.dport] = now
        if len(ports) < self.spec.ports:
            self._sources.put(syn.src, ports, now)
            return None
        self._sources.pop(syn.src)
        listed = ",".join(str(port) for port in sorted(ports))
        detail = f"{len(ports)} ports in {self.spec.window_s:g} s: {listed}"
        return Detection(now, syn.src, Reason.PORT_SCAN, detail, syn.dst)

    def forget(self, source: bytes) -> None:
        self._sources.pop(source)


class SynRateDetector:
    """A token bucket per source: ``burst`` tokens, refilled at ``rate`` per second.

    Each attempt takes a token; an attempt finding the bucket empty is the
    detection. A bucket left alone long enough to refill completely is the same
    as no bucket, which is its time to live.
    """

    def __init__(self, spec: SynRateSpec, *, max_sources: int = MAX_TRACKED_SOURCES) -> None:
        self.spec = spec
        self._ns_per_token = _NS / spec.rate
        refill_ns = max(1, int(spec.burst * self._ns_per_token))
        # Values are [tokens, last update ns], mutated in place: one allocation per source.
        self._sources: ExpiringLRU[bytes, list[float]] = ExpiringLRU(max_sources, refill_ns)

    @property
    def tracked(self) -> int:
        return len(self._sources)

    @property
    def evicted(self) -> int:
        return self._sources.evicted

    def observe(self, syn: SynObserved) -> Detection | None:
        now = syn.ts_ns
        bucket = self._sources.get(syn.src, now)
        burst = float(self.spec.burst)
        if bucket is None:
            bucket = [burst, float(now)]
        else:
            elapsed = max(0.0, now - bucket[1])
            bucket[0] = min(burst, bucket[0] + elapsed / self._ns_per_token)
            bucket[1] = float(now)
        bucket[0] -= 1.0
        if bucket[0] >= 0.0:
            self._sources.put(syn.src, bucket, now)
            return None
        self._sources.pop(syn.src)
        detail = f"more than {self.spec.burst} SYNs at over {self.spec.rate:g}/s"
        return Detection(now, syn.src, Reason.SYN_RATE, detail, syn.dst)

    def forget(self, source: bytes) -> None:
        self._sources.pop(source)


class HalfOpenDetector:
    """Sources over the limit in one reading of half-open handshakes per source."""

    def __init__(self, spec: HalfOpenSpec) -> None:
        self.spec = spec

    def observe_counts(self, counts: Mapping[bytes, int], now_ns: int) -> list[Detection]:
        limit = self.spec.max_half_open
        return [
            Detection(now_ns, source, Reason.HALF_OPEN, f"{count} half-open handshakes")
            for source, count in sorted(counts.items())
            if count >= limit
        ]

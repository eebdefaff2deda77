"""The guard's pure core: connection attempts in, detections and block decisions out.

::

    engine = GuardEngine(policy, port_scan=PortScanSpec(3, 60.0), syn_rate=None)
    seen = engine.observe(syn)           # SynObserved from syn.classify()
    for verdict in seen.verdicts:        # Block | Spared
        ...

Attempts from an address that is blocked now skip the detectors: the capture sees
packets before netfilter drops them, and a blocked scanner must not be detected
(and counted) again for every SYN it keeps sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple, TypeAlias

from wirecap.guard.detectors import (
    Detection,
    HalfOpenDetector,
    HalfOpenSpec,
    PortScanDetector,
    PortScanSpec,
    SynRateDetector,
    SynRateSpec,
)
from wirecap.guard.lru import ExpiringLRU
from wirecap.guard.policy import Block, BlockPolicy, Spared
from wirecap.guard.syn import SynObserved

__all__ = [
    "MAX_RECENT_ATTEMPTS",
    "RETRANSMIT_WINDOW_S",
    "GuardEngine",
    "Observation",
    "Verdict",
]

Verdict: TypeAlias = Block | Spared

#: A SYN is a retransmission when the same (addresses, ports, ISN) came within this:
#: Linux gives up after 6 retries, 1+2+4+8+16+32 = 63 s (tcp_syn_retries), plus margin.
RETRANSMIT_WINDOW_S = 75
#: Attempts remembered to recognise retransmissions; a spoofed flood churns through it.
MAX_RECENT_ATTEMPTS = 65536

_NS = 1_000_000_000


class Observation(NamedTuple):
    """What one connection attempt led to."""

    #: Not a retransmission of an attempt seen within RETRANSMIT_WINDOW_S.
    new_connection: bool
    #: The source is blocked now; detectors were skipped.
    source_blocked: bool
    detections: tuple[Detection, ...]
    verdicts: tuple[Verdict, ...]


_NONE: tuple[()] = ()


class GuardEngine:
    """Runs every enabled detector on each attempt and asks the policy about detections."""

    def __init__(
        self,
        policy: BlockPolicy,
        *,
        port_scan: PortScanSpec | None,
        syn_rate: SynRateSpec | None,
        half_open: HalfOpenSpec | None = None,
        max_recent: int = MAX_RECENT_ATTEMPTS,
    ) -> None:
        self.policy = policy
        self.port_scan = PortScanDetector(port_scan) if port_scan is not None else None
        self.syn_rate = SynRateDetector(syn_rate) if syn_rate is not None else None
        self.half_open = HalfOpenDetector(half_open) if half_open is not None else None
        self._detectors = [d for d in (self.port_scan, self.syn_rate) if d is not None]
        self._recent: ExpiringLRU[tuple[bytes, bytes, int, int, int], bool] = ExpiringLRU(
            max_recent, RETRANSMIT_WINDOW_S * _NS
        )

    @property
    def evicted(self) -> int:
        """Sources and attempts dropped from full state tables so far."""
        return self._recent.evicted + sum(d.evicted for d in self._detectors)

    def observe(self, syn: SynObserved) -> Observation:
        key = (syn.src, syn.dst, syn.sport, syn.dport, syn.seq)
        recent = self._recent
        new = recent.get(key, syn.ts_ns) is None
        recent.put(key, True, syn.ts_ns)
        if self.policy.is_blocked(syn.src, syn.ts_ns):
            return Observation(new, True, _NONE, _NONE)
        detections: list[Detection] = []
        for detector in self._detectors:
            found = detector.observe(syn)
            if found is not None:
                detections.append(found)
        if not detections:
            return Observation(new, False, _NONE, _NONE)
        return Observation(new, False, tuple(detections), self._decide(detections))

    def observe_half_open(
        self, counts: Mapping[bytes, int], now_ns: int
    ) -> tuple[tuple[Detection, ...], tuple[Verdict, ...]]:
        """Feed one reading of half-open handshakes per source (from conntrack)."""
        if self.half_open is None:
            return _NONE, _NONE
        detections = [
            d
            for d in self.half_open.observe_counts(counts, now_ns)
            if not self.policy.is_blocked(d.source, now_ns)
        ]
        return tuple(detections), self._decide(detections)

    def _decide(self, detections: list[Detection]) -> tuple[Verdict, ...]:
        verdicts: list[Verdict] = []
        for detection in detections:
            verdict = self.policy.decide(detection)
            if verdict is None:
                continue  # a second detector fired for the same attempt: already blocked
            verdicts.append(verdict)
            if isinstance(verdict, Block):
                self.forget(detection.source)
        return tuple(verdicts)

    def forget(self, source: bytes) -> None:
        """Drop the detectors' state of ``source`` (it was blocked)."""
        for detector in self._detectors:
            detector.forget(source)

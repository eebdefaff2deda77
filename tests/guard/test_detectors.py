"""Tests for wirecap.guard.detectors: port scan, SYN rate, half-open."""

from __future__ import annotations

import pytest

from tests.guard import frames as f
from wirecap.errors import OptionError
from wirecap.guard.detectors import (
    HalfOpenDetector,
    HalfOpenSpec,
    PortScanDetector,
    PortScanSpec,
    Reason,
    SynRateDetector,
    SynRateSpec,
)
from wirecap.guard.syn import SynObserved

S = 1_000_000_000
NOW = 1_700_000_000 * S


def syn(dport: int, at_s: float, src: bytes = f.V4_REMOTE) -> SynObserved:
    return SynObserved(NOW + int(at_s * S), 4, src, f.V4_LOCAL, 40000, dport, 0x02, 1)


def test_port_scan_tcpcap_vectors() -> None:
    """tcpcap's own tests: tries at -55, -30, -50 s block; at -15 min, -10 min, -90 s not."""
    inside = PortScanDetector(PortScanSpec(ports=3, window_s=60))
    found = [inside.observe(syn(port, at)) for port, at in ((22, -55), (80, -50), (443, -30))]
    assert found[:2] == [None, None]
    assert found[2] is not None and found[2].reason is Reason.PORT_SCAN
    assert found[2].detail == "3 ports in 60 s: 22,80,443"
    outside = PortScanDetector(PortScanSpec(ports=3, window_s=60))
    for port, at in ((22, -900), (80, -600), (443, -90)):
        assert outside.observe(syn(port, at)) is None


def test_port_scan_counts_distinct_ports_in_the_window_only() -> None:
    detector = PortScanDetector(PortScanSpec(ports=3, window_s=60))
    for _ in range(10):  # one port again and again is a client, not a scan
        assert detector.observe(syn(443, 0)) is None
    assert detector.observe(syn(80, 10)) is None
    assert detector.observe(syn(22, 65)) is None  # 443 fell out (last tried at 0)
    assert detector.observe(syn(25, 68)) is not None  # 80, 22, 25 within 60 s


def test_port_scan_resets_a_source_after_detection_and_tracks_sources_apart() -> None:
    detector = PortScanDetector(PortScanSpec(ports=2, window_s=60))
    other = bytes([198, 51, 100, 8])
    assert detector.observe(syn(1, 0)) is None
    assert detector.observe(syn(2, 0, src=other)) is None
    assert detector.observe(syn(3, 1)) is not None
    assert detector.tracked == 1  # the detected source starts afresh
    assert detector.observe(syn(4, 2)) is None


def test_port_scan_state_is_bounded() -> None:
    detector = PortScanDetector(PortScanSpec(ports=5, window_s=60), max_sources=100)
    for i in range(1000):
        detector.observe(syn(1, 0, src=i.to_bytes(4, "big")))
    assert detector.tracked == 100
    assert detector.evicted == 900


def test_syn_rate_allows_the_burst_then_detects() -> None:
    detector = SynRateDetector(SynRateSpec(rate=10, burst=5))
    results = [detector.observe(syn(80, i * 0.001)) for i in range(6)]
    assert results[:5] == [None] * 5
    found = results[5]
    assert found is not None and found.reason is Reason.SYN_RATE
    assert found.target == f.V4_LOCAL


def test_syn_rate_refills_at_the_rate() -> None:
    detector = SynRateDetector(SynRateSpec(rate=10, burst=2))
    # At exactly the rate (one per 100 ms) a source never runs dry.
    for i in range(100):
        assert detector.observe(syn(80, i * 0.1)) is None
    # A state left alone long enough to refill is forgotten.
    assert detector.tracked == 1
    detector.observe(syn(80, 1000))
    assert detector.tracked == 1


def test_half_open_reports_sources_at_the_limit() -> None:
    detector = HalfOpenDetector(HalfOpenSpec(max_half_open=3))
    counts = {bytes([1, 1, 1, 1]): 2, bytes([2, 2, 2, 2]): 3, bytes([3, 3, 3, 3]): 9}
    found = detector.observe_counts(counts, NOW)
    assert [d.source for d in found] == [bytes([2, 2, 2, 2]), bytes([3, 3, 3, 3])]
    assert found[1].detail == "9 half-open handshakes"
    assert all(d.reason is Reason.HALF_OPEN for d in found)


@pytest.mark.parametrize(
    "make",
    [
        lambda: PortScanSpec(ports=1),
        lambda: PortScanSpec(window_s=0),
        lambda: SynRateSpec(rate=0),
        lambda: SynRateSpec(burst=0),
        lambda: HalfOpenSpec(max_half_open=0),
        lambda: HalfOpenSpec(interval_s=0.01),
    ],
)
def test_specs_refuse_impossible_values(make: object) -> None:
    with pytest.raises(OptionError):
        make()  # type: ignore[operator]

"""Tests for wirecap.guard.engine: detectors and policy run together on each attempt."""

from __future__ import annotations

from tests.guard import frames as f
from wirecap.guard.detectors import HalfOpenSpec, PortScanSpec, Reason, SynRateSpec
from wirecap.guard.engine import GuardEngine
from wirecap.guard.policy import AllowList, Block, BlockPolicy, BlockSpec, Spared
from wirecap.guard.syn import SynObserved

S = 1_000_000_000
NOW = 1_700_000_000 * S


def syn(dport: int, at_s: float, seq: int = 1, sport: int = 40000) -> SynObserved:
    return SynObserved(NOW + int(at_s * S), 4, f.V4_REMOTE, f.V4_LOCAL, sport, dport, 0x02, seq)


def engine(allow: AllowList | None = None) -> GuardEngine:
    policy = BlockPolicy(BlockSpec(timeout_s=60), allow or AllowList())
    return GuardEngine(policy, port_scan=PortScanSpec(3, 60), syn_rate=SynRateSpec(100, 3))


def test_retransmissions_are_not_new_connections() -> None:
    guard = engine()
    assert guard.observe(syn(80, 0, seq=5)).new_connection
    assert not guard.observe(syn(80, 1, seq=5)).new_connection  # same ISN: retransmitted
    assert guard.observe(syn(80, 1, seq=6)).new_connection
    assert guard.observe(syn(80, 100, seq=5)).new_connection  # long after: a new attempt


def test_a_scan_is_blocked_once_and_later_attempts_skip_the_detectors() -> None:
    guard = engine()
    guard.observe(syn(1, 0))
    guard.observe(syn(2, 0.5))
    seen = guard.observe(syn(3, 1))
    assert [d.reason for d in seen.detections] == [Reason.PORT_SCAN]
    (block,) = seen.verdicts
    assert isinstance(block, Block) and block.timeout_s == 60
    for port in range(4, 40):
        later = guard.observe(syn(port, 2 + port * 0.01, seq=port))
        assert later.source_blocked and not later.detections and not later.verdicts


def test_two_detectors_on_one_attempt_give_one_block() -> None:
    guard = engine()
    guard.observe(syn(1, 0, seq=1))
    guard.observe(syn(2, 0, seq=2))
    guard.observe(syn(2, 0, seq=3))
    seen = guard.observe(syn(3, 0, seq=4))  # third port and fourth SYN in a burst of 3
    assert {d.reason for d in seen.detections} == {Reason.PORT_SCAN, Reason.SYN_RATE}
    assert len([v for v in seen.verdicts if isinstance(v, Block)]) == 1


def test_allow_listed_source_is_spared_every_time() -> None:
    guard = engine(AllowList(["198.51.100.0/24"]))
    verdicts: list[object] = []
    for port in range(12):
        verdicts.extend(guard.observe(syn(port, port * 10.0, seq=port)).verdicts)
    assert verdicts and all(isinstance(v, Spared) for v in verdicts)
    assert len(guard.policy) == 0


def test_half_open_readings_go_through_the_policy() -> None:
    policy = BlockPolicy(BlockSpec(timeout_s=60), AllowList())
    guard = GuardEngine(policy, port_scan=None, syn_rate=None, half_open=HalfOpenSpec(4))
    detections, verdicts = guard.observe_half_open({f.V4_REMOTE: 4}, NOW)
    assert len(detections) == 1 and isinstance(verdicts[0], Block)
    assert guard.observe_half_open({f.V4_REMOTE: 9}, NOW + S) == ((), ())
    no_half_open = GuardEngine(policy, port_scan=None, syn_rate=None)
    assert no_half_open.observe_half_open({f.V4_REMOTE: 9}, NOW) == ((), ())
    assert guard.evicted == 0

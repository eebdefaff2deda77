"""Tests for wirecap.guard.policy: allow-list, timeouts, escalation, bounds."""

from __future__ import annotations

import ipaddress

import pytest

from wirecap.errors import OptionError
from wirecap.guard.detectors import Detection, Reason
from wirecap.guard.policy import AllowList, Block, BlockPolicy, BlockSpec, Spared

S = 1_000_000_000
NOW = 1_700_000_000 * S
ATTACKER = bytes([198, 51, 100, 7])


def detection(at_s: float = 0, source: bytes = ATTACKER) -> Detection:
    return Detection(NOW + int(at_s * S), source, Reason.PORT_SCAN, "3 ports in 60 s: 1,2,3")


def test_block_has_the_spec_timeout_and_is_not_repeated() -> None:
    policy = BlockPolicy(BlockSpec(timeout_s=600), AllowList())
    block = policy.decide(detection())
    assert block == Block(
        ATTACKER, 600, Reason.PORT_SCAN, 1, "3 ports in 60 s: 1,2,3", NOW + 600 * S
    )
    assert policy.is_blocked(ATTACKER, NOW + 599 * S)
    assert policy.decide(detection(10)) is None
    assert len(policy) == 1


def test_repeat_offenders_escalate_up_to_the_cap() -> None:
    policy = BlockPolicy(BlockSpec(timeout_s=100, factor=2, max_timeout_s=350), AllowList())
    timeouts = []
    at = 0.0
    for _ in range(4):
        block = policy.decide(detection(at))
        assert isinstance(block, Block)
        timeouts.append(block.timeout_s)
        at += block.timeout_s + 1
        assert policy.expire(NOW + int(at * S)) == [ATTACKER]
    assert timeouts == [100, 200, 350, 350]


def test_offences_are_forgotten_after_forget_after() -> None:
    policy = BlockPolicy(BlockSpec(timeout_s=10, forget_after_s=100), AllowList())
    assert isinstance(policy.decide(detection(0)), Block)
    policy.expire(NOW + 11 * S)
    second = policy.decide(detection(200))
    assert isinstance(second, Block) and second.offence == 1


def test_allow_list_spares_networks_loopback_and_dynamic_addresses() -> None:
    allow = AllowList(["198.51.100.0/24", "2001:db8::/32"])
    policy = BlockPolicy(BlockSpec(), allow)
    spared = policy.decide(detection())
    assert spared == Spared(ATTACKER, Reason.PORT_SCAN, "allow-listed 198.51.100.0/24")
    assert allow.match(bytes([127, 0, 0, 9])) == "allow-listed 127.0.0.0/8"
    assert allow.match(ipaddress.IPv6Address("2001:db8::5").packed) is not None
    gateway = bytes([203, 0, 113, 1])
    assert allow.match(gateway) is None
    assert allow.with_dynamic([gateway]).match(gateway) == "own address or gateway"
    assert not policy.is_blocked(ATTACKER, NOW)


def test_allow_list_refuses_garbage() -> None:
    with pytest.raises(OptionError, match="not-a-net"):
        AllowList(["not-a-net"])


def test_full_block_table_spares_instead_of_growing() -> None:
    policy = BlockPolicy(BlockSpec(timeout_s=60), AllowList(), max_blocks=2)
    for i in range(2):
        assert isinstance(policy.decide(detection(0, bytes([10, 0, 0, i]))), Block)
    full = policy.decide(detection(1, bytes([10, 0, 0, 9])))
    assert isinstance(full, Spared) and "2 addresses already blocked" in full.why
    # Once a block ends there is room again.
    assert isinstance(policy.decide(detection(61, bytes([10, 0, 0, 9]))), Block)


def test_restore_release_and_offenders() -> None:
    policy = BlockPolicy(BlockSpec(), AllowList())
    policy.restore(ATTACKER, NOW + 50 * S, Reason.SYN_RATE, 3)
    policy.restore_offender(ATTACKER, 3, NOW)
    assert policy.is_blocked(ATTACKER, NOW)
    assert [(a, b.offence) for a, b in policy.active()] == [(ATTACKER, 3)]
    assert policy.release(ATTACKER) and not policy.release(ATTACKER)
    block = policy.decide(detection())
    assert isinstance(block, Block) and block.offence == 4 and block.timeout_s == 600 * 8
    assert [(a, n) for a, n, _ in policy.offenders()] == [(ATTACKER, 4)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout_s": 0},
        {"timeout_s": 100, "max_timeout_s": 50},
        {"max_timeout_s": 50 * 86400},
        {"factor": 0.5},
        {"timeout_s": 100, "forget_after_s": 10},
    ],
)
def test_block_spec_refuses_impossible_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(OptionError):
        BlockSpec(**kwargs)  # type: ignore[arg-type]

"""Tests for wirecap.guard.enforcer: the in-memory nftables behaves as nft does."""

from __future__ import annotations

import pytest

from wirecap.errors import EnforcementError
from wirecap.guard import nft
from wirecap.guard.detectors import Reason
from wirecap.guard.enforcer import MemoryEnforcer
from wirecap.guard.nft import NftLayout
from wirecap.guard.policy import Block

LAYOUT = NftLayout()
ADDRESS = bytes([198, 51, 100, 7])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_elements_expire_and_list_with_time_left() -> None:
    clock = Clock()
    memory = MemoryEnforcer(clock)
    memory.apply(nft.request(nft.setup_commands(LAYOUT)))
    memory.apply(
        nft.request(nft.block_commands(LAYOUT, [Block(ADDRESS, 10, Reason.PORT_SCAN, 1, "", 0)]))
    )
    clock.now += 4
    listed = memory.apply(nft.request(nft.list_commands(LAYOUT)[:1]))
    assert nft.parse_elements(listed, LAYOUT)[0].expires_s == 6
    clock.now += 6
    assert memory.elements("inet", "wirecap_guard", "blocked_v4") == {}


def test_a_failing_command_changes_nothing() -> None:
    memory = MemoryEnforcer(Clock())
    memory.apply(nft.request(nft.setup_commands(LAYOUT)))
    block = nft.block_commands(LAYOUT, [Block(ADDRESS, 10, Reason.PORT_SCAN, 1, "", 0)])
    missing = nft.unblock_commands(LAYOUT, [bytes([10, 0, 0, 1])])
    with pytest.raises(EnforcementError, match="No such file"):
        memory.apply(nft.request(block + missing))
    assert memory.elements("inet", "wirecap_guard", "blocked_v4") == {}


def test_failure_switch_and_missing_table() -> None:
    memory = MemoryEnforcer(Clock())
    with pytest.raises(EnforcementError):
        memory.apply(nft.request(nft.list_commands(LAYOUT)))
    memory.failure = "nft: Operation not permitted"
    with pytest.raises(EnforcementError, match="not permitted"):
        memory.apply(nft.request(nft.setup_commands(LAYOUT)))
    assert len(memory.documents) == 2

"""Tests for wirecap.guard.firewall: sets through an enforcer, and restart planning."""

from __future__ import annotations

from tests.guard.test_enforcer import Clock
from wirecap.guard.detectors import Reason
from wirecap.guard.enforcer import MemoryEnforcer
from wirecap.guard.firewall import PERMANENT_NS, Firewall, plan_restore, remaining_block
from wirecap.guard.nft import NftLayout, SetElement
from wirecap.guard.policy import Block
from wirecap.guard.statefile import GuardState, SavedBlock

S = 1_000_000_000
NOW = 1_700_000_000 * S
A = bytes([198, 51, 100, 7])
B = bytes([198, 51, 100, 8])


def test_firewall_adds_lists_removes_and_flushes() -> None:
    firewall = Firewall(MemoryEnforcer(Clock()), NftLayout())
    assert firewall.elements_or_none() is None
    firewall.setup()
    firewall.setup()  # idempotent
    firewall.add(
        [Block(A, 60, Reason.PORT_SCAN, 1, "", 0), Block(B, 60, Reason.SYN_RATE, 2, "", 0)]
    )
    assert {e.address for e in firewall.elements()} == {A, B}
    assert firewall.remove([A, bytes([10, 0, 0, 1])]) == [A]
    assert firewall.flush() == [B]
    assert firewall.drop_counters() == {"blocked": 0, "syn-limit": 0}
    assert firewall.elements() == []
    firewall.teardown()
    assert firewall.elements_or_none() is None


def test_setup_keeps_existing_blocks() -> None:
    firewall = Firewall(MemoryEnforcer(Clock()), NftLayout())
    firewall.setup()
    firewall.add([Block(A, 60, Reason.PORT_SCAN, 1, "", 0)])
    firewall.setup()
    assert [e.address for e in firewall.elements()] == [A]


def test_remaining_block_is_cut_to_the_time_left() -> None:
    block = Block(A, 600, Reason.PORT_SCAN, 1, "", NOW + 600 * S)
    assert remaining_block(block, NOW + 100 * S + 1) == block._replace(timeout_s=500)
    assert remaining_block(block, NOW + 600 * S) is None


def test_plan_restore_trusts_the_kernel_when_the_table_exists() -> None:
    saved = GuardState(
        blocks=(
            SavedBlock(A, NOW + 100 * S, Reason.SYN_RATE, 3),
            SavedBlock(B, NOW + 100 * S, Reason.PORT_SCAN, 1),  # lifted while stopped
        )
    )
    kernel = [
        SetElement(A, 600, 90, None),
        SetElement(bytes([10, 0, 0, 1]), None, None, None),  # added by hand, no timeout
        SetElement(bytes([10, 0, 0, 2]), 60, 30, "half-open #2"),
    ]
    plan = plan_restore(kernel, saved, NOW)
    assert plan.readd == ()
    assert plan.active == (
        SavedBlock(A, NOW + 90 * S, Reason.SYN_RATE, 3),
        SavedBlock(bytes([10, 0, 0, 1]), NOW + PERMANENT_NS, Reason.MANUAL, 1),
        SavedBlock(bytes([10, 0, 0, 2]), NOW + 30 * S, Reason.HALF_OPEN, 2),
    )


def test_plan_restore_puts_blocks_back_when_the_table_is_gone() -> None:
    saved = GuardState(
        blocks=(
            SavedBlock(A, NOW + 100 * S, Reason.SYN_RATE, 3),
            SavedBlock(B, NOW - S, Reason.PORT_SCAN, 1),  # ran out while stopped
        )
    )
    plan = plan_restore(None, saved, NOW)
    assert plan.active == (saved.blocks[0],)
    assert [(b.address, b.timeout_s, b.offence) for b in plan.readd] == [(A, 100, 3)]

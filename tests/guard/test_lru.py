"""Tests for wirecap.guard.lru: bounded, expiring per-source state."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.guard.lru import ExpiringLRU


def test_entries_expire_after_ttl_since_last_touch() -> None:
    table: ExpiringLRU[str, int] = ExpiringLRU(10, ttl_ns=100)
    table.put("a", 1, now_ns=0)
    assert table.get("a", 99) == 1
    table.put("a", 2, now_ns=50)  # touching renews it
    assert table.get("a", 149) == 2
    assert table.get("a", 150) is None
    assert "a" not in table


def test_full_table_evicts_least_recently_touched_and_counts() -> None:
    table: ExpiringLRU[int, int] = ExpiringLRU(3, ttl_ns=1000)
    for key in range(3):
        table.put(key, key, now_ns=key)
    table.put(0, 0, now_ns=5)  # 0 is now the most recent
    table.put(9, 9, now_ns=6)
    assert [k for k, _, _ in table.items()] == [2, 0, 9]
    assert table.evicted == 1


def test_expire_pops_only_stale_entries_from_the_front() -> None:
    table: ExpiringLRU[int, None] = ExpiringLRU(10, ttl_ns=100)
    for key in range(5):
        table.put(key, None, now_ns=key * 5)
    assert table.expire(now_ns=110) == 3  # touched at 0, 5, 10
    assert len(table) == 2
    assert table.pop(4) is None and table.pop(3) is None and len(table) == 0


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        ExpiringLRU(0, 1)
    with pytest.raises(ValueError):
        ExpiringLRU(1, 0)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 10)), max_size=200))
def test_size_never_exceeds_the_limit(operations: list[tuple[int, int]]) -> None:
    table: ExpiringLRU[int, int] = ExpiringLRU(8, ttl_ns=30)
    now = 0
    for key, step in operations:
        now += step
        table.put(key, key, now)
        assert len(table) <= 8
        assert all(now - touched < 30 for _, _, touched in table.items())

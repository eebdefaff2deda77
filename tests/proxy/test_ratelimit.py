"""Failure limiter: sliding 60 s window, per client (IPv6 per /64), bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.errors import OptionError
from wirecap.proxy.ratelimit import (
    MAX_LIMIT_PER_MINUTE,
    WINDOW_SECONDS,
    FailureLimiter,
    client_key,
)

T0 = 1_000.0


def test_a_client_is_blocked_at_the_limit_until_its_oldest_failure_is_a_minute_old() -> None:
    limiter = FailureLimiter(3)
    limiter.record_failure("192.0.2.1", T0)
    limiter.record_failure("192.0.2.1", T0 + 10)
    assert limiter.blocked("192.0.2.1", T0 + 10) is None
    limiter.record_failure("192.0.2.1", T0 + 20)
    assert limiter.blocked("192.0.2.1", T0 + 20) == pytest.approx(40.0)
    assert limiter.blocked("192.0.2.1", T0 + 59.5) == pytest.approx(0.5)
    assert limiter.blocked("192.0.2.1", T0 + 60) is None


def test_the_window_slides() -> None:
    limiter = FailureLimiter(3)
    for t in (0, 10, 20):
        limiter.record_failure("192.0.2.1", T0 + t)
    # After the oldest leaves the window, one more failure blocks again, until the
    # then-oldest (T0 + 10) is a minute old.
    limiter.record_failure("192.0.2.1", T0 + 61)
    assert limiter.blocked("192.0.2.1", T0 + 61) == pytest.approx(9.0)


def test_clients_are_counted_separately() -> None:
    limiter = FailureLimiter(1)
    limiter.record_failure("192.0.2.1", T0)
    assert limiter.blocked("192.0.2.1", T0) == pytest.approx(WINDOW_SECONDS)
    assert limiter.blocked("192.0.2.2", T0) is None
    assert limiter.blocked("2001:db8::1", T0) is None


def test_ipv6_clients_are_counted_per_64() -> None:
    limiter = FailureLimiter(2)
    limiter.record_failure("2001:db8:1:2::1", T0)
    limiter.record_failure("2001:db8:1:2:ffff::9", T0)
    assert limiter.blocked("2001:db8:1:2::abcd", T0) is not None
    assert limiter.blocked("2001:db8:1:3::1", T0) is None


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8::1", "2001:db8::/64"),
        ("2001:DB8:0:0:1::", "2001:db8::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("/run/wirecap.sock", "/run/wirecap.sock"),
        ("", ""),
    ],
)
def test_client_key(address: str, key: str) -> None:
    assert client_key(address) == key


def test_the_least_recently_failing_client_is_dropped_first() -> None:
    limiter = FailureLimiter(2, max_tracked=2)
    limiter.record_failure("192.0.2.1", T0)
    limiter.record_failure("192.0.2.2", T0 + 1)
    limiter.record_failure("192.0.2.1", T0 + 2)  # .1 is now the most recent
    limiter.record_failure("192.0.2.3", T0 + 3)  # evicts .2
    assert limiter.tracked == 2
    assert limiter.blocked("192.0.2.1", T0 + 3) is not None
    limiter.record_failure("192.0.2.2", T0 + 4)  # .2 starts over, evicting .1
    assert limiter.blocked("192.0.2.2", T0 + 4) is None
    assert limiter.blocked("192.0.2.1", T0 + 4) is None


def test_quiet_clients_are_forgotten() -> None:
    limiter = FailureLimiter(5)
    for n in range(10):
        limiter.record_failure(f"192.0.2.{n}", T0)
    assert limiter.tracked == 10
    limiter.record_failure("198.51.100.1", T0 + WINDOW_SECONDS)
    assert limiter.tracked == 1


def test_a_clock_step_back_never_blocks_longer_than_a_window() -> None:
    limiter = FailureLimiter(1)
    limiter.record_failure("192.0.2.1", T0)
    assert limiter.blocked("192.0.2.1", T0 - 3600) == WINDOW_SECONDS


@pytest.mark.parametrize(
    ("limit", "max_tracked"), [(0, 10), (-1, 10), (MAX_LIMIT_PER_MINUTE + 1, 10), (10, 0)]
)
def test_bad_settings_are_option_errors(limit: int, max_tracked: int) -> None:
    with pytest.raises(OptionError):
        FailureLimiter(limit, max_tracked=max_tracked)


_events = st.lists(st.tuples(st.integers(0, 40), st.floats(0, 30, allow_nan=False)), max_size=120)


@given(st.integers(1, 5), st.integers(1, 8), _events)
def test_memory_stays_bounded(
    limit: int, max_tracked: int, events: list[tuple[int, float]]
) -> None:
    limiter = FailureLimiter(limit, max_tracked=max_tracked)
    now = T0
    for client, step in events:
        now += step
        limiter.record_failure(f"10.0.0.{client}", now)
        assert limiter.tracked <= max_tracked
        wait = limiter.blocked(f"10.0.0.{client}", now)
        assert wait is None or 0 < wait <= WINDOW_SECONDS


@given(st.integers(1, 5), _events, st.floats(0, 90, allow_nan=False))
def test_matches_a_naive_model_when_nothing_is_evicted(
    limit: int, events: list[tuple[int, float]], probe_delay: float
) -> None:
    limiter = FailureLimiter(limit, max_tracked=1000)
    failures: dict[str, list[float]] = {}
    now = T0
    for client, step in events:
        now += step
        address = f"10.0.0.{client % 6}"
        limiter.record_failure(address, now)
        failures.setdefault(address, []).append(now)
    probe = now + probe_delay
    for address, times in failures.items():
        # Blocked iff `limit` failures fall within the minute before `probe`.
        expected = None
        if len(times) >= limit and times[-limit] + WINDOW_SECONDS > probe:
            expected = times[-limit] + WINDOW_SECONDS - probe
        got = limiter.blocked(address, probe)
        if expected is None:
            assert got is None
        else:
            assert got == pytest.approx(expected)

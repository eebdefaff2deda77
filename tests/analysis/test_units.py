"""How durations, times and sizes are written."""

from __future__ import annotations

from wirecap.analysis.units import format_bytes, format_ms, format_time


def test_milliseconds_keep_loopback_precision() -> None:
    assert format_ms(43_000) == "0.043 ms"
    assert format_ms(999_999) == "1.000 ms"
    assert format_ms(1_000_000) == "1.0 ms"
    assert format_ms(5_005_200_000) == "5,005.2 ms"
    assert format_ms(-2_000_000) == "-2.0 ms"


def test_times_are_seconds_with_microseconds() -> None:
    assert format_time(0) == "0.000000 s"
    assert format_time(5_048_160_123) == "5.048160 s"


def test_bytes() -> None:
    assert format_bytes(0) == "0 B"
    assert format_bytes(1_234_567) == "1,234,567 B"

"""How the analysis writes durations, times and sizes for people: one place, one style."""

from __future__ import annotations

from typing import Final

__all__ = ["format_bytes", "format_ms", "format_time"]

_NS_PER_MS: Final = 1_000_000
_NS_PER_S: Final = 1_000_000_000


def format_ms(ns: int) -> str:
    """A duration in milliseconds: three decimals below 1 ms (loopback RTTs), else one."""
    if abs(ns) < _NS_PER_MS:
        return f"{ns / _NS_PER_MS:.3f} ms"
    return f"{ns / _NS_PER_MS:,.1f} ms"


def format_time(ns: int) -> str:
    """A time since the capture's first packet, in seconds with microseconds, as Wireshark."""
    return f"{ns / _NS_PER_S:.6f} s"


def format_bytes(count: int) -> str:
    return f"{count:,} B"

"""A bounded map whose entries expire when left untouched: all per-source state lives in one.

tcpcap kept every source and every port it ever saw, so a long scan or a spoofed
flood grew its memory without end. Here each table has a named entry limit and a
time to live: entries are kept in the order they were last touched, so the
oldest sit at the front and expiry pops from there, O(1) per entry removed; when
the table is full the least recently touched entry is evicted and counted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["ExpiringLRU"]

K = TypeVar("K")
V = TypeVar("V")


class ExpiringLRU(Generic[K, V]):
    """At most ``max_entries`` entries, each forgotten ``ttl_ns`` after its last touch."""

    __slots__ = ("_entries", "evicted", "max_entries", "ttl_ns")

    def __init__(self, max_entries: int, ttl_ns: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries {max_entries} must be at least 1")
        if ttl_ns < 1:
            raise ValueError(f"ttl_ns {ttl_ns} must be positive")
        self.max_entries = max_entries
        self.ttl_ns = ttl_ns
        #: Entries pushed out by the size limit before they expired.
        self.evicted = 0
        self._entries: OrderedDict[K, tuple[int, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K, now_ns: int) -> V | None:
        """The live value of ``key``, or None (an expired entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now_ns - entry[0] >= self.ttl_ns:
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V, now_ns: int) -> None:
        """Store ``value`` as touched at ``now_ns``; expire and evict to stay in bounds."""
        entries = self._entries
        entries[key] = (now_ns, value)
        entries.move_to_end(key)
        self.expire(now_ns)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
            self.evicted += 1

    def pop(self, key: K) -> V | None:
        entry = self._entries.pop(key, None)
        return None if entry is None else entry[1]

    def expire(self, now_ns: int) -> int:
        """Drop every entry untouched for ``ttl_ns``; how many were dropped."""
        entries = self._entries
        cutoff = now_ns - self.ttl_ns
        dropped = 0
        while entries:
            key, (touched, _) = next(iter(entries.items()))
            if touched > cutoff:
                break
            del entries[key]
            dropped += 1
        return dropped

    def items(self) -> Iterator[tuple[K, V, int]]:
        """(key, value, last touch) from least to most recently touched."""
        for key, (touched, value) in list(self._entries.items()):
            yield key, value, touched

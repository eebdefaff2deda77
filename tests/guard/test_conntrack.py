"""Tests for wirecap.guard.conntrack: half-open handshakes per source.

Reading the real table is tested end to end in test_service.py (an attacker whose
ACKs are dropped gets blocked for its SYN_RECV entries).
"""

from __future__ import annotations

from wirecap.guard.conntrack import TCP_CONNTRACK_SYN_RECV, count_half_open

LOCAL = frozenset({bytes([10, 0, 0, 1])})
A, B = bytes([198, 51, 100, 7]), bytes([198, 51, 100, 8])
ESTABLISHED = 3


def test_counts_inbound_syn_recv_per_remote_source() -> None:
    entries = [
        (A, bytes([10, 0, 0, 1]), TCP_CONNTRACK_SYN_RECV),
        (A, bytes([10, 0, 0, 1]), TCP_CONNTRACK_SYN_RECV),
        (A, bytes([10, 0, 0, 1]), ESTABLISHED),
        (B, bytes([10, 0, 0, 1]), TCP_CONNTRACK_SYN_RECV),
        (B, bytes([203, 0, 113, 1]), TCP_CONNTRACK_SYN_RECV),  # forwarded, not to us
        (bytes([10, 0, 0, 1]), A, TCP_CONNTRACK_SYN_RECV),  # our own outbound
    ]
    assert count_half_open(entries, LOCAL) == {A: 2, B: 1}
    assert count_half_open([], LOCAL) == {}

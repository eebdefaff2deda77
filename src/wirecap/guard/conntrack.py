"""SHELL: half-open handshakes per source, read from the kernel's conntrack table.

A half-open handshake is a connection conntrack has in TCP state SYN_RECV: the
host answered a SYN with a SYN-ACK and the final ACK has not come. A capture of
SYNs alone cannot tell that; conntrack can. Conntrack only tracks a network
namespace's traffic once some rule needs it, which is why the guard's table gets
a ``ct state`` rule when this policy is on.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

__all__ = ["TCP_CONNTRACK_SYN_RECV", "count_half_open", "read_half_open"]

#: linux/netfilter/nf_conntrack_tcp.h: enum tcp_conntrack.
TCP_CONNTRACK_SYN_RECV = 2


def count_half_open(
    entries: Iterable[tuple[bytes, bytes, int]], local: frozenset[bytes]
) -> dict[bytes, int]:
    """Per remote source, its inbound connections in SYN_RECV.

    ``entries`` are (original source, original destination, TCP state): the original
    direction is the one of the first packet, so inbound ones go to a local address.
    """
    counts: dict[bytes, int] = {}
    for src, dst, state in entries:
        if state == TCP_CONNTRACK_SYN_RECV and dst in local and src not in local:
            counts[src] = counts.get(src, 0) + 1
    return counts


def _entries() -> Iterable[tuple[bytes, bytes, int]]:
    from pyroute2 import Conntrack
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    for family in (socket.AF_INET, socket.AF_INET6):
        ct = Conntrack()
        try:
            selector = NFCTAttrTuple(family=family, proto=socket.IPPROTO_TCP)
            for entry in ct.dump_entries(tuple_orig=selector):
                info = entry.protoinfo
                orig = entry.tuple_orig
                if info is None or orig.saddr is None or orig.daddr is None:
                    continue
                yield (
                    socket.inet_pton(family, orig.saddr),
                    socket.inet_pton(family, orig.daddr),
                    int(info.state),
                )
        finally:
            ct.close()


def read_half_open(local: frozenset[bytes]) -> dict[bytes, int]:
    """Half-open inbound handshakes per remote source, now (blocking; a thread's job)."""
    return count_half_open(_entries(), local)

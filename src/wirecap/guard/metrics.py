"""Prometheus metrics of the guard, in a registry the caller owns (no global state).

With ``tcpcap=True`` tcpcap's two counters are exported beside these under their
own names, with help texts that say what they count (tcpcap gave both the same
text). Their meaning follows wirecap's: ``tcpcap_processed_conns_total`` counts
inbound SYNs (as tcpcap did, retransmissions included) and
``tcpcap_processed_blocks_total`` counts blocks, each address once per block
(tcpcap counted every SYN a blocked scanner sent after its block).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["GuardMetrics"]


class GuardMetrics:
    def __init__(self, registry: CollectorRegistry, *, tcpcap: bool = False) -> None:
        self.registry = registry
        self.syn = Counter(
            "wirecap_guard_syn",
            "Inbound TCP connection attempts seen (SYN set, ACK clear, to an own address), "
            "retransmissions included, by IP version",
            ["family"],
            registry=registry,
        )
        # Children looked up once: labels() takes a lock and a dict lookup per call,
        # and syn_seen runs for every captured SYN.
        self._syn_by_version = {4: self.syn.labels("ipv4"), 6: self.syn.labels("ipv6")}
        self.connections = Counter(
            "wirecap_guard_connections",
            "Distinct inbound connection attempts: SYNs that are not retransmissions of one "
            "seen in the last 75 s",
            registry=registry,
        )
        self.blocks = Counter(
            "wirecap_guard_blocks",
            "Addresses blocked (or, with --dry-run, that would have been), by reason; "
            "an address counts once per block",
            ["reason"],
            registry=registry,
        )
        self.spared = Counter(
            "wirecap_guard_spared",
            "Detections that led to no block because the source is allow-listed or the "
            "block set is full, by reason",
            ["reason"],
            registry=registry,
        )
        self.blocked = Gauge(
            "wirecap_guard_blocked_addresses",
            "Addresses blocked now, as the guard knows them (its kernel sets are compared "
            "every few seconds)",
            registry=registry,
        )
        self.unblocks = Counter(
            "wirecap_guard_unblocks",
            "Blocks that ended: timed out, lifted by `wirecap guard unblock`, or gone from "
            "the kernel set",
            registry=registry,
        )
        self.capture_drops = Counter(
            "wirecap_guard_capture_drops",
            "Packets the capture lost before the guard saw them, by where (kernel: the "
            "socket buffer was full; interface: the driver dropped them)",
            ["where"],
            registry=registry,
        )
        for where in ("kernel", "interface"):
            self.capture_drops.labels(where)
        self.kernel_drops = Counter(
            "wirecap_guard_kernel_drops",
            "Packets nftables dropped, by rule: blocked (from a blocked address) or "
            "syn-limit (SYNs over the per-source kernel limit); read every few seconds",
            ["rule"],
            registry=registry,
        )
        for rule in ("blocked", "syn-limit"):
            self.kernel_drops.labels(rule)
        self.enforcement_errors = Counter(
            "wirecap_guard_enforcement_errors",
            "nft commands that failed (they are retried)",
            registry=registry,
        )
        self.evicted = Counter(
            "wirecap_guard_evicted_sources",
            "Sources whose detection state was dropped because the state table was full",
            registry=registry,
        )
        self.tcpcap_conns: Counter | None = None
        self.tcpcap_blocks: Counter | None = None
        if tcpcap:
            self.tcpcap_conns = Counter(
                "tcpcap_processed_conns",
                "Inbound TCP SYNs seen (tcpcap compatible; same as wirecap_guard_syn_total "
                "summed over families)",
                registry=registry,
            )
            self.tcpcap_blocks = Counter(
                "tcpcap_processed_blocks",
                "Addresses blocked (tcpcap compatible; each address once per block)",
                registry=registry,
            )

    def syn_seen(self, version: int, *, new: bool) -> None:
        self.syns_seen(v4=int(version == 4), v6=int(version == 6), new=int(new))

    def syns_seen(self, *, v4: int, v6: int, new: int) -> None:
        """Count a batch of SYNs at once: each inc() takes a lock, too dear per packet."""
        if v4:
            self._syn_by_version[4].inc(v4)
        if v6:
            self._syn_by_version[6].inc(v6)
        if new:
            self.connections.inc(new)
        if self.tcpcap_conns is not None and v4 + v6:
            self.tcpcap_conns.inc(v4 + v6)

    def blocked_one(self, reason: str) -> None:
        self.blocks.labels(reason).inc()
        if self.tcpcap_blocks is not None:
            self.tcpcap_blocks.inc()

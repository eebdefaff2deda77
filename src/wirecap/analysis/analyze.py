"""Entry points: events or packets in, a `Report` out; and the one shell that reads a file.

`analyze_events` and `analyze_packets` are pure: they take what a capture decoder
yields (or bare packets and their link type) and return a frozen `Report`.
`analyze_file` is the thin shell around ``read_file``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from wirecap.analysis.facts import connection_facts
from wirecap.analysis.model import Connection, Report
from wirecap.analysis.thresholds import DEFAULT_THRESHOLDS, Thresholds
from wirecap.analysis.tracker import CaptureCounts, RawConnection, Tracker
from wirecap.analysis.verdicts import judge
from wirecap.core.formats.reader import read_file
from wirecap.core.formats.records import Event, Packet

__all__ = ["analyze_events", "analyze_file", "analyze_packets"]


def analyze_events(
    events: Iterable[Event], *, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> Report:
    """Analyze a capture given as its decoder's events (``read_file``, ``CaptureDecoder``).

    Raises:
        FormatError: a packet names an interface no Interface event described.
    """
    tracker = Tracker()
    tracker.feed_events(events)
    return _report(*tracker.finish(), thresholds)


def analyze_packets(
    packets: Iterable[Packet], linktype: int, *, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> Report:
    """Analyze bare packets that all have `linktype` (a LINKTYPE_* number).

    Packets of an unsupported link type are counted, not decoded.
    """
    tracker = Tracker()
    tracker.feed_packets(packets, tracker.declare_linktype(linktype))
    return _report(*tracker.finish(), thresholds)


def analyze_file(
    path: str | os.PathLike[str], *, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> Report:
    """Read a pcap or pcapng file and analyze it.

    Raises:
        DecodeError: the file is not a capture, or is cut or corrupt (message names it).
        OSError: the file cannot be read.
    """
    return analyze_events(read_file(path), thresholds=thresholds)


def _report(counts: CaptureCounts, raws: list[RawConnection], thresholds: Thresholds) -> Report:
    connections = []
    for raw in raws:
        facts = connection_facts(raw, counts.end_ns, thresholds)
        verdict, also = judge(facts, thresholds)
        connections.append(Connection.judged(facts, verdict, also))
    return Report(
        packets=counts.packets,
        linktypes=counts.linktypes,
        start_epoch_ns=counts.start_epoch_ns,
        duration_ns=counts.end_ns,
        tcp_packets=counts.tcp_packets,
        udp_packets=counts.udp_packets,
        icmp_packets=counts.icmp_packets,
        icmp_errors_tied=counts.icmp_errors_tied,
        other_ip_packets=counts.other_ip_packets,
        non_ip_packets=counts.non_ip_packets,
        undecodable_packets=counts.undecodable_packets,
        unsupported_linktype_packets=counts.unsupported_linktype_packets,
        connections=tuple(connections),
        thresholds=thresholds,
    )

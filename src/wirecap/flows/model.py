"""The values flow accounting passes around: tuples, counters, records (all frozen).

A `FlowRecord` is what every sink receives: one per NEW, per rate-limited
update and per DESTROY of a conntrack entry. It carries both tuples, so a NAT
translation is visible (the reply tuple of a masqueraded flow names the
translated address), which conntracct's eBPF events never had.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "PROTO_NAMES",
    "Counters",
    "Event",
    "FlowRecord",
    "FlowTuple",
    "TcpState",
    "format_time",
    "proto_name",
]

#: conntracct's names (its `proto` tag); other numbers print as `unknown`, except
#: ICMPv6, which conntracct also called unknown and which deserves its name.
PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 33: "dccp", 47: "gre", 58: "icmpv6", 132: "sctp"}


def proto_name(number: int) -> str:
    return PROTO_NAMES.get(number, "unknown")


class TcpState(enum.IntEnum):
    """enum tcp_conntrack (include/uapi/linux/netfilter/nf_conntrack_tcp.h)."""

    NONE = 0
    SYN_SENT = 1
    SYN_RECV = 2
    ESTABLISHED = 3
    FIN_WAIT = 4
    CLOSE_WAIT = 5
    LAST_ACK = 6
    TIME_WAIT = 7
    CLOSE = 8
    SYN_SENT2 = 9


class Event(enum.Enum):
    NEW = "new"
    UPDATE = "update"
    DESTROY = "destroy"


@dataclass(frozen=True, slots=True)
class Counters:
    packets: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class FlowTuple:
    """One direction of a conntrack entry; ports 0 for protocols without them."""

    src: str
    dst: str
    proto: int
    sport: int = 0
    dport: int = 0
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None
    zone: int = 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "src": self.src,
            "dst": self.dst,
            "sport": self.sport,
            "dport": self.dport,
        }
        if self.icmp_type is not None:
            out["icmp_type"] = self.icmp_type
            out["icmp_code"] = self.icmp_code
            out["icmp_id"] = self.icmp_id
        return out


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One accounting record of one flow.

    ``flow_id`` is the kernel's CTA_ID, stable for the flow's lifetime but
    reused afterwards; (``netns``, ``flow_id``, ``start_ns``) names one flow.
    ``time_ns`` is when the counters were read (wall clock, ns). ``start_ns``
    and ``stop_ns`` come from the kernel's timestamp extension and are None
    when ``nf_conntrack_timestamp`` was off as the flow began. ``complete`` is
    False for a DESTROY the kernel's event was lost for (found gone in a dump):
    its counters are the last ones read, not the final ones.
    """

    event: Event
    flow_id: int
    time_ns: int
    start_ns: int | None
    stop_ns: int | None
    orig: FlowTuple
    reply: FlowTuple | None
    tcp_state: TcpState | None
    zone: int
    mark: int
    counters_orig: Counters
    counters_reply: Counters
    netns: int
    netns_name: str = ""
    complete: bool = True

    @property
    def proto(self) -> int:
        return self.orig.proto

    @property
    def packets_total(self) -> int:
        return self.counters_orig.packets + self.counters_reply.packets

    @property
    def bytes_total(self) -> int:
        return self.counters_orig.bytes + self.counters_reply.bytes

    def as_json(self) -> dict[str, Any]:
        """The stdout/file form: human timestamps (RFC 3339, UTC) plus raw ns."""
        out: dict[str, Any] = {
            "time": format_time(self.time_ns),
            "event": self.event.value,
            "flow_id": self.flow_id,
            "start": format_time(self.start_ns) if self.start_ns else None,
            "stop": format_time(self.stop_ns) if self.stop_ns else None,
            "proto": proto_name(self.proto),
            "proto_num": self.proto,
            "orig": self.orig.as_dict(),
            "reply": self.reply.as_dict() if self.reply else None,
            "tcp_state": self.tcp_state.name if self.tcp_state is not None else None,
            "zone": self.zone,
            "mark": self.mark,
            "packets_orig": self.counters_orig.packets,
            "bytes_orig": self.counters_orig.bytes,
            "packets_ret": self.counters_reply.packets,
            "bytes_ret": self.counters_reply.bytes,
            "netns": self.netns,
        }
        if self.netns_name:
            out["netns_name"] = self.netns_name
        if not self.complete:
            out["complete"] = False
        out["time_ns"] = self.time_ns
        out["start_ns"] = self.start_ns
        out["stop_ns"] = self.stop_ns
        return out

    def json_line(self) -> str:
        return json.dumps(self.as_json(), separators=(",", ":")) + "\n"


def format_time(ns: int) -> str:
    """RFC 3339 UTC with microseconds, e.g. 2026-11-22T18:40:00.123456Z."""
    moment = datetime.fromtimestamp(ns // 1000 / 1e6, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

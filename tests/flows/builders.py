"""Build ctnetlink messages byte by byte, as the kernel lays them out (for tests)."""

from __future__ import annotations

import ipaddress
import struct

from wirecap.flows.model import Counters, FlowTuple
from wirecap.flows.netlink import (
    CTA_COUNTERS_BYTES,
    CTA_COUNTERS_ORIG,
    CTA_COUNTERS_PACKETS,
    CTA_COUNTERS_REPLY,
    CTA_ID,
    CTA_IP_V4_DST,
    CTA_IP_V4_SRC,
    CTA_IP_V6_DST,
    CTA_IP_V6_SRC,
    CTA_MARK,
    CTA_PROTO_DST_PORT,
    CTA_PROTO_NUM,
    CTA_PROTO_SRC_PORT,
    CTA_PROTOINFO,
    CTA_PROTOINFO_TCP,
    CTA_PROTOINFO_TCP_STATE,
    CTA_STATUS,
    CTA_TIMESTAMP,
    CTA_TIMESTAMP_EVENT,
    CTA_TIMESTAMP_START,
    CTA_TIMESTAMP_STOP,
    CTA_TUPLE_IP,
    CTA_TUPLE_ORIG,
    CTA_TUPLE_PROTO,
    CTA_TUPLE_REPLY,
    CTA_ZONE,
    IPCTNL_MSG_CT_DELETE,
    IPCTNL_MSG_CT_NEW,
    NFNL_SUBSYS_CTNETLINK,
    NLM_F_CREATE,
    NLM_F_EXCL,
    NLM_F_MULTI,
    encode_attribute,
    encode_message,
)

attr = encode_attribute


def tuple_attr(kind: int, t: FlowTuple) -> bytes:
    src, dst = ipaddress.ip_address(t.src), ipaddress.ip_address(t.dst)
    v6 = src.version == 6
    ip = attr(CTA_IP_V6_SRC if v6 else CTA_IP_V4_SRC, src.packed) + attr(
        CTA_IP_V6_DST if v6 else CTA_IP_V4_DST, dst.packed
    )
    proto = (
        attr(CTA_PROTO_NUM, bytes([t.proto]))
        + attr(CTA_PROTO_SRC_PORT, struct.pack(">H", t.sport))
        + attr(CTA_PROTO_DST_PORT, struct.pack(">H", t.dport))
    )
    return attr(
        kind,
        attr(CTA_TUPLE_IP, ip, nested=True) + attr(CTA_TUPLE_PROTO, proto, nested=True),
        nested=True,
    )


def counters_attr(kind: int, c: Counters) -> bytes:
    return attr(
        kind,
        attr(CTA_COUNTERS_PACKETS, struct.pack(">Q", c.packets))
        + attr(CTA_COUNTERS_BYTES, struct.pack(">Q", c.bytes)),
        nested=True,
    )


def conntrack_message(
    command: str,
    ct_id: int,
    orig: FlowTuple,
    *,
    reply: FlowTuple | None = None,
    counters: tuple[Counters, Counters] | None = None,
    start_ns: int | None = None,
    stop_ns: int | None = None,
    event_ns: int | None = None,
    tcp_state: int | None = None,
    mark: int | None = None,
    zone: int | None = None,
    status: int = 8,
    seq: int = 0,
    extra: bytes = b"",
) -> bytes:
    """``command``: new, update, destroy or dump."""
    body = struct.pack("=BBH", 2, 0, 0)
    body += tuple_attr(CTA_TUPLE_ORIG, orig)
    if reply is None:
        reply = FlowTuple(orig.dst, orig.src, orig.proto, orig.dport, orig.sport)
    body += tuple_attr(CTA_TUPLE_REPLY, reply)
    body += attr(CTA_STATUS, struct.pack(">I", status))
    if tcp_state is not None:
        inner = attr(CTA_PROTOINFO_TCP_STATE, bytes([tcp_state]))
        body += attr(CTA_PROTOINFO, attr(CTA_PROTOINFO_TCP, inner, nested=True), nested=True)
    if mark is not None:
        body += attr(CTA_MARK, struct.pack(">I", mark))
    if counters is not None:
        body += counters_attr(CTA_COUNTERS_ORIG, counters[0])
        body += counters_attr(CTA_COUNTERS_REPLY, counters[1])
    body += attr(CTA_ID, struct.pack(">I", ct_id))
    if zone is not None:
        body += attr(CTA_ZONE, struct.pack(">H", zone))
    if start_ns is not None or stop_ns is not None:
        stamps = b""
        if start_ns is not None:
            stamps += attr(CTA_TIMESTAMP_START, struct.pack(">Q", start_ns))
        if stop_ns is not None:
            stamps += attr(CTA_TIMESTAMP_STOP, struct.pack(">Q", stop_ns))
        body += attr(CTA_TIMESTAMP, stamps, nested=True)
    if event_ns is not None:
        body += attr(CTA_TIMESTAMP_EVENT, struct.pack(">Q", event_ns))
    body += extra
    flags = {"new": NLM_F_CREATE | NLM_F_EXCL, "update": 0, "destroy": 0, "dump": NLM_F_MULTI}
    command_number = IPCTNL_MSG_CT_DELETE if command == "destroy" else IPCTNL_MSG_CT_NEW
    msg_type = (NFNL_SUBSYS_CTNETLINK << 8) | command_number
    return encode_message(msg_type, flags[command], seq, body)

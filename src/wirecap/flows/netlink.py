"""ctnetlink messages, pure bytes in and out: conntrack events and table dumps.

A netlink datagram holds one or more messages, each a 16-byte `nlmsghdr`
(netlink(7)) followed, for the netfilter family, by a 4-byte `nfgenmsg` and a
list of attributes (`struct nlattr`: u16 length, u16 type, value padded to 4
bytes; `NLA_F_NESTED` marks attributes holding attributes). The attribute
numbers are the kernel's UAPI `linux/netfilter/nfnetlink_conntrack.h`.

Which message is which (the kernel's `ctnetlink_conntrack_event` and
reference/conntracct-and-tcpcap.md §2.1):

- ``IPCTNL_MSG_CT_NEW`` with ``NLM_F_CREATE|NLM_F_EXCL`` is a NEW event, without
  them an UPDATE (a state change: status bits, TCP state, mark; never counters);
- ``IPCTNL_MSG_CT_DELETE`` is a DESTROY, the only event carrying the counters and
  the start/stop timestamps;
- a dump reply (``NLM_F_MULTI``) carries counters and the start timestamp.

Integers inside attributes are big-endian (network order); the netlink header
is in host order. Unknown attributes are skipped: newer kernels add some
(``CTA_TIMESTAMP_EVENT`` came in 2024) and tolerate nothing else. A message
that does not parse is reported as `Undecoded` with its reason, never raised,
so one bad message costs one count, not the listener.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from wirecap.flows.model import Counters, FlowTuple, TcpState

__all__ = [
    "CTNETLINK_GROUPS",
    "GROUP_DESTROY",
    "GROUP_NEW",
    "GROUP_UPDATE",
    "MAX_MESSAGE_LEN",
    "MAX_TUPLE_CACHE",
    "NLMSG_HEADER_LEN",
    "Conntrack",
    "Done",
    "Kind",
    "NetlinkError",
    "Overrun",
    "Undecoded",
    "decode_datagram",
    "encode_attribute",
    "encode_dump_request",
    "encode_message",
]

NLMSG_HEADER_LEN = 16
NFGEN_HEADER_LEN = 4
_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")

#: A conntrack message is a few hundred bytes (tuples, counters, timestamps,
#: protoinfo, labels). 64 KiB is the most a u16 attribute length can describe
#: plus headers; a message claiming more is garbage, not a big flow.
MAX_MESSAGE_LEN = 65536 + NLMSG_HEADER_LEN

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP = 0x300
NLM_F_CREATE = 0x400
NLM_F_EXCL = 0x200
NLA_F_NESTED = 0x8000
NLA_F_NET_BYTEORDER = 0x4000
NLA_TYPE_MASK = 0x3FFF

#: <sys/socket.h>: no address family, i.e. IPv4 and IPv6 together.
AF_UNSPEC = 0
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2

#: Legacy bind() group masks: NF_NETLINK_CONNTRACK_NEW, _UPDATE, _DESTROY.
GROUP_NEW, GROUP_UPDATE, GROUP_DESTROY = 0x1, 0x2, 0x4
CTNETLINK_GROUPS = GROUP_NEW | GROUP_UPDATE | GROUP_DESTROY

# enum ctattr_type
CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_STATUS = 3
CTA_PROTOINFO = 4
CTA_TIMEOUT = 7
CTA_MARK = 8
CTA_COUNTERS_ORIG = 9
CTA_COUNTERS_REPLY = 10
CTA_ID = 12
CTA_ZONE = 18
CTA_TIMESTAMP = 20
CTA_TIMESTAMP_EVENT = 27
# enum ctattr_tuple / ctattr_ip / ctattr_l4proto
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_TUPLE_ZONE = 3
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_PROTO_ICMP_ID = 4
CTA_PROTO_ICMP_TYPE = 5
CTA_PROTO_ICMP_CODE = 6
CTA_PROTO_ICMPV6_ID = 7
CTA_PROTO_ICMPV6_TYPE = 8
CTA_PROTO_ICMPV6_CODE = 9
# enum ctattr_protoinfo / ctattr_protoinfo_tcp
CTA_PROTOINFO_TCP = 1
CTA_PROTOINFO_TCP_STATE = 1
# enum ctattr_counters: 64-bit values, their legacy 32-bit forms, and padding.
CTA_COUNTERS_PACKETS = 1
CTA_COUNTERS_BYTES = 2
CTA_COUNTERS32_PACKETS = 3
CTA_COUNTERS32_BYTES = 4
# enum ctattr_tstamp
CTA_TIMESTAMP_START = 1
CTA_TIMESTAMP_STOP = 2


class Kind(enum.Enum):
    NEW = "new"
    UPDATE = "update"
    DESTROY = "destroy"
    DUMP = "dump"


@dataclass(frozen=True, slots=True)
class Conntrack:
    """One conntrack entry as a message describes it; None where it said nothing."""

    kind: Kind
    id: int
    orig: FlowTuple
    reply: FlowTuple | None
    status: int | None
    tcp_state: TcpState | None
    zone: int
    mark: int | None
    timeout: int | None
    counters_orig: Counters | None
    counters_reply: Counters | None
    start_ns: int | None
    stop_ns: int | None
    #: CTA_TIMESTAMP_EVENT: when the kernel raised the event (wall clock, ns).
    event_ns: int | None


@dataclass(frozen=True, slots=True)
class Done:
    """The end of a dump (NLMSG_DONE)."""

    seq: int


@dataclass(frozen=True, slots=True)
class NetlinkError:
    """An NLMSG_ERROR: ``errno`` 0 is an acknowledgement."""

    seq: int
    errno: int


@dataclass(frozen=True, slots=True)
class Overrun:
    """NLMSG_OVERRUN: the kernel lost data for this socket."""


@dataclass(frozen=True, slots=True)
class Undecoded:
    """A message that could not be decoded; counted and skipped."""

    reason: str


Message = Conntrack | Done | NetlinkError | Overrun | Undecoded


class _Malformed(Exception):
    pass


def _attributes(data: bytes) -> list[tuple[int, bytes]]:
    """(type, value) for each attribute; raises _Malformed on a bad length.

    The NLA_F_NESTED and NLA_F_NET_BYTEORDER flags are masked off: old kernels
    did not set NESTED on every nest, so the schema, not the flag, decides.

    A list, not a generator, and bytes slices, not memoryviews: this runs for
    every attribute of every event and both are measurably cheaper here.
    """
    out = []
    offset = 0
    end = len(data)
    unpack = _NLATTR.unpack_from
    while offset + 4 <= end:
        length, kind = unpack(data, offset)
        if length < 4 or offset + length > end:
            raise _Malformed(f"attribute length {length} at offset {offset}")
        out.append((kind & NLA_TYPE_MASK, data[offset + 4 : offset + length]))
        offset += (length + 3) & ~3
    if offset < end:
        raise _Malformed(f"{end - offset} bytes after the last attribute")
    return out


def _be(value: bytes, size: int) -> int:
    if len(value) != size:
        raise _Malformed(f"integer attribute of {len(value)} bytes, expected {size}")
    return int.from_bytes(value, "big")


#: Decoded tuples by their bytes: a flow's tuples repeat in its NEW, UPDATEs,
#: dump entries and DESTROY. Cleared when full; 64 Ki entries ≈ 20 MB at most.
MAX_TUPLE_CACHE = 65536
_tuple_cache: dict[bytes, FlowTuple] = {}


def _tuple(value: bytes) -> FlowTuple:
    cached = _tuple_cache.get(value)
    if cached is not None:
        return cached
    decoded = _decode_tuple(value)
    if len(_tuple_cache) >= MAX_TUPLE_CACHE:
        _tuple_cache.clear()
    _tuple_cache[value] = decoded
    return decoded


def _decode_tuple(value: bytes) -> FlowTuple:
    src = dst = ""
    proto = 0
    sport = dport = 0
    icmp_type = icmp_code = icmp_id = None
    zone = 0
    for kind, inner in _attributes(value):
        if kind == CTA_TUPLE_IP:
            for ip_kind, raw in _attributes(inner):
                if ip_kind in (CTA_IP_V4_SRC, CTA_IP_V4_DST):
                    if len(raw) != 4:
                        raise _Malformed("IPv4 address not 4 bytes")
                    text = f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"
                elif ip_kind in (CTA_IP_V6_SRC, CTA_IP_V6_DST):
                    if len(raw) != 16:
                        raise _Malformed("IPv6 address not 16 bytes")
                    text = str(ipaddress.IPv6Address(raw))
                else:
                    continue
                if ip_kind in (CTA_IP_V4_SRC, CTA_IP_V6_SRC):
                    src = text
                else:
                    dst = text
        elif kind == CTA_TUPLE_PROTO:
            for p_kind, raw in _attributes(inner):
                if p_kind == CTA_PROTO_NUM:
                    proto = _be(raw, 1)
                elif p_kind == CTA_PROTO_SRC_PORT:
                    sport = _be(raw, 2)
                elif p_kind == CTA_PROTO_DST_PORT:
                    dport = _be(raw, 2)
                elif p_kind in (CTA_PROTO_ICMP_ID, CTA_PROTO_ICMPV6_ID):
                    icmp_id = _be(raw, 2)
                elif p_kind in (CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMPV6_TYPE):
                    icmp_type = _be(raw, 1)
                elif p_kind in (CTA_PROTO_ICMP_CODE, CTA_PROTO_ICMPV6_CODE):
                    icmp_code = _be(raw, 1)
        elif kind == CTA_TUPLE_ZONE:
            zone = _be(inner, 2)
    if not src or not dst:
        raise _Malformed("tuple without addresses")
    return FlowTuple(
        src=src,
        dst=dst,
        proto=proto,
        sport=sport,
        dport=dport,
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        icmp_id=icmp_id,
        zone=zone,
    )


def _counters(value: bytes) -> Counters:
    packets = octets = 0
    for kind, raw in _attributes(value):
        if kind == CTA_COUNTERS_PACKETS:
            packets = _be(raw, 8)
        elif kind == CTA_COUNTERS_BYTES:
            octets = _be(raw, 8)
        elif kind == CTA_COUNTERS32_PACKETS:
            packets = _be(raw, 4)
        elif kind == CTA_COUNTERS32_BYTES:
            octets = _be(raw, 4)
        # CTA_COUNTERS_PAD and anything newer: ignored.
    return Counters(packets, octets)


def _tcp_state(value: bytes) -> TcpState | None:
    for kind, inner in _attributes(value):
        if kind != CTA_PROTOINFO_TCP:
            continue
        # Since 5.11 DESTROY carries PROTOINFO and the flag sub-attributes may be
        # absent (ti-mo/conntrack 7b6dc48); only the state is needed.
        for t_kind, raw in _attributes(inner):
            if t_kind == CTA_PROTOINFO_TCP_STATE:
                number = _be(raw, 1)
                try:
                    return TcpState(number)
                except ValueError:
                    raise _Malformed(f"TCP state {number}") from None
    return None


def _conntrack(kind: Kind, body: bytes) -> Conntrack:
    orig: FlowTuple | None = None
    reply: FlowTuple | None = None
    status = timeout = mark = None
    ct_id: int | None = None
    tcp_state: TcpState | None = None
    zone = 0
    counters_orig = counters_reply = None
    start_ns = stop_ns = event_ns = None
    for attr, value in _attributes(body):
        if attr == CTA_TUPLE_ORIG:
            orig = _tuple(value)
        elif attr == CTA_TUPLE_REPLY:
            reply = _tuple(value)
        elif attr == CTA_STATUS:
            status = _be(value, 4)
        elif attr == CTA_PROTOINFO:
            tcp_state = _tcp_state(value)
        elif attr == CTA_TIMEOUT:
            timeout = _be(value, 4)
        elif attr == CTA_MARK:
            mark = _be(value, 4)
        elif attr == CTA_COUNTERS_ORIG:
            counters_orig = _counters(value)
        elif attr == CTA_COUNTERS_REPLY:
            counters_reply = _counters(value)
        elif attr == CTA_ID:
            ct_id = _be(value, 4)
        elif attr == CTA_ZONE:
            zone = _be(value, 2)
        elif attr == CTA_TIMESTAMP:
            for t_kind, raw in _attributes(value):
                if t_kind == CTA_TIMESTAMP_START:
                    start_ns = _be(raw, 8)
                elif t_kind == CTA_TIMESTAMP_STOP:
                    stop_ns = _be(raw, 8)
        elif attr == CTA_TIMESTAMP_EVENT:
            event_ns = _be(value, 8)
    if orig is None:
        raise _Malformed("no original tuple")
    if ct_id is None:
        raise _Malformed("no conntrack id")
    return Conntrack(
        kind=kind,
        id=ct_id,
        orig=orig,
        reply=reply,
        status=status,
        tcp_state=tcp_state,
        zone=zone or orig.zone,
        mark=mark,
        timeout=timeout,
        counters_orig=counters_orig,
        counters_reply=counters_reply,
        start_ns=start_ns or None,
        stop_ns=stop_ns or None,
        event_ns=event_ns or None,
    )


def _message(msg_type: int, flags: int, seq: int, body: bytes) -> Message | None:
    if msg_type == NLMSG_DONE:
        return Done(seq)
    if msg_type == NLMSG_ERROR:
        if len(body) < 4:
            return Undecoded("NLMSG_ERROR shorter than its errno")
        return NetlinkError(seq, -struct.unpack_from("=i", body)[0])
    if msg_type == NLMSG_OVERRUN:
        return Overrun()
    if msg_type == NLMSG_NOOP:
        return None
    subsys, command = msg_type >> 8, msg_type & 0xFF
    if subsys != NFNL_SUBSYS_CTNETLINK:
        return Undecoded(f"netlink message type {msg_type:#x} is not ctnetlink")
    if len(body) < NFGEN_HEADER_LEN:
        return Undecoded("message shorter than nfgenmsg")
    if command == IPCTNL_MSG_CT_DELETE:
        kind = Kind.DESTROY
    elif command == IPCTNL_MSG_CT_NEW:
        if flags & NLM_F_MULTI:
            kind = Kind.DUMP
        elif flags & (NLM_F_CREATE | NLM_F_EXCL) == NLM_F_CREATE | NLM_F_EXCL:
            kind = Kind.NEW
        else:
            kind = Kind.UPDATE
    else:
        return Undecoded(f"ctnetlink command {command}")
    try:
        return _conntrack(kind, body[NFGEN_HEADER_LEN:])
    except _Malformed as exc:
        return Undecoded(str(exc))


def decode_datagram(data: bytes | memoryview) -> Iterator[Message]:
    """Every message in one received datagram, in order.

    A header whose length runs past the datagram ends the walk with one
    `Undecoded`: nothing after it can be framed.
    """
    view = bytes(data)
    offset = 0
    while offset + NLMSG_HEADER_LEN <= len(view):
        length, msg_type, flags, seq, _pid = _NLMSGHDR.unpack_from(view, offset)
        if length < NLMSG_HEADER_LEN or offset + length > len(view) or length > MAX_MESSAGE_LEN:
            yield Undecoded(f"netlink length {length} at offset {offset}")
            return
        message = _message(msg_type, flags, seq, view[offset + NLMSG_HEADER_LEN : offset + length])
        if message is not None:
            yield message
        offset += (length + 3) & ~3
    if offset < len(view):
        yield Undecoded(f"{len(view) - offset} bytes after the last message")


def encode_attribute(kind: int, value: bytes, *, nested: bool = False) -> bytes:
    """One attribute, padded to 4 bytes (for requests and tests)."""
    header = _NLATTR.pack(_NLATTR.size + len(value), kind | (NLA_F_NESTED if nested else 0))
    padding = b"\0" * ((-len(value)) % 4)
    return header + value + padding


def encode_message(msg_type: int, flags: int, seq: int, body: bytes, *, pid: int = 0) -> bytes:
    """One netlink message (header in host order) around an already encoded body."""
    return _NLMSGHDR.pack(NLMSG_HEADER_LEN + len(body), msg_type, flags, seq, pid) + body


def encode_dump_request(seq: int, family: int = AF_UNSPEC) -> bytes:
    """IPCTNL_MSG_CT_GET with NLM_F_DUMP: the whole table, counters included.

    ``AF_UNSPEC`` asks for IPv4 and IPv6 at once; res_id 0, version NFNETLINK_V0.
    """
    nfgen = struct.pack("=BBH", family, 0, 0)
    msg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
    return encode_message(msg_type, NLM_F_REQUEST | NLM_F_DUMP, seq, nfgen)

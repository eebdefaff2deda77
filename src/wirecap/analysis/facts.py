"""From one connection's packed rows to its facts: one chronological pass per connection.

The pass reads the rows the tracker stored and measures, for each direction: relative
unwrapped sequence and ACK numbers, new data versus retransmissions versus reordering,
the ACK RTT of segments sent once, duplicate ACKs, SACK blocks, zero-window periods,
FIN and RST; for the connection: the handshake, the close, and what happened after
each ICMP error. It keeps per-direction state in two small objects and writes the
time-sequence columns as it goes.

Rules it follows, with their sources:

- Sequence numbers are unwrapped by taking the signed 32-bit difference to the previous
  one (RFC 9293 §3.4 compares them modulo 2**32 the same way), so transfers over 4 GiB
  and ISNs near 2**32 work.
- A data segment is a *retransmission* when it carries bytes already seen, and also when
  it fills a gap later than the out-of-order window after the data above the gap (its
  original was lost before the capture point). Filling a gap within the window is
  *out of order* (reordering), as Wireshark decides.
- ACK RTT samples follow Karn's rule (RFC 6298 §3): a segment whose bytes were ever sent
  again gives no sample. Each advancing ACK gives one sample, from the newest segment it
  covers, which keeps delayed ACKs (RFC 9293 §3.8.6.3) from inflating it.
- A duplicate ACK (RFC 5681 §2) carries no data, no SYN/FIN/RST, the same ACK number and
  window as the previous segment from that side, a non-zero window, and there is data
  outstanding.
- A zero-window probe (RFC 9293 §3.8.6.1) is sent while the peer's window is zero: one
  new byte, or, as Linux does, a bare segment one below the next sequence number. The
  same bare (or one-byte) segment while the window is open is a keepalive (RFC 9293
  §3.8.4). Neither counts as data.
- After an ICMP too-big, resends of earlier data that fit the new MTU are marked as path
  MTU discovery at work (RFC 8201 §5.4), so they are not taken for loss.
- A retransmission is *spurious* when its bytes were already acknowledged when it was
  sent, or when a later ACK from the peer reports them in a D-SACK block (RFC 2883 §4:
  the first SACK block lies below the ACK number, or inside the second block; RFC 3708
  §2 detects spurious retransmissions the same way). Each D-SACK block accounts for one
  duplicate, so it marks one copy of each retransmitted range it covers.
- Windows are scaled only when both SYNs carried the option (RFC 7323 §2.2), never on SYNs,
  with shifts above 14 taken as 14 (§2.3).
"""

from __future__ import annotations

import bisect
import dataclasses
import ipaddress
from array import array
from typing import Final, Literal

from wirecap.analysis.model import (
    Close,
    CloseEvent,
    CloseKind,
    ConnectionFacts,
    Direction,
    Endpoint,
    Handshake,
    IcmpError,
    IcmpKind,
    PacketRef,
    Retransmission,
    RoleSource,
    SackReport,
    Side,
    SpuriousCause,
    TimeSequence,
    ZeroWindow,
)
from wirecap.analysis.thresholds import DEFAULT_MSS_V4, DEFAULT_MSS_V6, Thresholds
from wirecap.analysis.tracker import ROW_WIDTH, IcmpRecord, RawConnection
from wirecap.core.packet import parse_tcp_options

__all__ = ["connection_facts", "icmp_description", "icmp_kind"]

_FIN: Final = 0x01
_SYN: Final = 0x02
_RST: Final = 0x04
_ACK: Final = 0x10
_NO_DUP: Final = _SYN | _FIN | _RST
_M32: Final = 0xFFFFFFFF
_HALF: Final = 1 << 31
#: RFC 7323 §2.3: a receiver uses 14 for any larger shift count.
_MAX_WINDOW_SCALE: Final = 14
_TCP_HEADER: Final = 20
_IP_HEADER: Final = {4: 20, 6: 40}
#: Recent retransmissions a D-SACK block is compared with: copies of the range it
#: starts, or, when it starts none (the receiver's duplicate has other boundaries than
#: the resend, as GSO/GRO cause), the latest resends by overlap. The D-SACK follows its
#: duplicate by about one round trip, so the resend is among the latest; the bound keeps
#: a capture full of D-SACKs and resends of one range linear.
MAX_DSACK_SCAN: Final = 32

_UNREACHABLE_V4: Final = {
    0: "network unreachable",
    1: "host unreachable",
    2: "protocol unreachable",
    3: "port unreachable",
    4: "fragmentation needed",
    5: "source route failed",
    6: "destination network unknown",
    7: "destination host unknown",
    8: "source host isolated",
    9: "network administratively prohibited",
    10: "host administratively prohibited",
    11: "network unreachable for TOS",
    12: "host unreachable for TOS",
    13: "communication administratively prohibited",
    14: "host precedence violation",
    15: "precedence cutoff in effect",
}
_UNREACHABLE_V6: Final = {
    0: "no route to destination",
    1: "communication administratively prohibited",
    2: "beyond scope of source address",
    3: "address unreachable",
    4: "port unreachable",
    5: "source address failed ingress/egress policy",
    6: "reject route to destination",
}
_TIME_EXCEEDED: Final = {0: "exceeded in transit", 1: "fragment reassembly time exceeded"}


def icmp_kind(version: int, icmp_type: int, code: int) -> IcmpKind:
    """Classify an ICMP (``version`` 4) or ICMPv6 (6) error."""
    if version == 4:
        if icmp_type == 3:
            return IcmpKind.FRAGMENTATION_NEEDED if code == 4 else IcmpKind.UNREACHABLE
        return IcmpKind.TIME_EXCEEDED if icmp_type == 11 else IcmpKind.OTHER
    if icmp_type == 1:
        return IcmpKind.UNREACHABLE
    if icmp_type == 2:
        return IcmpKind.PACKET_TOO_BIG
    return IcmpKind.TIME_EXCEEDED if icmp_type == 3 else IcmpKind.OTHER


def icmp_description(version: int, icmp_type: int, code: int) -> str:
    """Words for an ICMP error's type and code (RFC 792, RFC 1812 §5.2.7.1, RFC 4443)."""
    if version == 4:
        if icmp_type == 3:
            return _UNREACHABLE_V4.get(code, f"destination unreachable (code {code})")
        if icmp_type == 11:
            return "TTL " + _TIME_EXCEEDED.get(code, f"exceeded (code {code})")
        other = {4: "source quench", 5: "redirect", 12: "parameter problem"}
    else:
        if icmp_type == 1:
            return _UNREACHABLE_V6.get(code, f"destination unreachable (code {code})")
        if icmp_type == 2:
            return "packet too big"
        if icmp_type == 3:
            return "hop limit " + _TIME_EXCEEDED.get(code, f"exceeded (code {code})")
        other = {4: "parameter problem"}
    return other.get(icmp_type, f"type {icmp_type} code {code}")


class _Stream:
    """The state of one direction during the pass (what one endpoint sends)."""

    __slots__ = (
        "acked",
        "araw",
        "arel",
        "base",
        "covered",
        "data_segments",
        "dsack_used",
        "dsacked",
        "dup_acks",
        "fin",
        "first_data",
        "full_segments",
        "full_threshold",
        "hi",
        "hi_ts",
        "holes",
        "keepalives",
        "largest",
        "last_ack",
        "last_data_num",
        "last_data_ts",
        "last_num",
        "last_ts",
        "last_win",
        "lo",
        "max_window",
        "ooo",
        "packets",
        "payload",
        "pmtu_limit",
        "pmtu_recovering",
        "pmtu_until",
        "probes",
        "q_end",
        "q_flagged",
        "q_head",
        "q_start",
        "q_ts",
        "retx",
        "retx_at",
        "retx_bytes",
        "rst",
        "rtt",
        "sack",
        "scale",
        "send_mss",
        "sraw",
        "srel",
        "unique",
        "units",
        "window_zero",
        "zw",
        "zw_start",
    )

    def __init__(self, send_mss: int, full_threshold: int, scale: int) -> None:
        self.send_mss = send_mss
        self.full_threshold = full_threshold
        self.scale = scale
        self.base: int | None = None
        self.sraw = 0
        self.srel = 0
        self.araw: int | None = None
        self.arel = 0
        self.packets = 0
        self.last_num = 0
        self.last_ts = 0
        self.data_segments = 0
        self.payload = 0
        self.unique = 0
        self.largest = 0
        self.full_segments = 0
        #: Data segments and retransmissions in MSS units: a GSO super-segment of ten
        #: MSS is ten segments on the wire, and a loss rate must count it so.
        self.units = 0
        self.retx_bytes = 0
        self.lo = 0
        self.hi: int | None = None
        self.hi_ts = 0
        self.holes: list[tuple[int, int]] = []
        #: Highest ACK (relative, in this direction's numbering) the peer sent.
        self.acked: int | None = None
        self.covered: PacketRef | None = None
        self.q_start: list[int] = []
        self.q_end: list[int] = []
        self.q_ts: list[int] = []
        self.q_flagged: set[int] = set()
        self.q_head = 0
        self.rtt: list[int] = []
        self.retx: list[Retransmission] = []
        #: Relative sequence number → indices in `retx` of the resends starting there.
        self.retx_at: dict[int, list[int]] = {}
        #: Indices in `retx` a D-SACK block accounted for; `dsacked`: those it made
        #: spurious (they were not already).
        self.dsack_used: set[int] = set()
        self.dsacked: set[int] = set()
        self.ooo: list[PacketRef] = []
        self.probes = 0
        self.keepalives = 0
        #: After an ICMP too-big: the payload that fits, and the sequence number sent by
        #: then; resends of data below it that fit are PMTUD at work (RFC 8201 §5.4).
        self.pmtu_limit = 0
        self.pmtu_until = 0
        #: Between an ICMP too-big and the peer's ACK of everything sent until then:
        #: resends in that episode are path MTU discovery's, reordering-driven ones
        #: included (the resized segments overtake each other).
        self.pmtu_recovering = False
        self.first_data: PacketRef | None = None
        self.last_data_num = 0
        self.last_data_ts = 0
        # What this endpoint sent as ACKs and windows:
        self.last_ack: int | None = None
        self.last_win = -1
        self.dup_acks: list[PacketRef] = []
        self.sack: list[SackReport] = []
        self.window_zero = False
        self.zw_start: PacketRef | None = None
        self.zw: list[tuple[PacketRef, PacketRef]] = []
        self.max_window = 0
        self.fin: PacketRef | None = None
        self.rst: PacketRef | None = None

    def bytes_sent(self) -> int:
        """Payload bytes sent so far: highest relative sequence number reached, minus one."""
        return 0 if self.hi is None else max(0, self.hi - 1)

    def fill(self, a: int, b: int) -> int:
        """Record bytes [a, b) that start below `hi`; return how many were seen before."""
        assert self.hi is not None
        lo, hi = self.lo, self.hi
        new = 0
        if b > hi:
            new += b - hi
            self.hi = b
        top = min(b, hi)
        start = a
        if a < lo:
            below = min(top, lo) - a
            new += below
            if top < lo:
                self.holes.insert(0, (top, lo))
            self.lo = a
            start = lo
        seen = 0
        if start < top:
            hole_bytes = 0
            if self.holes:
                kept: list[tuple[int, int]] = []
                for hole_start, hole_end in self.holes:
                    if hole_end <= start or hole_start >= top:
                        kept.append((hole_start, hole_end))
                        continue
                    overlap_start = max(hole_start, start)
                    overlap_end = min(hole_end, top)
                    hole_bytes += overlap_end - overlap_start
                    if hole_start < overlap_start:
                        kept.append((hole_start, overlap_start))
                    if overlap_end < hole_end:
                        kept.append((overlap_end, hole_end))
                self.holes = kept
            seen = top - start - hole_bytes
            new += hole_bytes
        self.unique += new
        return seen

    def dsack(self, left: int, right: int) -> None:
        """The peer reports bytes [left, right) received twice: mark the copies resent.

        Each retransmission the block covers, starting at its left edge and following
        resends that start where the previous one ended, accounts for one duplicate:
        the newest copy of that range not yet accounted for. A copy already spurious
        (already acknowledged when sent) explains the duplicate by itself.
        """
        used = self.dsack_used
        retx = self.retx
        at = left
        found = False
        while at < right:
            copies = self.retx_at.get(at)
            if not copies:
                break
            # The newest copy not yet accounted for, among the latest few.
            i = next((i for i in reversed(copies[-MAX_DSACK_SCAN:]) if i not in used), -1)
            if i < 0:
                break
            self._account(i)
            found = True
            at = retx[i].seq + retx[i].length
        if found:
            return
        # No resend starts at the left edge: compare with the latest few by overlap.
        claimed: list[tuple[int, int]] = []
        for i in range(len(retx) - 1, max(-1, len(retx) - 1 - MAX_DSACK_SCAN), -1):
            r = retx[i]
            a, b = r.seq, r.seq + r.length
            if b <= left or a >= right or i in used:
                continue
            if any(a < y and x < b for x, y in claimed):
                continue  # an older copy of a range a newer one accounted for
            claimed.append((a, b))
            self._account(i)

    def _account(self, i: int) -> None:
        self.dsack_used.add(i)
        if not self.retx[i].spurious:
            self.dsacked.add(i)

    def flag_resent(self, a: int, b: int) -> None:
        """Karn (RFC 6298 §3): queued segments overlapping [a, b) give no RTT sample."""
        ends = self.q_end
        i = bisect.bisect_right(ends, a, lo=self.q_head)
        starts = self.q_start
        while i < len(ends) and starts[i] < b:
            self.q_flagged.add(i)
            i += 1


class _Pending:
    """An ICMP too-big error waiting to see whether its sender adapted."""

    __slots__ = ("acked", "direction", "fit", "index", "limit", "quoted")

    def __init__(self, index: int, direction: int, quoted: int | None, limit: int) -> None:
        self.index = index
        self.direction = direction
        self.quoted = quoted
        self.limit = limit
        self.fit: PacketRef | None = None
        self.acked: PacketRef | None = None


def _address(packed: bytes) -> str:
    return str(ipaddress.ip_address(packed))


def _roles(rows: array[int]) -> tuple[int, RoleSource]:
    """(direction of the client, how that was decided)."""
    syn_ack_direction: int | None = None
    for i in range(4, len(rows), ROW_WIDTH):
        meta = rows[i]
        if meta & _SYN:
            direction = (meta >> 8) & 1
            if not meta & _ACK:
                return direction, RoleSource.SYN
            if syn_ack_direction is None:
                syn_ack_direction = direction
    if syn_ack_direction is not None:
        return syn_ack_direction ^ 1, RoleSource.SYN_ACK
    return 0, RoleSource.FIRST_PACKET


def _syn_options(
    raw: RawConnection,
) -> tuple[list[int | None], list[int | None], list[bool]]:
    """MSS, window scale and SACK-permitted each direction announced in its first SYN."""
    mss: list[int | None] = [None, None]
    scale: list[int | None] = [None, None]
    sack_ok = [False, False]
    seen = [False, False]
    rows = raw.rows
    for row, option_bytes in raw.options:
        meta = rows[row * ROW_WIDTH + 4]
        if not meta & _SYN:
            continue
        direction = (meta >> 8) & 1
        if seen[direction]:
            continue
        seen[direction] = True
        options = parse_tcp_options(option_bytes)
        mss[direction] = options.mss
        scale[direction] = options.window_scale
        sack_ok[direction] = options.sack_permitted
    return mss, scale, sack_ok


def connection_facts(
    raw: RawConnection, capture_end_ns: int, thresholds: Thresholds
) -> ConnectionFacts:
    """Measure one connection. Never raises for what the packets hold."""
    rows = raw.rows
    src, sport, dst, dport = raw.key
    version: Literal[4, 6] = 4 if len(src) == 4 else 6
    client_dir, roles_from = _roles(rows)
    mss, scale, sack_ok = _syn_options(raw)
    default_mss = DEFAULT_MSS_V4 if version == 4 else DEFAULT_MSS_V6
    both_scale = scale[0] is not None and scale[1] is not None
    streams: list[_Stream] = []
    for d in (0, 1):
        peer_mss = mss[d ^ 1]
        send_mss = peer_mss if peer_mss else default_mss
        shift = min(scale[d] or 0, _MAX_WINDOW_SCALE) if both_scale else 0
        streams.append(_Stream(send_mss, max(1, send_mss - thresholds.full_size_slack), shift))

    # Handshake state (directions, not sides, until the end).
    syn: PacketRef | None = None
    syn_ack: PacketRef | None = None
    hs_ack: PacketRef | None = None
    syns = syn_acks = 0
    hs_rtt: int | None = None
    ooo_window = thresholds.out_of_order_window_ns

    options = raw.options
    option_i = 0
    next_option_row = options[0][0] if options else -1
    icmp_records = raw.icmp
    icmp_i = 0
    next_icmp_row = icmp_records[0].position if icmp_records else -1
    icmp_out: list[tuple[IcmpRecord, int | None]] = []
    pending: list[_Pending] = []
    pending_done: dict[int, _Pending] = {}
    closes: list[tuple[int, int, CloseKind, int, tuple[int, int]]] = []

    series: array[int] = array("q")
    series_extend = series.extend
    row = 0
    num = ts = 0
    it = iter(rows)
    for num, ts, seq, ack, meta in zip(it, it, it, it, it, strict=False):
        while row == next_icmp_row:
            record = icmp_records[icmp_i]
            _icmp_arrived(record, streams, version, pending, icmp_out, len(icmp_out))
            icmp_i += 1
            next_icmp_row = icmp_records[icmp_i].position if icmp_i < len(icmp_records) else -1
        flags = meta & 0xFF
        d = (meta >> 8) & 1
        window = (meta >> 9) & 0xFFFF
        length = meta >> 25
        me = streams[d]
        peer = streams[d ^ 1]
        me.packets += 1
        me.last_num = num
        me.last_ts = ts

        # Relative, unwrapped sequence number.
        if me.base is None:
            me.base = seq if flags & _SYN else (seq - 1) & _M32
            me.sraw = me.base
        rel = me.srel + ((seq - me.sraw + _HALF) & _M32) - _HALF
        me.sraw = seq
        me.srel = rel

        # Relative, unwrapped ACK number (in the peer's numbering).
        arel = -1
        if flags & _ACK:
            if peer.base is None:
                # The peer has not been seen: number its bytes from this ACK.
                peer.base = (ack - 1) & _M32
                peer.sraw = peer.base
            if me.araw is None:
                me.araw = peer.base
            arel = me.arel + ((ack - me.araw + _HALF) & _M32) - _HALF
            me.araw = ack
            me.arel = arel

        # Handshake (RFC 9293 §3.5).
        if flags & _SYN:
            if flags & _ACK:
                if d != client_dir:
                    syn_acks += 1
                    if syn_ack is None:
                        syn_ack = PacketRef(num, ts)
            elif d == client_dir:
                syns += 1
                if syn is None:
                    syn = PacketRef(num, ts)
        elif (
            hs_ack is None
            and syn_ack is not None
            and d == client_dir
            and flags & _ACK
            and not flags & _RST
        ):
            hs_ack = PacketRef(num, ts)
            if syn is not None and syns == 1 and syn_acks == 1:
                hs_rtt = ts - syn.time_ns
                ooo_window = max(hs_rtt, 1)

        # Data, keepalives and zero-window probes.
        hi = me.hi
        nxt = 1 if hi is None else hi  # the next sequence number (1 before any data)
        probe = (
            length <= 1
            and not flags & _NO_DUP
            and (rel == nxt - 1 or (length == 1 and rel == nxt and peer.window_zero))
        )
        if probe:
            if peer.window_zero:
                me.probes += 1
            else:
                me.keepalives += 1
        elif length and not flags & _RST:
            a = rel + ((flags & _SYN) >> 1)
            b = a + length
            me.data_segments += 1
            me.payload += length
            if length > me.largest:
                me.largest = length
            full = length >= me.full_threshold
            if full:
                me.full_segments += 1
            units = (length + me.send_mss - 1) // me.send_mss
            me.units += units
            if me.first_data is None:
                me.first_data = PacketRef(num, ts)
            me.last_data_num = num  # a PacketRef per segment would cost 0.2 µs
            me.last_data_ts = ts
            if hi is None or a >= hi:
                if hi is None:
                    me.lo = a
                elif a > hi:
                    me.holes.append((hi, a))
                me.hi = b
                me.hi_ts = ts
                me.unique += length
                me.covered = None
                if me.pmtu_limit and length > me.pmtu_limit and b > me.pmtu_until:
                    # Still too big after the ICMP (it was already queued below the
                    # capture point): the router drops it too, so its resend is PMTUD's.
                    me.pmtu_until = b
                me.q_start.append(a)
                me.q_end.append(b)
                me.q_ts.append(ts)
            else:
                late = ts - me.hi_ts >= ooo_window
                seen = me.fill(a, b)
                if b > hi:
                    me.hi_ts = ts
                    me.covered = None
                if seen or late:
                    acked = me.acked
                    copies = me.retx_at.get(a)
                    if copies is None:
                        me.retx_at[a] = [len(me.retx)]
                    else:
                        copies.append(len(me.retx))
                    me.retx.append(
                        Retransmission(
                            num,
                            ts,
                            a,
                            length,
                            bool(seen),
                            SpuriousCause.ACKED if acked is not None and b <= acked else None,
                            full,
                            (a < me.pmtu_until or me.pmtu_recovering) and length <= me.pmtu_limit,
                        )
                    )
                    me.retx_bytes += length
                    me.flag_resent(a, b)
                else:
                    me.ooo.append(PacketRef(num, ts))

        # ACKs this side sends: they acknowledge the peer's data.
        if arel >= 0:
            if peer.acked is None or arel > peer.acked:
                peer.acked = arel
                if peer.pmtu_recovering and arel >= peer.pmtu_until:
                    peer.pmtu_recovering = False
                q_end = peer.q_end
                head = peer.q_head
                newest = -1
                while head < len(q_end) and q_end[head] <= arel:
                    newest = head
                    head += 1
                peer.q_head = head
                if newest >= 0 and newest not in peer.q_flagged:
                    peer.rtt.append(ts - peer.q_ts[newest])
            if peer.covered is None and peer.hi is not None and arel >= peer.hi:
                peer.covered = PacketRef(num, ts)
            if (
                not length
                and not flags & _NO_DUP
                and ack == me.last_ack
                and window == me.last_win
                and window
                and peer.hi is not None
                and peer.hi > arel
            ):
                me.dup_acks.append(PacketRef(num, ts))
            me.last_ack = ack
            me.last_win = window

        # Windows this side advertises (RFC 9293 §3.8.6; SYN windows are never scaled).
        scaled = window
        if flags & _SYN:
            if window > me.max_window:
                me.max_window = window
        elif not flags & _RST:
            scaled = window << me.scale
            if scaled > me.max_window:
                me.max_window = scaled
            me.window_zero = window == 0
            if window == 0:
                if me.zw_start is None:
                    me.zw_start = PacketRef(num, ts)
            elif me.zw_start is not None:
                me.zw.append((me.zw_start, PacketRef(num, ts)))
                me.zw_start = None

        # Closing (RFC 9293 §3.6).
        if flags & _FIN and me.fin is None:
            me.fin = PacketRef(num, ts)
            closes.append((num, ts, CloseKind.FIN, d, _sent(streams)))
        if flags & _RST and me.rst is None:
            me.rst = PacketRef(num, ts)
            closes.append((num, ts, CloseKind.RST, d, _sent(streams)))

        # SACK blocks (RFC 2018 §3), in the peer's relative numbering.
        while row == next_option_row:
            if not flags & _SYN and me.araw is not None:
                blocks = parse_tcp_options(options[option_i][1]).sack_blocks
                if blocks:
                    base_raw, base_rel = me.araw, me.arel
                    edges = tuple(
                        (
                            base_rel + ((left - base_raw + _HALF) & _M32) - _HALF,
                            base_rel + ((right - base_raw + _HALF) & _M32) - _HALF,
                        )
                        for left, right in blocks
                    )
                    # D-SACK (RFC 2883 §4): the first block starts below this segment's
                    # ACK number, or lies inside the second block. Linux's
                    # tcp_check_dsack() decides the same way.
                    left, right = edges[0]
                    below_ack = arel >= 0 and left < arel
                    in_second = len(edges) > 1 and edges[1][0] <= left and right <= edges[1][1]
                    dsack = (below_ack or in_second) and left < right
                    me.sack.append(SackReport(num, ts, edges, dsack))
                    if dsack and peer.retx:
                        peer.dsack(left, right)
            option_i += 1
            next_option_row = options[option_i][0] if option_i < len(options) else -1

        if pending:
            _watch(pending, pending_done, d, length, arel, num, ts)

        series_extend((num, ts, d ^ client_dir, rel, length, arel, scaled, flags))
        row += 1

    while icmp_i < len(icmp_records):
        _icmp_arrived(icmp_records[icmp_i], streams, version, pending, icmp_out, len(icmp_out))
        icmp_i += 1
    for item in pending:
        pending_done[item.index] = item

    last_time = max([ts if row else raw.first_time, *(r.time_ns for r in icmp_records)])
    last_packet = max([num if row else raw.first_packet, *(r.packet for r in icmp_records)])
    first = PacketRef(raw.first_packet, raw.first_time)
    last = PacketRef(last_packet, last_time)

    def side_of(direction: int) -> Side:
        return Side.CLIENT if direction == client_dir else Side.SERVER

    directions = [
        _direction(streams[d], side_of(d), mss[d], scale[d], sack_ok[d], last_time) for d in (0, 1)
    ]
    close = Close(
        tuple(
            CloseEvent(
                side_of(d),
                how,
                event_num,
                event_ts,
                sent[client_dir],
                sent[client_dir ^ 1],
            )
            for event_num, event_ts, how, d, sent in closes
        )
    )
    icmp_errors = tuple(
        _icmp_error(record, quoted, side_of(record.direction), pending_done.get(i))
        for i, (record, quoted) in enumerate(icmp_out)
    )
    endpoints = (
        Endpoint(_address(src), sport),
        Endpoint(_address(dst), dport),
    )
    return ConnectionFacts(
        index=raw.index,
        ip_version=version,
        client=endpoints[client_dir],
        server=endpoints[client_dir ^ 1],
        roles_from=roles_from,
        first=first,
        last=last,
        packets=raw.segments,
        handshake=Handshake(syn, syn_ack, hs_ack, syns, syn_acks, hs_rtt),
        client_data=directions[client_dir],
        server_data=directions[client_dir ^ 1],
        close=close,
        icmp_errors=icmp_errors,
        capture_end_ns=capture_end_ns,
        series=TimeSequence(series.tobytes()),
    )


def _sent(streams: list[_Stream]) -> tuple[int, int]:
    return streams[0].bytes_sent(), streams[1].bytes_sent()


def _icmp_arrived(
    record: IcmpRecord,
    streams: list[_Stream],
    version: int,
    pending: list[_Pending],
    out: list[tuple[IcmpRecord, int | None]],
    index: int,
) -> None:
    """An ICMP error arrives between two rows: number its quote, start watching the sender."""
    stream = streams[record.direction]
    quoted: int | None = None
    if record.quoted_seq is not None and stream.base is not None:
        quoted = stream.srel + ((record.quoted_seq - stream.sraw + _HALF) & _M32) - _HALF
    out.append((record, quoted))
    mtu = record.mtu
    if mtu:
        # RFC 1191 §4, RFC 8201 §4: the sender must now send segments that fit the MTU,
        # and resends what the router dropped (everything it had sent, at most).
        limit = mtu - _IP_HEADER[version] - _TCP_HEADER
        pending.append(_Pending(index, record.direction, quoted, limit))
        if stream.hi is not None and stream.hi > stream.pmtu_until:
            stream.pmtu_until = stream.hi
        stream.pmtu_recovering = True
        stream.pmtu_limit = limit if not stream.pmtu_limit else min(limit, stream.pmtu_limit)


def _watch(
    pending: list[_Pending],
    done: dict[int, _Pending],
    direction: int,
    length: int,
    arel: int,
    num: int,
    ts: int,
) -> None:
    """Did the sender of a too-big segment adapt: a fitting segment, an ACK past it?"""
    for item in list(pending):
        if direction == item.direction:
            if item.fit is None and 0 < length <= item.limit:
                item.fit = PacketRef(num, ts)
        elif item.acked is None and item.quoted is not None and arel > item.quoted:
            item.acked = PacketRef(num, ts)
        if item.fit is not None and item.acked is not None:
            pending.remove(item)
            done[item.index] = item


def _icmp_error(
    record: IcmpRecord, quoted: int | None, about: Side, watched: _Pending | None
) -> IcmpError:
    version: Literal[4, 6] = 4 if record.version == 4 else 6
    return IcmpError(
        packet=record.packet,
        time_ns=record.time_ns,
        version=version,
        type=record.type,
        code=record.code,
        kind=icmp_kind(version, record.type, record.code),
        description=icmp_description(version, record.type, record.code),
        mtu=record.mtu,
        reporter=_address(record.reporter) if len(record.reporter) in (4, 16) else "",
        about=about,
        quoted_seq=quoted,
        quoted_length=record.quoted_length,
        fitting_segment_after=None if watched is None else watched.fit,
        acked_after=None if watched is None else watched.acked,
    )


def _median(samples: list[int]) -> int | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[(len(ordered) - 1) // 2]


def _direction(
    stream: _Stream,
    sender: Side,
    mss: int | None,
    scale: int | None,
    sack_permitted: bool,
    last_time: int,
) -> Direction:
    # Durations are clamped at 0: a capture merged out of time order must not make them
    # negative.
    periods = [
        ZeroWindow(start, end, max(0, end.time_ns - start.time_ns)) for start, end in stream.zw
    ]
    if stream.zw_start is not None:
        start = stream.zw_start
        periods.append(ZeroWindow(start, None, max(0, last_time - start.time_ns)))
    return Direction(
        sender=sender,
        packets=stream.packets,
        data_segments=stream.data_segments,
        payload_bytes=stream.payload,
        unique_bytes=stream.unique,
        data_mss_units=stream.units,
        largest_segment=stream.largest,
        full_size_segments=stream.full_segments,
        mss=mss,
        window_scale=scale,
        sack_permitted=sack_permitted,
        send_mss=stream.send_mss,
        max_window=stream.max_window,
        retransmissions=tuple(
            dataclasses.replace(r, spurious_cause=SpuriousCause.DSACK) if i in stream.dsacked else r
            for i, r in enumerate(stream.retx)
        )
        if stream.dsacked
        else tuple(stream.retx),
        retransmitted_bytes=stream.retx_bytes,
        out_of_order=tuple(stream.ooo),
        zero_window_probes=stream.probes,
        keepalives=stream.keepalives,
        duplicate_acks=tuple(stream.dup_acks),
        sack=tuple(stream.sack),
        zero_windows=tuple(periods),
        ack_rtt_median_ns=_median(stream.rtt),
        ack_rtt_samples=len(stream.rtt),
        acked_seq=stream.acked,
        all_acked_at=stream.covered if stream.hi is not None else None,
        first_data=stream.first_data,
        last_data=PacketRef(stream.last_data_num, stream.last_data_ts)
        if stream.first_data
        else None,
        last_segment=PacketRef(stream.last_num, stream.last_ts) if stream.packets else None,
        fin=stream.fin,
        rst=stream.rst,
    )

"""Verdicts: explicit rules over a connection's facts, tried in one fixed order.

`RULES` is the whole decision procedure. Every rule looks only at the
`ConnectionFacts` (and the findings of the rules before it) and either matches, giving
a `Finding` with its detail, vantage point and evidence, or does not. The first rule
that matches gives the connection's primary verdict; every other rule that matches
is a secondary finding, in table order. The order puts what ended or broke the
connection first, then what degraded it or what the path did to it (the thing an
engineer came to find out), then the normal outcome, then notes:

====  ======================  ================================================================
 #    verdict                 matches when (thresholds in ``thresholds.py``)
====  ======================  ================================================================
 1    refused                 the client's SYN was answered by a RST from the server, with no
                              SYN-ACK before it
 2    icmp_unreachable        an ICMP destination unreachable (not "fragmentation needed") or
                              ICMPv6 destination unreachable quotes a segment of the
                              connection, and the peer of the quoted sender sent nothing after it
 3    icmp_time_exceeded      the same, for ICMP time exceeded / ICMPv6 hop limit exceeded
 4    no_answer               SYN seen; nothing at all from the server; the SYN was retransmitted
                              or the capture went on NO_ANSWER_WAIT after it
 5    handshake_incomplete    SYN-ACK seen, the client never ACKed it (nor reset), and the
                              SYN-ACK was retransmitted or the capture went on NO_ANSWER_WAIT
 6    pmtud_black_hole        *sender's view* (either side's data): handshake passed; the first
                              unacknowledged byte was sent again ≥ BLACK_HOLE_MIN_RETRANSMISSIONS
                              times, always in full-size segments (payload ≥ send MSS −
                              FULL_SIZE_SLACK; GSO super-segments count), never acknowledged;
                              no full-size segment of that sender was ever acknowledged; no
                              ICMP too-big, or one the sender did not act on.
                              *receiver's view* (server's data): handshake passed; the client's
                              data all acknowledged; then no server data for ≥
                              BLACK_HOLE_SILENCE until a FIN/RST or the capture's end; the
                              server's send MSS makes packets larger than MIN_PATH_MTU; no
                              full-size server segment ever arrived; no later server segment's
                              sequence number shows it had nothing to send (one beyond what
                              arrived proves lost data)
 7    zero_window_stall       one side advertised a zero window for ≥ ZERO_WINDOW_STALL (or until
                              its last packet, for at least as long)
 8    reset_by_server         the first RST after the handshake began came from the server, and
 9    reset_by_client         the connection was in use: not after both FINs with all data acked
10    heavy_loss              in a direction, retransmissions (without a black hole's or path MTU
                              discovery's resends, and without spurious ones: of data already
                              acknowledged, or reported received twice by a D-SACK) ≥
                              HEAVY_LOSS_RATE of the data segments, both counted in MSS
                              units, and ≥ HEAVY_LOSS_MIN_RETRANSMISSIONS of them
11    pmtud_working           an ICMP too-big quotes a segment, and afterwards its sender sent a
                              segment that fits the MTU or its data got acknowledged past it
12    slow_handshake          SYN to handshake end > SLOW_HANDSHAKE, or > SLOW_HANDSHAKE_RTT_FACTOR
                              × the larger per-direction median ACK RTT (with ≥
                              SLOW_HANDSHAKE_MIN_RTT_SAMPLES samples) and ≥ SLOW_HANDSHAKE_FLOOR
13    completed_normally      SYN and SYN-ACK seen, FIN from both sides, no RST before the second
                              FIN, every data byte acknowledged; or one side sent its FIN, all
                              its data acknowledged, then the first RST (late data refused
                              after close, RFC 1122 §4.2.2.13) — not counted as a reset
14    truncated               the start is missing (no SYN or SYN-ACK), or only ICMP quotes
                              were seen, or the capture ended while the connection was open
                              (unless rules 1-6 explain why)
15    unknown                 none of the outcome rules (1-6, 8, 9, 13, 14: `OUTCOMES`) matched;
                              the detail says what did not fit
====  ======================  ================================================================
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from wirecap.analysis.model import (
    CloseKind,
    ConnectionFacts,
    Direction,
    Evidence,
    Finding,
    IcmpError,
    IcmpKind,
    PacketRef,
    Retransmission,
    Side,
    Vantage,
    Verdict,
)
from wirecap.analysis.thresholds import Thresholds
from wirecap.analysis.units import format_bytes, format_ms

__all__ = ["OUTCOMES", "RULES", "Rule", "judge"]

_SYN: Final = 0x02
_ACK: Final = 0x10
_TOO_BIG: Final = (IcmpKind.FRAGMENTATION_NEEDED, IcmpKind.PACKET_TOO_BIG)
_IP_HEADER: Final = {4: 20, 6: 40}
_TCP_HEADER: Final = 20

Check = Callable[[ConnectionFacts, Thresholds, Sequence[Finding]], Finding | None]


@dataclass(frozen=True, slots=True)
class Rule:
    verdict: Verdict
    check: Check


def _ev(ref: PacketRef, what: str) -> Evidence:
    return Evidence(ref.packet, ref.time_ns, what)


def _limit(evidence: list[Evidence], limit: int) -> tuple[Evidence, ...]:
    """At most `limit` entries, in packet order: the first ones and the last (the outcome)."""
    ordered = sorted(evidence, key=lambda e: e.packet)
    if len(ordered) <= limit:
        return tuple(ordered)
    return (*ordered[: limit - 1], ordered[-1])


def _finding(
    verdict: Verdict,
    detail: str,
    vantage: Vantage,
    data_from: Side | None,
    evidence: list[Evidence],
    thresholds: Thresholds,
) -> Finding:
    return Finding(verdict, detail, vantage, data_from, _limit(evidence, thresholds.max_evidence))


def _segments(c: ConnectionFacts, side: Side, flag_mask: int, flag_value: int) -> list[PacketRef]:
    """Segments `side` sent whose flags masked by `flag_mask` equal `flag_value`."""
    series = c.series
    wanted = 0 if side is Side.CLIENT else 1
    return [
        PacketRef(packet, time)
        for packet, time, sent_by, flags in zip(
            series.packets, series.times_ns, series.sides, series.flags, strict=True
        )
        if sent_by == wanted and flags & flag_mask == flag_value
    ]


def _row_of(c: ConnectionFacts, packet: int) -> int | None:
    """The time-sequence row of a packet number (rows are in packet order)."""
    packets = c.series.packets
    row = bisect.bisect_left(packets, packet)
    return row if row < len(packets) and packets[row] == packet else None


# -- 1. refused ---------------------------------------------------------------------------


def _refused(c: ConnectionFacts, t: Thresholds, _f: Sequence[Finding]) -> Finding | None:
    hs = c.handshake
    rst = c.server_data.rst
    if hs.syn is None or rst is None or rst.packet < hs.syn.packet:
        return None
    if hs.syn_ack is not None and hs.syn_ack.packet < rst.packet:
        return None
    evidence = [_ev(s, "SYN") for s in _segments(c, Side.CLIENT, _SYN | _ACK, _SYN)]
    evidence.append(_ev(rst, "RST from the server"))
    detail = f"the server answered the SYN with RST after {format_ms(rst.time_ns - hs.syn.time_ns)}"
    return _finding(Verdict.REFUSED, detail, Vantage.EITHER, None, evidence, t)


# -- 2, 3. ICMP errors that ended the connection -------------------------------------------


def _fatal_icmp(c: ConnectionFacts, kind: IcmpKind) -> IcmpError | None:
    """The first error of `kind` after which the peer of the quoted sender was silent."""
    for error in c.icmp_errors:
        if error.kind is not kind:
            continue
        last = c.direction(error.about.peer).last_segment
        if last is None or last.packet < error.packet:
            return error
    return None


def _icmp_rule(verdict: Verdict, kind: IcmpKind) -> Check:
    def check(c: ConnectionFacts, t: Thresholds, _f: Sequence[Finding]) -> Finding | None:
        error = _fatal_icmp(c, kind)
        if error is None:
            return None
        peer = error.about.peer
        detail = (
            f"{error.description} (ICMP{'v6' if error.version == 6 else ''} type {error.type} "
            f"code {error.code}) from {error.reporter or '?'} about a {error.about} segment; "
            f"nothing from the {peer} after it"
        )
        evidence = []
        if c.handshake.syn is not None:
            evidence.append(_ev(c.handshake.syn, "SYN"))
        evidence.append(
            Evidence(error.packet, error.time_ns, f"ICMP {error.description} from {error.reporter}")
        )
        return _finding(verdict, detail, Vantage.EITHER, None, evidence, t)

    return check


# -- 4, 5. unanswered handshake -----------------------------------------------------------


def _no_answer(c: ConnectionFacts, t: Thresholds, _f: Sequence[Finding]) -> Finding | None:
    hs = c.handshake
    if hs.syn is None or c.server_data.packets:
        return None
    waited = c.capture_end_ns - hs.syn.time_ns
    if hs.syns < 2 and waited < t.no_answer_wait_ns:
        return None
    syns = _segments(c, Side.CLIENT, _SYN | _ACK, _SYN)
    evidence = [_ev(s, "SYN" if i == 0 else "SYN retransmitted") for i, s in enumerate(syns)]
    detail = (
        f"{hs.syns} SYN{'s' if hs.syns != 1 else ''} over "
        f"{format_ms(syns[-1].time_ns - syns[0].time_ns) if syns else '?'}, no SYN-ACK, RST or "
        f"ICMP error; the capture went on {format_ms(waited)} after the first"
    )
    return _finding(Verdict.NO_ANSWER, detail, Vantage.EITHER, None, evidence, t)


def _handshake_incomplete(
    c: ConnectionFacts, t: Thresholds, _f: Sequence[Finding]
) -> Finding | None:
    hs = c.handshake
    syn_ack = hs.syn_ack
    client = c.client_data
    if syn_ack is None or hs.ack is not None or client.rst is not None:
        return None
    last = client.last_segment
    if last is not None and last.packet > syn_ack.packet:
        return None
    waited = c.capture_end_ns - syn_ack.time_ns
    if hs.syn_acks < 2 and waited < t.no_answer_wait_ns:
        return None
    evidence = []
    if hs.syn is not None:
        evidence.append(_ev(hs.syn, "SYN"))
    evidence += [
        _ev(s, "SYN-ACK" if i == 0 else "SYN-ACK retransmitted")
        for i, s in enumerate(_segments(c, Side.SERVER, _SYN | _ACK, _SYN | _ACK))
    ]
    detail = (
        f"{hs.syn_acks} SYN-ACK{'s' if hs.syn_acks != 1 else ''}, never acknowledged by the "
        f"client; the capture went on {format_ms(waited)} after the first"
    )
    return _finding(Verdict.HANDSHAKE_INCOMPLETE, detail, Vantage.EITHER, None, evidence, t)


# -- 6. PMTUD black hole ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stall:
    """Where a sender's data stopped being acknowledged, and the resends of that spot."""

    sender: Side
    #: Relative sequence number of the first byte never acknowledged.
    seq: int
    resends: tuple[Retransmission, ...]
    #: Too-big errors about the sender that it did not act on.
    ignored_icmp: tuple[IcmpError, ...]


def _sender_stall(c: ConnectionFacts, t: Thresholds, sender: Side) -> _Stall | None:
    """The sender's-view black hole test for `sender`'s data (rule 6)."""
    data = c.direction(sender)
    if c.handshake.syn_ack is None or not data.retransmissions:
        return None
    stuck = data.acked_seq if data.acked_seq is not None else 1
    resends = tuple(r for r in data.retransmissions if r.seq <= stuck < r.seq + r.length)
    if len(resends) < t.black_hole_min_retransmissions:
        return None
    if not all(r.full_size for r in resends):
        return None  # small segments get lost there too: loss or a dead path, not MTU
    # A full-size segment acknowledged before the stall shows the path carries them.
    if _full_size_acked(c, sender, stuck, data.send_mss - t.full_size_slack):
        return None
    too_big = [e for e in c.icmp_errors if e.about is sender and e.kind in _TOO_BIG]
    if any(e.fitting_segment_after or e.acked_after for e in too_big):
        return None  # PMTUD worked (rule 12)
    return _Stall(sender, stuck, resends, tuple(too_big))


def _full_size_acked(c: ConnectionFacts, sender: Side, acked: int, threshold: int) -> bool:
    series = c.series
    wanted = 0 if sender is Side.CLIENT else 1
    return any(
        side == wanted and length >= threshold and seq + length <= acked
        for side, seq, length in zip(series.sides, series.seqs, series.lengths, strict=True)
    )


def _black_hole_sender(c: ConnectionFacts, t: Thresholds, stall: _Stall) -> Finding:
    sender = stall.sender
    data = c.direction(sender)
    evidence: list[Evidence] = []
    if c.handshake.syn_ack is not None:
        evidence.append(_ev(c.handshake.syn_ack, "SYN-ACK: the handshake's small packets pass"))
    small = _small_acked_segment(c, sender, stall.seq, data)
    if small is not None:
        evidence.append(_ev(small, f"a small {sender} segment was acknowledged"))
    first_sent = _first_covering(c, sender, stall.seq)
    if first_sent is not None:
        evidence.append(_ev(first_sent, f"first sent: seq {stall.seq}, never acknowledged"))
    evidence += [
        Evidence(r.packet, r.time_ns, f"retransmitted, {r.length} bytes (full-size)")
        for r in stall.resends
    ]
    for error in stall.ignored_icmp:
        evidence.append(
            Evidence(error.packet, error.time_ns, f"ICMP {error.description}, MTU {error.mtu}")
        )
    largest = max(r.length for r in stall.resends)
    detail = (
        f"{sender} data at seq {stall.seq} sent {len(stall.resends)} more times in full-size "
        f"segments (up to {format_bytes(largest)}, send MSS {data.send_mss}), never "
        f"acknowledged, while the handshake's small packets passed"
    )
    if stall.ignored_icmp:
        detail += (
            f"; an ICMP too-big (MTU {stall.ignored_icmp[0].mtu}) reached the capture point but "
            f"the sender did not adapt (a host firewall dropping it?)"
        )
    else:
        detail += "; no ICMP too-big seen"
    return _finding(Verdict.PMTUD_BLACK_HOLE, detail, Vantage.SENDER, sender, evidence, t)


def _small_acked_segment(
    c: ConnectionFacts, sender: Side, stuck: int, data: Direction
) -> PacketRef | None:
    series = c.series
    wanted = 0 if sender is Side.CLIENT else 1
    threshold = data.send_mss
    for packet, time, side, seq, length in zip(
        series.packets, series.times_ns, series.sides, series.seqs, series.lengths, strict=True
    ):
        if side == wanted and 0 < length < threshold and seq + length <= stuck:
            return PacketRef(packet, time)
    return None


def _first_covering(c: ConnectionFacts, sender: Side, seq: int) -> PacketRef | None:
    series = c.series
    wanted = 0 if sender is Side.CLIENT else 1
    for packet, time, side, start, length in zip(
        series.packets, series.times_ns, series.sides, series.seqs, series.lengths, strict=True
    ):
        if side == wanted and length and start <= seq < start + length:
            return PacketRef(packet, time)
    return None


def _black_hole_receiver(c: ConnectionFacts, t: Thresholds) -> Finding | None:
    """The receiver's-view black hole test: the server's answer never arrives (rule 6)."""
    hs = c.handshake
    request, answer = c.client_data, c.server_data
    if hs.syn is None or hs.syn_ack is None or not request.data_segments:
        return None
    acked_at = request.all_acked_at
    if acked_at is None:
        return None
    if answer.last_data is not None and answer.last_data.packet > acked_at.packet:
        return None
    ends = [e for e in c.close.events if e.packet > acked_at.packet]
    end = min(ends, key=lambda e: e.packet) if ends else None
    end_time = end.time_ns if end is not None else c.capture_end_ns
    silence = end_time - acked_at.time_ns
    if silence < t.black_hole_silence_ns:
        return None
    if answer.send_mss + _IP_HEADER[c.ip_version] + _TCP_HEADER <= t.min_path_mtu:
        return None
    if answer.full_size_segments:
        return None  # full-size segments did arrive: the path carries them
    # Every later server segment (a bare ACK, FIN or RST) carries the server's next
    # sequence number (RFC 9293 §3.4): beyond what arrived, it proves data was sent and
    # lost; at it, that the server had sent nothing (idle, not blocked).
    received = answer.unique_bytes
    shown = _highest_seq_after(c, Side.SERVER, acked_at.packet)
    if shown is not None and shown[1] - 1 <= received:
        return None
    evidence = [
        _ev(hs.syn_ack, "SYN-ACK: the handshake passed"),
    ]
    if request.last_data is not None:
        evidence.append(_ev(request.last_data, "the client's request (last data)"))
    evidence.append(_ev(acked_at, "the server acknowledged all of it"))
    if shown is not None:
        evidence.append(
            _ev(
                shown[0],
                f"server segment numbered seq {shown[1]}: {shown[1] - 1 - received} B lost",
            )
        )
    if end is not None:
        evidence.append(
            Evidence(end.packet, end.time_ns, f"{end.kind.upper()} from the {end.side}")
        )
    detail = (
        f"the server acknowledged the client's {format_bytes(request.unique_bytes)}, then sent "
        f"no data for {format_ms(silence)} until "
        + (f"the {end.side}'s {end.kind.upper()}" if end is not None else "the capture's end")
        + f", although its send MSS is {answer.send_mss}"
    )
    if shown is not None:
        detail += (
            f"; its segment #{shown[0].packet} shows it had sent {format_bytes(shown[1] - 1)}, "
            f"of which {format_bytes(received)} arrived"
        )
    detail += "; a server that takes this long to answer looks the same"
    return _finding(Verdict.PMTUD_BLACK_HOLE, detail, Vantage.RECEIVER, Side.SERVER, evidence, t)


def _highest_seq_after(
    c: ConnectionFacts, sender: Side, packet: int
) -> tuple[PacketRef, int] | None:
    """The segment with the highest relative sequence number `sender` sent after `packet`."""
    series = c.series
    wanted = 0 if sender is Side.CLIENT else 1
    start = bisect.bisect_right(series.packets, packet)
    best: tuple[PacketRef, int] | None = None
    for row in range(start, len(series)):
        if series.sides[row] == wanted and (best is None or series.seqs[row] > best[1]):
            best = (PacketRef(series.packets[row], series.times_ns[row]), series.seqs[row])
    return best


def _black_hole(c: ConnectionFacts, t: Thresholds, _f: Sequence[Finding]) -> Finding | None:
    for sender in (Side.CLIENT, Side.SERVER):
        stall = _sender_stall(c, t, sender)
        if stall is not None:
            return _black_hole_sender(c, t, stall)
    return _black_hole_receiver(c, t)


# -- 7. zero-window stall -----------------------------------------------------------------


def _zero_window(c: ConnectionFacts, t: Thresholds, _f: Sequence[Finding]) -> Finding | None:
    longest = None
    for side in (Side.CLIENT, Side.SERVER):
        for period in c.direction(side).zero_windows:
            if period.duration_ns >= t.zero_window_stall_ns and (
                longest is None or period.duration_ns > longest[1].duration_ns
            ):
                longest = (side, period)
    if longest is None:
        return None
    receiver, period = longest
    evidence = [_ev(period.start, f"the {receiver} advertises window 0")]
    if period.end is not None:
        evidence.append(_ev(period.end, f"the {receiver} opens its window again"))
        how = "then opened it again"
    else:
        evidence.append(_ev(c.last, "the connection's last packet, window still 0"))
        how = "and never opened it again"
    probes = c.direction(receiver.peer).zero_window_probes
    detail = (
        f"the {receiver} advertised a zero window for {format_ms(period.duration_ns)} {how}"
        + (f"; the {receiver.peer} probed {probes} times" if probes else "")
    )
    return _finding(Verdict.ZERO_WINDOW_STALL, detail, Vantage.EITHER, receiver.peer, evidence, t)


# -- 8, 9. resets -------------------------------------------------------------------------


def _reset_rule(verdict: Verdict, side: Side) -> Check:
    def check(c: ConnectionFacts, t: Thresholds, found: Sequence[Finding]) -> Finding | None:
        if any(f.verdict is Verdict.REFUSED for f in found):
            return None
        resets = [e for e in c.close.events if e.kind is CloseKind.RST]
        if not resets or resets[0].side is not side:
            return None
        rst = resets[0]
        fins = [e for e in c.close.events if e.kind is CloseKind.FIN and e.packet < rst.packet]
        both_fins = len({e.side for e in fins}) == 2
        if both_fins and _all_acked(c):
            return None  # a reset after a clean close is teardown, not an abort
        if _closed_then_reset(c) is not None:
            return None  # the side had finished and closed; the RST refused late data
        if c.handshake.ack is None and c.handshake.syn is not None:
            when = "during the handshake"
        elif fins:
            when = f"after the {fins[0].side}'s FIN"
        else:
            when = "mid-stream"
        detail = (
            f"RST from the {side} {when}, at {format_ms(rst.time_ns - c.first.time_ns)} into "
            f"the connection, after the client sent {format_bytes(rst.client_bytes)} and the "
            f"server {format_bytes(rst.server_bytes)}"
        )
        evidence = [
            Evidence(e.packet, e.time_ns, f"{e.kind.upper()} from the {e.side}") for e in fins
        ]
        evidence.append(Evidence(rst.packet, rst.time_ns, f"RST from the {side}"))
        if c.handshake.syn is not None:
            evidence.insert(0, _ev(c.handshake.syn, "SYN"))
        return _finding(verdict, detail, Vantage.EITHER, None, evidence, t)

    return check


def _closed_then_reset(c: ConnectionFacts) -> Side | None:
    """The side that sent its FIN, had all its data acknowledged, then sent the first RST.

    That is how a socket closed with data still arriving ends (RFC 1122 §4.2.2.13:
    data received after close gets a RST): e.g. an HTTPS server that closes after
    its response and resets the client's late TLS close_notify. Its work was done.
    """
    resets = [e for e in c.close.events if e.kind is CloseKind.RST]
    if not resets:
        return None
    rst = resets[0]
    own_fin = c.direction(rst.side).fin
    if own_fin is None or own_fin.packet > rst.packet:
        return None
    data = c.direction(rst.side)
    if data.unique_bytes and data.all_acked_at is None:
        return None
    return rst.side


def _all_acked(c: ConnectionFacts) -> bool:
    return all(
        d.unique_bytes == 0 or d.all_acked_at is not None for d in (c.client_data, c.server_data)
    )


# -- 10. heavy loss -----------------------------------------------------------------------


def _heavy_loss(c: ConnectionFacts, t: Thresholds, _f: Sequence[Finding]) -> Finding | None:
    worst: tuple[float, Side, list[Retransmission], int] | None = None
    parts = []
    for side in (Side.CLIENT, Side.SERVER):
        data = c.direction(side)
        if not data.retransmissions or not data.data_mss_units:
            continue
        stall = _sender_stall(c, t, side)
        # Resends that path MTU discovery made are not loss (facts: Retransmission.pmtud),
        # nor are spurious ones (Retransmission.spurious_cause): data already
        # acknowledged when it was sent again, or that the receiver reported getting
        # twice in a D-SACK block (RFC 2883 §4, RFC 3708 §2), was not lost: a
        # reordering or timer artefact.
        resends = [r for r in data.retransmissions if not r.pmtud and not r.spurious]
        if stall is not None:
            # A black hole's resends are its symptom (rule 6), not random loss.
            resends = [r for r in resends if r.seq + r.length <= stall.seq]
        mss = data.send_mss
        units = sum((r.length + mss - 1) // mss for r in resends)
        rate = units / data.data_mss_units
        if len(resends) < t.heavy_loss_min_retransmissions or rate < t.heavy_loss_rate:
            continue
        parts.append(
            f"{side}→{side.peer}: {rate:.1%} of data segments retransmitted "
            f"({units} of {data.data_mss_units} in MSS units, "
            f"{format_bytes(sum(r.length for r in resends))})"
        )
        if worst is None or rate > worst[0]:
            worst = (rate, side, resends, units)
    if worst is None:
        return None
    _rate, side, resends, _units = worst
    evidence = [
        Evidence(
            r.packet,
            r.time_ns,
            f"{side} retransmits seq {r.seq}, {r.length} bytes"
            + ("" if r.original_seen else " (original not in the capture)"),
        )
        for r in resends
    ]
    return _finding(Verdict.HEAVY_LOSS, "; ".join(parts), Vantage.EITHER, side, evidence, t)


# -- 11. completed normally ---------------------------------------------------------------


def _completed(c: ConnectionFacts, t: Thresholds, _f: Sequence[Finding]) -> Finding | None:
    hs = c.handshake
    client_fin, server_fin = c.client_data.fin, c.server_data.fin
    if hs.syn is None or hs.syn_ack is None:
        return None
    closer = _closed_then_reset(c)
    if closer is not None:
        fin = c.direction(closer).fin
        assert fin is not None
        rst = next(e for e in c.close.events if e.kind is CloseKind.RST)
        detail = (
            f"closed by the {closer} (FIN, then RST to the {closer.peer}'s late data) after "
            f"the client sent {format_bytes(c.client_data.unique_bytes)} and the server "
            f"{format_bytes(c.server_data.unique_bytes)}; all of the {closer}'s data was "
            f"acknowledged"
        )
        evidence = [
            _ev(hs.syn, "SYN"),
            _ev(hs.syn_ack, "SYN-ACK"),
            _ev(fin, f"FIN from the {closer}"),
            Evidence(rst.packet, rst.time_ns, f"RST from the {closer} after its FIN"),
        ]
        return _finding(Verdict.COMPLETED_NORMALLY, detail, Vantage.EITHER, None, evidence, t)
    if client_fin is None or server_fin is None:
        return None
    second_fin = max(client_fin.packet, server_fin.packet)
    if any(e.kind is CloseKind.RST and e.packet < second_fin for e in c.close.events):
        return None
    if not _all_acked(c):
        return None
    first = c.close.first
    assert first is not None
    detail = (
        f"closed by the {first.side} (FIN first) after the client sent "
        f"{format_bytes(c.client_data.unique_bytes)} and the server "
        f"{format_bytes(c.server_data.unique_bytes)}"
    )
    evidence = [
        _ev(hs.syn, "SYN"),
        _ev(hs.syn_ack, "SYN-ACK"),
        _ev(client_fin, "FIN from the client"),
        _ev(server_fin, "FIN from the server"),
    ]
    return _finding(Verdict.COMPLETED_NORMALLY, detail, Vantage.EITHER, None, evidence, t)


# -- 12. PMTUD working --------------------------------------------------------------------


def _pmtud_working(c: ConnectionFacts, t: Thresholds, _f: Sequence[Finding]) -> Finding | None:
    for error in c.icmp_errors:
        if error.kind not in _TOO_BIG:
            continue
        fit, acked = error.fitting_segment_after, error.acked_after
        if fit is None and acked is None:
            continue
        evidence = [
            Evidence(
                error.packet,
                error.time_ns,
                f"ICMP {error.description} from {error.reporter}, MTU {error.mtu}",
            )
        ]
        outcome = []
        if fit is not None:
            evidence.append(_ev(fit, f"the {error.about} sends a segment that fits"))
            outcome.append("sent segments that fit")
        if acked is not None:
            evidence.append(_ev(acked, "the data the error quoted is acknowledged"))
            outcome.append("its data got through")
        detail = (
            f"{error.reporter or 'a router'} reported MTU {error.mtu} for a "
            f"{error.quoted_length if error.quoted_length is not None else '?'}-byte "
            f"{error.about} segment; the {error.about} then " + " and ".join(outcome)
        )
        return _finding(Verdict.PMTUD_WORKING, detail, Vantage.EITHER, error.about, evidence, t)
    return None


# -- 13. slow handshake -------------------------------------------------------------------


def _slow_handshake(c: ConnectionFacts, t: Thresholds, _f: Sequence[Finding]) -> Finding | None:
    hs = c.handshake
    duration = hs.duration_ns
    if duration is None or hs.syn is None:
        return None
    medians = [
        d.ack_rtt_median_ns
        for d in (c.client_data, c.server_data)
        if d.ack_rtt_median_ns is not None and d.ack_rtt_samples >= t.slow_handshake_min_rtt_samples
    ]
    # The larger median is the one measured at the data's sender: a full round trip.
    rtt = max(medians) if medians else None
    if duration > t.slow_handshake_ns:
        why = f"over {format_ms(t.slow_handshake_ns)}"
    elif (
        rtt is not None
        and duration >= t.slow_handshake_floor_ns
        and duration > t.slow_handshake_rtt_factor * rtt
    ):
        why = f"{duration / max(rtt, 1):.0f}× the median ACK RTT of {format_ms(rtt)}"
    else:
        return None
    detail = f"SYN to handshake end took {format_ms(duration)}, {why}"
    if hs.syn_retries or hs.syn_ack_retries:
        detail += f" (SYN retries {hs.syn_retries}, SYN-ACK retries {hs.syn_ack_retries})"
    evidence = [
        _ev(s, "SYN" if i == 0 else "SYN retransmitted")
        for i, s in enumerate(_segments(c, Side.CLIENT, _SYN | _ACK, _SYN))
    ]
    evidence += [
        _ev(s, "SYN-ACK" if i == 0 else "SYN-ACK retransmitted")
        for i, s in enumerate(_segments(c, Side.SERVER, _SYN | _ACK, _SYN | _ACK))
    ]
    if hs.ack is not None:
        evidence.append(_ev(hs.ack, "the client's ACK ends the handshake"))
    return _finding(Verdict.SLOW_HANDSHAKE, detail, Vantage.EITHER, None, evidence, t)


# -- 14. truncated ------------------------------------------------------------------------


#: Outcomes that explain why the connection never opened or never finished: that the
#: capture ended with it open adds nothing to them.
_EXPLAIN_THE_END: Final = frozenset(
    {
        Verdict.REFUSED,
        Verdict.ICMP_UNREACHABLE,
        Verdict.ICMP_TIME_EXCEEDED,
        Verdict.NO_ANSWER,
        Verdict.HANDSHAKE_INCOMPLETE,
        Verdict.PMTUD_BLACK_HOLE,
    }
)


def _truncated(c: ConnectionFacts, t: Thresholds, found: Sequence[Finding]) -> Finding | None:
    hs = c.handshake
    reasons = []
    evidence = [_ev(c.first, "the connection's first packet in the capture")]
    if not c.packets:
        reasons.append("only seen quoted inside ICMP errors, no segment of its own")
    elif hs.syn is None and hs.syn_ack is None:
        reasons.append("its start (SYN, SYN-ACK) is not in the capture")
    events = c.close.events
    closed = any(e.kind is CloseKind.RST for e in events) or len({e.side for e in events}) == 2
    explained = any(f.verdict in _EXPLAIN_THE_END for f in found)
    if c.packets and not closed and not explained:
        after = c.capture_end_ns - c.last.time_ns
        if hs.syn is not None and hs.syn_ack is None and not c.server_data.packets:
            reasons.append(
                f"the capture ended {format_ms(c.capture_end_ns - hs.syn.time_ns)} after "
                f"the SYN, before a retransmission was due"
            )
        else:
            reasons.append(
                f"the capture ended while the connection was open "
                f"({format_ms(after)} after its last packet)"
            )
        evidence.append(_ev(c.last, "the connection's last packet"))
    if not reasons:
        return None
    return _finding(Verdict.TRUNCATED, "; ".join(reasons), Vantage.EITHER, None, evidence, t)


# -- 15. unknown --------------------------------------------------------------------------

#: Verdicts that say how the connection went; without one, it is "unknown".
OUTCOMES: Final = frozenset(
    {
        Verdict.REFUSED,
        Verdict.ICMP_UNREACHABLE,
        Verdict.ICMP_TIME_EXCEEDED,
        Verdict.NO_ANSWER,
        Verdict.HANDSHAKE_INCOMPLETE,
        Verdict.PMTUD_BLACK_HOLE,
        Verdict.RESET_BY_SERVER,
        Verdict.RESET_BY_CLIENT,
        Verdict.COMPLETED_NORMALLY,
        Verdict.TRUNCATED,
    }
)


def _unknown(c: ConnectionFacts, t: Thresholds, found: Sequence[Finding]) -> Finding | None:
    if any(f.verdict in OUTCOMES for f in found):
        return None
    hs = c.handshake
    reasons = []
    if hs.syn is not None and hs.syn_ack is None:
        reasons.append("the server sent segments but no SYN-ACK is in the capture")
    for side in (Side.CLIENT, Side.SERVER):
        data = c.direction(side)
        if data.unique_bytes and data.all_acked_at is None:
            reasons.append(
                f"the {side}'s last data was never acknowledged in the capture "
                f"(up to seq {data.acked_seq} of {data.unique_bytes + 1} acknowledged; "
                f"capture drops?)"
            )
    if not reasons:
        reasons.append("the handshake, data and close fit none of the rules")
    evidence = [_ev(c.first, "first packet"), _ev(c.last, "last packet")]
    return _finding(Verdict.UNKNOWN, "; ".join(reasons), Vantage.EITHER, None, evidence, t)


RULES: Final[tuple[Rule, ...]] = (
    Rule(Verdict.REFUSED, _refused),
    Rule(Verdict.ICMP_UNREACHABLE, _icmp_rule(Verdict.ICMP_UNREACHABLE, IcmpKind.UNREACHABLE)),
    Rule(
        Verdict.ICMP_TIME_EXCEEDED, _icmp_rule(Verdict.ICMP_TIME_EXCEEDED, IcmpKind.TIME_EXCEEDED)
    ),
    Rule(Verdict.NO_ANSWER, _no_answer),
    Rule(Verdict.HANDSHAKE_INCOMPLETE, _handshake_incomplete),
    Rule(Verdict.PMTUD_BLACK_HOLE, _black_hole),
    Rule(Verdict.ZERO_WINDOW_STALL, _zero_window),
    Rule(Verdict.RESET_BY_SERVER, _reset_rule(Verdict.RESET_BY_SERVER, Side.SERVER)),
    Rule(Verdict.RESET_BY_CLIENT, _reset_rule(Verdict.RESET_BY_CLIENT, Side.CLIENT)),
    Rule(Verdict.HEAVY_LOSS, _heavy_loss),
    Rule(Verdict.PMTUD_WORKING, _pmtud_working),
    Rule(Verdict.SLOW_HANDSHAKE, _slow_handshake),
    Rule(Verdict.COMPLETED_NORMALLY, _completed),
    Rule(Verdict.TRUNCATED, _truncated),
    Rule(Verdict.UNKNOWN, _unknown),
)


def judge(c: ConnectionFacts, thresholds: Thresholds) -> tuple[Finding, tuple[Finding, ...]]:
    """Run `RULES` in order: (primary finding, secondary findings)."""
    found: list[Finding] = []
    for rule in RULES:
        finding = rule.check(c, thresholds, found)
        if finding is not None:
            found.append(finding)
    # UNKNOWN matches whenever no outcome did, so the list is never empty.
    return found[0], tuple(found[1:])

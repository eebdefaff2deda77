"""A report for people (`render_text`) and for programs (`to_json`, with its JSON Schema).

Text: one block per connection, the verdict on its first line, then the evidence, the
secondary findings, and the facts in aligned columns (durations in ms, sizes in bytes,
packet times in seconds from the capture's first packet, as Wireshark shows them).

JSON: `to_json` returns plain dicts and lists, stable under `SCHEMA_VERSION`; the
schema is ``report.schema.json`` next to this module (JSON Schema draft 2020-12),
`schema()` loads it. Times are integer nanoseconds (``*_ns``), sizes integer bytes.
Lists that can grow with the capture (retransmissions, duplicate ACKs, ...) are
objects ``{"count": n, "items": [...]}`` holding the first `JSON_MAX_ITEMS` items.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Final, TypeVar

from wirecap.analysis.model import (
    Connection,
    Direction,
    Evidence,
    Finding,
    Handshake,
    IcmpError,
    PacketRef,
    Report,
    Retransmission,
    SackReport,
    Side,
    SpuriousCause,
    ZeroWindow,
)
from wirecap.analysis.units import format_bytes, format_ms, format_time
from wirecap.core.formats.linktype import LinkType

__all__ = [
    "JSON_MAX_ITEMS",
    "SCHEMA_VERSION",
    "TEXT_MAX_ITEMS",
    "render_connection",
    "render_text",
    "schema",
    "to_json",
]

#: Bumped when the JSON layout changes incompatibly (a field removed, renamed or retyped,
#: or its meaning widened); new fields may appear without a bump.
#: 2: a retransmission's ``spurious`` is also true when a D-SACK reported it (RFC 2883,
#: RFC 3708); ``spurious_cause`` says which, ``pmtud`` marks path MTU discovery's resends,
#: a SACK report's ``dsack`` its D-SACK block.
SCHEMA_VERSION: Final = 2
#: Items kept per growing list in JSON: enough for any tool, bounded for huge captures.
JSON_MAX_ITEMS: Final = 1000
#: Items listed per list in text: the first few show the pattern.
TEXT_MAX_ITEMS: Final = 5
_LABEL_WIDTH: Final = 18
_SPURIOUS_TEXT: Final[dict[SpuriousCause | None, str]] = {
    None: "",
    SpuriousCause.ACKED: " spurious (already acked)",
    SpuriousCause.DSACK: " spurious (D-SACK)",
}
T = TypeVar("T")
_COLUMN_WIDTH: Final = 18

# --- text -------------------------------------------------------------------------------


def _linktype_name(linktype: int) -> str:
    try:
        return LinkType(linktype).name
    except ValueError:
        return str(linktype)


def render_text(report: Report) -> str:
    """The whole report: a capture summary line, then one block per connection."""
    span = format_time(report.duration_ns)
    linktypes = ", ".join(_linktype_name(t) for t in report.linktypes) or "none"
    lines = [
        f"capture: {report.packets:,} packets over {span} (link types {linktypes}); "
        f"{report.tcp_packets:,} TCP, {report.udp_packets:,} UDP, "
        f"{report.icmp_packets:,} ICMP ({report.icmp_errors_tied:,} tied to connections), "
        f"{report.other_ip_packets:,} other IP, {report.non_ip_packets:,} "
        f"non-IP, {report.undecodable_packets:,} undecodable"
        + (
            f", {report.unsupported_linktype_packets:,} on unsupported link types"
            if report.unsupported_linktype_packets
            else ""
        ),
        f"{len(report.connections)} TCP connection{'s' if len(report.connections) != 1 else ''}",
    ]
    for connection in report.connections:
        lines.append("")
        lines.append(render_connection(connection))
    return "\n".join(lines) + "\n"


def _evidence_lines(evidence: tuple[Evidence, ...], indent: str) -> list[str]:
    return [f"{indent}#{e.packet} {format_time(e.time_ns)}  {e.what}" for e in evidence]


def _finding_lines(title: str, finding: Finding) -> list[str]:
    vantage = "" if finding.vantage.value == "either" else f" [{finding.vantage} view]"
    lines = [f"  {title}: {finding.label}{vantage} — {finding.detail}"]
    lines += _evidence_lines(finding.evidence, "      ")
    return lines


def _ref(ref: PacketRef | None) -> str:
    return "-" if ref is None else f"#{ref.packet} at {format_time(ref.time_ns)}"


def _fact(label: str, text: str) -> str:
    return f"  {label:<{_LABEL_WIDTH}}{text}"


def _columns(label: str, client: str, server: str) -> str:
    return f"  {label:<{_LABEL_WIDTH}}{client:>{_COLUMN_WIDTH}}{server:>{_COLUMN_WIDTH}}"


def _handshake_text(hs: Handshake) -> str:
    if hs.syn is None and hs.syn_ack is None:
        return "not in the capture"
    parts = []
    for name, value in (
        ("SYN→SYN-ACK", hs.syn_to_syn_ack_ns),
        ("SYN-ACK→ACK", hs.syn_ack_to_ack_ns),
        ("RTT", hs.rtt_ns),
    ):
        parts.append(f"{name} {'-' if value is None else format_ms(value)}")
    missing = [
        n for n, r in (("SYN", hs.syn), ("SYN-ACK", hs.syn_ack), ("ACK", hs.ack)) if r is None
    ]
    text = (
        ", ".join(parts) + f"; SYN retries {hs.syn_retries}, SYN-ACK retries {hs.syn_ack_retries}"
    )
    if missing:
        text += f"; not seen: {', '.join(missing)}"
    return text


def _icmp_text(error: IcmpError) -> str:
    what = error.description + (f", MTU {error.mtu}" if error.mtu is not None else "")
    quoted = ""
    if error.quoted_seq is not None:
        length = "" if error.quoted_length is None else f", {format_bytes(error.quoted_length)}"
        quoted = f", quoting {error.about} seq {error.quoted_seq}{length}"
    return f"#{error.packet} {format_time(error.time_ns)} {what} from {error.reporter}{quoted}"


def _column_rows(c: Connection) -> list[tuple[str, str, str]]:
    def both(render: Any) -> tuple[str, str]:
        return render(c.client_data), render(c.server_data)

    def optional(value: int | None) -> str:
        return "-" if value is None else str(value)

    def rtt(d: Direction) -> str:
        if d.ack_rtt_median_ns is None:
            return "-"
        return f"{format_ms(d.ack_rtt_median_ns)} ({d.ack_rtt_samples})"

    def zero_windows(d: Direction) -> str:
        if not d.zero_windows:
            return "0"
        longest = max(z.duration_ns for z in d.zero_windows)
        return f"{len(d.zero_windows)}, max {format_ms(longest)}"

    rows: list[tuple[str, Any]] = [
        ("segments", lambda d: f"{d.packets:,}"),
        ("data segments", lambda d: f"{d.data_segments:,}"),
        ("payload", lambda d: format_bytes(d.payload_bytes)),
        ("unique payload", lambda d: format_bytes(d.unique_bytes)),
        ("largest segment", lambda d: format_bytes(d.largest_segment)),
        ("full-size segments", lambda d: f"{d.full_size_segments:,}"),
        ("MSS announced", lambda d: optional(d.mss)),
        ("send MSS", lambda d: str(d.send_mss)),
        ("window scale", lambda d: optional(d.window_scale)),
        ("SACK permitted", lambda d: "yes" if d.sack_permitted else "no"),
        ("max window", lambda d: format_bytes(d.max_window)),
        (
            "retransmissions",
            lambda d: f"{d.retransmission_count:,} ({format_bytes(d.retransmitted_bytes)})",
        ),
        ("out of order", lambda d: f"{len(d.out_of_order):,}"),
        ("dup ACKs sent", lambda d: f"{len(d.duplicate_acks):,}"),
        ("SACKs sent", lambda d: f"{len(d.sack):,}"),
        ("zero windows", zero_windows),
        ("zero-window probes", lambda d: f"{d.zero_window_probes:,}"),
        ("ACK RTT median", rtt),
        ("acknowledged to", lambda d: optional(d.acked_seq)),
    ]
    return [(label, *both(render)) for label, render in rows]


def render_connection(c: Connection) -> str:
    """One connection's block: verdict first, then the facts."""
    roles = {
        "syn": "client sent the SYN",
        "syn-ack": "no SYN seen; client received the SYN-ACK",
        "first-packet": "no handshake seen; client sent the first packet",
    }[c.roles_from.value]
    lines = [f"connection {c.index}: {c.client} → {c.server} (IPv{c.ip_version}; {roles})"]
    lines += _finding_lines("verdict", c.verdict)
    for finding in c.also:
        lines += _finding_lines("also", finding)
    lines.append(
        _fact(
            "packets",
            f"{c.packets:,} TCP, #{c.first.packet}–#{c.last.packet}, "
            f"{format_time(c.first.time_ns)}–{format_time(c.last.time_ns)} "
            f"({format_ms(c.duration_ns)})",
        )
    )
    lines.append(_fact("handshake", _handshake_text(c.handshake)))
    if c.close.events:
        events = [
            f"{e.side} {e.kind.upper()} #{e.packet} at {format_time(e.time_ns)} "
            f"(client had sent {format_bytes(e.client_bytes)}, server "
            f"{format_bytes(e.server_bytes)})"
            for e in c.close.events
        ]
        lines.append(_fact("close", events[0]))
        lines += [_fact("", e) for e in events[1:]]
    else:
        lines.append(_fact("close", "no FIN or RST in the capture"))
    for i, error in enumerate(c.icmp_errors[:TEXT_MAX_ITEMS]):
        lines.append(_fact("ICMP" if i == 0 else "", _icmp_text(error)))
    if len(c.icmp_errors) > TEXT_MAX_ITEMS:
        lines.append(_fact("", f"... and {len(c.icmp_errors) - TEXT_MAX_ITEMS} more"))
    lines.append(_columns("", "client→server", "server→client"))
    for label, client, server in _column_rows(c):
        lines.append(_columns(label, client, server))
    for side in (Side.CLIENT, Side.SERVER):
        resends = c.direction(side).retransmissions
        if not resends:
            continue
        shown = [
            f"#{r.packet} seq {r.seq} {format_bytes(r.length)}"
            + (" full-size" if r.full_size else "")
            + ("" if r.original_seen else " (original unseen)")
            + _SPURIOUS_TEXT[r.spurious_cause]
            + (" PMTUD" if r.pmtud else "")
            for r in resends[:TEXT_MAX_ITEMS]
        ]
        more = len(resends) - len(shown)
        lines.append(
            _fact(f"{side} resends", "; ".join(shown) + (f"; ... {more} more" if more else ""))
        )
    return "\n".join(lines)


# --- JSON -------------------------------------------------------------------------------


def _json_ref(ref: PacketRef | None) -> dict[str, int] | None:
    return None if ref is None else {"packet": ref.packet, "time_ns": ref.time_ns}


def _bounded(items: Sequence[T], encode: Callable[[T], Any]) -> dict[str, Any]:
    """A growing list: its length and its first JSON_MAX_ITEMS items, encoded."""
    return {"count": len(items), "items": [encode(item) for item in items[:JSON_MAX_ITEMS]]}


def _json_finding(f: Finding) -> dict[str, Any]:
    return {
        "verdict": f.verdict.value,
        "label": f.label,
        "detail": f.detail,
        "vantage": f.vantage.value,
        "data_from": None if f.data_from is None else f.data_from.value,
        "evidence": [
            {"packet": e.packet, "time_ns": e.time_ns, "what": e.what} for e in f.evidence
        ],
    }


def _json_retransmission(r: Retransmission) -> dict[str, Any]:
    return {
        "packet": r.packet,
        "time_ns": r.time_ns,
        "seq": r.seq,
        "length": r.length,
        "original_seen": r.original_seen,
        "spurious": r.spurious,
        "spurious_cause": None if r.spurious_cause is None else r.spurious_cause.value,
        "full_size": r.full_size,
        "pmtud": r.pmtud,
    }


def _json_sack(s: SackReport) -> dict[str, Any]:
    return {
        "packet": s.packet,
        "time_ns": s.time_ns,
        "blocks": [list(b) for b in s.blocks],
        "dsack": s.dsack,
    }


def _json_zero_window(z: ZeroWindow) -> dict[str, Any]:
    return {"start": _json_ref(z.start), "end": _json_ref(z.end), "duration_ns": z.duration_ns}


def _json_direction(d: Direction) -> dict[str, Any]:
    return {
        "sender": d.sender.value,
        "packets": d.packets,
        "data_segments": d.data_segments,
        "payload_bytes": d.payload_bytes,
        "unique_bytes": d.unique_bytes,
        "data_mss_units": d.data_mss_units,
        "largest_segment": d.largest_segment,
        "full_size_segments": d.full_size_segments,
        "mss": d.mss,
        "window_scale": d.window_scale,
        "sack_permitted": d.sack_permitted,
        "send_mss": d.send_mss,
        "max_window": d.max_window,
        "retransmitted_bytes": d.retransmitted_bytes,
        "retransmissions": _bounded(d.retransmissions, _json_retransmission),
        "out_of_order": _bounded(d.out_of_order, _json_ref),
        "zero_window_probes": d.zero_window_probes,
        "duplicate_acks": _bounded(d.duplicate_acks, _json_ref),
        "sack": _bounded(d.sack, _json_sack),
        "zero_windows": _bounded(d.zero_windows, _json_zero_window),
        "ack_rtt_median_ns": d.ack_rtt_median_ns,
        "ack_rtt_samples": d.ack_rtt_samples,
        "acked_seq": d.acked_seq,
        "all_acked_at": _json_ref(d.all_acked_at),
        "first_data": _json_ref(d.first_data),
        "last_data": _json_ref(d.last_data),
        "last_segment": _json_ref(d.last_segment),
        "fin": _json_ref(d.fin),
        "rst": _json_ref(d.rst),
    }


def _json_icmp(e: IcmpError) -> dict[str, Any]:
    return {
        "packet": e.packet,
        "time_ns": e.time_ns,
        "version": e.version,
        "type": e.type,
        "code": e.code,
        "kind": e.kind.value,
        "description": e.description,
        "mtu": e.mtu,
        "reporter": e.reporter,
        "about": e.about.value,
        "quoted_seq": e.quoted_seq,
        "quoted_length": e.quoted_length,
        "fitting_segment_after": _json_ref(e.fitting_segment_after),
        "acked_after": _json_ref(e.acked_after),
    }


def _json_connection(c: Connection) -> dict[str, Any]:
    hs = c.handshake
    return {
        "index": c.index,
        "ip_version": c.ip_version,
        "client": {"address": c.client.address, "port": c.client.port},
        "server": {"address": c.server.address, "port": c.server.port},
        "roles_from": c.roles_from.value,
        "first": _json_ref(c.first),
        "last": _json_ref(c.last),
        "duration_ns": c.duration_ns,
        "packets": c.packets,
        "verdict": _json_finding(c.verdict),
        "also": [_json_finding(f) for f in c.also],
        "handshake": {
            "syn": _json_ref(hs.syn),
            "syn_ack": _json_ref(hs.syn_ack),
            "ack": _json_ref(hs.ack),
            "syns": hs.syns,
            "syn_acks": hs.syn_acks,
            "syn_retries": hs.syn_retries,
            "syn_ack_retries": hs.syn_ack_retries,
            "syn_to_syn_ack_ns": hs.syn_to_syn_ack_ns,
            "syn_ack_to_ack_ns": hs.syn_ack_to_ack_ns,
            "duration_ns": hs.duration_ns,
            "rtt_ns": hs.rtt_ns,
        },
        "client_data": _json_direction(c.client_data),
        "server_data": _json_direction(c.server_data),
        "close": {
            "by": None if c.close.by is None else c.close.by.value,
            "how": None if c.close.how is None else c.close.how.value,
            "events": [
                {
                    "side": e.side.value,
                    "kind": e.kind.value,
                    "packet": e.packet,
                    "time_ns": e.time_ns,
                    "client_bytes": e.client_bytes,
                    "server_bytes": e.server_bytes,
                }
                for e in c.close.events
            ],
        },
        "icmp_errors": _bounded(c.icmp_errors, _json_icmp),
    }


def to_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data, valid against `schema()`."""
    t = report.thresholds
    return {
        "schema_version": SCHEMA_VERSION,
        "capture": {
            "packets": report.packets,
            "linktypes": list(report.linktypes),
            "start_epoch_ns": report.start_epoch_ns,
            "duration_ns": report.duration_ns,
            "tcp_packets": report.tcp_packets,
            "udp_packets": report.udp_packets,
            "icmp_packets": report.icmp_packets,
            "icmp_errors_tied": report.icmp_errors_tied,
            "other_ip_packets": report.other_ip_packets,
            "non_ip_packets": report.non_ip_packets,
            "undecodable_packets": report.undecodable_packets,
            "unsupported_linktype_packets": report.unsupported_linktype_packets,
            "connections": len(report.connections),
        },
        "thresholds": {
            "heavy_loss_rate": t.heavy_loss_rate,
            "heavy_loss_min_retransmissions": t.heavy_loss_min_retransmissions,
            "slow_handshake_ns": t.slow_handshake_ns,
            "slow_handshake_rtt_factor": t.slow_handshake_rtt_factor,
            "slow_handshake_min_rtt_samples": t.slow_handshake_min_rtt_samples,
            "slow_handshake_floor_ns": t.slow_handshake_floor_ns,
            "no_answer_wait_ns": t.no_answer_wait_ns,
            "black_hole_min_retransmissions": t.black_hole_min_retransmissions,
            "black_hole_silence_ns": t.black_hole_silence_ns,
            "min_path_mtu": t.min_path_mtu,
            "full_size_slack": t.full_size_slack,
            "out_of_order_window_ns": t.out_of_order_window_ns,
            "zero_window_stall_ns": t.zero_window_stall_ns,
            "max_evidence": t.max_evidence,
        },
        "connections": [_json_connection(c) for c in report.connections],
    }


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) `to_json` output follows."""
    text = resources.files("wirecap.analysis").joinpath("report.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded

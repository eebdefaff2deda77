"""The values an analysis produces: a `Report` of `Connection`s, each with facts and a verdict.

Everything here is a frozen value with no behaviour beyond derived properties, so
front ends (the ``wirecap analyze`` command, proxy summaries and mails, plots) can
read a report without knowing how it was computed.

Conventions, the same everywhere in the model:

- **Packets** are numbered from 1 in file order, as Wireshark's ``frame.number``,
  so evidence can be looked up in Wireshark directly.
- **Connections** are numbered from 0 in order of their first packet, as tshark's
  ``tcp.stream``.
- **Times** are integer nanoseconds relative to the capture's first packet (what
  Wireshark shows as ``frame.time_relative``); ``Report.start_epoch_ns`` anchors them.
- **Sequence numbers** are relative and unwrapped (never reduced modulo 2**32), in
  Wireshark's convention: the SYN is 0 and the first data byte 1; without a SYN in the
  capture, the first sequence number seen is 1. So "bytes sent so far" is the highest
  relative sequence number reached minus one.
- **Sizes** are TCP payload bytes from the IP length fields (RFC 9293 §3.1, SEG.LEN
  without SYN and FIN), never frame lengths: Linux captures hold GSO/GRO
  super-segments far larger than the MTU, and snaplen cuts frames short.
- **Sides**: the client is the endpoint that sent the SYN (or, without a SYN, received
  the SYN-ACK; without either, sent the first packet). `Connection.roles_from` says which.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Final, Literal

from wirecap.analysis.thresholds import Thresholds

__all__ = [
    "Close",
    "CloseEvent",
    "CloseKind",
    "Connection",
    "ConnectionFacts",
    "Direction",
    "Endpoint",
    "Evidence",
    "Finding",
    "Handshake",
    "IcmpError",
    "IcmpKind",
    "PacketRef",
    "Report",
    "Retransmission",
    "RoleSource",
    "SackReport",
    "Side",
    "SpuriousCause",
    "TimeSequence",
    "Vantage",
    "Verdict",
    "ZeroWindow",
]


class Side(enum.StrEnum):
    """One endpoint of a connection."""

    CLIENT = "client"
    SERVER = "server"

    @property
    def peer(self) -> Side:
        return Side.SERVER if self is Side.CLIENT else Side.CLIENT


class RoleSource(enum.StrEnum):
    """What decided which endpoint is the client."""

    #: The client sent a SYN without ACK (RFC 9293 §3.5): certain.
    SYN = "syn"
    #: No SYN in the capture; the client received the SYN-ACK.
    SYN_ACK = "syn-ack"
    #: Neither in the capture; the client sent the connection's first packet (a guess).
    FIRST_PACKET = "first-packet"


class Vantage(enum.StrEnum):
    """Where a capture must have been taken for a verdict's reasoning to hold.

    Loss, silence and retransmissions look different at the two ends of a path: the
    sender of data sees its own retransmissions, the receiver sees only what arrived.
    """

    #: The capture is at (or next to) the sender of the data in question.
    SENDER = "sender"
    #: The capture is at (or next to) the receiver of the data in question.
    RECEIVER = "receiver"
    #: The reasoning holds wherever on the path the capture was taken.
    EITHER = "either"


class SpuriousCause(enum.StrEnum):
    """How the capture shows that a retransmission was not needed (its original arrived)."""

    #: The bytes had already been acknowledged when they were sent again.
    ACKED = "acked"
    #: A later ACK from the peer reported the bytes as received twice in a D-SACK block
    #: (RFC 2883 §4), which is how RFC 3708 §2 detects a spurious retransmission: the
    #: original arrived after all, typically overtaken by later segments (reordering).
    DSACK = "dsack"


class CloseKind(enum.StrEnum):
    FIN = "fin"
    RST = "rst"


class IcmpKind(enum.StrEnum):
    """The ICMP/ICMPv6 errors diagnostics tell apart."""

    #: ICMP type 3 code 4, "fragmentation needed and DF set" (RFC 1191 §4).
    FRAGMENTATION_NEEDED = "fragmentation_needed"
    #: ICMPv6 type 2, Packet Too Big (RFC 4443 §3.2, used by RFC 8201).
    PACKET_TOO_BIG = "packet_too_big"
    #: ICMP type 3 (other codes), ICMPv6 type 1 (RFC 792, RFC 4443 §3.1).
    UNREACHABLE = "unreachable"
    #: ICMP type 11, ICMPv6 type 3 (RFC 792, RFC 4443 §3.3).
    TIME_EXCEEDED = "time_exceeded"
    #: Any other error that quotes a segment (parameter problem, redirect, source quench).
    OTHER = "other"


class Verdict(enum.StrEnum):
    """The closed set of conclusions the analyzer draws about a connection.

    The rules that decide each one, their order and their thresholds are in
    ``wirecap.analysis.verdicts``; `label` and `explanation` are the words for people.
    """

    REFUSED = "refused"
    ICMP_UNREACHABLE = "icmp_unreachable"
    ICMP_TIME_EXCEEDED = "icmp_time_exceeded"
    NO_ANSWER = "no_answer"
    HANDSHAKE_INCOMPLETE = "handshake_incomplete"
    PMTUD_BLACK_HOLE = "pmtud_black_hole"
    ZERO_WINDOW_STALL = "zero_window_stall"
    RESET_BY_SERVER = "reset_by_server"
    RESET_BY_CLIENT = "reset_by_client"
    HEAVY_LOSS = "heavy_loss"
    COMPLETED_NORMALLY = "completed_normally"
    PMTUD_WORKING = "pmtud_working"
    SLOW_HANDSHAKE = "slow_handshake"
    TRUNCATED = "truncated"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        """A few words, for the first line of a block, a subject line or a plot title."""
        return _VERDICT_TEXT[self][0]

    @property
    def explanation(self) -> str:
        """One paragraph: what the verdict means and what to do or check next."""
        return _VERDICT_TEXT[self][1]


_VERDICT_TEXT: Final[dict[Verdict, tuple[str, str]]] = {
    Verdict.REFUSED: (
        "connection refused",
        "The server side answered the SYN with a RST (RFC 9293 §3.5.2): nothing listens on "
        "that port, or a firewall rejects the connection with a forged reset. The host was "
        "reachable; check the port number, whether the service is running, and "
        "'reject with tcp reset' rules on the way.",
    ),
    Verdict.ICMP_UNREACHABLE: (
        "ICMP unreachable",
        "A router or the destination host answered with ICMP destination unreachable (RFC 792, "
        "RFC 4443 §3.1) quoting this connection's segment, and nothing came back from the peer "
        "after it. The code says why: no route, host or port unreachable, or administratively "
        "prohibited (a firewall's 'reject with icmp'). The address in the error names the "
        "router that gave up.",
    ),
    Verdict.ICMP_TIME_EXCEEDED: (
        "ICMP time exceeded",
        "A router discarded this connection's segment because its TTL or hop limit ran out "
        "(RFC 792, RFC 4443 §3.3) and nothing came back from the peer after it: a routing loop, "
        "or a TTL set too small by the sender. The address in the error names the router.",
    ),
    Verdict.NO_ANSWER: (
        "no answer to SYN",
        "The client's SYN got neither a SYN-ACK, a RST nor an ICMP error, although it was "
        "retransmitted or the capture went on past the first retransmission timeout (1 s, "
        "RFC 6298 §2.1). The SYN (or its answer) is being dropped silently: a firewall with a "
        "'drop' rule, a wrong route, a host that is down, or a full listen queue. A capture "
        "at the server tells whether the SYN arrives.",
    ),
    Verdict.HANDSHAKE_INCOMPLETE: (
        "handshake not completed",
        "The server answered with a SYN-ACK but the client never acknowledged it (RFC 9293 "
        "§3.5), although the SYN-ACK was retransmitted or the capture went on past a "
        "retransmission timeout: the SYN-ACK is lost on the way back (asymmetric routing, a "
        "stateful firewall that did not see the SYN), or the client gave up.",
    ),
    Verdict.PMTUD_BLACK_HOLE: (
        "PMTUD black hole suspected",
        "Small packets pass but full-size ones do not, and no ICMP 'fragmentation needed' "
        "(RFC 1191) or 'packet too big' (RFC 4443 §3.2, RFC 8201) reached the sender to make it "
        "send smaller segments: a link on the path has a smaller MTU and a firewall drops the "
        "ICMP that path MTU discovery relies on. At the sender this shows as full-size "
        "segments retransmitted and never acknowledged; at the receiver as silence after the "
        "handshake and request, until someone times out. At the receiver a server that simply "
        "takes too long looks the same, so confirm with a capture at the sender or a "
        "full-size ping with DF set. Fixes: allow ICMP type 3 code 4 / ICMPv6 type 2, clamp "
        "the MSS on the tunnel, or enable packetization-layer PMTUD (RFC 4821, "
        "net.ipv4.tcp_mtu_probing).",
    ),
    Verdict.ZERO_WINDOW_STALL: (
        "receiver zero-window stall",
        "The receiver advertised a zero window (RFC 9293 §3.8.6.1) for a long time: its "
        "application stopped reading, so the sender had to wait. The network is not at fault; "
        "look at the receiving application (blocked, overloaded, or waiting for something "
        "else).",
    ),
    Verdict.RESET_BY_SERVER: (
        "reset by server",
        "The server side sent a RST (RFC 9293 §3.5.2) while the connection was in use (before "
        "both sides had closed with FIN and all data was acknowledged): the server application "
        "aborted (crash, timeout, closed with unread data, SO_LINGER 0), or a middlebox on "
        "its side injected the reset. The server's logs usually say why.",
    ),
    Verdict.RESET_BY_CLIENT: (
        "reset by client",
        "The client side sent a RST (RFC 9293 §3.5.2) while the connection was in use: the "
        "client application aborted it (a timeout, the user cancelled, closed with unread "
        "data) or a middlebox on its side injected the reset.",
    ),
    Verdict.HEAVY_LOSS: (
        "heavy loss",
        "Many data segments had to be sent again (RFC 6298 timeouts, RFC 5681 fast "
        "retransmits): the path drops packets (congestion, a bad link, a policer), which "
        "slows the transfer as TCP backs off. The counts per direction say which way the loss "
        "happens; captures at both ends tell where.",
    ),
    Verdict.COMPLETED_NORMALLY: (
        "completed normally",
        "The handshake completed, both sides closed with FIN (RFC 9293 §3.6) and every data "
        "byte was acknowledged.",
    ),
    Verdict.PMTUD_WORKING: (
        "PMTUD working",
        "A router reported a smaller path MTU (ICMP 'fragmentation needed', RFC 1191, or "
        "ICMPv6 'packet too big', RFC 8201) and the sender adapted: it sent smaller segments "
        "or the data got through after it. Nothing to fix, though each such event costs a "
        "round trip.",
    ),
    Verdict.SLOW_HANDSHAKE: (
        "slow handshake",
        "The handshake took far longer than the connection's round-trip time, or over a "
        "second: a lost and retransmitted SYN or SYN-ACK (the first retransmission waits "
        "1 s, RFC 6298 §2.1), an overloaded server, or a middlebox inspecting new "
        "connections.",
    ),
    Verdict.TRUNCATED: (
        "cannot conclude: capture incomplete",
        "The capture does not hold enough of the connection to judge it: its start (the SYN) "
        "or its end is missing, or it ends too soon after the last event to tell what "
        "happened next. Capture longer, or from before the connection opens.",
    ),
    Verdict.UNKNOWN: (
        "unknown",
        "The capture holds the connection, but the facts fit none of the analyzer's rules, "
        "so it does not guess; the detail says what did not fit.",
    ),
}


@dataclass(frozen=True, slots=True)
class PacketRef:
    """One packet: its number (from 1) and time (ns from the capture's first packet)."""

    packet: int
    time_ns: int


@dataclass(frozen=True, slots=True)
class Evidence:
    """A packet that supports a finding, and what it shows."""

    packet: int
    time_ns: int
    what: str


@dataclass(frozen=True, slots=True)
class Finding:
    """A verdict applied to one connection, with the evidence for it."""

    verdict: Verdict
    #: One line of specifics: which side, how much, how long.
    detail: str
    vantage: Vantage
    #: The endpoint whose data the finding is about; None when it is not about data.
    data_from: Side | None
    evidence: tuple[Evidence, ...]

    @property
    def label(self) -> str:
        return self.verdict.label


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An address (text form) and a port."""

    address: str
    port: int

    def __str__(self) -> str:
        # RFC 3986 §3.2.2: an IPv6 literal is bracketed when a port follows.
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class Handshake:
    """The three-way handshake (RFC 9293 §3.5) as far as the capture holds it."""

    #: The client's first SYN.
    syn: PacketRef | None
    #: The server's first SYN-ACK.
    syn_ack: PacketRef | None
    #: The client's first ACK after the first SYN-ACK (data or not): the handshake's end.
    ack: PacketRef | None
    #: SYN segments from the client (first plus retransmissions).
    syns: int
    #: SYN-ACK segments from the server.
    syn_acks: int
    #: Round-trip time from the handshake: SYN to the ACK of the SYN-ACK, which is the
    #: path's RTT wherever the capture was taken (at the client SYN→SYN-ACK dominates, at
    #: the server SYN-ACK→ACK). None when the SYN or SYN-ACK was retransmitted: such a
    #: sample is ambiguous (Karn's rule, RFC 6298 §3).
    rtt_ns: int | None

    @property
    def syn_retries(self) -> int:
        return max(0, self.syns - 1)

    @property
    def syn_ack_retries(self) -> int:
        return max(0, self.syn_acks - 1)

    @property
    def syn_to_syn_ack_ns(self) -> int | None:
        if self.syn is None or self.syn_ack is None:
            return None
        return self.syn_ack.time_ns - self.syn.time_ns

    @property
    def syn_ack_to_ack_ns(self) -> int | None:
        if self.syn_ack is None or self.ack is None:
            return None
        return self.ack.time_ns - self.syn_ack.time_ns

    @property
    def duration_ns(self) -> int | None:
        """First SYN to the handshake's end (to the SYN-ACK when no ACK was seen).

        This is what the slow-handshake rule measures: at the client it is SYN→SYN-ACK
        plus a negligible local delay; at the server, where SYN→SYN-ACK is only the
        server's own delay, it still includes the round trip.
        """
        if self.syn is None:
            return None
        end = self.ack if self.ack is not None else self.syn_ack
        return None if end is None else end.time_ns - self.syn.time_ns


@dataclass(frozen=True, slots=True)
class Retransmission:
    """A data segment that repeats sequence space (or fills a gap too late to be reordering)."""

    packet: int
    time_ns: int
    #: Relative sequence number of the first byte.
    seq: int
    #: Payload bytes.
    length: int
    #: The first transmission of these bytes is in the capture. False: the bytes filled a
    #: gap long after later data arrived, so the original was lost before the capture
    #: point (the receiver's view of upstream loss).
    original_seen: bool
    #: Why the retransmission was not needed, when the capture shows it; None otherwise.
    spurious_cause: SpuriousCause | None
    #: Full-size: payload ≥ the sending MSS minus the 40 bytes TCP options may take
    #: (RFC 9293 §3.7.1); GSO super-segments above the MSS count as full-size.
    full_size: bool
    #: Sent again smaller after an ICMP too-big about this sender, of data sent before
    #: it or while the sender recovered from it (until the peer acknowledged all it had
    #: sent when the ICMP came): path MTU discovery at work (RFC 1191 §6.5, RFC 8201
    #: §5.4), not a loss.
    pmtud: bool

    @property
    def spurious(self) -> bool:
        """The original arrived after all (see `spurious_cause`): not a loss."""
        return self.spurious_cause is not None


@dataclass(frozen=True, slots=True)
class SackReport:
    """An ACK carrying SACK blocks (RFC 2018 §3)."""

    packet: int
    time_ns: int
    #: (left, right) edges, relative in the data sender's numbering; right is exclusive.
    blocks: tuple[tuple[int, int], ...]
    #: The first block reports bytes received twice (D-SACK, RFC 2883 §4): it lies below
    #: the ACK number or inside the second block.
    dsack: bool = False


@dataclass(frozen=True, slots=True)
class ZeroWindow:
    """A period during which one endpoint advertised a zero receive window."""

    #: The first segment advertising window 0.
    start: PacketRef
    #: The first later segment from the same endpoint advertising a non-zero window;
    #: None when the window was still closed at the connection's last packet.
    end: PacketRef | None
    #: Until `end`, or until the last packet of the connection when it never reopened.
    duration_ns: int


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP or ICMPv6 error quoting one of this connection's segments."""

    packet: int
    time_ns: int
    version: Literal[4, 6]
    type: int
    code: int
    kind: IcmpKind
    #: Words for type and code, e.g. "port unreachable".
    description: str
    #: Next-hop MTU (RFC 1191 §4) or Packet Too Big MTU (RFC 4443 §3.2); None otherwise.
    mtu: int | None
    #: Source address of the error: the router or host that sent it.
    reporter: str
    #: The endpoint whose segment the error quotes (the one it was sent to).
    about: Side
    #: Relative sequence number of the quoted segment; None when not quoted.
    quoted_seq: int | None
    #: Payload bytes of the quoted segment, from its IP header; None when not quoted.
    quoted_length: int | None
    #: The first later data segment from `about` that fits the reported MTU.
    fitting_segment_after: PacketRef | None
    #: The first later ACK from the peer covering the quoted segment's first byte.
    acked_after: PacketRef | None


@dataclass(frozen=True, slots=True)
class Direction:
    """What one endpoint sent, and how its peer acknowledged it.

    `mss`, `window_scale` and `sack_permitted` are what this endpoint announced in its
    SYN (what it can *receive*); `send_mss` is what it may *send*: the peer's MSS.
    Acknowledgment facts (`duplicate_acks`, `sack`, `zero_windows`) are about ACKs and
    windows this endpoint *sent*.
    """

    sender: Side
    #: TCP segments sent (all, including pure ACKs).
    packets: int
    #: Segments carrying payload (zero-window probes and keepalives excluded).
    data_segments: int
    #: Sum of payload lengths, retransmissions included.
    payload_bytes: int
    #: Distinct bytes of sequence space carried (retransmissions counted once).
    unique_bytes: int
    #: Data segments counted in sending-MSS units: a GSO super-segment of n MSS counts n,
    #: as it left the sender's NIC as n segments. Loss rates use this.
    data_mss_units: int
    largest_segment: int
    full_size_segments: int
    mss: int | None
    window_scale: int | None
    sack_permitted: bool
    #: The MSS this endpoint sends with: the peer's announced MSS, else RFC 9293 §3.7.1's
    #: default (536 for IPv4, 1220 for IPv6).
    send_mss: int
    #: Largest receive window advertised, scaled when both SYNs carried window scale.
    max_window: int
    retransmissions: tuple[Retransmission, ...]
    retransmitted_bytes: int
    out_of_order: tuple[PacketRef, ...]
    #: Probes sent while the peer's window was zero: one new byte, or (Linux) a bare
    #: segment one below the next sequence number (RFC 9293 §3.8.6.1).
    zero_window_probes: int
    #: Keepalives sent (RFC 9293 §3.8.4): a bare or one-byte segment one below the next
    #: sequence number while the peer's window is open.
    keepalives: int
    #: Duplicate ACKs this endpoint sent (same ACK and window, no data, data outstanding).
    duplicate_acks: tuple[PacketRef, ...]
    #: ACKs with SACK blocks this endpoint sent.
    sack: tuple[SackReport, ...]
    #: Zero-window periods this endpoint advertised.
    zero_windows: tuple[ZeroWindow, ...]
    #: Median time from one of this endpoint's data segments to the peer's first ACK
    #: covering it, over segments never retransmitted (Karn, RFC 6298 §3). At the sender
    #: this is the RTT; at the receiver, the receiver's own ACK delay.
    ack_rtt_median_ns: int | None
    ack_rtt_samples: int
    #: Highest relative sequence number the peer acknowledged (bytes acked + 1).
    acked_seq: int | None
    #: The peer's first ACK covering everything this endpoint had sent, after its last
    #: new data; None when the end of its data was never acknowledged (or none was sent).
    all_acked_at: PacketRef | None
    first_data: PacketRef | None
    last_data: PacketRef | None
    #: The last segment of any kind this endpoint sent.
    last_segment: PacketRef | None
    fin: PacketRef | None
    rst: PacketRef | None

    @property
    def retransmission_count(self) -> int:
        return len(self.retransmissions)


@dataclass(frozen=True, slots=True)
class CloseEvent:
    """A side's first FIN or first RST, and how far the transfer had got then."""

    side: Side
    kind: CloseKind
    packet: int
    time_ns: int
    #: Payload bytes each side had sent by then (highest relative sequence number - 1).
    client_bytes: int
    server_bytes: int


@dataclass(frozen=True, slots=True)
class Close:
    """How the connection ended: each side's first FIN and first RST, in packet order."""

    events: tuple[CloseEvent, ...]

    @property
    def first(self) -> CloseEvent | None:
        """The event that began the end; None when neither side sent FIN or RST."""
        return self.events[0] if self.events else None

    @property
    def by(self) -> Side | None:
        first = self.first
        return None if first is None else first.side

    @property
    def how(self) -> CloseKind | None:
        first = self.first
        return None if first is None else first.kind

    def event(self, side: Side, kind: CloseKind) -> CloseEvent | None:
        for event in self.events:
            if event.side is side and event.kind is kind:
                return event
        return None


class TimeSequence:
    """Per-packet columns of one connection, for time-sequence (Stevens) graphs.

    Row *i* describes the connection's *i*-th TCP segment in eight signed 64-bit
    integers, packed row by row in `data` (native byte order), so a million-segment
    connection costs 64 MB rather than millions of objects. The column properties are
    read-only strided views of it; with numpy,
    ``numpy.frombuffer(series.data, dtype=numpy.int64).reshape(-1, 8)`` reads all
    columns without copying (column order as below).

    0. `packets`: packet number;  1. `times_ns`: time from the capture's first packet;
    2. `sides`: 0 sent by the client, 1 by the server;
    3. `seqs`: relative unwrapped sequence number, in the sender's numbering;
    4. `lengths`: payload bytes;
    5. `acks`: relative unwrapped ACK number in the *peer's* numbering, or -1 when the
       segment has no ACK flag;
    6. `windows`: advertised window, scaled when both SYNs carried window scale;
    7. `flags`: the TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10, ...).
    """

    __slots__ = ("_data",)
    _data: bytes

    #: Integers per row.
    WIDTH: Final = 8

    def __init__(self, data: bytes) -> None:
        if len(data) % (8 * self.WIDTH):
            raise ValueError("time sequence data is not a whole number of 8-column rows")
        object.__setattr__(self, "_data", bytes(data))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("TimeSequence is immutable")

    @property
    def data(self) -> bytes:
        """The packed rows."""
        return self._data

    def _column(self, index: int) -> memoryview:
        return memoryview(self._data).cast("q")[index :: self.WIDTH]

    def __len__(self) -> int:
        return len(self._data) // (8 * self.WIDTH)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TimeSequence) and self._data == other._data

    def __hash__(self) -> int:
        return hash(self._data)

    def __repr__(self) -> str:
        return f"TimeSequence({len(self)} rows)"

    @property
    def packets(self) -> memoryview:
        return self._column(0)

    @property
    def times_ns(self) -> memoryview:
        return self._column(1)

    @property
    def sides(self) -> memoryview:
        return self._column(2)

    @property
    def seqs(self) -> memoryview:
        return self._column(3)

    @property
    def lengths(self) -> memoryview:
        return self._column(4)

    @property
    def acks(self) -> memoryview:
        return self._column(5)

    @property
    def windows(self) -> memoryview:
        return self._column(6)

    @property
    def flags(self) -> memoryview:
        return self._column(7)


@dataclass(frozen=True, slots=True)
class ConnectionFacts:
    """Everything measured about one TCP connection, before any conclusion is drawn."""

    #: tshark's ``tcp.stream``.
    index: int
    ip_version: Literal[4, 6]
    client: Endpoint
    server: Endpoint
    roles_from: RoleSource
    #: First and last packet of the connection (TCP segments and tied ICMP errors).
    first: PacketRef
    last: PacketRef
    #: TCP segments (ICMP errors not included).
    packets: int
    handshake: Handshake
    client_data: Direction
    server_data: Direction
    close: Close
    icmp_errors: tuple[IcmpError, ...]
    #: When the whole capture ended (its last packet), for "how long after" questions.
    capture_end_ns: int
    series: TimeSequence

    def direction(self, sender: Side) -> Direction:
        """What `sender` sent."""
        return self.client_data if sender is Side.CLIENT else self.server_data

    def endpoint(self, side: Side) -> Endpoint:
        return self.client if side is Side.CLIENT else self.server

    @property
    def duration_ns(self) -> int:
        return self.last.time_ns - self.first.time_ns


@dataclass(frozen=True, slots=True)
class Connection(ConnectionFacts):
    """A connection's facts and the analyzer's conclusion about them.

    `verdict` is the primary finding: the first rule, in the order of
    ``wirecap.analysis.verdicts.RULES``, that matched. `also` holds the other rules that
    matched, in the same order (e.g. completed normally, also a slow handshake).
    """

    verdict: Finding
    also: tuple[Finding, ...]

    @classmethod
    def judged(
        cls, facts: ConnectionFacts, verdict: Finding, also: tuple[Finding, ...]
    ) -> Connection:
        """The connection `facts` describe, with its findings."""
        values = {f.name: getattr(facts, f.name) for f in dataclasses.fields(ConnectionFacts)}
        return cls(**values, verdict=verdict, also=also)

    @property
    def findings(self) -> tuple[Finding, ...]:
        """The primary finding, then the secondary ones."""
        return (self.verdict, *self.also)


@dataclass(frozen=True, slots=True)
class Report:
    """The analysis of one capture: file-level counts and every TCP connection."""

    #: Every packet in the file.
    packets: int
    #: LINKTYPE_* of the capture's interfaces, in order of appearance, without repeats.
    linktypes: tuple[int, ...]
    #: Timestamp of the first packet (ns since the epoch); None for an empty capture.
    start_epoch_ns: int | None
    #: Last packet's time relative to the first (0 for an empty capture).
    duration_ns: int
    tcp_packets: int
    udp_packets: int
    #: ICMP and ICMPv6 messages, errors tied to a connection included.
    icmp_packets: int
    #: ICMP errors quoting a TCP segment (tied to a connection).
    icmp_errors_tied: int
    #: IP packets of other protocols, and non-first fragments.
    other_ip_packets: int
    #: Frames that are not IP (ARP, LLDP, ...).
    non_ip_packets: int
    #: Frames cut or malformed before their transport header could be read.
    undecodable_packets: int
    #: Packets on interfaces whose link type wirecap does not decode.
    unsupported_linktype_packets: int
    connections: tuple[Connection, ...]
    thresholds: Thresholds

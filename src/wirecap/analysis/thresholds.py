"""The named thresholds every analysis rule uses, with their defaults and reasons.

`Thresholds` collects them into one frozen value that callers may override
(``Thresholds(heavy_loss_rate=0.05)``); the module constants are the defaults.
Times are integer nanoseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from wirecap.errors import OptionError

__all__ = [
    "BLACK_HOLE_MIN_RETRANSMISSIONS",
    "BLACK_HOLE_SILENCE_NS",
    "DEFAULT_MSS_V4",
    "DEFAULT_MSS_V6",
    "DEFAULT_THRESHOLDS",
    "FULL_SIZE_SLACK",
    "HEAVY_LOSS_MIN_RETRANSMISSIONS",
    "HEAVY_LOSS_RATE",
    "MAX_EVIDENCE",
    "MIN_PATH_MTU",
    "NO_ANSWER_WAIT_NS",
    "OUT_OF_ORDER_WINDOW_NS",
    "SLOW_HANDSHAKE_FLOOR_NS",
    "SLOW_HANDSHAKE_MIN_RTT_SAMPLES",
    "SLOW_HANDSHAKE_NS",
    "SLOW_HANDSHAKE_RTT_FACTOR",
    "ZERO_WINDOW_STALL_NS",
    "Thresholds",
]

_MS: Final = 1_000_000
_S: Final = 1_000_000_000

#: Heavy loss: at least this share of a direction's data segments were retransmitted.
#: 2 % already costs a Reno/CUBIC flow most of its throughput (RFC 5681's halving per loss).
HEAVY_LOSS_RATE: Final = 0.02
#: ... and at least this many retransmissions: on a short connection one lost segment
#: exceeds any rate, and one timeout says nothing about the path.
HEAVY_LOSS_MIN_RETRANSMISSIONS: Final = 3

#: Slow handshake: SYN to handshake end above this, whatever the RTT. The first SYN
#: retransmission waits 1 s (RFC 6298 §2.1), so a lost SYN always crosses it.
SLOW_HANDSHAKE_NS: Final = 1 * _S
#: ... or above this many times the connection's median ACK RTT ...
SLOW_HANDSHAKE_RTT_FACTOR: Final = 5
#: ... when that median rests on at least this many samples ...
SLOW_HANDSHAKE_MIN_RTT_SAMPLES: Final = 3
#: ... and the handshake took at least this long: on loopback or a LAN, 5× a 20 µs RTT
#: is scheduling noise, not a slow handshake anyone waits for.
SLOW_HANDSHAKE_FLOOR_NS: Final = 100 * _MS

#: An unanswered SYN (or SYN-ACK) is only "no answer" once the capture went on this long
#: after it, or it was retransmitted: RFC 6298 §2.1's initial RTO of 1 s (§5.7: 3 s when
#: the SYN was lost) is when a sender first gives an answer up for lost.
NO_ANSWER_WAIT_NS: Final = 1 * _S

#: Black hole, sender's view: the first unacknowledged byte was sent again at least this
#: many times, always full-size. One retransmission can be ordinary loss; a second, after
#: the backed-off RTO (RFC 6298 §5.5), rarely is.
BLACK_HOLE_MIN_RETRANSMISSIONS: Final = 2
#: Black hole, receiver's view: after its request was acknowledged, no data from the peer
#: for at least this long (until a close or the capture's end). By then a sender whose
#: first flight was lost has retransmitted at least once (RTO ≥ 1 s before any RTT
#: sample, RFC 6298 §2.1; Linux's 200 ms minimum after one), so a healthy path would have
#: delivered something.
BLACK_HOLE_SILENCE_NS: Final = 2 * _S
#: The smallest path MTU worth assuming: IPv6's minimum link MTU (RFC 8200 §5), which is
#: also below every common tunnel MTU. Segments that fit it cross (nearly) every path, so
#: silence on a connection whose MSS fits it is no black hole.
MIN_PATH_MTU: Final = 1280

#: A segment is full-size when its payload is at least the sending MSS minus this: the
#: MSS excludes TCP options (RFC 9293 §3.7.1, RFC 6691), which take up to 40 bytes and
#: reduce the payload of a full segment by their length.
FULL_SIZE_SLACK: Final = 40
#: RFC 9293 §3.7.1 (MUST-15): the send MSS to assume when a SYN carries no MSS option.
DEFAULT_MSS_V4: Final = 536
DEFAULT_MSS_V6: Final = 1220

#: A data segment that fills a gap within this long of the data above the gap is
#: reordering, not a retransmission of a segment lost before the capture point. It is
#: Wireshark's rule (tcp.analysis.out_of_order): the handshake RTT when known, else 3 ms.
OUT_OF_ORDER_WINDOW_NS: Final = 3 * _MS

#: Zero-window stall: the receiver kept its window closed at least this long. Well past
#: Linux's 200 ms minimum RTO, so the sender was blocked through several probes
#: (RFC 9293 §3.8.6.1) rather than paced for a moment.
ZERO_WINDOW_STALL_NS: Final = 1 * _S

#: Evidence entries kept per finding: enough to find the spot in Wireshark.
MAX_EVIDENCE: Final = 12


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The thresholds one analysis runs with (defaults: the module constants)."""

    heavy_loss_rate: float = HEAVY_LOSS_RATE
    heavy_loss_min_retransmissions: int = HEAVY_LOSS_MIN_RETRANSMISSIONS
    slow_handshake_ns: int = SLOW_HANDSHAKE_NS
    slow_handshake_rtt_factor: float = SLOW_HANDSHAKE_RTT_FACTOR
    slow_handshake_min_rtt_samples: int = SLOW_HANDSHAKE_MIN_RTT_SAMPLES
    slow_handshake_floor_ns: int = SLOW_HANDSHAKE_FLOOR_NS
    no_answer_wait_ns: int = NO_ANSWER_WAIT_NS
    black_hole_min_retransmissions: int = BLACK_HOLE_MIN_RETRANSMISSIONS
    black_hole_silence_ns: int = BLACK_HOLE_SILENCE_NS
    min_path_mtu: int = MIN_PATH_MTU
    full_size_slack: int = FULL_SIZE_SLACK
    out_of_order_window_ns: int = OUT_OF_ORDER_WINDOW_NS
    zero_window_stall_ns: int = ZERO_WINDOW_STALL_NS
    max_evidence: int = MAX_EVIDENCE

    def __post_init__(self) -> None:
        if not 0.0 < self.heavy_loss_rate <= 1.0:
            raise OptionError(f"heavy loss rate {self.heavy_loss_rate} is outside (0, 1]")
        if self.slow_handshake_rtt_factor <= 0:
            raise OptionError("the slow-handshake RTT factor must be positive")
        if not 68 <= self.min_path_mtu <= 65535:
            # RFC 791: every IPv4 module must forward 68-byte datagrams unfragmented.
            raise OptionError(f"minimum path MTU {self.min_path_mtu} is outside 68..65535")
        counts = (
            self.heavy_loss_min_retransmissions,
            self.slow_handshake_min_rtt_samples,
            self.black_hole_min_retransmissions,
            self.max_evidence,
        )
        if any(n < 1 for n in counts):
            raise OptionError("minimum counts and the evidence limit must be at least 1")
        durations = (
            self.slow_handshake_ns,
            self.slow_handshake_floor_ns,
            self.no_answer_wait_ns,
            self.black_hole_silence_ns,
            self.out_of_order_window_ns,
            self.zero_window_stall_ns,
        )
        if any(ns < 0 for ns in durations) or not 0 <= self.full_size_slack <= 40:
            raise OptionError("durations are never negative; the full-size slack is 0..40")


DEFAULT_THRESHOLDS: Final = Thresholds()

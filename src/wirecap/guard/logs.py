"""Log lines, as text in tcpcap's format or as JSON lines, and their rate limit. No I/O.

tcpcap printed one line per SYN, prefixed with the UTC time::

    2021-04-28 15:28:05: New Connection: 192.0.2.56:5973 -> 10.0.0.5:80
    2021-04-28 15:28:05: Port scan detected: 192.0.2.56 -> 10.0.0.5 on ports 22,80,443
    2021-04-28 15:28:05: BLOCK IP: 192.0.2.56

The text format keeps those three lines word for word at their start (scripts grep
them) and adds details after them; ``json`` writes one object per line with an
``event`` key. A flood would print a line per SYN, so connection lines pass a token
bucket; what it holds back is counted and reported in one summary line.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from wirecap.guard.detectors import Detection, Reason
from wirecap.guard.policy import Block, Spared
from wirecap.guard.syn import SynObserved, format_address

__all__ = ["LineLimiter", "LogFormatter"]

_NS = 1_000_000_000
_FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


def _flags(bits: int) -> str:
    return ",".join(name for i, name in enumerate(_FLAG_NAMES) if bits & (1 << i))


def _endpoint(address: bytes, port: int) -> str:
    text = format_address(address)
    return f"[{text}]:{port}" if len(address) == 16 else f"{text}:{port}"


class LineLimiter:
    """A token bucket for log lines: ``burst`` at once, then ``rate`` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self._ns_per_token = _NS / rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last: int | None = None
        #: Lines held back since the last :meth:`take_suppressed`.
        self.suppressed = 0

    def allow(self, now_ns: int) -> bool:
        if self._last is not None and now_ns > self._last:
            refill = (now_ns - self._last) / self._ns_per_token
            self._tokens = min(self._burst, self._tokens + refill)
        self._last = now_ns if self._last is None else max(self._last, now_ns)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        count, self.suppressed = self.suppressed, 0
        return count


class LogFormatter:
    """Renders the guard's events as lines in the chosen format."""

    def __init__(self, fmt: Literal["text", "json"] = "text") -> None:
        self.format = fmt

    def _line(self, ts_ns: int, text: str, fields: dict[str, Any]) -> str:
        if self.format == "json":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts_ns // _NS))
            micro = (ts_ns % _NS) // 1000
            return json.dumps({"time": f"{stamp}.{micro:06d}Z", **fields}, sort_keys=False)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ns // _NS))
        return f"{stamp}: {text}"

    def connection(self, syn: SynObserved) -> str:
        src, dst = _endpoint(syn.src, syn.sport), _endpoint(syn.dst, syn.dport)
        text = f"New Connection: {src} -> {dst}"
        if syn.flags != 0x02:
            text += f" flags {_flags(syn.flags)}"
        return self._line(
            syn.ts_ns,
            text,
            {
                "event": "connection",
                "src": format_address(syn.src),
                "sport": syn.sport,
                "dst": format_address(syn.dst),
                "dport": syn.dport,
                "flags": _flags(syn.flags),
            },
        )

    def detection(self, detection: Detection) -> str:
        src = format_address(detection.source)
        target = format_address(detection.target) if detection.target else None
        if detection.reason is Reason.PORT_SCAN:
            ports = detection.detail.rpartition(": ")[2]
            text = f"Port scan detected: {src} -> {target} on ports {ports}"
        else:
            label = {Reason.SYN_RATE: "SYN flood", Reason.HALF_OPEN: "Half-open flood"}.get(
                detection.reason, str(detection.reason)
            )
            text = f"{label} detected: {src}" + (f" -> {target}" if target else "")
            text += f" ({detection.detail})"
        fields: dict[str, Any] = {
            "event": "detection",
            "reason": detection.reason.value,
            "src": src,
            "detail": detection.detail,
        }
        if target is not None:
            fields["dst"] = target
        return self._line(detection.ts_ns, text, fields)

    def block(self, block: Block, now_ns: int, *, dry_run: bool) -> str:
        address = format_address(block.address)
        prefix = "DRY RUN, would block" if dry_run else "BLOCK IP:"
        text = (
            f"{prefix} {address} for {block.timeout_s} s "
            f"({block.reason.value}, offence {block.offence})"
        )
        return self._line(
            now_ns,
            text,
            {
                "event": "block",
                "address": address,
                "timeout": block.timeout_s,
                "reason": block.reason.value,
                "offence": block.offence,
                "dry_run": dry_run,
            },
        )

    def spared(self, spared: Spared, now_ns: int) -> str:
        address = format_address(spared.address)
        return self._line(
            now_ns,
            f"Not blocking {address} ({spared.reason.value}): {spared.why}",
            {
                "event": "spared",
                "address": address,
                "reason": spared.reason.value,
                "why": spared.why,
            },
        )

    def unblock(self, address: bytes, now_ns: int, why: str) -> str:
        text_address = format_address(address)
        return self._line(
            now_ns,
            f"UNBLOCK IP: {text_address} ({why})",
            {"event": "unblock", "address": text_address, "why": why},
        )

    def suppressed(self, count: int, now_ns: int) -> str:
        return self._line(
            now_ns,
            f"{count} connection lines suppressed by the log rate limit",
            {"event": "suppressed", "count": count},
        )

    def message(self, now_ns: int, text: str, event: str = "message") -> str:
        return self._line(now_ns, text, {"event": event, "message": text})

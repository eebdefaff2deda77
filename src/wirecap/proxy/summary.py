"""The record of one proxied connection: what was asked, what happened, what was captured.

`ConnectionSummary` is a frozen value the server fills in when a connection ends.
It answers first what the old tool never said (connectcap §8 item 18): whether
the connect worked and, if not, why; then who, where from, where to, how much,
and how complete the capture is. `render_text` writes it for people (the mail
body), `to_json`/`from_json` for the spool, so a summary outlives a restart.

Times are integer nanoseconds: wall clock (since the epoch) for start and stop,
a monotonic difference for the connect time.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
from dataclasses import dataclass
from typing import Any, Final

from wirecap.errors import FormatError

__all__ = [
    "JSON_VERSION",
    "ConnectOutcome",
    "ConnectionSummary",
    "Endpoint",
    "StopReason",
    "from_json",
    "headline",
    "render_text",
    "to_json",
]

#: Bumped when the JSON layout changes incompatibly; `from_json` refuses others.
JSON_VERSION: Final = 1
#: A spooled summary is a few hundred bytes; anything far larger is not one of ours.
MAX_JSON_BYTES: Final = 64 * 1024


class ConnectOutcome(enum.StrEnum):
    """How the one connect attempt to the origin ended."""

    #: The TCP handshake completed; the client got its 200.
    ESTABLISHED = "established"
    #: The origin (or a firewall for it) answered the SYN with a RST.
    REFUSED = "refused"
    #: An ICMP error or local routing said the address cannot be reached.
    UNREACHABLE = "unreachable"
    #: Nothing answered the SYN within the connect timeout.
    TIMEOUT = "timeout"
    #: The name did not resolve (NXDOMAIN, SERVFAIL, resolver timeout).
    DNS_FAILURE = "dns_failure"
    #: The name resolved, but to no address of a family the proxy may use.
    NO_ADDRESS = "no_address"
    #: The proxy's policy refused the destination (a prohibited address or port).
    PROHIBITED = "prohibited"
    #: The proxy itself failed before or while connecting (bind, socket, capture).
    LOCAL_ERROR = "local_error"
    #: The client went away, or the proxy shut down, before the connect finished.
    ABORTED = "aborted"

    @property
    def label(self) -> str:
        """A few words for a person (subject lines, the first line of the text)."""
        return _OUTCOME_LABELS[self]


_OUTCOME_LABELS: Final = {
    ConnectOutcome.ESTABLISHED: "connected",
    ConnectOutcome.REFUSED: "connection refused",
    ConnectOutcome.UNREACHABLE: "unreachable",
    ConnectOutcome.TIMEOUT: "connect timed out",
    ConnectOutcome.DNS_FAILURE: "DNS lookup failed",
    ConnectOutcome.NO_ADDRESS: "no usable address",
    ConnectOutcome.PROHIBITED: "destination not allowed",
    ConnectOutcome.LOCAL_ERROR: "proxy error",
    ConnectOutcome.ABORTED: "aborted before connecting",
}


class StopReason(enum.StrEnum):
    """Why the tunnel (and with it the capture) ended."""

    #: There never was a tunnel: the connect failed (see the outcome).
    CONNECT_FAILED = "connect_failed"
    #: The client closed its side and the close was relayed.
    CLIENT_CLOSED = "client_closed"
    #: The origin closed its side and the close was relayed.
    ORIGIN_CLOSED = "origin_closed"
    #: The client's connection was reset (RST) or failed with an error.
    CLIENT_RESET = "client_reset"
    #: The origin's connection was reset (RST) or failed with an error.
    ORIGIN_RESET = "origin_reset"
    #: Neither side sent anything for the idle timeout.
    IDLE_TIMEOUT = "idle_timeout"
    #: The proxy hit an error of its own while relaying or capturing.
    ERROR = "error"
    #: The proxy was shutting down.
    SHUTDOWN = "shutdown"


_STOP_LABELS: Final = {
    StopReason.CONNECT_FAILED: "never opened (connect failed)",
    StopReason.CLIENT_CLOSED: "client closed",
    StopReason.ORIGIN_CLOSED: "origin closed",
    StopReason.CLIENT_RESET: "client reset or failed",
    StopReason.ORIGIN_RESET: "origin reset or failed",
    StopReason.IDLE_TIMEOUT: "idle timeout",
    StopReason.ERROR: "proxy error",
    StopReason.SHUTDOWN: "proxy shut down",
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A host (name or address, IPv6 without brackets) and a port."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range")

    def __str__(self) -> str:
        # RFC 3986 §3.2.2: an IPv6 literal is bracketed when a port follows.
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ConnectionSummary:
    """Everything known about one proxied connection once it has ended."""

    #: The spool id of this connection (unique across restarts).
    connection_id: int
    #: The authenticated user; None when the proxy runs without authentication.
    user: str | None
    #: Where the CONNECT came from.
    client: Endpoint
    #: The target as the client asked for it (name or literal, and port).
    origin: Endpoint
    #: Every address the name resolved to, in resolver order (the literal for a literal).
    addresses: tuple[str, ...]
    #: The address and port the proxy connected to; None when it never tried.
    destination: Endpoint | None
    #: The proxy's bound source address and port; None when it never bound.
    source: Endpoint | None
    #: The interface the capture ran on; None without a capture.
    interface: str | None
    outcome: ConnectOutcome
    #: Why, in words (an errno name, the resolver's answer, ...); may be empty.
    detail: str
    #: SYN to handshake complete (or to failure), nanoseconds; None if never tried.
    connect_ns: int | None
    #: Wall-clock start (CONNECT received) and stop, nanoseconds since the epoch.
    start_ns: int
    stop_ns: int
    bytes_client_to_origin: int
    bytes_origin_to_client: int
    #: libpcap's counters (pcap_stats): received, dropped for lack of buffer space,
    #: dropped by the interface/driver.
    packets_captured: int
    dropped_by_kernel: int
    dropped_by_interface: int
    stop_reason: StopReason
    #: True when the capture hit `capture_limit` and kept only what fits.
    truncated: bool
    #: The capture size cap in bytes; None when unlimited.
    capture_limit: int | None
    #: The capture file's base name; None when nothing was captured.
    capture_file: str | None
    #: What `wirecap analyze` concluded from the capture (its verdict label and
    #: detail); None when there was nothing to analyse or the analysis failed.
    verdict: str | None = None
    verdict_detail: str | None = None

    def __post_init__(self) -> None:
        counters = (
            self.bytes_client_to_origin,
            self.bytes_origin_to_client,
            self.packets_captured,
            self.dropped_by_kernel,
            self.dropped_by_interface,
        )
        if self.connection_id < 0 or any(n < 0 for n in counters):
            raise ValueError("counters and ids are never negative")
        if self.connect_ns is not None and self.connect_ns < 0:
            raise ValueError("connect time is never negative")
        if self.capture_limit is not None and self.capture_limit <= 0:
            raise ValueError("a capture limit is positive (None means unlimited)")


# --- text ---------------------------------------------------------------------------


def _clean(text: str) -> str:
    """Text from the network or the OS, without controls that could garble a mail."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _wall(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{rest // 1000:06d} UTC"


def _ms(ns: int) -> str:
    return f"{ns / 1_000_000:.3f} ms"


def _duration(ns: int) -> str:
    return f"{ns / 1_000_000_000:.3f} s" if ns >= 1_000_000_000 else _ms(ns)


def headline(summary: ConnectionSummary) -> str:
    """``example.com:443 — connection refused``: the one line that says what happened."""
    return f"{_clean(str(summary.origin))} — {summary.outcome.label}"


def render_text(summary: ConnectionSummary, proxy_host: str) -> str:
    """The summary for a person: outcome and reason first, then the details.

    Lines end in a plain LF; the mail layer writes CRLF on the wire.
    """
    s = summary
    rows: list[tuple[str, str]] = []
    outcome = s.outcome.label
    if s.connect_ns is not None:
        outcome += f" after {_ms(s.connect_ns)}"
    rows.append(("Outcome", outcome))
    if s.detail:
        rows.append(("Reason", _clean(s.detail)))
    if s.verdict:
        rows.append(("Verdict", _clean(s.verdict)))
        if s.verdict_detail:
            rows.append(("Why", _clean(s.verdict_detail)))
    rows.append(("Tunnel", _STOP_LABELS[s.stop_reason]))
    rows.append(("Origin", _clean(str(s.origin))))
    if s.addresses and s.addresses != (s.origin.host,):
        rows.append(("Resolved to", ", ".join(_clean(a) for a in s.addresses)))
    rows.append(("Connected to", str(s.destination) if s.destination else "-"))
    rows.append(("Source", str(s.source) if s.source else "-"))
    rows.append(("Client", str(s.client)))
    rows.append(("User", _clean(s.user) if s.user is not None else "(none)"))
    rows.append(("Start", _wall(s.start_ns)))
    rows.append(("Stop", _wall(s.stop_ns)))
    rows.append(("Duration", _duration(max(0, s.stop_ns - s.start_ns))))
    rows.append(("Client → origin", f"{s.bytes_client_to_origin:,} bytes"))
    rows.append(("Origin → client", f"{s.bytes_origin_to_client:,} bytes"))
    if s.capture_file is None:
        rows.append(("Capture", "none"))
    else:
        rows.append(("Capture", _clean(s.capture_file)))
        rows.append(("Interface", _clean(s.interface) if s.interface else "-"))
        rows.append(("Packets", f"{s.packets_captured:,} captured"))
        dropped = f"{s.dropped_by_kernel:,} by the kernel, {s.dropped_by_interface:,} by the NIC"
        rows.append(("Dropped", dropped))
    width = max(len(label) for label, _ in rows) + 2
    lines = [
        f"{headline(s)}",
        f"Connection {s.connection_id} through proxy {_clean(proxy_host)}",
        "",
    ]
    lines += [f"{label + ':':<{width}}{value}" for label, value in rows]
    notes: list[str] = []
    if s.truncated:
        limit = f"{s.capture_limit:,} bytes" if s.capture_limit is not None else "its limit"
        notes.append(
            f"The capture was truncated at {limit}: later packets are missing or cut short."
        )
    if s.dropped_by_kernel or s.dropped_by_interface:
        notes.append("Packets were dropped while capturing: the capture is incomplete.")
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


# --- JSON ---------------------------------------------------------------------------

_ENDPOINT_FIELDS: Final = frozenset({"client", "origin", "destination", "source"})


def to_json(summary: ConnectionSummary) -> str:
    """The summary as one JSON object (field order as declared, plus a version)."""
    data: dict[str, Any] = {"version": JSON_VERSION}
    for field in dataclasses.fields(summary):
        value = getattr(summary, field.name)
        if field.name in _ENDPOINT_FIELDS:
            value = None if value is None else {"host": value.host, "port": value.port}
        elif isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        data[field.name] = value
    # ASCII with escapes: the file is valid UTF-8 whatever a name holds.
    return json.dumps(data, indent=1) + "\n"


class _Fields:
    """Typed access to a decoded JSON object; every mismatch is a FormatError."""

    def __init__(self, data: dict[str, Any], where: str = "summary JSON") -> None:
        self._data = data
        self._where = where

    def _get(self, key: str) -> object:
        if key not in self._data:
            raise FormatError(f"{self._where} lacks {key!r}")
        return self._data[key]

    def integer(self, key: str) -> int:
        value = self._get(key)
        # bool is an int subclass; true is not a byte count.
        if type(value) is not int:
            raise FormatError(f"{self._where} {key!r} is not an integer")
        return value

    def opt_integer(self, key: str) -> int | None:
        return None if self._get(key) is None else self.integer(key)

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise FormatError(f"{self._where} {key!r} is not a string")
        return value

    def opt_text(self, key: str) -> str | None:
        return None if self._get(key) is None else self.text(key)

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise FormatError(f"{self._where} {key!r} is not a boolean")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise FormatError(f"{self._where} {key!r} is not a list of strings")
        return tuple(value)

    def endpoint(self, key: str) -> Endpoint:
        value = self._get(key)
        if not isinstance(value, dict) or set(value) != {"host", "port"}:
            raise FormatError(f"{self._where} {key!r} is not a host and port")
        inner = _Fields(value, f"{self._where} {key!r}")
        port = inner.integer("port")
        if not 0 <= port <= 65535:
            raise FormatError(f"{self._where} {key!r} port out of range")
        return Endpoint(inner.text("host"), port)

    def opt_endpoint(self, key: str) -> Endpoint | None:
        return None if self._get(key) is None else self.endpoint(key)


def from_json(text: str | bytes) -> ConnectionSummary:
    """Parse what `to_json` wrote; anything else raises `FormatError` (a DecodeError)."""
    if len(text) > MAX_JSON_BYTES:
        raise FormatError(f"summary JSON larger than {MAX_JSON_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8
        raise FormatError(f"summary is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FormatError("summary JSON is not an object")
    f = _Fields(data)
    if data.get("version") != JSON_VERSION:
        raise FormatError(f"summary JSON version is not {JSON_VERSION}")
    expected = {field.name for field in dataclasses.fields(ConnectionSummary)} | {"version"}
    if unknown := set(data) - expected:
        raise FormatError(f"summary JSON has unknown fields {sorted(unknown)}")
    try:
        return ConnectionSummary(
            connection_id=f.integer("connection_id"),
            user=f.opt_text("user"),
            client=f.endpoint("client"),
            origin=f.endpoint("origin"),
            addresses=f.texts("addresses"),
            destination=f.opt_endpoint("destination"),
            source=f.opt_endpoint("source"),
            interface=f.opt_text("interface"),
            outcome=ConnectOutcome(f.text("outcome")),
            detail=f.text("detail"),
            connect_ns=f.opt_integer("connect_ns"),
            start_ns=f.integer("start_ns"),
            stop_ns=f.integer("stop_ns"),
            bytes_client_to_origin=f.integer("bytes_client_to_origin"),
            bytes_origin_to_client=f.integer("bytes_origin_to_client"),
            packets_captured=f.integer("packets_captured"),
            dropped_by_kernel=f.integer("dropped_by_kernel"),
            dropped_by_interface=f.integer("dropped_by_interface"),
            stop_reason=StopReason(f.text("stop_reason")),
            truncated=f.flag("truncated"),
            capture_limit=f.opt_integer("capture_limit"),
            capture_file=f.opt_text("capture_file"),
            # Absent in summaries written before the analyzer ran in the proxy.
            verdict=f.opt_text("verdict") if "verdict" in data else None,
            verdict_detail=f.opt_text("verdict_detail") if "verdict_detail" in data else None,
        )
    except ValueError as exc:  # an unknown enum value, or __post_init__'s checks
        raise FormatError(f"summary JSON: {exc}") from None

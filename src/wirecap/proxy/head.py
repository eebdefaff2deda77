"""The proxy's request head, in and out: a sans-IO parser and the response builders.

In: `HeadParser` takes bytes as they arrive (`feed`) and `next_result()` answers
`NEED_DATA`, a `RequestHead` or a `HeadError` (a 4xx/5xx status with its reason);
"need more data" and "the client sent garbage" are values, never exceptions. The
parser knows HTTP/1.1 message syntax only (RFC 9112 §2–§5); what a CONNECT proxy
wants of the head (method CONNECT, an authority-form target, one Host) is checked
afterwards by `connect_target()`, so the server can answer 405 before 407.

Out: `build_response()` for every error status (always `Content-Length`, always
`Connection: close`) and `build_connect_established()` for the 200 that opens the
tunnel, which has no framing headers at all (RFC 9110 §9.3.6).

Choices where the RFCs leave room:

- A bare LF ends a line (RFC 9112 §2.2 MAY): the head is never forwarded, so the
  request-smuggling concern behind strictness does not arise, and hand-typed
  requests (``nc`` without ``-C``) work. A CR not followed by LF is rejected.
- Up to `MAX_HEAD_BYTES` of empty lines before the request line are skipped
  (RFC 9112 §2.2 SHOULD ignore at least one).
- obs-fold and whitespace before the first field line are rejected with 400
  (RFC 9112 §5.2 and §2.2 allow rejecting).
- The request line needs exactly one SP between its three parts (RFC 9112 §3).
- IPv6 zone identifiers (``[fe80::1%eth0]`` or RFC 6874's ``%25eth0``) are kept:
  a link-local destination needs its interface.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

__all__ = [
    "MAX_HEADER_FIELDS",
    "MAX_HEAD_BYTES",
    "MAX_REQUEST_LINE",
    "NEED_DATA",
    "ConnectTarget",
    "HeadError",
    "HeadParser",
    "NeedData",
    "RequestHead",
    "build_connect_established",
    "build_response",
    "connect_target",
    "field_value",
    "parse_connect_target",
    "proxy_status",
]

#: The whole head: request line, field lines, terminators and skipped empty lines.
#: 16 KiB is twice what any browser or curl sends with long digest credentials and
#: matches h11's default; beyond it the answer is 431 (RFC 6585 §5).
MAX_HEAD_BYTES: Final = 16 * 1024
#: The request line without its terminator. A CONNECT target is a host and a port
#: (≤ 261 bytes); 8 KiB is the line limit RFC 9112 §3 recommends supporting at
#: least, and the old C tool's. Beyond it the answer is 414 (RFC 9110 §15.5.15).
MAX_REQUEST_LINE: Final = 8 * 1024
#: Field lines in one head; a CONNECT needs a handful (Host, Proxy-Authorization,
#: User-Agent, Proxy-Connection). Beyond it the answer is 431.
MAX_HEADER_FIELDS: Final = 100
#: Longest DNS name (RFC 1035 §2.3.4, without the trailing dot) and label.
MAX_DNS_NAME: Final = 253
MAX_DNS_LABEL: Final = 63
#: An interface name fits IFNAMSIZ (16 with its NUL) on Linux.
MAX_ZONE_ID: Final = 15
#: Longest text `field_value()` lets into a header, so one status detail cannot
#: crowd a response.
MAX_FIELD_VALUE: Final = 1024


class NeedData(enum.Enum):
    """The type of `NEED_DATA`: feed more bytes, then ask again."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True)
class HeadError:
    """The request cannot be served as sent: answer `status`, then close.

    `reason` is plain ASCII text for the log and the response body (it quotes no
    client bytes beyond a short, escaped excerpt). `headers` are fields the
    response must carry, e.g. ``Allow: CONNECT`` with a 405 (RFC 9110 §15.5.6).
    """

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()

    def response(self, extra: Sequence[tuple[str, str]] = ()) -> bytes:
        """The complete error response (reason as a one-line text body)."""
        return build_response(self.status, headers=(*self.headers, *extra), body=self.reason + "\n")


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A parsed request line and its fields; names are lowercase, values OWS-trimmed."""

    method: str
    target: str
    #: "HTTP/1.0" or "HTTP/1.1" (any HTTP/1.x minor version is kept as sent).
    version: str
    headers: tuple[tuple[str, str], ...]

    def header_values(self, name: str) -> tuple[str, ...]:
        """Every value of field `name` in order of appearance (case-insensitive name)."""
        key = name.lower()
        return tuple(value for field, value in self.headers if field == key)

    def header(self, name: str) -> str | None:
        """The value of `name`; repeated lines combined with ", " (RFC 9110 §5.3).

        For fields that must appear once (Host, Proxy-Authorization) use
        `header_values` and refuse more than one: combining those makes no sense.
        """
        values = self.header_values(name)
        return ", ".join(values) if values else None


@dataclass(frozen=True, slots=True)
class ConnectTarget:
    """The authority-form target of a CONNECT (RFC 9110 §9.3.6): where to connect.

    `host` is a lowercase DNS name (trailing dot kept), a dotted IPv4 address, or an
    IPv6 address without brackets, with ``%zone`` when one was given.
    """

    host: str
    port: int
    #: The parsed address when `host` is a literal; None for a DNS name.
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None

    @property
    def authority(self) -> str:
        """``host:port``, IPv6 in brackets: how the target is written back."""
        if isinstance(self.address, ipaddress.IPv6Address):
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


# --- grammar (RFC 9110 §5.6.2, RFC 9112 §3, §5) -----------------------------------

#   token = 1*tchar
#   tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
#           "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_STR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#   request-target: the URI forms of RFC 9112 §3.2, all printable ASCII without SP.
_TARGET = re.compile(rb"[\x21-\x7e]+")
#   HTTP-version = HTTP-name "/" DIGIT "." DIGIT   (RFC 9112 §2.3, case-sensitive)
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
#   field-value: VCHAR, obs-text, and SP/HTAB inside (RFC 9110 §5.5). CR, LF, NUL and
#   the other controls are refused rather than replaced.
_BAD_VALUE_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_OWS = b" \t"


class _State(enum.Enum):
    REQUEST_LINE = "waiting for the request line"
    FIELDS = "reading field lines"
    DONE = "head complete"
    FAILED = "head refused"


class HeadParser:
    """Incremental request-head parser: `feed()` bytes, then ask `next_result()`.

    Lines are consumed as soon as their LF arrives and the limits are checked on
    every feed, so before the head is complete the parser never holds more than
    `MAX_HEAD_BYTES` plus the last chunk fed (the caller bounds its reads). Once
    the head is complete, bytes fed after
    it (a pipelined TLS ClientHello) collect in `trailing_data`; once it failed,
    fed bytes are dropped. `next_result()` keeps returning the final result.
    """

    __slots__ = (
        "_buf",
        "_consumed",
        "_fields",
        "_request_line",
        "_result",
        "_scan",
        "_state",
    )

    def __init__(self) -> None:
        self._buf = bytearray()
        # Where the next LF search starts: a line fed a byte at a time is scanned
        # once in total, not once per byte.
        self._scan = 0
        self._consumed = 0  # head bytes already taken out of _buf, for the limit
        self._state = _State.REQUEST_LINE
        self._request_line: tuple[str, str, str] | None = None
        self._fields: list[tuple[str, str]] = []
        self._result: NeedData | RequestHead | HeadError = NEED_DATA

    @property
    def trailing_data(self) -> bytes:
        """Bytes received after the head's final empty line (empty until it is complete)."""
        return bytes(self._buf) if self._state is _State.DONE else b""

    @property
    def buffered(self) -> int:
        """Bytes held now: an unfinished line before the head ends, trailing data after."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Add received bytes; never raises for anything the client sends."""
        if self._state is _State.FAILED:
            return
        self._buf += data
        if self._state is _State.DONE:
            return
        self._advance()

    def next_result(self) -> NeedData | RequestHead | HeadError:
        """`NEED_DATA` until the head is complete, then its `RequestHead` or `HeadError`."""
        return self._result

    # --- internals -------------------------------------------------------------

    def _fail(self, status: int, reason: str) -> None:
        self._state = _State.FAILED
        self._result = HeadError(status, reason)
        self._buf.clear()
        self._fields.clear()

    def _advance(self) -> None:
        buf = self._buf
        start = 0
        while self._state not in (_State.DONE, _State.FAILED):
            lf = buf.find(b"\n", self._scan)
            if lf < 0:
                self._scan = len(buf)
                break
            end = lf + 1
            line = bytes(buf[start:lf])
            self._consumed += end - start
            start = end
            self._scan = end
            if line.endswith(b"\r"):
                line = line[:-1]
            self._line(line)
        if self._state is _State.FAILED:
            return
        del buf[:start]
        self._scan -= start
        if self._state is _State.DONE:
            return
        # An unfinished line: check the limits now, before more of it is buffered.
        # Its LF is still to come (one more byte), and a final CR is not part of it.
        pending = len(buf)
        line_len = pending - 1 if buf.endswith(b"\r") else pending
        if self._state is _State.REQUEST_LINE and line_len > MAX_REQUEST_LINE:
            self._fail(414, f"request line longer than {MAX_REQUEST_LINE} bytes")
        elif self._consumed + pending + 1 > MAX_HEAD_BYTES:
            self._fail(431, f"request head longer than {MAX_HEAD_BYTES} bytes")

    def _line(self, line: bytes) -> None:
        # Limits first, in the order `_advance` checks an unfinished line, so a head
        # fed byte by byte gets the same answer as one fed whole.
        if self._state is _State.REQUEST_LINE and len(line) > MAX_REQUEST_LINE:
            self._fail(414, f"request line longer than {MAX_REQUEST_LINE} bytes")
        elif self._consumed > MAX_HEAD_BYTES:
            self._fail(431, f"request head longer than {MAX_HEAD_BYTES} bytes")
        elif b"\r" in line:
            # A CR left inside the line is a bare CR: RFC 9112 §2.2 lets us treat
            # the element as invalid.
            self._fail(400, "bare CR in the request head")
        elif self._state is _State.REQUEST_LINE:
            if line:  # empty lines before the request line are skipped (§2.2)
                self._parse_request_line(line)
        elif not line:
            assert self._request_line is not None
            method, target, version = self._request_line
            self._state = _State.DONE
            self._result = RequestHead(method, target, version, tuple(self._fields))
            self._fields = []
        else:
            self._parse_field_line(line)

    def _parse_request_line(self, line: bytes) -> None:
        # request-line = method SP request-target SP HTTP-version   (RFC 9112 §3)
        parts = line.split(b" ")
        if len(parts) != 3:
            self._fail(400, "request line is not 'METHOD target HTTP/1.1'")
            return
        method, target, version = parts
        if not _TOKEN.fullmatch(method):
            self._fail(400, "request method is not a token")
            return
        if not _TARGET.fullmatch(target):
            self._fail(400, "request target is empty or has characters outside printable ASCII")
            return
        match = _VERSION.fullmatch(version)
        if match is None:
            self._fail(400, "HTTP version is not HTTP/x.y")
            return
        if match[1] != b"1":
            # RFC 9110 §15.6.6: a major version the server does not support.
            self._fail(505, f"HTTP version {version.decode('ascii')} is not supported")
            return
        self._request_line = (
            method.decode("ascii"),
            target.decode("ascii"),
            version.decode("ascii"),
        )
        self._state = _State.FIELDS

    def _parse_field_line(self, line: bytes) -> None:
        # field-line = field-name ":" OWS field-value OWS   (RFC 9112 §5)
        if line[0] in _OWS:
            # obs-fold (§5.2) or whitespace after the request line (§2.2): reject.
            self._fail(400, "folded or indented field line")
            return
        name, colon, value = line.partition(b":")
        if not colon:
            self._fail(400, "field line without a colon")
            return
        if not _TOKEN.fullmatch(name):
            # Includes whitespace between name and colon, which §5.1 says MUST be
            # answered with 400 (it enables smuggling through lenient peers).
            self._fail(400, "field name is not a token")
            return
        value = value.strip(_OWS)
        if _BAD_VALUE_BYTE.search(value):
            # RFC 9110 §5.5: CR, LF and NUL are dangerous; other controls are not
            # field-value characters either.
            self._fail(400, "control character in a field value")
            return
        if len(self._fields) >= MAX_HEADER_FIELDS:
            self._fail(431, f"more than {MAX_HEADER_FIELDS} header fields")
            return
        # obs-text (0x80-0xFF) is opaque (RFC 9110 §5.5); latin-1 keeps every byte.
        self._fields.append((name.decode("ascii").lower(), value.decode("latin-1")))


# --- CONNECT target -----------------------------------------------------------------

_PORT = re.compile(r"[0-9]{1,5}")
_DNS_LABEL = re.compile(rf"[a-z0-9_-]{{1,{MAX_DNS_LABEL}}}")
#   ZoneID = 1*( unreserved / pct-encoded )   (RFC 6874 §2; we take unreserved only)
_ZONE = re.compile(rf"[A-Za-z0-9._~-]{{1,{MAX_ZONE_ID}}}")
_DECIMAL_OR_HEX = re.compile(r"[0-9]+|0x[0-9a-f]*")


def parse_connect_target(target: str) -> ConnectTarget | HeadError:
    """Parse ``host:port`` / ``[v6]:port`` (RFC 9110 §9.3.6 authority-form).

    The port is required and must be 1..65535. A host is an IPv4 literal, a bracketed
    IPv6 literal (optionally with a zone), or a DNS name of letters, digits, hyphens
    and underscores (seen in real service names), labels 1..63 long, ≤ 253 in all.
    Userinfo and percent-encoding are not part of authority-form and are refused.
    """
    if target.startswith("["):
        close = target.find("]")
        if close < 0:
            return HeadError(400, "unterminated '[' in CONNECT target")
        host_text, rest = target[1:close], target[close + 1 :]
        if not rest.startswith(":"):
            return HeadError(400, "CONNECT target needs a port (host:port)")
        port_text = rest[1:]
        literal = _parse_ipv6(host_text)
        if isinstance(literal, HeadError):
            return literal
        host: str = str(literal)
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = literal
    else:
        host_text, colon, port_text = target.rpartition(":")
        if not colon:
            return HeadError(400, "CONNECT target needs a port (host:port)")
        if ":" in host_text:
            return HeadError(400, "IPv6 address in a CONNECT target must be in brackets")
        parsed = _parse_name_or_ipv4(host_text)
        if isinstance(parsed, HeadError):
            return parsed
        host, address = parsed
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        return HeadError(400, "CONNECT target port must be a number from 1 to 65535")
    return ConnectTarget(host, int(port_text), address)


def _parse_ipv6(text: str) -> ipaddress.IPv6Address | HeadError:
    address, pct, zone = text.partition("%")
    if pct:
        # RFC 6874 writes the zone delimiter as "%25" inside a URI; clients also
        # send a bare "%". Accept both.
        if zone.startswith("25") and len(zone) > 2:
            zone = zone[2:]
        if not _ZONE.fullmatch(zone):
            return HeadError(400, "bad IPv6 zone identifier in CONNECT target")
    if not address or not all(c in "0123456789abcdefABCDEF:." for c in address):
        return HeadError(400, "bad IPv6 address in CONNECT target")
    try:
        parsed = ipaddress.IPv6Address(address)
    except ValueError:
        return HeadError(400, "bad IPv6 address in CONNECT target")
    return ipaddress.IPv6Address(f"{parsed}%{zone}") if pct else parsed


def _parse_name_or_ipv4(
    text: str,
) -> tuple[str, ipaddress.IPv4Address | None] | HeadError:
    if not text:
        return HeadError(400, "CONNECT target has an empty host")
    name = text.lower()
    labels = name[:-1].split(".") if name.endswith(".") else name.split(".")
    if len(name.rstrip(".")) > MAX_DNS_NAME or not all(_DNS_LABEL.fullmatch(x) for x in labels):
        return HeadError(400, "CONNECT target host is not a valid DNS name or IP address")
    if _DECIMAL_OR_HEX.fullmatch(labels[-1]):
        # A name ending in a number is an address or nothing: inet_aton would read
        # "127.1" or "0x7f.1" as 127.0.0.1, so only strict dotted quads pass.
        try:
            address = ipaddress.IPv4Address(name)
        except ValueError:
            return HeadError(400, "CONNECT target host is not a valid IPv4 address")
        return str(address), address
    return name, None


def connect_target(head: RequestHead) -> ConnectTarget | HeadError:
    """What a CONNECT proxy needs of a head: the method, the target, the Host field.

    405 with ``Allow: CONNECT`` for any other method (RFC 9110 §15.5.6); 400 for a
    bad target, or for an HTTP/1.1 request without exactly one Host field
    (RFC 9112 §3.2 MUST), or any request with several.
    """
    if head.method != "CONNECT":
        # Methods are case-sensitive (RFC 9110 §9.1): "connect" is another method.
        return HeadError(
            405,
            f"method {head.method[:32]} not allowed; this is a CONNECT proxy",
            (("Allow", "CONNECT"),),
        )
    hosts = head.header_values("host")
    if len(hosts) > 1:
        return HeadError(400, "more than one Host header field")
    if not hosts and head.version == "HTTP/1.1":
        return HeadError(400, "HTTP/1.1 request without a Host header field")
    return parse_connect_target(head.target)


# --- responses ----------------------------------------------------------------------

# Fields the builders write themselves; callers must not pass them.
_FRAMING_FIELDS = frozenset({"content-length", "transfer-encoding", "connection", "content-type"})
_REASON_TEXT = re.compile(r"[\t\x20-\x7e]*")
# Field values we emit: VCHAR, SP, HTAB only (no obs-text: we never need it).
_VALUE_TEXT = re.compile(r"(?:[\x21-\x7e](?:[\t\x20-\x7e]*[\x21-\x7e])?)?")


# RFC 9110 renamed a few phrases; http.HTTPStatus (3.11) still has the RFC 7231 ones.
_RFC9110_PHRASES: Final = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}


def _status_line(status: int, reason: str | None) -> bytes:
    if reason is None:
        try:
            reason = _RFC9110_PHRASES.get(status) or HTTPStatus(status).phrase
        except ValueError:
            raise ValueError(f"no standard reason phrase for status {status}; pass one") from None
    if not _REASON_TEXT.fullmatch(reason):
        raise ValueError(f"reason phrase {reason!r} has characters RFC 9112 §4 does not allow")
    return f"HTTP/1.1 {status} {reason}\r\n".encode("ascii")


def _field_lines(headers: Iterable[tuple[str, str]]) -> bytes:
    out = bytearray()
    for name, value in headers:
        if not _TOKEN_STR.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a token")
        if name.lower() in _FRAMING_FIELDS:
            raise ValueError(f"header {name} is set by the response builder")
        if not _VALUE_TEXT.fullmatch(value):
            # A CR or LF here would let text end the head early: header injection.
            raise ValueError(f"header {name} value {value!r} is not printable ASCII")
        out += f"{name}: {value}\r\n".encode("ascii")
    return bytes(out)


def build_response(
    status: int,
    reason: str | None = None,
    *,
    headers: Sequence[tuple[str, str]] = (),
    body: str = "",
) -> bytes:
    """An HTTP/1.1 response for a refused request (status 300..599), then close.

    Always `Content-Length` (0 without a body) so the client knows where it ends
    (RFC 9112 §6.3); a body is sent as text/plain UTF-8; `Connection: close`
    (RFC 9112 §9.6) because the server closes after any non-2xx: the rest of a
    refused head must never be read as a new request. Bad arguments are
    programming errors and raise ValueError.
    """
    if not 300 <= status <= 599:
        raise ValueError(f"status {status} is not 3xx-5xx; use build_connect_established for 2xx")
    payload = body.encode("utf-8")
    out = bytearray(_status_line(status, reason))
    out += _field_lines(headers)
    if payload:
        out += b"Content-Type: text/plain; charset=utf-8\r\n"
    out += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(payload)
    out += payload
    return bytes(out)


def build_connect_established(headers: Sequence[tuple[str, str]] = ()) -> bytes:
    """``HTTP/1.1 200 Connection established``: the tunnel starts right after it.

    RFC 9110 §9.3.6 / §8.6: a 2xx to CONNECT has no content and MUST NOT carry
    Content-Length or Transfer-Encoding, so only the caller's fields (such as
    Proxy-Authentication-Info, RFC 7616 §3.5) follow the status line.
    """
    return b"HTTP/1.1 200 Connection established\r\n" + _field_lines(headers) + b"\r\n"


def field_value(text: str, limit: int = MAX_FIELD_VALUE) -> str:
    """Arbitrary text (an OS error, a resolver message) made safe as a field value.

    Controls and non-ASCII become '?', whitespace runs one SP, and the result is
    cut to `limit` characters; `build_response` then never rejects it.
    """
    cleaned = "".join(c if " " <= c <= "~" else ("?" if c not in "\t\r\n" else " ") for c in text)
    return " ".join(cleaned.split())[:limit].strip()


def proxy_status(
    proxy: str, error: str | None = None, details: str | None = None
) -> tuple[str, str]:
    """A ``Proxy-Status`` field (RFC 9209 §2): which proxy answered, and why.

    `error` is one of RFC 9209 §2.3's types (``dns_error``, ``connection_refused``,
    ``connection_timeout``, ...); `details` free text, sent as an sf-string
    (RFC 8941 §3.3.3: printable ASCII with ``\\`` and ``"`` escaped).
    """

    def sf_string(text: str) -> str:
        safe = field_value(text)
        return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'

    # The proxy name is an sf-token when it looks like one, else an sf-string.
    member = (
        proxy
        if re.fullmatch(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*", proxy)
        else (sf_string(proxy))
    )
    if error is not None:
        if not re.fullmatch(r"[a-z*][a-z0-9_\-.*]*", error):
            raise ValueError(f"Proxy-Status error type {error!r} is not an sf-token")
        member += f"; error={error}"
    if details is not None:
        member += f"; details={sf_string(details)}"
    return ("Proxy-Status", member)

"""Which TCP ports carry TLS or HTTP in a capture, so a dissector can be told about them.

scapy dissects TLS only on port 443 and HTTP only on 80 and 8080; a test server
or a service on any other port comes back as raw bytes. This finds the server
ports from the traffic itself: the port a TLS ClientHello (RFC 8446 §4.1.2;
RFC 5246 §7.4.1.2) or an HTTP/1.x request line (RFC 9112 §3) was sent to.

Pure: decoded capture events in, port sets out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wirecap.core.formats.records import Event, Interface, Packet, SectionStart
from wirecap.core.packet import decode

__all__ = [
    "HTTP_METHODS",
    "MAX_SERVER_PORTS",
    "ServerPorts",
    "find_server_ports",
    "is_client_hello",
    "is_http_request",
]

#: RFC 9110 §9 methods plus PATCH (RFC 5789): how an HTTP/1.x request line starts.
HTTP_METHODS = (
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
)

#: Each port found becomes two dissector bindings; beyond a few hundred servers
#: a capture is no longer a session's diagnostic, and binding more only slows
#: every later dissection in the process.
MAX_SERVER_PORTS = 256

# RFC 8446 §5.1 / RFC 5246 §6.2.1: content type 22 is handshake; §4 (§7.4): type 1
# is ClientHello. The record's legacy version is 3.x for every TLS version.
_CONTENT_HANDSHAKE = 0x16
_HANDSHAKE_CLIENT_HELLO = 0x01
_RECORD_HEADER = 5
#: A request line names its version within its first line, which is short.
_REQUEST_LINE_SCAN = 8192


@dataclass(frozen=True, slots=True)
class ServerPorts:
    tls: frozenset[int] = frozenset()
    http: frozenset[int] = frozenset()


def is_client_hello(payload: bytes) -> bool:
    """Whether a TCP payload starts with a TLS record holding a ClientHello."""
    return (
        len(payload) > _RECORD_HEADER
        and payload[0] == _CONTENT_HANDSHAKE
        and payload[1] == 3
        and payload[_RECORD_HEADER] == _HANDSHAKE_CLIENT_HELLO
    )


def is_http_request(payload: bytes) -> bool:
    """Whether a TCP payload starts with an HTTP/1.x request line."""
    if not payload.startswith(HTTP_METHODS):
        return False
    line_end = payload.find(b"\r\n", 0, _REQUEST_LINE_SCAN)
    line = payload[: line_end if line_end >= 0 else _REQUEST_LINE_SCAN]
    return b" HTTP/1." in line


def find_server_ports(events: Iterable[Event]) -> ServerPorts:
    """The TCP ports TLS and HTTP clients connected to, from a capture's events.

    At most MAX_SERVER_PORTS of each kind, the first ones seen.
    """
    linktypes: list[int] = []
    tls: set[int] = set()
    http: set[int] = set()
    for event in events:
        if isinstance(event, SectionStart):
            linktypes = []
        elif isinstance(event, Interface):
            linktypes.append(event.linktype)
        elif isinstance(event, Packet) and event.interface_id < len(linktypes):
            decoded = decode(linktypes[event.interface_id], event.data, event.orig_len)
            tcp = decoded.tcp
            if tcp is None:
                continue
            payload = decoded.payload
            if len(tls) < MAX_SERVER_PORTS and is_client_hello(payload):
                tls.add(tcp.dport)
            elif len(http) < MAX_SERVER_PORTS and is_http_request(payload):
                http.add(tcp.dport)
    return ServerPorts(tls=frozenset(tls), http=frozenset(http - tls))

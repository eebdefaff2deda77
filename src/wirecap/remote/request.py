"""PURE: the query of a worker's ``GET /capture``, parsed once into a frozen request.

No sockets here: the shell (`wirecap.remote.worker`) hands in the query's
``(name, value)`` pairs and the stream's own addresses, and gets back either a
`StreamRequest` or a `RequestError` (an expected outcome, so a value, not an
exception) and the BPF expression to capture with.

Query parameters of ``GET /capture`` (all optional):

``filter``
    BPF expression in tcpdump's language (empty: everything).
``interface``
    interface to capture on (default ``any``; ddump ignored this, we do not).
``snaplen``
    bytes kept per packet, 1..262144 (default 262144).
``linktype``
    ``sll2`` (default: Linux cooked v2, keeps the interface index) or ``sll``
    (cooked v1, for old readers). Applies to ``interface=any``; a named interface
    streams its own link type (Ethernet for ``lo`` and ``eth0``).
``format``
    ``pcap`` (default, ``application/vnd.tcpdump.pcap``) or ``pcapng``
    (``application/x-pcapng``, with an Interface Statistics Block heartbeat).
``exclude_self``
    on by default: the worker leaves the TCP connection carrying this very
    stream out of the capture (both directions), so capturing everything does not
    capture its own output and amplify itself. ``exclude_self=0`` turns it off.
    Behind a reverse proxy only the proxy → worker leg is this stream's own; the
    client → proxy leg is another connection and must be filtered by the user.

Unknown or repeated parameters are refused (400), so a typo such as ``fitler=``
never silently captures everything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from wirecap.core.capture.spec import MAX_SNAPLEN
from wirecap.core.formats.linktype import LinkType
from wirecap.errors import OptionError

__all__ = [
    "DEFAULT_PORT",
    "MAX_FILTER_LEN",
    "MAX_INTERFACE_LEN",
    "Endpoint",
    "ListenAddress",
    "RequestError",
    "StreamRequest",
    "capture_filter",
    "parse_listen",
    "parse_query",
    "self_filter",
]

#: Longest BPF expression accepted. Real diagnostic filters are a few hundred
#: characters; pcap_compile's optimizer is superlinear, so an unbounded
#: expression would let one request burn the worker's CPU.
MAX_FILTER_LEN = 4096

#: Linux IFNAMSIZ (16) minus the terminating NUL.
MAX_INTERFACE_LEN = 15

#: ddump-worker's port, kept so existing URLs work.
DEFAULT_PORT = 8475

#: libpcap snaplen when none is asked for: its own maximum, so nothing is cut.
DEFAULT_REQUEST_SNAPLEN = MAX_SNAPLEN

_LINKTYPES: dict[str, int] = {"sll2": LinkType.LINUX_SLL2, "sll": LinkType.LINUX_SLL}
_FORMATS = ("pcap", "pcapng")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_KNOWN = frozenset({"filter", "interface", "snaplen", "linktype", "format", "exclude_self"})


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a client asked ``GET /capture`` for, validated."""

    filter: str = ""
    interface: str = "any"
    snaplen: int = DEFAULT_REQUEST_SNAPLEN
    linktype: Literal["sll2", "sll"] = "sll2"
    format: Literal["pcap", "pcapng"] = "pcap"
    exclude_self: bool = True

    @property
    def dlt(self) -> int | None:
        """libpcap DLT to force on the handle, or None for the device's own."""
        if self.interface != "any":
            return None
        return _LINKTYPES[self.linktype]

    @property
    def check_linktype(self) -> int:
        """Link type to validate the filter against before opening anything."""
        dlt = self.dlt
        return LinkType.ETHERNET if dlt is None else dlt

    @property
    def content_type(self) -> str:
        if self.format == "pcapng":
            return "application/x-pcapng"
        return "application/vnd.tcpdump.pcap"


@dataclass(frozen=True, slots=True)
class RequestError:
    """A refused request: the HTTP status and a one-line reason for the body."""

    status: int
    message: str


def _one_line(value: str) -> str:
    return value.replace("\r", "\\r").replace("\n", "\\n")[:80]


def parse_query(pairs: Iterable[tuple[str, str]]) -> StreamRequest | RequestError:
    """Validate the query pairs of ``GET /capture``; never raises."""
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name not in _KNOWN:
            return RequestError(400, f"unknown query parameter {_one_line(name)!r}")
        if name in seen:
            return RequestError(400, f"query parameter {name!r} given twice")
        seen[name] = value

    user_filter = seen.get("filter", "").strip()
    if len(user_filter) > MAX_FILTER_LEN:
        return RequestError(400, f"filter is longer than {MAX_FILTER_LEN} characters")
    if "\x00" in user_filter:
        return RequestError(400, "filter contains a NUL character")

    interface = seen.get("interface", "any") or "any"
    if (
        len(interface) > MAX_INTERFACE_LEN
        or "/" in interface
        or any(not ch.isprintable() or ch.isspace() for ch in interface)
    ):
        return RequestError(400, f"bad interface name {_one_line(interface)!r}")

    snaplen = DEFAULT_REQUEST_SNAPLEN
    if "snaplen" in seen:
        text = seen["snaplen"]
        if not (text.isascii() and text.isdigit()) or len(text) > 7:
            return RequestError(400, f"snaplen {_one_line(text)!r} is not a number")
        snaplen = int(text)
        if not 1 <= snaplen <= MAX_SNAPLEN:
            return RequestError(400, f"snaplen {snaplen} is outside 1..{MAX_SNAPLEN}")

    linktype = seen.get("linktype", "sll2").lower()
    if linktype == "sll2":
        chosen_linktype: Literal["sll2", "sll"] = "sll2"
    elif linktype == "sll":
        chosen_linktype = "sll"
    else:
        return RequestError(400, f"linktype {_one_line(linktype)!r} is not sll2 or sll")

    fmt = seen.get("format", "pcap").lower()
    if fmt == "pcap":
        chosen_format: Literal["pcap", "pcapng"] = "pcap"
    elif fmt == "pcapng":
        chosen_format = "pcapng"
    else:
        return RequestError(400, f"format {_one_line(fmt)!r} is not pcap or pcapng")

    exclude_text = seen.get("exclude_self", "1").lower()
    if exclude_text in _TRUE:
        exclude_self = True
    elif exclude_text in _FALSE:
        exclude_self = False
    else:
        return RequestError(400, f"exclude_self {_one_line(exclude_text)!r} is not 0 or 1")

    return StreamRequest(
        filter=user_filter,
        interface=interface,
        snaplen=snaplen,
        linktype=chosen_linktype,
        format=chosen_format,
        exclude_self=exclude_self,
    )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One end of a TCP connection, as BPF names it."""

    host: str
    port: int

    @classmethod
    def from_sockaddr(cls, sockaddr: object) -> Endpoint | None:
        """From a socket's ``(host, port, ...)`` address; None for a Unix socket path."""
        if not isinstance(sockaddr, tuple) or len(sockaddr) < 2:
            return None
        host, port = sockaddr[0], sockaddr[1]
        if not isinstance(host, str) or not isinstance(port, int):
            return None
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
        # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; the packets
        # on the wire are plain IPv4.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return cls(str(address), port)


def self_filter(local: Endpoint, peer: Endpoint) -> str:
    """BPF matching exactly one TCP connection, in both directions."""
    a, b = local, peer
    return (
        f"tcp and ((src host {a.host} and src port {a.port} and "
        f"dst host {b.host} and dst port {b.port}) or "
        f"(src host {b.host} and src port {b.port} and "
        f"dst host {a.host} and dst port {a.port}))"
    )


def capture_filter(user: str, own: tuple[Endpoint, Endpoint] | None) -> str:
    """The expression to capture with: ``(USER) and not (SELF)``.

    Both sides are parenthesised: BPF's ``and``/``or`` have equal precedence, so
    ddump's ``USER and SELF`` let ``a or b`` in USER escape the exclusion.
    ``own`` is None when there is nothing to exclude (Unix socket, or
    ``exclude_self=0``).
    """
    user = user.strip()
    if own is None:
        return user
    exclusion = f"not ({self_filter(*own)})"
    if not user:
        return exclusion
    return f"({user}) and {exclusion}"


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where the worker listens: a TCP host/port (host "" = every address) or a Unix path."""

    host: str | None = None
    port: int = DEFAULT_PORT
    path: str | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = self.host or ""
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.port}"


def parse_listen(value: str) -> ListenAddress:
    """Parse ddump-worker's ``-listen`` syntax: ``[HOST]:PORT``, ``[V6]:PORT`` or ``unix:PATH``.

    Raises:
        OptionError: the value is malformed.
    """
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path or "\x00" in path:
            raise OptionError(f"listen address {value!r}: empty or invalid socket path")
        return ListenAddress(path=path)
    host, sep, port_text = value.rpartition(":")
    if not sep:
        raise OptionError(f"listen address {value!r} is not HOST:PORT, :PORT or unix:PATH")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise OptionError(f"listen address {value!r}: write IPv6 addresses as [ADDR]:PORT")
    if not (port_text.isascii() and port_text.isdigit()) or not 0 <= int(port_text) <= 65535:
        raise OptionError(f"listen address {value!r}: port must be 0..65535")
    return ListenAddress(host=host or None, port=int(port_text))

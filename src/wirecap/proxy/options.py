"""The proxy's options, parsed once into a frozen value (the CLI builds it)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from wirecap.errors import OptionError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_LINGER",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_PER_USER",
    "DEFAULT_SIZE_CAP",
    "ListenAddress",
    "ProxyOptions",
    "parse_listen",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: connectcap's default per-capture size (its -s): 100 KiB keeps mails small.
DEFAULT_SIZE_CAP = 100 * 1024
#: Whole request head must arrive within this (slowloris defence).
DEFAULT_HEADER_TIMEOUT = 10.0
#: TCP handshake to the origin; past it the client gets 504.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: A tunnel with no bytes either way for this long is closed (connectcap: 60 s).
DEFAULT_IDLE_TIMEOUT = 60.0
#: The capture goes on this long after the tunnel closed, for late FIN/RST/ICMP.
DEFAULT_LINGER = 2.0
DEFAULT_MAX_CONNECTIONS = 10_000
DEFAULT_MAX_PER_USER = 256


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str | None  # None: every wildcard address (IPv4 and IPv6)
    port: int

    def __str__(self) -> str:
        if self.host is None:
            return f"*:{self.port}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """``[addr:]port``, ``[v6]:port`` or ``port`` (connectcap's -l)."""
    host: str | None
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise OptionError(f"-l {text}: expected [IPv6]:port")
        host, port_text = text[1:end], text[end + 2 :]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        host = host or None
    elif ":" in text:
        raise OptionError(f"-l {text}: put an IPv6 address in brackets: [addr]:port")
    else:
        host, port_text = None, text
    # Port 0 asks the kernel for a free port; the proxy logs the one it got.
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise OptionError(f"-l {text}: the port must be 0..65535")
    return ListenAddress(host, int(port_text))


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    listen: tuple[ListenAddress, ...]
    #: Source addresses in order of preference; empty: chosen per connection by
    #: the routing table, IPv4 preferred.
    sources: tuple[IPAddress, ...] = ()
    interface: str | None = None
    spool: Path = Path(".")
    passwd: Path = Path("ccpasswd")
    realm: str = "connectcap"
    size_cap: int = DEFAULT_SIZE_CAP
    mail_command: tuple[str, ...] = ()
    smtp: tuple[str, int] | None = None
    mail_from: str = "wirecap@localhost"
    digest_algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    userhash: bool = True
    resolver: str | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_per_user: int = DEFAULT_MAX_PER_USER
    auth_failures_per_minute: int = 10
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    linger: float = DEFAULT_LINGER
    keep: bool = False
    metrics: tuple[str, int] | None = None
    verbose: bool = False
    proxy_name: str = field(default="localhost")

    def __post_init__(self) -> None:
        if not self.listen:
            raise OptionError("at least one listen address is needed (-l [addr:]port)")
        if self.size_cap < 1024:
            raise OptionError(f"-s {self.size_cap}: the capture size cap must be ≥ 1024 bytes")
        families = [a.version for a in self.sources]
        if len(families) != len(set(families)):
            raise OptionError("give at most one source address per family (-4, -6)")
        if self.mail_command and not self.mail_command[0].startswith("/"):
            raise OptionError(
                f"mail command {self.mail_command[0]!r}: give an absolute path "
                "(it is run without a shell or PATH search)"
            )
        for name in ("max_connections", "max_per_user", "auth_failures_per_minute"):
            if getattr(self, name) < 1:
                raise OptionError(f"--{name.replace('_', '-')} must be at least 1")
        for name in ("header_timeout", "connect_timeout", "idle_timeout"):
            if getattr(self, name) <= 0:
                raise OptionError(f"--{name.replace('_', '-')} must be positive")

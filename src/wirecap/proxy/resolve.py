"""SHELL: name resolution and source-address choice for the proxy's one connect attempt.

The proxy takes exactly one address (preferred family first, the other family only
when the preferred one has no records) and connects once: no fallback, no Happy
Eyeballs, so the capture shows the one path that failed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DEFAULT_DNS_TIMEOUT",
    "DnsResolver",
    "IPAddress",
    "Resolution",
    "ResolveFailure",
    "Resolver",
    "SystemResolver",
    "route_source",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Total time for one lookup; beyond it the client gets a 502 saying so.
DEFAULT_DNS_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Resolution:
    address: IPAddress
    #: Every address the lookup returned for the chosen family (for the summary).
    answers: tuple[IPAddress, ...]


@dataclass(frozen=True, slots=True)
class ResolveFailure:
    reason: str


class Resolver(Protocol):
    async def resolve(self, host: str, families: Sequence[int]) -> Resolution | ResolveFailure:
        """The first address of the first family in `families` that has any."""


def _literal(host: str, families: Sequence[int]) -> Resolution | ResolveFailure | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    if family not in families:
        return ResolveFailure(f"{host} is an IPv{address.version} address; no source for it")
    return Resolution(address, (address,))


class SystemResolver:
    """The system's resolver (getaddrinfo in the loop's executor)."""

    def __init__(self, timeout: float = DEFAULT_DNS_TIMEOUT) -> None:
        self.timeout = timeout

    async def resolve(self, host: str, families: Sequence[int]) -> Resolution | ResolveFailure:
        literal = _literal(host, families)
        if literal is not None:
            return literal
        loop = asyncio.get_running_loop()
        reasons = []
        for family in families:
            try:
                async with asyncio.timeout(self.timeout):
                    infos = await loop.getaddrinfo(
                        host, None, family=family, type=socket.SOCK_STREAM
                    )
            except TimeoutError:
                return ResolveFailure(f"DNS lookup of {host} timed out after {self.timeout:g} s")
            except socket.gaierror as exc:
                reasons.append(exc.strerror or str(exc))
                continue
            answers = tuple(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
            if answers:
                return Resolution(answers[0], answers)
        return ResolveFailure(f"DNS lookup of {host} failed: {'; '.join(reasons) or 'no address'}")


class DnsResolver:
    """A given DNS server (``--resolver``) instead of the system's, through dnspython."""

    def __init__(self, server: str, port: int = 53, timeout: float = DEFAULT_DNS_TIMEOUT) -> None:
        import dns.asyncresolver

        self._resolver = dns.asyncresolver.Resolver(configure=False)
        self._resolver.nameservers = [server]
        self._resolver.port = port
        self._resolver.lifetime = timeout
        self.timeout = timeout

    async def resolve(self, host: str, families: Sequence[int]) -> Resolution | ResolveFailure:
        import dns.exception
        import dns.resolver

        literal = _literal(host, families)
        if literal is not None:
            return literal
        reasons = []
        for family in families:
            rdtype = "A" if family == socket.AF_INET else "AAAA"
            try:
                answer = await self._resolver.resolve(host, rdtype, search=False)
            except dns.resolver.NXDOMAIN:
                return ResolveFailure(f"DNS: {host} does not exist (NXDOMAIN)")
            except dns.resolver.NoAnswer:
                reasons.append(f"no {rdtype} record")
                continue
            except dns.exception.Timeout:
                return ResolveFailure(f"DNS lookup of {host} timed out after {self.timeout:g} s")
            except dns.exception.DNSException as exc:
                reasons.append(f"{rdtype}: {exc}")
                continue
            answers = tuple(ipaddress.ip_address(record.to_text()) for record in answer)
            if answers:
                return Resolution(answers[0], answers)
        return ResolveFailure(f"DNS lookup of {host} failed: {'; '.join(reasons) or 'no address'}")


def route_source(destination: IPAddress) -> IPAddress | None:
    """The source address the kernel's routing table picks for `destination`.

    Connecting a UDP socket runs the route lookup and sends nothing.
    """
    family = socket.AF_INET if destination.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((str(destination), 9))
        except OSError:
            return None
        return ipaddress.ip_address(probe.getsockname()[0].split("%")[0])

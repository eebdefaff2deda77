"""SHELL: the host's own addresses and default gateways, read from the kernel and watched.

The direction of a SYN and the always-allowed addresses come from here. Addresses
are read over rtnetlink (pyroute2) and read again whenever the kernel announces an
address or route change on a netlink socket subscribed to those groups, so a
DHCP renewal or a new IPv6 prefix is picked up within a fraction of a second.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["AddressWatcher", "HostAddresses", "read_host_addresses"]

# linux/rtnetlink.h multicast groups (the legacy bitmask form bind() takes).
_RTMGRP_IPV4_IFADDR = 0x10
_RTMGRP_IPV4_ROUTE = 0x40
_RTMGRP_IPV6_IFADDR = 0x100
_RTMGRP_IPV6_ROUTE = 0x400
_GROUPS = _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV4_ROUTE | _RTMGRP_IPV6_IFADDR | _RTMGRP_IPV6_ROUTE
#: A burst of changes (an interface coming up brings several) is read once, after this.
SETTLE_S = 0.2
_RECV_SIZE = 65536


class HostAddresses(NamedTuple):
    #: Every address configured on an interface, packed.
    local: frozenset[bytes]
    #: The next hops of the default routes, packed.
    gateways: frozenset[bytes]


def read_host_addresses() -> HostAddresses:
    """The addresses and default gateways of the network namespace we run in."""
    from pyroute2 import IPRoute

    local: set[bytes] = set()
    gateways: set[bytes] = set()
    with IPRoute() as ipr:
        for message in ipr.get_addr():
            # On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours.
            text = message.get_attr("IFA_LOCAL") or message.get_attr("IFA_ADDRESS")
            if text:
                local.add(socket.inet_pton(_family(text), text))
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in ipr.get_default_routes(family=family):
                text = route.get_attr("RTA_GATEWAY")
                if text:
                    gateways.add(socket.inet_pton(_family(text), text))
    return HostAddresses(frozenset(local), frozenset(gateways))


def _family(text: str) -> int:
    return socket.AF_INET6 if ":" in text else socket.AF_INET


class AddressWatcher:
    """Calls ``on_change`` (on the event loop) after the kernel's addresses or routes change."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(
            socket.AF_NETLINK,
            socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
            socket.NETLINK_ROUTE,
        )
        sock.bind((0, _GROUPS))
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                if not sock.recv(_RECV_SIZE):
                    break
            except BlockingIOError:
                break
            except OSError as exc:
                # ENOBUFS: the kernel dropped notifications; read everything again anyway.
                if exc.errno != errno.ENOBUFS:
                    raise
        if self._pending is None and self._loop is not None:
            self._pending = self._loop.call_later(SETTLE_S, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._on_change()

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

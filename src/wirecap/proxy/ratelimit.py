"""Authentication failures per client, so password guessing gets a 429, not unlimited tries.

connectcap had no limit at all (its reference notes, §6 and §8 item 14). Digest
answers cost the proxy a few hashes each, but every try is a guess at a password
that may also be attacked offline; a speed bump per client is cheap.

The window slides: a client is blocked once it has ``limit_per_minute`` failures
within any 60 s, until the oldest of those is 60 s old. Only the last
``limit_per_minute`` failure times are kept per client, so memory per client is
bounded, and at most `MAX_TRACKED_CLIENTS` clients are kept, least recently
failing dropped first. A blocked client is answered without checking its
credentials, so the shell should not record failures while `blocked` says so.

IPv6 clients are counted per /64 (`client_key`): one host usually owns a whole
/64 and could otherwise hop addresses to reset its count.

Pure: ``now`` is passed in (seconds, any clock that only moves forward).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque

from wirecap.errors import OptionError

__all__ = [
    "IPV6_PREFIX_LEN",
    "MAX_LIMIT_PER_MINUTE",
    "MAX_TRACKED_CLIENTS",
    "WINDOW_SECONDS",
    "FailureLimiter",
    "client_key",
]

#: Length of the sliding window.
WINDOW_SECONDS = 60.0

#: Clients remembered at once. An entry is under 1 KiB at the default limit, so
#: this bounds the limiter near 10 MiB; a diagnostics proxy has a handful of real
#: users, and more failing clients than this within a minute is a flood for the
#: firewall (`wirecap guard`), not for a table in the proxy. Evicting the least
#: recently failing client first keeps the ones still hammering.
MAX_TRACKED_CLIENTS = 10_000

#: Largest accepted limit: each tracked client keeps this many timestamps, and a
#: higher "limit" would not limit anything.
MAX_LIMIT_PER_MINUTE = 1000

#: IPv6 clients are grouped by this prefix (RFC 4291 §2.5.4: a /64 is the usual
#: subnet, and SLAAC privacy addresses let one host use any address in it).
IPV6_PREFIX_LEN = 64


def client_key(address: str) -> str:
    """The key failures are counted under: the IPv4 address, or the IPv6 /64.

    IPv4-mapped IPv6 addresses count as their IPv4 address; anything that is not
    an IP address (a unix socket peer, say) is its own key.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    network = ipaddress.IPv6Network((int(ip), IPV6_PREFIX_LEN), strict=False)
    return str(network)


class FailureLimiter:
    """Counts authentication failures per client in a sliding 60 s window.

    Args:
        limit_per_minute: failures within 60 s that block a client (1 to
            `MAX_LIMIT_PER_MINUTE`).
        max_tracked: clients remembered at once, see `MAX_TRACKED_CLIENTS`.
    """

    __slots__ = ("_clients", "_limit", "_max_tracked")

    def __init__(
        self, limit_per_minute: int = 10, *, max_tracked: int = MAX_TRACKED_CLIENTS
    ) -> None:
        if not 1 <= limit_per_minute <= MAX_LIMIT_PER_MINUTE:
            raise OptionError(
                f"failure limit must be 1 to {MAX_LIMIT_PER_MINUTE} per minute, "
                f"not {limit_per_minute}"
            )
        if max_tracked < 1:
            raise OptionError(f"max_tracked must be at least 1, not {max_tracked}")
        self._limit = limit_per_minute
        self._max_tracked = max_tracked
        # Least recently failing first; each deque holds the newest failure times.
        self._clients: OrderedDict[str, deque[float]] = OrderedDict()

    @property
    def limit_per_minute(self) -> int:
        return self._limit

    @property
    def tracked(self) -> int:
        """Clients currently remembered (never more than ``max_tracked``)."""
        return len(self._clients)

    def record_failure(self, address: str, now: float) -> None:
        """Count one failed authentication by ``address`` at ``now``."""
        self._forget_quiet(now)
        key = client_key(address)
        times = self._clients.get(key)
        if times is None:
            while len(self._clients) >= self._max_tracked:
                self._clients.popitem(last=False)
            times = self._clients[key] = deque(maxlen=self._limit)
        else:
            self._clients.move_to_end(key)
        times.append(now)

    def blocked(self, address: str, now: float) -> float | None:
        """Seconds until ``address`` may try again, or None if it may now.

        Round up for ``Retry-After``, whose value is whole seconds (RFC 9110 §10.2.3).
        """
        times = self._clients.get(client_key(address))
        if times is None or len(times) < self._limit:
            return None
        wait = times[0] + WINDOW_SECONDS - now
        if wait <= 0:
            return None
        # If the clock stepped back, never ask for more than one window.
        return min(wait, WINDOW_SECONDS)

    def _forget_quiet(self, now: float) -> None:
        """Drop clients whose newest failure has left the window: they cannot be blocked."""
        while self._clients:
            times = next(iter(self._clients.values()))
            if now - times[-1] < WINDOW_SECONDS:
                return
            self._clients.popitem(last=False)

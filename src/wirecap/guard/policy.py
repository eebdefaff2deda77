"""The block policy: detections in, block decisions out; allow-list and escalation.

Decisions follow fail2ban's and sshguard's lessons, which tcpcap had none of:

- an allow-list of networks, plus the host's own addresses and its default
  gateways, which are always spared (tcpcap once blocked its own host);
- every block has a timeout, and a repeat offender's grows: ``timeout × factor^(n-1)``
  for its n-th offence, capped (fail2ban's ``bantime.increment``, sshguard's 1.5×/2×);
  offences are forgotten ``forget_after`` seconds after the last one;
- an address already blocked is not blocked again (tcpcap re-ran iptables and
  re-counted a block for every further SYN of a blocked scanner).

Times are nanoseconds of the wall clock, passed in: blocks must outlive a restart.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from wirecap.errors import OptionError
from wirecap.guard.detectors import Detection, Reason
from wirecap.guard.lru import ExpiringLRU

__all__ = [
    "ALWAYS_ALLOWED",
    "MAX_ACTIVE_BLOCKS",
    "MAX_OFFENDERS",
    "ActiveBlock",
    "AllowList",
    "Block",
    "BlockPolicy",
    "BlockSpec",
    "Network",
    "Spared",
]

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Addresses blocked at once, per address family; also the size of each nft set.
#: 65536 is nftables' default set size, and far beyond what one host meets unless
#: the sources are spoofed, where blocking each one is pointless anyway.
MAX_ACTIVE_BLOCKS = 65536

#: Past offenders remembered for escalation (fail2ban keeps them in a database).
MAX_OFFENDERS = 65536

#: Loopback is never a remote attacker.
ALWAYS_ALLOWED: tuple[Network, ...] = (
    ipaddress.IPv4Network("127.0.0.0/8"),
    ipaddress.IPv6Network("::1/128"),
)

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """How long blocks last and how they grow for repeat offenders."""

    timeout_s: int = 600
    #: Each further offence multiplies the timeout by this (1 keeps it constant).
    factor: float = 2.0
    max_timeout_s: int = 7 * 86400
    #: An address's offences are forgotten this long after its last one.
    forget_after_s: int = 86400

    def __post_init__(self) -> None:
        # nft takes element timeouts in whole seconds, up to about 49 days (2^32 ms).
        if not 1 <= self.timeout_s <= self.max_timeout_s:
            raise OptionError(
                f"block timeout {self.timeout_s} s must be within 1..{self.max_timeout_s}"
            )
        if not self.max_timeout_s <= 49 * 86400:
            raise OptionError(f"maximum block timeout {self.max_timeout_s} s exceeds 49 days")
        if not 1.0 <= self.factor <= 100.0:
            raise OptionError(f"escalation factor {self.factor} must be within 1..100")
        if self.forget_after_s < self.timeout_s:
            raise OptionError(
                f"forget-after {self.forget_after_s} s is shorter than the block timeout"
            )

    def timeout_for(self, offence: int) -> int:
        """Timeout in seconds of an address's ``offence``-th block (1 for the first)."""
        grown = self.timeout_s * self.factor ** max(0, offence - 1)
        return int(min(float(self.max_timeout_s), grown))


class AllowList:
    """Networks never blocked: configured ones, loopback, own addresses, gateways."""

    __slots__ = ("_dynamic", "_networks")

    def __init__(self, networks: Iterable[Network | str] = (), dynamic: Iterable[bytes] = ()):
        parsed: list[Network] = list(ALWAYS_ALLOWED)
        for network in networks:
            if isinstance(network, str):
                try:
                    network = ipaddress.ip_network(network, strict=False)
                except ValueError as exc:
                    raise OptionError(f"allow-list entry {network!r}: {exc}") from None
            parsed.append(network)
        self._networks = tuple(parsed)
        self._dynamic = frozenset(dynamic)

    @property
    def networks(self) -> tuple[Network, ...]:
        return self._networks

    def with_dynamic(self, addresses: Iterable[bytes]) -> AllowList:
        """The same networks with the host's current own addresses and gateways."""
        copy = AllowList.__new__(AllowList)
        copy._networks = self._networks
        copy._dynamic = frozenset(addresses)
        return copy

    def match(self, packed: bytes) -> str | None:
        """Why ``packed`` is allowed, or None when it is not."""
        if packed in self._dynamic:
            return "own address or gateway"
        address = ipaddress.ip_address(packed)
        for network in self._networks:
            if address.version == network.version and address in network:
                return f"allow-listed {network}"
        return None


class Block(NamedTuple):
    """Command: drop everything from ``address`` for ``timeout_s`` seconds."""

    address: bytes
    timeout_s: int
    reason: Reason
    #: 1 for a first offence, growing for repeat offenders.
    offence: int
    detail: str
    until_ns: int


class Spared(NamedTuple):
    """A detection that led to no block, and why (allow-list, table full)."""

    address: bytes
    reason: Reason
    why: str


class ActiveBlock(NamedTuple):
    until_ns: int
    reason: Reason
    offence: int


class BlockPolicy:
    """Decides blocks and remembers the active ones and past offenders."""

    def __init__(
        self,
        spec: BlockSpec,
        allow: AllowList,
        *,
        max_blocks: int = MAX_ACTIVE_BLOCKS,
        max_offenders: int = MAX_OFFENDERS,
    ) -> None:
        self.spec = spec
        self.allow = allow
        self._max_blocks = max_blocks
        self._active: dict[bytes, ActiveBlock] = {}
        self._offences: ExpiringLRU[bytes, int] = ExpiringLRU(
            max_offenders, spec.forget_after_s * _NS
        )

    def __len__(self) -> int:
        return len(self._active)

    def is_blocked(self, address: bytes, now_ns: int) -> bool:
        block = self._active.get(address)
        return block is not None and block.until_ns > now_ns

    def decide(self, detection: Detection) -> Block | Spared | None:
        """What to do about ``detection``: None when the source is already blocked."""
        now, source = detection.ts_ns, detection.source
        if self.is_blocked(source, now):
            return None
        why = self.allow.match(source)
        if why is not None:
            return Spared(source, detection.reason, why)
        if len(self._active) >= self._max_blocks:
            self.expire(now)
            if len(self._active) >= self._max_blocks:
                return Spared(
                    source, detection.reason, f"{self._max_blocks} addresses already blocked"
                )
        offence = (self._offences.get(source, now) or 0) + 1
        self._offences.put(source, offence, now)
        timeout = self.spec.timeout_for(offence)
        until = now + timeout * _NS
        self._active[source] = ActiveBlock(until, detection.reason, offence)
        return Block(source, timeout, detection.reason, offence, detection.detail, until)

    def restore(self, address: bytes, until_ns: int, reason: Reason, offence: int) -> None:
        """Take over a block found in the kernel set or the state file."""
        self._active[address] = ActiveBlock(until_ns, reason, offence)

    def restore_offender(self, address: bytes, offences: int, last_ns: int) -> None:
        self._offences.put(address, offences, last_ns)

    def release(self, address: bytes) -> bool:
        """Forget an active block (unblocked by hand, or gone from the kernel set)."""
        return self._active.pop(address, None) is not None

    def expire(self, now_ns: int) -> list[bytes]:
        """Forget blocks whose time is up (the kernel drops the set element itself)."""
        ended = [address for address, block in self._active.items() if block.until_ns <= now_ns]
        for address in ended:
            del self._active[address]
        self._offences.expire(now_ns)
        return ended

    def active(self) -> Iterator[tuple[bytes, ActiveBlock]]:
        return iter(list(self._active.items()))

    def offenders(self) -> Iterator[tuple[bytes, int, int]]:
        """(address, offences, last offence ns) for every remembered offender."""
        return self._offences.items()

"""nftables commands as libnftables JSON (libnftables-json(5)), built and read without I/O.

The guard owns one table (``inet wirecap_guard`` by default)::

    table inet wirecap_guard {
        set blocked_v4 { type ipv4_addr; flags timeout; size 65536; }
        set blocked_v6 { type ipv6_addr; flags timeout; size 65536; }
        chain prerouting {
            type filter hook prerouting priority -300; policy accept;
            ip saddr @blocked_v4 counter drop
            ip6 saddr @blocked_v6 counter drop
            # with a kernel limit, per source (nft's "meter"):
            tcp flags & (syn | ack) == syn add @synlimit_v4 {
                ip saddr limit rate over R/second burst B packets } counter drop
            tcp flags & (syn | ack) == syn add @synlimit_v6 {
                ip6 saddr limit rate over R/second burst B packets } counter drop
        }
    }

A block is a set element with its own timeout: the kernel drops the address at line
rate and forgets it when the timeout runs out, with nothing left to clean up
(tcpcap appended iptables rules that never expired). Priority -300 is the "raw"
slot, before connection tracking (-200) and before any filter chain's accept rules
(tcpcap's rules, appended at the end of INPUT, came after them). The prerouting
hook also sees traffic this host would forward.

Setting up is idempotent and never touches the sets' elements: ``add`` of an
existing table or set is a no-op, and the chain is flushed and refilled in the same
transaction, so blocks survive a restart and there is no moment without the rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

from wirecap.errors import OptionError
from wirecap.guard.detectors import Reason
from wirecap.guard.policy import MAX_ACTIVE_BLOCKS, Block

__all__ = [
    "DEFAULT_TABLE",
    "KernelLimitSpec",
    "NftCommand",
    "NftLayout",
    "SetElement",
    "block_commands",
    "flush_commands",
    "list_chain_commands",
    "list_commands",
    "parse_comment",
    "parse_drop_counters",
    "parse_elements",
    "request",
    "setup_commands",
    "teardown_commands",
    "unblock_commands",
]

NftCommand: TypeAlias = dict[str, Any]

DEFAULT_TABLE = "wirecap_guard"
#: NF_IP_PRI_RAW: ahead of conntrack (NF_IP_PRI_CONNTRACK, -200) and every filter chain.
PRIORITY_RAW = -300
#: nft identifiers: a letter, then letters, digits, underscores (NFT_NAME_MAXLEN is 256;
#: kept short so messages stay readable).
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
#: Element comments are user data of at most 128 bytes (NFT_USERDATA_MAXLEN in nft).
MAX_COMMENT = 128
#: How long the kernel remembers a source's rate-limit state after its last SYN.
KERNEL_LIMIT_STATE_TIMEOUT_S = 60

_COMMENT = re.compile(r"(?P<reason>[a-z-]+) #(?P<offence>\d+)\Z")


@dataclass(frozen=True, slots=True)
class KernelLimitSpec:
    """Drop a source's SYNs beyond ``rate`` per second (after ``burst``) in the kernel."""

    rate: int
    burst: int

    def __post_init__(self) -> None:
        if not 1 <= self.rate <= 10_000_000:
            raise OptionError(f"kernel limit {self.rate}/s must be within 1..10000000")
        if not 1 <= self.burst <= 10_000_000:
            raise OptionError(f"kernel limit burst {self.burst} must be within 1..10000000")


@dataclass(frozen=True, slots=True)
class NftLayout:
    """Names and sizes of what the guard creates in nftables."""

    table: str = DEFAULT_TABLE
    size: int = MAX_ACTIVE_BLOCKS
    kernel_limit: KernelLimitSpec | None = None
    #: Add a no-op ``ct state`` rule: conntrack tracks a namespace's traffic only once
    #: a rule needs it, and the half-open policy reads conntrack.
    track_connections: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.table):
            raise OptionError(
                f"nft table name {self.table!r}: use a letter, then letters, digits or _"
            )

    family = "inet"
    chain = "prerouting"

    def set_name(self, version: int) -> str:
        return "blocked_v4" if version == 4 else "blocked_v6"

    def limit_set_name(self, version: int) -> str:
        return "synlimit_v4" if version == 4 else "synlimit_v6"

    def _ref(self, **extra: Any) -> dict[str, Any]:
        return {"family": self.family, "table": self.table, **extra}


class SetElement(NamedTuple):
    """One address in a block set, as nft lists it."""

    address: bytes
    #: The element's timeout and the seconds left of it; None when it has none.
    timeout_s: int | None
    expires_s: int | None
    comment: str | None


def request(commands: Sequence[NftCommand]) -> dict[str, Any]:
    """The JSON document libnftables runs: one transaction, all or nothing."""
    return {"nftables": list(commands)}


def _saddr(version: int) -> dict[str, Any]:
    return {"payload": {"protocol": "ip" if version == 4 else "ip6", "field": "saddr"}}


def _syn_only() -> dict[str, Any]:
    flags = {"payload": {"protocol": "tcp", "field": "flags"}}
    return {"match": {"op": "==", "left": {"&": [flags, ["syn", "ack"]]}, "right": "syn"}}


def setup_commands(layout: NftLayout, *, limit_sets_exist: bool = False) -> list[NftCommand]:
    """Create (or keep) the table and sets; rewrite the chain's rules atomically.

    ``add set`` of an existing set is a no-op only when the definitions match, and the
    kernel holds the rate-limit sets with the "dynamic" flag, which nft 1.0.6's JSON
    parser cannot spell: once they exist, pass ``limit_sets_exist`` to leave them out.
    """
    commands: list[NftCommand] = [
        {"add": {"table": {"family": layout.family, "name": layout.table}}}
    ]
    for version in (4, 6):
        kind = "ipv4_addr" if version == 4 else "ipv6_addr"
        commands.append(
            {
                "add": {
                    "set": layout._ref(
                        name=layout.set_name(version),
                        type=kind,
                        flags=["timeout"],
                        size=layout.size,
                    )
                }
            }
        )
        if layout.kernel_limit is not None and not limit_sets_exist:
            commands.append(
                {
                    "add": {
                        "set": layout._ref(
                            name=layout.limit_set_name(version),
                            type=kind,
                            flags=["timeout"],
                            timeout=KERNEL_LIMIT_STATE_TIMEOUT_S,
                            size=layout.size,
                        )
                    }
                }
            )
    commands.append(
        {
            "add": {
                "chain": layout._ref(
                    name=layout.chain,
                    type="filter",
                    hook="prerouting",
                    prio=PRIORITY_RAW,
                    policy="accept",
                )
            }
        }
    )
    commands.append({"flush": {"chain": layout._ref(name=layout.chain)}})
    for version in (4, 6):
        drop = [
            {
                "match": {
                    "op": "==",
                    "left": _saddr(version),
                    "right": f"@{layout.set_name(version)}",
                }
            },
            {"counter": None},
            {"drop": None},
        ]
        commands.append({"add": {"rule": layout._ref(chain=layout.chain, expr=drop)}})
    if layout.track_connections:
        state = {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}}
        commands.append(
            {"add": {"rule": layout._ref(chain=layout.chain, expr=[state, {"counter": None}])}}
        )
    limit = layout.kernel_limit
    if limit is not None:
        for version in (4, 6):
            meter = {
                "set": {
                    "op": "add",
                    "elem": _saddr(version),
                    "set": f"@{layout.limit_set_name(version)}",
                    "stmt": [
                        {
                            "limit": {
                                "rate": limit.rate,
                                "burst": limit.burst,
                                "per": "second",
                                "inv": True,
                            }
                        }
                    ],
                }
            }
            expr = [_syn_only(), meter, {"counter": None}, {"drop": None}]
            commands.append({"add": {"rule": layout._ref(chain=layout.chain, expr=expr)}})
    return commands


def _version(address: bytes) -> int:
    return 4 if len(address) == 4 else 6


def comment_for(reason: Reason, offence: int) -> str:
    return f"{reason.value} #{offence}"[:MAX_COMMENT]


def parse_comment(comment: str | None) -> tuple[Reason, int] | None:
    """(reason, offence) from an element comment this module wrote, else None."""
    if comment is None:
        return None
    match = _COMMENT.match(comment)
    if match is None:
        return None
    try:
        return Reason(match["reason"]), int(match["offence"])
    except ValueError:
        return None


def block_commands(layout: NftLayout, blocks: Iterable[Block]) -> list[NftCommand]:
    """Add each address with its own timeout, one command per address family."""
    by_version: dict[int, list[dict[str, Any]]] = {4: [], 6: []}
    for block in blocks:
        element = {
            "val": str(ipaddress.ip_address(block.address)),
            "timeout": block.timeout_s,
            "comment": comment_for(block.reason, block.offence),
        }
        by_version[_version(block.address)].append({"elem": element})
    return [
        {"add": {"element": layout._ref(name=layout.set_name(version), elem=elements)}}
        for version, elements in by_version.items()
        if elements
    ]


def unblock_commands(layout: NftLayout, addresses: Iterable[bytes]) -> list[NftCommand]:
    """Delete each address; nft fails the whole transaction if one is not in its set."""
    by_version: dict[int, list[str]] = {4: [], 6: []}
    for address in addresses:
        by_version[_version(address)].append(str(ipaddress.ip_address(address)))
    return [
        {"delete": {"element": layout._ref(name=layout.set_name(version), elem=elements)}}
        for version, elements in by_version.items()
        if elements
    ]


def flush_commands(layout: NftLayout) -> list[NftCommand]:
    return [{"flush": {"set": layout._ref(name=layout.set_name(v))}} for v in (4, 6)]


def list_commands(layout: NftLayout) -> list[NftCommand]:
    return [{"list": {"set": layout._ref(name=layout.set_name(v))}} for v in (4, 6)]


def list_chain_commands(layout: NftLayout) -> list[NftCommand]:
    return [{"list": {"chain": layout._ref(name=layout.chain)}}]


def parse_drop_counters(output: Any, layout: NftLayout) -> dict[str, int]:
    """Packets dropped per kind of rule in a ``list chain`` reply of the guard's chain.

    ``blocked``: the rules matching a block set; ``syn-limit``: the kernel meter rules.
    Rules of other shapes are skipped; so is anything unexpected.
    """
    counts = {"blocked": 0, "syn-limit": 0}
    items = output.get("nftables") if isinstance(output, Mapping) else None
    if not isinstance(items, list):
        return counts
    blocked = {f"@{layout.set_name(4)}", f"@{layout.set_name(6)}"}
    for item in items:
        rule = item.get("rule") if isinstance(item, Mapping) else None
        if not isinstance(rule, Mapping) or rule.get("table") != layout.table:
            continue
        exprs = rule.get("expr")
        if not isinstance(exprs, list) or {"drop": None} not in exprs:
            continue
        packets = None
        kind = None
        for expr in exprs:
            if not isinstance(expr, Mapping):
                continue
            counter = expr.get("counter")
            if isinstance(counter, Mapping):
                packets = _int_or_none(counter.get("packets"))
            match = expr.get("match")
            if isinstance(match, Mapping) and match.get("right") in blocked:
                kind = "blocked"
            if isinstance(expr.get("set"), Mapping):
                kind = "syn-limit"
        if kind is not None and packets is not None:
            counts[kind] += packets
    return counts


def teardown_commands(layout: NftLayout) -> list[NftCommand]:
    return [{"delete": {"table": {"family": layout.family, "name": layout.table}}}]


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _element(item: Any) -> SetElement | None:
    if isinstance(item, str):
        value: Any = item
        fields: Mapping[str, Any] = {}
    elif isinstance(item, Mapping) and isinstance(item.get("elem"), Mapping):
        fields = item["elem"]
        value = fields.get("val")
    else:
        return None
    if not isinstance(value, str):
        return None
    try:
        address = ipaddress.ip_address(value).packed
    except ValueError:
        return None
    comment = fields.get("comment")
    return SetElement(
        address,
        _int_or_none(fields.get("timeout")),
        _int_or_none(fields.get("expires")),
        comment if isinstance(comment, str) else None,
    )


def parse_elements(output: Any, layout: NftLayout) -> list[SetElement]:
    """The block-set elements in a ``list set`` reply; anything unexpected is skipped.

    ``output`` is the parsed JSON nft printed: ``{"nftables": [{"metainfo": ...},
    {"set": {..., "elem": [...]}}]}``. An element without a timeout is listed as a
    bare string, one with a timeout as ``{"elem": {"val", "timeout", "expires"}}``.
    """
    wanted = {layout.set_name(4), layout.set_name(6)}
    items = output.get("nftables") if isinstance(output, Mapping) else None
    if not isinstance(items, list):
        return []
    elements: list[SetElement] = []
    for item in items:
        found = item.get("set") if isinstance(item, Mapping) else None
        if not isinstance(found, Mapping) or found.get("table") != layout.table:
            continue
        if found.get("name") not in wanted:
            continue
        members = found.get("elem")
        if not isinstance(members, list):
            continue
        for member in members:
            element = _element(member)
            if element is not None:
                elements.append(element)
    return elements

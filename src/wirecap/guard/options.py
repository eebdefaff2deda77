"""The guard's options: one frozen value, built from defaults, a config file and flags.

The config file is YAML (JSON is YAML too); every key is optional and a key set to
``false`` turns a detection policy off::

    interface: eth0
    metrics: "127.0.0.1:9112"
    dry_run: false
    allow: [192.0.2.0/24, "2001:db8::/32"]
    port_scan: {ports: 15, window: 60}       # distinct ports within seconds
    syn_rate: {rate: 50, burst: 100}         # SYNs per second per source, after a burst
    half_open: {max: 64, interval: 2}        # from conntrack; off unless set
    block: {timeout: 600, factor: 2, max_timeout: 604800, forget_after: 86400}
    kernel_limit: {rate: 200, burst: 400}    # nft meter; off unless set
    table: wirecap_guard
    state_file: /var/lib/wirecap/guard.json
    log: {format: text, connections: true, rate: 10, burst: 20}
    nft: {backend: auto, command: nft}
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from wirecap.errors import OptionError
from wirecap.guard.detectors import HalfOpenSpec, PortScanSpec, SynRateSpec
from wirecap.guard.nft import KernelLimitSpec, NftLayout
from wirecap.guard.policy import AllowList, BlockSpec

__all__ = [
    "DEFAULT_STATE_FILE",
    "MAX_CONFIG_BYTES",
    "GuardOptions",
    "ListenAddress",
    "LogSpec",
    "apply_config",
    "parse_listen",
]

#: Where blocks are kept across restarts (FHS: variable state of a program).
DEFAULT_STATE_FILE = Path("/var/lib/wirecap/guard.json")

#: A config file is a few hundred bytes; a megabyte is surely the wrong file.
MAX_CONFIG_BYTES = 1 << 20

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where the metrics server listens; an empty host means every address."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """``HOST:PORT``, ``:PORT`` (every address) or ``[V6]:PORT``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise OptionError(f"listen address {text!r}: expected HOST:PORT, :PORT or [V6]:PORT")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise OptionError(f"listen address {text!r}: port {port} is outside 1..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise OptionError(f"listen address {text!r}: {host!r} is not IPv6") from None
    elif ":" in host:
        raise OptionError(f"listen address {text!r}: write an IPv6 host in brackets")
    return ListenAddress(host, port)


@dataclass(frozen=True, slots=True)
class LogSpec:
    """What is logged to standard output, and how fast."""

    format: Literal["text", "json"] = "text"
    #: Log each new connection attempt, as tcpcap did.
    connections: bool = True
    #: Connection lines per second after a burst; the rest are counted and summarised.
    rate: float = 10.0
    burst: int = 20

    def __post_init__(self) -> None:
        if self.format not in ("text", "json"):
            raise OptionError(f"log format {self.format!r}: use text or json")
        if not 0 < self.rate <= 1_000_000:
            raise OptionError(f"log rate {self.rate}/s must be within (0, 1000000]")
        if not 1 <= self.burst <= 1_000_000:
            raise OptionError(f"log burst {self.burst} must be within 1..1000000")


@dataclass(frozen=True, slots=True)
class GuardOptions:
    """Everything ``wirecap guard run`` needs, validated."""

    interface: str = "any"
    metrics: ListenAddress | None = None
    dry_run: bool = False
    port_scan: PortScanSpec | None = field(default_factory=PortScanSpec)
    syn_rate: SynRateSpec | None = field(default_factory=SynRateSpec)
    half_open: HalfOpenSpec | None = None
    block: BlockSpec = field(default_factory=BlockSpec)
    allow: tuple[str, ...] = ()
    layout: NftLayout = field(default_factory=NftLayout)
    state_file: Path | None = DEFAULT_STATE_FILE
    log: LogSpec = field(default_factory=LogSpec)
    backend: Literal["auto", "library", "command"] = "auto"
    nft_command: str = "nft"
    #: Also export tcpcap's two counters under their own names.
    tcpcap_metrics: bool = False
    #: How often the kernel sets are compared with what the guard believes, and
    #: failed nft commands retried.
    reconcile_s: float = 5.0
    #: Addresses added to the allow-list (tcpcap's PUBLIC_IP).
    extra_allowed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.interface:
            raise OptionError("interface name is empty")
        if not 0.1 <= self.reconcile_s <= 3600:
            raise OptionError(f"reconcile interval {self.reconcile_s} s is outside 0.1..3600")
        self.allow_list()  # validates every entry once, here

    def allow_list(self) -> AllowList:
        return AllowList((*self.allow, *self.extra_allowed))


# -- config file -------------------------------------------------------------------------


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any] | Literal[False] | None:
    """A nested mapping, None when absent, False when switched off."""
    if key not in data:
        return None
    value = data[key]
    if value is False or value is None:
        return False
    if not isinstance(value, Mapping):
        raise OptionError(f"config: {key} must be a mapping or false")
    return value


def _number(section: Mapping[str, Any], key: str, kind: Callable[[Any], T], where: str) -> T:
    value = section[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OptionError(f"config: {where}.{key} must be a number, not {value!r}")
    return kind(value)


def _check_keys(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise OptionError(f"config: unknown key {where}.{unknown[0]} (known: {sorted(allowed)})")


def _spec(
    section: Mapping[str, Any],
    where: str,
    names: Mapping[str, tuple[str, Callable[[Any], Any]]],
    base: T,
) -> T:
    _check_keys(section, set(names), where)
    changes = {
        attr: _number(section, key, kind, where)
        for key, (attr, kind) in names.items()
        if key in section
    }
    return dataclasses.replace(base, **changes)  # type: ignore[type-var]


_TOP_KEYS = {
    "interface",
    "metrics",
    "dry_run",
    "allow",
    "port_scan",
    "syn_rate",
    "half_open",
    "block",
    "kernel_limit",
    "table",
    "state_file",
    "log",
    "nft",
}


def apply_config(base: GuardOptions, data: Any) -> GuardOptions:
    """``base`` with the settings of a parsed config file applied."""
    if data is None:
        return base
    if not isinstance(data, Mapping):
        raise OptionError("config: the file must hold a mapping of settings")
    _check_keys(data, _TOP_KEYS, "config")
    changes: dict[str, Any] = {}
    if "interface" in data:
        changes["interface"] = str(data["interface"])
    if "metrics" in data:
        metrics = data["metrics"]
        changes["metrics"] = None if metrics in (None, False) else parse_listen(str(metrics))
    if "dry_run" in data:
        if not isinstance(data["dry_run"], bool):
            raise OptionError("config: dry_run must be true or false")
        changes["dry_run"] = data["dry_run"]
    if "allow" in data:
        allow = data["allow"]
        if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
            raise OptionError("config: allow must be a list of addresses or networks")
        changes["allow"] = tuple(allow)
    for key, cls, names in (
        ("port_scan", PortScanSpec, {"ports": ("ports", int), "window": ("window_s", float)}),
        ("syn_rate", SynRateSpec, {"rate": ("rate", float), "burst": ("burst", int)}),
        (
            "half_open",
            HalfOpenSpec,
            {"max": ("max_half_open", int), "interval": ("interval_s", float)},
        ),
    ):
        section = _section(data, key)
        if section is False:
            changes[key] = None
        elif section is not None:
            current = getattr(base, key) or cls()
            changes[key] = _spec(section, key, names, current)
    block = _section(data, "block")
    if block:
        changes["block"] = _spec(
            block,
            "block",
            {
                "timeout": ("timeout_s", int),
                "factor": ("factor", float),
                "max_timeout": ("max_timeout_s", int),
                "forget_after": ("forget_after_s", int),
            },
            base.block,
        )
    layout = base.layout
    limit = _section(data, "kernel_limit")
    if limit is False:
        layout = dataclasses.replace(layout, kernel_limit=None)
    elif limit is not None:
        _check_keys(limit, {"rate", "burst"}, "kernel_limit")
        rate = _number(limit, "rate", int, "kernel_limit") if "rate" in limit else 200
        burst = _number(limit, "burst", int, "kernel_limit") if "burst" in limit else 2 * rate
        layout = dataclasses.replace(layout, kernel_limit=KernelLimitSpec(rate, burst))
    if "table" in data:
        layout = dataclasses.replace(layout, table=str(data["table"]))
    changes["layout"] = layout
    if "state_file" in data:
        state = data["state_file"]
        changes["state_file"] = None if state in (None, False) else Path(str(state))
    log = _section(data, "log")
    if log:
        _check_keys(log, {"format", "connections", "rate", "burst"}, "log")
        log_changes: dict[str, Any] = {}
        if "format" in log:
            log_changes["format"] = log["format"]
        if "connections" in log:
            log_changes["connections"] = bool(log["connections"])
        if "rate" in log:
            log_changes["rate"] = _number(log, "rate", float, "log")
        if "burst" in log:
            log_changes["burst"] = _number(log, "burst", int, "log")
        changes["log"] = dataclasses.replace(base.log, **log_changes)
    nft = _section(data, "nft")
    if nft:
        _check_keys(nft, {"backend", "command"}, "nft")
        if "backend" in nft:
            if nft["backend"] not in ("auto", "library", "command"):
                raise OptionError("config: nft.backend must be auto, library or command")
            changes["backend"] = nft["backend"]
        if "command" in nft:
            changes["nft_command"] = str(nft["command"])
    return dataclasses.replace(base, **changes)

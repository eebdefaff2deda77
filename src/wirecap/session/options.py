"""What a capture session records: the frozen options and the interfaces they resolve to.

Pure: the names of the machine's interfaces are passed in, nothing is looked up here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wirecap.core.capture.spec import MAX_SNAPLEN
from wirecap.core.formats.records import DEFAULT_SNAPLEN
from wirecap.errors import NoSuchInterfaceError, OptionError

__all__ = [
    "ANY_INTERFACE",
    "DEFAULT_WAIT_BEFORE_TERMINATE_S",
    "MAX_INTERFACES",
    "MAX_WAIT_BEFORE_TERMINATE_S",
    "SessionOptions",
    "resolve_interfaces",
]

#: libpcap's pseudo-device that captures on every interface at once (Linux).
ANY_INTERFACE = "any"

#: capture-packets' default. Here it is only an upper bound: the exit normally
#: returns as soon as every capture has seen its marker packet (milliseconds).
DEFAULT_WAIT_BEFORE_TERMINATE_S = 3.0

#: A longer wait hides a hung capture instead of reporting it; a minute is
#: already far beyond what a local marker packet needs.
MAX_WAIT_BEFORE_TERMINATE_S = 60.0

#: One libpcap handle (a 32 MiB kernel ring) and one file per
#: interface: 64 rings are 2 GiB of locked memory, more than a diagnostic
#: session should ever take. Use `any` for everything instead.
MAX_INTERFACES = 64


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """The parameters of `capture_packets()`, validated once at construction.

    ``interfaces`` None means every interface (libpcap's ``any`` where it exists).
    """

    interfaces: tuple[str, ...] | None = None
    #: BPF expression in tcpdump's language; empty captures everything.
    filter: str = ""
    wait_for_packets: bool = True
    wait_before_terminate: float = DEFAULT_WAIT_BEFORE_TERMINATE_S
    snaplen: int = DEFAULT_SNAPLEN

    def __post_init__(self) -> None:
        if self.interfaces is not None:
            if isinstance(self.interfaces, str):
                raise OptionError("interfaces must be a list of names, not one string")
            if not self.interfaces:
                raise OptionError("interfaces is empty: give None to capture on all")
            if len(self.interfaces) > MAX_INTERFACES:
                raise OptionError(
                    f"{len(self.interfaces)} interfaces, more than MAX_INTERFACES "
                    f"{MAX_INTERFACES}: capture on {ANY_INTERFACE!r} instead"
                )
            for name in self.interfaces:
                if not name or "\0" in name:
                    raise OptionError(f"bad interface name {name!r}")
        wait = self.wait_before_terminate
        if not (math.isfinite(wait) and 0 <= wait <= MAX_WAIT_BEFORE_TERMINATE_S):
            raise OptionError(
                f"wait_before_terminate {wait} is outside 0..{MAX_WAIT_BEFORE_TERMINATE_S} s"
            )
        if not 1 <= self.snaplen <= MAX_SNAPLEN:
            raise OptionError(f"snaplen {self.snaplen} is outside 1..{MAX_SNAPLEN}")

    @classmethod
    def build(
        cls,
        *,
        interfaces: Iterable[str] | None = None,
        filter: str = "",
        wait_for_packets: bool = True,
        wait_before_terminate: float = DEFAULT_WAIT_BEFORE_TERMINATE_S,
        snaplen: int = DEFAULT_SNAPLEN,
    ) -> SessionOptions:
        """Options from what a caller of `capture_packets()` passes (any iterable of names)."""
        if isinstance(interfaces, str):
            raise OptionError("interfaces must be a list of names, not one string")
        return cls(
            interfaces=None if interfaces is None else tuple(interfaces),
            filter=filter,
            wait_for_packets=bool(wait_for_packets),
            wait_before_terminate=float(wait_before_terminate),
            snaplen=snaplen,
        )


def resolve_interfaces(
    requested: Sequence[str] | None, available: Sequence[str]
) -> tuple[str, ...]:
    """The interfaces to open one handle each on, in the caller's order, without repeats.

    None means all: ``any`` when the system offers it (one handle sees every
    interface), else every interface listed. A named interface must exist.

    Raises:
        NoSuchInterfaceError: a requested name is not among `available`, or nothing
            is available at all.
    """
    if requested is None:
        if ANY_INTERFACE in available:
            return (ANY_INTERFACE,)
        if not available:
            raise NoSuchInterfaceError("no interface to capture on")
        return tuple(dict.fromkeys(available))
    known = set(available)
    missing = [name for name in requested if name not in known]
    if missing:
        listed = ", ".join(sorted(known)) or "none"
        raise NoSuchInterfaceError(f"no such interface: {', '.join(missing)} (available: {listed})")
    return tuple(dict.fromkeys(requested))

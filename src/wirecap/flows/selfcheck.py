"""`wirecap flows check`: what the host says, judged (pure: facts in, findings out).

conntracct's roadmap promised a self-test (its issue #24) and never shipped
one. The shell gathers `Facts`; `judge` says what is wrong and how to fix it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Facts", "Finding", "Level", "judge"]

_TRACK_RULE = (
    "nft add table inet wirecap; nft add chain inet wirecap out "
    "'{ type filter hook output priority 0; }'; "
    "nft add rule inet wirecap out ct state new,established accept"
)


class Level(enum.Enum):
    OK = "ok"
    WARN = "warning"
    FAIL = "error"


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    message: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class Facts:
    netns: str
    cap_net_admin: bool
    conntrack_present: bool
    #: None: the sysctl could not be read.
    acct: int | None
    timestamp: int | None
    events: int | None
    count: int | None
    netlink_error: str | None
    sysctl_manage: bool


def judge(facts: Facts) -> list[Finding]:
    out: list[Finding] = []
    where = f" in network namespace {facts.netns}" if facts.netns else ""
    if facts.cap_net_admin:
        out.append(Finding(Level.OK, "running with CAP_NET_ADMIN"))
    else:
        out.append(
            Finding(
                Level.FAIL,
                "CAP_NET_ADMIN is missing: conntrack events and dumps need it",
                "run as root or: setcap cap_net_admin+ep $(which python3)",
            )
        )
    if not facts.conntrack_present:
        out.append(
            Finding(
                Level.FAIL,
                f"conntrack is not available{where} (no /proc/sys/net/netfilter/nf_conntrack_max)",
                "modprobe nf_conntrack nf_conntrack_netlink",
            )
        )
        return out
    out.append(Finding(Level.OK, f"conntrack is present{where}"))
    for name, value in (
        ("nf_conntrack_acct", facts.acct),
        ("nf_conntrack_timestamp", facts.timestamp),
    ):
        fix = f"sysctl -w net.netfilter.{name}=1"
        if value == 1:
            out.append(Finding(Level.OK, f"{name} = 1"))
        elif facts.sysctl_manage:
            out.append(
                Finding(Level.OK, f"{name} = {value}; `run` will set it to 1 (sysctl_manage is on)")
            )
        else:
            what = "counters" if name.endswith("acct") else "start/stop times"
            out.append(Finding(Level.WARN, f"{name} = {value}: flows get no {what}", fix))
    if facts.events == 0:
        out.append(
            Finding(
                Level.FAIL,
                "nf_conntrack_events = 0: the kernel sends no events",
                "sysctl -w net.netfilter.nf_conntrack_events=1",
            )
        )
    else:
        out.append(Finding(Level.OK, f"nf_conntrack_events = {facts.events}"))
    if facts.netlink_error:
        out.append(
            Finding(
                Level.FAIL,
                f"ctnetlink does not answer: {facts.netlink_error}",
                "modprobe nf_conntrack_netlink; run as root",
            )
        )
    else:
        out.append(Finding(Level.OK, "ctnetlink answered a table dump"))
    if facts.count:
        out.append(
            Finding(Level.OK, f"{facts.count} flows are tracked now: conntrack hooks are active")
        )
    else:
        out.append(
            Finding(
                Level.WARN,
                f"no flow is tracked{where}: conntrack only hooks in "
                "once a rule, NAT or a helper needs it",
                _TRACK_RULE,
            )
        )
    return out

"""`check` findings from host facts."""

from __future__ import annotations

from dataclasses import replace

from wirecap.flows.selfcheck import Facts, Level, judge

GOOD = Facts(
    netns="",
    cap_net_admin=True,
    conntrack_present=True,
    acct=1,
    timestamp=1,
    events=2,
    count=5,
    netlink_error=None,
    sysctl_manage=False,
)


def _levels(facts: Facts) -> list[Level]:
    return [f.level for f in judge(facts)]


def test_all_good() -> None:
    assert set(_levels(GOOD)) == {Level.OK}


def test_sysctls_off_warn_only_without_sysctl_manage() -> None:
    off = replace(GOOD, acct=0, timestamp=0)
    warnings = [f for f in judge(off) if f.level is Level.WARN]
    assert len(warnings) == 2 and all("sysctl -w" in f.fix for f in warnings)
    assert set(_levels(replace(off, sysctl_manage=True))) == {Level.OK}


def test_failures_say_how_to_fix() -> None:
    for facts in (
        replace(GOOD, cap_net_admin=False),
        replace(GOOD, conntrack_present=False),
        replace(GOOD, events=0),
        replace(GOOD, netlink_error="EPERM"),
    ):
        failures = [f for f in judge(facts) if f.level is Level.FAIL]
        assert failures and all(f.fix for f in failures)


def test_no_tracked_flow_suggests_a_rule() -> None:
    [warning] = [f for f in judge(replace(GOOD, count=0)) if f.level is Level.WARN]
    assert "ct state" in warning.fix

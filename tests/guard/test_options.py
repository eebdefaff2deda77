"""Tests for wirecap.guard.options: config file settings and listen addresses."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from wirecap.errors import OptionError
from wirecap.guard.detectors import HalfOpenSpec, PortScanSpec, SynRateSpec
from wirecap.guard.nft import KernelLimitSpec
from wirecap.guard.options import GuardOptions, ListenAddress, apply_config, parse_listen

FULL = """
interface: eth1
metrics: "127.0.0.1:9112"
dry_run: true
allow: [192.0.2.0/24, "2001:db8::/32"]
port_scan: {ports: 4, window: 30}
syn_rate: false
half_open: {max: 10, interval: 1}
block: {timeout: 60, factor: 1.5, max_timeout: 3600, forget_after: 7200}
kernel_limit: {rate: 300}
table: guard_test
state_file: /tmp/guard-state.json
log: {format: json, connections: false, rate: 5, burst: 7}
nft: {backend: command, command: /usr/sbin/nft}
"""


def test_every_setting_of_the_documented_example() -> None:
    options = apply_config(GuardOptions(), yaml.safe_load(FULL))
    assert options.interface == "eth1"
    assert options.metrics == ListenAddress("127.0.0.1", 9112)
    assert options.dry_run
    assert options.allow == ("192.0.2.0/24", "2001:db8::/32")
    assert options.port_scan == PortScanSpec(4, 30.0)
    assert options.syn_rate is None
    assert options.half_open == HalfOpenSpec(10, 1.0)
    assert (options.block.timeout_s, options.block.factor) == (60, 1.5)
    assert options.layout.kernel_limit == KernelLimitSpec(300, 600)
    assert options.layout.table == "guard_test"
    assert options.state_file == Path("/tmp/guard-state.json")
    assert (options.log.format, options.log.connections, options.log.rate) == ("json", False, 5)
    assert (options.backend, options.nft_command) == ("command", "/usr/sbin/nft")


def test_empty_config_changes_nothing() -> None:
    assert apply_config(GuardOptions(), None) == GuardOptions()
    assert apply_config(GuardOptions(), {}) == GuardOptions()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "mapping of settings"),
        ({"colour": "red"}, "unknown key config.colour"),
        ({"port_scan": {"ports": "many"}}, "must be a number"),
        ({"port_scan": {"ports": 1}}, "within 2..65535"),
        ({"port_scan": {"depth": 1}}, "unknown key port_scan.depth"),
        ({"port_scan": 3}, "mapping or false"),
        ({"allow": "10.0.0.0/8"}, "list of addresses"),
        ({"allow": ["10.0.0.0/33"]}, "allow-list entry"),
        ({"dry_run": "yes"}, "true or false"),
        ({"metrics": "9112"}, "HOST:PORT"),
        ({"log": {"format": "xml"}}, "text or json"),
        ({"nft": {"backend": "iptables"}}, "auto, library or command"),
        ({"table": "a b"}, "nft table name"),
        ({"block": {"timeout": True}}, "must be a number"),
        ({"block": {"timeout": float("inf")}}, "must be a number"),
        ({"port_scan": {"ports": float("nan")}}, "must be a number"),
    ],
)
def test_bad_config_is_refused_with_the_reason(data: Any, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        apply_config(GuardOptions(), data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":2112", ListenAddress("", 2112)),
        ("127.0.0.1:9112", ListenAddress("127.0.0.1", 9112)),
        ("[::1]:9112", ListenAddress("::1", 9112)),
    ],
)
def test_parse_listen(text: str, expected: ListenAddress) -> None:
    assert parse_listen(text) == expected
    assert parse_listen(str(expected)) == expected


@pytest.mark.parametrize("text", ["2112", "host:", "host:0", "host:70000", "::1:80", "[x]:1"])
def test_parse_listen_refuses(text: str) -> None:
    with pytest.raises(OptionError):
        parse_listen(text)


def test_options_validate_themselves() -> None:
    with pytest.raises(OptionError):
        GuardOptions(interface="")
    with pytest.raises(OptionError):
        GuardOptions(allow=("nonsense",))
    with pytest.raises(OptionError):
        GuardOptions(reconcile_s=0)
    assert GuardOptions(extra_allowed=("203.0.113.5",)).allow_list().match(bytes([203, 0, 113, 5]))
    assert SynRateSpec() == GuardOptions().syn_rate


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "interface",
                        "metrics",
                        "allow",
                        "port_scan",
                        "ports",
                        "window",
                        "syn_rate",
                        "rate",
                        "burst",
                        "block",
                        "timeout",
                        "kernel_limit",
                        "log",
                        "format",
                        "nft",
                        "backend",
                        "table",
                        "state_file",
                        "dry_run",
                        "half_open",
                        "max",
                    ]
                ),
                inner,
                max_size=6,
            )
        ),
        max_leaves=30,
    )
)
def test_garbage_config_gives_option_errors_only(data: Any) -> None:
    with contextlib.suppress(OptionError):
        apply_config(GuardOptions(), data)

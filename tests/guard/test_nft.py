"""Tests for wirecap.guard.nft: the JSON commands and the parsing of nft's answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.guard import frames as f
from wirecap.errors import OptionError
from wirecap.guard import nft
from wirecap.guard.detectors import Reason
from wirecap.guard.nft import KernelLimitSpec, NftLayout, SetElement
from wirecap.guard.policy import Block

LAYOUT = NftLayout()

#: `nft -j list set inet wirecap_guard blocked_v4` as nft 1.0.6 printed it here.
LISTED = json.loads(
    '{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5",'
    ' "json_schema_version": 1}}, {"set": {"family": "inet", "name": "blocked_v4",'
    ' "table": "wirecap_guard", "type": "ipv4_addr", "handle": 1, "size": 65536,'
    ' "flags": ["timeout"], "elem": [{"elem": {"val": "10.0.0.1", "timeout": 5,'
    ' "expires": 4, "comment": "port-scan #1"}}, "10.0.0.2"]}}]}'
)


def _kinds(commands: list[dict[str, Any]]) -> list[str]:
    return [f"{verb} {next(iter(body))}" for c in commands for verb, body in c.items()]


def test_setup_keeps_sets_and_rewrites_the_chain_in_one_transaction() -> None:
    commands = nft.setup_commands(LAYOUT)
    assert _kinds(commands) == [
        "add table",
        "add set",
        "add set",
        "add chain",
        "flush chain",
        "add rule",
        "add rule",
    ]
    chain = commands[3]["add"]["chain"]
    assert (chain["hook"], chain["prio"], chain["policy"]) == ("prerouting", -300, "accept")
    rule = commands[5]["add"]["rule"]["expr"]
    assert rule[0]["match"]["right"] == "@blocked_v4" and rule[-1] == {"drop": None}
    assert "flush set" not in _kinds(commands)  # a restart must not lose blocks


def test_setup_with_kernel_limit_and_conntrack() -> None:
    layout = NftLayout(kernel_limit=KernelLimitSpec(200, 400), track_connections=True)
    commands = nft.setup_commands(layout)
    assert _kinds(commands).count("add set") == 4
    meters = [c["add"]["rule"]["expr"][1] for c in commands[-2:]]
    assert [m["set"]["set"] for m in meters] == ["@synlimit_v4", "@synlimit_v6"]
    assert meters[0]["set"]["stmt"] == [
        {"limit": {"rate": 200, "burst": 400, "per": "second", "inv": True}}
    ]
    again = nft.setup_commands(layout, limit_sets_exist=True)
    assert _kinds(again).count("add set") == 2


def test_block_and_unblock_group_by_family() -> None:
    blocks = [
        Block(f.V4_REMOTE, 600, Reason.PORT_SCAN, 1, "", 0),
        Block(f.V6_REMOTE, 1200, Reason.SYN_RATE, 2, "", 0),
    ]
    commands = nft.block_commands(LAYOUT, blocks)
    v4 = commands[0]["add"]["element"]
    assert v4["name"] == "blocked_v4"
    assert v4["elem"] == [
        {"elem": {"val": "198.51.100.7", "timeout": 600, "comment": "port-scan #1"}}
    ]
    assert commands[1]["add"]["element"]["elem"][0]["elem"]["val"] == "2001:db8::7"
    removal = nft.unblock_commands(LAYOUT, [f.V6_REMOTE])
    assert removal == [
        {
            "delete": {
                "element": {
                    "family": "inet",
                    "table": "wirecap_guard",
                    "name": "blocked_v6",
                    "elem": ["2001:db8::7"],
                }
            }
        }
    ]
    assert nft.block_commands(LAYOUT, []) == []


def test_parse_elements_of_a_real_listing() -> None:
    assert nft.parse_elements(LISTED, LAYOUT) == [
        SetElement(bytes([10, 0, 0, 1]), 5, 4, "port-scan #1"),
        SetElement(bytes([10, 0, 0, 2]), None, None, None),
    ]
    assert nft.parse_elements(LISTED, NftLayout(table="other")) == []


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "nftables",
                        "set",
                        "elem",
                        "val",
                        "table",
                        "name",
                        "timeout",
                        "expires",
                        "comment",
                    ]
                ),
                inner,
                max_size=5,
            )
        ),
        max_leaves=30,
    )
)
def test_parse_elements_never_raises_on_garbage(document: Any) -> None:
    for element in nft.parse_elements(document, LAYOUT):
        assert len(element.address) in (4, 16)


def test_comments_round_trip() -> None:
    assert nft.parse_comment(nft.comment_for(Reason.HALF_OPEN, 12)) == (Reason.HALF_OPEN, 12)
    for other in (None, "", "port-scan", "nonsense #1", "port-scan #x"):
        assert nft.parse_comment(other) is None


def test_table_name_is_checked() -> None:
    with pytest.raises(OptionError):
        NftLayout(table="bad name; flush ruleset")
    with pytest.raises(OptionError):
        KernelLimitSpec(0, 1)


#: `nft -j list chain inet wirecap_guard prerouting` as nft 1.0.6 printed it (abridged).
CHAIN = json.loads(
    '{"nftables": [{"metainfo": {"json_schema_version": 1}}, {"chain": {"family": "inet",'
    ' "table": "wirecap_guard", "name": "prerouting"}}, {"rule": {"family": "inet",'
    ' "table": "wirecap_guard", "chain": "prerouting", "expr": [{"match": {"op": "==",'
    ' "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@blocked_v4"}},'
    ' {"counter": {"packets": 7, "bytes": 420}}, {"drop": null}]}}, {"rule": {"family":'
    ' "inet", "table": "wirecap_guard", "chain": "prerouting", "expr": [{"match": {"op":'
    ' "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right":'
    ' "@blocked_v6"}}, {"counter": {"packets": 2, "bytes": 160}}, {"drop": null}]}},'
    ' {"rule": {"family": "inet", "table": "wirecap_guard", "chain": "prerouting", "expr":'
    ' [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}},'
    ' {"counter": {"packets": 99, "bytes": 1}}]}}, {"rule": {"family": "inet", "table":'
    ' "wirecap_guard", "chain": "prerouting", "expr": [{"set": {"op": "add", "elem":'
    ' {"payload": {"protocol": "ip", "field": "saddr"}}, "set": "@synlimit_v4"}},'
    ' {"counter": {"packets": 1000, "bytes": 6}}, {"drop": null}]}}]}'
)


def test_parse_drop_counters() -> None:
    assert nft.parse_drop_counters(CHAIN, LAYOUT) == {"blocked": 9, "syn-limit": 1000}
    assert nft.parse_drop_counters(CHAIN, NftLayout(table="x")) == {"blocked": 0, "syn-limit": 0}
    assert _kinds(nft.list_chain_commands(LAYOUT)) == ["list chain"]


@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=12),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "nftables",
                        "rule",
                        "table",
                        "expr",
                        "counter",
                        "packets",
                        "drop",
                        "match",
                        "right",
                        "set",
                    ]
                ),
                inner,
                max_size=5,
            )
        ),
        max_leaves=30,
    )
)
def test_parse_drop_counters_never_raises_on_garbage(document: Any) -> None:
    counts = nft.parse_drop_counters(document, LAYOUT)
    assert set(counts) == {"blocked", "syn-limit"} and min(counts.values()) >= 0

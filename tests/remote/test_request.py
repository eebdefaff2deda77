"""Pure tests of the worker's query parsing, filter combination and listen syntax."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.core.capture.handle import check_filter
from wirecap.core.formats.linktype import LinkType
from wirecap.errors import OptionError
from wirecap.remote.request import (
    MAX_FILTER_LEN,
    Endpoint,
    ListenAddress,
    RequestError,
    StreamRequest,
    capture_filter,
    parse_listen,
    parse_query,
    self_filter,
)


def test_empty_query_gives_the_documented_defaults() -> None:
    request = parse_query([])
    assert request == StreamRequest(
        filter="", interface="any", snaplen=262144, linktype="sll2", format="pcap"
    )
    assert isinstance(request, StreamRequest)
    assert request.exclude_self is True
    assert request.dlt == LinkType.LINUX_SLL2
    assert request.content_type == "application/vnd.tcpdump.pcap"


def test_every_parameter_is_read() -> None:
    request = parse_query(
        [
            ("filter", " udp port 53 "),
            ("interface", "lo"),
            ("snaplen", "96"),
            ("linktype", "sll"),
            ("format", "pcapng"),
            ("exclude_self", "0"),
        ]
    )
    assert request == StreamRequest("udp port 53", "lo", 96, "sll", "pcapng", False)
    assert isinstance(request, StreamRequest)
    assert request.dlt is None  # a named interface keeps its own link type
    assert request.content_type == "application/x-pcapng"
    assert parse_query([("linktype", "sll")]).dlt == LinkType.LINUX_SLL  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("pairs", "fragment"),
    [
        ([("fitler", "tcp")], "unknown query parameter"),
        ([("filter", "tcp"), ("filter", "udp")], "given twice"),
        ([("filter", "x" * (MAX_FILTER_LEN + 1))], "longer than"),
        ([("filter", "tcp\x00")], "NUL"),
        ([("interface", "a" * 16)], "bad interface"),
        ([("interface", "../etc")], "bad interface"),
        ([("interface", "e th0")], "bad interface"),
        ([("snaplen", "0")], "outside"),
        ([("snaplen", "262145")], "outside"),
        ([("snaplen", "-1")], "not a number"),
        ([("snaplen", "１２")], "not a number"),
        ([("linktype", "ether")], "not sll2 or sll"),
        ([("format", "json")], "not pcap or pcapng"),
        ([("exclude_self", "maybe")], "not 0 or 1"),
    ],
)
def test_bad_queries_are_400_with_a_reason(pairs: list[tuple[str, str]], fragment: str) -> None:
    result = parse_query(pairs)
    assert isinstance(result, RequestError)
    assert result.status == 400
    assert fragment in result.message
    assert "\n" not in result.message


A = Endpoint("127.0.0.1", 8475)
B = Endpoint("10.0.0.2", 40000)


def test_self_filter_matches_the_connection_both_ways() -> None:
    text = self_filter(A, B)
    assert text == (
        "tcp and ((src host 127.0.0.1 and src port 8475 and dst host 10.0.0.2 and dst port 40000)"
        " or (src host 10.0.0.2 and src port 40000 and dst host 127.0.0.1 and dst port 8475))"
    )
    check_filter(text, LinkType.LINUX_SLL2)


def test_user_filter_is_parenthesised_so_or_cannot_escape_the_exclusion() -> None:
    combined = capture_filter("udp or tcp", (A, B))
    assert combined == f"(udp or tcp) and not ({self_filter(A, B)})"
    check_filter(combined, LinkType.LINUX_SLL2)
    assert capture_filter("", (A, B)) == f"not ({self_filter(A, B)})"
    assert capture_filter(" tcp ", None) == "tcp"
    assert capture_filter("", None) == ""


def test_endpoints_from_socket_addresses() -> None:
    assert Endpoint.from_sockaddr(("::ffff:192.0.2.1", 80, 0, 0)) == Endpoint("192.0.2.1", 80)
    assert Endpoint.from_sockaddr(("fe80::1%eth0", 80, 0, 2)) == Endpoint("fe80::1", 80)
    assert Endpoint.from_sockaddr("/run/worker.sock") is None
    assert Endpoint.from_sockaddr(("not-an-ip", 1)) is None
    v6 = Endpoint.from_sockaddr(("::1", 8475, 0, 0))
    assert v6 is not None
    check_filter(capture_filter("", (v6, v6)), LinkType.LINUX_SLL2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":8475", ListenAddress(None, 8475)),
        ("127.0.0.1:0", ListenAddress("127.0.0.1", 0)),
        ("[::1]:9000", ListenAddress("::1", 9000)),
        ("unix:/run/w.sock", ListenAddress(path="/run/w.sock")),
    ],
)
def test_listen_syntax_of_ddump_worker(text: str, expected: ListenAddress) -> None:
    assert parse_listen(text) == expected
    assert str(parse_listen(text)) == (text if text != "127.0.0.1:0" else "127.0.0.1:0")


@pytest.mark.parametrize("text", ["8475", "host:http", "::1:80", "unix:", ":70000"])
def test_bad_listen_values_are_option_errors(text: str) -> None:
    with pytest.raises(OptionError):
        parse_listen(text)


_KEYS = st.sampled_from(
    ["filter", "interface", "snaplen", "linktype", "format", "exclude_self", "other"]
)


@given(st.lists(st.tuples(_KEYS | st.text(max_size=8), st.text(max_size=40)), max_size=6))
def test_fuzzed_queries_give_a_request_or_an_error_never_an_exception(
    pairs: list[tuple[str, str]],
) -> None:
    result = parse_query(pairs)
    assert isinstance(result, StreamRequest | RequestError)
    if isinstance(result, RequestError):
        assert result.status == 400


@given(st.text(max_size=30))
def test_fuzzed_listen_values_parse_or_raise_option_error(text: str) -> None:
    with contextlib.suppress(OptionError):
        parse_listen(text)

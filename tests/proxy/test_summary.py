"""ConnectionSummary: what the text says first, JSON round trips, garbage refused."""

from __future__ import annotations

import contextlib
import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.errors import DecodeError, FormatError
from wirecap.proxy.summary import (
    ConnectionSummary,
    ConnectOutcome,
    Endpoint,
    StopReason,
    from_json,
    headline,
    render_text,
    to_json,
)

START = 1_795_361_100_123_456_789  # 2026-11-22 15:25:00.123456789 UTC


def make_summary(**changes: object) -> ConnectionSummary:
    summary = ConnectionSummary(
        connection_id=42,
        user="alice",
        client=Endpoint("198.51.100.7", 60000),
        origin=Endpoint("example.com", 443),
        addresses=("192.0.2.80", "2001:db8::80"),
        destination=Endpoint("192.0.2.80", 443),
        source=Endpoint("192.0.2.10", 51234),
        interface="eth0",
        outcome=ConnectOutcome.ESTABLISHED,
        detail="",
        connect_ns=12_345_678,
        start_ns=START,
        stop_ns=START + 3_500_000_000,
        bytes_client_to_origin=1234,
        bytes_origin_to_client=5_678_901,
        packets_captured=120,
        dropped_by_kernel=0,
        dropped_by_interface=0,
        stop_reason=StopReason.ORIGIN_CLOSED,
        truncated=False,
        capture_limit=102_400,
        capture_file="20261122T152500Z-42-example.com-443.pcap",
    )
    return dataclasses.replace(summary, **changes)  # type: ignore[arg-type]


def test_text_starts_with_what_happened() -> None:
    text = render_text(make_summary(), "proxy.example.net")
    lines = text.splitlines()
    assert lines[0] == "example.com:443 — connected"
    assert lines[1] == "Connection 42 through proxy proxy.example.net"
    assert lines[3].startswith("Outcome:") and lines[3].endswith("connected after 12.346 ms")
    assert "\r" not in text and text.endswith("\n")
    for expected in (
        "Tunnel:",
        "origin closed",
        "Resolved to:",
        "192.0.2.80, 2001:db8::80",
        "Connected to:",
        "Source:",
        "192.0.2.10:51234",
        "Client:",
        "198.51.100.7:60000",
        "User:",
        "alice",
        "2026-11-22 15:25:00.123456 UTC",
        "2026-11-22 15:25:03.623456 UTC",
        "3.500 s",
        "1,234 bytes",
        "5,678,901 bytes",
        "120 captured",
        "Interface:",
        "eth0",
        "20261122T152500Z-42-example.com-443.pcap",
    ):
        assert expected in text, expected
    assert "truncated" not in text


def test_text_is_aligned() -> None:
    text = render_text(make_summary(), "p")
    rows = [line for line in text.splitlines()[3:] if ":" in line and line[0] != " "]
    columns = {len(row) - len(row.split(":", 1)[1].lstrip()) for row in rows}
    assert len(columns) == 1


def test_refused_connect_says_why() -> None:
    summary = make_summary(
        outcome=ConnectOutcome.REFUSED,
        detail="Connection refused (ECONNREFUSED)",
        connect_ns=412_000,
        stop_reason=StopReason.CONNECT_FAILED,
        bytes_origin_to_client=0,
    )
    text = render_text(summary, "p")
    assert text.startswith("example.com:443 — connection refused\n")
    assert "connection refused after 0.412 ms" in text
    assert "Reason:" in text and "Connection refused (ECONNREFUSED)" in text
    assert "never opened (connect failed)" in text
    assert headline(summary) == "example.com:443 — connection refused"


def test_dns_failure_without_capture() -> None:
    summary = make_summary(
        outcome=ConnectOutcome.DNS_FAILURE,
        detail="NXDOMAIN",
        addresses=(),
        destination=None,
        source=None,
        interface=None,
        connect_ns=None,
        stop_reason=StopReason.CONNECT_FAILED,
        capture_file=None,
        packets_captured=0,
        user=None,
    )
    text = render_text(summary, "p")
    assert text.startswith("example.com:443 — DNS lookup failed\n")
    assert "Resolved to" not in text
    assert "Capture:" in text and "none" in text
    assert "Interface:" not in text
    assert "(none)" in text  # no user


def test_truncation_and_drops_are_called_out() -> None:
    text = render_text(make_summary(truncated=True, dropped_by_kernel=3), "p")
    assert "truncated at 102,400 bytes" in text
    assert "3 by the kernel" in text
    assert "the capture is incomplete" in text


def test_ipv6_endpoints_are_bracketed() -> None:
    summary = make_summary(
        origin=Endpoint("2001:db8::80", 443), destination=Endpoint("2001:db8::80", 443)
    )
    assert headline(summary) == "[2001:db8::80]:443 — connected"
    assert "[2001:db8::80]:443" in render_text(summary, "p")


def test_control_characters_do_not_reach_the_text() -> None:
    text = render_text(make_summary(detail="bad\x1b[31m\r\nX", user="bob\x00"), "p\n")
    assert "\x1b" not in text and "\x00" not in text and "\r" not in text
    assert "bad?[31m??X" in text


def test_every_outcome_and_stop_reason_renders() -> None:
    for outcome in ConnectOutcome:
        for reason in StopReason:
            text = render_text(make_summary(outcome=outcome, stop_reason=reason), "p")
            assert outcome.label in text.splitlines()[0]


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValueError):
        make_summary(bytes_client_to_origin=-1)
    with pytest.raises(ValueError):
        make_summary(capture_limit=0)
    with pytest.raises(ValueError):
        Endpoint("a", 70000)


# --- JSON ---------------------------------------------------------------------------

_text = st.text(max_size=40)
_endpoints = st.builds(Endpoint, _text, st.integers(0, 65535))
_counts = st.integers(min_value=0, max_value=2**63)
_summaries = st.builds(
    ConnectionSummary,
    connection_id=_counts,
    user=st.none() | _text,
    client=_endpoints,
    origin=_endpoints,
    addresses=st.lists(_text, max_size=4).map(tuple),
    destination=st.none() | _endpoints,
    source=st.none() | _endpoints,
    interface=st.none() | _text,
    outcome=st.sampled_from(ConnectOutcome),
    detail=_text,
    connect_ns=st.none() | _counts,
    start_ns=st.integers(min_value=-(2**62), max_value=2**62),
    stop_ns=st.integers(min_value=-(2**62), max_value=2**62),
    bytes_client_to_origin=_counts,
    bytes_origin_to_client=_counts,
    packets_captured=_counts,
    dropped_by_kernel=_counts,
    dropped_by_interface=_counts,
    stop_reason=st.sampled_from(StopReason),
    truncated=st.booleans(),
    capture_limit=st.none() | st.integers(min_value=1, max_value=2**40),
    capture_file=st.none() | _text,
)


@given(_summaries)
def test_json_round_trip(summary: ConnectionSummary) -> None:
    text = to_json(summary)
    assert text.isascii()
    assert from_json(text) == summary
    assert from_json(text.encode("ascii")) == summary


def test_json_is_readable() -> None:
    data = json.loads(to_json(make_summary()))
    assert data["version"] == 1
    assert data["outcome"] == "established"
    assert data["origin"] == {"host": "example.com", "port": 443}


def _good() -> dict[str, object]:
    data: dict[str, object] = json.loads(to_json(make_summary()))
    return data


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        "null",
        '"text"',
        "{}",
        "[" * 100_000,  # deep nesting
        "x" * 70_000,
        b"\xff\xfe\x00",
    ],
)
def test_garbage_is_a_format_error(text: str | bytes) -> None:
    with pytest.raises(FormatError):
        from_json(text)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("version", 2),
        ("connection_id", "42"),
        ("connection_id", True),
        ("connection_id", 1.5),
        ("connection_id", -1),
        ("user", 5),
        ("client", "198.51.100.7:60000"),
        ("client", {"host": "a"}),
        ("client", {"host": "a", "port": 70000}),
        ("client", {"host": "a", "port": 1, "extra": 2}),
        ("origin", None),
        ("addresses", "192.0.2.80"),
        ("addresses", [1]),
        ("outcome", "exploded"),
        ("stop_reason", None),
        ("truncated", 0),
        ("capture_limit", 0),
        ("unknown_field", 1),
    ],
)
def test_wrong_fields_are_format_errors(key: str, value: object) -> None:
    data = _good()
    data[key] = value
    with pytest.raises(FormatError):
        from_json(json.dumps(data))


#: Added after version 1 was first written; older summaries in a spool lack them.
OPTIONAL_FIELDS = {"verdict", "verdict_detail"}


def test_missing_field_is_a_format_error() -> None:
    for key in set(_good()) - OPTIONAL_FIELDS:
        data = _good()
        del data[key]
        with pytest.raises(DecodeError):
            from_json(json.dumps(data))


def test_summaries_without_a_verdict_still_load() -> None:
    data = _good()
    for key in OPTIONAL_FIELDS:
        data.pop(key, None)
    summary = from_json(json.dumps(data))
    assert summary.verdict is None and summary.verdict_detail is None


@given(st.binary(max_size=200) | st.text(max_size=200))
def test_fuzz_only_format_errors(data: bytes | str) -> None:
    with contextlib.suppress(FormatError):
        from_json(data)

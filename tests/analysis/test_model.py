"""The report's values: sides, endpoints, the time sequence's packed columns."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from tests.analysis.frames import CLIENT, Script
from wirecap.analysis import (
    Connection,
    ConnectionFacts,
    Endpoint,
    Side,
    TimeSequence,
    Verdict,
)


def test_side_peer() -> None:
    assert Side.CLIENT.peer is Side.SERVER and Side.SERVER.peer is Side.CLIENT


def test_endpoint_text_brackets_ipv6() -> None:
    assert str(Endpoint("10.0.0.1", 80)) == "10.0.0.1:80"
    assert str(Endpoint("fd00::1", 443)) == "[fd00::1]:443"


def test_time_sequence_columns_are_read_only_views() -> None:
    rows = [(1, 0, 0, 0, 0, -1, 64240, 2), (2, 10, 1, 0, 0, 1, 65160, 0x12)]
    series = TimeSequence(b"".join(struct.pack("=8q", *row) for row in rows))
    assert len(series) == 2
    assert list(series.packets) == [1, 2]
    assert list(series.acks) == [-1, 1]
    assert list(series.flags) == [2, 0x12]
    with pytest.raises(TypeError):
        series.packets[0] = 5
    with pytest.raises(AttributeError):
        series.foo = 1
    assert series == TimeSequence(series.data) and hash(series) == hash(TimeSequence(series.data))
    with pytest.raises(ValueError, match="8-column rows"):
        TimeSequence(b"\x00" * 8)


def test_connection_is_its_facts_plus_findings() -> None:
    s = Script()
    s.handshake()
    s.data(CLIENT, 10, 20)
    (connection,) = s.analyze().connections
    assert isinstance(connection, ConnectionFacts)
    facts = {f.name for f in dataclasses.fields(ConnectionFacts)}
    assert {f.name for f in dataclasses.fields(Connection)} == facts | {"verdict", "also"}
    assert connection.findings[0] is connection.verdict
    assert connection.verdict.verdict is Verdict.TRUNCATED
    assert connection.direction(Side.CLIENT) is connection.client_data
    assert connection.endpoint(Side.SERVER) == connection.server
    with pytest.raises(dataclasses.FrozenInstanceError):
        connection.index = 3  # type: ignore[misc]

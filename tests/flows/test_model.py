"""Flow records: JSON lines with human timestamps."""

from __future__ import annotations

import json

from wirecap.flows.model import Counters, Event, FlowRecord, FlowTuple, TcpState, format_time


def test_json_line() -> None:
    record = FlowRecord(
        event=Event.DESTROY,
        flow_id=5,
        time_ns=1_795_000_000_123_456_789,
        start_ns=1_795_000_000_000_000_000,
        stop_ns=1_795_000_000_123_456_789,
        orig=FlowTuple("10.0.0.1", "192.0.2.1", 6, 1000, 80),
        reply=FlowTuple("192.0.2.1", "198.51.100.7", 6, 80, 61000),
        tcp_state=TcpState.TIME_WAIT,
        zone=2,
        mark=1,
        counters_orig=Counters(3, 180),
        counters_reply=Counters(2, 120),
        netns=9,
    )
    line = record.json_line()
    assert line.endswith("\n") and line.count("\n") == 1
    data = json.loads(line)
    assert data["time"] == "2026-11-18T11:06:40.123456Z"
    assert data["start"] == "2026-11-18T11:06:40.000000Z"
    assert data["event"] == "destroy" and data["proto"] == "tcp"
    assert data["tcp_state"] == "TIME_WAIT"
    # NAT is visible: the reply goes to the translated address.
    assert data["reply"]["dst"] == "198.51.100.7"
    assert (data["packets_orig"], data["bytes_ret"]) == (3, 120)
    assert record.bytes_total == 300 and record.packets_total == 5
    assert "complete" not in data


def test_format_time() -> None:
    assert format_time(0) == "1970-01-01T00:00:00.000000Z"

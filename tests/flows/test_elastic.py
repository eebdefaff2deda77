"""Elasticsearch documents, ids, index names, bulk bodies and bulk answers."""

from __future__ import annotations

import fnmatch
import json

from hypothesis import given
from hypothesis import strategies as st

from wirecap.flows.elastic import (
    bulk_body,
    decode_bulk_response,
    document,
    document_id,
    index_name,
    index_template,
)
from wirecap.flows.model import Counters, Event, FlowRecord, FlowTuple

NS = 1_000_000_000
START = 1_795_046_399 * NS  # 2026-11-18T23:59:59Z


def _record(
    event: Event = Event.UPDATE,
    time_ns: int = START + 5 * NS,
    start_ns: int | None = START,
    flow_id: int = 7,
) -> FlowRecord:
    return FlowRecord(
        event=event,
        flow_id=flow_id,
        time_ns=time_ns,
        start_ns=start_ns,
        stop_ns=None,
        orig=FlowTuple("10.0.0.1", "10.0.0.2", 17, 1000, 53),
        reply=None,
        tcp_state=None,
        zone=0,
        mark=0,
        counters_orig=Counters(2, 100),
        counters_reply=Counters(1, 60),
        netns=1,
    )


def test_index_is_dated_by_flow_start_and_matched_by_the_template() -> None:
    record = _record(time_ns=START + 10 * NS)  # next day already
    name = index_name(record, "Flows", "Host")
    assert name == "flows-host-2026.11.18"
    [pattern] = index_template("Flows")["index_patterns"]
    assert fnmatch.fnmatchcase(name, pattern)


def test_document_id_tells_reused_conntrack_ids_apart() -> None:
    first = document_id(_record(), "h")
    assert first == document_id(_record(event=Event.DESTROY, time_ns=START + 9 * NS), "h")
    assert first != document_id(_record(start_ns=START + NS), "h")
    assert first != document_id(_record(), "other-host")


def test_document_state_and_totals() -> None:
    doc = document(_record(event=Event.DESTROY), "h")
    assert doc["flow_state"] == "finished"
    assert (doc["packets_total"], doc["bytes_total"]) == (3, 160)
    assert doc["start"] == START // 1_000_000
    assert document(_record(), "h")["flow_state"] == "established"


def test_bulk_body_is_ndjson_ending_in_newline() -> None:
    body = bulk_body([_record(), _record(flow_id=8)], "flows", "h")
    assert body.endswith(b"\n")
    lines = body.decode().splitlines()
    assert len(lines) == 4
    action = json.loads(lines[0])["update"]
    assert action["_index"] == "flows-h-2026.11.18" and action["retry_on_conflict"] == 3
    assert json.loads(lines[1])["scripted_upsert"] is True
    assert bulk_body([], "flows", "h") == b""


def test_decode_bulk_response_sorts_items() -> None:
    answer = {
        "errors": True,
        "items": [
            {"update": {"status": 200, "result": "noop"}},
            {"update": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}},
            {"update": {"status": 400, "error": {"type": "mapper_parsing_exception"}}},
            {"update": {"status": 201}},
        ],
    }
    outcome = decode_bulk_response(200, json.dumps(answer).encode(), 4)
    assert (outcome.sent, outcome.retry, outcome.failed) == (2, (1,), 1)
    assert "mapper_parsing_exception" in outcome.errors[0]


def test_decode_bulk_response_whole_request_outcomes() -> None:
    assert decode_bulk_response(503, b"", 2).retry == (0, 1)
    assert decode_bulk_response(401, b"no", 2).failed == 2
    assert decode_bulk_response(200, b"{}", 2).retry == (0, 1)
    assert decode_bulk_response(200, b'{"items": []}', 2).retry == (0, 1)


@given(st.integers(100, 599), st.binary(max_size=200), st.integers(0, 5))
def test_decode_bulk_response_never_raises(status: int, body: bytes, count: int) -> None:
    outcome = decode_bulk_response(status, body, count)
    assert outcome.sent + len(outcome.retry) + outcome.failed == count


_JSON = st.recursive(
    st.none() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.lists(_JSON, max_size=5))
def test_decode_bulk_response_odd_items(items: list[object]) -> None:
    body = json.dumps({"errors": True, "items": items}).encode()
    outcome = decode_bulk_response(200, body, len(items))
    assert outcome.sent + len(outcome.retry) + outcome.failed == len(items)

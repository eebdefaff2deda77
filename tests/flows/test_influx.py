"""Line protocol: conntracct's layout and the escaping rules of the reference."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wirecap.flows.influx import (
    encode_line,
    encode_lines,
    escape_field_string,
    escape_key,
    escape_measurement,
    write_path,
)
from wirecap.flows.model import Counters, Event, FlowRecord, FlowTuple


def _record(**changes: object) -> FlowRecord:
    base = dict(
        event=Event.UPDATE,
        flow_id=9946756,
        time_ns=1589000000000000000,
        start_ns=1,
        stop_ns=None,
        orig=FlowTuple("1.2.3.4", "5.6.7.8", 6, 1234, 80),
        reply=FlowTuple("5.6.7.8", "1.2.3.4", 6, 80, 1234),
        tcp_state=None,
        zone=0,
        mark=0,
        counters_orig=Counters(1, 60),
        counters_reply=Counters(0, 0),
        netns=4026531840,
    )
    base.update(changes)
    return FlowRecord(**base)  # type: ignore[arg-type]


def test_line_matches_conntracct_s_example() -> None:
    # reference §1.7, plus the event and reply fields conntracct lacked.
    assert encode_line(_record()) == (
        "ct_acct,connmark=0,dst_addr=5.6.7.8,dst_port=80,flow_id=9946756,netns=4026531840,"
        "proto=tcp,src_addr=1.2.3.4 bytes_orig=60i,bytes_ret=0i,bytes_total=60i,"
        'event="update",flow_id="9946756",packets_orig=1i,packets_ret=0i,packets_total=1i,'
        'reply_dst="1.2.3.4",reply_src="5.6.7.8" 1589000000000000000'
    )


def test_connmark_is_lowercase_hex_and_source_port_optional() -> None:
    line = encode_line(_record(mark=255), source_ports=True)
    assert ",connmark=ff," in line and ",src_port=1234 " in line
    assert "src_port" not in encode_line(_record())


def test_escaping_rules() -> None:
    # Line protocol reference, "Special characters".
    assert escape_measurement("a b,c=d") == "a\\ b\\,c=d"
    assert escape_key("a b,c=d") == "a\\ b\\,c\\=d"
    assert escape_field_string('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'


def test_ipv6_and_batch() -> None:
    record = _record(orig=FlowTuple("fd01::1", "fd01::2", 17, 5, 53), reply=None)
    body = encode_lines([record, record])
    assert body.count(b"\n") == 2 and b"dst_addr=fd01::2" in body and b"reply_src" not in body


def test_write_paths() -> None:
    assert write_path(database="flows db") == "/write?db=flows+db&precision=ns"
    assert write_path(org="o", bucket="b&c", v2=True) == (
        "/api/v2/write?org=o&bucket=b%26c&precision=ns"
    )


@given(st.text(max_size=40))
def test_escaped_keys_never_contain_a_bare_separator(text: str) -> None:
    escaped = escape_key(text)
    assert "\n" not in escaped
    position = 0
    while position < len(escaped):
        if escaped[position] == "\\":
            position += 2
            continue
        assert escaped[position] not in " ,="
        position += 1

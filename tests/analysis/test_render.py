"""Text and JSON output; JSON validated against report.schema.json."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.analysis.frames import CLIENT, SERVER, Script, sack_option
from tests.analysis.schema_check import validate
from tests.analysis.test_verdicts import exchange
from wirecap.analysis import SCHEMA_VERSION, Report, render_text, schema, to_json
from wirecap.analysis.render import JSON_MAX_ITEMS

SCHEMA_FILE = Path(__file__).parents[2] / "src" / "wirecap" / "analysis" / "report.schema.json"


def busy_report() -> Report:
    """Two connections with most facts populated: one ended by an ICMP error while in a
    black hole, and a slow, stalled one."""
    s = Script()
    s.handshake()
    s.data(CLIENT, 100, 20)
    s.ack(SERVER, 30)
    stuck = s.next[CLIENT]
    big = s.data(CLIENT, 1448, 31)
    s.icmp("10.0.0.254", big, 3, 1, 31.5)
    for at in (231, 631, 1431):
        s.data(CLIENT, 1448, at, seq=stuck)
    other = Script(client=("fd00::1", 40001), server=("fd00::2", 443), packets=s.packets)
    other.syn(0)
    other.syn(1000)
    other.syn_ack(1010)
    other.ack(CLIENT, 1011)
    exchange(other, 1020, segments=20)
    other.data(SERVER, 1448, 1100, seq=other.next[SERVER] - 1448)
    other.ack(CLIENT, 1101, window=0)
    other.ack(CLIENT, 2500)
    other.close(2600)
    return s.analyze()


class TestText:
    def test_verdict_first_then_facts(self) -> None:
        text = render_text(busy_report())
        lines = text.splitlines()
        assert lines[0].startswith("capture: 43 packets over 2.602000 s (link types ETHERNET)")
        assert lines[1] == "2 TCP connections"
        blocks = text.split("\n\n")[1:]
        assert len(blocks) == 2
        first = blocks[0].splitlines()
        assert first[0] == "connection 0: 10.0.0.1:40000 → 10.0.0.2:80 (IPv4; client sent the SYN)"
        assert first[1].startswith("  verdict: ICMP unreachable — host unreachable (ICMP type 3")
        assert any(
            line.startswith("  also: PMTUD black hole suspected [sender view] — client data")
            for line in first
        )
        second = blocks[1].splitlines()
        assert second[0].startswith("connection 1: [fd00::1]:40001 → [fd00::2]:443 (IPv6")
        assert second[1].startswith("  verdict: receiver zero-window stall — the client advertised")
        assert any(line.startswith("  also: completed normally — ") for line in second)
        assert any(line.startswith("  also: slow handshake — ") for line in second)

    def test_fact_columns_align(self) -> None:
        block = render_text(busy_report()).split("\n\n")[2]
        table = [line for line in block.splitlines() if len(line) == 2 + 18 + 36]
        labels = [line[2:20].strip() for line in table]
        assert labels[:4] == ["", "segments", "data segments", "payload"]
        assert "ACK RTT median" in labels
        header = table[0]
        assert header.endswith("     client→server     server→client")
        payload = table[3]
        assert payload.endswith("30,408 B")
        assert any(
            line.startswith("  handshake         SYN→SYN-ACK 1,010.0 ms")
            for line in block.splitlines()
        )

    def test_icmp_and_resends_are_listed(self) -> None:
        block = render_text(busy_report()).split("\n\n")[1]
        assert (
            "  ICMP              #7 0.031500 s host unreachable from 10.0.0.254, "
            "quoting client seq 101, 1,448 B" in block
        )
        assert "  client resends    #" in block and "full-size" in block


class TestJson:
    def test_output_is_valid_against_the_schema(self) -> None:
        document = to_json(busy_report())
        json.dumps(document)  # plain JSON types only
        assert validate(document, schema()) == []
        assert document["schema_version"] == SCHEMA_VERSION == 2
        first = document["connections"][0]
        assert first["verdict"]["verdict"] == "icmp_unreachable"
        assert first["also"][0]["verdict"] == "pmtud_black_hole"
        assert first["also"][0]["vantage"] == "sender"
        assert first["client_data"]["retransmissions"]["count"] == 3
        assert first["icmp_errors"]["items"][0]["kind"] == "unreachable"

    def test_retransmissions_say_why_they_were_spurious(self) -> None:
        s = Script()
        s.handshake()
        first = s.next[SERVER]
        for i in range(3):
            s.data(SERVER, 1448, 20 + i)
        s.ack(CLIENT, 25, upto=first + 1448)
        s.data(SERVER, 1448, 300, seq=first)  # already acknowledged
        s.data(SERVER, 1448, 301, seq=first + 1448)  # reported by a D-SACK below
        s.ack(CLIENT, 310, options=sack_option([(first + 1448, first + 2896)]))
        report = s.analyze()
        document = to_json(report)
        assert validate(document, schema()) == []
        items = document["connections"][0]["server_data"]["retransmissions"]["items"]
        assert [(r["spurious"], r["spurious_cause"], r["pmtud"]) for r in items] == [
            (True, "acked", False),
            (True, "dsack", False),
        ]
        assert (
            "  server resends    #8 seq 1 1,448 B full-size spurious (already acked); "
            "#9 seq 1449 1,448 B full-size spurious (D-SACK)"
        ) in render_text(report)

    def test_empty_report_is_valid(self) -> None:
        document = to_json(Script().analyze())
        assert validate(document, schema()) == []
        assert document["capture"]["start_epoch_ns"] is None

    def test_schema_file_is_draft_2020_12_and_the_loaded_one(self) -> None:
        on_disk = json.loads(SCHEMA_FILE.read_text())
        assert on_disk == schema()
        assert on_disk["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert on_disk["properties"]["schema_version"] == {"const": SCHEMA_VERSION}

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            (("schema_version",), 1),
            (("connections", 0, "verdict", "verdict"), "fine"),
            (("connections", 0, "client", "port"), 70000),
            (("connections", 0, "handshake", "syns"), "1"),
            (("capture", "surprise"), 1),
        ],
    )
    def test_the_validator_catches_violations(
        self, path: tuple[str | int, ...], value: Any
    ) -> None:
        document = copy.deepcopy(to_json(busy_report()))
        target: Any = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert validate(document, schema())

    def test_missing_property_is_caught(self) -> None:
        document = copy.deepcopy(to_json(busy_report()))
        del document["connections"][1]["server_data"]["sack"]
        assert validate(document, schema()) == [
            "$.connections[1].server_data: missing required property 'sack'"
        ]

    def test_long_lists_are_bounded_with_their_count(self) -> None:
        s = Script()
        s.handshake()
        for i in range(JSON_MAX_ITEMS + 5):
            s.data(SERVER, 10, 20 + i * 0.01, seq=s.isn[SERVER] + 1)  # the same bytes again
        document = to_json(s.analyze())
        resent = document["connections"][0]["server_data"]["retransmissions"]
        assert resent["count"] == JSON_MAX_ITEMS + 4
        assert len(resent["items"]) == JSON_MAX_ITEMS
        assert validate(document, schema()) == []

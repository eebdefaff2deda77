"""Tests for wirecap.guard.logs: tcpcap's line format, JSON lines, the rate limit."""

from __future__ import annotations

import json

from tests.guard import frames as f
from wirecap.guard.detectors import Detection, Reason
from wirecap.guard.logs import LineLimiter, LogFormatter
from wirecap.guard.policy import Block, Spared
from wirecap.guard.syn import SynObserved

S = 1_000_000_000
#: 2021-04-28 15:28:05 UTC, the time of tcpcap's own example line.
T = 1619623685 * S


def test_text_lines_start_as_tcpcap_wrote_them() -> None:
    text = LogFormatter("text")
    syn = SynObserved(T, 4, f.V4_REMOTE, f.V4_LOCAL, 5973, 80, 0x02, 1)
    assert text.connection(syn) == (
        "2021-04-28 15:28:05: New Connection: 198.51.100.7:5973 -> 192.0.2.1:80"
    )
    scan = Detection(T, f.V4_REMOTE, Reason.PORT_SCAN, "3 ports in 60 s: 22,80,443", f.V4_LOCAL)
    assert text.detection(scan) == (
        "2021-04-28 15:28:05: Port scan detected: 198.51.100.7 -> 192.0.2.1 on ports 22,80,443"
    )
    block = Block(f.V4_REMOTE, 600, Reason.PORT_SCAN, 1, "", 0)
    assert text.block(block, T, dry_run=False).startswith(
        "2021-04-28 15:28:05: BLOCK IP: 198.51.100.7 for 600 s"
    )
    assert "DRY RUN, would block 198.51.100.7" in text.block(block, T, dry_run=True)


def test_text_lines_for_ipv6_flags_and_other_events() -> None:
    text = LogFormatter("text")
    syn = SynObserved(T, 6, f.V6_REMOTE, f.V6_LOCAL, 1, 2, 0xC2, 1)
    assert text.connection(syn).endswith(
        "New Connection: [2001:db8::7]:1 -> [2001:db8::1]:2 flags SYN,ECE,CWR"
    )
    flood = Detection(T, f.V6_REMOTE, Reason.SYN_RATE, "more than 5 SYNs", f.V6_LOCAL)
    assert "SYN flood detected: 2001:db8::7 -> 2001:db8::1 (more than 5 SYNs)" in (
        text.detection(flood)
    )
    spared = Spared(f.V4_REMOTE, Reason.PORT_SCAN, "allow-listed 198.51.100.0/24")
    assert "Not blocking 198.51.100.7 (port-scan): allow-listed" in text.spared(spared, T)
    assert "UNBLOCK IP: 198.51.100.7 (timeout)" in text.unblock(f.V4_REMOTE, T, "timeout")
    assert "12 connection lines suppressed" in text.suppressed(12, T)


def test_json_lines_are_one_object_each() -> None:
    as_json = LogFormatter("json")
    syn = SynObserved(T + 1500, 4, f.V4_REMOTE, f.V4_LOCAL, 5973, 80, 0x02, 1)
    record = json.loads(as_json.connection(syn))
    assert record == {
        "time": "2021-04-28T15:28:05.000001Z",
        "event": "connection",
        "src": "198.51.100.7",
        "sport": 5973,
        "dst": "192.0.2.1",
        "dport": 80,
        "flags": "SYN",
    }
    block = json.loads(
        as_json.block(Block(f.V4_REMOTE, 60, Reason.SYN_RATE, 2, "", 0), T, dry_run=True)
    )
    assert (block["event"], block["reason"], block["offence"], block["dry_run"]) == (
        "block",
        "syn-rate",
        2,
        True,
    )
    half = Detection(T, f.V4_REMOTE, Reason.HALF_OPEN, "70 half-open handshakes")
    assert json.loads(as_json.detection(half))["reason"] == "half-open"
    assert json.loads(as_json.message(T, "hello"))["message"] == "hello"


def test_line_limiter_allows_a_burst_then_the_rate() -> None:
    limiter = LineLimiter(rate=10, burst=3)
    assert [limiter.allow(T) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow(T + S // 10)  # one more token after 100 ms
    assert not limiter.allow(T + S // 10)
    assert limiter.take_suppressed() == 3 and limiter.suppressed == 0

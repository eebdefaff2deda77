"""The session's pcapng: merged interfaces, DSB first, markers out, statistics last."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from wirecap.core.formats.decoder import CaptureDecoder
from wirecap.core.formats.records import (
    SECRETS_TLS_KEY_LOG,
    DecryptionSecrets,
    Event,
    Interface,
    InterfaceStatistics,
    Packet,
    SectionStart,
)
from wirecap.session.contents import (
    KEYLOG_NAME,
    PCAPNG_NAME,
    USER_APPLICATION,
    SessionFile,
    tarball_readme,
)
from wirecap.session.marker import TOKEN_LENGTH, marker_payload

TOKEN = b"T" * TOKEN_LENGTH
KEYS = b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n"


def _source(linktype: int, *stamps: int, marker_at: int | None = None) -> list[Event]:
    events: list[Event] = [SectionStart("pcap", False, (2, 4)), Interface(linktype=linktype)]
    for ts in stamps:
        data = bytes(14) + ts.to_bytes(8, "big")
        if ts == marker_at:
            data += marker_payload(TOKEN)
        events.append(Packet(ts_ns=ts, data=data, orig_len=len(data)))
    return events


def _decode(data: bytes) -> list[Event]:
    decoder = CaptureDecoder()
    decoder.feed(data)
    decoder.close()
    return list(decoder.events())


def test_two_interfaces_merge_by_time_with_named_idbs_and_keys_first() -> None:
    contents = SessionFile(["lo", "veth0"], key_log=KEYS, token=TOKEN)
    data = b"".join(contents.blocks([_source(1, 10, 30, 50), _source(1, 20, 40)]))
    events = _decode(data)
    assert isinstance(events[0], SectionStart)
    assert events[0].user_application == USER_APPLICATION
    assert events[1] == DecryptionSecrets(SECRETS_TLS_KEY_LOG, KEYS)
    interfaces = [event for event in events if isinstance(event, Interface)]
    assert [i.name for i in interfaces] == ["lo", "veth0"]
    packets = [event for event in events if isinstance(event, Packet)]
    assert [p.ts_ns for p in packets] == [10, 20, 30, 40, 50]
    assert [p.interface_id for p in packets] == [0, 1, 0, 1, 0]
    assert contents.packets == 5


def test_markers_are_left_out_and_counted() -> None:
    contents = SessionFile(["any"], key_log=b"", token=TOKEN)
    events = _decode(b"".join(contents.blocks([_source(113, 1, 2, 3, marker_at=2)])))
    assert [e.ts_ns for e in events if isinstance(e, Packet)] == [1, 3]
    assert (contents.packets, contents.markers) == (2, 1)
    assert not any(isinstance(e, DecryptionSecrets) for e in events)


def test_statistics_come_last_and_list_quiet_interfaces() -> None:
    contents = SessionFile(["lo", "veth0"], key_log=b"", token=TOKEN)
    stats = [InterfaceStatistics(0, 99, 7, 0), InterfaceStatistics(0, 99, 0, 1)]
    events = _decode(b"".join(contents.blocks([_source(1, 5), _source(1)], stats)))
    assert [e.name for e in events if isinstance(e, Interface)] == ["lo", "veth0"]
    kinds = [type(e).__name__ for e in events]
    assert kinds[-4:] == ["Packet", "InterfaceStatistics", "Interface", "InterfaceStatistics"]
    assert [e for e in events if isinstance(e, InterfaceStatistics)] == [
        InterfaceStatistics(0, 99, 7, 0),
        InterfaceStatistics(1, 99, 0, 1),
    ]


def test_an_empty_capture_is_still_a_valid_file(
    tmp_path: Path, run_tool: Callable[..., str]
) -> None:
    contents = SessionFile(["lo"], key_log=b"", token=TOKEN)
    data = b"".join(contents.blocks([[]]))
    assert [type(e) for e in _decode(data)] == [SectionStart]
    path = tmp_path / "empty.pcapng"
    path.write_bytes(data)
    assert "Number of packets:   0" in run_tool("capinfos", str(path))


@given(st.lists(st.lists(st.integers(0, 10**12), max_size=20), min_size=1, max_size=4))
def test_merge_is_sorted_and_loses_nothing(stamps: list[list[int]]) -> None:
    names = [f"if{i}" for i in range(len(stamps))]
    contents = SessionFile(names, key_log=b"", token=TOKEN)
    sources = [_source(1, *sorted(s)) for s in stamps]
    packets = [e for e in _decode(b"".join(contents.blocks(sources))) if isinstance(e, Packet)]
    assert [p.ts_ns for p in packets] == sorted(ts for s in stamps for ts in s)


def test_readme_names_the_files_and_warns() -> None:
    text = tarball_readme(interfaces=["lo", "eth0"], packets=12, key_log_lines=4)
    assert PCAPNG_NAME in text and KEYLOG_NAME in text
    assert "12 packets captured on: lo, eth0" in text
    assert "WARNING" in text and "rotate" in text

"""Tests for wirecap.guard.syn: which frames are inbound connection attempts."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.guard import frames as f
from wirecap.core.capture.handle import check_filter
from wirecap.core.formats.linktype import LinkType
from wirecap.guard.syn import CAPTURE_FILTER, LocalAddresses, SynObserved, classify

ETH = LinkType.ETHERNET
LOCAL = LocalAddresses([f.V4_LOCAL, f.V6_LOCAL, "127.0.0.1"])


def test_classify_ipv4_syn_to_own_address() -> None:
    seen = classify(ETH, f.syn_v4(dport=443, seq=77), 5, LOCAL)
    assert seen == SynObserved(5, 4, f.V4_REMOTE, f.V4_LOCAL, 40000, 443, f.SYN, 77)


@pytest.mark.parametrize(
    ("flags", "attempt"),
    [
        (f.SYN, True),
        (f.SYN | f.ECE | f.CWR, True),  # RFC 3168 ECN setup: tcpcap's exact-0x02 filter missed it
        (f.SYN | f.FIN, True),  # scanner oddities keep SYN set, ACK clear
        (f.SYN | f.ACK, False),  # an answer, not an attempt
        (f.ACK, False),
        (f.FIN, False),
        (0, False),
    ],
)
def test_classify_flags(flags: int, attempt: bool) -> None:
    seen = classify(ETH, f.syn_v4(flags=flags), 1, LOCAL)
    assert (seen is not None) is attempt
    if seen is not None:
        assert seen.flags == flags


def test_classify_direction_comes_from_own_addresses() -> None:
    outbound = f.ethernet(f.ipv4(f.V4_LOCAL, f.V4_REMOTE, f.tcp()))
    passing_by = f.ethernet(f.ipv4(f.V4_REMOTE, bytes([203, 0, 113, 9]), f.tcp()))
    local_to_local = f.ethernet(f.ipv4(bytes([127, 0, 0, 1]), f.V4_LOCAL, f.tcp()))
    for frame in (outbound, passing_by, local_to_local):
        assert classify(ETH, frame, 1, LOCAL) is None
    assert classify(ETH, f.syn_v4(), 1, LocalAddresses()) is None


def test_classify_cooked_outgoing_is_never_inbound() -> None:
    packet = f.ipv4(f.V4_REMOTE, f.V4_LOCAL, f.tcp())
    assert classify(LinkType.LINUX_SLL2, f.sll2(packet, 0), 1, LOCAL) is not None
    assert classify(LinkType.LINUX_SLL2, f.sll2(packet, 4), 1, LOCAL) is None


def test_classify_ipv6_with_and_without_extension_headers() -> None:
    plain = classify(ETH, f.syn_v6(dport=8080), 1, LOCAL)
    assert plain is not None and plain.version == 6 and plain.dport == 8080
    hbh = f.ethernet(f.ipv6(f.V6_REMOTE, f.V6_LOCAL, f.hop_by_hop(f.tcp(dport=25)), next_header=0))
    seen = classify(ETH, hbh, 1, LOCAL)
    assert seen is not None and seen.dport == 25
    later = f.fragment(f.tcp(), offset=64)
    frag = f.ethernet(f.ipv6(f.V6_REMOTE, f.V6_LOCAL, later, next_header=44))
    assert classify(ETH, frag, 1, LOCAL) is None


def test_classify_ipv4_later_fragment_holds_no_attempt() -> None:
    frame = f.ethernet(f.ipv4(f.V4_REMOTE, f.V4_LOCAL, f.tcp(), frag_offset=64))
    assert classify(ETH, frame, 1, LOCAL) is None


@given(st.binary(max_size=120))
def test_classify_never_raises_on_garbage(data: bytes) -> None:
    for linktype in (ETH, LinkType.LINUX_SLL2, LinkType.RAW):
        classify(linktype, data, 1, LOCAL)


@given(st.integers(min_value=0, max_value=80))
def test_classify_truncated_syn_is_no_attempt_or_whole(cut: int) -> None:
    frame = f.syn_v4()
    seen = classify(ETH, frame[:cut], 1, LOCAL)
    assert seen is None or cut >= 14 + 20 + 20


def test_local_addresses_accepts_text_and_packed() -> None:
    local = LocalAddresses(["192.0.2.1", f.V6_LOCAL])
    assert f.V4_LOCAL in local and f.V6_LOCAL in local and len(local) == 2
    assert local == LocalAddresses([f.V4_LOCAL, "2001:db8::1"])
    assert "192.0.2.1" in repr(local)


def _pcap(frames: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, frame in enumerate(frames):
        out += struct.pack("<IIII", i, 0, len(frame), len(frame)) + frame
    return out


def test_capture_filter_compiles_for_every_linktype_the_guard_meets() -> None:
    for linktype in (ETH, LinkType.LINUX_SLL, LinkType.LINUX_SLL2, LinkType.RAW):
        check_filter(CAPTURE_FILTER, linktype)


def test_capture_filter_passes_attempts_and_extension_headers_only(
    tmp_path: Path, run_tool: Callable[..., str]
) -> None:
    """tcpdump runs the filter on frames of every kind; exactly the expected ones pass."""
    wanted = [
        f.syn_v4(dport=1),
        f.syn_v4(dport=2, flags=f.SYN | f.ECE | f.CWR),
        f.syn_v6(dport=3),
        f.ethernet(f.ipv6(f.V6_REMOTE, f.V6_LOCAL, f.hop_by_hop(f.tcp(dport=4)), next_header=0)),
    ]
    unwanted = [
        f.syn_v4(dport=5, flags=f.SYN | f.ACK),
        f.syn_v4(dport=6, flags=f.ACK),
        f.syn_v6(dport=7, flags=f.SYN | f.ACK),
        f.ethernet(f.ipv6(f.V6_REMOTE, f.V6_LOCAL, b"\x00" * 8, next_header=17)),
    ]
    path = tmp_path / "frames.pcap"
    path.write_bytes(_pcap(unwanted[:2] + wanted[:2] + unwanted[2:] + wanted[2:]))
    out = run_tool("tcpdump", "-n", "-r", str(path), CAPTURE_FILTER)
    assert len(out.splitlines()) == len(wanted), out
    for shown in ("192.0.2.1.1:", "192.0.2.1.2:", "2001:db8::1.3:", "> 4:"):
        assert shown in out

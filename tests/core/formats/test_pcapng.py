"""pcapng blocks: hand-built vectors in both byte orders, round trips, limits, real tools.

Section numbers are those of draft-ietf-opsawg-pcapng.
"""

from __future__ import annotations

import contextlib
import ssl
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.core.formats import pcapng
from wirecap.core.formats.decoder import CaptureDecoder
from wirecap.core.formats.linktype import LinkType
from wirecap.core.formats.pcap import ByteOrder
from wirecap.core.formats.pcapng import PcapngEncoder
from wirecap.core.formats.reader import read_file
from wirecap.core.formats.records import (
    SECRETS_TLS_KEY_LOG,
    DecryptionSecrets,
    Event,
    Interface,
    InterfaceStatistics,
    NameRecord,
    NameResolution,
    Packet,
    SectionStart,
)
from wirecap.errors import DecodeError, FormatError, LimitExceededError

TS = 1_700_000_000_123_456_789
ORDERS: list[ByteOrder] = ["<", ">"]


def _decode(data: bytes) -> list[Event]:
    decoder = CaptureDecoder()
    decoder.feed(data)
    events = list(decoder.events())
    decoder.close()
    return events


# --------------------------------------------------------------------------
# Hand-built blocks, independent of PcapngEncoder (§3.1 framing, §3.5 options).


def _block(order: ByteOrder, block_type: int, body: bytes) -> bytes:
    assert len(body) % 4 == 0
    total = 12 + len(body)
    return struct.pack(order + "II", block_type, total) + body + struct.pack(order + "I", total)


def _option(order: ByteOrder, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) & 3)


def _end(order: ByteOrder) -> bytes:
    return struct.pack(order + "HH", 0, 0)


def _shb(order: ByteOrder, options: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, *version, -1) + options
    return _block(order, 0x0A0D0D0A, body)


def _idb(order: ByteOrder, linktype: int = 1, snaplen: int = 0, options: bytes = b"") -> bytes:
    return _block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + options)


def _epb(
    order: ByteOrder, interface_id: int, ticks: int, data: bytes, options: bytes = b""
) -> bytes:
    fixed = struct.pack(
        order + "IIIII", interface_id, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)
    )
    return _block(order, 6, fixed + data + b"\0" * (-len(data) & 3) + options)


@pytest.mark.parametrize("order", ORDERS)
def test_decoder_reads_hand_built_blocks(order: ByteOrder) -> None:
    data = (
        _shb(order, _option(order, 1, b"hi") + _option(order, 4, b"app") + _end(order))
        + _idb(order, 113, 1600, _option(order, 2, b"any") + _option(order, 9, b"\x09"))
        + _epb(order, 0, TS, b"abcde", _option(order, 1, b"note") + _end(order))
    )
    assert _decode(data) == [
        SectionStart("pcapng", order == ">", (1, 0), comment="hi", user_application="app"),
        Interface(linktype=113, snaplen=1600, name="any"),
        Packet(ts_ns=TS, data=b"abcde", orig_len=5, comment="note"),
    ]


@pytest.mark.parametrize("order", ORDERS)
def test_PcapngEncoder_writes_the_hand_built_bytes(order: ByteOrder) -> None:
    encoder = PcapngEncoder(order)
    assert encoder.section_header(comment="hi") == _shb(
        order, _option(order, 1, b"hi") + _end(order)
    )
    assert encoder.interface(Interface(linktype=1, snaplen=0, name="eth0")) == _idb(
        order, 1, 0, _option(order, 2, b"eth0") + _option(order, 9, b"\x09") + _end(order)
    )
    assert encoder.packet(Packet(ts_ns=TS, data=b"abc", orig_len=3)) == _epb(order, 0, TS, b"abc")
    dsb_body = struct.pack(order + "II", SECRETS_TLS_KEY_LOG, 5) + b"keys\n\0\0\0"
    assert encoder.secrets(DecryptionSecrets(SECRETS_TLS_KEY_LOG, b"keys\n")) == _block(
        order, 0x0A, dsb_body
    )


# --------------------------------------------------------------------------
# Round trips of every block we write.

text_st = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=12
)
packet_st = st.builds(
    Packet,
    ts_ns=st.integers(0, (1 << 64) - 1),
    data=st.binary(max_size=40),
    orig_len=st.integers(0, 0xFFFFFFFF),
    interface_id=st.integers(0, 1),
    comment=st.none() | text_st.filter(bool),
)


@pytest.mark.parametrize("order", ORDERS)
@given(
    comment=st.none() | text_st.filter(bool),
    names=st.lists(st.none() | text_st.filter(bool), min_size=2, max_size=2),
    packets=st.lists(packet_st, max_size=6),
    secrets=st.binary(max_size=50),
    stats=st.tuples(st.none() | st.integers(0, (1 << 64) - 1), st.none() | st.integers(0, 9)),
)
def test_every_block_round_trips(
    order: ByteOrder,
    comment: str | None,
    names: list[str | None],
    packets: list[Packet],
    secrets: bytes,
    stats: tuple[int | None, int | None],
) -> None:
    events: list[Event] = [
        SectionStart("pcapng", order == ">", (1, 0), comment=comment, os="Linux"),
        Interface(linktype=LinkType.ETHERNET, name=names[0]),
        Interface(linktype=LinkType.LINUX_SLL2, snaplen=96, description=names[1]),
        DecryptionSecrets(SECRETS_TLS_KEY_LOG, secrets),
        NameResolution((NameRecord(1, b"\x0a\0\0\1", ("a", "b")), NameRecord(3, b"\1" * 6, ()))),
        *packets,
        InterfaceStatistics(1, TS, received=stats[0], dropped=stats[1]),
    ]
    encoder = PcapngEncoder(order)
    assert _decode(b"".join(encoder.event(event) for event in events)) == events


@pytest.mark.parametrize("order", ORDERS)
def test_simple_packet_block_takes_interface_0_and_its_snaplen(order: ByteOrder) -> None:
    encoder = PcapngEncoder(order)
    data = (
        encoder.section_header()
        + encoder.interface(Interface(linktype=1, snaplen=4))
        + encoder.simple_packet(Packet(ts_ns=0, data=b"abcd", orig_len=1500))
        + encoder.simple_packet(Packet(ts_ns=0, data=b"ab", orig_len=2))
    )
    assert _decode(data)[2:] == [
        Packet(ts_ns=0, data=b"abcd", orig_len=1500),
        Packet(ts_ns=0, data=b"ab", orig_len=2),
    ]


# --------------------------------------------------------------------------
# Timestamps: §4.2 if_tsresol (power of 10 or 2) and if_tsoffset.


@pytest.mark.parametrize(
    ("tsresol", "ticks", "expected_ns"),
    [
        (None, 1_700_000_000_123_456, 1_700_000_000_123_456_000),  # default: 10^-6
        (b"\x03", 1_700_000_000_123, 1_700_000_000_123_000_000),  # milliseconds
        (b"\x09", TS, TS),
        (b"\x0c", 17_000_123_456_789_999, 17_000_123_456_789),  # ps: floored
        (b"\x00", 1_700_000_000, 1_700_000_000_000_000_000),  # whole seconds
        (b"\x94", 1_700_000_000 << 20 | 1 << 19, 1_700_000_000_500_000_000),  # 2^-20
        (b"\x8a", 3, 2_929_687),  # 3/1024 s = 2929687.5 ns, floored
    ],
)
@pytest.mark.parametrize("order", ORDERS)
def test_if_tsresol_converts_ticks_to_exact_nanoseconds(
    order: ByteOrder, tsresol: bytes | None, ticks: int, expected_ns: int
) -> None:
    options = (_option(order, 9, tsresol) + _end(order)) if tsresol else b""
    data = _shb(order) + _idb(order, options=options) + _epb(order, 0, ticks, b"")
    interface, packet = _decode(data)[1:]
    assert isinstance(packet, Packet) and packet.ts_ns == expected_ns
    assert isinstance(interface, Interface)


def test_if_tsoffset_adds_seconds() -> None:
    offset = _option("<", 14, struct.pack("<q", -100))
    data = _shb("<") + _idb("<", options=offset + _end("<")) + _epb("<", 0, 5_000_000, b"")
    packet = _decode(data)[2]
    assert isinstance(packet, Packet) and packet.ts_ns == 5_000_000_000 - 100_000_000_000


def test_microsecond_idb_is_read_alike_by_tshark(
    tmp_path: Path, run_tool: Callable[..., str]
) -> None:
    path = tmp_path / "us.pcapng"
    path.write_bytes(_shb("<") + _idb("<") + _epb("<", 0, 1_700_000_000_654_321, bytes(20)))
    packet = _decode(path.read_bytes())[2]
    assert isinstance(packet, Packet)
    epoch = run_tool("tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch")
    assert epoch.strip() == f"{packet.ts_ns // 10**9}.{packet.ts_ns % 10**9:09d}"


# --------------------------------------------------------------------------
# Sections, skipped blocks, errors.


def test_second_section_restarts_interface_ids_and_may_swap_byte_order() -> None:
    little, big = PcapngEncoder("<"), PcapngEncoder(">")
    data = (
        little.section_header(comment="first")
        + little.interface(Interface(linktype=1, name="a"))
        + little.interface(Interface(linktype=1, name="b"))
        + little.packet(Packet(TS, b"1", 1, interface_id=1))
        + big.section_header(comment="second")
        + big.interface(Interface(linktype=101, name="c"))
        + big.packet(Packet(TS + 1, b"2", 1, interface_id=0))
    )
    assert _decode(data) == [
        SectionStart("pcapng", False, (1, 0), comment="first"),
        Interface(linktype=1, name="a"),
        Interface(linktype=1, name="b"),
        Packet(TS, b"1", 1, interface_id=1),
        SectionStart("pcapng", True, (1, 0), comment="second"),
        Interface(linktype=101, name="c"),
        Packet(TS + 1, b"2", 1, interface_id=0),
    ]


@pytest.mark.parametrize(
    "block_type",
    [0x00000BAD, 0x40000BAD, 0x80000001, 0x00000007, 0x00000009],  # custom, local, unknown
)
def test_unknown_blocks_are_skipped(block_type: int) -> None:
    data = _shb("<") + _idb("<") + _block("<", block_type, b"\xff" * 24) + _epb("<", 0, 1, b"x")
    assert _decode(data)[2:] == [Packet(ts_ns=1000, data=b"x", orig_len=1)]


@pytest.mark.parametrize("order", ORDERS)
def test_obsolete_packet_block_is_read_like_an_epb(order: ByteOrder) -> None:
    # Appendix A: 16-bit interface id, 16-bit drops count, then as an EPB.
    fixed = struct.pack(order + "HHIIII", 1, 7, TS >> 32, TS & 0xFFFFFFFF, 3, 90)
    block = _block(order, 2, fixed + b"abc\0" + _option(order, 1, b"old") + _end(order))
    data = _shb(order) + _idb(order) + _idb(order, options=_option(order, 9, b"\x09")) + block
    assert _decode(data)[3] == Packet(TS, b"abc", 90, interface_id=1, comment="old")


def test_nrb_records_of_unknown_type_are_skipped() -> None:
    records = (
        _option("<", 1, b"\x0a\0\0\1" + b"a\0")
        + _option("<", 99, b"whatever")
        + _option("<", 2, bytes(16) + b"six\0")
        + _end("<")
    )
    data = _shb("<") + _block("<", 4, records + _option("<", 2, b"dns.example") + _end("<"))
    assert _decode(data)[1] == NameResolution(
        (NameRecord(1, b"\x0a\0\0\1", ("a",)), NameRecord(2, bytes(16), ("six",)))
    )


def _shb_idb() -> bytes:
    return _shb("<") + _idb("<")


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (_shb_idb() + _epb("<", 0, 1, b"x")[:-4] + struct.pack("<I", 40), FormatError, "trailing"),
        (_shb_idb() + struct.pack("<II", 6, 10) + bytes(8), FormatError, "bad length"),
        (_shb_idb() + struct.pack("<II", 6, 8) + bytes(8), FormatError, "bad length"),
        (struct.pack("<III", 0x0A0D0D0A, 24, 0x1A2B3C4D) + bytes(12), FormatError, "bad length"),
        (struct.pack("<III", 0x0A0D0D0A, 28, 0x12345678) + bytes(16), FormatError, "magic"),
        (_shb("<", version=(2, 0)), FormatError, "version"),
        (_shb_idb() + struct.pack("<II", 6, pcapng.MAX_BLOCK_LEN + 4), LimitExceededError, "MAX"),
        (_shb_idb() + _epb("<", 1, 1, b"x"), FormatError, "interface 1"),
        (_shb("<") + _epb("<", 0, 1, b"x"), FormatError, "interface 0"),
        (_shb_idb() + _block("<", 6, struct.pack("<5I", 0, 0, 0, 9, 9)), FormatError, "EPB"),
        (_shb_idb() + _block("<", 6, bytes(16)), FormatError, "EPB"),
        (_shb("<", _option("<", 1, b"abcd")[:2] + b"\x09\0abcd"), FormatError, "option 1"),
        (_shb("<") + _idb("<", options=_option("<", 9, b"\x09\x09")), FormatError, "tsresol"),
        (_shb_idb() + _block("<", 5, bytes(12) + _option("<", 4, b"1234")), FormatError, "ifrecv"),
        (_shb_idb() + _block("<", 0x0A, struct.pack("<II", 1, 99)), FormatError, "DSB"),
        (_shb_idb() + _block("<", 4, _option("<", 1, b"\1\2")), FormatError, "NRB"),
        (_shb("<") + _block("<", 3, bytes(4) + struct.pack("<I", 5)), FormatError, "SPB"),
        (b"\x0a\x0d\x0d\x0a" + b"<html>junk!!", FormatError, "magic"),
        (b"GET / HTTP/1.1\r\n", FormatError, "neither pcap nor pcapng"),
    ],
)
def test_malformed_input_raises_the_right_DecodeError(
    data: bytes, error: type[DecodeError], match: str
) -> None:
    decoder = CaptureDecoder()
    decoder.feed(data)
    with pytest.raises(error, match=match):
        list(decoder.events())
    # Once broken, the decoder stays broken.
    with pytest.raises(error):
        decoder.next_event()


def test_oversized_block_is_refused_before_its_bytes_arrive() -> None:
    decoder = CaptureDecoder()
    decoder.feed(_shb_idb() + struct.pack("<II", 6, 0xFFFFFFFC))
    with pytest.raises(LimitExceededError, match="MAX_BLOCK_LEN"):
        list(decoder.events())


def test_more_than_MAX_INTERFACES_idbs_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcapng, "MAX_INTERFACES", 3)
    with pytest.raises(LimitExceededError, match="MAX_INTERFACES"):
        _decode(_shb("<") + _idb("<") * 4)


# --------------------------------------------------------------------------
# Real tools.


def _everything(encoder: PcapngEncoder) -> tuple[bytes, list[Packet]]:
    packets = [
        Packet(TS, bytes(range(60)), 64, interface_id=0, comment="first packet"),
        Packet(TS + 1, bytes(61), 61, interface_id=1),
        Packet(TS + 1_000_000_007, bytes(62), 1514, interface_id=0, comment="ünïcode"),
    ]
    data = b"".join(
        [
            encoder.section_header(
                comment="section comment", hardware="hw", os="Linux", user_application="wirecap"
            ),
            encoder.interface(Interface(linktype=1, name="eth0", description="uplink")),
            encoder.interface(Interface(linktype=1, snaplen=128, name="lo")),
            encoder.secrets(DecryptionSecrets(SECRETS_TLS_KEY_LOG, b"CLIENT_RANDOM 00 11\n")),
            encoder.name_resolution(NameResolution((NameRecord(1, b"\x0a\0\0\1", ("host-a",)),))),
            *[encoder.packet(p) for p in packets],
            encoder.statistics(InterfaceStatistics(0, TS + 2_000_000_000, 100, 3)),
        ]
    )
    return data, packets


@pytest.mark.parametrize("order", ORDERS)
def test_capinfos_and_tshark_read_every_block_we_write(
    tmp_path: Path, run_tool: Callable[..., str], order: ByteOrder
) -> None:
    data, packets = _everything(PcapngEncoder(order))
    path = tmp_path / "ours.pcapng"
    path.write_bytes(data)
    info = run_tool("capinfos", str(path))
    for line in (
        "Number of packets:   3",
        "Capture comment:     section comment",
        "Capture application: wirecap",
        "Capture hardware:    hw",
        "Number of interfaces in file: 2",
        "Name = eth0",
        "Description = uplink",
        "Name = lo",
        "Number of stat entries = 1",
        "Number of resolved IPv4 addresses in file: 1",
        "Number of decryption secrets in file: 1",
    ):
        assert line in info
    fields = run_tool(
        "tshark", "-r", str(path), "-T", "fields", "-E", "separator=|",
        "-e", "frame.time_epoch", "-e", "frame.interface_name", "-e", "frame.comment",
        "-e", "frame.cap_len", "-e", "frame.len",
    )  # fmt: skip
    names = ["eth0", "lo"]
    assert fields.splitlines() == [
        f"{p.ts_ns // 10**9}.{p.ts_ns % 10**9:09d}|{names[p.interface_id]}|{p.comment or ''}"
        f"|{p.caplen}|{p.orig_len}"
        for p in packets
    ]
    # Wireshark's own pcapng dissector walks the blocks: every one parses, with our values.
    blocks = run_tool(
        "tshark", "-r", str(path), "-X", "read_format:MIME Files Format", "-T", "fields",
        "-E", "aggregator=,", "-e", "pcapng.block.type", "-e", "pcapng.dsb.secrets_type",
        "-e", "pcapng.options.option.data.interface.received",
        "-e", "pcapng.options.option.data.interface.dropped", "-e", "_ws.expert",
    )  # fmt: skip
    assert blocks.rstrip("\n").split("\t") == [
        "0x0a0d0d0a,0x00000001,0x00000001,0x0000000a,0x00000004,"
        "0x00000006,0x00000006,0x00000006,0x00000005",
        "0x544c534b",
        "100",
        "3",
        "",  # no expert info: nothing malformed
    ]


def test_editcap_and_mergecap_output_decodes_to_the_same_packets(
    tmp_path: Path, run_tool: Callable[..., str]
) -> None:
    data, packets = _everything(PcapngEncoder())
    ours = tmp_path / "ours.pcapng"
    ours.write_bytes(data)
    for tool in (["editcap", str(ours)], ["mergecap", "-w"]):
        out = tmp_path / f"{tool[0]}.pcapng"
        argv = [*tool, str(out), str(ours)] if tool[0] == "mergecap" else [*tool, str(out)]
        run_tool(*argv)
        events = list(read_file(out))
        assert [e for e in events if isinstance(e, Packet)] == packets, tool[0]
        interfaces = [e for e in events if isinstance(e, Interface)]
        assert [i.name for i in interfaces] == ["eth0", "lo"]
        assert [e for e in events if isinstance(e, DecryptionSecrets)] == [
            DecryptionSecrets(SECRETS_TLS_KEY_LOG, b"CLIENT_RANDOM 00 11\n")
        ]


def test_editcap_discard_all_secrets_removes_exactly_our_dsb(
    tmp_path: Path, run_tool: Callable[..., str]
) -> None:
    encoder = PcapngEncoder()
    key_log = b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n"
    head = encoder.section_header() + encoder.interface(Interface(linktype=1))
    dsb = encoder.secrets(DecryptionSecrets(SECRETS_TLS_KEY_LOG, key_log))
    tail = encoder.packet(Packet(TS, bytes(60), 60))
    with_secrets, stripped = tmp_path / "with.pcapng", tmp_path / "without.pcapng"
    with_secrets.write_bytes(head + dsb + tail)
    run_tool("editcap", "--discard-all-secrets", str(with_secrets), str(stripped))
    # editcap rewrites SHB/IDB its own way; compare what it drops with the DSB alone.
    kept = tmp_path / "kept.pcapng"
    run_tool("editcap", str(with_secrets), str(kept))
    assert kept.stat().st_size - stripped.stat().st_size == len(dsb)
    # ... and what editcap --inject-secrets writes is the same block, byte for byte.
    (tmp_path / "keys.log").write_bytes(key_log)
    injected = tmp_path / "injected.pcapng"
    run_tool(
        "editcap", "--inject-secrets", f"tls,{tmp_path / 'keys.log'}", str(stripped), str(injected)
    )
    assert dsb in injected.read_bytes()


# A TLS 1.3 session between two in-memory Python endpoints, written as Ethernet
# frames: proof that tshark decrypts with our DSB alone, and not without it.


def _tls_session(tmp_path: Path) -> tuple[list[bytes], bytes]:
    """Frames of a whole TLS session carrying one HTTP exchange, and its key log."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "1", "-subj", "/CN=wirecap.test"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("openssl is not installed")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.keylog_filename = str(tmp_path / "keys.log")
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_out, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(to_client, client_out)
    server = server_ctx.wrap_bio(to_server, server_out, server_side=True)
    flights: list[tuple[bool, bytes]] = []

    def pump() -> bool:
        moved = False
        for from_client, source, sink in (
            (True, client_out, to_server),
            (False, server_out, to_client),
        ):
            if chunk := source.read():
                flights.append((from_client, chunk))
                sink.write(chunk)
                moved = True
        return moved

    for _ in range(10):
        for end in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        if not pump():
            break
    client.write(b"GET /wirecap-secret HTTP/1.1\r\nHost: wirecap.test\r\n\r\n")
    pump()
    assert server.read(4096).startswith(b"GET /wirecap-secret")
    server.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    pump()
    assert client.read(4096).endswith(b"ok")

    def frame(from_client: bool, seq: int, ack: int, flags: int, payload: bytes) -> bytes:
        ports = (40000, 443) if from_client else (443, 40000)
        hosts = (b"\x0a\0\0\1", b"\x0a\0\0\2") if from_client else (b"\x0a\0\0\2", b"\x0a\0\0\1")
        macs = (
            (b"\2\0\0\0\0\2", b"\2\0\0\0\0\1")
            if from_client
            else (b"\2\0\0\0\0\1", b"\2\0\0\0\0\2")
        )
        tcp = struct.pack("!HHIIBBHHH", *ports, seq, ack, 5 << 4, flags, 65535, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 1, 0x4000, 64, 6, 0, *hosts)
        return macs[0] + macs[1] + b"\x08\x00" + ip + tcp + payload

    seq = {True: 1001, False: 5001}
    frames = [
        frame(True, 1000, 0, 0x02, b""),  # SYN
        frame(False, 5000, 1001, 0x12, b""),  # SYN-ACK
        frame(True, 1001, 5001, 0x10, b""),  # ACK
    ]
    for from_client, chunk in flights:
        for start in range(0, len(chunk), 1400):
            segment = chunk[start : start + 1400]
            frames.append(frame(from_client, seq[from_client], seq[not from_client], 0x18, segment))
            seq[from_client] += len(segment)
    return frames, (tmp_path / "keys.log").read_bytes()


def test_tshark_decrypts_tls_with_our_dsb_and_no_key_file(
    tmp_path: Path, run_tool: Callable[..., str]
) -> None:
    frames, key_log = _tls_session(tmp_path)
    encoder = PcapngEncoder()
    head = encoder.section_header() + encoder.interface(Interface(linktype=1))
    body = b"".join(encoder.packet(Packet(TS + i, f, len(f))) for i, f in enumerate(frames))
    plain, with_dsb = tmp_path / "plain.pcapng", tmp_path / "dsb.pcapng"
    plain.write_bytes(head + body)
    dsb = encoder.secrets(DecryptionSecrets(SECRETS_TLS_KEY_LOG, key_log))
    with_dsb.write_bytes(head + dsb + body)
    http = ("-Y", "http", "-T", "fields", "-e", "http.request.uri", "-e", "http.response.code")
    assert run_tool("tshark", "-r", str(plain), *http).split() == []
    assert run_tool("tshark", "-r", str(with_dsb), *http).split() == ["/wirecap-secret", "200"]

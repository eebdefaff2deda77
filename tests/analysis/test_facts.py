"""Facts measured per connection, from synthetic packet sequences."""

from __future__ import annotations

import pytest

from tests.analysis.frames import (
    ACK,
    CLIENT,
    FIN,
    SERVER,
    SYN,
    Script,
    sack_option,
    timestamps_option,
)
from wirecap.analysis import (
    CloseEvent,
    CloseKind,
    Connection,
    IcmpKind,
    PacketRef,
    Report,
    Retransmission,
    RoleSource,
    Side,
    SpuriousCause,
    ZeroWindow,
)

MS = 1_000_000


def only(report: Report) -> Connection:
    assert len(report.connections) == 1
    return report.connections[0]


def download(s: Script, segments: int, at_ms: float = 20.0, size: int = 1448) -> list[bytes]:
    """The server sends `segments` segments 0.1 ms apart; returns their IP packets."""
    return [s.data(SERVER, size, at_ms + i * 0.1) for i in range(segments)]


class TestHandshake:
    def test_timing_and_rtt(self) -> None:
        s = Script()
        s.handshake(at_ms=0, rtt_ms=10)
        hs = only(s.analyze()).handshake
        assert hs.syn == PacketRef(1, 0)
        assert hs.syn_ack == PacketRef(2, 10 * MS)
        assert hs.ack == PacketRef(3, 10_050_000)
        assert (hs.syns, hs.syn_acks, hs.syn_retries, hs.syn_ack_retries) == (1, 1, 0, 0)
        assert hs.syn_to_syn_ack_ns == 10 * MS
        assert hs.syn_ack_to_ack_ns == 50_000
        assert hs.rtt_ns == hs.duration_ns == 10_050_000

    def test_retries_make_the_rtt_ambiguous(self) -> None:
        s = Script()
        s.syn(0)
        s.syn(1000)
        s.syn_ack(1010)
        s.syn_ack(2010)
        s.ack(CLIENT, 2010.5)
        hs = only(s.analyze()).handshake
        assert (hs.syn_retries, hs.syn_ack_retries) == (1, 1)
        assert hs.rtt_ns is None  # Karn: which SYN did the SYN-ACK answer?
        assert hs.syn_to_syn_ack_ns == 1010 * MS
        assert hs.duration_ns == 2_010_500_000

    def test_roles_from_syn_ack_when_the_syn_is_missing(self) -> None:
        s = Script()
        s.syn_ack(0)
        s.ack(CLIENT, 1)
        c = only(s.analyze())
        assert c.roles_from is RoleSource.SYN_ACK
        assert (c.client.address, c.client.port) == ("10.0.0.1", 40000)

    def test_roles_from_the_first_packet_without_a_handshake(self) -> None:
        s = Script()
        s.data(SERVER, 100, 0)
        s.ack(CLIENT, 1)
        c = only(s.analyze())
        assert c.roles_from is RoleSource.FIRST_PACKET
        # Without a handshake the first sender is taken for the client.
        assert (c.client.address, c.client.port) == ("10.0.0.2", 80)
        assert c.handshake.syn is None and c.handshake.duration_ns is None


class TestOptions:
    def test_mss_window_scale_and_sack_permitted_each_side(self) -> None:
        s = Script(mss=(1460, 1400), wscale=(7, 9))
        s.handshake()
        c = only(s.analyze())
        assert (c.client_data.mss, c.server_data.mss) == (1460, 1400)
        assert (c.client_data.window_scale, c.server_data.window_scale) == (7, 9)
        assert c.client_data.sack_permitted and c.server_data.sack_permitted
        # Each side sends with the MSS the other announced.
        assert (c.client_data.send_mss, c.server_data.send_mss) == (1400, 1460)

    def test_windows_scale_only_when_both_syns_carry_the_option(self) -> None:
        s = Script(wscale=(7, 7))
        s.handshake()
        s.ack(CLIENT, 20, window=1000)
        c = only(s.analyze())
        # RFC 7323 §2.2: scaled after the handshake; the SYN's 64240 is not scaled.
        assert c.client_data.max_window == 1024 << 7
        assert list(c.series.windows) == [64240, 65160, 1024 << 7, 1000 << 7]

        s = Script(wscale=(7, None))
        s.handshake()
        c = only(s.analyze())
        assert c.client_data.max_window == 64240  # no scaling: the SYN's raw window is largest

    def test_missing_mss_means_the_rfc_default(self) -> None:
        s = Script(mss=(None, None))
        s.handshake()
        c = only(s.analyze())
        assert c.client_data.send_mss == c.server_data.send_mss == 536
        v6 = Script(client=("fd00::1", 40000), server=("fd00::2", 80), mss=(None, None))
        v6.handshake()
        assert only(v6.analyze()).client_data.send_mss == 1220


class TestVolume:
    def test_bytes_and_segments_come_from_ip_lengths_not_frames(self) -> None:
        s = Script(snaplen=60)  # every frame cut after 60 bytes
        s.handshake()
        s.data(CLIENT, 300, 20)
        download(s, 4)
        s.ack(CLIENT, 30)
        c = only(s.analyze())
        assert (c.client_data.packets, c.client_data.data_segments) == (4, 1)
        assert c.client_data.payload_bytes == c.client_data.unique_bytes == 300
        assert (c.server_data.packets, c.server_data.data_segments) == (5, 4)
        assert c.server_data.payload_bytes == 4 * 1448
        assert c.server_data.largest_segment == 1448
        assert c.server_data.full_size_segments == 4
        assert c.client_data.full_size_segments == 0

    def test_gso_super_segment_is_full_size_and_counts_in_mss_units(self) -> None:
        s = Script()
        s.handshake()
        s.data(SERVER, 14480, 20)  # a GSO super-segment: ten MSS in one capture record
        s.data(SERVER, 700, 21)
        c = only(s.analyze())
        server = c.server_data
        assert server.largest_segment == 14480
        assert server.full_size_segments == 1
        assert server.data_segments == 2
        assert server.data_mss_units == 10 + 1

    def test_sequence_numbers_wrap_around(self) -> None:
        s = Script(isn=(0xFFFFFF00, 0xFFFFF000))
        s.handshake()
        s.data(CLIENT, 1000, 20)  # crosses 2**32
        download(s, 5)  # so does this
        s.ack(CLIENT, 30)
        s.ack(SERVER, 31)
        c = only(s.analyze())
        assert not c.client_data.retransmissions and not c.server_data.retransmissions
        assert c.server_data.unique_bytes == 5 * 1448
        assert c.server_data.acked_seq == 5 * 1448 + 1
        assert c.client_data.acked_seq == 1001
        server_seqs = [q for q, side in zip(c.series.seqs, c.series.sides, strict=True) if side]
        assert server_seqs == [0, 1, 1449, 2897, 4345, 5793, 7241]


class TestRetransmissions:
    def test_resent_range_with_its_size(self) -> None:
        s = Script()
        s.handshake()
        download(s, 3)
        s.data(SERVER, 1448, 300, seq=s.isn[SERVER] + 1 + 1448)
        s.ack(CLIENT, 310)
        c = only(s.analyze())
        (r,) = c.server_data.retransmissions
        assert r == Retransmission(7, 300 * MS, 1449, 1448, True, None, True, False)
        assert c.server_data.retransmitted_bytes == 1448
        assert c.server_data.unique_bytes == 3 * 1448
        assert c.server_data.payload_bytes == 4 * 1448

    def test_resending_acknowledged_data_is_spurious(self) -> None:
        s = Script()
        s.handshake()
        download(s, 2)
        s.ack(CLIENT, 25)
        s.data(SERVER, 1448, 300, seq=s.isn[SERVER] + 1)
        (r,) = only(s.analyze()).server_data.retransmissions
        assert r.spurious and r.original_seen

    def test_resend_reported_by_a_dsack_below_the_ack_is_spurious(self) -> None:
        # The second segment is overtaken by the third (reordering); the sender resends
        # it before any ACK, then the original arrives and the receiver's cumulative
        # ACK carries the resent range as a D-SACK block below it (RFC 2883 §4.1.1).
        s = Script()
        s.handshake()
        first = s.isn[SERVER] + 1
        download(s, 3)
        s.data(SERVER, 1448, 300, seq=first + 1448)
        s.ack(CLIENT, 310, options=sack_option([(first + 1448, first + 2896)]))
        c = only(s.analyze())
        (r,) = c.server_data.retransmissions
        assert (r.seq, r.spurious_cause, r.spurious) == (1449, SpuriousCause.DSACK, True)
        assert [(x.blocks, x.dsack) for x in c.client_data.sack] == [(((1449, 2897),), True)]

    def test_dsack_inside_the_second_block_marks_that_resend_only(self) -> None:
        # The second segment is lost; the third and fourth arrive and are SACKed. The
        # sender needlessly resends the third as well: the receiver reports it as a
        # D-SACK block inside its second block, above the ACK (RFC 2883 §4.2.1).
        s = Script()
        s.handshake()
        first = s.isn[SERVER] + 1
        download(s, 4)
        s.ack(CLIENT, 21, upto=first + 1448)
        s.ack(CLIENT, 21.1, upto=first + 1448, options=sack_option([(first + 2896, first + 5792)]))
        s.data(SERVER, 1448, 250, seq=first + 2896)  # needless: the third arrived
        s.ack(
            CLIENT,
            260,
            upto=first + 1448,
            options=sack_option([(first + 2896, first + 4344), (first + 2896, first + 5792)]),
        )
        s.data(SERVER, 1448, 270, seq=first + 1448)  # the lost one
        s.ack(CLIENT, 280)
        c = only(s.analyze())
        needless, lost = c.server_data.retransmissions
        assert [x.dsack for x in c.client_data.sack] == [False, True]
        assert (needless.seq, needless.spurious_cause) == (2897, SpuriousCause.DSACK)
        assert (lost.seq, lost.spurious_cause, lost.spurious) == (1449, None, False)

    def test_a_sack_that_is_no_dsack_marks_nothing(self) -> None:
        # Blocks above the ACK, the first not inside the second (RFC 2018 §4 orders
        # them newest first): an ordinary SACK, whatever the resends.
        s = Script()
        s.handshake()
        first = s.isn[SERVER] + 1
        download(s, 5)
        s.ack(CLIENT, 21, upto=first + 1448)
        s.data(SERVER, 1448, 250, seq=first + 1448)
        s.data(SERVER, 1448, 251, seq=first + 4344)
        s.ack(
            CLIENT,
            260,
            upto=first + 1448,
            options=sack_option([(first + 4344, first + 5792), (first + 2896, first + 4344)]),
        )
        s.ack(CLIENT, 270)
        c = only(s.analyze())
        assert [(r.seq, r.spurious) for r in c.server_data.retransmissions] == [
            (1449, False),
            (4345, False),
        ]
        assert [x.dsack for x in c.client_data.sack] == [False]

    def test_one_dsack_accounts_for_one_copy_of_each_range_it_covers(self) -> None:
        s = Script()
        s.handshake()
        first = s.isn[SERVER] + 1
        download(s, 3)
        s.data(SERVER, 1448, 300, seq=first)  # the first range, resent twice
        s.data(SERVER, 1448, 900, seq=first)
        s.data(SERVER, 1448, 901, seq=first + 1448)  # and the second once
        # One duplicate of each of the two ranges arrived: the newest copies are marked.
        s.ack(CLIENT, 910, options=sack_option([(first, first + 2896)]))
        c = only(s.analyze())
        assert [(r.packet, r.spurious_cause) for r in c.server_data.retransmissions] == [
            (7, None),
            (8, SpuriousCause.DSACK),
            (9, SpuriousCause.DSACK),
        ]

    def test_dsack_of_a_resend_already_acknowledged_keeps_its_cause(self) -> None:
        s = Script()
        s.handshake()
        first = s.isn[SERVER] + 1
        download(s, 2)
        s.ack(CLIENT, 25)
        s.data(SERVER, 1448, 300, seq=first + 1448)  # the late original and this resend
        s.data(SERVER, 1448, 301, seq=first + 1448)
        s.ack(CLIENT, 310, options=sack_option([(first + 1448, first + 2896)]))
        c = only(s.analyze())
        # The first resend, of acknowledged data, explains the one duplicate reported.
        assert [r.spurious_cause for r in c.server_data.retransmissions] == [
            SpuriousCause.ACKED,
            SpuriousCause.ACKED,
        ]

    def test_dsack_whose_edge_starts_no_resend_matches_by_overlap(self) -> None:
        # A GSO resend of two segments; the receiver reports the second half only.
        s = Script()
        s.handshake()
        first = s.isn[SERVER] + 1
        download(s, 3)
        s.data(SERVER, 2896, 300, seq=first)
        s.ack(CLIENT, 310, options=sack_option([(first + 1448, first + 2896)]))
        (r,) = only(s.analyze()).server_data.retransmissions
        assert r.spurious_cause is SpuriousCause.DSACK

    def test_quick_gap_fill_is_reordering(self) -> None:
        s = Script()
        s.handshake(rtt_ms=10)
        first = s.isn[SERVER] + 1
        s.data(SERVER, 1000, 20, seq=first)
        s.data(SERVER, 1000, 21, seq=first + 2000)
        s.data(SERVER, 1000, 22, seq=first + 1000)  # 1 ms later: within the handshake RTT
        c = only(s.analyze())
        assert not c.server_data.retransmissions
        assert c.server_data.out_of_order == (PacketRef(6, 22 * MS),)
        assert c.server_data.unique_bytes == 3000

    def test_late_gap_fill_is_a_retransmission_whose_original_was_not_seen(self) -> None:
        s = Script()
        s.handshake(rtt_ms=10)
        first = s.isn[SERVER] + 1
        s.data(SERVER, 1000, 20, seq=first)
        s.data(SERVER, 1000, 21, seq=first + 2000)
        s.data(SERVER, 1000, 250, seq=first + 1000)  # after a timeout: lost upstream
        c = only(s.analyze())
        (r,) = c.server_data.retransmissions
        assert (r.seq, r.length, r.original_seen, r.full_size) == (1001, 1000, False, False)
        assert not c.server_data.out_of_order

    def test_partial_overlap_counts_once(self) -> None:
        s = Script()
        s.handshake()
        first = s.isn[SERVER] + 1
        s.data(SERVER, 1000, 20, seq=first)
        s.data(SERVER, 1000, 300, seq=first + 500)  # 500 old bytes and 500 new
        c = only(s.analyze())
        assert len(c.server_data.retransmissions) == 1
        assert c.server_data.unique_bytes == 1500

    def test_keepalive_and_zero_window_probe_are_not_data(self) -> None:
        s = Script()
        s.handshake()
        s.data(CLIENT, 100, 20)
        s.ack(SERVER, 21)
        s.send(CLIENT, 5000, length=1, seq=s.next[CLIENT] - 1)  # keepalive (RFC 9293 §3.8.4)
        c = only(s.analyze())
        assert c.client_data.data_segments == 1
        assert not c.client_data.retransmissions


class TestAcks:
    def test_duplicate_acks_and_sack_blocks(self) -> None:
        s = Script()
        s.handshake()
        first = s.isn[SERVER] + 1
        download(s, 5)
        # The second segment was lost after the capture point: the client ACKs the
        # first, then duplicates that ACK with SACK blocks for what arrived after it.
        s.ack(CLIENT, 21, upto=first + 1448)
        for i in range(3):
            s.ack(
                CLIENT,
                21.1 + i * 0.1,
                upto=first + 1448,
                options=timestamps_option()
                + sack_option([(first + 2896, first + 2896 + 1448 * (i + 1))]),
            )
        s.data(SERVER, 1448, 22, seq=first + 1448)  # fast retransmit (RFC 5681 §3.2)
        s.ack(CLIENT, 23)
        c = only(s.analyze())
        assert [d.packet for d in c.client_data.duplicate_acks] == [10, 11, 12]
        assert [report.blocks for report in c.client_data.sack] == [
            ((2897, 4345),),
            ((2897, 5793),),
            ((2897, 7241),),
        ]
        assert [r.seq for r in c.server_data.retransmissions] == [1449]
        assert c.server_data.acked_seq == 5 * 1448 + 1

    def test_window_change_or_no_outstanding_data_is_no_duplicate(self) -> None:
        s = Script()
        s.handshake()
        s.ack(CLIENT, 20)
        s.ack(CLIENT, 21)  # nothing outstanding: an idle ACK, not a duplicate
        download(s, 2)
        s.ack(CLIENT, 22, upto=s.isn[SERVER] + 1, window=900)
        s.ack(CLIENT, 23, upto=s.isn[SERVER] + 1, window=800)  # a window update
        assert not only(s.analyze()).client_data.duplicate_acks

    def test_ack_rtt_median_skips_retransmitted_segments(self) -> None:
        s = Script()
        s.handshake()
        s.data(SERVER, 1000, 20)
        s.ack(CLIENT, 30)  # 10 ms
        s.data(SERVER, 1000, 40)
        s.data(SERVER, 1000, 300, seq=s.next[SERVER] - 1000)  # resent: no sample (Karn)
        s.ack(CLIENT, 310)
        s.data(SERVER, 1000, 320)
        s.ack(CLIENT, 326)  # 6 ms
        server = only(s.analyze()).server_data
        assert server.ack_rtt_samples == 2
        assert server.ack_rtt_median_ns == 6 * MS

    def test_all_acked_at_is_the_ack_covering_the_last_data(self) -> None:
        s = Script()
        s.handshake()
        s.data(CLIENT, 100, 20)
        s.ack(SERVER, 25)
        s.data(CLIENT, 100, 30)
        s.ack(SERVER, 35, upto=s.next[CLIENT] - 50)
        s.ack(SERVER, 36)
        c = only(s.analyze())
        assert c.client_data.all_acked_at == PacketRef(8, 36 * MS)
        assert c.server_data.all_acked_at is None  # the server sent no data


class TestZeroWindow:
    def test_period_probes_and_reopening(self) -> None:
        s = Script()
        s.handshake()
        download(s, 2)
        s.ack(CLIENT, 100, window=0)
        s.send(SERVER, 300, length=1, advance=False)  # probe (RFC 9293 §3.8.6.1)
        s.ack(CLIENT, 301, window=0)
        s.ack(CLIENT, 1500, window=512)
        c = only(s.analyze())
        (period,) = c.client_data.zero_windows
        assert period == ZeroWindow(PacketRef(6, 100 * MS), PacketRef(9, 1500 * MS), 1400 * MS)
        assert c.server_data.zero_window_probes == 1
        assert c.server_data.data_segments == 2

    def test_window_still_closed_at_the_end(self) -> None:
        s = Script()
        s.handshake()
        download(s, 2)
        s.ack(CLIENT, 100, window=0)
        s.send(SERVER, 2100, length=1, advance=False)
        (period,) = only(s.analyze()).client_data.zero_windows
        assert period.end is None
        assert period.duration_ns == 2000 * MS


class TestClose:
    def test_events_with_bytes_so_far(self) -> None:
        s = Script()
        s.handshake()
        s.data(CLIENT, 100, 20)
        download(s, 2, at_ms=30)
        s.fin(CLIENT, 40)
        s.data(SERVER, 10, 41)
        s.rst(SERVER, 42)
        close = only(s.analyze()).close
        assert close.events == (
            CloseEvent(Side.CLIENT, CloseKind.FIN, 7, 40 * MS, 100, 2896),
            CloseEvent(Side.SERVER, CloseKind.RST, 9, 42 * MS, 100, 2906),
        )
        assert (close.by, close.how) == (Side.CLIENT, CloseKind.FIN)
        assert close.event(Side.SERVER, CloseKind.FIN) is None

    def test_no_close(self) -> None:
        s = Script()
        s.handshake()
        close = only(s.analyze()).close
        assert close.first is None and close.by is None and close.how is None


class TestIcmp:
    def test_fragmentation_needed_is_tied_and_followed(self) -> None:
        s = Script()
        s.handshake()
        big = s.data(CLIENT, 1448, 20)
        s.icmp("10.0.0.254", big, 3, 4, 21, rest=1280, to=CLIENT)
        s.data(CLIENT, 1228, 22, seq=s.isn[CLIENT] + 1)
        s.data(CLIENT, 220, 22.1)
        s.ack(SERVER, 32)
        c = only(s.analyze())
        (error,) = c.icmp_errors
        assert (error.kind, error.version, error.type, error.code) == (
            IcmpKind.FRAGMENTATION_NEEDED, 4, 3, 4,
        )  # fmt: skip
        assert error.description == "fragmentation needed"
        assert (error.mtu, error.reporter, error.about) == (1280, "10.0.0.254", Side.CLIENT)
        assert (error.quoted_seq, error.quoted_length) == (1, 1448)
        assert error.fitting_segment_after == PacketRef(6, 22 * MS)
        assert error.acked_after == PacketRef(8, 32 * MS)
        assert c.last == PacketRef(8, 32 * MS)
        # The ICMP resend of the same bytes is a retransmission, sized to fit.
        assert [(r.seq, r.length, r.full_size) for r in c.client_data.retransmissions] == [
            (1, 1228, False)
        ]

    def test_packet_too_big_v6(self) -> None:
        s = Script(client=("fd00::1", 40000), server=("fd00::2", 443))
        s.handshake()
        big = s.data(SERVER, 1428, 20)
        s.icmp("fd00::fe", big, 2, 0, 21, rest=1280, to=SERVER)
        c = only(s.analyze())
        (error,) = c.icmp_errors
        assert error.kind is IcmpKind.PACKET_TOO_BIG and error.version == 6
        assert (error.mtu, error.about, error.reporter) == (1280, Side.SERVER, "fd00::fe")
        assert error.fitting_segment_after is None and error.acked_after is None

    @pytest.mark.parametrize(
        ("reporter", "icmp_type", "code", "kind", "description"),
        [
            ("10.0.0.254", 3, 1, IcmpKind.UNREACHABLE, "host unreachable"),
            ("10.0.0.2", 3, 3, IcmpKind.UNREACHABLE, "port unreachable"),
            (
                "10.0.0.254",
                3,
                13,
                IcmpKind.UNREACHABLE,
                "communication administratively prohibited",
            ),
            ("10.0.0.254", 11, 0, IcmpKind.TIME_EXCEEDED, "TTL exceeded in transit"),
            ("10.0.0.254", 12, 0, IcmpKind.OTHER, "parameter problem"),
            ("fd00::fe", 1, 0, IcmpKind.UNREACHABLE, "no route to destination"),
            ("fd00::2", 1, 4, IcmpKind.UNREACHABLE, "port unreachable"),
            ("fd00::fe", 3, 0, IcmpKind.TIME_EXCEEDED, "hop limit exceeded in transit"),
        ],
    )
    def test_error_kinds(
        self, reporter: str, icmp_type: int, code: int, kind: IcmpKind, description: str
    ) -> None:
        v6 = ":" in reporter
        s = Script(
            client=("fd00::1", 40000) if v6 else ("10.0.0.1", 40000),
            server=("fd00::2", 80) if v6 else ("10.0.0.2", 80),
        )
        syn = s.syn(0)
        s.icmp(reporter, syn, icmp_type, code, 5)
        (error,) = only(s.analyze()).icmp_errors
        assert (error.kind, error.description) == (kind, description)
        assert error.about is Side.CLIENT and error.quoted_seq == 0

    def test_icmp_about_an_unknown_connection_opens_one(self) -> None:
        s = Script()
        s.icmp("10.0.0.254", s.ip(CLIENT, flags=SYN), 3, 1, 0)
        c = only(s.analyze())
        assert c.packets == 0 and len(c.icmp_errors) == 1
        assert c.icmp_errors[0].quoted_seq is None  # nothing to number it against


def test_series_columns() -> None:
    s = Script()
    s.handshake()
    s.data(CLIENT, 100, 20)
    s.send(SERVER, 21, flags=FIN | ACK)
    c = only(s.analyze())
    series = c.series
    assert len(series) == c.packets == 5
    assert list(series.packets) == [1, 2, 3, 4, 5]
    assert list(series.times_ns) == [0, 10 * MS, 10_050_000, 20 * MS, 21 * MS]
    assert list(series.sides) == [0, 1, 0, 0, 1]
    assert list(series.seqs) == [0, 0, 1, 1, 1]
    assert list(series.lengths) == [0, 0, 0, 100, 0]
    assert list(series.acks) == [-1, 1, 1, 1, 101]
    assert list(series.flags) == [SYN, SYN | ACK, ACK, ACK | 0x08, FIN | ACK]

"""Every verdict from a synthetic packet sequence, and the rules' order."""

from __future__ import annotations

from tests.analysis.frames import ACK, CLIENT, FIN, RST, SERVER, Script, sack_option
from tests.analysis.test_facts import download, only
from wirecap.analysis import (
    RULES,
    Connection,
    Side,
    SpuriousCause,
    Thresholds,
    Vantage,
    Verdict,
)

MS = 1_000_000


def verdicts(c: Connection) -> list[Verdict]:
    return [f.verdict for f in c.findings]


def exchange(s: Script, at_ms: float = 20.0, request: int = 100, segments: int = 4) -> None:
    """A request, a response and their ACKs."""
    s.data(CLIENT, request, at_ms)
    s.ack(SERVER, at_ms + 10)
    download(s, segments, at_ms + 11)
    s.ack(CLIENT, at_ms + 21)


def test_rules_run_in_the_documented_order() -> None:
    assert [rule.verdict for rule in RULES] == [
        Verdict.REFUSED,
        Verdict.ICMP_UNREACHABLE,
        Verdict.ICMP_TIME_EXCEEDED,
        Verdict.NO_ANSWER,
        Verdict.HANDSHAKE_INCOMPLETE,
        Verdict.PMTUD_BLACK_HOLE,
        Verdict.ZERO_WINDOW_STALL,
        Verdict.RESET_BY_SERVER,
        Verdict.RESET_BY_CLIENT,
        Verdict.HEAVY_LOSS,
        Verdict.PMTUD_WORKING,
        Verdict.SLOW_HANDSHAKE,
        Verdict.COMPLETED_NORMALLY,
        Verdict.TRUNCATED,
        Verdict.UNKNOWN,
    ]
    assert {rule.verdict for rule in RULES} == set(Verdict)


def test_every_verdict_has_words() -> None:
    for verdict in Verdict:
        assert verdict.label and len(verdict.explanation) > 80


class TestCompleted:
    def test_completed_normally(self) -> None:
        s = Script()
        s.handshake()
        exchange(s)
        s.close(50)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.COMPLETED_NORMALLY]
        assert c.verdict.vantage is Vantage.EITHER
        assert [e.packet for e in c.verdict.evidence] == [1, 2, 11, 12]
        assert "client sent 100 B and the server 5,792 B" in c.verdict.detail

    def test_reset_after_a_clean_close_is_still_normal(self) -> None:
        s = Script()
        s.handshake()
        exchange(s)
        s.close(50)
        s.rst(CLIENT, 60)
        assert verdicts(only(s.analyze())) == [Verdict.COMPLETED_NORMALLY]

    def test_unacknowledged_data_at_the_close_is_unknown(self) -> None:
        s = Script()
        s.handshake()
        s.data(CLIENT, 100, 20)
        s.ack(SERVER, 21)
        download(s, 2, 22)
        s.send(CLIENT, 30, flags=FIN | ACK, ack=s.isn[SERVER] + 1)  # ACKs none of it
        s.fin(SERVER, 31)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.UNKNOWN]
        assert "the server's last data was never acknowledged" in c.verdict.detail


class TestHandshakeFailures:
    def test_refused(self) -> None:
        s = Script()
        s.syn(0)
        s.send(SERVER, 0.1, flags=RST | ACK, seq=0, window=0)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.REFUSED]
        assert [e.packet for e in c.verdict.evidence] == [1, 2]
        assert c.verdict.detail == "the server answered the SYN with RST after 0.100 ms"

    def test_no_answer_after_retries(self) -> None:
        s = Script()
        s.syn(0)
        s.syn(1000)
        s.syn(3000)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.NO_ANSWER]
        assert [e.what for e in c.verdict.evidence] == [
            "SYN",
            "SYN retransmitted",
            "SYN retransmitted",
        ]
        assert c.verdict.detail.startswith("3 SYNs over 3,000.0 ms")

    def test_no_answer_once_the_capture_outlasts_the_first_rto(self) -> None:
        s = Script()
        s.syn(0)
        other = Script(client=("10.0.0.7", 5000), packets=s.packets)
        other.syn(1200)
        assert verdicts(s.analyze().connections[0]) == [Verdict.NO_ANSWER]

    def test_a_capture_ending_right_after_the_syn_cannot_conclude(self) -> None:
        s = Script()
        s.syn(0)
        other = Script(client=("10.0.0.7", 5000), packets=s.packets)
        other.syn(300)
        c = s.analyze().connections[0]
        assert verdicts(c) == [Verdict.TRUNCATED]
        assert "300.0 ms after the SYN, before a retransmission was due" in c.verdict.detail

    def test_icmp_unreachable_with_its_code(self) -> None:
        s = Script()
        syn = s.syn(0)
        s.icmp("10.0.0.254", syn, 3, 1, 3)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.ICMP_UNREACHABLE]
        assert "host unreachable (ICMP type 3 code 1) from 10.0.0.254" in c.verdict.detail

    def test_icmpv6_admin_prohibited(self) -> None:
        s = Script(client=("fd00::1", 40000), server=("fd00::2", 80))
        syn = s.syn(0)
        s.icmp("fd00::fe", syn, 1, 1, 3)
        s.syn(1000)
        s.icmp("fd00::fe", syn, 1, 1, 1003)
        c = only(s.analyze())
        assert c.verdict.verdict is Verdict.ICMP_UNREACHABLE
        assert (
            "communication administratively prohibited (ICMPv6 type 1 code 1)" in c.verdict.detail
        )

    def test_time_exceeded(self) -> None:
        s = Script()
        syn = s.syn(0)
        s.icmp("192.0.2.9", syn, 11, 0, 3)
        s.syn(1000)
        c = only(s.analyze())
        assert c.verdict.verdict is Verdict.ICMP_TIME_EXCEEDED
        assert "TTL exceeded in transit" in c.verdict.detail

    def test_an_unreachable_the_peer_outlives_is_no_verdict(self) -> None:
        s = Script()
        s.handshake()
        s.data(CLIENT, 100, 20)
        s.icmp("10.0.0.254", s.ip(CLIENT, flags=ACK), 3, 1, 21)
        exchange(s, 30)
        s.close(60)
        assert verdicts(only(s.analyze())) == [Verdict.COMPLETED_NORMALLY]

    def test_syn_ack_never_acknowledged(self) -> None:
        s = Script()
        s.syn(0)
        s.syn_ack(0.1)
        s.syn_ack(1000.1)
        c = only(s.analyze())
        assert c.verdict.verdict is Verdict.HANDSHAKE_INCOMPLETE
        assert [e.what for e in c.verdict.evidence] == ["SYN", "SYN-ACK", "SYN-ACK retransmitted"]


class TestSlowHandshake:
    def test_retried_syn_is_slow_but_completed(self) -> None:
        s = Script()
        s.syn(0)
        s.syn(1000)
        s.syn_ack(1010)
        s.ack(CLIENT, 1010.1)
        exchange(s, 1020)
        s.close(1100)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.SLOW_HANDSHAKE, Verdict.COMPLETED_NORMALLY]
        slow = c.verdict
        assert "1,010.1 ms, over 1,000.0 ms (SYN retries 1, SYN-ACK retries 0)" in slow.detail
        assert [e.what for e in slow.evidence] == [
            "SYN",
            "SYN retransmitted",
            "SYN-ACK",
            "the client's ACK ends the handshake",
        ]

    def test_handshake_far_slower_than_the_data_rtt(self) -> None:
        s = Script()
        s.handshake(rtt_ms=300)
        for i in range(4):
            s.data(SERVER, 1000, 400 + i * 20)
            s.ack(CLIENT, 410 + i * 20)  # 10 ms ACK RTT
        c = only(s.analyze())
        assert Verdict.SLOW_HANDSHAKE in verdicts(c)
        slow = next(f for f in c.findings if f.verdict is Verdict.SLOW_HANDSHAKE)
        assert "30× the median ACK RTT of 10.0 ms" in slow.detail

    def test_no_ratio_verdict_below_the_floor(self) -> None:
        s = Script()
        s.handshake(rtt_ms=0.5)  # loopback: 0.5 ms against 0.02 ms ACKs is noise
        for i in range(4):
            s.data(SERVER, 1000, 1 + i)
            s.ack(CLIENT, 1.02 + i)
        assert Verdict.SLOW_HANDSHAKE not in verdicts(only(s.analyze()))


class TestBlackHole:
    def upload(self, s: Script, sizes: list[int], resend: int) -> None:
        """Small request acknowledged, then data of `sizes` never acknowledged, the first
        resent as `resend`-byte segments at growing timeouts (RFC 6298 §5.5)."""
        s.handshake()
        s.data(CLIENT, 100, 20)
        s.ack(SERVER, 30)
        stuck = s.next[CLIENT]
        at = 31.0
        for size in sizes:
            s.data(CLIENT, size, at)
            at += 0.1
        for timeout in (200, 400, 800, 1600):
            at += timeout
            s.data(CLIENT, resend, at, seq=stuck)
            s.ack(SERVER, at + 10, upto=stuck)  # the server still ACKs the old data

    def test_sender_view_full_size_segments_never_acknowledged(self) -> None:
        s = Script()
        self.upload(s, [1448] * 4, 1448)
        s.rst(CLIENT, 6000)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.PMTUD_BLACK_HOLE, Verdict.RESET_BY_CLIENT]
        hole = c.verdict
        assert hole.vantage is Vantage.SENDER and hole.data_from is Side.CLIENT
        assert hole.detail.startswith("client data at seq 101 sent 4 more times in full-size")
        assert "no ICMP too-big seen" in hole.detail
        whats = [e.what for e in hole.evidence]
        assert whats[:3] == [
            "SYN-ACK: the handshake's small packets pass",
            "a small client segment was acknowledged",
            "first sent: seq 101, never acknowledged",
        ]
        assert whats.count("retransmitted, 1448 bytes (full-size)") == 4
        # The black hole's resends are not counted as random loss.
        assert Verdict.HEAVY_LOSS not in verdicts(c)

    def test_sender_view_with_gso_super_segments_v6(self) -> None:
        s = Script(client=("fd00::1", 40000), server=("fd00::2", 443), mss=(1440, 1440))
        self.upload(s, [14280, 14280], 1428)  # GSO: far above the MSS, still full-size
        c = only(s.analyze())
        assert c.verdict.verdict is Verdict.PMTUD_BLACK_HOLE
        assert c.verdict.vantage is Vantage.SENDER
        assert "up to 1,428 B, send MSS 1440" in c.verdict.detail

    def test_small_segments_lost_too_is_no_black_hole(self) -> None:
        s = Script()
        self.upload(s, [1448] * 4, 500)
        assert Verdict.PMTUD_BLACK_HOLE not in verdicts(only(s.analyze()))

    def test_full_size_segments_acknowledged_before_is_no_black_hole(self) -> None:
        s = Script()
        s.handshake()
        download(s, 3)  # full-size segments pass ...
        s.ack(CLIENT, 25)
        stuck = s.next[SERVER]
        s.data(SERVER, 1448, 30)
        for at in (230, 630, 1430):  # ... so this stall at the end is loss, not the MTU
            s.data(SERVER, 1448, at, seq=stuck)
        c = only(s.analyze())
        assert Verdict.PMTUD_BLACK_HOLE not in verdicts(c)
        assert verdicts(c) == [Verdict.HEAVY_LOSS, Verdict.TRUNCATED]

    def test_an_ignored_icmp_is_named(self) -> None:
        s = Script()
        s.handshake()
        big = s.data(CLIENT, 1448, 20)
        s.icmp("10.0.0.254", big, 3, 4, 21, rest=1280)
        for at in (220, 620, 1420):
            s.data(CLIENT, 1448, at, seq=s.isn[CLIENT] + 1)
        c = only(s.analyze())
        assert c.verdict.verdict is Verdict.PMTUD_BLACK_HOLE
        assert "ICMP too-big (MTU 1280) reached the capture point" in c.verdict.detail
        assert any(e.what == "ICMP fragmentation needed, MTU 1280" for e in c.verdict.evidence)

    def request(self, s: Script) -> None:
        """Handshake, a 200-byte request at 20 ms, the server's ACK of it at 30 ms."""
        s.handshake()
        s.data(CLIENT, 200, 20)
        s.ack(SERVER, 30)

    def test_receiver_view_silence_after_the_acknowledged_request(self) -> None:
        s = Script()
        self.request(s)
        s.fin(CLIENT, 3030)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.PMTUD_BLACK_HOLE]
        assert c.verdict.vantage is Vantage.RECEIVER and c.verdict.data_from is Side.SERVER
        assert c.verdict.detail == (
            "the server acknowledged the client's 200 B, then sent no data for 3,000.0 ms "
            "until the client's FIN, although its send MSS is 1460; a server that takes "
            "this long to answer looks the same"
        )
        assert [e.packet for e in c.verdict.evidence] == [2, 4, 5, 6]

    def test_receiver_view_sequence_numbers_prove_the_loss(self) -> None:
        s = Script()
        self.request(s)
        s.fin(CLIENT, 5030)
        # The server ACKs the FIN numbered past 15,928 bytes that never arrived.
        s.send(SERVER, 5031, flags=ACK, seq=s.isn[SERVER] + 1 + 15928)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.PMTUD_BLACK_HOLE]
        assert "its segment #7 shows it had sent 15,928 B, of which 0 B arrived" in c.verdict.detail
        assert "server segment numbered seq 15929: 15928 B lost" in [
            e.what for e in c.verdict.evidence
        ]

    def test_full_size_data_that_arrived_is_no_black_hole(self) -> None:
        s = Script()
        s.handshake()
        exchange(s)  # a first response in full-size segments
        s.data(CLIENT, 200, 60)
        s.ack(SERVER, 70)
        s.fin(CLIENT, 3100)
        s.send(SERVER, 3101, flags=ACK, seq=s.next[SERVER] + 5000)
        assert Verdict.PMTUD_BLACK_HOLE not in verdicts(only(s.analyze()))

    def test_an_idle_server_is_no_black_hole(self) -> None:
        s = Script()
        self.request(s)
        s.fin(CLIENT, 5030)
        s.ack(SERVER, 5031)  # numbered right after what arrived: nothing was sent
        assert Verdict.PMTUD_BLACK_HOLE not in verdicts(only(s.analyze()))

    def test_receiver_view_server_reset_shows_the_lost_bytes(self) -> None:
        s = Script()
        self.request(s)
        s.send(SERVER, 9000, flags=RST | ACK, seq=s.isn[SERVER] + 1 + 30000, window=0)
        c = only(s.analyze())
        assert verdicts(c)[:2] == [Verdict.PMTUD_BLACK_HOLE, Verdict.RESET_BY_SERVER]
        assert "its segment #6 shows it had sent 30,000 B, of which 0 B arrived" in c.verdict.detail

    def test_a_server_closing_without_data_is_no_black_hole(self) -> None:
        s = Script()
        self.request(s)
        s.fin(SERVER, 5000)
        assert Verdict.PMTUD_BLACK_HOLE not in verdicts(only(s.analyze()))

    def test_short_silence_or_small_mss_is_no_black_hole(self) -> None:
        s = Script()
        self.request(s)
        s.fin(CLIENT, 1030)
        assert Verdict.PMTUD_BLACK_HOLE not in verdicts(only(s.analyze()))
        s = Script(mss=(1200, 1460))  # the server sends 1240-byte packets: they fit 1280
        self.request(s)
        s.fin(CLIENT, 5030)
        assert Verdict.PMTUD_BLACK_HOLE not in verdicts(only(s.analyze()))


def test_pmtud_working() -> None:
    s = Script()
    s.handshake()
    big = s.data(CLIENT, 1448, 20)
    s.icmp("10.0.0.254", big, 3, 4, 21, rest=1280)
    s.data(CLIENT, 1228, 22, seq=s.isn[CLIENT] + 1)
    s.data(CLIENT, 220, 22.1)
    s.ack(SERVER, 32)
    s.close(40)
    c = only(s.analyze())
    assert verdicts(c) == [Verdict.PMTUD_WORKING, Verdict.COMPLETED_NORMALLY]
    working = c.verdict
    assert working.detail == (
        "10.0.0.254 reported MTU 1280 for a 1448-byte client segment; the client then sent "
        "segments that fit and its data got through"
    )
    assert [e.packet for e in working.evidence] == [5, 6, 8]


class TestZeroWindow:
    def test_stall_that_reopens(self) -> None:
        s = Script()
        s.handshake()
        exchange(s)
        s.ack(CLIENT, 50, window=0)
        s.ack(CLIENT, 3050, window=1024)
        download(s, 2, 3051)
        s.ack(CLIENT, 3060)
        s.close(3070)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.ZERO_WINDOW_STALL, Verdict.COMPLETED_NORMALLY]
        assert c.verdict.data_from is Side.SERVER
        assert c.verdict.detail == (
            "the client advertised a zero window for 3,000.0 ms then opened it again"
        )

    def test_stall_until_reset(self) -> None:
        s = Script()
        s.handshake()
        exchange(s)
        s.ack(CLIENT, 50, window=0)
        for at in (300, 700, 1500):
            s.send(SERVER, at, length=1, advance=False)
            s.ack(CLIENT, at + 1, window=0)
        s.rst(SERVER, 4000)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.ZERO_WINDOW_STALL, Verdict.RESET_BY_SERVER]
        assert "never opened it again; the server probed 3 times" in c.verdict.detail

    def test_short_zero_window_is_no_stall(self) -> None:
        s = Script()
        s.handshake()
        exchange(s)
        s.ack(CLIENT, 50, window=0)
        s.ack(CLIENT, 250, window=1024)
        s.close(260)
        assert verdicts(only(s.analyze())) == [Verdict.COMPLETED_NORMALLY]


class TestResets:
    def test_reset_by_server_mid_stream(self) -> None:
        s = Script()
        s.handshake()
        exchange(s)
        s.rst(SERVER, 60)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.RESET_BY_SERVER]
        assert c.verdict.detail == (
            "RST from the server mid-stream, at 60.0 ms into the connection, after the client "
            "sent 100 B and the server 5,792 B"
        )

    def test_reset_by_client_after_the_servers_fin(self) -> None:
        s = Script()
        s.handshake()
        exchange(s)
        s.fin(SERVER, 55)
        s.rst(CLIENT, 60)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.RESET_BY_CLIENT]
        assert c.verdict.detail.startswith("RST from the client after the server's FIN")

    def test_a_server_resetting_late_data_after_its_own_fin_completed(self) -> None:
        # An HTTPS server closes after its response; the client's TLS close_notify
        # arrives at a closed socket and is answered with RST (RFC 1122 §4.2.2.13).
        s = Script()
        s.handshake()
        exchange(s)
        s.fin(SERVER, 55)
        s.data(CLIENT, 24, 56)
        s.rst(SERVER, 57, with_ack=False)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.COMPLETED_NORMALLY]
        assert c.verdict.detail.startswith(
            "closed by the server (FIN, then RST to the client's late data)"
        )

    def test_a_reset_after_own_fin_with_unacknowledged_data_is_still_a_reset(self) -> None:
        s = Script()
        s.handshake()
        s.data(CLIENT, 100, 20)
        s.ack(SERVER, 21)
        s.data(SERVER, 1448, 22)  # never acknowledged by the client
        s.fin(SERVER, 23)
        s.rst(SERVER, 40, with_ack=False)
        assert Verdict.RESET_BY_SERVER in verdicts(only(s.analyze()))


class TestHeavyLoss:
    def lossy(self, segments: int, resent: int) -> Connection:
        s = Script()
        s.handshake()
        s.data(CLIENT, 100, 20)
        for i in range(segments):
            s.data(SERVER, 1448, 30 + i)
            if i < resent:
                s.data(SERVER, 1448, 30.5 + i, seq=s.next[SERVER] - 1448)
        s.ack(CLIENT, 30 + segments)
        s.close(40 + segments)
        return only(s.analyze())

    def test_at_the_rate_and_count(self) -> None:
        c = self.lossy(147, 3)  # 3 of 150 data segments: 2 %
        assert verdicts(c) == [Verdict.HEAVY_LOSS, Verdict.COMPLETED_NORMALLY]
        assert c.verdict.data_from is Side.SERVER
        assert c.verdict.detail == (
            "server→client: 2.0% of data segments retransmitted (3 of 150 in MSS units, 4,344 B)"
        )

    def test_below_the_rate_or_count(self) -> None:
        assert verdicts(self.lossy(200, 3)) == [Verdict.COMPLETED_NORMALLY]
        assert verdicts(self.lossy(10, 2)) == [Verdict.COMPLETED_NORMALLY]

    def test_spurious_resends_of_acknowledged_data_are_not_loss(self) -> None:
        # After PMTUD or reordering Linux may resend data the peer had acknowledged
        # already (D-SACK reports it): nothing was lost.
        s = Script()
        s.handshake()
        s.data(CLIENT, 100, 20)
        for i in range(50):
            s.data(SERVER, 1448, 30 + i)
        s.ack(CLIENT, 80)
        for i in range(5):
            s.data(SERVER, 1448, 81 + i, seq=s.isn[SERVER] + 1 + 1448 * i)
        s.close(100)
        c = only(s.analyze())
        assert len(c.server_data.retransmissions) == 5
        assert all(r.spurious for r in c.server_data.retransmissions)
        assert Verdict.HEAVY_LOSS not in verdicts(c)

    def test_resends_a_dsack_reports_are_not_loss(self) -> None:
        # Reordering: five segments overtaken, resent before any ACK, then the originals
        # arrive and each later ACK reports one resend as a duplicate (D-SACK).
        def reordered(dsack: bool) -> Connection:
            s = Script()
            s.handshake()
            s.data(CLIENT, 100, 20)
            first = s.isn[SERVER] + 1
            for i in range(50):
                s.data(SERVER, 1448, 30 + i)
            for i in range(5):
                s.data(SERVER, 1448, 81 + i, seq=first + 1448 * i)
            for i in range(5):
                block = (first + 1448 * i, first + 1448 * (i + 1))
                s.ack(CLIENT, 90 + i, options=sack_option([block]) if dsack else b"")
            s.close(100)
            return only(s.analyze())

        assert Verdict.HEAVY_LOSS in verdicts(reordered(dsack=False))
        c = reordered(dsack=True)
        assert [r.spurious_cause for r in c.server_data.retransmissions] == [
            SpuriousCause.DSACK
        ] * 5
        assert verdicts(c) == [Verdict.COMPLETED_NORMALLY]

    def test_thresholds_are_options(self) -> None:
        s = Script()
        s.handshake()
        for i in range(10):
            s.data(SERVER, 1448, 30 + i)
        s.data(SERVER, 1448, 45, seq=s.next[SERVER] - 1448)
        s.ack(CLIENT, 50)
        s.close(60)
        report = s.analyze(Thresholds(heavy_loss_min_retransmissions=1))
        assert report.connections[0].verdict.verdict is Verdict.HEAVY_LOSS


class TestTruncated:
    def test_start_missing(self) -> None:
        s = Script()
        s.data(CLIENT, 100, 0)
        s.ack(SERVER, 1)
        s.close(2)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.TRUNCATED]
        assert c.verdict.detail == "its start (SYN, SYN-ACK) is not in the capture"

    def test_open_at_the_end(self) -> None:
        s = Script()
        s.handshake()
        exchange(s)
        c = only(s.analyze())
        assert verdicts(c) == [Verdict.TRUNCATED]
        assert "ended while the connection was open" in c.verdict.detail

    def test_only_seen_in_icmp(self) -> None:
        s = Script()
        s.icmp("10.0.0.254", s.ip(CLIENT, flags=ACK), 3, 1, 0)
        c = only(s.analyze())
        # The error says the path failed; the rest of the connection is not in the capture.
        assert verdicts(c) == [Verdict.ICMP_UNREACHABLE, Verdict.TRUNCATED]
        assert "only seen quoted inside ICMP errors" in c.also[0].detail

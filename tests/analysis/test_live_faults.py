"""Each verdict from a capture of the real fault, made during the test run.

tests/data/make_analysis_captures.py builds namespaces (client — router — origin),
causes the fault (a closed port, nft drops and rejects, a 1280-byte MTU with the
router's ICMP dropped, random loss, a dropped ACK, a receiver that stops reading,
SO_LINGER 0 resets), records it with `wirecap record` and checks it with tshark; here the
analyzer must name it. The same captures, made once, are the golden files in
tests/data/analysis.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wirecap.analysis import SpuriousCause, Verdict, analyze_file

pytestmark = [pytest.mark.root, pytest.mark.netns]

EXPECTED = {
    "normal": Verdict.COMPLETED_NORMALLY,
    "refused": Verdict.REFUSED,
    "no_answer": Verdict.NO_ANSWER,
    "icmp_unreachable": Verdict.ICMP_UNREACHABLE,
    "reset_by_server": Verdict.RESET_BY_SERVER,
    "reset_by_client": Verdict.RESET_BY_CLIENT,
    "pmtud_blackhole_sender": Verdict.PMTUD_BLACK_HOLE,
    "pmtud_blackhole_receiver": Verdict.PMTUD_BLACK_HOLE,
    "pmtud_working": Verdict.PMTUD_WORKING,
    "pmtud_working_v6": Verdict.PMTUD_WORKING,
    "heavy_loss": Verdict.HEAVY_LOSS,
    "zero_window": Verdict.ZERO_WINDOW_STALL,
    "slow_handshake": Verdict.SLOW_HANDSHAKE,
    "spurious_retransmission": Verdict.COMPLETED_NORMALLY,
    "truncated": Verdict.TRUNCATED,
}


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_the_analyzer_names_the_fault_it_was_shown(tmp_path: Path, scenario: str) -> None:
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.data.make_analysis_captures",
            "--out",
            str(tmp_path),
            "--only",
            scenario,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    report = analyze_file(tmp_path / f"{scenario}.pcap")
    assert len(report.connections) == 1
    connection = report.connections[0]
    found = [f.verdict for f in connection.findings]
    assert connection.verdict.verdict is EXPECTED[scenario], (found, connection.verdict.detail)
    if scenario.startswith("pmtud_working"):
        # On these veths the resized segments after the too-big message overtake one
        # another now and then, and Linux resends a few (up to about 3 %, above the
        # heavy-loss threshold) once the MTU recovery is over. The receiver reports each
        # as a duplicate (D-SACK), so they are spurious, not loss.
        assert Verdict.HEAVY_LOSS not in found, connection.verdict.detail
        resends = connection.client_data.retransmissions
        assert all(r.pmtud or r.spurious for r in resends), resends
    if scenario == "spurious_retransmission":
        (resend,) = connection.client_data.retransmissions
        assert resend.spurious_cause is SpuriousCause.DSACK, resend
    if scenario == "pmtud_blackhole_sender":
        assert connection.verdict.vantage.value == "sender"
    if scenario == "pmtud_blackhole_receiver":
        assert connection.verdict.vantage.value == "receiver"

"""`wirecap analyze` on the fault captures in tests/data/analysis (made in namespaces)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from wirecap.analysis import schema

DATA = Path(__file__).parent.parent / "data" / "analysis"
WIRECAP = [sys.executable, "-m", "wirecap", "analyze"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WIRECAP, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("name", "verdict"),
    [
        ("normal", "completed normally"),
        ("refused", "connection refused"),
        ("no_answer", "no answer to SYN"),
        ("icmp_unreachable", "ICMP unreachable"),
        ("pmtud_blackhole_sender", "PMTUD black hole suspected"),
        ("pmtud_blackhole_receiver", "PMTUD black hole suspected"),
        ("heavy_loss", "heavy loss"),
    ],
)
def test_text_output_leads_with_the_verdict(name: str, verdict: str) -> None:
    done = _run(str(DATA / f"{name}.pcap"))
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if "verdict:" in line)
    assert f"verdict: {verdict}" in line


def test_json_follows_the_published_schema() -> None:
    done = _run("--json", str(DATA / "pmtud_working.pcap"))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    jsonschema.Draft202012Validator(schema()).validate(document)
    assert document["connections"][0]["verdict"]["verdict"] in {
        "pmtud_working",
        "completed_normally",
    }


def test_several_files_give_an_array_and_numbered_plots(tmp_path: Path) -> None:
    files = [str(DATA / "refused.pcap"), str(DATA / "normal.pcap")]
    done = _run("--json", "--plot", str(tmp_path / "g.png"), *files)
    assert done.returncode == 0, done.stderr
    documents = json.loads(done.stdout)
    assert isinstance(documents, list) and len(documents) == 2
    for document in documents:
        jsonschema.Draft202012Validator(schema()).validate(document)
    plots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert plots == ["g-0-0.png", "g-1-0.png"]
    assert (tmp_path / "g-0-0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_connection_and_missing_file_exit_2() -> None:
    done = _run("--connection", "7", str(DATA / "refused.pcap"))
    assert done.returncode == 2 and "no connection 7" in done.stderr
    done = _run(str(DATA / "does-not-exist.pcap"))
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_garbage_input_exits_5_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture file at all")
    done = _run(str(bad))
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr

"""`wirecap record` end to end, checked with tcpdump, tshark and capinfos."""

from __future__ import annotations

import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.traffic import send_udp, udp_sink

pytestmark = pytest.mark.root

WIRECAP = [sys.executable, "-m", "wirecap"]


def _start(args: list[str]) -> subprocess.Popen[str]:
    """Start a capturer and return once it says it is armed."""
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "recording on" not in line and "listening on" not in line:
        proc.kill()
        raise AssertionError(f"capturer did not start: {line}{proc.stderr.read()}")
    return proc


def _finish(proc: subprocess.Popen[str], *, interrupt: bool = True) -> tuple[int, str]:
    if interrupt:
        time.sleep(0.3)  # past the 100 ms block timeout, so the kernel hands over everything
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    return proc.returncode, err


def _printed_count(stderr: str) -> int:
    match = re.search(r"(\d+) packets captured", stderr)
    assert match, stderr
    return int(match.group(1))


def _capinfos_count(path: Path) -> int:
    out = subprocess.run(
        ["capinfos", "-c", "-M", str(path)], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"Number of packets:\s+(\d+)", out)
    assert match, out
    return int(match.group(1))


def _tshark_count(path: Path) -> int:
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return len(out.splitlines())


def _needs(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")


def _record_udp(path: Path, count: int, file_format: str, sent: int) -> str:
    """`wirecap record -c COUNT` of loopback UDP while `sent` datagrams go by; its stderr."""
    with udp_sink() as port:
        proc = _start(
            [
                *WIRECAP,
                "record",
                "-i",
                "lo",
                "-c",
                str(count),
                "--format",
                file_format,
                "-w",
                str(path),
                "udp",
                "dst",
                "port",
                str(port),
            ]
        )
        send_udp(port, sent)
        status, err = _finish(proc, interrupt=False)
    assert status == 0, err
    return err


@pytest.mark.parametrize("file_format", ["pcap", "pcapng"])
def test_count_printed_equals_records_in_file(tmp_path: Path, file_format: str) -> None:
    _needs("capinfos", "tshark")
    path = tmp_path / f"out.{file_format}"
    err = _record_udp(path, 20, file_format, 50)
    assert _printed_count(err) == 20
    assert _capinfos_count(path) == 20
    assert _tshark_count(path) == 20
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_pcapng_carries_interface_name_and_nanoseconds(tmp_path: Path) -> None:
    _needs("tshark")
    path = tmp_path / "out.pcapng"
    _record_udp(path, 3, "pcapng", 3)
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(path),
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.time_epoch",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    names = {line.split("\t")[0] for line in out if line}
    assert names == {"lo"}
    # Nanosecond resolution survives: nine decimals, not all ending in 000.
    stamps = [line.split("\t")[1] for line in out if line]
    assert all(len(s.split(".")[1]) == 9 for s in stamps)


def test_sigint_stops_cleanly_with_a_complete_file(tmp_path: Path) -> None:
    _needs("tcpdump")
    path = tmp_path / "int.pcap"
    with udp_sink() as port:
        proc = _start([*WIRECAP, "record", "-i", "lo", "-w", str(path), f"udp dst port {port}"])
        send_udp(port, 30)
        status, err = _finish(proc)
    assert status == 0, err
    assert "Traceback" not in err
    assert _printed_count(err) == 30
    out = subprocess.run(
        ["tcpdump", "-n", "-r", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert len(out.splitlines()) == 30


def test_same_count_as_tcpdump_for_the_same_traffic(tmp_path: Path) -> None:
    _needs("tcpdump")
    ours, theirs = tmp_path / "wirecap.pcap", tmp_path / "tcpdump.pcap"
    with udp_sink() as port:
        expression = f"udp dst port {port}"
        mine = _start([*WIRECAP, "record", "-i", "lo", "-w", str(ours), expression])
        peer = _start(["tcpdump", "-i", "lo", "-n", "-w", str(theirs), expression])
        send_udp(port, 2000)
        time.sleep(1.2)  # tcpdump's block timeout is 1 s
        status, err = _finish(mine)
        peer_status, peer_err = _finish(peer)
    assert status == 0 and peer_status == 0, err + peer_err
    peer_count = int(re.search(r"(\d+) packets captured", peer_err).group(1))  # type: ignore[union-attr]
    assert peer_count == 2000
    assert _printed_count(err) == peer_count


def test_bad_filter_exits_2_with_libpcap_message(tmp_path: Path) -> None:
    path = tmp_path / "bad.pcap"
    result = subprocess.run(
        [*WIRECAP, "record", "-i", "lo", "-w", str(path), "tcp", "port"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "syntax error" in result.stderr
    assert "Traceback" not in result.stderr
    assert not path.exists()


def test_missing_interface_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [*WIRECAP, "record", "-i", "wirecap-nope0", "-w", str(tmp_path / "x.pcap")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "wirecap-nope0" in result.stderr
    assert "Traceback" not in result.stderr


def test_duration_stops_the_capture(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [
            *WIRECAP,
            "record",
            "-i",
            "lo",
            "--duration",
            "0.5",
            "-w",
            str(tmp_path / "d.pcap"),
            "udp port 9",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 5
    assert _printed_count(result.stderr) == 0
    assert (tmp_path / "d.pcap").exists()


def test_write_to_stdout_is_a_pcap_stream(tmp_path: Path) -> None:
    _needs("tcpdump")
    with udp_sink() as port:
        proc = subprocess.Popen(
            [*WIRECAP, "record", "-i", "lo", "-c", "7", "-w", "-", f"udp dst port {port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stderr is not None
        proc.stderr.readline()
        send_udp(port, 7)
        out, _ = proc.communicate(timeout=10)
    (tmp_path / "s.pcap").write_bytes(out)
    listing = subprocess.run(
        ["tcpdump", "-n", "-r", str(tmp_path / "s.pcap")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert len(listing.splitlines()) == 7

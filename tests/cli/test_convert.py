"""`wirecap convert`, checked with tshark: embedded TLS keys really decrypt."""

from __future__ import annotations

import shutil
import signal
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tls_peer import SECRET_BODY, https_exchange

WIRECAP = [sys.executable, "-m", "wirecap"]


def _tshark_http_bodies(path: Path, port: int) -> list[str]:
    out = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(path),
            "-o",
            "tls.keylog_file:",
            "-d",
            f"tcp.port=={port},tls",
            "-Y",
            f"http.response && tcp.port == {port}",
            "-T",
            "fields",
            "-e",
            "http.file_data",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line]


@pytest.mark.root
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_embedded_key_log_lets_tshark_decrypt(tmp_path: Path, version: ssl.TLSVersion) -> None:
    for tool in ("tshark", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    raw, keys, out = tmp_path / "tls.pcap", tmp_path / "keys.log", tmp_path / "tls.pcapng"
    recorder = subprocess.Popen(
        [*WIRECAP, "record", "-i", "lo", "-w", str(raw), "tcp"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert recorder.stderr is not None
    assert "recording on" in recorder.stderr.readline()
    port = https_exchange(tmp_path, keys, tls_version=version)
    time.sleep(0.3)
    recorder.send_signal(signal.SIGINT)
    _, err = recorder.communicate(timeout=10)
    assert recorder.returncode == 0, err

    # Without keys tshark sees no HTTP; with the DSB it does, and the body is ours.
    assert _tshark_http_bodies(raw, port) == []
    done = subprocess.run(
        [*WIRECAP, "convert", "--tls-keylog", str(keys), str(raw), str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    bodies = _tshark_http_bodies(out, port)
    assert any(SECRET_BODY.decode() in body or SECRET_BODY.hex() in body for body in bodies)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def _pcap_with_records(path: Path, count: int) -> bytes:
    import struct

    header = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1)
    frame = bytes(60)
    records = b"".join(
        struct.pack("<IIII", 1_700_000_000 + i, 123_456_789, len(frame), len(frame)) + frame
        for i in range(count)
    )
    data = header + records
    path.write_bytes(data)
    return data


def test_round_trip_pcap_pcapng_pcap_is_byte_identical(tmp_path: Path) -> None:
    original = _pcap_with_records(tmp_path / "a.pcap", 5)
    for args in (
        ["convert", str(tmp_path / "a.pcap"), str(tmp_path / "b.pcapng")],
        ["convert", "--format", "pcap", str(tmp_path / "b.pcapng"), str(tmp_path / "c.pcap")],
    ):
        done = subprocess.run([*WIRECAP, *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "5 packets" in done.stderr
    assert (tmp_path / "c.pcap").read_bytes() == original


def test_truncated_input_keeps_whole_records_and_exits_5(tmp_path: Path) -> None:
    data = _pcap_with_records(tmp_path / "a.pcap", 3)
    (tmp_path / "cut.pcap").write_bytes(data[:-10])
    done = subprocess.run(
        [*WIRECAP, "convert", str(tmp_path / "cut.pcap"), str(tmp_path / "cut.pcapng")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 5
    assert "Traceback" not in done.stderr
    assert "2 packets" in done.stderr
    part = tmp_path / "cut.pcapng.part"
    assert part.exists() and not (tmp_path / "cut.pcapng").exists()


def test_key_log_with_pcap_output_is_a_usage_error(tmp_path: Path) -> None:
    _pcap_with_records(tmp_path / "a.pcap", 1)
    (tmp_path / "k.log").write_text("")
    done = subprocess.run(
        [
            *WIRECAP,
            "convert",
            "--format",
            "pcap",
            "--tls-keylog",
            str(tmp_path / "k.log"),
            str(tmp_path / "a.pcap"),
            str(tmp_path / "b.pcap"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "pcapng" in done.stderr

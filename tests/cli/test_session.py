"""`wirecap session -- CMD`: a real command under a real capture; tshark reads the result."""

from __future__ import annotations

import os
import signal
import ssl
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.session.origin import https_origin
from tests.tls_peer import SECRET_BODY

WIRECAP = [sys.executable, "-m", "wirecap", "session"]

_CLIENT = f"""
import os, sys, urllib3
print(os.environ["SSLKEYLOGFILE"])
pool = urllib3.PoolManager(ca_certs=sys.argv[2])
assert pool.request("GET", sys.argv[1]).data == {SECRET_BODY!r}
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}


@pytest.mark.root
def test_command_runs_under_capture_and_tshark_decrypts_the_tarball(
    tmp_path: Path, run_tool: Callable[..., str]
) -> None:
    out = tmp_path / "trace.tar.gz"
    with https_origin(tmp_path, ssl.TLSVersion.TLSv1_3) as origin:
        done = subprocess.run(
            [*WIRECAP, "-i", "lo", "-f", f"tcp port {origin.port}", "-w", str(out), "--",
             sys.executable, "-c", _CLIENT, origin.url, str(origin.cafile)],
            capture_output=True, text=True, timeout=120, env=_env(),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    key_log = Path(done.stdout.strip())
    assert not key_log.parent.exists()  # the capture directory is gone
    assert "packets on lo" in done.stderr and str(out) in done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with tarfile.open(out, "r:gz") as tar:
        assert sorted(tar.getnames()) == ["README.txt", "keylog-filename.txt", "packets.pcapng"]
        tar.extract("packets.pcapng", tmp_path, filter="data")
    bodies = run_tool(
        "tshark", "-n", "-r", str(tmp_path / "packets.pcapng"), "-o", "tls.keylog_file:",
        "-d", f"tcp.port=={origin.port},tls", "-Y", "http.response",
        "-T", "fields", "-e", "http.file_data",
    )  # fmt: skip
    assert SECRET_BODY.decode() in bodies or SECRET_BODY.hex() in bodies


@pytest.mark.root
def test_exit_status_is_the_commands_and_the_tarball_is_still_written(tmp_path: Path) -> None:
    out = tmp_path / "t.tar"
    done = subprocess.run(
        [*WIRECAP, "-i", "lo", "--no-gzip", "-w", str(out), "--", "sh", "-c", "exit 7"],
        capture_output=True, text=True, timeout=60, env=_env(),
    )  # fmt: skip
    assert done.returncode == 7, done.stderr
    with tarfile.open(out, "r:") as tar:
        assert "packets.pcapng" in tar.getnames()


@pytest.mark.root
def test_sigterm_reaches_the_command_and_the_tarball_is_written(tmp_path: Path) -> None:
    out = tmp_path / "t.tar.gz"
    process = subprocess.Popen(
        [*WIRECAP, "-i", "lo", "-w", str(out), "--", "sh", "-c", "echo started; exec sleep 30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "started"
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert time.monotonic() - start < 10
    assert process.returncode == 128 + signal.SIGTERM, err
    assert out.exists()


def test_missing_command_is_a_usage_error(tmp_path: Path) -> None:
    for argv in (["--"], ["--", "no-such-command-wirecap"]):
        done = subprocess.run([*WIRECAP, *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert "command" in done.stderr


def test_help_explains_keys_and_safety() -> None:
    done = subprocess.run([*WIRECAP, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for words in ("SSLKEYLOGFILE", "Decryption Secrets Block", "0600", "exit status", "examples"):
        assert words in done.stdout

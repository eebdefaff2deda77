"""The real proxy process with real clients: curl through it to a local TLS origin."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.dns_responder import dns_responder
from tests.proxy.harness import BODY, PASSWORD, curl, proxy, tls_origin, write_ccpasswd
from tests.proxy.tunnel_client import authorized_connect, challenge_params

pytestmark = pytest.mark.root


def _tshark(path: Path, display_filter: str, field: str = "frame.number") -> list[str]:
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-Y", display_filter, "-T", "fields", "-e", field],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line]


@pytest.mark.parametrize(
    ("algorithms", "userhash"),
    [("SHA-256", "--userhash"), ("SHA-256", "--no-userhash"), ("MD5", "--userhash")],
)
def test_curl_tunnel_is_recorded_with_handshake_sni_and_close(
    tmp_path: Path, algorithms: str, userhash: str
) -> None:
    with (
        tls_origin(tmp_path) as origin,
        dns_responder({"origin.test": ["127.0.0.1"]}) as dns,
        proxy(
            tmp_path,
            "--digest-algorithms",
            algorithms,
            userhash,
            "--resolver",
            f"{dns[0]}:{dns[1]}",
        ) as running,
    ):
        status, body, connect = curl(
            running.port, f"https://origin.test:{origin.port}/", cacert=origin.cert
        )
        assert status == 0 and connect == "200", (status, connect, running.log.read_text())
        assert body.encode() == BODY
        (summary,) = running.summaries(1)
    assert summary["outcome"] == "established"
    assert summary["user"] == "alice"
    # The analyzer's verdict on the capture rides along, with its graph in the spool.
    assert summary["verdict"] == "completed normally", summary["verdict_detail"]
    assert summary["addresses"] == ["127.0.0.1"]
    pcap = running.spool / "alice" / str(summary["capture_file"])
    assert pcap.stat().st_mode & 0o777 == 0o600
    assert _tshark(pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 0")
    assert _tshark(pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 1")
    sni = _tshark(pcap, "tls.handshake.type == 1", "tls.handshake.extensions_server_name")
    assert sni == ["origin.test"]
    assert _tshark(pcap, "tcp.flags.fin == 1 || tcp.flags.reset == 1")
    assert int(str(summary["bytes_origin_to_client"])) > len(BODY)


def test_refused_port_gets_502_with_reason_and_a_summary(tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with proxy(tmp_path, "--digest-algorithms", "MD5") as running:
        status, _, connect = curl(running.port, f"https://127.0.0.1:{port}/")
        assert connect == "502" and status != 0
        (summary,) = running.summaries(1)
    assert summary["outcome"] == "refused"
    assert "refused" in str(summary["detail"])
    assert summary["verdict"] == "connection refused"
    # The capture holds the SYN and the RST that refused it.
    pcap = running.spool / "alice" / str(summary["capture_file"])
    assert _tshark(pcap, "tcp.flags.reset == 1")


def test_dns_failure_gets_502_and_a_summary(tmp_path: Path) -> None:
    with (
        dns_responder({}) as dns,
        proxy(
            tmp_path, "--digest-algorithms", "MD5", "--resolver", f"{dns[0]}:{dns[1]}"
        ) as running,
    ):
        _, _, connect = curl(running.port, "https://nowhere.test:443/")
        assert connect == "502"
        (summary,) = running.summaries(1)
    assert summary["outcome"] == "dns_failure"
    assert "NXDOMAIN" in str(summary["detail"])
    assert summary["capture_file"] is None


def test_wrong_password_and_short_password_get_407(tmp_path: Path) -> None:
    passwd = write_ccpasswd(
        tmp_path / "ccpasswd",
        [f"alice:{PASSWORD}:alice@example.org", "bob:fifteen-chars!:bob@example.org"],
    )
    with proxy(tmp_path, "--digest-algorithms", "MD5", passwd=passwd) as running:
        assert curl(running.port, "https://127.0.0.1:9/", user="alice:wrong")[2] == "407"
        # bob's password has 15 characters: the account is ignored.
        assert curl(running.port, "https://127.0.0.1:9/", user="bob:fifteen-chars!")[2] == "407"
        log = running.stop()
    assert "bob" in log and "shorter than 16" in log
    assert PASSWORD not in log and "fifteen-chars!" not in log


def test_world_readable_ccpasswd_is_refused_with_exit_2(tmp_path: Path) -> None:
    passwd = write_ccpasswd(tmp_path / "ccpasswd", [f"alice:{PASSWORD}:a@example.org"], 0o644)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "wirecap",
            "proxy",
            "-l",
            "127.0.0.1:0",
            "-p",
            str(passwd),
            "-d",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "ccpasswd" in done.stderr and "Traceback" not in done.stderr


def _raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_replayed_nonce_count_is_rejected_and_other_methods_get_405(tmp_path: Path) -> None:
    with tls_origin(tmp_path) as origin, proxy(tmp_path, "--digest-algorithms", "MD5") as running:
        target = f"127.0.0.1:{origin.port}"
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        challenge = challenge_params(_raw_exchange(running.port, (head + "\r\n").encode()))
        request = authorized_connect(target, challenge, "alice", PASSWORD)
        first = _raw_exchange_first_line(running.port, request)
        assert first.startswith(b"HTTP/1.1 200")
        replay = _raw_exchange(running.port, request)
        assert replay.startswith(b"HTTP/1.1 407")
        other = _raw_exchange(running.port, b"GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert other.startswith(b"HTTP/1.1 405") and b"Allow: CONNECT" in other


def _raw_exchange_first_line(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(4096)


def test_metrics_count_connections_by_outcome(tmp_path: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    metrics_port = probe.getsockname()[1]
    probe.close()
    with (
        tls_origin(tmp_path) as origin,
        proxy(
            tmp_path, "--digest-algorithms", "MD5", "--metrics", f"127.0.0.1:{metrics_port}"
        ) as running,
    ):
        curl(running.port, f"https://127.0.0.1:{origin.port}/", "-k")
        curl(running.port, "https://127.0.0.1:9/", user="alice:wrong")
        running.summaries(1)
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    assert 'wirecap_proxy_connections_total{outcome="established"} 1.0' in text
    assert "wirecap_proxy_auth_failures_total 1.0" in text

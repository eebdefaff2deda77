"""Running the real `wirecap proxy` for tests: a process, a TLS origin, curl."""

from __future__ import annotations

import http.server
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.tls_peer import make_certificate

PASSWORD = "correct-horse-battery-staple"
BODY = b"hello through the tunnel\n"


@dataclass
class RunningProxy:
    process: subprocess.Popen[str]
    port: int
    spool: Path
    log: Path

    def stop(self) -> str:
        """SIGTERM, wait, and return the log (the proxy must exit 0 on SIGTERM)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=40)
        text = self.log.read_text()
        assert self.process.returncode == 0, text
        return text

    def summaries(self, count: int, timeout: float = 15.0) -> list[dict[str, object]]:
        """Wait until `count` summaries are in the spool; return them oldest first."""
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(self.spool.glob("*/*.json"))
            if len(files) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(files) >= count, (
            f"{len(files)} summaries, wanted {count}\n{self.log.read_text()}"
        )
        found = [json.loads(f.read_text()) for f in files]
        return sorted(found, key=lambda s: int(str(s["connection_id"])))


def write_ccpasswd(path: Path, lines: Sequence[str], mode: int = 0o600) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    path.chmod(mode)
    return path


@contextmanager
def proxy(
    tmp_path: Path, *args: str, passwd: Path | None = None, prefix: Sequence[str] = ()
) -> Iterator[RunningProxy]:
    """Start `wirecap proxy` on 127.0.0.1 (inside a namespace when `prefix` says so)."""
    if passwd is None:
        passwd = write_ccpasswd(tmp_path / "ccpasswd", [f"alice:{PASSWORD}:alice@example.org"])
    spool = tmp_path / "spool"
    log = tmp_path / "proxy.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "wirecap",
                "proxy",
                "-l",
                "127.0.0.1:0",
                "-d",
                str(spool),
                "-p",
                str(passwd),
                *args,
            ],
            stderr=log_file,
            stdout=subprocess.DEVNULL,
            text=True,
        )
    deadline = time.monotonic() + 20
    port = None
    while port is None and time.monotonic() < deadline:
        match = re.search(r"listening on \S+ port (\d+)", log.read_text())
        if match:
            port = int(match.group(1))
        elif process.poll() is not None:
            break
        else:
            time.sleep(0.05)
    if port is None:
        process.kill()
        raise AssertionError(f"proxy did not start:\n{log.read_text()}")
    running = RunningProxy(process, port, spool, log)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass
class Origin:
    port: int
    cert: Path


@contextmanager
def tls_origin(
    tmp_path: Path, name: str = "origin.test", host: str = "127.0.0.1"
) -> Iterator[Origin]:
    """An HTTPS server on loopback answering every GET with BODY."""
    cert, key = make_certificate(tmp_path, name)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            size = int(self.path.strip("/") or 0)
            body = BODY if not size else b"x" * size
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server_class = http.server.ThreadingHTTPServer
    if ":" in host:

        class V6(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_class = V6
    server = server_class((host, 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Origin(int(server.server_address[1]), cert)
    finally:
        server.shutdown()
        server.server_close()


def curl(
    proxy_port: int,
    url: str,
    *extra: str,
    user: str = f"alice:{PASSWORD}",
    cacert: Path | None = None,
) -> tuple[int, str, str]:
    """curl through the proxy with digest auth; returns (exit status, body, CONNECT status)."""
    argv = [
        "curl",
        "-sS",
        "-p",
        "-x",
        f"http://127.0.0.1:{proxy_port}",
        "--proxy-digest",
        "--proxy-user",
        user,
        "--max-time",
        "20",
        "-w",
        "\n%{http_connect}",
        *extra,
        url,
    ]
    if cacert is not None:
        argv[1:1] = ["--cacert", str(cacert)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    body, _, connect_status = done.stdout.rpartition("\n")
    return done.returncode, body, connect_status

"""A local TLS exchange with a key log: what tests capture and then decrypt."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path

#: What the server sends inside TLS; tests look for it in decrypted captures.
SECRET_BODY = b"wirecap-secret-body-7f3a"


def make_certificate(directory: Path, name: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway self-signed certificate for `name` (an IP or a DNS name), via openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    san = f"IP:{name}" if name[0].isdigit() or ":" in name else f"DNS:{name}"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName={san}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def https_exchange(directory: Path, key_log: Path, *, tls_version: ssl.TLSVersion) -> int:
    """Serve one HTTP/1.1 response over TLS on loopback and fetch it; return the port.

    The client writes its secrets to `key_log` (SSLContext.keylog_filename, the same
    hook SSLKEYLOGFILE sets).
    """
    cert, key = make_certificate(directory)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.set_alpn_protocols(["http/1.1"])
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(4096)
            body = SECRET_BODY
            tls.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )

    thread = threading.Thread(target=serve)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.minimum_version = client_ctx.maximum_version = tls_version
    client_ctx.keylog_filename = str(key_log)
    client_ctx.set_alpn_protocols(["http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while chunk := tls.recv(4096):
            received += chunk
    thread.join()
    listener.close()
    assert received.endswith(SECRET_BODY)
    return port

"""A keep-alive HTTPS origin on loopback (stdlib http.server over ssl) for session tests."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.tls_peer import SECRET_BODY, make_certificate


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1: connections stay open between requests, as a client pool keeps them.
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(SECRET_BODY)))
        self.end_headers()
        self.wfile.write(SECRET_BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass(frozen=True)
class Origin:
    port: int
    cafile: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/secret"


@contextmanager
def https_origin(directory: Path, version: ssl.TLSVersion) -> Iterator[Origin]:
    """Serve GET over TLS `version` only, on 127.0.0.1 and a free port."""
    cert, key = make_certificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = context.maximum_version = version
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Origin(int(server.server_address[1]), cert)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

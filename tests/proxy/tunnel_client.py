"""A minimal CONNECT client with digest auth, run as a program inside test namespaces.

usage: python -m tests.proxy.tunnel_client PROXY_PORT TARGET USER PASSWORD
           (--upload BYTES | --download) [--timeout S]

Prints one JSON line: the CONNECT status and the bytes moved.
"""

from __future__ import annotations

import argparse
import json
import socket
import time

from wirecap.proxy.digest import digest_response


def _head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def challenge_params(head: bytes) -> dict[str, str]:
    """The parameters of the first Proxy-Authenticate challenge in a response head."""
    for line in head.decode().split("\r\n"):
        if line.lower().startswith("proxy-authenticate:"):
            params = {}
            for part in line.split("Digest ", 1)[1].split(", "):
                key, _, value = part.partition("=")
                params[key] = value.strip('"')
            return params
    raise SystemExit(f"no challenge in {head!r}")


def authorized_connect(
    target: str, challenge: dict[str, str], user: str, password: str, nc: str = "00000001"
) -> bytes:
    """A CONNECT head answering `challenge` (RFC 7616 §3.4, qop=auth)."""
    algorithm = challenge["algorithm"]
    response = digest_response(
        algorithm,
        username=user,
        realm=challenge["realm"],
        password=password,
        method="CONNECT",
        uri=target,
        nonce=challenge["nonce"],
        nc=nc,
        cnonce="c0ffee",
    )
    return (
        f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Digest "
        f'username="{user}", realm="{challenge["realm"]}", nonce="{challenge["nonce"]}", '
        f'uri="{target}", response="{response}", algorithm={algorithm}, qop=auth, '
        f'nc={nc}, cnonce="c0ffee", opaque="{challenge["opaque"]}"\r\n\r\n'
    ).encode()


def connect(port: int, target: str, user: str, password: str) -> tuple[socket.socket, int]:
    with socket.create_connection(("127.0.0.1", port)) as first:
        first.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        challenge = challenge_params(_head(first)[0])
    algorithm = challenge["algorithm"]
    response = digest_response(
        algorithm,
        username=user,
        realm=challenge["realm"],
        password=password,
        method="CONNECT",
        uri=target,
        nonce=challenge["nonce"],
        nc="00000001",
        cnonce="c0ffee",
    )
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Digest "
        f'username="{user}", realm="{challenge["realm"]}", nonce="{challenge["nonce"]}", '
        f'uri="{target}", response="{response}", algorithm={algorithm}, qop=auth, '
        f'nc=00000001, cnonce="c0ffee", opaque="{challenge["opaque"]}"\r\n\r\n'.encode()
    )
    head, _ = _head(sock)
    return sock, int(head.split()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("target")
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("--upload", type=int, default=0)
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()
    sock, status = connect(args.port, args.target, args.user, args.password)
    sent = received = 0
    if status == 200:
        sock.settimeout(args.timeout)
        deadline = time.monotonic() + args.timeout
        try:
            if args.download:
                sock.sendall(b"GET\n")
            payload = b"u" * 65536
            while sent < args.upload and time.monotonic() < deadline:
                sent += sock.send(payload[: args.upload - sent])
            sock.shutdown(socket.SHUT_WR)
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += len(chunk)
        except (TimeoutError, OSError):
            pass
    sock.close()
    print(json.dumps({"status": status, "sent": sent, "received": received}))


if __name__ == "__main__":
    main()

"""A test origin run as a program inside a namespace: swallow uploads or send downloads.

usage: python -m tests.proxy.origin_server PORT (--sink | --send BYTES)

Listens on [::]:PORT (IPv4 too), prints "ready", serves connections until killed.
--sink reads until EOF, then answers "ok" and closes. --send waits for one line,
then sends BYTES and closes.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading


def serve(conn: socket.socket, send: int) -> None:
    with conn:
        try:
            if send:
                data = b""
                while b"\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(b"d" * send)
            else:
                while conn.recv(1 << 16):
                    pass
                conn.sendall(b"ok")
        except OSError:
            pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--sink", action="store_true")
    parser.add_argument("--send", type=int, default=0)
    args = parser.parse_args()
    listener = socket.create_server(("::", args.port), family=socket.AF_INET6, dualstack_ipv6=True)
    print("ready", flush=True)
    sys.stdout.close()
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, args.send), daemon=True).start()


if __name__ == "__main__":
    main()

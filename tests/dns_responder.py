"""A tiny authoritative DNS responder on loopback for tests (the system resolver is off-host)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


@contextmanager
def dns_responder(
    records: Mapping[str, list[str]], host: str = "127.0.0.1"
) -> Iterator[tuple[str, int]]:
    """Answer A/AAAA queries from `records` (name → addresses); NXDOMAIN for other names.

    Yields (address, port) of the UDP server.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.2)
    stop = threading.Event()
    table = {name.rstrip(".").lower(): addresses for name, addresses in records.items()}

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            if name not in table:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                wanted = "A" if question.rdtype == dns.rdatatype.A else "AAAA"
                matches = [a for a in table[name] if (":" in a) == (wanted == "AAAA")]
                if matches:
                    response.answer.append(
                        dns.rrset.from_text_list(question.name, 60, "IN", wanted, matches)
                    )
            sock.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield host, int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        sock.close()

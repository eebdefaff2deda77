"""Programs the netns tests run inside their namespaces (``python -m tests.session.scenarios``).

``serve ADDRESS``: the far namespace's servers: a DNS responder (tests.dns_responder)
and an HTTP origin on ADDRESS:80; prints the DNS port as JSON, runs until stdin closes.

``readme`` / ``interfaces IFACE...``: the near namespace's client side, capturing with
wirecap.capture_packets(); prints what it found as JSON for the test to check.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import wirecap
from tests.dns_responder import dns_responder

#: The name the far namespace's DNS responder answers, with the origin's address.
ORIGIN_NAME = "origin.test"
#: The name the README's example fails to resolve (NXDOMAIN from our responder).
MISSING_NAME = "service-that-is-not.working"
ORIGIN_BODY = b"hello from origin.test\n"


class _Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(ORIGIN_BODY)))
        self.end_headers()
        self.wfile.write(ORIGIN_BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(address: str) -> None:
    http = ThreadingHTTPServer((address, 80), _Origin)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()
    with dns_responder({ORIGIN_NAME: [address]}, host=address) as (_host, port):
        print(json.dumps({"dns_port": port}), flush=True)
        sys.stdin.read()
    http.shutdown()
    http.server_close()


def readme() -> dict[str, Any]:
    """capture-packets' README and test suite, with example.com replaced by local names."""
    import urllib3
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.http import HTTPRequest, HTTPResponse

    out: dict[str, Any] = {}
    # test_http: a plain HTTP GET by name.
    with wirecap.capture_packets() as pcap:
        http = urllib3.PoolManager()
        resp = http.request("GET", f"http://{ORIGIN_NAME}")
    http.clear()
    out["status"] = resp.status
    out["qnames"] = sorted({p[DNSQR].qname.decode() for p in pcap.packets(layers=DNSQR)})
    requests = pcap.packets(layers=HTTPRequest)
    responses = pcap.packets(layers=HTTPResponse)
    out["requests"] = [bytes(p[HTTPRequest].raw_packet_cache or b"").decode() for p in requests]
    out["response_codes"] = [int(p[HTTPResponse].Status_Code) for p in responses]
    out["interfaces"] = list(pcap.interfaces)
    out["caught_up"] = pcap.caught_up
    pcap.delete()

    # The README's error-suppressing example, then its script template's ending.
    with contextlib.suppress(Exception), wirecap.capture_packets() as pcap:
        http = urllib3.PoolManager()
        http.request("GET", f"https://{MISSING_NAME}", retries=False)
    http.clear()
    packets = pcap.packets(layers=DNSQR)
    out["first_qname"] = packets[0][DNSQR].qname.decode()
    out["nxdomain"] = any(
        p[DNSQR].qname == f"{MISSING_NAME}.".encode() and p[DNS].rcode == 3 for p in packets
    )
    tarball = pcap.tarball()
    out["tarball"] = tarball
    pcap.delete()
    out["deleted"] = not os.path.exists(pcap.directory)
    return out


def interfaces(names: Sequence[str]) -> dict[str, Any]:
    """Capture on several interfaces at once: one file, one IDB each, markers gone."""
    import urllib3

    from wirecap.core.formats.reader import read_file
    from wirecap.core.formats.records import Interface, Packet

    with wirecap.capture_packets(interfaces=names) as pcap:
        http = urllib3.PoolManager()
        http.request("GET", f"http://{ORIGIN_NAME}/")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.sendto(b"loopback-only", sock.getsockname())
    http.clear()
    events = list(read_file(pcap.pcap_filepath))
    idbs = [e.name for e in events if isinstance(e, Interface)]
    packets = [e for e in events if isinstance(e, Packet)]
    per_interface = {name: 0 for name in idbs}
    for packet in packets:
        per_interface[idbs[packet.interface_id]] += 1
    out = {
        "idbs": idbs,
        "per_interface": per_interface,
        "sorted": [p.ts_ns for p in packets] == sorted(p.ts_ns for p in packets),
        "markers": sum(b"wirecap session marker" in p.data for p in packets),
        "loopback_datagram_on": [
            idbs[p.interface_id] for p in packets if b"loopback-only" in p.data
        ],
        "origin_body_on": [idbs[p.interface_id] for p in packets if ORIGIN_BODY in p.data],
        "caught_up": pcap.caught_up,
        "file": pcap.pcap_filepath,
        "directory": pcap.directory,
    }
    return out


def main(argv: Sequence[str]) -> None:
    command, *args = argv
    if command == "serve":
        serve(args[0])
        return
    result = readme() if command == "readme" else interfaces(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

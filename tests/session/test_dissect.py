"""Finding the TLS and HTTP server ports in a capture, from its own traffic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.analysis.frames import ACK, PSH, ethernet, ip_packet, tcp_segment
from wirecap.core.formats.records import Event, Interface, Packet, SectionStart
from wirecap.session.dissect import (
    MAX_SERVER_PORTS,
    ServerPorts,
    find_server_ports,
    is_client_hello,
    is_http_request,
)

# RFC 8446 §5.1 record header (handshake, legacy version 3.1, length) + ClientHello type.
CLIENT_HELLO = bytes([0x16, 0x03, 0x01, 0x00, 0x40, 0x01]) + bytes(0x3F)
SERVER_HELLO = bytes([0x16, 0x03, 0x03, 0x00, 0x40, 0x02]) + bytes(0x3F)
REQUEST = b"GET /status HTTP/1.1\r\nHost: origin.test\r\n\r\n"


def _frame(sport: int, dport: int, payload: bytes) -> bytes:
    segment = tcp_segment(sport, dport, 1, 1, PSH | ACK, payload=payload)
    return ethernet(ip_packet("10.201.1.2", "10.201.2.2", 6, segment))


def _capture(*payloads: tuple[int, int, bytes]) -> list[Event]:
    events: list[Event] = [
        SectionStart("pcapng", False, (1, 0)),
        Interface(linktype=1),
    ]
    for index, (sport, dport, payload) in enumerate(payloads):
        data = _frame(sport, dport, payload)
        events.append(Packet(ts_ns=index, data=data, orig_len=len(data)))
    return events


def test_client_hello_and_request_line_are_recognised() -> None:
    assert is_client_hello(CLIENT_HELLO)
    assert not is_client_hello(SERVER_HELLO)
    assert not is_client_hello(CLIENT_HELLO[:5])
    assert is_http_request(REQUEST)
    assert not is_http_request(b"GET / SPDY/3\r\n")
    assert not is_http_request(b"HTTP/1.1 200 OK\r\n\r\n")


def test_ports_are_the_ones_clients_connected_to() -> None:
    events = _capture(
        (51000, 18443, CLIENT_HELLO),
        (18443, 51000, SERVER_HELLO),
        (51001, 18080, REQUEST),
        (18080, 51001, b"HTTP/1.1 200 OK\r\n\r\n"),
    )
    assert find_server_ports(events) == ServerPorts(tls=frozenset({18443}), http=frozenset({18080}))


def test_a_port_seen_with_tls_is_not_also_http() -> None:
    events = _capture((51000, 9000, CLIENT_HELLO), (51001, 9000, REQUEST))
    assert find_server_ports(events) == ServerPorts(tls=frozenset({9000}))


def test_ports_are_bounded() -> None:
    events = _capture(*((40000 + i, 1000 + i, CLIENT_HELLO) for i in range(MAX_SERVER_PORTS + 5)))
    assert len(find_server_ports(events).tls) == MAX_SERVER_PORTS


def test_packets_before_any_interface_are_ignored() -> None:
    data = _frame(1, 443, CLIENT_HELLO)
    assert find_server_ports([Packet(0, data, len(data), interface_id=3)]) == ServerPorts()


@given(st.binary(max_size=200))
def test_garbage_frames_never_raise(data: bytes) -> None:
    events: list[Event] = [Interface(linktype=1), Packet(0, data, len(data))]
    find_server_ports(events)


@given(st.integers(min_value=0, max_value=120))
def test_truncated_frames_never_raise(cut: int) -> None:
    data = _frame(51000, 18443, CLIENT_HELLO)[:cut]
    found = find_server_ports([Interface(linktype=1), Packet(0, data, 200)])
    assert found.tls <= {18443}


@given(st.binary(min_size=6, max_size=60))
def test_payload_predicates_take_any_bytes(payload: bytes) -> None:
    assert is_client_hello(payload) == (payload[0] == 0x16 and payload[1] == 3 and payload[5] == 1)
    is_http_request(payload)

"""HeadParser byte by byte and whole, limits while feeding, fuzzing; targets; responses."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirecap.proxy.head import (
    MAX_HEAD_BYTES,
    MAX_HEADER_FIELDS,
    MAX_REQUEST_LINE,
    NEED_DATA,
    ConnectTarget,
    HeadError,
    HeadParser,
    NeedData,
    RequestHead,
    build_connect_established,
    build_response,
    connect_target,
    field_value,
    parse_connect_target,
    proxy_status,
)

CURL_HEAD = (
    b"CONNECT example.com:443 HTTP/1.1\r\n"
    b"Host: example.com:443\r\n"
    b"User-Agent: curl/7.88.1\r\n"
    b"Proxy-Connection: Keep-Alive\r\n"
    b"\r\n"
)
CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def parse_whole(data: bytes) -> tuple[NeedData | RequestHead | HeadError, bytes]:
    parser = HeadParser()
    parser.feed(data)
    return parser.next_result(), parser.trailing_data


def parse_bytewise(data: bytes) -> tuple[NeedData | RequestHead | HeadError, bytes]:
    """Feed one byte at a time, as a slow client would, stopping at the first result."""
    parser = HeadParser()
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        if parser.next_result() is not NEED_DATA:
            parser.feed(data[i + 1 :])
            break
    return parser.next_result(), parser.trailing_data


# --- parsing ------------------------------------------------------------------------


def test_curl_connect_head() -> None:
    result, trailing = parse_whole(CURL_HEAD)
    assert result == RequestHead(
        "CONNECT",
        "example.com:443",
        "HTTP/1.1",
        (
            ("host", "example.com:443"),
            ("user-agent", "curl/7.88.1"),
            ("proxy-connection", "Keep-Alive"),
        ),
    )
    assert trailing == b""


def test_need_data_until_the_empty_line() -> None:
    parser = HeadParser()
    parser.feed(CURL_HEAD[:-2])
    assert parser.next_result() is NEED_DATA
    assert parser.trailing_data == b""
    parser.feed(b"\r\n")
    assert isinstance(parser.next_result(), RequestHead)


@pytest.mark.parametrize("split", [0, 1, 17, len(CURL_HEAD) - 1, len(CURL_HEAD)])
def test_pipelined_tunnel_bytes_are_kept(split: int) -> None:
    parser = HeadParser()
    data = CURL_HEAD + CLIENT_HELLO
    parser.feed(data[:split])
    parser.feed(data[split:])
    assert isinstance(parser.next_result(), RequestHead)
    assert parser.trailing_data == CLIENT_HELLO
    parser.feed(b"more")  # after the head: more tunnel data
    assert parser.trailing_data == CLIENT_HELLO + b"more"


def test_bytewise_equals_whole_for_a_head_with_trailing_data() -> None:
    data = CURL_HEAD + CLIENT_HELLO
    assert parse_bytewise(data) == parse_whole(data)


def test_header_access() -> None:
    result, _ = parse_whole(
        b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nX-A: one\r\nx-a:two  \r\nEmpty:\r\n\r\n"
    )
    assert isinstance(result, RequestHead)
    assert result.header("HOST") == "a:1"
    assert result.header_values("X-a") == ("one", "two")
    assert result.header("x-a") == "one, two"  # RFC 9110 §5.3
    assert result.header("empty") == ""
    assert result.header("missing") is None
    assert result.header_values("missing") == ()


def test_obs_text_value_kept_as_latin1() -> None:
    result, _ = parse_whole(b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nX: caf\xe9\r\n\r\n")
    assert isinstance(result, RequestHead)
    assert result.header("x") == "caf\xe9"


def test_bare_lf_is_a_line_end() -> None:
    result, trailing = parse_whole(b"CONNECT a:1 HTTP/1.0\nHost: a:1\n\nrest")
    assert isinstance(result, RequestHead)
    assert result.headers == (("host", "a:1"),)
    assert trailing == b"rest"


def test_leading_empty_lines_are_skipped() -> None:
    result, _ = parse_whole(b"\r\n\n\r\n" + CURL_HEAD)
    assert isinstance(result, RequestHead)
    assert result.method == "CONNECT"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"CONNECT a:1\r\n\r\n", 400),  # no version
        (b"CONNECT  a:1 HTTP/1.1\r\n\r\n", 400),  # two spaces
        (b"CONNECT a:1 HTTP/1.1 \r\n\r\n", 400),  # trailing space
        (b"CONNECT\ta:1 HTTP/1.1\r\n\r\n", 400),
        (b"CONN(ECT a:1 HTTP/1.1\r\n\r\n", 400),  # method not a token
        (b"CONNECT a\xff:1 HTTP/1.1\r\n\r\n", 400),  # target not ASCII
        (b"CONNECT a:1 http/1.1\r\n\r\n", 400),
        (b"CONNECT a:1 HTTP/1.10\r\n\r\n", 400),
        (b"CONNECT a:1 HTTP/2.0\r\n\r\n", 505),
        (b"CONNECT a:1 HTTP/1.1\r\nHost : a\r\n\r\n", 400),  # space before colon (§5.1)
        (b"CONNECT a:1 HTTP/1.1\r\nNo colon\r\n\r\n", 400),
        (b"CONNECT a:1 HTTP/1.1\r\n: empty name\r\n\r\n", 400),
        (b"CONNECT a:1 HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400),  # obs-fold (§5.2)
        (b"CONNECT a:1 HTTP/1.1\r\n Host: a\r\n\r\n", 400),  # whitespace after start line
        (b"CONNECT a:1 HTTP/1.1\r\nA: b\rc\r\n\r\n", 400),  # bare CR
        (b"CONNECT a:1\rHTTP/1.1\r\n\r\n", 400),
        (b"CONNECT a:1 HTTP/1.1\r\nA: b\x00c\r\n\r\n", 400),  # NUL (RFC 9110 §5.5)
        (b"CONNECT a:1 HTTP/1.1\r\nA: b\x7fc\r\n\r\n", 400),
    ],
)
def test_malformed_heads(data: bytes, status: int) -> None:
    for parse in (parse_whole, parse_bytewise):
        result, trailing = parse(data)
        assert isinstance(result, HeadError), result
        assert result.status == status
        assert trailing == b""


def test_result_is_final_and_feeding_after_an_error_is_ignored() -> None:
    parser = HeadParser()
    parser.feed(b"BAD LINE\r\n")
    error = parser.next_result()
    assert isinstance(error, HeadError)
    parser.feed(b"CONNECT a:1 HTTP/1.1\r\n\r\n")
    assert parser.next_result() is error
    assert parser.trailing_data == b""


# --- limits -------------------------------------------------------------------------


def test_request_line_at_the_limit_passes() -> None:
    target = b"a" * (MAX_REQUEST_LINE - len(b"CONNECT  HTTP/1.1"))
    data = b"CONNECT " + target + b" HTTP/1.1\r\n\r\n"
    assert isinstance(parse_whole(data)[0], RequestHead)
    assert isinstance(parse_bytewise(data)[0], RequestHead)


def test_request_line_over_the_limit_is_414_before_its_end_arrives() -> None:
    parser = HeadParser()
    parser.feed(b"CONNECT ")
    for _ in range(MAX_REQUEST_LINE):
        parser.feed(b"a")
        if parser.next_result() is not NEED_DATA:
            break
    result = parser.next_result()
    assert isinstance(result, HeadError)
    assert result.status == 414


def test_head_over_the_limit_is_431_while_feeding_byte_by_byte() -> None:
    parser = HeadParser()
    parser.feed(b"CONNECT a:1 HTTP/1.1\r\n")
    fed = 0
    while parser.next_result() is NEED_DATA:
        parser.feed(b"X-Long: " if fed % 1000 == 0 else b"v")
        fed += 1
        if fed % 1000 == 999:
            parser.feed(b"\r\n")
        # Memory stays bounded: the parser refuses before holding much more.
        assert fed < MAX_HEAD_BYTES + 10
        assert parser.buffered <= MAX_HEAD_BYTES
    result = parser.next_result()
    assert isinstance(result, HeadError)
    assert result.status == 431
    assert parser.buffered == 0


def test_head_exactly_at_the_limit_passes() -> None:
    start = b"CONNECT a:1 HTTP/1.1\r\n"
    filler = MAX_HEAD_BYTES - len(start) - len(b"X: \r\n") - len(b"\r\n")
    data = start + b"X: " + b"v" * filler + b"\r\n\r\n"
    assert len(data) == MAX_HEAD_BYTES
    assert isinstance(parse_whole(data)[0], RequestHead)
    assert isinstance(parse_bytewise(data)[0], RequestHead)
    over = start + b"X: " + b"v" * (filler + 1) + b"\r\n\r\n"
    for parse in (parse_whole, parse_bytewise):
        result = parse(over)[0]
        assert isinstance(result, HeadError) and result.status == 431


def test_endless_empty_lines_hit_the_head_limit() -> None:
    result, _ = parse_bytewise(b"\r\n" * (MAX_HEAD_BYTES // 2 + 1))
    assert isinstance(result, HeadError)
    assert result.status == 431


def test_too_many_fields_is_431() -> None:
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADER_FIELDS))
    ok = b"CONNECT a:1 HTTP/1.1\r\n" + fields + b"\r\n"
    assert isinstance(parse_whole(ok)[0], RequestHead)
    over = b"CONNECT a:1 HTTP/1.1\r\n" + fields + b"X-last: v\r\n\r\n"
    result = parse_whole(over)[0]
    assert isinstance(result, HeadError) and result.status == 431


# --- fuzzing ------------------------------------------------------------------------

_pieces = st.sampled_from(
    [b"CONNECT ", b"GET ", b"a.b:443", b"[::1]:1", b" HTTP/1.1", b" HTTP/1.0", b"\r\n",
     b"\n", b"\r", b"Host: x", b":", b" ", b"\t", b"\x00", b"\xff", b"X-A: b"]
)  # fmt: skip
_heads = st.one_of(
    st.binary(max_size=300),
    st.lists(_pieces, max_size=40).map(b"".join),
)


@given(_heads, st.lists(st.integers(min_value=0, max_value=300), max_size=5))
def test_fuzz_only_results_never_exceptions(data: bytes, cuts: list[int]) -> None:
    parser = HeadParser()
    points = sorted({min(c, len(data)) for c in cuts})
    previous = 0
    for point in [*points, len(data)]:
        parser.feed(data[previous:point])
        previous = point
    result = parser.next_result()
    assert isinstance(result, NeedData | RequestHead | HeadError)
    if isinstance(result, HeadError):
        assert 400 <= result.status <= 505
        assert result.reason.isascii()
        result.response()  # always buildable
    whole, whole_trailing = parse_whole(data)
    assert result == whole
    assert parser.trailing_data == whole_trailing
    assert parse_bytewise(data) == (whole, whole_trailing)
    if isinstance(result, RequestHead):
        outcome = connect_target(result)
        assert isinstance(outcome, ConnectTarget | HeadError)


@given(st.binary(min_size=1, max_size=64))
def test_fuzz_large_input_is_refused_without_lf(pattern: bytes) -> None:
    data = (pattern * (MAX_HEAD_BYTES // len(pattern) + 2)).replace(b"\n", b"x")
    result = parse_whole(data)[0]
    assert isinstance(result, HeadError)
    assert result.status in (400, 414, 431)


# --- CONNECT targets ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "host", "port", "address"),
    [
        ("example.com:443", "example.com", 443, None),
        ("Example.COM:443", "example.com", 443, None),
        ("example.com.:443", "example.com.", 443, None),
        ("_srv.my-host.example:8443", "_srv.my-host.example", 8443, None),
        ("localhost:1", "localhost", 1, None),
        ("192.0.2.1:65535", "192.0.2.1", 65535, ipaddress.IPv4Address("192.0.2.1")),
        ("[2001:db8::1]:443", "2001:db8::1", 443, ipaddress.IPv6Address("2001:db8::1")),
        ("[2001:DB8:0::1]:443", "2001:db8::1", 443, ipaddress.IPv6Address("2001:db8::1")),
        ("[fe80::1%eth0]:22", "fe80::1%eth0", 22, ipaddress.IPv6Address("fe80::1%eth0")),
        ("[fe80::1%25eth0]:22", "fe80::1%eth0", 22, ipaddress.IPv6Address("fe80::1%eth0")),
        ("a.b:0443", "a.b", 443, None),
        ("x" * 63 + ".b:1", "x" * 63 + ".b", 1, None),
    ],
)  # fmt: skip
def test_good_targets(target: str, host: str, port: int, address: object) -> None:
    parsed = parse_connect_target(target)
    assert parsed == ConnectTarget(host, port, address)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "target",
    [
        "example.com",  # no port
        "443",
        "example.com:",
        ":443",
        "example.com:0",
        "example.com:65536",
        "example.com:123456",
        "example.com:+443",
        "example.com:4a",
        "[::1]",
        "[::1]443",
        "[::1:443",
        "::1:443",  # IPv6 without brackets
        "[]:443",
        "[zz::1]:443",
        "[192.0.2.1]:443",
        "[fe80::1%]:443",
        "[fe80::1%eth/0]:443",
        "[fe80::1%" + "e" * 16 + "]:443",
        "user@example.com:443",
        "ex%41mple.com:443",
        "a..b:443",
        ".a:443",
        "a b:443",
        "exämple.com:443",
        "x" * 64 + ".b:443",
        ("a" * 50 + ".") * 5 + "bcd:443",  # 254 characters
        "127.1:443",  # inet_aton would take these as 127.0.0.1
        "0x7f.1:443",
        "1.2.3.256:443",
        "01.2.3.4:443",
        "example.123:443",
    ],
)
def test_bad_targets(target: str) -> None:
    parsed = parse_connect_target(target)
    assert isinstance(parsed, HeadError), parsed
    assert parsed.status == 400


def test_ipv4_mapped_target_stays_ipv6() -> None:
    # The server decides what to do with it (connectcap §8 item 9); the parser keeps it.
    parsed = parse_connect_target("[::ffff:192.0.2.1]:443")
    assert isinstance(parsed, ConnectTarget)
    assert parsed.address == ipaddress.IPv6Address("::ffff:192.0.2.1")
    assert isinstance(parsed.address, ipaddress.IPv6Address)
    assert parsed.address.ipv4_mapped == ipaddress.IPv4Address("192.0.2.1")


def test_authority_round_trip() -> None:
    for target in ("example.com:443", "192.0.2.1:8080", "[2001:db8::1]:443", "[fe80::1%eth0]:1"):
        parsed = parse_connect_target(target)
        assert isinstance(parsed, ConnectTarget)
        assert parsed.authority == target


def _head(data: bytes) -> RequestHead:
    result = parse_whole(data)[0]
    assert isinstance(result, RequestHead)
    return result


def test_connect_target_of_a_head() -> None:
    assert connect_target(_head(CURL_HEAD)) == ConnectTarget("example.com", 443)
    # HTTP/1.0 needs no Host (RFC 9112 §3.2 applies to HTTP/1.1).
    assert connect_target(_head(b"CONNECT a:1 HTTP/1.0\r\n\r\n")) == ConnectTarget("a", 1)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 405),
        (b"connect a:1 HTTP/1.1\r\nHost: a\r\n\r\n", 405),  # methods are case-sensitive
        (b"CONNECT a:1 HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"CONNECT a:1 HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ],
)
def test_connect_target_refusals(data: bytes, status: int) -> None:
    result = connect_target(_head(data))
    assert isinstance(result, HeadError)
    assert result.status == status
    if status == 405:
        assert ("Allow", "CONNECT") in result.headers
        assert b"\r\nAllow: CONNECT\r\n" in result.response()


# --- responses ----------------------------------------------------------------------


def test_error_response_framing() -> None:
    response = build_response(407, headers=[("Proxy-Authenticate", 'Digest realm="r"')])
    assert response == (
        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
        b'Proxy-Authenticate: Digest realm="r"\r\n'
        b"Content-Length: 0\r\n"
        b"Connection: close\r\n"
        b"\r\n"
    )


def test_error_response_with_body() -> None:
    response = build_response(502, body="connect failed: refusé\n")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"\r\nContent-Type: text/plain; charset=utf-8" in head
    assert b"\r\nContent-Length: %d" % len(body) in head
    assert body.decode("utf-8") == "connect failed: refusé\n"
    # The response itself is a well-formed head for our own parser's rules.
    assert all(b"\r" not in line and b"\n" not in line for line in head.split(b"\r\n"))


@pytest.mark.parametrize(
    ("status", "phrase"),
    [(400, b"Bad Request"), (405, b"Method Not Allowed"), (414, b"URI Too Long"),
     (431, b"Request Header Fields Too Large"), (504, b"Gateway Timeout"),
     (505, b"HTTP Version Not Supported")],
)  # fmt: skip
def test_reason_phrases(status: int, phrase: bytes) -> None:
    assert build_response(status).startswith(b"HTTP/1.1 %d %s\r\n" % (status, phrase))


def test_custom_reason() -> None:
    assert build_response(599, "Odd").startswith(b"HTTP/1.1 599 Odd\r\n")


@pytest.mark.parametrize(
    "call",
    [
        lambda: build_response(200),
        lambda: build_response(599),  # no standard phrase
        lambda: build_response(400, "Bad\r\nX: y"),
        lambda: build_response(400, headers=[("X", "a\r\nInjected: yes")]),
        lambda: build_response(400, headers=[("X", "a\nb")]),
        lambda: build_response(400, headers=[("Bad Name", "v")]),
        lambda: build_response(400, headers=[("Content-Length", "5")]),
        lambda: build_response(400, headers=[("connection", "keep-alive")]),
        lambda: build_connect_established([("X", "\r\n")]),
        lambda: build_connect_established([("Transfer-Encoding", "chunked")]),
    ],
)
def test_builder_refuses_programming_errors(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_connect_established_has_no_framing() -> None:
    assert build_connect_established() == b"HTTP/1.1 200 Connection established\r\n\r\n"
    response = build_connect_established([("Proxy-Authentication-Info", 'rspauth="ab"')])
    assert response == (
        b'HTTP/1.1 200 Connection established\r\nProxy-Authentication-Info: rspauth="ab"\r\n\r\n'
    )
    assert b"Content-Length" not in response


@given(st.text(max_size=300))
def test_field_value_is_always_accepted(text: str) -> None:
    value = field_value(text)
    assert len(value) <= 1024
    build_response(502, headers=[("X-Detail", value)])
    build_response(502, headers=[proxy_status("wirecap", "dns_error", text)])


def test_proxy_status_field() -> None:
    assert proxy_status("proxy.example", "connection_refused", 'said "no"\r\n') == (
        "Proxy-Status",
        'proxy.example; error=connection_refused; details="said \\"no\\""',
    )
    assert proxy_status("my proxy") == ("Proxy-Status", '"my proxy"')
    with pytest.raises(ValueError):
        proxy_status("p", "Bad Error")

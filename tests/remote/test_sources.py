"""SOURCE parsing for `wirecap merge`: files, worker URLs, defaults, credentials."""

from __future__ import annotations

from pathlib import PurePath

import pytest

from wirecap.errors import OptionError
from wirecap.remote.sources import DEFAULT_PORT, FileSource, UrlSource, parse_source


def test_plain_path_is_a_file() -> None:
    source = parse_source("captures/a.pcapng")
    assert source == FileSource(PurePath("captures/a.pcapng"))
    assert source.label == "a.pcapng"
    assert source.display == "captures/a.pcapng"


def test_bare_host_gets_default_port_and_path() -> None:
    source = parse_source("http://worker1")
    assert isinstance(source, UrlSource)
    assert (source.scheme, source.host, source.port, source.path) == (
        "http",
        "worker1",
        DEFAULT_PORT,
        "/capture",
    )
    assert source.url == "http://worker1:8475/capture"
    assert source.label == "worker1"


def test_filter_query_passed_through_unchanged() -> None:
    source = parse_source("https://w:9000?filter=tcp%20port%20443&snaplen=96")
    assert isinstance(source, UrlSource)
    assert source.query == "filter=tcp%20port%20443&snaplen=96"
    assert source.url == "https://w:9000/capture?filter=tcp%20port%20443&snaplen=96"
    assert source.label == "w:9000"


def test_explicit_path_kept_and_root_path_defaulted() -> None:
    assert parse_source("http://w/other").url == "http://w:8475/other"  # type: ignore[union-attr]
    assert parse_source("http://w/").url == "http://w:8475/capture"  # type: ignore[union-attr]


def test_credentials_parsed_and_never_shown() -> None:
    source = parse_source("https://al%40ce:s3cr%3At@host:1234/capture?filter=icmp")
    assert isinstance(source, UrlSource)
    assert (source.username, source.password) == ("al@ce", "s3cr:t")
    for shown in (source.url, source.display, source.label, repr(source)):
        assert "s3cr" not in shown
        assert "al" not in shown.replace("label", "")


def test_user_without_password() -> None:
    source = parse_source("http://bob@h")
    assert isinstance(source, UrlSource)
    assert (source.username, source.password) == ("bob", None)


def test_ipv6_host() -> None:
    source = parse_source("http://[::1]:8000")
    assert isinstance(source, UrlSource)
    assert source.host == "::1"
    assert source.url == "http://[::1]:8000/capture"


def test_scheme_case_insensitive() -> None:
    assert parse_source("HTTPS://h").url.startswith("https://")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty SOURCE"),
        ("ftp://h/x", "unsupported URL scheme 'ftp'"),
        ("http://", "has no host"),
        ("http://h:99999", "bad worker URL"),
        ("http://h:port", "bad worker URL"),
        ("http://h:0", "port 0"),
        ("http://h/capture#frag", "fragment"),
    ],
)
def test_bad_urls_are_option_errors(text: str, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        parse_source(text)


def test_bad_url_error_hides_password() -> None:
    with pytest.raises(OptionError) as info:
        parse_source("http://u:hunter2@h:notaport/capture")
    assert "hunter2" not in str(info.value)
    assert "***@h:notaport" in str(info.value)


def test_unix_socket_worker() -> None:
    source = parse_source("unix:/run/wirecap/worker.sock?filter=tcp&interface=eth0")
    assert isinstance(source, UrlSource)
    assert source.socket_path == "/run/wirecap/worker.sock"
    assert source.path == "/capture" and source.query == "filter=tcp&interface=eth0"
    assert source.display == "unix:/run/wirecap/worker.sock?filter=tcp&interface=eth0"
    assert source.label == "unix:worker.sock" and source.interface == "eth0"
    assert parse_source("unix:/w.sock").interface == "any"  # type: ignore[union-attr]
    with pytest.raises(OptionError, match="absolute path"):
        parse_source("unix:w.sock")

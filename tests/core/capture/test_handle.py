"""Filter validation on a dead handle: no interface, no privilege needed."""

from __future__ import annotations

import pytest

from wirecap.core.capture.handle import check_filter
from wirecap.core.formats.linktype import LinkType
from wirecap.errors import BadFilterError


@pytest.mark.parametrize(
    "expression",
    ["", "tcp port 443", "tcp[tcpflags] & tcp-syn != 0", "ip6 and tcp port 443", "vlan and udp"],
)
def test_valid_filters_compile(expression: str) -> None:
    check_filter(expression)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("tcp port", "syntax error"),
        # libpcap 1.10 cannot index TCP headers behind IPv6 and says so.
        ("ip6 and tcp[tcpflags] & tcp-syn != 0", "rejects all packets"),
        ("port 99999", "port"),
    ],
)
def test_bad_filters_carry_libpcap_message(expression: str, message: str) -> None:
    with pytest.raises(BadFilterError, match=message) as info:
        check_filter(expression)
    assert expression in str(info.value)


def test_link_type_matters() -> None:
    # "ether host" means nothing on a raw-IP link: libpcap refuses it there.
    check_filter("ether host 00:11:22:33:44:55", LinkType.ETHERNET)
    with pytest.raises(BadFilterError):
        check_filter("ether host 00:11:22:33:44:55", LinkType.RAW)

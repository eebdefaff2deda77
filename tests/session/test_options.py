"""SessionOptions validation and the interface choice."""

from __future__ import annotations

import pytest

from wirecap.errors import NoSuchInterfaceError, OptionError
from wirecap.session.options import (
    MAX_INTERFACES,
    MAX_WAIT_BEFORE_TERMINATE_S,
    SessionOptions,
    resolve_interfaces,
)


def test_defaults_match_capture_packets() -> None:
    options = SessionOptions.build()
    assert options.interfaces is None
    assert options.wait_for_packets is True
    assert options.wait_before_terminate == 3.0
    assert options.filter == ""


def test_build_accepts_any_iterable_of_names() -> None:
    assert SessionOptions.build(interfaces=iter(["lo", "eth0"])).interfaces == ("lo", "eth0")
    assert SessionOptions.build(interfaces={"lo"}).interfaces == ("lo",)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interfaces": "lo"},
        {"interfaces": []},
        {"interfaces": [""]},
        {"interfaces": ["e\0th"]},
        {"interfaces": [f"if{i}" for i in range(MAX_INTERFACES + 1)]},
        {"wait_before_terminate": -0.1},
        {"wait_before_terminate": MAX_WAIT_BEFORE_TERMINATE_S + 1},
        {"wait_before_terminate": float("nan")},
        {"wait_before_terminate": float("inf")},
        {"snaplen": 0},
        {"snaplen": 262145},
    ],
)
def test_bad_options_are_option_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(OptionError):
        SessionOptions.build(**kwargs)  # type: ignore[arg-type]


def test_none_means_any_when_libpcap_offers_it() -> None:
    assert resolve_interfaces(None, ["eth0", "any", "lo"]) == ("any",)


def test_none_without_any_means_every_interface() -> None:
    assert resolve_interfaces(None, ["eth0", "lo", "eth0"]) == ("eth0", "lo")


def test_none_with_nothing_available_is_an_error() -> None:
    with pytest.raises(NoSuchInterfaceError):
        resolve_interfaces(None, [])


def test_named_interfaces_keep_order_without_repeats() -> None:
    assert resolve_interfaces(["lo", "eth0", "lo"], ["any", "eth0", "lo"]) == ("lo", "eth0")


def test_unknown_interface_names_the_culprit_and_the_choices() -> None:
    with pytest.raises(NoSuchInterfaceError) as caught:
        resolve_interfaces(["lo", "nosuch0"], ["any", "lo"])
    assert "nosuch0" in str(caught.value)
    assert "any, lo" in str(caught.value)

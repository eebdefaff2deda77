"""The rate curve and Go-style durations."""

from __future__ import annotations

import pytest

from wirecap.errors import OptionError
from wirecap.flows.curve import DEFAULT_CURVE, NS_PER_S, RateCurve, parse_duration

S = NS_PER_S


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("20s", 20 * S),
        ("1m", 60 * S),
        ("1m30s", 90 * S),
        ("500ms", S // 2),
        ("1h", 3600 * S),
        ("0", 0),
        ("2.5", 5 * S // 2),
        (3, 3 * S),
        ("1.5s", 3 * S // 2),
    ],
)
def test_parse_duration(text: str | int, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", ["", "s", "10x", "-1", "1m-5s", "abc"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(OptionError):
        parse_duration(text)


def test_default_curve_is_conntracct_s() -> None:
    # reference §1.5: every 20 s for the first minute, 60 s until 5 min, then 5 min.
    assert DEFAULT_CURVE.interval_ns(0) == 20 * S
    assert DEFAULT_CURVE.interval_ns(59 * S) == 20 * S
    assert DEFAULT_CURVE.interval_ns(60 * S) == 60 * S
    assert DEFAULT_CURVE.interval_ns(299 * S) == 60 * S
    assert DEFAULT_CURVE.interval_ns(300 * S) == 300 * S
    assert DEFAULT_CURVE.interval_ns(10**6 * S) == 300 * S
    assert DEFAULT_CURVE.backdate_ns == 60 * S


def test_too_young_gets_the_first_rate_not_every_packet() -> None:
    # conntracct sent an event per packet below the first age (signedness bug).
    curve = RateCurve.of([(10 * S, 5 * S), (60 * S, 30 * S)])
    assert curve.interval_ns(0) == 5 * S


@pytest.mark.parametrize(
    "points",
    [[], [(0, 0)], [(10 * S, S), (5 * S, S)], [(0, S), (0, S)], [(i * S, S) for i in range(17)]],
)
def test_bad_curves_are_refused(points: list[tuple[int, int]]) -> None:
    with pytest.raises(OptionError):
        RateCurve.of(points)

"""The age-based rate curve: how often a flow of a given age may send an update.

conntracct's curve (reference/conntracct-and-tcpcap.md §1.5): a young flow is
reported often, an old one rarely, so short HTTP exchanges are seen in detail
while a week-long SSH session costs one record every few minutes. The rate is
a *minimum spacing* between updates, not a heartbeat: an idle flow whose
counters did not move sends nothing until it moves or ends.

Two things conntracct got wrong are not copied: a flow younger than the first
point's age ("too young") gets the first point's rate instead of one event per
packet, and any number of points is allowed (conntracct: exactly three).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from wirecap.errors import OptionError

__all__ = [
    "DEFAULT_CURVE",
    "MAX_CURVE_POINTS",
    "CurvePoint",
    "RateCurve",
    "format_duration",
    "parse_duration",
]

NS_PER_S = 1_000_000_000
#: More points than this is a configuration mistake, not a finer curve.
MAX_CURVE_POINTS = 16

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": NS_PER_S,
    "m": 60 * NS_PER_S,
    "h": 3600 * NS_PER_S,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str | int | float, *, what: str = "duration") -> int:
    """Go's duration syntax (``20s``, ``1m30s``, ``500ms``) or a number of seconds → ns."""
    if isinstance(text, bool):
        raise OptionError(f"{what}: {text!r} is not a duration")
    if isinstance(text, int | float):
        if text < 0:
            raise OptionError(f"{what}: {text} is negative")
        return int(text * NS_PER_S)
    spec = text.strip()
    if spec == "0":
        return 0
    total = 0
    position = 0
    for match in _DURATION.finditer(spec):
        if match.start() != position:
            break
        total += int(float(match.group(1)) * _UNITS[match.group(2)])
        position = match.end()
    if position != len(spec) or not spec:
        try:
            seconds = float(spec)
        except ValueError:
            raise OptionError(
                f"{what}: {text!r} is not a duration (examples: 20s, 1m30s, 500ms, 2.5)"
            ) from None
        if seconds < 0:
            raise OptionError(f"{what}: {text!r} is negative")
        return int(seconds * NS_PER_S)
    return total


def format_duration(ns: int) -> str:
    if ns % (60 * NS_PER_S) == 0 and ns:
        return f"{ns // (60 * NS_PER_S)}m"
    if ns % NS_PER_S == 0:
        return f"{ns // NS_PER_S}s"
    return f"{ns // 1_000_000}ms"


@dataclass(frozen=True, slots=True)
class CurvePoint:
    age_ns: int
    rate_ns: int


@dataclass(frozen=True, slots=True)
class RateCurve:
    """Points sorted by strictly increasing age; every rate above zero."""

    points: tuple[CurvePoint, ...]

    @classmethod
    def of(cls, points: Sequence[tuple[int, int]]) -> RateCurve:
        if not points:
            raise OptionError("rate curve: at least one point is needed")
        if len(points) > MAX_CURVE_POINTS:
            raise OptionError(f"rate curve: more than {MAX_CURVE_POINTS} points")
        curve = tuple(CurvePoint(age, rate) for age, rate in points)
        for before, after in itertools.pairwise(curve):
            if after.age_ns <= before.age_ns:
                raise OptionError(
                    f"rate curve: ages must increase; {format_duration(after.age_ns)} "
                    f"follows {format_duration(before.age_ns)}"
                )
        for point in curve:
            if point.rate_ns <= 0:
                raise OptionError("rate curve: every rate must be above zero")
            if point.age_ns < 0:
                raise OptionError("rate curve: ages cannot be negative")
        return cls(curve)

    def interval_ns(self, age_ns: int) -> int:
        """The spacing for a flow of this age: the last point whose age it reached."""
        rate = self.points[0].rate_ns
        for point in self.points:
            if age_ns < point.age_ns:
                break
            rate = point.rate_ns
        return rate

    @property
    def backdate_ns(self) -> int:
        """How much older a flow already alive at start-up is taken to be.

        conntracct back-dates such flows to its second point, so a restart
        puts them on the slower rate instead of a storm of first-rate updates.
        """
        return self.points[1].age_ns if len(self.points) > 1 else 0

    @property
    def shortest_ns(self) -> int:
        return min(point.rate_ns for point in self.points)

    def describe(self) -> str:
        return ", ".join(
            f"age {format_duration(p.age_ns)} → every {format_duration(p.rate_ns)}"
            for p in self.points
        )


DEFAULT_CURVE = RateCurve.of(
    [(0, 20 * NS_PER_S), (60 * NS_PER_S, 60 * NS_PER_S), (300 * NS_PER_S, 300 * NS_PER_S)]
)

"""Named thresholds: defaults and validation."""

from __future__ import annotations

import pytest

from wirecap.analysis import DEFAULT_THRESHOLDS, Thresholds
from wirecap.analysis import thresholds as module
from wirecap.errors import OptionError


def test_defaults_are_the_documented_constants() -> None:
    assert DEFAULT_THRESHOLDS.heavy_loss_rate == module.HEAVY_LOSS_RATE == 0.02
    assert DEFAULT_THRESHOLDS.slow_handshake_ns == module.SLOW_HANDSHAKE_NS == 1_000_000_000
    assert DEFAULT_THRESHOLDS.slow_handshake_rtt_factor == module.SLOW_HANDSHAKE_RTT_FACTOR == 5
    assert DEFAULT_THRESHOLDS.min_path_mtu == 1280
    assert Thresholds() == DEFAULT_THRESHOLDS


@pytest.mark.parametrize(
    "options",
    [
        {"heavy_loss_rate": 0.0},
        {"heavy_loss_rate": 1.5},
        {"slow_handshake_rtt_factor": 0},
        {"min_path_mtu": 67},
        {"black_hole_min_retransmissions": 0},
        {"max_evidence": 0},
        {"zero_window_stall_ns": -1},
        {"full_size_slack": 41},
    ],
)
def test_impossible_values_are_option_errors(options: dict[str, float]) -> None:
    with pytest.raises(OptionError):
        Thresholds(**options)  # type: ignore[arg-type]

"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

import pytest
from hypothesis import settings

# The suite is a gate: its examples are derandomized so a run is repeatable, with no
# per-example deadline (a busy 2-core CI box is slow, not wrong). Set
# WIRECAP_HYPOTHESIS=explore to search new examples with ten times as many.
settings.register_profile("gate", derandomize=True, deadline=None)
settings.register_profile("explore", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("WIRECAP_HYPOTHESIS", "gate"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Live captures need CAP_NET_RAW; CI runs as root, a developer's laptop may not.
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (live capture)")
    for item in items:
        if "root" in item.keywords or "netns" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def run_tool() -> Callable[..., str]:
    """Run a peer tool (tshark, capinfos, editcap, mergecap, tcpdump); its stdout.

    Skips the test when the tool is not installed; fails it when the tool fails.
    """

    def run(*argv: str) -> str:
        if shutil.which(argv[0]) is None:
            pytest.skip(f"{argv[0]} is not installed")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{' '.join(argv)} failed: {done.stderr}"
        return done.stdout

    return run

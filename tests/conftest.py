"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Live captures need CAP_NET_RAW; CI runs as root, a developer's laptop may not.
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (live capture)")
    for item in items:
        if "root" in item.keywords or "netns" in item.keywords:
            item.add_marker(skip)

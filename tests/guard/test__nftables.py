"""Tests for wirecap.guard._nftables: libnftables through cffi, and the nft command.

Both enforcers run in a network namespace of their own (nftables state is per
namespace), each against the real kernel.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.guard.netns_topology import empty_namespace
from wirecap.errors import EnforcementError
from wirecap.guard._nftables import CommandEnforcer, LibraryEnforcer, open_enforcer

#: Run in the namespace: set up, block, list, compare with `nft -j`, unblock, fail.
SCRIPT = """
import json, subprocess, sys
from wirecap.guard._nftables import CommandEnforcer, LibraryEnforcer
from wirecap.guard.detectors import Reason
from wirecap.guard.firewall import Firewall
from wirecap.guard.nft import NftLayout
from wirecap.guard.policy import Block
from wirecap.errors import EnforcementError
enforcer = LibraryEnforcer() if sys.argv[1] == "library" else CommandEnforcer()
firewall = Firewall(enforcer, NftLayout())
report = {"before": firewall.elements_or_none()}
firewall.setup()
firewall.add([Block(bytes([10, 0, 0, 1]), 60, Reason.PORT_SCAN, 1, "", 0),
              Block(bytes(15) + b"\\x05", 90, Reason.SYN_RATE, 2, "", 0)])
report["listed"] = [(e.address.hex(), e.timeout_s, e.comment) for e in firewall.elements()]
nft = subprocess.run(["nft", "-j", "list", "set", "inet", "wirecap_guard", "blocked_v4"],
                     capture_output=True, text=True, check=True).stdout
report["nft"] = json.loads(nft)["nftables"][1]["set"]["elem"]
report["removed"] = [a.hex() for a in firewall.remove([bytes([10, 0, 0, 1])])]
try:
    enforcer.apply({"nftables": [{"delete": {"element": {"family": "inet",
        "table": "wirecap_guard", "name": "blocked_v4", "elem": ["10.9.9.9"]}}}]})
except EnforcementError as exc:
    report["error"] = str(exc)
firewall.teardown()
print(json.dumps(report))
"""


@pytest.mark.netns
@pytest.mark.parametrize("backend", ["library", "command"])
def test_enforcer_against_the_kernel(backend: str) -> None:
    with empty_namespace() as ns:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SCRIPT, backend],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    report = json.loads(done.stdout)
    assert report["before"] is None
    assert sorted(report["listed"]) == [
        ["00000000000000000000000000000005", 90, "syn-rate #2"],
        ["0a000001", 60, "port-scan #1"],
    ]
    assert report["nft"][0]["elem"]["val"] == "10.0.0.1"
    assert report["removed"] == ["0a000001"]
    assert "No such file or directory" in report["error"]
    assert "internal:0:0-0" not in report["error"]


def test_missing_nft_command_is_a_clear_error() -> None:
    with pytest.raises(EnforcementError, match="was not found; install it: apt-get install"):
        CommandEnforcer("/nonexistent/nft")
    with pytest.raises(EnforcementError, match="not found"):
        open_enforcer("command", "/nonexistent/nft")


def test_auto_prefers_the_library() -> None:
    enforcer = open_enforcer("auto")
    assert isinstance(enforcer, LibraryEnforcer)
    enforcer.close()
    with pytest.raises(EnforcementError, match="closed"):
        enforcer.apply({"nftables": []})

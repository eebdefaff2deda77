"""`wirecap guard`: watch inbound SYNs, export metrics, block scanners with nftables.

Pure parts, bottom up (connection attempts, times and bytes in, decisions out):

- ``syn``: which captured frames are inbound connection attempts; the capture filter.
- ``lru``: the bounded, expiring table all per-source state lives in.
- ``detectors``: port scan, SYN rate, half-open policies.
- ``policy``: allow-list, block timeouts and escalation for repeat offenders.
- ``engine``: runs the detectors and the policy on each attempt.
- ``nft``: the nftables JSON commands and the parsing of nft's answers.
- ``statefile``: active blocks and offenders, kept across restarts.
- ``logs``, ``metrics``, ``options``: log lines, Prometheus metrics, options.
- ``enforcer``: the ``Enforcer`` Protocol and an in-memory nftables for tests.
- ``firewall``: block sets through an enforcer; what to restore at start.

Shells: ``_nftables`` (libnftables via cffi, or the nft command), ``addresses``
(the host's addresses over rtnetlink), ``conntrack`` (half-open handshakes) and
``service`` (the capture and everything running).
"""

from wirecap.guard.detectors import (
    Detection,
    HalfOpenSpec,
    PortScanSpec,
    Reason,
    SynRateSpec,
)
from wirecap.guard.enforcer import Enforcer, MemoryEnforcer
from wirecap.guard.engine import GuardEngine, Observation
from wirecap.guard.nft import KernelLimitSpec, NftLayout
from wirecap.guard.options import GuardOptions
from wirecap.guard.policy import AllowList, Block, BlockPolicy, BlockSpec, Spared
from wirecap.guard.syn import CAPTURE_FILTER, LocalAddresses, SynObserved, classify

__all__ = [
    "CAPTURE_FILTER",
    "AllowList",
    "Block",
    "BlockPolicy",
    "BlockSpec",
    "Detection",
    "Enforcer",
    "GuardEngine",
    "GuardOptions",
    "HalfOpenSpec",
    "KernelLimitSpec",
    "LocalAddresses",
    "MemoryEnforcer",
    "NftLayout",
    "Observation",
    "PortScanSpec",
    "Reason",
    "Spared",
    "SynObserved",
    "SynRateSpec",
    "classify",
]

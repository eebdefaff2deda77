"""Conntrack flow accounting (`wirecap flows`, compat `conntracct`).

Pure cores: `netlink` (ctnetlink messages ↔ bytes), `table` (events and dumps →
records, rate curve from `curve`), `model` (records), `influx` (line protocol),
`elastic` (bulk NDJSON, documents, template), `config` (TOML and conntracct
YAML → frozen options), `metrics` (Prometheus families on a given registry),
`selfcheck` (facts → findings). The one shell is `service`: netlink sockets,
sysctls, sink HTTP and files.
"""

from wirecap.flows.config import FlowsOptions, SinkSpec
from wirecap.flows.curve import DEFAULT_CURVE, RateCurve
from wirecap.flows.model import Counters, Event, FlowRecord, FlowTuple, TcpState
from wirecap.flows.table import FlowTable

__all__ = [
    "DEFAULT_CURVE",
    "Counters",
    "Event",
    "FlowRecord",
    "FlowTable",
    "FlowTuple",
    "FlowsOptions",
    "RateCurve",
    "SinkSpec",
    "TcpState",
]

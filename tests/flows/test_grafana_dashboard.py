"""contrib/grafana/wirecap-flows.json: every query names what the code emits, and runs.

Grafana itself cannot be installed here. So every InfluxQL query is checked
against the measurement, tags and fields `wirecap.flows.influx` writes, and every
PromQL expression against the metric names the pipeline registers. Then each
query runs on a real InfluxDB 1.6 and a real Prometheus 2.42 (Debian packages)
holding data this code produced, with Grafana's macros replaced as Grafana
would, and must return data.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from tests.flows.servers import free_port, influxd, prometheus
from wirecap.flows.config import FlowsOptions, SinkSpec
from wirecap.flows.influx import MEASUREMENT, encode_line, encode_lines
from wirecap.flows.metrics import FlowAggregates, PipelineMetrics
from wirecap.flows.model import Counters, Event, FlowRecord, FlowTuple
from wirecap.flows.service import FlowService

DASHBOARD = Path(__file__).parents[2] / "contrib" / "grafana" / "wirecap-flows.json"


def _targets(kind: str) -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["type"] == kind:
                out.append(target["query"] if kind == "influxdb" else target["expr"])
    assert out, f"no {kind} query in the dashboard"
    return out


def _records(now_ns: int) -> list[FlowRecord]:
    out = []
    for flow_id, port in ((1, 443), (2, 53), (3, 443)):
        for step, event in enumerate((Event.NEW, Event.UPDATE, Event.UPDATE, Event.DESTROY)):
            out.append(
                FlowRecord(
                    event=event,
                    flow_id=flow_id,
                    time_ns=now_ns - (40 - 10 * step) * 10**9,
                    start_ns=now_ns - 40 * 10**9,
                    stop_ns=None,
                    orig=FlowTuple(
                        f"10.210.0.{flow_id}",
                        "10.210.1.1",
                        6 if port == 443 else 17,
                        40000 + flow_id,
                        port,
                    ),
                    reply=None,
                    tcp_state=None,
                    zone=0,
                    mark=0,
                    counters_orig=Counters(step * 10, step * 1000),
                    counters_reply=Counters(step * 5, step * 700),
                    netns=1,
                )
            )
    return out


def test_influxql_names_only_what_the_code_writes() -> None:
    line = encode_line(_records(10**18)[0])
    head, fields, _ = line.split(" ")
    measurement, *tags = head.split(",")
    assert measurement == MEASUREMENT
    known = {key.split("=")[0] for key in tags} | {f.split("=")[0] for f in fields.split(",")}
    for query in _targets("influxdb"):
        assert f'FROM "{MEASUREMENT}"' in query, query
        aliases = set(re.findall(r'AS "(\w+)"', query))
        for name in re.findall(r'"(\w+)"', query):
            assert name in known | aliases | {MEASUREMENT}, f"{name} in {query}"


def test_promql_names_only_registered_metrics() -> None:
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    metrics.add_sink("s")
    FlowAggregates(registry)
    # The names a scrape shows, labelled series or not (exposition format:
    # counters end in _total, histograms expose _bucket, _sum and _count).
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    exposed = {m.name + suffix for m in registry.collect() for suffix in suffixes[m.type]}
    for expr in _targets("prometheus"):
        used = re.findall(r"\b(wirecap_flows_\w+)", expr)
        assert used, expr
        for name in used:
            assert name in exposed, f"{name} in {expr}"


def _influx_macros(query: str) -> str:
    return query.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "10s")


def test_influxql_queries_return_data(tmp_path: Path) -> None:
    with influxd(tmp_path) as influx:
        urllib.request.urlopen(
            urllib.request.Request(
                f"{influx.url}/query", data=b"q=CREATE+DATABASE+flows", method="POST"
            ),
            timeout=10,
        )
        body = encode_lines(_records(time.time_ns()))
        request = urllib.request.Request(f"{influx.url}/write?db=flows&precision=ns", data=body)
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 204
        for query in _targets("influxdb"):
            rows = influx.query("flows", _influx_macros(query))
            assert rows, f"no data for {query}"


def test_promql_queries_return_data(tmp_path: Path) -> None:
    port = free_port()

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        sink = SinkSpec(name="out", type="file", address=str(tmp_path / "out.jsonl"))
        options = FlowsOptions(sinks=(sink,), metrics=f"127.0.0.1:{port}", flow_metrics=True)
        service = FlowService(options)
        await service.start_sinks()
        service.metrics.dump_seconds.observe(0.01)
        service.metrics.tracked.set(3)
        service.metrics.events.labels("new").inc()
        try:
            with prometheus(tmp_path, f"127.0.0.1:{port}") as prom:
                results: dict[str, list[dict[str, Any]]] = {}
                deadline = time.monotonic() + 40
                pending = _targets("prometheus")
                while pending and time.monotonic() < deadline:
                    # Keep traffic flowing so every rate() has an increase to see.
                    service.publish(_records(time.time_ns()))
                    service.metrics.dump_seconds.observe(0.01)
                    service.metrics.events.labels("new").inc()
                    await asyncio.sleep(1)
                    for expr in list(pending):
                        promql = expr.replace("$__rate_interval", "1m")
                        found = await asyncio.to_thread(prom.query, promql)
                        if found:
                            results[expr] = found
                            pending.remove(expr)
                assert not pending, f"no data for {pending}"
                return results
        finally:
            await service.close()

    results = asyncio.run(scenario())
    assert set(results) == set(_targets("prometheus"))

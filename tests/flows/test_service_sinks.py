"""Sinks end to end: a real InfluxDB 1.6 and a real Prometheus 2.42 (Debian packages),
and, where no real server can run here, small fake HTTP endpoints that say so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.flows.conntrack_netns import conntrack_netns
from tests.flows.servers import free_port, influxd, prometheus
from wirecap.flows.config import FlowsOptions, SinkSpec
from wirecap.flows.curve import NS_PER_S, RateCurve
from wirecap.flows.model import Counters, Event, FlowRecord, FlowTuple
from wirecap.flows.service import FlowService

S = NS_PER_S
_UDP = """
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 0))
client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[1])):
    client.sendto(bytes(int(sys.argv[2])), server.getsockname())
print(client.getsockname()[1])
"""


def _run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())  # type: ignore[arg-type]


async def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _record(event: Event, flow_id: int, time_ns: int, packets: int = 1) -> FlowRecord:
    return FlowRecord(
        event=event,
        flow_id=flow_id,
        time_ns=time_ns,
        start_ns=1_790_000_000 * S,
        stop_ns=None,
        orig=FlowTuple("10.210.0.1", "10.210.0.2", 6, 40000 + flow_id, 443),
        reply=FlowTuple("10.210.0.2", "10.210.0.1", 6, 443, 40000 + flow_id),
        tcp_state=None,
        zone=0,
        mark=0,
        counters_orig=Counters(packets, packets * 100),
        counters_reply=Counters(packets, packets * 50),
        netns=4026531840,
    )


@pytest.mark.netns
def test_influxdb_v1_receives_the_flow_counters(tmp_path: Path) -> None:
    records: list[FlowRecord] = []

    async def scenario(url: str) -> int:
        with conntrack_netns() as ns:
            sink = SinkSpec(
                name="influx",
                type="influxdb",
                address=url,
                database="flows",
                batch_size=50,
                flush_interval_ns=S // 5,
            )
            options = FlowsOptions(
                netns=ns.name,
                dump_interval_ns=S // 4,
                curve=RateCurve.of([(0, S // 2)]),
                sinks=(sink,),
            )
            service = FlowService(options, on_record=records.append)
            await service.start()
            try:
                port = int(await asyncio.to_thread(ns.python, _UDP, "4", "72"))
                await _wait(
                    lambda: any(r.event is Event.DESTROY and r.orig.sport == port for r in records),
                    30,
                    "the DESTROY record",
                )
                await _wait(lambda: service.sinks[0].sent == len(records), 10, "the writes")
            finally:
                await service.close()
            assert service.sinks[0].dropped_failed == 0
            return port

    with influxd(tmp_path) as influx:
        port = _run(lambda: scenario(influx.url))
        flow_id = next(r.flow_id for r in records if r.orig.sport == port)
        rows = influx.query(
            "flows",
            f"SELECT * FROM ct_acct WHERE \"flow_id\"::tag = '{flow_id}' AND event = 'destroy'",
        )
    assert len(rows) == 1
    row = rows[0]
    assert row["packets_orig"] == 4 and row["bytes_orig"] == 4 * (72 + 28)
    assert row["packets_total"] == 4 and row["bytes_total"] == 4 * 100
    assert row["proto"] == "udp" and row["dst_addr"] == "127.0.0.1"
    assert "src_port" not in row  # off unless source_ports is set (cardinality)


def test_influxdb_v2_write_request(tmp_path: Path) -> None:
    """A FAKE /api/v2/write endpoint (Debian's 1.6.7 has no v2 API, it answers 404):
    checks the request shape of the InfluxDB v2 API reference, "Write data"
    (POST /api/v2/write?org=&bucket=&precision=ns, Authorization: Token ...)."""
    seen: list[tuple[str, dict[str, str], str, str]] = []

    async def write(request: web.Request) -> web.Response:
        seen.append(
            (
                request.path,
                dict(request.query),
                request.headers["Authorization"],
                await request.text(),
            )
        )
        return web.Response(status=204)

    async def scenario() -> FlowService:
        app = web.Application()
        app.router.add_post("/api/v2/write", write)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        sink = SinkSpec(
            name="v2",
            type="influxdb",
            address=f"http://127.0.0.1:{port}",
            org="o",
            bucket="b",
            token="t0k",
            batch_size=2,
            flush_interval_ns=S,
        )
        service = FlowService(FlowsOptions(sinks=(sink,)))
        await service.start_sinks()
        try:
            service.publish([_record(Event.NEW, 1, 10), _record(Event.DESTROY, 1, 20)])
            await _wait(lambda: service.sinks[0].sent == 2, 10, "the write")
        finally:
            await service.close()
            await runner.cleanup()
        return service

    _run(scenario)
    [(path, query, auth, body)] = seen
    assert path == "/api/v2/write"
    assert query == {"org": "o", "bucket": "b", "precision": "ns"}
    assert auth == "Token t0k"
    assert body.count("\n") == 2 and body.startswith("ct_acct,")


def test_influxdb_v2_against_the_real_1_6_server_is_refused_not_retried(tmp_path: Path) -> None:
    async def scenario(url: str) -> FlowService:
        sink = SinkSpec(
            name="v2",
            type="influxdb",
            address=url,
            org="o",
            bucket="b",
            token="t",
            batch_size=1,
            flush_interval_ns=0,
        )
        service = FlowService(FlowsOptions(sinks=(sink,)))
        await service.start_sinks()
        try:
            service.publish([_record(Event.NEW, 1, 10)])
            await _wait(lambda: service.sinks[0].dropped_failed == 1, 10, "the refusal")
        finally:
            await service.close()
        return service

    with influxd(tmp_path) as influx:
        service = _run(lambda: scenario(influx.url))
    assert service.sinks[0].sent == 0


@pytest.mark.netns
def test_prometheus_scrapes_the_pipeline_counters(tmp_path: Path) -> None:
    port = free_port()

    async def scenario() -> list[dict[str, Any]]:
        with conntrack_netns() as ns:
            options = FlowsOptions(
                netns=ns.name,
                dump_interval_ns=S // 4,
                sinks=(),
                metrics=f"127.0.0.1:{port}",
                flow_metrics=True,
            )
            service = FlowService(options)
            await service.start()
            try:
                await asyncio.to_thread(ns.python, _UDP, "3", "10")
                with prometheus(tmp_path, f"127.0.0.1:{port}") as prom:

                    async def scraped() -> list[dict[str, Any]]:
                        # Scraped after the flow ended: its DESTROY record counted.
                        return await asyncio.to_thread(
                            prom.query, 'wirecap_flows_records_total{event="destroy"}'
                        )

                    deadline = time.monotonic() + 30
                    while not (result := await scraped()) and time.monotonic() < deadline:
                        await asyncio.sleep(0.5)
                    events = await asyncio.to_thread(
                        prom.query, 'wirecap_flows_events_total{type="new"}'
                    )
                    dumps = await asyncio.to_thread(prom.query, "wirecap_flows_dumps_total")
                    lost = await asyncio.to_thread(prom.query, "wirecap_flows_lost_events_total")
                    udp = await asyncio.to_thread(
                        prom.query, 'wirecap_flows_packets_total{proto="udp",direction="orig"}'
                    )
                    return [*result, *events, *dumps, *lost, *udp]
            finally:
                await service.close()

    result = _run(scenario)
    values = {r["metric"]["__name__"]: float(r["value"][1]) for r in result}
    assert values["wirecap_flows_events_total"] >= 1
    assert values["wirecap_flows_dumps_total"] >= 1
    assert values["wirecap_flows_lost_events_total"] == 0
    assert values["wirecap_flows_records_total"] >= 1
    # Per-flow aggregates by (proto, port): the 3 datagrams of the ended flow.
    assert values["wirecap_flows_packets_total"] == 3

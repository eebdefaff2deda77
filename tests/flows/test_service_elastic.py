"""The Elasticsearch sink against a FAKE ``_bulk`` endpoint.

No Elasticsearch or OpenSearch server can be installed here, so this is a small
hand-written fake that checks every request against the documented API and
answers as the documentation says a server does:

- Elasticsearch Reference, "Bulk API" (docs-bulk): POST /_bulk, Content-Type
  application/x-ndjson, action and source lines alternating, "The final line of
  data must end with a newline character"; the response has ``errors`` and one
  ``items`` entry per action in order, each with its own ``status``.
- "Update API" (docs-update), "scripted_upsert": the script runs for the
  insert too, on an empty ``upsert`` document; ``ctx.op = 'none'`` leaves the
  document as it is and the item reports ``result: noop``.
- "Create or update index template API" (indices-put-template): PUT
  /_index_template/NAME with ``index_patterns``.

The fake applies our painless script's rule in Python (it cannot run painless):
that models the server side; what is tested is that the client sends the
script, ids and indices the server needs, retries only what is worth retrying,
and counts the rest.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from wirecap.flows import elastic
from wirecap.flows.config import FlowsOptions, SinkSpec
from wirecap.flows.curve import NS_PER_S
from wirecap.flows.model import Counters, Event, FlowRecord, FlowTuple
from wirecap.flows.service import FlowService

S = NS_PER_S
START = 1_795_000_000 * S  # 2026-11-18


def _record(event: Event, flow_id: int, time_ns: int, packets: int) -> FlowRecord:
    return FlowRecord(
        event=event,
        flow_id=flow_id,
        time_ns=time_ns,
        start_ns=START,
        stop_ns=None,
        orig=FlowTuple("10.210.0.1", "10.210.0.2", 6, 40000 + flow_id, 443),
        reply=FlowTuple("10.210.0.2", "10.210.0.1", 6, 443, 40000 + flow_id),
        tcp_state=None,
        zone=0,
        mark=0,
        counters_orig=Counters(packets, packets * 100),
        counters_reply=Counters(0, 0),
        netns=4026531840,
    )


class FakeElasticsearch:
    def __init__(self) -> None:
        self.templates: dict[str, dict[str, Any]] = {}
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests = 0
        #: Statuses the next bulk answers with, per position; then 200s.
        self.scripted_failures: list[dict[int, tuple[int, str]]] = []

    async def put_template(self, request: web.Request) -> web.Response:
        body = await request.json()
        assert isinstance(body["index_patterns"], list)
        assert body["template"]["mappings"]["properties"]["start"]["type"] == "date"
        self.templates[request.match_info["name"]] = body
        return web.json_response({"acknowledged": True})

    async def bulk(self, request: web.Request) -> web.Response:
        self.requests += 1
        assert request.headers["Content-Type"] == "application/x-ndjson"
        text = await request.text()
        assert text.endswith("\n"), "bulk body must end with a newline"
        lines = text[:-1].split("\n")
        assert len(lines) % 2 == 0, "action and source lines alternate"
        failures = self.scripted_failures.pop(0) if self.scripted_failures else {}
        items = []
        for position in range(len(lines) // 2):
            action = json.loads(lines[2 * position])
            source = json.loads(lines[2 * position + 1])
            [(op, meta)] = action.items()
            assert op == "update"
            index, doc_id = meta["_index"], meta["_id"]
            assert index == index.lower()
            assert any(
                fnmatch.fnmatchcase(index, pattern)
                for t in self.templates.values()
                for pattern in t["index_patterns"]
            ), f"no index template matches {index}"
            assert source["scripted_upsert"] is True and source["upsert"] == {}
            assert source["script"]["source"] == elastic.UPSERT_SCRIPT
            if position in failures:
                status, kind = failures[position]
                items.append(
                    {
                        op: {
                            "_index": index,
                            "_id": doc_id,
                            "status": status,
                            "error": {"type": kind, "reason": "fake"},
                        }
                    }
                )
                continue
            items.append(
                {
                    op: {
                        "_index": index,
                        "_id": doc_id,
                        **self._apply(index, doc_id, source["script"]["params"]["doc"]),
                    }
                }
            )
        errors = any(next(iter(i.values()))["status"] >= 300 for i in items)
        return web.json_response({"took": 1, "errors": errors, "items": items})

    def _apply(self, index: str, doc_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        # The rule of UPSERT_SCRIPT: finished stays finished; older never overwrites newer.
        stored = self.docs.get((index, doc_id))
        if stored is not None and (
            stored["flow_state"] == "finished" or stored["timestamp"] > doc["timestamp"]
        ):
            return {"status": 200, "result": "noop"}
        self.docs[(index, doc_id)] = {**(stored or {}), **doc}
        return {
            "status": 201 if stored is None else 200,
            "result": "created" if stored is None else "updated",
        }


async def _serve(fake: FakeElasticsearch) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_put("/_index_template/{name}", fake.put_template)
    app.router.add_post("/_bulk", fake.bulk)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def _sink(url: str, batch: int = 10) -> SinkSpec:
    return SinkSpec(
        name="es",
        type="elasticsearch",
        address=url,
        database="flows",
        hostname="Host1",
        batch_size=batch,
        flush_interval_ns=S // 20,
    )


def test_one_document_per_flow_and_a_late_update_cannot_reopen_it() -> None:
    fake = FakeElasticsearch()

    async def scenario() -> FlowService:
        runner, url = await _serve(fake)
        service = FlowService(FlowsOptions(sinks=(_sink(url, batch=1),)))
        await service.start_sinks()
        try:
            service.publish(
                [
                    _record(Event.NEW, 7, START, 0),
                    _record(Event.UPDATE, 7, START + S, 5),
                    _record(Event.DESTROY, 7, START + 3 * S, 9),
                    # A late update, read after the destroy:
                    _record(Event.UPDATE, 7, START + 2 * S, 8),
                ]
            )
            await _wait(lambda: service.sinks[0].sent == 4, 10, "four writes")
        finally:
            await service.close()
            await runner.cleanup()
        return service

    _run(scenario)
    assert list(fake.templates) == ["flows"]
    [(key, doc)] = fake.docs.items()
    assert key[0] == "flows-host1-2026.11.18"
    assert key[1] == elastic.document_id(_record(Event.NEW, 7, START, 0), "Host1")
    assert doc["flow_state"] == "finished" and doc["packets_orig"] == 9


def test_partial_failure_retries_only_what_is_worth_it() -> None:
    fake = FakeElasticsearch()
    # Item 0 rejected by a full write queue (429: retry), item 1 refused for good
    # (400 mapper_parsing_exception: drop and count), item 2 written.
    fake.scripted_failures = [
        {0: (429, "es_rejected_execution_exception"), 1: (400, "mapper_parsing_exception")}
    ]

    async def scenario() -> FlowService:
        runner, url = await _serve(fake)
        service = FlowService(FlowsOptions(sinks=(_sink(url, batch=3),)))
        await service.start_sinks()
        try:
            service.publish([_record(Event.NEW, i, START, 1) for i in (1, 2, 3)])
            await _wait(lambda: service.sinks[0].sent == 2, 15, "the retry")
        finally:
            await service.close()
            await runner.cleanup()
        return service

    service = _run(scenario)
    state = service.sinks[0]
    assert state.dropped_failed == 1 and state.sent == 2
    assert fake.requests == 2  # the first bulk, then one retry holding item 0 alone
    assert {doc["flow_id"] for doc in fake.docs.values()} == {1, 3}
    failed = service.registry.get_sample_value(
        "wirecap_flows_sink_dropped_records_total", {"sink": "es", "reason": "write_failed"}
    )
    assert failed == 1


def test_whole_bulk_503_is_retried() -> None:
    fake = FakeElasticsearch()

    async def bulk_503_once(request: web.Request) -> web.Response:
        if fake.requests == 0:
            fake.requests += 1
            return web.json_response({"error": "unavailable"}, status=503)
        return await fake.bulk(request)

    async def scenario() -> FlowService:
        app = web.Application()
        app.router.add_put("/_index_template/{name}", fake.put_template)
        app.router.add_post("/_bulk", bulk_503_once)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        service = FlowService(FlowsOptions(sinks=(_sink(f"http://127.0.0.1:{port}"),)))
        await service.start_sinks()
        try:
            service.publish([_record(Event.DESTROY, 1, START, 2)])
            await _wait(lambda: service.sinks[0].sent == 1, 15, "the retried write")
        finally:
            await service.close()
            await runner.cleanup()
        return service

    service = _run(scenario)
    assert service.sinks[0].dropped_failed == 0
    assert fake.requests == 2

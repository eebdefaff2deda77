"""Elasticsearch / OpenSearch documents and ``_bulk`` bodies for flows (pure).

Plain HTTP and NDJSON, no client library: elasticsearch-py refuses a server of
another major version, while ``_bulk`` with ``update`` actions, ``scripted_upsert``
and composable index templates mean the same on Elasticsearch 7.8+, 8, 9 and
OpenSearch 1–2 (Elasticsearch reference, "Bulk API" and "Update API";
OpenSearch "Bulk" and "Update document").

One document per flow:

- ``_id`` = first 20 bytes of SHA-256 over (host, netns, conntrack id, flow
  start), hex: conntrack reuses ids, so the id alone would merge two flows;
- index ``<prefix>-<host>-YYYY.MM.DD`` dated by the flow's *start* (UTC), so all
  records of a flow land in the same index even across midnight; the index
  template's pattern ``<prefix>-*`` matches it (conntracct's never matched);
- written with a bulk ``update`` whose painless script runs on the server for
  both the insert and the update (``scripted_upsert``). It keeps a finished
  flow finished and never lets an older record overwrite a newer one (by
  ``timestamp``), which fixes conntracct's late-update race on the server,
  where concurrent writers meet, not only in this process.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from wirecap.flows.model import Event, FlowRecord, proto_name

__all__ = [
    "RETRY_STATUSES",
    "UPSERT_SCRIPT",
    "BulkOutcome",
    "bulk_body",
    "decode_bulk_response",
    "document",
    "document_id",
    "index_name",
    "index_template",
]

#: Item or request statuses worth sending again: rejected by a full queue
#: (429), or a node briefly unavailable (502/503/504).
RETRY_STATUSES = frozenset({429, 502, 503, 504})

#: Runs for the insert too (scripted_upsert): ctx._source is then the empty
#: upsert body. 'none' leaves the stored document untouched.
UPSERT_SCRIPT = (
    "if (ctx._source.flow_state == 'finished' || "
    "(ctx._source.timestamp != null && ctx._source.timestamp > params.doc.timestamp)) "
    "{ ctx.op = 'none' } else { ctx._source.putAll(params.doc) }"
)


def document_id(record: FlowRecord, hostname: str) -> str:
    key = f"{hostname}\0{record.netns}\0{record.flow_id}\0{record.start_ns or 0}"
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def _day(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y.%m.%d")


def index_name(record: FlowRecord, prefix: str, hostname: str) -> str:
    # Index names must be lowercase (Elasticsearch "Create index API", path parameters).
    return f"{prefix}-{hostname}-{_day(record.start_ns or record.time_ns)}".lower()


def document(record: FlowRecord, hostname: str) -> dict[str, Any]:
    """The stored form: epoch milliseconds for dates (conntracct avoided date_nanos)."""
    orig = record.orig
    doc: dict[str, Any] = {
        "flow_state": "finished" if record.event is Event.DESTROY else "established",
        "event": record.event.value,
        "hostname": hostname,
        "flow_id": record.flow_id,
        "start": (record.start_ns or record.time_ns) // 1_000_000,
        "timestamp": record.time_ns // 1_000_000,
        "src_addr": orig.src,
        "dst_addr": orig.dst,
        "src_port": orig.sport,
        "dst_port": orig.dport,
        "proto": orig.proto,
        "proto_name": proto_name(orig.proto),
        "connmark": record.mark,
        "zone": record.zone,
        "netns": record.netns,
        "packets_orig": record.counters_orig.packets,
        "bytes_orig": record.counters_orig.bytes,
        "packets_ret": record.counters_reply.packets,
        "bytes_ret": record.counters_reply.bytes,
        "packets_total": record.packets_total,
        "bytes_total": record.bytes_total,
        "complete": record.complete,
    }
    if record.stop_ns:
        doc["stop"] = record.stop_ns // 1_000_000
    if record.reply is not None:
        doc["reply_src_addr"] = record.reply.src
        doc["reply_dst_addr"] = record.reply.dst
        doc["reply_src_port"] = record.reply.sport
        doc["reply_dst_port"] = record.reply.dport
    if record.tcp_state is not None:
        doc["tcp_state"] = record.tcp_state.name
    return doc


def bulk_body(records: Iterable[FlowRecord], prefix: str, hostname: str) -> bytes:
    """NDJSON: an ``update`` action line and its body per record, newline-terminated.

    Bulk API: "The final line of data must end with a newline character \\n".
    """
    lines: list[str] = []
    for record in records:
        action = {
            "update": {
                "_index": index_name(record, prefix, hostname),
                "_id": document_id(record, hostname),
                "retry_on_conflict": 3,
            }
        }
        body = {
            "scripted_upsert": True,
            "upsert": {},
            "script": {
                "lang": "painless",
                "source": UPSERT_SCRIPT,
                "params": {"doc": document(record, hostname)},
            },
        }
        lines.append(json.dumps(action, separators=(",", ":")))
        lines.append(json.dumps(body, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode() if lines else b""


def index_template(prefix: str, *, shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    """A composable template (PUT _index_template/NAME) for ``<prefix>-*``."""
    long_fields = (
        "packets_orig",
        "bytes_orig",
        "packets_ret",
        "bytes_ret",
        "packets_total",
        "bytes_total",
        "netns",
        "connmark",
        "flow_id",
    )
    properties: dict[str, Any] = {name: {"type": "long"} for name in long_fields}
    properties.update(
        {
            "src_addr": {"type": "ip"},
            "dst_addr": {"type": "ip"},
            "reply_src_addr": {"type": "ip"},
            "reply_dst_addr": {"type": "ip"},
            "src_port": {"type": "integer"},
            "dst_port": {"type": "integer"},
            "reply_src_port": {"type": "integer"},
            "reply_dst_port": {"type": "integer"},
            "proto": {"type": "short"},
            "zone": {"type": "integer"},
            "proto_name": {"type": "keyword"},
            "flow_state": {"type": "keyword"},
            "event": {"type": "keyword"},
            "tcp_state": {"type": "keyword"},
            "hostname": {"type": "keyword"},
            "complete": {"type": "boolean"},
            "start": {"type": "date", "format": "epoch_millis"},
            "stop": {"type": "date", "format": "epoch_millis"},
            "timestamp": {"type": "date", "format": "epoch_millis"},
        }
    )
    return {
        "index_patterns": [f"{prefix.lower()}-*"],
        "template": {
            "settings": {"number_of_shards": shards, "number_of_replicas": replicas},
            "mappings": {"dynamic": "false", "properties": properties},
        },
    }


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """What became of one bulk request, item by item."""

    sent: int
    retry: tuple[int, ...]
    failed: int
    errors: tuple[str, ...]


def decode_bulk_response(status: int, body: bytes, count: int) -> BulkOutcome:
    """Sort a ``_bulk`` answer into written, worth retrying (indices) and failed.

    Bulk API, "Response body": ``errors`` is true when any item failed, and
    ``items`` holds one result per action, in request order, each with its own
    ``status`` and, on failure, ``error``. A ``noop`` result (our script chose
    'none') is a success.
    """
    everything = tuple(range(count))
    if status in RETRY_STATUSES:
        return BulkOutcome(0, everything, 0, (f"HTTP {status}",))
    if status != 200:
        return BulkOutcome(0, (), count, (f"HTTP {status}: {body[:200]!r}",))
    try:
        answer = json.loads(body)
        items: Sequence[Any] = answer["items"]
    except (ValueError, KeyError, TypeError):
        return BulkOutcome(0, everything, 0, ("bulk answer is not JSON with items",))
    if len(items) != count:
        return BulkOutcome(0, everything, 0, (f"{len(items)} bulk items for {count} actions",))
    sent = failed = 0
    retry: list[int] = []
    errors: list[str] = []
    for position, item in enumerate(items):
        result: Any = next(iter(item.values()), {}) if isinstance(item, dict) else {}
        item_status = result.get("status", 0) if isinstance(result, dict) else 0
        if isinstance(item_status, int) and 200 <= item_status < 300:
            sent += 1
        elif item_status in RETRY_STATUSES:
            retry.append(position)
        else:
            failed += 1
            error = result.get("error") if isinstance(result, dict) else None
            errors.append(json.dumps(error)[:200] if error else f"status {item_status}")
    return BulkOutcome(sent, tuple(retry), failed, tuple(errors))

"""InfluxDB line protocol for flow records (pure: records in, bytes out).

Measurement ``ct_acct`` as conntracct wrote it (reference §1.7), so its
dashboards keep working: tags ``connmark`` (lowercase hex), ``dst_addr``,
``dst_port``, ``flow_id``, ``netns``, ``proto``, ``src_addr`` and, when asked,
``src_port``; integer fields per direction and total plus the ``flow_id``
string field. Added: the ``event`` string field (conntracct could not tell an
update from a destroy) and the reply-direction addresses as fields
(``reply_src``/``reply_dst``: the NAT view), which cost no series cardinality.

Escaping follows the line protocol reference ("Special characters", InfluxDB
1.x and 2.x docs alike): in the measurement commas and spaces are escaped; in
tag keys, tag values and field keys commas, equals signs and spaces; in string
field values double quotes and backslashes. A tag value cannot be empty, so
an empty one is left out. Integers carry the ``i`` suffix (signed int64;
unsigned ``u`` is not understood by InfluxDB 1.6).

Requests: v1 ``POST /write?db=DB&precision=ns`` (the only write API of the
Debian server, 1.6.7); v2 ``POST /api/v2/write?org=O&bucket=B&precision=ns``
with ``Authorization: Token T``.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode

from wirecap.flows.model import FlowRecord, proto_name

__all__ = [
    "MEASUREMENT",
    "encode_line",
    "encode_lines",
    "escape_field_string",
    "escape_key",
    "escape_measurement",
    "write_path",
]

MEASUREMENT = "ct_acct"


def escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("\n", "\\n")


def escape_key(text: str) -> str:
    """Tag keys, tag values and field keys: commas, equals signs and spaces."""
    return (
        text.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace("=", "\\=")
        .replace(" ", "\\ ")
        .replace("\n", "\\n")
    )


def escape_field_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_line(
    record: FlowRecord, *, source_ports: bool = False, measurement: str = MEASUREMENT
) -> str:
    orig = record.orig
    tags = {
        "connmark": format(record.mark, "x"),
        "dst_addr": orig.dst,
        "dst_port": str(orig.dport),
        "flow_id": str(record.flow_id),
        "netns": str(record.netns),
        "proto": proto_name(orig.proto),
        "src_addr": orig.src,
    }
    if source_ports:
        tags["src_port"] = str(orig.sport)
    if record.zone:
        tags["zone"] = str(record.zone)
    tag_text = "".join(
        f",{escape_key(key)}={escape_key(value)}" for key, value in sorted(tags.items()) if value
    )
    fields = [
        f"bytes_orig={record.counters_orig.bytes}i",
        f"bytes_ret={record.counters_reply.bytes}i",
        f"bytes_total={record.bytes_total}i",
        f"event={escape_field_string(record.event.value)}",
        f"flow_id={escape_field_string(str(record.flow_id))}",
        f"packets_orig={record.counters_orig.packets}i",
        f"packets_ret={record.counters_reply.packets}i",
        f"packets_total={record.packets_total}i",
    ]
    if record.reply is not None:
        fields.append(f"reply_dst={escape_field_string(record.reply.dst)}")
        fields.append(f"reply_src={escape_field_string(record.reply.src)}")
    return f"{escape_measurement(measurement)}{tag_text} {','.join(fields)} {record.time_ns}"


def encode_lines(records: Iterable[FlowRecord], *, source_ports: bool = False) -> bytes:
    return "".join(
        encode_line(record, source_ports=source_ports) + "\n" for record in records
    ).encode()


def write_path(*, database: str = "", org: str = "", bucket: str = "", v2: bool = False) -> str:
    """The path and query of a write request, precision ns."""
    if v2:
        return "/api/v2/write?" + urlencode({"org": org, "bucket": bucket, "precision": "ns"})
    return "/write?" + urlencode({"db": database, "precision": "ns"})

"""Analysis: what went wrong in a captured TCP connection, with evidence.

Pure: packets in, a frozen `Report` out; it imports only ``wirecap.core`` and
``wirecap.errors``. Front ends (``wirecap analyze``, proxy summaries and mails, plots)
read the report::

    report = analyze_file("download.pcap")
    for connection in report.connections:
        print(connection.index, connection.verdict.label, connection.verdict.detail)
    print(render_text(report))
    json.dump(to_json(report), sys.stdout)

Modules, in the order the data flows:

- ``tracker``: the one per-packet pass; connections numbered as tshark's ``tcp.stream``.
- ``facts``: one chronological pass per connection, measuring everything in ``model``.
- ``verdicts``: the ordered rule table that turns facts into findings.
- ``thresholds``: every named threshold, its default and its reason.
- ``model``: the frozen values of a report (``TimeSequence`` feeds plots).
- ``render``: text for people, JSON for programs (``report.schema.json`` is its schema);
  ``units`` writes durations and sizes.
- ``analyze``: the entry points.
"""

from wirecap.analysis.analyze import analyze_events, analyze_file, analyze_packets
from wirecap.analysis.model import (
    Close,
    CloseEvent,
    CloseKind,
    Connection,
    ConnectionFacts,
    Direction,
    Endpoint,
    Evidence,
    Finding,
    Handshake,
    IcmpError,
    IcmpKind,
    PacketRef,
    Report,
    Retransmission,
    RoleSource,
    SackReport,
    Side,
    SpuriousCause,
    TimeSequence,
    Vantage,
    Verdict,
    ZeroWindow,
)
from wirecap.analysis.render import SCHEMA_VERSION, render_connection, render_text, schema, to_json
from wirecap.analysis.thresholds import DEFAULT_THRESHOLDS, Thresholds
from wirecap.analysis.verdicts import RULES

__all__ = [
    "DEFAULT_THRESHOLDS",
    "RULES",
    "SCHEMA_VERSION",
    "Close",
    "CloseEvent",
    "CloseKind",
    "Connection",
    "ConnectionFacts",
    "Direction",
    "Endpoint",
    "Evidence",
    "Finding",
    "Handshake",
    "IcmpError",
    "IcmpKind",
    "PacketRef",
    "Report",
    "Retransmission",
    "RoleSource",
    "SackReport",
    "Side",
    "SpuriousCause",
    "Thresholds",
    "TimeSequence",
    "Vantage",
    "Verdict",
    "ZeroWindow",
    "analyze_events",
    "analyze_file",
    "analyze_packets",
    "render_connection",
    "render_text",
    "schema",
    "to_json",
]

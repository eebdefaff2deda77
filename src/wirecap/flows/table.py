"""The flow table: conntrack messages and dumps in, accounting records out (pure).

Netlink events carry counters only on DESTROY (reference §2.2), so live
counters come from table dumps; this table joins both:

- NEW event: the flow is registered and a ``new`` record (zero counters) goes out;
- dump entry: counters are refreshed; an ``update`` record goes out when the
  flow is due by the rate curve *and* its counters moved since the last record;
- UPDATE event (a state change, no counters): TCP state and mark are refreshed,
  nothing is emitted;
- DESTROY event: the ``destroy`` record with the kernel's final counters and
  start/stop times; the flow is forgotten and remembered as a tombstone until a
  dump that began after it, so a dump read before the DESTROY cannot bring the
  flow back.
- A flow missing from two complete dumps in a row (both begun after it was last
  seen) ended while its DESTROY event was lost (ENOBUFS): a ``destroy`` record
  with the last counters read and ``complete=False`` goes out. One absence is
  not enough, because a dump itself reaps expired entries and their DESTROY
  events may still be unread.

Flows are keyed by CTA_ID; an ID met again with another original tuple is a
reused ID, so the old flow is closed first. A flow first met in a dump that
began before this table did (it was alive at start-up) is back-dated by the
curve's second point, as conntracct does, to avoid a storm of fast updates.

Time is passed in (``now_ns``, wall clock); nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from wirecap.flows.curve import RateCurve
from wirecap.flows.model import Counters, Event, FlowRecord, FlowTuple, TcpState
from wirecap.flows.netlink import Conntrack, Kind

__all__ = ["DEFAULT_MAX_FLOWS", "FlowTable", "TableStats"]

#: The kernel's own default nf_conntrack_max on a machine with a few GB of RAM;
#: a table this full costs ~100 MB here. Past it new flows still get their
#: DESTROY record (built from the event alone) but no updates, and are counted.
DEFAULT_MAX_FLOWS = 262_144

_ZERO = Counters()


@dataclass(slots=True)
class _Flow:
    orig: FlowTuple
    reply: FlowTuple | None
    tcp_state: TcpState | None
    zone: int
    mark: int
    start_ns: int | None
    origin_ns: int
    next_due_ns: int
    counters_orig: Counters = _ZERO
    counters_reply: Counters = _ZERO
    sent_orig: Counters = _ZERO
    sent_reply: Counters = _ZERO
    seen_ns: int = 0


@dataclass(slots=True)
class TableStats:
    tracked: int = 0
    untracked: int = 0
    vanished: int = 0
    reused_ids: int = 0
    stale_dump_entries: int = 0
    late_destroys: int = 0


@dataclass
class FlowTable:
    curve: RateCurve
    netns: int
    started_ns: int
    netns_name: str = ""
    max_flows: int = DEFAULT_MAX_FLOWS
    stats: TableStats = field(default_factory=TableStats)
    _flows: dict[int, _Flow] = field(default_factory=dict)
    _tombstones: dict[tuple[int, FlowTuple], int] = field(default_factory=dict)
    _dump_started_ns: int | None = None
    _dumped: set[int] = field(default_factory=set)
    _missing: set[int] = field(default_factory=set)
    _previous_dump_ns: int | None = None

    def __len__(self) -> int:
        return len(self._flows)

    # -- events -------------------------------------------------------------

    def apply(self, ct: Conntrack, now_ns: int) -> list[FlowRecord]:
        """Records caused by one decoded message (events and dump entries alike)."""
        if ct.kind is Kind.DESTROY:
            return self._destroy(ct, now_ns)
        if ct.kind is Kind.NEW:
            self._tombstones.pop((ct.id, ct.orig), None)
        elif (ct.id, ct.orig) in self._tombstones:
            self.stats.stale_dump_entries += 1
            return []
        records: list[FlowRecord] = []
        flow = self._flows.get(ct.id)
        if flow is not None and flow.orig != ct.orig:
            # CTA_ID reused: the flow we knew ended without a DESTROY we saw.
            self.stats.reused_ids += 1
            records.append(self._vanished(ct.id, flow, now_ns))
            flow = None
        if ct.kind is Kind.DUMP:
            self._dumped.add(ct.id)
            if flow is None:
                records.extend(self._first_in_dump(ct, now_ns))
            else:
                records.extend(self._refresh(ct.id, flow, ct, now_ns))
            return records
        # NEW or UPDATE event.
        if flow is None:
            when = self._event_time(ct, now_ns)
            created = self._register(ct, now_ns, origin_ns=when)
            if created is not None:
                records.append(self._record(Event.NEW, ct.id, created, when))
            return records
        self._merge_state(flow, ct, now_ns)
        return records

    def _event_time(self, ct: Conntrack, now_ns: int) -> int:
        return ct.event_ns or now_ns

    def _register(self, ct: Conntrack, now_ns: int, *, origin_ns: int) -> _Flow | None:
        if len(self._flows) >= self.max_flows:
            self.stats.untracked += 1
            return None
        flow = _Flow(
            orig=ct.orig,
            reply=ct.reply,
            tcp_state=ct.tcp_state,
            zone=ct.zone,
            mark=ct.mark or 0,
            start_ns=ct.start_ns,
            origin_ns=origin_ns,
            next_due_ns=origin_ns + self.curve.interval_ns(max(0, now_ns - origin_ns)),
            seen_ns=now_ns,
        )
        self._flows[ct.id] = flow
        self.stats.tracked = len(self._flows)
        return flow

    def _first_in_dump(self, ct: Conntrack, now_ns: int) -> list[FlowRecord]:
        packets = (ct.counters_orig or _ZERO).packets + (ct.counters_reply or _ZERO).packets
        alive_before = ct.start_ns < self.started_ns if ct.start_ns is not None else packets > 1
        if alive_before:
            origin = max(0, (ct.start_ns or now_ns) - self.curve.backdate_ns)
            origin = min(origin, now_ns - self.curve.backdate_ns)
        else:
            # Born after start-up but its NEW event was not read yet (or lost).
            origin = ct.start_ns or now_ns
        flow = self._register(ct, now_ns, origin_ns=origin)
        if flow is None:
            return []
        flow.counters_orig = ct.counters_orig or _ZERO
        flow.counters_reply = ct.counters_reply or _ZERO
        flow.sent_orig, flow.sent_reply = flow.counters_orig, flow.counters_reply
        flow.next_due_ns = now_ns + self.curve.interval_ns(now_ns - origin)
        event = Event.UPDATE if alive_before else Event.NEW
        return [self._record(event, ct.id, flow, now_ns)]

    def _merge_state(self, flow: _Flow, ct: Conntrack, now_ns: int) -> None:
        if ct.reply is not None:
            flow.reply = ct.reply
        if ct.tcp_state is not None:
            flow.tcp_state = ct.tcp_state
        if ct.mark is not None:
            flow.mark = ct.mark
        if ct.start_ns is not None:
            flow.start_ns = ct.start_ns
        flow.seen_ns = now_ns

    def _refresh(self, ct_id: int, flow: _Flow, ct: Conntrack, now_ns: int) -> list[FlowRecord]:
        self._merge_state(flow, ct, now_ns)
        if ct.counters_orig is not None:
            flow.counters_orig = ct.counters_orig
        if ct.counters_reply is not None:
            flow.counters_reply = ct.counters_reply
        if now_ns < flow.next_due_ns:
            return []
        if flow.counters_orig == flow.sent_orig and flow.counters_reply == flow.sent_reply:
            return []  # idle: the curve is a minimum spacing, not a heartbeat
        flow.sent_orig, flow.sent_reply = flow.counters_orig, flow.counters_reply
        flow.next_due_ns = now_ns + self.curve.interval_ns(now_ns - flow.origin_ns)
        return [self._record(Event.UPDATE, ct_id, flow, now_ns)]

    def _destroy(self, ct: Conntrack, now_ns: int) -> list[FlowRecord]:
        if (ct.id, ct.orig) in self._tombstones:
            self.stats.late_destroys += 1
            return []
        records: list[FlowRecord] = []
        self._missing.discard(ct.id)
        flow = self._flows.pop(ct.id, None)
        if flow is not None and flow.orig != ct.orig:
            self.stats.reused_ids += 1
            records.append(self._vanished(ct.id, flow, now_ns))
            flow = None
        self.stats.tracked = len(self._flows)
        self._tombstones[(ct.id, ct.orig)] = now_ns
        when = ct.stop_ns or ct.event_ns or now_ns
        records.append(
            FlowRecord(
                event=Event.DESTROY,
                flow_id=ct.id,
                time_ns=when,
                start_ns=ct.start_ns or (flow.start_ns if flow else None),
                stop_ns=ct.stop_ns,
                orig=ct.orig,
                reply=ct.reply or (flow.reply if flow else None),
                tcp_state=ct.tcp_state
                if ct.tcp_state is not None
                else (flow.tcp_state if flow else None),
                zone=ct.zone,
                mark=ct.mark if ct.mark is not None else (flow.mark if flow else 0),
                counters_orig=ct.counters_orig or (flow.counters_orig if flow else _ZERO),
                counters_reply=ct.counters_reply or (flow.counters_reply if flow else _ZERO),
                netns=self.netns,
                netns_name=self.netns_name,
                complete=ct.counters_orig is not None,
            )
        )
        return records

    # -- dumps --------------------------------------------------------------

    def begin_dump(self, now_ns: int) -> None:
        self._dump_started_ns = now_ns
        self._dumped = set()

    def end_dump(self, now_ns: int) -> list[FlowRecord]:
        """Close flows two complete dumps in a row no longer held; prune tombstones.

        One absence is not enough: a dump reaps expired entries itself, and
        their DESTROY events may still sit unread in the event socket.
        """
        started = self._dump_started_ns
        self._dump_started_ns = None
        if started is None:
            return []
        records: list[FlowRecord] = []
        missing: set[int] = set()
        for ct_id, flow in list(self._flows.items()):
            if ct_id in self._dumped or flow.seen_ns >= started:
                continue
            if ct_id not in self._missing:
                missing.add(ct_id)
                continue
            del self._flows[ct_id]
            self.stats.vanished += 1
            self._tombstones[(ct_id, flow.orig)] = now_ns
            records.append(self._vanished(ct_id, flow, now_ns))
        self._missing = missing
        self.stats.tracked = len(self._flows)
        # A dump begun after a DESTROY cannot contain that flow any more; keep
        # tombstones one dump longer for DESTROY events still unread.
        self._tombstones = {
            k: t
            for k, t in self._tombstones.items()
            if self._previous_dump_ns is None or t >= self._previous_dump_ns
        }
        self._previous_dump_ns = started
        self._dumped = set()
        return records

    def abort_dump(self) -> None:
        """A dump cut short (ENOBUFS, error): absence proves nothing, keep every flow."""
        self._dump_started_ns = None
        self._dumped = set()

    # -- records ------------------------------------------------------------

    def _vanished(self, ct_id: int, flow: _Flow, now_ns: int) -> FlowRecord:
        return replace(self._record(Event.DESTROY, ct_id, flow, now_ns), complete=False)

    def _record(self, event: Event, ct_id: int, flow: _Flow, now_ns: int) -> FlowRecord:
        return FlowRecord(
            event=event,
            flow_id=ct_id,
            time_ns=now_ns,
            start_ns=flow.start_ns,
            stop_ns=None,
            orig=flow.orig,
            reply=flow.reply,
            tcp_state=flow.tcp_state,
            zone=flow.zone,
            mark=flow.mark,
            counters_orig=flow.counters_orig,
            counters_reply=flow.counters_reply,
            netns=self.netns,
            netns_name=self.netns_name,
        )

"""The flow table: events and dumps in, rate-limited records out, with time passed in."""

from __future__ import annotations

from dataclasses import replace

from wirecap.flows.curve import NS_PER_S, RateCurve
from wirecap.flows.model import Counters, Event, FlowTuple, TcpState
from wirecap.flows.netlink import Conntrack, Kind
from wirecap.flows.table import FlowTable

S = NS_PER_S
T0 = 1_800_000_000 * S
UDP = FlowTuple("10.210.0.1", "10.210.0.2", 17, 40000, 53)
TCP = FlowTuple("10.210.0.1", "10.210.0.2", 6, 40001, 80)
CURVE = RateCurve.of([(0, 2 * S), (10 * S, 5 * S), (30 * S, 20 * S)])


def ct(
    kind: Kind,
    ct_id: int = 1,
    orig: FlowTuple = UDP,
    *,
    packets: int | None = None,
    start: int | None = None,
    stop: int | None = None,
    event: int | None = None,
    state: TcpState | None = None,
) -> Conntrack:
    counters = None if packets is None else Counters(packets, packets * 100)
    return Conntrack(
        kind=kind,
        id=ct_id,
        orig=orig,
        reply=None,
        status=8,
        tcp_state=state,
        zone=0,
        mark=None,
        timeout=None,
        counters_orig=counters,
        counters_reply=counters,
        start_ns=start,
        stop_ns=stop,
        event_ns=event,
    )


def table(started: int = T0) -> FlowTable:
    return FlowTable(curve=CURVE, netns=4026531840, started_ns=started)


def dump(t: FlowTable, now: int, *entries: Conntrack) -> list[Event]:
    t.begin_dump(now)
    events = [r.event for e in entries for r in t.apply(e, now)]
    events += [r.event for r in t.end_dump(now)]
    return events


def test_new_then_updates_follow_the_curve() -> None:
    t = table()
    [new] = t.apply(ct(Kind.NEW, event=T0 + S), T0 + S)
    assert new.event is Event.NEW and new.counters_orig == Counters()
    emitted = []
    for packets, second in enumerate(range(2, 61), start=1):  # a dump a second, always busy
        now = T0 + second * S
        records = [r for r in t.apply(ct(Kind.DUMP, packets=packets, start=T0 + S), now)]
        t.begin_dump(now)
        t.end_dump(now)
        emitted += [second for r in records if r.event is Event.UPDATE]
    # age < 10 s: every 2 s; 10..30 s: every 5 s; from 30 s: every 20 s.
    assert emitted == [3, 5, 7, 9, 11, 16, 21, 26, 31, 51]


def test_idle_flow_sends_nothing() -> None:
    t = table()
    t.apply(ct(Kind.NEW), T0)
    assert dump(t, T0 + 3 * S, ct(Kind.DUMP, packets=5)) == [Event.UPDATE]
    assert dump(t, T0 + 9 * S, ct(Kind.DUMP, packets=5)) == []
    assert dump(t, T0 + 10 * S, ct(Kind.DUMP, packets=6)) == [Event.UPDATE]


def test_destroy_gives_final_counters_and_times() -> None:
    t = table()
    t.apply(ct(Kind.NEW), T0)
    [record] = t.apply(ct(Kind.DESTROY, packets=7, start=T0, stop=T0 + 4 * S), T0 + 5 * S)
    assert record.event is Event.DESTROY and record.complete
    assert record.counters_orig == Counters(7, 700)
    assert (record.start_ns, record.stop_ns, record.time_ns) == (T0, T0 + 4 * S, T0 + 4 * S)
    assert len(t) == 0


def test_a_dump_read_before_the_destroy_cannot_revive_the_flow() -> None:
    t = table()
    t.apply(ct(Kind.NEW), T0)
    t.begin_dump(T0 + S)
    t.apply(ct(Kind.DESTROY, packets=3), T0 + S)
    assert t.apply(ct(Kind.DUMP, packets=3), T0 + 3 * S) == []
    assert t.end_dump(T0 + 3 * S) == []
    assert len(t) == 0


def test_flow_gone_from_two_dumps_is_closed_incomplete() -> None:
    t = table()
    t.apply(ct(Kind.NEW), T0)
    dump(t, T0 + 3 * S, ct(Kind.DUMP, packets=4))
    assert dump(t, T0 + 4 * S) == []  # one absence: its DESTROY may still be unread
    t.begin_dump(T0 + 5 * S)
    [record] = t.end_dump(T0 + 5 * S)
    assert record.event is Event.DESTROY and not record.complete
    assert record.counters_orig == Counters(4, 400)
    # The DESTROY arriving late now is not a second record.
    assert t.apply(ct(Kind.DESTROY, packets=4), T0 + 6 * S) == []


def test_destroy_read_after_one_absence_is_the_only_record() -> None:
    t = table()
    t.apply(ct(Kind.NEW), T0)
    assert dump(t, T0 + 4 * S) == []
    [record] = t.apply(ct(Kind.DESTROY, packets=2), T0 + 4 * S)
    assert record.complete
    assert dump(t, T0 + 5 * S) == []


def test_flows_alive_at_start_are_backdated() -> None:
    t = table(started=T0 + 100 * S)
    now = T0 + 100 * S
    [record] = t.apply(ct(Kind.DUMP, packets=50, start=T0 + 95 * S), now)
    # Taken to be 10 s older (the second point's age): next update in 5 s, not 2 s.
    assert record.event is Event.UPDATE
    assert dump(t, now + 3 * S, ct(Kind.DUMP, packets=51, start=T0 + 95 * S)) == []
    assert dump(t, now + 5 * S, ct(Kind.DUMP, packets=52, start=T0 + 95 * S)) == [Event.UPDATE]


def test_flow_first_seen_in_a_dump_after_start_is_new() -> None:
    t = table()
    [record] = t.apply(ct(Kind.DUMP, packets=1, start=T0 + S), T0 + 2 * S)
    assert record.event is Event.NEW
    assert t.apply(ct(Kind.NEW), T0 + 2 * S) == []  # the event read late adds nothing


def test_update_event_refreshes_state_without_a_record() -> None:
    t = table()
    t.apply(ct(Kind.NEW, orig=TCP, state=TcpState.SYN_SENT), T0)
    assert t.apply(ct(Kind.UPDATE, orig=TCP, state=TcpState.ESTABLISHED), T0 + 1) == []
    [record] = t.apply(ct(Kind.DESTROY, orig=TCP), T0 + S)
    assert record.tcp_state is TcpState.ESTABLISHED


def test_reused_id_closes_the_old_flow() -> None:
    t = table()
    t.apply(ct(Kind.NEW), T0)
    records = t.apply(ct(Kind.NEW, orig=replace(UDP, sport=40009)), T0 + S)
    assert [r.event for r in records] == [Event.DESTROY, Event.NEW]
    assert not records[0].complete
    assert t.stats.reused_ids == 1


def test_table_is_bounded() -> None:
    t = FlowTable(curve=CURVE, netns=1, started_ns=T0, max_flows=2)
    for ct_id in range(5):
        t.apply(ct(Kind.NEW, ct_id, replace(UDP, sport=ct_id)), T0)
    assert len(t) == 2 and t.stats.untracked == 3
    # An untracked flow still gets its DESTROY record, from the event alone.
    [record] = t.apply(ct(Kind.DESTROY, 4, replace(UDP, sport=4), packets=1), T0 + S)
    assert record.counters_orig == Counters(1, 100)


def test_aborted_dump_closes_nothing() -> None:
    t = table()
    t.apply(ct(Kind.NEW), T0)
    for second in (2, 3, 4):
        t.begin_dump(T0 + second * S)
        t.abort_dump()
        assert t.end_dump(T0 + second * S) == []
    assert len(t) == 1

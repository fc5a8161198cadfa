from __future__ import annotations

import base64
import json

import orjson
import pytest

from streams.ingest.records import UsageEvent
from streams.ingest.windows import NANO, WINS, IngestPartition, to_nusd, window_start


def ev(i: int | str, ts: float, team: str = "ads", cost: float = 0.01, model: str = "gpt-4o", user: str = "u1") -> UsageEvent:
    return UsageEvent(
        event_id=str(i), ts=ts, org="default", team=team, user=user, provider="openai", model=model,
        input_tokens=100, output_tokens=10, cache_read_tokens=40, cost_usd=cost,
    )


def by_series(partials):
    return {(p.series, p.window_start, p.late): p for p in partials}


@pytest.mark.parametrize(
    ("ts", "w", "start"),
    [(0, 60, 0), (59.999, 60, 0), (60, 60, 60), (125.5, 60, 120), (1_700_000_001, 3600, 1_699_999_200)],
)
def test_window_start(ts, w, start):
    assert window_start(ts, w) == start


def test_sums_are_exact_integers():
    costs = [0.1, 0.2, 0.3, 1e-7, 123.456789]
    assert sum(to_nusd(c) for c in costs) == to_nusd(0.1) + to_nusd(0.2) + to_nusd(0.3) + 100 + 123_456_789_000


def test_window_closes_after_lateness_and_expands_series():
    core = IngestPartition(partition=0, window_seconds=60, lateness=10, idle_grace=1000)
    core.add(ev(1, 1000.0, user="a"), 0)
    core.add(ev(2, 1010.0, user="b", model="claude-sonnet-4"), 0)
    assert core.advance(0) == []  # clock 1010 - 10 = 1000: window [960,1020) still open
    core.add(ev(3, 1025.0), 0)  # clock 1015: still open (needs 1030)
    assert [p for p in core.advance(0) if p.window_start == 960] == []
    core.add(ev(4, 1031.0), 0)
    out = by_series(core.advance(0))
    team = out[("team=ads", 960, False)]
    assert team.sums == [to_nusd(0.02), 200, 20, 80, 0, 2]  # event 3 (1025) is in the next window
    assert team.contributors == {"user:a": to_nusd(0.01), "user:b": to_nusd(0.01), "model:gpt-4o": to_nusd(0.01),
                                 "model:claude-sonnet-4": to_nusd(0.01)}
    assert ("org", 960, False) in out and ("provider=openai", 960, False) in out
    assert out[("team=ads|model=gpt-4o", 960, False)].sums[5] == 1
    assert not out[("user=a", 960, False)].detected  # spend-only series
    assert core.closed_until == 1020


def test_duplicates_counted_once_and_late_events_kept():
    core = IngestPartition(partition=0, window_seconds=60, lateness=0, idle_grace=1000)
    assert core.add(ev("x", 10.0), 0) == "accepted"
    assert core.add(ev("x", 10.0), 0) == "duplicate"
    core.add(ev("y", 130.0), 0)
    closed = by_series(core.advance(0))
    assert closed[("team=ads", 0, False)].sums[5] == 1
    assert core.add(ev("z", 20.0), 0) == "late"  # window [0,60) already closed
    assert core.add(ev("z", 20.0), 0) == "duplicate"
    late = by_series(core.advance(0))
    assert late[("team=ads", 0, True)].sums[5] == 1
    assert core.counters.to_dict() == {"accepted": 3, "rejected": 0, "duplicate": 2, "late": 1, "windows_closed": 1,
                                       "implausible": 0, "failed": 0}


def test_idle_partition_follows_wall_clock():
    core = IngestPartition(partition=0, window_seconds=60, lateness=5, idle_grace=10)
    core.add(ev(1, 1000.0), wall_now=5000.0)
    assert core.advance(5005.0) == []  # not idle long enough
    out = core.advance(5100.0)  # 100 s idle: clock = 1000 + 90 = 1090 -> closes [960,1020)
    assert {p.window_start for p in out} == {960}


def test_partition_without_events_is_idle_and_a_later_backfill_is_not_late():
    core = IngestPartition(partition=3, window_seconds=60, lateness=5, idle_grace=10)
    assert core.advance(10_000.0) == []
    assert core.closed_until is None
    assert core.add(ev(1, 100.0), wall_now=10_001.0) == "accepted"


def test_checkpoint_restore_roundtrip_keeps_totals_and_dedupe():
    core = IngestPartition(partition=1, window_seconds=60, lateness=0, idle_grace=1000)
    store: dict[str, object] = {}

    def apply(changes):
        for k, v in changes.items():
            if v is None:
                store.pop(k, None)
            else:
                store[k] = json.loads(json.dumps(v))

    for i in range(5):
        core.add(ev(i, 10.0 + i), 0)
    core.applied_offset = 4
    apply(core.checkpoint())
    core.add(ev(5, 20.0), 0)
    core.applied_offset = 5
    apply(core.checkpoint())

    fresh = IngestPartition(partition=1, window_seconds=60, lateness=0, idle_grace=1000)
    fresh.restore(store.items(), 0)
    assert fresh.applied_offset == 5
    assert fresh.add(ev(3, 13.0), 0) == "duplicate"
    fresh.add(ev(9, 200.0), 0)
    out = by_series(fresh.advance(0))
    assert out[("team=ads", 0, False)].sums[0] == 6 * to_nusd(0.01)
    apply(fresh.checkpoint())
    assert [w for w, _ in store[WINS[store["meta"]["wins"]]]] == [180]


def test_dedupe_ids_are_forgotten_after_retention():
    core = IngestPartition(partition=0, window_seconds=60, lateness=0, idle_grace=1000, dedupe_retention=120)
    core.add(ev("a", 10.0), 0)
    core.add(ev("b", 1000.0), 0)
    core.advance(0)
    assert 0 not in core.ids
    first = core.checkpoint()
    assert set(first["ids|0"]) == {"960"}  # window 0 was already past retention
    core.add(ev("c", 2000.0), 0)
    core.advance(0)
    assert core.checkpoint()["ids|0"] is None  # every window of chunk 0 is past retention


def test_nano_constant():
    assert NANO == 10**9


def test_a_backlog_of_ids_is_split_into_bounded_chunks():
    from streams.ingest.windows import ID_CHUNK

    core = IngestPartition(partition=0, window_seconds=60, lateness=0, idle_grace=1000)
    for i in range(int(ID_CHUNK * 2.5)):
        core.add(ev(i, 10.0 + i * 0.0004), 0)  # one window
    changes = core.checkpoint()
    chunks = [v for k, v in changes.items() if k.startswith("ids|")]
    # each id as its 8-byte hash, packed
    assert len(chunks) == 3 and all(sum(len(base64.b64decode(v)) // 8 for v in c.values()) <= ID_CHUNK for c in chunks)
    assert max(len(orjson.dumps(c)) for c in chunks) < 600_000  # far under Kafka's 1 MB
    fresh = IngestPartition(partition=0, window_seconds=60, lateness=0, idle_grace=1000)
    fresh.restore(changes.items(), 0)
    assert fresh.add(ev(123, 10.123), 0) == "duplicate"

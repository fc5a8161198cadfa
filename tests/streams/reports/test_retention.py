"""Spend retention: window records older than the hourly horizon become part of their hour,
hours older than the daily horizon their day; sums stay exact, and nothing is counted twice
when a roll-up is only partly written before a crash, when a message is redelivered, or when
a late event lands in a rolled hour."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from streams.common.spend import DAY, HOUR, day_key, spend_windows
from streams.ingest.windows import NANO
from streams.reports.retention import SpendRollup
from tests.streams.worker.test_judging import Clock, Q, config, messages, worker

W = 60
T0 = 1_767_571_200  # 2026-01-05T00:00:00Z


def rec(usd: float, seqs: dict[int, list[int]], events: int = 1) -> dict[str, Any]:
    return {"s": [int(usd * NANO), 10, 2, 0, 0, events], "v": {str(s): list(q) for s, q in seqs.items()}}


def totals(spend: Any) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(lambda: [0] * 6)
    for series, _, _, sums in spend_windows(list(spend.items()), W):
        for i in range(6):
            out[series][i] += int(sums[i])
    return dict(out)


def hour_of_windows(series: str = "team=ads", start: int = T0, src: int = 0, first_seq: int = 1) -> dict[str, Any]:
    """An hour of one-minute records, each from its own message (seqs first_seq..first_seq+59)."""
    return {f"{series}|{start + i * W}": rec(0.01 * (i + 1), {src: [first_seq + i]}) for i in range(60)}


def test_a_window_older_than_48_hours_becomes_part_of_its_hour_exactly() -> None:
    spend = hour_of_windows() | {f"team=ads|{T0 + 3 * HOUR}": rec(5.0, {0: [70]})}
    before = totals(spend)
    roll = SpendRollup(W)
    roll.seen(0, 80)
    # 48 h after the first hour's end: that hour rolls, the later window stays a window
    changes = roll.roll(spend, T0 + HOUR + 48 * HOUR)
    assert totals(spend) == before
    assert set(spend) == {day_key("team=ads", T0), f"team=ads|{T0 + 3 * HOUR}"}
    row = spend[day_key("team=ads", T0)]["h"]["0"]
    assert row[:6] == [sum(int(0.01 * (i + 1) * NANO) for i in range(60)), 600, 120, 0, 0, 60]
    assert row[6:] == [0, 60]  # source 0, highest seq counted
    # what the table gets: the rolled record first, then the 60 deletions
    keys = list(changes)
    assert keys[0] == day_key("team=ads", T0) and all(changes[k] is None for k in keys[1:]) and len(keys) == 61
    # a minute before the horizon nothing moves
    spend2 = hour_of_windows()
    assert SpendRollup(W, latest={0: 80}).roll(spend2, T0 + HOUR + 48 * HOUR - 1) == {}


def test_a_copy_left_behind_by_a_crash_is_dropped_and_a_late_event_still_counts() -> None:
    windows = hour_of_windows()
    spend = dict(windows)
    roll = SpendRollup(W, latest={0: 100})
    roll.roll(spend, T0 + 50 * HOUR)
    rolled = dict(spend)
    # the crash: the rolled record was written, the deletions were not -> the table holds both
    restored = rolled | windows
    again = SpendRollup(W)
    again.restored(restored)
    again.roll(restored, T0 + 50 * HOUR, force=True)
    assert restored == rolled
    assert totals(restored) == totals(windows)
    # a redelivered message re-creates a window record already counted: dropped at the next roll
    restored[f"team=ads|{T0 + 5 * W}"] = windows[f"team=ads|{T0 + 5 * W}"]
    # ... and a late event (a later message) adds to the rolled hour
    again.seen(0, 101)
    restored[f"team=ads|{T0 + 7 * W}"] = rec(2.0, {0: [101]})
    again.seen(0, 102)
    again.roll(restored, T0 + 51 * HOUR)
    want = totals(windows)["team=ads"]
    want[0] += 2 * NANO
    want[1] += 10
    want[2] += 2
    want[5] += 1
    assert totals(restored) == {"team=ads": want}
    assert list(restored) == [day_key("team=ads", T0)]


def test_a_window_of_the_latest_message_waits_for_its_other_chunks() -> None:
    # a backfill message comes in chunks sharing one seq: its windows roll only once a later
    # seq from that source shows that every chunk has been applied
    spend = {f"org|{T0}": rec(1.0, {0: [9]})}
    roll = SpendRollup(W)
    roll.seen(0, 9)
    roll.roll(spend, T0 + 50 * HOUR)
    assert list(spend) == [f"org|{T0}"]
    spend[f"org|{T0 + W}"] = rec(2.0, {0: [9]})  # the next chunk of message 9
    roll.seen(0, 10)
    roll.roll(spend, T0 + 50 * HOUR, force=True)
    assert totals(spend)["org"][0] == 3 * NANO and list(spend) == [day_key("org", T0)]


def test_hours_older_than_35_days_become_their_day() -> None:
    spend = {f"org|{T0 + h * HOUR}": rec(1.0, {0: [h + 1]}) for h in range(30)}  # 24 h of day 1, 6 of day 2
    before = totals(spend)
    roll = SpendRollup(W, latest={0: 99})
    roll.roll(spend, T0 + 30 * HOUR + 48 * HOUR)
    assert set(spend) == {day_key("org", T0), day_key("org", T0 + DAY)}
    assert len(spend[day_key("org", T0)]["h"]) == 24
    roll.roll(spend, T0 + DAY + 35 * DAY)
    assert spend[day_key("org", T0)]["d"][:6] == [24 * NANO, 240, 48, 0, 0, 24]
    assert "h" in spend[day_key("org", T0 + DAY)]  # its day has not ended 35 days ago yet
    assert totals(spend) == before
    assert [span for *_, span, _ in spend_windows(list(spend.items()), W)] == [DAY] + [HOUR] * 6


async def test_the_worker_rolls_up_at_checkpoints_and_a_crash_counts_nothing_twice() -> None:
    msgs = messages(120, spike=range(0))  # two hours from two sources
    cfg = config(spend_hourly_after=600)
    clock = Clock(T0 + 86400)
    whole, *_ = worker(cfg, clock=clock)
    for i, msg in enumerate(msgs):
        clock.t += 0.6  # a checkpoint about every other message
        await whole.receive(Q, msg, i)
    await whole.checkpoint(Q, clock.t + 5)
    want = totals(whole.tables.spend.data)
    n_windows = sum(1 for k in whole.tables.spend.data if "day:" not in k)
    assert any("day:" in k for k in whole.tables.spend.data) and n_windows < 2 * 70  # the first hour rolled
    assert want["team=ads"][5] == 240  # one event per window per source

    # the crash at message 200: no roll-up's deletions reached the table, its rolled records did
    tables_clock = Clock(T0 + 86400)
    first, _, _, acked = worker(cfg, clock=tables_clock)
    tables = first.tables
    deleted: dict[str, Any] = {}
    for i, msg in enumerate(msgs[:200]):
        tables_clock.t += 0.6
        before = dict(tables.spend.data)
        await first.receive(Q, msg, i)
        for k in set(before) - set(tables.spend.data):
            deleted[k] = before[k]
    assert deleted, "no roll-up happened before the crash"
    survivor = dict(tables.spend.data) | deleted
    tables.spend.data.clear()
    tables.spend.data.update(survivor)
    second, *_ = worker(cfg, tables, tables_clock)
    for i, msg in enumerate(msgs[len(acked):], len(acked)):
        tables_clock.t += 0.6
        await second.receive(Q, msg, i)
    await second.checkpoint(Q, tables_clock.t + 5)
    assert totals(tables.spend.data) == want


async def test_parts_of_a_report_that_never_completes_are_pruned() -> None:
    from streams.common.metrics import Metrics
    from streams.reports.core import ReportSpec
    from streams.reports.reporting import PENDING_KEPT, Reporting
    from streams.worker.tables import persist
    from tests.streams.worker.fakes import MemoryTable

    spec = ReportSpec(name="d", channel="#c", period="day")
    table = MemoryTable()

    async def send(*_: Any) -> None:
        raise AssertionError("a report missing a part is never sent")

    rep = Reporting(config(usage_partitions=2, reports=(spec,)), Metrics(), {}, {}, table=table, send_part=send,
                    send_note=send, persist=persist)
    # partition 1 is gone for good: 30 days of parts from partition 0 alone
    for day in range(1, 31):
        pid = f"2026-11-{day:02d}"
        due = {"period_id": pid, "start": 0, "end": 1, "prev_id": "p", "prev_start": -1, "prev_end": 0, "due_at": 1.0}
        await rep.merge_part(0, {"key": spec.key(pid), "name": "d", "q": 0, "n": 2, "due": due, "part": {}})
    waiting = sorted(k for k in table.data if "|parts|" in k)
    assert len(waiting) == PENDING_KEPT and waiting[-1].endswith("2026-11-30")


def test_the_7_and_30_day_charts_and_the_api_sums_are_the_same_after_the_roll_up() -> None:
    from streams.common.spend import coarsest
    from streams.worker.charts import RANGES, spend_over_time, top_users
    from streams.worker.web import spend_rows

    # 40 days of a few series, a window every 29 minutes each (hours hold two or three)
    spend: dict[str, Any] = {}
    seq = 0
    for i in range(40 * 24 * 60 // 29):
        w = T0 + i * 29 * W
        seq += 1
        for series in ("team=ads", "user=a"):
            spend[f"{series}|{w}"] = rec(0.01 * (1 + i % 5), {0: [seq]})
    now = T0 + 40 * DAY
    before = dict(spend)
    SpendRollup(W, latest={0: seq + 1}).roll(spend, now)
    assert len(spend) < len(before) / 2
    for rng in ("7d", "30d"):
        seconds, step = RANGES[rng]
        since = now - seconds
        assert spend_over_time(list(spend.items()), "team", since, now, step) == \
            spend_over_time(list(before.items()), "team", since, now, step)
        assert top_users(list(spend.items()), since, now) == top_users(list(before.items()), since, now)
    assert spend_rows(list(spend.items()), "team", None, None) == spend_rows(list(before.items()), "team", None, None)
    assert coarsest(list(spend.items()), W, now - 86400, now) == W
    assert coarsest(list(spend.items()), W, now - 7 * DAY, now) == HOUR
    assert coarsest(list(spend.items()), W, None, None) == DAY
    assert coarsest(list(before.items()), W, None, None) == W

"""Spend retention: window records older than the hourly horizon become part of their hour,
hours older than the daily horizon their day; sums stay exact, and nothing is counted twice
when a roll-up is only partly written before a crash, when a message is redelivered, or when
a late event lands in a rolled hour."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from streams.common.spend import DAY, HOUR, SeriesSpend, day_key, load_records, spend_key, spend_windows
from streams.ingest.windows import NANO
from streams.reports.retention import SpendRollup
from tests.streams.worker.fakes import MemoryTable
from tests.streams.worker.test_judging import Clock, Q, config, messages, worker

W = 60
T0 = 1_767_571_200  # 2026-01-05T00:00:00Z


def rec(usd: float, seqs: dict[int, list[int]], events: int = 1) -> dict[str, Any]:
    """A window's record as the spend table's changelog holds it."""
    return {"s": [int(usd * NANO), 10, 2, 0, 0, events], "v": {str(s): list(q) for s, q in seqs.items()}}


def books(records: dict[str, Any]) -> dict[str, SeriesSpend]:
    """What a judge holds after reading ``records`` (a recovered spend table)."""
    out: dict[str, SeriesSpend] = {}
    done, bad = load_records(out, records.items())
    assert not bad and len(done) == len(records)
    return out


def recovered(changelog: list[tuple[int, str, Any]], deletions: bool = True) -> dict[str, Any]:
    """The spend table as Faust's recovery rebuilds it from the changelog: the latest record
    per key (``deletions=False``: as if no deletion had been written)."""
    data: dict[str, Any] = {}
    for _, key, value in changelog:
        if value is None:
            if deletions:
                data.pop(key, None)
        else:
            data[key] = value
    return data


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
    records = hour_of_windows() | {f"team=ads|{T0 + 3 * HOUR}": rec(5.0, {0: [70]})}
    spend = books(records)
    assert totals(spend) == totals(records)  # the books read as the records they hold
    roll = SpendRollup(W)
    roll.seen(0, 80)
    # 48 h after the first hour's end: that hour rolls, the later window stays a window
    changes = roll.roll(spend, T0 + HOUR + 48 * HOUR)
    assert totals(spend) == totals(records)
    book = spend[spend_key("team=ads")]
    assert list(spend) == [spend_key("team=ads")] and book.window_starts() == [T0 + 3 * HOUR]
    row = book.day_wire(T0)["h"]["0"]
    assert row[:6] == [sum(int(0.01 * (i + 1) * NANO) for i in range(60)), 600, 120, 0, 0, 60]
    assert row[6:] == [0, 60]  # source 0, highest seq counted
    # what the changelog gets: the rolled record first, then the 60 deletions
    keys = list(changes)
    assert keys[0] == day_key("team=ads", T0) and changes[keys[0]] == {"h": {"0": row}}
    assert all(changes[k] is None for k in keys[1:]) and len(keys) == 61
    # ... and what it then holds reads back as the same book
    assert books(recovered([(0, k, v) for k, v in [*records.items(), *changes.items()]])) == spend
    # a minute before the horizon nothing moves
    spend2 = books(hour_of_windows())
    assert SpendRollup(W, latest={0: 80}).roll(spend2, T0 + HOUR + 48 * HOUR - 1) == {}


def test_a_copy_left_behind_by_a_crash_is_dropped_and_a_late_event_still_counts() -> None:
    windows = hour_of_windows()
    spend = books(windows)
    roll = SpendRollup(W, latest={0: 100})
    changes = roll.roll(spend, T0 + 50 * HOUR)
    rolled = {k: b.copy() for k, b in spend.items()}
    # the crash: the rolled record was written, the deletions were not -> the table holds both
    changelog = [(0, k, v) for k, v in windows.items()] + [(0, k, v) for k, v in changes.items()]
    restored = books(recovered(changelog, deletions=False))
    assert totals(restored)["team=ads"][0] == 2 * totals(windows)["team=ads"][0]
    again = SpendRollup(W)
    again.restored(restored)
    again.roll(restored, T0 + 50 * HOUR, force=True)
    assert restored == rolled
    assert totals(restored) == totals(windows)
    # a redelivered message re-creates a window record already counted: dropped at the next roll
    book = restored[spend_key("team=ads")]
    assert book.add_window(T0 + 5 * W, windows[f"team=ads|{T0 + 5 * W}"]["s"], {0: 6})
    # ... and a late event (a later message) adds to the rolled hour
    again.seen(0, 101)
    assert book.add_window(T0 + 7 * W, rec(2.0, {})["s"], {0: 101})
    again.seen(0, 102)
    again.roll(restored, T0 + 51 * HOUR)
    want = totals(windows)["team=ads"]
    want[0] += 2 * NANO
    want[1] += 10
    want[2] += 2
    want[5] += 1
    assert totals(restored) == {"team=ads": want}
    assert book.window_starts() == []


def test_a_window_of_the_latest_message_waits_for_its_other_chunks() -> None:
    # a backfill message comes in chunks sharing one seq: its windows roll only once a later
    # seq from that source shows that every chunk has been applied
    spend = books({f"org|{T0}": rec(1.0, {0: [9]})})
    book = spend[spend_key("org")]
    roll = SpendRollup(W)
    roll.seen(0, 9)
    roll.roll(spend, T0 + 50 * HOUR)
    assert book.window_starts() == [T0]
    book.add_window(T0 + W, rec(2.0, {})["s"], {0: 9})  # the next chunk of message 9
    roll.seen(0, 10)
    roll.roll(spend, T0 + 50 * HOUR, force=True)
    assert totals(spend)["org"][0] == 3 * NANO and book.window_starts() == []


def test_hours_older_than_35_days_become_their_day() -> None:
    records = {f"org|{T0 + h * HOUR}": rec(1.0, {0: [h + 1]}) for h in range(30)}  # 24 h of day 1, 6 of day 2
    spend = books(records)
    book = spend[spend_key("org")]
    roll = SpendRollup(W, latest={0: 99})
    roll.roll(spend, T0 + 30 * HOUR + 48 * HOUR)
    assert book.window_starts() == []
    assert len(book.day_wire(T0)["h"]) == 24 and len(book.day_wire(T0 + DAY)["h"]) == 6
    changes = roll.roll(spend, T0 + DAY + 35 * DAY)
    assert changes == {day_key("org", T0): {"d": [24 * NANO, 240, 48, 0, 0, 24, 0, 24]}}
    assert "h" in book.day_wire(T0 + DAY)  # its day has not ended 35 days ago yet
    assert totals(spend) == totals(records)
    assert [span for *_, span, _ in spend_windows(list(spend.items()), W)] == [DAY] + [HOUR] * 6


def test_spend_checkpointed_before_the_compact_form_loads_and_rolls_the_same() -> None:
    # a spend table written by the dict-per-record worker (windows, days by hour, whole days,
    # several sources and seqs per window), recovered from its changelog
    old = hour_of_windows() | hour_of_windows("org", src=1) | {
        f"org|{T0 + 2 * HOUR}": rec(1.5, {0: [3, 7], 1: [9]}),
        day_key("org", T0 - DAY): {"h": {"3": [5, 1, 1, 0, 0, 1, 0, 2, 1, 4], "23": [7, 0, 0, 0, 0, 1, 1, 5]}},
        day_key("team=ads", T0 - 40 * DAY): {"d": [9, 1, 1, 1, 1, 3, 0, 1]},
    }
    spend = books(old)
    assert totals(spend) == totals(old)
    assert spend[spend_key("org")].window_wire(T0 + 2 * HOUR) == old[f"org|{T0 + 2 * HOUR}"]
    assert spend[spend_key("org")].day_wire(T0 - DAY) == old[day_key("org", T0 - DAY)]
    assert spend[spend_key("team=ads")].day_wire(T0 - 40 * DAY) == old[day_key("team=ads", T0 - 40 * DAY)]
    # rolled up, the books give the records the dict-per-record roll-up gave
    changes = SpendRollup(W, latest={0: 99, 1: 99}).roll(spend, T0 + HOUR + 48 * HOUR)
    assert changes[day_key("org", T0)] == {"h": {"0": [sum(int(0.01 * (i + 1) * NANO) for i in range(60)), 600, 120,
                                                       0, 0, 60, 1, 60]}}
    assert totals(spend) == totals(old)


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
    book = whole.tables.spend.data[spend_key("team=ads")]
    assert book.day_wire(T0) and len(book.window_starts()) < 70  # the first hour rolled
    assert want["team=ads"][5] == 240  # one event per window per source
    # what the changelog holds reads back as the worker's books
    spend_t: MemoryTable = whole.tables.spend  # type: ignore[assignment]
    assert books(recovered(spend_t.changelog)) == whole.tables.spend.data

    # the crash at message 200: no roll-up's deletions reached the table, its rolled records did
    tables_clock = Clock(T0 + 86400)
    first, _, _, acked = worker(cfg, clock=tables_clock)
    tables = first.tables
    for i, msg in enumerate(msgs[:200]):
        tables_clock.t += 0.6
        await first.receive(Q, msg, i)
    first_t: MemoryTable = tables.spend  # type: ignore[assignment]
    assert any(v is None for _, _, v in first_t.changelog), "no roll-up happened before the crash"
    first_t.data.clear()
    first_t.data.update(recovered(first_t.changelog, deletions=False))  # what Faust's recovery gives
    second, *_ = worker(cfg, tables, tables_clock)
    for i, msg in enumerate(msgs[len(acked):], len(acked)):
        tables_clock.t += 0.6
        await second.receive(Q, msg, i)
    await second.checkpoint(Q, tables_clock.t + 5)
    assert totals(tables.spend.data) == want
    # the restored worker keeps books, not the records recovery gave it
    assert all(isinstance(v, SeriesSpend) for v in tables.spend.data.values())


async def test_parts_of_a_report_that_never_completes_are_pruned() -> None:
    from streams.common.metrics import Metrics
    from streams.reports.core import ReportSpec
    from streams.reports.reporting import PENDING_KEPT, Reporting
    from streams.worker.tables import persist

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


def every_29_minutes(days: int, series: tuple[str, ...]) -> tuple[dict[str, Any], int]:
    """Spend records of each series over ``days`` days, a window every 29 minutes (hours hold
    two or three), one message seq per window; and the last seq."""
    records: dict[str, Any] = {}
    seq = 0
    for i in range(days * 24 * 60 // 29):
        w = T0 + i * 29 * W
        seq += 1
        for name in series:
            records[f"{name}|{w}"] = rec(0.01 * (1 + i % 5), {0: [seq]})
    return records, seq


def test_the_7_and_30_day_charts_and_the_api_sums_are_the_same_after_the_roll_up() -> None:
    from streams.common.spend import coarsest
    from streams.worker.charts import RANGES, spend_over_time, top_users
    from streams.worker.web import spend_rows

    records, seq = every_29_minutes(40, ("team=ads", "user=a"))
    now = T0 + 40 * DAY
    before = list(records.items())  # read as the records, by the dict-per-record readers
    spend = books(records)
    SpendRollup(W, latest={0: seq + 1}).roll(spend, now)
    assert len(list(spend_windows(list(spend.items()), W))) < len(before) / 2
    for rng in ("7d", "30d"):
        seconds, step = RANGES[rng]
        since = now - seconds
        assert spend_over_time(list(spend.items()), "team", since, now, step) == \
            spend_over_time(before, "team", since, now, step)
        assert top_users(list(spend.items()), since, now) == top_users(before, since, now)
    assert spend_rows(list(spend.items()), "team", None, None) == spend_rows(before, "team", None, None)
    assert coarsest(list(spend.items()), W, now - 86400, now) == W
    assert coarsest(list(spend.items()), W, now - 7 * DAY, now) == HOUR
    assert coarsest(list(spend.items()), W, None, None) == DAY
    assert coarsest(before, W, None, None) == W


async def test_a_rebalance_that_puts_records_back_beside_the_books_counts_them_once() -> None:
    cfg = config(spend_hourly_after=600)
    clock = Clock(T0 + 86400)
    j, *_ = worker(cfg, clock=clock)
    for i, msg in enumerate(messages(90, spike=range(0))):
        clock.t += 0.6
        await j.receive(Q, msg, i)
    await j.checkpoint(Q, clock.t + 5)
    spend_t: MemoryTable = j.tables.spend  # type: ignore[assignment]
    want = totals(spend_t.data)
    # a rebalance: the partition is revoked, then recovery replays its changelog into the
    # table beside the books the worker left there; the API reads it before the next message
    j.revoke([Q])
    spend_t.data.update(recovered(spend_t.changelog))
    assert any(not isinstance(v, SeriesSpend) for v in spend_t.data.values())
    assert totals(spend_t.data) == want
    j.judge_for(Q)  # the next message: the judge folds the records into its books
    assert totals(spend_t.data) == want
    assert all(isinstance(v, SeriesSpend) for v in spend_t.data.values())


def test_a_users_spend_rolls_up_on_its_own_shorter_horizons_and_stays_exact() -> None:
    from streams.common.spend import coarsest

    # a team, a user and another org's user
    records, seq = every_29_minutes(9, ("team=ads", "user=bob", "org=acme|user=bob"))
    now = T0 + 9 * DAY
    spend = books(records)
    changes = SpendRollup(W, latest={0: seq + 1}).roll(spend, now)
    assert totals(spend) == totals(records)
    team = spend[spend_key("team=ads")]
    # the team: windows for 48 h, then hours (days only after 35)
    assert min(team.window_starts()) >= now - 49 * HOUR and max(team.window_starts()) < now
    assert {kind for _, kind, _, _ in team.rolled()} == {1}
    for user in ("user=bob", "org=acme|user=bob"):
        book = spend[spend_key(user)]
        assert now - 25 * HOUR <= min(book.window_starts()) and max(book.window_starts()) < now  # 24 h of windows
        rows = book.rolled()
        days = [start for start, kind, _, _ in rows if kind == 2]
        hours = [start for start, kind, _, _ in rows if kind == 1]
        assert days == [T0 + d * DAY for d in range(2)]  # the days ending 7 days back: whole days
        assert min(hours) == T0 + 2 * DAY and max(hours) < now - 24 * HOUR
        assert changes[day_key(user, T0)] == book.day_wire(T0) and "d" in changes[day_key(user, T0)]
    # a restore from what the changelog got reads the same books
    written = recovered([(Q, k, v) for k, v in (records | changes).items()])
    assert books(written) == spend
    # each answer says the resolution of what it summed: the team's 30 hours are windows
    items = list(spend.items())
    assert coarsest(items, W, now - 30 * HOUR, now, "team") == W
    assert coarsest(items, W, now - 30 * HOUR, now, "user") == HOUR
    assert coarsest(items, W, now - 24 * HOUR, now, "user") == W
    assert coarsest(items, W, now - 8 * DAY, now, "user") == DAY
    assert coarsest(items, W, now - 8 * DAY, now, "team") == HOUR


def test_the_user_horizons_can_be_those_of_every_series() -> None:
    records = {f"{series}|{T0 + i * 29 * W}": rec(0.01, {0: [i + 1]})
               for i in range(3 * 24 * 60 // 29) for series in ("team=ads", "user=bob")}
    now = T0 + 3 * DAY
    spend = books(records)
    SpendRollup(W, latest={0: 10**6}, user_hourly_after=48 * HOUR, user_daily_after=35 * DAY).roll(spend, now)
    team, user = spend[spend_key("team=ads")], spend[spend_key("user=bob")]
    assert user.window_starts() == team.window_starts() and user.rolled() == team.rolled()
    never = books(records)
    SpendRollup(W, latest={0: 10**6}, user_hourly_after=0, user_daily_after=0).roll(never, now)
    assert never[spend_key("user=bob")].window_starts() == books(records)[spend_key("user=bob")].window_starts()
    assert totals(never) == totals(spend) == totals(records)

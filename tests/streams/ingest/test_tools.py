"""Spend by tool (issue 13: "stacked by team, model, provider or tool"): the ingest sums each
window by tool in tool cells beside its cells and emits ``tool=…`` series; events without one count under
``(none)``; a checkpoint written before cells held the tool loads, its spend under ``(none)``;
and ``limits.max_tools_per_window`` caps the distinct tools of a window, the rest under
``(other)``, with the same totals on both counting lanes."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from streams.common.config import IngestLimits
from streams.common.dimensions import NO_TOOL, OTHER_TOOL
from streams.common.spend import SeriesSpend, load_records
from streams.ingest.records import UsageEvent
from streams.ingest.windows import NANO, WINS, IngestPartition, Partial
from streams.reports.retention import SpendRollup
from streams.worker.charts import spend_over_time

T0 = 1_767_600_000  # a window start (60 s windows)

# What IngestPartition.checkpoint() wrote before tool cells (main at 90d45a8), for
# three events in one open window: ads/ide $0.50 and ads/(no tool) $0.25 in one cell, search/batch $1.
OLD_CHECKPOINT: dict[str, Any] = json.loads("""
{"wins": [[1767600000, [["default", "ads", "openai", "gpt-4o", "bob", 750000000, 20, 2, 0, 0, 2],
                        ["default", "search", "openai", "gpt-4o", "bob", 1000000000, 10, 1, 0, 0, 1]]]],
 "ids|0": {"1767600000": "5QT4Jp9DdmfT+rJNhIDdsCcz6x2HIYBu"},
 "meta": {"max_ts": 1767600012.0, "closed_until": null, "applied_offset": 2, "emit_seq": 0,
          "counters": {"accepted": 3, "rejected": 0, "duplicate": 0, "late": 0, "windows_closed": 0,
                       "implausible": 0, "failed": 0},
          "chunks": {"0": 1767600000}, "next_chunk": 1}}
""")


def ev(i: int | str, ts: float, tool: str = "", cost: float = 0.5, team: str = "ads") -> UsageEvent:
    return UsageEvent(event_id=f"e-{i}", ts=ts, org="default", team=team, user="bob", provider="openai",
                      model="gpt-4o", tool=tool, input_tokens=10, output_tokens=1, cost_usd=cost)


def core_of(max_tools: int = 50) -> IngestPartition:
    return IngestPartition(partition=0, window_seconds=60, lateness=0, idle_grace=1000,
                           limits=IngestLimits(max_tools_per_window=max_tools))


def tool_spend(parts: list[Partial]) -> dict[tuple[int, str], int]:
    """nano-USD per (window, tool) of the partials' tool series."""
    return {(p.window_start, p.labels["tool"]): p.sums[0] for p in parts if "tool" in p.labels}


def test_spend_is_kept_by_tool_and_events_without_one_count_under_none() -> None:
    core = core_of()
    for i, (tool, cost) in enumerate([("ide", 0.5), ("", 0.25), ("batch", 1.0), ("ide", 0.125)]):
        core.add(ev(i, T0 + i, tool, cost), 0)
    parts = core.advance(T0 + 10_000)
    assert tool_spend(parts) == {(T0, "ide"): 625_000_000, (T0, NO_TOOL): 250_000_000, (T0, "batch"): NANO}
    org = next(p for p in parts if p.series == "org")
    assert sum(tool_spend(parts).values()) == org.sums[0]  # every dollar in exactly one tool
    assert {p.series for p in parts if "tool" in p.labels} == {"tool=ide", "tool=(none)", "tool=batch"}
    assert not any(p.detected for p in parts if "tool" in p.labels)  # spend-only by default


def test_a_checkpoint_of_the_old_format_loads_with_its_spend_under_none() -> None:
    core = core_of()
    core.restore(OLD_CHECKPOINT.items(), 0)
    assert core.applied_offset == 2 and core.counters.accepted == 3
    assert core.add(ev("x", T0 + 1), 0) == "accepted"  # (not one of the old ids)
    core.add(ev("y", T0 + 2, "ide", 2.0), 0)
    parts = core.advance(T0 + 10_000)
    assert tool_spend(parts) == {(T0, NO_TOOL): 750_000_000 + NANO + NANO // 2, (T0, "ide"): 2 * NANO}
    by = {p.series: p.sums for p in parts}
    assert by["team=ads"][0] == 750_000_000 + NANO // 2 + 2 * NANO and by["team=search"][5] == 1
    # and it is written back in the new format, which loads again
    core2 = core_of()
    core2.restore(OLD_CHECKPOINT.items(), 0)
    core2.add(ev("z", T0 + 3, "ide"), 0)
    store = json.loads(json.dumps(core2.checkpoint()))
    wins = store[WINS[store["meta"]["wins"]]]
    assert sorted(len(row) for _, rows in wins for row in rows) == [8, 8, 11, 11]  # tool cells, cells
    core3 = core_of()
    core3.restore(store.items(), 0)
    assert tool_spend(core3.advance(T0 + 10_000)) == {(T0, NO_TOOL): 1_750_000_000, (T0, "ide"): NANO // 2}


def _many_tools(seed: int, n: int = 400) -> list[UsageEvent]:
    rng = random.Random(seed)
    names = [f"junk-{k}" for k in range(40)] + ["ide", "batch", ""]
    return [ev(i, T0 + i * 0.7 + rng.random() * 0.5, rng.choice(names), rng.choice([0.01, 0.1, 1.0]),
               rng.choice(["ads", "search"])) for i in range(n)]


@pytest.mark.parametrize("seed", [1, 2])
def test_distinct_tools_per_window_are_capped_with_the_rest_under_other(seed: int) -> None:
    events = _many_tools(seed)
    one, fast = core_of(max_tools=3), core_of(max_tools=3)
    for e in events:
        one.add(e, 0)
    fast.add_events(events, 0)
    parts = one.advance(T0 + 10_000)
    assert tool_spend(fast.advance(T0 + 10_000)) == tool_spend(parts)  # both lanes cap alike

    spent = tool_spend(parts)
    windows = {w for w, _ in spent}
    assert len(windows) >= 4
    for w in windows:
        named = {t for ww, t in spent if ww == w and t not in (NO_TOOL, OTHER_TOOL)}
        first = []  # the first three distinct tools of the window, in event order, are the named ones
        for e in events:
            if int(e.ts) // 60 * 60 == w and e.tool and e.tool not in first:
                first.append(e.tool)
        assert named == set(first[:3]) and len(first) > 3
        assert (w, OTHER_TOOL) in spent
        org = next(p for p in parts if p.series == "org" and p.window_start == w)
        assert sum(v for (ww, _), v in spent.items() if ww == w) == org.sums[0]  # totals unchanged
    # events with no tool are never pushed to (other) by the cap
    none_cost = sum(round(e.cost_usd * NANO) for e in events if not e.tool)  # type: ignore[operator]
    assert sum(v for (_, t), v in spent.items() if t == NO_TOOL) == none_cost


def test_the_cap_holds_across_a_checkpoint_in_the_middle_of_a_window() -> None:
    core = core_of(max_tools=2)
    core.add(ev(1, T0 + 1, "a"), 0)
    core.add(ev(2, T0 + 2, "b"), 0)
    core.add(ev(3, T0 + 3, "c"), 0)  # past the cap
    store = json.loads(json.dumps(core.checkpoint()))
    fresh = core_of(max_tools=2)
    fresh.restore(store.items(), 0)
    fresh.add(ev(4, T0 + 4, "d"), 0)  # still past the cap after the restore
    fresh.add(ev(5, T0 + 5, "a"), 0)
    fresh.add(ev(6, T0 + 65, "d"), 0)  # the next window starts afresh
    assert tool_spend(fresh.advance(T0 + 10_000)) == {
        (T0, "a"): NANO, (T0, "b"): NANO // 2, (T0, OTHER_TOOL): NANO, (T0 + 60, "d"): NANO // 2}


def test_tool_spend_rolls_up_into_hours_and_days_and_is_stacked_by_tool() -> None:
    records: dict[str, Any] = {}
    for i, tool in enumerate(["ide", "ide", "(none)"]):
        records[f"tool={tool}|{T0 + 60 * i}"] = {"s": [NANO, 1, 1, 0, 0, 1], "v": {"0": [i + 1]}}
    spend: dict[str, SeriesSpend] = {}
    load_records(spend, records.items())
    roll = SpendRollup(window_seconds=60, hourly_after=3600, daily_after=0)
    roll.seen(0, 10)
    changes = roll.roll(spend, T0 + 3 * 86400)
    assert all(not book.window_starts() for book in spend.values()), spend
    assert {k for k, v in changes.items() if v} == {f"tool=ide|day:{T0 // 86400 * 86400}",
                                                    f"tool=(none)|day:{T0 // 86400 * 86400}"}
    out = spend_over_time(spend.items(), "tool", T0 - 86400, T0 + 86400, 86400)
    assert {s["name"]: s["total_usd"] for s in out["series"]} == {"ide": 2.0, "(none)": 1.0}

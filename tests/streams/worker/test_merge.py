"""The merge rules of answers from several workers (streams.worker.merge): the merge of the
workers' answers over a split of the spend table equals the answer of one worker holding all of
it, to the last digit, and does not depend on which worker was asked (the order of the
answers); every endpoint of the API has a rule or a reason to be answered locally."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path
from typing import Any

import pytest

from streams.budgets.mix import mix_rows
from streams.ingest.windows import NANO
from streams.worker.charts import TOP_SERIES, spend_over_time, top_users
from streams.worker.merge import LOCAL, MERGES, merge, timeseries
from streams.worker.web import spend_rows

T0 = 1_769_860_800
W = 60


def table(seed: int, n_series: int = 30, windows: int = 20) -> list[tuple[str, Any]]:
    """Spend items of teams, team×model, users and providers of two orgs, odd amounts."""
    rng = random.Random(seed)
    items = []
    for i in range(n_series):
        org = "" if i % 3 else "org=acme|"
        kind = i % 4
        series = (f"{org}team=t{i % 7}", f"{org}team=t{i % 7}|model={'acme-x' if i % 2 else 'gpt-4o'}",
                  f"{org}user=u{i}", f"{org}provider=p{i % 3}")[kind]
        for w in range(windows):
            if rng.random() < 0.6:
                items.append((f"{series}|{T0 + w * W}", {"s": [rng.randrange(1, 5 * NANO), rng.randrange(1000),
                                                               rng.randrange(500), 0, 0, rng.randrange(1, 9)]}))
    # the same key may not sit on two workers: keep one of each
    return list(dict(items).items())


def split(items: list[tuple[str, Any]], parts: int, seed: int) -> list[list[tuple[str, Any]]]:
    """The items as ``parts`` workers hold them: by series (a series lives on one partition)."""
    rng = random.Random(seed)
    owner: dict[str, int] = {}
    out: list[list[tuple[str, Any]]] = [[] for _ in range(parts)]
    for k, v in items:
        series = k.rpartition("|")[0]
        out[owner.setdefault(series, rng.randrange(parts))].append((k, v))
    return out


def in_every_order(path: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    got = [merge(path, list(p)) for p in itertools.permutations(bodies)]
    assert all(g == got[0] for g in got), path
    return got[0]


@pytest.mark.parametrize("group_by", ["team", "user", "org", "provider", "team×model"])
@pytest.mark.parametrize("seed", range(3))
def test_spend_merged_equals_spend_of_one_worker(group_by: str, seed: int) -> None:
    items = table(seed)
    whole_rows, whole_total = spend_rows(items, group_by, None, None)
    bodies = [dict(zip(("rows", "total"), spend_rows(p, group_by, None, None), strict=True), group_by=group_by)
              for p in split(items, 3, seed)]
    got = in_every_order("/api/spend", bodies)
    key = lambda r: (r[group_by], r.get("org") or "")  # noqa: E731 - ties of cost may order alike rows either way
    assert sorted(got["rows"], key=key) == sorted(whole_rows, key=key) and got["total"] == whole_total
    assert [r["cost_usd"] for r in got["rows"]] == [r["cost_usd"] for r in whole_rows]


@pytest.mark.parametrize("seed", range(3))
def test_timeseries_merged_equals_the_chart_of_one_worker_cut_again(seed: int) -> None:
    items = table(seed, n_series=60)
    whole = spend_over_time(items, "team", T0, T0 + 20 * W, W, top=3)
    bodies = [{**spend_over_time(p, "team", T0, T0 + 20 * W, W, top=2**31), "alerts": []} for p in split(items, 2, seed)]
    got = in_every_order("/api/timeseries", bodies)
    # each worker's bucket is rounded to the micro-dollar before the sum: a micro-dollar per worker at most
    cut = timeseries(bodies, top=3)
    assert [s["name"] for s in cut["series"]] == [s["name"] for s in whole["series"]]
    for a, b in zip(cut["series"], whole["series"], strict=True):
        assert all(abs(x - y) <= 2e-6 for x, y in zip(a["usd"], b["usd"], strict=True)), (a, b)
    assert len(got["series"]) <= TOP_SERIES + 1


def test_timeseries_markers_and_alerts_once_each() -> None:
    m = {"at": T0, "state": "started", "key": "cost_spike:team=a"}
    got = in_every_order("/api/timeseries", [{"t": [], "series": [], "alerts": [m]},
                                             {"t": [], "series": [], "alerts": [m, {**m, "key": "b"}]}])
    assert [x["key"] for x in got["alerts"]] == ["b", "cost_spike:team=a"]
    older, newer = {"key": "k", "seq": 1, "fired_at": 5}, {"key": "k", "seq": 2, "fired_at": 5, "action": "resolve"}
    got = in_every_order("/api/alerts", [{"alerts": [older, {"key": "j", "fired_at": 9}]}, {"alerts": [newer]}])
    assert got["alerts"] == [{"key": "j", "fired_at": 9}, newer]


@pytest.mark.parametrize("seed", range(3))
def test_top_users_merged_equals_one_worker(seed: int) -> None:
    items = table(seed, n_series=80)
    whole = top_users(items, T0 + 10 * W, T0 + 20 * W, limit=5)
    bodies = [top_users(p, T0 + 10 * W, T0 + 20 * W, limit=5) for p in split(items, 3, seed)]
    got = in_every_order("/api/top_users", bodies)
    # a user of two orgs is one row for one worker (it sums by name); here each name is one series
    assert [u["user"] for u in got["by_spend"]] == [u["user"] for u in whole["by_spend"]]
    assert got["by_spend"] == whole["by_spend"] and got["by_excess"] == whole["by_excess"]


@pytest.mark.parametrize("seed", range(3))
def test_mix_merged_equals_one_worker(seed: int) -> None:
    items = table(seed, n_series=60)
    whole = mix_rows(items, ["acme-*"], T0 + 10 * W, T0 + 20 * W)
    bodies = [{"teams": mix_rows(p, ["acme-*"], T0 + 10 * W, T0 + 20 * W)} for p in split(items, 3, seed)]
    got = in_every_order("/api/mix", bodies)
    assert got["teams"] == whole


def test_rows_one_partition_owns_and_the_partitions_answered() -> None:
    a = {"at": "x", "partitions": [2], "budgets": [{"budget": "b", "partition": 2}]}
    b = {"at": "x", "partitions": [0], "budgets": [{"budget": "a", "partition": 0}, {"budget": "c", "partition": 0}]}
    got = in_every_order("/api/budgets", [a, b])
    assert [r["budget"] for r in got["budgets"]] == ["a", "b", "c"] and got["partitions"] == [0, 2]
    got = in_every_order("/api/windows", [{"series": {"team=b": [1]}}, {"series": {"team=a": [2]}}])
    assert list(got["series"]) == ["team=a", "team=b"]
    got = in_every_order("/api/status", [{"ingest": {"1": {}}, "judge": {"1": {}}, "ingest_totals": {"accepted": 2}, "now": 5},
                                         {"ingest": {"0": {}}, "judge": {"0": {}}, "ingest_totals": {"accepted": 3}, "now": 6}])
    assert list(got["judge"]) == ["0", "1"] and got["ingest_totals"] == {"accepted": 5}
    assert "org" not in got  # the org placement has no org stage apart
    # series placement: each worker's org stages, united (one worker may hold none)
    got = in_every_order("/api/status", [{"judge": {"1": {}}, "org": {"1": {"done_until": 8}}, "now": 5},
                                         {"judge": {"0": {}}, "org": {}, "now": 6}])
    assert got["org"] == {"1": {"done_until": 8}}


def test_feedback_summary_is_summed_and_its_precision_recomputed() -> None:
    row = {"org": None, "team": "ads", "alerts": 2, "answered": 2, "acknowledged": 1, "new_normal": 0,
           "not_anomaly": 1, "snoozed": 0, "precision": 0.5}
    one = {"enabled": True, "feedback": [{"id": "1", "at": "2026-01-01T00:00:01Z"}], "summary": {"days": 30, "teams": [row]},
           "raised": []}
    two = {"enabled": True, "feedback": [{"id": "2", "at": "2026-01-01T00:00:02Z"}],
           "summary": {"days": 30, "teams": [{**row, "not_anomaly": 0, "precision": 1.0}]}, "raised": []}
    got = in_every_order("/api/feedback", [one, two])
    assert [f["id"] for f in got["feedback"]] == ["2", "1"]
    assert got["summary"]["teams"] == [{**row, "alerts": 4, "answered": 4, "acknowledged": 2, "precision": 0.75}]


def test_a_receiver_is_up_only_if_up_on_every_worker() -> None:
    up = {"sink": "slack", "up": True, "consecutive_failures": 0, "last_error": None, "last_error_at": None,
          "last_success_at": "2026-01-01T00:00:09Z", "pending_notifications": 0, "pending_keys": []}
    down = {**up, "up": False, "consecutive_failures": 3, "last_error": "HTTP 500", "last_error_at": "2026-01-01T00:00:08Z",
            "last_success_at": "2026-01-01T00:00:01Z", "pending_notifications": 2, "pending_keys": ["k"]}
    got = in_every_order("/api/sinks", [{"sinks": [up]}, {"sinks": [down]}])
    assert got["sinks"] == [{**down, "last_success_at": "2026-01-01T00:00:09Z"}]


def test_every_endpoint_has_a_merge_rule_or_a_reason_to_be_local() -> None:
    served = set(re.findall(r'@(?:app\.|\(page or app\.)?page\)?\("(/api/[^"]+|/healthz|/metrics)"\)',
                            Path("streams/worker/web.py").read_text()))
    assert served and served == set(MERGES) | set(LOCAL), served ^ (set(MERGES) | set(LOCAL))
    assert not set(MERGES) & set(LOCAL)


def test_a_user_on_two_workers_is_summed_and_counted_once() -> None:
    row = {"user": "ana", "usd": 1.5, "requests": 2, "input_tokens": 10, "output_tokens": 5, "usual_usd": 0.5,
           "excess_usd": 1.0}
    one = {"users": 1, "by_spend": [row], "by_excess": [row]}
    two = {"users": 1, "by_spend": [{**row, "usd": 1.0, "usual_usd": None, "excess_usd": 1.0}], "by_excess": []}
    got = in_every_order("/api/top_users", [one, two])
    assert got["users"] == 1
    assert got["by_spend"] == [{**row, "usd": 2.5, "requests": 4, "input_tokens": 20, "output_tokens": 10,
                                "usual_usd": 0.5, "excess_usd": 2.0}]

"""Token budgets through the worker's own pure parts: events of every token shape counted by an
ingest partition, judged by a judge built like the worker's, and the judge's spend rows applied
to a ``unit: tokens`` ledger: the count is exact (input, which includes the cache reads and
writes, plus output; duplicates once) and the thresholds fire once."""

from __future__ import annotations

import orjson

from streams.budgets.ledger import BudgetLedger, budget_notification
from streams.ingest.pipeline import count_message
from streams.ingest.pricing import Pricer
from streams.ingest.windows import IngestPartition
from streams.judge.core import judge_factory
from tokenpulse.policy import parse_policy

W = 60
DAY0 = 1_764_115_200  # 2025-11-26 00:00 UTC

POLICY = """
budgets:
  - name: ads-tokens
    scope: {team: ads}
    unit: tokens
    amount: 100000
    period: day
    thresholds: [50, 80, 100]
    forecast: {enabled: false}
  - name: org-usd
    scope: org
    amount: 1000
    period: day
"""


def _events(i: int, t: float) -> list[tuple[dict[str, object], int]]:
    """Events of each accepted token shape with the tokens a budget must count for each."""
    base = {"org": "default", "team": "ads", "user": "u1", "ts": t}
    return [
        ({**base, "event_id": f"c{i}", "provider": "openai", "model": "gpt-4o", "input_tokens": 3000,
          "output_tokens": 500, "cache_read_tokens": 1000}, 3500),  # canonical: input includes the cache
        ({**base, "event_id": f"o{i}", "provider": "openai", "model": "gpt-4o",
          "usage": {"prompt_tokens": 2000, "completion_tokens": 300,
                    "prompt_tokens_details": {"cached_tokens": 1500}}}, 2300),  # OpenAI: cached is a subset
        ({**base, "event_id": f"a{i}", "provider": "anthropic", "model": "claude-sonnet-4-5",
          "usage": {"input_tokens": 100, "output_tokens": 400, "cache_read_input_tokens": 2000,
                    "cache_creation_input_tokens": 500}}, 3000),  # Anthropic: cache in addition
        ({**base, "team": "search", "event_id": f"s{i}", "provider": "openai", "model": "gpt-4o",
          "input_tokens": 50_000, "output_tokens": 1}, 0),  # another team's
    ]


def test_token_budget_counts_every_shape_exactly_and_fires_each_threshold_once() -> None:
    policy = parse_policy(POLICY)
    specs = {s.name: s for s in policy.budget_specs()}
    tokens = specs["ads-tokens"]
    assert (tokens.unit, tokens.limit) == ("tokens", 100_000)
    core = IngestPartition(partition=0, window_seconds=W, lateness=0, idle_grace=10,
                           watched=frozenset({"org", "team"}))
    judge = judge_factory(W, "default", {}, policy.alert_policy())(0)
    ledger = BudgetLedger(W, list(specs.values()))
    pricer = Pricer({})
    expected = 0
    fired: list[tuple[float, float, float]] = []  # (threshold, pct used, at)
    seq = 0
    for i in range(11):  # 8,800 tokens a window: 50 % in window 6, 80 % in 10, 96.8 % at the end
        t = DAY0 + 9 * 3600 + i * W + 1
        batch = _events(i, t)
        expected += sum(n for _, n in batch)
        msg = orjson.dumps([e for e, _ in batch])
        count_message(core, msg, pricer, t, lambda *a: None)
        if i % 3 == 0:  # a producer retry: the same message again, counted once
            count_message(core, msg, pricer, t, lambda *a: None)
        core.wall_at_max = core.max_ts
        partials = core.advance(t + W)  # closes the window before this one
        seq += 1
        out = judge.receive(0, 1, core.closed_until, partials, seq)
        for row in out.spend:
            ledger.apply_judge_spend(*row)
            ledger.apply_judge_spend(*row)  # a redelivered windows message: skipped
        wm = judge.watermark()
        if wm is not None:
            for ev in ledger.crossings(float(wm)):
                n = budget_notification(ev, tokens, float(wm))
                assert n.unit == "tokens" and n.limit == tokens.to_display(tokens.limit)  # in tokens, not $
                fired.append((float(ev.threshold or 0), ev.status.pct_used, float(wm)))
    partials = core.advance(DAY0 + 86400 - 1)  # close the rest
    out = judge.receive(0, 1, core.closed_until, partials, seq + 1)
    for row in out.spend:
        ledger.apply_judge_spend(*row)
    assert not [e for e in ledger.crossings(float(judge.watermark() or 0)) if e.budget == "ads-tokens"]
    assert expected == 11 * 8800
    assert ledger.spent("ads-tokens", "2025-11-26") == expected  # exact, every shape, duplicates once
    assert [th for th, _, _ in fired] == [50.0, 80.0]
    assert fired[0][1] == 52.8 and fired[1][1] == 88.0  # the first window at or over each line
    st = ledger.status("ads-tokens", DAY0 + 12 * 3600)
    assert (st.unit, st.spent, st.limit, st.fired) == ("tokens", float(expected), 100_000.0, [50.0, 80.0])
    assert st.fired_at == {"50": fired[0][2], "80": fired[1][2]}
    # 8,800 more: 105.6 % in the same day fires 100 % once
    ledger.apply_judge_spend("team=ads", DAY0 + 13 * 3600, [0, 8000, 800, 0, 0, 1], {0: 99})
    [hundred] = ledger.crossings(DAY0 + 13 * 3600 + W)
    assert (hundred.threshold, hundred.status.spent) == (100.0, expected + 8800.0)

"""The dev stack's demo policy (issue 13, item 1): shipped in the package, valid, and telling the
story with the simulator's demo teams -- an org month split between teams in a named time zone,
a team day that crosses 80 % a few minutes into the live traffic at any time of day, an
in-house model the teams use in different shares, and one team over the third-party line."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams.budgets.mix import is_internal
from streams.common.periods import Period
from streams.ingest.normalize import normalize
from streams.ingest.pricing import Pricer
from tokenpulse.demo import FITTED_BUDGET, REACH_80_AFTER_S, demo_policy_text, write_demo_policy
from tokenpulse.policy import parse_policy
from tokenpulse.simulate import DEFAULT_TEAMS, DEMO_TEAMS, Simulator

POLICY = parse_policy(demo_policy_text().encode(), "demo/policy.yaml")


def test_the_shipped_policy_has_every_part_of_the_story() -> None:
    assert POLICY.budget_timezone == "Europe/Berlin"
    org = next(b for b in POLICY.budgets if not b.scope)
    assert org.period == "month" and {a.team for a in org.allocations} == {t.name for t in DEMO_TEAMS}
    day = next(b for b in POLICY.budgets if b.name == FITTED_BUDGET)
    assert day.period == "day" and day.scope == {"team": "support"} and 80 in day.thresholds
    assert "acme-llama-70b" in POLICY.prices and POLICY.mix.internal_models == ["acme-*"]
    assert POLICY.mix.max_third_party_share is not None
    assert {t: p.slack_channel for t, p in POLICY.teams.items()} == {
        t.name: f"#{t.name}-ai-spend" for t in DEMO_TEAMS}


def _spend(teams: tuple, start: float, end: float, rate: float) -> dict[str, dict[str, float]]:  # type: ignore[type-arg]
    pricer = Pricer(POLICY.price_overrides())
    out: dict[str, dict[str, float]] = defaultdict(lambda: {"internal": 0.0, "third": 0.0})
    for raw in Simulator(rate=rate, teams=teams, seed=3).between(start, end):
        ev = normalize(raw)
        kind = "internal" if is_internal(ev.model, POLICY.mix.internal_models) else "third"
        out[ev.team][kind] += pricer.price(ev)
    return out


def test_teams_use_the_in_house_model_in_different_shares_and_one_crosses_the_line() -> None:
    noon = datetime(2026, 12, 2, 12, tzinfo=UTC).timestamp()  # a Wednesday
    spend = _spend(DEMO_TEAMS, noon - 3 * 3600, noon, rate=4)
    share = {t: s["third"] / (s["third"] + s["internal"]) for t, s in spend.items()}
    line = POLICY.mix.max_third_party_share
    assert line is not None
    assert [t for t, x in share.items() if x > line] == ["legal"], share
    assert max(share.values()) - min(share.values()) > 0.4, share  # different shares, not one
    assert all(s["internal"] > 0 for s in spend.values())
    # the default teams stay third-party only, with the same events as before for a seed
    assert all(s["internal"] == 0 for s in _spend(DEFAULT_TEAMS, noon, noon + 600, rate=4).values())


@pytest.mark.parametrize("hour", [3, 12, 22])  # UTC: night, noon, late evening (past Berlin midnight)
def test_the_team_day_crosses_80_percent_minutes_into_the_live_traffic(tmp_path: Path, hour: int) -> None:
    now = datetime(2026, 12, 2, hour, 30, tzinfo=UTC).timestamp()
    rate, backfill_h = 4.0, 3.0
    dest = tmp_path / "demo-policy.yaml"
    amount = float(write_demo_policy(dest, now=now, backfill_hours=backfill_h, rate=rate))
    written = parse_policy(dest.read_bytes(), str(dest))
    assert float(next(b.amount for b in written.budgets if b.name == FITTED_BUDGET)) == amount
    assert "tokenpulse dev: fitted" in dest.read_text()  # the rest of the file, comments included

    # what the simulator's support team really spends in today's part of the backfill, then live
    day_start, _ = Period("day", "Europe/Berlin").bounds(now)
    start = max(day_start, now - backfill_h * 3600)
    support = next(t for t in DEMO_TEAMS if t.name == "support")
    by_8min = _spend((support,), start, now + REACH_80_AFTER_S, rate)["support"]
    at = (by_8min["third"] + by_8min["internal"]) / amount
    assert 0.7 <= at <= 0.9, at
    before = _spend((support,), start, now, rate)["support"]
    assert (before["third"] + before["internal"]) / amount < 0.8  # not already in the backfill
    assert math.isfinite(amount)


def test_the_dev_stack_reads_its_own_policy_file_as_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dev stack runs the demo policy as written (no gate of its own): its reloader's first
    look at the file finds nothing changed, so no "restart required" warning."""
    from streams.common.metrics import Metrics
    from streams.worker.reload import PolicyReloader
    from tokenpulse.runtime import policy_source, stream_config
    from tokenpulse.settings import load_settings

    dest = tmp_path / "demo-policy.yaml"
    write_demo_policy(dest, now=datetime(2026, 12, 2, 12, tzinfo=UTC).timestamp(), backfill_hours=3, rate=4)
    monkeypatch.setenv("TOKENPULSE_POLICY", str(dest))
    settings = load_settings()
    cfg = stream_config(settings, parse_policy(dest.read_bytes(), str(dest)), "127.0.0.1:1", 1)
    source = policy_source(settings, "127.0.0.1:1", 1)
    assert source is not None
    reloader = PolicyReloader(source, cfg, lambda new, applied: None, Metrics())
    res = reloader.check()
    assert (res.restart_required if res is not None else []) == []

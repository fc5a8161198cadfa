"""The demo policy of ``tokenpulse dev`` (``tokenpulse/demo/policy.yaml``), fitted to the
simulated traffic.

Use :func:`write_demo_policy` when the dev stack runs with no policy of its own: the file is
copied into the data directory with one number changed, the support team's daily budget, so
that its 80 % threshold is crossed a few minutes into the live traffic at any time of day
(the simulator's traffic follows the clock: a fixed amount would be crossed at noon and never
at night). The worker then watches that copy, so edits to it are reloaded like any policy.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from importlib.resources import files
from pathlib import Path

from streams.common.periods import Period
from streams.ingest.normalize import normalize
from streams.ingest.pricing import Pricer
from tokenpulse.policy import parse_policy
from tokenpulse.simulate import DEMO_TEAMS, Simulator, Spike, Team

__all__ = ["DEMO_POLICY", "FITTED_BUDGET", "demo_policy_text", "expected_spend", "write_demo_policy"]

FITTED_BUDGET = "support-daily"  # its `amount:` line carries the marker below
_FITTED_LINE = re.compile(r"^(\s*amount:\s*)[0-9.]+(\s*# tokenpulse dev: fitted)\s*$", re.M)
# 80 % is crossed this long after the live traffic starts
REACH_80_AFTER_S = 8 * 60


def demo_policy_text() -> str:
    """The demo policy as shipped in the package."""
    return files("tokenpulse").joinpath("demo", "policy.yaml").read_text(encoding="utf-8")


DEMO_POLICY = "tokenpulse/demo/policy.yaml"


def expected_spend(team: Team, start: float, end: float, *, rate: float, pricer: Pricer,
                   spikes: list[Spike] | None = None, sim_start: float | None = None, sample: int = 2000,
                   seed: int = 1) -> float:
    """What the simulator's ``team`` is expected to spend in ``[start, end)`` (USD): its rate
    integrated minute by minute, times the mean priced cost of ``sample`` of its events."""
    if end <= start:
        return 0.0
    sim = Simulator(rate=rate, teams=(team,), spikes=[s for s in spikes or [] if s.team == team.name], seed=seed)
    s0 = start if sim_start is None else sim_start
    calls = 0.0
    t = start
    while t < end:
        step = min(60.0, end - t)
        calls += sim.team_rate(team, t + step / 2, s0) * step
        t += step
    costs = [pricer.price(normalize(sim._event(team, start, s0))) for _ in range(sample)]
    return calls * math.fsum(costs) / len(costs)


def write_demo_policy(dest: Path, *, now: float, backfill_hours: float, rate: float,
                      spikes: list[Spike] | None = None, reach_80_after_s: float = REACH_80_AFTER_S) -> Decimal:
    """Write the demo policy to ``dest`` with :data:`FITTED_BUDGET` sized so that the simulated
    support team reaches 80 % of it ``reach_80_after_s`` after ``now`` (the backfill covers the
    ``backfill_hours`` before it); return that amount."""
    text = demo_policy_text()
    policy = parse_policy(text.encode(), DEMO_POLICY)
    [budget] = [b for b in policy.budgets if b.name == FITTED_BUDGET]
    team = next(t for t in DEMO_TEAMS if t.name == budget.scope["team"])
    day = Period(budget.period, budget.timezone or policy.budget_timezone)
    day_start, _ = day.bounds(now)
    start = max(float(day_start), now - backfill_hours * 3600)
    spend = expected_spend(team, start, now + reach_80_after_s, rate=rate,
                           pricer=Pricer(policy.price_overrides()), spikes=spikes, sim_start=now)
    amount = Decimal(max(1.0, spend / 0.8)).quantize(Decimal("0.01"))
    fitted, n = _FITTED_LINE.subn(lambda m: f"{m.group(1)}{amount}{m.group(2)}", text)
    if n != 1:  # the shipped file and this function disagree: a bug of ours, said plainly
        raise RuntimeError(f"{DEMO_POLICY}: expected one 'amount: N  # tokenpulse dev: fitted' line, found {n}")
    parse_policy(fitted.encode(), str(dest))  # what is written loads
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    tmp.write_text(fitted, encoding="utf-8")
    tmp.replace(dest)  # the worker's reloader never reads half a file
    return amount

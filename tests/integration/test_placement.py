"""``TOKENPULSE_PLACEMENT=series`` end to end on a real broker: one org's series judged on two
partitions (acme's ads on 0; acme's search and the org itself on 1, acme's org partition), the
org stage fed on the verdicts topic. The page of acme's ads spike and the exact spend of its
budget are those of the default placement, which runs the same history beside it."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.common.partitioning import org_partition, series_partition
from streams.ingest.windows import to_nusd
from tests.integration.harness import Worker, deployment_env, get_json, get_text, produce, settled, wait_until
from tests.integration.test_budgets import noon_zone
from tests.integration.test_spine import DASHBOARD, DETECTOR_POLICY, PD_KEY, W, event

pytestmark = pytest.mark.integration

PARTITIONS = 2
BUDGET = "acme-ads-daily"


def policy(tz: str) -> str:
    return f"""
watch: [team]
{DETECTOR_POLICY}alerts:
  warning_excess_usd: 2
  page_min_excess_usd: 5
  resolve_after_windows: 2
budget_timezone: {tz}
budgets:
  - name: {BUDGET}
    scope: {{org: acme, team: ads}}
    amount: 100000
    period: day
    thresholds: [50]
    forecast: {{enabled: false}}
"""


def acme_history(t0: int, rng: random.Random) -> tuple[list[tuple[bytes, bytes]], int]:
    """40 windows of acme's teams ads and search, ads spiking in windows 28-30; the usage
    messages and ads' exact nano-dollars."""
    msgs: list[tuple[bytes, bytes]] = []
    ads = 0
    for i in range(40):
        for team in ("ads", "search"):
            spike = team == "ads" and i in range(28, 31)
            n, lo, hi = (40, 0.4, 0.6) if spike else (6, 0.05, 0.15)
            evs = [event(team, t0 + i * W + rng.random() * W * 0.9, round(rng.uniform(lo, hi), 6), rng, org="acme")
                   for _ in range(n)]
            if team == "ads":
                ads += sum(to_nusd(e["cost_usd"]) for e in evs)
            msgs.append((f"acme/{team}".encode(), orjson.dumps(evs)))
    return msgs, ads


@pytest.mark.parametrize("placement", ["org", "series"])
def test_one_org_judged_on_two_partitions_pages_and_budgets_as_by_org(
        placement: str, broker: Any, slack: Any, pagerduty: Any, workdir: Path) -> None:
    # where acme's series are judged with TOKENPULSE_PLACEMENT=series: on both partitions
    assert org_partition("acme", PARTITIONS) == 1
    assert [series_partition(s, PARTITIONS) for s in ("org=acme|team=ads", "org=acme|team=search", "org=acme")] == [0, 1, 1]
    now = time.time()
    path = workdir / "policy.yaml"
    path.write_text(policy(noon_zone(now)))
    env = deployment_env(
        broker, workdir, PARTITIONS, window_seconds=W, lateness_seconds=0.5, idle_grace_seconds=1,
        checkpoint_seconds=0.2, policy=path, slack_token=slack.token, slack_api_url=f"{slack.url}/api/",
        slack_channel="#ai-spend", pagerduty_routing_key=PD_KEY, pagerduty_url=pagerduty.enqueue_url,
        dashboard_url=DASHBOARD, placement=placement)
    msgs, ads_nusd = acme_history(int(now // W) * W - 40 * W, random.Random(15))
    # the history first (docs/deploying.md#backfills)
    produce(broker.bootstrap, f"{env['TOKENPULSE_TOPIC_PREFIX']}.usage", msgs)
    worker = Worker(env, workdir / "worker.log")
    try:
        worker.start(PARTITIONS, timeout=120)
        settled([worker], PARTITIONS)
        wait_until(lambda: [e for e in pagerduty.events() if e["event_action"] == "resolve"], 90, "a PagerDuty resolve")

        def spent() -> int | None:
            rows = [r for r in get_json(f"{worker.url}/api/budgets")["budgets"] if r["budget"] == BUDGET]
            return rows[0]["spent_base"] if rows else None

        wait_until(lambda: spent() == ads_nusd, 30, "the budget's exact spend")
        pd = pagerduty.events()
        assert [(e["event_action"], e["dedup_key"]) for e in pd] == [
            ("trigger", "cost_spike:org=acme|team=ads"), ("resolve", "cost_spike:org=acme|team=ads")], pd
        judged = {int(q): s["series"] for q, s in get_json(f"{worker.url}/api/status", local=True)["judge"].items()}
        metrics = get_text(f"{worker.url}/metrics")
        if placement == "series":
            assert judged.get(0) and judged.get(1), judged  # acme's series on both partitions
            # acme's org stage (partition 1) heard from both judge partitions over the verdicts topic
            for q in (0, 1):
                assert f'tokenpulse_org_verdicts_total{{duplicate="false",judge="{q}"}}' in metrics, metrics
        else:
            assert not judged.get(0) and judged.get(1), judged  # every acme series on acme's partition
            assert "tokenpulse_org_verdicts_total" not in metrics
    except BaseException:
        print(worker.diagnostics() if worker.proc is not None and worker.proc.poll() is None else worker.log_tail(150))
        raise
    finally:
        worker.stop()

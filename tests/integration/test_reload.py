"""Policy reload end to end on a real broker with a real worker and a local Slack: a daily team
budget at 60 %; the policy file is rewritten with a lower limit and the 80 % notification
reaches the team's channel without a restart, the change is in the budget's change log, and
``/api/policy`` names what was applied and what waits for a restart. Then an invalid policy:
the worker keeps running on the last good one, ``/api/policy`` shows the error with its line
(also after a SIGHUP), and the budget still fires its 100 %."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.harness import Worker, deployment_env, get_json, get_text, produce, wait_until
from tests.integration.test_budgets import noon_zone, root_posts
from tests.integration.test_spine import PD_KEY, W, event

pytestmark = pytest.mark.integration

PARTITIONS = 2
BUDGET = "ads-daily"


def policy_text(tz: str, amount: str, watch: str = "[team]") -> str:
    return f"""\
watch: {watch}
teams:
  ads: {{slack_channel: "#ads-spend"}}
budget_timezone: {tz}
budgets:
  - name: {BUDGET}
    scope: {{team: ads}}
    amount: {amount}
    period: day
    thresholds: [50, 80, 100]
    forecast: {{enabled: false}}
"""


def posts(slack: Any, th: int) -> list[dict[str, Any]]:
    return root_posts(slack, f"{BUDGET}: {th}% used")


def spend(t: float, usd: float, rng: random.Random) -> list[tuple[bytes, bytes]]:
    """``usd`` of team ads in the window of ``t`` (four events), and a little search traffic."""
    ads = [event("ads", t + i * 0.1, round(usd / 4, 9), rng) for i in range(4)]
    return [(b"ads", orjson.dumps(ads)), (b"search", orjson.dumps([event("search", t, 0.01, rng)]))]


def test_a_lowered_budget_fires_without_a_restart_and_a_broken_policy_changes_nothing(
        broker: Any, slack: Any, pagerduty: Any, workdir: Path) -> None:
    began = time.monotonic()
    rng = random.Random(5)
    tz = noon_zone(time.time())
    policy = workdir / "policy.yaml"
    policy.write_text(policy_text(tz, "10"))
    env = deployment_env(
        broker, workdir, PARTITIONS, tag="rel",
        window_seconds=W, lateness_seconds=0.5, idle_grace_seconds=1, checkpoint_seconds=0.5,
        policy=policy, policy_reload_seconds=0.5,
        slack_token=slack.token, slack_api_url=f"{slack.url}/api/", slack_channel="#ai-spend",
        pagerduty_routing_key=PD_KEY, pagerduty_url=pagerduty.enqueue_url,
    )
    usage = f"{env['TOKENPULSE_TOPIC_PREFIX']}.usage"
    worker = Worker(env, workdir / "worker.log")
    try:
        worker.start(PARTITIONS)
        st = get_json(f"{worker.url}/api/policy")
        assert st["path"] == str(policy) and st["last_reload"] is None and st["restart_required"] == []

        # 1. $6 of a $10 budget: 50 %
        produce(broker.bootstrap, usage, spend(time.time() - 3 * W, 6.0, rng))
        wait_until(lambda: posts(slack, 50), 30, "the 50 % notification")
        assert posts(slack, 80) == []

        # 2. the limit lowered to $7 (and the watch list changed, which needs a restart):
        # $6 is now 85.7 %, the 80 % threshold fires at the next judged window
        policy.write_text(policy_text(tz, "7", watch="[team, org]"))
        [post] = wait_until(lambda: posts(slack, 80), 20, "the 80 % notification after the reload")
        assert post["channel"] == "#ads-spend"
        assert posts(slack, 100) == [] and len(posts(slack, 50)) == 1
        st = get_json(f"{worker.url}/api/policy")
        last = st["last_reload"]
        assert last["ok"] is True and last["error"] is None and last["applied"] == ["budgets"]
        assert last["restart_required"] == ["watch"] == st["restart_required"]
        [row] = get_json(f"{worker.url}/api/budgets?budget={BUDGET}")["budgets"]
        assert row["limit_base"] == 7 * 10**9 and row["fired"] == [50.0, 80.0]
        change = row["changes"][-1]
        assert change["change"] == "changed" and change["fields"]["limit"] == {"old": 10 * 10**9, "new": 7 * 10**9}
        metrics = get_text(f"{worker.url}/metrics")
        assert 'tokenpulse_policy_reloads_total{result="ok"} 1' in metrics, metrics

        # 3. an invalid policy: logged, counted, shown with its line; the worker runs on
        policy.write_text(policy_text(tz, "-7"))
        st = wait_until(lambda: (s := get_json(f"{worker.url}/api/policy"))["last_reload"]["ok"] is False and s,
                        10, "the failed reload in /api/policy")
        error = st["last_reload"]["error"]
        assert error.startswith(f"{policy}:8: budgets.0.amount: "), error
        assert st["restart_required"] == ["watch"]  # still the last good reload's
        os.kill(worker.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]  # read it again now
        wait_until(lambda: get_json(f"{worker.url}/api/policy")["last_reload"]["trigger"] == "sighup", 10,
                   "the reload on SIGHUP")
        metrics = get_text(f"{worker.url}/metrics")
        assert 'tokenpulse_policy_reloads_total{result="error"} 2' in metrics, metrics
        assert "tokenpulse_policy_last_reload_successful 0" in metrics
        assert slack.token not in get_text(f"{worker.url}/api/policy")
        assert worker.log_tail(400).count(f"{policy}:8: budgets.0.amount") == 2  # once per attempt

        # 4. the budget still works on the last good policy: over $7, 100 %
        produce(broker.bootstrap, usage, spend(time.time() - 2 * W, 1.5, rng))
        wait_until(lambda: posts(slack, 100), 20, "the 100 % notification on the running policy")
        assert get_json(f"{worker.url}/api/budgets?budget={BUDGET}")["budgets"][0]["limit_base"] == 7 * 10**9
        assert get_json(f"{worker.url}/healthz")["status"] == "ok"
        assert [len(posts(slack, th)) for th in (50, 80, 100)] == [1, 1, 1]
        print(f"reload test took {time.monotonic() - began:.1f}s")
    except BaseException:
        print(worker.diagnostics())
        raise
    finally:
        worker.stop()

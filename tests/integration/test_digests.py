"""A daily Slack digest end to end on a real broker with a real worker and the real slack-sdk:
team ads' channel is subscribed in ``daily`` mode with the day's boundary a minute away.
Its spike is paged at once and goes to no channel immediately; the worker is SIGKILLed after
the notifications were collected and comes back after the boundary: exactly one digest is
posted to the channel for the period, with every ads notification in it, and nothing else.
Team ml's spike, which no digest takes, goes to the default channel at once as before."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes.slack_server import channel_id
from tests.integration.harness import (
    DETECTOR_POLICY,
    Worker,
    consume_all,
    deployment_env,
    get_json,
    produce,
    wait_until,
    windows_summary,
)
from tests.integration.test_delivery_robustness import traffic
from tests.integration.test_spine import PD_KEY, Ledger, W

pytestmark = pytest.mark.integration

PARTITIONS = 2
DIGEST = "#ads-digest"
# policy written -> the day's boundary: start, alerts, collection and kill took 16-18 s at load
# ~3.5 on 2 cores (the printed margin is the rest); the test waits out whatever is left. Over
# twice that, so that a busier machine does not turn it red: it cannot be event-driven (a
# digest period's end is stored when its notifications are collected)
LEAD_S = 40.0


def policy_text(daily_at: str) -> str:
    return f"""
watch: [team]
{DETECTOR_POLICY}alerts:
  warning_excess_usd: 2
  page_min_excess_usd: 5
  resolve_after_windows: 2
  group_keep_firing_s: 0  # flap damping off: this test waits for the team's resolve (as tests/alerts/policies.py)
subscriptions:
  - channel: "{DIGEST}"
    match: {{team: ads}}
    mode: daily
    timezone: UTC
    daily_at: "{daily_at}"
"""


def digest_posts(slack: Any) -> list[dict[str, Any]]:
    return [c for c in slack.calls("chat.postMessage") if c["body"]["channel"] in (DIGEST, channel_id(DIGEST))]


def open_items(worker: Worker) -> int:
    rows = get_json(f"{worker.url}/api/digests")["digests"]
    return sum(p["notifications"] for r in rows if r["channel"] == DIGEST for p in r["open"])


def test_one_daily_digest_per_channel_and_period_across_a_kill(
    broker: Any, slack: Any, pagerduty: Any, workdir: Path
) -> None:
    began = time.monotonic()
    boundary = int(time.time() + LEAD_S)
    policy = workdir / "policy.yaml"
    policy.write_text(policy_text(datetime.fromtimestamp(boundary, tz=UTC).strftime("%H:%M:%S")))
    env = deployment_env(
        broker, workdir, PARTITIONS, tag="dig",
        window_seconds=W, lateness_seconds=0.5, idle_grace_seconds=1, checkpoint_seconds=0.2,
        policy=policy,
        slack_token=slack.token, slack_api_url=f"{slack.url}/api/", slack_channel="#ai-spend",
        pagerduty_routing_key=PD_KEY, pagerduty_url=pagerduty.enqueue_url,
    )
    outbox_topic = f"{env['TOKENPULSE_TOPIC_PREFIX']}.alerts.outbox"
    worker = Worker(env, workdir / "worker.log")
    # The history goes onto the usage topic before the worker starts (docs/deploying.md#backfills):
    # sent after, it could find both partitions idle, and the first one's windows (search's)
    # would be judged before ads' and ml's partials arrived: neither spike paged or collected.
    t0 = int(time.time() // W) * W - 60 * W
    produce(broker.bootstrap, env["TOKENPULSE_TOPIC_PREFIX"] + ".usage", traffic(t0, random.Random(5), Ledger()))
    worker.start(PARTITIONS)
    try:

        # pages and the default channel are immediate, as before
        wait_until(lambda: {e["dedup_key"] for e in pagerduty.events() if e["event_action"] == "resolve"}
                   >= {"cost_spike:team=ads", "cost_spike:team=ml"}, 60, "both spikes paged and resolved")
        ads = wait_until(lambda: [a for a in get_json(f"{worker.url}/api/alerts")["alerts"]
                                  if a["key"] == "cost_spike:team=ads" and a["state"] == "resolved"], 30, "ads resolved")
        ml_roots = [c for c in slack.calls("chat.postMessage")
                    if c["body"]["channel"] == "#ai-spend" and "team=ml" in c["body"]["text"]]
        assert ml_roots, "ml's spike went to the default channel at once"
        # every ads notification collected, none posted to the digest channel (nor the default one)
        expected = wait_until(lambda: _ads_notes(broker.bootstrap, outbox_topic), 20, "the ads notifications")
        wait_until(lambda: open_items(worker) == len(expected), 30,
                   f"{len(expected)} ads notifications collected for the digest")
        assert not digest_posts(slack)
        assert not [c for c in slack.calls("chat.postMessage") if "team=ads" in c["body"]["text"]]
        margin = boundary - time.time()
        assert margin > 1, "the scenario did not fit before the day's boundary"
        assert ads

        # killed before the boundary, back after it: the collected notifications survive
        worker.kill()
        time.sleep(max(0.0, boundary + 1 - time.time()))
        worker.start(PARTITIONS)
        [post] = wait_until(lambda: digest_posts(slack), 60, "the daily digest")
        assert post["status"] == 200 and post["at"] >= boundary
        blocks = post["body"]["blocks"]
        header = blocks[0]["text"]["text"]
        assert f"Daily digest: {len(expected)} notifications, 0 still firing" in header, header
        body = str(blocks)
        assert "team=ads" in body and "triggered" in body and "resolved after" in body
        assert "team=ml" not in body
        # and only once: a few more ticks of the timer, a redelivered outbox, post nothing more
        time.sleep(12)
        assert len(digest_posts(slack)) == 1
        rows = get_json(f"{worker.url}/api/digests")["digests"]
        [row] = [r for r in rows if r["channel"] == DIGEST]
        assert row["open"] == [] and row["sent"][-1]["ok"] and row["sent"][-1]["notifications"] == len(expected)
        print(f"{broker.flavor}: digest of {len(expected)} notifications, {margin:.0f}s to spare before the "
              f"boundary, test {time.monotonic() - began:.1f}s")
    except BaseException:
        print(worker.diagnostics())
        # per windows partition and source, beside judge_(late_)partials_total in the metrics
        print(windows_summary(broker.bootstrap, env["TOKENPULSE_TOPIC_PREFIX"] + ".windows"))
        raise
    finally:
        worker.stop()


def _ads_notes(bootstrap: str, topic: str) -> list[tuple[str, int]]:
    """The distinct (key, seq) of team ads in the outbox, once its resolve is there."""
    recs = consume_all(bootstrap, topic, expect=10_000, timeout=3)
    seen = {(n["key"], n["seq"]): n for n in (orjson.loads(r.value) for r in recs) if n["series"] == "team=ads"}
    return sorted(seen) if any(n["action"] == "resolve" for n in seen.values()) else []

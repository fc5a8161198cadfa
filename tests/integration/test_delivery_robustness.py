"""Delivery that loses nothing, end to end on a real broker with a real worker and the real
slack-sdk / aiohttp clients: Slack answers 429 with Retry-After, PagerDuty a burst of 500s,
Opsgenie a 429 and a 502, and the webhook receiver is out for a minute (503s on Tansu; refusing
connections, and shorter, on Apache Kafka) while alerts are raised. Every notification still
reaches every receiver exactly once and in order (Opsgenie: one alert per incident, created
with the alert key as alias and closed), Slack posts are paced per channel, the outage shows in
/metrics and /api/sinks while it lasts, and no secret reaches the worker's log."""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes.opsgenie_server import FakeOpsgenieServer
from tests.fakes.webhook_server import FakeWebhookServer
from tests.integration.harness import (
    DETECTOR_POLICY,
    Worker,
    consume_all,
    deployment_env,
    get_json,
    get_text,
    produce,
    wait_until,
    windows_summary,
)
from tests.integration.test_spine import PD_KEY, Ledger, W, event

pytestmark = pytest.mark.integration

PARTITIONS = 2
HOOK_SECRET = "whsec-robust-SeCrEt-5678"
OG_KEY = "genie-robust-SeCrEt-9012"
# One full-length outage (the minute) on one flavour; compressed on the other.
OUTAGE_S = {"tansu": 60.0, "kafka": 15.0}
SPIKES = {"ads": range(40, 43), "ml": range(45, 48)}

POLICY = f"""
watch: [team]
{DETECTOR_POLICY}alerts:
  warning_excess_usd: 2
  page_min_excess_usd: 5
  resolve_after_windows: 2
  group_keep_firing_s: 0  # flap damping off: this test waits for the team's resolve (as tests/alerts/policies.py)
"""


@pytest.fixture
def webhook() -> Any:
    with FakeWebhookServer(secret=HOOK_SECRET) as s:
        yield s


@pytest.fixture
def opsgenie() -> Any:
    with FakeOpsgenieServer(api_keys={OG_KEY}) as s:
        yield s


def traffic(t0: int, rng: random.Random, ledger: Ledger) -> list[tuple[bytes, bytes]]:
    """test_spine's pattern: quiet history, then a few windows of spike per spiking team."""
    msgs: list[tuple[bytes, bytes]] = []
    for i in range(60):
        start = t0 + i * W
        for team in ("ads", "search", "ml"):
            hot = i in SPIKES.get(team, ())
            n, lo, hi = (60, 0.4, 0.6) if hot else (6, 0.05, 0.15)
            evs = [event(team, start + rng.random() * W * 0.9, round(rng.uniform(lo, hi), 6), rng) for _ in range(n)]
            for e in evs:
                ledger.add(e)
            msgs.append((team.encode(), orjson.dumps(evs)))
    return msgs


def sink(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for r in rows if r["sink"] == name)


def test_outages_rate_limits_and_500s_lose_and_duplicate_nothing(
    broker: Any, slack: Any, pagerduty: Any, webhook: FakeWebhookServer, opsgenie: FakeOpsgenieServer, workdir: Path
) -> None:
    began = time.monotonic()
    rng = random.Random(11)
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    env = deployment_env(
        broker, workdir, PARTITIONS,
        window_seconds=W, lateness_seconds=0.5, idle_grace_seconds=1, checkpoint_seconds=0.2,
        policy=policy,
        slack_token=slack.token, slack_api_url=f"{slack.url}/api/", slack_channel="#ai-spend",
        pagerduty_routing_key=PD_KEY, pagerduty_url=pagerduty.enqueue_url,
        webhook_url=webhook.hook_url, webhook_secret=HOOK_SECRET,
        opsgenie_api_key=OG_KEY, opsgenie_api_url=opsgenie.url,
    )
    outbox_topic = f"{env['TOKENPULSE_TOPIC_PREFIX']}.alerts.outbox"
    worker = Worker(env, workdir / "worker.log")
    # The traffic goes onto the usage topic before the worker starts (docs/deploying.md#backfills):
    # sent after, it could find both partitions idle, and the first one's windows (search's)
    # would be judged before ads' and ml's partials arrived: no spike, nothing to deliver.
    ledger = Ledger()
    t0 = int(time.time() // W) * W - 60 * W
    produce(broker.bootstrap, env["TOKENPULSE_TOPIC_PREFIX"] + ".usage", traffic(t0, rng, ledger))
    outage = OUTAGE_S.get(broker.flavor, 15.0)
    slack.rate_limit_next(retry_after=2)
    pagerduty.fail_next(500, times=4)
    opsgenie.rate_limit_next(retry_after=1)
    opsgenie.fail_next(502)
    # The worker reads the traffic as soon as it starts, so the webhook is out from before
    # then (503s); the outage proper, timed as before, begins once the worker is up.
    webhook.outage_for(3600)
    worker.start(PARTITIONS)
    try:
        if broker.flavor == "tansu":
            webhook.outage_for(outage)
        else:
            webhook.down_for(outage)  # refusing connections from now on: the 503s can end
            webhook.outage_until(None)
        outage_ends = time.time() + outage

        # while the webhook is out: the other sinks go on, and the outage is reported
        wait_until(lambda: [e for e in pagerduty.events() if e["event_action"] == "resolve"], 60,
                   "PagerDuty resolves during the webhook outage")
        down = wait_until(
            lambda: (s := sink(get_json(f"{worker.url}/api/sinks")["sinks"], "webhook"))["pending_notifications"]
            and not s["up"] and s, 30, "/api/sinks to report the webhook down")
        assert time.time() < outage_ends, "the scenario did not fit in the outage"
        assert down["consecutive_failures"] >= 1 and down["last_error"], down
        metrics = get_text(f"{worker.url}/metrics")
        assert 'tokenpulse_sink_up{sink="webhook"} 0' in metrics, metrics
        assert 'tokenpulse_sink_up{sink="slack"} 1' in metrics, metrics
        assert "tokenpulse_sink_consecutive_failures{sink=\"webhook\"}" in metrics

        # after it: everything pending goes out, and every sink reports up with nothing pending
        def settled() -> bool:
            rows = get_json(f"{worker.url}/api/sinks")["sinks"]
            return len(rows) == 4 and all(r["up"] and r["pending_notifications"] == 0 for r in rows) \
                and time.time() > outage_ends
        wait_until(settled, outage + 60, "every sink up with nothing pending")
        outbox = {}
        for r in consume_all(broker.bootstrap, outbox_topic, expect=len(webhook.deliveries()), timeout=20):
            n = orjson.loads(r.value)
            outbox[(n["key"], n["seq"])] = n
        notes = sorted(outbox.values(), key=lambda n: (n["key"], n["seq"]))
        keys = {n["key"] for n in notes}
        assert {"cost_spike:team=ads", "cost_spike:team=ml"} <= keys, keys
        assert all(any(n["action"] == "resolve" for n in notes if n["key"] == k) for k in keys)

        # webhook: every notification exactly once (no accepted duplicate), in seq order per key
        got = [(b["notification"]["key"], b["notification"]["seq"]) for b in webhook.deliveries()]
        assert sorted(got) == sorted(outbox), (got, sorted(outbox))
        assert not [r for r in webhook.accepted() if r["duplicate"]]
        for k in keys:
            seqs = [s for kk, s in got if kk == k]
            assert seqs == sorted(seqs), (k, seqs)
        assert webhook.served(503) + len(webhook.downtimes) >= 1

        # PagerDuty: the paged notifications once each, trigger(s) before the resolve, all resolved
        paged = [n for n in notes if n["page"]]
        pd = pagerduty.events()
        want = Counter((n["key"], "resolve" if n["action"] == "resolve" else "trigger") for n in paged)
        assert Counter((e["dedup_key"], e["event_action"]) for e in pd) == want, pd
        for k in {n["key"] for n in paged}:
            actions = [e["event_action"] for e in pd if e["dedup_key"] == k]
            assert actions[-1] == "resolve" and "resolve" not in actions[:-1], (k, actions)
            assert pagerduty.incidents[k]["status"] == "resolved"
        assert pagerduty.served(500) == 4

        # Opsgenie: the same pages, as one alert per incident: created (the update folded into
        # it by its alias) and closed, after a 429 and a 502
        og = opsgenie.events()
        want_og = Counter((n["key"], "close" if n["action"] == "resolve" else "create") for n in paged)
        assert Counter((e["alias"], e["action"]) for e in og) == want_og, og
        for k in {n["key"] for n in paged}:
            actions = [e["action"] for e in og if e["alias"] == k]
            assert actions[-1] == "close" and "close" not in actions[:-1], (k, actions)
            alert = opsgenie.alerts[k]
            assert (alert["status"], alert["opened"], alert["priority"]) == ("closed", 1, "P1"), alert
        assert opsgenie.served(429) == 1 and opsgenie.served(502) == 1

        # Slack: one root per incident, every later notification once in its thread, paced
        calls = slack.calls("chat.postMessage")
        ok = [c for c in calls if c["status"] == 200]
        roots = [c for c in ok if not c["body"].get("thread_ts")]
        replies = [c for c in ok if c["body"].get("thread_ts")]
        assert len(roots) == sum(n["action"] == "trigger" for n in notes)
        assert len(replies) == len(notes) - len(roots)
        root_ts = {c["response"]["ts"] for c in roots}
        assert all(c["body"]["thread_ts"] in root_ts for c in replies)
        texts = Counter((c["body"].get("thread_ts"), c["body"]["text"]) for c in ok)
        assert max(texts.values()) == 1, texts  # no post twice
        assert [c["status"] for c in calls].count(429) == 1
        at = sorted(c["at"] for c in calls)
        gaps = [round(b - a, 3) for a, b in itertools.pairwise(at)]
        assert min(gaps) >= 0.9, gaps  # ~1 message per second per channel
        resolves = sum(n["action"] == "resolve" for n in notes)
        assert len([c for c in slack.calls("chat.update") if c["status"] == 200]) == resolves

        log = (workdir / "worker.log").read_text(errors="replace")
        for secret in (slack.token, PD_KEY, HOOK_SECRET, OG_KEY):
            assert secret not in log
        print(f"{broker.flavor}: {len(notes)} notifications, outage {outage:.0f}s, "
              f"test {time.monotonic() - began:.1f}s")
    except BaseException:
        print(worker.diagnostics())
        # per windows partition and source, beside judge_(late_)partials_total in the metrics
        print(windows_summary(broker.bootstrap, env["TOKENPULSE_TOPIC_PREFIX"] + ".windows"))
        raise
    finally:
        worker.stop()

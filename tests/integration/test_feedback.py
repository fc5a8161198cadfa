"""On-call answers an alert from Slack (issue 14), end to end on a real broker: the worker posts
cost spikes with answer buttons to the local Slack; a signed press goes through
``POST /slack/actions``, the feedback topic and the worker that judges the series; Acknowledge
rewrites the message and says so in its thread, Snooze shows in /api/silences, Expected new
normal resolves the alert, a press on a resolved alert is answered without error, and forged
or replayed requests are refused. A page resolved in PagerDuty (a signed webhook v3) resolves
its alert and the Slack thread says who, once however often PagerDuty retries it."""

from __future__ import annotations

import copy
import random
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from streams.worker.pagerduty_webhook import PagerDutyVerifier
from streams.worker.slack_actions import SlackVerifier
from tests.integration.harness import (
    DETECTOR_POLICY,
    Worker,
    deployment_env,
    get_json,
    produce,
    wait_until,
    windows_summary,
)
from tests.integration.test_spine import W, event

pytestmark = pytest.mark.integration

PARTITIONS = 2
SIGNING_SECRET = "slack-signing-secret-for-the-feedback-test"
PD_WEBHOOK_SECRET = "pagerduty-webhook-secret-for-the-feedback-test"
POLICY = f"""
watch: [team]
{DETECTOR_POLICY}alerts:
  warning_excess_usd: 2
  page_min_excess_usd: 5
  resolve_after_windows: 1000
"""


def traffic(t0: int, rng: random.Random) -> list[tuple[bytes, bytes]]:
    """Quiet history, then ads and ml spend ten times as much until now: both alerts fire and
    stay firing (the policy resolves only after 1000 normal windows)."""
    msgs = []
    for i in range(60):
        start = t0 + i * W
        for team in ("ads", "ml", "search"):
            hot = i >= 45 and team != "search"
            n, lo, hi = (60, 0.4, 0.6) if hot else (6, 0.05, 0.15)
            msgs.append((team.encode(), orjson.dumps(
                [event(team, start + rng.random() * W * 0.9, round(rng.uniform(lo, hi), 6), rng) for _ in range(n)])))
    return msgs


def press(url: str, message: dict[str, Any], channel: str, action: str, user: str, *,
          secret: str = SIGNING_SECRET, ts: float | None = None) -> tuple[int, bytes, dict[str, str]]:
    """Press ``action`` on ``message`` as Slack would: the block_actions payload, signed."""
    [buttons] = [b for b in message["blocks"] if b["type"] == "actions"]
    button = next(e for e in buttons["elements"] if e["action_id"] == action)
    payload = {"type": "block_actions", "user": {"id": user, "username": user.lower()},
               "container": {"type": "message", "channel_id": channel, "message_ts": message["ts"]},
               "channel": {"id": channel}, "message": {"ts": message["ts"], "blocks": message["blocks"]},
               "actions": [{"action_id": action, "block_id": buttons["block_id"], "value": button["value"],
                            "type": "button", "action_ts": f"{time.time():.6f}"}]}
    body = urlencode({"payload": orjson.dumps(payload).decode()}).encode()
    stamp = str(int(ts if ts is not None else time.time()))
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": SlackVerifier(secret).signature(stamp, body),
               "Content-Type": "application/x-www-form-urlencoded"}
    return post(url, body, headers), body, headers


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url + "/slack/actions", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def pd_webhook(url: str, kind: str, key: str, event_id: str, *, secret: str = PD_WEBHOOK_SECRET) -> int:
    """A PagerDuty webhook (v3) about the incident of ``key``, signed as PagerDuty signs it."""
    body = orjson.dumps({"event": {"id": event_id, "event_type": kind, "resource_type": "incident",
                                   "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "agent": {"id": "P0ANA01", "summary": "Ana Lee", "type": "user_reference"},
                                   "data": {"id": "Q0INCIDENT", "type": "incident", "incident_key": key}}})
    req = urllib.request.Request(url + "/pagerduty/webhook", data=body, method="POST", headers={
        "Content-Type": "application/json", "X-PagerDuty-Signature": PagerDutyVerifier(secret).signature(body)})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_answers_from_slack_acknowledge_snooze_and_resolve(broker: Any, slack: Any, pagerduty: Any,
                                                           workdir: Path) -> None:
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    env = deployment_env(broker, workdir, PARTITIONS, window_seconds=W, lateness_seconds=0.5, idle_grace_seconds=1,
                         checkpoint_seconds=0.2, policy=policy, slack_token=slack.token,
                         slack_api_url=f"{slack.url}/api/", slack_channel="#ai-spend",
                         slack_signing_secret=SIGNING_SECRET, slack_pacing_seconds=0,
                         pagerduty_routing_key="R0feedbacktest", pagerduty_url=pagerduty.enqueue_url,
                         pagerduty_webhook_secret=PD_WEBHOOK_SECRET)
    worker = Worker(env, workdir / "worker.log")
    # Slack takes its time: the worker rewrites an answered message first and says who answered
    # in its thread after, so seeing the rewrite does not mean the thread line is there yet. The
    # delay makes an assertion that forgets it fail every run, not 1 run in 14 as it did.
    slack.reply_delay = 0.5
    # The history goes onto the usage topic before the worker starts (docs/deploying.md#backfills):
    # sent after, it could find both partitions idle, and the first one's windows (search's)
    # would be judged before ads' and ml's partials arrived: no spike, no buttons to press.
    t0 = int(time.time() // W) * W - 60 * W
    produce(broker.bootstrap, env["TOKENPULSE_TOPIC_PREFIX"] + ".usage", traffic(t0, random.Random(14)))
    worker.start(PARTITIONS)
    try:

        def root(team: str) -> tuple[str, dict[str, Any]] | None:
            for (cid, _), m in list(slack.messages.items()):
                if "thread_ts" not in m and f"team={team}" in m["text"] and any(
                        b["type"] == "actions" for b in m["blocks"]):
                    return cid, copy.deepcopy(m)  # as on-call's screen shows it, whatever happens next
            return None

        cid, ads = wait_until(lambda: root("ads"), 60, "the ads spike posted with buttons")
        _, ml = wait_until(lambda: root("ml"), 30, "the ml spike posted with buttons")
        assert [e["text"]["text"] for b in ads["blocks"] if b["type"] == "actions" for e in b["elements"]] == [
            "Acknowledge", "Expected, new normal", "Not an anomaly", "Snooze 4 h"]

        # forged, and a replay of a genuine one: refused, never applied
        status, body, headers = press(worker.url, ads, cid, "tokenpulse_ack", "U0ANA", secret="not-the-secret")
        assert status == 401
        status, body, headers = press(worker.url, ads, cid, "tokenpulse_ack", "U0ANA")
        assert status == 200
        assert post(worker.url, body, headers) == 401

        def feedback(n: int) -> list[dict[str, Any]] | None:
            rows = get_json(f"{worker.url}/api/feedback")["feedback"]
            return rows if len(rows) >= n else None

        [ack] = wait_until(lambda: feedback(1), 30, "the acknowledgement applied")
        assert (ack["action"], ack["user"], ack["team"]) == ("tokenpulse_ack", "u0ana", "ads")
        assert ack["outcome"].startswith("acknowledged")
        # the message rewritten in place without buttons, and the thread says who
        edited = wait_until(lambda: (m := slack.messages[(cid, ads["ts"])]).get("edited") and m, 15,
                            "the ads message rewritten")
        # the buttons not pressed stay, under a line saying who acknowledged
        assert [e["action_id"] for e in edited["blocks"][-1]["elements"]] == [
            "tokenpulse_new_normal", "tokenpulse_not_anomaly", "tokenpulse_snooze_4h"]
        assert "acknowledged by <@U0ANA>" in edited["blocks"][-2]["elements"][0]["text"]
        wait_until(lambda: any("acknowledged by <@U0ANA>" in r["text"] for r in slack.thread(cid, ads["ts"])), 15,
                   "the ads thread saying who acknowledged")  # posted after the rewrite

        assert press(worker.url, copy.deepcopy(edited), cid, "tokenpulse_snooze_4h", "U0BOB")[0] == 200
        wait_until(lambda: feedback(2), 30, "the snooze applied")
        silences = get_json(f"{worker.url}/api/silences")["silences"]
        assert [(s["matchers"], s["created_by"], s["state"]) for s in silences] == [
            ({"series": "team=ads"}, "feedback:u0bob", "active")]
        # on-call sees the open incident as snoozed, until when, and who acknowledged it first
        [ads_alert] = [a for a in get_json(f"{worker.url}/api/alerts?state=snoozed")["alerts"]
                       if a["key"] == "cost_spike:team=ads"]
        assert (ads_alert["acknowledged_by"], ads_alert["snoozed_by"]) == ("u0ana", "u0bob"), ads_alert
        assert (ads_alert["acknowledged_at"], ads_alert["snoozed_until"]) == (ack["at"], silences[0]["ends_at"])

        # new normal: the ml alert resolves
        assert press(worker.url, ml, cid, "tokenpulse_new_normal", "U0ANA")[0] == 200

        def ml_state() -> str | None:
            alerts = get_json(f"{worker.url}/api/alerts")["alerts"]
            return next((a["state"] for a in alerts if a["key"] == "cost_spike:team=ml"), None)

        wait_until(lambda: ml_state() == "resolved", 30, "the ml alert resolved by the new-normal answer")
        ml_root = wait_until(lambda: (m := slack.messages[(cid, ml["ts"])])["text"].startswith("✅") and m, 30,
                             "the ml message rewritten as resolved")
        assert "u0ana answered: expected, a new normal" in ml_root["blocks"][1]["text"]["text"]
        rows = wait_until(lambda: feedback(3), 30, "the new normal recorded")
        assert rows[0]["outcome"].endswith("resolved")
        # a press on the resolved alert: answered, recorded, nothing changes
        assert press(worker.url, ml, cid, "tokenpulse_ack", "U0CAROL")[0] == 200
        rows = wait_until(lambda: feedback(4), 30, "the late press recorded")
        assert "already resolved" in rows[0]["outcome"]
        assert ml_state() == "resolved"
        assert [r["team"] for r in get_json(f"{worker.url}/api/feedback?team=ml")["feedback"]] == ["ml", "ml"]
        m = urllib.request.urlopen(f"{worker.url}/metrics", timeout=5).read().decode()
        assert 'tokenpulse_slack_actions_rejected_total{reason="forged"} 1' in m
        assert 'tokenpulse_slack_actions_rejected_total{reason="replay"} 1' in m
        assert SIGNING_SECRET not in worker.log_tail(10_000)

        # resolved in PagerDuty: the ads alert resolves and its thread says who; a forged
        # webhook is refused, PagerDuty's retry of the genuine one is applied once
        assert pd_webhook(worker.url, "incident.resolved", "cost_spike:team=ads", "E1", secret="not-it") == 401
        assert pd_webhook(worker.url, "incident.resolved", "cost_spike:team=ads", "E1") == 200
        assert pd_webhook(worker.url, "incident.resolved", "cost_spike:team=ads", "E1") == 200

        def ads_state() -> str | None:
            alerts = get_json(f"{worker.url}/api/alerts")["alerts"]
            return next((a["state"] for a in alerts if a["key"] == "cost_spike:team=ads"), None)

        wait_until(lambda: ads_state() == "resolved", 30, "the ads alert resolved from PagerDuty")
        rows = wait_until(lambda: feedback(5), 30, "the PagerDuty resolve recorded")
        # PagerDuty's time has whole seconds: it may sort before a Slack press of the same second
        [pd] = [r for r in rows if r["source"] == "pagerduty"]
        assert (pd["action"], pd["user"]) == ("tokenpulse_resolve", "Ana Lee")
        wait_until(lambda: any("resolved by Ana Lee in PagerDuty" in r["text"] for r in slack.thread(cid, ads["ts"])),
                   15, "the ads thread saying who resolved it in PagerDuty")
        # the retry is counted when it is consumed, after the first one's answer was posted
        def retry_counted() -> str | None:
            m = urllib.request.urlopen(f"{worker.url}/metrics", timeout=5).read().decode()
            return m if 'tokenpulse_feedback_total{action="tokenpulse_resolve",outcome="duplicate"} 1' in m else None

        m = wait_until(retry_counted, 15, "PagerDuty's retry counted as a duplicate")
        assert 'tokenpulse_pagerduty_webhooks_rejected_total{reason="forged"} 1' in m
        assert PD_WEBHOOK_SECRET not in worker.log_tail(10_000)

        # a restart: the answers and the snooze come back from the table, none is applied again
        worker.stop()
        worker.start(PARTITIONS)
        rows = wait_until(lambda: feedback(5), 60, "the answers restored after the restart")
        assert len(rows) == 5
        assert [s["created_by"] for s in get_json(f"{worker.url}/api/silences")["silences"]] == ["feedback:u0bob"]
        time.sleep(2 * W)  # any redelivered feedback record would be consumed by now
        m = urllib.request.urlopen(f"{worker.url}/metrics", timeout=5).read().decode()
        assert 'outcome="applied"' not in m
        # "new normal" adopted the level it was pressed at: ml, still at 10x when it was
        # pressed, was never paged again (one root message, edited in place when it resolved)
        ml_roots = [m for (_, _), m in list(slack.messages.items())
                    if "thread_ts" not in m and "team=ml" in m["text"]]
        assert len(ml_roots) == 1, [r["text"] for r in ml_roots]
    except BaseException:
        print(worker.diagnostics())
        # per windows partition and source, beside judge_(late_)partials_total in the metrics
        print(windows_summary(broker.bootstrap, env["TOKENPULSE_TOPIC_PREFIX"] + ".windows"))
        raise
    finally:
        worker.stop()

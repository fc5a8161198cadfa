"""Budgets end to end on a real broker with a real worker: a small daily team budget, spend that
crosses 50 % and 80 % (with a duplicate and a late event on the way), the ledger in
``/api/budgets`` exact to the nano-dollar, and each threshold notification in the team's Slack
channel exactly once, also after a SIGKILL of the worker right after the 80 % one and a restart
that replays the unacknowledged tail (and then carries the restored ledger on to 100 %). The
budget has ``on_exhausted: block``: the decisions topic gets exactly one ``block`` record at
100 % (none before), keyed by the budget, until the period's end.

Before it, a backlog from yesterday that the first start counts: its 50 % and third-party share
crossings are recorded, not posted. Alongside, on the same traffic: a ``unit: tokens`` budget of the same team (its ledger exact to
the token across the kill, its thresholds posted once), and the third-party share alert (the
team spends mostly on a third-party model: one ``mix_share`` post in its channel, none for a
team under the minimum spend)."""

from __future__ import annotations

import random
import time
import urllib.error
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.ingest.windows import to_nusd
from tests.integration.harness import Worker, broker_cases, consume_all, deployment_env, get_json, get_text, produce, wait_until
from tests.integration.test_spine import PD_KEY, W, event

pytestmark = pytest.mark.integration

PARTITIONS = 2
LIMIT_USD = 10
BUDGET = "ads-daily"
TOKEN_BUDGET = "ads-tokens"
TOKEN_LIMIT = 50 * 1100  # 50 events of 1,000 input + 100 output tokens


def noon_zone(now: float) -> str:
    """A fixed-offset zone in which ``now`` is around noon: the test's events never straddle
    the budget's (local) midnight, whenever it runs."""
    offset = 12 - datetime.fromtimestamp(now, tz=UTC).hour  # -11..12: all exist as Etc/GMT zones
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX sign: Etc/GMT-5 is UTC+5


def policy_text(tz: str) -> str:
    return f"""
watch: [team]
teams:
  ads: {{slack_channel: "#ads-spend"}}
budget_timezone: {tz}
mix:
  internal_models: ["acme-*"]
  max_third_party_share: 0.4
  period: day
  min_spend_usd: 1
budgets:
  - name: {BUDGET}
    scope: {{team: ads}}
    amount: {LIMIT_USD}
    period: day
    thresholds: [50, 80, 100]
    forecast: {{enabled: false}}
    on_exhausted: block
  - name: {TOKEN_BUDGET}
    scope: team=ads
    unit: tokens
    amount: {TOKEN_LIMIT}
    period: day
    thresholds: [25, 50]
    forecast: {{enabled: false}}
"""


class Spend:
    """The exact nano-dollars the worker must report for team ads (unique event ids)."""

    def __init__(self) -> None:
        self.nusd = 0
        self.tokens = 0  # input (cache included) + output
        self.ids: set[str] = set()

    def add(self, ev: dict[str, Any]) -> dict[str, Any]:
        if ev["team"] == "ads" and ev["event_id"] not in self.ids:
            self.ids.add(ev["event_id"])
            self.nusd += to_nusd(ev["cost_usd"])
            self.tokens += ev["input_tokens"] + ev["output_tokens"]
        return ev


def burst(t: float, n: int, usd_each: float, rng: random.Random, spend: Spend) -> list[tuple[bytes, bytes]]:
    """``n`` ads events of ~``usd_each`` (nano-dollar precision) in the window of ``t``, and a
    little search traffic so that both usage partitions move."""
    ads = [spend.add(event("ads", t + rng.random() * W * 0.5, round(usd_each * rng.uniform(0.9, 1.1), 9), rng))
           for _ in range(n)]
    search = [spend.add(event("search", t + rng.random() * W * 0.5, 0.01, rng)) for _ in range(3)]
    return [(b"ads", orjson.dumps(ads)), (b"search", orjson.dumps(search))]


def budget_row(worker: Worker, name: str = BUDGET) -> dict[str, Any]:
    rows = get_json(f"{worker.url}/api/budgets")["budgets"]
    [row] = [r for r in rows if r["budget"] == name]
    return row


def root_posts(slack: Any, fragment: str) -> list[dict[str, Any]]:
    """Root messages the fake Slack accepted whose text holds ``fragment``."""
    return [c["body"] for c in slack.calls("chat.postMessage")
            if c["status"] == 200 and c["response"].get("ok") and not c["body"].get("thread_ts")
            and fragment in c["body"]["text"]]


def delivered_on_broker(bootstrap: str, app_id: str, key_end: bytes) -> bool:
    """Whether the deliveries changelog on the broker holds an entry of the budget notification
    whose key ends with ``key_end`` (written once its receivers answered)."""
    records = consume_all(bootstrap, f"{app_id}-deliveries-changelog", 10**6, timeout=2)
    return any(r.key is not None and BUDGET.encode() in r.key and r.key.rstrip(b'"').endswith(key_end)
               for r in records)


def threshold_posts(slack: Any) -> Counter[str]:
    """Root messages per threshold, from what the fake Slack accepted."""
    out: Counter[str] = Counter()
    for c in slack.calls("chat.postMessage"):
        body = c["body"]
        if c["status"] == 200 and c["response"].get("ok") and not body.get("thread_ts") and BUDGET in body["text"]:
            assert body["channel"] == "#ads-spend", body["channel"]
            for th in ("50", "80", "100"):
                if f"{BUDGET}: {th}% used" in body["text"]:
                    out[th] += 1
    return out


# series: each series judged on the partition its name hashes to, the budgets and the share on
# the org stage (docs/deploying.md#placement): the same notifications, ledgers and decisions.
# Both placements on Tansu; on Apache Kafka the default one (series) only: where the org stage
# runs does not depend on the broker, and the kill and replay on Kafka are those of series.
@pytest.mark.parametrize(("broker", "placement"),
                         broker_cases(("tansu", "org"), ("tansu", "series"), ("kafka", "series")), indirect=["broker"])
def test_budget_thresholds_exact_once_across_a_kill(placement: str, broker: Any, slack: Any, pagerduty: Any,
                                                    workdir: Path) -> None:
    began = time.monotonic()
    rng = random.Random(2026)
    now = time.time()
    policy = workdir / "policy.yaml"
    policy.write_text(policy_text(noon_zone(now)))
    env = deployment_env(
        broker, workdir, PARTITIONS, tag="bud",
        window_seconds=W, lateness_seconds=0.5, idle_grace_seconds=1,
        # The kill below comes right after the 80 % notification. The restart replays what
        # was not acknowledged; whether that includes the 80 % crossing itself depends on
        # whether the judge had checkpointed yet (printed below: outbox records per
        # threshold); tests/streams/budgets/test_budget_wiring.py pins that gap down.
        checkpoint_seconds=1,
        policy=policy,
        slack_token=slack.token, slack_api_url=f"{slack.url}/api/", slack_channel="#ai-spend",
        pagerduty_routing_key=PD_KEY, pagerduty_url=pagerduty.enqueue_url, placement=placement,
    )
    usage = f"{env['TOKENPULSE_TOPIC_PREFIX']}.usage"
    worker = Worker(env, workdir / "worker.log")
    spend = Spend()
    marks: dict[str, float] = {}  # seconds since the start, per step: where the time goes
    try:
        t0 = int(now // W) * W - 20 * W
        # 1. $5.5 of spend, one event of it sent twice: 55 %, the 50 % threshold
        msgs = burst(t0, 10, 0.25, rng, spend) + burst(t0 + 3 * W, 8, 0.25, rng, spend)
        dup = orjson.loads(msgs[0][1])[0]
        msgs.append((b"ads", orjson.dumps(dup)))  # a producer retry: counted once
        # a little of the team's spend on the in-house model: ~5 % internal, so past the 40 % line
        msgs.append((b"ads", orjson.dumps([spend.add(event("ads", t0 + 4 * W, 0.3, rng, model="acme-llama",
                                                           provider="acme"))])))
        top_up = LIMIT_USD * 0.55 * 1e9 - spend.nusd
        assert top_up > 0
        msgs.append((b"ads", orjson.dumps([spend.add(event("ads", t0 + 5 * W, round(top_up / 1e9, 9), rng))])))
        # a backlog from yesterday, first on the partition: 60 % of yesterday's budget and a
        # third-party share past the line, both recorded by the first start but not posted
        yesterday = [event("ads", t0 - 86400 + i * W, 1.0, rng) for i in range(6)]
        msgs.insert(0, (b"ads", orjson.dumps(yesterday)))
        produce(broker.bootstrap, usage, msgs)  # before the start: counted from the beginning
        worker.start(PARTITIONS)
        marks["started"] = round(time.monotonic() - began, 1)
        decisions_topic = f"{env['TOKENPULSE_TOPIC_PREFIX']}.budget.decisions"
        wait_until(lambda: threshold_posts(slack)["50"] == 1, 30, "the 50 % notification")
        marks["50"] = round(time.monotonic() - began, 1)
        assert 0.5 <= spend.nusd / (LIMIT_USD * 1e9) < 0.8
        assert 0.25 <= spend.tokens / TOKEN_LIMIT < 0.5
        wait_until(lambda: root_posts(slack, f"{TOKEN_BUDGET}: 25% used"), 20, "the token budget's 25 %")
        wait_until(lambda: root_posts(slack, "Team ads: third-party models at"), 20, "the mix notification")
        metrics = get_text(f"{worker.url}/metrics")  # yesterday's crossings: recorded, not told
        assert 'tokenpulse_budget_events_total{kind="threshold_past"} 1' in metrics, metrics
        assert 'tokenpulse_mix_alerts_total{state="past"} 1' in metrics, metrics

        # 2. a late event (its window was judged long ago) and more spend: 82 %, the 80 % one
        late = spend.add(event("ads", t0 + 0.25, 0.123456789, rng))
        more = burst(t0 + 8 * W, 8, 0.25, rng, spend)
        top_up = LIMIT_USD * 0.82 * 1e9 - spend.nusd
        more.append((b"ads", orjson.dumps([spend.add(event("ads", t0 + 9 * W, round(top_up / 1e9, 9), rng))])))
        produce(broker.bootstrap, usage, [(b"ads", orjson.dumps(late)), *more])
        wait_until(lambda: threshold_posts(slack)["80"] == 1, 30, "the 80 % notification")
        marks["80"] = round(time.monotonic() - began, 1)
        assert 0.5 <= spend.tokens / TOKEN_LIMIT < 1
        wait_until(lambda: root_posts(slack, f"{TOKEN_BUDGET}: 50% used"), 20, "the token budget's 50 %")

        # 3. SIGKILL right after it: the restart replays the unacknowledged tail onto the
        # restored ledger; nothing is counted or sent twice. The kill waits until the broker
        # has the 80 % notification's deliveries entry: a kill between Slack's answer and that
        # write sends it again, the at-least-once window docs/deploying.md names (Slack has no
        # idempotency key); under load 14 it once fell inside it.
        wait_until(lambda: delivered_on_broker(broker.bootstrap, env["TOKENPULSE_APP_ID"], b":80"), 20,
                   "the 80 % notification's deliveries entry on the broker")
        worker.kill()
        worker.start(PARTITIONS)
        row = wait_until(lambda: (r := budget_row(worker)) and r["spent_base"] == spend.nusd and r, 30,
                         "the restored ledger's exact total")
        assert row["fired"] == [50.0, 80.0] and row["limit_base"] == LIMIT_USD * 10**9
        assert row["spent"] == pytest.approx(spend.nusd / 1e9, abs=1e-9)
        assert row["pct_used"] == pytest.approx(100 * spend.nusd / (LIMIT_USD * 1e9), abs=1e-3)
        assert row["period"] == "day" and row["unit"] == "usd" and row["series"] == "team=ads"
        tok = wait_until(lambda: (r := budget_row(worker, TOKEN_BUDGET)) and r["spent_base"] == spend.tokens and r,
                         20, "the token budget's exact total")
        assert (tok["unit"], tok["limit_base"], tok["fired"]) == ("tokens", TOKEN_LIMIT, [25.0, 50.0])
        assert tok["spent"] == spend.tokens
        marks["restored"] = round(time.monotonic() - began, 1)
        assert consume_all(broker.bootstrap, decisions_topic, 1, timeout=1) == []  # 82 %: no decision

        # 4. over the limit after the restart: 100 % once, on the restored total
        t1 = int(time.time() // W) * W - 4 * W
        final = burst(t1, 10, 0.25, rng, spend)
        assert spend.nusd >= LIMIT_USD * 10**9
        produce(broker.bootstrap, usage, final)
        wait_until(lambda: threshold_posts(slack)["100"] == 1, 30, "the 100 % notification")
        marks["100"] = round(time.monotonic() - began, 1)
        wait_until(lambda: budget_row(worker)["spent_base"] == spend.nusd, 20, "the exact final total")
        time.sleep(1.0)  # room for a late duplicate to show up
        assert threshold_posts(slack) == Counter({"50": 1, "80": 1, "100": 1})
        assert budget_row(worker, TOKEN_BUDGET)["spent_base"] == spend.tokens
        for th in (25, 50):
            assert len(root_posts(slack, f"{TOKEN_BUDGET}: {th}% used")) == 1
        # the third-party share: once for ads (also across the kill), in its channel, never
        # for search (under the minimum spend), never paged
        [mix] = root_posts(slack, "third-party models at")
        assert mix["channel"] == "#ads-spend" and "Team ads" in mix["text"], mix
        blocks_text = orjson.dumps(mix.get("blocks")).decode()
        assert "gpt-4o" in blocks_text and "Previous period" in blocks_text
        row = budget_row(worker)
        assert row["spent_base"] == spend.nusd and row["fired"] == [50.0, 80.0, 100.0]
        with pytest.raises(urllib.error.HTTPError) as missing:
            get_json(f"{worker.url}/api/budgets?budget=nope")
        assert missing.value.code == 404
        alerts = get_json(f"{worker.url}/api/alerts")["alerts"]
        keys = {a["key"] for a in alerts if a.get("rule") == "budget_threshold"}
        period = row["period_id"]
        assert keys == {f"budget:{BUDGET}:{period}:{th}" for th in (50, 80, 100)} | {
            f"budget:{TOKEN_BUDGET}:{period}:{th}" for th in (25, 50)}
        assert {a["key"] for a in alerts if a.get("rule") == "mix_share"} == {f"mix:ads:{period}"}
        assert pagerduty.events() == []  # budgets do not page
        # the backlog: yesterday has a ledger of its own, and nothing of it was posted
        days = get_json(f"{worker.url}/api/budgets?budget={BUDGET}")["budgets"][0]["periods"]
        assert len(days) == 2 and days[1] == period, days
        assert root_posts(slack, days[0]) == []
        # the gateway's view: exactly one decision, block, for this budget and period
        decisions = consume_all(broker.bootstrap, decisions_topic, 2, timeout=2)
        assert [r.key for r in decisions] == [BUDGET.encode()], decisions
        dec = orjson.loads(decisions[0].value)
        assert dec["decision"] == "block" and dec["budget"] == BUDGET and dec["scope"] == {"team": "ads"}
        assert dec["unit"] == "usd" and dec["period_id"] == period and dec["limit"] == LIMIT_USD
        assert dec["until"] == dec["period_end"] == dec["period_start"] + 86400  # a day in a fixed-offset zone
        assert LIMIT_USD <= dec["spent"] <= spend.nusd / 1e9 + 1e-9
        assert dec["period_start"] <= dec["decided_at"] < dec["period_end"]
        # how often each notification went through the outbox: 2 for 80 % when the kill came
        # before the checkpoint that recorded it (the replayed one was not delivered again)
        outbox = consume_all(broker.bootstrap, f"{env['TOKENPULSE_TOPIC_PREFIX']}.alerts.outbox", 10, timeout=2)
        replays = Counter(r.key.decode().rpartition(":")[2] for r in outbox if r.key.decode().startswith("budget:"))
        print(f"budget test took {time.monotonic() - began:.1f}s; steps at {marks}; outbox records per threshold {dict(replays)}")
    except BaseException:
        print(worker.log_tail(120))
        print(worker.diagnostics())
        raise
    finally:
        worker.stop()

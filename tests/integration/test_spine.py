"""The spine end to end on a real broker: usage events in, exact spend out, a spike becomes
one Slack message and one PagerDuty trigger, back-to-normal resolves both, malformed input
lands in the dead-letter topic with its reason, and a killed worker resumes with the same
totals."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.ingest.windows import NANO, to_nusd
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
from tokenpulse.replay import to_epoch

pytestmark = pytest.mark.integration

W = 2  # window seconds: small so the test runs in event time quickly
PARTITIONS = 2

POLICY = f"""
watch: [team]
{DETECTOR_POLICY}alerts:
  warning_excess_usd: 2
  page_min_excess_usd: 5
  resolve_after_windows: 2
  group_keep_firing_s: 0  # flap damping off (the tests that import this policy wait for resolves); see HELD
mix:
  internal_models: ["acme-*"]
silences:
  - matchers: {{team: legal}}
    starts_at: 2020-01-01T00:00:00Z
    ends_at: 2099-01-01T00:00:00Z
    reason: "planned backfill of legal's history"
"""

# test_spike_alerts_resolves_and_counts_exactly's policy: flap damping on, with a hold of 20
# windows, so that the team's held resolve is due 10 s of event time after the history's last
# event: what sends it is the idle clock (the ingest partitions' clock follows the wall clock once
# no event comes, and the empty windows it closes step the org stage's group timers)
HELD = POLICY.replace("group_keep_firing_s: 0 ", "group_keep_firing_s: 40 ")
HOLD_S = 40


def event(team: str, ts: float, cost: float, rng: random.Random, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "ts": round(ts, 3),
        "org": "default",
        "team": team,
        "user": f"{team}-u{rng.randrange(3)}",
        "provider": "openai",
        "model": "gpt-4o",
        "input_tokens": 1000,
        "output_tokens": 100,
        "cache_read_tokens": 200,
        "cost_usd": cost,
        **extra,
    }


class Ledger:
    """What the worker must report: exact sums of the unique valid events per team (and per
    tool: ``tools``, events without one under ``(none)``)."""

    def __init__(self) -> None:
        self.nusd: dict[str, int] = {}
        self.events: dict[str, int] = {}
        self.tools: dict[str, tuple[int, int]] = {}
        self.ids: set[str] = set()

    def add(self, ev: dict[str, Any]) -> None:
        if ev["event_id"] in self.ids:
            return
        self.ids.add(ev["event_id"])
        self.nusd[ev["team"]] = self.nusd.get(ev["team"], 0) + to_nusd(ev["cost_usd"])
        self.events[ev["team"]] = self.events.get(ev["team"], 0) + 1
        tool = ev.get("tool") or "(none)"
        nusd, n = self.tools.get(tool, (0, 0))
        self.tools[tool] = (nusd + to_nusd(ev["cost_usd"]), n + 1)

    def matches(self, rows: list[dict[str, Any]], by: str = "team") -> bool:
        got = {r[by]: (round(r["cost_usd"] * NANO), r["events"]) for r in rows}
        want = self.tools if by == "tool" else {t: (self.nusd[t], self.events[t]) for t in self.nusd}
        self.last = f"got {got}, want {want}"
        return got == want


def history(t0: int, windows: range, rng: random.Random, ledger: Ledger, spike: range) -> list[tuple[bytes, bytes]]:
    msgs: list[tuple[bytes, bytes]] = []
    for i in windows:
        start = t0 + i * W
        for team in ("ads", "search"):
            n, lo, hi = (60, 0.4, 0.6) if team == "ads" and i in spike else (6, 0.05, 0.15)
            evs = [event(team, start + rng.random() * W * 0.9, round(rng.uniform(lo, hi), 6), rng) for _ in range(n)]
            for k, e in enumerate(evs):  # a third name no tool: spend by tool counts them under (none)
                if k % 3:
                    e["tool"] = ("ide", "batch")[k % 3 - 1]
            for e in evs:
                ledger.add(e)
            if team == "ads":
                msgs.append((team.encode(), orjson.dumps(evs)))  # a batch per message
            else:
                msgs.extend((team.encode(), orjson.dumps(e)) for e in evs)  # one event per message
    return msgs


def malformed(t: float, rng: random.Random, ledger: Ledger) -> tuple[list[tuple[bytes, bytes]], int]:
    good = event("search", t, 0.1, rng)
    ledger.add(good)
    bad_line = b'{"event_id": "x1", "ts": 1, "team": '
    msgs = [
        (b"search", b"{not json"),
        (b"search", orjson.dumps({k: v for k, v in event("search", t, 0.1, rng).items() if k != "team"})),
        (b"search", orjson.dumps(event("search", t, 0.1, rng, output_tokens=-3))),
        (b"search", b'"hello"'),
        (b"search", orjson.dumps(good) + b"\n" + bad_line + b"\n"),
        (b"search", orjson.dumps(good)),  # a duplicate of an event already counted
    ]
    return msgs, 5


PD_KEY = "R0UTINGKEY-secret-abcdef"
DASHBOARD = "http://tokenpulse.example/dashboard"


def worker_env(broker: Any, slack: Any, pagerduty: Any, workdir: Path) -> tuple[dict[str, str], dict[str, str]]:
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    env = deployment_env(
        broker, workdir, PARTITIONS,
        window_seconds=W,
        lateness_seconds=0.5,
        idle_grace_seconds=1,
        checkpoint_seconds=0.2,
        policy=policy,
        slack_token=slack.token,
        slack_api_url=f"{slack.url}/api/",
        slack_channel="#ai-spend",
        pagerduty_routing_key=PD_KEY,
        pagerduty_url=pagerduty.enqueue_url,
        dashboard_url=DASHBOARD,
    )
    prefix = env["TOKENPULSE_TOPIC_PREFIX"]
    topics = {"usage": f"{prefix}.usage", "dlq": f"{prefix}.usage.dlq", "windows": f"{prefix}.windows"}
    return env, topics


def test_spike_alerts_resolves_and_counts_exactly(broker: Any, slack: Any, pagerduty: Any, workdir: Path) -> None:
    rng = random.Random(42)
    env, topics = worker_env(broker, slack, pagerduty, workdir)
    (workdir / "policy.yaml").write_text(HELD)
    pd_key = PD_KEY
    worker = Worker(env, workdir / "worker.log")
    ledger = Ledger()
    now = time.time()
    t0 = int(now // W) * W - 60 * W
    msgs = history(t0, range(0, 60), rng, ledger, spike=range(40, 43))
    bad, n_bad = malformed(t0 + 30 * W + 0.5, rng, ledger)
    # The history goes onto the usage topic before the worker starts (docs/deploying.md#backfills).
    # Sent after, it found both partitions read to their (empty) ends and announced idle, and
    # whichever partition's part reached the judge first had every window it covered judged
    # without the other's: team=ads's spike came late, counted in spend, never judged (no page;
    # 1 fresh-clone CI failure, and every run with the worker given 3 s to go idle first).
    produce(broker.bootstrap, topics["usage"], msgs[: len(msgs) // 2] + bad + msgs[len(msgs) // 2 :])
    worker.start(PARTITIONS)
    try:
        # a spike: one Slack message, one PagerDuty trigger with a stable dedup_key
        wait_until(lambda: [e for e in pagerduty.events() if e["event_action"] == "trigger"], 60, "a PagerDuty trigger")
        # back to normal: the resolve, and a follow-up in the Slack thread
        wait_until(lambda: [e for e in pagerduty.events() if e["event_action"] == "resolve"], 60, "a PagerDuty resolve")
        wait_until(lambda: len(slack.calls("chat.postMessage")) >= 2, 30, "the Slack follow-up")
        pd_events = pagerduty.events()
        assert [e["event_action"] for e in pd_events] == ["trigger", "resolve"], pd_events
        assert {e["dedup_key"] for e in pd_events} == {"cost_spike:team=ads"}
        trigger = pd_events[0]
        assert trigger["payload"]["severity"] == "critical"
        details = trigger["payload"]["custom_details"]
        assert "observed_usd" in str(details) and "expected_usd" in str(details)
        # each alert links to its own series on the dashboard (the worker's engine knows the URL)
        link = f"{DASHBOARD}?series=team%3Dads"
        assert trigger["client_url"] == link and trigger["links"] == [{"href": link, "text": "tokenpulse dashboard"}]
        posts = [c["body"] for c in slack.calls("chat.postMessage") if c["status"] == 200]
        roots = [p for p in posts if not p.get("thread_ts")]
        replies = [p for p in posts if p.get("thread_ts")]
        assert len(roots) == 1 and roots[0]["channel"] == "#ai-spend"
        assert "ads" in roots[0]["text"]
        assert f"<{link}|Open in the dashboard>" in orjson.dumps(roots[0]["blocks"]).decode()
        root_ts = slack.calls("chat.postMessage")[0]["response"]["ts"]
        assert replies and all(r["thread_ts"] == root_ts for r in replies)

        # exact spend per team over closed windows
        wait_until(lambda: ledger.matches(get_json(f"{worker.url}/api/spend?group_by=team")["rows"]), 60,
                   "exact spend totals")
        assert ledger.matches(get_json(f"{worker.url}/api/spend?group_by=tool")["rows"], "tool"), ledger.last
        alerts = get_json(f"{worker.url}/api/alerts")["alerts"]
        assert [a["key"] for a in alerts] == ["cost_spike:team=ads"] and alerts[0]["state"] == "resolved"
        # the resolve held HOLD_S after the member resolved (at the earliest window 44's end, two
        # normal windows after the spike), sent at a window end past the history's last event
        fired = to_epoch(alerts[0]["fired_at"], "fired_at")
        assert fired >= t0 + 45 * W + HOLD_S and fired > t0 + 60 * W, alerts
        page = get_text(f"{worker.url}/dashboard") + get_text(f"{worker.url}/assets/dashboard.js")
        assert "<title>tokenpulse</title>" in page and "/api/spend" in page
        mix = {r["team"]: r for r in get_json(f"{worker.url}/api/mix")["teams"]}
        assert mix["ads"]["third_party_share_pct"] == 100.0 and mix["ads"]["internal_usd"] == 0.0
        [silence] = get_json(f"{worker.url}/api/silences")["silences"]
        assert (silence["matchers"], silence["state"], silence["starts_at"]) == (
            {"team": "legal"}, "active", "2020-01-01T00:00:00Z")

        # rejected input in the dead-letter topic, with reasons and the original bytes
        dlq = consume_all(broker.bootstrap, topics["dlq"], n_bad)
        assert len(dlq) == n_bad
        reasons = [dict(r.headers)["tokenpulse.reason"].decode() for r in dlq]
        assert any("invalid JSON" in r for r in reasons), reasons
        assert any("team" in r for r in reasons), reasons
        assert any("non-negative" in r or "negative" in r for r in reasons), reasons
        assert b"{not json" in [r.value for r in dlq]
        metrics = get_text(f"{worker.url}/metrics")
        assert f'tokenpulse_events_rejected_total{{reason="invalid"}} {n_bad}\n' in metrics
        assert "tokenpulse_events_duplicate_total 1\n" in metrics, metrics  # the resent event

        # a killed worker resumes with the same totals, and counts new traffic exactly once
        worker.kill()
        worker.start(PARTITIONS)
        t1 = time.time()
        more = [event("search", t1 + i * 0.01, 0.25, rng, tool="agent") for i in range(20)]
        for e in more:
            ledger.add(e)
        produce(broker.bootstrap, topics["usage"], [(b"search", orjson.dumps(more)), (b"ads", msgs[0][1])])
        wait_until(lambda: ledger.matches(get_json(f"{worker.url}/api/spend?group_by=team")["rows"]), 60,
                   "exact spend totals after a restart", )
        # and by tool: the restarted worker's checkpoints hold the tool
        wait_until(lambda: ledger.matches(get_json(f"{worker.url}/api/spend?group_by=tool")["rows"], "tool"), 30,
                   "exact spend by tool after a restart")
        print(ledger.last)
        log = (workdir / "worker.log").read_text(errors="replace")
        assert slack.token not in log and pd_key not in log
    except BaseException:
        print(worker.log_tail(120))
        print(worker.diagnostics())
        print(getattr(ledger, "last", None))
        # produced per windows partition and source, to compare with the judge's
        # judge_partials_total and judge_late_partials_total in the metrics above
        print(windows_summary(broker.bootstrap, topics["windows"]))
        raise
    finally:
        worker.stop()


def test_live_spike_alerts_within_a_window_of_closing(broker: Any, slack: Any, pagerduty: Any, workdir: Path) -> None:
    """Live traffic, wall clock = event time: the Slack message for a spike arrives within one
    window plus a few seconds of the spiking window's end."""
    rng = random.Random(7)
    env, topics = worker_env(broker, slack, pagerduty, workdir)
    worker = Worker(env, workdir / "worker.log")
    ledger = Ledger()
    now = time.time()
    t0 = int(now // W) * W - 40 * W
    # the history before the worker starts, as in the test above (docs/deploying.md#backfills)
    produce(broker.bootstrap, topics["usage"], history(t0, range(0, 40), rng, ledger, spike=range(0)))
    worker.start(PARTITIONS)
    try:
        # live: normal traffic until a window boundary, then the spike in real time
        spike_start = int(time.time() // W) * W + W
        first_end = spike_start + W
        deadline = spike_start + 3 * W
        while time.time() < deadline:
            t = time.time()
            team_rate = [("ads", 30 if t >= spike_start else 3, 0.5 if t >= spike_start else 0.1), ("search", 3, 0.1)]
            batch = [(team.encode(), orjson.dumps([event(team, t, c, rng) for _ in range(n)])) for team, n, c in team_rate]
            produce(broker.bootstrap, topics["usage"], batch)
            time.sleep(max(0.0, 0.5 - (time.time() - t)))
        # the alert naming ads (under a loaded machine the live producer's jitter can also make
        # one of search's windows look doubled; that is not what this test measures)
        msg = wait_until(lambda: [c for c in slack.calls("chat.postMessage")
                                  if c["status"] == 200 and "team=ads" in c["body"]["text"]], 30, "the Slack alert")
        arrived = msg[0]["at"]
        delay = arrived - first_end
        print(f"alert {delay:.1f}s after the first spiking window ended (window {W}s)")
        assert delay <= W + 0.5 + 5, delay
    except BaseException:
        print(worker.log_tail(120))
        print(worker.diagnostics())
        print(windows_summary(broker.bootstrap, topics["windows"]))
        raise
    finally:
        worker.stop()

"""Daily spend reports end to end on a real broker with a real worker: two teams' spend over
two local days (a duplicate event on the way), spread over both judge partitions; once the
watermark is past the day's end plus ``at``, the org report arrives in ``#finops`` and the
team report in ``#ads-spend`` (real slack-sdk against the local Slack server), each exactly
once, with the exact totals and changes -- also after a SIGKILL and restart of the worker.
``/api/report`` and ``tokenpulse report`` show the same numbers. With either placement
(``TOKENPULSE_PLACEMENT``)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import orjson
import pytest
from typer.testing import CliRunner

from streams.ingest.windows import to_nusd
from tests.integration.harness import Worker, broker_cases, deployment_env, get_json, produce, wait_until
from tests.integration.test_spine import event
from tokenpulse.cli import app as cli

pytestmark = pytest.mark.integration

PARTITIONS = 2
W = 60


def three_am_zone(now: float) -> str:
    """A fixed-offset zone in which ``now`` is 03:xx: yesterday (local) ended three hours ago,
    so its report (``at: 01:00``) is due whenever the test runs."""
    offset = 3 - datetime.fromtimestamp(now, tz=UTC).hour  # -20..3
    if offset < -12:
        offset += 24  # the same local hour, a day later
    return "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX sign: Etc/GMT-5 is UTC+5


def policy_text(tz: str) -> str:
    return f"""
watch: [team]
budget_timezone: {tz}
reports:
  - {{channel: "#finops", period: daily, at: "01:00"}}
  - {{channel: "#ads-spend", period: daily, match: {{team: ads}}, at: "01:00"}}
budgets:
  - {{name: ads-monthly, scope: {{team: ads}}, amount: 1000, period: month}}
"""


def report_posts(slack: Any, channel: str) -> list[dict[str, Any]]:
    return [c["body"] for c in slack.calls("chat.postMessage")
            if c["status"] == 200 and c["response"].get("ok") and c["body"]["channel"] == channel
            and "spend report" in c["body"]["text"]]


def section_text(body: dict[str, Any]) -> str:
    blocks = body["blocks"]
    if isinstance(blocks, str):
        blocks = orjson.loads(blocks)
    return "\n".join(b["text"]["text"] for b in blocks if b["type"] in ("section", "header"))


def usd(nusd: int) -> str:
    return f"${nusd / 1e9:,.2f}"


# series: each series judged on the partition its name hashes to, the budgets in the org stage's
# ledger (docs/deploying.md#placement): the same reports, each partition's part once. Both
# placements on Tansu; on Apache Kafka the default one (series) only: where a report's parts are
# summed does not depend on the broker.
@pytest.mark.parametrize(("broker", "placement"),
                         broker_cases(("tansu", "org"), ("tansu", "series"), ("kafka", "series")), indirect=["broker"])
def test_daily_report_once_with_exact_totals(placement: str, broker: Any, slack: Any, workdir: Path) -> None:
    rng = random.Random(44)
    now = time.time()
    tz = three_am_zone(now)
    zone = ZoneInfo(tz)
    today = datetime.fromtimestamp(now, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    day, before = today - timedelta(days=1), today - timedelta(days=2)
    policy = workdir / "policy.yaml"
    policy.write_text(policy_text(tz))
    env = deployment_env(broker, workdir, PARTITIONS, tag="rep", window_seconds=W, lateness_seconds=0.5,
                         idle_grace_seconds=1, checkpoint_seconds=1, policy=policy,
                         slack_token=slack.token, slack_api_url=f"{slack.url}/api/", slack_channel="#ai-spend",
                         placement=placement)
    usage = f"{env['TOKENPULSE_TOPIC_PREFIX']}.usage"
    spend: dict[tuple[str, str], int] = {}  # (day, team) -> exact nano-dollars
    seen: set[str] = set()

    def ev(team: str, at: datetime, cost: float, model: str = "gpt-4o") -> dict[str, Any]:
        e = event(team, at.timestamp() + rng.random() * 30, cost, rng, model=model)
        label = "day" if day <= at < today else "before" if before <= at < day else "other"
        if e["event_id"] not in seen:
            seen.add(e["event_id"])
            spend[(label, team)] = spend.get((label, team), 0) + to_nusd(cost)
        return e

    evs = [
        ev("ads", before + timedelta(hours=10), 1.25),
        ev("search", before + timedelta(hours=11), 2.0),
        ev("ads", day + timedelta(minutes=1), 0.5),
        ev("ads", day + timedelta(hours=9), 1.123456789, model="acme-llama"),
        ev("ads", day + timedelta(hours=23, minutes=58), 1.0),
        ev("search", day + timedelta(hours=12), 0.75),
        ev("ads", today + timedelta(minutes=5), 9.0),  # today: in no report yet
    ]
    evs.append(dict(evs[3]))  # a producer retry: counted once
    # today, recent: moves every partition's clock (and so the watermark) to now
    tail = [ev(t, datetime.fromtimestamp(now - 30, zone), 0.01) for t in ("ads", "search")]
    ads_day, search_day = spend[("day", "ads")], spend[("day", "search")]
    total_day, total_before = ads_day + search_day, spend[("before", "ads")] + spend[("before", "search")]
    worker = Worker(env, workdir / "worker.log")
    try:
        produce(broker.bootstrap, usage, [(e["team"].encode(), orjson.dumps(e)) for e in evs + tail])
        worker.start(PARTITIONS)
        [org] = wait_until(lambda: report_posts(slack, "#finops"), 60, "the org report in #finops")
        [team] = wait_until(lambda: report_posts(slack, "#ads-spend"), 30, "the team report in #ads-spend")
        pid = day.date().isoformat()
        text = section_text(org)
        assert f"Daily spend report {pid}" in org["text"]
        change = total_day - total_before
        assert f"*Total:* {usd(total_day)} · the day before ({(day - timedelta(days=1)).date()}): {usd(total_before)}" in text
        assert f"change {'+' if change >= 0 else '-'}{usd(abs(change))}" in text
        assert f"• ads — {usd(ads_day)}" in text and f"• search — {usd(search_day)}" in text
        assert "*By provider*\n• openai" in text and "*Budgets*\n• ads-monthly" in text
        team_text = section_text(team)
        assert f"Daily spend report {pid} · team ads" in team_text
        assert f"*Total:* {usd(ads_day)}" in team_text and "search" not in team_text
        assert "• acme-llama — $1.12" in team_text

        # the same numbers, exact, from the API and the CLI
        q = urlencode({"period": "day", "tz": tz, "at": now})
        body = get_json(f"{worker.url}/api/report?{q}")
        rep = body["report"]
        assert body["complete"] and body["partitions"] == [0, 1]
        assert rep["period_id"] == pid and rep["total"]["nusd"] == total_day
        assert rep["total"]["prev_nusd"] == total_before
        assert {r["team"]: r["nusd"] for r in rep["by_team"]} == {"ads": ads_day, "search": search_day}
        res = CliRunner().invoke(cli, ["report", "--report", "daily:#ads-spend:team=ads", "--at", str(now),
                                       "--policy", str(policy), "--api", worker.url, "--json"])
        assert res.exit_code == 0, res.output
        assert orjson.loads(res.stdout)["total"]["nusd"] == ads_day
        res = CliRunner().invoke(cli, ["report", "--period", "day", "--at", str(now), "--policy", str(policy),
                                       "--api", worker.url])
        assert res.exit_code == 0 and f"Total: {usd(total_day)}" in res.stdout, res.output

        # a restart (SIGKILL) sends neither report again
        worker.kill()
        more = [ev(t, datetime.fromtimestamp(time.time() - 5, zone), 0.01) for t in ("ads", "search")]
        produce(broker.bootstrap, usage, [(e["team"].encode(), orjson.dumps(e)) for e in more])
        worker.start(PARTITIONS)
        wait_until(lambda: get_json(f"{worker.url}/api/report?{q}")["report"]["total"]["nusd"] == total_day, 30,
                   "the restarted worker's report")
        time.sleep(3)
        assert len(report_posts(slack, "#finops")) == 1 and len(report_posts(slack, "#ads-spend")) == 1
        assert report_posts(slack, "#ai-spend") == []  # reports go to their own channel only
    except BaseException:
        print(worker.diagnostics())
        raise
    finally:
        worker.stop()

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from tokenpulse.cli import app
from tokenpulse.policy import Policy
from tokenpulse.replay import load_labels, replay_lines, score
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings
from tokenpulse.simulate import Simulator, Spike

MONDAY_6AM = 1767571200 + 6 * 3600  # 2026-01-05 06:00 UTC
SPIKE_AT = MONDAY_6AM + 5 * 3600


def history(hours: float = 6, factor: float = 30) -> list[bytes]:
    sim = Simulator(rate=5, seed=11, spikes=[Spike("ads", factor=factor, minutes=20, start=SPIKE_AT)])
    return [orjson.dumps(e) for e in sim.between(MONDAY_6AM, MONDAY_6AM + hours * 3600)]


def cfg():  # type: ignore[no-untyped-def]
    return stream_config(Settings(), Policy(), bootstrap="", partitions=1)


def test_replay_finds_the_injected_spike_and_nothing_else():
    res = replay_lines(history(), cfg())
    # The spike moves the org's spend too. Each series' materiality is relative to its own
    # expected spend, and team ads is a third of the org: at 30x both reach their gates in the
    # spike's first window. The org alert fires, names team ads, inhibits the team's own
    # trigger (recorded, so scoring credits the team) and resolves; nothing else alerts.
    org = [n for n in res.notifications if n["series"] == "org"]
    assert org[0]["action"] == "trigger" and org[-1]["action"] == "resolve"
    # ...within a few windows of the spike's end: hysteresis on resolve measures the windows after
    # it against the mean spend the org's expected value stands for (its normal windows on this
    # morning ramp are ~2x the expected value itself, against which it stayed open to the history's end)
    assert SPIKE_AT + 1200 < org[-1]["fired_at"] <= SPIKE_AT + 1200 + 8 * 60
    assert org[-1]["ended_at"] >= SPIKE_AT + 1200
    assert "team=ads" in [m["series"] for m in org[0]["members"]]
    assert {n["series"] for n in res.notifications} == {"org"}
    ads = [f for f in res.firings if f["series"] == "team=ads"]
    assert len(ads) == 1 and ads[0]["inhibited_by"] == "cost_spike:org"
    assert SPIKE_AT <= _ts(ads[0]["fired_at"]) <= SPIKE_AT + 5 * 60
    assert {f["team"] for f in res.firings if f["team"]} == {"ads"}
    assert res.counters["accepted"] > 10_000 and res.counters["late"] == 0
    f = ads[0]
    assert f["excess_usd"] > 5 and f["observed"] > f["expected"]
    assert {"kind": "team", "name": "ads"}.items() <= org[0]["top_contributors"][0].items()


def test_without_inhibition_the_team_pages_on_its_own():
    policy = Policy.model_validate({"alerts": {"inhibit_by_org": False}})
    res = replay_lines(history(), stream_config(Settings(), policy, bootstrap="", partitions=1))
    ads = [f for f in res.firings if f["series"] == "team=ads"]
    assert len(ads) == 1 and "inhibited_by" not in ads[0] and ads[0]["top_contributors"]
    assert SPIKE_AT <= _ts(ads[0]["fired_at"]) <= SPIKE_AT + 5 * 60
    # the alert resolves once the spike is over
    assert [n["action"] for n in res.notifications if n["series"] == "team=ads"][-1] == "resolve"


def test_a_resolve_flap_damping_holds_past_the_history_is_in_the_replays_output():
    # the history ends 10 minutes after the spike: the team's group holds its resolve 30 minutes
    # (alerts.group_keep_firing_s, the default) after its member resolved, past the last event; the
    # replay judges that much quiet after the history, as a running worker's idle clock does
    policy = Policy.model_validate({"alerts": {"inhibit_by_org": False}})
    assert policy.alerts.group_keep_firing_s == 1800
    res = replay_lines(history(hours=5.5), stream_config(Settings(), policy, bootstrap="", partitions=1))
    ads = [n for n in res.notifications if n["series"] == "team=ads"]
    assert ads[0]["action"] == "trigger" and [n["action"] for n in ads].count("resolve") == 1
    assert ads[-1]["action"] == "resolve" and ads[-1]["fired_at"] > MONDAY_6AM + 5.5 * 3600
    assert ads[-1]["fired_at"] >= ads[-1]["ended_at"] + 1800 and ads[-1]["ended_at"] >= SPIKE_AT + 1200


def test_score_recall_false_alerts_and_delay():
    res = replay_lines(history(), cfg())
    from tokenpulse.replay import Incident

    incidents = [Incident("ads", SPIKE_AT, SPIKE_AT + 1200, True, "loop"), Incident("search", MONDAY_6AM, MONDAY_6AM + 60, True)]
    s = score(res.firings, incidents, res.teams, res.first_ts, res.last_ts)
    assert s["incidents"] == 2 and s["detected"] == 1 and s["recall"] == 0.5
    assert s["false_alerts"] == 0 and 0 < s["median_delay_s"] <= 300


def test_cli_replay_writes_firings_and_scores(tmp_path: Path):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(history()) + b"\nnot json\n")
    labels = tmp_path / "labels.jsonl"
    labels.write_text(orjson.dumps({"team": "ads", "start": SPIKE_AT, "end": SPIKE_AT + 1200, "should_alert": True}).decode())
    out = tmp_path / "alerts.jsonl"
    res = CliRunner().invoke(app, ["replay", str(events), "--labels", str(labels), "--alerts-out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = orjson.loads(res.stdout)
    assert summary["score"]["recall"] == 1.0 and summary["events"]["rejected"] == 1
    assert summary["rejects_sample"][0]["reason"].startswith("invalid JSON")
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert {"team", "series", "fired_at", "kind", "severity", "observed", "expected", "excess_usd", "top_contributors"} <= set(lines[0])


@pytest.mark.parametrize(
    ("text", "fragment"),
    [('{"team": "a", "start": 1}', "missing end, should_alert"), ('{"team": "a", "start": "soon", "end": 2, "should_alert": true}', "not RFC 3339"), ("[1]", "must be an object")],
)
def test_bad_labels_are_reported(tmp_path: Path, text: str, fragment: str):
    p = tmp_path / "l.json"
    p.write_text(text)
    with pytest.raises(ValueError, match=fragment):
        load_labels(p)


def _ts(s: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def test_a_silence_holds_back_a_planned_spike_and_is_counted(tmp_path: Path):
    from tokenpulse.policy import parse_policy

    def at(ts: float) -> str:
        return _iso(ts)

    policy = parse_policy(f"""
silences:
  - matchers: {{team: ads}}
    starts_at: {at(SPIKE_AT - 600)}
    ends_at: {at(SPIKE_AT + 3600)}
    reason: planned load test
""")
    res = replay_lines(history(), stream_config(Settings(), policy, bootstrap="", partitions=1))
    assert not [f for f in res.firings if f["team"] == "ads"]
    assert res.skipped.get("silenced", 0) >= 1
    # the same history without the silence pages (test_replay_finds_the_injected_spike...)


def _iso(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def test_teams_are_counted_in_every_org():
    # Another org's team series are named org=<org>|team=<team>: they count as teams (the
    # team-weeks that false alerts are divided by), as the default org's do.
    lines = [orjson.loads(x) for x in history(hours=1)]
    teams = {e["team"] for e in lines}
    res = replay_lines([orjson.dumps({**e, "org": "acme"}) for e in lines], cfg())
    assert res.teams == teams and len(teams) > 1

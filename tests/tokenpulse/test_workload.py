from __future__ import annotations

from datetime import datetime
from itertools import islice
from pathlib import Path

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from streams.ingest.windows import IngestPartition
from streams.ingest.normalize import normalize
from streams.ingest.pipeline import count_message
from streams.ingest.pricing import Pricer
from tokenpulse.cli import app
from tokenpulse.replay import load_labels
from tokenpulse.workload import DAY, KINDS, TOOLS, Workload, generate

DAYS = 6.0  # burn-in 1.5 days, one incident of each kind: fast, and every kind is there
SEED = 5


def _t(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def wl() -> Workload:
    return generate(SEED, DAYS)


def _team_spend(wl: Workload, team: str, s: float, e: float) -> float:
    ti = [t.name for t in wl.teams].index(team)
    sel = (wl.team == ti) & (wl.ts >= s) & (wl.ts < e)
    return float(wl.cost[sel].sum())


def _usual_spend(wl: Workload, lab: dict, s: float, e: float) -> float:
    """Median spend of the team in the same time of day on other days of the same weekday
    class, outside every label of that team (what the team normally spends then)."""
    busy = [(_t(x["start"]), _t(x["end"])) for x in wl.labels if x["team"] == lab["team"] and x["kind"] != "organic_growth"]
    weekend = ((s // DAY) + 3) % 7 >= 5
    vals = []
    for k in range(-int(DAYS), int(DAYS) + 1):
        if k == 0:
            continue
        a, b = s + k * DAY, e + k * DAY
        if a < wl.active_from[lab["team"]] or b > wl.end or (((a // DAY) + 3) % 7 >= 5) != weekend:
            continue
        if any(a < y and b > x for x, y in busy):
            continue
        vals.append(_team_spend(wl, lab["team"], a, b))
    assert vals, f"no comparable day for {lab['name']}"
    return float(np.median(vals))


def test_same_seed_same_workload_other_seed_other_one(wl: Workload):
    again = generate(SEED, DAYS)
    assert again.labels == wl.labels
    for col in ("ts", "team", "user", "model", "tool", "input_tokens", "output_tokens", "cache_read"):
        assert np.array_equal(getattr(wl, col), getattr(again, col)), col
    assert np.all(np.diff(wl.ts) >= 0)
    a = list(islice(wl.events(), 5000))
    assert a == list(islice(again.events(), 5000))
    assert len({e["event_id"] for e in a}) == len(a)
    other = generate(SEED + 1, DAYS)
    assert other.labels != wl.labels


def test_every_kind_is_labelled_after_the_burn_in(wl: Workload):
    kinds = {lab["kind"] for lab in wl.labels}
    assert kinds == set(KINDS)
    assert all(_t(lab["start"]) >= wl.scored_from for lab in wl.labels)
    assert wl.scored_from == wl.start + DAYS / 4 * DAY
    # the new team's first days are scored: it appears after the burn-in
    new = next(lab for lab in wl.labels if lab["kind"] == "new_team")
    assert wl.active_from[new["team"]] >= wl.scored_from
    assert _t(new["start"]) == wl.active_from[new["team"]]


def test_labels_load_and_events_pass_the_replays_normalisation(wl: Workload, tmp_path: Path):
    events, labels = tmp_path / "e.jsonl", tmp_path / "l.jsonl"
    # a sample: every 40th event plus every event of every label's first minutes
    keep = np.zeros(len(wl), bool)
    keep[::40] = True
    for lab in wl.labels:
        s = _t(lab["start"])
        keep |= (wl.ts >= s) & (wl.ts < min(_t(lab["end"]), s + 300))
    sub = Workload(**{**wl.__dict__, **{k: getattr(wl, k)[keep] for k in (
        "ts", "team", "user", "model", "tool", "input_tokens", "output_tokens", "cache_read", "cost")}})
    n = sub.write_jsonl(events, labels)
    incidents = load_labels(labels)
    assert len(incidents) == len(wl.labels) and sum(i.should_alert for i in incidents) >= 4

    core = IngestPartition(partition=0)
    rejects: list[str] = []
    pricer = Pricer()
    for raw in events.read_bytes().splitlines():
        count_message(core, raw, pricer, 0.0, lambda _raw, reason, _i: rejects.append(reason))
    assert rejects == [] and core.counters.accepted == n and core.counters.duplicate == 0
    # the workload's own dollar bookkeeping is the pipeline's price
    lines = events.read_bytes().splitlines()
    for k in range(0, n, max(1, n // 200)):
        ev = normalize(orjson.loads(lines[k]))
        assert pricer.price(ev) == pytest.approx(float(sub.cost[k]), rel=1e-9, abs=1e-12)
        assert ev.cost_usd is None  # no cost_usd in the events: the pipeline prices them


def test_incidents_stand_out_in_team_spend(wl: Workload):
    for lab in wl.labels:
        if not lab["should_alert"]:
            continue
        s, e = _t(lab["start"]), _t(lab["end"])
        if lab["kind"] == "model_switch":
            # a sustained ~3x: hundreds of dollars over hours
            got, usual = _team_spend(wl, lab["team"], s, e), _usual_spend(wl, lab, s, e)
            assert got > 2 * usual and got - usual > 100, lab
            assert 2.5 <= lab["ratio"] <= 3.5
        else:
            # material within five minutes: the excess is the incident's own spend, so the
            # team's spend is above its usual level by about that much, give or take its noise
            w = min(e, s + 300)
            got, usual = _team_spend(wl, lab["team"], s, w), _usual_spend(wl, lab, s, w)
            assert got - usual >= 15 and got > 1.5 * usual, (lab, got, usual)
            assert lab["excess_usd_5min"] >= 20
            # and over the whole incident, a multiple of what the team usually spends then
            got, usual = _team_spend(wl, lab["team"], s, e), _usual_spend(wl, lab, s, e)
            assert got > (2 if lab["kind"] == "runaway_loop" else 3) * usual, (lab, got, usual)


def test_tiny_blips_cost_a_few_dollars(wl: Workload):
    blips = [lab for lab in wl.labels if lab["kind"] == "tiny_blip"]
    assert blips
    api = TOOLS.index("api")  # only incidents call through "api"
    names = [t.name for t in wl.teams]
    for lab in blips:
        s, e = _t(lab["start"]), _t(lab["end"])
        sel = (wl.team == names.index(lab["team"])) & (wl.ts >= s) & (wl.ts <= e) & (wl.tool == api)
        assert 0 < wl.cost[sel].sum() <= 5.0
        assert lab["excess_usd"] == pytest.approx(float(wl.cost[sel].sum()), abs=0.01)


def test_background_shape(wl: Workload):
    names = [t.name for t in wl.teams]
    # the quiet team's night costs cents per minute; its working hours far more
    legal = next(t for t in wl.teams if t.name == "legal")
    sel = wl.team == names.index("legal")
    for lab in wl.labels:  # its background only: leave its incidents and blips out
        if lab["team"] == "legal" and lab["kind"] not in ("holiday_lull", "organic_growth"):
            sel &= ~((wl.ts >= _t(lab["start"])) & (wl.ts <= _t(lab["end"])))
    local_h = ((wl.ts[sel] + legal.tz_offset_h * 3600) % DAY) / 3600
    nights = int(DAYS)  # ~5 hours a night
    night_usd_per_min = wl.cost[sel][(local_h >= 0.5) & (local_h < 5.5)].sum() / (nights * 300)
    assert night_usd_per_min < 0.05
    day_h = (local_h >= 10) & (local_h < 16)
    assert wl.cost[sel][day_h].sum() / (DAYS * 360) > 5 * night_usd_per_min
    # the nightly batch is there from the first night, before the burn-in ends
    data = names.index("data")
    first_night = (wl.team == data) & (wl.ts >= wl.start + 2 * 3600) & (wl.ts < wl.start + 3 * 3600)
    assert wl.cost[first_night].sum() > 50
    # the new team does not exist before it joins
    new = next(t.name for t in wl.teams if t.joins_after is not None)
    assert not np.any(wl.ts[wl.team == names.index(new)] < wl.active_from[new])


def test_cli_writes_the_eval_scenario(tmp_path: Path):
    out, labels = tmp_path / "e.jsonl", tmp_path / "l.jsonl"
    res = CliRunner().invoke(app, ["simulate", "--scenario", "eval", "--seed", "2", "--days", "2",
                                   "--out", str(out), "--labels-out", str(labels)])
    assert res.exit_code == 0, res.output
    assert "burn-in until" in res.output
    first = orjson.loads(out.read_bytes().split(b"\n", 1)[0])
    assert set(first) >= {"event_id", "ts", "org", "team", "user", "provider", "model", "input_tokens", "output_tokens"}
    assert any(i.should_alert for i in load_labels(labels))
    res = CliRunner().invoke(app, ["simulate", "--scenario", "eval", "--days", "2"])
    assert res.exit_code != 0 and "--out" in res.output

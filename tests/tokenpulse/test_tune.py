"""``tokenpulse tune``: the sweep replays exactly what the detector decides, its alert lifecycle
is the engine's, and the command reports bad lines and unknown teams and writes a policy patch
that ``tokenpulse policy`` accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml
from typer.testing import CliRunner

from detectors.combined import Combined
from tokenpulse.cli import app
from tokenpulse.policy import load_policy
from tokenpulse.simulate import Simulator, Spike
from tokenpulse.tune import (
    GateInputs,
    Label,
    Row,
    Setting,
    alert_starts,
    gate_decisions,
    policy_patch,
    recommend,
    score_team,
)

T0 = 1_704_067_200  # 2024-01-01 00:00 UTC


def _two_days() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    ts = T0 + 60.0 * np.arange(1, 2 * 1440 + 1)
    hour = ((ts - 60) // 3600) % 24
    spend = (1.0 + 0.6 * np.sin(2 * np.pi * hour / 24)) * rng.lognormal(0, 0.15, ts.size)
    spend[2400:2406] += 12.0  # an incident worth ~$70
    spend[2500:2503] += 3.0  # a blip
    spend[2700:2760] *= 2.5  # an hour at 2.5x
    return ts, spend


@pytest.mark.parametrize("threshold", [0.999, 0.9999])
def test_the_sweep_decides_exactly_what_the_detector_decides(threshold: float) -> None:
    ts, spend = _two_days()
    rec = Combined(score_threshold=threshold)
    rows = []
    for t, v in zip(ts.tolist(), spend.tolist()):
        rec.update(t, v, 40.0)
        rows.append(rec.gate_inputs())
    su, ex, e, u, r, b = (np.asarray(c) for c in zip(*rows))
    g = GateInputs("ads", threshold, {}, ts, su.astype(bool), ex, e, u, r.astype(bool), b)
    for minutes, pct in ((10.0, 50.0), (15.0, 50.0), (5.0, 25.0), (30.0, 50.0), (0.0, 0.0)):
        direct = Combined(score_threshold=threshold, min_excess_minutes=minutes, min_excess_pct=pct)
        want = np.array([direct.update(t, v, 40.0).is_anomaly for t, v in zip(ts.tolist(), spend.tolist())])
        got = gate_decisions(g, 60.0, direct.min_excess_usd, pct, minutes)
        assert (got == want).all(), (minutes, pct, np.flatnonzero(got != want))
        if minutes <= 15.0:
            assert want[2400:2406].any()


def test_alert_lifecycle_fires_and_resolves_like_the_engine() -> None:
    ts = np.arange(20, dtype=float) * 60
    an = np.zeros(20, dtype=bool)
    an[[2, 3, 5, 9, 10, 11, 16]] = True
    # 2 starts; 5 is within 3 windows of 3 (still firing); 9 comes 3 normal windows after 5:
    # resolved by then, a new alert; 16 likewise
    assert alert_starts(ts, an, fire_after=1, resolve_after=3) == [120.0, 540.0, 960.0]
    # two anomalous windows in a row needed: 2-3 fires at 3, 9-10-11 at 10, 16 alone never
    assert alert_starts(ts, an, fire_after=2, resolve_after=3) == [180.0, 600.0]


def test_scoring_and_recommendation_under_the_budget() -> None:
    labs = [Label("ads", 1000.0, 2000.0, True), Label("ads", 5000.0, 6000.0, True)]
    assert score_team([1500.0, 3000.0], labs, 0.0, 900.0) == (2, 1, [500.0], 1)
    quiet = Row(Setting(0.9999, 30, 50), alerts=1, team_weeks=1.0, incidents=2, detected=1, false_alerts=0,
                labelled=True)
    loud = Row(Setting(0.999, 5, 25), alerts=6, team_weeks=1.0, incidents=2, detected=2, false_alerts=4,
               labelled=True)
    assert recommend([quiet, loud], budget=5.0) == (loud, True)
    assert recommend([quiet, loud], budget=1.0) == (quiet, True)
    # without labels: the most sensitive setting under the budget
    a = Row(Setting(0.9999, 30, 50), alerts=0, team_weeks=1.0)
    b = Row(Setting(0.999, 5, 25), alerts=1, team_weeks=1.0)
    assert recommend([a, b], budget=1.0) == (b, True)
    assert recommend([b], budget=0.5) == (b, False)


def test_the_patch_is_a_policy(tmp_path: Path) -> None:
    patch = policy_patch(Setting(0.9999, 15, 50), {"ads": Setting(0.999, 5, 25), "legal": Setting(0.9999, 15, 50)},
                         [({"team": "legal"}, {"min_excess_usd": 10})], {"min_requests": 5})
    p = tmp_path / "patch.yaml"
    p.write_text(yaml.safe_dump(patch))
    pol = load_policy(p)
    assert pol.detector.params["min_excess_minutes"] == 15 and pol.detector.params["min_requests"] == 5
    assert [o.match for o in pol.detector.overrides] == [{"team": "legal"}, {"team": "ads"}]


def _history(tmp_path: Path) -> tuple[Path, Path]:
    start = T0 + 7 * 86400  # a Monday
    sim = Simulator(rate=1.0, seed=5, spikes=[Spike("ads", factor=20, minutes=20, start=start + 22 * 3600)])
    events = [orjson.dumps(e) for e in sim.between(start, start + 26 * 3600)]
    events.insert(100, b'{"team": "ads", "ts": 1}')  # no token counts
    events.insert(200, b"not json")
    h = tmp_path / "h.jsonl"
    h.write_bytes(b"\n".join(events) + b"\n")
    labels = tmp_path / "l.jsonl"
    labels.write_bytes(b"\n".join(orjson.dumps(x) for x in (
        {"team": "ads", "start": start + 22 * 3600, "end": start + 22 * 3600 + 1200, "should_alert": True},
        {"team": "ghost", "start": start, "end": start + 60, "should_alert": True},
    )) + b"\n")
    return h, labels


def test_tune_command(tmp_path: Path, clean_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENPULSE_DATA_DIR", str(tmp_path / "data"))
    h, labels = _history(tmp_path)
    out = tmp_path / "patch.yaml"
    args = ["tune", str(h), "--labels", str(labels), "--out", str(out), "--no-progress", "--jobs", "1",
            "--burn-in-days", "0.5"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    # bad lines: reported with line and reason, and the rest goes on
    assert "2 bad line(s) skipped" in res.output
    assert "line 101: missing token counts" in res.output and "line 201: invalid JSON" in res.output
    assert "not have (not scored): ghost" in res.output
    assert "team ads" in res.output and "all teams, one setting" in res.output and "recommended" in res.output
    pol = load_policy(out)  # what tokenpulse policy checks
    assert pol.detector.name == "default"
    # the second run takes the windows from the cache
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "(cached)" in again.output
    assert list((tmp_path / "data" / "tune").glob("windows-*.npz"))


def test_tune_says_which_feedback_line_is_bad(tmp_path: Path, clean_env: Any) -> None:
    h = tmp_path / "h.jsonl"
    h.write_bytes(b"")
    fb = tmp_path / "f.jsonl"
    fb.write_bytes(b'{"team": "ads", "at": "2026-01-01T00:00:00Z", "useful": true}\n{"team": "ads", "at": 5}\n')
    res = CliRunner().invoke(app, ["tune", str(h), "--feedback", str(fb), "--no-progress"])
    assert res.exit_code != 0 and f"{fb}:2: needs team, at and useful" in res.output


def test_the_sweep_gives_the_alerts_a_replay_gives(tmp_path: Path) -> None:
    # Without grouping and org inhibition (which tune does not model), the alerts the sweep
    # finds for the policy's own setting are the team series' triggers of a full replay.
    from tokenpulse.policy import Policy
    from tokenpulse.replay import read_lines, replay_lines, to_epoch
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import Settings
    from tokenpulse.tune import SETTINGS, load_windows, run_models, sweep

    start = T0 + 7 * 86400
    spikes = [Spike("ads", factor=20, minutes=20, start=start + 20 * 3600),
              Spike("support", factor=12, minutes=20, start=start + 14 * 3600),
              Spike("search", factor=15, minutes=30, start=start + 22 * 3600)]
    sim = Simulator(rate=1.0, seed=9, spikes=spikes)
    h = tmp_path / "h.jsonl"
    h.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sim.between(start, start + 26 * 3600)))
    policy = Policy.model_validate({"alerts": {"group_by": [], "inhibit_by_org": False}})
    cfg = stream_config(Settings(), policy, bootstrap="", partitions=1)
    res = replay_lines(read_lines(h), cfg)
    want = sorted((f["team"], to_epoch(f["window_end"], "")) for f in res.firings
                  if f["series"] == f"team={f['team']}")
    assert len(want) >= 3
    ws = load_windows(h, cfg, None)
    default = next(s for s in SETTINGS if s == Setting(0.9999, 10.0, 50.0))
    gates = run_models(ws, cfg, [default.score_threshold])
    got = []
    from tokenpulse.tune import alert_starts, gate_decisions

    for g in gates:
        an = gate_decisions(g, 60.0, g.params["min_excess_usd"], 50.0, 10.0, g.params["min_excess_root"])
        got += [(g.team, t) for t in alert_starts(g.ts, an, 1, 3)]
    assert sorted(got) == want
    rows = sweep(gates, ws, [default], labels=[], scored_from=0.0, alert_policy=cfg.alert_policy)
    assert sum(r[0].alerts for r in rows.values()) == len(want)


def test_tune_without_teams_says_so(tmp_path: Path, clean_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENPULSE_DATA_DIR", str(tmp_path / "data"))
    h = tmp_path / "h.jsonl"
    h.write_bytes(b"not json\n")
    res = CliRunner().invoke(app, ["tune", str(h), "--no-progress", "--out", str(tmp_path / "p.yaml")])
    assert res.exit_code != 0 and "no team series to tune" in res.output and "1 rejected" in res.output


def test_another_orgs_teams_are_tuned_too() -> None:
    from tokenpulse.tune import SeriesWindows, WindowSet, team_series

    def sw(name: str, labels: dict[str, str]) -> SeriesWindows:
        return SeriesWindows(name, labels, np.zeros(0), np.zeros(0), np.zeros(0))

    ws = WindowSet([sw("team=ads", {"team": "ads"}), sw("org=acme|team=ml", {"org": "acme", "team": "ml"}),
                    sw("team=ads|model=m", {"team": "ads", "model": "m"}), sw("org=acme", {"org": "acme"})],
                   None, None, [], {}, [], 60)
    assert [s.series for s in team_series(ws)] == ["team=ads", "org=acme|team=ml"]

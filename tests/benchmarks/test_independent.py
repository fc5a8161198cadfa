"""The independent workload generator (benchmarks/independent, SPEC.md) keeps its promises.

Short histories only (two days, or a week of columns), so the module runs in a few seconds.
The project's own code is used as a black box: ``streams.ingest.normalize.normalize`` to read the
events, ``tokenpulse.replay.load_labels`` and the ``tokenpulse replay`` command to read both.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from benchmarks.independent import DEFAULT_TEAMS, TeamsFileError, cost, generate, load_teams
from benchmarks.independent.__main__ import main
from benchmarks.independent.generator import POSITIVE_KINDS
from streams.ingest.normalize import UsageEvent, normalize
from tokenpulse.cli import app
from tokenpulse.replay import load_labels

SEED = 11
SMALL = DEFAULT_TEAMS[:4]  # the four teams under $300/day: few events


def _epoch(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


History = tuple[list[dict[str, Any]], list[UsageEvent], list[dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="module")
def two_days() -> History:
    """Two days of the eight default teams (~150k events), each event also normalised."""
    ev, labels, meta = generate(SEED, days=2, burn_in_days=1)
    events = list(ev)
    return events, [normalize(e) for e in events], labels, meta


@pytest.fixture(scope="module")
def counterfactual() -> list[dict[str, Any]]:
    ev, _, _ = generate(SEED, days=2, burn_in_days=1, positives=False)
    return list(ev)


def test_same_seed_same_history_other_seed_another() -> None:
    a_ev, a_lab, _ = generate(5, days=1.5, burn_in_days=0.5, teams=SMALL[:3])
    b_ev, b_lab, _ = generate(5, days=1.5, burn_in_days=0.5, teams=SMALL[:3])
    c_ev, _, _ = generate(6, days=1.5, burn_in_days=0.5, teams=SMALL[:3])
    a = [orjson.dumps(e) for e in a_ev]
    assert a == [orjson.dumps(e) for e in b_ev]
    assert a_lab == b_lab
    assert a != [orjson.dumps(e) for e in c_ev]


def _canonical_cost(u: Any) -> float:
    return cost(u.model, u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)


def test_every_event_normalises_and_its_cost_is_the_price_table_on_canonical_tokens(two_days: History) -> None:
    events, normalised, _, _ = two_days
    shapes: Counter[str] = Counter()
    for e, u in zip(events, normalised):
        assert math.isfinite(e["cost_usd"]) and e["cost_usd"] > 0
        assert u.cost_usd == e["cost_usd"]
        assert u.cache_read_tokens + u.cache_write_tokens <= u.input_tokens
        assert math.isclose(_canonical_cost(u), e["cost_usd"], rel_tol=1e-9), e
        usage = e.get("usage")
        if usage is None:
            shapes["canonical"] += 1
            assert isinstance(e["ts"], float)
        elif "prompt_tokens" in usage:
            shapes["openai"] += 1
            # OpenAI: cached tokens are a subset of prompt_tokens, no cache writes
            assert u.input_tokens == usage["prompt_tokens"]
            assert u.cache_read_tokens == usage["prompt_tokens_details"]["cached_tokens"]
            assert u.cache_write_tokens == 0 and e["provider"] == "openai"
        else:
            shapes["anthropic"] += 1
            # Anthropic: cache reads and writes come on top of input_tokens
            assert u.input_tokens == (usage["input_tokens"] + usage["cache_read_input_tokens"]
                                      + usage["cache_creation_input_tokens"])
            assert e["provider"] == "anthropic"
        if u.cache_write_tokens:
            assert u.provider == "anthropic"  # only Anthropic bills cache writes
    native = (shapes["openai"] + shapes["anthropic"]) / len(events)
    assert 0.15 <= native <= 0.35, shapes
    assert shapes["openai"] and shapes["anthropic"]


def test_duplicates_are_exact_later_copies_and_everything_else_is_unique(two_days: History) -> None:
    events, normalised, _, meta = two_days
    first: dict[str, int] = {}
    dups = 0
    for i, e in enumerate(events):
        j = first.setdefault(e["event_id"], i)
        if j != i:
            dups += 1
            assert e == events[j]
    assert dups == meta["duplicates"]
    assert 0.002 <= dups / len(first) <= 0.01
    # arrival order: sorted by event time except the redeliveries, at most 5 minutes late
    latest = -math.inf
    seen: set[str] = set()
    for e, u in zip(events, normalised):
        t = u.ts
        if e["event_id"] in seen:
            assert latest - 300 <= t <= latest
        else:
            assert t >= latest
            latest = t
        seen.add(e["event_id"])


def test_labels_load_and_lie_after_the_burn_in(two_days: History, tmp_path: Path) -> None:
    _, _, labels, meta = two_days
    p = tmp_path / "labels.jsonl"
    p.write_bytes(b"".join(orjson.dumps(lab) + b"\n" for lab in labels))
    incidents = load_labels(p)
    assert len(incidents) == len(labels)
    burn, end = _epoch(meta["burn_in_end"]), _epoch(meta["end"])
    for inc, lab in zip(incidents, labels):
        assert burn <= inc.start <= inc.end <= end, lab
        assert inc.name == lab["name"]
        assert inc.team in {t.name for t in DEFAULT_TEAMS}
        for k in ("excess_usd", "factor", "baseline_usd_per_hour"):
            assert math.isfinite(lab[k])
    kinds = {lab["name"] for lab in labels if lab["should_alert"]}
    assert len(kinds) >= 4, kinds
    assert kinds <= set(POSITIVE_KINDS)
    assert {lab["name"] for lab in labels if not lab["should_alert"]} >= {"scheduled_batch", "short_blip"}


def _spend(events: list[dict[str, Any]], normalised: list[UsageEvent] | None = None
           ) -> dict[str, list[tuple[float, float]]]:
    """Per team: (time, cost) of each event id once."""
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    seen: set[str] = set()
    for i, e in enumerate(events):
        if e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        out[e["team"]].append(((normalised[i] if normalised else normalize(e)).ts, e["cost_usd"]))
    return out


@pytest.fixture(scope="module")
def spends(two_days: History, counterfactual: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return _spend(two_days[0], two_days[1]), _spend(counterfactual)


def test_positives_carry_the_excess_the_spec_promises(two_days: History, spends: Any) -> None:
    labels = two_days[2]
    with_, without = spends
    usd = {t.name: t.usd_per_day for t in DEFAULT_TEAMS}
    positives = [lab for lab in labels if lab["should_alert"]]
    assert len(positives) >= 5
    for lab in positives:
        a, b = _epoch(lab["start"]), _epoch(lab["end"])
        spent = sum(c for t, c in with_[lab["team"]] if a <= t <= b)
        normal = sum(c for t, c in without[lab["team"]] if a <= t <= b)
        excess = spent - normal  # realised, from the events
        assert excess == pytest.approx(lab["excess_usd"], rel=1e-6, abs=1e-6), lab
        hours = max(b - a, 60) / 3600
        assert excess >= max(0.5, usd[lab["team"]] / 48), lab  # R1
        assert 2 <= lab["factor"] <= 50, lab  # R2
        assert lab["factor"] == pytest.approx(1 + excess / (lab["baseline_usd_per_hour"] * hours), rel=1e-3)
        assert lab["factor"] >= 3 or hours >= 3, lab  # R3
        assert lab["requests"] >= 15, lab  # R4
        assert excess <= 50_000, lab  # R5


def test_without_the_positives_the_history_is_the_same_minus_their_requests(
        two_days: History, counterfactual: list[dict[str, Any]]) -> None:
    events, normalised, labels, _ = two_days
    spans = defaultdict(list)
    for lab in labels:
        if lab["should_alert"]:
            spans[lab["team"], lab["name"] == "model_switch"].append((_epoch(lab["start"]), _epoch(lab["end"])))

    def inside(team: str, t: float, switched: bool) -> bool:
        return any(a <= t <= b for a, b in spans[team, switched])

    history = {e["event_id"]: (e, u) for e, u in zip(events, normalised)}
    rest = {e["event_id"]: e for e in counterfactual}
    for eid, e in rest.items():
        mine, u = history[eid]  # same ids, redeliveries included
        if mine != e:  # only a model switch changes requests, and only inside its span
            assert inside(e["team"], u.ts, switched=True) and mine["model"] != e["model"], (mine, e)
    added = [(e, u) for eid, (e, u) in history.items() if eid not in rest]
    assert added
    assert all(inside(e["team"], u.ts, switched=False) for e, u in added)
    assert len(events) - len(counterfactual) >= len(added)  # and their redeliveries


def test_a_normal_week_spends_what_the_spec_says_per_team() -> None:
    # Columns, not dicts: a week of eight teams is ~400k events. The dict path is the same
    # numbers (the normalise test checks every event's cost against the price table).
    ev, labels, meta = generate(SEED, days=7, burn_in_days=1, positives=False, negatives=False)
    assert labels == []
    for t in meta["teams"]:
        ratio = t["usd_per_day"] / t["usd_per_day_spec"]
        assert 1 / 1.5 <= ratio <= 1.5, t
    assert 10_000 <= sum(t["requests_per_day"] for t in meta["teams"] if t["team"] == "agents-platform") <= 30_000


def test_tokenpulse_replay_reads_a_two_day_history(tmp_path: Path) -> None:
    # two small teams: the replay's cost grows with the number of series, not of events
    ev, labels, meta = generate(SEED, days=2, burn_in_days=1, teams=SMALL[:2])
    events_path, labels_path = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    with open(events_path, "wb") as f:
        lines = ev.write_jsonl(f)
    labels_path.write_bytes(b"".join(orjson.dumps(lab) + b"\n" for lab in labels))
    res = CliRunner().invoke(app, ["replay", str(events_path), "--labels", str(labels_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    report = orjson.loads(res.stdout)
    # Only that it read everything; its detection scores are not this test's business.
    assert report["events"]["rejected"] == 0
    assert report["events"]["accepted"] + report["events"]["duplicate"] == lines
    assert report["events"]["duplicate"] == meta["duplicates"]
    assert "score" in report


def test_cli_writes_both_files_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    teams = tmp_path / "teams.yaml"
    teams.write_text("""
teams:
  - name: lab
    usd_per_day: 20
    users: 5
    pattern: office
    tz: Europe/Paris
    models: {gpt-4.1-mini: 0.5, claude-sonnet-4: 0.5}
    tools: {notebook: {archetype: chat, share: 1}}
  - name: batchy
    usd_per_day: 200
    users: 2
    pattern: always-on
    models: {claude-3-5-haiku: 1}
    tools: {worker: {archetype: agent, share: 1}}
    jobs: [{name: nightly, every: daily, at: "02:00", minutes: 30, share: 0.2}]
""")
    out, lab = tmp_path / "e.jsonl", tmp_path / "l.jsonl"
    rc = main(["--seed", "3", "--days", "2", "--burn-in-days", "1", "--teams-file", str(teams),
               "--out", str(out), "--labels-out", str(lab)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "lab: $" in err and "batchy: $" in err and "burn-in ends" in err
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {r["team"] for r in rows} == {"lab", "batchy"}
    assert any(r["user"] == "svc-nightly" for r in rows)
    assert load_labels(lab)


@pytest.mark.parametrize("patch, message", [
    ({"models": {"gpt-5-ultra": 1}}, "models: unknown model 'gpt-5-ultra'"),
    ({"tools": {"x": {"archetype": "chat", "share": 0.5}}}, "tools: shares must add up to 1"),
    ({"tz": "Mars/Olympus"}, "tz: unknown time zone"),
    ({"colour": "red"}, "unknown field(s) colour"),
    ({"jobs": [{"name": "j", "every": "Caturday", "at": "01:00", "minutes": 5, "share": 0.1}]}, "every: must be"),
])
def test_bad_teams_files_name_the_team_and_field(tmp_path: Path, patch: dict[str, Any], message: str) -> None:
    team = {"name": "t1", "usd_per_day": 1, "users": 1, "pattern": "office", "models": {"gpt-4.1": 1},
            "tools": {"x": {"archetype": "chat", "share": 1}}} | patch
    p = tmp_path / "teams.json"
    p.write_bytes(orjson.dumps([team]))
    with pytest.raises(TeamsFileError) as exc:
        load_teams(p)
    assert "(t1)" in str(exc.value) and message in str(exc.value)

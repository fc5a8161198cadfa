"""Issue 14: a "not an anomaly" press cuts the false alerts of a replayed history with a
recurring false pattern, measured in ``tokenpulse replay --feedback``.

Team ads spends about $1 a minute; every 5 hours a batch job triples it for 20 minutes (not at
the same time of day, so the detector's routine rule does not learn it in a day), and once a
real incident burns 5x for 40 minutes. Without feedback every batch alerts; with on-call's one
answer on the first batch alert (exported as ``tokenpulse feedback export`` writes it), the
batches after it are quiet and the real incident still alerts. The answer goes through the
worker's own step (:func:`streams.judge.raising.not_anomaly`)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from tokenpulse.cli import app
from tokenpulse.feedback_export import labels_from_answers, write_labels
from tokenpulse.policy import Policy
from tokenpulse.replay import Answer, load_feedback_answers, replay_lines, score, to_epoch
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings

T0 = 1_767_571_200  # 2026-01-05T00:00:00Z
BATCHES = [T0 + (6 + 5 * k) * 3600 for k in range(5)]  # 06:00, 11:00, 16:00, 21:00, 02:00
REAL = T0 + int(28.5 * 3600)  # the incident that must still alert
HOURS = 30

pytestmark = pytest.mark.usefixtures("clean_env")


def history() -> list[bytes]:
    """Five requests a minute; the batches at 3x for 20 minutes, the real incident 5x for 40."""
    rnd = random.Random(7)
    out = []
    for m in range(HOURS * 60):
        t = T0 + 60 * m
        f = 3.0 if any(b <= t < b + 1200 for b in BATCHES) else 5.0 if REAL <= t < REAL + 2400 else 1.0
        for k in range(5):
            out.append(orjson.dumps({"event_id": f"{m}.{k}", "ts": t + 12 * k, "team": "ads", "user": "u",
                                     "provider": "openai", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 1,
                                     "cost_usd": round(0.2 * f * rnd.lognormvariate(0, 0.1), 6)}))
    return out


def cfg() -> Any:
    return stream_config(Settings(), Policy.model_validate({"watch": ["team"]}), bootstrap="", partitions=1)


def test_one_not_an_anomaly_answer_cuts_the_recurring_false_alerts(tmp_path: Path) -> None:
    events = tmp_path / "history.jsonl"
    events.write_bytes(b"\n".join(history()) + b"\n")
    before = replay_lines(events.read_bytes().splitlines(), cfg(), fork=False)
    starts = [to_epoch(f["fired_at"], "fired_at") for f in before.firings]
    # every batch alerts, and the real incident
    assert [any(b <= s <= b + 1200 for b in BATCHES) for s in starts] == [True] * 5 + [False]
    assert REAL <= starts[-1] <= REAL + 2400
    labels = tmp_path / "labels.jsonl"
    labels.write_bytes(orjson.dumps({"team": "ads", "start": REAL, "end": REAL + 2400, "should_alert": True}) + b"\n")

    # on-call answers the first batch alert; the answer as the feedback topic holds it, exported
    first = before.firings[0]
    feedback = tmp_path / "feedback.jsonl"
    with open(feedback, "wb") as f:
        write_labels(labels_from_answers([{
            "id": "slack:C1:1.0001:U1:1", "action": "tokenpulse_not_anomaly", "key": "cost_spike:team=ads",
            "series": first["series"], "window_end": to_epoch(first["window_end"], "window_end"), "user": "ana",
            "at": to_epoch(first["window_end"], "window_end") + 120, "source": "slack"}]), f)
    assert [a.series for a in load_feedback_answers(feedback)] == ["team=ads"]

    res = CliRunner().invoke(app, ["replay", str(events), "--feedback", str(feedback), "--labels", str(labels),
                                   "--no-progress", "--policy", str(_policy(tmp_path))])
    assert res.exit_code == 0, res.output
    summary = orjson.loads(res.stdout)
    [applied] = summary["feedback"]
    assert applied["applied_at"] == first["window_end"] and "team=ads alerts from $" in applied["outcome"]
    # the first batch alerted before the answer; the four after it are quiet; the real one alerts
    assert summary["score"]["detected"] == 1 and summary["score"]["false_alerts"] == 1
    assert score(before.firings, [], {"ads"}, before.first_ts, before.last_ts)["false_alerts"] == 6


def _policy(tmp_path: Path) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text("watch: [team]\n")
    return p


def test_a_bad_feedback_line_names_its_line(tmp_path: Path) -> None:
    f = tmp_path / "fb.jsonl"
    f.write_text('{"action": "tokenpulse_ack", "team": "ads"}\n{"action": "tokenpulse_not_anomaly", "series": "team=ads"}\n')
    with pytest.raises(ValueError, match=r"fb\.jsonl:2: a not-an-anomaly answer needs window_end"):
        load_feedback_answers(f)
    events = tmp_path / "e.jsonl"
    events.write_text("")
    res = CliRunner().invoke(app, ["replay", str(events), "--feedback", str(f)])
    assert res.exit_code == 2 and "fb.jsonl:2" in res.output


def test_the_answers_cross_into_a_forked_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    import tokenpulse.replay as replay_mod
    from tokenpulse.replay import Answer, _can_fork

    if not _can_fork():
        pytest.skip("no fork here")
    monkeypatch.setattr(replay_mod, "FORK_AFTER_LINES", 1024)  # fork in the first hours, before the answer
    answer = Answer(series="team=ads", window_end=BATCHES[0] + 360, id="a1")
    res = replay_lines(history(), cfg(), fork=True, feedback=[answer])
    starts = [to_epoch(f["fired_at"], "fired_at") for f in res.firings]
    assert len(starts) == 2 and REAL <= starts[-1] <= REAL + 2400
    assert [a["id"] for a in res.feedback] == ["a1"] and res.feedback[0]["applied_at"] is not None


def test_the_policy_half_life_brings_the_floor_down_in_a_replay_too() -> None:
    # floor_half_life_days 0.05 (72 minutes): five hours after the answer, at the next batch,
    # the floor is under a tenth of what was set, so every batch alerts again, as without it
    policy = Policy.model_validate({"watch": ["team"], "detector": {"feedback": {"floor_half_life_days": 0.05}}})
    fast = stream_config(Settings(), policy, bootstrap="", partitions=1)
    assert fast.not_anomaly_half_life_days == 0.05
    answer = Answer(series="team=ads", window_end=BATCHES[0] + 360, id="a1")
    kept = replay_lines(history(), cfg(), fork=False, feedback=[answer])
    decayed = replay_lines(history(), fast, fork=False, feedback=[answer])
    assert len(kept.firings) == 2 and len(decayed.firings) == 6
    assert decayed.feedback[0]["outcome"] == kept.feedback[0]["outcome"]  # the same floor when set

"""``tokenpulse feedback export`` without a broker: answers become one label per incident that
``replay --labels`` and ``tune --feedback`` both read, bad answers are named and left out, and
an unreachable broker or a missing bootstrap is a clear error (the topic itself:
tests/integration/test_feedback_export.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tokenpulse.broker import free_port
from tokenpulse.cli import app
from tokenpulse.feedback_export import labels_from_answers, write_labels
from tokenpulse.replay import load_labels
from tokenpulse.tune import load_feedback

T0 = 1_767_571_200.0  # 2026-01-05T00:00:00Z

pytestmark = pytest.mark.usefixtures("clean_env")


def answer(n: int, action: str, series: str = "team=ads", started: float = T0, **kw: Any) -> dict[str, Any]:
    return {"id": f"slack:C1:{n}", "action": action, "key": f"cost_spike:{series}", "series": series,
            "started_at": started, "window_end": started + 120, "user": "ana", "at": started + 300 + n,
            "source": "slack", **kw}


def test_one_label_per_incident_not_an_anomaly_wins_and_both_readers_take_it(tmp_path: Path) -> None:
    warned: list[str] = []
    rows = labels_from_answers([
        answer(1, "tokenpulse_ack"), answer(2, "tokenpulse_not_anomaly"), answer(2, "tokenpulse_not_anomaly"),
        answer(3, "tokenpulse_new_normal", "team=search", T0 + 3600),
        answer(4, "tokenpulse_not_anomaly", "org", T0 + 7200),
        {**answer(5, "tokenpulse_ack"), "key": "", "_where": "fb[0]@7"},
        {**answer(6, "tokenpulse_reboot"), "_where": "fb[1]@2"},
    ], warned.append)
    assert warned == ["fb[0]@7: left out: no key", "fb[1]@2: left out: unknown action 'tokenpulse_reboot'"]
    assert [(r["team"], r["should_alert"], r["action"]) for r in rows] == [
        ("ads", False, "tokenpulse_not_anomaly"), ("search", True, "tokenpulse_new_normal"),
        (None, False, "tokenpulse_not_anomaly")]
    ads = rows[0]
    assert (ads["start"], ads["end"], ads["id"]) == ("2026-01-05T00:00:00Z", "2026-01-05T00:02:00Z", "slack:C1:2")
    assert [a["action"] for a in ads["answers"]] == ["tokenpulse_ack", "tokenpulse_not_anomaly"]  # once each
    path = tmp_path / "labels.jsonl"
    with open(path, "wb") as f:
        write_labels(rows, f)
    # the org's answer has no team: both readers skip it
    assert [(i.team, i.should_alert) for i in load_labels(path)] == [("ads", False), ("search", True)]
    assert [(lab.team, lab.should_alert, lab.end) for lab in load_feedback(path)] == [
        ("ads", False, T0 + 120), ("search", True, T0 + 3720)]


def test_an_unreachable_broker_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOKENPULSE_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    res = CliRunner().invoke(app, ["feedback", "export", "--out", str(tmp_path / "l.jsonl"), "--timeout", "0.1"])
    assert res.exit_code == 1 and "cannot reach Kafka" in res.output and "TOKENPULSE_KAFKA_BOOTSTRAP" in res.output
    assert not (tmp_path / "l.jsonl").exists()


def test_without_a_bootstrap_it_says_which_setting(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["feedback", "export", "--out", str(tmp_path / "l.jsonl")])
    assert res.exit_code == 2 and "TOKENPULSE_KAFKA_BOOTSTRAP is not set" in res.output

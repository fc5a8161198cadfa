"""Issue 12: ``tokenpulse replay`` raises the org stage's new-series alert -- a team's new model
at 20x the team's price per request -- through the worker's own judge step, and not with the
rule off (``detector.new_series.enabled: false``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tokenpulse.policy import Policy
from tokenpulse.replay import replay_lines, to_epoch
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings

T0 = 1_767_571_200  # 2026-01-05T00:00:00Z
NEW = T0 + 3 * 86400 + 2 * 3600  # the new model's first request: day 3, 02:00

pytestmark = pytest.mark.usefixtures("clean_env")


def history() -> list[bytes]:
    """Team ads: a $0.01 request every 10 minutes for 3.2 days; from day 3 02:00 for four hours,
    two requests every 10 minutes of model ``big`` at $0.20."""
    out = []
    for m in range(0, int(3.2 * 1440), 10):
        t = T0 + 60 * m
        rows = [("small", 0.01, 0)]
        if NEW <= t < NEW + 4 * 3600:
            rows += [("big", 0.2, 1), ("big", 0.2, 2)]
        for model, usd, k in rows:
            out.append(orjson.dumps({"event_id": f"{m}.{model}.{k}", "ts": t + k, "team": "ads", "user": "u",
                                     "provider": "openai", "model": model, "input_tokens": 10, "output_tokens": 1,
                                     "cost_usd": usd}))
    return out


def cfg(enabled: bool) -> Any:
    # a detector that never flags: what alerts is the rule (and not the team burst rule, which
    # reads the detector's p-values: the team's spend is 40x while the new model runs)
    policy = {"watch": ["team", "team×model"], "detector": {"name": "naive", "params": {"k": 1e6},
                                                            "new_series": {"enabled": enabled},
                                                            "team_burst": {"enabled": False}}}
    return stream_config(Settings(), Policy.model_validate(policy), bootstrap="", partitions=1)


def test_a_new_model_at_twenty_times_the_teams_price_alerts_in_replay(tmp_path: Path) -> None:
    lines = history()
    on = replay_lines(lines, cfg(True), fork=False)
    assert [(f["series"], f["severity"]) for f in on.firings] == [("team=ads|model=big", "info")]
    first = on.firings[0]
    # $0.38 over the team's price every 10 minutes; the team spends $1.44 a day, under the $2
    # floor, so a day of its spend is the floor (excess_team_days): reached with the fourth pair
    assert to_epoch(first["fired_at"], "fired_at") == NEW + 31 * 60
    assert "20.0x" in first["why"] and "the team's $0.0100" in first["why"]
    assert replay_lines(lines, cfg(False), fork=False).firings == []

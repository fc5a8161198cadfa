"""The policy's ``limits`` section: plausibility bounds per request, from the file to the ingest
of the worker, the replay and ``tokenpulse normalize``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from streams.common.config import IngestLimits, StreamConfig
from streams.ingest.windows import IngestPartition
from streams.common.metrics import Metrics
from streams.ingest.pipeline import count_message
from streams.ingest.pricing import Pricer
from streams.worker.reload import sections_changed
from streams.worker.web import ingest_metrics, ingest_totals
from tests.streams.ingest.test_poison import good
from tokenpulse.cli import app
from tokenpulse.policy import Policy, PolicyError, parse_policy
from tokenpulse.replay import replay_lines
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings

runner = CliRunner()


def test_the_defaults_are_far_above_any_real_request() -> None:
    limits = stream_config(Settings(), Policy(), bootstrap="").limits
    assert limits == IngestLimits(max_tokens_per_request=10_000_000, max_cost_usd_per_request=500.0)
    assert IngestPartition(partition=0).limits == limits


def test_the_policy_sets_them_and_they_reach_the_stream_config() -> None:
    pol = parse_policy("limits:\n  max_tokens_per_request: 2000000\n  max_cost_usd_per_request: 25\n")
    cfg = stream_config(Settings(), pol, bootstrap="")
    assert cfg.limits == IngestLimits(2_000_000, 25.0)


@pytest.mark.parametrize(("text", "field"), [
    ("max_cost_usd_per_request: .inf", "max_cost_usd_per_request"),
    ("max_cost_usd_per_request: .nan", "max_cost_usd_per_request"),
    ("max_cost_usd_per_request: 0", "max_cost_usd_per_request"),
    ("max_cost_usd_per_request: 1e400", "max_cost_usd_per_request"),
    ("max_tokens_per_request: -1", "max_tokens_per_request"),
    ("max_tokens_per_request: 1e13", "max_tokens_per_request"),
    ("max_tokens_per_request: 10000000000000", "max_tokens_per_request"),
    ("max_requests: 3", "max_requests"),
])
def test_a_bound_must_be_a_finite_positive_number_within_reason(text: str, field: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_policy(f"watch: [team]\nlimits:\n  {text}\n", "p.yaml")
    assert f"p.yaml:3: limits.{field}" in str(err.value)


def test_a_changed_limit_needs_a_restart() -> None:
    base = StreamConfig(bootstrap="x")
    assert sections_changed(base, replace(base, limits=IngestLimits(max_cost_usd_per_request=50.0))) == ([], ["limits"])


def test_an_event_over_a_lowered_bound_is_quarantined_not_counted() -> None:
    core = IngestPartition(partition=0, limits=IngestLimits(max_tokens_per_request=5000, max_cost_usd_per_request=1.0))
    rejects: list[str] = []
    msgs = [good(1, cost_usd=0.5), good(2, cost_usd=1.5), good(3, input_tokens=4900, output_tokens=101),
            good(4, cost_usd=None, model="gpt-4o", input_tokens=4000, output_tokens=1000)]
    count_message(core, orjson.dumps(msgs), Pricer(), 0.0, lambda b, reason, i: rejects.append(reason))
    for m in msgs:  # each one alone: the single-event lane says the same
        count_message(core, orjson.dumps(m), Pricer(), 0.0, lambda b, reason, i: rejects.append(reason))
    assert len(rejects) == 4 and all(r.startswith("implausible: ") for r in rejects)
    assert "cost_usd 1.5 for one request, over limits.max_cost_usd_per_request (1)" in rejects[0]
    assert "5001 tokens in one request" in rejects[1]
    assert core.counters.implausible == 4 and core.counters.accepted == 2 and core.counters.duplicate == 2


def test_the_metric_and_the_status_count_quarantined_events_by_reason() -> None:
    core = IngestPartition(partition=0)
    count_message(core, orjson.dumps([good(1), good(2, cost_usd=1e20), {"x": 1}]), Pricer(), 0.0, lambda *a: None)
    totals = ingest_totals([core, IngestPartition(partition=1)])
    assert (totals["accepted"], totals["implausible"], totals["rejected"], totals["failed"]) == (1, 1, 1, 0)
    text = Metrics().render(*ingest_metrics(totals))
    assert 'tokenpulse_events_rejected_total{reason="implausible"} 1\n' in text
    assert 'tokenpulse_events_rejected_total{reason="invalid"} 1\n' in text
    assert 'tokenpulse_events_rejected_total{reason="error"} 0\n' in text
    assert "tokenpulse_events_accepted_total 1\n" in text
    assert "tokenpulse_events_implausible_total" not in text


def test_replay_applies_the_policys_limits() -> None:
    cfg = stream_config(Settings(), parse_policy("limits: {max_cost_usd_per_request: 1}"), bootstrap="", partitions=1)
    lines = [orjson.dumps(good(1, cost_usd=0.5)), orjson.dumps(good(2, cost_usd=2.0)), orjson.dumps(good(3, cost_usd=0.7))]
    res = replay_lines(lines, cfg, fork=False)
    assert res.counters["accepted"] == 2 and res.counters["implausible"] == 1
    assert res.rejects == [(2, "implausible: cost_usd 2 for one request, over limits.max_cost_usd_per_request (1)")]


@pytest.mark.usefixtures("clean_env")
def test_normalize_applies_the_policys_limits(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("limits: {max_tokens_per_request: 1000}\n")
    body = b"\n".join([orjson.dumps(good(1, input_tokens=10)), orjson.dumps(good(2, input_tokens=999))])
    res = runner.invoke(app, ["normalize", "--policy", str(policy)], input=body + b"\n")
    assert [json.loads(x)["event_id"] for x in res.stdout.splitlines()] == ["good-1"]
    assert "implausible: 1099 tokens in one request" in res.stderr


def test_a_budget_scope_cannot_name_another_series() -> None:
    """A team called 'ads|model=gpt-4o' is refused in usage events; a budget on it would
    silently watch the team×model series."""
    with pytest.raises(PolicyError) as err:
        parse_policy("budgets:\n  - {name: b, scope: {team: 'ads|model=gpt-4o'}, amount: 10, period: day}\n", "p.yaml")
    assert "may not contain '|' or '='" in str(err.value)

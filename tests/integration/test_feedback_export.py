"""``tokenpulse feedback export`` on a real broker, without a worker: every answer on the
feedback topic (several partitions, records batched: Tansu's end offset is its last batch's
base + 1) becomes a label, a record that is not JSON is named and left out, and a wrong topic
prefix is an error that names the feedback topics there are."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from tests.integration.harness import produce
from tests.tokenpulse.test_feedback_export import T0, answer
from tokenpulse.broker import ensure_topics
from tokenpulse.cli import app
from tokenpulse.replay import load_labels

pytestmark = pytest.mark.integration


def test_export_reads_every_answer_from_the_topic(broker: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in os.environ if k.startswith("TOKENPULSE_")]:
        monkeypatch.delenv(k)  # only the settings below reach the command
    prefix = f"fbx{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.feedback"
    ensure_topics(broker.bootstrap, [(topic, 2)])
    answers = [answer(i, "tokenpulse_not_anomaly" if i % 3 == 0 else "tokenpulse_ack", started=T0 + 600 * i)
               for i in range(30)]
    produce(broker.bootstrap, topic, [(b"team=ads", orjson.dumps(a)) for a in answers] + [(b"x", b"{not json")])
    monkeypatch.setenv("TOKENPULSE_KAFKA_BOOTSTRAP", broker.bootstrap)
    monkeypatch.setenv("TOKENPULSE_TOPIC_PREFIX", prefix)
    out = tmp_path / "labels.jsonl"
    res = CliRunner().invoke(app, ["feedback", "export", "--out", str(out), "--timeout", "10"])
    assert res.exit_code == 0, res.output
    assert "30 answers, 30 incidents (10 not an anomaly), 1 left out" in res.output
    assert f"{topic}[" in res.output and "not JSON: left out" in res.output  # where the bad record is
    incidents = load_labels(out)
    assert len(incidents) == 30 and sum(not i.should_alert for i in incidents) == 10

    monkeypatch.setenv("TOKENPULSE_TOPIC_PREFIX", f"nope{prefix}")
    res = CliRunner().invoke(app, ["feedback", "export", "--out", str(tmp_path / "x.jsonl"), "--timeout", "10"])
    assert res.exit_code == 1 and f"topic nope{prefix}.feedback does not exist" in res.output
    assert topic in res.output  # the feedback topics there are: a wrong TOKENPULSE_TOPIC_PREFIX

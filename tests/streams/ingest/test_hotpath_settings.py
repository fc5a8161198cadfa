"""The Tansu workarounds stay behind ``kafka_flavor == "tansu"``: on Apache Kafka the hot
path's producer is idempotent and Faust batches its changelog writes."""

from __future__ import annotations

import pytest

from streams.common.config import StreamConfig
from streams.common.security import KafkaSecurity, Secret
from streams.ingest.hotpath import IngestLoop
from streams.ingest.pricing import Pricer
from streams.worker.app import faust_settings


@pytest.mark.parametrize(("flavor", "idempotent", "batch"), [("kafka", True, 16384), ("tansu", False, 1)])
def test_workarounds_only_on_tansu(flavor: str, idempotent: bool, batch: int) -> None:
    cfg = StreamConfig(bootstrap="a:9092,b:9092", kafka_flavor=flavor)
    got = IngestLoop(cfg, Pricer()).producer_settings()
    assert got["enable_idempotence"] is idempotent
    assert got["acks"] == "all"  # what an idempotent producer needs, and what exactness needs anyway
    assert got["bootstrap_servers"] == ["a:9092", "b:9092"]
    assert faust_settings(cfg)["producer_max_batch_size"] == batch


def test_the_hot_path_producer_gets_the_security_settings() -> None:
    sec = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-256", "tp", Secret("pw"))
    got = IngestLoop(StreamConfig(bootstrap="k:9092", security=sec), Pricer()).producer_settings()
    assert got["security_protocol"] == "SASL_PLAINTEXT" and got["sasl_mechanism"] == "SCRAM-SHA-256"
    assert got["sasl_plain_username"] == "tp" and got["sasl_plain_password"] == "pw"


@pytest.mark.parametrize(("seconds", "heartbeat"), [(6.0, 1.0), (30.0, 1.0), (1.5, 0.5)])
def test_one_session_timeout_for_both_consumer_groups(seconds: float, heartbeat: float) -> None:
    """TOKENPULSE_KAFKA_SESSION_TIMEOUT_SECONDS reaches the hot path's group and Faust's: a dead
    worker's usage and judge partitions move after the same wait (tests/integration/test_failover.py)."""
    from tokenpulse.policy import parse_policy
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import Settings

    settings = Settings(kafka_session_timeout_seconds=seconds)
    cfg = stream_config(settings, parse_policy(b"watch: [team]\n", "policy.yaml"), "k:9092")
    consumer = IngestLoop(cfg, Pricer()).consumer_settings()
    assert consumer["session_timeout_ms"] == int(seconds * 1000)
    assert consumer["heartbeat_interval_ms"] == int(heartbeat * 1000)
    assert consumer["group_id"] == "tokenpulse-ingest" and consumer["enable_auto_commit"] is False
    faust = faust_settings(cfg)
    assert (faust["broker_session_timeout"], faust["broker_heartbeat_interval"]) == (seconds, heartbeat)


def test_a_session_timeout_under_a_second_is_refused() -> None:
    from pydantic import ValidationError

    from tokenpulse.settings import Settings

    with pytest.raises(ValidationError, match="kafka_session_timeout_seconds"):
        Settings(kafka_session_timeout_seconds=0.5)

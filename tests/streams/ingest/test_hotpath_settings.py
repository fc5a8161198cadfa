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

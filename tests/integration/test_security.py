"""The worker on an Apache Kafka that only speaks SASL_SSL with SCRAM-SHA-512.

One broker for the module (``tests/integration/secure_kafka.py``: a CA and a broker
certificate made here with keytool, an admin user added at format time, the application's
user added on the running broker with ``kafka-configs``). Every client of the project goes
through it: ``tokenpulse simulate`` (kafka-python), the worker's topic creation (kafka-python
admin), its hot path (aiokafka) and Faust. The events are counted exactly, and a wrong
password stops the worker at start with one line that says what to check.

Skips without Java like the rest of the Apache Kafka tier, and fails under CI=true instead.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streams.common.security import KafkaSecurity, Secret
from streams.ingest.windows import NANO, to_nusd
from tests.integration import apache_kafka
from tests.integration.harness import ROOT, Worker, get_json, get_text, wait_until
from tests.integration.secure_kafka import MECHANISM, SecureKafka

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("kafka")]

USER, PASSWORD = "tokenpulse", "tp-Scram-pass-91c2"


def _available() -> bool | str:
    why = apache_kafka.available()
    if why is True and shutil.which("keytool") is None:
        why = "keytool is not on PATH (the JDK's; it makes the test's certificates)"
    return why


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    why = _available()
    if why is not True:
        if os.environ.get("CI"):
            pytest.fail(f"the SASL_SSL Apache Kafka test must run in CI: {why}")
        pytest.skip(f"Apache Kafka tier: {why}")
    k = SecureKafka(tmp_path_factory.mktemp("sasl-ssl"))
    k.start()
    try:
        k.add_user(USER, PASSWORD)
        yield k
    finally:
        k.stop()


def _env(k: SecureKafka, workdir: Path, password: str = PASSWORD, **settings: object) -> dict[str, str]:
    prefix = f"sec{uuid.uuid4().hex[:8]}"
    env = {
        "TOKENPULSE_KAFKA_BOOTSTRAP": k.bootstrap,
        "TOKENPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "TOKENPULSE_KAFKA_SASL_MECHANISM": MECHANISM,
        "TOKENPULSE_KAFKA_SASL_USERNAME": USER,
        "TOKENPULSE_KAFKA_SASL_PASSWORD": password,
        "TOKENPULSE_KAFKA_SSL_CAFILE": str(k.cafile),
        "TOKENPULSE_TOPIC_PREFIX": prefix,
        "TOKENPULSE_APP_ID": prefix,
        "TOKENPULSE_USAGE_PARTITIONS": "2",
        "TOKENPULSE_DATA_DIR": str(workdir / "data"),
    }
    env.update({f"TOKENPULSE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def _security(k: SecureKafka) -> KafkaSecurity:
    return KafkaSecurity("SASL_SSL", MECHANISM, USER, Secret(PASSWORD), str(k.cafile))


def test_worker_counts_exactly_over_sasl_ssl(secure: SecureKafka, tmp_path: Path) -> None:
    env = _env(secure, tmp_path, window_seconds=2, lateness_seconds=0.5, idle_grace_seconds=1,
               checkpoint_seconds=0.2)
    usage = f"{env['TOKENPULSE_TOPIC_PREFIX']}.usage"
    worker = Worker(env, tmp_path / "worker.log")
    worker.start(partitions=2, timeout=90)  # creates the topics (kafka-python admin) as the user
    try:
        # The simulator's producer, with the same settings from the environment.
        sim = subprocess.run(
            [sys.executable, "-m", "tokenpulse", "simulate", "--topic", usage, "--backfill", "0.0003",
             "--duration", "0", "--seed", "3"],
            cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
        assert sim.returncode == 0, sim.stderr
        sent = int(sim.stderr.rsplit("sent ", 1)[1].split(" events")[0].replace(",", ""))
        assert sent > 0

        # Events of a team of our own, sent twice (a producer retry): counted once.
        from kafka import KafkaProducer

        rng = random.Random(5)
        t0 = time.time() - 60
        events = [{"event_id": uuid.UUID(int=rng.getrandbits(128)).hex, "ts": round(t0 + i * 0.05, 3), "org": "acme",
                   "team": "secured", "user": "u1", "provider": "openai", "model": "gpt-4o", "input_tokens": 100,
                   "output_tokens": 10, "cost_usd": round(rng.uniform(0.01, 0.2), 6)} for i in range(400)]
        producer = KafkaProducer(bootstrap_servers=secure.bootstrap, acks="all", **_security(secure).kafka_python())
        for ev in events + events[:50]:
            producer.send(usage, key=b"secured", value=orjson.dumps(ev))
        producer.flush(30)
        producer.close()

        want_nusd = sum(to_nusd(e["cost_usd"]) for e in events)

        def counted() -> bool:
            totals = get_json(f"{worker.url}/api/status")["ingest_totals"]
            rows = get_json(f"{worker.url}/api/spend?group_by=team")["rows"]
            mine = [r for r in rows if r["team"] == "secured"]
            counted.last = (totals, mine)  # type: ignore[attr-defined]
            return (totals["accepted"] == sent + len(events) and totals["duplicate"] == 50 and bool(mine)
                    and round(mine[0]["cost_usd"] * NANO) == want_nusd and mine[0]["events"] == len(events))

        wait_until(counted, 60, "every event counted once over SASL_SSL")
        log = worker.log_path.read_text(errors="replace")
        assert PASSWORD not in log
        for path in ("/api/status", "/api/policy", "/metrics", "/healthz", "/api/sinks"):
            assert PASSWORD not in get_text(worker.url + path), path
    except BaseException:
        print(worker.log_tail(200))
        raise
    finally:
        worker.stop()


def test_a_wrong_password_stops_the_worker_at_start(secure: SecureKafka, tmp_path: Path) -> None:
    env = _env(secure, tmp_path, password="not-the-password-42")
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tokenpulse", "worker"], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert took < 30, f"took {took:.0f} s: a refused login must not be retried"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert "refused the SASL login of user 'tokenpulse'" in lines[0]
    assert "TOKENPULSE_KAFKA_SASL_PASSWORD" in lines[0]
    assert "not-the-password-42" not in out


def test_an_untrusted_certificate_stops_the_worker_at_start(secure: SecureKafka, tmp_path: Path) -> None:
    other = Path("/etc/ssl/certs/ca-certificates.crt")  # public CAs: none of them signed the test broker's
    if not other.is_file():
        pytest.skip(f"{other} is missing")
    env = _env(secure, tmp_path)
    env["TOKENPULSE_KAFKA_SSL_CAFILE"] = str(other)
    proc = subprocess.run([sys.executable, "-m", "tokenpulse", "worker"], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "TLS certificate is not trusted" in proc.stderr and "TOKENPULSE_KAFKA_SSL_CAFILE" in proc.stderr, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr

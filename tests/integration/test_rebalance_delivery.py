"""A rebalance while notifications are being delivered sends each once (issue 15 item 8, "no
page is sent twice"), on a real broker with two real workers.

A worker's deliveries table says which ``seq`` of each alert key every receiver has had; the
outbox record that a rebalance makes the partition's next owner read again is skipped on the
strength of it. That holds only if the entry of a delivery in flight when the partition is
revoked is on the changelog before the next owner recovers the table: Faust does not wait for
the agents on a revoke (``stream_wait_empty=False``, which the judge's held acknowledgements
need), so the worker waits for its deliveries in flight itself
(:meth:`streams.worker.delivering.DeliveryWorker.drain`).

Here the webhook receiver takes 2.5 s to answer each notification of a backlog on one outbox
partition, so one is always in flight when a second worker joins: the first worker's revoke
waits for it (and says so in its log), and the receiver gets every notification once. Without
the wait, the partition's new owner recovered the entry without the notification in flight and
sent it again, every time (6 runs of 6 on Apache Kafka); and in about half the runs it then
delivered nothing more until the next rebalance (Faust's recovery cleared its queue).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from alerts import AlertEngine, Notification, Signal
from streams.common.partitioning import judge_partition
from tests.fakes.webhook_server import FakeWebhookServer
from tests.integration.harness import Worker, deployment_env, get_json, get_text, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 2
HOOK_SECRET = "whsec-rebalance-SeCrEt-4321"
# Faust's assignor gives a joining worker the lowest partition of the one that held both
# (CopartitionedAssignor: set.pop), so the backlog is on partition 0 (initech's): the one that
# moves. (Should that change, the test still checks that nothing is sent twice.)
TEAMS = [f"t{i:02d}" for i in range(14)]  # 14 x 2.5 s: in flight for longer than a worker takes to join
ANSWER_S = 2.5
WAITING = "deliveries in flight"  # the revoke's log line while it waits for them


@pytest.fixture
def webhook() -> Any:
    with FakeWebhookServer(secret=HOOK_SECRET) as s:
        yield s


def trigger(team: str) -> Notification:
    """The trigger of a cost spike of initech's ``team``."""
    t0 = time.time() // 60 * 60 - 600
    (n,) = AlertEngine().observe(Signal(series=f"org=initech|team={team}", labels={"team": team},
                                        window_start=t0, window_end=t0 + 60, observed_usd=90.0, expected_usd=3.0,
                                        upper_usd=6.0, score=0.9, is_anomaly=True))
    assert n.action == "trigger" and judge_partition(n.series, PARTITIONS) == 0
    return n


def to_outbox(bootstrap: str, topic: str, notes: list[Notification]) -> None:
    """Written as the judge writes them: keyed by alert key, on the series' judge partition."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1)
    try:
        for n in notes:
            producer.send(topic, key=n.key.encode(), value=orjson.dumps(n.to_dict()),
                          partition=judge_partition(n.series, PARTITIONS))
        producer.flush(30)
    finally:
        producer.close()


def sent(webhook: FakeWebhookServer) -> list[str]:
    """The alert keys the receiver accepted, one per request."""
    return [r["body"]["notification"]["key"] for r in webhook.accepted()]


def sent_by(w: Worker) -> int:
    """Notifications ``w`` delivered to the webhook (its ``alerts_sent_total``)."""
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in get_text(f"{w.url}/metrics").splitlines()
               if line.startswith("tokenpulse_alerts_sent_total{") and 'sink="webhook"' in line)


def test_deliveries_in_flight_at_a_rebalance_are_sent_once(broker: Any, webhook: FakeWebhookServer,
                                                            workdir: Path) -> None:
    env = deployment_env(broker, workdir, PARTITIONS, webhook_url=webhook.hook_url, webhook_secret=HOOK_SECRET)
    outbox = f"{env['TOKENPULSE_TOPIC_PREFIX']}.alerts.outbox"
    first, second = (Worker({**env, "TOKENPULSE_DATA_DIR": str(workdir / f"data{i}")}, workdir / f"worker{i}.log")
                     for i in range(2))
    notes = [trigger(t) for t in TEAMS]
    first.start(PARTITIONS)
    try:
        wait_until(lambda: get_json(f"{first.url}/healthz")["judge_partitions"] == [0, 1], 60,
                   "the first worker holding both judge (and outbox) partitions")
        webhook.delay = ANSWER_S
        to_outbox(broker.bootstrap, outbox, notes)
        wait_until(lambda: webhook.requests, 30, "the first notification delivered")
        second.start(1)  # the hot path's group; Faust's (the outbox's) rebalances meanwhile
        wait_until(lambda: sorted(p for w in (first, second) for p in get_json(f"{w.url}/healthz")["judge_partitions"])
                   == [0, 1] and not any(get_json(f"{w.url}/healthz").get("judge_settling") for w in (first, second)),
                   60, "the workers settled, one partition each")
        # The partition's new owner reads its outbox from the committed offset: first the record
        # whose delivery was in flight at the revoke (skipped: its entry is on the changelog),
        # then the rest of the backlog (which Faust's recovery used to drop from its queue after
        # the first record, in about half the runs: streams.worker.app._rewind_on_rebalance).
        newcomer = next(w for w in (first, second) if 0 in get_json(f"{w.url}/healthz")["judge_partitions"])
        print("partition 0 (the backlog's) now on", newcomer.log_path.name)
        wait_until(lambda: len(sent(webhook)) >= len(notes), len(notes) * ANSWER_S + 30, "every notification delivered")
        time.sleep(2)  # nothing more comes
        keys = sent(webhook)
        print(f"{len(keys)} of {len(notes)} delivered, {sent_by(newcomer)} by the partition's new owner")
        assert sorted(keys) == sorted(n.key for n in notes), [k for k in keys if keys.count(k) > 1]
        # the revoke came while a delivery was in flight, and waited for it
        assert WAITING in first.log_path.read_text(errors="replace")
    except BaseException:
        print("sent:", sent(webhook))
        try:
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
            print("committed:", {f"{tp.topic}[{tp.partition}]": m.offset for tp, m in
                                 admin.list_consumer_group_offsets(env["TOKENPULSE_APP_ID"]).items() if "outbox" in tp.topic})
            admin.close()
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            print("committed offsets not read:", exc)
        for w in (first, second):
            print(f"--- {w.log_path.name}")
            print(w.diagnostics() if w.proc is not None and w.proc.poll() is None else w.log_tail(150))
        raise
    finally:
        for w in (first, second):
            w.stop()

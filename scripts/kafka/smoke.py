"""End-to-end check of the Apache Kafka started by scripts/kafka/kafka.sh.

    .venv/bin/python scripts/kafka/smoke.py [--faust]

Starts a broker in a temporary directory, creates a 4-partition topic with
kafka-python's admin client, produces 1000 messages with kafka-python, consumes
them with aiokafka in a consumer group, optionally checks that a Faust app joins
its group, prints timings and the broker's RSS, and stops the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.apache_kafka import ApacheKafka, available, fetch

N = 1000
PARTITIONS = 4


def rss_mib(workdir: Path) -> float:
    pid = (workdir / "kafka.pid").read_text().strip()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def produce(bootstrap: str, topic: str) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="smoke-admin")
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    for i in range(N):
        producer.send(topic, key=str(i % 16).encode(), value=f"msg-{i}".encode())
    producer.flush()
    producer.close()


async def consume(bootstrap: str, topic: str) -> tuple[int, set[int], float]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="smoke-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    t0 = time.monotonic()
    await consumer.start()
    seen: set[str] = set()
    parts: set[int] = set()
    first = None
    try:
        while len(seen) < N and time.monotonic() - t0 < 60:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, msgs in batch.items():
                if msgs and first is None:
                    first = time.monotonic() - t0
                parts.add(tp.partition)
                seen.update(m.value.decode() for m in msgs)
        await consumer.commit()
    finally:
        await consumer.stop()
    return len(seen), parts, first or float("nan")


def faust_join(bootstrap: str, workdir: Path) -> float:
    """Seconds from Faust worker start until its agent gets an event (group joined + assigned).

    The source topic is created first: Faust does not create non-internal topics, and a
    topic that appears after the group's assignment is only picked up on the next
    metadata refresh (minutes), so auto-creation by the producer is not enough.
    """
    import faust
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="smoke-admin")
    admin.create_topics([NewTopic("smoke-faust-in", num_partitions=PARTITIONS, replication_factor=1)])
    admin.close()

    app = faust.App(
        "smoke-faust",
        broker=f"kafka://{bootstrap}",
        datadir=str(workdir / "faust"),
        store="memory://",
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        web_enabled=False,
    )
    topic = app.topic("smoke-faust-in", value_type=bytes, value_serializer="raw")
    worker = faust.Worker(app, loglevel="warning", redirect_stdouts=False, quiet=True)
    got: dict[str, float] = {}
    stopping: list[asyncio.Future[None]] = []  # held, so the loop does not drop the task
    t0 = time.monotonic()

    @app.agent(topic)
    async def agent(stream):  # type: ignore[no-untyped-def]
        async for _value in stream:
            got.setdefault("t", time.monotonic() - t0)
            stopping.append(asyncio.ensure_future(worker.stop()))

    @app.task
    async def feed() -> None:
        await topic.send(value=b"hello")

    @app.timer(interval=60.0)
    async def give_up() -> None:
        if "t" not in got:
            stopping.append(asyncio.ensure_future(worker.stop()))

    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    if "t" not in got:
        raise RuntimeError("Faust agent received nothing within 60s")
    return got["t"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faust", action="store_true", help="also check a Faust app joins its group")
    args = ap.parse_args()
    reason = available()
    if reason is not True:
        print(f"SKIP: {reason}")
        return 0
    t = time.monotonic()
    fetch()
    print(f"fetch: {time.monotonic() - t:.2f}s")
    with tempfile.TemporaryDirectory(prefix="kafka-smoke-") as tmp:
        workdir = Path(tmp)
        kafka = ApacheKafka()
        t = time.monotonic()
        bootstrap = kafka.start(workdir)
        print(f"start: {time.monotonic() - t:.2f}s -> {bootstrap}, RSS {rss_mib(workdir):.0f} MiB")
        try:
            t = time.monotonic()
            produce(bootstrap, "smoke")
            print(f"create topic + produce {N}: {time.monotonic() - t:.2f}s")
            t = time.monotonic()
            count, parts, first = asyncio.run(consume(bootstrap, "smoke"))
            print(
                f"aiokafka group consume: {count}/{N} from partitions {sorted(parts)} "
                f"in {time.monotonic() - t:.2f}s (first batch after {first:.2f}s)"
            )
            if count != N or len(parts) != PARTITIONS:
                raise SystemExit("FAIL: did not consume every message from every partition")
            if args.faust:
                print(f"faust: first event after {faust_join(bootstrap, workdir):.2f}s")
            print(f"broker RSS after load: {rss_mib(workdir):.0f} MiB")
        finally:
            t = time.monotonic()
            kafka.stop()
            print(f"stop: {time.monotonic() - t:.2f}s")
    print("smoke OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())

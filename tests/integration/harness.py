"""Helpers for the integration tier: a worker subprocess, producing and consuming with
kafka-python, and polling the worker's HTTP API."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.integration import apache_kafka
from tokenpulse.broker import free_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]

# The detector section of the integration tests' policies (YAML, to put in a policy's text):
# a plain money gate of $1 and 50 % over expected (no minutes-of-spend or root gate, which
# would scale with the series), judging from the 20th window with spend, so that a test's short
# quiet history and its ten-fold spikes alert at once, the same way in every test.
DETECTOR_POLICY = """\
detector:
  params:
    min_excess_usd: 1
    min_excess_root: 0
    min_excess_minutes: 0
    min_excess_pct: 50
    seasonal: {min_history: 20}
"""


def broker_cases(*cases: tuple[Any, ...]) -> list[Any]:
    """Parameters for ``@pytest.mark.parametrize(("broker", ...), broker_cases(...), indirect=["broker"])``:
    each case a tuple whose first item is the broker (``"tansu"`` or ``"kafka"``), for a test whose
    other parameters need not run on both brokers (placement logic is broker-independent). A
    ``"kafka"`` case is skipped as tests/integration/conftest.py skips that tier (no Java or
    Maven here, outside CI); its id is the items joined by ``-``, as pytest names them."""
    why = apache_kafka.available()
    skip = () if why is True or os.environ.get("CI") else (pytest.mark.skip(reason=f"Apache Kafka tier: {why}"),)
    return [pytest.param(*case, marks=skip if case[0] == "kafka" else (), id="-".join(map(str, case)))
            for case in cases]


def wait_until(pred: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last failure
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class Steps:
    """The steps of a long integration test and when each began, for its failure output: which
    step failed, and how long every step before it took (a wait that was nearly too short under
    load shows as a long step). Call it with each step's name as the test reaches it; print it
    (``str``) when the test fails, or as it passes to see the margins."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.marks: list[tuple[str, float]] = []

    def __call__(self, name: str) -> None:
        self.marks.append((name, time.monotonic()))

    def __str__(self) -> str:
        now = time.monotonic()
        rows = [f"  {at - self.t0:6.1f}s  +{(nxt - at):5.1f}s  {name}"
                for (name, at), nxt in zip(self.marks, [m[1] for m in self.marks[1:]] + [now], strict=True)]
        where = self.marks[-1][0] if self.marks else "(before the first step)"
        return "\n".join([f"--- steps (the last one, where it stopped: {where})", *rows])


def get_json(url: str, timeout: float = 5.0, local: bool = False) -> Any:
    """GET a worker's JSON. ``local``: what that worker alone holds, as a peer asks it (header
    ``X-Tokenpulse-Forwarded``); without it any worker answers for every partition."""
    req = urllib.request.Request(url, headers={"X-Tokenpulse-Forwarded": "1"} if local else {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def get_text(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


class Worker:
    """``python -m tokenpulse worker`` as a subprocess with its own env and log file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.port = int(env.get("TOKENPULSE_WEB_PORT") or free_port())
        self.env["TOKENPULSE_WEB_PORT"] = str(self.port)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, partitions: int, timeout: float = 90.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tokenpulse", "worker"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            h = get_json(f"{self.url}/healthz", timeout=1)
            return len(h["usage_partitions"]) == partitions

        try:
            wait_until(ready, timeout, "the worker to be assigned its partitions")
        except AssertionError:
            self.kill()
            raise AssertionError(f"worker not ready:\n{self.log_tail()}") from None

    def diagnostics(self) -> str:
        """What the worker says about itself, for a failing test's output."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGUSR1)  # task stacks into the log
            time.sleep(0.5)
        out = [self.log_records(), self.task_summary(), "--- log tail", self.log_tail(150)]
        for path in ("/healthz", "/metrics", "/api/alerts", "/api/status", "/api/windows?series=team%3Dads"):
            try:
                out.append(f"--- {path}\n{get_text(self.url + path, timeout=3)}")
            except Exception as exc:  # noqa: BLE001
                out.append(f"--- {path}: {exc!r}")
        return "\n".join(out)

    def log_records(self, n: int = 150) -> str:
        """The worker's own log lines (not stack dumps): what it did before the failure."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        records = [line for line in lines if line.startswith("[20")]
        shown = "\n".join(records[-n:])
        return f"--- log records (last {min(n, len(records))} of {len(records)})\n{shown}"

    def task_summary(self) -> str:
        """One line per asyncio task of the SIGUSR1 dumps: the task and the innermost frame it waits
        in (the full stacks with their locals are too long for the captured output)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        seen: dict[str, None] = {}
        task, frame = "", ""

        def keep() -> None:
            if task:
                seen.setdefault(f"{task}  <-  {frame}", None)

        for line in lines:
            if line.startswith("Stack for <Task"):
                keep()
                task = re.sub(r" at 0x[0-9a-f]+|\S*/site-packages/", "", line[len("Stack for "):]).split(" wait_for=")[0]
                frame = ""
            elif task and line.startswith('  File "') and "/asyncio/" not in line:
                frame = re.sub(r'"\S*/site-packages/|"', "", line.strip())
        keep()
        listing = "\n".join(seen)
        return f"--- tasks ({len(seen)})\n{listing}"

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def stop_all(workers: list[Worker], timeout: float = 30.0) -> None:
    """Stop ``workers`` at once (SIGTERM to each, then wait; SIGKILL after ``timeout``): one
    after the other, each waits for the one before it to leave its groups (1.4 s on Tansu at
    load ~4, test_spread's first worker), and the next is told to stop while its groups rebalance."""
    running = [w for w in workers if w.proc is not None and w.proc.poll() is None]
    for w in running:
        assert w.proc is not None
        os.killpg(w.proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for w in running:
        assert w.proc is not None
        try:
            w.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.kill()


def workers_of(env: dict[str, str], workdir: Path, n: int = 2) -> list[Worker]:
    """``n`` workers of one deployment (``env``), each with its own data dir and log
    (``data<i>``, ``worker<i>.log``), not started: :func:`start_together`."""
    return [Worker({**env, "TOKENPULSE_DATA_DIR": str(workdir / f"data{i}")}, workdir / f"worker{i}.log")
            for i in range(n)]


def start_together(workers: list[Worker], partitions: int = 1, timeout: float = 120.0) -> None:
    """Start ``workers`` at once, each holding ``partitions`` usage partitions when it returns.
    Together they join the groups in one rebalance; one starting after the other makes the
    first hand over a partition and recover its tables again, which on a loaded machine
    sometimes outlasted a test's patience on Tansu. Faust's group settles later: :func:`settled`."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(workers)) as pool:
        for f in [pool.submit(w.start, partitions, timeout) for w in workers]:
            f.result()


def settled(workers: list[Worker], partitions: int, timeout: float = 60.0) -> None:
    """Wait until both groups of ``workers`` have settled: every usage partition and every
    judge (windows) partition held by exactly one of them, and none of them rebalancing or
    recovering its tables. ``Worker.start`` waits for the hot path's group only; Faust's group
    (the judge) settles a moment later, and longer on a loaded machine."""
    every = list(range(partitions))

    def ok() -> bool:
        hs = [get_json(f"{w.url}/healthz", timeout=2) for w in workers]
        usage = sorted(p for h in hs for p in h["usage_partitions"])
        judge = sorted(p for h in hs for p in (h.get("judge_partitions") or []))
        return usage == every and judge == every and not any(h.get("judge_settling") for h in hs)

    wait_until(ok, timeout, "both groups of the workers settled")


def deployment_env(broker: Any, workdir: Path, partitions: int, tag: str = "it", **settings: object) -> dict[str, str]:
    """The environment of a worker with topics of its own (a fresh prefix and app id), its
    usage topic created; ``settings`` are further TOKENPULSE_* values by field name."""
    import uuid

    from tokenpulse.broker import ensure_topics

    prefix = f"{tag}{uuid.uuid4().hex[:8]}"
    ensure_topics(broker.bootstrap, [(f"{prefix}.usage", partitions)])
    env = {
        "TOKENPULSE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "TOKENPULSE_KAFKA_FLAVOR": broker.flavor,
        "TOKENPULSE_TOPIC_PREFIX": prefix,
        "TOKENPULSE_APP_ID": prefix,
        "TOKENPULSE_USAGE_PARTITIONS": str(partitions),
        "TOKENPULSE_DATA_DIR": str(workdir / "data"),
    }
    env.update({f"TOKENPULSE_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1, max_request_size=4 * 1024 * 1024)
    n = 0
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
            n += 1
        producer.flush(30)
    finally:
        producer.close()
    return n


def windows_summary(bootstrap: str, topic: str, timeout: float = 10.0) -> str:
    """For a failing test's output: per windows partition and source (usage partition), the
    messages and series-window partials the hot path put on ``topic`` (``<prefix>.windows``),
    and their seqs. Beside the worker's ``judge_partials_total`` and
    ``judge_late_partials_total`` (per source, in ``/metrics``) it says whether partials went
    missing between the topic and the judge or reached it after their windows were judged."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    counts: dict[tuple[int, int], list[int]] = {}  # (partition, src): messages, partials, first and last seq
    try:
        parts = wait_until(lambda: consumer.partitions_for_topic(topic), 10, f"metadata of {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)  # what the topic held when asked (Tansu: nearly)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=500).items():
                for rec in batch:
                    body = json.loads(rec.value)
                    c = counts.setdefault((tp.partition, int(body["src"])), [0, 0, body["seq"], body["seq"]])
                    c[0] += 1
                    c[1] += len(body["partials"])
                    c[2], c[3] = min(c[2], body["seq"]), max(c[3], body["seq"])
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        return f"windows topic {topic}: not read ({exc!r})"
    finally:
        consumer.close()
    lines = [f"windows topic {topic} (partition, source: messages, partials, seqs):"]
    lines += [f"  {q}, {src}: {m}, {n}, {lo}..{hi}" for (q, src), (m, n, lo, hi) in sorted(counts.items())]
    return "\n".join(lines)


def consume_all(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[Any]:
    """Read a topic from the beginning (no group) until ``expect`` records or the timeout."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        parts = wait_until(lambda: consumer.partitions_for_topic(topic), 10, f"metadata of {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()

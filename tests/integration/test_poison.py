"""Issue 10 on a real broker: every hostile payload that killed the worker (or was counted in
spend) produced between good messages. The worker stays up, the good spend is exact, each bad
message is in the dead-letter topic once with its reason; after a SIGKILL and a restart nothing
is dead-lettered again, and the same payloads sent again are rejected the same way (never
dropped as duplicates).

At least once: a crash after a dead-letter record is acknowledged but before the checkpoint
that moves past its offset repeats that record after the restart (README, "Usage events"); this
test kills the worker only once its checkpoints cover every message, where nothing may repeat.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.harness import Worker, consume_all, deployment_env, get_json, get_text, produce, wait_until
from tests.integration.test_spine import Ledger
from tests.streams.ingest.test_poison import ALL, good, run

pytestmark = pytest.mark.integration

W = 2
PARTITIONS = 2
DLQ_MAX = 65_536
OLD_TS = b"1767600000"  # the event time the payloads of tests/streams/ingest/test_poison.py carry


def kind(raw: bytes) -> str:
    """invalid or implausible: what the pipeline says of it (tests/streams/ingest/test_poison.py)."""
    _, rejects = run([raw])
    return "implausible" if rejects[0][2].startswith("implausible:") else "invalid"


def poison(ts: float, tag: str) -> list[tuple[str, bytes, str, str]]:
    """(id, message, a word of its reason, invalid|implausible) for every hostile payload at
    event time ``ts``; each message carries the id ``bad-<tag>-<n>`` of its bad event."""
    out = []
    for n, (name, raw, word) in enumerate(ALL):
        if name == "tool-10mb":  # brokers take 1 MB by default; 300 KB is over the DLQ cap all the same
            raw = orjson.dumps({**good(0), "event_id": "bad", "tool": "t" * 300_000})
        bad_id = f"bad-{tag}-{n}"
        raw = raw.replace(OLD_TS, str(int(ts)).encode()).replace(b'"bad"', f'"{bad_id}"'.encode())
        raw = raw.replace(b'"good-in-batch"', f'"good-in-batch-{tag}"'.encode())
        out.append((bad_id, raw, word, kind(raw)))
    # others like them: not UTF-8, nested deeper than any parser goes, not an object
    n = len(out)
    for k, (raw, word) in enumerate([(b'\xff\xfe\x00"ID"', "invalid JSON"), (b"[" * 2000 + b'"ID"' + b"]" * 2000, "invalid JSON"),
                                     (b'"ID"', "JSON object")]):
        bad_id = f"bad-{tag}-{n + k}"
        out.append((bad_id, raw.replace(b"ID", bad_id.encode()), word, "invalid"))
    return out


def traffic(t0: float, rng: random.Random, ledger: Ledger, tag: str) -> tuple[list[tuple[bytes, bytes]], list[Any]]:
    """Good events, one per message and in batches, with every hostile payload between them;
    all in the one window starting at ``t0``, in time order per team (nothing late)."""
    bad = poison(t0 + 0.5, tag)
    msgs: list[tuple[bytes, bytes]] = []
    step = iter(range(1, 10_000))

    def ev(team: str) -> dict[str, Any]:
        e = {**good(0), "event_id": uuid.UUID(int=rng.getrandbits(128)).hex, "ts": round(t0 + next(step) * 0.004, 3),
             "team": team, "cost_usd": round(rng.uniform(0.01, 0.2), 6)}
        ledger.add(e)
        return e

    for k, (_, raw, _, _) in enumerate(bad):
        team = ("ads", "search")[k % 2]
        msgs += [(team.encode(), orjson.dumps(ev(team))), (team.encode(), raw),
                 (team.encode(), orjson.dumps([ev(team) for _ in range(3)]))]
    # the good element of the batch that holds a bad one is counted
    ledger.add({**good(0), "event_id": f"good-in-batch-{tag}", "team": "ads", "cost_usd": 0.25})
    return msgs, bad


def dlq_of(records: list[Any], tag: str) -> dict[str, list[Any]]:
    """The DLQ records of one round, by the id of the bad event in them."""
    out: dict[str, list[Any]] = {}
    for r in records:
        m = re.search(rb"bad-([ab])-(\d+)", r.value or b"")
        assert m is not None, r.value[:80]
        if m.group(1).decode() == tag:
            out.setdefault(m.group(0).decode(), []).append(r)
    return out


def check_round(records: list[Any], bad: list[Any], tag: str, usage_topic: str) -> None:
    got = dlq_of(records, tag)
    assert sorted(got) == sorted(b[0] for b in bad)
    for bad_id, raw, word, _ in bad:
        [rec] = got[bad_id]  # exactly once
        h = {k: v.decode() for k, v in rec.headers}
        assert word in h["tokenpulse.reason"], (bad_id, h)
        assert h["tokenpulse.source"].startswith(f"{usage_topic}/")
        assert len(rec.value) <= DLQ_MAX
        if len(raw) > DLQ_MAX:
            assert h["tokenpulse.truncated"] == str(len(raw)) and raw.startswith(rec.value)


def wait_dlq(broker: Any, topic: str, n: int) -> list[Any]:
    def enough() -> list[Any] | None:
        records = consume_all(broker.bootstrap, topic, n, 5)
        return records if len(records) >= n else None

    return wait_until(enough, 40, f"{n} records in the DLQ")


def caught_up(worker: Worker) -> bool:
    text = get_text(f"{worker.url}/metrics")
    lags = re.findall(r"^tokenpulse_consumer_lag\{partition=\"\d+\"\} (\S+)$", text, re.M)
    return len(lags) == PARTITIONS and all(float(x) == 0 for x in lags)


def test_poison_between_good_messages_is_dead_lettered_once_and_the_worker_stays_up(broker: Any, workdir: Path) -> None:
    rng = random.Random(10)
    env = deployment_env(broker, workdir, PARTITIONS, window_seconds=W, lateness_seconds=0.5, idle_grace_seconds=1,
                         checkpoint_seconds=0.2, dlq_max_bytes=DLQ_MAX)
    prefix = env["TOKENPULSE_TOPIC_PREFIX"]
    usage, dlq_topic = f"{prefix}.usage", f"{prefix}.usage.dlq"
    worker = Worker(env, workdir / "worker.log")
    worker.start(PARTITIONS)
    ledger = Ledger()

    def spend_exact() -> bool:
        return ledger.matches(get_json(f"{worker.url}/api/spend?group_by=team")["rows"])

    try:
        t0 = int(time.time() // W) * W - 10 * W
        msgs, bad = traffic(t0, rng, ledger, "a")
        produce(broker.bootstrap, usage, msgs)
        wait_until(spend_exact, 45, "the exact spend of the good events")
        check_round(wait_dlq(broker, dlq_topic, len(bad)), bad, "a", usage)
        assert worker.proc is not None and worker.proc.poll() is None  # still up
        n_implausible = sum(1 for b in bad if b[3] == "implausible")
        metrics = get_text(f"{worker.url}/metrics")
        assert f'tokenpulse_events_rejected_total{{reason="invalid"}} {len(bad) - n_implausible}\n' in metrics, metrics
        assert f'tokenpulse_events_rejected_total{{reason="implausible"}} {n_implausible}\n' in metrics
        assert 'tokenpulse_events_rejected_total{reason="error"} 0\n' in metrics

        # Checkpointed past every message: a SIGKILL and a restart dead-letter nothing again.
        wait_until(lambda: caught_up(worker), 20, "every message applied")
        time.sleep(1.0)  # five checkpoint intervals
        worker.kill()
        worker.start(PARTITIONS)
        wait_until(spend_exact, 30, "the same spend after the restart")
        wait_until(lambda: caught_up(worker), 20, "the restarted worker caught up")
        assert len(consume_all(broker.bootstrap, dlq_topic, len(bad) + 1, 3)) == len(bad), "dead-lettered again"

        # The same payloads again, at new offsets: rejected the same way (the 1e308 event is not
        # "a duplicate"), once each; the good events around them counted exactly.
        more, bad2 = traffic(int(time.time() // W) * W + W, rng, ledger, "b")
        produce(broker.bootstrap, usage, more)
        wait_until(spend_exact, 45, "the exact spend after the restart")
        records = wait_dlq(broker, dlq_topic, len(bad) + len(bad2))
        check_round(records, bad2, "b", usage)
        check_round(records, bad, "a", usage)
        assert len(consume_all(broker.bootstrap, dlq_topic, len(bad) + len(bad2) + 1, 3)) == len(bad) + len(bad2)
        totals = get_json(f"{worker.url}/api/status")["ingest_totals"]
        assert totals["implausible"] == 2 * n_implausible and totals["failed"] == 0 and totals["duplicate"] == 0
        assert worker.proc is not None and worker.proc.poll() is None
        assert "Traceback" not in worker.log_tail(2000)
    except BaseException:
        print(worker.log_tail(120))
        print(worker.diagnostics())
        print(getattr(ledger, "last", None))
        raise
    finally:
        worker.stop()

"""The dedupe horizon: a producer retry that comes 30 minutes after its event is counted once,
in the budget ledger as in the spend table, and the ids of closed windows are held as 64-bit
hashes that survive a checkpoint.

The path is the worker's: raw messages through ``count_message`` into an
``IngestPartition``, the closed windows' partials through ``judge_step`` (the judge, then the
budget ledger with the spend it judged).
"""

from __future__ import annotations

import orjson
import pytest

from alerts import AlertEngine, AlertPolicy
from detectors import make_detector
from streams.budgets.ledger import BudgetLedger, BudgetSpec
from streams.ingest.pipeline import count_message
from streams.ingest.pricing import Pricer
from streams.ingest.windows import DEDUPE_HORIZON, NANO, IngestPartition, id_hash, id_hashes, to_nusd
from streams.judge.core import JudgeCore
from streams.judge.step import judge_step

W = 60
DAY0 = 1_764_115_200  # 2025-11-26 00:00 UTC
SPEC = BudgetSpec("ads", (("team", "ads"),), "usd", 1000 * NANO, period="day", forecast_alert=False)


def event(i: int, ts: float, cost: float = 0.25) -> dict[str, object]:
    return {"event_id": f"req-{i:06d}", "ts": ts, "org": "default", "team": "ads", "user": "u1", "provider": "openai",
            "model": "gpt-4o", "input_tokens": 100, "output_tokens": 10, "cost_usd": cost}


class Worker:
    """One ingest partition feeding one judge partition and its ledger, as the worker steps them."""

    def __init__(self, checkpoints: bool = False, **ingest: object) -> None:
        self.checkpoints = checkpoints  # after every message, as the hot path does every second
        self.core = IngestPartition(partition=0, window_seconds=W, lateness=5, idle_grace=10**9, **ingest)  # type: ignore[arg-type]
        self.judge = JudgeCore(partition=0, window_seconds=W, engine=AlertEngine(AlertPolicy()),
                               make_detector=lambda: make_detector("default", window_seconds=W))
        self.ledger = BudgetLedger(W, [SPEC])
        self.pricer = Pricer()
        self.seq = 0
        self.spend_nusd = 0  # what the judge's spend rows said for team=ads

    def send(self, events: list[dict[str, object]]) -> None:
        rejects: list[str] = []
        count_message(self.core, orjson.dumps(events), self.pricer, 0.0, lambda raw, why, i: rejects.append(why))
        assert not rejects
        self.seq += 1
        step = judge_step(self.judge, self.ledger, None, 0, 1, self.core.closed_until, self.core.advance(0.0),
                          self.seq)
        self.spend_nusd += sum(s[0] for series, _w, s, _ in step.judged.spend if series == "team=ads")
        if self.checkpoints:
            self.core.checkpoint()

    def spent(self) -> int:
        return self.ledger.spent("ads", "2025-11-26")


def traffic(worker: Worker, minutes: int, retry_at: int, retried: list[int]) -> int:
    """An event every 10 s for ``minutes``; at minute ``retry_at`` the events ``retried`` are sent
    again (a producer that lost the acknowledgements and retries late). Returns the true spend."""
    t0 = DAY0 + 9 * 3600
    sent = []
    for m in range(minutes):
        batch = [event(m * 6 + k, t0 + m * 60 + k * 10) for k in range(6)]
        sent += batch
        if m == retry_at:
            batch = batch + [sent[i] for i in retried]
        worker.send(batch)
    return sum(to_nusd(float(e["cost_usd"])) for e in sent)  # type: ignore[arg-type]


def settle(w: Worker) -> None:
    """Free events an hour on: the clock passes every window and the judge judges them all."""
    for k in range(3):
        w.send([event(10**6 + k, DAY0 + 10 * 3600 + k * 100, cost=0.0)])
    assert w.judge.done_until is not None and w.judge.done_until >= DAY0 + 9 * 3600 + 40 * 60


@pytest.mark.parametrize("checkpoints", [False, True])
def test_a_retry_30_minutes_late_counts_once_in_the_ledger(checkpoints: bool) -> None:
    w = Worker(checkpoints)
    assert w.core.dedupe_retention == DEDUPE_HORIZON == 7200
    # events of minute 2 sent again at minute 33: their window closed half an hour before
    truth = traffic(w, 40, retry_at=33, retried=list(range(12, 18)))
    settle(w)
    assert w.core.counters.duplicate == 6 and w.core.counters.late == 0
    assert w.spent() == truth
    assert w.spend_nusd == truth


def test_with_the_old_ten_minute_horizon_the_ledger_counted_it_twice() -> None:
    # what the issue measured: ids kept 600 s; the same traffic comes out over by the retry
    w = Worker(dedupe_retention=600.0)
    truth = traffic(w, 40, retry_at=33, retried=list(range(12, 18)))
    settle(w)
    assert w.core.counters.duplicate == 0 and w.core.counters.late == 6
    assert w.spent() == truth + 6 * to_nusd(0.25)


def test_ids_past_the_horizon_are_forgotten_and_closed_ones_are_hashes() -> None:
    w = Worker(dedupe_retention=1800.0)
    traffic(w, 40, retry_at=-1, retried=[])
    core = w.core
    assert len(core.ids) <= 1  # only the window being filled holds strings
    assert all(a.dtype.name == "uint64" and list(a) == sorted(a) for a in core.hashed.values())
    oldest = min(core.hashed)
    assert core.closed_until is not None and oldest + W > core.closed_until - 1800
    assert core.remembers("req-000200", DAY0 + 9 * 3600 + 33 * 60 + 20)  # minute 33: still held
    assert not core.remembers("req-000012", DAY0 + 9 * 3600 + 2 * 60 + 0)  # minute 2: past the horizon


@pytest.mark.parametrize("old_format", [False, True])
def test_hashes_survive_a_checkpoint(old_format: bool) -> None:
    w = Worker()
    traffic(w, 5, retry_at=-1, retried=[])
    changes = w.core.checkpoint()
    if old_format:  # a checkpoint written before the hashes: the ids as strings
        changes = {k: ({ws: [f"req-{i:06d}" for i in range(30)] for ws in v} if k.startswith("ids|") and v else v)
                   for k, v in changes.items()}
    fresh = IngestPartition(partition=0, window_seconds=W, lateness=5, idle_grace=10**9)
    fresh.restore(orjson.loads(orjson.dumps(changes)).items(), 0.0)
    t0 = DAY0 + 9 * 3600
    assert fresh.remembers("req-000013", t0 + 2 * 60 + 10)
    assert fresh.remembers("req-000029", t0 + 4 * 60 + 50)
    assert not fresh.remembers("req-000031", t0 + 5 * 60 + 10)
    assert fresh.add_events([], 0.0) == 0
    assert id_hash("req-000013") in set(fresh.hashed[t0 + 120].tolist())


def test_checkpoints_hash_each_id_once_and_compact_to_the_same_arrays() -> None:
    plain, saved = Worker(), Worker(checkpoints=True)
    for w in (plain, saved):
        traffic(w, 12, retry_at=-1, retried=[])
    assert plain.core.hashed.keys() == saved.core.hashed.keys()
    assert all((plain.core.hashed[k] == saved.core.hashed[k]).all() for k in plain.core.hashed)
    assert not saved.core._unsaved and set(saved.core._open_hashes) <= set(saved.core.ids)


def test_id_hashes_are_id_hash_of_each_id_whatever_the_text() -> None:
    """The batch hashes every id as id_hash does: ASCII, other UTF-8, and a lone surrogate
    (which strict UTF-8 cannot encode), from a list or any iterable."""
    ids = ["req-000013", "équipe-1", "データ", "a\ud800b", "", "x" * 300]
    want = [id_hash(e) for e in ids]
    assert id_hashes(ids, len(ids)).tolist() == want
    assert id_hashes(iter(ids)).tolist() == want
    assert id_hashes(ids[:3]).tolist() == want[:3]

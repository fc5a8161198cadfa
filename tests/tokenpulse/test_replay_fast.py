"""The replay's fast paths (struct decoding, runs of events, the forked judge) give exactly what
the plain per-line replay gives: same notifications in the same order, counters, rejects with
their line numbers, windows judged, time span and teams."""

from __future__ import annotations

import os
import random
from typing import Any

import orjson
import pytest

import tokenpulse.replay as replay_mod
from streams.ingest.windows import IngestPartition
from streams.judge.core import judge_factory
from streams.ingest.pricing import Pricer
from tests.streams.ingest.test_fast_lane import MUTATIONS, RAW_MUTATIONS, count_message_general
from tests.tokenpulse.test_replay import MONDAY_6AM, SPIKE_AT
from tokenpulse.policy import Policy
from tokenpulse.replay import ReplayResult, firing_record, inhibited_record, replay_lines
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings
from tokenpulse.simulate import Simulator, Spike


def reference_replay(lines: list[bytes], cfg: Any) -> ReplayResult:
    """The replay loop as it was before the fast paths: one line at a time through the general
    path, the judge with all its bookkeeping, spend read back from the judge."""
    res = ReplayResult()
    pricer = Pricer(cfg.price_overrides)
    core = IngestPartition(partition=0, window_seconds=cfg.window_seconds, lateness=cfg.lateness,
                           idle_grace=cfg.idle_grace, watched=cfg.watched)
    judge = judge_factory(cfg.window_seconds, cfg.detector_name, cfg.detector_params, cfg.alert_policy)(0)
    seq = 0
    line_no = 0

    def on_reject(raw: bytes, reason: str, index: int | None) -> None:
        if len(res.rejects) < 100:
            res.rejects.append((line_no, reason))

    def feed(wall: float) -> None:
        nonlocal seq
        before = core.closed_until
        partials = core.advance(wall)
        if not partials and core.closed_until == before:
            return
        seq += 1
        out = judge.receive(0, 1, core.closed_until, partials, seq)
        res.windows_judged += out.windows_judged
        for note in out.notifications:
            res.notifications.append(note.to_dict())
            if note.action == "trigger":
                res.firings.append(firing_record(note))
        res.firings += [inhibited_record(note) for note in out.inhibited]

    next_advance = None
    for raw in lines:
        line_no += 1
        res.bytes_read += len(raw)
        if not raw.strip():
            continue
        clock = core.max_ts if core.max_ts is not None else 0.0
        count_message_general(core, raw, pricer, clock, on_reject)
        core.wall_at_max = core.max_ts
        if core.max_ts is not None and (next_advance is None or core.max_ts >= next_advance):
            feed(core.max_ts)
            next_advance = core.max_ts + cfg.window_seconds / 4
    if core.max_ts is not None:
        feed(core.max_ts + cfg.idle_grace + cfg.lateness + cfg.window_seconds * 8)
    res.counters = core.counters.to_dict()
    res.first_ts = min((float(k.rpartition("|")[2]) for k in judge.spend), default=None)
    res.last_ts = core.max_ts
    series = {k.rpartition("|")[0] for k in judge.spend}
    res.teams = {name[5:] for name in series if name.startswith("team=") and "|" not in name}
    return res


def messy_history(seed: int, hours: float = 3, rough: float = 1.0) -> list[bytes]:
    """The simulator's traffic with an incident, then roughed up: duplicates, late events,
    other shapes, bad and blank lines (``rough`` scales how often)."""
    rnd = random.Random(seed)
    sim = Simulator(rate=5, seed=seed, spikes=[Spike("ads", factor=30, minutes=20, start=SPIKE_AT - 3 * 3600)])
    out: list[bytes] = []
    for ev in sim.between(MONDAY_6AM, MONDAY_6AM + hours * 3600):
        if rnd.random() < 0.05 * rough:
            ev = {**ev, "ts": ev["ts"] - rnd.choice([5, 30, 65, 75, 130, 700])}
        if rnd.random() < 0.1 * rough:
            ev = rnd.choice(MUTATIONS)(rnd, ev)
        raw = orjson.dumps(ev)
        if rnd.random() < 0.05 * rough:
            raw = rnd.choice(RAW_MUTATIONS)(raw)
        if out and rnd.random() < 0.03 * rough:
            out.append(rnd.choice(out[-300:]))
        out.append(raw)
    return out


def summary(res: ReplayResult) -> dict[str, Any]:
    return {"notifications": res.notifications, "firings": res.firings, "counters": res.counters,
            "windows": res.windows_judged, "first": res.first_ts, "last": res.last_ts, "teams": res.teams,
            "rejects": res.rejects, "bytes": res.bytes_read}


@pytest.mark.parametrize(("seed", "lateness", "rough"), [(1, 10, 1.0), (2, 90, 1.0), (5, 10, 0.02)])
def test_replay_is_the_plain_per_line_replay(seed: int, lateness: int, rough: float) -> None:
    """Rough input mixes the fast and general paths line by line; nearly clean input takes
    whole chunks of lines at once, with the odd chunk that does not."""
    lines = messy_history(seed, rough=rough)
    cfg = stream_config(Settings(lateness_seconds=lateness, idle_grace_seconds=2), Policy(), bootstrap="", partitions=1)
    want = summary(reference_replay(lines, cfg))
    assert want["counters"]["duplicate"] > 100 * rough and want["counters"]["late"] > 50 * rough
    assert want["counters"]["rejected"] > 50 * rough
    assert any(n["series"] == "team=ads" or "team=ads" in [m["series"] for m in n["members"]]
               for n in want["notifications"])
    assert summary(replay_lines(lines, cfg, fork=False)) == want


@pytest.mark.skipif(not replay_mod._can_fork(), reason="needs two cores and fork")
def test_the_forked_judge_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = messy_history(3)
    cfg = stream_config(Settings(), Policy(), bootstrap="", partitions=1)
    monkeypatch.setattr(replay_mod, "FORK_AFTER_LINES", 4096)  # fork early, mid-history
    forked = summary(replay_lines(lines, cfg, fork=True))
    assert forked == summary(replay_lines(lines, cfg, fork=False)) == summary(reference_replay(lines, cfg))
    assert any(n["series"] == "team=ads" or "team=ads" in [m["series"] for m in n["members"]]
               for n in forked["notifications"])


@pytest.mark.skipif(not replay_mod._can_fork(), reason="needs two cores and fork")
def test_a_failing_forked_judge_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.judge.core import JudgeCore

    lines = messy_history(4, hours=1.5)
    cfg = stream_config(Settings(), Policy(), bootstrap="", partitions=1)
    monkeypatch.setattr(replay_mod, "FORK_AFTER_LINES", 4096)
    real = JudgeCore.receive
    parent = os.getpid()

    def flaky(self: JudgeCore, *a: Any, **kw: Any) -> Any:
        if os.getpid() != parent:  # only in the forked judge
            raise ValueError("detector exploded")
        return real(self, *a, **kw)

    monkeypatch.setattr(JudgeCore, "receive", flaky)
    with pytest.raises(RuntimeError, match="detector exploded"):
        replay_lines(lines, cfg, fork=True)

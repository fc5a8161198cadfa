"""The replay's fast paths (struct decoding, runs of events, the forked judge) give exactly what
the same replay gives with them switched off, every line alone through the general lane: same
notifications in the same order, counters, rejects with their line numbers, windows judged, time
span and teams. (That the replay and a worker give the same alerts is
tests/integration/test_replay_equivalence.py; both take the same judge step,
:func:`streams.judge.step.judge_step`.)"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

import streams.ingest.normalize as nz
import streams.ingest.pipeline as pipeline
import tokenpulse.replay as replay_mod
from tests.streams.ingest.test_fast_lane import MUTATIONS, RAW_MUTATIONS
from tests.tokenpulse.test_replay import MONDAY_6AM, SPIKE_AT
from tokenpulse.policy import Policy
from tokenpulse.replay import ReplayResult, replay_lines
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings
from tokenpulse.simulate import Simulator, Spike


@contextlib.contextmanager
def shortcuts_off() -> Iterator[None]:
    """The replay with none of its fast paths: every line alone through count_message's general
    lane (decode_message, normalize without its dict shortcut, price, add), as a worker would
    count a message that is not tidy."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(replay_mod, "canonical_event", lambda raw: None)
        mp.setattr(replay_mod, "tidy_canonicals", lambda events: False)
        mp.setattr(pipeline, "decode_canonical", lambda raw: None)
        mp.setattr(pipeline, "_fast_canonical", lambda item, default: None)
        mp.setattr(nz, "_fast_canonical", lambda item, default: None)
        yield


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
def test_the_fast_paths_change_nothing(seed: int, lateness: int, rough: float) -> None:
    """Rough input mixes the fast and general paths line by line; nearly clean input takes
    whole chunks of lines at once, with the odd chunk that does not."""
    lines = messy_history(seed, rough=rough)
    cfg = stream_config(Settings(lateness_seconds=lateness, idle_grace_seconds=2), Policy(), bootstrap="", partitions=1)
    with shortcuts_off():
        want = summary(replay_lines(lines, cfg, fork=False))
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
    with shortcuts_off():
        plain = summary(replay_lines(lines, cfg, fork=False))
    assert forked == summary(replay_lines(lines, cfg, fork=False)) == plain
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

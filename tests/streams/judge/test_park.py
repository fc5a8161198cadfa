"""Parking (JudgeCore.park): an idle series' empty windows wait until it spends, is read or
restored, and everything comes out as if it had been stepped every window."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson

from detectors import make_detector
from streams.ingest.windows import NANO, Partial
from streams.judge.core import JudgeCore
from streams.worker.tables import persist, restore_items, unpack

from .test_judge import W, judge

USERS = [f"user=u{k}" for k in range(6)]


def part(w: int, usd: float, series: str) -> Partial:
    nusd = int(usd * NANO)
    dim, _, value = series.partition("=")
    return Partial(series, {dim: value}, w, [nusd, 10, 1, 0, 0, 1 + int(usd)], {"model:m": nusd}, True)


def windows(n: int, seed: int = 3) -> list[list[Partial]]:
    """Each window's partials: sparse users (one of them idle for hours), a busy team that
    spikes twice and then goes silent (its alert resolves on empty windows), a user that spikes."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        w = i * W
        parts = [part(w, 1.0 + 0.1 * (i % 3), "team=ads")] if i < 150 or 170 <= i < 400 else []
        if i in (140, 141, 142, 390):
            parts = [part(w, 40.0, "team=ads")]
        for k, name in enumerate(USERS):
            if i == 0 or (rng.random() < 0.1 and not (k == 1 and 30 < i < 300)):
                parts.append(part(w, rng.uniform(0.02, 0.2), name))
        if i in (200, 201, 202):
            parts.append(part(w, 30.0, USERS[2]))
        out.append(parts)
    return out


def run(j: JudgeCore, wins: list[list[Partial]], table: Any = None, start: int = 0) -> list[Any]:
    """The windows through ``j`` one message each, checkpointed after each as the worker does;
    what each message gave (notifications, verdict signals, spend)."""
    got = []
    for i, parts in enumerate(wins[start:], start):
        out = j.receive(0, 1, (i + 1) * W, parts, seq=i + 1)
        changes = j.checkpoint()
        if table is not None:
            for key, value in changes.items():
                persist(table, 0, f"0|{key}", value, packed=j.packed_out.get(key) or key.startswith("det|"))
        got.append(([n.to_dict() for n in out.notifications],
                    [(v.start, [(s.series, s.observed_usd, s.expected_usd, s.is_anomaly) for s in v.signals])
                     for v in out.windows], out.spend))
    return got


class Table:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.log: dict[str, Any] = {}  # the changelog: the last record per key

    def send_changelog(self, partition: int, key: Any, value: Any) -> None:
        if value is None:
            self.log.pop(key, None)
        else:
            self.log[key] = json.loads(orjson.dumps(value))


def settled(j: JudgeCore, since: int = 0) -> dict[str, Any]:
    """Every series' detector state, recent windows (from ``since``: a restored judge's start
    empty) and contributor mix, its waiting windows applied."""
    j.settle()
    return {name: (orjson.dumps(j.detectors[name].to_state()),
                   [r for r in j.recent.get(name, ()) if r["window_start"] >= since], j.series[name].last_end,
                   j.series[name].mix.to_state())  # type: ignore[union-attr]  # (settled: live)
            for name in j.series}


def test_parked_series_give_the_same_alerts_verdicts_states_and_windows():
    wins = windows(480)
    plain, parked = judge(), judge(park=True)
    a = run(plain, wins)
    b = run(parked, wins)
    assert a == b
    assert any(n for n, _, _ in a)  # the spikes alerted (and resolved): tracked series are stepped
    assert [n["action"] for n, _, _ in a for n in n if n["series"] == "team=ads"].count("resolve") >= 1
    assert len(parked.parked) >= len(USERS) - 2  # most users are parked at the end
    assert not set(parked.parked) & set(parked.detectors)
    for name, blob in parked.parked.items():  # its mix is in its record only, as the plain judge's
        assert parked.series[name].mix is None
        assert unpack(blob)["mix"] == plain.series[name].mix.to_state()  # type: ignore[union-attr]
    assert settled(plain) == settled(parked)


def test_a_parked_series_holds_the_very_bytes_of_the_table_copy():
    j = judge(park=True)
    table = Table()
    run(j, windows(120), table)
    assert j.parked
    for name, blob in j.parked.items():
        assert table.data[f"0|det|{name}"] is blob
        assert table.log[f"0|idle|{name}"] == [j.series[name].idle_from, None]
        assert json.loads(orjson.dumps(unpack(blob))) == table.log[f"0|det|{name}"]  # the record it stands for


def test_a_rebase_and_a_read_apply_the_waiting_windows_first():
    wins = windows(120)
    plain, parked = judge(), judge(park=True)
    run(plain, wins)
    run(parked, wins)
    name = next(iter(parked.parked))
    assert parked.detector(name) is not None and name not in parked.parked
    assert list(parked.recent[name]) == list(plain.recent[name])
    assert plain.rebase(USERS[3]) and parked.rebase(USERS[3])
    more = windows(200, seed=3)[120:]
    assert run(plain, [[]] * 120 + more, start=120) == run(parked, [[]] * 120 + more, start=120)
    assert settled(plain) == settled(parked)


def test_restored_from_the_changelog_or_the_local_copy_it_goes_on_the_same():
    wins = windows(480)
    whole = judge(park=True, state_every=1)
    expected = run(whole, wins)
    for cut in (60, 145, 205, 320):
        j = judge(park=True, state_every=1)
        table = Table()
        run(j, wins[:cut], table)
        # a restart reads the changelog; a rebalance that gives the partition back, the local copy
        from_log = judge(park=True, state_every=1)
        from_log.restore((k[2:], v) for k, v in table.log.items())
        from_local = judge(park=True, state_every=1)
        from_local.restore(restore_items(table, 0, raw=True))
        assert set(from_local.parked) == set(j.parked) and set(from_log.parked) == set(j.parked)
        assert all(from_local.parked[s] is table.data[f"0|det|{s}"] for s in from_local.parked)
        not_parked = judge(park=False, state_every=1)  # parking turned off: the windows applied at once
        not_parked.restore(restore_items(table, 0))
        assert not not_parked.parked
        for other in (from_log, from_local, not_parked):
            assert run(other, wins, start=cut) == expected[cut:]
            assert settled(other, cut * W) == settled(whole, cut * W)


def test_records_written_before_parking_still_restore():
    """A judge without parking writes no ``idle|`` records: a parking judge restores them as
    live series, and a checkpoint of one that parked loads into a judge without parking."""
    wins = windows(100)
    old = judge(state_every=1)
    table = Table()
    run(old, wins[:50], table)
    new = judge(park=True, state_every=1)
    new.restore(restore_items(table, 0))
    assert not new.parked and set(new.detectors) == set(old.detectors)
    assert run(new, wins, start=50) == run(old, wins, start=50)


def test_only_detectors_quiet_at_zero_park():
    j = JudgeCore(partition=0, window_seconds=W, make_detector=lambda: make_detector("naive", window_seconds=W),
                  engine=judge().engine, park=True)
    run(j, windows(60))
    assert not j.parked and not make_detector("naive").quiet_at_zero and make_detector("default").quiet_at_zero


def test_a_long_silence_skips_the_same_windows_parked_or_not():
    # max_fill_windows: after a long silence the judge does not replay its empty windows; an
    # idle series' waiting windows before the gap are applied, those in it are not
    wins = windows(60) + [[] for _ in range(30)] + windows(150)[60:]
    plain, parked = judge(max_fill_windows=8), judge(park=True, max_fill_windows=8)
    for j in (plain, parked):
        run(j, wins[:60])
        j.receive(0, 1, 90 * W, [], seq=1000)  # the sources' watermarks jump over the silence
    assert plain.done_until == parked.done_until
    assert run(plain, wins, start=90) == run(parked, wins, start=90)
    assert settled(plain) == settled(parked)

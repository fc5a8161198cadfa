"""The judge's settle watch: a recovery that reads nothing is stalled; one that reads is not."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from aiohttp.test_utils import TestClient, TestServer

from streams.common.config import StreamConfig
from streams.worker.app import create_app
from streams.worker.settle import SettleWatch, faust_settling
from streams.worker.state import WorkerState


def test_settled_is_never_stalled() -> None:
    w = SettleWatch(60)
    for t in range(0, 1000, 5):
        w.observe(False, 0, float(t))
    assert not w.stalled(1000.0) and w.settling_for(1000.0) == 0.0


def test_a_recovery_without_progress_stalls_after_the_limit() -> None:
    w = SettleWatch(60)
    w.observe(True, -24, 100.0)  # 24 changelog partitions, nothing read yet (Faust's -1 each)
    w.observe(True, -24, 150.0)
    assert not w.stalled(150.0)
    w.observe(True, -24, 161.0)
    assert w.stalled(161.0) and w.stalled_for(161.0) == 61.0 and w.settling_for(161.0) == 61.0


def test_a_slow_recovery_that_reads_is_not_stalled() -> None:
    w = SettleWatch(60)
    for i, t in enumerate(range(0, 600, 30)):  # ten minutes of recovery, a record read every 30 s
        w.observe(True, i, float(t))
    assert not w.stalled(599.0) and w.settling_for(599.0) >= 570
    w.observe(True, 19, 660.0)  # then nothing for 90 s
    assert w.stalled(660.0)


def test_settling_again_starts_afresh_and_zero_never_reports() -> None:
    w = SettleWatch(60)
    w.observe(True, 0, 0.0)
    w.observe(True, 0, 100.0)
    w.reported = True
    w.observe(False, 0, 101.0)
    assert not w.reported and not w.stalled(101.0)
    w.observe(True, 0, 200.0)
    assert w.stalled_for(230.0) == 30.0
    never = SettleWatch(0)
    never.observe(True, 0, 0.0)
    assert not never.stalled(1e9)


def test_faust_settling_reads_rebalancing_and_recovery_offsets() -> None:
    recovery = SimpleNamespace(active_offsets={"a": 5, "b": -1}, standby_offsets={"c": 2})
    app = SimpleNamespace(rebalancing=False, in_recovery=True, tables=SimpleNamespace(recovery=recovery))
    read = faust_settling(app)
    assert read() == (True, 6)
    app.in_recovery = False
    assert read()[0] is False
    assert faust_settling(SimpleNamespace())() == (False, 0)  # before Faust made its tables


def test_faust_settling_reads_a_just_assigned_changelog_partition() -> None:
    """Faust's recovery holds None for a changelog partition it was just given, until it has
    read where that partition's recovery starts; the timer that reads it crashed the worker."""
    recovery = SimpleNamespace(active_offsets={"a": 5, "b": None}, standby_offsets={"c": None})
    app = SimpleNamespace(rebalancing=True, in_recovery=False, tables=SimpleNamespace(recovery=recovery))
    assert faust_settling(app)() == (True, 5)


async def test_healthz_answers_503_when_the_judge_is_stalled(tmp_path: Path) -> None:
    """Through the real app's /healthz: ok while settled, 503 with the reason once the recovery
    has read nothing for longer than TOKENPULSE_JUDGE_STALL_SECONDS."""
    app = create_app(StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=1, data_dir=str(tmp_path),
                                  judge_stall=60))
    state: WorkerState = app.tokenpulse
    seen: list[tuple[bool, int]] = [(False, 0)]
    state.settle.read = lambda: seen[-1]
    async with TestClient(TestServer(app.web.web_app)) as client:
        resp = await client.get("/healthz")
        body = await resp.json()
        assert resp.status == 200 and body["status"] == "ok" and body["judge_settling_s"] == 0
        seen.append((True, -3))
        assert (await client.get("/healthz")).status == 200  # settling begins now
        state.settle.progress_at -= 61  # a minute and more without a changelog record read
        state.settle.since = state.settle.progress_at
        resp = await client.get("/healthz")
        body = await resp.json()
        assert resp.status == 503 and body["status"] == "stalled", body
        assert "without reading a changelog record" in body["reason"] and body["judge_settling_s"] >= 61
        seen.append((True, 5))  # it read something: not stalled any more
        assert (await client.get("/healthz")).status == 200
